//! Temporary and not-yet-committed output, removed on error, on drop, and on a stop signal.
//!
//! `Drop` cleans up after an error, but a process killed by SIGINT or SIGTERM runs no
//! destructors. So every path this crate creates before it is committed is also listed in a
//! process-wide registry, and a front-end's signal handler calls [`remove_all`] before it
//! exits. Paths are created and committed (renamed into place) under the registry's lock, so a
//! signal never leaves a file it did not see, and never removes a committed one.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

struct Entry {
    id: u64,
    path: PathBuf,
    dir: bool,
}

struct Registry {
    next: u64,
    entries: Vec<Entry>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { next: 0, entries: Vec::new() });

fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn remove(path: &Path, dir: bool) {
    if !dir {
        let _ = std::fs::remove_file(path);
        return;
    }
    // Another thread may still be adding a file (a blob being pulled) while the tree is
    // walked; once the directory is gone nothing more can be added to it.
    for _ in 0..5 {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => continue,
            _ => return,
        }
    }
}

/// A path this process created and has not committed: removed when dropped (or by
/// [`remove_all`]) unless [`Tracked::keep`] or [`commit`] took it off the list first.
#[derive(Debug)]
pub struct Tracked {
    id: u64,
    path: PathBuf,
    dir: bool,
    armed: bool,
}

impl Tracked {
    fn register(reg: &mut Registry, path: &Path, dir: bool) -> Tracked {
        reg.next += 1;
        let id = reg.next;
        reg.entries.push(Entry { id, path: path.to_path_buf(), dir });
        Tracked { id, path: path.to_path_buf(), dir, armed: true }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Takes the path off the list: it stays.
    pub fn keep(mut self) {
        lock().entries.retain(|e| e.id != self.id);
        self.armed = false;
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.armed {
            let mut reg = lock();
            reg.entries.retain(|e| e.id != self.id);
            remove(&self.path, self.dir);
        }
    }
}

/// Creates `path` (which must not exist) for reading and writing, tracked.
pub fn create_file(path: &Path) -> io::Result<(File, Tracked)> {
    let mut reg = lock();
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    Ok((file, Tracked::register(&mut reg, path, false)))
}

/// Creates the directory `path` with its missing parents. Returns the topmost directory it
/// created, tracked (removed with everything under it), or `None` if `path` existed.
pub fn create_dir_all(path: &Path) -> io::Result<Option<Tracked>> {
    let mut reg = lock();
    let mut top = None;
    let mut p = Some(path);
    while let Some(dir) = p {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        top = Some(dir);
        p = dir.parent();
    }
    let Some(top) = top else { return Ok(None) };
    let tracked = Tracked::register(&mut reg, top, true);
    std::fs::create_dir_all(path)?;
    Ok(Some(tracked))
}

/// Renames the tracked temporary file `tmp` to `dest`. If `dest` did not exist, the returned
/// `Tracked` now stands for it (still removed unless committed); if it existed (a
/// content-addressed blob already there), it is replaced and `None` is returned, since it was
/// not ours to remove.
pub fn rename(mut tmp: Tracked, dest: &Path) -> io::Result<Option<Tracked>> {
    let mut reg = lock();
    let existed = dest.exists();
    std::fs::rename(&tmp.path, dest)?;
    reg.entries.retain(|e| e.id != tmp.id);
    tmp.armed = false;
    Ok((!existed).then(|| Tracked::register(&mut reg, dest, false)))
}

/// Runs `finish` (the rename that publishes the result) under the registry's lock and, if it
/// succeeds, takes every path of `keep` off the list, so a signal sees either all of them
/// pending (and removes them) or the result published.
pub fn commit<T>(keep: Vec<Tracked>, finish: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let mut reg = lock();
    let out = finish()?;
    let ids: Vec<u64> = keep.iter().map(|t| t.id).collect();
    reg.entries.retain(|e| !ids.contains(&e.id));
    drop(reg);
    for mut t in keep {
        t.disarm();
    }
    Ok(out)
}

/// Removes every tracked path, then holds the registry so that nothing new is created: for a
/// signal handler that exits the process right after.
pub fn remove_all() {
    let mut reg = lock();
    // Last created first: files inside a tracked directory before the directory.
    for e in reg.entries.drain(..).rev() {
        remove(&e.path, e.dir);
    }
    std::mem::forget(reg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("crfs-cleanup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn dropped_paths_go_kept_and_committed_paths_stay() {
        let d = scratch("drop");
        let top = create_dir_all(&d.join("a/b")).unwrap().unwrap();
        assert_eq!(top.path(), d.as_path());
        assert!(create_dir_all(&d.join("a")).unwrap().is_none());
        let (_, t1) = create_file(&d.join("a/b/one")).unwrap();
        let (_, t2) = create_file(&d.join("a/b/two")).unwrap();
        let kept = rename(t2, &d.join("a/b/three")).unwrap().unwrap();
        drop(t1);
        assert!(!d.join("a/b/one").exists());
        commit(vec![kept], || Ok(())).unwrap();
        assert!(d.join("a/b/three").exists());
        top.keep();
        assert!(d.join("a/b/three").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_commit_keeps_paths_pending() {
        let d = scratch("fail");
        let top = create_dir_all(&d).unwrap().unwrap();
        let r: io::Result<()> = commit(vec![top], || Err(io::Error::other("no")));
        assert!(r.is_err());
        assert!(!d.exists(), "the dropped guard removed the directory");
    }
}
