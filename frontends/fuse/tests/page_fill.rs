//! Through a real FUSE mount: after one small read in the middle of a chunk, the rest of that
//! chunk reaches the kernel's page cache (FUSE_NOTIFY_STORE), so reading anywhere else in the
//! chunk is answered by the kernel without a READ reaching crfs, with the right bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Served;
use crfs_core::Layer;
use crfs_core::writer::{Options as WriteOptions, convert_to_vec};
use crfs_testkit::{TarBuilder, TarEntry, is_root, need, scratch_dir};
use crfs_vfs::{Attr, DirEntry, FsError, Ino, LayerFs, Options, ReadOnlyFs, StatFs, WholeChunk};

const MIB: u64 = 1 << 20;

/// A tree that records the byte ranges of every read that reaches it.
struct Recorded<F> {
    fs: F,
    reads: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl<F: ReadOnlyFs> ReadOnlyFs for Recorded<F> {
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.fs.getattr(ino)
    }
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        self.fs.lookup(parent, name)
    }
    fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
        self.fs.parent(ino)
    }
    fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
        self.fs.readdir(ino, offset, add)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        self.fs.readlink(ino)
    }
    fn open(&self, ino: Ino) -> Result<(), FsError> {
        self.fs.open(ino)
    }
    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        self.reads.lock().unwrap().push((offset, offset + u64::from(size)));
        self.fs.read(ino, offset, size)
    }
    fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
        self.reads.lock().unwrap().push((offset, offset + u64::from(size)));
        self.fs.read_with(ino, offset, size, sink)
    }
    fn take_whole_chunk(&self, ino: Ino, offset: u64) -> Option<WholeChunk> {
        self.fs.take_whole_chunk(ino, offset)
    }
    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        self.fs.getxattr(ino, name)
    }
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        self.fs.listxattr(ino)
    }
    fn statfs(&self) -> StatFs {
        self.fs.statfs()
    }
}

/// `len` bytes that deflate cannot shrink much (xorshift), so chunks are what they say.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Bytes of `file` in the page cache, as util-linux's fincore counts them.
fn resident(file: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

#[test]
fn a_read_puts_the_rest_of_its_chunk_in_the_page_cache() {
    let fincore = std::process::Command::new("fincore").arg("--version").output().is_ok();
    if !need(Path::new("/dev/fuse").exists() && is_root(), "/dev/fuse and root") || !need(fincore, "fincore") {
        return;
    }
    // One file of three chunks: two of 1 MiB and a last one 1000 bytes short of that, which
    // ends in a partial page.
    let data = noise((3 * MIB - 1000) as usize);
    let tar = TarBuilder::default().add("big", TarEntry::File(&data), 0o644, 0).finish();
    let options = WriteOptions { chunk_size: MIB, ..WriteOptions::default() };
    let (blob, _) = convert_to_vec(tar.as_slice(), &options).unwrap();
    let layer = Arc::new(Layer::open(blob).unwrap());
    let reads = Arc::new(Mutex::new(Vec::new()));
    // Read-ahead off: only the reads the kernel sends decode chunks here.
    let fs = LayerFs::new(layer, Options { read_ahead: false, ..Options::default() });
    let tree = Recorded { fs, reads: Arc::clone(&reads) };

    let mnt = scratch_dir("fuse-page-fill").join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let served = Served::mount(tree, &mnt);

    let path = mnt.join("big");
    let file = std::fs::File::open(&path).unwrap();
    assert_eq!(resident(&path), 0, "a fresh mount has nothing cached");
    // 4 KiB in the middle of the second chunk, and in the middle of the last one.
    let mut buf = vec![0u8; 4096];
    for at in [MIB + MIB / 2, 2 * MIB + MIB / 2] {
        file.read_exact_at(&mut buf, at).unwrap();
        assert_eq!(buf, data[at as usize..at as usize + 4096]);
    }
    // The kernel read a window around each (its own read-ahead); crfs stores the rest of both
    // chunks from another thread, so wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while resident(&path) < 2 * MIB {
        assert!(Instant::now() < deadline, "page cache holds {} bytes, want both chunks", resident(&path));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every byte of the second chunk and of the last (a partial last page included) now comes
    // from the page cache: right bytes, no READ reaching crfs for them.
    reads.lock().unwrap().clear();
    let mut got = vec![0u8; MIB as usize];
    file.read_exact_at(&mut got, MIB).unwrap();
    assert!(got == data[MIB as usize..2 * MIB as usize], "second chunk through the page cache differs");
    let mut tail = vec![0u8; MIB as usize - 1000];
    file.read_exact_at(&mut tail, 2 * MIB).unwrap();
    assert!(tail == data[2 * MIB as usize..], "last chunk through the page cache differs");
    let reached: Vec<_> = reads.lock().unwrap().iter().copied().filter(|&(_, end)| end > MIB).collect();
    assert!(reached.is_empty(), "reads that reached crfs for stored chunks: {reached:?}");
    // The first chunk was never read: the kernel still asks crfs for it.
    let mut first = vec![0u8; 4096];
    file.read_exact_at(&mut first, 0).unwrap();
    assert_eq!(first, data[..4096]);
    assert!(reads.lock().unwrap().iter().any(|&(s, _)| s == 0), "the first chunk's read reached crfs");

    drop(file);
    served.unmount();
}
