//! Just enough tar to find the TOC entry inside the TOC's gzip member.
//!
//! The member holds a tar header named `stargz.index.json`, the JSON, padding and the tar
//! end-of-archive blocks. Go's tar writer emits a plain ustar header for it; PAX (`x`) and GNU
//! long-name (`L`) headers in front of it are honoured as a tar reader would.
//!
//! | off | len | ustar header field |
//! |---|---|---|
//! | 0 | 100 | name (NUL-terminated unless full) |
//! | 124 | 12 | size: octal ASCII, or base-256 when the first byte has its top bit set |
//! | 148 | 8 | header checksum: octal sum of all 512 bytes with this field as spaces |
//! | 156 | 1 | typeflag: `0`/NUL regular, `x` PAX, `g` PAX global, `L` GNU long name |
//! | 257 | 6 | magic `ustar\0` (POSIX) or `ustar ` (GNU) |
//! | 345 | 155 | prefix (POSIX ustar only), joined to name with `/` |

use crate::error::{Error, Result};

/// A tar block.
pub const BLOCK: usize = 512;
/// The name of the TOC entry.
pub const TOC_NAME: &[u8] = b"stargz.index.json";
/// How many metadata headers (PAX, GNU long name) may precede the TOC entry.
const MAX_META_HEADERS: usize = 8;

fn trim_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or(field)
}

/// Parses a numeric header field: octal ASCII (spaces and NULs around it allowed) or GNU base-256.
pub fn parse_number(field: &[u8]) -> Result<u64> {
    if let [first, rest @ ..] = field
        && first & 0x80 != 0
    {
        if first & 0x40 != 0 {
            return Err(Error::BadTocTar("negative base-256 number"));
        }
        let mut value: u64 = u64::from(first & 0x3f);
        for &b in rest {
            if value >> 56 != 0 {
                return Err(Error::BadTocTar("number overflows"));
            }
            value = (value << 8) | u64::from(b);
        }
        return Ok(value);
    }
    let mut value: u64 = 0;
    let mut seen_digit = false;
    for &b in field {
        match b {
            b'0'..=b'7' => {
                value = value
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(Error::BadTocTar("number overflows"))?;
                seen_digit = true;
            }
            b' ' | 0 if !seen_digit => {}
            b' ' | 0 => break,
            _ => return Err(Error::BadTocTar("number is not octal")),
        }
    }
    Ok(value)
}

fn checksum_ok(header: &[u8; BLOCK]) -> bool {
    let Ok(stored) = parse_number(&header[148..156]) else { return false };
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(b) })
        .sum();
    sum == stored
}

fn padded(len: u64) -> Option<usize> {
    let len = usize::try_from(len).ok()?;
    len.checked_add(BLOCK - 1).map(|l| l / BLOCK * BLOCK)
}

/// Returns the value of the PAX record `key` in `records`, if present.
fn pax_value<'a>(mut records: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>> {
    let mut found = None;
    while !records.is_empty() {
        let space = records.iter().position(|&b| b == b' ').ok_or(Error::BadTocTar("bad PAX record"))?;
        let len: usize = core::str::from_utf8(records.get(..space).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Error::BadTocTar("bad PAX record length"))?;
        if len <= space + 1 {
            return Err(Error::BadTocTar("bad PAX record length"));
        }
        let (record, rest) = records.split_at_checked(len).ok_or(Error::BadTocTar("bad PAX record length"))?;
        let record = record.get(space + 1..).unwrap_or_default();
        let record = record.strip_suffix(b"\n").ok_or(Error::BadTocTar("PAX record lacks newline"))?;
        let mut key_value = record.splitn(2, |&b| b == b'=');
        if let (Some(k), Some(value)) = (key_value.next(), key_value.next())
            && k == key
        {
            found = Some(value);
        }
        records = rest;
    }
    Ok(found)
}

/// Finds the TOC entry at the start of `tar` (the inflated TOC member) and returns where its
/// contents lie in `tar`.
pub fn toc_json(tar: &[u8]) -> Result<core::ops::Range<usize>> {
    let mut pos = 0usize;
    let mut long_name: Option<&[u8]> = None;
    for _ in 0..=MAX_META_HEADERS {
        let header: &[u8; BLOCK] =
            tar.get(pos..).and_then(<[u8]>::first_chunk).ok_or(Error::BadTocTar("truncated header"))?;
        if !checksum_ok(header) {
            return Err(Error::BadTocTar("header checksum mismatch"));
        }
        let size = parse_number(&header[124..136])?;
        let data_start = pos + BLOCK;
        let data_len = usize::try_from(size).map_err(|_| Error::BadTocTar("entry size too large"))?;
        let data = data_start
            .checked_add(data_len)
            .and_then(|end| tar.get(data_start..end))
            .ok_or(Error::BadTocTar("entry runs past the member"))?;
        let next =
            padded(size).and_then(|p| data_start.checked_add(p)).ok_or(Error::BadTocTar("entry size too large"))?;
        match header[156] {
            b'x' => {
                if let Some(path) = pax_value(data, b"path")? {
                    long_name = Some(path);
                }
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
                        let name = trim_nul(&header[..100]);
                        let prefix = if &header[257..263] == b"ustar\0" { trim_nul(&header[345..500]) } else { &[] };
                        // A non-empty ustar prefix makes the path "prefix/name", never the TOC name.
                        if !prefix.is_empty() {
                            return Err(Error::BadTocTar("first entry is not stargz.index.json"));
                        }
                        name
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
