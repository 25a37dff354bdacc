//! crfs-vfs: the read-only filesystem model that every crfs front-end serves.
//!
//! What it owns: identity (inode numbers), attributes, lookups, directory listings with stable
//! offsets, symlinks, xattrs, statfs, the overlayfs presentation of OCI whiteouts, and the
//! decompressed-chunk cache ([`LayerFs`]). The FUSE and NFS adapters translate requests into
//! these calls and map [`FsError`] to errno or nfsstat3; nothing else.
//!
//! Identity: the inode number of a name is its inode's node id + 1, so the root is 1, both
//! names of a hardlink share a number, and numbers are the same every time the same blob is
//! mounted.
//!
//! The chunk cache ([`ChunkCache`], a least-recently-used map of crfs's own) is bounded in
//! bytes at every moment, shared by all threads, and collapses concurrent misses on one chunk
//! into a single decode, so
//! sequential small reads through a big chunk inflate it once. Chunks being decoded are bounded
//! too, to half the cache's size (a miss waits for room, read-ahead skips), so memory does not
//! grow with the number of threads reading. Each thread decodes with a [`crfs_core::Scratch`] of
//! its own (a thread-local), so a miss allocates the chunk's buffer and not its decoder state.
//! The inflater writes straight into that buffer ([`ChunkData`]): a big chunk gets an
//! anonymous mapping of its own, which goes back to the system when the cache lets go of it.
//! Reads are lent to the front-end
//! ([`ReadOnlyFs::read_with`]): a read inside one cached chunk hands over a slice of the
//! cached chunk, with no allocation and no copy; [`ReadOnlyFs::read`] returns an owned `Vec`
//! for callers that must own the bytes (the NFS server). After a read, a front-end that can
//! fill the OS's page cache takes the whole chunk once per decode
//! ([`ReadOnlyFs::take_whole_chunk`]), so that reads elsewhere in that chunk need neither
//! crfs's cache nor another decode.
//!
//! Must never depend on: fuser, the NFS server (nfs3_server), sockets, or any registry code;
//! bytes come from crfs-core's `ReadAt`.

#![deny(missing_docs)]
// No slice index or range may panic: `.get()` and friends, with an error where the data can be
// at fault. Tests index freely.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crfs_core::{Index, Kind, Layer, NodeId, ReadAt};

mod chunk;
#[cfg(feature = "fuzzing")]
pub mod fuzz_entry;
mod lru;
mod merged;
mod namespace;
mod readahead;
mod slots;
mod store;
#[cfg(test)]
mod test_threads;
pub use chunk::{ChunkCache, ChunkData, ChunkKey};
pub use merged::MergedFs;
pub use namespace::{NamespaceFs, NamespaceOptions, ResolveError, ResolvedImage, Resolver, Version};
pub use store::{LayerSource, LayerState, LayerStoreFs, StoreLayer, StoreOptions};

/// An inode named by what it is rather than by when it was looked up: the same in every
/// process serving the same content, so it can back NFS handles that outlive a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StableId {
    /// What `tree` names: [`StableId::WHOLE`] for a whole served tree (a front-end's own
    /// naming), or one of the namespace's kinds ([`StableId::SYNTHETIC`], [`StableId::IMAGE`],
    /// [`StableId::LAYER`]).
    pub kind: u8,
    /// A sha256: of a synthetic path, an image manifest, a layer blob or a whole tree.
    pub tree: [u8; 32],
    /// The inode number within that tree (0 for a synthetic node).
    pub ino: Ino,
}

impl StableId {
    /// A whole served tree (one layer or one image, named by its front-end).
    pub const WHOLE: u8 = 0;
    /// A directory or file the namespace makes up (root, README, host and repo directories,
    /// an image's layer list); `tree` is the sha256 of its path.
    pub const SYNTHETIC: u8 = 1;
    /// A node of an image's merged tree; `tree` is the image's manifest digest.
    pub const IMAGE: u8 = 2;
    /// A node of one layer; `tree` is the layer's blob digest.
    pub const LAYER: u8 = 3;

    /// A 64-bit file number derived from the id alone (NFS fileid): 24 bits of the tree and
    /// kind, 40 bits of the inode number. Distinct trees collide with odds of 2^-24.
    pub fn fileid(&self) -> u64 {
        let t = u64::from(self.tree[0]) << 16 | u64::from(self.tree[1]) << 8 | u64::from(self.tree[2]);
        let t = t ^ u64::from(self.kind) << 22;
        t << 40 | (self.ino & ((1 << 40) - 1))
    }
}

/// The identity of one layer served alone: its TOC digest. A front-end that names whole trees
/// (NFS handles) names a single layer by it.
pub fn layer_identity<R: ReadAt + Send + Sync + 'static>(fs: &LayerFs<R>) -> crfs_core::Digest {
    fs.layer().toc_digest()
}

/// The identity of an image's merged layers: the sha256 of their TOC digests, bottom first.
pub fn image_identity(toc_digests: impl IntoIterator<Item = crfs_core::Digest>) -> crfs_core::Digest {
    let mut bytes = b"crfs merged image\n".to_vec();
    for d in toc_digests {
        bytes.extend_from_slice(&d.0);
    }
    crfs_core::Digest::of(&bytes)
}

/// A failed read as a front-end answers it: a blob read its source refused (a registry's 401
/// or 403, reported by `ReadAt` as EACCES) is [`FsError::Denied`]; anything else [`FsError::Io`].
fn denied_or_io(e: &crfs_core::Error) -> FsError {
    const EACCES: i32 = 13;
    match e {
        crfs_core::Error::Io(io) if io.errno == EACCES => FsError::Denied,
        _ => FsError::Io,
    }
}

/// An inode number as front-ends see it.
pub type Ino = u64;
/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;

/// Name prefix of an OCI whiteout.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of an OCI opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr overlayfs reads to find opaque directories.
const OVERLAY_OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Block size reported in attributes and statfs.
pub const BLOCK_SIZE: u32 = 4096;

/// Why a request failed; front-ends map these to errno / nfsstat3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    /// No such inode or name (ENOENT).
    NotFound,
    /// A directory operation on something else (ENOTDIR).
    NotDir,
    /// A file operation on a directory (EISDIR).
    IsDir,
    /// An operation that needs another file type, e.g. readlink on a file (EINVAL).
    Invalid,
    /// No such extended attribute (ENODATA).
    NoXattr,
    /// The data could not be read or failed its digest (EIO).
    Io,
    /// Any change to the filesystem (EROFS).
    ReadOnly,
    /// Access refused, e.g. by a registry (EACCES).
    Denied,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsError::NotFound => "no such file or directory",
            FsError::NotDir => "not a directory",
            FsError::IsDir => "is a directory",
            FsError::Invalid => "invalid argument (the operation needs another file type)",
            FsError::NoXattr => "no such attribute",
            FsError::Io => "I/O error (corrupt or unreadable data; see the log)",
            FsError::ReadOnly => "read-only file system",
            FsError::Denied => "permission denied",
        })
    }
}

impl std::error::Error for FsError {}

/// File types as front-ends present them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    Reg,
    /// A symbolic link.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// Attributes of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The inode number.
    pub ino: Ino,
    /// The file type.
    pub kind: FileKind,
    /// Permission bits plus setuid, setgid and sticky.
    pub perm: u16,
    /// The number of names (hardlinks) of a file; for a directory, 2 plus its subdirectories.
    pub nlink: u32,
    /// The owner's user id.
    pub uid: u32,
    /// The owner's group id.
    pub gid: u32,
    /// Size in bytes: a file's length, a symlink's target length, 0 otherwise.
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// A device's major number (0 for other types).
    pub rdev_major: u32,
    /// A device's minor number (0 for other types).
    pub rdev_minor: u32,
    /// The modification time.
    pub mtime: SystemTime,
}

/// One directory entry with its attributes; `next_offset` is the offset that resumes after it.
///
/// A listing hands out each entry's attributes because the trees compute them anyway (an
/// entry's inode number and type come from them), and listings with attributes (FUSE and NFS
/// READDIRPLUS) would otherwise compute them a second time per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// The offset to pass to `readdir` to resume after this entry.
    pub next_offset: u64,
    /// The entry's name (no slash, no NUL).
    pub name: &'a [u8],
    /// The entry's attributes, as `getattr` of its inode gives them (its inode number is
    /// `attr.ino`, its type `attr.kind`).
    pub attr: Attr,
}

/// Filesystem-wide numbers for statfs / FSSTAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatFs {
    /// The size of all files' data, in `block_size` blocks.
    pub blocks: u64,
    /// Total number of inodes.
    pub files: u64,
    /// The block size `blocks` counts in.
    pub block_size: u32,
    /// The longest name, in bytes.
    pub name_max: u32,
}

/// How a layer is presented.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Check every chunk against its digest when it is decoded.
    pub verify: bool,
    /// Present `.wh.X` as overlayfs whiteouts (0/0 char devices named X) and opaque markers as
    /// `trusted.overlay.opaque=y`, so the mount can be an overlayfs lower layer.
    pub overlay_whiteouts: bool,
    /// Bytes of decompressed chunks kept in memory (default 16 MiB): chunks still being read
    /// (part-way through, wanted by several readers, decoded ahead); a front-end's kernel
    /// cache keeps the file data already read.
    pub cache_bytes: u64,
    /// Decode ahead of reads that walk forward through the blob, on a background thread (see
    /// `readahead`). Off, every chunk is decoded by the read that needs it, on its own thread,
    /// and no thread outlives the filesystem's last use (the NFS fuzz entry needs that).
    pub read_ahead: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { verify: true, overlay_whiteouts: false, cache_bytes: 16 << 20, read_ahead: true }
    }
}

thread_local! {
    /// Each thread's decoding state (compressed-bytes buffer, decompressors), kept between the
    /// chunks it decodes so that a miss allocates only the chunk's own buffer.
    static SCRATCH: std::cell::RefCell<crfs_core::Scratch> = std::cell::RefCell::default();
}

/// Decodes (and with `verify` checks) one chunk into a buffer of its own, with this thread's
/// [`crfs_core::Scratch`].
pub(crate) fn decode_chunk<R: ReadAt>(
    layer: &Layer<R>,
    file: NodeId,
    chunk: usize,
    verify: bool,
) -> Result<Arc<ChunkData>, crfs_core::Error> {
    let data = SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => layer.read_chunk_into(file, chunk, verify, &mut scratch, ChunkData::zeroed),
        // Only if a decode ever ran inside another on this thread: use a scratch of its own.
        Err(_) => layer.read_chunk_into(file, chunk, verify, &mut crfs_core::Scratch::default(), ChunkData::zeroed),
    })?;
    Ok(Arc::new(data))
}

/// Locks `mutex`, ignoring poisoning: for data that every holder leaves consistent before
/// anything that could panic runs (the caches' maps, counters, the namespace's tables).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A chunk cache holding at most `bytes` bytes of decoded chunks (see [`ChunkCache`]).
pub fn new_chunk_cache(bytes: u64) -> ChunkCache {
    ChunkCache::new(bytes)
}

/// The read-only operations every front-end serves, whatever the tree behind them: one
/// layer ([`LayerFs`]) or the merged layers of an image ([`MergedFs`]).
pub trait ReadOnlyFs: Send + Sync + 'static {
    /// Attributes of an inode.
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError>;
    /// The attributes of `name` in directory `parent` ("." and ".." included).
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError>;
    /// A directory's parent (the root is its own parent).
    fn parent(&self, ino: Ino) -> Result<Ino, FsError>;
    /// Lists a directory from `offset` (0, or a `next_offset` returned before) until `add`
    /// returns false, each entry with its attributes. Offsets are stable for the life of the
    /// filesystem.
    fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError>;
    /// A symlink's target.
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError>;
    /// Checks that `ino` can be opened for reading.
    fn open(&self, ino: Ino) -> Result<(), FsError>;
    /// Up to `size` bytes of a file at `offset` (short only at the end of the file).
    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError>;
    /// The same read as [`read`](Self::read) if the tree can answer it at once, from memory
    /// (every chunk it needs already decoded); `None` if it would have to decode or read the
    /// blob. Never blocks, so an async front-end can answer from its own task and send only
    /// the rest to a blocking thread (the NFS server: a thread hop costs more than a read from
    /// the cache). The provided method always says `None`.
    fn read_if_cached(&self, _ino: Ino, _offset: u64, _size: u32) -> Option<Result<Vec<u8>, FsError>> {
        None
    }
    /// The same bytes as [`read`](Self::read), lent to `sink` instead of returned: called
    /// exactly once when the read succeeds (with an empty slice at or past the end of the
    /// file), never when it fails, so a front-end can answer from inside `sink`.
    ///
    /// A tree that caches decoded data lends its cache: a read inside one cached chunk then
    /// makes no allocation and no copy ([`LayerFs`], and [`MergedFs`] and [`NamespaceFs`]
    /// through it). The provided method lends the `Vec` of [`read`](Self::read), so a tree
    /// that has nothing to lend needs only `read`.
    fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
        let data = self.read(ino, offset, size)?;
        sink(&data);
        Ok(())
    }
    /// The whole decoded chunk of file `ino` that holds byte `offset`, handed out at most once
    /// per decode: `Some` only while the tree holds that chunk decoded in memory and has not
    /// handed it out this way since it was decoded. Never decodes, never waits.
    ///
    /// For a front-end that can fill the OS's page cache beyond what a read asked for (FUSE's
    /// notify-store): chunks are up to 4 MiB and cost a whole decode whatever part of them is
    /// read, so after a read the rest of its chunk goes to the page cache, and later reads
    /// anywhere in that chunk never reach crfs while the kernel keeps those pages. The
    /// provided method has no chunks to hand out.
    fn take_whole_chunk(&self, _ino: Ino, _offset: u64) -> Option<WholeChunk> {
        None
    }
    /// The value of an extended attribute.
    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError>;
    /// Extended attribute names, each followed by a NUL byte.
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError>;
    /// Filesystem totals.
    fn statfs(&self) -> StatFs;
    /// Whether any inode may have extended attributes. A tree that says no lets a front-end
    /// tell its client to stop asking (FUSE: ENOSYS once, no more getxattr requests).
    fn has_xattrs(&self) -> bool {
        true
    }
    /// An identity of `ino` that does not depend on lookup order or on this process (see
    /// [`StableId`]); `None` when the tree has none of its own and a front-end must name it.
    fn stable_id(&self, _ino: Ino) -> Option<StableId> {
        None
    }
    /// The inode a [`StableId`] from [`stable_id`](Self::stable_id) names, resolving again
    /// whatever it needs (after a restart, or after the tree was released).
    fn find_stable(&self, _id: &StableId) -> Result<Ino, FsError> {
        Err(FsError::NotFound)
    }
    /// Whether the tree wants to see every open and close: a front-end then forwards them
    /// ([`open`](Self::open), [`close`](Self::close)) instead of opening without a message.
    fn counts_opens(&self) -> bool {
        false
    }
    /// A file opened with [`open`](Self::open) was closed.
    fn close(&self, _ino: Ino) {}
    /// A request to create `name` in directory `parent`. The tree is read-only, so the answer
    /// is always an error; a tree may take the request as a signal (the layer store counts a
    /// use when `use` is created, and answers ENOENT as containers/storage expects).
    fn create(&self, _parent: Ino, _name: &[u8]) -> FsError {
        FsError::ReadOnly
    }
    /// A request to remove directory `name` from `parent`, answered with an error as
    /// [`create`](Self::create) is (the layer store takes it as a release).
    fn rmdir(&self, _parent: Ino, _name: &[u8]) -> FsError {
        FsError::ReadOnly
    }
}

/// A whole decoded chunk of a file, from [`ReadOnlyFs::take_whole_chunk`].
#[derive(Debug, Clone)]
pub struct WholeChunk {
    /// Where the chunk's bytes start in the file.
    pub file_offset: u64,
    /// The size of the whole file (the chunk may end there).
    pub file_size: u64,
    /// The decoded bytes, shared with the chunk cache.
    pub data: Arc<ChunkData>,
}

/// One layer as a read-only filesystem.
pub struct LayerFs<R> {
    layer: Arc<Layer<R>>,
    cache: ChunkCache,
    /// This layer's part of the cache key.
    cache_tag: u32,
    options: Options,
    readahead: readahead::ReadAhead,
}

fn file_kind(kind: Kind) -> FileKind {
    match kind {
        Kind::Dir => FileKind::Dir,
        Kind::Reg | Kind::Hardlink => FileKind::Reg,
        Kind::Symlink => FileKind::Symlink,
        Kind::Char => FileKind::Char,
        Kind::Block => FileKind::Block,
        Kind::Fifo => FileKind::Fifo,
    }
}

fn to_system_time((secs, nanos): (i64, u32)) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .map_or(UNIX_EPOCH, |t| t + Duration::new(0, nanos))
    }
}

impl<R: ReadAt + Send + Sync + 'static> LayerFs<R> {
    /// Serves `layer` with `options`, with a cache of its own.
    pub fn new(layer: Arc<Layer<R>>, options: Options) -> Self {
        let cache = new_chunk_cache(options.cache_bytes);
        Self::with_cache(layer, options, cache, 0)
    }

    /// Serves `layer` with a cache shared with other layers; `tag` tells its entries apart.
    pub fn with_cache(layer: Arc<Layer<R>>, options: Options, cache: ChunkCache, tag: u32) -> Self {
        let readahead = readahead::ReadAhead::new(&layer, options.cache_bytes);
        LayerFs { layer, cache, cache_tag: tag, options, readahead }
    }

    /// The layer served.
    pub fn layer(&self) -> &Layer<R> {
        &self.layer
    }

    fn index(&self) -> &Index {
        self.layer.index()
    }

    fn node_of(&self, ino: Ino) -> Result<NodeId, FsError> {
        let id = ino.checked_sub(1).and_then(|i| NodeId::try_from(i).ok()).ok_or(FsError::NotFound)?;
        self.index().kind(id).map(|_| id).ok_or(FsError::NotFound)
    }

    /// Whether `id` is shown as an overlay whiteout device.
    fn is_whiteout(&self, id: NodeId) -> bool {
        if !self.options.overlay_whiteouts {
            return false;
        }
        let name = self.index().name(id);
        name.starts_with(WHITEOUT_PREFIX) && name != OPAQUE_MARKER
    }

    /// The attributes behind node `id` (a hardlink node gives its target's).
    pub fn attr_of(&self, id: NodeId) -> Result<Attr, FsError> {
        let inode = self.index().resolve(id);
        let node = self.index().node(inode).ok_or(FsError::NotFound)?;
        let ino = Ino::from(inode) + 1;
        if self.is_whiteout(id) {
            return Ok(Attr {
                ino,
                kind: FileKind::Char,
                perm: 0,
                nlink: 1,
                uid: 0,
                gid: 0,
                size: 0,
                blocks: 0,
                rdev_major: 0,
                rdev_minor: 0,
                mtime: to_system_time(node.mtime()),
            });
        }
        let (rdev_major, rdev_minor) = node.rdev();
        Ok(Attr {
            ino,
            kind: file_kind(node.kind()),
            perm: node.mode(),
            nlink: node.nlink(),
            uid: node.uid(),
            gid: node.gid(),
            size: node.size(),
            blocks: node.size().div_ceil(512),
            rdev_major,
            rdev_minor,
            mtime: to_system_time(node.mtime()),
        })
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.attr_of(self.node_of(ino)?)
    }

    fn dir_of(&self, ino: Ino) -> Result<NodeId, FsError> {
        let id = self.index().resolve(self.node_of(ino)?);
        match self.index().kind(id) {
            Some(Kind::Dir) => Ok(id),
            _ => Err(FsError::NotDir),
        }
    }

    /// Looks up `name` in directory `parent`, returning its node (before hardlink resolution).
    fn lookup_node(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        if self.options.overlay_whiteouts {
            if name.starts_with(WHITEOUT_PREFIX) {
                return None;
            }
            if let Some(id) = self.index().lookup(dir, name) {
                return Some(id);
            }
            let mut wh = WHITEOUT_PREFIX.to_vec();
            wh.extend_from_slice(name);
            return self.index().lookup(dir, &wh);
        }
        self.index().lookup(dir, name)
    }

    /// The attributes of `name` in directory `parent`. "." and ".." are answered too.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        let dir = self.dir_of(parent)?;
        let id = match name {
            b"." => dir,
            b".." => self.index().parent(dir).unwrap_or(dir),
            _ => self.lookup_node(dir, name).ok_or(FsError::NotFound)?,
        };
        self.attr_of(id)
    }

    /// The parent directory's inode number (the root is its own parent).
    pub fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
        let dir = self.dir_of(ino)?;
        Ok(Ino::from(self.index().parent(dir).unwrap_or(dir)) + 1)
    }

    /// Lists directory `ino` from `offset` (0 to start; else a `next_offset` returned before),
    /// calling `add` for each entry until it returns false (the caller's buffer is full).
    /// "." and ".." come first; offsets are stable for the life of the mount.
    pub fn readdir(&self, ino: Ino, offset: u64, mut add: impl FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
        let dir = self.dir_of(ino)?;
        let index = self.index();
        if offset == 0 && !add(DirEntry { next_offset: 1, name: b".", attr: self.attr_of(dir)? }) {
            return Ok(());
        }
        let parent = index.parent(dir).unwrap_or(dir);
        if offset <= 1 && !add(DirEntry { next_offset: 2, name: b"..", attr: self.attr_of(parent)? }) {
            return Ok(());
        }
        let children = index.children(dir);
        let start = usize::try_from(offset.saturating_sub(2)).unwrap_or(usize::MAX);
        for (i, &child) in children.iter().enumerate().skip(start) {
            let mut name = index.name(child);
            if self.options.overlay_whiteouts
                && let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX)
            {
                if name == OPAQUE_MARKER {
                    continue;
                }
                name = hidden;
                // A name the layer also holds as a normal entry is shown once, as that entry.
                if index.lookup(dir, name).is_some() {
                    continue;
                }
            }
            let entry = DirEntry { next_offset: i as u64 + 3, name, attr: self.attr_of(child)? };
            if !add(entry) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: Ino) -> Result<&[u8], FsError> {
        let id = self.index().resolve(self.node_of(ino)?);
        match self.index().kind(id) {
            Some(Kind::Symlink) => Ok(self.index().symlink_target(id)),
            _ => Err(FsError::Invalid),
        }
    }

    /// Checks that `ino` can be opened for reading as a file.
    pub fn open(&self, ino: Ino) -> Result<(), FsError> {
        let id = self.index().resolve(self.node_of(ino)?);
        match self.index().kind(id) {
            Some(Kind::Dir) => Err(FsError::IsDir),
            Some(_) => Ok(()),
            None => Err(FsError::NotFound),
        }
    }

    /// One decoded (and, if configured, verified) chunk, from the cache or decoded once for
    /// all concurrent callers.
    fn chunk(&self, file: NodeId, chunk: usize) -> Result<Arc<ChunkData>, FsError> {
        let key = (self.cache_tag, file, u32::try_from(chunk).map_err(|_| FsError::Io)?);
        let size = self.index().chunks(file).get(chunk).map_or(0, |c| c.size);
        self.cache
            .get_or_load(key, size, || {
                // A miss: if misses walk forward through the blob, decode what follows ahead.
                if let Some(c) = self.index().chunks(file).get(chunk).filter(|_| self.options.read_ahead) {
                    self.readahead.on_miss(self.index(), c.offset, file, key.2, || {
                        Some((self.layer.clone(), self.cache.clone(), self.cache_tag, self.options.verify))
                    });
                }
                decode_chunk(&self.layer, file, chunk, self.options.verify)
            })
            .map_err(|e| {
                let path = String::from_utf8_lossy(&self.index().path(file)).into_owned();
                let offset = self.index().chunks(file).get(chunk).map_or(0, |c| c.file_offset);
                tracing::error!(file = %path, chunk, chunk_offset = offset, "read failed: {e}");
                denied_or_io(&e)
            })
    }

    /// The regular file behind `ino` and the end of a read of `size` bytes at `offset`
    /// (clamped to the file's size; at most `offset` when the read is past the end).
    fn read_range(&self, ino: Ino, offset: u64, size: u32) -> Result<(NodeId, u64), FsError> {
        let id = self.index().resolve(self.node_of(ino)?);
        let file_size = match self.index().node(id) {
            Some(n) if n.kind() == Kind::Reg => n.size(),
            Some(n) if n.kind() == Kind::Dir => return Err(FsError::IsDir),
            Some(_) => return Err(FsError::Invalid),
            None => return Err(FsError::NotFound),
        };
        Ok((id, file_size.min(offset.saturating_add(u64::from(size))).max(offset)))
    }

    /// Reads up to `size` bytes of file `ino` at `offset` (short only at the end of the file).
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let read = self.assemble(ino, offset, size, |id, i| self.chunk(id, i).map(Some))?;
        read.ok_or(FsError::Io)
    }

    /// The same read as [`read`](Self::read) when every chunk it needs is in the cache; `None`
    /// when one is not (see [`ReadOnlyFs::read_if_cached`]). Never decodes, never reads the blob.
    pub fn read_if_cached(&self, ino: Ino, offset: u64, size: u32) -> Option<Result<Vec<u8>, FsError>> {
        self.assemble(ino, offset, size, |id, i| Ok(self.cached_chunk(id, i))).transpose()
    }

    /// The bytes of a read of `size` at `offset` in file `ino`, each chunk from `chunk_of(file,
    /// index)`; `None` as soon as `chunk_of` has none.
    fn assemble(
        &self,
        ino: Ino,
        offset: u64,
        size: u32,
        mut chunk_of: impl FnMut(NodeId, usize) -> Result<Option<Arc<ChunkData>>, FsError>,
    ) -> Result<Option<Vec<u8>>, FsError> {
        let (id, end) = self.read_range(ino, offset, size)?;
        let mut out = Vec::with_capacity((end - offset) as usize);
        let chunks = self.index().chunks(id);
        let mut pos = offset;
        while pos < end {
            let i = self.index().chunk_at(id, pos).ok_or(FsError::Io)?;
            let c = chunks.get(i).ok_or(FsError::Io)?;
            let Some(data) = chunk_of(id, i)? else { return Ok(None) };
            let within = (pos - c.file_offset) as usize;
            let take = ((c.file_offset + c.size).min(end) - pos) as usize;
            let piece = data.get(within..within + take).ok_or(FsError::Io)?;
            out.extend_from_slice(piece);
            pos += take as u64;
        }
        Ok(Some(out))
    }

    /// Reads up to `size` bytes of file `ino` at `offset` and lends them to `sink`, called
    /// once on success (see [`ReadOnlyFs::read_with`]). A read inside one chunk lends the
    /// cached chunk itself: no allocation, no copy. A read across chunks is assembled once.
    pub fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
        let (id, end) = self.read_range(ino, offset, size)?;
        if offset >= end {
            sink(&[]);
            return Ok(());
        }
        let i = self.index().chunk_at(id, offset).ok_or(FsError::Io)?;
        let c = self.index().chunks(id).get(i).ok_or(FsError::Io)?;
        if end > c.file_offset + c.size {
            sink(&self.read(ino, offset, size)?);
            return Ok(());
        }
        let data = self.chunk(id, i)?;
        let within = (offset - c.file_offset) as usize;
        sink(data.get(within..within + (end - offset) as usize).ok_or(FsError::Io)?);
        Ok(())
    }

    /// Chunk `chunk` of `file` if the cache holds it decoded; never decodes.
    fn cached_chunk(&self, file: NodeId, chunk: usize) -> Option<Arc<ChunkData>> {
        self.cache.get(&(self.cache_tag, file, u32::try_from(chunk).ok()?))
    }

    /// The cached chunk of file `ino` holding byte `offset`, once per decode (see
    /// [`ReadOnlyFs::take_whole_chunk`]).
    pub fn take_whole_chunk(&self, ino: Ino, offset: u64) -> Option<WholeChunk> {
        let id = self.index().resolve(self.node_of(ino).ok()?);
        let file_size = self.index().node(id).filter(|n| n.kind() == Kind::Reg)?.size();
        let i = self.index().chunk_at(id, offset)?;
        let chunk = self.index().chunks(id).get(i)?;
        let data = self.cached_chunk(id, i)?;
        data.hand_out_whole_once().then(|| WholeChunk { file_offset: chunk.file_offset, file_size, data })
    }

    fn is_opaque_dir(&self, id: NodeId) -> bool {
        self.options.overlay_whiteouts
            && self.index().kind(id) == Some(Kind::Dir)
            && self.index().lookup(id, OPAQUE_MARKER).is_some()
    }

    /// The value of extended attribute `name`.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let id = self.index().resolve(self.node_of(ino)?);
        if name == OVERLAY_OPAQUE_XATTR && self.is_opaque_dir(id) {
            return Ok(b"y".to_vec());
        }
        self.index().xattrs(id).find(|(k, _)| *k == name).map(|(_, v)| v.to_vec()).ok_or(FsError::NoXattr)
    }

    /// The names of the extended attributes, each followed by a NUL byte.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let id = self.index().resolve(self.node_of(ino)?);
        let mut out = Vec::new();
        for (k, _) in self.index().xattrs(id) {
            if k == OVERLAY_OPAQUE_XATTR && self.is_opaque_dir(id) {
                continue;
            }
            out.extend_from_slice(k);
            out.push(0);
        }
        if self.is_opaque_dir(id) {
            out.extend_from_slice(OVERLAY_OPAQUE_XATTR);
            out.push(0);
        }
        Ok(out)
    }

    /// Filesystem totals.
    pub fn statfs(&self) -> StatFs {
        let stats = self.index().stats();
        StatFs {
            blocks: stats.file_bytes.div_ceil(u64::from(BLOCK_SIZE)),
            files: stats.nodes as u64,
            block_size: BLOCK_SIZE,
            name_max: 255,
        }
    }
}

impl<R: ReadAt + Send + Sync + 'static> ReadOnlyFs for LayerFs<R> {
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        LayerFs::getattr(self, ino)
    }
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        LayerFs::lookup(self, parent, name)
    }
    fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
        LayerFs::parent(self, ino)
    }
    fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
        LayerFs::readdir(self, ino, offset, add)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        LayerFs::readlink(self, ino).map(<[u8]>::to_vec)
    }
    fn open(&self, ino: Ino) -> Result<(), FsError> {
        LayerFs::open(self, ino)
    }
    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        LayerFs::read(self, ino, offset, size)
    }
    fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
        LayerFs::read_with(self, ino, offset, size, sink)
    }
    fn read_if_cached(&self, ino: Ino, offset: u64, size: u32) -> Option<Result<Vec<u8>, FsError>> {
        LayerFs::read_if_cached(self, ino, offset, size)
    }
    fn take_whole_chunk(&self, ino: Ino, offset: u64) -> Option<WholeChunk> {
        LayerFs::take_whole_chunk(self, ino, offset)
    }
    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        LayerFs::getxattr(self, ino, name)
    }
    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        LayerFs::listxattr(self, ino)
    }
    fn statfs(&self) -> StatFs {
        LayerFs::statfs(self)
    }
    fn has_xattrs(&self) -> bool {
        self.options.overlay_whiteouts || self.index().has_xattrs()
    }
}

/// Boxed and shared trees serve like the tree inside: front-ends can pick a tree at run time,
/// and a front-end and a housekeeping thread can hold one tree together.
macro_rules! forward_read_only_fs {
    ($wrapper:ident) => {
        impl<T: ReadOnlyFs + ?Sized> ReadOnlyFs for $wrapper<T> {
            fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
                (**self).getattr(ino)
            }
            fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
                (**self).lookup(parent, name)
            }
            fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
                (**self).parent(ino)
            }
            fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
                (**self).readdir(ino, offset, add)
            }
            fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
                (**self).readlink(ino)
            }
            fn open(&self, ino: Ino) -> Result<(), FsError> {
                (**self).open(ino)
            }
            fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
                (**self).read(ino, offset, size)
            }
            fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
                (**self).read_with(ino, offset, size, sink)
            }
            fn read_if_cached(&self, ino: Ino, offset: u64, size: u32) -> Option<Result<Vec<u8>, FsError>> {
                (**self).read_if_cached(ino, offset, size)
            }
            fn take_whole_chunk(&self, ino: Ino, offset: u64) -> Option<WholeChunk> {
                (**self).take_whole_chunk(ino, offset)
            }
            fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
                (**self).getxattr(ino, name)
            }
            fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
                (**self).listxattr(ino)
            }
            fn statfs(&self) -> StatFs {
                (**self).statfs()
            }
            fn has_xattrs(&self) -> bool {
                (**self).has_xattrs()
            }
            fn stable_id(&self, ino: Ino) -> Option<StableId> {
                (**self).stable_id(ino)
            }
            fn find_stable(&self, id: &StableId) -> Result<Ino, FsError> {
                (**self).find_stable(id)
            }
            fn counts_opens(&self) -> bool {
                (**self).counts_opens()
            }
            fn close(&self, ino: Ino) {
                (**self).close(ino)
            }
            fn create(&self, parent: Ino, name: &[u8]) -> FsError {
                (**self).create(parent, name)
            }
            fn rmdir(&self, parent: Ino, name: &[u8]) -> FsError {
                (**self).rmdir(parent, name)
            }
        }
    };
}

forward_read_only_fs!(Box);
forward_read_only_fs!(Arc);
