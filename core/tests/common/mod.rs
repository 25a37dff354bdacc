//! Shared by the core's integration tests: the canonical listing the Go interop helper
//! (testdata/interop) prints, computed here from a crfs index.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use base64::Engine as _;
use crfs_core::{Digest, Kind, Layer, NodeId, ReadAt};

/// The repository's testdata directory.
pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Percent-encodes bytes outside 0x21..=0x7e, and `%` itself.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// One line per name, lines sorted bytewise (so by escaped path): see testdata/interop/main.go for the format.
pub fn listing<R: ReadAt>(layer: &Layer<R>) -> String {
    let index = layer.index();
    let mut lines: Vec<String> = Vec::new();
    let mut data = Vec::new();
    for id in 0..index.len() as NodeId {
        let path = index.path(id);
        let inode = index.resolve(id);
        let node = index.node(inode).unwrap();
        let kind = node.kind();
        let nlink = if kind == Kind::Dir { "-".to_string() } else { node.nlink().to_string() };
        let link = if kind == Kind::Symlink { escape(index.symlink_target(inode)) } else { "-".into() };
        let dev = match kind {
            Kind::Char | Kind::Block => format!("{},{}", node.rdev().0, node.rdev().1),
            _ => "-".into(),
        };
        let sha = if kind == Kind::Reg {
            layer.read_file_verified(inode, &mut data).unwrap_or_else(|e| panic!("{}: {e}", escape(&path)));
            Digest::of(&data).to_string().trim_start_matches("sha256:").to_string()
        } else {
            "-".into()
        };
        let mut xattrs: Vec<String> = index
            .xattrs(inode)
            .map(|(k, v)| format!("{}={}", escape(k), base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        xattrs.sort();
        let xattrs = if xattrs.is_empty() { "-".to_string() } else { xattrs.join(",") };
        let shown = if path.is_empty() { ".".to_string() } else { escape(&path) };
        let line = format!(
            "{shown}\t{}\t{:04o}\t{}\t{}\t{}\t{}\t{nlink}\t{link}\t{dev}\t{sha}\t{xattrs}",
            kind.name(),
            node.mode(),
            node.uid(),
            node.gid(),
            node.size(),
            node.mtime().0,
        );
        lines.push(line);
    }
    lines.sort();
    let mut out = String::new();
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Prints the first differing lines of two listings and fails.
pub fn assert_same_listing(what: &str, got: &str, want: &str) {
    if got == want {
        return;
    }
    let got_lines: std::collections::BTreeSet<&str> = got.lines().collect();
    let want_lines: std::collections::BTreeSet<&str> = want.lines().collect();
    let mut report = String::new();
    for l in want_lines.difference(&got_lines).take(10) {
        report.push_str(&format!("  want: {l}\n"));
    }
    for l in got_lines.difference(&want_lines).take(10) {
        report.push_str(&format!("  got:  {l}\n"));
    }
    panic!("{what}: listings differ\n{report}");
}

/// Whether the tests run in CI, where every external tool must be present.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// The Go interop helper (testdata/interop), built once per source change with the reference
/// estargz package from Debian (GOPATH mode). `None` outside CI when Go is missing.
pub fn interop_bin() -> Option<PathBuf> {
    use std::process::Command;
    let src = testdata().join("interop");
    let have_go = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
    if !have_go {
        assert!(!in_ci(), "CI needs Go (golang-go) for the interop tests");
        eprintln!("skipping: go is not installed");
        return None;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bin = tmp.join("interop");
    let source_mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (source_mtime(&bin), source_mtime(&src.join("main.go"))) {
        (Some(b), Some(s)) => b >= s,
        _ => false,
    };
    if !fresh {
        // Tests run as separate processes: build to a private name, then rename into place.
        let private = tmp.join(format!("interop.{}", std::process::id()));
        let gopath = tmp.join("gopath");
        let status = Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(&private)
            .arg(".")
            .current_dir(&src)
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display()))
            .status()
            .expect("running go build");
        assert!(
            status.success(),
            "go build of testdata/interop failed (is golang-github-containerd-stargz-snapshotter-dev installed?)"
        );
        std::fs::rename(&private, &bin).expect("installing the interop binary");
    }
    Some(bin)
}

/// Runs the interop helper and returns its stdout.
pub fn interop(bin: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bin).args(args).output().expect("running interop");
    assert!(out.status.success(), "interop {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("interop output is UTF-8")
}
