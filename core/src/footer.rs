//! Footers: how each format points from the end of the blob to its TOC.
//!
//! Tried in the reference's order: eStargz (51 bytes), legacy stargz (47), then zstd:chunked
//! (40-byte `GnUlInUx` payload, 64-byte `GNUlInUx` payload). Exact bytes: the tables below, and
//! the literal footers in this module's tests.
//!
//! eStargz footer (an empty stored gzip member with an RFC 1952 extra subfield):
//!
//! | off | len | value |
//! |---|---|---|
//! | 0 | 10 | `1f 8b 08 04 00 00 00 00 00 ff` |
//! | 10 | 2 | XLEN = 26 |
//! | 12 | 2 | SI1 SI2 = `S` `G` |
//! | 14 | 2 | LEN = 22 |
//! | 16 | 22 | `%016x` TOC offset, then `STARGZ` |
//! | 38 | 5 | `01 00 00 ff ff` (final stored block, length 0) |
//! | 43 | 8 | CRC32 = 0, ISIZE = 0 |
//!
//! The legacy footer is the same with XLEN = 22 and the 22 payload bytes directly in the extra
//! field (no subfield header): 47 bytes. The external-TOC variant has subfield LEN 17 ending in
//! `STARGZEXTERNALTOC`; it is recognised and refused.
//!
//! zstd:chunked ends in a skippable frame (`50 2a 4d 18`, u32 LE size) whose payload is the
//! footer; all fields are u64 LE:
//!
//! | off | 40-byte (`GnUlInUx`) | 64-byte (`GNUlInUx`) |
//! |---|---|---|
//! | 0 | TOC offset (frame data) | TOC offset |
//! | 8 | TOC compressed length | same |
//! | 16 | TOC uncompressed length | same |
//! | 24 | manifest type = 1 | same |
//! | 32 | magic | tar-split offset |
//! | 40 | | tar-split compressed length |
//! | 48 | | tar-split uncompressed length |
//! | 56 | | magic |

use crate::error::{Error, Result};
use crate::gzip;
use crate::read_at::ReadAt;

/// eStargz footer length.
pub const ESTARGZ_FOOTER_LEN: u64 = 51;
/// Legacy stargz footer length.
pub const LEGACY_FOOTER_LEN: u64 = 47;
/// eStargz external-TOC footer length: XLEN = 21, subfield `SG`, LEN = 17, `STARGZEXTERNALTOC`.
pub const EXTERNAL_TOC_FOOTER_LEN: u64 = 46;
/// zstd:chunked footer payload length, `GnUlInUx` variant (stargz-snapshotter, containers/storage < 2023-08).
pub const ZSTD_FOOTER_LEN: u64 = 40;
/// zstd:chunked footer payload length, `GNUlInUx` variant (containers/storage since 2023-08).
pub const ZSTD_FOOTER_V2_LEN: u64 = 64;
/// The longest footer: how many tail bytes to read to find any of them.
pub const MAX_FOOTER_LEN: u64 = ZSTD_FOOTER_V2_LEN;

const STARGZ_MAGIC: &[u8] = b"STARGZ";
const EXTERNAL_TOC_MAGIC: &[u8] = b"STARGZEXTERNALTOC";
const ZSTD_MAGIC: &[u8; 8] = b"GnUlInUx";
const ZSTD_MAGIC_V2: &[u8; 8] = b"GNUlInUx";
/// The only zstd:chunked manifest type: 1, "CRFS" (a JSON TOC).
const ZSTD_MANIFEST_TYPE_CRFS: u64 = 1;

/// The blob's format, as its footer tells, and the format the writer is asked to write
/// (`Estargz` or `ZstdChunked`: it refuses the other two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// gzip eStargz, 51-byte footer.
    #[default]
    Estargz,
    /// gzip legacy stargz (CRFS 2019), 47-byte footer.
    LegacyStargz,
    /// zstd:chunked with the 40-byte `GnUlInUx` footer.
    ZstdChunked,
    /// zstd:chunked with the 64-byte `GNUlInUx` footer (containers/storage).
    ZstdChunkedV2,
}

impl Format {
    /// Whether payloads are zstd frames (else gzip members).
    pub fn is_zstd(self) -> bool {
        matches!(self, Format::ZstdChunked | Format::ZstdChunkedV2)
    }

    /// A short lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Estargz => "estargz",
            Format::LegacyStargz => "stargz",
            Format::ZstdChunked => "zstd:chunked",
            Format::ZstdChunkedV2 => "zstd:chunked (containers/storage)",
        }
    }
}

/// Where the TOC is, as read from the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The blob's format.
    pub format: Format,
    /// gzip: offset of the TOC's gzip member. zstd: offset of the compressed TOC frame.
    pub toc_offset: u64,
    /// Length of the compressed TOC: up to the footer for gzip, from the footer for zstd.
    pub toc_len: u64,
    /// Uncompressed TOC length, when the footer says (zstd only).
    pub toc_uncompressed_len: Option<u64>,
    /// Length of the footer (including a zstd skippable-frame header).
    pub footer_len: u64,
}

/// Reads the tail of `blob` and parses whichever footer it ends with.
pub fn read_footer<R: ReadAt + ?Sized>(blob: &R) -> Result<Footer> {
    let size = blob.size();
    let tail_len = size.min(MAX_FOOTER_LEN);
    let mut tail = [0u8; MAX_FOOTER_LEN as usize];
    let tail = tail.get_mut(..tail_len as usize).ok_or(Error::NoFooter)?;
    blob.read_exact_at(size - tail_len, tail)?;
    parse_footer(tail, size)
}

/// Parses the footer from `tail`, the last bytes (up to `MAX_FOOTER_LEN`) of a blob of `blob_size` bytes.
pub fn parse_footer(tail: &[u8], blob_size: u64) -> Result<Footer> {
    let from_end = |n: u64| -> Option<&[u8]> { tail.len().checked_sub(n as usize).and_then(|start| tail.get(start..)) };
    let mut first_error = None;
    if let Some(bytes) = from_end(ESTARGZ_FOOTER_LEN) {
        match parse_estargz(bytes) {
            Ok(toc_offset) => return gzip_footer(Format::Estargz, toc_offset, ESTARGZ_FOOTER_LEN, blob_size),
            Err(e @ Error::ExternalToc) => return Err(e),
            Err(e) => first_error = Some(e),
        }
    }
    if let Some(bytes) = from_end(EXTERNAL_TOC_FOOTER_LEN)
        && is_external_toc(bytes)
    {
        return Err(Error::ExternalToc);
    }
    if let Some(bytes) = from_end(LEGACY_FOOTER_LEN)
        && let Ok(toc_offset) = parse_legacy(bytes)
    {
        return gzip_footer(Format::LegacyStargz, toc_offset, LEGACY_FOOTER_LEN, blob_size);
    }
    if let Some(magic) = from_end(8) {
        if magic == ZSTD_MAGIC {
            if let Some(bytes) = from_end(ZSTD_FOOTER_LEN) {
                return zstd_footer(Format::ZstdChunked, bytes, ZSTD_FOOTER_LEN, blob_size);
            }
        } else if magic == ZSTD_MAGIC_V2
            && let Some(bytes) = from_end(ZSTD_FOOTER_V2_LEN)
        {
            return zstd_footer(Format::ZstdChunkedV2, bytes, ZSTD_FOOTER_V2_LEN, blob_size);
        }
    }
    // A blob that starts like an eStargz footer but fails a field check says more than "no footer".
    match first_error {
        Some(e @ Error::BadFooter(_)) => Err(e),
        _ => Err(Error::NoFooter),
    }
}

fn parse_hex_offset(hex: &[u8]) -> Result<u64> {
    let mut value: u64 = 0;
    for &b in hex {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(Error::BadFooter("TOC offset is not hexadecimal")),
        };
        value = (value << 4) | u64::from(digit);
    }
    // The reference parses it as an int64.
    if value > i64::MAX as u64 {
        return Err(Error::BadFooter("TOC offset overflows int64"));
    }
    Ok(value)
}

/// Checks the rest of an empty stored member after its header: `01 00 00 ff ff` and a zero trailer.
fn check_empty_member_body(body: &[u8]) -> Result<()> {
    if body != [0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0] {
        return Err(Error::BadFooter("footer member is not empty"));
    }
    Ok(())
}

fn parse_estargz(bytes: &[u8]) -> Result<u64> {
    let header = gzip::parse_header(bytes).map_err(|_| Error::NoFooter)?;
    let extra = header.extra.ok_or(Error::NoFooter)?;
    let [b'S', b'G', len_low, len_high, subfield @ ..] = extra else {
        return Err(Error::BadFooter("extra subfield is not SG"));
    };
    let sub_len = usize::from(u16::from_le_bytes([*len_low, *len_high]));
    let payload = subfield.get(..sub_len).ok_or(Error::BadFooter("subfield truncated"))?;
    if payload == EXTERNAL_TOC_MAGIC {
        return Err(Error::ExternalToc);
    }
    let hex = match payload.split_at_checked(16) {
        Some((hex, magic)) if sub_len == 22 && magic == STARGZ_MAGIC => hex,
        _ => return Err(Error::BadFooter("subfield is not <16 hex digits>STARGZ")),
    };
    check_empty_member_body(bytes.get(header.len..).unwrap_or_default())?;
    parse_hex_offset(hex)
}

/// Whether `bytes` (the last 46 of the blob) are the external-TOC footer: its TOC lives elsewhere.
fn is_external_toc(bytes: &[u8]) -> bool {
    let Ok(header) = gzip::parse_header(bytes) else { return false };
    header
        .extra
        .and_then(|e| e.split_at_checked(4))
        .is_some_and(|(sub_header, magic)| sub_header == [b'S', b'G', 17, 0] && magic == EXTERNAL_TOC_MAGIC)
}

fn parse_legacy(bytes: &[u8]) -> Result<u64> {
    let header = gzip::parse_header(bytes).map_err(|_| Error::NoFooter)?;
    let extra = header.extra.ok_or(Error::NoFooter)?;
    let hex = match extra.split_at_checked(16) {
        Some((hex, magic)) if extra.len() == 22 && magic == STARGZ_MAGIC => hex,
        _ => return Err(Error::BadFooter("extra field is not <16 hex digits>STARGZ")),
    };
    check_empty_member_body(bytes.get(header.len..).unwrap_or_default())?;
    parse_hex_offset(hex)
}

fn gzip_footer(format: Format, toc_offset: u64, footer_len: u64, blob_size: u64) -> Result<Footer> {
    let toc_end = blob_size - footer_len;
    if toc_offset >= toc_end {
        return Err(Error::TocOutOfRange { offset: toc_offset, size: 0, blob_size });
    }
    Ok(Footer { format, toc_offset, toc_len: toc_end - toc_offset, toc_uncompressed_len: None, footer_len })
}

/// The little-endian u64 at `at`; the caller has checked that `bytes` holds the whole footer.
fn le_u64(bytes: &[u8], at: usize) -> Result<u64> {
    let field = bytes.get(at..).and_then(<[u8]>::first_chunk).ok_or(Error::BadFooter("footer truncated"))?;
    Ok(u64::from_le_bytes(*field))
}

fn zstd_footer(format: Format, bytes: &[u8], payload_len: u64, blob_size: u64) -> Result<Footer> {
    let toc_offset = le_u64(bytes, 0)?;
    let toc_len = le_u64(bytes, 8)?;
    let toc_uncompressed_len = le_u64(bytes, 16)?;
    if le_u64(bytes, 24)? != ZSTD_MANIFEST_TYPE_CRFS {
        return Err(Error::BadFooter("zstd:chunked manifest type is not 1"));
    }
    // The payload sits in a skippable frame with an 8-byte header; the reference reads only the
    // payload, so a blob that lacks the frame header is accepted too.
    let footer_len = payload_len + 8;
    let data_end = blob_size.saturating_sub(payload_len);
    let in_range = toc_offset.checked_add(toc_len).is_some_and(|end| end <= data_end);
    if !in_range || toc_len == 0 {
        return Err(Error::TocOutOfRange { offset: toc_offset, size: toc_len, blob_size });
    }
    Ok(Footer { format, toc_offset, toc_len, toc_uncompressed_len: Some(toc_uncompressed_len), footer_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The eStargz footer for TOC offset 0x12345, as the Go writer emits it.
    const ESTARGZ_12345: [u8; 51] = [
        0x1f, 0x8b, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x1a, 0x00, 0x53, 0x47, 0x16, 0x00, 0x30, 0x30,
        0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x53, 0x54, 0x41, 0x52,
        0x47, 0x5a, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    // The legacy footer for TOC offset 0x12345.
    const LEGACY_12345: [u8; 47] = [
        0x1f, 0x8b, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x16, 0x00, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30,
        0x30, 0x30, 0x30, 0x30, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x53, 0x54, 0x41, 0x52, 0x47, 0x5a, 0x01, 0x00,
        0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    fn with_prefix(footer: &[u8], prefix_len: usize) -> alloc::vec::Vec<u8> {
        let mut blob = alloc::vec![0xaau8; prefix_len];
        blob.extend_from_slice(footer);
        blob
    }

    #[test]
    fn estargz_footer() {
        let blob = with_prefix(&ESTARGZ_12345, 0x20000);
        let f = read_footer(blob.as_slice()).unwrap();
        assert_eq!(f.format, Format::Estargz);
        assert_eq!(f.toc_offset, 0x12345);
        assert_eq!(f.toc_len, 0x20000 - 0x12345);
    }

    #[test]
    fn legacy_footer() {
        let blob = with_prefix(&LEGACY_12345, 0x20000);
        let f = read_footer(blob.as_slice()).unwrap();
        assert_eq!(f.format, Format::LegacyStargz);
        assert_eq!(f.toc_offset, 0x12345);
        assert_eq!(f.footer_len, 47);
    }

    #[test]
    fn zstd_footer_v1() {
        // The tail of testdata/sample.zstdchunked (TOC data at 282, 461 compressed, 1125 raw).
        let mut tail = alloc::vec::Vec::new();
        tail.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 0x28, 0, 0, 0]);
        for v in [282u64, 461, 1125, 1] {
            tail.extend_from_slice(&v.to_le_bytes());
        }
        tail.extend_from_slice(b"GnUlInUx");
        let blob = with_prefix(&tail, 282 + 461);
        let f = read_footer(blob.as_slice()).unwrap();
        assert_eq!(f.format, Format::ZstdChunked);
        assert_eq!((f.toc_offset, f.toc_len, f.toc_uncompressed_len), (282, 461, Some(1125)));
    }

    #[test]
    fn offsets_outside_the_blob_are_refused() {
        let blob = with_prefix(&ESTARGZ_12345, 100);
        assert!(matches!(read_footer(blob.as_slice()), Err(Error::TocOutOfRange { .. })));
        let mut tail = alloc::vec::Vec::new();
        for v in [u64::MAX - 3, 10, 10, 1] {
            tail.extend_from_slice(&v.to_le_bytes());
        }
        tail.extend_from_slice(b"GnUlInUx");
        assert!(matches!(read_footer(tail.as_slice()), Err(Error::TocOutOfRange { .. })));
    }

    #[test]
    fn garbage_and_short_blobs_have_no_footer() {
        for len in 0..80 {
            let blob = alloc::vec![0x5au8; len];
            assert!(read_footer(blob.as_slice()).is_err());
        }
        let mut bad = ESTARGZ_12345;
        bad[20] = b'x';
        assert!(matches!(read_footer(&bad[..]), Err(Error::BadFooter(_))));
    }
}
