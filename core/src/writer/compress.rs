//! Compression of the blob's pieces: the [`Deflate`] trait, its miniz_oxide implementation, gzip
//! member framing and the literal eStargz footer.
//!
//! Every payload, chunk and the TOC is one gzip member (RFC 1952), framed here exactly as Go's
//! `compress/gzip` frames it (the reference writer's library), around raw DEFLATE:
//!
//! | off | len | value |
//! |---|---|---|
//! | 0 | 10 | `1f 8b 08 00`, MTIME = 0, XFL (2 at level 9, 4 at level 1, else 0), OS = `ff` |
//! | 10 | .. | raw DEFLATE, final block last |
//! | end-8 | 8 | CRC32 (LE) of the uncompressed bytes, ISIZE (LE) = length mod 2^32 |
//!
//! The footer is the 51-byte empty member of [`crate::footer`]'s table, emitted literally.

use alloc::boxed::Box;
use alloc::vec::Vec;

use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
};

use super::Error;

/// Raw DEFLATE (RFC 1951) compression of one whole buffer.
///
/// Implementations must be deterministic: the same input and settings always give the same
/// bytes. The writer compresses each gzip member independently, so one `Deflate` per thread
/// lets members be compressed in parallel with identical output.
pub trait Deflate {
    /// Appends the raw DEFLATE stream of `input` (ending with a final block) to `out`.
    fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Error>;
}

/// miniz_oxide's deflater: pure Rust, `#![forbid(unsafe_code)]`, no_std + alloc. The core's
/// default compressor; std front-ends may plug in a faster one.
pub struct MinizDeflate {
    state: Box<CompressorOxide>,
}

impl MinizDeflate {
    /// A deflater at `level` (0 = stored, 1 fastest … 9 best; above 9 is miniz's "uber" level 10).
    pub fn new(level: u8) -> Self {
        let flags = create_comp_flags_from_zip_params(i32::from(level.min(10)), -15, 0);
        MinizDeflate { state: Box::new(CompressorOxide::new(flags)) }
    }
}

impl Deflate for MinizDeflate {
    fn deflate(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.state.reset();
        let start = out.len();
        // Stored blocks cost 5 bytes per 64 KiB; start with room for incompressible input.
        out.resize(start + input.len() + input.len() / 1024 + 64, 0);
        let mut pos = start;
        loop {
            // `compress` writes no more than it is given room for, so `pos` stays within `out`.
            let room = out.get_mut(pos..).unwrap_or_default();
            let (status, consumed, written) = compress(&mut self.state, input, room, TDEFLFlush::Finish);
            pos += written;
            input = input.get(consumed..).unwrap_or_default();
            match status {
                TDEFLStatus::Done => break,
                TDEFLStatus::Okay => {
                    let len = out.len();
                    out.resize(len + len / 2 + 64, 0);
                }
                _ => {
                    out.truncate(start);
                    return Err(Error::Deflate("miniz_oxide failed to compress"));
                }
            }
        }
        out.truncate(pos);
        Ok(())
    }
}

/// Makes one self-contained member of a blob: a gzip member (eStargz) or a zstd frame
/// (zstd:chunked). Must be deterministic; one per thread lets members be made in parallel.
pub trait MemberCompressor {
    /// Appends one complete member holding `data` to `out`.
    fn member(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error>;
}

/// gzip members around any [`Deflate`], at `level` (which also sets the header's XFL byte).
pub struct GzipMembers<D> {
    /// The raw DEFLATE compressor.
    pub deflate: D,
    /// The level `deflate` compresses at.
    pub level: u8,
}

impl<D: Deflate> MemberCompressor for GzipMembers<D> {
    fn member(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        gzip_member(&mut self.deflate, self.level, data, out)
    }
}

impl GzipMembers<MinizDeflate> {
    /// gzip members compressed by miniz_oxide at `level`.
    pub fn miniz(level: u8) -> Self {
        GzipMembers { deflate: MinizDeflate::new(level), level }
    }
}

/// zstd frames from ruzstd's encoder. ruzstd implements only its "Fastest" level (about zstd
/// level 1): level 0 stores, every other level is Fastest. Frames carry a content checksum.
#[cfg(feature = "zstd")]
pub struct ZstdFrames {
    level: u8,
}

#[cfg(feature = "zstd")]
impl ZstdFrames {
    /// A frame compressor for `level` (0: uncompressed frames; else ruzstd's Fastest).
    pub fn new(level: u8) -> Self {
        ZstdFrames { level }
    }
}

#[cfg(feature = "zstd")]
impl MemberCompressor for ZstdFrames {
    fn member(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        use ruzstd::encoding::CompressionLevel;
        let level = if self.level == 0 { CompressionLevel::Uncompressed } else { CompressionLevel::Fastest };
        ruzstd::encoding::compress(data, &mut *out, level);
        Ok(())
    }
}

/// The zstd skippable-frame magic zstd:chunked wraps its TOC and footer in (0x184D2A50, LE).
pub const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
/// Length of the zstd:chunked footer payload (stargz-snapshotter's, `GnUlInUx`).
pub const ZSTD_FOOTER_LEN: usize = 40;

/// Appends `payload` as a zstd skippable frame.
pub fn skippable_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&SKIPPABLE_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The 40-byte zstd:chunked footer payload (the `GnUlInUx` column of [`crate::footer`]): TOC offset (of the frame data),
/// compressed and uncompressed TOC lengths, manifest type 1, `GnUlInUx`.
pub fn zstd_footer(toc_offset: u64, compressed_len: u64, json_len: u64) -> [u8; ZSTD_FOOTER_LEN] {
    let mut f = [0u8; ZSTD_FOOTER_LEN];
    f[..8].copy_from_slice(&toc_offset.to_le_bytes());
    f[8..16].copy_from_slice(&compressed_len.to_le_bytes());
    f[16..24].copy_from_slice(&json_len.to_le_bytes());
    f[24..32].copy_from_slice(&1u64.to_le_bytes());
    f[32..].copy_from_slice(b"GnUlInUx");
    f
}

/// The gzip member header Go's `compress/gzip` writes at `level`.
pub fn gzip_header(level: u8) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, xfl, 0xff]
}

/// Appends one whole gzip member holding `data` to `out`.
pub fn gzip_member(deflater: &mut dyn Deflate, level: u8, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    out.extend_from_slice(&gzip_header(level));
    deflater.deflate(data, out)?;
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(())
}

/// Length of the eStargz footer.
pub const FOOTER_LEN: usize = 51;

/// The 51-byte eStargz footer pointing at the TOC member at `toc_offset` (see [`crate::footer`]).
pub fn estargz_footer(toc_offset: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..16].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 26, 0, b'S', b'G', 22, 0]);
    for (i, digit) in f[16..32].iter_mut().enumerate() {
        *digit = super::toc_json::hex_digit((toc_offset >> (60 - 4 * i)) as u8);
    }
    f[32..38].copy_from_slice(b"STARGZ");
    f[38..43].copy_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_matches_the_reference_bytes() {
        // The eStargz footer for TOC offset 0x12345, as the Go writer emits it.
        let want: [u8; 51] = [
            0x1f, 0x8b, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x1a, 0x00, 0x53, 0x47, 0x16, 0x00, 0x30, 0x30,
            0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x53, 0x54, 0x41, 0x52,
            0x47, 0x5a, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(estargz_footer(0x12345), want);
    }

    #[test]
    fn zstd_footer_matches_the_reference_sample() {
        // The tail of testdata/sample.zstdchunked (TOC data at 282, 461 compressed, 1125 raw).
        let mut tail = Vec::new();
        skippable_frame(&zstd_footer(282, 461, 1125), &mut tail);
        let mut want = alloc::vec![0x50, 0x2a, 0x4d, 0x18, 0x28, 0, 0, 0];
        for v in [0x11au64, 0x1cd, 0x465, 1] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.extend_from_slice(b"GnUlInUx");
        assert_eq!(tail, want);
    }

    #[test]
    fn members_inflate_back() {
        for level in [0u8, 1, 6, 9] {
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
            let mut out = Vec::new();
            gzip_member(&mut MinizDeflate::new(level), level, &data, &mut out).unwrap();
            assert_eq!(crate::gzip::inflate_member(&out, 1 << 20).unwrap(), data, "level {level}");
            let mut empty = Vec::new();
            gzip_member(&mut MinizDeflate::new(level), level, &[], &mut empty).unwrap();
            assert!(crate::gzip::inflate_member(&empty, 16).unwrap().is_empty());
        }
    }
}
