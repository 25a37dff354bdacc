//! The input tar: a file read in place, or a decompressed spool of a tar.gz, tar.zst or stdin.

use std::io::{Read, Write};

use crfs_core::{FileReadAt, ReadAt};

use crate::Error;

/// The tar the writer reads: a `ReadAt` that is `Sync`, so worker threads share it.
pub struct Input {
    file: FileReadAt,
    _spool: Option<Spool>,
}

impl ReadAt for Input {
    fn size(&self) -> u64 {
        self.file.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crfs_core::Result<usize> {
        self.file.read_at(offset, buf)
    }
}

/// A temporary file, removed when dropped (or by a stop signal: see [`crate::cleanup`]).
struct Spool(#[allow(dead_code)] crate::cleanup::Tracked);

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Opens `path` (`-` is standard input), decompressing gzip or zstd input into a spool file.
pub fn open(path: &str) -> Result<Input, Error> {
    if path == "-" {
        let stdin = std::io::stdin();
        return spool(Box::new(stdin.lock()), "standard input");
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {path}"), e))?;
    let regular = file.metadata().map_err(|e| Error::io(format!("reading {path}"), e))?.is_file();
    if !regular {
        // A pipe or device cannot be read twice at random: spool it like standard input.
        return spool(Box::new(file), path);
    }
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(|e| Error::io(format!("reading {path}"), e))?;
    if magic[..n].starts_with(GZIP_MAGIC) || magic[..n].starts_with(ZSTD_MAGIC) {
        let file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {path}"), e))?;
        return spool(Box::new(file), path);
    }
    let file = FileReadAt::open(std::path::Path::new(path)).map_err(|e| Error::io(format!("opening {path}"), e))?;
    Ok(Input { file, _spool: None })
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies `r` (decompressed if it starts with a gzip or zstd magic) to a temporary file.
fn spool(mut r: Box<dyn Read + '_>, what: &str) -> Result<Input, Error> {
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut r, &mut magic).map_err(|e| Error::io(format!("reading {what}"), e))?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let whole = head.chain(r);
    let path = std::env::temp_dir().join(format!(
        "crfs-convert-{}-{}.tar",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    let (file, tracked) =
        crate::cleanup::create_file(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let spool_guard = Spool(tracked);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
    let copied = if magic[..n].starts_with(GZIP_MAGIC) {
        let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, whole));
        copy(&mut gz, &mut w, "gzip", what)
    } else if magic[..n].starts_with(ZSTD_MAGIC) {
        copy_zstd(std::io::BufReader::with_capacity(1 << 20, whole), &mut w, what)
    } else {
        let mut plain = whole;
        copy(&mut plain, &mut w, "", what)
    };
    copied?;
    w.flush().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    drop(w);
    let file = FileReadAt::new(file).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(Input { file, _spool: Some(spool_guard) })
}

/// Decompresses every zstd frame of `r` (zstd:chunked blobs are many frames, and skippable
/// frames, which libzstd skips) into `w`.
fn copy_zstd(r: impl std::io::BufRead, w: &mut dyn Write, what: &str) -> Result<(), Error> {
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::BadCompression { format: "zstd", error: e })?;
    copy(&mut decoder, w, "zstd", what)
}

/// Copies, telling read errors of a decompressor (broken input) from write errors (the spool).
fn copy(r: &mut dyn Read, w: &mut dyn Write, format: &'static str, what: &str) -> Result<(), Error> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if format.is_empty() => return Err(Error::io(format!("reading {what}"), e)),
            Err(e) => return Err(Error::BadCompression { format, error: e }),
        };
        w.write_all(&buf[..n]).map_err(|e| Error::io("writing the decompressed input to a temporary file", e))?;
    }
}
