//! `crfs-bench-readall [--mode read-at|reader|chunk] [--piece N] [--threads N] [--verify] BLOB`:
//! opens a blob and reads every regular file start to end through crfs-core, then exits.
//!
//! - `--mode read-at` (default): the stateless `Layer::read_at` in pieces of `--piece` bytes
//!   (default 128 KiB), the access pattern of a FUSE or NFS read loop and of the reference's
//!   `OpenFile` + `ReadAt` loop (`interop readall`).
//! - `--mode reader`: one `FileReader` per file (it keeps the last decoded chunk), then its
//!   `read_at` in pieces of `--piece` bytes: the same loop through crfs-core's per-file handle.
//! - `--mode chunk`: `Layer::read_chunk` once per chunk, the pattern of a front-end with a
//!   decompressed-chunk cache.
//!
//! Digests are checked only with `--verify` (the reference's `ReadAt` checks none). Files are
//! shared among `--threads` threads (default 1), biggest first. Prints the file and byte
//! counts so runs can be checked against the reference's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crfs_benches::{Args, BenchResult, open_layer, regular_files, run};
use crfs_core::{FileReadAt, FileReader, Layer, NodeId};

const USAGE: &str = "crfs-bench-readall [--mode read-at|reader|chunk] [--piece N] [--threads N] [--verify] BLOB";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    ReadAt { piece: usize },
    Reader { piece: usize },
    Chunk,
}

fn main() -> std::process::ExitCode {
    run("crfs-bench-readall", || {
        let args = Args::parse(&["mode", "piece", "threads"])?;
        args.only(&["mode", "piece", "threads", "verify"])?;
        let blob = args.one_path(USAGE)?;
        let piece = usize::try_from(args.number("piece", 128 << 10)?).map_err(|_| "--piece: too large".to_string())?;
        if piece == 0 {
            return Err("--piece must be positive".into());
        }
        let mode = match args.value("mode").unwrap_or("read-at") {
            "read-at" => Mode::ReadAt { piece },
            "reader" => Mode::Reader { piece },
            "chunk" => Mode::Chunk,
            other => return Err(format!("--mode {other}: want read-at, reader or chunk")),
        };
        let threads = usize::try_from(args.number("threads", 1)?.max(1)).unwrap_or(1);
        let verify = args.flag("verify");

        let layer = open_layer(&blob)?;
        let index = layer.index();
        let mut files = regular_files(index);
        files.sort_by_key(|&id| std::cmp::Reverse(index.node(id).map_or(0, |n| n.size())));

        let next = AtomicUsize::new(0);
        let totals = Mutex::new((0usize, 0u64));
        let first_error: Mutex<Option<String>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut state = Reader::new(mode);
                    let (mut n_files, mut n_bytes) = (0usize, 0u64);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&id) = files.get(i) else { break };
                        match state.read_file(&layer, id, verify) {
                            Ok(n) => {
                                n_files += 1;
                                n_bytes += n;
                            }
                            Err(e) => {
                                let path = String::from_utf8_lossy(&index.path(id)).into_owned();
                                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                                slot.get_or_insert(format!("{path}: {e}"));
                                // Stop every thread: the run is invalid.
                                next.store(files.len(), Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                    t.0 += n_files;
                    t.1 += n_bytes;
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let (n_files, n_bytes) = totals.into_inner().unwrap_or_else(|p| p.into_inner());
        println!("files {n_files} bytes {n_bytes}");
        Ok(())
    })
}

/// One thread's buffers.
struct Reader {
    mode: Mode,
    buf: Vec<u8>,
}

impl Reader {
    fn new(mode: Mode) -> Reader {
        let buf = match mode {
            Mode::ReadAt { piece } | Mode::Reader { piece } => vec![0; piece],
            Mode::Chunk => Vec::new(),
        };
        Reader { mode, buf }
    }

    /// Reads one file start to end; returns its length.
    fn read_file(&mut self, layer: &Layer<FileReadAt>, id: NodeId, verify: bool) -> BenchResult<u64> {
        let size = layer.index().node(id).map_or(0, |n| n.size());
        match self.mode {
            Mode::ReadAt { .. } => {
                let mut off = 0u64;
                while off < size {
                    let n = layer.read_at(id, off, &mut self.buf, verify).map_err(|e| format!("read_at {off}: {e}"))?;
                    if n == 0 {
                        return Err(format!("read_at {off}: nothing read before the end ({size})"));
                    }
                    off += n as u64;
                }
                Ok(off)
            }
            Mode::Reader { .. } => {
                let mut reader = FileReader::new(layer, id, verify).map_err(|e| e.to_string())?;
                let mut off = 0u64;
                while off < size {
                    let n =
                        reader.read_at(off, &mut self.buf).map_err(|e| format!("FileReader::read_at {off}: {e}"))?;
                    if n == 0 {
                        return Err(format!("FileReader::read_at {off}: nothing read before the end ({size})"));
                    }
                    off += n as u64;
                }
                Ok(off)
            }
            Mode::Chunk => {
                let mut total = 0u64;
                for i in 0..layer.index().chunks(id).len() {
                    layer.read_chunk(id, i, verify, &mut self.buf).map_err(|e| format!("chunk {i}: {e}"))?;
                    total += self.buf.len() as u64;
                }
                if total != size {
                    return Err(format!("chunks hold {total} bytes, the file {size}"));
                }
                Ok(total)
            }
        }
    }
}
