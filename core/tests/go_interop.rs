//! Interop with the reference implementation at run time: tars made by the Go helper, blobs
//! written by the reference estargz package (eStargz at several chunk sizes, with prioritized
//! files, zstd:chunked) and by our legacy stargz writer. crfs must agree with the reference's
//! listing entry for entry and byte for byte, with the source tar, and on the TOC digest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod common;

use std::path::Path;

use common::{assert_same_listing, interop, interop_bin, listing};
use crfs_core::{Digest, FileReadAt, Layer, OpenOptions};

fn tmpdir(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("go-interop-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds `tar` into a blob with `build_args`, then checks crfs against the reference.
fn check_blob(bin: &Path, tar: &Path, tar_listing: &str, blob: &Path, build_args: &[&str]) {
    let (tar_s, blob_s) = (tar.to_str().unwrap(), blob.to_str().unwrap());
    let mut args = build_args.to_vec();
    let printed = if args.first() == Some(&"legacy") {
        args.extend(["-in", tar_s, "-out", blob_s]);
        interop(bin, &args)
    } else {
        let mut full = vec!["build", "-in", tar_s, "-out", blob_s];
        full.extend(args.iter().copied());
        interop(bin, &full)
    };
    let what = format!("{} {build_args:?}", tar.file_name().unwrap().to_string_lossy());
    let reference = interop(bin, &["list", blob_s]);
    let expected_digest =
        printed.lines().find_map(|l| l.strip_prefix("toc-digest ")).map(|d| Digest::parse(d).unwrap());
    let options = OpenOptions { expected_toc_digest: expected_digest, ..OpenOptions::default() };
    let layer = Layer::open_with(FileReadAt::open(blob).unwrap(), &options).unwrap_or_else(|e| panic!("{what}: {e}"));
    let ours = listing(&layer);
    assert_same_listing(&format!("{what} vs reference"), &ours, &reference);
    assert_same_listing(&format!("{what} vs tar"), &ours, tar_listing);
}

fn run(kind: &str, variants: &[&[&str]]) {
    let Some(bin) = interop_bin() else { return };
    let dir = tmpdir(kind);
    let tar = dir.join(format!("{kind}.tar"));
    interop(&bin, &["mktar", "-kind", kind, "-out", tar.to_str().unwrap()]);
    let tar_listing = interop(&bin, &["list-tar", tar.to_str().unwrap()]);
    for (i, args) in variants.iter().enumerate() {
        check_blob(&bin, &tar, &tar_listing, &dir.join(format!("{kind}-{i}.blob")), args);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chunk_boundaries() {
    run(
        "chunks",
        &[
            &[],
            &["-chunk-size", "4096"],
            &["-chunk-size", "65536", "-level", "1"],
            &["-format", "zstdchunked"],
            &["-format", "zstdchunked", "-chunk-size", "4096"],
            &["legacy"],
            &["legacy", "-chunk-size", "4096"],
        ],
    );
}

#[test]
fn many_entries() {
    run("many", &[&["-format", "zstdchunked"], &["legacy"], &["-chunk-size", "1024"]]);
}

#[test]
fn every_entry_type() {
    run(
        "all-types",
        &[
            &["-level", "1", "-prioritize", "escape/link,files/small.txt"],
            &["-format", "zstdchunked", "-chunk-size", "4096", "-prioritize", "links/hard2"],
            &["legacy", "-chunk-size", "1000"],
        ],
    );
}
