//! `crfs nfs` against a real NFS client, libnfs (nfs-ls, nfs-cat, nfs-cp; this machine's
//! kernel has no NFS client): the recursive listing equals the fixture's, every regular file
//! reads back with its sha256, a 5,000-name directory lists each name once, hardlinks,
//! symlinks and devices show right, a restart midway leaves the export usable, writes get
//! NFS3ERR_ROFS, and SIGINT/SIGTERM exit 0. Handle stability across restarts is checked at
//! the RPC level in crfs-nfs's tests (libnfs opens by path every time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "../../nfs/tests/support/bigdir.rs"]
mod bigdir;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crfs_core::Digest;
use crfs_testkit::{assert_same_listing, scratch_dir, testdata};
use support::{Served, libnfs_available};

fn fixture(name: &str) -> PathBuf {
    testdata().join("fixtures").join(name)
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn nfs_ls_recursive(served: &Served, path: &str) -> String {
    let out = run("nfs-ls", &["-R", &served.url(path)]);
    assert!(out.status.success(), "nfs-ls -R failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Lines sorted, so listings compare regardless of directory order.
fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// One entry of a fixture's canonical listing (format: testdata/interop/main.go).
struct Entry {
    path: String,
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: Option<u64>,
    sha: Option<String>,
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn entries(list: &Path) -> Vec<Entry> {
    std::fs::read_to_string(list)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Entry {
                path: if f[0] == "." { String::new() } else { unescape(f[0]) },
                kind: f[1].to_string(),
                mode: u32::from_str_radix(f[2], 8).unwrap(),
                uid: f[3].parse().unwrap(),
                gid: f[4].parse().unwrap(),
                size: f[5].parse().unwrap(),
                nlink: f[7].parse().ok(),
                sha: (f[10] != "-").then(|| f[10].to_string()),
            }
        })
        .collect()
}

/// What `nfs-ls -R` prints for these entries (its utils/nfs-ls.c format: a type letter, none
/// for a FIFO; rwx bits only; a directory's link count is 2 + its subdirectories).
fn expected_nfs_ls(entries: &[Entry], under: &str) -> String {
    let mut subdirs: BTreeMap<&str, u64> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == "dir" && !e.path.is_empty()) {
        let parent = e.path.rsplit_once('/').map_or("", |(p, _)| p);
        *subdirs.entry(parent).or_default() += 1;
    }
    let mut out = String::new();
    for e in entries.iter().filter(|e| !e.path.is_empty()) {
        let Some(rel) = (if under.is_empty() { Some(e.path.as_str()) } else { e.path.strip_prefix(under) }) else {
            continue;
        };
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            continue;
        }
        let kind = match e.kind.as_str() {
            "dir" => "d",
            "reg" => "-",
            "symlink" => "l",
            "char" => "c",
            "block" => "b",
            _ => "",
        };
        let bit = |mask: u32, c: char| if e.mode & mask != 0 { c } else { '-' };
        let rwx: String = [
            bit(0o400, 'r'),
            bit(0o200, 'w'),
            bit(0o100, 'x'),
            bit(0o040, 'r'),
            bit(0o020, 'w'),
            bit(0o010, 'x'),
            bit(0o004, 'r'),
            bit(0o002, 'w'),
            bit(0o001, 'x'),
        ]
        .iter()
        .collect();
        let nlink = e.nlink.unwrap_or_else(|| 2 + subdirs.get(e.path.as_str()).copied().unwrap_or(0));
        out.push_str(&format!("{kind}{rwx} {nlink:>2} {:>5} {:>5} {:>12} {rel}\n", e.uid, e.gid, e.size));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every regular file with nfs-cat, eight at a time, and checks its sha256.
fn check_contents(served: &Served, files: &[(String, String)]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((path, sha)) = files.get(i) else { break };
                    let out = run("nfs-cat", &[&served.url(path)]);
                    let got = hex(&Digest::of(&out.stdout).0);
                    if !out.status.success() || &got != sha {
                        let err = String::from_utf8_lossy(&out.stderr).into_owned();
                        failures.lock().unwrap().push(format!("{path:?}: {} {got} {err}", out.status));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} files read wrong, e.g. {:?}",
        failures.len(),
        files.len(),
        &failures[..3.min(failures.len())]
    );
}

fn regular_files(entries: &[Entry]) -> Vec<(String, String)> {
    entries.iter().filter(|e| e.kind == "reg").map(|e| (e.path.clone(), e.sha.clone().unwrap())).collect()
}

#[test]
fn listing_and_contents_of_all_types_match_the_fixture() {
    if !libnfs_available() {
        return;
    }
    let mut served = Served::start(&fixture("all-types.esgz"), "127.0.0.1:0");
    let log = served.log();
    assert!(log.contains(&format!("port={0},mountport={0}", served.port)), "{log}");
    assert!(log.contains("Linux: sudo mount -t nfs -o vers=3") && log.contains("macOS: sudo mount_nfs -o"), "{log}");
    let all = entries(&fixture("all-types.esgz.list"));
    let got = nfs_ls_recursive(&served, "");
    assert_same_listing("nfs-ls -R all-types.esgz", &sorted(&got), &sorted(&expected_nfs_ls(&all, "")));
    // Hardlinks (one inode, four names, same bytes), symlinks, devices, a FIFO.
    for line in
        ["-rw-r-----  4     0     0         5000 links/hard2", "lrwxrwxrwx  1     0     0           18 links/rel"]
    {
        assert!(got.lines().any(|l| l == line), "no {line:?} in\n{got}");
    }
    for line in ["crw-rw-rw-  1     0     0            0 dev/null", "brw-rw----  1     0     6            0 dev/loop0"]
    {
        assert!(got.lines().any(|l| l == line), "no {line:?} in\n{got}");
    }
    check_contents(&served, &regular_files(&all));
    // SIGINT ends the server cleanly.
    let status = served.signal(libc::SIGINT);
    assert!(status.success(), "crfs nfs exited with {status}: {}", served.log());
}

#[test]
fn every_file_of_many_reads_back_by_hash() {
    if !libnfs_available() {
        return;
    }
    let served = Served::start(&fixture("many.esgz"), "127.0.0.1:0");
    let all = entries(&fixture("many.esgz.list"));
    let got = nfs_ls_recursive(&served, "");
    assert_same_listing("nfs-ls -R many.esgz", &sorted(&got), &sorted(&expected_nfs_ls(&all, "")));
    let files = regular_files(&all);
    assert!(files.len() >= 5000, "{} files", files.len());
    check_contents(&served, &files);
}

#[test]
fn a_five_thousand_name_directory_lists_each_name_once() {
    if !libnfs_available() {
        return;
    }
    let dir = scratch_dir("cli-nfs-bigdir");
    let Some(blob) = bigdir::blob(&dir) else { return };
    let served = Served::start(&blob, "127.0.0.1:0");
    let got = nfs_ls_recursive(&served, "big");
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for line in got.lines() {
        let name = line.rsplit(' ').next().unwrap();
        *names.entry(name).or_default() += 1;
        let index: usize = name[1..5].parse().unwrap();
        let links = if index.is_multiple_of(bigdir::LINK_EVERY) { "  2 " } else { "  1 " };
        assert!(line.starts_with("-rw-r--r-- ") && line.contains(links), "{line}");
    }
    let twice: Vec<_> = names.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "listed more than once: {twice:?}");
    let want = bigdir::names();
    assert_eq!(names.keys().copied().collect::<Vec<_>>(), want.iter().map(String::as_str).collect::<Vec<_>>());
    // A few reads through the links and their targets.
    for name in ["f0000", "f0000.link", "f4749.link", "f4749", "f4999"] {
        if !want.iter().any(|w| w == name) {
            continue;
        }
        let out = run("nfs-cat", &[&served.url(&format!("big/{name}"))]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, bigdir::content(name), "{name}");
    }
}

#[test]
fn a_restart_midway_and_writes_refused() {
    if !libnfs_available() {
        return;
    }
    let blob = fixture("all-types.esgz");
    let all = entries(&fixture("all-types.esgz.list"));
    let files = regular_files(&all);
    let (first, second) = files.split_at(files.len() / 2);

    let mut served = Served::start(&blob, "127.0.0.1:0");
    let port = served.port;
    check_contents(&served, first);

    // Writes: nfs-cp into the export fails with NFS3ERR_ROFS and changes nothing.
    let local = scratch_dir("cli-nfs-rofs").join("new.txt");
    std::fs::write(&local, b"new\n").unwrap();
    let out = run("nfs-cp", &[local.to_str().unwrap(), &served.url("files/new.txt")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nfs-cp into the export succeeded");
    assert!(err.contains("NFS3ERR_ROFS"), "{err}");

    let status = served.stop();
    assert!(status.success(), "crfs nfs exited with {status} on SIGTERM: {}", served.log());

    // Same port, new process: the rest reads as if nothing happened.
    let served = Served::start(&blob, &format!("127.0.0.1:{port}"));
    assert_eq!(served.port, port);
    check_contents(&served, second);
    let got = nfs_ls_recursive(&served, "files");
    assert!(!got.contains("new.txt"), "{got}");
    assert_same_listing("nfs-ls -R files after restart", &sorted(&got), &sorted(&expected_nfs_ls(&all, "files")));
}

#[test]
fn several_layers_are_served_merged() {
    if !libnfs_available() {
        return;
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crfs"));
    let out =
        cmd.args(["nfs", "--overlay-whiteouts"]).arg(fixture("all-types.esgz")).arg(fixture("many.esgz")).output();
    let out = out.unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("single layer"));

    let served = Served::start_layers(&[&fixture("all-types.esgz"), &fixture("many.esgz")], "127.0.0.1:0");
    let got = nfs_ls_recursive(&served, "");
    for line in [" links/hard2", " d49/f099", " dev/null"] {
        assert!(got.lines().any(|l| l.ends_with(line)), "no {line} in the merged listing");
    }
    let out = run("nfs-cat", &[&served.url("files/small.txt")]);
    assert_eq!(out.stdout, b"hello, world\n");
}
