//! Real FUSE mounts with `crfs mount`: the mounted tree equals the reference's listing and a
//! real `tar -xpf --xattrs` extraction; concurrent readers get the right bytes; corrupt chunks
//! give EIO without taking the mount down; writes get EROFS; bad mountpoints are refused;
//! SIGTERM unmounts and exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crfs_testkit::{assert_same_listing, in_ci, interop, interop_bin, scratch_dir, testdata, tree_listing};

fn crfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crfs"))
}

fn fixture(name: &str) -> PathBuf {
    testdata().join("fixtures").join(name)
}

/// FUSE needs /dev/fuse and root (or fusermount3). Outside CI a machine without it skips.
fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists() && Command::new("fusermount3").arg("-V").output().is_ok();
    assert!(ok || !in_ci(), "CI needs /dev/fuse and fuse3 for the mount tests");
    if !ok {
        eprintln!("skipping: no FUSE here");
    }
    ok
}

fn is_mounted(dir: &Path) -> bool {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(mp) == canonical)
}

/// A running `crfs mount`; unmounted (SIGTERM) when dropped.
struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
}

impl Mounted {
    fn new(blob: &Path, dir: &Path, extra: &[&str]) -> Mounted {
        fs::create_dir_all(dir).unwrap();
        let child = crfs()
            .arg("mount")
            .args(extra)
            .arg(blob)
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = Mounted { child: Some(child), dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(dir) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let out = m.child.take().unwrap().wait_with_output().unwrap();
                panic!("crfs mount exited with {status}: {}", String::from_utf8_lossy(&out.stderr));
            }
            assert!(Instant::now() < deadline, "mount did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Sends SIGTERM and returns the process's output.
    fn stop(mut self) -> Output {
        let child = self.child.take().unwrap();
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(status.success());
        wait_with_timeout(child, Duration::from_secs(20))
    }
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = wait_with_timeout(child, Duration::from_secs(20));
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&self.dir).status();
        }
    }
}

#[test]
fn mounted_trees_equal_the_reference_listing() {
    if !fuse_available() {
        return;
    }
    let scratch = scratch_dir("mount-listing");
    for name in ["all-types.esgz", "all-types-c4096.esgz", "all-types.zstdchunked", "all-types.stargz", "many.esgz"] {
        let m = Mounted::new(&fixture(name), &scratch.join(name), &[]);
        let want = fs::read_to_string(fixture(&format!("{name}.list"))).unwrap();
        assert_same_listing(name, &tree_listing(&m.dir), &want);
        let out = m.stop();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The names a tar holds, cleaned like the listing's paths.
fn tar_names(tar: &Path) -> BTreeSet<String> {
    let out = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect()
}

/// Drops the root line and blanks the mtime of directories the tar never names: `tar -x`
/// creates those at extraction time, crfs (like the reference) dates them to the epoch.
fn comparable(listing: &str, named: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for l in listing.lines() {
        let mut f: Vec<&str> = l.split('\t').collect();
        if f[0] == "." {
            continue;
        }
        if f[1] == "dir" && !named.iter().any(|n| crfs_testkit::escape(n.as_bytes()) == f[0]) {
            f[6] = "*";
        }
        out.push_str(&f.join("\t"));
        out.push('\n');
    }
    out
}

#[test]
fn mounted_tree_equals_tar_extraction() {
    if !fuse_available() {
        return;
    }
    let scratch = scratch_dir("mount-vs-tar");
    let tar = fixture("all-types.tar");
    let extracted = scratch.join("extracted");
    fs::create_dir_all(&extracted).unwrap();
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(&extracted)
        .status()
        .unwrap();
    assert!(status.success(), "tar -x failed");
    let named = tar_names(&tar);
    let want = comparable(&tree_listing(&extracted), &named);
    for name in ["all-types.esgz", "all-types.zstdchunked", "all-types.stargz"] {
        let m = Mounted::new(&fixture(name), &scratch.join(name), &[]);
        assert_same_listing(&format!("{name} vs tar -x"), &comparable(&tree_listing(&m.dir), &named), &want);
        // Hardlinks share one inode.
        let a = fs::metadata(m.path("files/data.bin")).unwrap();
        let b = fs::metadata(m.path("links/hard1")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 4));
    }
}

#[test]
fn eight_readers_get_the_right_bytes_from_random_ranges() {
    if !fuse_available() {
        return;
    }
    let Some(bin) = interop_bin() else { return };
    let scratch = scratch_dir("mount-concurrent");
    let tar = scratch.join("chunks.tar");
    interop(&bin, &["mktar", "-kind", "chunks", "-out", tar.to_str().unwrap()]);
    let extracted = scratch.join("extracted");
    fs::create_dir_all(&extracted).unwrap();
    assert!(Command::new("tar").arg("-xpf").arg(&tar).arg("-C").arg(&extracted).status().unwrap().success());
    // Big files: every regular file over 64 KiB.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stack = vec![extracted.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && meta.len() > 65536 {
                let rel = p.strip_prefix(&extracted).unwrap().to_string_lossy().into_owned();
                files.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    assert!(files.iter().any(|(_, d)| d.len() > 8 << 20), "the corpus has a multi-chunk file");
    for (i, chunk) in ["65536", "4194304"].iter().enumerate() {
        let blob = scratch.join(format!("chunks-{i}.esgz"));
        interop(&bin, &["build", "-in", tar.to_str().unwrap(), "-out", blob.to_str().unwrap(), "-chunk-size", chunk]);
        // A small cache forces evictions and re-decodes while the readers run.
        let m = Mounted::new(&blob, &scratch.join(format!("mnt-{i}")), &["--cache-size", "1M", "--threads", "4"]);
        std::thread::scope(|s| {
            for reader in 0..8u64 {
                let files = &files;
                let m = &m;
                s.spawn(move || {
                    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (reader + 1);
                    let mut next = move || {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed
                    };
                    for _ in 0..150 {
                        let (rel, want) = &files[(next() % files.len() as u64) as usize];
                        let f = fs::File::open(m.path(rel)).unwrap();
                        let off = next() % want.len() as u64;
                        let len = (next() % (300 << 10)) as usize + 1;
                        let mut buf = vec![0u8; len];
                        let mut got = 0;
                        while got < len {
                            let n = f.read_at(&mut buf[got..], off + got as u64).unwrap();
                            if n == 0 {
                                break;
                            }
                            got += n;
                        }
                        let end = (off as usize + len).min(want.len());
                        assert_eq!(got, end - off as usize, "{rel} at {off}+{len}");
                        assert!(buf[..got] == want[off as usize..end], "{rel} at {off}+{len}: wrong bytes");
                    }
                });
            }
        });
    }
}

#[test]
fn sigterm_unmounts_and_exits_zero() {
    if !fuse_available() {
        return;
    }
    let scratch = scratch_dir("mount-sigterm");
    let m = Mounted::new(&fixture("all-types.esgz"), &scratch.join("mnt"), &[]);
    assert_eq!(fs::read(m.path("files/small.txt")).unwrap(), b"hello, world\n");
    let dir = m.dir.clone();
    let out = m.stop();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&dir));
}

#[test]
fn writes_get_erofs() {
    if !fuse_available() {
        return;
    }
    let scratch = scratch_dir("mount-erofs");
    let m = Mounted::new(&fixture("all-types.esgz"), &scratch.join("mnt"), &[]);
    let erofs = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(30), "{what}: {e}"); // EROFS
    };
    erofs(fs::write(m.path("new-file"), b"x"), "create");
    erofs(fs::OpenOptions::new().append(true).open(m.path("files/small.txt")).map(|_| ()), "open for append");
    erofs(fs::create_dir(m.path("newdir")), "mkdir");
    erofs(fs::remove_file(m.path("files/small.txt")), "unlink");
    erofs(fs::rename(m.path("files/small.txt"), m.path("files/moved")), "rename");
    erofs(fs::set_permissions(m.path("files/small.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o777)), "chmod");
    erofs(xattr::set(m.path("files/small.txt"), "user.x", b"y"), "setxattr");
    erofs(std::os::unix::fs::symlink("x", m.path("newlink")), "symlink");
    assert_eq!(fs::read(m.path("files/small.txt")).unwrap(), b"hello, world\n");
}

#[test]
fn corrupt_chunk_gives_eio_for_that_read_only() {
    if !fuse_available() {
        return;
    }
    let scratch = scratch_dir("mount-corrupt");
    // Find a one-byte change of all-types-c4096.esgz that breaks files/medium.bin alone.
    let good = fs::read(fixture("all-types-c4096.esgz")).unwrap();
    let blob = scratch.join("corrupt.esgz");
    let mut found = None;
    for offset in (200..good.len() - 2000).step_by(97) {
        let mut bad = good.clone();
        bad[offset] ^= 0x55;
        fs::write(&blob, &bad).unwrap();
        let out = crfs().arg("verify").arg(&blob).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.code() == Some(1)
            && text.matches("FAILED").count() == 1
            && text.contains("FAILED files/medium.bin")
        {
            found = Some(offset);
            break;
        }
    }
    assert!(found.is_some(), "no single-byte corruption of medium.bin alone");
    let m = Mounted::new(&blob, &scratch.join("mnt"), &[]);
    let e = fs::read(m.path("files/medium.bin")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO: {e}");
    // The chunks before the bad one still read; so does every other file; the mount stays up.
    let f = fs::File::open(m.path("files/medium.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    let ok_somewhere = (0..3).any(|c| f.read_exact_at(&mut first, c * 4096).is_ok());
    assert!(ok_somewhere, "the other chunks of medium.bin still read");
    assert_eq!(fs::read(m.path("files/small.txt")).unwrap(), b"hello, world\n");
    assert!(fs::read(m.path("files/data.bin")).is_ok());
    let out = m.stop();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("files/medium.bin") && log.contains("chunk"), "a log line names file and chunk: {log}");
}

#[test]
fn bad_mountpoints_are_refused_before_mounting() {
    if !fuse_available() {
        return;
    }
    let scratch = scratch_dir("mount-bad");
    let blob = fixture("all-types.esgz");
    let run = |dir: &Path| {
        let out = wait_with_timeout(
            crfs().arg("mount").arg(&blob).arg(dir).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap(),
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&scratch.join("missing")).contains("mountpoint does not exist"));
    let file = scratch.join("file");
    fs::write(&file, b"x").unwrap();
    assert!(run(&file).contains("not a directory"));
    let m = Mounted::new(&blob, &scratch.join("mnt"), &[]);
    assert!(run(&m.dir).contains("already mounted"));
    drop(m);

    // A crash leaves a stale mount: refused with a hint, cleared by `crfs umount`.
    let dir = scratch.join("stale");
    let mut m = Mounted::new(&blob, &dir, &[]);
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // statfs always reaches the (dead) server: ENOTCONN.
    let out = Command::new("stat").arg("-f").arg(&dir).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not connected"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run(&dir).contains("stale mount"));
    let out = crfs().arg("umount").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&dir));
    let m2 = Mounted::new(&blob, &dir, &[]);
    assert!(m2.path("files").is_dir());
    drop(m);
}

#[test]
fn overlay_whiteouts_are_presented_as_overlayfs_expects() {
    if !fuse_available() {
        return;
    }
    let scratch = scratch_dir("mount-overlay");
    let plain = Mounted::new(&fixture("all-types.esgz"), &scratch.join("plain"), &[]);
    assert!(plain.path("wh/.wh.gone").is_file());
    assert!(plain.path("wh/opaque/.wh..wh..opq").is_file());
    let m = Mounted::new(&fixture("all-types.esgz"), &scratch.join("ovl"), &["--overlay-whiteouts"]);
    let meta = fs::symlink_metadata(m.path("wh/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()));
    assert_eq!((meta.rdev(), meta.mode() & 0o7777, meta.uid(), meta.gid()), (0, 0, 0, 0));
    let names: BTreeSet<String> =
        fs::read_dir(m.path("wh")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains("gone") && !names.iter().any(|n| n.starts_with(".wh.")), "{names:?}");
    let e = fs::symlink_metadata(m.path("wh/.wh.gone")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(xattr::get(m.path("wh/opaque"), "trusted.overlay.opaque").unwrap(), Some(b"y".to_vec()));
    let opaque_names: Vec<_> = fs::read_dir(m.path("wh/opaque")).unwrap().collect();
    assert!(opaque_names.iter().all(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".wh.")));
}

#[test]
fn an_ordinary_user_mounts_through_fusermount3() {
    if !fuse_available() {
        return;
    }
    let fuse_mode = fs::metadata("/dev/fuse").unwrap().mode() & 0o777;
    let am_root = fs::read_to_string("/proc/self/status").unwrap().lines().any(|l| l.starts_with("Uid:\t0\t"));
    if !am_root || fuse_mode & 0o006 != 0o006 {
        assert!(!in_ci(), "CI runs as root with /dev/fuse 0666 (.ci/run sets it)");
        eprintln!("skipping: needs root to switch users and /dev/fuse 0666");
        return;
    }
    let scratch = scratch_dir("mount-user");
    let dir = scratch.join("mnt");
    fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let blob = scratch.join("layer.esgz");
    fs::copy(fixture("all-types.esgz"), &blob).unwrap();
    for p in [&scratch, &dir, &blob] {
        assert!(Command::new("chown").arg("65534:65534").arg(p).status().unwrap().success());
    }
    // The scratch path's parents must be searchable by nobody.
    let as_nobody = |args: &[&std::ffi::OsStr]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).args(args);
        c
    };
    let exe = std::ffi::OsStr::new(env!("CARGO_BIN_EXE_crfs"));
    let child = as_nobody(&[exe, "mount".as_ref(), blob.as_os_str(), dir.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut m = Mounted { child: Some(child), dir: dir.clone() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !is_mounted(&dir) {
        if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
            let out = m.child.take().unwrap().wait_with_output().unwrap();
            panic!("crfs mount as nobody exited with {status}: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(Instant::now() < deadline, "mount did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts.lines().any(|l| l.contains(dir.to_str().unwrap()) && l.contains("user_id=65534")), "{mounts}");
    let out = as_nobody(&["cat".as_ref(), dir.join("files/small.txt").as_os_str()]).output().unwrap();
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));
    // Without --allow-other, other users (root included) are kept out.
    assert_eq!(fs::metadata(dir.join("files")).unwrap_err().kind(), ErrorKind::PermissionDenied);
    let out = as_nobody(&[exe, "umount".as_ref(), dir.as_os_str()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = wait_with_timeout(m.child.take().unwrap(), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&dir));
}
