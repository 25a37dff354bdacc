//! Criterion micro-benchmarks of crfs's hot paths, on blobs built in-process by the core
//! writer (no network, no corpus on disk): footer parse, TOC open + index of 50,000 entries,
//! chunk inflate (4 MiB, gzip and zstd), path lookup, readdir of a 5,000-entry directory
//! through `crfs_vfs::LayerFs`, writer throughput (`crfs_convert`), and the vfs chunk cache
//! against moka's own loader.
//!
//! `cargo bench -p crfs-benches` runs them all in a few minutes (small sample sizes); pass a
//! filter to run some: `cargo bench -p crfs-benches -- inflate`.
//!
//! Every measured operation is first run once outside the timing loop and its result checked
//! (sizes, counts, found nodes), so a benchmark cannot time a failing call.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crfs_benches::Rng;
use crfs_core::footer::{MAX_FOOTER_LEN, parse_footer};
use crfs_core::writer::{Options, convert_to_vec};
use crfs_core::{Format, Index, Kind, Layer, NodeId};
use crfs_testkit::{TarBuilder, TarEntry};
use crfs_vfs::{ChunkData, ChunkKey, LayerFs, ROOT_INO};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};

type BenchResult<T> = Result<T, String>;

/// One benchmark group: checks its operation once, then times it.
type Bench = fn(&mut Criterion, &Fixtures) -> BenchResult<()>;

/// Directories and files per directory of the big-TOC layer: 500 + 500 × 99 = 50,000 entries.
const BIG_DIRS: usize = 500;
const BIG_FILES_PER_DIR: usize = 99;
/// Entries of the one big directory readdir lists.
const WIDE_DIR_FILES: usize = 5_000;
/// The inflate benchmarks' chunk: 4 MiB, the writers' default chunk size.
const CHUNK: usize = 4 << 20;
/// Bytes of tar the writer benchmarks convert.
const WRITER_INPUT: usize = 24 << 20;

/// Everything the benchmarks read, built once before any is timed.
struct Fixtures {
    /// gzip eStargz of 50,000 entries (level 1: the TOC is what matters here).
    big_toc: Vec<u8>,
    /// zstd:chunked of the same tar.
    big_toc_zstd: Vec<u8>,
    /// One 4 MiB file in one chunk, gzip level 9 (the reference's default).
    chunk_gzip: Vec<u8>,
    /// The same file, zstd:chunked level 3.
    chunk_zstd: Vec<u8>,
    /// A directory `wide/` of 5,000 files.
    wide_dir: Vec<u8>,
    /// A tar on disk for the writer (removed on drop).
    writer_tar: TempFile,
    writer_tar_len: u64,
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_blob(tar: &[u8], format: Format, level: u8) -> BenchResult<Vec<u8>> {
    let options = Options { format, level, ..Options::default() };
    convert_to_vec(&tar, &options).map(|(blob, _)| blob).map_err(|e| format!("writer: {e}"))
}

impl Fixtures {
    fn build() -> BenchResult<Fixtures> {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

        let mut tar = TarBuilder::default();
        for d in 0..BIG_DIRS {
            tar.add(&format!("d{d:04}/"), TarEntry::Dir, 0o755, 1_700_000_000);
            for f in 0..BIG_FILES_PER_DIR {
                let len = 16 + rng.below(240) as usize;
                let body = rng.content(len, false);
                tar.add(&format!("d{d:04}/f{f:04}.py"), TarEntry::File(&body), 0o644, 1_700_000_000);
            }
        }
        let big = tar.finish();
        let big_toc = write_blob(&big, Format::Estargz, 1)?;
        let big_toc_zstd = write_blob(&big, Format::ZstdChunked, 1)?;

        let body = rng.content(CHUNK, true);
        let one = TarBuilder::default().add("big.bin", TarEntry::File(&body), 0o644, 1_700_000_000).finish();
        let chunk_gzip = write_blob(&one, Format::Estargz, 9)?;
        let chunk_zstd = write_blob(&one, Format::ZstdChunked, 3)?;

        let mut tar = TarBuilder::default();
        tar.add("wide/", TarEntry::Dir, 0o755, 1_700_000_000);
        for f in 0..WIDE_DIR_FILES {
            tar.add(&format!("wide/file-{f:05}.txt"), TarEntry::File(b"x\n"), 0o644, 1_700_000_000);
        }
        let wide_dir = write_blob(&tar.finish(), Format::Estargz, 1)?;

        // Writer input: a mixed tree, mostly small text files plus a few big half-random ones.
        let mut tar = TarBuilder::default();
        let mut total = 0usize;
        let mut i = 0usize;
        while total < WRITER_INPUT {
            let len = if i % 50 == 49 { 1 << 20 } else { 200 + rng.below(30_000) as usize };
            let body = rng.content(len, i.is_multiple_of(3));
            tar.add(&format!("w/{:03}/f{i:06}", i / 200), TarEntry::File(&body), 0o644, 1_700_000_000);
            total += len;
            i += 1;
        }
        let writer_bytes = tar.finish();
        let path = std::env::temp_dir().join(format!("crfs-bench-writer-{}.tar", std::process::id()));
        std::fs::write(&path, &writer_bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Fixtures {
            big_toc,
            big_toc_zstd,
            chunk_gzip,
            chunk_zstd,
            wide_dir,
            writer_tar: TempFile(path),
            writer_tar_len: writer_bytes.len() as u64,
        })
    }
}

fn open(blob: &[u8]) -> BenchResult<Layer<&[u8]>> {
    Layer::open(blob).map_err(|e| format!("open: {e}"))
}

/// Fails unless `got` equals `want`: the check run before a benchmark is timed.
fn check<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> BenchResult<()> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}")) }
}

/// Small samples and short windows: the whole suite runs in a few minutes.
fn quick<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g
}

fn tail(blob: &[u8]) -> &[u8] {
    &blob[blob.len().saturating_sub(MAX_FOOTER_LEN as usize)..]
}

fn bench_footer(c: &mut Criterion, fx: &Fixtures) -> BenchResult<()> {
    for blob in [&fx.big_toc, &fx.big_toc_zstd] {
        let footer = parse_footer(tail(blob), blob.len() as u64).map_err(|e| format!("footer: {e}"))?;
        check("footer toc offset below blob end", footer.toc_offset < blob.len() as u64, true)?;
    }
    let mut g = quick(c, "footer");
    g.bench_function("parse estargz", |b| {
        b.iter(|| parse_footer(black_box(tail(&fx.big_toc)), fx.big_toc.len() as u64))
    });
    g.bench_function("parse zstd:chunked", |b| {
        b.iter(|| parse_footer(black_box(tail(&fx.big_toc_zstd)), fx.big_toc_zstd.len() as u64))
    });
    g.finish();
    Ok(())
}

fn bench_open(c: &mut Criterion, fx: &Fixtures) -> BenchResult<()> {
    let entries = 1 + BIG_DIRS * (1 + BIG_FILES_PER_DIR); // and the root
    check("estargz index nodes", open(&fx.big_toc)?.index().len(), entries)?;
    check("zstd:chunked index nodes", open(&fx.big_toc_zstd)?.index().len(), entries)?;
    let mut g = quick(c, "open+index 50k entries");
    g.throughput(Throughput::Elements(entries as u64));
    // With helper threads, as crfs's commands open layers.
    let threads = crfs_core::OpenOptions { threads: true, ..Default::default() };
    g.bench_function("estargz", |b| b.iter(|| Layer::open_with(black_box(&fx.big_toc[..]), &threads)));
    g.bench_function("zstd:chunked", |b| b.iter(|| Layer::open_with(black_box(&fx.big_toc_zstd[..]), &threads)));
    g.finish();
    Ok(())
}

fn first_file(index: &Index) -> BenchResult<NodeId> {
    (0..index.len())
        .filter_map(|i| NodeId::try_from(i).ok())
        .find(|&id| index.node(id).is_some_and(|n| n.kind() == Kind::Reg))
        .ok_or_else(|| "no regular file".to_string())
}

fn bench_inflate(c: &mut Criterion, fx: &Fixtures) -> BenchResult<()> {
    let gzip = open(&fx.chunk_gzip)?;
    let zstd = open(&fx.chunk_zstd)?;
    let (gf, zf) = (first_file(gzip.index())?, first_file(zstd.index())?);
    let mut out = Vec::new();
    for (name, layer, file) in [("gzip", &gzip, gf), ("zstd", &zstd, zf)] {
        check(&format!("{name} chunks"), layer.index().chunks(file).len(), 1)?;
        layer.read_chunk(file, 0, true, &mut out).map_err(|e| format!("{name} chunk: {e}"))?;
        check(&format!("{name} chunk bytes"), out.len(), CHUNK)?;
    }
    let mut g = quick(c, "inflate 4 MiB chunk");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("gzip -9", |b| b.iter(|| gzip.read_chunk(gf, 0, false, black_box(&mut out))));
    g.bench_function("gzip -9 + sha256 check", |b| b.iter(|| gzip.read_chunk(gf, 0, true, black_box(&mut out))));
    g.bench_function("zstd -3", |b| b.iter(|| zstd.read_chunk(zf, 0, false, black_box(&mut out))));
    g.bench_function("zstd -3 + sha256 check", |b| b.iter(|| zstd.read_chunk(zf, 0, true, black_box(&mut out))));
    g.finish();
    Ok(())
}

fn bench_lookup(c: &mut Criterion, fx: &Fixtures) -> BenchResult<()> {
    let layer = open(&fx.big_toc)?;
    let index = layer.index();
    let hit: &[u8] = b"d0250/f0050.py";
    let miss: &[u8] = b"d0250/nonexistent.py";
    let found = index.lookup_path(hit).ok_or("lookup_path: hit not found")?;
    check("found path", index.path(found), hit.to_vec())?;
    check("miss", index.lookup_path(miss), None)?;
    let mut g = quick(c, "lookup in 50k entries");
    g.bench_function("path hit (2 components)", |b| b.iter(|| index.lookup_path(black_box(hit))));
    g.bench_function("path miss", |b| b.iter(|| index.lookup_path(black_box(miss))));
    g.finish();
    Ok(())
}

fn bench_readdir(c: &mut Criterion, fx: &Fixtures) -> BenchResult<()> {
    let layer = Layer::open(fx.wide_dir.clone()).map_err(|e| format!("open: {e}"))?;
    let fs = LayerFs::new(Arc::new(layer), crfs_vfs::Options::default());
    let dir = fs.lookup(ROOT_INO, b"wide").map_err(|e| format!("lookup wide: {e:?}"))?.ino;
    let list_all = || {
        let mut n = 0usize;
        let r = fs.readdir(dir, 0, |_| {
            n += 1;
            true
        });
        r.map(|()| n)
    };
    // FUSE-like: the kernel's buffer holds some entries; each call resumes at the last offset.
    let list_paged = |page: usize| {
        let (mut n, mut offset) = (0usize, 0u64);
        loop {
            let mut in_page = 0usize;
            fs.readdir(dir, offset, |e| {
                if in_page == page {
                    return false;
                }
                in_page += 1;
                offset = e.next_offset;
                true
            })?;
            n += in_page;
            if in_page < page {
                return Ok::<usize, crfs_vfs::FsError>(n);
            }
        }
    };
    let want = WIDE_DIR_FILES + 2; // and "." and ".."
    check("readdir entries", list_all().map_err(|e| format!("{e:?}"))?, want)?;
    check("paged readdir entries", list_paged(128).map_err(|e| format!("{e:?}"))?, want)?;
    let mut g = quick(c, "readdir 5000 entries (vfs LayerFs)");
    g.throughput(Throughput::Elements(want as u64));
    g.bench_function("one call", |b| b.iter(|| black_box(list_all())));
    g.bench_function("pages of 128 (FUSE-like)", |b| b.iter(|| black_box(list_paged(128))));
    g.finish();
    Ok(())
}

/// Bytes of one decoded chunk in the chunk-cache benchmarks: small, so that what is timed is the
/// cache and not the copy a real decode makes.
const CACHED_CHUNK: usize = 4096;
/// The chunk caches' bound in those benchmarks (16,384 chunks of 4 KiB).
const CHUNK_CACHE_BYTES: u64 = 64 << 20;
/// Threads that all want the same chunks, one after another, in the contended benchmark.
const CONTENDING_THREADS: usize = 4;

/// A chunk cache as the benchmarks drive it: crfs-vfs's, or moka's own loader for comparison.
trait ChunkLoader: Sync {
    /// The chunk at `key`, from the cache or from `load` (once for concurrent misses).
    fn get_or_load(&self, key: ChunkKey, load: &(dyn Fn() -> Arc<ChunkData> + Sync)) -> BenchResult<Arc<ChunkData>>;
}

/// What the mounts use: `crfs_vfs::ChunkCache` (crfs-vfs's own least-recently-used store).
impl ChunkLoader for crfs_vfs::ChunkCache {
    fn get_or_load(&self, key: ChunkKey, load: &(dyn Fn() -> Arc<ChunkData> + Sync)) -> BenchResult<Arc<ChunkData>> {
        crfs_vfs::ChunkCache::get_or_load(self, key, CACHED_CHUNK as u64, || Ok(load())).map_err(|e| e.to_string())
    }
}

/// The peer: moka 0.12's `try_get_with`, which crfs-vfs used before it was found to leak.
impl ChunkLoader for moka::sync::Cache<ChunkKey, Arc<ChunkData>> {
    fn get_or_load(&self, key: ChunkKey, load: &(dyn Fn() -> Arc<ChunkData> + Sync)) -> BenchResult<Arc<ChunkData>> {
        self.try_get_with(key, || Ok::<_, crfs_core::Error>(load())).map_err(|e| e.to_string())
    }
}

/// A freshly decoded chunk, as a load hands it to the cache.
fn decoded_chunk() -> Arc<ChunkData> {
    Arc::new(ChunkData::from(vec![7u8; CACHED_CHUNK]))
}

/// The `i`th distinct chunk key: 1,024 chunks per file node.
fn chunk_key(i: u64) -> ChunkKey {
    let node = NodeId::try_from(i / 1024).unwrap_or(NodeId::MAX);
    (0, node, (i % 1024) as u32)
}

/// `threads` threads ask for chunks `first..first + per_thread`, in order, each of them; returns
/// how long until all are done and how many loads ran.
fn contend(cache: &dyn ChunkLoader, threads: usize, first: u64, per_thread: u64) -> BenchResult<(Duration, usize)> {
    let loads = AtomicUsize::new(0);
    let load = || {
        loads.fetch_add(1, Ordering::Relaxed);
        decoded_chunk()
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    (first..first + per_thread).try_for_each(|i| {
                        let chunk = cache.get_or_load(chunk_key(i), &load)?;
                        check("chunk length", chunk.len(), CACHED_CHUNK)
                    })
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| "a reader thread panicked".to_string())?)
    })?;
    Ok((start.elapsed(), loads.into_inner()))
}

fn bench_chunk_cache(c: &mut Criterion, _fx: &Fixtures) -> BenchResult<()> {
    let ours = crfs_vfs::new_chunk_cache(CHUNK_CACHE_BYTES);
    // The same bound and weights as ours, in moka, driven through moka's own loader.
    let moka: moka::sync::Cache<ChunkKey, Arc<ChunkData>> = moka::sync::Cache::builder()
        .max_capacity(CHUNK_CACHE_BYTES)
        .weigher(|_, v: &Arc<ChunkData>| u32::try_from(v.weight()).unwrap_or(u32::MAX))
        .build();
    let caches: [(&str, &dyn ChunkLoader); 2] = [("crfs-vfs ChunkCache", &ours), ("moka try_get_with", &moka)];
    let load = decoded_chunk;
    // Each cache loads each of 1,000 chunks once, however many threads want it at the time.
    for (name, cache) in caches {
        let (_, loads) = contend(cache, CONTENDING_THREADS, 0, 1_000)?;
        check(&format!("{name}: loads for 1,000 chunks wanted by {CONTENDING_THREADS} threads"), loads, 1_000)?;
        check(
            &format!("{name}: a hit"),
            cache.get_or_load(chunk_key(0), &|| Arc::new(ChunkData::from(Vec::new())))?.len(),
            CACHED_CHUNK,
        )?;
    }
    // Fresh keys for every timed miss, in both caches, never reused.
    let next_key = AtomicU64::new(1 << 20);
    // A contended run that fails while timed is reported after the group (criterion's timing
    // closure cannot return an error).
    let failed = OnceLock::new();
    let mut g = quick(c, "chunk cache (4 KiB chunks, 64 MiB bound)");
    for (name, cache) in caches {
        g.bench_function(format!("hit: {name}"), |b| b.iter(|| cache.get_or_load(black_box(chunk_key(0)), &load)));
        g.bench_function(format!("miss + load + insert: {name}"), |b| {
            b.iter(|| cache.get_or_load(chunk_key(next_key.fetch_add(1, Ordering::Relaxed)), &load))
        });
        // One iteration: one new chunk wanted by every thread (one load, the others wait or hit).
        g.bench_function(format!("{CONTENDING_THREADS} threads want each new chunk: {name}"), |b| {
            b.iter_custom(|iters| {
                let first = next_key.fetch_add(iters, Ordering::Relaxed);
                match contend(cache, CONTENDING_THREADS, first, iters) {
                    Ok((took, _)) => took,
                    Err(e) => {
                        let _ = failed.set(e);
                        Duration::ZERO
                    }
                }
            })
        });
    }
    g.finish();
    match failed.into_inner() {
        Some(e) => Err(format!("while timed: {e}")),
        None => Ok(()),
    }
}

fn bench_writer(c: &mut Criterion, fx: &Fixtures) -> BenchResult<()> {
    let input = fx.writer_tar.0.to_str().ok_or("temp path is not UTF-8")?;
    let convert = |threads: usize, format: Format, level: u8| {
        let settings = crfs_convert::Settings {
            options: Options { format, level, ..Options::default() },
            threads,
            progress: None,
        };
        crfs_convert::convert(input, crfs_convert::Output::Stream(&mut std::io::sink()), &settings)
    };
    let summary = convert(1, Format::Estargz, 9).map_err(|e| format!("convert: {e}"))?;
    check("blob smaller than its tar", summary.blob_size < fx.writer_tar_len, true)?;
    let mut g = quick(c, "writer (crfs-convert), 24 MiB tar");
    g.throughput(Throughput::Bytes(fx.writer_tar_len));
    // Each conversion takes about a second: flat sampling, one conversion per sample.
    g.sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(8));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, threads, format, level) in [
        ("gzip -9, 1 thread".to_string(), 1, Format::Estargz, 9),
        (format!("gzip -9, {cores} threads"), 0, Format::Estargz, 9),
        ("gzip -6, 1 thread".to_string(), 1, Format::Estargz, 6),
        ("zstd -3, 1 thread".to_string(), 1, Format::ZstdChunked, 3),
    ] {
        g.bench_function(name, |b| b.iter(|| convert(threads, format, level)));
    }
    g.finish();
    Ok(())
}

fn main() -> ExitCode {
    let fixtures = match Fixtures::build() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("micro: building the fixtures: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut c = Criterion::default().configure_from_args();
    let benches: [(&str, Bench); 7] = [
        ("footer", bench_footer),
        ("open", bench_open),
        ("inflate", bench_inflate),
        ("lookup", bench_lookup),
        ("readdir", bench_readdir),
        ("writer", bench_writer),
        ("chunk cache", bench_chunk_cache),
    ];
    for (name, bench) in benches {
        if let Err(e) = bench(&mut c, &fixtures) {
            eprintln!("micro: {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    c.final_summary();
    ExitCode::SUCCESS
}
