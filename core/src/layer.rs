//! A layer: a blob, its footer and its index, and the decoding of file chunks.

use alloc::vec::Vec;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::footer::{self, Footer, Format};
use crate::index::{Chunk, Chunks, Index, Kind, Limits, NodeId, ParsedToc};
use crate::read_at::ReadAt;
use crate::toc;

/// Limits and checks applied when opening a layer.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Largest TOC accepted, compressed or not (default 512 MiB).
    pub max_toc_size: u64,
    /// Most TOC entries accepted (default 8 Mi).
    pub max_entries: usize,
    /// Largest chunk a read will decode, innerOffset included (default 64 MiB).
    pub max_chunk_size: u64,
    /// When set, the TOC digest must equal this, or opening fails.
    pub expected_toc_digest: Option<Digest>,
    /// Whether opening may use helper threads (default off; only with the `std` feature):
    /// a TOC of 1 MiB or more is then parsed in two halves at once, and the TOC's digest is
    /// computed on another thread while the index is built. Both are scoped threads that end
    /// before the call returns; without them (or when none can be started) everything runs on
    /// the caller's thread, with the same result.
    pub threads: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            max_toc_size: 512 << 20,
            max_entries: 8 << 20,
            max_chunk_size: 64 << 20,
            expected_toc_digest: None,
            threads: false,
        }
    }
}

/// Decoding state kept from one chunk to the next, so that a decode allocates only its output:
/// the buffer the compressed bytes are read into, miniz_oxide's `DecompressorOxide` and
/// (with the `zstd` feature) ruzstd's frame decoder, each made on first use and reset for every
/// chunk. One per thread (it is `Send`, not shared): crfs-vfs keeps one in a thread-local.
///
/// What it keeps is bounded, since every thread that decodes holds one: a compressed span
/// larger than [`Scratch::KEEP_COMPRESSED`] is read into a buffer of its own, let go after
/// the chunk (so a big chunk's decode makes two allocations, a small one's one), and the zstd
/// decoder is let go after a chunk of more than [`Scratch::KEEP_ZSTD`] bytes (its window
/// buffer grows with the frame).
#[derive(Default)]
pub struct Scratch {
    compressed: Vec<u8>,
    decoders: Decoders,
}

/// The decompressors of a [`Scratch`], each made on first use.
#[derive(Default)]
struct Decoders {
    inflate: Option<alloc::boxed::Box<miniz_oxide::inflate::core::DecompressorOxide>>,
    #[cfg(feature = "zstd")]
    zstd: Option<alloc::boxed::Box<ruzstd::decoding::FrameDecoder>>,
}

impl core::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scratch").field("compressed_capacity", &self.compressed.capacity()).finish_non_exhaustive()
    }
}

impl Scratch {
    /// The largest compressed-bytes buffer kept between chunks: 1 MiB.
    pub const KEEP_COMPRESSED: usize = 1 << 20;
    /// The largest chunk after which the zstd decoder is kept: 4 MiB, the writers' default.
    pub const KEEP_ZSTD: usize = 4 << 20;

    /// Lets go of the zstd decoder after a chunk of `total` decoded bytes grew its window
    /// buffer beyond what is kept.
    fn trim(&mut self, total: usize) {
        #[cfg(feature = "zstd")]
        if total > Self::KEEP_ZSTD {
            self.decoders.zstd = None;
        }
        let _ = total;
    }
}

/// An opened layer blob: what the footer says, the TOC's digests and the index.
#[derive(Debug)]
pub struct Layer<R> {
    blob: R,
    footer: Footer,
    index: Index,
    toc_digest: Digest,
    toc_compressed_digest: Digest,
    toc_json_len: usize,
    max_chunk_size: u64,
}

/// Slack allowed for compressed data over the uncompressed bytes it must produce: deflate's
/// stored blocks and zstd's raw blocks add a few bytes per 64 KiB, headers a little more.
fn compressed_budget(out_len: u64) -> u64 {
    out_len.saturating_add(out_len / 8).saturating_add(64 << 10)
}

impl<R: ReadAt> Layer<R> {
    /// Opens a layer with default options.
    pub fn open(blob: R) -> Result<Self> {
        Self::open_with(blob, &OpenOptions::default())
    }

    /// Reads the footer and the TOC, checks the TOC digest if one is expected, and indexes it.
    pub fn open_with(blob: R, options: &OpenOptions) -> Result<Self> {
        let footer = footer::read_footer(&blob)?;
        let mut raw = toc::read_raw_toc(&blob, &footer, options.max_toc_size)?;
        let data_end = if footer.format.is_zstd() { footer.toc_offset.saturating_sub(8) } else { footer.toc_offset };
        let limits = Limits { max_entries: options.max_entries };
        let parsed = parse_toc_text(&mut raw, limits, options.threads);
        let (toc_compressed_digest, toc_json_len) = (raw.compressed_digest, raw.json().len());
        let (toc_digest, index) = hash_and_finish(raw, parsed, data_end, options.threads);
        // A wrong TOC is refused as such, even when it would not index either.
        let toc_digest = toc_digest?;
        if let Some(expected) = options.expected_toc_digest
            && expected != toc_digest
        {
            return Err(Error::TocDigestMismatch);
        }
        let index = index?;
        Ok(Layer {
            blob,
            footer,
            index,
            toc_digest,
            toc_compressed_digest,
            toc_json_len,
            max_chunk_size: options.max_chunk_size,
        })
    }

    /// The blob this layer reads from.
    pub fn blob(&self) -> &R {
        &self.blob
    }

    /// The blob's format.
    pub fn format(&self) -> Format {
        self.footer.format
    }

    /// What the footer says.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The index of the layer's tree.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// sha256 of the TOC JSON (the `toc.digest` annotation).
    pub fn toc_digest(&self) -> Digest {
        self.toc_digest
    }

    /// sha256 of the compressed TOC (zstd:chunked's `manifest-checksum`).
    pub fn toc_compressed_digest(&self) -> Digest {
        self.toc_compressed_digest
    }

    /// Length of the TOC JSON in bytes.
    pub fn toc_json_len(&self) -> usize {
        self.toc_json_len
    }

    fn reg_chunk(&self, file: NodeId, chunk: usize) -> Result<Chunk> {
        let id = self.index.resolve(file);
        match self.index.node(id) {
            Some(n) if n.kind() == Kind::Reg => {}
            _ => return Err(Error::WrongType),
        }
        self.index.chunks(id).get(chunk).ok_or(Error::WrongType)
    }

    /// Decodes the first `len` bytes of one chunk of a regular file into `out` (replacing its
    /// contents), without verifying. `len` is clamped to the chunk's size.
    pub fn decode_chunk_prefix(&self, file: NodeId, chunk: usize, len: u64, out: &mut Vec<u8>) -> Result<()> {
        let c = self.reg_chunk(file, chunk)?;
        self.decode(&c, len.min(c.size), out, &mut Scratch::default())
    }

    /// Decodes one whole chunk into `out` (replacing its contents) and, if `verify` is set and
    /// the TOC has a digest for it, checks the digest.
    pub fn read_chunk(&self, file: NodeId, chunk: usize, verify: bool, out: &mut Vec<u8>) -> Result<()> {
        self.read_chunk_with(file, chunk, verify, out, &mut Scratch::default())
    }

    /// [`read_chunk`](Self::read_chunk) with the caller's [`Scratch`]: with a scratch kept from
    /// earlier chunks, the decode allocates only `out` (once, when it has too little room).
    pub fn read_chunk_with(
        &self,
        file: NodeId,
        chunk: usize,
        verify: bool,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let c = self.reg_chunk(file, chunk)?;
        self.decode(&c, c.size, out, scratch)?;
        if verify {
            check_chunk(&c, out)?;
        }
        Ok(())
    }

    fn decode(&self, c: &Chunk, len: u64, out: &mut Vec<u8>, scratch: &mut Scratch) -> Result<()> {
        out.clear();
        let total = c.inner_offset.checked_add(len).ok_or(Error::Corrupt("chunk size overflows"))?;
        if total > self.max_chunk_size {
            return Err(Error::TooLarge { what: "chunk", size: total, limit: self.max_chunk_size });
        }
        if c.zeros {
            out.resize(len as usize, 0);
            return Ok(());
        }
        if len == 0 {
            return Ok(());
        }
        self.decode_member(c, total, out, scratch)?;
        if c.inner_offset > 0 {
            out.drain(..c.inner_offset as usize);
        }
        Ok(())
    }

    /// Decodes the first `total` bytes (`innerOffset` included) of the member that holds `c`
    /// into `out`, replacing its contents (left empty on failure). `total` must be within
    /// `max_chunk_size`.
    fn decode_member(&self, c: &Chunk, total: u64, out: &mut Vec<u8>, scratch: &mut Scratch) -> Result<()> {
        out.clear();
        if total == 0 {
            return Ok(());
        }
        let zstd = self.footer.format.is_zstd();
        // The decoders allocate `out` once, never beyond what the compressed bytes can expand to.
        let mut heap = |len: usize| alloc::vec![0u8; len];
        let result = self.with_span(c, total, scratch, &mut heap, |compressed, total, decoders, _| {
            if zstd {
                decode_zstd(compressed, total, out, decoders)
            } else {
                let inflate = decoders.inflate.get_or_insert_with(Default::default);
                crate::gzip::inflate_prefix_with(compressed, total, out, inflate)
            }
        });
        if result.is_err() {
            out.clear();
        }
        result
    }

    /// Reads the compressed bytes of the member that holds `c` (as far as `total` decoded bytes
    /// can need) and hands them to `decode` with the scratch's decoders and `alloc`.
    ///
    /// They are read into the scratch buffer, grown (zeroed) only past what earlier chunks
    /// needed; a span too big to keep gets a buffer of its own from `alloc`, dropped after this
    /// chunk.
    fn with_span<T, B: AsMut<[u8]>, A: FnMut(usize) -> B>(
        &self,
        c: &Chunk,
        total: u64,
        scratch: &mut Scratch,
        alloc: &mut A,
        decode: impl FnOnce(&[u8], usize, &mut Decoders, &mut A) -> Result<T>,
    ) -> Result<T> {
        let too_large = || Error::TooLarge { what: "chunk", size: total, limit: self.max_chunk_size };
        let total_len = usize::try_from(total).map_err(|_| too_large())?;
        let span = c.compressed_end.saturating_sub(c.offset).min(compressed_budget(total)) as usize;
        let Scratch { compressed: kept, decoders } = &mut *scratch;
        let mut own;
        let whole = if span > Scratch::KEEP_COMPRESSED {
            own = alloc(span);
            own.as_mut()
        } else {
            if kept.len() < span {
                kept.resize(span, 0);
            }
            kept.as_mut_slice()
        };
        let buf = whole.get_mut(..span).ok_or(Error::Corrupt("chunk span"))?;
        let got = read_full(&self.blob, c.offset, buf)?;
        let result = decode(buf.get(..got).unwrap_or_default(), total_len, decoders, alloc);
        scratch.trim(total_len);
        result
    }

    /// Decodes one whole chunk of a regular file into a buffer the caller allocates, and, if
    /// `verify` is set and the TOC has a digest for it, checks the digest.
    ///
    /// `alloc` is called with the chunk's size and must return a buffer of exactly that many
    /// bytes; the decoder writes all of them. It is also asked for the buffer the compressed
    /// bytes are read into when they are more than [`Scratch::KEEP_COMPRESSED`] (dropped once
    /// the chunk is decoded). For a chunk with its own gzip member or zstd
    /// frame (every eStargz chunk, most zstd:chunked ones) it is called after the compressed
    /// bytes are read and found able to expand to that size, and the decoder writes straight
    /// into it: this is how a caller chooses where decoded chunks live (crfs-vfs maps big ones
    /// with `mmap`, so that an evicted chunk's memory goes back to the system at once). A chunk
    /// packed into a member with others (`innerOffset`) or made of zeros is decoded as by
    /// [`read_chunk_with`](Self::read_chunk_with) and copied.
    pub fn read_chunk_into<B: AsMut<[u8]>>(
        &self,
        file: NodeId,
        chunk: usize,
        verify: bool,
        scratch: &mut Scratch,
        mut alloc: impl FnMut(usize) -> B,
    ) -> Result<B> {
        let c = self.reg_chunk(file, chunk)?;
        if c.inner_offset.checked_add(c.size).is_none_or(|total| total > self.max_chunk_size) {
            return Err(Error::TooLarge { what: "chunk", size: c.size, limit: self.max_chunk_size });
        }
        let mut out = if c.zeros || c.size == 0 || c.inner_offset > 0 {
            let mut decoded = Vec::new();
            self.decode(&c, c.size, &mut decoded, scratch)?;
            let mut out = buffer_of(&mut alloc, decoded.len())?;
            out.as_mut().copy_from_slice(&decoded);
            out
        } else {
            let zstd = self.footer.format.is_zstd();
            self.with_span(&c, c.size, scratch, &mut alloc, |compressed, len, decoders, alloc| {
                if zstd && !zstd_may_expand_to(compressed, len)? {
                    return Err(Error::Corrupt("zstd frame holds fewer bytes than the TOC says"));
                }
                if !zstd && !crate::gzip::may_expand_to(compressed, len) {
                    return Err(Error::Corrupt("gzip member holds fewer bytes than the TOC says"));
                }
                let mut out = buffer_of(alloc, len)?;
                let into = out.as_mut();
                if zstd {
                    decode_zstd_into(compressed, into, decoders)?;
                } else {
                    let inflate = decoders.inflate.get_or_insert_with(Default::default);
                    crate::gzip::inflate_into(compressed, into, inflate)?;
                }
                Ok(out)
            })?
        };
        if verify {
            check_chunk(&c, out.as_mut())?;
        }
        Ok(out)
    }

    /// The first `need` bytes of chunk `i` of `chunks`, decoded (not verified).
    ///
    /// Chunks packed into one member (`innerOffset`) are decoded together: the member is
    /// inflated once, from its start up to the furthest byte that any chunk of this call (those
    /// starting before `end`) needs from it, and kept in `cache`. Decoding each of n such chunks
    /// from the member's start would cost O(n^2), which a hostile TOC could make minutes per
    /// read. If the shared decode fails (a later chunk claims more than the member holds), this
    /// chunk is decoded alone, so a bad chunk still fails only the reads that touch it.
    fn chunk_prefix<'c>(
        &self,
        chunks: Chunks<'_>,
        i: usize,
        need: u64,
        end: u64,
        verify: bool,
        cache: &'c mut MemberCache,
    ) -> Result<&'c [u8]> {
        let c = chunks.get(i).ok_or(Error::Corrupt("no chunk covers the offset"))?;
        let own = c.inner_offset.checked_add(need).ok_or(Error::Corrupt("chunk size overflows"))?;
        if own > self.max_chunk_size {
            return Err(Error::TooLarge { what: "chunk", size: own, limit: self.max_chunk_size });
        }
        if c.zeros {
            cache.zeros.clear();
            cache.zeros.resize(need as usize, 0);
            return Ok(&cache.zeros);
        }
        if cache.offset != Some(c.offset) || (cache.data.len() as u64) < own {
            let mut upto = own;
            for later in chunks.iter().skip(i + 1) {
                if later.offset != c.offset || later.zeros || later.file_offset >= end {
                    break;
                }
                let later_need =
                    if verify && later.digest.is_some() { later.size } else { later.size.min(end - later.file_offset) };
                match later.inner_offset.checked_add(later_need) {
                    Some(e) if e <= self.max_chunk_size => upto = upto.max(e),
                    _ => break,
                }
            }
            cache.offset = None;
            let shared = self.decode_member(&c, upto, &mut cache.data, &mut cache.scratch);
            if shared.is_err() && upto > own {
                self.decode_member(&c, own, &mut cache.data, &mut cache.scratch)?;
            } else {
                shared?;
            }
            cache.offset = Some(c.offset);
        }
        let start = c.inner_offset as usize;
        cache.data.get(start..start + need as usize).ok_or(Error::Corrupt("chunk shorter than its size"))
    }

    /// Reads file bytes at `offset` into `buf`, decoding each chunk it touches once (and each
    /// member shared by several chunks once). Returns the number of bytes read (short only at
    /// the end of the file). With `verify`, every chunk touched is decoded whole and checked
    /// against its digest.
    pub fn read_at(&self, file: NodeId, offset: u64, buf: &mut [u8], verify: bool) -> Result<usize> {
        let id = self.index.resolve(file);
        let size = match self.index.node(id) {
            Some(n) if n.kind() == Kind::Reg => n.size(),
            _ => return Err(Error::WrongType),
        };
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let end = size.min(offset.saturating_add(buf.len() as u64));
        let chunks = self.index.chunks(id);
        let mut cache = MemberCache::default();
        let len = (end - offset) as usize;
        let mut done = 0;
        for piece in self.index.read_pieces(id, offset, end) {
            let c = piece.info;
            let whole = verify && c.digest.is_some();
            let need = if whole { c.size } else { piece.within.end as u64 };
            let bytes = self.chunk_prefix(chunks, piece.chunk, need, end, verify, &mut cache)?;
            if whole {
                check_chunk(&c, bytes)?;
            }
            // In range: the pieces lie within the read, whose length is at most buf.len().
            let dst = buf.get_mut(piece.at..piece.at + piece.within.len());
            let (Some(src), Some(dst)) = (bytes.get(piece.within), dst) else {
                return Err(Error::Corrupt("chunk shorter than its size"));
            };
            dst.copy_from_slice(src);
            done = piece.at + src.len();
        }
        if done != len {
            return Err(Error::Corrupt("no chunk covers the offset"));
        }
        Ok(len)
    }

    /// Reads a whole regular file, checking every chunk digest and the file digest when present.
    pub fn read_file_verified(&self, file: NodeId, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        self.each_verified_chunk(file, |bytes| out.extend_from_slice(bytes)).map(|_| ())
    }

    /// Checks a whole regular file (every chunk digest, then the file digest when present)
    /// without keeping it: memory is one member at a time. Returns the bytes checked.
    pub fn verify_file(&self, file: NodeId) -> Result<u64> {
        self.each_verified_chunk(file, |_| {})
    }

    /// Decodes and checks each chunk of `file` in order, hands it to `sink`, then checks the
    /// file digest. Returns the file's length.
    fn each_verified_chunk(&self, file: NodeId, mut sink: impl FnMut(&[u8])) -> Result<u64> {
        let id = self.index.resolve(file);
        let chunks = self.index.chunks(id);
        let mut cache = MemberCache::default();
        let mut hasher = Hasher::default();
        let mut total = 0u64;
        for (i, c) in chunks.iter().enumerate() {
            let bytes = self.chunk_prefix(chunks, i, c.size, u64::MAX, true, &mut cache)?;
            check_chunk(&c, bytes)?;
            hasher.update(bytes);
            sink(bytes);
            total += bytes.len() as u64;
        }
        if let Some(expected) = self.index.file_digest(id)
            && hasher.finish() != expected
        {
            return Err(Error::FileDigestMismatch);
        }
        Ok(total)
    }
}

/// Decoded bytes kept across the chunks of one read: the prefix of one member (gzip member or
/// zstd frame) decoded from its start, and zeros for `chunkType: "zeros"` chunks.
#[derive(Default)]
struct MemberCache {
    /// Blob offset of the member whose prefix `data` holds, if any.
    offset: Option<u64>,
    data: Vec<u8>,
    zeros: Vec<u8>,
    scratch: Scratch,
}

/// Fills as much of `buf` as the blob holds from `offset`.
fn read_full<R: ReadAt + ?Sized>(blob: &R, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
        let n = blob.read_at(offset + done as u64, rest)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// TOCs smaller than this are parsed in one piece: below it a second thread buys little.
#[cfg(feature = "std")]
const SPLIT_PARSE_MIN_BYTES: usize = 1 << 20;

/// Reads the TOC's entries. With `threads` a large TOC is read in two halves at once (see
/// [`crate::json::Split`]); where the halves cannot be joined, it is read again in one piece.
/// The text is left as it was.
#[cfg(feature = "std")]
fn parse_toc_text(raw: &mut toc::RawToc, limits: Limits, threads: bool) -> Result<ParsedToc> {
    let json = raw.json_mut();
    if threads
        && json.len() >= SPLIT_PARSE_MIN_BYTES
        && let Some(split) = crate::json::Split::find(json)
    {
        // The tail half is read as an array of its own: its comma becomes the opening bracket.
        // `find` puts the comma inside the text.
        if let Some(comma) = json.get_mut(split.comma) {
            *comma = b'[';
        }
        let parsed = ParsedToc::parse_split(json, split, limits);
        if let Some(bracket) = json.get_mut(split.comma) {
            *bracket = b',';
        }
        if let Some(parsed) = parsed {
            return Ok(parsed);
        }
    }
    ParsedToc::parse(raw.json(), limits)
}

#[cfg(not(feature = "std"))]
fn parse_toc_text(raw: &mut toc::RawToc, limits: Limits, _threads: bool) -> Result<ParsedToc> {
    ParsedToc::parse(raw.json(), limits)
}

/// Hashes the TOC's JSON and builds the tree. With `threads` the hash (about 10 ms for 20 MB)
/// runs on its own thread while the tree is built, once the parse no longer needs both cores,
/// and that thread frees the text as soon as it is hashed, before the tree's larger tables
/// are allocated.
#[cfg(feature = "std")]
fn hash_and_finish(
    raw: toc::RawToc,
    parsed: Result<ParsedToc>,
    data_end: u64,
    threads: bool,
) -> (Result<Digest>, Result<Index>) {
    if !threads {
        return hash_then_finish(raw, parsed, data_end);
    }
    let (send, receive) = std::sync::mpsc::channel::<toc::RawToc>();
    std::thread::scope(|scope| {
        let hashing = std::thread::Builder::new()
            .name("crfs-toc-digest".into())
            .spawn_scoped(scope, move || receive.recv().ok().map(|raw| Digest::of(raw.json())));
        let Ok(hashing) = hashing else {
            // No thread (resource limits): hash here, then build.
            return hash_then_finish(raw, parsed, data_end);
        };
        let local = match send.send(raw) {
            Ok(()) => None,
            Err(returned) => Some(Digest::of(returned.0.json())),
        };
        let index = parsed.and_then(|p| p.finish(data_end));
        let digest = match local {
            Some(digest) => Ok(digest),
            None => hashing.join().ok().flatten().ok_or(Error::Corrupt("the TOC hashing thread failed")),
        };
        (digest, index)
    })
}

/// Hashes the TOC's JSON and builds the tree, on the caller's thread (without std there are
/// no others).
#[cfg(not(feature = "std"))]
fn hash_and_finish(
    raw: toc::RawToc,
    parsed: Result<ParsedToc>,
    data_end: u64,
    _threads: bool,
) -> (Result<Digest>, Result<Index>) {
    hash_then_finish(raw, parsed, data_end)
}

/// Hashes the TOC's JSON, frees it, then builds the tree.
fn hash_then_finish(raw: toc::RawToc, parsed: Result<ParsedToc>, data_end: u64) -> (Result<Digest>, Result<Index>) {
    let digest = Digest::of(raw.json());
    drop(raw);
    (Ok(digest), parsed.and_then(|p| p.finish(data_end)))
}

/// Checks a decoded chunk against its digest, if it has one.
pub fn check_chunk(c: &Chunk, data: &[u8]) -> Result<()> {
    match c.digest {
        Some(d) if Digest::of(data) != d => Err(Error::ChunkDigestMismatch { chunk_offset: c.file_offset }),
        _ => Ok(()),
    }
}

#[cfg(feature = "zstd")]
fn decode_zstd(frame: &[u8], len: usize, out: &mut Vec<u8>, decoders: &mut Decoders) -> Result<()> {
    let decoder = decoders.zstd.get_or_insert_with(|| alloc::boxed::Box::new(crate::zstd::new_decoder()));
    crate::zstd::decode_prefix_with(frame, len, out, decoder)
}

#[cfg(not(feature = "zstd"))]
fn decode_zstd(_: &[u8], _: usize, _: &mut Vec<u8>, _: &mut Decoders) -> Result<()> {
    Err(Error::ZstdUnsupported)
}

/// A buffer of `len` bytes from a caller's `alloc` (see [`Layer::read_chunk_into`]); one of
/// another size is refused rather than filled short or past its end.
fn buffer_of<B: AsMut<[u8]>>(alloc: &mut impl FnMut(usize) -> B, len: usize) -> Result<B> {
    let mut out = alloc(len);
    if out.as_mut().len() != len {
        return Err(Error::Corrupt("chunk buffer of the wrong size"));
    }
    Ok(out)
}

#[cfg(feature = "zstd")]
fn zstd_may_expand_to(frame: &[u8], len: usize) -> Result<bool> {
    Ok(crate::zstd::may_expand_to(frame, len))
}

#[cfg(not(feature = "zstd"))]
fn zstd_may_expand_to(_: &[u8], _: usize) -> Result<bool> {
    Err(Error::ZstdUnsupported)
}

#[cfg(feature = "zstd")]
fn decode_zstd_into(frame: &[u8], out: &mut [u8], decoders: &mut Decoders) -> Result<()> {
    let decoder = decoders.zstd.get_or_insert_with(|| alloc::boxed::Box::new(crate::zstd::new_decoder()));
    crate::zstd::decode_into(frame, out, decoder)
}

#[cfg(not(feature = "zstd"))]
fn decode_zstd_into(_: &[u8], _: &mut [u8], _: &mut Decoders) -> Result<()> {
    Err(Error::ZstdUnsupported)
}
