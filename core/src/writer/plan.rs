//! From a scanned tar to the blob's layout: entry order, gzip members, TOC entries; then the
//! in-order assembly of compressed members into offsets, digests, the TOC and the footer.
//!
//! The layout follows the reference `Build` (the `estargz` package's `build.go`) with one writer part:
//!
//! 1. Entries named `stargz.index.json` or a landmark name are dropped; an entry whose cleaned
//!    name was seen before replaces the earlier one, at its own (later) position.
//! 2. Prioritized files move to the front in the given order, each preceded by its parent
//!    directories and, for hardlinks, by their targets. Then comes `.prefetch.landmark`; with no
//!    prioritized files, `.no.prefetch.landmark` comes first instead.
//! 3. A gzip member opens with the first header; every chunk of a non-empty regular file starts
//!    a new member, which then also holds the payload's padding and the headers that follow.
//!
//! Member boundaries depend only on the input and the options, never on how members are later
//! compressed, so compressing them on many threads gives the same blob as on one.

use alloc::vec::Vec;
use core::ops::{Bound, Range};

use alloc::collections::{BTreeMap, BTreeSet};

use super::compress::{self, MemberCompressor};
use super::tarhdr::{self, HeaderSpec, pad_len};
use super::tarscan::{EntryKind, TarEntry, TarScanner};
use super::toc_json::{self, TocEntry};
use super::{Error, Options, Summary};
use crate::digest::{Digest, Hasher};
use crate::footer::Format;
use crate::hardlink::{self, Fault, Target};
use crate::index::{NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK};
use crate::path::{clean as clean_name, parent_of};
use crate::read_at::ReadAt;
use crate::tar::TOC_NAME;

/// The landmark's one byte of content.
pub const LANDMARK_CONTENTS: u8 = 0x0f;

const NONE: u32 = u32::MAX;

/// Where some of a member's uncompressed bytes come from.
#[derive(Debug, Clone, Copy)]
enum Piece {
    /// Bytes of the input.
    Input { offset: u64, len: u64 },
    /// Zero bytes (padding, sparse holes).
    Zeros(u64),
    /// Bytes the writer made (headers, the landmark), in `Plan::lit`.
    Lit { start: usize, len: usize },
}

impl Piece {
    fn len(&self) -> u64 {
        match *self {
            Piece::Input { len, .. } | Piece::Zeros(len) => len,
            Piece::Lit { len, .. } => len as u64,
        }
    }
}

/// The chunk a member starts with.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRef {
    /// Its TOC entry (`reg` for the first chunk, `chunk` after).
    pub toc: u32,
    /// Its length: the member's first `len` bytes.
    pub len: u64,
    /// The file's `reg` TOC entry.
    pub file: u32,
    /// Whether it is the file's only chunk.
    pub single: bool,
    /// Whether it is the file's last chunk.
    pub last: bool,
}

/// One gzip member to be.
#[derive(Debug, Clone)]
pub struct Member {
    pieces: Range<usize>,
    /// Uncompressed length.
    pub len: u64,
    /// The chunk it starts with, if any.
    pub chunk: Option<ChunkRef>,
}

/// The blob's layout: what goes into each gzip member. Read-only once made, and `Sync`, so
/// worker threads can fill and compress members while an [`Assembler`] puts them in order.
#[derive(Debug, Default)]
pub struct Plan {
    pieces: Vec<Piece>,
    lit: Vec<u8>,
    members: Vec<Member>,
    level: u8,
    format: Format,
}

impl Plan {
    /// The members, in blob order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The compression level the plan was made for.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The format the plan was made for.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Total uncompressed bytes of the members (the TOC member not included).
    pub fn payload_len(&self) -> u64 {
        self.members.iter().map(|m| m.len).sum()
    }

    /// Replaces `buf` with member `i`'s uncompressed bytes, read from `src`.
    pub fn fill_member<R: ReadAt + ?Sized>(&self, src: &R, i: usize, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.clear();
        let m = self.members.get(i).ok_or(Error::BadOption("no such member"))?;
        buf.reserve(usize::try_from(m.len).map_err(|_| Error::BadOption("member too large"))?);
        // The plan made the pieces and literals its members point at: a miss means the plan was
        // altered or mixed with another, which the error names.
        let pieces = self.pieces.get(m.pieces.clone()).ok_or(Error::BadOption("member pieces out of range"))?;
        for piece in pieces {
            match *piece {
                Piece::Input { offset, len } => {
                    let start = buf.len();
                    buf.resize(start + len as usize, 0);
                    src.read_exact_at(offset, buf.get_mut(start..).unwrap_or_default())?;
                }
                Piece::Zeros(len) => buf.resize(buf.len() + len as usize, 0),
                Piece::Lit { start, len } => {
                    let lit = self.lit.get(start..start + len).ok_or(Error::BadOption("literal out of range"))?;
                    buf.extend_from_slice(lit);
                }
            }
        }
        Ok(())
    }

    /// Compresses member `i`'s bytes into one member appended to `out`, and returns the digest
    /// of the chunk it starts with, if any.
    pub fn compress_member(
        &self,
        i: usize,
        data: &[u8],
        compressor: &mut dyn MemberCompressor,
        out: &mut Vec<u8>,
    ) -> Result<Option<Digest>, Error> {
        let m = self.members.get(i).ok_or(Error::BadOption("no such member"))?;
        let digest = match m.chunk {
            Some(c) => {
                let chunk = data.get(..c.len as usize).ok_or(Error::BadOption("member data shorter than its chunk"))?;
                Some(Digest::of(chunk))
            }
            None => None,
        };
        compressor.member(data, out)?;
        Ok(digest)
    }
}

/// Refuses what the TOC reader would (the rules are in [`crate::hardlink`]): a hardlink whose
/// target (followed through other links) is not among the entries kept (`seen`: clean name to
/// index in `stream`), is a directory, or is the link itself. A target is a directory, as in the
/// reader's tree, when it is the root, a directory entry, or the parent of another entry.
fn check_hardlinks(stream: &[Option<TarEntry>], seen: &BTreeMap<Vec<u8>, usize>) -> Result<(), Error> {
    let links: Vec<usize> = stream
        .iter()
        .enumerate()
        .filter(|(_, e)| e.as_ref().is_some_and(|e| e.kind == Some(EntryKind::Hardlink)))
        .map(|(i, _)| i)
        .collect();
    let mut direct = Vec::with_capacity(links.len());
    let mut under = Vec::new();
    for &l in &links {
        let Some(Some(link)) = stream.get(l) else { continue };
        let target = clean_name(&link.link);
        under.clear();
        under.extend_from_slice(&target);
        under.push(b'/');
        let parent = seen
            .range::<[u8], _>((Bound::Included(under.as_slice()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&under));
        let step = match seen.get(&target).map(|&i| (i, stream.get(i))) {
            _ if target.is_empty() || parent => Target::Dir,
            Some((i, Some(Some(t)))) => match t.kind {
                Some(EntryKind::Dir) => Target::Dir,
                Some(EntryKind::Hardlink) => match links.binary_search(&i) {
                    Ok(k) => Target::Link(k as u32),
                    Err(_) => Target::Missing,
                },
                _ => Target::Final(i as u32),
            },
            _ => Target::Missing,
        };
        direct.push(step);
    }
    hardlink::resolve(&direct).map(|_| ()).map_err(|(at, fault)| {
        let link = links.get(at).and_then(|&i| stream.get(i)).and_then(Option::as_ref);
        Error::BadHardlink {
            name: link.map(|e| e.name.clone()).unwrap_or_default(),
            target: link.map(|e| e.link.clone()).unwrap_or_default(),
            what: match fault {
                Fault::Missing => "the target is not in the layer",
                Fault::Dir => "the target is a directory",
                Fault::Cycle => "the hardlinks form a cycle",
            },
        }
    })
}

/// What goes into the blob, in order.
enum Item {
    Landmark(&'static [u8]),
    Entry(usize),
}

/// Orders entries: de-duplication, prioritized files, landmark. Returns the order and the
/// prioritized names that were not found.
fn order(stream: &[Option<TarEntry>], prioritized: &[Vec<u8>]) -> (Vec<Item>, Vec<Vec<u8>>) {
    let mut by_name: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (i, e) in stream.iter().enumerate() {
        if let Some(e) = e
            && e.kind != Some(EntryKind::Global)
        {
            by_name.insert(clean_name(&e.name), i);
        }
    }
    let mut moved = alloc::vec![false; stream.len()];
    let mut items = Vec::new();
    let mut missed = Vec::new();
    let mut link_checked: BTreeSet<Vec<u8>> = BTreeSet::new();
    enum Task {
        Visit(Vec<u8>),
        Links(Vec<u8>),
        Move(Vec<u8>),
    }
    for wanted in prioritized {
        let name = clean_name(wanted);
        if !name.is_empty() && !by_name.contains_key(&name) {
            missed.push(wanted.clone());
            continue;
        }
        let mut tasks = alloc::vec![Task::Visit(name)];
        while let Some(task) = tasks.pop() {
            match task {
                Task::Visit(n) => {
                    if n.is_empty() {
                        tasks.push(Task::Move(n));
                    } else {
                        let parent = parent_of(&n).to_vec();
                        tasks.push(Task::Move(n.clone()));
                        tasks.push(Task::Links(n));
                        tasks.push(Task::Visit(parent));
                    }
                }
                Task::Links(n) => {
                    if let Some(&i) = by_name.get(&n)
                        && moved.get(i) == Some(&false)
                        && let Some(Some(e)) = stream.get(i)
                        && e.kind == Some(EntryKind::Hardlink)
                        && link_checked.insert(n)
                    {
                        tasks.push(Task::Visit(clean_name(&e.link)));
                    }
                }
                Task::Move(n) => {
                    if let Some(&i) = by_name.get(&n)
                        && let Some(done) = moved.get_mut(i)
                        && !*done
                    {
                        *done = true;
                        items.push(Item::Entry(i));
                    }
                }
            }
        }
    }
    let landmark = if prioritized.is_empty() { NO_PREFETCH_LANDMARK } else { PREFETCH_LANDMARK };
    items.push(Item::Landmark(landmark));
    // `moved` has one flag per entry of `stream`.
    for (i, (e, &done)) in stream.iter().zip(&moved).enumerate() {
        if e.is_some() && !done {
            items.push(Item::Entry(i));
        }
    }
    (items, missed)
}

/// Builds members and TOC entries.
struct Layout {
    plan: Plan,
    toc: Vec<TocEntry>,
    /// Per TOC entry: the member whose compressed offset is its `offset`, or `NONE`.
    toc_member: Vec<u32>,
    open: Option<(usize, u64, Option<ChunkRef>)>,
    last_uname: BTreeMap<i64, Vec<u8>>,
    last_gname: BTreeMap<i64, Vec<u8>>,
}

impl Layout {
    fn push(&mut self, piece: Piece) {
        if piece.len() == 0 {
            return;
        }
        if self.open.is_none() {
            self.open = Some((self.plan.pieces.len(), 0, None));
        }
        if let Some((_, len, _)) = &mut self.open {
            *len += piece.len();
        }
        self.plan.pieces.push(piece);
    }

    fn lit(&mut self, bytes: &[u8]) {
        let start = self.plan.lit.len();
        self.plan.lit.extend_from_slice(bytes);
        self.push(Piece::Lit { start, len: bytes.len() });
    }

    fn close(&mut self) {
        if let Some((first, len, chunk)) = self.open.take() {
            self.plan.members.push(Member { pieces: first..self.plan.pieces.len(), len, chunk });
        }
    }

    /// Opens a member for a chunk; the previous member must be closed.
    fn open_chunk(&mut self, chunk: ChunkRef) {
        self.open = Some((self.plan.pieces.len(), 0, Some(chunk)));
    }

    fn add_toc(&mut self, e: TocEntry, member: u32) -> u32 {
        self.toc.push(e);
        self.toc_member.push(member);
        (self.toc.len() - 1) as u32
    }

    fn name_if_changed(map: &mut BTreeMap<i64, Vec<u8>>, id: i64, name: &[u8]) -> Vec<u8> {
        if name.is_empty() || map.get(&id).is_some_and(|n| n == name) {
            return Vec::new();
        }
        map.insert(id, name.to_vec());
        name.to_vec()
    }

    /// Adds a regular file's payload in chunks: `data(range)` gives the pieces of a range.
    fn add_payload(&mut self, mut reg: TocEntry, chunk_size: u64, mut data: impl FnMut(u64, u64, &mut Self)) {
        let size = reg.size;
        let nchunks = size.div_ceil(chunk_size);
        let file = self.toc.len() as u32;
        let mut written = 0u64;
        let mut index = 0u64;
        while written < size {
            let n = chunk_size.min(size - written);
            let mut ent = if index == 0 {
                core::mem::take(&mut reg)
            } else {
                // The first piece's entry was pushed at `file` on the first pass.
                let name = self.toc.get(file as usize).map(|first| first.name.clone()).unwrap_or_default();
                TocEntry { name, kind: "chunk", ..TocEntry::default() }
            };
            if n == chunk_size {
                ent.chunk_size = n;
            }
            ent.chunk_offset = written;
            self.close();
            let member = self.plan.members.len() as u32;
            let toc = self.add_toc(ent, member);
            self.open_chunk(ChunkRef { toc, len: n, file, single: nchunks == 1, last: index + 1 == nchunks });
            data(written, n, self);
            written += n;
            index += 1;
        }
        self.push(Piece::Zeros(pad_len(size)));
    }
}

/// Scans the tar in `src` and lays out the blob.
pub fn plan<R: ReadAt + ?Sized>(src: &R, options: &Options) -> Result<(Plan, Assembler), Error> {
    if options.chunk_size == 0 {
        return Err(Error::BadOption("chunk size must be at least 1"));
    }
    match options.format {
        Format::Estargz if options.level > 9 => return Err(Error::BadOption("gzip levels are 0 to 9")),
        Format::ZstdChunked if options.level > 22 => return Err(Error::BadOption("zstd levels are 0 to 22")),
        Format::LegacyStargz | Format::ZstdChunkedV2 => return Err(super::UNWRITTEN_FORMAT),
        _ => {}
    }
    let mut scanner = TarScanner::new(src);
    let mut stream: Vec<Option<TarEntry>> = Vec::new();
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut holes = 0u64;
    while let Some(e) = scanner.next_entry()? {
        if e.sparse.is_some() {
            // Checked per entry, before any layout: the plan grows with the expanded size.
            holes = holes.saturating_add(e.size.saturating_sub(e.stored));
            if holes > options.max_sparse_holes {
                return Err(Error::SparseTooLarge { name: e.name, holes, limit: options.max_sparse_holes });
            }
        }
        if e.kind == Some(EntryKind::Global) {
            stream.push(Some(e));
            continue;
        }
        let clean = clean_name(&e.name);
        if clean == TOC_NAME || clean == PREFETCH_LANDMARK || clean == NO_PREFETCH_LANDMARK {
            continue;
        }
        if let Some(old) = seen.insert(clean, stream.len())
            && let Some(replaced) = stream.get_mut(old)
        {
            *replaced = None;
        }
        stream.push(Some(e));
    }
    check_hardlinks(&stream, &seen)?;
    let prioritized: Vec<Vec<u8>> = options.prioritized.iter().map(|p| p.as_bytes().to_vec()).collect();
    let (items, missed) = order(&stream, &prioritized);

    let mut l = Layout {
        plan: Plan { level: options.level, format: options.format, ..Plan::default() },
        toc: Vec::new(),
        toc_member: Vec::new(),
        open: None,
        last_uname: BTreeMap::new(),
        last_gname: BTreeMap::new(),
    };
    let chunk_size = options.chunk_size;
    let mut header = Vec::new();
    for item in items {
        match item {
            Item::Landmark(name) => {
                header.clear();
                tarhdr::write_header(
                    &HeaderSpec { typeflag: b'0', name, size: 1, ..HeaderSpec::default() },
                    &mut header,
                );
                l.lit(&header);
                let reg = TocEntry { name: name.to_vec(), kind: "reg", size: 1, ..TocEntry::default() };
                l.add_payload(reg, chunk_size, |_, _, l| l.lit(&[LANDMARK_CONTENTS]));
            }
            Item::Entry(i) => {
                let Some(e) = stream.get_mut(i).and_then(Option::take) else { continue };
                let Some(kind) = e.kind else { continue };
                if kind == EntryKind::Global {
                    l.push(Piece::Input { offset: e.start, len: e.data - e.start });
                    continue;
                }
                if e.sparse.is_some() {
                    // Expanded into a plain regular file with a header of our own.
                    header.clear();
                    let spec = HeaderSpec {
                        typeflag: b'0',
                        name: &e.name,
                        mode: e.mode,
                        uid: e.uid,
                        gid: e.gid,
                        size: e.size,
                        mtime: e.mtime,
                        uname: &e.uname,
                        gname: &e.gname,
                        xattrs: &e.xattrs,
                        ..HeaderSpec::default()
                    };
                    tarhdr::write_header(&spec, &mut header);
                    l.lit(&header);
                } else {
                    l.push(Piece::Input { offset: e.start, len: e.data - e.start });
                }
                let uname = Layout::name_if_changed(&mut l.last_uname, e.uid, &e.uname);
                let gname = Layout::name_if_changed(&mut l.last_gname, e.gid, &e.gname);
                let is_dev = matches!(kind, EntryKind::Char | EntryKind::Block);
                let link = matches!(kind, EntryKind::Hardlink | EntryKind::Symlink);
                let ent = TocEntry {
                    kind: kind.toc_name(),
                    size: if kind == EntryKind::Reg { e.size } else { 0 },
                    mtime: e.mtime,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    uname,
                    gname,
                    dev_major: if is_dev { e.dev.0 } else { 0 },
                    dev_minor: if is_dev { e.dev.1 } else { 0 },
                    digest: (kind == EntryKind::Reg && e.size == 0).then(|| Digest::of(b"")),
                    ..TocEntry::default()
                };
                let mut ent = ent;
                ent.name = e.name;
                ent.link = if link { e.link } else { Vec::new() };
                ent.xattrs = e.xattrs;
                if kind == EntryKind::Reg && e.size > 0 {
                    match e.sparse {
                        None => {
                            let base = e.data;
                            l.add_payload(ent, chunk_size, |off, n, l| {
                                l.push(Piece::Input { offset: base + off, len: n })
                            });
                        }
                        Some(frags) => {
                            // Where each fragment is stored: computed once, so laying out a chunk
                            // costs the fragments it overlaps, not all before it.
                            let mut stored = Vec::with_capacity(frags.len());
                            let mut at = e.data;
                            for &(_, len) in &frags {
                                stored.push(at);
                                at += len;
                            }
                            l.add_payload(ent, chunk_size, |off, n, l| sparse_pieces(&frags, &stored, off, n, l));
                        }
                    }
                } else {
                    l.add_toc(ent, NONE);
                }
            }
        }
    }
    if options.format == Format::ZstdChunked {
        // The TOC is not a tar entry here: end the tar in the last payload frame.
        l.push(Piece::Zeros(1024));
    }
    l.close();
    let member_count = l.plan.members.len();
    let assembler = Assembler {
        toc: l.toc,
        toc_member: l.toc_member,
        offsets: Vec::with_capacity(member_count),
        offset: 0,
        uncompressed: 0,
        diff: Hasher::default(),
        file_hash: Hasher::default(),
        missed,
    };
    Ok((l.plan, assembler))
}

/// Pieces for bytes `[off, off + n)` of a sparse file whose fragment `i` is stored at
/// `stored[i]` in the input.
fn sparse_pieces(frags: &[(u64, u64)], stored: &[u64], off: u64, n: u64, l: &mut Layout) {
    let end = off + n;
    let mut pos = off;
    // Fragments are sorted and disjoint; start at the first one that ends after `off`.
    let first = frags.partition_point(|&(o, len)| o + len <= off);
    let (frags, stored) = (frags.get(first..).unwrap_or_default(), stored.get(first..).unwrap_or_default());
    for (&(o, len), &at) in frags.iter().zip(stored) {
        if o >= end {
            break;
        }
        if o > pos {
            l.push(Piece::Zeros(o - pos));
            pos = o;
        }
        let take_from = pos.max(o);
        let take_to = (o + len).min(end);
        if take_to > take_from {
            l.push(Piece::Input { offset: at + (take_from - o), len: take_to - take_from });
            pos = take_to;
        }
    }
    if pos < end {
        l.push(Piece::Zeros(end - pos));
    }
}

/// Puts compressed members in order: records their offsets and digests, hashes the
/// uncompressed stream (the DiffID), then writes the TOC member and footer.
pub struct Assembler {
    toc: Vec<TocEntry>,
    toc_member: Vec<u32>,
    offsets: Vec<u64>,
    offset: u64,
    uncompressed: u64,
    diff: Hasher,
    file_hash: Hasher,
    missed: Vec<Vec<u8>>,
}

impl Assembler {
    /// Prioritized names not found in the input (skipped).
    pub fn missed_prioritized(&self) -> &[Vec<u8>] {
        &self.missed
    }

    /// How many members have been added.
    pub fn added(&self) -> usize {
        self.offsets.len()
    }

    /// Uncompressed bytes added so far.
    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed
    }

    /// Adds the next member in order: its uncompressed bytes, its compressed length, and the
    /// digest of the chunk it starts with if already computed.
    pub fn add(
        &mut self,
        plan: &Plan,
        data: &[u8],
        compressed_len: u64,
        chunk_digest: Option<Digest>,
    ) -> Result<(), Error> {
        let i = self.offsets.len();
        let m = plan.members.get(i).ok_or(Error::BadOption("more members than planned"))?;
        if data.len() as u64 != m.len {
            return Err(Error::BadOption("member length differs from the plan"));
        }
        self.offsets.push(self.offset);
        self.offset += compressed_len;
        self.uncompressed += m.len;
        self.diff.update(data);
        if let Some(c) = m.chunk {
            // The plan made the chunk and its TOC entries together: a miss means another plan.
            const OTHER_PLAN: Error = Error::BadOption("member does not match the plan's TOC");
            let bytes = data.get(..c.len as usize).ok_or(OTHER_PLAN)?;
            let digest = chunk_digest.unwrap_or_else(|| Digest::of(bytes));
            self.toc.get_mut(c.toc as usize).ok_or(OTHER_PLAN)?.chunk_digest = Some(digest);
            if c.single {
                self.toc.get_mut(c.file as usize).ok_or(OTHER_PLAN)?.digest = Some(digest);
            } else {
                if c.toc == c.file {
                    self.file_hash = Hasher::default();
                }
                self.file_hash.update(bytes);
                if c.last {
                    self.toc.get_mut(c.file as usize).ok_or(OTHER_PLAN)?.digest =
                        Some(core::mem::take(&mut self.file_hash).finish());
                }
            }
        }
        Ok(())
    }

    /// After the last member: writes the TOC and the footer to `tail` and returns the blob's
    /// digests and sizes.
    pub fn finish(
        mut self,
        plan: &Plan,
        compressor: &mut dyn MemberCompressor,
        tail: &mut Vec<u8>,
    ) -> Result<Summary, Error> {
        if self.offsets.len() != plan.members.len() {
            return Err(Error::BadOption("not every member was added"));
        }
        for (e, &m) in self.toc.iter_mut().zip(&self.toc_member) {
            if m != NONE {
                e.offset = *self.offsets.get(m as usize).ok_or(Error::BadOption("TOC entry of no member"))?;
            }
        }
        let json = toc_json::toc_json(&self.toc);
        let toc_digest = Digest::of(&json);
        if plan.format == Format::ZstdChunked {
            let mut compressed = Vec::new();
            compressor.member(&json, &mut compressed)?;
            let start = tail.len();
            compress::skippable_frame(&compressed, tail);
            let toc_offset = self.offset + 8;
            let footer = compress::zstd_footer(toc_offset, compressed.len() as u64, json.len() as u64);
            compress::skippable_frame(&footer, tail);
            return Ok(Summary {
                toc_digest,
                diff_id: self.diff.finish(),
                uncompressed_size: self.uncompressed,
                toc_compressed_digest: Some(Digest::of(&compressed)),
                manifest_position: Some((toc_offset, compressed.len() as u64, json.len() as u64)),
                blob_size: self.offset + (tail.len() - start) as u64,
                toc_offset,
                entries: self.toc.len(),
                missed_prioritized: self.missed,
            });
        }
        let mut member = Vec::with_capacity(json.len() + 2048);
        tarhdr::write_header(
            &HeaderSpec { typeflag: b'0', name: TOC_NAME, size: json.len() as u64, ..HeaderSpec::default() },
            &mut member,
        );
        member.extend_from_slice(&json);
        member.resize(member.len() + pad_len(json.len() as u64) as usize + 1024, 0);
        self.diff.update(&member);
        let toc_offset = self.offset;
        let start = tail.len();
        compressor.member(&member, tail)?;
        tail.extend_from_slice(&compress::estargz_footer(toc_offset));
        Ok(Summary {
            toc_digest,
            diff_id: self.diff.finish(),
            uncompressed_size: self.uncompressed + member.len() as u64,
            toc_compressed_digest: None,
            manifest_position: None,
            blob_size: toc_offset + (tail.len() - start) as u64,
            toc_offset,
            entries: self.toc.len(),
            missed_prioritized: self.missed,
        })
    }
}
