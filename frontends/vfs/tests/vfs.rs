//! The filesystem model on the committed fixtures: identity, listings and offsets, the chunk
//! cache (each chunk inflated once however it is read), whiteouts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crfs_core::{Layer, ReadAt};
use crfs_testkit::testdata;
use crfs_vfs::{FileKind, FsError, Ino, LayerFs, Options, ROOT_INO, ReadOnlyFs};

/// A blob in memory that counts the reads made of it.
struct Counting {
    bytes: Vec<u8>,
    reads: AtomicUsize,
}

impl ReadAt for Counting {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crfs_core::Result<usize> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.bytes.read_at(offset, buf)
    }
}

/// A blob whose source starts refusing reads (as a registry's 401 does) once told to.
struct Refusing {
    bytes: Vec<u8>,
    refuse: std::sync::atomic::AtomicBool,
}

impl ReadAt for Refusing {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crfs_core::Result<usize> {
        if self.refuse.load(Ordering::SeqCst) {
            let refused = crfs_core::error::IoError { errno: 13, what: "registry refused the credentials" };
            return Err(crfs_core::Error::Io(refused));
        }
        self.bytes.read_at(offset, buf)
    }
}

#[test]
fn a_read_the_source_refuses_is_denied_not_io() {
    let bytes = std::fs::read(testdata().join("sample.esgz")).unwrap();
    let blob = Arc::new(Refusing { bytes, refuse: std::sync::atomic::AtomicBool::new(false) });
    let fs = LayerFs::new(Arc::new(Layer::open(blob.clone()).unwrap()), Options::default());
    let index = fs.layer().index();
    let id = (0..index.len() as u32).find(|&id| !index.chunks(id).is_empty()).unwrap();
    blob.refuse.store(true, Ordering::SeqCst);
    // EACCES from FUSE, NFS3ERR_ACCES from NFS: not EIO.
    assert_eq!(fs.read(u64::from(id) + 1, 0, 4096), Err(FsError::Denied));
}

fn open(path: &str, options: Options) -> (LayerFs<Arc<Counting>>, Arc<Counting>) {
    let blob = Arc::new(Counting { bytes: std::fs::read(testdata().join(path)).unwrap(), reads: AtomicUsize::new(0) });
    let layer = Layer::open(blob.clone()).unwrap();
    (LayerFs::new(Arc::new(layer), options), blob)
}

/// sample.esgz served with `options`, and the inode and size of its file with the most chunks
/// (200 KiB in 64 KiB chunks).
fn biggest_file(options: Options) -> (Arc<dyn ReadOnlyFs>, Arc<Counting>, Ino, u64) {
    let (fs, blob) = open("sample.esgz", options);
    let index = fs.layer().index();
    let id = (0..index.len() as u32).max_by_key(|&id| index.chunks(id).len()).unwrap();
    let ino = u64::from(id) + 1;
    let size = fs.getattr(ino).unwrap().size;
    (Arc::new(fs), blob, ino, size)
}

fn lookup_path<R: ReadAt + Send + Sync + 'static>(fs: &LayerFs<R>, path: &str) -> crfs_vfs::Attr {
    let mut attr = fs.getattr(ROOT_INO).unwrap();
    for comp in path.split('/') {
        attr = fs.lookup(attr.ino, comp.as_bytes()).unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
    attr
}

#[test]
fn small_sequential_reads_inflate_each_chunk_once() {
    // sample.esgz holds a 200 KiB file in 64 KiB chunks.
    let (fs, blob) = open("sample.esgz", Options::default());
    let index = fs.layer().index();
    let (id, chunks) = (0..index.len() as u32).map(|id| (id, index.chunks(id).len())).max_by_key(|&(_, n)| n).unwrap();
    assert!(chunks >= 3, "the sample has a multi-chunk file");
    let ino = u64::from(id) + 1;
    let size = fs.getattr(ino).unwrap().size;
    let before = blob.reads.load(Ordering::SeqCst);
    let mut data = Vec::new();
    let mut offset = 0;
    while offset < size {
        let piece = fs.read(ino, offset, 4096).unwrap();
        assert!(!piece.is_empty());
        offset += piece.len() as u64;
        data.extend_from_slice(&piece);
    }
    assert_eq!(blob.reads.load(Ordering::SeqCst) - before, chunks, "one blob read per chunk");
    // Read again, whole: all from the cache.
    let again = fs.read(ino, 0, size as u32).unwrap();
    assert_eq!(blob.reads.load(Ordering::SeqCst) - before, chunks);
    let mut whole = Vec::new();
    fs.layer().read_file_verified(id, &mut whole).unwrap();
    assert_eq!(data, whole);
    assert_eq!(again, whole);
}

#[test]
fn lent_reads_match_owned_reads_and_lend_once() {
    // sample.esgz holds a 200 KiB file in 64 KiB chunks: reads inside one chunk, across
    // chunks, across the end and past it, through the trait as front-ends call it.
    let (fs, _, ino, size) = biggest_file(Options::default());
    let chunk = 64 << 10;
    for (offset, len) in [
        (0, 4096),
        (100, 1000),
        (chunk - 10, 20),
        (chunk - 4096, 3 * chunk as u32),
        (size - 3, 10),
        (size, 10),
        (size + 5, 1),
    ] {
        let mut calls = 0;
        let mut lent = Vec::new();
        fs.read_with(ino, offset, len, &mut |data| {
            calls += 1;
            lent.extend_from_slice(data);
        })
        .unwrap();
        assert_eq!(calls, 1, "one call at {offset}+{len}");
        assert_eq!(lent, fs.read(ino, offset, len).unwrap(), "at {offset}+{len}");
    }
    // A failed read lends nothing.
    let mut called = false;
    assert_eq!(fs.read_with(ROOT_INO, 0, 10, &mut |_| called = true), Err(FsError::IsDir));
    assert!(!called);
}

#[test]
fn reads_from_the_cache_alone_answer_only_what_is_cached() {
    // sample.esgz's biggest file has 64 KiB chunks; read-ahead off, so only reads decode.
    let (fs, blob, ino, size) = biggest_file(Options { read_ahead: false, ..Options::default() });
    let chunk = 64 << 10;
    // Nothing decoded yet: not answered, and nothing read from the blob for asking.
    let before = blob.reads.load(Ordering::SeqCst);
    assert!(fs.read_if_cached(ino, 100, 1000).is_none());
    assert_eq!(blob.reads.load(Ordering::SeqCst), before);
    // The first chunk decoded: reads inside it are answered, with the same bytes as `read`;
    // a read that reaches into the second chunk is not.
    let want = fs.read(ino, 0, chunk as u32).unwrap();
    assert_eq!(fs.read_if_cached(ino, 100, 1000).unwrap().unwrap(), want[100..1100]);
    assert!(fs.read_if_cached(ino, chunk - 10, 20).is_none());
    fs.read(ino, chunk, 1).unwrap();
    assert_eq!(fs.read_if_cached(ino, chunk - 10, 20).unwrap().unwrap(), fs.read(ino, chunk - 10, 20).unwrap());
    // At or past the end: empty, as `read` says; a directory: the same error as `read`.
    assert_eq!(fs.read_if_cached(ino, size, 10).unwrap().unwrap(), Vec::<u8>::new());
    assert_eq!(fs.read_if_cached(ROOT_INO, 0, 10).unwrap(), Err(FsError::IsDir));
}

#[test]
fn concurrent_misses_on_one_chunk_decode_it_once() {
    let (fs, blob) = open("sample.esgz", Options::default());
    let index = fs.layer().index();
    let id = (0..index.len() as u32).max_by_key(|&id| index.chunks(id).len()).unwrap();
    let ino = u64::from(id) + 1;
    let before = blob.reads.load(Ordering::SeqCst);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert_eq!(fs.read(ino, 100, 1000).unwrap().len(), 1000));
        }
    });
    assert_eq!(blob.reads.load(Ordering::SeqCst) - before, 1);
}

#[test]
fn readdir_offsets_resume_exactly() {
    let (fs, _) = open("fixtures/many.esgz", Options::default());
    let dir = fs.getattr(ROOT_INO).unwrap();
    let mut all = Vec::new();
    fs.readdir(dir.ino, 0, |e| {
        all.push((e.name.to_vec(), e.attr.ino, e.next_offset));
        true
    })
    .unwrap();
    assert_eq!(&all[0].0, b".");
    assert_eq!(&all[1].0, b"..");
    // Resuming from every offset gives exactly the rest, in the same order.
    for (i, &(_, _, next)) in all.iter().enumerate() {
        let mut rest = Vec::new();
        fs.readdir(dir.ino, next, |e| {
            rest.push((e.name.to_vec(), e.attr.ino, e.next_offset));
            true
        })
        .unwrap();
        assert_eq!(rest, all[i + 1..].to_vec());
    }
    // A full buffer stops the listing.
    let mut n = 0;
    fs.readdir(dir.ino, 0, |_| {
        n += 1;
        n < 3
    })
    .unwrap();
    assert_eq!(n, 3);
}

#[test]
fn hardlinks_share_an_inode_and_errors_are_precise() {
    let (fs, _) = open("fixtures/all-types.esgz", Options::default());
    let a = lookup_path(&fs, "files/data.bin");
    let b = lookup_path(&fs, "links/hard2");
    assert_eq!((a.ino, a.nlink), (b.ino, 4));
    let dir = lookup_path(&fs, "files");
    assert_eq!(fs.lookup(dir.ino, b"nope"), Err(FsError::NotFound));
    assert_eq!(fs.lookup(a.ino, b"x"), Err(FsError::NotDir));
    assert_eq!(fs.read(dir.ino, 0, 10), Err(FsError::IsDir));
    assert_eq!(fs.readlink(a.ino), Err(FsError::Invalid));
    assert_eq!(fs.getattr(0), Err(FsError::NotFound));
    assert_eq!(fs.getattr(u64::MAX), Err(FsError::NotFound));
    assert_eq!(fs.getxattr(a.ino, b"user.none"), Err(FsError::NoXattr));
    let link = lookup_path(&fs, "links/rel");
    assert_eq!(fs.readlink(link.ino).unwrap(), b"../files/small.txt");
    assert_eq!(fs.parent(dir.ino).unwrap(), ROOT_INO);
    assert_eq!(fs.lookup(dir.ino, b"..").unwrap().ino, ROOT_INO);
    // Reads past the end are empty, reads across it are short.
    assert!(fs.read(a.ino, a.size, 10).unwrap().is_empty());
    assert_eq!(fs.read(a.ino, a.size - 3, 10).unwrap().len(), 3);
}

#[test]
fn whiteouts_only_change_when_asked() {
    let (plain, _) = open("fixtures/all-types.esgz", Options::default());
    assert_eq!(lookup_path(&plain, "wh/.wh.gone").kind, FileKind::Reg);
    let (ovl, _) = open("fixtures/all-types.esgz", Options { overlay_whiteouts: true, ..Options::default() });
    let gone = lookup_path(&ovl, "wh/gone");
    assert_eq!((gone.kind, gone.perm, gone.rdev_major, gone.rdev_minor), (FileKind::Char, 0, 0, 0));
    let wh = lookup_path(&ovl, "wh");
    assert_eq!(ovl.lookup(wh.ino, b".wh.gone"), Err(FsError::NotFound));
    let opaque = lookup_path(&ovl, "wh/opaque");
    assert_eq!(ovl.getxattr(opaque.ino, b"trusted.overlay.opaque").unwrap(), b"y");
    assert_eq!(ovl.listxattr(opaque.ino).unwrap(), b"trusted.overlay.opaque\0");
    assert_eq!(plain.getxattr(opaque.ino, b"trusted.overlay.opaque"), Err(FsError::NoXattr));
}

/// Threads of this process named `crfs-readahead`.
fn read_ahead_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().ok().and_then(|t| std::fs::read_to_string(t.path().join("comm")).ok());
            comm.is_some_and(|c| c.trim() == "crfs-readahead")
        })
        .count()
}

/// With read-ahead off, a walk in blob order reads each chunk only when asked, and no thread
/// is started; with it on (the default), the walk starts the read-ahead thread.
///
/// It counts the process's threads, which other tests running beside it in the same process
/// (`cargo test`) would change: the test runs itself again, alone, in a child process.
#[test]
fn read_ahead_off_decodes_only_what_is_read() {
    const ALONE: &str = "CRFS_TEST_READ_AHEAD_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["read_ahead_off_decodes_only_what_is_read", "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "child failed:\n{text}");
        return;
    }
    for read_ahead in [false, true] {
        let (fs, blob) = open("fixtures/many.esgz", Options { read_ahead, ..Options::default() });
        let index = fs.layer().index();
        let mut files: Vec<(u64, u32)> = (0..index.len() as u32)
            .filter_map(|id| index.chunks(id).first().filter(|c| !c.zeros).map(|c| (c.offset, id)))
            .collect();
        files.sort_unstable();
        let threads_before = read_ahead_threads();
        let before = blob.reads.load(Ordering::SeqCst);
        for &(_, id) in &files[..6] {
            assert!(!fs.read(u64::from(id) + 1, 0, 1 << 20).unwrap().is_empty());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let reads = blob.reads.load(Ordering::SeqCst) - before;
        if read_ahead {
            assert_eq!(read_ahead_threads(), threads_before + 1, "one read-ahead thread");
            assert!(reads > 6, "{reads} blob reads: nothing read ahead");
        } else {
            assert_eq!(read_ahead_threads(), threads_before, "no read-ahead thread");
            assert_eq!(reads, 6, "one blob read per file read, none ahead");
        }
    }
}

#[test]
fn reading_in_blob_order_decodes_ahead_once() {
    let (fs, blob) = open("fixtures/many.esgz", Options::default());
    let index = fs.layer().index();
    // Regular files with data, in the order the blob stores them.
    let mut files: Vec<(u64, u32)> = (0..index.len() as u32)
        .filter_map(|id| index.chunks(id).first().filter(|c| !c.zeros).map(|c| (c.offset, id)))
        .collect();
    files.sort_unstable();
    let before = blob.reads.load(Ordering::SeqCst);
    for &(_, id) in &files[..3] {
        assert!(!fs.read(u64::from(id) + 1, 0, 1 << 20).unwrap().is_empty());
    }
    // Forward misses: the following chunks are decoded in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blob.reads.load(Ordering::SeqCst) - before <= 3 {
        assert!(std::time::Instant::now() < deadline, "no read-ahead happened");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Reading the next files finds them decoded: every chunk was read from the blob once.
    for &(_, id) in &files[3..11] {
        assert!(!fs.read(u64::from(id) + 1, 0, 1 << 20).unwrap().is_empty());
    }
    let reads = blob.reads.load(Ordering::SeqCst) - before;
    assert!(reads <= 11 + 8, "{reads} blob reads for 11 files read once each plus read-ahead");
    let mut distinct: Vec<u64> = files[..11].iter().map(|f| f.0).collect();
    distinct.dedup();
    assert!(reads >= distinct.len());
}

/// Users see `Display`, not the variant names.
#[test]
fn errors_display_as_messages() {
    assert_eq!(FsError::NotFound.to_string(), "no such file or directory");
    assert_eq!(FsError::Denied.to_string(), "permission denied");
    for e in [FsError::NotDir, FsError::IsDir, FsError::Invalid, FsError::NoXattr, FsError::Io, FsError::ReadOnly] {
        let text = e.to_string();
        assert!(!text.is_empty() && text != format!("{e:?}"), "{text}");
    }
}
