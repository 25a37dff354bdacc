//! Images for the `crfs image convert` tests: a two-platform OCI layout whose layers are
//! tar+gzip, plain tar and tar+zstd (whiteouts and an opaque directory in upper layers), what
//! its layers give applied in order, and checks of a converted layout (annotations, DiffIDs,
//! the Go reference's verification) and of the merged tree crfs serves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test support code

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crfs_core::Digest;
use crfs_testkit::{TarBuilder, TarEntry, in_ci, interop};
use serde_json::{Value, json};

pub fn crfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crfs")).args(args).output().expect("running crfs")
}

pub fn ok(args: &[&str]) -> String {
    let o = crfs(args);
    assert!(o.status.success(), "crfs {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A layer as entries, so the test knows what the merged image must hold.
pub enum E {
    Dir,
    File(&'static [u8]),
    Symlink(&'static str),
}

pub type LayerSpec = &'static [(&'static str, E)];

pub const BASE: LayerSpec = &[
    ("etc", E::Dir),
    ("etc/a", E::File(b"alpha\n")),
    ("etc/b", E::File(b"bravo\n")),
    ("opt", E::Dir),
    ("opt/x", E::File(b"x-old")),
    ("opt/sub", E::Dir),
    ("opt/sub/y", E::File(b"y-old")),
    ("usr", E::Dir),
    ("usr/bin", E::Dir),
    ("usr/bin/tool", E::File(b"tool v1 ................................................................")),
    ("usr/bin/link", E::Symlink("tool")),
];
pub const MIDDLE: LayerSpec = &[
    ("etc", E::Dir),
    ("etc/.wh.a", E::File(b"")),
    ("etc/c", E::File(b"charlie\n")),
    ("opt", E::Dir),
    ("opt/.wh..wh..opq", E::File(b"")),
    ("opt/z", E::File(b"z-new")),
];
pub const TOP_AMD64: LayerSpec = &[("usr", E::Dir), ("usr/bin", E::Dir), ("usr/bin/tool", E::File(b"tool v2 amd64"))];
pub const TOP_ARM64: LayerSpec = &[("usr", E::Dir), ("usr/bin", E::Dir), ("usr/bin/tool", E::File(b"tool v2 arm64"))];

pub fn tar_of(spec: LayerSpec) -> Vec<u8> {
    let mut t = TarBuilder::default();
    for (name, e) in spec {
        let entry = match e {
            E::Dir => TarEntry::Dir,
            E::File(d) => TarEntry::File(d),
            E::Symlink(l) => TarEntry::Symlink(l),
        };
        let mode = if matches!(e, E::Dir) { 0o755 } else { 0o644 };
        t.add(name, entry, mode, 1_700_000_000);
    }
    t.finish()
}

/// What applying `layers` in order gives: path -> file content (None for directories and
/// symlinks), whiteouts and opaque directories applied.
pub fn merged(layers: &[LayerSpec]) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut tree: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let under = |dir: &str, p: &str| p.starts_with(&format!("{dir}/"));
    for layer in layers {
        for (name, e) in *layer {
            let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
            if base == ".wh..wh..opq" {
                tree.retain(|p, _| !under(dir, p));
            } else if let Some(hidden) = base.strip_prefix(".wh.") {
                let victim = if dir.is_empty() { hidden.to_string() } else { format!("{dir}/{hidden}") };
                tree.retain(|p, _| *p != victim && !under(&victim, p));
            } else {
                tree.insert(name.to_string(), if let E::File(d) = e { Some(d.to_vec()) } else { None });
            }
        }
    }
    tree
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd_of(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub fn put(dir: &Path, data: &[u8]) -> (String, u64) {
    let d = Digest::of(data).to_string();
    let path = dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    (d, data.len() as u64)
}

pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const TGZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const TZST: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A layout with image `v1`: an index of linux/amd64 and linux/arm64 sharing the gzip base
/// and the plain-tar middle layer, each with its own zstd top layer. `corrupt` replaces the
/// base layer's blob bytes (its manifest digest then matches the broken bytes).
pub fn make_source(dir: &Path, corrupt: Option<fn(Vec<u8>) -> Vec<u8>>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut base = gzip(&tar_of(BASE));
    if let Some(f) = corrupt {
        base = f(base);
    }
    let layers_for = |top: LayerSpec| {
        vec![(TGZ, base.clone(), BASE), (TAR, tar_of(MIDDLE), MIDDLE), (TZST, zstd_of(&tar_of(top)), top)]
    };
    let mut entries = Vec::new();
    for (arch, top) in [("amd64", TOP_AMD64), ("arm64", TOP_ARM64)] {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (media, blob, spec) in layers_for(top) {
            let (d, size) = put(dir, &blob);
            descs.push(json!({"mediaType": media, "digest": d, "size": size, "annotations": {"keep.me": "yes"}}));
            diff_ids.push(Digest::of(&tar_of(spec)).to_string());
        }
        let config = json!({"architecture": arch, "os": "linux", "config": {"Env": ["A=1"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": [{"created_by": "test"}]});
        let (cd, cs) = put(dir, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": descs, "annotations": {"org.example": "m"}});
        let (md, ms) = put(dir, &serde_json::to_vec(&manifest).unwrap());
        entries.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "platform": {"architecture": arch, "os": "linux"}}));
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let (id, is) = put(dir, &serde_json::to_vec(&index).unwrap());
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": id, "size": is, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

pub fn read_json(dir: &Path, digest: &str) -> Value {
    let data = std::fs::read(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap();
    assert_eq!(Digest::of(&data).to_string(), digest, "blob content matches its digest");
    serde_json::from_slice(&data).unwrap()
}

/// The image manifests (platform, manifest) under the top index entry tagged `tag`.
pub fn manifests(dir: &Path, tag: &str) -> Vec<(String, Value)> {
    let top: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {top}"));
    let index = read_json(dir, entry["digest"].as_str().unwrap());
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["platform"]["architecture"].as_str().unwrap().to_string(), read_json(dir, m["digest"].as_str().unwrap()))
        })
        .collect()
}

pub fn decompress(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut out).unwrap();
    } else {
        zstd::stream::read::Decoder::new(blob).unwrap().read_to_end(&mut out).unwrap();
    }
    out
}

/// Checks every layer of every manifest of `dir:tag`: media type and annotations, the Go
/// reference's verification against toc.digest, the config's DiffIDs; returns the count of
/// distinct converted layers.
pub fn check_converted(dir: &Path, tag: &str, zstd: bool, go: Option<&Path>) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for (arch, m) in manifests(dir, tag) {
        assert_eq!(m["annotations"]["org.example"], "m", "{arch}: manifest annotations kept");
        let config = read_json(dir, m["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch.as_str());
        assert_eq!(config["config"]["Env"][0], "A=1", "{arch}: config kept");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        for (i, l) in layers.iter().enumerate() {
            let digest = l["digest"].as_str().unwrap();
            let path = dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
            let blob = std::fs::read(&path).unwrap();
            assert_eq!(Digest::of(&blob).to_string(), digest);
            assert_eq!(l["size"], blob.len() as u64);
            assert_eq!(l["mediaType"], if zstd { TZST } else { TGZ }, "{arch} layer {i}");
            let a = &l["annotations"];
            assert_eq!(a["keep.me"], "yes", "layer annotations kept");
            let toc = a["containerd.io/snapshot/stargz/toc.digest"].as_str().unwrap();
            let raw = decompress(&blob);
            assert_eq!(diff_ids[i], Digest::of(&raw).to_string(), "{arch} layer {i}: DiffID");
            assert_eq!(a["io.containers.estargz.uncompressed-size"], raw.len().to_string());
            if zstd {
                let pos = a["io.github.containers.zstd-chunked.manifest-position"].as_str().unwrap();
                let f: Vec<u64> = pos.split(':').map(|x| x.parse().unwrap()).collect();
                assert_eq!(f.len(), 4);
                assert_eq!(f[3], 1);
                let toc_frame = &blob[f[0] as usize..(f[0] + f[1]) as usize];
                assert_eq!(
                    a["io.github.containers.zstd-chunked.manifest-checksum"],
                    Digest::of(toc_frame).to_string(),
                    "manifest-checksum is the compressed TOC's sha256"
                );
                assert_eq!(decompress(toc_frame).len() as u64, f[2]);
                assert_eq!(Digest::of(&decompress(toc_frame)).to_string(), toc);
            }
            if seen.insert(digest.to_string())
                && let Some(go) = go
            {
                assert_eq!(interop(go, &["verify", s(&path), toc]).trim(), "ok", "{arch} layer {i}");
            }
        }
    }
    seen.len()
}

/// `crfs ls -R` and `crfs cat` of the merged image equal the source layers applied in order.
pub fn check_merged(spec: &str, platform: &str, want: &BTreeMap<String, Option<Vec<u8>>>) {
    let listed = ok(&["ls", "-R", "--platform", platform, spec]);
    let got: Vec<&str> = listed.lines().collect();
    let want_paths: Vec<&str> = want.keys().map(String::as_str).collect();
    assert_eq!(got, want_paths, "{spec} {platform}: merged listing");
    for (path, content) in want {
        if let Some(c) = content {
            let o = crfs(&["cat", "--platform", platform, spec, path]);
            assert!(o.status.success(), "cat {path}: {}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(&o.stdout, c, "{spec} {platform}: {path}");
        }
    }
}

pub fn have_skopeo() -> bool {
    let ok = Command::new("skopeo").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok || !in_ci(), "CI needs skopeo");
    ok
}

pub fn skopeo(dir: &Path, args: &[&str]) -> String {
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    let o = Command::new("skopeo")
        .arg("--policy")
        .arg(&policy)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running skopeo");
    assert!(o.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}
