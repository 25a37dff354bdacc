//! The TOC JSON, byte for byte as the reference writes it: Go's `json.MarshalIndent(toc, "",
//! "\t")` of `JTOC`/`TOCEntry` (the reference `estargz` package's `types.go`).
//!
//! - keys in `TOCEntry` field order: `name`, `type`, `size`, `modtime`, `linkName`, `mode`,
//!   `uid`, `gid`, `userName`, `groupName`, `offset`, `devMajor`, `devMinor`, `xattrs`, `digest`,
//!   `chunkOffset`, `chunkSize`, `chunkDigest`; every key but `name` and `type` is omitted when
//!   zero or empty;
//! - strings escaped as Go's encoder does with HTML escaping on: `\"`, `\\`, `\n`, `\r`, `\t`,
//!   other controls and `<`, `>`, `&` as `\u00XX`, U+2028/U+2029 as `\u2028`/`\u2029`, each byte
//!   of invalid UTF-8 as `\ufffd`;
//! - `xattrs` keys sorted bytewise, values standard base64;
//! - `modtime` in UTC RFC 3339, rounded to the second, omitted for the zero time and the epoch.

use alloc::vec::Vec;

use base64::Engine as _;

use super::tarhdr::push_decimal;
use crate::digest::Digest;

/// One TOC entry, as the writer records it.
#[derive(Debug, Clone, Default)]
pub struct TocEntry {
    /// `name`.
    pub name: Vec<u8>,
    /// `type`.
    pub kind: &'static str,
    /// `size`.
    pub size: u64,
    /// Modification time (seconds, nanoseconds), formatted as `modtime`.
    pub mtime: (i64, u32),
    /// `linkName`.
    pub link: Vec<u8>,
    /// `mode`.
    pub mode: i64,
    /// `uid`.
    pub uid: i64,
    /// `gid`.
    pub gid: i64,
    /// `userName` (empty: omitted).
    pub uname: Vec<u8>,
    /// `groupName` (empty: omitted).
    pub gname: Vec<u8>,
    /// `offset`.
    pub offset: u64,
    /// `devMajor`.
    pub dev_major: i64,
    /// `devMinor`.
    pub dev_minor: i64,
    /// `xattrs`, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `digest`.
    pub digest: Option<Digest>,
    /// `chunkOffset`.
    pub chunk_offset: u64,
    /// `chunkSize`.
    pub chunk_size: u64,
    /// `chunkDigest`.
    pub chunk_digest: Option<Digest>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The lower-case hex digit of the low four bits of `nibble`.
pub(crate) fn hex_digit(nibble: u8) -> u8 {
    HEX.get(usize::from(nibble & 0xf)).copied().unwrap_or(b'0')
}

/// Appends `s` as a JSON string, escaped the way Go's encoder escapes it.
pub fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut rest = s;
    while !rest.is_empty() {
        let (valid, invalid) = match core::str::from_utf8(rest) {
            Ok(v) => (v, false),
            Err(e) => (core::str::from_utf8(rest.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default(), true),
        };
        for c in valid.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                    let b = c as u32 as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(hex_digit(b >> 4));
                    out.push(hex_digit(b));
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        rest = rest.get(valid.len()..).unwrap_or_default();
        if invalid {
            // Go decodes one byte at a time past an invalid sequence.
            out.extend_from_slice(b"\\ufffd");
            rest = rest.get(1..).unwrap_or_default();
        }
    }
    out.push(b'"');
}

fn push_signed(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_decimal(out, v.unsigned_abs());
}

fn push_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Formats a time as the reference's `formatModtime` does, or `None` when it omits it.
pub fn format_modtime(secs: i64, nanos: u32) -> Option<Vec<u8>> {
    const ZERO_TIME: i64 = -62_135_596_800; // Go's time.Time{} (0001-01-01T00:00:00Z)
    if secs == 0 || (secs == ZERO_TIME && nanos == 0) {
        return None;
    }
    let secs = if nanos >= 500_000_000 { secs.checked_add(1)? } else { secs };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut out = Vec::with_capacity(20);
    if y < 0 {
        out.push(b'-');
    }
    let ya = y.unsigned_abs();
    if ya < 1000 {
        for div in [1000, 100, 10] {
            if ya < div {
                out.push(b'0');
            }
        }
    }
    push_decimal(&mut out, ya);
    out.push(b'-');
    push_2(&mut out, m);
    out.push(b'-');
    push_2(&mut out, d);
    out.push(b'T');
    push_2(&mut out, rem / 3600);
    out.push(b':');
    push_2(&mut out, rem / 60 % 60);
    out.push(b':');
    push_2(&mut out, rem % 60);
    out.push(b'Z');
    Some(out)
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\n\t\t\t\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": ");
}

fn num_field(out: &mut Vec<u8>, name: &str, v: i64) {
    if v != 0 {
        key(out, name);
        push_signed(out, v);
    }
}

fn str_field(out: &mut Vec<u8>, name: &str, v: &[u8]) {
    if !v.is_empty() {
        key(out, name);
        push_string(out, v);
    }
}

fn digest_field(out: &mut Vec<u8>, name: &str, d: &Option<Digest>) {
    if let Some(d) = d {
        key(out, name);
        out.extend_from_slice(b"\"sha256:");
        for b in d.0 {
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b));
        }
        out.push(b'"');
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Appends one entry object (indented as the third level).
fn push_entry(out: &mut Vec<u8>, e: &TocEntry) {
    out.extend_from_slice(b"\t\t{\n\t\t\t\"name\": ");
    push_string(out, &e.name);
    out.extend_from_slice(b",\n\t\t\t\"type\": ");
    push_string(out, e.kind.as_bytes());
    num_field(out, "size", clamp(e.size));
    if let Some(t) = format_modtime(e.mtime.0, e.mtime.1) {
        str_field(out, "modtime", &t);
    }
    str_field(out, "linkName", &e.link);
    num_field(out, "mode", e.mode);
    num_field(out, "uid", e.uid);
    num_field(out, "gid", e.gid);
    str_field(out, "userName", &e.uname);
    str_field(out, "groupName", &e.gname);
    num_field(out, "offset", clamp(e.offset));
    num_field(out, "devMajor", e.dev_major);
    num_field(out, "devMinor", e.dev_minor);
    if !e.xattrs.is_empty() {
        key(out, "xattrs");
        out.extend_from_slice(b"{");
        for (i, (k, v)) in e.xattrs.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n\t\t\t\t" } else { b",\n\t\t\t\t" });
            push_string(out, k);
            out.extend_from_slice(b": \"");
            let start = out.len();
            let b64_len = v.len().div_ceil(3) * 4;
            out.resize(start + b64_len, 0);
            let encoder = &base64::engine::general_purpose::STANDARD;
            let n = out.get_mut(start..).map_or(0, |room| encoder.encode_slice(v, room).unwrap_or(0));
            out.truncate(start + n);
            out.push(b'"');
        }
        out.extend_from_slice(b"\n\t\t\t}");
    }
    digest_field(out, "digest", &e.digest);
    num_field(out, "chunkOffset", clamp(e.chunk_offset));
    num_field(out, "chunkSize", clamp(e.chunk_size));
    digest_field(out, "chunkDigest", &e.chunk_digest);
    out.extend_from_slice(b"\n\t\t}");
}

/// The whole TOC JSON for `entries`.
pub fn toc_json(entries: &[TocEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 256);
    out.extend_from_slice(b"{\n\t\"version\": 1,\n\t\"entries\": [");
    if entries.is_empty() {
        out.extend_from_slice(b"]\n}");
        return out;
    }
    for (i, e) in entries.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        push_entry(&mut out, e);
    }
    out.extend_from_slice(b"\n\t]\n}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn s(b: &[u8]) -> String {
        let mut out = Vec::new();
        push_string(&mut out, b);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(s(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s(b"tab\there\nx\r\x01\x7f"), "\"tab\\there\\nx\\r\\u0001\x7f\"");
        assert_eq!(s(b"<tag>&amp"), r#""\u003ctag\u003e\u0026amp""#);
        assert_eq!(s("line\u{2028}sep\u{2029}".as_bytes()), r#""line\u2028sep\u2029""#);
        assert_eq!(s(b"bad\xe6\x97end\xff"), r#""bad\ufffd\ufffdend\ufffd""#);
        assert_eq!(s("日本語".as_bytes()), "\"日本語\"");
    }

    #[test]
    fn modtimes() {
        let f = |s, n| format_modtime(s, n).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(f(1_577_934_245, 0).as_deref(), Some("2020-01-02T03:04:05Z"));
        assert_eq!(f(1_577_934_245, 500_000_000).as_deref(), Some("2020-01-02T03:04:06Z"));
        assert_eq!(f(4_102_444_800, 0).as_deref(), Some("2100-01-01T00:00:00Z"));
        assert_eq!(f(-1, 0).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(f(0, 0), None);
        assert_eq!(f(0, 900_000_000), None);
        assert_eq!(f(-62_135_596_800, 0), None);
    }

    #[test]
    fn layout_matches_marshal_indent() {
        let e = TocEntry {
            name: b"etc/big".to_vec(),
            kind: "reg",
            size: 10,
            mtime: (1_577_934_245, 0),
            mode: 420,
            uid: 1000,
            xattrs: alloc::vec![(b"user.foo".to_vec(), b"bar".to_vec())],
            ..Default::default()
        };
        let json = String::from_utf8(toc_json(&[e])).unwrap();
        let want = "{\n\t\"version\": 1,\n\t\"entries\": [\n\t\t{\n\t\t\t\"name\": \"etc/big\",\n\t\t\t\"type\": \"reg\",\n\t\t\t\"size\": 10,\n\t\t\t\"modtime\": \"2020-01-02T03:04:05Z\",\n\t\t\t\"mode\": 420,\n\t\t\t\"uid\": 1000,\n\t\t\t\"xattrs\": {\n\t\t\t\t\"user.foo\": \"YmFy\"\n\t\t\t}\n\t\t}\n\t]\n}";
        assert_eq!(json, want);
    }
}
