//! `crfs-bench-randread [--reads N] [--size BYTES] [--seed S] LIST DIR`: random reads in big
//! files under DIR, any filesystem (a crfs or squashfuse or ratarmount mount, or a local tree).
//!
//! LIST has one `SIZE<TAB>PATH` line per file (PATH relative to DIR), as
//! `find DIR -type f -size +1M -printf '%s\t%P\n' | sort -k2` writes it; the harness makes it
//! once from the extracted tree so every filesystem gets the same reads. The program opens every
//! listed file, then makes `--reads` (default 1000) `pread`s of `--size` bytes (default 4096) at
//! block-aligned offsets chosen by a fixed xorshift generator (`--seed`), and prints the count of
//! reads and bytes and an FNV-1a digest of all bytes read: equal on every filesystem that serves
//! the same data, which the harness checks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crfs_benches::{Args, BenchResult, run};

const USAGE: &str = "crfs-bench-randread [--reads N] [--size BYTES] [--seed S] LIST DIR";

fn main() -> std::process::ExitCode {
    run("crfs-bench-randread", || {
        let args = Args::parse(&["reads", "size", "seed"])?;
        args.only(&["reads", "size", "seed"])?;
        let [list, dir] = args.positional() else {
            return Err(format!("usage: {USAGE}"));
        };
        let reads = args.number("reads", 1000)?;
        let size = args.number("size", 4096)?;
        if size == 0 || size > 1 << 20 {
            return Err("--size must be 1 to 1048576".into());
        }
        let mut rng = args.number("seed", 0x5EED)?.max(1);
        let files = open_listed(Path::new(list), Path::new(dir), size)?;
        if files.is_empty() {
            return Err(format!("{list}: no file of at least {size} bytes"));
        }
        let mut buf = vec![0u8; size as usize];
        let (mut bytes, mut digest) = (0u64, Fnv::default());
        for _ in 0..reads {
            let (file, path, len) = &files[(xorshift(&mut rng) % files.len() as u64) as usize];
            let offset = xorshift(&mut rng) % (len / size) * size;
            file.read_exact_at(&mut buf, offset).map_err(|e| format!("{}: at {offset}: {e}", path.display()))?;
            digest.add(&buf);
            bytes += size;
        }
        println!("reads {reads} bytes {bytes} fnv1a {:016x}", digest.0);
        Ok(())
    })
}

/// Opens the files of LIST that hold at least one whole read, in LIST order.
fn open_listed(list: &Path, dir: &Path, size: u64) -> BenchResult<Vec<(File, PathBuf, u64)>> {
    let text = std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?;
    let mut files = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let (len, rel) = line.split_once('\t').ok_or_else(|| format!("{}:{}: no tab", list.display(), n + 1))?;
        let len: u64 = len.parse().map_err(|_| format!("{}:{}: bad size", list.display(), n + 1))?;
        if len < size {
            continue;
        }
        let path = dir.join(rel);
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push((file, path, len));
    }
    Ok(files)
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// 64-bit FNV-1a over everything read.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
