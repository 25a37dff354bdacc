//! `crfs image convert` with registries on either side (Debian's docker-registry on 127.0.0.1,
//! the source image pushed there by skopeo): a layout to a registry, a registry to another
//! repository of the same registry and to a layout, all giving the image digest the
//! layout-to-layout conversion gives. The pushed image is checked through skopeo (inspect, and
//! a copy back to a layout whose layers the Go reference verifies against their annotations),
//! and lazily through the registry with `crfs ls -R` / `crfs cat`. A second run uploads no
//! blob; an already converted image pushed to another repository is mounted, not uploaded. A
//! basic-auth registry takes the push with --creds and refuses it, in one line, without.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "../../remote/tests/common/mod.rs"]
mod common;
mod images;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crfs_testkit::{interop_bin, scratch_dir};
use images::*;
use serde_json::Value;

/// `crfs ARGS` with no credentials from the environment or a Docker config, and `tmp` as
/// `$TMPDIR` (where registry images are staged).
fn crfs_isolated(tmp: &Path, args: &[&str]) -> Output {
    let docker_config = tmp.with_extension("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::create_dir_all(tmp).unwrap();
    Command::new(env!("CARGO_BIN_EXE_crfs"))
        .args(args)
        .env("DOCKER_CONFIG", &docker_config)
        .env("TMPDIR", tmp)
        .env_remove("CRFS_REGISTRY_CREDS")
        .output()
        .expect("running crfs")
}

fn succeeds(tmp: &Path, args: &[&str]) -> String {
    let o = crfs_isolated(tmp, args);
    assert!(o.status.success(), "crfs {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(staged(tmp), Vec::<PathBuf>::new(), "staging layouts left behind");
    String::from_utf8(o.stdout).unwrap()
}

/// Fails with one `crfs: ` line containing `want`, and leaves nothing staged.
fn fails(tmp: &Path, args: &[&str], want: &str) -> String {
    let o = crfs_isolated(tmp, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "crfs {args:?} succeeded");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("crfs: ") && err.contains(want), "want {want:?}: {err}");
    assert_eq!(staged(tmp), Vec::<PathBuf>::new(), "staging layouts left behind");
    eprint!("as expected: {err}");
    err
}

fn staged(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp).unwrap().map(|e| e.unwrap().path()).collect()
}

/// The `image DIGEST` line.
fn image_digest(out: &str) -> String {
    out.lines().last().and_then(|l| l.strip_prefix("image ")).unwrap_or_else(|| panic!("no image line: {out}")).into()
}

/// (uploaded, uploaded bytes, already there, mounted) from the `blobs:` line.
fn blob_counts(out: &str) -> (u64, u64, u64, u64) {
    let line = out.lines().find(|l| l.starts_with("blobs: ")).unwrap_or_else(|| panic!("no blobs line: {out}"));
    let n: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().unwrap()).collect();
    (n[0], n[1], n[2], n[3])
}

fn skopeo_registry(dir: &Path, args: &[&str]) -> String {
    let mut all = vec![args[0], "--tls-verify=false"];
    all.extend(&args[1..]);
    skopeo(dir, &all)
}

/// Whether a skopeo command that needs no policy succeeds.
fn skopeo_succeeds(args: &[&str]) -> bool {
    Command::new("skopeo").args(args).output().unwrap().status.success()
}

/// The pushed image copied back to a layout by skopeo, checked as a converted layout (layer
/// annotations, DiffIDs, the Go reference's verification); returns the distinct layers.
fn check_pushed(dir: &Path, reference: &str, zstd: bool, go: Option<&Path>) -> usize {
    let copy = dir.join(format!("copy-{}", reference.replace(['/', ':', '@'], "-")));
    skopeo_registry(
        dir,
        &["copy", "--quiet", "--all", &format!("docker://{reference}"), &format!("oci:{}:c", s(&copy))],
    );
    check_converted(&copy, "c", zstd, go)
}

#[test]
fn registry_sources_and_destinations() {
    if !common::have_tools() {
        return;
    }
    let go = interop_bin();
    let reg = common::Registry::start("image-convert", false);
    let host = reg.host();
    let dir = scratch_dir("image-convert-registry");
    let tmp = dir.join("tmp");
    let src = dir.join("src");
    make_source(&src, None);
    let src_ref = format!("{host}/src/app:v1");
    // Byte for byte: skopeo would otherwise compress the plain tar layer on the way.
    let (from, to) = (format!("oci:{}:v1", s(&src)), format!("docker://{src_ref}"));
    skopeo(&dir, &["copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false", &from, &to]);
    let raw = skopeo_registry(&dir, &["inspect", "--raw", &format!("docker://{src_ref}")]);
    let top: Value = serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        crfs_core::Digest::of(raw.as_bytes()).to_string(),
        top["manifests"][0]["digest"].as_str().unwrap(),
        "skopeo pushed the index as it is"
    );

    // The layout path gives the reference digest.
    let layout_out = succeeds(
        &tmp,
        &["image", "convert", &format!("oci:{}:v1", s(&src)), &format!("oci:{}:v1", s(&dir.join("local")))],
    );
    let want = image_digest(&layout_out);

    // A layout to a registry: 4 distinct layers and 2 configs uploaded.
    let pushed_ref = format!("{host}/conv/a:v1");
    let out = succeeds(&tmp, &["image", "convert", &format!("oci:{}:v1", s(&src)), &pushed_ref]);
    assert_eq!(image_digest(&out), want, "{out}");
    assert!(out.contains(&format!("pushed {pushed_ref}\n")), "{out}");
    let (uploaded, bytes, existed, mounted) = blob_counts(&out);
    assert_eq!((uploaded, existed, mounted), (6, 0, 0), "{out}");
    eprintln!("first push: {uploaded} blobs, {bytes} bytes uploaded");
    assert_eq!(check_pushed(&dir, &pushed_ref, false, go.as_deref()), 4);
    let inspected = skopeo_registry(&dir, &["inspect", "--override-arch", "arm64", &format!("docker://{pushed_ref}")]);
    let v: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), want, "the tag names the converted index");
    let (_, arm) = manifests(&dir.join("local"), "v1").into_iter().find(|(a, _)| a == "arm64").unwrap();
    let arm_layers: Vec<&Value> = arm["layers"].as_array().unwrap().iter().map(|l| &l["digest"]).collect();
    assert_eq!(v["Layers"].as_array().unwrap().iter().collect::<Vec<_>>(), arm_layers, "{inspected}");
    // Served lazily through the registry, verified against the pushed annotations.
    check_merged(&pushed_ref, "linux/amd64", &merged(&[BASE, MIDDLE, TOP_AMD64]));
    check_merged(&pushed_ref, "linux/arm64", &merged(&[BASE, MIDDLE, TOP_ARM64]));

    // Again: every blob is there already.
    let again = succeeds(&tmp, &["image", "convert", &format!("oci:{}:v1", s(&src)), &pushed_ref]);
    assert_eq!(blob_counts(&again), (0, 0, 6, 0), "{again}");
    assert_eq!(image_digest(&again), want);
    eprintln!("second push: 0 blobs, 0 bytes uploaded");

    // A registry to another repository of the same registry (docker:// accepted).
    let other = format!("{host}/conv/b:v2");
    let out = succeeds(&tmp, &["image", "convert", &format!("docker://{src_ref}"), &format!("docker://{other}")]);
    assert_eq!(image_digest(&out), want, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("converted ")).count(), 4, "{out}");
    assert_eq!(check_pushed(&dir, &other, false, None), 4);

    // An image already converted keeps its layers and config: its layers are not pulled, and
    // everything is mounted from its repository.
    let mounted_ref = format!("{host}/conv/c:v1");
    let out = succeeds(&tmp, &["image", "convert", &pushed_ref, &mounted_ref]);
    assert_eq!(out.lines().filter(|l| l.starts_with("kept ")).count(), 4, "{out}");
    let pulled_line = out.lines().find(|l| l.starts_with("pulled ")).unwrap_or_default();
    assert!(
        pulled_line.starts_with("pulled 2 blobs (") && pulled_line.ends_with("; 4 kept layers left at the registry")
    );
    assert_eq!(blob_counts(&out), (0, 0, 0, 6), "{out}");
    assert_eq!(image_digest(&out), want, "{out}");
    check_merged(&mounted_ref, "linux/arm64", &merged(&[BASE, MIDDLE, TOP_ARM64]));
    // The same registry under another name (so no mount is asked): the kept layers are fetched
    // from the source to be uploaded.
    let renamed_ref = format!("{}/conv/d:v1", host.replace("127.0.0.1", "localhost"));
    let out = succeeds(&tmp, &["image", "convert", &pushed_ref, &renamed_ref]);
    assert_eq!(blob_counts(&out).0, 6, "{out}");
    assert!(out.contains("of the blobs uploaded, 4 were fetched from the source first\n"), "{out}");
    assert_eq!(image_digest(&out), want, "{out}");
    check_merged(&renamed_ref, "linux/amd64", &merged(&[BASE, MIDDLE, TOP_AMD64]));

    // A registry to a layout.
    let pulled = dir.join("pulled");
    let out = succeeds(&tmp, &["image", "convert", &src_ref, &format!("oci:{}:p", s(&pulled))]);
    assert_eq!(image_digest(&out), want, "{out}");
    let pulled_line = out.lines().find(|l| l.starts_with("pulled ")).unwrap_or_default();
    assert!(pulled_line.starts_with("pulled 6 blobs (") && pulled_line.ends_with(" bytes)"), "every layer: {out}");
    assert_eq!(check_converted(&pulled, "p", false, None), 4);

    // zstd:chunked through the registry, and no tag: pushed by digest only.
    let out = succeeds(&tmp, &["image", "convert", "--format", "zstd-chunked", &src_ref, &format!("{host}/conv/z")]);
    let digest = image_digest(&out);
    let by_digest = format!("{host}/conv/z@{digest}");
    assert!(out.contains(&format!("pushed {by_digest}\n")), "{out}");
    assert_eq!(check_pushed(&dir, &by_digest, true, go.as_deref()), 4);
    assert!(!skopeo_succeeds(&["inspect", "--tls-verify=false", &format!("docker://{host}/conv/z:latest")]), "tagged");

    // A Docker image (a schema 2 manifest list) comes out as an OCI one.
    let docker_ref = format!("{host}/src/docker:v1");
    // Docker images have no zstd layers: skopeo recompresses them with gzip in a layout first.
    let gz = format!("oci:{}:v1", s(&dir.join("gz")));
    let args = ["copy", "--quiet", "--all", "--dest-compress", "--dest-compress-format", "gzip"];
    skopeo(&dir, &[&args[..], &[&from, &gz]].concat());
    let args = ["copy", "--quiet", "--all", "--format", "v2s2", "--dest-tls-verify=false"];
    skopeo(&dir, &[&args[..], &[&gz, &format!("docker://{docker_ref}")]].concat());
    let raw = skopeo_registry(&dir, &["inspect", "--raw", &format!("docker://{docker_ref}")]);
    assert!(raw.contains("application/vnd.docker.distribution.manifest.list.v2+json"), "{raw}");
    let from_docker = format!("{host}/conv/from-docker:v1");
    succeeds(&tmp, &["image", "convert", &docker_ref, &from_docker]);
    let raw = skopeo_registry(&dir, &["inspect", "--raw", &format!("docker://{from_docker}")]);
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{raw}");
    for entry in index["manifests"].as_array().unwrap() {
        assert_eq!(entry["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{raw}");
        let by_digest = format!("docker://{host}/conv/from-docker@{}", entry["digest"].as_str().unwrap());
        let raw = skopeo_registry(&dir, &["inspect", "--raw", &by_digest]);
        let m: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{raw}");
        assert_eq!(m["config"]["mediaType"], "application/vnd.oci.image.config.v1+json", "{raw}");
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], TGZ, "{raw}");
            assert!(l["annotations"]["containerd.io/snapshot/stargz/toc.digest"].is_string(), "{raw}");
        }
    }
    check_merged(&from_docker, "linux/arm64", &merged(&[BASE, MIDDLE, TOP_ARM64]));

    // Errors: a missing tag, a digest as destination, an unreachable registry.
    fails(
        &tmp,
        &["image", "convert", &format!("{host}/src/app:nope"), &format!("oci:{}", s(&dir.join("n")))],
        "not found",
    );
    assert!(!dir.join("n").exists());
    fails(&tmp, &["image", "convert", &src_ref, &format!("{host}/conv/e@{want}")], "HOST/REPO[:TAG]");
    fails(&tmp, &["image", "convert", &src_ref, "127.0.0.1:1/x:v1"], "127.0.0.1:1");
    fails(&tmp, &["image", "convert", "127.0.0.1:1/x:v1", &format!("oci:{}", s(&dir.join("n")))], "network");
    fails(&tmp, &["image", "convert", "no-host/x", &format!("oci:{}", s(&dir.join("n")))], "not an OCI layout");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGINT while a registry source is being pulled removes the staged layout.
/// `--mirror` reaches `image convert`'s pull: with the registry named in the reference not
/// even listening, the image comes from its mirror and converts to the digest it gives from
/// the registry itself.
#[test]
fn a_registry_source_is_pulled_from_its_mirror() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = common::registry_with_image("image-convert-mirror", false);
    let tmp = scratch_dir("image-convert-mirror");
    let out = |name: &str| format!("oci:{}:c", tmp.join(name).display());
    let direct =
        succeeds(&tmp.join("tmp"), &["image", "convert", &format!("{}/test/all-types:v1", reg.host()), &out("direct")]);
    // Nothing listens on port 1; without the mirror the pull fails.
    let unreachable = "127.0.0.1:1/test/all-types:v1";
    let mirror = format!("127.0.0.1:1={}", reg.host());
    let via = succeeds(&tmp.join("tmp"), &["image", "convert", "--mirror", &mirror, unreachable, &out("mirrored")]);
    assert_eq!(image_digest(&via), image_digest(&direct));
    fails(&tmp.join("tmp"), &["image", "convert", unreachable, &out("none")], "127.0.0.1:1");
}

#[test]
fn an_interrupted_pull_leaves_nothing_staged() {
    if !common::have_tools() {
        return;
    }
    let reg = common::Registry::start("image-convert-interrupt", false);
    let dir = scratch_dir("image-convert-interrupt");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let src = dir.join("src");
    make_source(&src, None);
    let src_ref = format!("{}/src/app:v1", reg.host());
    let (from, to) = (format!("oci:{}:v1", s(&src)), format!("docker://{src_ref}"));
    skopeo(&dir, &["copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false", &from, &to]);
    // The first blob (the first manifest's config) comes at once, the next hangs.
    let proxy = common::Proxy::start(reg.port, |_, n| {
        if n >= 1 && n != u64::MAX {
            common::Fault::Delay(std::time::Duration::from_secs(60))
        } else {
            common::Fault::Pass
        }
    });
    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_crfs"))
        .args(["image", "convert", &format!("{}/src/app:v1", proxy.host()), &format!("oci:{}", s(&out))])
        .env("TMPDIR", &tmp)
        .env_remove("CRFS_REGISTRY_CREDS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    // The index, the first manifest and its config are in; the first layer hangs.
    let pulled = || {
        let blobs = staged(&tmp).first().map(|d| d.join("blobs/sha256"));
        blobs.and_then(|b| std::fs::read_dir(b).ok()).map_or(0, Iterator::count)
    };
    while pulled() < 3 {
        assert!(child.try_wait().unwrap().is_none(), "crfs exited before pulling");
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "no blobs pulled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let layouts = staged(&tmp);
    assert_eq!(layouts.len(), 1, "one staging layout while pulling");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&layouts[0]).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the staged image is private");
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status");
    assert_eq!(staged(&tmp), Vec::<PathBuf>::new(), "the staging layout is removed");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Behind token auth (the proxy plays Docker Hub's token service) the push asks for a
/// push-scope token, and every upload request carries a bearer token.
#[test]
fn a_token_auth_destination_gets_a_push_scope_token() {
    if !common::have_tools() {
        return;
    }
    let reg = common::Registry::start("image-convert-token", false);
    let proxy = common::Proxy::start_with_tokens(reg.port);
    let dir = scratch_dir("image-convert-token");
    let tmp = dir.join("tmp");
    let src = dir.join("src");
    make_source(&src, None);
    let dst = format!("{}/conv/t:v1", proxy.host());
    let out = succeeds(&tmp, &["image", "convert", &format!("oci:{}:v1", s(&src)), &dst]);
    let (uploaded, _, existed, mounted) = blob_counts(&out);
    assert_eq!((uploaded, existed, mounted), (6, 0, 0), "{out}");
    let seen = proxy.seen();
    let decoded = |p: &str| p.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",");
    assert!(
        seen.iter()
            .any(|r| r.path.starts_with("/token") && decoded(&r.path).contains("scope=repository:conv/t:pull,push")),
        "no push-scope token request: {seen:?}"
    );
    let uploads: Vec<_> = seen.iter().filter(|r| matches!(r.method.as_str(), "POST" | "PATCH" | "PUT")).collect();
    // 6 blobs (a POST, a PATCH and a PUT each), 2 manifests and the index.
    assert!(uploads.len() >= 6 * 3 + 3, "{uploads:?}");
    assert!(uploads.iter().all(|r| r.authorization), "{uploads:?}");
    check_merged(&dst, "linux/arm64", &merged(&[BASE, MIDDLE, TOP_ARM64]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_basic_auth_destination_needs_credentials() {
    if !common::have_tools() {
        return;
    }
    let reg = common::Registry::start("image-convert-auth", true);
    let host = reg.host();
    let dir = scratch_dir("image-convert-auth");
    let tmp = dir.join("tmp");
    let src = dir.join("src");
    make_source(&src, None);
    let dst = format!("{host}/conv/a:v1");
    let src_spec = format!("oci:{}:v1", s(&src));
    fails(&tmp, &["image", "convert", &src_spec, &dst], "requires credentials");
    // From a file: `--creds USER:PASSWORD` would add its warning line about `ps`.
    let wrong = dir.join("wrong-creds");
    std::fs::write(&wrong, format!("{}:wrong\n", common::USER)).unwrap();
    fails(&tmp, &["image", "convert", "--creds-file", s(&wrong), &src_spec, &dst], "refused");
    let creds = format!("{}:{}", common::USER, common::PASSWORD);
    // Nothing was published under the tag.
    let tag = format!("docker://{dst}");
    assert!(!skopeo_succeeds(&["inspect", "--tls-verify=false", "--creds", &creds, &tag]), "tagged after failures");

    let out = succeeds(&tmp, &["image", "convert", "--creds", &creds, &src_spec, &dst]);
    assert_eq!(blob_counts(&out).0, 6, "{out}");
    let listed = succeeds(&tmp, &["ls", "-R", "--creds", &creds, "--platform", "linux/arm64", &dst]);
    let want = merged(&[BASE, MIDDLE, TOP_ARM64]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), want.keys().map(String::as_str).collect::<Vec<_>>());
    // A registry source with credentials, into a layout.
    let pulled = dir.join("pulled");
    succeeds(&tmp, &["image", "convert", "--creds", &creds, &dst, &format!("oci:{}:p", s(&pulled))]);
    assert_eq!(check_converted(&pulled, "p", false, None), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
