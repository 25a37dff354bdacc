//! Tar headers: the one set of rules by which the reader finds the TOC entry and the writer
//! scans its input tar and writes headers of its own.
//!
//! | off | len | ustar header field |
//! |---|---|---|
//! | 0 | 100 | name (NUL-terminated unless full) |
//! | 100, 108, 116 | 8 each | mode, uid, gid: numbers |
//! | 124 | 12 | size: a number |
//! | 136 | 12 | mtime: a number |
//! | 148 | 8 | header checksum: octal sum of all 512 bytes with this field as spaces |
//! | 156 | 1 | typeflag: `0`/NUL regular, `x` PAX, `g` PAX global, `L` GNU long name, ... |
//! | 157 | 100 | link name |
//! | 257 | 6 + 2 | magic and version: `ustar\0` `00` (POSIX), `ustar ` ` \0` (GNU) |
//! | 265, 297 | 32 each | owner and group names |
//! | 329, 337 | 8 each | device major and minor: numbers |
//! | 345 | 155 | prefix (POSIX ustar only; 131 bytes in star's headers), joined to name with `/` |
//!
//! The rules, which are Go's `archive/tar` reader's (the reference converter reads its input
//! with it, and GNU tar and libarchive agree on each):
//!
//! - A number is octal ASCII or, when the first byte's top bit is set, GNU base-256: a big-endian
//!   two's-complement number whose sign is the first byte's second bit, so it may be negative
//!   (GNU tar writes negative mtimes so). Octal may have spaces and NULs around it and ends at
//!   the first NUL; what is left must be octal digits, and a field of nothing but spaces and
//!   NULs is 0. Values beyond `i64` are refused. Which fields may be negative is up to the caller
//!   (a size may not).
//! - The checksum is the sum of the header's 512 bytes with the checksum field counted as eight
//!   spaces. POSIX defines it over unsigned bytes and that is what is written; old Unix tars
//!   summed signed `char`s, and every common reader accepts either sum, so both are accepted.
//! - The prefix field applies only to POSIX ustar headers (magic `ustar\0` and version `00`);
//!   star's (ending in `tar\0`) is 131 bytes long.
//! - PAX records are `"<len> <key>=<value>\n"`, `len` counting the whole record; a key is not
//!   empty; the body may end in NUL padding.

use crate::error::{Error, Result};

/// A tar block.
pub(crate) const BLOCK: usize = 512;
/// The name of the TOC's tar entry in a gzip blob (eStargz and legacy stargz).
pub const TOC_NAME: &[u8] = b"stargz.index.json";
/// How many metadata headers (PAX, GNU long name) may precede the TOC entry.
const MAX_META_HEADERS: usize = 8;

/// `field` up to its first NUL.
pub(crate) fn trim_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or(field)
}

/// Parses a numeric header field by the rules above (octal, or GNU base-256 that may be
/// negative). The error says what is wrong.
pub(crate) fn parse_number(field: &[u8]) -> core::result::Result<i64, &'static str> {
    const OVERFLOW: &str = "number overflows";
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        // Two's complement: a negative number is read with its bits inverted (-a-1 == !a).
        let invert = if first & 0x40 != 0 { 0xff } else { 0 };
        // A negative number beyond i64 is named for its sign: no field may hold one.
        let overflow = if invert != 0 { "negative base-256 number" } else { OVERFLOW };
        let mut value: u64 = 0;
        for (i, &b) in field.iter().enumerate() {
            let mut b = b ^ invert;
            if i == 0 {
                // The marker bit is not part of the number.
                b &= 0x7f;
            }
            if value >> 56 != 0 {
                return Err(overflow);
            }
            value = (value << 8) | u64::from(b);
        }
        let value = i64::try_from(value).map_err(|_| overflow)?;
        return Ok(if invert != 0 { !value } else { value });
    }
    let blank = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !blank(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !blank(b)).map_or(start, |e| e + 1);
    let digits = trim_nul(field.get(start..end).unwrap_or_default());
    let mut value: i64 = 0;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return Err("number is not octal");
        }
        value = value.checked_mul(8).and_then(|v| v.checked_add(i64::from(b - b'0'))).ok_or(OVERFLOW)?;
    }
    Ok(value)
}

/// The unsigned and the signed sum of `header`'s bytes, its checksum field counted as spaces.
pub(crate) fn checksums(header: &[u8; BLOCK]) -> (i64, i64) {
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in header.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// Whether `header`'s checksum field holds its unsigned or its signed sum.
pub(crate) fn checksum_ok(header: &[u8; BLOCK]) -> bool {
    let Ok(stored) = parse_number(&header[148..156]) else { return false };
    let (unsigned, signed) = checksums(header);
    stored == unsigned || stored == signed
}

/// The name prefix of `header`: the prefix field of a POSIX ustar header, empty otherwise.
pub(crate) fn name_prefix(header: &[u8; BLOCK]) -> &[u8] {
    if &header[257..263] != b"ustar\0" || &header[263..265] != b"00" {
        return &[];
    }
    // star archives end the header with "tar\0" and have a 131-byte prefix.
    let star = &header[508..512] == b"tar\0";
    trim_nul(if star { &header[345..476] } else { &header[345..500] })
}

/// `len` rounded up to whole blocks.
pub(crate) fn padded(len: u64) -> Option<u64> {
    len.checked_add(BLOCK as u64 - 1).map(|l| l / BLOCK as u64 * BLOCK as u64)
}

/// Calls `f` with each PAX record's key and value in `body`; `bad` is the error for a
/// malformed record.
pub(crate) fn pax_records<'a, E: Clone>(
    mut body: &'a [u8],
    bad: E,
    mut f: impl FnMut(&'a [u8], &'a [u8]) -> core::result::Result<(), E>,
) -> core::result::Result<(), E> {
    // A body may end in NUL padding.
    while body.first().is_some_and(|&b| b != 0) {
        let space = body.iter().position(|&b| b == b' ').ok_or(bad.clone())?;
        let len = core::str::from_utf8(body.get(..space).unwrap_or_default())
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or(bad.clone())?;
        if len <= space + 1 {
            return Err(bad);
        }
        let (record, rest) = body.split_at_checked(len).ok_or(bad.clone())?;
        let record = record.get(space + 1..).and_then(|r| r.strip_suffix(b"\n")).ok_or(bad.clone())?;
        let mut key_value = record.splitn(2, |&b| b == b'=');
        let (Some(key), Some(value)) = (key_value.next(), key_value.next()) else { return Err(bad) };
        if key.is_empty() {
            return Err(bad);
        }
        f(key, value)?;
        body = rest;
    }
    Ok(())
}

/// Finds the TOC entry at the start of `tar` (the inflated TOC member) and returns where its
/// contents lie in `tar`.
///
/// The member holds a tar header named `stargz.index.json`, the JSON, padding and the tar
/// end-of-archive blocks. Go's tar writer emits a plain ustar header for it; PAX (`x`) and GNU
/// long-name (`L`) headers in front of it are honoured as a tar reader would.
pub fn toc_json(tar: &[u8]) -> Result<core::ops::Range<usize>> {
    let mut pos = 0usize;
    let mut long_name: Option<&[u8]> = None;
    for _ in 0..=MAX_META_HEADERS {
        let header: &[u8; BLOCK] =
            tar.get(pos..).and_then(<[u8]>::first_chunk).ok_or(Error::BadTocTar("truncated header"))?;
        if !checksum_ok(header) {
            return Err(Error::BadTocTar("header checksum mismatch"));
        }
        let size = parse_number(&header[124..136]).map_err(Error::BadTocTar)?;
        // Only base-256 can say a negative number.
        let size = u64::try_from(size).map_err(|_| Error::BadTocTar("negative base-256 number"))?;
        let data_start = pos + BLOCK;
        let data_len = usize::try_from(size).map_err(|_| Error::BadTocTar("entry size too large"))?;
        let data = data_start
            .checked_add(data_len)
            .and_then(|end| tar.get(data_start..end))
            .ok_or(Error::BadTocTar("entry runs past the member"))?;
        let next = padded(size)
            .and_then(|p| usize::try_from(p).ok())
            .and_then(|p| data_start.checked_add(p))
            .ok_or(Error::BadTocTar("entry size too large"))?;
        match header[156] {
            b'x' => {
                let bad = Error::BadTocTar("bad PAX record");
                pax_records(data, bad, |key, value| {
                    if key == b"path" {
                        long_name = Some(value);
                    }
                    Ok(())
                })?;
                pos = next;
            }
            b'g' => pos = next,
            b'L' => {
                long_name = Some(trim_nul(data));
                pos = next;
            }
            b'0' | 0 => {
                let name = match long_name {
                    Some(n) => n,
                    None => {
                        // A non-empty ustar prefix makes the path "prefix/name", never the TOC name.
                        if !name_prefix(header).is_empty() {
                            return Err(Error::BadTocTar("first entry is not stargz.index.json"));
                        }
                        trim_nul(&header[..100])
                    }
                };
                if name != TOC_NAME {
                    return Err(Error::BadTocTar("first entry is not stargz.index.json"));
                }
                return Ok(data_start..data_start + data.len());
            }
            _ => return Err(Error::BadTocTar("first entry is not a regular file")),
        }
    }
    Err(Error::BadTocTar("too many metadata headers"))
}
