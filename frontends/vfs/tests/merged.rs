//! The merged view of several layers equals extracting them in order with OCI whiteouts
//! applied, done for real with tar on disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crfs_core::{FileReadAt, Layer};
use crfs_testkit::{
    TarBuilder, TarEntry, assert_same_listing, fs_listing, interop, interop_bin, scratch_dir, tree_listing,
};
use crfs_vfs::{MergedFs, Options, ReadOnlyFs};

const T: u64 = 1_600_000_000;

fn layers() -> Vec<Vec<u8>> {
    use TarEntry::*;
    let l1 = TarBuilder::default()
        .add("./", Dir, 0o755, T)
        .add("a/", Dir, 0o755, T)
        .add("a/b/", Dir, 0o700, T)
        .add("a/f1", File(b"one"), 0o644, T)
        .add("a/b/f2", File(b"two"), 0o644, T)
        .add("a/h", Hardlink("a/f1"), 0o644, T)
        .add("c/", Dir, 0o755, T)
        .add("c/keep", File(b"old"), 0o644, T)
        .add("d/", Dir, 0o755, T)
        .add("d/x", File(b"x"), 0o644, T)
        .add("d/sub/", Dir, 0o755, T)
        .add("d/sub/deep", File(b"deep"), 0o644, T)
        .add("e", File(b"a file"), 0o600, T)
        .add("g/", Dir, 0o755, T)
        .add("g/y", File(b"y"), 0o644, T)
        .add("s", Symlink("a/f1"), 0o777, T)
        .add("k", File(b"two names"), 0o644, T)
        .add("k2", Hardlink("k"), 0o644, T)
        .finish();
    let l2 = TarBuilder::default()
        .add("a/", Dir, 0o750, T + 10)
        .add("a/.wh.f1", File(b""), 0o644, T + 10)
        .add("c/keep", File(b"new content"), 0o640, T + 10)
        .add("d/", Dir, 0o755, T + 10)
        .add("d/.wh..wh..opq", File(b""), 0o644, T + 10)
        .add("d/new", File(b"new"), 0o644, T + 10)
        .add("e/", Dir, 0o711, T + 10)
        .add("e/z", File(b"z"), 0o644, T + 10)
        .add("g", File(b"g is a file now"), 0o644, T + 10)
        .add("n", File(b"top"), 0o644, T + 10)
        // A whiteout of a name this layer also adds: the layer's own entry stays.
        .add(".wh.s", File(b""), 0o644, T + 10)
        .add("s", File(b"s replaced"), 0o644, T + 10)
        .finish();
    let l3 = TarBuilder::default()
        .add("a/.wh.b", File(b""), 0o644, T + 20)
        .add("d/new2", File(b"new2"), 0o644, T + 20)
        .add("a/.wh.missing", File(b""), 0o644, T + 20)
        // A directory new in an upper layer, with a file of two names.
        .add("p/", Dir, 0o755, T + 20)
        .add("p/one", File(b"1"), 0o644, T + 20)
        .add("p/two", Hardlink("p/one"), 0o644, T + 20)
        .finish();
    vec![l1, l2, l3]
}

/// What a container runtime does: per layer, apply its whiteouts to what is on disk, then
/// extract its other entries.
fn extract_in_order(tars: &[std::path::PathBuf], root: &Path) {
    fs::create_dir_all(root).unwrap();
    for tar in tars {
        let out = Command::new("tar").arg("-tvf").arg(tar).output().unwrap();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            // "drwxr-xr-x 0/0 0 2020-09-13 12:26 name[ link to target]"
            let is_dir = line.starts_with('d');
            let name = line.rsplit_once(':').map_or("", |(_, rest)| &rest[3..]);
            let name = name.split(" link to ").next().unwrap().split(" -> ").next().unwrap();
            let name = name.trim_start_matches("./").trim_end_matches('/');
            let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
            let dir = root.join(dir);
            // An entry whose type differs from what is on disk replaces it.
            let existing = dir.join(base);
            let on_disk = existing.symlink_metadata();
            if let (false, false, Ok(meta)) = (base.starts_with(".wh."), name.is_empty(), on_disk) {
                if meta.is_dir() && !is_dir {
                    fs::remove_dir_all(&existing).unwrap();
                } else if !meta.is_dir() && is_dir {
                    fs::remove_file(&existing).unwrap();
                }
            }
            if base == ".wh..wh..opq" {
                for e in fs::read_dir(&dir).into_iter().flatten() {
                    let p = e.unwrap().path();
                    if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p).unwrap()
                    } else {
                        fs::remove_file(&p).unwrap()
                    }
                }
            } else if let Some(hidden) = base.strip_prefix(".wh.") {
                let p = dir.join(hidden);
                if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p).unwrap();
                } else if p.symlink_metadata().is_ok() {
                    fs::remove_file(&p).unwrap();
                }
            }
        }
        let status = Command::new("tar")
            .args(["--exclude=.wh.*", "--same-owner", "--overwrite", "-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(root)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn merged_layers_equal_extracting_them_in_order() {
    let Some(bin) = interop_bin() else { return };
    let scratch = scratch_dir("merged");
    let mut tars = Vec::new();
    let mut blobs = Vec::new();
    for (i, data) in layers().iter().enumerate() {
        let tar = scratch.join(format!("l{i}.tar"));
        fs::write(&tar, data).unwrap();
        let blob = scratch.join(format!("l{i}.esgz"));
        interop(&bin, &["build", "-in", tar.to_str().unwrap(), "-out", blob.to_str().unwrap()]);
        tars.push(tar);
        blobs.push(Arc::new(Layer::open(FileReadAt::open(&blob).unwrap()).unwrap()));
    }
    let merged = MergedFs::new(blobs, Options::default()).unwrap();
    let extracted = scratch.join("rootfs");
    extract_in_order(&tars, &extracted);
    let want = tree_listing(&extracted);
    let got = fs_listing(&merged);
    // The extraction root is the scratch directory itself: compare everything below it.
    // Directory mtimes on disk move whenever a later layer adds or removes an entry, so they
    // are not compared; their mode and owner are.
    let below = |l: &str| {
        l.lines()
            .filter(|l| !l.starts_with(".\t"))
            .map(|l| {
                let mut f: Vec<&str> = l.split('\t').collect();
                if f[1] == "dir" {
                    f[6] = "*";
                }
                f.join("\t")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_same_listing("merged vs extracted", &below(&got), &below(&want));
    // Spot checks of the rules.
    let root = merged.getattr(1).unwrap().ino;
    let a = merged.lookup(root, b"a").unwrap();
    assert!(merged.lookup(a.ino, b"f1").is_err() && merged.lookup(a.ino, b"b").is_err());
    assert_eq!(merged.lookup(a.ino, b"h").unwrap().nlink, 1, "the whiteout removed one of the two names");
    let d = merged.lookup(root, b"d").unwrap();
    let mut names = Vec::new();
    merged
        .readdir(d.ino, 0, &mut |e| {
            names.push(String::from_utf8_lossy(e.name).into_owned());
            true
        })
        .unwrap();
    assert_eq!(names, [".", "..", "new", "new2"]);
    // Two names of one file share an inode, in the bottom layer and in a directory an upper
    // layer adds; a lone name is its own.
    let (k, k2) = (merged.lookup(root, b"k").unwrap(), merged.lookup(root, b"k2").unwrap());
    assert_eq!((k.ino, k.nlink, k2.nlink), (k2.ino, 2, 2));
    let p = merged.lookup(root, b"p").unwrap();
    let (one, two) = (merged.lookup(p.ino, b"one").unwrap(), merged.lookup(p.ino, b"two").unwrap());
    assert_eq!((one.ino, one.nlink, two.nlink), (two.ino, 2, 2));
    assert_ne!(k.ino, one.ino);
    assert_eq!(merged.lookup(root, b"n").unwrap().nlink, 1);
    assert_eq!(merged.statfs().files as usize, got.lines().count());
}
