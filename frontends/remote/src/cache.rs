//! The on-disk cache of fetched compressed ranges, keyed by blob digest.
//!
//! Layout under the cache directory:
//!
//! | path | what |
//! |---|---|
//! | `tmp/` | files being written; renamed into place when complete |
//! | `blobs/<algorithm>/<hex>/<start>-<end>` | bytes `[start, end)` of that blob, exactly `end - start` long |
//! | `converted/<algorithm>/<hex>` | the locally indexed eStargz copy of a plain (not lazy) layer |
//! | `refs/<sha256 of NAME>` | `DIGEST\nNAME\n`: what tag NAME (`REGISTRY/REPO:TAG`) last resolved to |
//!
//! Manifests and indexes are whole blobs (`0-<len>`), checked against their digest when read
//! back, so an image by digest resolves without the network, and an image by tag can fall back
//! to its last known digest when the registry cannot be reached. Converted copies count towards
//! the bound and are evicted like ranges (a mount holding one open keeps reading its inode). The
//! `refs/` pointers, a hundred bytes per tag ever resolved, are not counted.
//!
//! Safe across processes and restarts: an entry appears only by `rename` of a complete file, so
//! readers see a whole entry or none; an entry that vanishes between listing and opening
//! (evicted by another process) is a miss; an entry whose length is wrong is ignored and
//! removed. Blobs are immutable and named by digest, so entries never go stale. The bound is
//! kept by deleting the least recently used entries (modification time, refreshed on hits)
//! once the total, counted by a scan at open and by this process's writes since, passes it.
//! The bytes are checked by the core above (TOC digest, chunk digests), like network bytes.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};

/// The cache. Shared by all the blobs of a `Remote`.
#[derive(Debug)]
pub struct DiskCache {
    root: PathBuf,
    max_bytes: u64,
    /// Bytes on disk as far as this process knows.
    total: AtomicU64,
    /// Per blob directory: known entries (start → end), and when the directory was last read.
    index: Mutex<HashMap<PathBuf, Known>>,
    seq: AtomicU64,
}

/// The directory of a blob digest, or `None` when the digest is not `algo:hex`.
fn blob_dir(root: &Path, digest: &str) -> Option<PathBuf> {
    let (algo, hex) = digest.split_once(':')?;
    let ok_algo = !algo.is_empty() && algo.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_hex = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (ok_algo && ok_hex).then(|| root.join("blobs").join(algo).join(hex))
}

#[derive(Debug, Default)]
struct Known {
    entries: BTreeMap<u64, u64>,
    scanned: Option<Instant>,
}

/// A blob directory is listed again on a miss at most this often (other processes' entries
/// show up within this delay; a miss costs a network fetch anyway, but not a listing each).
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// A read is served from at most this many entries; past that it is a miss.
const MAX_PIECES_PER_READ: usize = 64;

/// Records entry `[start, end)`; of two entries starting at the same offset the index keeps the
/// longer (the shorter is still on disk, counted, and evicted in its turn).
fn note_entry(map: &mut BTreeMap<u64, u64>, start: u64, end: u64) {
    let known = map.entry(start).or_insert(end);
    *known = (*known).max(end);
}

fn parse_entry(name: &str) -> Option<(u64, u64)> {
    let (a, b) = name.split_once('-')?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a < b).then_some((a, b))
}

impl DiskCache {
    /// Opens (creating) the cache directory and counts what it holds.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<DiskCache> {
        let err = |e: std::io::Error| Error::local(format!("cache directory {}: {e}", dir.display()));
        fs::create_dir_all(dir.join("tmp")).map_err(err)?;
        fs::create_dir_all(dir.join("blobs")).map_err(err)?;
        let cache = DiskCache {
            root: dir.to_path_buf(),
            max_bytes,
            total: AtomicU64::new(0),
            index: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        };
        let total = cache.entries().iter().map(|e| e.2).sum();
        cache.total.store(total, Ordering::Relaxed);
        Ok(cache)
    }

    /// Every entry, range or converted copy: path, modification time, size.
    fn entries(&self) -> Vec<(PathBuf, SystemTime, u64)> {
        fn push_file(out: &mut Vec<(PathBuf, SystemTime, u64)>, f: &fs::DirEntry) {
            if let Ok(m) = f.metadata()
                && m.is_file()
            {
                out.push((f.path(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            }
        }
        let mut out = Vec::new();
        if let Ok(algos) = fs::read_dir(self.root.join("blobs")) {
            for algo in algos.flatten() {
                let Ok(blobs) = fs::read_dir(algo.path()) else { continue };
                for blob in blobs.flatten() {
                    let Ok(files) = fs::read_dir(blob.path()) else { continue };
                    files.flatten().for_each(|f| push_file(&mut out, &f));
                }
            }
        }
        if let Ok(algos) = fs::read_dir(self.root.join("converted")) {
            for algo in algos.flatten() {
                let Ok(files) = fs::read_dir(algo.path()) else { continue };
                files.flatten().for_each(|f| push_file(&mut out, &f));
            }
        }
        out
    }

    fn rescan_blob(&self, dir: &Path) -> BTreeMap<u64, u64> {
        let mut map = BTreeMap::new();
        if let Ok(files) = fs::read_dir(dir) {
            for f in files.flatten() {
                if let Some((a, b)) = f.file_name().to_str().and_then(parse_entry) {
                    note_entry(&mut map, a, b);
                }
            }
        }
        map
    }

    /// Entries that together cover `[start, end)`, in order, or `None` if some byte is not
    /// held. Usually one entry covers the whole read; a read across the boundary of two
    /// neighbouring fetches takes two.
    fn covering(map: &BTreeMap<u64, u64>, start: u64, end: u64) -> Option<Vec<(u64, u64)>> {
        if let Some((&s, &e)) = map.range(..=start).rev().find(|&(_, &e)| e >= end) {
            return Some(vec![(s, e)]);
        }
        let mut out = Vec::new();
        let mut at = start;
        while at < end && out.len() < MAX_PIECES_PER_READ {
            let (&s, &e) = map.range(..=at).filter(|&(_, &e)| e > at).max_by_key(|&(_, &e)| e)?;
            out.push((s, e));
            at = e;
        }
        (at >= end).then_some(out)
    }

    /// The end of the bytes held from `start` on, through neighbouring entries, as far as this
    /// process knows (no directory listing; only the entries starting just before each point
    /// are looked at); `None` when `start` itself is not held.
    pub fn held_from(&self, digest: &str, start: u64) -> Option<u64> {
        let dir = blob_dir(&self.root, digest)?;
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let map = &index.get(&dir)?.entries;
        let mut at = start;
        for _ in 0..MAX_PIECES_PER_READ {
            // Entries overlapping `at` start just before it; looking further back costs a scan
            // per read, and missing a long entry only means fetching again what it holds.
            match map.range(..=at).rev().take(8).filter(|&(_, &e)| e > at).map(|(_, &e)| e).max() {
                Some(e) => at = e,
                None => break,
            }
        }
        (at > start).then_some(at)
    }

    /// The first held offset of blob `digest` in `[lo, hi)`, as far as this process knows.
    pub fn first_held_in(&self, digest: &str, lo: u64, hi: u64) -> Option<u64> {
        let dir = blob_dir(&self.root, digest)?;
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let map = &index.get(&dir)?.entries;
        if map.range(..lo).rev().take(8).any(|(_, &e)| e > lo) {
            return Some(lo);
        }
        map.range(lo..hi).next().map(|(&s, _)| s)
    }

    /// The end of the last held bytes of blob `digest` in `(lo, hi]`, as far as this process
    /// knows (entries starting just before `hi` only).
    pub fn last_held_end_in(&self, digest: &str, lo: u64, hi: u64) -> Option<u64> {
        let dir = blob_dir(&self.root, digest)?;
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let map = &index.get(&dir)?.entries;
        map.range(..hi).rev().take(8).map(|(_, &e)| e.min(hi)).filter(|&e| e > lo).max()
    }

    /// Bytes `[start, end)` of blob `digest`, if entries hold them.
    pub fn get(&self, digest: &str, start: u64, end: u64) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(end.checked_sub(start)?).ok()?];
        self.get_into(digest, start, &mut buf).then_some(buf)
    }

    /// Reads bytes `[start, start + out.len())` of blob `digest` into `out`; false if entries
    /// do not hold them all (`out` may then be partly written).
    pub fn get_into(&self, digest: &str, start: u64, out: &mut [u8]) -> bool {
        let Some(dir) = blob_dir(&self.root, digest) else { return false };
        let end = start.saturating_add(out.len() as u64);
        let (mut found, stale) = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            let known = index.get(&dir);
            (
                known.and_then(|k| Self::covering(&k.entries, start, end)),
                known.and_then(|k| k.scanned).is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL),
            )
        };
        if found.is_none() && stale {
            // Another process may have added entries since we last looked.
            let entries = self.rescan_blob(&dir);
            found = Self::covering(&entries, start, end);
            let known = Known { entries, scanned: Some(Instant::now()) };
            self.index.lock().unwrap_or_else(|p| p.into_inner()).insert(dir.clone(), known);
        }
        let Some(found) = found else { return false };
        found.into_iter().all(|(s, e)| {
            let (lo, hi) = (start.max(s), end.min(e));
            let piece = usize::try_from(lo - start)
                .ok()
                .zip(usize::try_from(hi - start).ok())
                .and_then(|(from, to)| out.get_mut(from..to));
            piece.is_some_and(|piece| self.read_entry(&dir, s, e, lo, piece))
        })
    }

    /// Reads entry `[s, e)`'s bytes from `at` into `out`; a missing or damaged entry is
    /// forgotten (and a damaged one removed).
    fn read_entry(&self, dir: &Path, s: u64, e: u64, at: u64, out: &mut [u8]) -> bool {
        let path = dir.join(format!("{s}-{e}"));
        let forget = || {
            if let Some(k) = self.index.lock().unwrap_or_else(|p| p.into_inner()).get_mut(dir) {
                k.entries.remove(&s);
            }
        };
        let Ok(file) = File::open(&path) else {
            forget();
            return false;
        };
        if file.metadata().map(|m| m.len()).ok() != Some(e - s) {
            forget();
            let _ = fs::remove_file(&path);
            return false;
        }
        if file.read_exact_at(out, at - s).is_err() {
            forget();
            return false;
        }
        let _ = file.set_modified(SystemTime::now());
        true
    }

    /// Whether an entry covers `[start, end)` of blob `digest` (as far as this process knows,
    /// listing the directory if it was not listed lately).
    pub fn contains(&self, digest: &str, start: u64, end: u64) -> bool {
        let Some(dir) = blob_dir(&self.root, digest) else { return false };
        let (found, stale) = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            let known = index.get(&dir);
            (
                known.and_then(|k| Self::covering(&k.entries, start, end)),
                known.and_then(|k| k.scanned).is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL),
            )
        };
        if found.is_some() || !stale {
            return found.is_some();
        }
        let entries = self.rescan_blob(&dir);
        let found = Self::covering(&entries, start, end).is_some();
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir, Known { entries, scanned: Some(Instant::now()) });
        found
    }

    /// Starts writing an entry; bytes go to a temporary file until `commit`.
    pub fn writer(&self) -> Option<CacheWriter> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join("tmp").join(format!("{}-{n}", std::process::id()));
        let file = File::create(&path).ok()?;
        Some(CacheWriter { file: Some(file), path, len: 0, failed: false })
    }

    /// Stores bytes `[start, start + data.len())` of blob `digest`. Failures are logged and
    /// otherwise ignored: the cache is an optimisation.
    pub fn put(&self, digest: &str, start: u64, data: &[u8]) {
        if data.is_empty() || data.len() as u64 > self.max_bytes {
            return;
        }
        let Some(mut w) = self.writer() else { return };
        w.write(data);
        self.commit(w, digest, start);
    }

    /// Moves a finished writer's file into place as the entry at `start` of blob `digest`.
    pub fn commit(&self, mut w: CacheWriter, digest: &str, start: u64) {
        let Some(dir) = blob_dir(&self.root, digest) else { return };
        let end = start + w.len;
        if w.failed || w.len == 0 || w.len > self.max_bytes {
            return;
        }
        let _ = w.file.take(); // close before rename
        let target = dir.join(format!("{start}-{end}"));
        if let Err(e) = fs::create_dir_all(&dir).and_then(|()| fs::rename(&w.path, &target)) {
            tracing::debug!(error = %e, "cache: storing an entry failed");
            return;
        }
        note_entry(
            &mut self.index.lock().unwrap_or_else(|p| p.into_inner()).entry(dir).or_default().entries,
            start,
            end,
        );
        let total = self.total.fetch_add(w.len, Ordering::Relaxed) + w.len;
        if total > self.max_bytes {
            self.evict();
        }
    }

    /// Deletes the least recently used entries until the cache is at 80% of its bound.
    fn evict(&self) {
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.2).sum();
        let target = self.max_bytes / 10 * 8;
        entries.sort_by_key(|e| e.1);
        for (path, _, len) in entries {
            if total <= target {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
        self.total.store(total, Ordering::Relaxed);
        self.index.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Bytes held, as this process counts them.
    pub fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The directory the cache lives in.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Where the converted copy of plain layer `digest` lives (see the module docs), or `None`
    /// when the digest is not `algo:hex`. Whoever writes it there calls [`DiskCache::added`].
    pub fn converted_path(&self, digest: &str) -> Option<PathBuf> {
        blob_dir(&self.root, digest)?; // checks the digest's form
        let (algo, hex) = digest.split_once(':')?;
        Some(self.root.join("converted").join(algo).join(hex))
    }

    /// Counts a file of `len` bytes just placed in the cache by someone else (a converted copy),
    /// evicting the least recently used entries if the bound is passed.
    pub fn added(&self, len: u64) {
        let total = self.total.fetch_add(len, Ordering::Relaxed) + len;
        if total > self.max_bytes {
            self.evict();
        }
    }

    /// Stores a whole small blob (a manifest or an index) if `data` has that digest.
    pub fn put_whole(&self, digest: &str, data: &[u8]) {
        if crfs_core::Digest::parse(digest) == Some(crfs_core::Digest::of(data)) {
            self.put(digest, 0, data);
        }
    }

    /// A whole small blob stored by [`DiskCache::put_whole`], checked against its digest; a
    /// damaged one is removed. At most `max_len` bytes are read.
    pub fn get_whole(&self, digest: &str, max_len: u64) -> Option<Vec<u8>> {
        let want = crfs_core::Digest::parse(digest)?;
        let dir = blob_dir(&self.root, digest)?;
        let end = *self.rescan_blob(&dir).get(&0)?;
        if end > max_len {
            return None;
        }
        let data = self.get(digest, 0, end)?;
        if crfs_core::Digest::of(&data) != want {
            tracing::warn!(digest, "cache: a stored manifest does not match its digest; removed");
            let _ = fs::remove_file(dir.join(format!("0-{end}")));
            return None;
        }
        Some(data)
    }

    fn ref_path(&self, name: &str) -> PathBuf {
        self.root.join("refs").join(crfs_core::Digest::of(name.as_bytes()).to_string().replace("sha256:", ""))
    }

    /// Records that tag `name` (`REGISTRY/REPO:TAG`) resolved to `digest` just now.
    pub fn put_ref(&self, name: &str, digest: &str) {
        let Some(mut w) = self.writer() else { return };
        w.write(format!("{digest}\n{name}\n").as_bytes());
        let _ = w.file.take();
        let target = self.ref_path(name);
        if w.failed || fs::create_dir_all(self.root.join("refs")).and_then(|()| fs::rename(&w.path, &target)).is_err() {
            tracing::debug!(name, "cache: recording a tag failed");
        }
    }

    /// What tag `name` last resolved to, and when.
    pub fn get_ref(&self, name: &str) -> Option<(String, SystemTime)> {
        let path = self.ref_path(name);
        let text = fs::read_to_string(&path).ok()?;
        let (digest, rest) = text.split_once('\n')?;
        if rest != format!("{name}\n") || crfs_core::Digest::parse(digest).is_none() {
            return None;
        }
        let when = fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        Some((digest.to_owned(), when))
    }
}

/// An entry being written (see [`DiskCache::writer`]); dropped without commit, it is deleted.
#[derive(Debug)]
pub struct CacheWriter {
    file: Option<File>,
    path: PathBuf,
    len: u64,
    failed: bool,
}

impl CacheWriter {
    /// Appends bytes; a failure marks the entry as not to be committed.
    pub fn write(&mut self, data: &[u8]) {
        if let Some(f) = self.file.as_mut()
            && !self.failed
        {
            if f.write_all(data).is_err() {
                self.failed = true;
            }
            self.len += data.len() as u64;
        }
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        // After a successful commit the file has been renamed away and this fails quietly.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn put_get_evict() {
        let dir = std::env::temp_dir().join(format!("crfs-cache-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let c = DiskCache::open(&dir, 1000).unwrap();
        assert!(c.get(D, 0, 10).is_none());
        c.put(D, 100, &[7u8; 300]);
        assert_eq!(c.get(D, 150, 160).unwrap(), vec![7u8; 10]);
        assert!(c.get(D, 50, 160).is_none());
        assert!(c.get("../../etc:passwd", 0, 1).is_none());
        // A second handle (another process) sees the entry.
        let c2 = DiskCache::open(&dir, 1000).unwrap();
        assert_eq!(c2.total_bytes(), 300);
        assert_eq!(c2.get(D, 100, 400).unwrap().len(), 300);
        // Going over the bound evicts the oldest.
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.put(D, 1000, &[1u8; 400]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.put(D, 2000, &[2u8; 400]);
        assert!(c.total_bytes() <= 800, "{}", c.total_bytes());
        assert!(c.get(D, 2000, 2400).is_some());
        // Truncated entries are ignored.
        let e = blob_dir(&dir, D).unwrap().join("5000-5010");
        fs::write(&e, b"short").unwrap();
        let c3 = DiskCache::open(&dir, 1000).unwrap(); // a fresh handle lists the directory
        assert!(c3.get(D, 5000, 5010).is_none());
        assert!(!e.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn manifests_refs_and_converted_copies() {
        let dir = std::env::temp_dir().join(format!("crfs-cache-unit-m-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let c = DiskCache::open(&dir, 10_000).unwrap();
        let manifest = br#"{"schemaVersion":2}"#;
        let digest = crfs_core::Digest::of(manifest).to_string();
        c.put_whole(D, manifest); // wrong digest: not kept
        assert!(c.get_whole(D, 1 << 20).is_none());
        c.put_whole(&digest, manifest);
        assert_eq!(c.get_whole(&digest, 1 << 20).unwrap(), manifest);
        assert!(c.get_whole(&digest, 5).is_none(), "longer than allowed");
        // A damaged manifest is refused and removed.
        let entry = blob_dir(&dir, &digest).unwrap().join(format!("0-{}", manifest.len()));
        fs::write(&entry, br#"{"schemaVersion":3}"#).unwrap();
        assert!(DiskCache::open(&dir, 10_000).unwrap().get_whole(&digest, 1 << 20).is_none());
        assert!(!entry.exists());

        assert!(c.get_ref("r.example/a:v1").is_none());
        c.put_ref("r.example/a:v1", &digest);
        c.put_ref("r.example/a:v2", D);
        c.put_ref("r.example/a:v1", D); // moved
        assert_eq!(c.get_ref("r.example/a:v1").unwrap().0, D);
        assert!(c.get_ref("r.example/a:v3").is_none());
        fs::write(c.ref_path("r.example/a:v2"), format!("{D}\nr.example/other:v2\n")).unwrap();
        assert!(c.get_ref("r.example/a:v2").is_none(), "a pointer naming another tag is ignored");

        // Converted copies count towards the bound and are evicted oldest first.
        assert!(c.converted_path("../x:y").is_none());
        let copy = |n: u8| {
            let d = format!("sha256:{}", format!("{n:02x}").repeat(32));
            let p = c.converted_path(&d).unwrap();
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, vec![n; 4000]).unwrap();
            c.added(4000);
            std::thread::sleep(std::time::Duration::from_millis(20));
            p
        };
        let (a, b) = (copy(1), copy(2));
        assert_eq!(DiskCache::open(&dir, 10_000).unwrap().total_bytes(), 8000, "counted at open too");
        let third = copy(3);
        assert!(!a.exists() && b.exists() && third.exists(), "the least recently used copy went");
        assert!(c.total_bytes() <= 8000);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_across_neighbouring_entries() {
        let dir = std::env::temp_dir().join(format!("crfs-cache-unit-n-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let c = DiskCache::open(&dir, 1 << 20).unwrap();
        let blob: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        // As coalesced fetches leave them: two from 0 (the longer wins), then neighbours.
        c.put(D, 0, &blob[..11_796]);
        c.put(D, 0, &blob[..12_708]);
        c.put(D, 12_708, &blob[12_708..17_121]);
        c.put(D, 14_348, &blob[14_348..17_070]);
        let fresh = DiskCache::open(&dir, 1 << 20).unwrap(); // lists the directory
        for c in [&c, &fresh] {
            assert_eq!(c.get(D, 12_000, 13_000).unwrap(), &blob[12_000..13_000], "across two entries");
            assert_eq!(c.get(D, 0, 17_121).unwrap(), &blob[..17_121]);
            assert!(c.get(D, 12_000, 17_200).is_none(), "a byte past every entry");
            assert!(c.contains(D, 11_000, 15_000));
            assert!(!c.contains(D, 17_000, 17_200));
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
