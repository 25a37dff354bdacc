//! A registry that answers 401 for a layer's blob: opening the layer fails as `Denied`, which
//! the /crfs namespace answers with EACCES (not EIO). Needs docker-registry and skopeo (the
//! test is skipped without them, outside CI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../remote/tests/common/mod.rs"]
mod common;

use common::{Fault, Proxy};
use crfs_image::{ErrorKind, Images, Options};
use crfs_vfs::{FsError, NamespaceOptions, ROOT_INO, ReadOnlyFs};

/// The registry behind a proxy that refuses every blob GET with 401 (manifests pass).
fn refusing_registry(name: &str) -> (common::Registry, Proxy) {
    let (registry, _pushed) = common::registry_with_image(name, false);
    let proxy = Proxy::start(registry.port, |seen, _| {
        if seen.method == "GET" && seen.path.contains("/blobs/sha256:") { Fault::Status(401) } else { Fault::Pass }
    });
    (registry, proxy)
}

fn images() -> Images {
    Images::new(Options { remote: common::test_options(), ..Options::default() })
}

#[test]
fn a_blob_refused_with_401_during_a_layer_open_is_denied() {
    if !common::have_tools() {
        return;
    }
    let (_registry, proxy) = refusing_registry("image-denied-open");
    let spec = format!("{}/test/all-types:v1", proxy.host());
    let Err(e) = images().open(std::slice::from_ref(&spec)) else { panic!("opened a layer whose blob was refused") };
    assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
    assert_eq!(e.kind().errno(), libc_eacces(), "{e}");
    assert!(e.to_string().starts_with(&format!("{spec} layer sha256:")), "{e}");
    let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<crfs_core::Error>());
    assert!(matches!(source, Some(crfs_core::Error::Io(io)) if io.errno == libc_eacces()), "{source:?}");
    assert!(proxy.blob_gets().iter().any(|s| s.fault == Fault::Status(401)), "the blob was asked for");
}

#[test]
fn the_namespace_answers_a_refused_layer_with_eacces() {
    if !common::have_tools() {
        return;
    }
    let (_registry, proxy) = refusing_registry("image-denied-namespace");
    let ns = images().namespace(NamespaceOptions::default()).unwrap();
    let image = ns.lookup(ROOT_INO, b"image").unwrap();
    let host = ns.lookup(image.ino, proxy.host().as_bytes()).unwrap();
    let repo = ns.lookup(host.ino, b"test").unwrap();
    // What FUSE answers EACCES for, and NFS NFS3ERR_ACCES: crfs_fuse and crfs_nfs map
    // `FsError::Denied` so.
    assert_eq!(ns.lookup(repo.ino, b"all-types:v1").map(|a| a.ino), Err(FsError::Denied));
}

/// EACCES on Linux and the BSDs.
fn libc_eacces() -> i32 {
    13
}
