//! The committed fixtures (testdata/fixtures, written by the reference Go library and by our
//! legacy stargz writer) read back through crfs-core: same TOC digest, same tree, same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod common;

use std::fs;

use common::{assert_same_listing, listing, testdata};
use crfs_core::{Digest, FileReadAt, Format, Layer, OpenOptions};

fn check(name: &str, format: Format) {
    let dir = testdata().join("fixtures");
    let blob = FileReadAt::open(&dir.join(name)).unwrap();
    let want_digest = fs::read_to_string(dir.join(format!("{name}.toc-digest"))).unwrap();
    let want_digest = Digest::parse(want_digest.trim()).unwrap();
    let options = OpenOptions { expected_toc_digest: Some(want_digest), ..OpenOptions::default() };
    let layer = Layer::open_with(blob, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(layer.format(), format, "{name}");
    let want = fs::read_to_string(dir.join(format!("{name}.list"))).unwrap();
    assert_same_listing(name, &listing(&layer), &want);
}

#[test]
fn estargz_default_chunks() {
    check("all-types.esgz", Format::Estargz);
}

#[test]
fn estargz_small_chunks_with_prioritized_files() {
    check("all-types-c4096.esgz", Format::Estargz);
}

#[test]
fn zstd_chunked() {
    check("all-types.zstdchunked", Format::ZstdChunked);
}

#[test]
fn legacy_stargz() {
    check("all-types.stargz", Format::LegacyStargz);
}

#[test]
fn five_thousand_entries() {
    check("many.esgz", Format::Estargz);
}

#[test]
fn demo_sample() {
    let blob = FileReadAt::open(&testdata().join("sample.esgz")).unwrap();
    let layer = Layer::open(blob).unwrap();
    let want = fs::read_to_string(testdata().join("fixtures/sample.esgz.list")).unwrap();
    assert_same_listing("sample.esgz", &listing(&layer), &want);
}

/// What crfs shows equals what `tar -xpf` of the source tar gives (the Go helper's list-tar).
#[test]
fn trees_equal_the_extracted_tar() {
    let dir = testdata().join("fixtures");
    let want = fs::read_to_string(dir.join("all-types.tar.list")).unwrap();
    for name in ["all-types.esgz", "all-types-c4096.esgz", "all-types.zstdchunked", "all-types.stargz"] {
        let layer = Layer::open(FileReadAt::open(&dir.join(name)).unwrap()).unwrap();
        assert_same_listing(name, &listing(&layer), &want);
    }
}
