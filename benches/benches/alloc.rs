//! Allocations per read on crfs's read path, counted by a wrapper around the system allocator
//! (`#[global_allocator]`), through `crfs_vfs::ReadOnlyFs` as the front-ends call it (a
//! `dyn ReadOnlyFs` behind an `Arc`).
//!
//! - hit: a read inside one decoded chunk that is in the cache (4 KiB and 128 KiB, the FUSE
//!   front-end's largest read), and a 128 KiB read across two cached chunks;
//! - miss: a 4 KiB read at the start of a chunk not decoded yet (each miss decodes one whole
//!   4 MiB chunk and checks its digest), and beside it the decode alone (`Layer::read_chunk`
//!   into a fresh buffer, as the vfs cache does); and misses in a full cache, each evicting
//!   the least recently used chunk, as in a mount that has run a while.
//!
//! For gzip (eStargz, level 9) and zstd (zstd:chunked, level 3) layers built in memory by the
//! core writer: one file of [`CHUNKS`] chunks of 4 MiB of source-like text. Read-ahead is off,
//! so every allocation is the reading thread's. Each row reports allocation calls per read
//! (`alloc` + `alloc_zeroed` + `realloc`), how many of those were zero-filled, bytes
//! requested per read, and the median wall time of one read (noisy on a shared machine; the
//! counts are exact).
//!
//! `cargo bench -p crfs-benches --bench alloc` (about a minute after the build). The numbers
//! are recorded in benches/results/alloc.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crfs_benches::{Rng, regular_files};
use crfs_core::writer::{Options, convert_to_vec};
use crfs_core::{Format, Layer, NodeId};
use crfs_testkit::{TarBuilder, TarEntry};
use crfs_vfs::{LayerFs, ReadOnlyFs};

/// Counts every allocation the process makes, then lets the system allocator make it.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ZEROED: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters
// are atomics and allocate nothing.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ZEROED.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The writers' default chunk size.
const CHUNK: usize = 4 << 20;
/// Chunks of the one file: each miss round decodes all but the first.
const CHUNKS: usize = 9;
/// Reads timed per hit row.
const HIT_READS: usize = 2000;
/// Fresh filesystems per miss row (each missing `CHUNKS - 1` chunks).
const MISS_ROUNDS: usize = 3;

type BenchResult<T> = Result<T, String>;

/// Allocation counters and time of a batch of reads.
#[derive(Default, Clone, Copy)]
struct Tally {
    allocs: u64,
    zeroed: u64,
    bytes: u64,
}

fn counters() -> Tally {
    Tally {
        allocs: ALLOCS.load(Ordering::Relaxed),
        zeroed: ZEROED.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

/// One row of the report: per-read averages over `reads` reads, and their median time.
struct Row {
    name: String,
    reads: usize,
    tally: Tally,
    times: Vec<Duration>,
}

impl Row {
    fn new(name: String) -> Row {
        Row { name, reads: 0, tally: Tally::default(), times: Vec::new() }
    }

    /// Runs `read` once, counting what it allocates and timing it.
    fn measure(&mut self, read: impl FnOnce() -> BenchResult<()>) -> BenchResult<()> {
        let before = counters();
        let start = Instant::now();
        read()?;
        let took = start.elapsed();
        let after = counters();
        self.tally.allocs += after.allocs - before.allocs;
        self.tally.zeroed += after.zeroed - before.zeroed;
        self.tally.bytes += after.bytes - before.bytes;
        self.times.push(took);
        self.reads += 1;
        Ok(())
    }

    fn print(&mut self) {
        self.times.sort_unstable();
        let median = self.times.get(self.times.len() / 2).copied().unwrap_or_default();
        let per = |n: u64| n as f64 / self.reads.max(1) as f64;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} | {:.1} |",
            self.name,
            self.reads,
            per(self.tally.allocs),
            per(self.tally.zeroed),
            per(self.tally.bytes),
            median.as_secs_f64() * 1e6
        );
    }
}

fn blob(format: Format, level: u8, body: &[u8]) -> BenchResult<&'static [u8]> {
    let tar = TarBuilder::default().add("big.py", TarEntry::File(body), 0o644, 1_700_000_000).finish();
    let options = Options { format, level, chunk_size: CHUNK as u64, ..Options::default() };
    let (blob, _) = convert_to_vec(&tar, &options).map_err(|e| format!("writer: {e}"))?;
    Ok(Vec::leak(blob))
}

/// A filesystem as a front-end holds it, with a cache big enough for every chunk and no
/// read-ahead; and the file's inode number.
fn mount(blob: &'static [u8]) -> BenchResult<(Arc<dyn ReadOnlyFs>, u64)> {
    mount_with_cache(blob, 1 << 30)
}

/// [`mount`] with a chunk cache of `cache_bytes`.
fn mount_with_cache(blob: &'static [u8], cache_bytes: u64) -> BenchResult<(Arc<dyn ReadOnlyFs>, u64)> {
    let layer = Layer::open(blob).map_err(|e| format!("open: {e}"))?;
    let file = file_of(&layer)?;
    let options = crfs_vfs::Options { cache_bytes, read_ahead: false, ..Default::default() };
    let fs: Arc<dyn ReadOnlyFs> = Arc::new(LayerFs::new(Arc::new(layer), options));
    Ok((fs, u64::from(file) + 1))
}

fn file_of(layer: &Layer<&'static [u8]>) -> BenchResult<NodeId> {
    regular_files(layer.index()).first().copied().ok_or_else(|| "no regular file".to_string())
}

/// A read through `read` (the owned-`Vec` call), checked against the file's bytes.
fn read_vec(fs: &dyn ReadOnlyFs, ino: u64, offset: u64, size: u32, want: &[u8]) -> BenchResult<()> {
    let got = fs.read(ino, offset, size).map_err(|e| format!("read: {e}"))?;
    let end = (offset as usize + size as usize).min(want.len());
    if got.as_slice() != want.get(offset as usize..end).unwrap_or_default() {
        return Err(format!("read at {offset}: wrong bytes"));
    }
    black_box(got);
    Ok(())
}

/// A read through `read_with` (the lent slice, as the FUSE front-end answers), checked.
fn read_lent(fs: &dyn ReadOnlyFs, ino: u64, offset: u64, size: u32, want: &[u8]) -> BenchResult<()> {
    let end = (offset as usize + size as usize).min(want.len());
    let want = want.get(offset as usize..end).unwrap_or_default();
    let mut same = false;
    fs.read_with(ino, offset, size, &mut |got| same = black_box(got) == want).map_err(|e| format!("read: {e}"))?;
    if same { Ok(()) } else { Err(format!("read_with at {offset}: wrong bytes")) }
}

/// How a row reads: its label and the call.
type ReadFn = fn(&dyn ReadOnlyFs, u64, u64, u32, &[u8]) -> BenchResult<()>;
const READS: [(&str, ReadFn); 2] = [("`read` (Vec)", read_vec), ("`read_with` (lent)", read_lent)];

fn run_format(name: &str, blob: &'static [u8], body: &[u8]) -> BenchResult<()> {
    // Hits: chunk 0 and 1 decoded before counting.
    let (fs, ino) = mount(blob)?;
    read_vec(&*fs, ino, 0, 4096, body)?;
    read_vec(&*fs, ino, CHUNK as u64, 4096, body)?;
    for (what, size, at) in [
        ("hit, 4 KiB in one chunk", 4096u32, 8192u64),
        ("hit, 128 KiB in one chunk", 128 << 10, 1 << 20),
        ("hit, 128 KiB across two chunks", 128 << 10, CHUNK as u64 - (64 << 10)),
    ] {
        for (how, read) in READS {
            let mut row = Row::new(format!("{name}: {what}, {how}"));
            for _ in 0..HIT_READS {
                row.measure(|| read(&*fs, ino, at, size, body))?;
            }
            row.print();
        }
    }
    // Misses: a fresh filesystem per round, each chunk but the first missed once.
    for (how, read) in READS {
        let mut row = Row::new(format!("{name}: miss, 4 KiB at a chunk's start, {how}"));
        for _ in 0..MISS_ROUNDS {
            let (fs, ino) = mount(blob)?;
            read(&*fs, ino, 0, 4096, body)?;
            for c in 1..CHUNKS {
                row.measure(|| read(&*fs, ino, (c * CHUNK) as u64, 4096, body))?;
            }
        }
        row.print();
    }
    // Misses in a full cache, as in a long-running mount: a cache of two chunks, read round
    // and round, so every read misses and evicts the least recently used chunk. One round
    // first, untimed, so the cache's tables have grown to what it holds.
    for (how, read) in READS {
        let mut row = Row::new(format!("{name}: miss in a full cache (each evicts one), {how}"));
        let (fs, ino) = mount_with_cache(blob, 2 * CHUNK as u64 + (64 << 10))?;
        for c in 0..CHUNKS {
            read(&*fs, ino, (c * CHUNK) as u64, 4096, body)?;
        }
        for _ in 0..MISS_ROUNDS {
            for c in 0..CHUNKS {
                row.measure(|| read(&*fs, ino, (c * CHUNK) as u64, 4096, body))?;
            }
        }
        row.print();
    }
    // The decode alone, as the cache loads a chunk: a fresh buffer per chunk, and a fresh
    // `Scratch` (`read_chunk`) or one kept from chunk to chunk, as crfs-vfs's threads keep theirs.
    let layer = Layer::open(blob).map_err(|e| format!("open: {e}"))?;
    let file = file_of(&layer)?;
    for kept in [false, true] {
        let how = if kept { ", kept `Scratch` (`Layer::read_chunk_with`)" } else { " (`Layer::read_chunk`)" };
        let mut row = Row::new(format!("{name}: miss, decode + verify alone{how}"));
        let mut scratch = crfs_core::Scratch::default();
        layer.read_chunk_with(file, 0, true, &mut Vec::new(), &mut scratch).map_err(|e| format!("chunk 0: {e}"))?;
        for _ in 0..MISS_ROUNDS {
            for c in 1..CHUNKS {
                row.measure(|| {
                    let mut out = Vec::new();
                    let decoded = if kept {
                        layer.read_chunk_with(file, c, true, &mut out, &mut scratch)
                    } else {
                        layer.read_chunk(file, c, true, &mut out)
                    };
                    decoded.map_err(|e| format!("chunk {c}: {e}"))?;
                    if out.len() != CHUNK {
                        return Err(format!("chunk {c}: {} bytes", out.len()));
                    }
                    black_box(out);
                    Ok(())
                })?;
            }
        }
        row.print();
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a filter, if any, is ignored: this runs in about a minute.
    let run = || -> BenchResult<()> {
        let body = Rng(0x9E37_79B9_7F4A_7C15).content(CHUNK * CHUNKS, false);
        let gzip = blob(Format::Estargz, 9, &body)?;
        let zstd = blob(Format::ZstdChunked, 3, &body)?;
        println!(
            "Allocations per read through `dyn ReadOnlyFs` (LayerFs, cache holds every chunk, read-ahead off); \
             one file of {CHUNKS} chunks of 4 MiB; gzip blob {} bytes, zstd blob {} bytes.\n",
            gzip.len(),
            zstd.len()
        );
        println!("| read | reads | allocations / read | of which zero-filled | bytes allocated / read | median µs |");
        println!("|---|---|---|---|---|---|");
        run_format("gzip -9", gzip, &body)?;
        run_format("zstd -3", zstd, &body)?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alloc bench: {e}");
            ExitCode::FAILURE
        }
    }
}
