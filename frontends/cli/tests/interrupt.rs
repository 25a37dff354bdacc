//! A real SIGINT or SIGTERM in the middle of `crfs convert` or `crfs image convert` removes the
//! temporary output (the decompressed spool, the half-written blob, a destination layout the
//! run created) and exits 128 + the signal number.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crfs_core::Digest;
use crfs_testkit::{TarBuilder, TarEntry, scratch_dir};

/// A tar of `files` files of 4 MiB of poorly compressible bytes: seconds of level-9 work on one
/// thread.
fn big_tar(files: usize) -> Vec<u8> {
    let mut t = TarBuilder::default();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..files {
        let data: Vec<u8> = (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8 & 0x3f
            })
            .collect();
        t.add(&format!("f{i}"), TarEntry::File(&data), 0o644, 1_700_000_000);
    }
    t.finish()
}

/// Files under `dir` whose name contains `part`.
fn find(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            if p.file_name().unwrap().to_string_lossy().contains(part) {
                out.push(p);
            }
        }
    }
    out
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool, child: &mut Child) {
    let start = Instant::now();
    while !cond() {
        assert!(child.try_wait().unwrap().is_none(), "crfs exited before {what}");
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

fn crfs(args: &[&str], tmpdir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crfs"))
        .args(args)
        .env("TMPDIR", tmpdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn exit_code(child: Child) -> (i32, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.code().expect("exited, not killed"), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn sigint_while_spooling_a_fifo_and_sigterm_while_compressing_remove_everything() {
    let dir = scratch_dir("interrupt");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let tar = big_tar(6);

    // 1. Spooling: the input is a FIFO this test holds open after writing half of the tar.
    let fifo = dir.join("in.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = dir.join("out.esgz");
    let child = crfs(&["convert", fifo.to_str().unwrap(), out.to_str().unwrap()], &tmp);
    let mut child = child;
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&tar[..tar.len() / 2]).unwrap();
    wait_for("the spool file", || !find(&tmp, "crfs-convert-").is_empty(), &mut child);
    signal(&child, "-INT");
    let (code, stderr) = exit_code(child);
    drop(writer);
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(find(&tmp, "crfs-convert-").is_empty(), "the spool is left");
    assert!(find(&dir, "crfs-tmp").is_empty() && !out.exists());

    // 2. Compressing: the temporary output exists, SIGTERM.
    let input = dir.join("in.tar");
    std::fs::write(&input, &tar).unwrap();
    let mut child = crfs(&["convert", "--threads", "1", input.to_str().unwrap(), out.to_str().unwrap()], &tmp);
    wait_for("the temporary output", || !find(&dir, "crfs-tmp").is_empty(), &mut child);
    signal(&child, "-TERM");
    let (code, stderr) = exit_code(child);
    assert_eq!(code, 143, "{stderr}");
    assert!(find(&dir, "crfs-tmp").is_empty(), "the temporary output is left");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigint_during_image_convert_removes_the_new_layout() {
    let dir = scratch_dir("interrupt-image");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let src = dir.join("src");
    let blobs = src.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::of(data).to_string();
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        (d, data.len())
    };
    let tar = big_tar(6);
    let (ld, ls) = put(&tar);
    let (cd, cs) =
        put(format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{ld}"]}}}}"#)
            .as_bytes());
    let (md, ms) = put(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls}}}]}}"#
    ).as_bytes());
    std::fs::write(
        src.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms}}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(src.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let dst = dir.join("new/dst");
    let spec_src = format!("oci:{}", src.display());
    let spec_dst = format!("oci:{}:v1", dst.display());
    let mut child = crfs(&["image", "convert", "--threads", "1", &spec_src, &spec_dst], &tmp);
    wait_for("the layer being written", || !find(&dst, "crfs-tmp").is_empty(), &mut child);
    signal(&child, "-INT");
    let (code, stderr) = exit_code(child);
    assert_eq!(code, 130, "{stderr}");
    assert!(!dir.join("new").exists(), "the destination it created is left");
    std::fs::remove_dir_all(&dir).unwrap();
}
