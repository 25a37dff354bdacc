//! The /crfs namespace over a resolver that serves the committed fixtures: two images and
//! their layers through one tree, nested repo paths, missing tags, single resolution under
//! concurrent first lookups.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crfs_core::{FileReadAt, Layer};
use crfs_testkit::{assert_same_listing, fs_listing_at, layer_listing, testdata};
use crfs_vfs::{
    FileKind, FsError, LayerFs, NamespaceFs, NamespaceOptions, Options, ROOT_INO, ReadOnlyFs, ResolveError,
    ResolvedImage, Resolver, Version,
};

struct Fixtures {
    resolutions: AtomicUsize,
}

fn open(name: &str) -> Arc<Layer<FileReadAt>> {
    Arc::new(Layer::open(FileReadAt::open(&testdata().join("fixtures").join(name)).unwrap()).unwrap())
}

impl Resolver for Fixtures {
    type Blob = FileReadAt;

    fn image(&self, host: &str, repo: &str, version: &Version) -> Result<ResolvedImage<FileReadAt>, ResolveError> {
        self.resolutions.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let layers = match (host, repo, version) {
            ("registry.test:5000", "lib/all-types", Version::Tag(t)) if t == "v1" => vec!["all-types.esgz"],
            ("registry.test:5000", "deep/er/many", Version::Tag(t)) if t == "latest" => vec!["many.esgz"],
            ("registry.test:5000", "lib/stack", Version::Tag(t)) if t == "v1" => {
                vec!["many.esgz", "all-types.zstdchunked"]
            }
            ("registry.test:5000", "private/x", _) => return Err(ResolveError::Denied("no".into())),
            _ => return Err(ResolveError::NotFound(format!("{host}/{repo}"))),
        };
        let layers = layers.into_iter().map(|n| (format!("sha256:{:0>64}", n.len()), open(n))).collect();
        Ok(ResolvedImage { digest: "sha256:".to_string() + &"0".repeat(64), layers })
    }

    fn layer(&self, _host: &str, _repo: &str, digest: &str) -> Result<Arc<Layer<FileReadAt>>, ResolveError> {
        if digest == format!("sha256:{:0>64}", "all-types.esgz".len()) {
            Ok(open("all-types.esgz"))
        } else {
            Err(ResolveError::NotFound(digest.into()))
        }
    }
}

fn ns() -> NamespaceFs<Fixtures> {
    NamespaceFs::new(Fixtures { resolutions: AtomicUsize::new(0) }, NamespaceOptions::default())
}

fn walk(fs: &dyn ReadOnlyFs, path: &str) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes())?.ino;
    }
    Ok(ino)
}

fn names(fs: &dyn ReadOnlyFs, ino: u64) -> Vec<String> {
    let mut out = Vec::new();
    fs.readdir(ino, 0, &mut |e| {
        out.push(String::from_utf8_lossy(e.name).into_owned());
        true
    })
    .unwrap();
    out
}

#[test]
fn root_has_readme_image_and_layer() {
    let fs = ns();
    assert_eq!(names(&fs, ROOT_INO), [".", "..", "README", "image", "layer"]);
    let readme = fs.lookup(ROOT_INO, b"README").unwrap();
    let text = fs.read(readme.ino, 0, 4096).unwrap();
    assert!(String::from_utf8(text).unwrap().contains("image/<host>/<repo>:<tag>/"));
    assert_eq!(fs.lookup(ROOT_INO, b"nope"), Err(FsError::NotFound));
}

#[test]
fn images_by_tag_with_nested_repo_paths() {
    let fs = ns();
    let all = walk(&fs, "image/registry.test:5000/lib/all-types:v1").unwrap();
    // The image root reads like the layer itself, its whiteout files consumed.
    let want = layer_listing(&open("all-types.esgz"));
    let comparable =
        |l: &str| l.lines().filter(|l| !l.starts_with(".\t") && !l.contains(".wh.")).collect::<Vec<_>>().join("\n");
    assert_same_listing("image via namespace", &comparable(&fs_listing_at(&fs, all)), &comparable(&want));
    assert_eq!(fs.getattr(all).unwrap().kind, FileKind::Dir);
    let many = walk(&fs, "image/registry.test:5000/deep/er/many:latest").unwrap();
    assert!(names(&fs, many).len() > 10);
    // What was looked up so far is listed.
    assert_eq!(names(&fs, walk(&fs, "image").unwrap()), [".", "..", "registry.test:5000"]);
    assert_eq!(names(&fs, walk(&fs, "image/registry.test:5000").unwrap()), [".", "..", "deep", "lib"]);
    // ".." from an image root leads back to its repo directory.
    let up = fs.lookup(all, b"..").unwrap().ino;
    assert_eq!(up, walk(&fs, "image/registry.test:5000/lib").unwrap());
    // Files read through the namespace.
    let small = walk(&fs, "image/registry.test:5000/lib/all-types:v1/files/small.txt").unwrap();
    assert_eq!(fs.read(small, 0, 100).unwrap(), b"hello, world\n");
}

#[test]
fn a_stack_of_layers_is_merged() {
    let fs = ns();
    let root = walk(&fs, "image/registry.test:5000/lib/stack:v1").unwrap();
    let top = names(&fs, root);
    assert!(top.contains(&"files".to_string()) && top.len() > 20, "{top:?}");
}

#[test]
fn missing_and_denied_references() {
    let fs = ns();
    assert_eq!(walk(&fs, "image/registry.test:5000/lib/all-types:v2"), Err(FsError::NotFound));
    assert_eq!(walk(&fs, "image/registry.test:5000/private/x:v1"), Err(FsError::Denied));
    assert_eq!(walk(&fs, "image/registry.test:5000/lib/all-types@sha256:zz"), Err(FsError::NotFound));
    assert_eq!(walk(&fs, "image/registry.test:5000/lib/bad name:v1"), Err(FsError::NotFound));
    // Failures are remembered: a second lookup does not ask the resolver again.
    let before = fs_resolutions(&fs);
    assert_eq!(walk(&fs, "image/registry.test:5000/lib/all-types:v2"), Err(FsError::NotFound));
    assert_eq!(fs_resolutions(&fs), before);
}

fn fs_resolutions(fs: &NamespaceFs<Fixtures>) -> usize {
    fs.resolver().resolutions.load(Ordering::SeqCst)
}

#[test]
fn concurrent_first_lookups_resolve_once() {
    let fs = ns();
    let inos: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..8).map(|_| s.spawn(|| walk(&fs, "image/registry.test:5000/lib/all-types:v1").unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(inos.windows(2).all(|w| w[0] == w[1]), "{inos:?}");
    assert_eq!(fs_resolutions(&fs), 1);
}

#[test]
fn layers_by_tag_and_by_digest() {
    let fs = ns();
    let list = walk(&fs, "layer/registry.test:5000/lib/stack:v1").unwrap();
    let digests = names(&fs, list);
    assert_eq!(digests.len(), 4, "{digests:?}");
    let one = fs.lookup(list, digests[2].as_bytes()).unwrap();
    assert_eq!(fs.getattr(one.ino).unwrap().kind, FileKind::Dir);
    let by_digest = format!("layer/registry.test:5000/lib/all-types@sha256:{:0>64}", "all-types.esgz".len());
    let root = walk(&fs, &by_digest).unwrap();
    let plain = LayerFs::new(open("all-types.esgz"), Options::default());
    let plain_names = names(&plain, ROOT_INO);
    assert_eq!(names(&fs, root), plain_names);
}
