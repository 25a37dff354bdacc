//! The Additional Layer Store layout over a source serving the committed fixtures, walked as
//! containers/storage walks it: `<base64 ref>/<digest>/{diff,info,blob}`, `use` created and the
//! layer directory removed; declined layers answer ENOENT; unused layers leave memory and come
//! back with the same inode numbers; made-up names are refused without growing the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use crfs_core::{FileReadAt, Layer};
use crfs_testkit::{assert_same_listing, fs_listing_at, testdata};
use crfs_vfs::{
    FileKind, FsError, LayerFs, LayerSource, LayerStoreFs, Options, ROOT_INO, ReadOnlyFs, ResolveError, StoreLayer,
    StoreOptions,
};

const REFERENCE: &str = "registry.test:5000/lib/app:v1";
const LAZY: &str = "all-types.esgz";
const DECLINED_DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn digest_of(name: &str) -> String {
    format!("sha256:{:0>64}", name.len())
}

struct Fixtures {
    opened: AtomicUsize,
}

impl LayerSource for Fixtures {
    type Blob = FileReadAt;

    fn layer(&self, reference: &str, digest: &str) -> Result<StoreLayer<FileReadAt>, ResolveError> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        if reference != REFERENCE {
            return Err(ResolveError::NotFound(format!("no image {reference}")));
        }
        if digest == DECLINED_DIGEST {
            return Err(ResolveError::NotFound("a plain gzip layer".into()));
        }
        if digest != digest_of(LAZY) {
            return Err(ResolveError::Failed("registry down".into()));
        }
        let blob = FileReadAt::open(&testdata().join("fixtures").join(LAZY)).unwrap();
        Ok(StoreLayer { layer: Arc::new(Layer::open(blob).unwrap()), info: b"{\"compressed-size\":1}\n".to_vec() })
    }
}

fn store() -> LayerStoreFs<Fixtures> {
    let options = StoreOptions { negative_ttl: Duration::from_millis(200), max_nodes: 40, ..StoreOptions::default() };
    LayerStoreFs::new(Fixtures { opened: AtomicUsize::new(0) }, options)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn read_all(fs: &dyn ReadOnlyFs, ino: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let piece = fs.read(ino, out.len() as u64, 7000).unwrap();
        if piece.is_empty() {
            return out;
        }
        out.extend(piece);
    }
}

#[test]
fn a_lazy_layer_is_served_as_containers_storage_looks_it_up() {
    let fs = store();
    let image = fs.lookup(ROOT_INO, b64(REFERENCE).as_bytes()).unwrap();
    assert_eq!(image.kind, FileKind::Dir);
    let dir = fs.lookup(image.ino, digest_of(LAZY).as_bytes()).unwrap();
    assert_eq!(fs.source().opened.load(Ordering::SeqCst), 0, "a layer directory opens nothing");

    let diff = fs.lookup(dir.ino, b"diff").unwrap();
    let info = fs.lookup(dir.ino, b"info").unwrap();
    let blob = fs.lookup(dir.ino, b"blob").unwrap();
    assert_eq!(fs.source().opened.load(Ordering::SeqCst), 1, "opened once for all three");
    assert_eq!(fs.lookup(dir.ino, b"use"), Err(FsError::NotFound));

    // diff: the layer's tree, overlay whiteouts on, under the layer directory.
    let path = testdata().join("fixtures").join(LAZY);
    let alone = LayerFs::new(
        Arc::new(Layer::open(FileReadAt::open(&path).unwrap()).unwrap()),
        Options { overlay_whiteouts: true, ..Options::default() },
    );
    assert_same_listing("diff", &fs_listing_at(&fs, diff.ino), &fs_listing_at(&alone, ROOT_INO));
    assert_eq!(fs.lookup(diff.ino, b"..").unwrap().ino, dir.ino);
    assert_eq!(fs.parent(diff.ino).unwrap(), dir.ino);

    // info and blob: the source's JSON, the blob byte for byte.
    assert_eq!(info.size, 22);
    assert_eq!(read_all(&fs, info.ino), b"{\"compressed-size\":1}\n");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(blob.size, bytes.len() as u64);
    assert_eq!(read_all(&fs, blob.ino), bytes);

    let mut names = Vec::new();
    fs.readdir(dir.ino, 0, &mut |e| {
        names.push(String::from_utf8(e.name.to_vec()).unwrap());
        true
    })
    .unwrap();
    assert_eq!(names, [".", "..", "blob", "diff", "info"]);
    // Anything else that would change the tree is refused.
    assert_eq!(fs.create(diff.ino, b"x"), FsError::ReadOnly);
    assert_eq!(fs.create(dir.ino, b"other"), FsError::ReadOnly);
    assert_eq!(fs.rmdir(ROOT_INO, b64(REFERENCE).as_bytes()), FsError::ReadOnly);
}

#[test]
fn use_and_release_are_counted_and_an_unused_layer_leaves_memory() {
    let fs = store();
    let image = fs.lookup(ROOT_INO, b64(REFERENCE).as_bytes()).unwrap();
    let dir = fs.lookup(image.ino, digest_of(LAZY).as_bytes()).unwrap();
    let diff = fs.lookup(dir.ino, b"diff").unwrap();
    let deep = fs.lookup(fs.lookup(diff.ino, b"dirs").unwrap().ino, b"private").unwrap();

    // Two uses (lookup, then the layer's creation), one release: still in use.
    assert_eq!(fs.create(dir.ino, b"use"), FsError::NotFound);
    assert_eq!(fs.create(dir.ino, b"use"), FsError::NotFound);
    assert_eq!(fs.rmdir(image.ino, digest_of(LAZY).as_bytes()), FsError::NotFound);
    assert_eq!(fs.layers()[0].uses, 1);
    assert_eq!(fs.layers()[0].state, "lazy");
    // The last release drops the tree; the next use opens the layer again, same numbers.
    assert_eq!(fs.rmdir(image.ino, digest_of(LAZY).as_bytes()), FsError::NotFound);
    assert_eq!(fs.layers()[0].state, "not opened");
    assert_eq!(fs.source().opened.load(Ordering::SeqCst), 1);
    assert_eq!(fs.getattr(deep.ino).unwrap(), deep);
    assert_eq!(fs.source().opened.load(Ordering::SeqCst), 2);
    // More releases than uses (a store restarted under a runtime) do not underflow.
    assert_eq!(fs.rmdir(image.ino, digest_of(LAZY).as_bytes()), FsError::NotFound);
    assert_eq!(fs.layers()[0].uses, 0);
    // A release of a layer never looked up is answered, and changes nothing.
    assert_eq!(fs.rmdir(image.ino, DECLINED_DIGEST.as_bytes()), FsError::NotFound);
}

#[test]
fn declined_and_failing_layers_answer_errors_and_are_asked_again_later() {
    let fs = store();
    let image = fs.lookup(ROOT_INO, b64(REFERENCE).as_bytes()).unwrap();
    let declined = fs.lookup(image.ino, DECLINED_DIGEST.as_bytes()).unwrap();
    assert_eq!(fs.lookup(declined.ino, b"diff"), Err(FsError::NotFound));
    assert_eq!(fs.lookup(declined.ino, b"info"), Err(FsError::NotFound));
    assert_eq!(fs.lookup(declined.ino, b"blob"), Err(FsError::NotFound));
    assert_eq!(fs.source().opened.load(Ordering::SeqCst), 1, "a refusal is remembered");
    assert!(fs.layers()[0].state.starts_with("declined: a plain gzip layer"), "{:?}", fs.layers());
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(fs.lookup(declined.ino, b"diff"), Err(FsError::NotFound));
    assert_eq!(fs.source().opened.load(Ordering::SeqCst), 2, "asked again after the negative TTL");

    let failing = fs.lookup(image.ino, digest_of("x").as_bytes()).unwrap();
    assert_eq!(fs.lookup(failing.ino, b"diff"), Err(FsError::Io));
    let other = fs.lookup(ROOT_INO, b64("registry.test:5000/other:v1").as_bytes()).unwrap();
    let layer = fs.lookup(other.ino, digest_of(LAZY).as_bytes()).unwrap();
    assert_eq!(fs.lookup(layer.ino, b"diff"), Err(FsError::NotFound));
}

#[test]
fn made_up_names_are_refused_and_cannot_grow_the_store() {
    let fs = store();
    for bad in ["not base64!", "", "Lw==" /* "/" */, "AAAA" /* NULs */] {
        assert_eq!(fs.lookup(ROOT_INO, bad.as_bytes()).map(|a| a.ino), Err(FsError::NotFound), "{bad:?}");
    }
    let image = fs.lookup(ROOT_INO, b64(REFERENCE).as_bytes()).unwrap();
    for bad in ["sha256:12", "md5:00", "..x", "sha256:ZZZZ"] {
        assert_eq!(fs.lookup(image.ino, bad.as_bytes()).map(|a| a.ino), Err(FsError::NotFound), "{bad:?}");
    }
    let lazy = fs.lookup(image.ino, digest_of(LAZY).as_bytes()).unwrap();
    // Each layer directory takes three nodes; the limit (40) stops new ones.
    let mut made = 0;
    for i in 100..200 {
        if fs.lookup(image.ino, format!("sha256:{i:0>64}").as_bytes()).is_ok() {
            made += 1;
        }
    }
    assert_eq!(made, 11);
    assert_eq!(fs.lookup(ROOT_INO, b64("registry.test:5000/new:v1").as_bytes()), Err(FsError::NotFound));
    // What exists keeps working.
    let blob = fs.lookup(lazy.ino, b"blob").unwrap();
    assert_eq!(fs.read(blob.ino, 0, 4).unwrap().len(), 4);
}
