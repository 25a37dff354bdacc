//! The `crfs` binary on the committed fixtures: output formats, exit codes, error lines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fixtures")
}

fn crfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crfs")).args(args).output().expect("running crfs")
}

fn blob(name: &str) -> String {
    fixtures().join(name).to_string_lossy().into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Decodes the percent-escaped path column of a fixture listing.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn ls_recursive_prints_every_path_once_relative_to_the_root() {
    for name in ["all-types.esgz", "all-types.zstdchunked", "all-types.stargz", "many.esgz"] {
        let o = crfs(&["ls", "-R", &blob(name)]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let listing = std::fs::read_to_string(fixtures().join(format!("{name}.list"))).unwrap();
        // Depth first, children in byte order of their names: sort by component lists.
        let mut want: Vec<Vec<Vec<u8>>> = listing
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .filter(|p| *p != ".")
            .map(|p| unescape(p).split(|&b| b == b'/').map(<[u8]>::to_vec).collect())
            .collect();
        want.sort();
        let mut expected = Vec::new();
        for comps in &want {
            expected.extend_from_slice(&comps.join(&b'/'));
            expected.push(b'\n');
        }
        assert!(o.stdout == expected, "{name}:\n{}", String::from_utf8_lossy(&o.stdout));
        assert!(!o.stdout.starts_with(b"/") && !o.stdout.windows(2).any(|w| w == b"\n/"), "{name}: no leading slash");
    }
}

#[test]
fn ls_long_shows_modes_owners_devices_and_links() {
    let o = crfs(&["ls", "-l", &blob("all-types.esgz"), "dev"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.lines().any(|l| l.starts_with("crw-rw-rw-") && l.contains("1, 3") && l.ends_with(" null")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("brw-rw----") && l.contains("7, 0") && l.ends_with(" loop0")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("prw--w----") && l.ends_with(" fifo")), "{text}");
    let o = crfs(&["ls", "-l", &blob("all-types.esgz"), "links"]);
    let text = stdout(&o);
    assert!(text.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("rel -> ../files/small.txt")), "{text}");
    let o = crfs(&["ls", "-l", &blob("all-types.esgz"), "files"]);
    let text = stdout(&o);
    assert!(text.lines().any(|l| l.starts_with("-rwsr-xr-x") && l.ends_with(" suid")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("-rwxr-sr-x") && l.ends_with(" sgid")), "{text}");
    let o = crfs(&["ls", "-l", &blob("all-types.esgz"), "dirs"]);
    assert!(stdout(&o).lines().any(|l| l.starts_with("drwxrwxrwt") && l.ends_with(" sticky")));
}

#[test]
fn cat_writes_file_bytes_and_resolves_links() {
    let o = crfs(&["cat", &blob("all-types.esgz"), "files/small.txt"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, b"hello, world\n");
    // A symlink followed inside the layer, and several paths in one call.
    let o = crfs(&["cat", &blob("all-types.stargz"), "links/rel", "files/small.txt"]);
    assert_eq!(o.stdout, b"hello, world\nhello, world\n");
    // A hardlink gives its target's bytes; a chunked file comes out whole.
    let a = crfs(&["cat", &blob("all-types-c4096.esgz"), "links/hard1"]);
    let b = crfs(&["cat", &blob("all-types.zstdchunked"), "files/data.bin"]);
    assert!(a.status.success() && b.status.success());
    assert!(a.stdout.len() > 4096);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn verify_passes_on_good_blobs_and_checks_the_toc_digest() {
    for name in ["all-types.esgz", "all-types-c4096.esgz", "all-types.zstdchunked", "many.esgz"] {
        let digest = std::fs::read_to_string(fixtures().join(format!("{name}.toc-digest"))).unwrap();
        let o = crfs(&["verify", "--toc-digest", digest.trim(), &blob(name)]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout(&o).contains(&format!("toc-digest {}", digest.trim())));
    }
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let o = crfs(&["verify", "--toc-digest", wrong, &blob("all-types.esgz")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("TOC digest does not match"));
}

#[test]
fn verify_names_the_file_whose_chunk_is_corrupt() {
    // Flip one byte inside the payload of files/medium.bin (its second 4 KiB chunk).
    let src = fixtures().join("all-types-c4096.esgz");
    let mut bytes = std::fs::read(&src).unwrap();
    let listing = crfs(&["info", &blob("all-types-c4096.esgz")]);
    assert!(listing.status.success());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Find a compressed byte that changes medium.bin only: try offsets until verify fails
    // naming medium.bin and nothing else.
    let mut found = false;
    for offset in (200..bytes.len() - 2000).step_by(97) {
        bytes[offset] ^= 0x55;
        let path = dir.join(format!("corrupt-{}.esgz", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let o = crfs(&["verify", path.to_str().unwrap()]);
        bytes[offset] ^= 0x55;
        let text = stdout(&o);
        if o.status.code() == Some(1) && text.contains("FAILED files/medium.bin") {
            assert_eq!(text.matches("FAILED").count(), 1, "{text}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.lines().count(), 1, "one error line: {err}");
            found = true;
            break;
        }
    }
    assert!(found, "no single-byte corruption of medium.bin was detected");
}

#[test]
fn errors_are_one_line_with_exit_1_and_usage_errors_exit_2() {
    let o = crfs(&["info", "/nonexistent/blob"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("crfs: /nonexistent/blob: "), "{err}");

    let tar = blob("all-types.tar");
    let o = crfs(&["ls", &tar]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no footer found") && err.lines().count() == 1, "{err}");

    let o = crfs(&["cat", &blob("all-types.esgz"), "no/such/file"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/file: no such file or directory"));
    let o = crfs(&["cat", &blob("all-types.esgz"), "files"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("files: is a directory"));

    let o = crfs(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = crfs(&["cat", &blob("all-types.esgz")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn demo_runs_on_the_embedded_sample() {
    let o = crfs(&["demo"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("format            estargz"));
    assert!(text.contains("0 failures"), "{text}");
}
