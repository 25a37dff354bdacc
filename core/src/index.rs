//! The compact, immutable index of a layer: one arena built from the TOC.
//!
//! Layout (all ids are `u32`, node 0 is the root directory):
//! - `nodes`: one 32-byte record per name in the tree. [`Index::node`] makes a [`Node`] view of
//!   it: a regular file's size is where its last chunk ends, the owner is a 16-bit slot in
//!   `owners`, the mtime's seconds are 48 bits beside 30 bits of nanoseconds, and mode, kind and
//!   the synthesised flag share 16 bits.
//! - `names`: every base name and symlink target, back to back; nodes hold (offset, length).
//! - `children`: the child ids of each directory, contiguous and sorted by name, so lookup is
//!   a binary search and listings are slices. A directory's node holds its range.
//! - `chunks`: each regular file's chunk records (28 bytes: blob and file offsets, 32-bit
//!   size and compressed span, 30-bit inner offset and two flags), contiguous and ordered by
//!   file offset; [`Index::chunks`] gives [`Chunk`] views. `chunk_digests` holds their
//!   digests at the same positions (empty when no chunk has one).
//! - Side tables, sorted by node id, for what few nodes have: `xattrs`, `file_digests` (a
//!   file's `digest` where it is not simply its one chunk's), `nlinks` (link counts other than
//!   1, or 0 for a hardlink node: directories and multiply-linked files) and `owner_overflow`
//!   (owners past the 65,535 the owner table holds).
//!
//! On a 55,000-entry Python image that is about 60 bytes per node, names and the 32-byte
//! digests aside (106 with them).
//!
//! A hardlink is a node of kind [`Kind::Hardlink`] that names its target's node: the target is
//! the one identity (inode) both names share, and its `nlink` counts them.
//!
//! Building follows the reference reader (and tar extraction): names are cleaned ("./", "/",
//! "//" and "." removed, ".." clamped at the root), missing parents are synthesised as 0755
//! directories, a later entry with the same name wins, chunk entries attach to the preceding
//! regular file, an omitted `chunkSize` is back-filled, `mode` keeps permission, setuid, setgid
//! and sticky bits only, and the landmark files are kept out of the tree. Where the input is
//! contradictory (a path used both as a file and as a parent), directories win, so the tree is
//! always a tree. Nothing recurses on input-controlled depth.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use base64::Engine as _;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hardlink;
use crate::json::{self, EntrySink, RawEntry};
use crate::path::{self, base_of, parent_of};

/// A node's id: its index in the arena. Stable for a given TOC.
pub type NodeId = u32;
/// The root directory.
pub const ROOT: NodeId = 0;

/// Name of the landmark that ends the prioritized (prefetch) region.
pub const PREFETCH_LANDMARK: &[u8] = b".prefetch.landmark";
/// Name of the landmark that says "nothing to prefetch".
pub const NO_PREFETCH_LANDMARK: &[u8] = b".no.prefetch.landmark";

/// File types, as the TOC's `type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A directory (`dir`).
    Dir,
    /// A regular file (`reg`).
    Reg,
    /// A symbolic link (`symlink`).
    Symlink,
    /// A second name for another node; see [`Index::resolve`].
    Hardlink,
    /// A character device (`char`).
    Char,
    /// A block device (`block`).
    Block,
    /// A named pipe (`fifo`).
    Fifo,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "dir" => Kind::Dir,
            "reg" => Kind::Reg,
            "symlink" => Kind::Symlink,
            "hardlink" => Kind::Hardlink,
            "char" => Kind::Char,
            "block" => Kind::Block,
            "fifo" => Kind::Fifo,
            _ => return None,
        })
    }

    /// The TOC's name for this type.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::Reg => "reg",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hardlink",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Fifo => "fifo",
        }
    }
}

/// One name in the tree and, unless it is a hardlink, the inode behind it: a by-value view
/// that [`Index::node`] assembles from the node's stored record and the side tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Regular file: size. Char/block: `major << 32 | minor`. Symlink: target length.
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    kind: Kind,
    /// A directory the TOC never names, made because something lies below it.
    synthesized: bool,
    mode: u16,
    uid: u32,
    gid: u32,
    parent: NodeId,
    nlink: u32,
}

impl Node {
    /// The file type (a hardlink node reports `Hardlink`; resolve it first for the inode's).
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Whether this is a directory the TOC never names (a missing parent, made 0755 root:root
    /// with a zero mtime). Merging layers must not let it override a lower layer's real one.
    pub fn is_synthesized(&self) -> bool {
        self.synthesized
    }
    /// Permission bits plus setuid, setgid and sticky (`mode & 0o7777`).
    pub fn mode(&self) -> u16 {
        self.mode
    }
    /// The owner's user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }
    /// The owner's group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }
    /// Size in bytes: file length, symlink target length, 0 otherwise.
    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::Reg | Kind::Symlink => self.size,
            _ => 0,
        }
    }
    /// Modification time: seconds since the epoch and nanoseconds.
    pub fn mtime(&self) -> (i64, u32) {
        (self.mtime, self.mtime_nsec)
    }
    /// Link count: names of this inode for files, 2 + subdirectories for directories.
    pub fn nlink(&self) -> u32 {
        self.nlink
    }
    /// Device numbers (major, minor) of a char or block device.
    pub fn rdev(&self) -> (u32, u32) {
        match self.kind {
            Kind::Char | Kind::Block => ((self.size >> 32) as u32, self.size as u32),
            _ => (0, 0),
        }
    }
    /// The parent directory (the root is its own parent).
    pub fn parent(&self) -> NodeId {
        self.parent
    }
}

/// How a node is stored: 32 bytes, 4-aligned. What is not here is derived or in a side table:
/// a regular file's size is where its last chunk ends (chunks tile the file, checked when
/// built), the owner is an entry of `Index::owners`, and a link count other than the kind's
/// default ([`NodeRec::default_nlink`]) is in `Index::nlinks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct NodeRec {
    parent: NodeId,
    name_off: u32,
    /// Dir: first index in `children`. Reg: first chunk. Symlink: target offset in `names`.
    /// Hardlink: the target node. Char/block: major device number.
    first: u32,
    /// Dir: number of children. Reg: number of chunks. Symlink: target length. Char/block:
    /// minor device number.
    count: u32,
    /// The low 32 bits of the mtime's seconds.
    mtime_lo: u32,
    /// Nanoseconds (below 10^9 < 2^30) in bits 0..30, [`NSEC_NLINK`] in bit 30.
    nsec: u32,
    name_len: u16,
    /// `mode & 0o7777` in bits 0..12, the kind in 12..15, [`MODE_SYNTHESIZED`] in bit 15.
    mode_kind: u16,
    /// Index in `Index::owners`, or [`OWNER_OVERFLOW`]: (uid, gid) is in `Index::owner_overflow`.
    owner: u16,
    /// Bits 32..48 of the mtime's seconds: seconds are kept as a 48-bit signed number
    /// (±4 million years; RFC 3339 years 0000 to 9999 need 39 bits).
    mtime_hi: i16,
}

/// `NodeRec::nsec` flag: the link count is in `Index::nlinks`, not the kind's default.
const NSEC_NLINK: u32 = 1 << 30;
/// `NodeRec::nsec` bits that hold nanoseconds.
const NSEC_MASK: u32 = NSEC_NLINK - 1;
/// `NodeRec::mode_kind` flag: a synthesised directory.
const MODE_SYNTHESIZED: u16 = 1 << 15;
/// `NodeRec::owner` value for an owner that did not fit the owner table.
const OWNER_OVERFLOW: u16 = u16::MAX;
/// Seconds an mtime may have: a 48-bit signed number.
const MTIME_RANGE: core::ops::Range<i64> = -(1 << 47)..(1 << 47);

impl NodeRec {
    fn kind(&self) -> Kind {
        match (self.mode_kind >> 12) & 7 {
            0 => Kind::Dir,
            1 => Kind::Reg,
            2 => Kind::Symlink,
            3 => Kind::Hardlink,
            4 => Kind::Char,
            5 => Kind::Block,
            // Only `Kind as u16` is ever stored, so 7 does not occur.
            _ => Kind::Fifo,
        }
    }

    fn mode(&self) -> u16 {
        self.mode_kind & 0o7777
    }

    fn is_synthesized(&self) -> bool {
        self.mode_kind & MODE_SYNTHESIZED != 0
    }

    fn set_kind_mode(&mut self, kind: Kind, mode: u16, synthesized: bool) {
        let synthesized = if synthesized { MODE_SYNTHESIZED } else { 0 };
        self.mode_kind = (mode & 0o7777) | ((kind as u16) << 12) | synthesized;
    }

    fn mtime(&self) -> (i64, u32) {
        ((i64::from(self.mtime_hi) << 32) | i64::from(self.mtime_lo), self.nsec & NSEC_MASK)
    }

    /// Stores an mtime; false (and nothing stored) when it does not fit (see [`MTIME_RANGE`]).
    fn set_mtime(&mut self, secs: i64, nsec: u32) -> bool {
        if !MTIME_RANGE.contains(&secs) || nsec > NSEC_MASK {
            return false;
        }
        self.mtime_lo = secs as u32;
        self.mtime_hi = (secs >> 32) as i16;
        self.nsec = (self.nsec & !NSEC_MASK) | nsec;
        true
    }

    fn has_nlink(&self) -> bool {
        self.nsec & NSEC_NLINK != 0
    }

    /// The link count a node of this kind has unless `Index::nlinks` says otherwise: one name
    /// for an inode, none for a hardlink node (its target counts it).
    fn default_nlink(&self) -> u32 {
        match self.kind() {
            Kind::Hardlink => 0,
            _ => 1,
        }
    }
}

/// Where one chunk of a regular file lives and how to check it: a by-value view that
/// [`Chunks::get`] assembles from the stored record and the digest table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Blob offset of the gzip member or zstd frame holding the chunk.
    pub offset: u64,
    /// End of the compressed span: the next distinct member offset, or the TOC (0 for a zeros
    /// chunk, which has none).
    pub compressed_end: u64,
    /// Uncompressed bytes to skip in that member before the chunk starts (`innerOffset`).
    pub inner_offset: u64,
    /// Offset of the chunk in the file.
    pub file_offset: u64,
    /// Uncompressed length of the chunk.
    pub size: u64,
    /// `chunkDigest` (or the file's `digest` for a one-chunk file), if the TOC has one.
    pub digest: Option<Digest>,
    /// A run of zeros with no stored data (containers/storage `chunkType: "zeros"`).
    pub zeros: bool,
}

/// How a chunk is stored: 28 bytes, 4-aligned. The digest is in `Index::chunk_digests`, at the
/// same position. Index building refuses a chunk whose fields do not fit ([`MAX_CHUNK_SIZE`],
/// [`MAX_INNER_OFFSET`], [`MAX_COMPRESSED_SPAN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
struct ChunkRec {
    offset: u64,
    file_offset: u64,
    /// `compressed_end - offset`; 0 for a zeros chunk.
    span: u32,
    size: u32,
    /// The inner offset in bits 0..30, [`CHUNK_DIGEST`] in bit 30, [`CHUNK_ZEROS`] in bit 31.
    inner: u32,
}

/// `ChunkRec::inner` flag: `Index::chunk_digests` holds the chunk's digest.
const CHUNK_DIGEST: u32 = 1 << 30;
/// `ChunkRec::inner` flag: a zeros chunk.
const CHUNK_ZEROS: u32 = 1 << 31;
/// Largest chunk size the index holds (4 GiB - 1; reads refuse chunks above the layer's
/// `max_chunk_size`, 64 MiB by default, anyway).
pub const MAX_CHUNK_SIZE: u64 = u32::MAX as u64;
/// Largest `innerOffset` the index holds (1 GiB - 1).
pub const MAX_INNER_OFFSET: u64 = (CHUNK_DIGEST - 1) as u64;
/// Largest compressed span (from a chunk's member to the next one, or to the TOC) the index
/// holds (4 GiB - 1).
pub const MAX_COMPRESSED_SPAN: u64 = u32::MAX as u64;

impl ChunkRec {
    /// The record of `c` (its digest aside), or what does not fit. The span is set later.
    fn of(c: &Chunk) -> core::result::Result<ChunkRec, Error> {
        let too_large = |what, size, limit| Error::TooLarge { what, size, limit };
        let size = u32::try_from(c.size).map_err(|_| too_large("chunk size", c.size, MAX_CHUNK_SIZE))?;
        if c.inner_offset > MAX_INNER_OFFSET {
            return Err(too_large("chunk innerOffset", c.inner_offset, MAX_INNER_OFFSET));
        }
        let mut inner = c.inner_offset as u32;
        if c.digest.is_some() {
            inner |= CHUNK_DIGEST;
        }
        if c.zeros {
            inner |= CHUNK_ZEROS;
        }
        Ok(ChunkRec { offset: c.offset, file_offset: c.file_offset, span: 0, size, inner })
    }

    fn zeros(&self) -> bool {
        self.inner & CHUNK_ZEROS != 0
    }

    fn end(&self) -> u64 {
        // Chunks tile their file, checked when built: this does not overflow.
        self.file_offset.saturating_add(u64::from(self.size))
    }
}

/// A regular file's chunks, ordered by file offset: a view of the index's chunk table (see
/// [`Index::chunks`]) whose items are [`Chunk`] values.
#[derive(Debug, Clone, Copy)]
pub struct Chunks<'a> {
    recs: &'a [ChunkRec],
    /// The digests at the same positions, or empty when no chunk of the layer has one.
    digests: &'a [Digest],
}

impl<'a> Chunks<'a> {
    const EMPTY: Chunks<'static> = Chunks { recs: &[], digests: &[] };

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether there are none (a file of size 0, or not a regular file).
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Chunk `i`.
    pub fn get(&self, i: usize) -> Option<Chunk> {
        let r = *self.recs.get(i)?;
        let zeros = r.zeros();
        let digest = if r.inner & CHUNK_DIGEST != 0 { self.digests.get(i).copied() } else { None };
        Some(Chunk {
            offset: r.offset,
            compressed_end: if zeros { 0 } else { r.offset.saturating_add(u64::from(r.span)) },
            inner_offset: u64::from(r.inner & (CHUNK_DIGEST - 1)),
            file_offset: r.file_offset,
            size: u64::from(r.size),
            digest,
            zeros,
        })
    }

    /// The first chunk.
    pub fn first(&self) -> Option<Chunk> {
        self.get(0)
    }

    /// The last chunk.
    pub fn last(&self) -> Option<Chunk> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The chunks in order.
    pub fn iter(&self) -> ChunkIter<'a> {
        ChunkIter { chunks: *self, front: 0, back: self.len() }
    }

    /// The position of the chunk holding file offset `offset`.
    fn position_of(&self, offset: u64) -> Option<usize> {
        let i = self.recs.partition_point(|c| { c.file_offset } <= offset).checked_sub(1)?;
        (offset < self.recs.get(i)?.end()).then_some(i)
    }
}

impl<'a> IntoIterator for Chunks<'a> {
    type Item = Chunk;
    type IntoIter = ChunkIter<'a>;

    fn into_iter(self) -> ChunkIter<'a> {
        self.iter()
    }
}

/// The chunks of a [`Chunks`] view, in order.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    chunks: Chunks<'a>,
    front: usize,
    back: usize,
}

impl Iterator for ChunkIter<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.front >= self.back {
            return None;
        }
        let c = self.chunks.get(self.front);
        self.front += 1;
        c
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back.saturating_sub(self.front);
        (n, Some(n))
    }

    fn nth(&mut self, n: usize) -> Option<Chunk> {
        self.front = self.front.saturating_add(n).min(self.back);
        self.next()
    }
}

impl DoubleEndedIterator for ChunkIter<'_> {
    fn next_back(&mut self) -> Option<Chunk> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        self.chunks.get(self.back)
    }
}

impl ExactSizeIterator for ChunkIter<'_> {}

/// One piece of a read: the part of one chunk it needs (see [`Index::read_pieces`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPiece {
    /// The chunk's position in the file's chunk table.
    pub chunk: usize,
    /// The chunk.
    pub info: Chunk,
    /// The bytes of the chunk's uncompressed data the piece takes.
    pub within: core::ops::Range<usize>,
    /// Where they go in the read (offset 0 is the read's first byte).
    pub at: usize,
}

/// The pieces of one read, from [`Index::read_pieces`].
#[derive(Debug, Clone)]
pub struct ReadPieces<'a> {
    chunks: Chunks<'a>,
    next: usize,
    offset: u64,
    pos: u64,
    end: u64,
}

impl Iterator for ReadPieces<'_> {
    type Item = ReadPiece;

    fn next(&mut self) -> Option<ReadPiece> {
        if self.pos >= self.end {
            return None;
        }
        let c = self.chunks.get(self.next)?;
        let chunk_end = c.file_offset.checked_add(c.size)?;
        if self.pos < c.file_offset || self.pos >= chunk_end {
            return None;
        }
        let within = (self.pos - c.file_offset) as usize;
        let take = (chunk_end.min(self.end) - self.pos) as usize;
        let piece = ReadPiece {
            chunk: self.next,
            info: c,
            within: within..within + take,
            at: (self.pos - self.offset) as usize,
        };
        self.pos += take as u64;
        self.next += 1;
        Some(piece)
    }
}

/// Limits on what a TOC may make the index hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most entries accepted.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_entries: 8 << 20 }
    }
}

/// Counts for `info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// TOC entries read, chunk entries included.
    pub toc_entries: usize,
    /// Nodes in the tree, the root included.
    pub nodes: usize,
    /// Directory nodes, synthesised parents and the root included.
    pub dirs: usize,
    /// Regular file nodes.
    pub regular_files: usize,
    /// Symlink nodes.
    pub symlinks: usize,
    /// Hardlink nodes (second names of another node).
    pub hardlinks: usize,
    /// Device and fifo nodes.
    pub other: usize,
    /// Chunk records of regular files.
    pub chunks: usize,
    /// Sum of regular file sizes (hardlinked files counted once), saturating at `u64::MAX`.
    pub file_bytes: u64,
}

/// The layer's tree, ready for lookups and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    nodes: Vec<NodeRec>,
    names: Vec<u8>,
    children: Vec<NodeId>,
    chunks: Vec<ChunkRec>,
    /// The digest of each chunk, at the chunk's position (meaningful where its record says it
    /// has one); empty when no chunk has one.
    chunk_digests: Vec<Digest>,
    /// Every distinct (uid, gid) nodes have, up to [`OWNER_OVERFLOW`] of them, in order of
    /// first use.
    owners: Vec<(u32, u32)>,
    /// (node, uid, gid) of the nodes whose owner did not fit `owners`, sorted by node.
    owner_overflow: Vec<(NodeId, u32, u32)>,
    /// The link counts that are not their kind's default (every directory, multiply-linked
    /// files).
    nlinks: NlinkTable,
    /// (node, first, count) into `xattr_entries`, sorted by node.
    xattr_index: Vec<(NodeId, u32, u32)>,
    /// (name offset, name length, value offset, value length) into `xattr_data`.
    xattr_entries: Vec<(u32, u32, u32, u32)>,
    xattr_data: Vec<u8>,
    /// Whole-file digests of regular files, sorted by node, except where the file has one
    /// chunk whose digest is the same (then the chunk's record holds it).
    file_digests: Vec<(NodeId, Digest)>,
    prefetch_landmark: Option<u64>,
    no_prefetch_landmark: bool,
    stats: Stats,
}

impl Index {
    /// Builds the index from TOC JSON. `data_end` is where payload data must end (the TOC's offset).
    pub fn from_json(toc_json: &[u8], data_end: u64, limits: Limits) -> Result<Index> {
        ParsedToc::parse(toc_json, limits)?.finish(data_end)
    }

    /// Number of nodes (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: there is at least the root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node with id `id`.
    pub fn node(&self, id: NodeId) -> Option<Node> {
        self.rec(id).map(|r| self.view(id, r))
    }

    /// The view of node `id`, whose record is `r`.
    fn view(&self, id: NodeId, r: &NodeRec) -> Node {
        let kind = r.kind();
        let size = match kind {
            Kind::Reg => self.reg_size(r),
            Kind::Symlink => u64::from(r.count),
            Kind::Char | Kind::Block => (u64::from(r.first) << 32) | u64::from(r.count),
            _ => 0,
        };
        let (uid, gid) = match self.owners.get(usize::from(r.owner)) {
            Some(&owner) if r.owner != OWNER_OVERFLOW => owner,
            _ => match self.owner_overflow.binary_search_by_key(&id, |o| o.0) {
                Ok(i) => self.owner_overflow.get(i).map_or((0, 0), |o| (o.1, o.2)),
                Err(_) => (0, 0),
            },
        };
        let nlink = if r.has_nlink() {
            match self.nlinks.binary_search_by_key(&id, |l| l.0) {
                Ok(i) => self.nlinks.get(i).map_or(0, |l| l.1),
                Err(_) => r.default_nlink(),
            }
        } else {
            r.default_nlink()
        };
        let (mtime, mtime_nsec) = r.mtime();
        Node {
            size,
            mtime,
            mtime_nsec,
            kind,
            synthesized: r.is_synthesized(),
            mode: r.mode(),
            uid,
            gid,
            parent: r.parent,
            nlink,
        }
    }

    /// A regular file's size: where its last chunk ends (its chunks tile it, checked when the
    /// index is built), or 0 when it has none.
    fn reg_size(&self, n: &NodeRec) -> u64 {
        self.chunks_of(n).recs.last().map_or(0, ChunkRec::end)
    }

    /// The stored record of node `id`.
    fn rec(&self, id: NodeId) -> Option<&NodeRec> {
        self.nodes.get(id as usize)
    }

    /// All nodes, in id order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = Node> + '_ {
        self.nodes.iter().enumerate().map(|(id, r)| self.view(id as NodeId, r))
    }

    /// The base name of a node (empty for the root).
    pub fn name(&self, id: NodeId) -> &[u8] {
        self.rec(id).map_or(&[][..], |n| self.names_at(n.name_off, u32::from(n.name_len)))
    }

    fn names_at(&self, off: u32, len: u32) -> &[u8] {
        let start = off as usize;
        self.names.get(start..start + len as usize).unwrap_or(&[])
    }

    /// The type of node `id`, read from its record: what [`Index::node`]`(id).kind()` says,
    /// without assembling the rest of the view (owner, link count, size).
    pub fn kind(&self, id: NodeId) -> Option<Kind> {
        self.rec(id).map(NodeRec::kind)
    }

    /// The parent of node `id` (the root is its own), read from its record like
    /// [`Index::kind`].
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.rec(id).map(|r| r.parent)
    }

    /// The inode behind a name: the target of a hardlink, else the node itself.
    pub fn resolve(&self, id: NodeId) -> NodeId {
        match self.rec(id) {
            Some(n) if n.kind() == Kind::Hardlink => n.first,
            _ => id,
        }
    }

    /// The children of a directory, sorted by name (empty for anything else).
    pub fn children(&self, dir: NodeId) -> &[NodeId] {
        match self.rec(dir) {
            Some(n) if n.kind() == Kind::Dir => {
                let start = n.first as usize;
                self.children.get(start..start + n.count as usize).unwrap_or(&[])
            }
            _ => &[],
        }
    }

    /// The child of `dir` called `name` (possibly a hardlink node).
    pub fn lookup(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let children = self.children(dir);
        children.binary_search_by(|&c| self.name(c).cmp(name)).ok().and_then(|i| children.get(i).copied())
    }

    /// Looks up a slash-separated path from the root; "", "/" and "." are the root. Follows no
    /// symlinks; ".." is clamped at the root like the TOC's names.
    pub fn lookup_path(&self, path: &[u8]) -> Option<NodeId> {
        let mut stack: Vec<NodeId> = Vec::new();
        let mut cur = ROOT;
        for comp in path.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => cur = stack.pop().unwrap_or(ROOT),
                name => {
                    stack.push(cur);
                    cur = self.resolve(self.lookup(cur, name)?);
                }
            }
        }
        Some(cur)
    }

    /// Looks up a path from the root following symlinks inside the layer, as a program run
    /// with this layer as its root would: absolute targets start again at the root, ".." stops
    /// at the root, and more than `MAX_SYMLINK_HOPS` expansions fail (a loop). The last
    /// component is followed too. Returns the resolved inode.
    pub fn resolve_path(&self, path: &[u8]) -> Option<NodeId> {
        const MAX_SYMLINK_HOPS: usize = 40;
        // Components still to walk, last first, so a symlink's target is pushed in front.
        let mut pending: Vec<Vec<u8>> = path.split(|&b| b == b'/').rev().map(Vec::from).collect();
        let mut stack: Vec<NodeId> = Vec::new();
        let mut cur = ROOT;
        let mut hops = 0usize;
        while let Some(comp) = pending.pop() {
            match comp.as_slice() {
                b"" | b"." => {}
                b".." => cur = stack.pop().unwrap_or(ROOT),
                name => {
                    let next = self.resolve(self.lookup(cur, name)?);
                    if self.rec(next)?.kind() == Kind::Symlink {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return None;
                        }
                        let target = self.symlink_target(next);
                        if target.first() == Some(&b'/') {
                            stack.clear();
                            cur = ROOT;
                        }
                        pending.extend(target.split(|&b| b == b'/').rev().map(Vec::from));
                    } else {
                        stack.push(cur);
                        cur = next;
                    }
                }
            }
        }
        Some(cur)
    }

    /// The full path of a node, without a leading slash ("" for the root).
    pub fn path(&self, id: NodeId) -> Vec<u8> {
        let mut parts: Vec<NodeId> = Vec::new();
        let mut cur = id;
        while cur != ROOT && parts.len() <= self.nodes.len() {
            parts.push(cur);
            cur = self.rec(cur).map_or(ROOT, |n| n.parent);
        }
        let mut out = Vec::new();
        for (i, &p) in parts.iter().rev().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(self.name(p));
        }
        out
    }

    /// A symlink's target (empty for anything else).
    pub fn symlink_target(&self, id: NodeId) -> &[u8] {
        match self.rec(id) {
            Some(n) if n.kind() == Kind::Symlink => self.names_at(n.first, n.count),
            _ => &[],
        }
    }

    /// A regular file's chunks, ordered by file offset (empty for anything else).
    pub fn chunks(&self, id: NodeId) -> Chunks<'_> {
        match self.rec(id) {
            Some(n) if n.kind() == Kind::Reg => self.chunks_of(n),
            _ => Chunks::EMPTY,
        }
    }

    /// The chunks of a regular file's record.
    fn chunks_of(&self, n: &NodeRec) -> Chunks<'_> {
        let range = n.first as usize..n.first as usize + n.count as usize;
        let recs = self.chunks.get(range.clone()).unwrap_or(&[]);
        Chunks { recs, digests: self.chunk_digests.get(range).unwrap_or(&[]) }
    }

    /// The index in `chunks(id)` of the chunk holding file offset `offset`.
    pub fn chunk_at(&self, id: NodeId, offset: u64) -> Option<usize> {
        self.chunks(id).position_of(offset)
    }

    /// The pieces of a read of bytes `offset..end` of regular file `id` (`end` at most its
    /// size), in order: which chunk holds each and where the piece lies in the chunk and in the
    /// read. The one read loop of every reader of files (the layer's `read_at`, `FileReader`,
    /// front-ends' caches): each decodes a piece's chunk its own way and copies
    /// [`ReadPiece::within`] into [`ReadPiece::at`]. Chunks tile a file exactly (checked when the
    /// index is built), so the pieces cover the range; the walk stops early only at a range past
    /// the file's chunks, which a caller sees as fewer bytes than asked.
    pub fn read_pieces(&self, id: NodeId, offset: u64, end: u64) -> ReadPieces<'_> {
        let chunks = self.chunks(id);
        let next = chunks.position_of(offset).unwrap_or(chunks.len());
        ReadPieces { chunks, next, offset, pos: offset, end }
    }

    /// A node's extended attributes, as (name, value).
    pub fn xattrs(&self, id: NodeId) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let range = match self.xattr_index.binary_search_by_key(&id, |&(n, _, _)| n) {
            Ok(i) => {
                self.xattr_index.get(i).map_or(0..0, |&(_, first, count)| first as usize..(first + count) as usize)
            }
            Err(_) => 0..0,
        };
        self.xattr_entries.get(range).unwrap_or(&[]).iter().map(move |&(no, nl, vo, vl)| {
            let get = |o: u32, l: u32| self.xattr_data.get(o as usize..(o + l) as usize).unwrap_or(&[]);
            (get(no, nl), get(vo, vl))
        })
    }

    /// The `digest` of a whole regular file, when the TOC gives one.
    pub fn file_digest(&self, id: NodeId) -> Option<Digest> {
        let i = self.file_digests.binary_search_by_key(&id, |&(n, _)| n).ok()?;
        self.file_digests.get(i).map(|&(_, digest)| digest)
    }

    /// Blob offset of `.prefetch.landmark`: everything before it is the prioritized region.
    pub fn prefetch_landmark(&self) -> Option<u64> {
        self.prefetch_landmark
    }

    /// Whether the layer says nothing is worth prefetching (`.no.prefetch.landmark`).
    pub fn no_prefetch_landmark(&self) -> bool {
        self.no_prefetch_landmark
    }

    /// Whether any node has extended attributes.
    pub fn has_xattrs(&self) -> bool {
        !self.xattr_index.is_empty()
    }

    /// Counts of what the index holds.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes of heap the index holds (capacity, not just length).
    pub fn heap_bytes(&self) -> usize {
        use core::mem::size_of;
        self.nodes.capacity() * size_of::<NodeRec>()
            + self.names.capacity()
            + self.children.capacity() * size_of::<NodeId>()
            + self.chunks.capacity() * size_of::<ChunkRec>()
            + self.chunk_digests.capacity() * size_of::<Digest>()
            + self.owners.capacity() * size_of::<(u32, u32)>()
            + self.owner_overflow.capacity() * size_of::<(NodeId, u32, u32)>()
            + self.nlinks.capacity() * size_of::<(NodeId, u32)>()
            + self.xattr_index.capacity() * size_of::<(NodeId, u32, u32)>()
            + self.xattr_entries.capacity() * size_of::<(u32, u32, u32, u32)>()
            + self.xattr_data.capacity()
            + self.file_digests.capacity() * size_of::<(NodeId, Digest)>()
    }
}

/// One non-chunk TOC entry while building.
#[derive(Debug, Clone, Copy)]
struct Rec {
    /// Cleaned full path in `Builder::paths`.
    path_off: u32,
    path_len: u32,
    kind: Kind,
    mode: u16,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: u32,
    /// Size, or packed device numbers.
    size: u64,
    /// Symlink target or cleaned hardlink target path, in `Builder::paths`.
    link_off: u32,
    link_len: u32,
    chunk_first: u32,
    chunk_count: u32,
    xattr_first: u32,
    xattr_count: u32,
    digest: Option<Digest>,
    /// Position in the TOC, for messages.
    entry: u32,
}

struct Builder {
    limits: Limits,
    recs: Vec<Rec>,
    paths: Vec<u8>,
    chunks: Vec<Chunk>,
    xattr_entries: Vec<(u32, u32, u32, u32)>,
    xattr_data: Vec<u8>,
    scratch: Vec<u8>,
    /// The record chunk entries attach to: the latest entry, if it is a regular file.
    current_reg: Option<usize>,
    entries: usize,
    /// For the second half of a split TOC: chunk entries met before any other entry.
    leading_chunks: Option<Vec<ChunkEntry>>,
}

/// Where a chunk's bytes are, as the TOC gives it (checked when the chunk is stored).
#[derive(Clone, Copy)]
struct ChunkPlace {
    offset: i64,
    inner_offset: i64,
    /// Whether the chunk is all zeros; `None` for an unknown chunkType.
    zeros: Option<bool>,
}

impl ChunkPlace {
    fn of(e: &RawEntry<'_>) -> ChunkPlace {
        let zeros = match e.chunk_type {
            None | Some("") | Some("data") => Some(false),
            Some("zeros") => Some(true),
            Some(_) => None,
        };
        ChunkPlace { offset: e.offset, inner_offset: e.inner_offset, zeros }
    }
}

/// A `chunk` entry as the TOC gives it, not yet checked or attached to its file.
#[derive(Clone, Copy)]
struct ChunkEntry {
    place: ChunkPlace,
    chunk_offset: i64,
    chunk_size: i64,
    /// `Some(None)`: present but not a digest.
    chunk_digest: Option<Option<Digest>>,
    /// Position in the TOC.
    entry: usize,
}

impl ChunkEntry {
    fn of(e: &RawEntry<'_>, entry: usize) -> ChunkEntry {
        ChunkEntry {
            place: ChunkPlace::of(e),
            chunk_offset: e.chunk_offset,
            chunk_size: e.chunk_size,
            chunk_digest: e.chunk_digest.map(Digest::parse),
            entry,
        }
    }
}

/// A TOC's entries, read from its text but not yet made into a tree. The text is no longer
/// needed at this point: callers that own it can free it before [`ParsedToc::finish`], which
/// is when the index's own tables are allocated.
pub(crate) struct ParsedToc {
    builder: Builder,
    /// The second half of a TOC read in two, joined to `builder` by `finish`.
    tail: Option<Builder>,
    version: i64,
}

impl ParsedToc {
    /// Reads every entry of `toc_json` in one pass.
    pub(crate) fn parse(toc_json: &[u8], limits: Limits) -> Result<ParsedToc> {
        let mut builder = Builder::new(limits);
        let version = json::parse_toc(toc_json, &mut builder)?;
        Ok(ParsedToc { builder, tail: None, version })
    }

    /// Reads a TOC cut at `split` (see [`json::Split`]), its two halves on two threads.
    /// `toc_json` is the TOC text with the split's comma replaced by `[`. `None` when the cut
    /// does not hold or a half fails; then call [`ParsedToc::parse`] instead. Otherwise
    /// [`ParsedToc::finish`] gives what it gives after that one pass, errors included.
    #[cfg(feature = "std")]
    pub(crate) fn parse_split(toc_json: &[u8], split: json::Split, limits: Limits) -> Option<ParsedToc> {
        let tail_text = toc_json.get(split.tail())?;
        let head_text = toc_json.get(..split.comma)?;
        // The tail's builder is allocated here, not on its thread: glibc grows a block in the
        // arena it came from, and a second arena would keep its freed pages, adding about a
        // third to the peak memory of opening.
        let mut tail = Builder::with_capacity_for(limits, tail_text.len());
        tail.leading_chunks = Some(Vec::new());
        let (head, tail) = std::thread::scope(|scope| {
            let tail = std::thread::Builder::new()
                .name("crfs-toc-tail".into())
                .spawn_scoped(scope, move || json::parse_toc_tail(tail_text, &mut tail).then_some(tail));
            // Room for the whole TOC, so that joining the tail needs no reallocation.
            let mut head = Builder::with_capacity_for(limits, toc_json.len());
            let head = json::parse_toc_head(head_text, &mut head).map(|version| (version, head));
            (head, tail.ok().and_then(|t| t.join().ok()).flatten())
        });
        let ((version, builder), tail) = (head?, tail?);
        Some(ParsedToc { builder, tail: Some(tail), version })
    }

    /// Makes the tree.
    pub(crate) fn finish(self, data_end: u64) -> Result<Index> {
        let ParsedToc { mut builder, tail, version } = self;
        if let Some(tail) = tail {
            builder.append(tail)?;
        }
        if version != 1 {
            return Err(Error::UnsupportedVersion(version));
        }
        builder.finish(data_end)
    }
}

/// How many of the previous node's ancestors are tried as a node's parent before searching.
const PARENT_WALK: usize = 6;

fn entry_err(entry: usize, what: &'static str) -> Error {
    Error::BadEntry { entry, what }
}

fn to_u32(v: i64, entry: usize, what: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| entry_err(entry, what))
}

fn to_u64(v: i64, entry: usize, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| entry_err(entry, what))
}

fn len_u32(len: usize, entry: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| entry_err(entry, "TOC strings exceed 4 GiB"))
}

impl Builder {
    /// A builder with room for what `text_len` bytes of TOC typically hold (an entry takes
    /// 200 to 400 bytes of JSON), so its tables are allocated up front.
    #[cfg(feature = "std")]
    fn with_capacity_for(limits: Limits, text_len: usize) -> Builder {
        let entries = text_len / 256;
        let mut b = Builder::new(limits);
        b.recs.reserve(entries);
        b.paths.reserve(entries * 48);
        b.chunks.reserve(entries);
        b.xattr_entries.reserve(16);
        b.xattr_data.reserve(256);
        b.scratch.reserve(256);
        b
    }

    fn new(limits: Limits) -> Builder {
        Builder {
            limits,
            recs: Vec::new(),
            paths: Vec::new(),
            chunks: Vec::new(),
            xattr_entries: Vec::new(),
            xattr_data: Vec::new(),
            scratch: Vec::new(),
            current_reg: None,
            entries: 0,
            leading_chunks: None,
        }
    }

    /// Unescapes a raw JSON string into `scratch`.
    fn unescape(&mut self, raw: &str, entry: usize) -> Result<()> {
        self.scratch.clear();
        json::unescape(raw, &mut self.scratch).map_err(|what| entry_err(entry, what))
    }

    /// The cleaned path at `off`, `len` in `paths` (recorded when it was added, so in range).
    fn path(&self, off: u32, len: u32) -> &[u8] {
        self.paths.get(off as usize..(off + len) as usize).unwrap_or_default()
    }

    /// The cleaned path of record `rec` ("" for no record).
    fn rec_path(&self, rec: u32) -> &[u8] {
        self.recs.get(rec as usize).map_or(&[], |r| self.path(r.path_off, r.path_len))
    }

    /// Whether record `rec` exists and is a directory.
    fn rec_is_dir(&self, rec: u32) -> bool {
        self.recs.get(rec as usize).is_some_and(|r| r.kind == Kind::Dir)
    }

    fn add_chunk(&mut self, e: &RawEntry<'_>, entry: usize) -> Result<()> {
        // Like the reference: a chunk belongs to the latest non-chunk entry; if that is not a
        // regular file there is nothing to attach to, and the chunk is ignored.
        let Some(reg) = self.current_reg else {
            // In a TOC's second half, chunks before any other entry belong to the first half's
            // last entry: keep them for `append`.
            if let Some(leading) = self.leading_chunks.as_mut()
                && self.recs.is_empty()
            {
                leading.push(ChunkEntry::of(e, entry));
            }
            return Ok(());
        };
        self.attach_chunk(reg, ChunkEntry::of(e, entry))
    }

    fn attach_chunk(&mut self, reg: usize, c: ChunkEntry) -> Result<()> {
        let entry = c.entry;
        let file_size = self.recs.get(reg).ok_or(entry_err(entry, "chunk of no file"))?.size;
        let file_offset = to_u64(c.chunk_offset, entry, "negative chunkOffset")?;
        let mut size = to_u64(c.chunk_size, entry, "negative chunkSize")?;
        if size == 0 {
            size =
                file_size.checked_sub(file_offset).ok_or(entry_err(entry, "chunkOffset past the end of the file"))?;
        }
        let digest = match c.chunk_digest {
            Some(d) => Some(d.ok_or(entry_err(entry, "invalid chunkDigest"))?),
            None => None,
        };
        self.push_chunk(reg, c.place, entry, file_offset, size, digest)
    }

    fn push_chunk(
        &mut self,
        reg: usize,
        place: ChunkPlace,
        entry: usize,
        file_offset: u64,
        size: u64,
        digest: Option<Digest>,
    ) -> Result<()> {
        let zeros = place.zeros.ok_or(entry_err(entry, "unknown chunkType"))?;
        self.chunks.push(Chunk {
            offset: to_u64(place.offset, entry, "negative offset")?,
            compressed_end: 0,
            inner_offset: to_u64(place.inner_offset, entry, "negative innerOffset")?,
            file_offset,
            size,
            digest,
            zeros,
        });
        self.recs.get_mut(reg).ok_or(entry_err(entry, "chunk of no file"))?.chunk_count += 1;
        Ok(())
    }

    /// Appends the builder of a TOC's second half (made with `leading_chunks` on, and complete
    /// without error), so that `self` holds what one pass over the whole TOC would have built,
    /// or fails as that pass would have.
    fn append(&mut self, tail: Builder) -> Result<()> {
        let Builder { recs, paths, chunks, xattr_entries, xattr_data, current_reg, entries, leading_chunks, .. } = tail;
        let too_many = |count: usize, limits: Limits| Error::TooLarge {
            what: "TOC entry count",
            size: count as u64,
            limit: limits.max_entries as u64,
        };
        for c in leading_chunks.unwrap_or_default() {
            let entry = self.entries + c.entry;
            if entry + 1 > self.limits.max_entries {
                return Err(too_many(entry + 1, self.limits));
            }
            if let Some(reg) = self.current_reg {
                self.attach_chunk(reg, ChunkEntry { entry, ..c })?;
            }
        }
        if self.entries + entries > self.limits.max_entries {
            return Err(too_many(self.limits.max_entries + 1, self.limits));
        }
        // Offsets cannot overflow: each table is smaller than the TOC text, which is below
        // 4 GiB when it is split. Checked all the same.
        let last = self.entries + entries;
        let base = |len: usize| len_u32(len, last);
        let shifted = |off: u32, by: u32| off.checked_add(by).ok_or(entry_err(last, "TOC strings exceed 4 GiB"));
        let (path_base, chunk_base) = (base(self.paths.len())?, base(self.chunks.len())?);
        let (xattr_base, xattr_data_base) = (base(self.xattr_entries.len())?, base(self.xattr_data.len())?);
        let (entry_base, rec_base) = (base(self.entries)?, self.recs.len());
        base(self.paths.len() + paths.len())?;
        base(self.chunks.len() + chunks.len())?;
        base(self.xattr_entries.len() + xattr_entries.len())?;
        base(self.xattr_data.len() + xattr_data.len())?;
        self.recs.reserve(recs.len());
        for mut r in recs {
            r.path_off = shifted(r.path_off, path_base)?;
            r.link_off = shifted(r.link_off, path_base)?;
            r.chunk_first = shifted(r.chunk_first, chunk_base)?;
            r.xattr_first = shifted(r.xattr_first, xattr_base)?;
            r.entry = shifted(r.entry, entry_base)?;
            self.recs.push(r);
        }
        self.paths.extend_from_slice(&paths);
        drop(paths);
        self.chunks.extend_from_slice(&chunks);
        drop(chunks);
        self.xattr_entries.reserve(xattr_entries.len());
        for (name_off, name_len, value_off, value_len) in xattr_entries {
            let (name_off, value_off) = (shifted(name_off, xattr_data_base)?, shifted(value_off, xattr_data_base)?);
            self.xattr_entries.push((name_off, name_len, value_off, value_len));
        }
        self.xattr_data.extend_from_slice(&xattr_data);
        self.entries = last;
        self.current_reg = current_reg.map(|r| r + rec_base);
        Ok(())
    }

    fn add_entry(&mut self, e: &RawEntry<'_>, kind: Kind, entry: usize) -> Result<()> {
        let raw_name = e.name.ok_or(entry_err(entry, "no name"))?;
        self.unescape(raw_name, entry)?;
        let path_off = len_u32(self.paths.len(), entry)?;
        let scratch = core::mem::take(&mut self.scratch);
        let clean = path::clean_into(&scratch, &mut self.paths);
        self.scratch = scratch;
        if !clean {
            return Err(entry_err(entry, "name contains a NUL byte"));
        }
        let path_len = len_u32(self.paths.len() - path_off as usize, entry)?;
        let path = self.paths.get(path_off as usize..).unwrap_or_default();
        if path.split(|&b| b == b'/').any(|c| c.len() > usize::from(u16::MAX)) {
            return Err(entry_err(entry, "name component longer than 65535 bytes"));
        }

        let (mut link_off, mut link_len) = (0, 0);
        if matches!(kind, Kind::Symlink | Kind::Hardlink) {
            self.unescape(e.link_name.unwrap_or(""), entry)?;
            link_off = len_u32(self.paths.len(), entry)?;
            if kind == Kind::Hardlink {
                let scratch = core::mem::take(&mut self.scratch);
                let clean = path::clean_into(&scratch, &mut self.paths);
                self.scratch = scratch;
                if !clean {
                    return Err(entry_err(entry, "linkName contains a NUL byte"));
                }
            } else {
                if self.scratch.contains(&0) {
                    return Err(entry_err(entry, "linkName contains a NUL byte"));
                }
                self.paths.extend_from_slice(&self.scratch);
            }
            link_len = len_u32(self.paths.len() - link_off as usize, entry)?;
        }

        let size = match kind {
            Kind::Reg => to_u64(e.size, entry, "negative size")?,
            Kind::Char | Kind::Block => {
                let major = to_u32(e.dev_major, entry, "devMajor out of range")?;
                let minor = to_u32(e.dev_minor, entry, "devMinor out of range")?;
                (u64::from(major) << 32) | u64::from(minor)
            }
            Kind::Symlink => u64::from(link_len),
            _ => 0,
        };
        let mode = to_u64(e.mode, entry, "negative mode")?;
        let (mtime, mtime_nsec) = e.modtime.and_then(|t| crate::time::parse_rfc3339(t.as_bytes())).unwrap_or((0, 0));

        let xattr_first = len_u32(self.xattr_entries.len(), entry)?;
        for &(name, value) in &e.xattrs {
            self.unescape(name, entry)?;
            // listxattr separates names with NULs: a name holding one would forge others.
            if self.scratch.contains(&0) {
                return Err(entry_err(entry, "xattr name contains a NUL byte"));
            }
            let name_off = len_u32(self.xattr_data.len(), entry)?;
            let name_len = len_u32(self.scratch.len(), entry)?;
            self.xattr_data.extend_from_slice(&self.scratch);
            self.unescape(value, entry)?;
            let value_off = len_u32(self.xattr_data.len(), entry)?;
            base64::engine::general_purpose::STANDARD
                .decode_vec(&self.scratch, &mut self.xattr_data)
                .map_err(|_| entry_err(entry, "xattr value is not base64"))?;
            let value_len = len_u32(self.xattr_data.len() - value_off as usize, entry)?;
            self.xattr_entries.push((name_off, name_len, value_off, value_len));
        }
        let xattr_count = len_u32(self.xattr_entries.len(), entry)? - xattr_first;

        let digest = match e.digest {
            Some(d) if kind == Kind::Reg => Some(Digest::parse(d).ok_or(entry_err(entry, "invalid digest"))?),
            _ => None,
        };

        self.recs.push(Rec {
            path_off,
            path_len,
            kind,
            mode: (mode & 0o7777) as u16,
            uid: to_u32(e.uid, entry, "uid out of range")?,
            gid: to_u32(e.gid, entry, "gid out of range")?,
            mtime,
            mtime_nsec,
            size,
            link_off,
            link_len,
            chunk_first: len_u32(self.chunks.len(), entry)?,
            chunk_count: 0,
            xattr_first,
            xattr_count,
            digest,
            entry: len_u32(entry, entry)?,
        });
        let rec = self.recs.len() - 1;
        self.current_reg = None;
        if kind == Kind::Reg {
            self.current_reg = Some(rec);
            if size > 0 {
                // The regular file's entry is its first chunk. Chunked when 0 < chunkSize < size
                // (or, in containers/storage's dialect, whenever chunkSize is given).
                let chunk_size = to_u64(e.chunk_size, entry, "negative chunkSize")?;
                let first_size = if chunk_size > 0 && chunk_size <= size { chunk_size } else { size };
                let chunk_digest = match e.chunk_digest {
                    // A single-chunk file usually repeats its digest: parse it once.
                    Some(d) if digest.is_some() && e.digest == Some(d) => digest,
                    Some(d) => Some(Digest::parse(d).ok_or(entry_err(entry, "invalid chunkDigest"))?),
                    None if first_size == size => digest,
                    None => None,
                };
                if e.chunk_offset != 0 {
                    return Err(entry_err(entry, "regular file entry with a non-zero chunkOffset"));
                }
                self.push_chunk(rec, ChunkPlace::of(e), entry, 0, first_size, chunk_digest)?;
            }
        }
        Ok(())
    }

    /// Makes the tree from the records, in phases: landmarks out and records in path order
    /// ([`Builder::sorted_records`]), one winner per path ([`Builder::winners`]), missing
    /// parents synthesised ([`Builder::synthesise_parents`]), nodes built
    /// ([`Builder::build_nodes`]), hardlinks resolved ([`Builder::resolve_hardlinks`]); then,
    /// with the records and paths freed, link counts and child lists ([`link_children`]),
    /// compressed spans ([`set_compressed_spans`]) and statistics ([`Stats::of`]).
    fn finish(self, data_end: u64) -> Result<Index> {
        let (order, landmarks) = self.sorted_records();
        let mut winners = self.winners(order)?;
        self.synthesise_parents(&mut winners)?;
        let Built { mut nodes, names, mut chunks, chunk_digests, owners, xattr_index, file_digests, links } =
            self.build_nodes(&winners.paths, data_end)?;
        self.resolve_hardlinks(&winners.paths, &mut nodes, &links)?;
        drop(winners);
        let Builder { entries: toc_entries, xattr_entries, xattr_data, .. } = self;
        let (children, nlinks) = link_children(&mut nodes)?;
        set_compressed_spans(&mut chunks, data_end)?;
        let mut index = Index {
            nodes,
            names,
            children,
            chunks,
            chunk_digests,
            owners: owners.table,
            owner_overflow: owners.overflow,
            nlinks,
            xattr_index,
            xattr_entries,
            xattr_data,
            file_digests,
            prefetch_landmark: landmarks.prefetch,
            no_prefetch_landmark: landmarks.no_prefetch,
            stats: Stats::default(),
        };
        index.stats = Stats::of(&index, toc_entries);
        index.nodes.shrink_to_fit();
        index.names.shrink_to_fit();
        index.owners.shrink_to_fit();
        index.owner_overflow.shrink_to_fit();
        index.xattr_index.shrink_to_fit();
        index.xattr_entries.shrink_to_fit();
        index.xattr_data.shrink_to_fit();
        index.file_digests.shrink_to_fit();
        Ok(index)
    }

    /// Phase 1: the records that make the tree, sorted by path, keeping TOC order among equal
    /// paths (the sort is stable), so the last record of each path is the last of its run.
    /// Landmarks leave the tree; their offsets stay.
    fn sorted_records(&self) -> (Vec<u32>, Landmarks) {
        let mut landmarks = Landmarks { prefetch: None, no_prefetch: false };
        let mut order: Vec<u32> = Vec::with_capacity(self.recs.len());
        for (i, r) in self.recs.iter().enumerate() {
            let path = self.path(r.path_off, r.path_len);
            if path == PREFETCH_LANDMARK {
                let first = (r.chunk_count > 0).then(|| self.chunks.get(r.chunk_first as usize)).flatten();
                landmarks.prefetch = first.map(|c| c.offset);
                continue;
            }
            if path == NO_PREFETCH_LANDMARK {
                landmarks.no_prefetch = true;
                continue;
            }
            order.push(i as u32);
        }
        // TOCs come from tar streams whose entries are mostly in path order already, and the
        // stable sort finds and merges such runs instead of comparing afresh.
        order.sort_by(|&a, &b| self.rec_path(a).cmp(self.rec_path(b)));
        (order, landmarks)
    }

    /// Phase 2: one winner per path, the last record of each (the root, always a directory,
    /// ignores a non-directory record), plus the root when no record names it.
    fn winners(&self, order: Vec<u32>) -> Result<Winners> {
        let mut paths: Vec<(u32, u32, u32)> = Vec::with_capacity(order.len() + 1);
        let mut last_dir: Vec<u32> = Vec::with_capacity(order.len() + 1);
        for group in order.chunk_by(|&a, &b| self.rec_path(a) == self.rec_path(b)) {
            let (Some(r0), Some(&winner)) = (group.first().and_then(|&r| self.recs.get(r as usize)), group.last())
            else {
                return Err(Error::Corrupt("TOC record out of range"));
            };
            let dir = group.iter().rev().copied().find(|&r| self.rec_is_dir(r)).unwrap_or(SYNTH);
            let is_root = r0.path_len == 0;
            let winner = if is_root && !self.rec_is_dir(winner) { dir } else { winner };
            paths.push((winner, r0.path_off, r0.path_len));
            last_dir.push(dir);
        }
        drop(order);
        if paths.first().is_none_or(|w| w.2 != 0) {
            paths.insert(0, (SYNTH, 0, 0));
            last_dir.insert(0, SYNTH);
        }
        Ok(Winners { paths, last_dir })
    }

    /// Phase 3: synthesise missing parents; a parent that is not a directory becomes one.
    ///
    /// Walking up from each path stops at the first ancestor that is also an ancestor of the
    /// previous path: paths starting with "q/" are contiguous in sorted order, so that
    /// ancestor and everything above it were handled already. Each missing directory is thus
    /// found once, not once per descendant. Their paths are prefixes of input paths but are
    /// compared whole, so their total length is bounded by a multiple of the input's.
    fn synthesise_parents(&self, winners: &mut Winners) -> Result<()> {
        let Winners { paths: winners, last_dir: last_dir_of_group } = winners;
        let synth_limit = self.paths.len().saturating_mul(8).saturating_add(16 << 20);
        let mut synth_bytes = 0usize;
        let mut missing: Vec<(u32, u32)> = Vec::new();
        for w in 1..winners.len() {
            let (Some(&(_, prev_off, prev_len)), Some(&(_, base, len))) = (winners.get(w - 1), winners.get(w)) else {
                break;
            };
            let mut p = parent_of(self.path(base, len));
            let prev = self.path(prev_off, prev_len);
            loop {
                if !p.is_empty() && prev.len() > p.len() && prev.starts_with(p) && prev.get(p.len()) == Some(&b'/') {
                    break;
                }
                match find(winners, &self.paths, p) {
                    Ok(k) => {
                        let last_dir = last_dir_of_group.get(k).copied().unwrap_or(SYNTH);
                        if let Some(winner) = winners.get_mut(k)
                            && winner.0 != SYNTH
                            && !self.rec_is_dir(winner.0)
                        {
                            winner.0 = last_dir;
                        }
                        break;
                    }
                    Err(_) => {
                        synth_bytes = synth_bytes.saturating_add(p.len());
                        if synth_bytes > synth_limit {
                            return Err(Error::TooLarge {
                                what: "paths of synthesised parent directories",
                                size: synth_bytes as u64,
                                limit: synth_limit as u64,
                            });
                        }
                        if winners.len() + missing.len() > self.limits.max_entries.saturating_add(1) {
                            return Err(Error::TooLarge {
                                what: "tree",
                                size: (winners.len() + missing.len()) as u64,
                                limit: self.limits.max_entries as u64,
                            });
                        }
                        missing.push((base, p.len() as u32));
                        p = parent_of(p);
                    }
                }
            }
        }
        if !missing.is_empty() {
            missing.sort_by(|a, b| self.path(a.0, a.1).cmp(self.path(b.0, b.1)));
            missing.dedup_by(|a, b| self.path(a.0, a.1) == self.path(b.0, b.1));
            winners.extend(missing.iter().map(|&(off, len)| (SYNTH, off, len)));
            drop(missing);
            winners.sort_by(|a, b| self.path(a.1, a.2).cmp(self.path(b.1, b.2)));
        }
        if winners.len() > self.limits.max_entries.saturating_add(1) || winners.len() > u32::MAX as usize / 2 {
            return Err(Error::TooLarge {
                what: "tree",
                size: winners.len() as u64,
                limit: self.limits.max_entries as u64,
            });
        }
        Ok(())
    }

    /// Phase 4: the nodes, in path order (the root first), with their names, chunk tables,
    /// xattr and digest side tables, and the hardlinks still to resolve.
    fn build_nodes(&self, winners: &[(u32, u32, u32)], data_end: u64) -> Result<Built> {
        // The chunk tables get exactly the room the tree's files need, and the digest table
        // none when no chunk has a digest.
        let (mut chunk_total, mut any_digest) = (0usize, false);
        for &(rec, ..) in winners {
            if let Some(r) = self.recs.get(rec as usize).filter(|r| r.kind == Kind::Reg) {
                let src = self.chunks.get(r.chunk_first as usize..(r.chunk_first + r.chunk_count) as usize);
                chunk_total = chunk_total.saturating_add(r.chunk_count as usize);
                any_digest |= src.unwrap_or_default().iter().any(|c| c.digest.is_some());
            }
        }
        let mut nodes: Vec<NodeRec> = Vec::with_capacity(winners.len());
        let mut names: Vec<u8> = Vec::new();
        let mut chunks: Vec<ChunkRec> = Vec::with_capacity(chunk_total);
        let mut chunk_digests: Vec<Digest> = Vec::with_capacity(if any_digest { chunk_total } else { 0 });
        let mut owners = Owners::default();
        let mut xattr_index: Vec<(NodeId, u32, u32)> = Vec::new();
        let mut file_digests: Vec<(NodeId, Digest)> = Vec::new();
        let mut links: Vec<(NodeId, u32, u32, u32)> = Vec::new();
        for (id, &(rec, off, len)) in winners.iter().enumerate() {
            let id = id as NodeId;
            let path = self.path(off, len);
            let parent = if id == ROOT {
                ROOT
            } else {
                let parent_path = parent_of(path);
                // In path order the parent is usually the previous node or one of its nearest
                // ancestors (siblings and a directory's first child follow each other): try a
                // few of those before a binary search over every path.
                let mut candidate = id - 1;
                let mut near = None;
                for _ in 0..PARENT_WALK {
                    let Some(&(_, c_off, c_len)) = winners.get(candidate as usize) else { break };
                    if c_len as usize == parent_path.len() && self.path(c_off, c_len) == parent_path {
                        near = Some(candidate);
                        break;
                    }
                    if candidate == ROOT {
                        break;
                    }
                    // Every candidate is below `id`, so its node is built.
                    let Some(built) = nodes.get(candidate as usize) else { break };
                    candidate = built.parent;
                }
                match near {
                    Some(p) => p,
                    None => find(winners, &self.paths, parent_path)
                        .map_err(|_| Error::BadEntry { entry: 0, what: "lost parent" })?
                        as NodeId,
                }
            };
            let base = base_of(path);
            let name_off = len_u32(names.len(), 0)?;
            names.extend_from_slice(base);
            let mut node = NodeRec {
                parent,
                name_off,
                first: 0,
                count: 0,
                mtime_lo: 0,
                nsec: 0,
                name_len: base.len() as u16,
                mode_kind: 0,
                owner: 0,
                mtime_hi: 0,
            };
            node.set_kind_mode(Kind::Dir, 0o755, rec == SYNTH);
            let mut owner = (0, 0);
            if rec != SYNTH {
                let r = *self.recs.get(rec as usize).ok_or(Error::Corrupt("TOC record out of range"))?;
                if !node.set_mtime(r.mtime, r.mtime_nsec) {
                    return Err(entry_err(r.entry as usize, "modtime out of range"));
                }
                node.set_kind_mode(r.kind, r.mode, false);
                owner = (r.uid, r.gid);
                match r.kind {
                    Kind::Reg => {
                        let src = self.chunks.get(r.chunk_first as usize..(r.chunk_first + r.chunk_count) as usize);
                        let src = src.ok_or(entry_err(r.entry as usize, "chunk table out of range"))?;
                        node.first = len_u32(chunks.len(), r.entry as usize)?;
                        node.count = r.chunk_count;
                        check_tiling(src, r.size, data_end, r.entry as usize)?;
                        for c in src {
                            chunks.push(ChunkRec::of(c)?);
                            if any_digest {
                                chunk_digests.push(c.digest.unwrap_or_default());
                            }
                        }
                        if let Some(d) = r.digest {
                            let single_same = matches!(src, [only] if only.digest == Some(d));
                            if !single_same {
                                file_digests.push((id, d));
                            }
                        }
                    }
                    Kind::Symlink => {
                        node.first = len_u32(names.len(), r.entry as usize)?;
                        node.count = r.link_len;
                        names.extend_from_slice(self.path(r.link_off, r.link_len));
                    }
                    Kind::Hardlink => links.push((id, r.link_off, r.link_len, r.entry)),
                    Kind::Char | Kind::Block => {
                        node.first = (r.size >> 32) as u32;
                        node.count = r.size as u32;
                    }
                    Kind::Dir | Kind::Fifo => {}
                }
                if r.xattr_count > 0 {
                    xattr_index.push((id, r.xattr_first, r.xattr_count));
                }
            }
            node.owner = owners.slot(id, owner);
            nodes.push(node);
        }
        Ok(Built { nodes, names, chunks, chunk_digests, owners, xattr_index, file_digests, links })
    }

    /// Phase 5: every hardlink node points at its final target (the rules are in `hardlink`).
    /// `links` is in id order.
    fn resolve_hardlinks(
        &self,
        winners: &[(u32, u32, u32)],
        nodes: &mut [NodeRec],
        links: &[(NodeId, u32, u32, u32)],
    ) -> Result<()> {
        let mut direct: Vec<hardlink::Target> = Vec::with_capacity(links.len());
        for &(_, off, len, _) in links {
            let target = match find(winners, &self.paths, self.path(off, len)) {
                Err(_) => hardlink::Target::Missing,
                Ok(node) => match links.binary_search_by_key(&(node as NodeId), |l| l.0) {
                    Ok(k) => hardlink::Target::Link(k as u32),
                    Err(_) if nodes.get(node).is_none_or(|n| n.kind() == Kind::Dir) => hardlink::Target::Dir,
                    Err(_) => hardlink::Target::Final(node as NodeId),
                },
            };
            direct.push(target);
        }
        let resolved = hardlink::resolve(&direct).map_err(|(link, fault)| Error::BadHardlink {
            entry: links.get(link).map_or(0, |l| l.3 as usize),
            what: match fault {
                hardlink::Fault::Missing => "target does not exist",
                hardlink::Fault::Dir => "target is a directory",
                hardlink::Fault::Cycle => "hardlinks form a cycle",
            },
        })?;
        for (&(id, ..), &target) in links.iter().zip(&resolved) {
            nodes.get_mut(id as usize).ok_or(NO_NODE)?.first = target;
        }
        Ok(())
    }
}

/// A record number that stands for a synthesised directory.
const SYNTH: u32 = u32::MAX;

/// Parents and hardlink targets are found among the nodes, so every id met after the nodes are
/// built names one: a miss means the builder is broken, not the TOC.
const NO_NODE: Error = Error::Corrupt("node id out of range");

/// What the landmarks say, once they have left the tree.
struct Landmarks {
    /// The offset of `.prefetch.landmark`'s data: prioritized files end there.
    prefetch: Option<u64>,
    /// Whether `.no.prefetch.landmark` was present.
    no_prefetch: bool,
}

/// One entry per path of the tree, in path order.
struct Winners {
    /// (record, or [`SYNTH`] for a synthesised directory; path offset; path length).
    paths: Vec<(u32, u32, u32)>,
    /// Per path: its latest directory record, used when the path must be a directory.
    last_dir: Vec<u32>,
}

/// What [`Builder::build_nodes`] makes.
struct Built {
    nodes: Vec<NodeRec>,
    names: Vec<u8>,
    chunks: Vec<ChunkRec>,
    chunk_digests: Vec<Digest>,
    owners: Owners,
    xattr_index: Vec<(NodeId, u32, u32)>,
    file_digests: Vec<(NodeId, Digest)>,
    /// Hardlink nodes: (id, target path offset, target path length, TOC entry).
    links: Vec<(NodeId, u32, u32, u32)>,
}

/// The position of path `p` among the winners, sorted by path.
fn find(winners: &[(u32, u32, u32)], paths: &[u8], p: &[u8]) -> core::result::Result<usize, usize> {
    winners.binary_search_by(|w| paths.get(w.1 as usize..(w.1 + w.2) as usize).unwrap_or_default().cmp(p))
}

/// (node, link count), sorted by node.
type NlinkTable = Vec<(NodeId, u32)>;

/// The owner table as it is built: each distinct (uid, gid) gets the next slot, until
/// [`OWNER_OVERFLOW`] of them are taken; nodes with any further owner keep theirs in `overflow`.
#[derive(Default)]
struct Owners {
    table: Vec<(u32, u32)>,
    slots: BTreeMap<(u32, u32), u16>,
    overflow: Vec<(NodeId, u32, u32)>,
}

impl Owners {
    /// The slot of node `id`'s owner (nodes come in id order, so `overflow` stays sorted).
    fn slot(&mut self, id: NodeId, owner: (u32, u32)) -> u16 {
        // Neighbours mostly share an owner: try the latest slot before the map.
        if let Some(last) = self.table.len().checked_sub(1)
            && self.table.get(last) == Some(&owner)
        {
            return last as u16;
        }
        if let Some(&slot) = self.slots.get(&owner) {
            return slot;
        }
        if self.table.len() < usize::from(OWNER_OVERFLOW) {
            let slot = self.table.len() as u16;
            self.table.push(owner);
            self.slots.insert(owner, slot);
            return slot;
        }
        self.overflow.push((id, owner.0, owner.1));
        OWNER_OVERFLOW
    }
}

/// Phase 6: link counts and child lists. Nodes are in path order, so each parent's children
/// come out in name order. Returns the child lists and the link counts that differ from their
/// kind's default (flagged in their nodes).
fn link_children(nodes: &mut [NodeRec]) -> Result<(Vec<NodeId>, NlinkTable)> {
    let mut child_pairs: Vec<(NodeId, NodeId)> = Vec::with_capacity(nodes.len());
    let mut nlink: Vec<u32> = alloc::vec![0; nodes.len()];
    for id in 1..nodes.len() {
        let n = *nodes.get(id).ok_or(NO_NODE)?;
        child_pairs.push((n.parent, id as NodeId));
        let inode = if n.kind() == Kind::Hardlink { n.first } else { id as NodeId };
        *nlink.get_mut(inode as usize).ok_or(NO_NODE)? += 1;
        if n.kind() == Kind::Dir {
            *nlink.get_mut(n.parent as usize).ok_or(NO_NODE)? += 1;
        }
    }
    for (n, count) in nodes.iter().zip(nlink.iter_mut()).filter(|(n, _)| n.kind() == Kind::Dir) {
        // "." and the name in the parent (the root's own "..").
        *count += if n.parent == ROOT && n.name_len == 0 { 2 } else { 1 };
    }
    let differ = |(n, &count): (&NodeRec, &u32)| count != n.default_nlink();
    let mut nlinks = Vec::with_capacity(nodes.iter().zip(&nlink).filter(|&p| differ(p)).count());
    for (id, (n, &count)) in nodes.iter_mut().zip(&nlink).enumerate() {
        if differ((n, &count)) {
            n.nsec |= NSEC_NLINK;
            nlinks.push((id as NodeId, count));
        }
    }
    drop(nlink);
    child_pairs.sort_by_key(|&(parent, _)| parent);
    let children: Vec<NodeId> = child_pairs.iter().map(|&(_, c)| c).collect();
    let mut start = 0usize;
    for siblings in child_pairs.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(parent, _)) = siblings.first() else { continue };
        let parent = nodes.get_mut(parent as usize).ok_or(NO_NODE)?;
        parent.first = start as u32;
        parent.count = siblings.len() as u32;
        start += siblings.len();
    }
    Ok((children, nlinks))
}

/// Phase 7: compressed spans. Each member runs to the next distinct data offset, or the TOC.
/// A span that does not fit its record ([`MAX_COMPRESSED_SPAN`]) is refused.
fn set_compressed_spans(chunks: &mut [ChunkRec], data_end: u64) -> Result<()> {
    let mut starts: Vec<u64> = chunks.iter().filter(|c| !c.zeros()).map(|c| c.offset).collect();
    starts.sort_unstable();
    starts.dedup();
    for c in chunks.iter_mut().filter(|c| !c.zeros()) {
        let offset = c.offset;
        let next = starts.partition_point(|&s| s <= offset);
        // Above `offset`: a later start, or the TOC, which data offsets lie before (checked).
        let span = starts.get(next).copied().unwrap_or(data_end).saturating_sub(offset);
        c.span = u32::try_from(span).map_err(|_| Error::TooLarge {
            what: "chunk's compressed span",
            size: span,
            limit: MAX_COMPRESSED_SPAN,
        })?;
    }
    Ok(())
}

impl Stats {
    /// Phase 8: the counts of the finished tree.
    fn of(index: &Index, toc_entries: usize) -> Stats {
        let mut stats = Stats { toc_entries, nodes: index.nodes.len(), chunks: index.chunks.len(), ..Stats::default() };
        for n in &index.nodes {
            match n.kind() {
                Kind::Dir => stats.dirs += 1,
                Kind::Reg => {
                    stats.regular_files += 1;
                    // Sizes are the TOC's claims: saturate rather than overflow.
                    stats.file_bytes = stats.file_bytes.saturating_add(index.reg_size(n));
                }
                Kind::Symlink => stats.symlinks += 1,
                Kind::Hardlink => stats.hardlinks += 1,
                _ => stats.other += 1,
            }
        }
        stats
    }
}

/// Chunks must tile the file exactly, in order, and lie before the TOC.
fn check_tiling(chunks: &[Chunk], size: u64, data_end: u64, entry: usize) -> Result<()> {
    let mut pos = 0u64;
    for c in chunks {
        if c.file_offset != pos || c.size == 0 {
            return Err(entry_err(entry, "chunks do not tile the file"));
        }
        if !c.zeros && c.offset >= data_end {
            return Err(entry_err(entry, "data offset outside the blob's data area"));
        }
        pos = pos.checked_add(c.size).ok_or(entry_err(entry, "chunk sizes overflow"))?;
    }
    if pos != size {
        return Err(entry_err(entry, "chunks do not cover the file"));
    }
    Ok(())
}

impl EntrySink for Builder {
    fn entry(&mut self, e: &RawEntry<'_>) -> Result<()> {
        let entry = self.entries;
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::TooLarge {
                what: "TOC entry count",
                size: self.entries as u64,
                limit: self.limits.max_entries as u64,
            });
        }
        let kind = e.kind.ok_or(entry_err(entry, "no type"))?;
        if kind == "chunk" {
            return self.add_chunk(e, entry);
        }
        let kind = Kind::parse(kind).ok_or(entry_err(entry, "unknown type"))?;
        self.add_entry(e, kind, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;

    /// A TOC with what a cut can fall between or inside: multi-chunk files (a cut may leave a
    /// file's chunks in the other half), xattrs, a nested unknown array of objects, names with
    /// `,{` in them, a hardlink whose target is in the other half, a later duplicate.
    fn awkward_toc() -> String {
        let mut entries = Vec::new();
        entries.push(String::from(r#"{"name":"d/","type":"dir","mode":493}"#));
        for i in 0..6 {
            entries.push(format!(
                r#"{{"name":"d/f{i},{{x","type":"reg","size":30,"offset":{},"chunkSize":10,"digest":"sha256:{:064x}","xattrs":{{"user.a":"YWI="}},"unknown":[{{"a":[1,{{}}]}},{{}}]}}"#,
                100 * i,
                i
            ));
            entries.push(format!(
                r#"{{"name":"d/f{i},{{x","type":"chunk","offset":{},"chunkOffset":10,"chunkSize":10}}"#,
                100 * i + 40
            ));
            entries
                .push(format!(r#"{{"name":"d/f{i},{{x","type":"chunk","offset":{},"chunkOffset":20}}"#, 100 * i + 70));
        }
        entries.push(String::from(r#"{"name":"d/link","type":"hardlink","linkName":"d/f0,{x"}"#));
        entries.push(String::from(r#"{"name":"d/","type":"dir","mode":448}"#));
        format!("{{\"version\":1,\"entries\":[\n{}\n]}}\n", entries.join(",\n"))
    }

    /// Every comma of the text tried as a cut: each one that parses in halves gives exactly the
    /// one-pass index, and each comma between two entries does parse in halves.
    #[test]
    fn split_parsing_equals_one_pass_at_every_cut() {
        let text = awkward_toc();
        let limits = Limits::default();
        let whole = Index::from_json(text.as_bytes(), 1000, limits);
        assert!(whole.is_ok(), "{whole:?}");
        let close = text.rfind(']').unwrap();
        let (mut joined, mut between_entries) = (0, 0);
        for (comma, _) in text.match_indices(',') {
            let mut cut = text.clone().into_bytes();
            cut[comma] = b'[';
            let split = json::Split { comma, close };
            let is_entry_boundary = text[comma + 1..].starts_with("\n{");
            between_entries += usize::from(is_entry_boundary);
            match ParsedToc::parse_split(&cut, split, limits).map(|p| p.finish(1000)) {
                Some(index) => {
                    assert_eq!(index, whole, "cut at {comma}");
                    joined += 1;
                }
                None => assert!(!is_entry_boundary, "a cut between entries at {comma} was refused"),
            }
        }
        assert_eq!(between_entries, 20, "21 entries");
        assert_eq!(joined, between_entries, "only cuts between entries join");
    }

    /// Errors come out the same through halves: the halves refuse, or report what one pass does.
    #[test]
    fn split_parsing_reports_one_pass_errors() {
        let bad = [
            awkward_toc().replace(r#""chunkOffset":20}"#, r#""chunkOffset":-1}"#),
            awkward_toc().replace(r#""linkName":"d/f0,{x""#, r#""linkName":"nowhere""#),
            awkward_toc().replace(r#""version":1"#, r#""version":2"#),
            awkward_toc().replace(r#""type":"chunk""#, r#""type":"chonk""#),
        ];
        for text in bad {
            let whole = Index::from_json(text.as_bytes(), 1000, Limits::default());
            assert!(whole.is_err());
            let close = text.rfind(']').unwrap();
            for (comma, _) in text.match_indices(",\n{") {
                let mut cut = text.clone().into_bytes();
                cut[comma] = b'[';
                let split = json::Split { comma, close };
                if let Some(index) = ParsedToc::parse_split(&cut, split, Limits::default()).map(|p| p.finish(1000)) {
                    assert_eq!(index, whole, "cut at {comma}");
                }
            }
        }
        // A limit on entries that only the two halves together exceed.
        let text = awkward_toc();
        let limits = Limits { max_entries: 20 };
        let whole = Index::from_json(text.as_bytes(), 1000, limits);
        assert!(matches!(whole, Err(Error::TooLarge { .. })), "{whole:?}");
        let comma = text.match_indices(",\n{").nth(10).unwrap().0;
        let mut cut = text.clone().into_bytes();
        cut[comma] = b'[';
        let close = text.rfind(']').unwrap();
        // Each half is within the limit, so the halves are read; joining them must fail as one
        // pass does.
        let split = ParsedToc::parse_split(&cut, json::Split { comma, close }, limits).map(|p| p.finish(1000));
        assert_eq!(split, Some(whole));
        // The same where the limit falls on a chunk entry that opens the second half.
        let leading_chunk =
            text.match_indices(",\n{").find(|(at, _)| text[at + 3..].starts_with(r#""name":"d/f3,{x","type":"chunk""#));
        let comma = leading_chunk.unwrap().0;
        let limits = Limits { max_entries: text[..comma].matches("\n{").count() };
        let whole = Index::from_json(text.as_bytes(), 1000, limits);
        assert!(matches!(whole, Err(Error::TooLarge { .. })), "{whole:?}");
        let mut cut = text.clone().into_bytes();
        cut[comma] = b'[';
        let split = ParsedToc::parse_split(&cut, json::Split { comma, close }, limits).map(|p| p.finish(1000));
        assert_eq!(split, Some(whole));
    }

    fn toc(entries: &[String]) -> String {
        format!("{{\"version\":1,\"entries\":[{}]}}", entries.join(","))
    }

    fn build(entries: &[String], data_end: u64) -> Result<Index> {
        Index::from_json(toc(entries).as_bytes(), data_end, Limits::default())
    }

    /// The stored records may not grow unnoticed: the index's memory is mostly these. The
    /// views callers get by value are pinned too, though they live only on the stack.
    #[test]
    fn record_sizes_are_pinned() {
        assert_eq!(core::mem::size_of::<NodeRec>(), 32);
        assert_eq!(core::mem::align_of::<NodeRec>(), 4);
        assert_eq!(core::mem::size_of::<ChunkRec>(), 28);
        assert_eq!(core::mem::align_of::<ChunkRec>(), 4);
        assert_eq!(core::mem::size_of::<Node>(), 40);
        assert_eq!(core::mem::size_of::<Chunk>(), 80);
    }

    #[test]
    fn mtimes_round_trip_at_the_edges() {
        let mut n = NodeRec {
            parent: 0,
            name_off: 0,
            first: 0,
            count: 0,
            mtime_lo: 0,
            nsec: NSEC_NLINK,
            name_len: 0,
            mode_kind: 0,
            owner: 0,
            mtime_hi: 0,
        };
        for (secs, nsec) in [
            (0, 0),
            (-1, 999_999_999),
            (1 << 32, 1),
            (-(1 << 32), 0),
            ((1 << 47) - 1, 999_999_999),
            (-(1 << 47), 0),
            (253_402_300_800, 999_999_999),
            (-62_167_219_200, 0),
        ] {
            assert!(n.set_mtime(secs, nsec));
            assert_eq!(n.mtime(), (secs, nsec));
            assert!(n.has_nlink(), "the flag beside the nanoseconds is kept");
        }
        assert!(!n.set_mtime(1 << 47, 0));
        assert!(!n.set_mtime(-(1 << 47) - 1, 0));
        assert!(!n.set_mtime(0, NSEC_MASK + 1));
        assert_eq!(n.mtime(), (-62_167_219_200, 0), "a refused mtime leaves the record as it was");

        // Through a TOC: the first and last instants RFC 3339 can say, and before the epoch.
        let times = [
            ("0000-01-01T00:00:00Z", (-62_167_219_200, 0)),
            ("9999-12-31T23:59:60.999999999Z", (253_402_300_800, 999_999_999)),
            ("1969-12-31T23:59:59.5Z", (-1, 500_000_000)),
            ("0000-01-01T00:00:00-23:59", (-62_167_219_200 + 86_340, 0)),
        ];
        let entries: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(i, (t, _))| format!(r#"{{"name":"f{i}","type":"fifo","modtime":"{t}"}}"#))
            .collect();
        let index = build(&entries, 0).unwrap();
        for (i, (t, want)) in times.iter().enumerate() {
            let id = index.lookup_path(format!("f{i}").as_bytes()).unwrap();
            assert_eq!(index.node(id).unwrap().mtime(), *want, "{t}");
        }
    }

    #[test]
    fn kinds_modes_and_devices_pack() {
        let entries = [
            String::from(r#"{"name":"c","type":"char","mode":4095,"devMajor":4294967295,"devMinor":4294967295}"#),
            String::from(r#"{"name":"b","type":"block","mode":64,"devMajor":8,"devMinor":0}"#),
            String::from(r#"{"name":"s","type":"symlink","mode":511,"linkName":"target/x"}"#),
            String::from(r#"{"name":"d/p","type":"fifo","mode":3584}"#),
        ];
        let index = build(&entries, 0).unwrap();
        let node = |p: &str| index.node(index.lookup_path(p.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            (node("c").kind(), node("c").mode(), node("c").rdev(), node("c").size()),
            (Kind::Char, 0o7777, (u32::MAX, u32::MAX), 0)
        );
        assert_eq!((node("b").kind(), node("b").mode(), node("b").rdev()), (Kind::Block, 0o100, (8, 0)));
        assert_eq!((node("s").kind(), node("s").size(), node("s").rdev()), (Kind::Symlink, 8, (0, 0)));
        assert_eq!((node("d/p").kind(), node("d/p").mode(), node("d/p").is_synthesized()), (Kind::Fifo, 0o7000, false));
        assert_eq!((node("d").kind(), node("d").mode(), node("d").is_synthesized()), (Kind::Dir, 0o755, true));
        assert_eq!(index.nodes().len(), index.len());
        assert!(index.nodes().zip(0..).all(|(n, id)| Some(n) == index.node(id)));
    }

    /// More distinct owners than the owner table holds: the rest are kept per node, exactly.
    #[test]
    fn owners_past_the_table_are_kept_exactly() {
        let count = usize::from(OWNER_OVERFLOW) + 100;
        let owner = |i: usize| (u32::MAX - i as u32, i as u32 * 7);
        let entries: Vec<String> = (0..count)
            .map(|i| {
                let (uid, gid) = owner(i);
                format!(r#"{{"name":"f{i:06}","type":"fifo","uid":{uid},"gid":{gid}}}"#)
            })
            .chain([String::from(r#"{"name":"z","type":"fifo","uid":4294967295,"gid":0}"#)])
            .collect();
        let index = build(&entries, 0).unwrap();
        assert_eq!(index.owners.len(), usize::from(OWNER_OVERFLOW));
        // The root's 0:0 took a slot, so 101 file owners did not fit.
        assert_eq!(index.owner_overflow.len(), 101);
        for i in 0..count {
            let n = index.node(index.lookup_path(format!("f{i:06}").as_bytes()).unwrap()).unwrap();
            assert_eq!((n.uid(), n.gid()), owner(i), "f{i:06}");
        }
        // An owner met before the table filled keeps its slot.
        let z = index.node(index.lookup_path(b"z").unwrap()).unwrap();
        assert_eq!((z.uid(), z.gid()), (u32::MAX, 0));
        assert_eq!(index.node(ROOT).map(|n| (n.uid(), n.gid())), Some((0, 0)));
    }

    #[test]
    fn link_counts_default_and_otherwise() {
        let entries = [
            String::from(r#"{"name":"d/","type":"dir"}"#),
            String::from(r#"{"name":"d/e/","type":"dir"}"#),
            String::from(r#"{"name":"x/y/f","type":"reg","size":0}"#),
            String::from(r#"{"name":"g","type":"reg","size":0}"#),
            String::from(r#"{"name":"h1","type":"hardlink","linkName":"g"}"#),
            String::from(r#"{"name":"h2","type":"hardlink","linkName":"h1"}"#),
            String::from(r#"{"name":"s","type":"symlink","linkName":"g"}"#),
        ];
        let index = build(&entries, 0).unwrap();
        let nlink = |p: &str| index.node(index.lookup_path(p.as_bytes()).unwrap()).unwrap().nlink();
        let hardlink = |p: &str| index.node(index.lookup(ROOT, p.as_bytes()).unwrap()).unwrap().nlink();
        assert_eq!(index.node(ROOT).unwrap().nlink(), 4, "root: . .. d x");
        assert_eq!((nlink("d"), nlink("d/e"), nlink("x"), nlink("x/y")), (3, 2, 3, 2));
        assert_eq!((nlink("x/y/f"), nlink("g"), nlink("s")), (1, 3, 1));
        assert_eq!((hardlink("h1"), hardlink("h2")), (0, 0), "a hardlink node counts in its target");
        // Only the counts that differ from their kind's default are stored: 5 directories and g.
        assert_eq!(index.nlinks.len(), 6);
    }

    #[test]
    fn chunk_records_keep_zeros_digests_and_spans() {
        let d = |i: u32| format!("sha256:{i:064x}");
        let entries = [
            // Data, then a zeros chunk that names an offset, then data sharing the first member.
            format!(r#"{{"name":"a","type":"reg","size":30,"offset":100,"chunkSize":10,"chunkDigest":"{}"}}"#, d(1)),
            String::from(
                r#"{"name":"a","type":"chunk","offset":7,"chunkOffset":10,"chunkSize":10,"chunkType":"zeros"}"#,
            ),
            format!(
                r#"{{"name":"a","type":"chunk","offset":100,"chunkOffset":20,"innerOffset":10,"chunkDigest":"{}"}}"#,
                d(2)
            ),
            format!(r#"{{"name":"b","type":"reg","size":5,"offset":300,"digest":"{}"}}"#, d(3)),
            format!(
                r#"{{"name":"c","type":"reg","size":5,"offset":400,"digest":"{}","chunkDigest":"{}"}}"#,
                d(4),
                d(5)
            ),
        ];
        let index = build(&entries, 1000).unwrap();
        let a = index.chunks(index.lookup_path(b"a").unwrap());
        let want = |offset, end, inner, file_offset, digest: Option<u32>, zeros| Chunk {
            offset,
            compressed_end: end,
            inner_offset: inner,
            file_offset,
            size: 10,
            digest: digest.map(|i| Digest::parse(&d(i)).unwrap()),
            zeros,
        };
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(0), Some(want(100, 300, 0, 0, Some(1), false)));
        assert_eq!(a.get(1), Some(want(7, 0, 0, 10, None, true)));
        assert_eq!(a.get(2), Some(want(100, 300, 10, 20, Some(2), false)));
        assert_eq!(a.get(3), None);
        assert_eq!(a.iter().rev().map(|c| c.file_offset).collect::<Vec<_>>(), [20, 10, 0]);
        assert_eq!(a.iter().nth(2), a.last());
        assert_eq!(index.chunk_at(index.lookup_path(b"a").unwrap(), 29), Some(2));
        assert_eq!(index.chunk_at(index.lookup_path(b"a").unwrap(), 30), None);
        // One chunk: the file's digest is the chunk's, and file_digest says nothing more, unless
        // the chunk has a digest of its own that differs.
        let b = index.lookup_path(b"b").unwrap();
        assert_eq!(index.chunks(b).get(0).map(|c| (c.digest, c.compressed_end)), Some((Digest::parse(&d(3)), 400)));
        assert_eq!(index.file_digest(b), None);
        let c = index.lookup_path(b"c").unwrap();
        assert_eq!(index.chunks(c).get(0).map(|c| (c.digest, c.compressed_end)), Some((Digest::parse(&d(5)), 1000)));
        assert_eq!(index.file_digest(c), Digest::parse(&d(4)));
        assert_eq!(index.node(c).unwrap().size(), 5);
        // Without any digest there is no digest table.
        let plain = [String::from(r#"{"name":"f","type":"reg","size":5,"offset":0}"#)];
        let index = build(&plain, 10).unwrap();
        assert!(index.chunk_digests.is_empty());
        assert_eq!(index.chunks(1).get(0).map(|c| c.digest), Some(None));
    }

    /// A compressed span is kept in 32 bits: one past that is refused, one at it is kept.
    #[test]
    fn compressed_spans_past_32_bits_are_refused() {
        let entries = [String::from(r#"{"name":"f","type":"reg","size":5,"offset":1}"#)];
        let max = u64::from(u32::MAX);
        let index = build(&entries, max + 1).unwrap();
        assert_eq!(index.chunks(1).get(0).map(|c| c.compressed_end), Some(max + 1));
        let err = build(&entries, max + 2);
        assert_eq!(err, Err(Error::TooLarge { what: "chunk's compressed span", size: max + 1, limit: max }));
    }

    #[test]
    fn split_guess_lands_between_entries_of_an_indented_toc() {
        let text = awkward_toc();
        let split = json::Split::find(text.as_bytes()).unwrap();
        assert_eq!(split.close, text.rfind(']').unwrap());
        assert!(text[split.comma..].starts_with(",\n{") || text[split.comma..].starts_with(",{"));
        assert_eq!(json::Split::find(b"{\"version\":1,\"entries\":[]}"), None);
        assert_eq!(json::Split::find(b"{\"entries\":[{},{}],\"version\":1}"), None);
    }
}
