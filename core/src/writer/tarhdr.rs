//! Writing tar headers the way Go's `archive/tar` writes them, for the entries the writer makes
//! itself: the landmark, the TOC entry, and sparse files expanded into regular ones.
//!
//! A header that fits ustar is written as ustar exactly as Go does (octal fields zero-padded and
//! NUL-terminated, checksum `%06o\0 `, magic `ustar\0` `00`, long names split into prefix and
//! name when possible), so the landmark and TOC headers are byte-identical to the reference's.
//! Anything ustar cannot hold (long names, big numbers, sub-second times, xattrs) goes into a PAX
//! `x` header in front.

use alloc::vec::Vec;

use super::tarscan::BLOCK;
use crate::tar;

/// What to write in a header.
#[derive(Debug, Clone, Default)]
pub struct HeaderSpec<'a> {
    /// Typeflag (`b'0'` regular, ...).
    pub typeflag: u8,
    /// Name.
    pub name: &'a [u8],
    /// Link target.
    pub link: &'a [u8],
    /// Mode bits.
    pub mode: i64,
    /// Owner.
    pub uid: i64,
    /// Group.
    pub gid: i64,
    /// Size of the payload that follows.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Owner name.
    pub uname: &'a [u8],
    /// Group name.
    pub gname: &'a [u8],
    /// Extended attributes, as `SCHILY.xattr.*` PAX records.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes `s` into `field`, NUL-terminated when shorter.
fn put_str(field: &mut [u8], s: &[u8]) {
    for (to, &from) in field.iter_mut().zip(s) {
        *to = from;
    }
}

/// Writes `v` in octal, zero-padded to `field.len() - 1` digits and NUL-terminated. Returns
/// false when it does not fit (the field is then left zero).
fn put_octal(field: &mut [u8], v: i64) -> bool {
    let Some((terminator, digits)) = field.split_last_mut() else { return false };
    let n = digits.len();
    if v < 0 || (n < 21 && v >= 1i64 << (3 * n)) {
        return false;
    }
    let mut v = v as u64;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    *terminator = 0;
    true
}

/// Splits a long name into a ustar prefix (≤ 155 bytes) and name (≤ 100 bytes) at a `/`, as
/// Go's `splitUSTARPath` does.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = name.len();
    if len <= 100 || !name.is_ascii() {
        return None;
    }
    let max = len.min(156);
    let i = name.get(..max)?.iter().rposition(|&b| b == b'/')?;
    if i == 0 || len - i - 1 > 100 || len - i - 1 == 0 {
        return None;
    }
    Some((name.get(..i)?, name.get(i + 1..)?))
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut size = base + decimal_len(base as u64);
    if base + decimal_len(size as u64) != size {
        size = base + decimal_len(size as u64);
    }
    push_decimal(out, size as u64);
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Appends `v` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, v: u64) {
    // u64::MAX has 20 digits.
    let mut buf = [0u8; 20];
    let mut used = 0;
    let mut v = v;
    for digit in buf.iter_mut().rev() {
        *digit = b'0' + (v % 10) as u8;
        v /= 10;
        used += 1;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(buf.len() - used..).unwrap_or_default());
}

fn push_signed(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_decimal(out, v.unsigned_abs());
}

fn finish_block(block: &mut [u8; 512]) {
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // The unsigned sum, as POSIX defines it (crate::tar).
    let (sum, _) = tar::checksums(block);
    put_octal(&mut block[148..155], sum);
    block[155] = b' ';
}

/// Appends the header block(s) for `h` to `out`.
pub fn write_header(h: &HeaderSpec<'_>, out: &mut Vec<u8>) {
    let mut block = [0u8; 512];
    let mut pax: Vec<u8> = Vec::new();
    let (prefix, name) = if h.name.len() <= 100 {
        (&[][..], h.name)
    } else {
        match split_ustar(h.name) {
            Some(split) => split,
            None => {
                pax_record(&mut pax, b"path", h.name);
                (&[][..], h.name.get(..100).unwrap_or(h.name))
            }
        }
    };
    put_str(&mut block[..100], name);
    put_str(&mut block[345..500], prefix);
    if h.link.len() > 100 {
        pax_record(&mut pax, b"linkpath", h.link);
    }
    put_str(&mut block[157..257], h.link);
    put_octal(&mut block[100..108], h.mode & 0o7_777_777);
    let mut numbered = |field: core::ops::Range<usize>, v: i64, key: &[u8], pax: &mut Vec<u8>| {
        if !block.get_mut(field).is_some_and(|field| put_octal(field, v)) {
            let mut text = Vec::new();
            push_signed(&mut text, v);
            pax_record(pax, key, &text);
        }
    };
    numbered(108..116, h.uid, b"uid", &mut pax);
    numbered(116..124, h.gid, b"gid", &mut pax);
    numbered(124..136, i64::try_from(h.size).unwrap_or(i64::MAX), b"size", &mut pax);
    if h.mtime.1 != 0 || !put_octal(&mut block[136..148], h.mtime.0) {
        let mut text = Vec::new();
        push_signed(&mut text, h.mtime.0);
        if h.mtime.1 != 0 {
            text.push(b'.');
            let mut frac = [b'0'; 9];
            let mut n = h.mtime.1;
            for d in frac.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let keep = frac.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
            text.extend_from_slice(frac.get(..keep).unwrap_or_default());
        }
        pax_record(&mut pax, b"mtime", &text);
        put_octal(&mut block[136..148], h.mtime.0.max(0));
    }
    block[156] = h.typeflag;
    if h.uname.len() > 32 {
        pax_record(&mut pax, b"uname", h.uname);
    }
    if h.gname.len() > 32 {
        pax_record(&mut pax, b"gname", h.gname);
    }
    put_str(&mut block[265..297], h.uname);
    put_str(&mut block[297..329], h.gname);
    put_octal(&mut block[329..337], 0);
    put_octal(&mut block[337..345], 0);
    for (k, v) in h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax_record(&mut pax, &key, v);
    }
    if !pax.is_empty() {
        let mut xh = [0u8; 512];
        let mut xname = b"PaxHeaders.0/".to_vec();
        let base = name.rsplit(|&b| b == b'/').find(|s| !s.is_empty()).unwrap_or(b"x");
        xname.extend_from_slice(base);
        put_str(&mut xh[..100], &xname);
        put_octal(&mut xh[100..108], 0);
        put_octal(&mut xh[108..116], 0);
        put_octal(&mut xh[116..124], 0);
        put_octal(&mut xh[124..136], pax.len() as i64);
        put_octal(&mut xh[136..148], 0);
        xh[156] = b'x';
        put_octal(&mut xh[329..337], 0);
        put_octal(&mut xh[337..345], 0);
        finish_block(&mut xh);
        out.extend_from_slice(&xh);
        out.extend_from_slice(&pax);
        out.resize(out.len() + pad_len(pax.len() as u64) as usize, 0);
    }
    finish_block(&mut block);
    out.extend_from_slice(&block);
}

/// Zero bytes that pad `n` payload bytes to a whole block.
pub fn pad_len(n: u64) -> u64 {
    (BLOCK - n % BLOCK) % BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::tarscan::TarScanner;

    #[test]
    fn go_writes_this_landmark_header() {
        // What Go's tar.Writer writes for tar.Header{Typeflag: '0', Name: ".no.prefetch.landmark", Size: 1}.
        let mut out = Vec::new();
        write_header(
            &HeaderSpec { typeflag: b'0', name: b".no.prefetch.landmark", size: 1, ..Default::default() },
            &mut out,
        );
        assert_eq!(out.len(), 512);
        assert_eq!(&out[100..108], b"0000000\0");
        assert_eq!(&out[124..136], b"00000000001\0");
        assert_eq!(&out[136..148], b"00000000000\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(out[155], b' ');
        assert_eq!(out[154], 0);
    }

    #[test]
    fn round_trips_through_the_scanner() {
        let long = [b'n'; 180];
        let xattrs = alloc::vec![(b"user.a".to_vec(), b"1".to_vec())];
        let spec = HeaderSpec {
            typeflag: b'0',
            name: &long,
            mode: 0o644,
            uid: 1 << 30,
            gid: 7,
            size: 3,
            mtime: (1_600_000_000, 250_000_000),
            uname: b"u",
            gname: b"g",
            xattrs: &xattrs,
            ..Default::default()
        };
        let mut tar = Vec::new();
        write_header(&spec, &mut tar);
        tar.extend_from_slice(b"abc");
        tar.resize(tar.len() + 509 + 1024, 0);
        let mut s = TarScanner::new(tar.as_slice());
        let e = s.next_entry().unwrap().unwrap();
        assert_eq!(e.name, long.to_vec());
        assert_eq!((e.uid, e.gid, e.size, e.mtime), (1 << 30, 7, 3, (1_600_000_000, 250_000_000)));
        assert_eq!(e.xattrs, xattrs);
        assert!(s.next_entry().unwrap().is_none());
    }
}
