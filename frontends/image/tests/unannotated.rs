//! An eStargz layer whose manifest lost its annotations (as a Docker schema 2 manifest does):
//! with verification on it is fetched whole once, checked against the manifest's layer digest
//! and read through its own TOC; its local copy serves the next open; a blob that does not
//! match its digest is refused; with verification off it is read lazily, unchecked. Needs
//! docker-registry and skopeo (skipped without them, outside CI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../remote/tests/common/mod.rs"]
mod common;

use common::{Fault, Proxy};
use crfs_image::{Access, Images, Options, Verification};
use crfs_testkit::{assert_same_listing, fs_listing_at, layer_listing, scratch_dir, testdata};
use crfs_vfs::ROOT_INO;

const FIXTURE: &str = "all-types.esgz";

/// A registry holding `test/bare:v1`, the fixture as its only layer with no annotations.
fn registry_with_bare_image(name: &str) -> common::Registry {
    let registry = common::Registry::start(name, false);
    let blob = std::fs::read(testdata().join("fixtures").join(FIXTURE)).unwrap();
    let layout = registry.dir.join("layout");
    let diff_id = "0".repeat(64);
    common::make_plain_layout(&layout, "v1", &[(blob, "application/vnd.oci.image.layer.v1.tar+gzip")], &[diff_id]);
    common::skopeo_copy(&layout, "v1", &format!("{}/test/bare:v1", registry.host()), None, false);
    registry
}

fn images(verify: bool, cache: Option<&std::path::Path>) -> Images {
    let mut remote = common::test_options();
    remote.cache = cache.map(|dir| crfs_remote::CacheOptions { dir: dir.to_path_buf(), max_bytes: 1 << 30 });
    Images::new(Options { remote, verify, ..Options::default() })
}

fn want_listing() -> String {
    let blob = crfs_core::FileReadAt::open(&testdata().join("fixtures").join(FIXTURE)).unwrap();
    layer_listing(&crfs_core::Layer::open(blob).unwrap())
}

#[test]
fn an_unannotated_estargz_layer_is_checked_whole_then_served_from_its_toc() {
    if !common::have_tools() {
        return;
    }
    let registry = registry_with_bare_image("image-unannotated");
    let proxy = Proxy::start(registry.port, |_, _| Fault::Pass);
    let spec = format!("{}/test/bare:v1", proxy.host());
    let cache = scratch_dir("image-unannotated-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let size = std::fs::metadata(testdata().join("fixtures").join(FIXTURE)).unwrap().len();

    let layers = images(true, Some(&cache)).open(std::slice::from_ref(&spec)).unwrap();
    assert_eq!((layers[0].access.clone(), layers[0].verification), (Access::WholeChecked, Verification::BlobDigest));
    assert_same_listing(FIXTURE, &layer_listing(&layers[0].layer), &want_listing());
    let fetched: u64 = proxy.blob_gets().iter().map(|s| s.body_bytes).sum();
    assert!(fetched >= size, "the whole blob was fetched: {fetched} of {size} bytes");
    let (tree, _) = crfs_image::tree(layers, crfs_vfs::Options::default()).unwrap();
    assert!(fs_listing_at(tree.as_ref(), ROOT_INO).contains("files/small.txt"));

    // The next open reads the checked copy: no blob crosses the network again.
    let before = proxy.blob_gets().len();
    let layers = images(true, Some(&cache)).open(std::slice::from_ref(&spec)).unwrap();
    assert_eq!(layers[0].access, Access::IndexedCopy);
    assert_eq!(proxy.blob_gets().len(), before);

    // Verification off: lazy and unchecked, only the footer and TOC fetched.
    let before = proxy.blob_gets().len();
    let layers = images(false, None).open(std::slice::from_ref(&spec)).unwrap();
    assert_eq!((layers[0].access.clone(), layers[0].verification), (Access::Lazy, Verification::Unchecked));
    let lazy: u64 = proxy.blob_gets().iter().skip(before).map(|s| s.body_bytes).sum();
    assert!(lazy < size, "lazily: {lazy} of {size} bytes");
}

#[test]
fn an_unannotated_layer_that_does_not_match_its_digest_is_refused() {
    if !common::have_tools() {
        return;
    }
    let registry = registry_with_bare_image("image-unannotated-corrupt");
    // Wrong bytes for the whole-blob fetch (a range from 0); the footer and TOC stay intact.
    let proxy = Proxy::start(registry.port, |seen, _| {
        let whole = seen.range.as_deref().is_some_and(|r| r.starts_with("bytes=0-"));
        if seen.path.contains("/blobs/sha256:") && whole { Fault::Garbage } else { Fault::Pass }
    });
    let spec = format!("{}/test/bare:v1", proxy.host());
    let Err(e) = images(true, None).open(std::slice::from_ref(&spec)) else { panic!("opened a corrupt blob") };
    assert!(e.to_string().contains("does not match its digest"), "{e}");
}
