//! `crfs` on images in a real registry (Debian's docker-registry on 127.0.0.1, images pushed by
//! skopeo): inspection by reference, `crfs mount HOST/REPO:TAG DIR`, and the /crfs namespace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "../../remote/tests/common/mod.rs"]
mod common;
mod mounted;

use std::fs;
use std::path::Path;
use std::process::Command;

use crfs_testkit::{assert_same_listing, in_ci, scratch_dir, testdata, tree_listing};
use mounted::Mounted;

fn crfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crfs"))
}

fn fuse_ok() -> bool {
    let ok = Path::new("/dev/fuse").exists();
    assert!(ok || !in_ci(), "CI needs /dev/fuse");
    ok
}

/// The fixture's listing as an image root shows it: whiteout files consumed.
fn image_listing() -> String {
    let list = fs::read_to_string(testdata().join("fixtures/all-types.esgz.list")).unwrap();
    list.lines().filter(|l| !l.starts_with(".\t") && !l.contains(".wh.")).map(|l| format!("{l}\n")).collect()
}

fn without_root(listing: &str) -> String {
    listing.lines().filter(|l| !l.starts_with(".\t")).map(|l| format!("{l}\n")).collect()
}

#[test]
fn inspect_and_mount_an_image_by_reference() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = common::registry_with_image("cli-ref", false);
    let reference = format!("{}/test/all-types:v1", reg.host());

    let out = crfs().args(["info", &reference]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want_digest = fs::read_to_string(testdata().join("fixtures/all-types.esgz.toc-digest")).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(want_digest.trim()));
    let out = crfs().args(["cat", &reference, "links/rel"]).output().unwrap();
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = crfs().args(["verify", &reference]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = crfs().args(["ls", &reference, "wh"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "opaque\n", "an image's root consumes its whiteouts");

    let missing = crfs().args(["ls", &format!("{}/test/all-types:v9", reg.host())]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    if !fuse_ok() {
        return;
    }
    let scratch = scratch_dir("cli-registry-mount");
    let m = Mounted::new(&[&reference], &scratch.join("mnt"));
    assert_same_listing("mounted image", &without_root(&tree_listing(&m.1)), &image_listing());
}

#[test]
fn the_namespace_serves_images_and_layers_on_lookup() {
    if !common::have_tools() || !fuse_ok() {
        return;
    }
    let (reg, pushed) = common::registry_with_image("cli-ns", false);
    let scratch = scratch_dir("cli-namespace");
    let m = Mounted::new(&[], &scratch.join("crfs"));
    let root = &m.1;
    let readme = fs::read_to_string(root.join("README")).unwrap();
    assert!(readme.contains("image/<host>/<repo>:<tag>/"));
    let image = root.join("image").join(reg.host()).join("test").join("all-types:v1");
    assert_same_listing("namespace image", &without_root(&tree_listing(&image)), &image_listing());
    assert_eq!(fs::read(image.join("files/small.txt")).unwrap(), b"hello, world\n");
    // Listing image/ shows what was looked up so far.
    let hosts: Vec<String> = fs::read_dir(root.join("image"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(hosts, [reg.host()]);
    // The image's layers by digest.
    let layers = root.join("layer").join(reg.host()).join("test").join("all-types:v1");
    let digests: Vec<String> =
        fs::read_dir(&layers).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(digests, std::slice::from_ref(&pushed.layer_digest));
    assert!(layers.join(&pushed.layer_digest).join("wh/.wh.gone").is_file(), "a layer shows what it holds");
    let by_digest = root.join("layer").join(reg.host()).join("test").join(format!("all-types@{}", pushed.layer_digest));
    assert!(by_digest.join("files/small.txt").is_file());
    // Missing tags and repositories: ENOENT.
    let e = fs::metadata(root.join("image").join(reg.host()).join("test").join("all-types:nope")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    let e = fs::metadata(root.join("image").join(reg.host()).join("no/such/repo:v1")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
}

/// Credentials never reach the logs: `crfs` against a registry behind basic auth, with every
/// log target at trace level (the HTTP stack's included), prints neither the password nor the
/// base64 `Authorization: Basic` value, whether the credentials are right or wrong.
#[test]
fn credentials_never_reach_the_logs() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = common::registry_with_image("cli-creds-log", true);
    let reference = format!("{}/test/all-types:v1", reg.host());
    let good = format!("{}:{}", common::USER, common::PASSWORD);
    let out = crfs()
        .args(["cat", &reference, "links/rel"])
        .env("RUST_LOG", "trace")
        .env("CRFS_REGISTRY_CREDS", &good)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.stdout, b"hello, world\n", "{stderr}");
    assert!(stderr.lines().count() > 20, "trace logging is on: {stderr}");
    assert!(stderr.contains("reqwest") || stderr.contains("hyper"), "the HTTP stack logs too: {stderr}");
    assert!(stderr.contains(common::USER) || stderr.contains("401"), "the auth exchange is logged: {stderr}");
    assert!(!stderr.contains(common::PASSWORD), "the password is in the log");
    assert!(!stderr.contains(&common::base64_basic()), "the basic-auth header is in the log");

    let wrong = "crfs:wrong-secret-4711";
    let out = crfs().args(["ls", &reference]).env("RUST_LOG", "trace").args(["--creds", wrong]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wrong username or password"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-4711"), "the wrong password is in the log");
}
