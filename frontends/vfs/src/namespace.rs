//! The `/crfs` namespace: every image and layer one path away, resolved on first lookup.
//!
//! ```text
//! README                                        what this tree is
//! image/<host>/<repo path>:<tag>/...            the merged root filesystem of that image
//! image/<host>/<repo path>@sha256:<digest>/...  the same, by manifest digest
//! layer/<host>/<repo path>:<tag>/               the image's layers, one directory per digest
//! layer/<host>/<repo path>@sha256:<digest>/...  one layer, by blob digest
//! ```
//!
//! The repo path may have any depth: the first component after `image/` or `layer/` is the
//! host (which may carry a `:port`), and the first later component holding `:` or `@` ends
//! the reference. Directories in between appear on lookup; listing shows what has been looked
//! up so far. An image is resolved once (concurrent first lookups share one resolution), then
//! pinned for the life of the mount or for `pin_ttl`, so a tag that moves changes nothing
//! under open files. Failed lookups are remembered briefly.
//!
//! Inode numbers: synthetic directories and the README are below 2^32; the tree of resolved
//! image or layer number `s` (a "slot") uses `(s + 1) << 32 | its own inode number`.
//!
//! Release: a slot is pinned to a digest (the image's manifest digest or the layer's blob
//! digest) for as long as the namespace lives; what it holds in memory (the layers' indexes,
//! blobs and chunk caches) is dropped by [`NamespaceFs::release_idle`] once no file of it is
//! open and none of its inodes was used for `idle_release`. The slot itself (a few hundred
//! bytes: reference, digest, root attributes) stays, so inode numbers a client still holds
//! keep working: the next use resolves the pinned digest again, which yields the same tree and
//! the same inode numbers, whatever the tag points at by then. A tag whose `pin_ttl` expired
//! gets a new slot on its next lookup; the old one still serves the inodes handed out.
//!
//! Stable identities ([`StableId`]): a synthetic node is named by the sha256 of its path, a
//! node of a slot by the slot's digest and its inode within the tree. Either is re-resolved on
//! demand ([`ReadOnlyFs::find_stable`]): a digest this process has seen maps back to its
//! `host/repo`, and [`NamespaceFs::remember_in`] keeps that map in a file so that a restarted
//! server resolves the handles of its predecessor. An id whose digest or path was never
//! learned (or was learned by a server without that file) is answered `NotFound`, which NFS
//! turns into NFS3ERR_STALE.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crfs_core::{Digest, Layer, ReadAt};

// Every critical section here is a single assignment or read, so a panicked holder leaves
// consistent data and `lock` may ignore poisoning.
use crate::lock;
use crate::lru::LoadingLru;
use crate::slots::{self, LOCAL_MASK};
use crate::{
    Attr, DirEntry, FileKind, FsError, Ino, LayerFs, MergedFs, Options, ROOT_INO, ReadOnlyFs, StableId, StatFs,
    WholeChunk,
};

/// Why a reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No such host, repository, tag or digest (ENOENT).
    NotFound(String),
    /// The registry refused our credentials (EACCES).
    Denied(String),
    /// Anything else: network, bad manifest, bad layer (EIO).
    Failed(String),
}

impl ResolveError {
    pub(crate) fn fs_error(&self) -> FsError {
        match self {
            ResolveError::NotFound(_) => FsError::NotFound,
            ResolveError::Denied(_) => FsError::Denied,
            ResolveError::Failed(_) => FsError::Io,
        }
    }
}

/// A tag or a digest, the part of a reference after `:` or `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Version {
    /// A tag, such as `latest`.
    Tag(String),
    /// A digest, `sha256:` and 64 hex digits.
    Digest(String),
}

/// An image's layers, bottom first, each with its blob digest.
pub struct ResolvedImage<B> {
    /// The manifest digest the image is pinned to.
    pub digest: String,
    /// The opened layers, bottom first, each with its blob digest.
    pub layers: Vec<(String, Arc<Layer<B>>)>,
}

/// Turns references into opened layers: the registry client implements this.
pub trait Resolver: Send + Sync + 'static {
    /// Where the layers' bytes come from.
    type Blob: ReadAt + Send + Sync + 'static;
    /// The image `host/repo` at `version`.
    fn image(&self, host: &str, repo: &str, version: &Version) -> Result<ResolvedImage<Self::Blob>, ResolveError>;
    /// One layer blob `digest` of `host/repo`.
    fn layer(&self, host: &str, repo: &str, digest: &str) -> Result<Arc<Layer<Self::Blob>>, ResolveError>;
}

/// How the namespace behaves.
#[derive(Debug, Clone, Copy)]
pub struct NamespaceOptions {
    /// How the trees of images are served.
    pub fs: Options,
    /// How long a tag stays pinned to the digest it first resolved to (`None`: for the life
    /// of the mount).
    pub pin_ttl: Option<Duration>,
    /// How long a failed lookup is remembered.
    pub negative_ttl: Duration,
    /// How long an image or layer with no open file stays in memory after its last use
    /// (`None`: until the namespace is dropped). See [`NamespaceFs::release_idle`].
    pub idle_release: Option<Duration>,
    /// At most this many synthetic nodes (hosts and repo path components looked up, about
    /// 200 bytes each): a client looking up endless made-up names must not grow the namespace
    /// without bound. Beyond it, new names answer ENOENT; what exists keeps working.
    pub max_synthetic: usize,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            fs: Options::default(),
            pin_ttl: None,
            negative_ttl: Duration::from_secs(10),
            idle_release: Some(Duration::from_secs(300)),
            max_synthetic: 100_000,
        }
    }
}

const README: &[u8] = b"crfs: container images without pulling them.\n\n\
image/<host>/<repo>:<tag>/          the merged root filesystem of an image\n\
image/<host>/<repo>@sha256:<hex>/   the same, by manifest digest\n\
layer/<host>/<repo>:<tag>/          the image's layers, one directory per layer digest\n\
layer/<host>/<repo>@sha256:<hex>/   one layer, by blob digest\n\n\
Paths appear when looked up: `ls /crfs/image/docker.io/library/alpine:3.20/`.\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Root,
    Image,
    Layer,
}

#[derive(Debug, Clone)]
enum SynthKind {
    Dir,
    Readme,
}

/// A synthetic node: the root, README, image/, layer/, hosts and repo path directories.
struct Synth {
    kind: SynthKind,
    parent: Ino,
    area: Area,
    /// Depth below image/ or layer/ (1 = host).
    depth: u32,
    /// The path components below the area (host first), for building references.
    path: Vec<String>,
    /// The whole path from the root ("" for the root), which names it in a [`StableId`].
    full: String,
    children: BTreeMap<Vec<u8>, Child>,
}

#[derive(Debug, Clone, Copy)]
enum Child {
    Synth(Ino),
    /// A resolved tree, and when it was resolved.
    Slot(usize, Instant),
}

/// What a slot is pinned to: enough to resolve its tree again after a release.
struct Pin {
    /// [`StableId::IMAGE`] or [`StableId::LAYER`].
    kind: u8,
    host: String,
    repo: String,
    /// The manifest digest (image) or blob digest (layer).
    digest: String,
    /// `digest` as bytes: the `tree` of the slot's stable ids.
    id: [u8; 32],
}

/// One resolved image or layer.
struct Slot {
    pin: Pin,
    /// The synthetic directory holding it, for "..".
    parent: Ino,
    /// The root's attributes (with the slot's inode number), answered without loading.
    root: Attr,
    /// The tree, while it is in memory.
    tree: Mutex<Option<Arc<dyn ReadOnlyFs>>>,
    /// Milliseconds since the namespace's start at the last use.
    last_used: AtomicU64,
    /// Files open through the front-end (FUSE open without a release yet).
    open: AtomicU64,
}

struct State {
    synth: Vec<Synth>,
    slots: Vec<Arc<Slot>>,
    /// Synthetic nodes by the sha256 of their path.
    synth_by_id: HashMap<[u8; 32], Ino>,
    /// The first slot pinned to each (kind, digest).
    slot_by_id: HashMap<(u8, [u8; 32]), usize>,
}

/// What the namespace learned that re-resolves a [`StableId`]: synthetic paths, and
/// `host/repo@digest` of images and layers. Kept in a file when one is given.
#[derive(Default)]
struct Known {
    refs: HashMap<(u8, [u8; 32]), String>,
    file: Option<std::fs::File>,
}

fn kind_word(kind: u8) -> &'static str {
    match kind {
        StableId::SYNTHETIC => "path",
        StableId::IMAGE => "image",
        _ => "layer",
    }
}

/// The id of a synthetic node at `full`.
fn path_id(full: &str) -> [u8; 32] {
    Digest::of(format!("crfs namespace path\n{full}").as_bytes()).0
}

/// Lookups that failed lately, remembered for a while (`negative_ttl`) so that a client
/// retrying a bad name does not send the registry a request each time; at most
/// [`RecentFailures::KEPT`] of them.
struct RecentFailures {
    ttl: Duration,
    failed: Mutex<HashMap<String, (Instant, ResolveError)>>,
}

impl RecentFailures {
    /// The most failures remembered; past it, expired ones go, then the oldest.
    const KEPT: usize = 4096;

    fn new(ttl: Duration) -> Self {
        RecentFailures { ttl, failed: Mutex::new(HashMap::new()) }
    }

    /// The failure of `key`, if it failed less than the time to live ago.
    fn get(&self, key: &str) -> Option<ResolveError> {
        let mut failed = lock(&self.failed);
        let (at, error) = failed.get(key)?;
        if at.elapsed() < self.ttl {
            return Some(error.clone());
        }
        failed.remove(key);
        None
    }

    fn insert(&self, key: String, error: ResolveError) {
        let mut failed = lock(&self.failed);
        if failed.len() >= Self::KEPT && !failed.contains_key(&key) {
            let ttl = self.ttl;
            failed.retain(|_, (at, _)| at.elapsed() < ttl);
            let oldest = failed.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest.filter(|_| failed.len() >= Self::KEPT) {
                failed.remove(&oldest);
            }
        }
        failed.insert(key, (Instant::now(), error));
    }
}

/// The namespace filesystem over a [`Resolver`].
pub struct NamespaceFs<Res: Resolver> {
    resolver: Res,
    options: NamespaceOptions,
    state: RwLock<State>,
    /// Single flight for resolutions, keyed by the full reference (entries are removed once
    /// attached, so they hold no image longer than its slot does).
    images: LoadingLru<String, Arc<ResolvedImage<Res::Blob>>, ResolveError>,
    failures: RecentFailures,
    known: Mutex<Known>,
    started: SystemTime,
    epoch: Instant,
}

fn synth_attr(ino: Ino, kind: &SynthKind, mtime: SystemTime) -> Attr {
    let (kind, perm, size, nlink) = match kind {
        SynthKind::Dir => (FileKind::Dir, 0o555, 0, 2),
        SynthKind::Readme => (FileKind::Reg, 0o444, README.len() as u64, 1),
    };
    Attr {
        ino,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        size,
        blocks: size.div_ceil(512),
        rdev_major: 0,
        rdev_minor: 0,
        mtime,
    }
}

/// Whether a path component is acceptable in a reference (registry grammar, loosely).
fn valid_component(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != b"."
        && name != b".."
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b"._-:@+".contains(&b))
}

/// A tree made from a resolution, before it gets a slot.
struct NewTree {
    /// Its name in the layer list of a tag (the layer digest); unused otherwise.
    name: Vec<u8>,
    pin: Pin,
    fs: Arc<dyn ReadOnlyFs>,
}

impl<Res: Resolver> NamespaceFs<Res> {
    /// An empty namespace resolving through `resolver`.
    pub fn new(resolver: Res, options: NamespaceOptions) -> Self {
        let dir = |area: Area, parent, full: &str| Synth {
            kind: SynthKind::Dir,
            parent,
            area,
            depth: 0,
            path: Vec::new(),
            full: full.to_string(),
            children: BTreeMap::new(),
        };
        let mut root = dir(Area::Root, ROOT_INO, "");
        root.children.insert(b"README".to_vec(), Child::Synth(2));
        root.children.insert(b"image".to_vec(), Child::Synth(3));
        root.children.insert(b"layer".to_vec(), Child::Synth(4));
        let mut readme = dir(Area::Root, ROOT_INO, "README");
        readme.kind = SynthKind::Readme;
        let synth = vec![root, readme, dir(Area::Image, ROOT_INO, "image"), dir(Area::Layer, ROOT_INO, "layer")];
        let synth_by_id = synth.iter().enumerate().map(|(i, s)| (path_id(&s.full), i as Ino + 1)).collect();
        let state = State { synth, slots: Vec::new(), synth_by_id, slot_by_id: HashMap::new() };
        NamespaceFs {
            resolver,
            options,
            state: RwLock::new(state),
            // A bound of 0: concurrent lookups share one resolution, and nothing is kept.
            images: LoadingLru::new(0, |_| 1),
            failures: RecentFailures::new(options.negative_ttl),
            known: Mutex::new(Known::default()),
            started: SystemTime::now(),
            epoch: Instant::now(),
        }
    }

    /// The resolver.
    pub fn resolver(&self) -> &Res {
        &self.resolver
    }

    /// Keeps what re-resolves stable ids (paths and `host/repo@digest` of what resolved) in
    /// `file`, one line each, and loads what an earlier server left there. Returns how many
    /// entries were loaded. Unreadable lines are skipped.
    pub fn remember_in(&self, file: &Path) -> std::io::Result<usize> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut known = lock(&self.known);
        let before = known.refs.len();
        for line in text.lines() {
            let Some((word, rest)) = line.split_once(' ') else { continue };
            let entry = match word {
                "path" => Some((StableId::SYNTHETIC, path_id(rest))),
                "image" | "layer" => {
                    let kind = if word == "image" { StableId::IMAGE } else { StableId::LAYER };
                    rest.rsplit_once('@').and_then(|(_, d)| Digest::parse(d)).map(|d| (kind, d.0))
                }
                _ => None,
            };
            if let Some(key) = entry {
                known.refs.insert(key, rest.to_string());
            }
        }
        known.file = Some(std::fs::OpenOptions::new().create(true).append(true).open(file)?);
        Ok(known.refs.len() - before)
    }

    /// Remembers what re-resolves `(kind, id)`, in the file too when there is one.
    fn learn(&self, kind: u8, id: [u8; 32], text: String) {
        let mut known = lock(&self.known);
        if known.refs.get(&(kind, id)) == Some(&text) {
            return;
        }
        if let Some(f) = known.file.as_mut()
            && let Err(e) = writeln!(f, "{} {text}", kind_word(kind))
        {
            tracing::warn!("cannot remember {text}: {e}");
        }
        known.refs.insert((kind, id), text);
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The slot number of a slot inode.
    fn slot_of(ino: Ino) -> Result<usize, FsError> {
        slots::slot_of(ino)
    }

    fn slot(&self, slot: usize) -> Result<Arc<Slot>, FsError> {
        self.read_state().slots.get(slot).cloned().ok_or(FsError::NotFound)
    }

    /// The tree of a slot, resolved again from its pin if it was released.
    fn tree(&self, slot: &Slot) -> Result<Arc<dyn ReadOnlyFs>, FsError> {
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        let mut tree = lock(&slot.tree);
        if let Some(fs) = tree.as_ref() {
            return Ok(fs.clone());
        }
        let fs = self.reload(&slot.pin)?;
        *tree = Some(fs.clone());
        Ok(fs)
    }

    /// The tree of `ino`'s slot and `ino`'s number in it, if that tree is in memory now;
    /// never loads, never waits (a slot being loaded is locked: `None`).
    fn loaded_tree(&self, ino: Ino) -> Option<(Arc<dyn ReadOnlyFs>, Ino)> {
        let slot = self.slot(Self::slot_of(ino).ok()?).ok()?;
        let tree = slot.tree.try_lock().ok()?.clone()?;
        Some((tree, ino & LOCAL_MASK))
    }

    /// Resolves a pinned digest again: the same content, so the same inode numbers.
    fn reload(&self, pin: &Pin) -> Result<Arc<dyn ReadOnlyFs>, FsError> {
        let reference = format!("{}/{}@{}", pin.host, pin.repo, pin.digest);
        let fail = |e: ResolveError| {
            tracing::warn!(%reference, "resolving a released tree again failed: {e:?}");
            e.fs_error()
        };
        let fs: Arc<dyn ReadOnlyFs> = if pin.kind == StableId::IMAGE {
            let image =
                self.resolver.image(&pin.host, &pin.repo, &Version::Digest(pin.digest.clone())).map_err(fail)?;
            if image.digest != pin.digest {
                tracing::error!(%reference, got = %image.digest, "the registry answered another manifest");
                return Err(FsError::Io);
            }
            let layers = image.layers.into_iter().map(|(_, l)| l).collect();
            Arc::new(MergedFs::new(layers, self.options.fs)?)
        } else {
            let layer = self.resolver.layer(&pin.host, &pin.repo, &pin.digest).map_err(fail)?;
            Arc::new(LayerFs::new(layer, self.options.fs))
        };
        tracing::info!(%reference, "resolved again after release");
        Ok(fs)
    }

    /// Runs `f` on the tree and local inode number behind a slot inode.
    fn in_slot<T>(&self, ino: Ino, f: impl FnOnce(&dyn ReadOnlyFs, Ino) -> Result<T, FsError>) -> Result<T, FsError> {
        let slot = self.slot(Self::slot_of(ino)?)?;
        let fs = self.tree(&slot)?;
        f(fs.as_ref(), ino & LOCAL_MASK)
    }

    fn slot_ino(slot: usize, local: Ino) -> Ino {
        slots::slot_ino(slot, local)
    }

    fn slot_attr(slot: usize, attr: Result<Attr, FsError>) -> Result<Attr, FsError> {
        attr.map(|mut a| {
            a.ino = Self::slot_ino(slot, a.ino);
            a
        })
    }

    fn synth_index(ino: Ino) -> Option<usize> {
        slots::made_up_index(ino)
    }

    /// A read of a synthetic node: the README's bytes, or IsDir.
    fn synthetic_read(&self, ino: Ino, offset: u64, size: u32) -> Result<&'static [u8], FsError> {
        match self.getattr(ino)?.kind {
            FileKind::Dir => Err(FsError::IsDir),
            _ => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(README.len());
                let end = start.saturating_add(size as usize).min(README.len());
                Ok(README.get(start..end).unwrap_or_default())
            }
        }
    }

    fn child_attr(&self, child: Child) -> Result<Attr, FsError> {
        match child {
            Child::Synth(ino) => self.getattr(ino),
            Child::Slot(slot, _) => self.slot(slot).map(|s| s.root),
        }
    }

    /// Releases the trees of slots with no open file and no use for `idle_release`: their
    /// indexes, blobs and caches leave memory; the slots stay, to be resolved again by digest
    /// on their next use. Returns how many trees were released. Front-ends call this
    /// periodically; it never blocks on a slot being resolved.
    pub fn release_idle(&self) -> usize {
        self.options.idle_release.map_or(0, |idle| self.release_unused_for(idle))
    }

    /// Releases, as [`release_idle`](Self::release_idle) does, the trees with no open file
    /// and no use for `idle`.
    pub fn release_unused_for(&self, idle: Duration) -> usize {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let slots: Vec<Arc<Slot>> = self.read_state().slots.clone();
        let mut released = 0;
        for slot in slots {
            if slot.open.load(Ordering::Relaxed) > 0
                || now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle_ms
            {
                continue;
            }
            if let Ok(mut tree) = slot.tree.try_lock()
                && tree.take().is_some()
            {
                released += 1;
                tracing::info!(reference = %format!("{}/{}@{}", slot.pin.host, slot.pin.repo, slot.pin.digest),
                    "released after {} ms unused", idle.as_millis());
            }
        }
        released
    }

    /// How many resolved trees are in memory now (released ones excluded).
    pub fn loaded_trees(&self) -> usize {
        self.read_state().slots.iter().filter(|s| lock(&s.tree).is_some()).count()
    }

    /// Parses a reference-ending component `name` in synthetic directory `dir`: the area, the
    /// host, the repo path and the version.
    fn reference(&self, dir: Ino, name: &[u8]) -> Result<(Area, String, String, Version), FsError> {
        let (area, mut path) = {
            let state = self.read_state();
            let d = state.synth.get(Self::synth_index(dir).ok_or(FsError::NotFound)?).ok_or(FsError::NotFound)?;
            (d.area, d.path.clone())
        };
        let name_str = std::str::from_utf8(name).map_err(|_| FsError::NotFound)?;
        let (repo_last, version) = match name_str.split_once('@') {
            Some((repo, digest)) if Digest::parse(digest).is_some() => (repo, Version::Digest(digest.to_string())),
            Some(_) => return Err(FsError::NotFound),
            None => match name_str.rsplit_once(':') {
                Some((repo, tag)) if !tag.is_empty() && !repo.is_empty() => (repo, Version::Tag(tag.to_string())),
                _ => return Err(FsError::NotFound),
            },
        };
        if repo_last.is_empty() || path.is_empty() {
            return Err(FsError::NotFound);
        }
        let host = path.remove(0);
        path.push(repo_last.to_string());
        Ok((area, host, path.join("/"), version))
    }

    /// Resolves what `name` names and makes its trees.
    fn resolve(&self, area: Area, host: &str, repo: &str, version: &Version) -> Result<Vec<NewTree>, FsError> {
        let key = format!("{area:?} {host}/{repo} {version:?}");
        if let Some(e) = self.failures.get(&key) {
            return Err(e.fs_error());
        }
        let fs_options = self.options.fs;
        let fail = |e: ResolveError| {
            tracing::warn!(reference = %key, "lookup failed: {e:?}");
            self.failures.insert(key.clone(), e.clone());
            e.fs_error()
        };
        let pin = |kind: u8, digest: &str| -> Result<Pin, FsError> {
            let id = Digest::parse(digest)
                .ok_or_else(|| fail(ResolveError::Failed(format!("{host}/{repo}: {digest} is not a sha256 digest"))))?;
            Ok(Pin { kind, host: host.to_string(), repo: repo.to_string(), digest: digest.to_string(), id: id.0 })
        };
        if let (Area::Layer, Version::Digest(digest)) = (area, version) {
            let layer = self.resolver.layer(host, repo, digest).map_err(fail)?;
            let fs = Arc::new(LayerFs::new(layer, fs_options));
            return Ok(vec![NewTree { name: Vec::new(), pin: pin(StableId::LAYER, digest)?, fs }]);
        }
        let image = self
            .images
            .get_or_load(key.clone(), || self.resolver.image(host, repo, version).map(Arc::new))
            .map_err(|e| fail((*e).clone()));
        // Only concurrent first lookups share a resolution (the map keeps nothing); the slot
        // holds it from now on.
        let image = image?;
        tracing::info!(reference = %key, digest = %image.digest, layers = image.layers.len(), "resolved");
        if area == Area::Image {
            let layers = image.layers.iter().map(|(_, l)| l.clone()).collect();
            let fs = Arc::new(MergedFs::new(layers, fs_options)?);
            return Ok(vec![NewTree { name: Vec::new(), pin: pin(StableId::IMAGE, &image.digest)?, fs }]);
        }
        image
            .layers
            .iter()
            .map(|(d, l)| {
                Ok(NewTree {
                    name: d.as_bytes().to_vec(),
                    pin: pin(StableId::LAYER, d)?,
                    fs: Arc::new(LayerFs::new(l.clone(), fs_options)),
                })
            })
            .collect()
    }

    /// Gives `tree` a slot under directory `parent`.
    fn push_slot(&self, state: &mut State, tree: NewTree, parent: Ino) -> Result<usize, FsError> {
        let slot = state.slots.len();
        let root = Self::slot_attr(slot, tree.fs.getattr(ROOT_INO))?;
        state.slot_by_id.entry((tree.pin.kind, tree.pin.id)).or_insert(slot);
        state.slots.push(Arc::new(Slot {
            pin: tree.pin,
            parent,
            root,
            tree: Mutex::new(Some(tree.fs)),
            last_used: AtomicU64::new(self.now_ms()),
            open: AtomicU64::new(0),
        }));
        Ok(slot)
    }

    /// Resolves `name` (which ends a reference) in synthetic directory `dir` and attaches the
    /// result as a new slot, unless another lookup attached one meanwhile.
    fn attach(&self, dir: Ino, name: &[u8]) -> Result<Child, FsError> {
        let (area, host, repo, version) = self.reference(dir, name)?;
        let trees = self.resolve(area, &host, &repo, &version)?;
        let mut learned: Vec<(u8, [u8; 32], String)> = Vec::new();
        let child = {
            let mut state = self.write_state();
            let di = Self::synth_index(dir).ok_or(FsError::NotFound)?;
            let d = state.synth.get(di).ok_or(FsError::NotFound)?;
            if let Some(&existing) = d.children.get(name).filter(|&&c| !self.expired(c)) {
                return Ok(existing);
            }
            // The directories above, so a restarted server can rebuild them.
            let mut up = dir;
            while let Some(d) = Self::synth_index(up).and_then(|i| state.synth.get(i)) {
                if d.depth == 0 {
                    break;
                }
                learned.push((StableId::SYNTHETIC, path_id(&d.full), d.full.clone()));
                up = d.parent;
            }
            for t in &trees {
                learned.push((t.pin.kind, t.pin.id, format!("{}/{}@{}", t.pin.host, t.pin.repo, t.pin.digest)));
            }
            let now = Instant::now();
            let child = if area == Area::Layer && matches!(version, Version::Tag(_)) {
                // A directory listing the layers by digest.
                let list_ino = state.synth.len() as Ino + 1;
                let parent_full = state.synth.get(di).map(|d| d.full.as_str()).ok_or(FsError::NotFound)?;
                let full = format!("{parent_full}/{}", String::from_utf8_lossy(name));
                let mut list = Synth {
                    kind: SynthKind::Dir,
                    parent: dir,
                    area,
                    depth: u32::MAX,
                    path: Vec::new(),
                    full: full.clone(),
                    children: BTreeMap::new(),
                };
                for tree in trees {
                    let digest = tree.name.clone();
                    let slot = self.push_slot(&mut state, tree, list_ino)?;
                    list.children.insert(digest, Child::Slot(slot, now));
                }
                let id = path_id(&full);
                state.synth.push(list);
                state.synth_by_id.insert(id, list_ino);
                learned.push((StableId::SYNTHETIC, id, full));
                Child::Synth(list_ino)
            } else {
                let tree = trees.into_iter().next().ok_or(FsError::Io)?;
                Child::Slot(self.push_slot(&mut state, tree, dir)?, now)
            };
            // `di` was checked above, under the same lock, and `synth` only grows.
            state.synth.get_mut(di).ok_or(FsError::NotFound)?.children.insert(name.to_vec(), child);
            child
        };
        for (kind, id, text) in learned {
            self.learn(kind, id, text);
        }
        Ok(child)
    }

    fn expired(&self, child: Child) -> bool {
        match (child, self.options.pin_ttl) {
            (Child::Slot(_, at), Some(ttl)) => at.elapsed() > ttl,
            _ => false,
        }
    }

    fn synth_lookup(&self, dir: Ino, name: &[u8]) -> Result<Attr, FsError> {
        let di = Self::synth_index(dir).ok_or(FsError::NotFound)?;
        let (area, depth, existing, parent) = {
            let state = self.read_state();
            let d = state.synth.get(di).ok_or(FsError::NotFound)?;
            if !matches!(d.kind, SynthKind::Dir) {
                return Err(FsError::NotDir);
            }
            (d.area, d.depth, d.children.get(name).copied(), d.parent)
        };
        match name {
            b"." => return self.getattr(dir),
            b".." => return self.getattr(parent),
            _ => {}
        }
        if let Some(child) = existing.filter(|&c| !self.expired(c)) {
            return self.child_attr(child);
        }
        if area == Area::Root || depth == u32::MAX || !valid_component(name) {
            return Err(FsError::NotFound);
        }
        // Below image/ and layer/: the host first, then repo path components until one
        // carries a tag or digest.
        let ends_reference = depth >= 1 && name.iter().any(|&b| b == b':' || b == b'@');
        if ends_reference {
            let child = self.attach(dir, name)?;
            return self.child_attr(child);
        }
        let mut state = self.write_state();
        let ino = state.synth.len() as Ino + 1;
        let d = state.synth.get(di).ok_or(FsError::NotFound)?;
        if let Some(&child) = d.children.get(name) {
            drop(state);
            return self.child_attr(child);
        }
        if state.synth.len() >= self.options.max_synthetic {
            drop(state);
            tracing::warn!("{} names looked up in the namespace: refusing new ones", self.options.max_synthetic);
            return Err(FsError::NotFound);
        }
        let mut path = d.path.clone();
        let component = String::from_utf8_lossy(name).into_owned();
        let full = format!("{}/{component}", d.full);
        path.push(component);
        state.synth_by_id.insert(path_id(&full), ino);
        state.synth.push(Synth {
            kind: SynthKind::Dir,
            parent: dir,
            area,
            depth: depth + 1,
            path,
            full,
            children: BTreeMap::new(),
        });
        state.synth.get_mut(di).ok_or(FsError::NotFound)?.children.insert(name.to_vec(), Child::Synth(ino));
        drop(state);
        self.getattr(ino)
    }

    /// Looks up `path` (components separated by `/`) from the root.
    fn walk(&self, path: &str) -> Result<Ino, FsError> {
        let mut ino = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            ino = self.lookup(ino, c.as_bytes())?.ino;
        }
        Ok(ino)
    }
}

impl<Res: Resolver> ReadOnlyFs for NamespaceFs<Res> {
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        match Self::synth_index(ino) {
            Some(i) => {
                let state = self.read_state();
                let s = state.synth.get(i).ok_or(FsError::NotFound)?;
                Ok(synth_attr(ino, &s.kind, self.started))
            }
            None if ino & LOCAL_MASK == ROOT_INO => self.slot(Self::slot_of(ino)?).map(|s| s.root),
            None => Self::slot_attr(Self::slot_of(ino)?, self.in_slot(ino, |fs, l| fs.getattr(l))),
        }
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        if Self::synth_index(parent).is_some() {
            return self.synth_lookup(parent, name);
        }
        let slot = Self::slot_of(parent)?;
        if name == b".." && parent & LOCAL_MASK == ROOT_INO {
            let up = self.slot(slot)?.parent;
            return self.getattr(up);
        }
        Self::slot_attr(slot, self.in_slot(parent, |fs, l| fs.lookup(l, name)))
    }

    fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
        match Self::synth_index(ino) {
            Some(i) => self.read_state().synth.get(i).map(|s| s.parent).ok_or(FsError::NotFound),
            None if ino & LOCAL_MASK == ROOT_INO => self.slot(Self::slot_of(ino)?).map(|s| s.parent),
            None => {
                let slot = Self::slot_of(ino)?;
                self.in_slot(ino, |fs, l| fs.parent(l)).map(|p| Self::slot_ino(slot, p))
            }
        }
    }

    fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
        if let Some(i) = Self::synth_index(ino) {
            // Attributes of children are gathered first: no lock is held while calling `add`.
            let children = {
                let state = self.read_state();
                let d = state.synth.get(i).ok_or(FsError::NotFound)?;
                if !matches!(d.kind, SynthKind::Dir) {
                    return Err(FsError::NotDir);
                }
                d.children.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
            };
            let mut listed = Vec::with_capacity(children.len());
            for (name, child) in children {
                listed.push((name, self.child_attr(child)?));
            }
            slots::list_made_up([self.lookup(ino, b".")?, self.lookup(ino, b"..")?], &listed, offset, add);
            return Ok(());
        }
        let slot = Self::slot_of(ino)?;
        let root_dots = match slots::is_slot_root(ino) && offset <= 1 {
            true => Some([self.lookup(ino, b".")?, self.lookup(ino, b"..")?]),
            false => None,
        };
        self.in_slot(ino, |fs, _| slots::list_in_slot(fs, slot, ino, root_dots, offset, add))
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        if Self::synth_index(ino).is_some() {
            return Err(FsError::Invalid);
        }
        self.in_slot(ino, |fs, l| fs.readlink(l))
    }

    fn open(&self, ino: Ino) -> Result<(), FsError> {
        match Self::synth_index(ino) {
            Some(_) => match self.getattr(ino)?.kind {
                FileKind::Dir => Err(FsError::IsDir),
                _ => Ok(()),
            },
            None => {
                let slot = self.slot(Self::slot_of(ino)?)?;
                self.tree(&slot)?.open(ino & LOCAL_MASK)?;
                slot.open.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn close(&self, ino: Ino) {
        if Self::synth_index(ino).is_none()
            && let Ok(slot) = Self::slot_of(ino).and_then(|s| self.slot(s))
        {
            slot.last_used.store(self.now_ms(), Ordering::Relaxed);
            let _ = slot.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    fn counts_opens(&self) -> bool {
        true
    }

    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        match Self::synth_index(ino) {
            Some(_) => self.synthetic_read(ino, offset, size).map(<[u8]>::to_vec),
            None => self.in_slot(ino, |fs, l| fs.read(l, offset, size)),
        }
    }

    fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
        match Self::synth_index(ino) {
            Some(_) => self.synthetic_read(ino, offset, size).map(sink),
            None => self.in_slot(ino, |fs, l| fs.read_with(l, offset, size, sink)),
        }
    }

    /// A layer's file answers from its cache; a synthetic file is always in memory. Only a
    /// tree in memory is asked: loading one may resolve an image.
    fn read_if_cached(&self, ino: Ino, offset: u64, size: u32) -> Option<Result<Vec<u8>, FsError>> {
        match Self::synth_index(ino) {
            Some(_) => Some(self.synthetic_read(ino, offset, size).map(<[u8]>::to_vec)),
            None => self.loaded_tree(ino).and_then(|(fs, local)| fs.read_if_cached(local, offset, size)),
        }
    }

    fn take_whole_chunk(&self, ino: Ino, offset: u64) -> Option<WholeChunk> {
        if Self::synth_index(ino).is_some() {
            return None;
        }
        self.loaded_tree(ino).and_then(|(fs, local)| fs.take_whole_chunk(local, offset))
    }

    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        match Self::synth_index(ino) {
            Some(_) => Err(FsError::NoXattr),
            None => self.in_slot(ino, |fs, l| fs.getxattr(l, name)),
        }
    }

    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        match Self::synth_index(ino) {
            Some(_) => Ok(Vec::new()),
            None => self.in_slot(ino, |fs, l| fs.listxattr(l)),
        }
    }

    /// Totals of the synthetic nodes and of the trees in memory now.
    fn statfs(&self) -> StatFs {
        let (synth, slots) = {
            let state = self.read_state();
            (state.synth.len() as u64, state.slots.clone())
        };
        let mut total = StatFs { blocks: 0, files: synth, block_size: crate::BLOCK_SIZE, name_max: 255 };
        for s in slots {
            if let Some(fs) = lock(&s.tree).clone() {
                let st = fs.statfs();
                total.blocks += st.blocks;
                total.files += st.files;
            }
        }
        total
    }

    fn stable_id(&self, ino: Ino) -> Option<StableId> {
        match Self::synth_index(ino) {
            Some(i) => {
                let full = self.read_state().synth.get(i).map(|s| s.full.clone())?;
                Some(StableId { kind: StableId::SYNTHETIC, tree: path_id(&full), ino: 0 })
            }
            None => {
                let slot = self.slot(Self::slot_of(ino).ok()?).ok()?;
                Some(StableId { kind: slot.pin.kind, tree: slot.pin.id, ino: ino & LOCAL_MASK })
            }
        }
    }

    fn find_stable(&self, id: &StableId) -> Result<Ino, FsError> {
        let in_memory = {
            let state = self.read_state();
            match id.kind {
                StableId::SYNTHETIC => state.synth_by_id.get(&id.tree).copied(),
                StableId::IMAGE | StableId::LAYER => {
                    state.slot_by_id.get(&(id.kind, id.tree)).map(|&s| Self::slot_ino(s, id.ino))
                }
                _ => return Err(FsError::NotFound),
            }
        };
        let ino = match in_memory {
            Some(ino) => ino,
            None => {
                // Learned earlier (by this process or one before it): look the path up again.
                let text = lock(&self.known).refs.get(&(id.kind, id.tree)).cloned().ok_or(FsError::NotFound)?;
                let at = match id.kind {
                    StableId::SYNTHETIC => self.walk(&text)?,
                    StableId::IMAGE => self.walk(&format!("image/{text}"))?,
                    _ => self.walk(&format!("layer/{text}"))?,
                };
                if id.kind == StableId::SYNTHETIC { at } else { Self::slot_ino(Self::slot_of(at)?, id.ino) }
            }
        };
        // The id must name this node, and the node must exist.
        match self.stable_id(ino) {
            Some(found) if found == *id => self.getattr(ino).map(|_| ino),
            _ => Err(FsError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_failures_expire_and_stay_bounded() {
        let failures = RecentFailures::new(Duration::from_millis(200));
        failures.insert("a".into(), ResolveError::NotFound("a".into()));
        assert!(matches!(failures.get("a"), Some(ResolveError::NotFound(_))));
        assert!(failures.get("b").is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(failures.get("a").is_none(), "expired");
        assert!(lock(&failures.failed).is_empty(), "an expired failure is dropped when asked for");
        // Past the bound, the oldest goes.
        failures.insert("k0".into(), ResolveError::Failed(String::new()));
        std::thread::sleep(Duration::from_millis(5));
        for i in 1..=RecentFailures::KEPT {
            failures.insert(format!("k{i}"), ResolveError::Failed(String::new()));
        }
        assert_eq!(lock(&failures.failed).len(), RecentFailures::KEPT);
        assert!(failures.get("k0").is_none() && failures.get(&format!("k{}", RecentFailures::KEPT)).is_some());
        // A time to live of zero remembers nothing.
        let none = RecentFailures::new(Duration::ZERO);
        none.insert("a".into(), ResolveError::Denied("a".into()));
        assert!(none.get("a").is_none());
    }
}
