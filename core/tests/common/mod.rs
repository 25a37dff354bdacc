//! Shared by the core's integration tests: the canonical listing the Go interop helper
//! (testdata/interop) prints, computed here from a crfs index.

#![allow(dead_code)]

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
