//! `info`, `ls`, `cat`, `verify` and `demo`: inspecting a local blob.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crfs_core::{Digest, FileReadAt, Index, Kind, Layer, NodeId, OpenOptions, ROOT, ReadAt};

/// The sample layer shown by `crfs demo`.
const DEMO_BLOB: &[u8] = include_bytes!("../../../testdata/sample.esgz");

type CmdResult = Result<(), String>;

fn open(blob: &Path, options: &OpenOptions) -> Result<Layer<FileReadAt>, String> {
    let file = FileReadAt::open(blob).map_err(|e| format!("{}: {e}", blob.display()))?;
    Layer::open_with(file, options).map_err(|e| format!("{}: {e}", blob.display()))
}

/// Writes to stdout; a closed pipe (`| head`) ends quietly.
fn out_err(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    format!("writing output: {e}")
}

pub fn info(blob: &Path) -> CmdResult {
    let layer = open(blob, &OpenOptions::default())?;
    let mut out = std::io::stdout().lock();
    print_info(&mut out, &layer).map_err(out_err)
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

fn write_long<W: Write>(out: &mut W, index: &Index, id: NodeId, name: &[u8]) -> std::io::Result<()> {
    let inode = index.resolve(id);
    let Some(node) = index.node(inode) else { return Ok(()) };
    let size = match node.kind() {
        Kind::Char | Kind::Block => {
            let (major, minor) = node.rdev();
            format!("{major}, {minor}")
        }
        _ => node.size().to_string(),
    };
    write!(
        out,
        "{} {:>3} {:>5} {:>5} {:>10} {} ",
        mode_string(node.kind(), node.mode()),
        node.nlink(),
        node.uid(),
        node.gid(),
        size,
        format_time(node.mtime().0)
    )?;
    out.write_all(name)?;
    if node.kind() == Kind::Symlink {
        out.write_all(b" -> ")?;
        out.write_all(index.symlink_target(inode))?;
    }
    out.write_all(b"\n")
}

pub fn ls(blob: &Path, path: Option<&str>, long: bool, recursive: bool) -> CmdResult {
    let layer = open(blob, &OpenOptions::default())?;
    let index = layer.index();
    let path = path.unwrap_or("");
    let id = index
        .lookup_path(path.as_bytes())
        .ok_or_else(|| format!("{}: {path}: no such file or directory", blob.display()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = if index.node(id).is_some_and(|n| n.kind() == Kind::Dir) {
        if recursive { list_tree(&mut out, index, id, long) } else { list_dir(&mut out, index, id, long) }
    } else if long {
        write_long(&mut out, index, id, &index.path(id))
    } else {
        out.write_all(&index.path(id)).and_then(|()| out.write_all(b"\n"))
    };
    result.and_then(|()| out.flush()).map_err(out_err)
}

fn list_dir<W: Write>(out: &mut W, index: &Index, dir: NodeId, long: bool) -> std::io::Result<()> {
    for &child in index.children(dir) {
        if long {
            write_long(out, index, child, index.name(child))?;
        } else {
            out.write_all(index.name(child))?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Every descendant of `dir`, depth first in name order, as paths from the layer root.
fn list_tree<W: Write>(out: &mut W, index: &Index, dir: NodeId, long: bool) -> std::io::Result<()> {
    // An explicit stack of (directory, next child position): no recursion on input depth.
    let mut stack: Vec<(NodeId, usize)> = vec![(dir, 0)];
    while let Some((d, pos)) = stack.pop() {
        let children = index.children(d);
        let Some(&child) = children.get(pos) else { continue };
        stack.push((d, pos + 1));
        let path = index.path(child);
        if long {
            write_long(out, index, child, &path)?;
        } else {
            out.write_all(&path)?;
            out.write_all(b"\n")?;
        }
        if index.node(child).is_some_and(|n| n.kind() == Kind::Dir) {
            stack.push((child, 0));
        }
    }
    Ok(())
}

pub fn cat(blob: &Path, paths: &[String], verify: bool) -> CmdResult {
    let layer = open(blob, &OpenOptions::default())?;
    let mut out = std::io::stdout().lock();
    cat_layer(&layer, paths, verify, &mut out).map_err(|e| format!("{}: {e}", blob.display()))
}

fn cat_layer<R: ReadAt, W: Write>(layer: &Layer<R>, paths: &[String], verify: bool, out: &mut W) -> CmdResult {
    let index = layer.index();
    let mut chunk = Vec::new();
    for path in paths {
        let id = index.resolve_path(path.as_bytes()).ok_or_else(|| format!("{path}: no such file or directory"))?;
        match index.node(id).map(|n| n.kind()) {
            Some(Kind::Reg) => {}
            Some(Kind::Dir) => return Err(format!("{path}: is a directory")),
            _ => return Err(format!("{path}: not a regular file")),
        }
        for i in 0..index.chunks(id).len() {
            layer.read_chunk(id, i, verify, &mut chunk).map_err(|e| format!("{path}: {e}"))?;
            out.write_all(&chunk).map_err(out_err)?;
        }
    }
    out.flush().map_err(out_err)
}

pub fn verify(blob: &Path, toc_digest: Option<&str>, threads: Option<usize>) -> CmdResult {
    let expected = match toc_digest {
        Some(d) => Some(Digest::parse(d).ok_or_else(|| format!("--toc-digest {d}: not sha256:<64 hex digits>"))?),
        None => None,
    };
    let options = OpenOptions { expected_toc_digest: expected, ..OpenOptions::default() };
    let layer = open(blob, &options)?;
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let report = verify_layer(&layer, threads);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: {} files, {} chunks, {} bytes checked; {} files without digests",
        blob.display(),
        report.files,
        report.chunks,
        report.bytes,
        report.undigested
    );
    if report.failures.is_empty() {
        let _ = writeln!(out, "toc-digest {}", layer.toc_digest());
        return Ok(());
    }
    for failure in &report.failures {
        let _ = writeln!(out, "FAILED {failure}");
    }
    Err(format!("{}: {} files failed verification", blob.display(), report.failures.len()))
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
                let mut data = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&id) = files.get(i) else { break };
                    let chunks = index.chunks(id);
                    let undigested = !chunks.is_empty()
                        && index.file_digest(id).is_none()
                        && chunks.iter().all(|c| c.digest.is_none());
                    let result = layer.read_file_verified(id, &mut data);
                    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                    r.files += 1;
                    r.chunks += chunks.len();
                    r.bytes += data.len() as u64;
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
    let layer = Layer::open(DEMO_BLOB).map_err(|e| format!("built-in sample: {e}"))?;
    let mut out = std::io::stdout().lock();
    let index = layer.index();
    let run = |out: &mut std::io::StdoutLock<'_>| -> std::io::Result<()> {
        writeln!(out, "$ crfs info testdata/sample.esgz")?;
        print_info(out, &layer)?;
        writeln!(out, "\n$ crfs ls -lR testdata/sample.esgz")?;
        list_tree(out, index, ROOT, true)?;
        Ok(())
    };
    run(&mut out).map_err(out_err)?;
    // Show the first text file of the sample.
    let first_text = (0..index.len() as NodeId)
        .find(|&id| index.node(id).is_some_and(|n| n.kind() == Kind::Reg && n.size() > 0 && n.size() < 4096));
    if let Some(id) = first_text {
        let path = String::from_utf8_lossy(&index.path(id)).into_owned();
        writeln!(out, "\n$ crfs cat testdata/sample.esgz {path}").map_err(out_err)?;
        cat_layer(&layer, &[path], true, &mut out)?;
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
        Err(format!("built-in sample: {} files failed verification", report.failures.len()))
    }
}
