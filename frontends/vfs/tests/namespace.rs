//! The /crfs namespace over a resolver that serves the committed fixtures: two images and
//! their layers through one tree, nested repo paths, missing tags, single resolution under
//! concurrent first lookups, release of idle images, stable ids across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crfs_core::{Digest, FileReadAt, Layer};
use crfs_testkit::{assert_same_listing, fs_listing_at, layer_listing, testdata};
use crfs_vfs::{
    FileKind, FsError, LayerFs, NamespaceFs, NamespaceOptions, Options, ROOT_INO, ReadOnlyFs, ResolveError,
    ResolvedImage, Resolver, StableId, Version,
};

struct Fixtures {
    resolutions: AtomicUsize,
    /// Whether `lib/moving:v1` has moved from all-types.esgz to many.esgz.
    moved: AtomicBool,
}

fn open(name: &str) -> Arc<Layer<FileReadAt>> {
    Arc::new(Layer::open(FileReadAt::open(&testdata().join("fixtures").join(name)).unwrap()).unwrap())
}

const HOST: &str = "registry.test:5000";
const LAYERS: [&str; 3] = ["all-types.esgz", "many.esgz", "all-types.zstdchunked"];

/// A fixture layer's made-up blob digest.
fn layer_digest(name: &str) -> String {
    format!("sha256:{:0>64}", name.len())
}

/// A fixture image's made-up manifest digest: one per set of layers.
fn image_digest(layers: &[&str]) -> String {
    Digest::of(layers.join(" ").as_bytes()).to_string()
}

impl Fixtures {
    /// The images by repo and tag; `moved` changes where `lib/moving:v1` points.
    fn images(&self) -> Vec<(String, &'static str, Vec<&'static str>)> {
        let moving = if self.moved.load(Ordering::SeqCst) { "many.esgz" } else { "all-types.esgz" };
        let mut out = vec![
            ("lib/all-types".to_string(), "v1", vec!["all-types.esgz"]),
            ("deep/er/many".to_string(), "latest", vec!["many.esgz"]),
            ("lib/stack".to_string(), "v1", vec!["many.esgz", "all-types.zstdchunked"]),
            ("lib/moving".to_string(), "v1", vec![moving]),
        ];
        // Fifty more, each its own image of many.esgz (the digest differs by the repo name).
        for i in 0..50 {
            out.push((format!("fifty/img{i}"), "v1", vec!["many.esgz"]));
        }
        out
    }
}

impl Resolver for Fixtures {
    type Blob = FileReadAt;

    fn image(&self, host: &str, repo: &str, version: &Version) -> Result<ResolvedImage<FileReadAt>, ResolveError> {
        self.resolutions.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        if host == HOST && repo == "private/x" {
            return Err(ResolveError::Denied("no".into()));
        }
        // Every image ever served stays resolvable by digest, as in a registry.
        let digest_of = |repo: &str, layers: &[&str]| image_digest(&[&[repo], layers].concat());
        let mut all = self.images();
        all.push(("lib/moving".to_string(), "v0", vec!["all-types.esgz"]));
        let found = all.into_iter().find(|(r, tag, layers)| {
            host == HOST
                && r == repo
                && match version {
                    Version::Tag(t) => t == tag && !(r == "lib/moving" && *tag == "v0"),
                    Version::Digest(d) => *d == digest_of(r, layers),
                }
        });
        let Some((r, _, layers)) = found else { return Err(ResolveError::NotFound(format!("{host}/{repo}"))) };
        let digest = digest_of(&r, &layers);
        Ok(ResolvedImage { digest, layers: layers.into_iter().map(|n| (layer_digest(n), open(n))).collect() })
    }

    fn layer(&self, _host: &str, _repo: &str, digest: &str) -> Result<Arc<Layer<FileReadAt>>, ResolveError> {
        self.resolutions.fetch_add(1, Ordering::SeqCst);
        match LAYERS.iter().find(|n| layer_digest(n) == digest) {
            Some(n) => Ok(open(n)),
            None => Err(ResolveError::NotFound(digest.into())),
        }
    }
}

fn ns_with(options: NamespaceOptions) -> NamespaceFs<Fixtures> {
    NamespaceFs::new(Fixtures { resolutions: AtomicUsize::new(0), moved: AtomicBool::new(false) }, options)
}

fn ns() -> NamespaceFs<Fixtures> {
    ns_with(NamespaceOptions::default())
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
    // Lent reads go through the namespace and the merged tree too, and so does the README.
    let mut lent = Vec::new();
    fs.read_with(small, 7, 100, &mut |data| lent.extend_from_slice(data)).unwrap();
    assert_eq!(lent, b"world\n");
    let readme = fs.lookup(ROOT_INO, b"README").unwrap().ino;
    let mut lent = Vec::new();
    fs.read_with(readme, 0, 4096, &mut |data| lent.extend_from_slice(data)).unwrap();
    assert_eq!(lent, fs.read(readme, 0, 4096).unwrap());
    assert_eq!(fs.read_with(all, 0, 1, &mut |_| {}), Err(FsError::IsDir));
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

const SMALL: &str = "image/registry.test:5000/lib/all-types:v1/files/small.txt";

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn an_idle_image_is_released_and_resolves_again() {
    let fs =
        ns_with(NamespaceOptions { idle_release: Some(Duration::from_millis(100)), ..NamespaceOptions::default() });
    let small = walk(&fs, SMALL).unwrap();
    walk(&fs, "image/registry.test:5000/deep/er/many:latest").unwrap();
    assert_eq!(fs.loaded_trees(), 2);
    assert_eq!(fs.release_unused_for(HOUR), 0, "both were used within the hour");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(fs.release_idle(), 2, "both unused for longer than the configured 100 ms");
    assert_eq!(fs.loaded_trees(), 0);
    // The inode handed out before still reads: the image is resolved again, by its digest.
    let before = fs_resolutions(&fs);
    assert_eq!(fs.read(small, 0, 100).unwrap(), b"hello, world\n");
    assert_eq!(fs_resolutions(&fs), before + 1);
    assert_eq!(fs.loaded_trees(), 1);
    // Looking the path up again gives the same inode, without another resolution.
    assert_eq!(walk(&fs, SMALL).unwrap(), small);
    assert_eq!(fs_resolutions(&fs), before + 1);
    // Listing a repo directory does not load what it lists.
    assert_eq!(fs.release_unused_for(Duration::ZERO), 1);
    assert_eq!(names(&fs, walk(&fs, "image/registry.test:5000/lib").unwrap()), [".", "..", "all-types:v1"]);
    assert_eq!(fs.loaded_trees(), 0);
}

#[test]
fn an_open_file_keeps_its_image() {
    let fs = ns();
    let small = walk(&fs, SMALL).unwrap();
    walk(&fs, "image/registry.test:5000/deep/er/many:latest").unwrap();
    assert!(fs.counts_opens());
    fs.open(small).unwrap();
    assert_eq!(fs.release_unused_for(Duration::ZERO), 1, "only the image without an open file goes");
    assert_eq!(fs.loaded_trees(), 1);
    let before = fs_resolutions(&fs);
    assert_eq!(fs.read(small, 0, 5).unwrap(), b"hello");
    assert_eq!(fs_resolutions(&fs), before, "the open file's image stayed in memory");
    fs.close(small);
    assert_eq!(fs.release_unused_for(Duration::ZERO), 1);
    assert_eq!(fs.loaded_trees(), 0);
}

#[test]
fn a_pinned_tag_does_not_move_across_a_release() {
    let fs = ns();
    let root = walk(&fs, "image/registry.test:5000/lib/moving:v1").unwrap();
    let pinned = names(&fs, root);
    fs.resolver().moved.store(true, Ordering::SeqCst);
    assert_eq!(fs.release_unused_for(Duration::ZERO), 1);
    assert_eq!(names(&fs, root), pinned, "resolved again by the pinned digest, not the tag");
    assert_eq!(names(&fs, walk(&fs, "image/registry.test:5000/lib/moving:v1").unwrap()), pinned);
    // A namespace starting now sees where the tag points now.
    let fresh = ns();
    fresh.resolver().moved.store(true, Ordering::SeqCst);
    let moved = names(&fresh, walk(&fresh, "image/registry.test:5000/lib/moving:v1").unwrap());
    assert_ne!(moved, pinned);
    // With a pin that expires, a new lookup follows the tag while the old inodes keep theirs.
    let short = ns_with(NamespaceOptions { pin_ttl: Some(Duration::ZERO), ..NamespaceOptions::default() });
    let old = walk(&short, "image/registry.test:5000/lib/moving:v1").unwrap();
    short.resolver().moved.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(5));
    let new = walk(&short, "image/registry.test:5000/lib/moving:v1").unwrap();
    assert_ne!(old, new);
    assert_eq!(names(&short, old), pinned);
    assert_eq!(names(&short, new), moved);
}

/// Paths whose stable ids the restart tests follow: synthetic, image by tag and by digest,
/// a layer list and a file in one of its layers, a layer by digest.
fn stable_paths() -> Vec<String> {
    let stack = image_digest(&["lib/stack", "many.esgz", "all-types.zstdchunked"]);
    vec![
        "image/registry.test:5000/deep/er".to_string(),
        SMALL.to_string(),
        format!("image/registry.test:5000/lib/stack@{stack}/files/small.txt"),
        "layer/registry.test:5000/lib/stack:v1".to_string(),
        format!("layer/registry.test:5000/lib/stack:v1/{}/files/small.txt", layer_digest("all-types.zstdchunked")),
        format!("layer/registry.test:5000/lib/all-types@{}/links", layer_digest("all-types.esgz")),
        "image/registry.test:5000/deep/er/many:latest".to_string(),
    ]
}

#[test]
fn stable_ids_do_not_depend_on_lookup_order() {
    let a = ns();
    let b = ns();
    let paths = stable_paths();
    let ids_a: Vec<(u64, StableId)> = paths
        .iter()
        .map(|p| {
            let ino = walk(&a, p).unwrap();
            (ino, a.stable_id(ino).unwrap())
        })
        .collect();
    let ids_b: Vec<(u64, StableId)> = paths
        .iter()
        .rev()
        .map(|p| {
            let ino = walk(&b, p).unwrap();
            (ino, b.stable_id(ino).unwrap())
        })
        .collect();
    let ids_b: Vec<_> = ids_b.into_iter().rev().collect();
    assert!(ids_a.iter().zip(&ids_b).any(|(x, y)| x.0 != y.0), "the inode numbers depend on lookup order");
    for ((_, x), (_, y)) in ids_a.iter().zip(&ids_b) {
        assert_eq!(x, y);
    }
    let kinds: Vec<u8> = ids_a.iter().map(|(_, id)| id.kind).collect();
    use crfs_vfs::StableId as S;
    assert_eq!(kinds, [S::SYNTHETIC, S::IMAGE, S::IMAGE, S::SYNTHETIC, S::LAYER, S::LAYER, S::IMAGE]);
}

#[test]
fn stable_ids_resolve_again_after_a_restart() {
    let file = crfs_testkit::scratch_dir("vfs-ns-restart").join("known");
    let a = ns();
    assert_eq!(a.remember_in(&file).unwrap(), 0);
    let before: Vec<(StableId, crfs_vfs::Attr)> = stable_paths()
        .iter()
        .map(|p| {
            let ino = walk(&a, p).unwrap();
            (a.stable_id(ino).unwrap(), a.getattr(ino).unwrap())
        })
        .collect();
    let small_id = before[1].0;
    drop(a);

    // A new server with the same file: every id resolves, in any order, to the same node.
    let b = ns();
    assert!(b.remember_in(&file).unwrap() >= before.len());
    for (id, attr) in before.iter().rev() {
        let ino = b.find_stable(id).unwrap_or_else(|e| panic!("{id:?}: {e:?}"));
        assert_eq!(b.stable_id(ino), Some(*id));
        let got = b.getattr(ino).unwrap();
        assert_eq!((got.kind, got.size, got.perm), (attr.kind, attr.size, attr.perm));
    }
    assert_eq!(b.read(b.find_stable(&small_id).unwrap(), 0, 100).unwrap(), b"hello, world\n");
    // An id nobody learned, and a server without the file: NotFound.
    let unknown = StableId { tree: [9; 32], ..small_id };
    assert_eq!(b.find_stable(&unknown), Err(FsError::NotFound));
    assert_eq!(ns().find_stable(&small_id), Err(FsError::NotFound));
    // The root, README, image/ and layer/ need nothing learned.
    let c = ns();
    let readme = c.stable_id(walk(&c, "README").unwrap()).unwrap();
    assert_eq!(ns().find_stable(&readme).unwrap(), walk(&c, "README").unwrap());
}

#[test]
fn made_up_names_cannot_grow_the_namespace_without_bound() {
    const MAX: usize = 1000;
    let fs = ns_with(NamespaceOptions { max_synthetic: MAX, ..NamespaceOptions::default() });
    let small = walk(&fs, SMALL).unwrap();
    let host = walk(&fs, "image/registry.test:5000").unwrap();
    let mut made = 0;
    for i in 0..MAX {
        match fs.lookup(host, format!("d{i}").as_bytes()) {
            Ok(_) => made += 1,
            Err(e) => {
                assert_eq!(e, FsError::NotFound);
                break;
            }
        }
    }
    // The root, README, image/, layer/, the host and lib/ were there before.
    assert_eq!(made, MAX - 6);
    assert_eq!(fs.lookup(host, b"one-more").err(), Some(FsError::NotFound));
    // What exists keeps working, references included.
    assert!(fs.lookup(host, b"d7").is_ok());
    assert_eq!(walk(&fs, SMALL).unwrap(), small);
    assert_eq!(fs.read(small, 0, 100).unwrap(), b"hello, world\n");
}
