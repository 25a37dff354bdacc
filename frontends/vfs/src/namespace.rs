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
//! image or layer number `s` uses `(s + 1) << 32 | its own inode number`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crfs_core::{Layer, ReadAt};

use crate::{Attr, DirEntry, FileKind, FsError, Ino, LayerFs, MergedFs, Options, ROOT_INO, ReadOnlyFs, StatFs};

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
    fn fs_error(&self) -> FsError {
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
    Tag(String),
    Digest(String),
}

/// An image's layers, bottom first, each with its blob digest.
pub struct ResolvedImage<B> {
    /// The manifest digest the image is pinned to.
    pub digest: String,
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
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions { fs: Options::default(), pin_ttl: None, negative_ttl: Duration::from_secs(10) }
    }
}

const README: &[u8] = b"crfs: container images without pulling them.\n\n\
image/<host>/<repo>:<tag>/          the merged root filesystem of an image\n\
image/<host>/<repo>@sha256:<hex>/   the same, by manifest digest\n\
layer/<host>/<repo>:<tag>/          the image's layers, one directory per layer digest\n\
layer/<host>/<repo>@sha256:<hex>/   one layer, by blob digest\n\n\
Paths appear when looked up: `ls /crfs/image/docker.io/library/alpine:3.20/`.\n";

const SLOT_SHIFT: u32 = 32;
const LOCAL_MASK: u64 = (1 << SLOT_SHIFT) - 1;

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
    children: BTreeMap<Vec<u8>, Child>,
}

#[derive(Debug, Clone, Copy)]
enum Child {
    Synth(Ino),
    /// A resolved tree, and when it was resolved.
    Slot(usize, Instant),
}

struct Slot {
    fs: Box<dyn ReadOnlyFs>,
    /// The synthetic directory holding it, for "..".
    parent: Ino,
}

struct State {
    synth: Vec<Synth>,
    slots: Vec<Slot>,
}

/// The namespace filesystem over a [`Resolver`].
pub struct NamespaceFs<Res: Resolver> {
    resolver: Res,
    options: NamespaceOptions,
    state: RwLock<State>,
    /// Single flight for resolutions, keyed by the full reference.
    images: moka::sync::Cache<String, Arc<ResolvedImage<Res::Blob>>>,
    failures: moka::sync::Cache<String, ResolveError>,
    started: SystemTime,
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

impl<Res: Resolver> NamespaceFs<Res> {
    /// An empty namespace resolving through `resolver`.
    pub fn new(resolver: Res, options: NamespaceOptions) -> Self {
        let dir = |area, parent| Synth {
            kind: SynthKind::Dir,
            parent,
            area,
            depth: 0,
            path: Vec::new(),
            children: BTreeMap::new(),
        };
        let mut root = dir(Area::Root, ROOT_INO);
        root.children.insert(b"README".to_vec(), Child::Synth(2));
        root.children.insert(b"image".to_vec(), Child::Synth(3));
        root.children.insert(b"layer".to_vec(), Child::Synth(4));
        let mut readme = dir(Area::Root, ROOT_INO);
        readme.kind = SynthKind::Readme;
        let state = State {
            synth: vec![root, readme, dir(Area::Image, ROOT_INO), dir(Area::Layer, ROOT_INO)],
            slots: Vec::new(),
        };
        NamespaceFs {
            resolver,
            options,
            state: RwLock::new(state),
            images: moka::sync::Cache::builder().max_capacity(256).build(),
            failures: moka::sync::Cache::builder().max_capacity(4096).time_to_live(options.negative_ttl).build(),
            started: SystemTime::now(),
        }
    }

    /// The resolver.
    pub fn resolver(&self) -> &Res {
        &self.resolver
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the tree and local inode number behind a slot inode.
    fn in_slot<T>(&self, ino: Ino, f: impl FnOnce(&dyn ReadOnlyFs, Ino) -> Result<T, FsError>) -> Result<T, FsError> {
        let slot = usize::try_from((ino >> SLOT_SHIFT) - 1).map_err(|_| FsError::NotFound)?;
        let state = self.read_state();
        let s = state.slots.get(slot).ok_or(FsError::NotFound)?;
        f(s.fs.as_ref(), ino & LOCAL_MASK)
    }

    fn slot_ino(slot: usize, local: Ino) -> Ino {
        ((slot as u64 + 1) << SLOT_SHIFT) | local
    }

    fn slot_attr(&self, slot: usize, attr: Result<Attr, FsError>) -> Result<Attr, FsError> {
        attr.map(|mut a| {
            a.ino = Self::slot_ino(slot, a.ino);
            a
        })
    }

    fn synth_index(ino: Ino) -> Option<usize> {
        (ino < (1 << SLOT_SHIFT)).then(|| ino.checked_sub(1)).flatten().map(|i| i as usize)
    }

    fn child_attr(&self, child: Child) -> Result<Attr, FsError> {
        match child {
            Child::Synth(ino) => self.getattr(ino),
            Child::Slot(slot, _) => {
                self.slot_attr(slot, self.in_slot(Self::slot_ino(slot, ROOT_INO), |fs, l| fs.getattr(l)))
            }
        }
    }

    /// Resolves `name` (which ends a reference) in synthetic directory `dir` and attaches the
    /// result as a new slot, unless another lookup attached one meanwhile.
    fn attach(&self, dir: Ino, name: &[u8]) -> Result<Child, FsError> {
        let (area, mut path) = {
            let state = self.read_state();
            let d = &state.synth[Self::synth_index(dir).ok_or(FsError::NotFound)?];
            (d.area, d.path.clone())
        };
        let name_str = std::str::from_utf8(name).map_err(|_| FsError::NotFound)?;
        let (repo_last, version) = match name_str.split_once('@') {
            Some((repo, digest)) if digest.starts_with("sha256:") && digest.len() == 71 => {
                (repo, Version::Digest(digest.to_string()))
            }
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
        let repo = path.join("/");
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
        let trees: Vec<(Vec<u8>, Box<dyn ReadOnlyFs>)> = match (area, &version) {
            (Area::Layer, Version::Digest(digest)) => {
                let layer = self.resolver.layer(&host, &repo, digest).map_err(fail)?;
                vec![(Vec::new(), Box::new(LayerFs::new(layer, fs_options)))]
            }
            _ => {
                let image = self
                    .images
                    .try_get_with(key.clone(), || self.resolver.image(&host, &repo, &version).map(Arc::new))
                    .map_err(|e| fail((*e).clone()))?;
                tracing::info!(reference = %key, digest = %image.digest, layers = image.layers.len(), "resolved");
                if area == Area::Image {
                    let layers = image.layers.iter().map(|(_, l)| l.clone()).collect();
                    let merged = MergedFs::new(layers, fs_options)?;
                    vec![(Vec::new(), Box::new(merged))]
                } else {
                    image
                        .layers
                        .iter()
                        .map(|(d, l)| {
                            (
                                d.as_bytes().to_vec(),
                                Box::new(LayerFs::new(l.clone(), fs_options)) as Box<dyn ReadOnlyFs>,
                            )
                        })
                        .collect()
                }
            }
        };
        let mut state = self.write_state();
        let di = Self::synth_index(dir).ok_or(FsError::NotFound)?;
        if let Some(&existing) = state.synth[di].children.get(name).filter(|&&c| !self.expired(c)) {
            return Ok(existing);
        }
        let now = Instant::now();
        let child = if area == Area::Layer && matches!(version, Version::Tag(_)) {
            // A directory listing the layers by digest.
            let list_ino = state.synth.len() as Ino + 1;
            let mut list = Synth {
                kind: SynthKind::Dir,
                parent: dir,
                area,
                depth: u32::MAX,
                path: Vec::new(),
                children: BTreeMap::new(),
            };
            for (digest, fs) in trees {
                let slot = state.slots.len();
                state.slots.push(Slot { fs, parent: list_ino });
                list.children.insert(digest, Child::Slot(slot, now));
            }
            state.synth.push(list);
            Child::Synth(list_ino)
        } else {
            let mut trees = trees;
            let (_, fs) = trees.pop().ok_or(FsError::Io)?;
            let slot = state.slots.len();
            state.slots.push(Slot { fs, parent: dir });
            Child::Slot(slot, now)
        };
        state.synth[di].children.insert(name.to_vec(), child);
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
        let d = &state.synth[di];
        if let Some(&child) = d.children.get(name) {
            drop(state);
            return self.child_attr(child);
        }
        let mut path = d.path.clone();
        path.push(String::from_utf8_lossy(name).into_owned());
        state.synth.push(Synth {
            kind: SynthKind::Dir,
            parent: dir,
            area,
            depth: depth + 1,
            path,
            children: BTreeMap::new(),
        });
        state.synth[di].children.insert(name.to_vec(), Child::Synth(ino));
        drop(state);
        self.getattr(ino)
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
            None => {
                let slot = ((ino >> SLOT_SHIFT) - 1) as usize;
                self.slot_attr(slot, self.in_slot(ino, |fs, l| fs.getattr(l)))
            }
        }
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        if Self::synth_index(parent).is_some() {
            return self.synth_lookup(parent, name);
        }
        let slot = ((parent >> SLOT_SHIFT) - 1) as usize;
        if name == b".." && parent & LOCAL_MASK == ROOT_INO {
            let up = self.read_state().slots.get(slot).map(|s| s.parent).ok_or(FsError::NotFound)?;
            return self.getattr(up);
        }
        self.slot_attr(slot, self.in_slot(parent, |fs, l| fs.lookup(l, name)))
    }

    fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
        match Self::synth_index(ino) {
            Some(i) => self.read_state().synth.get(i).map(|s| s.parent).ok_or(FsError::NotFound),
            None if ino & LOCAL_MASK == ROOT_INO => {
                let slot = ((ino >> SLOT_SHIFT) - 1) as usize;
                self.read_state().slots.get(slot).map(|s| s.parent).ok_or(FsError::NotFound)
            }
            None => {
                let slot = ((ino >> SLOT_SHIFT) - 1) as usize;
                self.in_slot(ino, |fs, l| fs.parent(l)).map(|p| Self::slot_ino(slot, p))
            }
        }
    }

    fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
        if let Some(i) = Self::synth_index(ino) {
            // Attributes of children are gathered first: no lock is held while calling `add`.
            let (parent, children) = {
                let state = self.read_state();
                let d = state.synth.get(i).ok_or(FsError::NotFound)?;
                if !matches!(d.kind, SynthKind::Dir) {
                    return Err(FsError::NotDir);
                }
                (d.parent, d.children.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>())
            };
            if offset == 0 && !add(DirEntry { ino, next_offset: 1, kind: FileKind::Dir, name: b"." }) {
                return Ok(());
            }
            if offset <= 1 && !add(DirEntry { ino: parent, next_offset: 2, kind: FileKind::Dir, name: b".." }) {
                return Ok(());
            }
            let start = usize::try_from(offset.saturating_sub(2)).unwrap_or(usize::MAX);
            for (i, (name, child)) in children.iter().enumerate().skip(start) {
                let attr = self.child_attr(*child)?;
                if !add(DirEntry { ino: attr.ino, next_offset: i as u64 + 3, kind: attr.kind, name }) {
                    break;
                }
            }
            return Ok(());
        }
        let slot = ((ino >> SLOT_SHIFT) - 1) as usize;
        let up = self.read_state().slots.get(slot).map(|s| s.parent).ok_or(FsError::NotFound)?;
        let is_root = ino & LOCAL_MASK == ROOT_INO;
        self.in_slot(ino, |fs, local| {
            fs.readdir(local, offset, &mut |mut e| {
                e.ino = if is_root && e.name == b".." { up } else { Self::slot_ino(slot, e.ino) };
                add(e)
            })
        })
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
            None => self.in_slot(ino, |fs, l| fs.open(l)),
        }
    }

    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        match Self::synth_index(ino) {
            Some(_) => match self.getattr(ino)?.kind {
                FileKind::Dir => Err(FsError::IsDir),
                _ => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(README.len());
                    let end = start.saturating_add(size as usize).min(README.len());
                    Ok(README[start..end].to_vec())
                }
            },
            None => self.in_slot(ino, |fs, l| fs.read(l, offset, size)),
        }
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

    fn statfs(&self) -> StatFs {
        let state = self.read_state();
        let mut total =
            StatFs { blocks: 0, files: state.synth.len() as u64, block_size: crate::BLOCK_SIZE, name_max: 255 };
        for s in &state.slots {
            let st = s.fs.statfs();
            total.blocks += st.blocks;
            total.files += st.files;
        }
        total
    }
}
