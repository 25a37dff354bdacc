//! `crfs nfs` beside a system rpcbind: Debian's rpcbind (its .deb fetched with apt-get
//! download and extracted, never installed) holds port 111 in a network namespace of the test's
//! own (`unshare -n -m`, so the host's ports and /run are untouched); `crfs nfs BLOB` on the
//! standard ports finds 111 taken, registers NFS, MOUNT, NLM and NSM with it, says so, and
//! takes them out again when SIGTERM stops it. `rpcinfo -p` (from the same package) shows both.
//!
//! Needs root, unshare (util-linux), ip (iproute2), apt-get and dpkg-deb; the runtime libraries
//! of rpcbind and rpcinfo (libtirpc3, libwrap0) are installed by .ci/run. Locally a missing piece
//! skips; with CI=true it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::path::{Path, PathBuf};
use std::process::Command;

use crfs_testkit::{is_root, need, testdata};

/// rpcbind's package, extracted under `target/rpcbind-pkg` (downloaded once into
/// `target/rpcbind-debs`).
fn rpcbind_package() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let pkg = target.join("rpcbind-pkg");
    if pkg.join("sbin/rpcbind").is_file() {
        return Some(pkg);
    }
    let debs = target.join("rpcbind-debs");
    std::fs::create_dir_all(&debs).ok()?;
    let deb = |dir: &Path| {
        std::fs::read_dir(dir).ok()?.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rpcbind_") && n.ends_with(".deb"))
        })
    };
    if deb(&debs).is_none() {
        let got = Command::new("apt-get").args(["download", "-q", "rpcbind"]).current_dir(&debs).status();
        if !got.is_ok_and(|s| s.success()) {
            return None;
        }
    }
    let status = Command::new("dpkg-deb").arg("-x").arg(deb(&debs)?).arg(&pkg).status().ok()?;
    status.success().then_some(pkg)
}

/// The lines of `text` between the marker line `start` and the next marker.
fn section<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    text.lines().skip_while(|l| *l != start).skip(1).take_while(|l| !l.starts_with("@@")).collect()
}

/// rpcinfo -p rows as (program, version, proto, port).
fn rows(lines: &[&str]) -> Vec<(String, String, String, String)> {
    lines
        .iter()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

#[test]
fn crfs_registers_with_a_system_rpcbind_and_leaves_it_as_it_found_it() {
    let tools = ["unshare", "ip", "dpkg-deb", "apt-get"];
    let have = |t: &str| {
        Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().is_ok_and(|o| o.status.success())
    };
    if !need(is_root(), "root") || !need(tools.iter().all(|t| have(t)), "unshare, ip, dpkg-deb and apt-get") {
        return;
    }
    let Some(pkg) = rpcbind_package() else {
        need(false, "rpcbind's .deb (apt-get download rpcbind)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rpcbind/beside-rpcbind.sh");
    let out = Command::new("unshare")
        .args(["-n", "-m", "bash"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_crfs"))
        .arg(testdata().join("sample.esgz"))
        .arg(&pkg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the script failed: {text}\n{err}");

    let crfs = section(&text, "@@CRFS").join("\n");
    assert!(crfs.contains("crfs: registered with the rpcbind on 127.0.0.1:111"), "{crfs}\n{err}");
    assert!(crfs.contains("Linux: sudo mount -t nfs localhost:/ /mnt"), "{crfs}");

    let while_running = rows(&section(&text, "@@WHILE"));
    let row = |p: &str, v: &str, t: &str, port: &str| (p.to_string(), v.to_string(), t.to_string(), port.to_string());
    for want in [
        row("100003", "3", "tcp", "2049"),
        row("100005", "3", "udp", "2049"),
        row("100005", "1", "tcp", "2049"),
        row("100021", "4", "tcp", "2049"),
        row("100024", "1", "udp", "2049"),
        row("100000", "2", "tcp", "111"),
    ] {
        assert!(while_running.contains(&want), "no {want:?} while crfs runs:\n{text}");
    }
    assert!(!while_running.iter().any(|r| r.0 == "100003" && r.2 == "udp"), "no NFS over UDP:\n{text}");

    assert!(text.contains("@@EXIT 0"), "crfs did not exit 0 on SIGTERM:\n{text}");
    let after = rows(&section(&text, "@@AFTER"));
    assert!(after.iter().any(|r| r.0 == "100000"), "rpcbind itself is still there:\n{text}");
    assert!(after.iter().all(|r| r.0 == "100000"), "crfs left registrations behind:\n{text}");
}
