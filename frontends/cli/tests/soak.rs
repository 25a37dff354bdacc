//! Mount soak (issue #9): a real `crfs mount` with a small chunk cache, 8 reader threads reading
//! random ranges of random files, every byte compared with the same tree on disk, the crfs
//! process's RSS sampled throughout.
//!
//! Pass: no read error or mismatch, and after warm-up (the first quarter of the run, at least
//! 10 s) RSS never rises above its warm-up maximum by more than the cache bound.
//!
//! By default (CI) it runs 20 s on a generated layer of 96 files (4 KiB to 1 MiB, 64 KiB
//! chunks) with a 4 MiB cache: far more data than the cache holds, so chunks are evicted and
//! decoded again all along. `benches/soak.sh` runs it for 10 minutes on a real image layer
//! through these variables: `CRFS_SOAK_SECS`, `CRFS_SOAK_BLOB` and `CRFS_SOAK_TREE` (the
//! blob and its extracted tree), `CRFS_SOAK_CACHE` (bytes), `CRFS_SOAK_SAMPLE` (RSS sampling
//! period, seconds), `CRFS_SOAK_REPORT` (a file to append the Markdown report to).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod mounted;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crfs_testkit::{TarBuilder, TarEntry, in_ci, scratch_dir};
use mounted::Mounted;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

const READERS: usize = 8;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small xorshift generator: deterministic per thread, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A layer of files of mixed sizes and compressibility, converted by `crfs convert`; returns
/// the blob and the same files written out as a tree.
fn generated_layer(dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    let mut tar = TarBuilder::default();
    tar.add("d", TarEntry::Dir, 0o755, 0);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..96 {
        let len = [4 << 10, 100 << 10, 300 << 10, 1 << 20][i % 4] + i * 37;
        let data: Vec<u8> = (0..len).map(|j| if i % 3 == 0 { (j / 64) as u8 } else { rng.next() as u8 }).collect();
        let name = format!("d/f{i:03}");
        fs::write(tree.join(&name), &data).unwrap();
        tar.add(&name, TarEntry::File(&data), 0o644, 0);
    }
    let tar_path = dir.join("layer.tar");
    fs::write(&tar_path, tar.finish()).unwrap();
    let blob = dir.join("layer.esgz");
    let out = Command::new(env!("CARGO_BIN_EXE_crfs"))
        .args(["convert", "--chunk-size", "64K", "--level", "1"])
        .arg(&tar_path)
        .arg(&blob)
        .output()
        .unwrap();
    assert!(out.status.success(), "convert: {}", String::from_utf8_lossy(&out.stderr));
    (blob, tree)
}

fn regular_files(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push((e.path().strip_prefix(root).unwrap().to_path_buf(), e.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Totals {
    reads: AtomicU64,
    bytes: AtomicU64,
    errors: Mutex<Vec<String>>,
}

fn reader(seed: u64, mnt: &Path, tree: &Path, files: &[(PathBuf, u64)], stop: Instant, totals: &Totals) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    while Instant::now() < stop {
        let (rel, size) = &files[rng.below(files.len() as u64) as usize];
        let (off, len) = if *size > 0 && rng.below(10) < 9 {
            let off = rng.below(*size);
            (off, (size - off).min([1, 512, 4096, 65536, 1 << 20][rng.below(5) as usize]))
        } else {
            (0, *size)
        };
        let read = |root: &Path, buf: &mut Vec<u8>| -> std::io::Result<()> {
            buf.resize(len as usize, 0);
            let f = fs::File::open(root.join(rel))?;
            f.read_exact_at(buf, off)?;
            if root == mnt {
                // Drop the pages from the kernel's cache, so that reads keep reaching crfs
                // rather than being answered by the page cache (the mount says the tree
                // never changes, so the kernel would otherwise keep them).
                let _ = posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
            }
            Ok(())
        };
        let outcome = read(mnt, &mut got).and_then(|()| read(tree, &mut want));
        let error = match outcome {
            Err(e) => Some(format!("{} [{off}, +{len}): {e}", rel.display())),
            Ok(()) if got != want => Some(format!("{} [{off}, +{len}): bytes differ", rel.display())),
            Ok(()) => None,
        };
        if let Some(e) = error {
            totals.errors.lock().unwrap().push(e);
        }
        totals.reads.fetch_add(1, Ordering::Relaxed);
        totals.bytes.fetch_add(len, Ordering::Relaxed);
    }
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
fn eight_readers_on_a_small_cache() {
    let ok = Path::new("/dev/fuse").exists() && Command::new("fusermount3").arg("-V").output().is_ok();
    assert!(ok || !in_ci(), "CI needs /dev/fuse and fuse3 for the soak");
    if !ok {
        eprintln!("skipping: no FUSE here");
        return;
    }
    let secs: u64 = env_or("CRFS_SOAK_SECS", 20);
    let sample = Duration::from_secs(env_or("CRFS_SOAK_SAMPLE", 1));
    let scratch = scratch_dir("cli-soak");
    let (blob, tree, cache) = match (std::env::var_os("CRFS_SOAK_BLOB"), std::env::var_os("CRFS_SOAK_TREE")) {
        (Some(b), Some(t)) => (PathBuf::from(b), PathBuf::from(t), env_or("CRFS_SOAK_CACHE", 16u64 << 20)),
        _ => {
            let (b, t) = generated_layer(&scratch);
            (b, t, env_or("CRFS_SOAK_CACHE", 4u64 << 20))
        }
    };
    let files = regular_files(&tree);
    assert!(!files.is_empty(), "no files under {}", tree.display());

    let mnt = scratch.join("mnt");
    let cache_arg = cache.to_string();
    let mut mount = Mounted::new(&["--cache-size", &cache_arg, blob.to_str().unwrap()], &mnt);
    let pid = mount.0.id();

    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let stop = start + Duration::from_secs(secs);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..READERS as u64)
            .map(|i| {
                let (mnt, tree, files, totals) = (&mnt, &tree, &files, &totals);
                s.spawn(move || reader(i + 1, mnt, tree, files, stop, totals))
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) {
            samples.push((start.elapsed().as_secs_f64(), rss_kib(pid)));
            std::thread::sleep(
                sample.min(stop.saturating_duration_since(Instant::now()).max(Duration::from_millis(50))),
            );
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    assert!(mount.0.try_wait().unwrap().is_none(), "crfs mount died during the soak");
    drop(mount);

    let warm_up = (secs as f64 / 4.0).max(10.0);
    let all: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let warm: Vec<u64> = samples.iter().filter(|s| s.0 < warm_up).map(|s| s.1).collect();
    let after: Vec<u64> = samples.iter().filter(|s| s.0 >= warm_up).map(|s| s.1).collect();
    let baseline = *warm.iter().max().unwrap();
    let growth_kib = after.iter().max().unwrap().saturating_sub(baseline);
    let errors = totals.errors.lock().unwrap();
    let (reads, bytes) = (totals.reads.load(Ordering::Relaxed), totals.bytes.load(Ordering::Relaxed));
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    let step = (samples.len() / 10).max(1);
    let pass = errors.is_empty() && growth_kib * 1024 <= cache;
    let report = format!(
        "## Soak: {blob}, {READERS} readers, {secs} s, --cache-size {cache_mib} MiB\n\n\
         - files: {files}; reads: {reads}; bytes read: {bytes} ({rate:.1} MB/s); errors: {errs}\n\
         - RSS MiB over the run ({n} samples every {sample:?}): min {min}, median {med}, max {max}\n\
         - RSS MiB after warm-up (t >= {warm_up:.0} s): min {amin}, median {amed}, max {amax}; \
         rise over the warm-up maximum {wmax}: {growth} (bound: the cache, {cache_mib} MiB)\n\
         - RSS MiB at t (s): {series}\n\
         - result: {result}\n",
        blob = blob.file_name().unwrap().to_string_lossy(),
        cache_mib = cache >> 20,
        files = files.len(),
        rate = bytes as f64 / elapsed / 1e6,
        errs = errors.len(),
        n = all.len(),
        min = mib(*all.iter().min().unwrap()),
        med = mib(median(&all)),
        max = mib(*all.iter().max().unwrap()),
        amin = mib(*after.iter().min().unwrap()),
        amed = mib(median(&after)),
        amax = mib(*after.iter().max().unwrap()),
        wmax = mib(baseline),
        growth = mib(growth_kib),
        series =
            samples.iter().step_by(step).map(|(t, r)| format!("{t:.0}: {}", mib(*r))).collect::<Vec<_>>().join(", "),
        result = if pass { "PASS" } else { "FAIL" },
    );
    eprintln!("{report}");
    if let Some(path) = std::env::var_os("CRFS_SOAK_REPORT") {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(f, "{report}").unwrap();
    }
    assert!(errors.is_empty(), "{} read errors, first: {:?}", errors.len(), &errors[..errors.len().min(5)]);
    assert!(reads > 0, "no reads");
    assert!(growth_kib * 1024 <= cache, "RSS grew by {growth_kib} KiB after warm-up, more than the cache");
}
