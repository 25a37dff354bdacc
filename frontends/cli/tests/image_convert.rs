//! `crfs image convert`: a two-platform OCI layout whose layers are tar+gzip, plain tar and
//! tar+zstd (whiteouts and an opaque directory in upper layers) is converted; the reference Go
//! reader verifies every new layer against its toc.digest annotation, crfs serves the merged
//! image (verification on) as the source's layers would apply, the config's DiffIDs are the
//! sha256 of each decompressed layer, skopeo copies and inspects the result, a second run keeps
//! every layer, and bad sources fail with one line and leave no index.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod images;

use std::path::{Path, PathBuf};

use crfs_core::Digest;
use crfs_testkit::{interop_bin, scratch_dir};
use images::*;
use serde_json::Value;

#[test]
fn converts_every_platform_and_layer_once() {
    let go = interop_bin();
    let dir = scratch_dir("image-convert");
    let src = dir.join("src");
    make_source(&src, None);
    for (format, zstd) in [("estargz", false), ("zstd-chunked", true)] {
        let dst = dir.join(format!("dst-{format}"));
        let out = ok(&[
            "image",
            "convert",
            "--format",
            format,
            "--chunk-size",
            "16",
            &format!("oci:{}:v1", s(&src)),
            &format!("oci:{}:conv", s(&dst)),
        ]);
        let converted = out.lines().filter(|l| l.starts_with("converted ")).count();
        // base and middle are shared by both platforms: 4 distinct layers, each converted once.
        assert_eq!(converted, 4, "{out}");
        assert!(dst.join("oci-layout").exists());
        assert_eq!(check_converted(&dst, "conv", zstd, go.as_deref()), 4);
        let spec = format!("oci:{}:conv", s(&dst));
        check_merged(&spec, "linux/amd64", &merged(&[BASE, MIDDLE, TOP_AMD64]));
        check_merged(&spec, "linux/arm64", &merged(&[BASE, MIDDLE, TOP_ARM64]));
        ok(&["verify", "--platform", "linux/arm64", &spec]);
        let image = out.lines().last().unwrap().strip_prefix("image ").unwrap().to_string();

        // A second run keeps every layer and gives the same image.
        let again = dir.join(format!("again-{format}"));
        let out2 = ok(&["image", "convert", &spec, &format!("oci:{}:conv", s(&again))]);
        assert_eq!(out2.lines().filter(|l| l.starts_with("kept ")).count(), 4, "{out2}");
        assert!(!out2.contains("converted "), "{out2}");
        assert_eq!(out2.lines().last().unwrap(), format!("image {image}"));

        if have_skopeo() {
            let other = dir.join(format!("other-{format}"));
            skopeo(&dir, &["copy", "--quiet", "--all", &spec, &format!("oci:{}:copied", s(&other))]);
            let inspected =
                skopeo(&dir, &["inspect", "--override-arch", "arm64", &format!("oci:{}:copied", s(&other))]);
            // skopeo 1.9 shows layer digests (not annotations): they are the arm64 manifest's.
            let v: Value = serde_json::from_str(&inspected).unwrap();
            let (_, arm) = manifests(&dst, "conv").into_iter().find(|(a, _)| a == "arm64").unwrap();
            let want: Vec<&Value> = arm["layers"].as_array().unwrap().iter().map(|l| &l["digest"]).collect();
            assert_eq!(v["Layers"].as_array().unwrap().iter().collect::<Vec<_>>(), want, "{inspected}");
            // The copy kept the media types, annotations and configs.
            assert_eq!(check_converted(&other, "copied", zstd, None), 4);
            check_merged(&format!("oci:{}:copied", s(&other)), "linux/arm64", &merged(&[BASE, MIDDLE, TOP_ARM64]));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tags_follow_skopeo_and_an_untagged_source_needs_one_image() {
    let dir = scratch_dir("image-convert-tags");
    let src = dir.join("src");
    make_source(&src, None);
    let dst = dir.join("dst");
    let first = ok(&["image", "convert", &format!("oci:{}", s(&src)), &format!("oci:{}:a", s(&dst))]);
    let second = ok(&["image", "convert", &format!("oci:{}:v1", s(&src)), &format!("oci:{}:b", s(&dst))]);
    assert_eq!(first.lines().last(), second.lines().last(), "same image");
    let top: Value = serde_json::from_slice(&std::fs::read(dst.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    // Re-tagging moves the name: the older entry loses it.
    ok(&["image", "convert", &format!("oci:{}:v1", s(&src)), &format!("oci:{}:a", s(&dst))]);
    let top: Value = serde_json::from_slice(&std::fs::read(dst.join("index.json")).unwrap()).unwrap();
    let named = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "a")
        .count();
    assert_eq!(named, 1, "{top}");
    // An untagged source with two images is ambiguous.
    let o = crfs(&["image", "convert", &format!("oci:{}", s(&dst)), &format!("oci:{}", s(&dir.join("x")))]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("name one as oci:DIR:TAG"));
    assert!(!dir.join("x").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn bad_sources_fail_cleanly_and_leave_no_index() {
    let dir = scratch_dir("image-convert-bad");
    let good = dir.join("good");
    make_source(&good, None);
    // An existing destination, to check that a failed run leaves it as it was.
    let existing = dir.join("existing");
    ok(&["image", "convert", &format!("oci:{}:v1", s(&good)), &format!("oci:{}:v1", s(&existing))]);
    let before_files = files(&existing);
    let before_index = std::fs::read(existing.join("index.json")).unwrap();

    let truncated = dir.join("truncated");
    make_source(&truncated, Some(|b: Vec<u8>| b[..b.len() / 2].to_vec()));
    let flipped = dir.join("flipped");
    make_source(&flipped, None);
    let missing = dir.join("missing");
    make_source(&missing, None);
    let base_digest = Digest::of(&gzip(&tar_of(BASE))).to_string();
    let base_path = |d: &Path| d.join("blobs/sha256").join(base_digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(base_path(&flipped)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(base_path(&flipped), bytes).unwrap();
    std::fs::remove_file(base_path(&missing)).unwrap();
    let not_tar = dir.join("not-tar");
    make_source(&not_tar, Some(|_| gzip(&[7u8; 5000])));

    for (name, want) in [
        ("truncated", "broken gzip input"),
        ("flipped", "does not match its digest"),
        ("missing", "No such file"),
        ("not-tar", "not a tar archive"),
    ] {
        let src = format!("oci:{}:v1", s(&dir.join(name)));
        for dst in [dir.join(format!("out-{name}")), existing.clone()] {
            let o = crfs(&["image", "convert", &src, &format!("oci:{}:v1", s(&dst))]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{name}: succeeded");
            assert_eq!(err.lines().count(), 1, "{name}: {err}");
            assert!(err.starts_with("crfs: ") && err.contains(want), "{name}: {err}");
            if dst == existing {
                assert_eq!(files(&existing), before_files, "{name}: the existing layout changed");
                assert_eq!(std::fs::read(existing.join("index.json")).unwrap(), before_index);
            } else {
                assert!(!dst.exists(), "{name}: left {}", dst.display());
            }
        }
    }
    let o = crfs(&["image", "convert", &format!("oci:{}:nope", s(&good)), &format!("oci:{}", s(&dir.join("n")))]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no image tagged \"nope\""));
    let o = crfs(&["image", "convert", s(&good), &format!("oci:{}", s(&dir.join("n")))]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not an OCI layout"));
    assert!(!dir.join("n").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
