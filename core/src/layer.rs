//! A layer: a blob, its footer and its index, and the decoding of file chunks.

use alloc::vec::Vec;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::footer::{self, Footer, Format};
use crate::index::{Chunk, Index, Kind, Limits, NodeId};
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
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            max_toc_size: 512 << 20,
            max_entries: 8 << 20,
            max_chunk_size: 64 << 20,
            expected_toc_digest: None,
        }
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
        let toc = toc::read_toc(&blob, &footer, options.max_toc_size)?;
        if let Some(expected) = options.expected_toc_digest
            && expected != toc.digest
        {
            return Err(Error::TocDigestMismatch);
        }
        let data_end = if footer.format.is_zstd() { footer.toc_offset.saturating_sub(8) } else { footer.toc_offset };
        let index = Index::from_json(toc.json(), data_end, Limits { max_entries: options.max_entries })?;
        Ok(Layer {
            blob,
            footer,
            index,
            toc_digest: toc.digest,
            toc_compressed_digest: toc.compressed_digest,
            toc_json_len: toc.json().len(),
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
        self.index.chunks(id).get(chunk).copied().ok_or(Error::WrongType)
    }

    /// Decodes the first `len` bytes of one chunk of a regular file into `out` (replacing its
    /// contents), without verifying. `len` is clamped to the chunk's size.
    pub fn decode_chunk_prefix(&self, file: NodeId, chunk: usize, len: u64, out: &mut Vec<u8>) -> Result<()> {
        let c = self.reg_chunk(file, chunk)?;
        self.decode(&c, len.min(c.size), out)
    }

    /// Decodes one whole chunk into `out` (replacing its contents) and, if `verify` is set and
    /// the TOC has a digest for it, checks the digest.
    pub fn read_chunk(&self, file: NodeId, chunk: usize, verify: bool, out: &mut Vec<u8>) -> Result<()> {
        let c = self.reg_chunk(file, chunk)?;
        self.decode(&c, c.size, out)?;
        if verify {
            check_chunk(&c, out)?;
        }
        Ok(())
    }

    fn decode(&self, c: &Chunk, len: u64, out: &mut Vec<u8>) -> Result<()> {
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
        let span = c.compressed_end.saturating_sub(c.offset).min(compressed_budget(total));
        let mut compressed = alloc::vec![0u8; span as usize];
        let got = read_full(&self.blob, c.offset, &mut compressed)?;
        compressed.truncate(got);
        out.resize(total as usize, 0);
        if self.footer.format.is_zstd() {
            decode_zstd(&compressed, out)?;
        } else {
            crate::gzip::inflate_prefix(&compressed, out)?;
        }
        if c.inner_offset > 0 {
            out.drain(..c.inner_offset as usize);
        }
        Ok(())
    }

    /// Reads file bytes at `offset` into `buf`, decoding each chunk it touches once. Returns the
    /// number of bytes read (short only at the end of the file). With `verify`, every chunk
    /// touched is decoded whole and checked against its digest.
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
        let mut scratch = Vec::new();
        let mut pos = offset;
        while pos < end {
            let i = self.index.chunk_at(id, pos).ok_or(Error::Corrupt("no chunk covers the offset"))?;
            let c = chunks[i];
            let within = pos - c.file_offset;
            let take = (c.file_offset + c.size).min(end) - pos;
            if verify && c.digest.is_some() {
                self.decode(&c, c.size, &mut scratch)?;
                check_chunk(&c, &scratch)?;
            } else {
                self.decode(&c, within + take, &mut scratch)?;
            }
            let dst = (pos - offset) as usize;
            buf[dst..dst + take as usize].copy_from_slice(&scratch[within as usize..(within + take) as usize]);
            pos += take;
        }
        Ok((end - offset) as usize)
    }

    /// Reads a whole regular file, checking every chunk digest and the file digest when present.
    pub fn read_file_verified(&self, file: NodeId, out: &mut Vec<u8>) -> Result<()> {
        let id = self.index.resolve(file);
        out.clear();
        let mut scratch = Vec::new();
        let mut hasher = Hasher::default();
        for i in 0..self.index.chunks(id).len() {
            self.read_chunk(id, i, true, &mut scratch)?;
            hasher.update(&scratch);
            out.extend_from_slice(&scratch);
        }
        if let Some(expected) = self.index.file_digest(id)
            && hasher.finish() != expected
        {
            return Err(Error::FileDigestMismatch);
        }
        Ok(())
    }
}

/// Fills as much of `buf` as the blob holds from `offset`.
fn read_full<R: ReadAt + ?Sized>(blob: &R, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = blob.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Checks a decoded chunk against its digest, if it has one.
pub fn check_chunk(c: &Chunk, data: &[u8]) -> Result<()> {
    match c.digest {
        Some(d) if Digest::of(data) != d => Err(Error::ChunkDigestMismatch { chunk_offset: c.file_offset }),
        _ => Ok(()),
    }
}

#[cfg(feature = "zstd")]
fn decode_zstd(frame: &[u8], out: &mut [u8]) -> Result<()> {
    crate::zstd::decode_prefix(frame, out)
}

#[cfg(not(feature = "zstd"))]
fn decode_zstd(_: &[u8], _: &mut [u8]) -> Result<()> {
    Err(Error::ZstdUnsupported)
}
