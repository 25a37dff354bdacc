//! gzip members (RFC 1952): header and trailer parsing, and raw DEFLATE through miniz_oxide.
//!
//! miniz_oxide inflates raw DEFLATE only, so the member framing is ours:
//!
//! | off | len | field |
//! |---|---|---|
//! | 0 | 2 | ID1 ID2 = `1f 8b` |
//! | 2 | 1 | CM = 8 (deflate) |
//! | 3 | 1 | FLG: FTEXT 1, FHCRC 2, FEXTRA 4, FNAME 8, FCOMMENT 16; others reserved (must be 0) |
//! | 4 | 4 | MTIME, then XFL (1) and OS (1) |
//! | 10 | .. | FEXTRA: XLEN (u16 LE) + XLEN bytes; FNAME, FCOMMENT: NUL-terminated; FHCRC: 2 bytes |
//! | .. | .. | raw DEFLATE data |
//! | end-8 | 8 | CRC32 (LE) of the uncompressed data, ISIZE (LE) = length mod 2^32 |

use alloc::boxed::Box;
use alloc::vec::Vec;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use crate::error::{Error, Result};

const FLG_FHCRC: u8 = 0x02;
const FLG_FEXTRA: u8 = 0x04;
const FLG_FNAME: u8 = 0x08;
const FLG_FCOMMENT: u8 = 0x10;
const FLG_RESERVED: u8 = 0xe0;

/// DEFLATE's largest expansion: 258 bytes out per 2 bits in, i.e. about 1032 to 1.
const MAX_DEFLATE_RATIO: usize = 1032;

/// Size of the gzip trailer: CRC32 and ISIZE.
pub const TRAILER_LEN: usize = 8;

/// A parsed gzip member header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The FEXTRA payload, if the FEXTRA flag is set.
    pub extra: Option<&'a [u8]>,
    /// Length of the whole header: where the DEFLATE data starts.
    pub len: usize,
}

/// Parses the gzip header at the start of `buf`.
pub fn parse_header(buf: &[u8]) -> Result<Header<'_>> {
    let &[id1, id2, method, flags, ..] = buf.first_chunk::<10>().ok_or(Error::BadGzip("header truncated"))?;
    if id1 != 0x1f || id2 != 0x8b {
        return Err(Error::BadGzip("bad magic"));
    }
    if method != 8 {
        return Err(Error::BadGzip("compression method is not deflate"));
    }
    if flags & FLG_RESERVED != 0 {
        return Err(Error::BadGzip("reserved flag bits set"));
    }
    let mut pos = 10usize;
    let mut extra = None;
    if flags & FLG_FEXTRA != 0 {
        let xlen = buf.get(pos..).and_then(<[u8]>::first_chunk).ok_or(Error::BadGzip("header truncated"))?;
        let xlen = usize::from(u16::from_le_bytes(*xlen));
        pos += 2;
        extra = Some(buf.get(pos..pos + xlen).ok_or(Error::BadGzip("header truncated"))?);
        pos += xlen;
    }
    for flag in [FLG_FNAME, FLG_FCOMMENT] {
        if flags & flag != 0 {
            let rest = buf.get(pos..).ok_or(Error::BadGzip("header truncated"))?;
            let nul = rest.iter().position(|&b| b == 0).ok_or(Error::BadGzip("header truncated"))?;
            pos += nul + 1;
        }
    }
    if flags & FLG_FHCRC != 0 {
        pos += 2;
        if pos > buf.len() {
            return Err(Error::BadGzip("header truncated"));
        }
    }
    Ok(Header { extra, len: pos })
}

fn new_decompressor() -> Box<DecompressorOxide> {
    Box::<DecompressorOxide>::default()
}

/// Makes `out` hold `len` bytes to be overwritten: a new zeroed allocation when it has too
/// little room (`vec!` asks the allocator for zeroed memory, which a fresh mapping already
/// is, so large buffers are not written twice), else its own memory, zeroed once.
pub(crate) fn output_buffer(out: &mut Vec<u8>, len: usize) {
    if out.capacity() < len {
        *out = alloc::vec![0u8; len];
    } else {
        out.clear();
        out.resize(len, 0);
    }
}

/// Inflates one whole member at the start of `member`, checks its CRC32 and ISIZE, and returns
/// the uncompressed bytes. Fails with `TooLarge` rather than produce more than `limit` bytes.
pub fn inflate_member(member: &[u8], limit: usize) -> Result<Vec<u8>> {
    let data = deflate_data(member)?;
    // Size the output from the trailer's ISIZE when the member fills `member` (as the TOC's
    // does), believed only as far as DEFLATE's 1032:1 ceiling allows. `vec!` of zeros maps
    // pages lazily, so a false claim costs address space, not memory.
    let claimed = member.last_chunk::<4>().map(|isize| (u32::from_le_bytes(*isize) as usize).saturating_add(1));
    let ceiling = expansion_ceiling(data);
    let initial = claimed.unwrap_or(data.len().saturating_mul(4)).min(ceiling).max(4096).min(limit);
    let mut out: Vec<u8> = alloc::vec![0u8; initial];
    let mut decomp = new_decompressor();
    let mut in_pos = 0usize;
    let mut out_pos = 0usize;
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    loop {
        // `decompress` consumes no more than it is given, so `in_pos` stays within `data`.
        let input = data.get(in_pos..).unwrap_or_default();
        let (status, consumed, written) = decompress(&mut decomp, input, &mut out, out_pos, flags);
        in_pos += consumed;
        out_pos += written;
        match status {
            TINFLStatus::Done => break,
            TINFLStatus::HasMoreOutput => {
                if out.len() >= limit {
                    return Err(Error::TooLarge {
                        what: "gzip member",
                        size: out.len() as u64 + 1,
                        limit: limit as u64,
                    });
                }
                let grown = out.len().saturating_mul(2).min(limit);
                let mut bigger = alloc::vec![0u8; grown];
                let (new, old) =
                    bigger.get_mut(..out_pos).zip(out.get(..out_pos)).ok_or(Error::Corrupt("inflate overran"))?;
                new.copy_from_slice(old);
                out = bigger;
            }
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                return Err(Error::Corrupt("gzip member ends early"));
            }
            _ => return Err(Error::Corrupt("invalid deflate data")),
        }
    }
    out.truncate(out_pos);
    let trailer: &[u8; TRAILER_LEN] =
        data.get(in_pos..).and_then(<[u8]>::first_chunk).ok_or(Error::BadGzip("trailer truncated"))?;
    let &[c0, c1, c2, c3, s0, s1, s2, s3] = trailer;
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let isize = u32::from_le_bytes([s0, s1, s2, s3]);
    if crc32fast::hash(&out) != crc || (out.len() as u32) != isize {
        return Err(Error::GzipChecksum);
    }
    Ok(out)
}

/// Inflates the first `len` bytes of the member at the start of `member` into `out`, replacing
/// its contents.
///
/// Never produces more than `len` bytes, whatever the stream holds after them. The member
/// may end exactly there or go on (eStargz members often carry the next tar header after a
/// chunk); a member that ends earlier is an error. `out` is allocated once, for at most what
/// the compressed bytes can expand to (DEFLATE's 1032:1), so a `len` that the compressed data
/// cannot back is never allocated.
pub fn inflate_prefix(member: &[u8], len: usize, out: &mut Vec<u8>) -> Result<()> {
    inflate_prefix_with(member, len, out, &mut new_decompressor())
}

/// [`inflate_prefix`] with a caller's decompressor, reset here before use: a reader that keeps
/// one (see [`Scratch`](crate::layer::Scratch)) inflates chunk after chunk without allocating
/// its 10 KB of state each time.
pub fn inflate_prefix_with(member: &[u8], len: usize, out: &mut Vec<u8>, decomp: &mut DecompressorOxide) -> Result<()> {
    let data = deflate_data(member)?;
    out.clear();
    if len == 0 {
        return Ok(());
    }
    output_buffer(out, expansion_ceiling(data).min(len));
    inflate_data(data, out, len, decomp)
}

/// Inflates the first `out.len()` bytes of the gzip member at the start of `member` into `out`,
/// which the caller sized (and allocated: see [`Layer::read_chunk_into`]); a member that holds
/// fewer bytes, or whose compressed bytes cannot expand to that many, is an error.
///
/// [`Layer::read_chunk_into`]: crate::Layer::read_chunk_into
pub fn inflate_into(member: &[u8], out: &mut [u8], decomp: &mut DecompressorOxide) -> Result<()> {
    let data = deflate_data(member)?;
    let len = out.len();
    if len == 0 {
        return Ok(());
    }
    if expansion_ceiling(data) < len {
        return Err(Error::Corrupt("gzip member holds fewer bytes than the TOC says"));
    }
    inflate_data(data, out, len, decomp)
}

/// The deflate stream of a gzip member, after its header.
fn deflate_data(member: &[u8]) -> Result<&[u8]> {
    let header = parse_header(member)?;
    member.get(header.len..).ok_or(Error::BadGzip("header truncated"))
}

/// Whether the gzip member `member` (its header included) could hold `len` decoded bytes.
pub(crate) fn may_expand_to(member: &[u8], len: usize) -> bool {
    expansion_ceiling(member) >= len
}

/// The most bytes `data` can inflate to: DEFLATE's 1032:1, plus a little.
fn expansion_ceiling(data: &[u8]) -> usize {
    data.len().saturating_mul(MAX_DEFLATE_RATIO).saturating_add(64)
}

/// Inflates `data` into `out` (reset first), which must come to exactly `len` bytes.
fn inflate_data(data: &[u8], out: &mut [u8], len: usize, decomp: &mut DecompressorOxide) -> Result<()> {
    decomp.init();
    // All the input and the whole output at once: one call inflates as far as either allows.
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, written) = decompress(decomp, data, out, 0, flags);
    match status {
        TINFLStatus::Done | TINFLStatus::HasMoreOutput if written == len => Ok(()),
        TINFLStatus::Done => Err(Error::Corrupt("gzip member holds fewer bytes than the TOC says")),
        // The output holds all that the input could expand to, and it is full.
        TINFLStatus::HasMoreOutput => Err(Error::Corrupt("gzip member ends early")),
        TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
            Err(Error::Corrupt("gzip member ends early"))
        }
        _ => Err(Error::Corrupt("invalid deflate data")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `printf 'hello' | gzip -n` (no name, mtime 0).
    const HELLO: [u8; 25] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x86,
        0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn inflates_whole_member_and_checks_crc() {
        assert_eq!(inflate_member(&HELLO, 1 << 20).unwrap(), b"hello");
        let mut bad = HELLO;
        bad[17] ^= 1;
        assert_eq!(inflate_member(&bad, 1 << 20), Err(Error::GzipChecksum));
    }

    #[test]
    fn prefix_stops_at_requested_length() {
        let mut out = Vec::new();
        inflate_prefix(&HELLO, 3, &mut out).unwrap();
        assert_eq!(out, b"hel");
        inflate_prefix(&HELLO, 5, &mut out).unwrap();
        assert_eq!(out, b"hello");
        assert!(matches!(inflate_prefix(&HELLO, 6, &mut out), Err(Error::Corrupt(_))));
    }

    #[test]
    fn limit_is_enforced() {
        assert!(matches!(inflate_member(&HELLO, 4), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn truncated_inputs_fail_cleanly() {
        for n in 0..HELLO.len() {
            assert!(inflate_member(&HELLO[..n], 1 << 20).is_err(), "prefix {n}");
        }
    }
}
