//! An image's layers are opened side by side: each layer's first range request (its footer)
//! reaches the registry while the others' are still unanswered, and the layers come back in
//! the manifest's order, each the blob it names. Needs docker-registry and skopeo (skipped
//! without them, outside CI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../remote/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Fault, Proxy};
use crfs_image::{Access, Images, Options};
use crfs_testkit::{assert_same_listing, layer_listing, testdata};

const FIXTURES: [&str; 3] = ["all-types.esgz", "many.esgz", "all-types-c4096.esgz"];

fn fixture_listing(name: &str) -> String {
    let blob = crfs_core::FileReadAt::open(&testdata().join("fixtures").join(name)).unwrap();
    layer_listing(&crfs_core::Layer::open(blob).unwrap())
}

/// A registry holding `test/three:v1`, an image of the three fixtures (no annotations), and
/// the fixtures' bytes.
fn registry_with_three_layers(name: &str) -> (common::Registry, Vec<Vec<u8>>) {
    let registry = common::Registry::start(name, false);
    let blobs: Vec<Vec<u8>> =
        FIXTURES.iter().map(|f| std::fs::read(testdata().join("fixtures").join(f)).unwrap()).collect();
    let layers: Vec<(Vec<u8>, &str)> =
        blobs.iter().map(|b| (b.clone(), "application/vnd.oci.image.layer.v1.tar+gzip")).collect();
    let layout = registry.dir.join("layout");
    let diff_ids = vec!["0".repeat(64); FIXTURES.len()];
    common::make_plain_layout(&layout, "v1", &layers, &diff_ids);
    common::skopeo_copy(&layout, "v1", &format!("{}/test/three:v1", registry.host()), None, false);
    (registry, blobs)
}

/// Without verification an unannotated eStargz layer is read lazily through its own TOC.
fn images() -> Images {
    Images::new(Options { remote: common::test_options(), verify: false, ..Options::default() })
}

#[test]
fn the_layers_of_an_image_open_side_by_side_and_in_order() {
    if !common::have_tools() {
        return;
    }
    let (registry, blobs) = registry_with_three_layers("image-parallel");

    // Each ranged blob request waits until every layer has sent one (or 10 s pass). Opened one
    // after the other, the first layer's footer request would wait alone for the whole time.
    let asked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let waited_out = Arc::new(AtomicBool::new(false));
    let proxy = {
        let (asked, waited_out) = (Arc::clone(&asked), Arc::clone(&waited_out));
        Proxy::start(registry.port, move |seen, _| {
            if seen.method == "GET" && seen.range.is_some() && seen.path.contains("/blobs/") {
                asked.lock().unwrap().insert(seen.path.clone());
                let start = Instant::now();
                while asked.lock().unwrap().len() < FIXTURES.len() {
                    if start.elapsed() > Duration::from_secs(10) {
                        waited_out.store(true, Ordering::SeqCst);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Fault::Pass
        })
    };
    let opened = images().open(&[format!("{}/test/three:v1", proxy.host())]).unwrap();

    assert!(
        !waited_out.load(Ordering::SeqCst),
        "a layer's footer request waited alone: the layers were opened one at a time"
    );
    assert_eq!(opened.len(), FIXTURES.len());
    for ((layer, fixture), blob) in opened.iter().zip(FIXTURES).zip(&blobs) {
        assert_eq!(layer.access, Access::Lazy, "{fixture}");
        assert!(layer.name.ends_with(&format!("sha256:{}", common::sha256_hex(blob))), "{} for {fixture}", layer.name);
        assert_same_listing(fixture, &layer_listing(&layer.layer), &fixture_listing(fixture));
    }
}

#[test]
fn a_layer_that_fails_to_open_is_named_in_the_error() {
    if !common::have_tools() {
        return;
    }
    let (registry, blobs) = registry_with_three_layers("image-parallel-fail");
    let broken = format!("sha256:{}", common::sha256_hex(&blobs[1]));
    let proxy = {
        let broken = broken.clone();
        Proxy::start(
            registry.port,
            move |seen, _| {
                if seen.path.ends_with(&broken) { Fault::Status(404) } else { Fault::Pass }
            },
        )
    };
    let Err(e) = images().open(&[format!("{}/test/three:v1", proxy.host())]) else {
        panic!("an image whose second layer's blob is gone opened");
    };
    assert!(e.to_string().contains(&broken), "{e}");
}
