//! The /crfs namespace through a real FUSE mount, served from this process: fifty images
//! looked up and read, with the memory this process holds (VmRSS) measured. Released in
//! batches of ten, they take a fraction of the memory the fifty take held at once: what a
//! release frees is reused (glibc keeps freed memory in its arenas, so VmRSS itself does not
//! fall after a release). A file held open through the mount keeps its image; once it is
//! closed (FUSE RELEASE) that image goes too, and any image resolves again on its next use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Served;
use crfs_core::{Digest, FileReadAt, Layer};
use crfs_testkit::{in_ci, scratch_dir, testdata};
use crfs_vfs::{NamespaceFs, NamespaceOptions, ResolveError, ResolvedImage, Resolver, Version};
use sha2::Digest as _;

const IMAGES: usize = 50;

/// `fixture.test/fifty/imgN:v1` for N below [`IMAGES`]: each many.esgz (5,051 entries),
/// each its own image (its own digest, index and caches).
struct Fifty;

fn image_digest(repo: &str) -> String {
    Digest::of(repo.as_bytes()).to_string()
}

impl Resolver for Fifty {
    type Blob = FileReadAt;

    fn image(&self, host: &str, repo: &str, version: &Version) -> Result<ResolvedImage<FileReadAt>, ResolveError> {
        let known = (0..IMAGES).any(|i| repo == format!("fifty/img{i}"));
        let matches = match version {
            Version::Tag(t) => t == "v1",
            Version::Digest(d) => *d == image_digest(repo),
        };
        if host != "fixture.test" || !known || !matches {
            return Err(ResolveError::NotFound(format!("{host}/{repo}")));
        }
        let blob = FileReadAt::open(&testdata().join("fixtures/many.esgz")).unwrap();
        let layer = Arc::new(Layer::open(blob).map_err(|e| ResolveError::Failed(e.to_string()))?);
        Ok(ResolvedImage { digest: image_digest(repo), layers: vec![(format!("sha256:{:0>64}", 1), layer)] })
    }

    fn layer(&self, _host: &str, _repo: &str, digest: &str) -> Result<Arc<Layer<FileReadAt>>, ResolveError> {
        Err(ResolveError::NotFound(digest.to_string()))
    }
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 the fixture's listing gives `path`.
fn listed_sha(path: &str) -> String {
    let list = std::fs::read_to_string(testdata().join("fixtures/many.esgz.list")).unwrap();
    let line = list.lines().find(|l| l.split('\t').next() == Some(path)).unwrap();
    line.split('\t').nth(10).unwrap().to_string()
}

const BATCH: usize = 10;

/// Releases unused trees until `left` remain. The kernel sends RELEASE for a closed file
/// asynchronously, so the last files read may still count as open for a moment.
fn release_until(ns: &NamespaceFs<Fifty>, left: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        ns.release_unused_for(Duration::ZERO);
        if ns.loaded_trees() == left {
            return;
        }
        assert!(Instant::now() < deadline, "{} trees stay loaded, expected {left}", ns.loaded_trees());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn fifty_images_are_released_when_idle_and_resolve_again() {
    let ok = Path::new("/dev/fuse").exists();
    assert!(ok || !in_ci(), "CI needs /dev/fuse");
    if !ok {
        return;
    }
    let mnt = scratch_dir("fuse-ns-release").join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // Release only when the test says so (release_unused_for): no timing in the assertions.
    let options = NamespaceOptions { idle_release: None, ..NamespaceOptions::default() };
    let ns = Arc::new(NamespaceFs::new(Fifty, options));
    let served = Served::mount(Arc::clone(&ns), &mnt);

    let want = listed_sha("d00/f001");
    let image = |i: usize| mnt.join(format!("image/fixture.test/fifty/img{i}:v1"));
    let use_image = |i: usize| {
        assert_eq!(std::fs::read_dir(image(i).join("d00")).unwrap().count(), 100, "img{i}/d00");
        assert_eq!(sha256_hex(&std::fs::read(image(i).join("d00/f001")).unwrap()), want);
    };
    let rss_start = rss_kib();
    // Fifty images, ten at a time, released after each ten.
    let mut rss_batched = rss_start;
    for batch in 0..IMAGES / BATCH {
        (batch * BATCH..(batch + 1) * BATCH).for_each(use_image);
        assert_eq!(ns.loaded_trees(), BATCH);
        rss_batched = rss_batched.max(rss_kib());
        release_until(&ns, 0);
    }
    // The same fifty held at once (each resolved again by its pinned digest).
    (0..IMAGES).for_each(use_image);
    assert_eq!(ns.loaded_trees(), IMAGES);
    let rss_all = rss_kib();
    let (grew_batched, grew_all) = (rss_batched - rss_start, rss_all.saturating_sub(rss_start));
    eprintln!(
        "VmRSS: {rss_start} KiB at start; peak {rss_batched} KiB (+{grew_batched}) with {IMAGES} images in batches of \
         {BATCH} released after each; {rss_all} KiB (+{grew_all}) with all {IMAGES} held"
    );
    assert!(grew_batched * 2 < grew_all, "released images' memory was not reused: +{grew_batched} vs +{grew_all} KiB");

    // A file held open keeps its image; the forty-nine others are released.
    let held = std::fs::File::open(image(0).join("d00/f002")).unwrap();
    release_until(&ns, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ns.release_unused_for(Duration::ZERO), 0, "the open file's image stays");
    assert_eq!(ns.loaded_trees(), 1);
    // Closing it lets that image go too.
    drop(held);
    release_until(&ns, 0);
    eprintln!("VmRSS after releasing all {IMAGES}: {} KiB", rss_kib());
    // The kernel's cached inodes still work: the image resolves again by its pinned digest.
    assert_eq!(sha256_hex(&std::fs::read(image(7).join("d00/f001")).unwrap()), want);
    assert_eq!(ns.loaded_trees(), 1);

    served.unmount();
}
