//! `info`, `ls`, `cat`, `verify` and `demo`: inspecting a layer or an image without mounting it.
//!
//! `info` and `verify` look at each layer; `ls` and `cat` walk the tree a mount would show
//! (one layer, or an image's layers merged), through crfs-vfs.

use std::io::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crfs_core::{Digest, Kind, Layer, NodeId, ReadAt};
use crfs_vfs::{Attr, FileKind, FsError, Ino, LayerFs, Options, ROOT_INO, ReadOnlyFs};

use crfs_image::{Error, ErrorKind, OpenedLayer, Result, tree};

use crate::args::RemoteArgs;

/// The sample layer shown by `crfs demo`.
const DEMO_BLOB: &[u8] = include_bytes!("../../../testdata/sample.esgz");

type CmdResult = Result<()>;

/// Writes to stdout; a closed pipe (`| head`) ends quietly.
fn out_err(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    Error::io("writing output", e)
}

fn fs_err(what: &str, e: FsError) -> Error {
    let (kind, why) = match e {
        FsError::NotFound => (ErrorKind::NotFound, "no such file or directory"),
        FsError::NotDir => (ErrorKind::Invalid, "not a directory"),
        FsError::IsDir => (ErrorKind::Invalid, "is a directory"),
        FsError::Invalid => (ErrorKind::Invalid, "not a regular file"),
        FsError::NoXattr => (ErrorKind::NotFound, "no such attribute"),
        FsError::Io => (ErrorKind::Io, "I/O error (corrupt or unreadable data; see the log)"),
        FsError::ReadOnly => (ErrorKind::Invalid, "read-only"),
        FsError::Denied => (ErrorKind::Denied, "permission denied"),
    };
    Error::new(kind, format!("{what}: {why}"))
}

pub fn info(spec: &str, remote: &RemoteArgs) -> CmdResult {
    let specs = [spec.to_string()];
    let layers = remote.images(false, &specs)?.open(&specs)?;
    let mut out = std::io::stdout().lock();
    let many = layers.len() > 1;
    for (i, l) in layers.iter().enumerate() {
        if many {
            writeln!(out, "{}layer {} of {}: {}", if i > 0 { "\n" } else { "" }, i + 1, layers.len(), l.name)
                .map_err(out_err)?;
        }
        print_info(&mut out, &l.layer).map_err(out_err)?;
    }
    Ok(())
}

fn print_info<R: ReadAt, W: Write>(out: &mut W, layer: &Layer<R>) -> std::io::Result<()> {
    let footer = layer.footer();
    let stats = layer.index().stats();
    writeln!(out, "format            {}", layer.format().name())?;
    writeln!(out, "blob-size         {}", layer.blob().size())?;
    writeln!(out, "toc-offset        {}", footer.toc_offset)?;
    writeln!(out, "toc-size          {} compressed, {} JSON", footer.toc_len, layer.toc_json_len())?;
    writeln!(out, "toc-digest        {}", layer.toc_digest())?;
    if layer.format().is_zstd() {
        writeln!(out, "manifest-checksum {}", layer.toc_compressed_digest())?;
    }
    writeln!(out, "toc-entries       {}", stats.toc_entries)?;
    writeln!(out, "nodes             {}", stats.nodes)?;
    writeln!(out, "directories       {}", stats.dirs)?;
    writeln!(out, "regular-files     {}", stats.regular_files)?;
    writeln!(out, "symlinks          {}", stats.symlinks)?;
    writeln!(out, "hardlinks         {}", stats.hardlinks)?;
    writeln!(out, "other             {}", stats.other)?;
    writeln!(out, "chunks            {}", stats.chunks)?;
    writeln!(out, "file-bytes        {}", stats.file_bytes)?;
    let prefetch = match (layer.index().prefetch_landmark(), layer.index().no_prefetch_landmark()) {
        (Some(offset), _) => format!("first {offset} bytes"),
        (None, true) => "none (.no.prefetch.landmark)".to_string(),
        (None, false) => "no landmark".to_string(),
    };
    writeln!(out, "prefetch          {prefetch}")?;
    writeln!(out, "index-memory      {} bytes", layer.index().heap_bytes())
}

fn mode_string(kind: Kind, mode: u16) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Char => 'c',
        Kind::Block => 'b',
        Kind::Fifo => 'p',
        Kind::Reg | Kind::Hardlink => '-',
    });
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o40, 'r'),
        (0o20, 'w'),
        (0o10, 'x'),
        (0o4, 'r'),
        (0o2, 'w'),
        (0o1, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 => Some((0o4000, 's', 'S')),
            5 => Some((0o2000, 's', 'S')),
            8 => Some((0o1000, 't', 'T')),
            _ => None,
        };
        match special {
            Some((sbit, lower, upper)) if mode & sbit != 0 => s.push(if set { lower } else { upper }),
            _ => s.push(if set { *c } else { '-' }),
        }
    }
    s
}

/// "YYYY-MM-DD HH:MM" in UTC.
fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

fn file_kind(kind: FileKind) -> Kind {
    match kind {
        FileKind::Dir => Kind::Dir,
        FileKind::Reg => Kind::Reg,
        FileKind::Symlink => Kind::Symlink,
        FileKind::Char => Kind::Char,
        FileKind::Block => Kind::Block,
        FileKind::Fifo => Kind::Fifo,
    }
}

fn write_long<W: Write>(out: &mut W, fs: &dyn ReadOnlyFs, a: &Attr, name: &[u8]) -> std::io::Result<()> {
    let size = match a.kind {
        FileKind::Char | FileKind::Block => format!("{}, {}", a.rdev_major, a.rdev_minor),
        _ => a.size.to_string(),
    };
    let mtime = a
        .mtime
        .duration_since(std::time::UNIX_EPOCH)
        .map_or_else(|e| -(e.duration().as_secs() as i64), |d| d.as_secs() as i64);
    write!(
        out,
        "{} {:>3} {:>5} {:>5} {:>10} {} ",
        mode_string(file_kind(a.kind), a.perm),
        a.nlink,
        a.uid,
        a.gid,
        size,
        format_time(mtime)
    )?;
    out.write_all(name)?;
    if a.kind == FileKind::Symlink {
        out.write_all(b" -> ")?;
        out.write_all(&fs.readlink(a.ino).unwrap_or_default())?;
    }
    out.write_all(b"\n")
}

/// Looks up `path` from the root. With `follow`, symlinks inside the tree are followed as a
/// program with this tree as its root would (absolute targets restart at the root, `..` stops
/// there, 40 expansions at most); the last component too.
fn resolve(fs: &dyn ReadOnlyFs, path: &[u8], follow: bool) -> std::result::Result<Attr, FsError> {
    const MAX_SYMLINK_HOPS: usize = 40;
    let mut pending: Vec<Vec<u8>> = path.split(|&b| b == b'/').rev().map(<[u8]>::to_vec).collect();
    let mut cur = fs.getattr(ROOT_INO)?;
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        match comp.as_slice() {
            b"" | b"." => {}
            b".." => cur = fs.getattr(fs.parent(cur.ino)?)?,
            name => {
                let next = fs.lookup(cur.ino, name)?;
                if follow && next.kind == FileKind::Symlink {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(FsError::NotFound);
                    }
                    let target = fs.readlink(next.ino)?;
                    if target.first() == Some(&b'/') {
                        cur = fs.getattr(ROOT_INO)?;
                    }
                    pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                } else {
                    cur = next;
                }
            }
        }
    }
    Ok(cur)
}

/// The entries of a directory with their attributes, "." and ".." left out.
fn entries(fs: &dyn ReadOnlyFs, dir: Ino) -> std::result::Result<Vec<(Vec<u8>, Attr)>, FsError> {
    let mut out = Vec::new();
    fs.readdir(dir, 2, &mut |e| {
        out.push((e.name.to_vec(), e.attr));
        true
    })?;
    Ok(out)
}

pub fn ls(spec: &str, remote: &RemoteArgs, path: Option<&str>, long: bool, recursive: bool) -> CmdResult {
    let specs = [spec.to_string()];
    let (fs, _) = tree(remote.images(true, &specs)?.open(&specs)?, Options::default())?;
    let path = path.unwrap_or("");
    let shown = path.trim_start_matches('/').trim_end_matches('/');
    let attr = resolve(fs.as_ref(), path.as_bytes(), false).map_err(|e| fs_err(&format!("{spec}: {path}"), e))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = if attr.kind == FileKind::Dir {
        list(&mut out, fs.as_ref(), attr.ino, shown.as_bytes(), long, recursive)
    } else if long {
        write_long(&mut out, fs.as_ref(), &attr, shown.as_bytes())
    } else {
        out.write_all(shown.as_bytes()).and_then(|()| out.write_all(b"\n"))
    };
    result.and_then(|()| out.flush()).map_err(out_err)
}

/// A directory's entries; with `recursive`, every descendant depth first in name order as a
/// path from the layer root (`prefix` is the directory's own path).
fn list<W: Write>(
    out: &mut W,
    fs: &dyn ReadOnlyFs,
    dir: Ino,
    prefix: &[u8],
    long: bool,
    recursive: bool,
) -> std::io::Result<()> {
    let io = |e: FsError| std::io::Error::other(fs_err(&String::from_utf8_lossy(prefix), e).to_string());
    // An explicit stack of (entries left, directory path): no recursion on input depth.
    type Pending = (std::vec::IntoIter<(Vec<u8>, Attr)>, Vec<u8>);
    let mut stack: Vec<Pending> = vec![(entries(fs, dir).map_err(io)?.into_iter(), prefix.to_vec())];
    while let Some((mut rest, dir_path)) = stack.pop() {
        let Some((name, attr)) = rest.next() else { continue };
        stack.push((rest, dir_path.clone()));
        let shown = if recursive {
            let mut p = dir_path.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(&name);
            p
        } else {
            name
        };
        if long {
            write_long(out, fs, &attr, &shown)?;
        } else {
            out.write_all(&shown)?;
            out.write_all(b"\n")?;
        }
        if recursive && attr.kind == FileKind::Dir {
            stack.push((entries(fs, attr.ino).map_err(io)?.into_iter(), shown));
        }
    }
    Ok(())
}

pub fn cat(spec: &str, remote: &RemoteArgs, paths: &[String], verify: bool) -> CmdResult {
    let options = Options { verify, cache_bytes: 64 << 20, ..Options::default() };
    let specs = [spec.to_string()];
    let (fs, _) = tree(remote.images(verify, &specs)?.open(&specs)?, options)?;
    let mut out = std::io::stdout().lock();
    cat_fs(fs.as_ref(), paths, &mut out).map_err(|e| e.context(spec))
}

fn cat_fs<W: Write>(fs: &dyn ReadOnlyFs, paths: &[String], out: &mut W) -> CmdResult {
    const PIECE: u32 = 1 << 20;
    for path in paths {
        let attr = resolve(fs, path.as_bytes(), true).map_err(|e| fs_err(path, e))?;
        match attr.kind {
            FileKind::Reg => {}
            FileKind::Dir => return Err(Error::new(ErrorKind::Invalid, format!("{path}: is a directory"))),
            _ => return Err(Error::new(ErrorKind::Invalid, format!("{path}: not a regular file"))),
        }
        let mut offset = 0;
        while offset < attr.size {
            let data = fs.read(attr.ino, offset, PIECE).map_err(|e| fs_err(path, e))?;
            if data.is_empty() {
                return Err(Error::new(ErrorKind::Corrupt, format!("{path}: file ends early")));
            }
            out.write_all(&data).map_err(out_err)?;
            offset += data.len() as u64;
        }
    }
    out.flush().map_err(out_err)
}

pub fn verify(spec: &str, remote: &RemoteArgs, toc_digest: Option<&str>, threads: Option<usize>) -> CmdResult {
    let expected =
        match toc_digest {
            Some(d) => Some(Digest::parse(d).ok_or_else(|| {
                Error::new(ErrorKind::Invalid, format!("--toc-digest {d}: not sha256:<64 hex digits>"))
            })?),
            None => None,
        };
    let specs = [spec.to_string()];
    let layers: Vec<OpenedLayer> = remote.images(true, &specs)?.open(&specs)?;
    if let (Some(expected), [only]) = (expected, layers.as_slice()) {
        if only.layer.toc_digest() != expected {
            return Err(Error::layer(spec, crfs_core::Error::TocDigestMismatch));
        }
    } else if expected.is_some() {
        let why = format!("{spec}: --toc-digest needs a single layer; this source has {}", layers.len());
        return Err(Error::new(ErrorKind::Invalid, why));
    }
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for l in &layers {
        let report = verify_layer(&l.layer, threads);
        let _ = writeln!(
            out,
            "{}: {} files, {} chunks, {} bytes checked; {} files without digests",
            l.name, report.files, report.chunks, report.bytes, report.undigested
        );
        if report.failures.is_empty() {
            let _ = writeln!(out, "toc-digest {}", l.layer.toc_digest());
        }
        for failure in &report.failures {
            let _ = writeln!(out, "FAILED {failure}");
        }
        failed += report.failures.len();
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Corrupt, format!("{spec}: {failed} files failed verification")))
    }
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub files: usize,
    pub chunks: usize,
    pub bytes: u64,
    /// Non-empty files with neither chunk nor file digests (legacy stargz).
    pub undigested: usize,
    pub failures: Vec<String>,
}

/// Decodes every chunk of every regular file on `threads` threads, checking every digest.
pub fn verify_layer<R: ReadAt + Sync>(layer: &Layer<R>, threads: usize) -> VerifyReport {
    let index = layer.index();
    // Each inode once, biggest first so the threads finish together.
    let mut files: Vec<NodeId> =
        (0..index.len() as NodeId).filter(|&id| index.node(id).is_some_and(|n| n.kind() == Kind::Reg)).collect();
    files.sort_by_key(|&id| std::cmp::Reverse(index.node(id).map_or(0, |n| n.size())));
    let next = AtomicUsize::new(0);
    let report = Mutex::new(VerifyReport::default());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&id) = files.get(i) else { break };
                    let chunks = index.chunks(id);
                    let undigested = !chunks.is_empty()
                        && index.file_digest(id).is_none()
                        && chunks.iter().all(|c| c.digest.is_none());
                    // Checked chunk by chunk: memory stays one member per thread.
                    let result = layer.verify_file(id);
                    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                    r.files += 1;
                    r.chunks += chunks.len();
                    r.bytes += result.as_ref().map_or(0, |&n| n);
                    r.undigested += usize::from(undigested);
                    if let Err(e) = result {
                        r.failures.push(format!("{}: {e}", String::from_utf8_lossy(&index.path(id))));
                    }
                }
            });
        }
    });
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.failures.sort();
    report
}

pub fn demo() -> CmdResult {
    let layer = Arc::new(Layer::open(DEMO_BLOB).map_err(|e| Error::layer("built-in sample", e))?);
    let fs = LayerFs::new(layer.clone(), Options::default());
    let mut out = std::io::stdout().lock();
    let run = |out: &mut std::io::StdoutLock<'_>| -> std::io::Result<()> {
        writeln!(out, "$ crfs info testdata/sample.esgz")?;
        print_info(out, &layer)?;
        writeln!(out, "\n$ crfs ls -lR testdata/sample.esgz")?;
        list(out, &fs, ROOT_INO, b"", true, true)?;
        Ok(())
    };
    run(&mut out).map_err(out_err)?;
    // Show the first small file of the sample.
    let index = layer.index();
    let first_text = (0..index.len() as NodeId)
        .find(|&id| index.node(id).is_some_and(|n| n.kind() == Kind::Reg && n.size() > 0 && n.size() < 4096));
    if let Some(id) = first_text {
        let path = String::from_utf8_lossy(&index.path(id)).into_owned();
        writeln!(out, "\n$ crfs cat testdata/sample.esgz {path}").map_err(out_err)?;
        cat_fs(&fs, &[path], &mut out)?;
    }
    let report = verify_layer(&layer, 2);
    writeln!(out, "\n$ crfs verify testdata/sample.esgz").map_err(out_err)?;
    writeln!(
        out,
        "{} files, {} chunks, {} bytes checked, {} failures",
        report.files,
        report.chunks,
        report.bytes,
        report.failures.len()
    )
    .map_err(out_err)?;
    if report.failures.is_empty() {
        Ok(())
    } else {
        let why = format!("built-in sample: {} files failed verification", report.failures.len());
        Err(Error::new(ErrorKind::Corrupt, why))
    }
}
