//! An Additional Layer Store: the layout containers/storage (podman, CRI-O, buildah, with the
//! overlay driver and `additionallayerstores = ["DIR:ref"]`) looks layers up in when it pulls.
//!
//! ```text
//! <base64 of the image reference>/        one directory per reference, on lookup
//!     <layer digest>/                     one directory per layer blob digest, on lookup
//!         diff/                           the layer's tree, with overlayfs whiteouts
//!         info                            the layer's JSON, as containers/storage reads it
//!         blob                            the compressed layer blob, byte for byte
//!         use                             never exists; creating it counts a use
//! ```
//!
//! The protocol, as containers/storage 1.43 speaks it: on every layer of a pull it stats
//! `diff`, `info` and `blob`; any failure means "not here" and it pulls the layer itself. So a
//! layer the [`LayerSource`] declines (not lazy) answers ENOENT. On success it reads `info`,
//! creates `use` (a store that counts uses answers ENOENT, which is what this one does), points
//! the layer's `diff` at ours with a symlink, and later removes the layer directory with
//! `rmdir` to say it stopped using it (answered ENOENT as well). Uses are counted per layer;
//! a layer nobody uses has its tree dropped from memory, and a later lookup opens it again
//! (same blob, same inode numbers). The store's mount must not be read-only in the kernel's
//! eyes, or `create` and `rmdir` would never reach it; every other change gets EROFS.
//!
//! Inode numbers: the root, reference directories, layer directories and their `info` and
//! `blob` files are below 2^32; the `diff` tree of layer slot `s` uses
//! `(s + 1) << 32 | its own inode number`, as the namespace does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use crfs_core::{Digest, Layer, ReadAt};

use crate::lock;
use crate::slots::{self, LOCAL_MASK};
use crate::{
    Attr, DirEntry, FileKind, FsError, Ino, LayerFs, Options, ROOT_INO, ReadOnlyFs, ResolveError, StatFs, WholeChunk,
};

/// One layer the store serves.
pub struct StoreLayer<B> {
    /// The opened (lazily read) layer.
    pub layer: Arc<Layer<B>>,
    /// The contents of `info`: the layer's JSON as containers/storage's `Layer` reads it.
    pub info: Vec<u8>,
}

/// Where the store's layers come from: the registry code implements this.
pub trait LayerSource: Send + Sync + 'static {
    /// Where the layers' bytes come from.
    type Blob: ReadAt + Send + Sync + 'static;
    /// Layer `digest` (`sha256:…`) of the image `reference` (as containers/image writes it,
    /// `host/repo:tag` or `host/repo@sha256:…`). `NotFound` declines it: the runtime then
    /// pulls the layer itself.
    fn layer(&self, reference: &str, digest: &str) -> Result<StoreLayer<Self::Blob>, ResolveError>;
}

/// How the store behaves.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// How each layer's `diff` tree is served (`overlay_whiteouts` is always on).
    pub fs: Options,
    /// How long a declined or failed layer is remembered before it is asked for again.
    pub negative_ttl: Duration,
    /// At most this many reference and layer directories: a client looking up endless
    /// made-up names must not grow the store without bound. Beyond it, new names answer
    /// ENOENT; what exists keeps working.
    pub max_nodes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { fs: Options::default(), negative_ttl: Duration::from_secs(10), max_nodes: 100_000 }
    }
}

const DIFF: &[u8] = b"diff";
const INFO: &[u8] = b"info";
const BLOB: &[u8] = b"blob";
const USE: &[u8] = b"use";
/// The longest image reference accepted (decoded).
const MAX_REFERENCE: usize = 1024;

/// A node below 2^32.
enum Node {
    /// The root or a reference directory: its children by name.
    Dir { parent: Ino, children: BTreeMap<Vec<u8>, Ino> },
    /// A layer directory; its `info` and `blob` files are the next two inode numbers.
    LayerDir { parent: Ino, slot: usize },
    /// The `info` file of the layer directory at `ino - 1`.
    Info { slot: usize },
    /// The `blob` file of the layer directory at `ino - 2`.
    Blob { slot: usize },
}

/// What a layer slot holds now.
enum Loaded<B: ReadAt + Send + Sync + 'static> {
    /// Not opened yet, or released.
    No,
    /// Opened.
    Yes(Arc<Open<B>>),
    /// Declined or failed, until the instant given.
    Refused(ResolveError, Instant),
}

/// An opened layer.
struct Open<B: ReadAt + Send + Sync + 'static> {
    fs: LayerFs<B>,
    info: Vec<u8>,
}

/// One layer directory's layer.
struct Slot<B: ReadAt + Send + Sync + 'static> {
    reference: String,
    digest: String,
    /// The layer directory's inode number.
    dir: Ino,
    loaded: Mutex<Loaded<B>>,
    /// Uses containers/storage announced (creating `use`) minus releases (`rmdir`).
    uses: AtomicU64,
    /// Files of this layer open now.
    open: AtomicU64,
}

/// What a layer's state looks like from outside, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerState {
    /// The image reference it was looked up under.
    pub reference: String,
    /// The layer blob's digest.
    pub digest: String,
    /// "lazy", "not opened" (not yet, or released), "declined: why" or "failed: why".
    pub state: String,
    /// Uses containers/storage announced and has not released.
    pub uses: u64,
    /// What its blob transferred so far, while it is open and remote.
    pub transfers: Option<crfs_core::TransferCounts>,
}

struct State<B: ReadAt + Send + Sync + 'static> {
    nodes: Vec<Node>,
    slots: Vec<Arc<Slot<B>>>,
}

/// The Additional Layer Store filesystem over a [`LayerSource`].
pub struct LayerStoreFs<S: LayerSource> {
    source: S,
    options: StoreOptions,
    state: RwLock<State<S::Blob>>,
    started: SystemTime,
}

fn dir_attr(ino: Ino, mtime: SystemTime) -> Attr {
    Attr {
        ino,
        kind: FileKind::Dir,
        perm: 0o555,
        nlink: 2,
        uid: 0,
        gid: 0,
        size: 0,
        blocks: 0,
        rdev_major: 0,
        rdev_minor: 0,
        mtime,
    }
}

fn file_attr(ino: Ino, size: u64, mtime: SystemTime) -> Attr {
    Attr { kind: FileKind::Reg, perm: 0o444, nlink: 1, size, blocks: size.div_ceil(512), ..dir_attr(ino, mtime) }
}

/// The image reference a reference directory's name encodes, if it is one.
fn decode_reference(name: &[u8]) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(name).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let plausible = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.len() <= MAX_REFERENCE
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"./:@_-".contains(&b));
    plausible.then_some(s)
}

impl<S: LayerSource> LayerStoreFs<S> {
    /// An empty store resolving layers through `source`.
    pub fn new(source: S, options: StoreOptions) -> Self {
        let root = Node::Dir { parent: ROOT_INO, children: BTreeMap::new() };
        let options = StoreOptions { fs: Options { overlay_whiteouts: true, ..options.fs }, ..options };
        LayerStoreFs {
            source,
            options,
            state: RwLock::new(State { nodes: vec![root], slots: Vec::new() }),
            started: SystemTime::now(),
        }
    }

    /// The layer source.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State<S::Blob>> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State<S::Blob>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The index of a node below 2^32.
    fn node_index(ino: Ino) -> Option<usize> {
        slots::made_up_index(ino)
    }

    fn slot_of(ino: Ino) -> Result<usize, FsError> {
        slots::slot_of(ino)
    }

    fn slot_ino(slot: usize, local: Ino) -> Ino {
        slots::slot_ino(slot, local)
    }

    fn slot(&self, slot: usize) -> Result<Arc<Slot<S::Blob>>, FsError> {
        self.read_state().slots.get(slot).cloned().ok_or(FsError::NotFound)
    }

    /// The opened layer of `ino`'s slot and `ino`'s number in it, if that layer is open now;
    /// never opens, never waits (a slot being opened is locked: `None`).
    fn open_layer(&self, ino: Ino) -> Option<(Arc<Open<S::Blob>>, Ino)> {
        let slot = self.slot(Self::slot_of(ino).ok()?).ok()?;
        let loaded = slot.loaded.try_lock().ok()?;
        match &*loaded {
            Loaded::Yes(open) => Some((open.clone(), ino & LOCAL_MASK)),
            _ => None,
        }
    }

    /// The opened layer of a slot, opening it if needed (one opening at a time per slot; a
    /// refusal is remembered for `negative_ttl`).
    fn opened(&self, slot: &Slot<S::Blob>) -> Result<Arc<Open<S::Blob>>, FsError> {
        let mut loaded = lock(&slot.loaded);
        match &*loaded {
            Loaded::Yes(open) => return Ok(open.clone()),
            Loaded::Refused(e, until) if Instant::now() < *until => return Err(e.fs_error()),
            _ => {}
        }
        match self.source.layer(&slot.reference, &slot.digest) {
            Ok(l) => {
                let open = Arc::new(Open { fs: LayerFs::new(l.layer, self.options.fs), info: l.info });
                *loaded = Loaded::Yes(open.clone());
                Ok(open)
            }
            Err(e) => {
                match &e {
                    ResolveError::NotFound(why) => {
                        tracing::info!(reference = %slot.reference, layer = %slot.digest, "declined: {why}")
                    }
                    e => tracing::warn!(reference = %slot.reference, layer = %slot.digest, "cannot serve: {e:?}"),
                }
                let errno = e.fs_error();
                *loaded = Loaded::Refused(e, Instant::now() + self.options.negative_ttl);
                Err(errno)
            }
        }
    }

    /// Runs `f` on the `diff` tree and local inode number behind a slot inode.
    fn in_slot<T>(&self, ino: Ino, f: impl FnOnce(&dyn ReadOnlyFs, Ino) -> Result<T, FsError>) -> Result<T, FsError> {
        let slot = self.slot(Self::slot_of(ino)?)?;
        let open = self.opened(&slot)?;
        f(&open.fs, ino & LOCAL_MASK)
    }

    fn node_attr(&self, ino: Ino) -> Result<Attr, FsError> {
        let i = Self::node_index(ino).ok_or(FsError::NotFound)?;
        let slot = match self.read_state().nodes.get(i).ok_or(FsError::NotFound)? {
            Node::Dir { .. } | Node::LayerDir { .. } => return Ok(dir_attr(ino, self.started)),
            Node::Info { slot } => (*slot, true),
            Node::Blob { slot } => (*slot, false),
        };
        let open = self.opened(&*self.slot(slot.0)?)?;
        let size = if slot.1 { open.info.len() as u64 } else { open.fs.layer().blob().size() };
        Ok(file_attr(ino, size, self.started))
    }

    /// Adds a child node to directory `dir` (or finds the one there): a reference directory
    /// under the root, a layer directory (with its two files and slot) under a reference.
    fn add_child(&self, dir: Ino, name: &[u8]) -> Result<Ino, FsError> {
        let di = Self::node_index(dir).ok_or(FsError::NotFound)?;
        let mut state = self.write_state();
        let next = state.nodes.len() as Ino + 1;
        let Some(Node::Dir { children, .. }) = state.nodes.get(di) else { return Err(FsError::NotDir) };
        if let Some(&ino) = children.get(name) {
            return Ok(ino);
        }
        if state.nodes.len() + 3 > self.options.max_nodes {
            drop(state);
            tracing::warn!("{} names looked up in the layer store: refusing new ones", self.options.max_nodes);
            return Err(FsError::NotFound);
        }
        let new = if dir == ROOT_INO {
            decode_reference(name).ok_or(FsError::NotFound)?;
            vec![Node::Dir { parent: dir, children: BTreeMap::new() }]
        } else {
            let digest = std::str::from_utf8(name).ok().filter(|d| Digest::parse(d).is_some());
            let digest = digest.ok_or(FsError::NotFound)?.to_owned();
            let reference = self.reference_of(&state, dir)?;
            let slot = state.slots.len();
            state.slots.push(Arc::new(Slot {
                reference,
                digest,
                dir: next,
                loaded: Mutex::new(Loaded::No),
                uses: AtomicU64::new(0),
                open: AtomicU64::new(0),
            }));
            vec![Node::LayerDir { parent: dir, slot }, Node::Info { slot }, Node::Blob { slot }]
        };
        state.nodes.extend(new);
        if let Some(Node::Dir { children, .. }) = state.nodes.get_mut(di) {
            children.insert(name.to_vec(), next);
        }
        Ok(next)
    }

    /// The image reference of reference directory `dir`: the name its parent (the root)
    /// knows it by, decoded.
    fn reference_of(&self, state: &State<S::Blob>, dir: Ino) -> Result<String, FsError> {
        let Some(Node::Dir { children, .. }) = state.nodes.first() else { return Err(FsError::NotFound) };
        let name = children.iter().find(|&(_, &ino)| ino == dir).map(|(n, _)| n).ok_or(FsError::NotFound)?;
        decode_reference(name).ok_or(FsError::NotFound)
    }

    /// The layer directory's slot, when `ino` is one.
    fn layer_dir_slot(&self, ino: Ino) -> Option<usize> {
        let i = Self::node_index(ino)?;
        match self.read_state().nodes.get(i)? {
            Node::LayerDir { slot, .. } => Some(*slot),
            _ => None,
        }
    }

    /// Every layer looked up so far, with its state.
    pub fn layers(&self) -> Vec<LayerState> {
        let slots = self.read_state().slots.clone();
        slots
            .iter()
            .map(|s| {
                let (state, transfers) = match &*lock(&s.loaded) {
                    Loaded::No => ("not opened".to_owned(), None),
                    Loaded::Yes(open) => ("lazy".to_owned(), open.fs.layer().blob().transfer_counts()),
                    Loaded::Refused(ResolveError::NotFound(why), _) => (format!("declined: {why}"), None),
                    Loaded::Refused(e, _) => (format!("failed: {e:?}"), None),
                };
                LayerState {
                    reference: s.reference.clone(),
                    digest: s.digest.clone(),
                    state,
                    uses: s.uses.load(Ordering::Relaxed),
                    transfers,
                }
            })
            .collect()
    }

    /// Every layer looked up so far, one line each: reference, digest, state, uses, and what
    /// its blob transferred.
    pub fn status(&self) -> String {
        let mut out = String::new();
        for l in self.layers() {
            out.push_str(&format!("{} {}: {}; in use by {} image layers", l.reference, l.digest, l.state, l.uses));
            if let Some(t) = l.transfers {
                out.push_str(&format!(
                    "; {} bytes fetched, {} reads from the disk cache",
                    t.fetched_bytes, t.cache_hits
                ));
            }
            out.push('\n');
        }
        out
    }

    /// A release of the layer in directory `name` of reference directory `parent`.
    fn release(&self, parent: Ino, name: &[u8]) -> FsError {
        let ino = {
            let state = self.read_state();
            let Some(i) = Self::node_index(parent) else { return FsError::ReadOnly };
            match state.nodes.get(i) {
                Some(Node::Dir { children, .. }) if parent != ROOT_INO => children.get(name).copied(),
                _ => return FsError::ReadOnly,
            }
        };
        let Some(slot) = ino.and_then(|ino| self.layer_dir_slot(ino)).and_then(|s| self.slot(s).ok()) else {
            return FsError::NotFound;
        };
        let before = slot.uses.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).unwrap_or(0);
        let left = before.saturating_sub(1);
        tracing::info!(reference = %slot.reference, layer = %slot.digest, uses = left, "layer released by the runtime");
        if left == 0
            && slot.open.load(Ordering::Relaxed) == 0
            && let Ok(mut loaded) = slot.loaded.try_lock()
            && matches!(*loaded, Loaded::Yes(_))
        {
            *loaded = Loaded::No;
            tracing::info!(reference = %slot.reference, layer = %slot.digest, "unused: dropped from memory");
        }
        FsError::NotFound
    }
}

impl<S: LayerSource> ReadOnlyFs for LayerStoreFs<S> {
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        if Self::node_index(ino).is_some() {
            return self.node_attr(ino);
        }
        let slot = Self::slot_of(ino)?;
        self.in_slot(ino, |fs, l| fs.getattr(l)).map(|a| Attr { ino: Self::slot_ino(slot, a.ino), ..a })
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        if let Some(i) = Self::node_index(parent) {
            enum At {
                Dir(Ino, Option<Ino>),
                Layer(Ino, usize),
            }
            let at = match self.read_state().nodes.get(i).ok_or(FsError::NotFound)? {
                Node::Dir { parent: up, children } => At::Dir(*up, children.get(name).copied()),
                Node::LayerDir { parent: up, slot } => At::Layer(*up, *slot),
                Node::Info { .. } | Node::Blob { .. } => return Err(FsError::NotDir),
            };
            return match (at, name) {
                (_, b".") => self.getattr(parent),
                (At::Dir(up, _) | At::Layer(up, _), b"..") => self.getattr(up),
                (At::Dir(_, Some(child)), _) => self.getattr(child),
                (At::Dir(..), _) => {
                    let child = self.add_child(parent, name)?;
                    self.getattr(child)
                }
                (At::Layer(_, slot), DIFF) => {
                    let open = self.opened(&*self.slot(slot)?)?;
                    ReadOnlyFs::getattr(&open.fs, ROOT_INO).map(|a| Attr { ino: Self::slot_ino(slot, a.ino), ..a })
                }
                (At::Layer(..), INFO) => self.node_attr(parent + 1),
                (At::Layer(..), BLOB) => self.node_attr(parent + 2),
                (At::Layer(..), _) => Err(FsError::NotFound),
            };
        }
        let slot = Self::slot_of(parent)?;
        if name == b".." && parent & LOCAL_MASK == ROOT_INO {
            return self.getattr(self.slot(slot)?.dir);
        }
        self.in_slot(parent, |fs, l| fs.lookup(l, name)).map(|a| Attr { ino: Self::slot_ino(slot, a.ino), ..a })
    }

    fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
        if let Some(i) = Self::node_index(ino) {
            return match self.read_state().nodes.get(i).ok_or(FsError::NotFound)? {
                Node::Dir { parent, .. } | Node::LayerDir { parent, .. } => Ok(*parent),
                Node::Info { .. } | Node::Blob { .. } => Err(FsError::NotDir),
            };
        }
        let slot = Self::slot_of(ino)?;
        if ino & LOCAL_MASK == ROOT_INO {
            return Ok(self.slot(slot)?.dir);
        }
        self.in_slot(ino, |fs, l| fs.parent(l)).map(|p| Self::slot_ino(slot, p))
    }

    fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
        if let Some(i) = Self::node_index(ino) {
            // Gathered first: no lock is held while calling `add`.
            let children: Vec<(Vec<u8>, Ino)> = match self.read_state().nodes.get(i).ok_or(FsError::NotFound)? {
                Node::Dir { children, .. } => children.iter().map(|(n, &c)| (n.clone(), c)).collect(),
                Node::LayerDir { slot, .. } if matches!(*lock(&self.slot(*slot)?.loaded), Loaded::Yes(_)) => vec![
                    (BLOB.to_vec(), ino + 2),
                    (DIFF.to_vec(), Self::slot_ino(*slot, ROOT_INO)),
                    (INFO.to_vec(), ino + 1),
                ],
                Node::LayerDir { .. } => Vec::new(),
                Node::Info { .. } | Node::Blob { .. } => return Err(FsError::NotDir),
            };
            let mut listed = Vec::with_capacity(children.len());
            for (name, child) in children {
                listed.push((name, self.getattr(child)?));
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
        if Self::node_index(ino).is_some() {
            return Err(FsError::Invalid);
        }
        self.in_slot(ino, |fs, l| fs.readlink(l))
    }

    fn open(&self, ino: Ino) -> Result<(), FsError> {
        let slot = match Self::node_index(ino) {
            Some(i) => match self.read_state().nodes.get(i).ok_or(FsError::NotFound)? {
                Node::Dir { .. } | Node::LayerDir { .. } => return Err(FsError::IsDir),
                Node::Info { slot } | Node::Blob { slot } => *slot,
            },
            None => {
                let slot = Self::slot_of(ino)?;
                self.in_slot(ino, |fs, l| fs.open(l))?;
                slot
            }
        };
        self.slot(slot)?.open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn close(&self, ino: Ino) {
        let slot = match Self::node_index(ino) {
            Some(i) => match self.read_state().nodes.get(i) {
                Some(Node::Info { slot } | Node::Blob { slot }) => Some(*slot),
                _ => None,
            },
            None => Self::slot_of(ino).ok(),
        };
        if let Some(slot) = slot.and_then(|s| self.slot(s).ok()) {
            let _ = slot.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    fn counts_opens(&self) -> bool {
        true
    }

    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let Some(i) = Self::node_index(ino) else {
            return self.in_slot(ino, |fs, l| fs.read(l, offset, size));
        };
        let (slot, info) = match self.read_state().nodes.get(i).ok_or(FsError::NotFound)? {
            Node::Dir { .. } | Node::LayerDir { .. } => return Err(FsError::IsDir),
            Node::Info { slot } => (*slot, true),
            Node::Blob { slot } => (*slot, false),
        };
        let open = self.opened(&*self.slot(slot)?)?;
        if info {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(open.info.len());
            let end = start.saturating_add(size as usize).min(open.info.len());
            return Ok(open.info.get(start..end).unwrap_or_default().to_vec());
        }
        let blob = open.fs.layer().blob();
        let end = blob.size().min(offset.saturating_add(u64::from(size)));
        let mut out = vec![0; usize::try_from(end.saturating_sub(offset)).map_err(|_| FsError::Io)?];
        let mut done = 0;
        while let Some(rest) = out.get_mut(done..).filter(|r| !r.is_empty()) {
            match blob.read_at(offset + done as u64, rest) {
                Ok(0) => return Err(FsError::Io),
                Ok(n) => done += n,
                Err(e) => {
                    tracing::warn!("reading the blob of a stored layer: {e}");
                    return Err(crate::denied_or_io(&e));
                }
            }
        }
        Ok(out)
    }

    /// Files of a layer's `diff` tree lend their cached chunk; `info` and `blob` copy once.
    fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
        if Self::node_index(ino).is_some() {
            return self.read(ino, offset, size).map(|data| sink(&data));
        }
        self.in_slot(ino, |fs, l| fs.read_with(l, offset, size, sink))
    }

    /// Files of a layer's `diff` tree answer from their cache; `info` and `blob` are never
    /// answered this way (`blob` reads the blob).
    fn read_if_cached(&self, ino: Ino, offset: u64, size: u32) -> Option<Result<Vec<u8>, FsError>> {
        if Self::node_index(ino).is_some() {
            return None;
        }
        self.open_layer(ino).and_then(|(open, local)| open.fs.read_if_cached(local, offset, size))
    }

    /// Files of a layer's `diff` tree hand out their chunks; `info` and `blob` have none.
    fn take_whole_chunk(&self, ino: Ino, offset: u64) -> Option<WholeChunk> {
        if Self::node_index(ino).is_some() {
            return None;
        }
        self.open_layer(ino).and_then(|(open, local)| open.fs.take_whole_chunk(local, offset))
    }

    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        match Self::node_index(ino) {
            Some(_) => Err(FsError::NoXattr),
            None => self.in_slot(ino, |fs, l| fs.getxattr(l, name)),
        }
    }

    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        match Self::node_index(ino) {
            Some(_) => Ok(Vec::new()),
            None => self.in_slot(ino, |fs, l| fs.listxattr(l)),
        }
    }

    /// Totals of the directories and of the layers in memory now.
    fn statfs(&self) -> StatFs {
        let (nodes, slots) = {
            let state = self.read_state();
            (state.nodes.len() as u64, state.slots.clone())
        };
        let mut total = StatFs { blocks: 0, files: nodes, block_size: crate::BLOCK_SIZE, name_max: 255 };
        for s in slots {
            if let Loaded::Yes(open) = &*lock(&s.loaded) {
                let st = ReadOnlyFs::statfs(&open.fs);
                total.blocks += st.blocks;
                total.files += st.files;
            }
        }
        total
    }

    /// Creating `use` in a layer directory counts a use of the layer; the answer is always
    /// an error (ENOENT there, as containers/storage expects of a store that counts uses).
    fn create(&self, parent: Ino, name: &[u8]) -> FsError {
        match self.layer_dir_slot(parent).and_then(|s| self.slot(s).ok()) {
            Some(slot) if name == USE => {
                let uses = slot.uses.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(reference = %slot.reference, layer = %slot.digest, uses, "layer used by the runtime");
                FsError::NotFound
            }
            _ => FsError::ReadOnly,
        }
    }

    /// Removing a layer directory releases one use of the layer (answered ENOENT).
    fn rmdir(&self, parent: Ino, name: &[u8]) -> FsError {
        self.release(parent, name)
    }
}
