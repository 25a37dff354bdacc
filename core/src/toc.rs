//! Fetching the TOC: its compressed bytes, the JSON inside, and its digest.

use alloc::vec::Vec;
use core::ops::Range;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::footer::Footer;
use crate::read_at::ReadAt;
use crate::{gzip, tar};

/// The TOC's JSON text and digests.
#[derive(Debug, Clone)]
pub struct TocBytes {
    /// The decompressed TOC (for gzip, the tar member holding the JSON).
    buf: Vec<u8>,
    /// Where the JSON lies in `buf`.
    json: Range<usize>,
    /// sha256 of the JSON: the `containerd.io/snapshot/stargz/toc.digest` annotation.
    pub digest: Digest,
    /// sha256 of the compressed TOC (zstd:chunked's `manifest-checksum` annotation).
    pub compressed_digest: Digest,
    /// Length of the compressed TOC.
    pub compressed_len: u64,
}

impl TocBytes {
    /// The JSON text.
    pub fn json(&self) -> &[u8] {
        // `json` lies within `buf`: both are set together when the TOC is read.
        self.buf.get(self.json.clone()).unwrap_or_default()
    }
}

/// The TOC with its JSON not yet hashed: the decompressed text, and the digest of the
/// compressed bytes (small: hashed as soon as read, so they need not be kept).
#[derive(Debug, Clone)]
pub struct RawToc {
    buf: Vec<u8>,
    json: Range<usize>,
    /// sha256 of the compressed TOC.
    pub compressed_digest: Digest,
    /// Length of the compressed TOC.
    pub compressed_len: u64,
}

impl RawToc {
    /// The JSON text.
    pub fn json(&self) -> &[u8] {
        // `json` lies within `buf`: both are set together when the TOC is read.
        self.buf.get(self.json.clone()).unwrap_or_default()
    }

    /// The JSON text, to change in place.
    pub fn json_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.json.clone()).unwrap_or_default()
    }

    /// Attaches the JSON's digest, computed elsewhere (see [`Digest::of`]).
    pub fn into_toc_bytes(self, digest: Digest) -> TocBytes {
        let RawToc { buf, json, compressed_digest, compressed_len } = self;
        TocBytes { buf, json, digest, compressed_digest, compressed_len }
    }
}

/// Reads and decompresses the TOC that `footer` points at, and hashes it. `limit` bounds both
/// its compressed and decompressed size.
pub fn read_toc<R: ReadAt + ?Sized>(blob: &R, footer: &Footer, limit: u64) -> Result<TocBytes> {
    let raw = read_raw_toc(blob, footer, limit)?;
    let digest = Digest::of(raw.json());
    Ok(raw.into_toc_bytes(digest))
}

/// Reads and decompresses the TOC that `footer` points at, without hashing it. `limit` bounds
/// both its compressed and decompressed size.
pub fn read_raw_toc<R: ReadAt + ?Sized>(blob: &R, footer: &Footer, limit: u64) -> Result<RawToc> {
    let too_large = |size: u64| Error::TooLarge { what: "TOC", size, limit };
    if footer.toc_len > limit {
        return Err(too_large(footer.toc_len));
    }
    let len = usize::try_from(footer.toc_len).map_err(|_| too_large(footer.toc_len))?;
    let mut compressed = alloc::vec![0u8; len];
    blob.read_exact_at(footer.toc_offset, &mut compressed)?;
    let compressed_digest = Digest::of(&compressed);
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let (buf, json) = if footer.format.is_zstd() {
        decode_zstd_toc(&compressed, footer, limit)?
    } else {
        let buf = gzip::inflate_member(&compressed, limit_usize)?;
        let json = tar::toc_json(&buf)?;
        (buf, json)
    };
    Ok(RawToc { buf, json, compressed_digest, compressed_len: footer.toc_len })
}

#[cfg(feature = "zstd")]
fn decode_zstd_toc(compressed: &[u8], footer: &Footer, limit: u64) -> Result<(Vec<u8>, Range<usize>)> {
    let raw_len = footer.toc_uncompressed_len.unwrap_or(0);
    if raw_len > limit {
        return Err(Error::TooLarge { what: "TOC", size: raw_len, limit });
    }
    let buf = crate::zstd::decode_exact(compressed, raw_len as usize)?;
    let len = buf.len();
    Ok((buf, 0..len))
}

#[cfg(not(feature = "zstd"))]
fn decode_zstd_toc(_: &[u8], _: &Footer, _: u64) -> Result<(Vec<u8>, Range<usize>)> {
    Err(Error::ZstdUnsupported)
}
