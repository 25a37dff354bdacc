//! Reading the input tar: headers and where payloads lie, through [`ReadAt`].
//!
//! Only headers are read here (payloads are skipped, then copied later by the writer), so a
//! scan costs one 512-byte read per header. Understood, as Go's `archive/tar` reads them (the
//! reference writer's reader):
//!
//! - V7, POSIX ustar (name prefix at 345..500), GNU (`ustar  \0`, no prefix) headers, their
//!   numbers, checksums, prefixes and PAX records by the rules of [`crate::tar`], which the
//!   reader's TOC entry follows too;
//! - PAX extended headers (`x`): `path`, `linkpath`, `size`, `uid`, `gid`, `uname`, `gname`,
//!   `mtime`, `SCHILY.xattr.*`, and the `GNU.sparse.*` records of sparse formats 0.0, 0.1, 1.0;
//!   global headers (`g`) are returned as [`EntryKind::Global`] items, not applied, as Go does;
//! - GNU long names and link names (`L`, `K`), old GNU sparse files (`S`, with extension blocks);
//! - typeflag NUL with a trailing `/` is a directory; `7` (contiguous) is a regular file;
//! - the end: two zero blocks, or one zero block at the end of the input, or the end of the input
//!   at a header boundary. Bytes after the end marker are ignored.
//!
//! Header-only types (links, devices, directories, fifos) carry no payload whatever their size
//! field says, as in Go.

use alloc::vec::Vec;

use super::Error;
use crate::read_at::ReadAt;
use crate::tar::{self, checksum_ok, padded, trim_nul};

/// A tar block.
pub(crate) const BLOCK: u64 = tar::BLOCK as u64;
/// Largest PAX header or GNU long name/link body accepted (Go's limit too).
const MAX_SPECIAL: u64 = 1 << 20;
/// Most sparse fragments accepted for one file.
const MAX_SPARSE_FRAGMENTS: usize = 1 << 20;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    Reg,
    /// Hard link to `link`.
    Hardlink,
    /// Symbolic link to `link`.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Directory.
    Dir,
    /// Named pipe.
    Fifo,
    /// A PAX global header (`g`): copied into the blob where it stands, never in the TOC.
    Global,
}

impl EntryKind {
    /// The TOC `type` string.
    pub fn toc_name(self) -> &'static str {
        match self {
            EntryKind::Reg => "reg",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Symlink => "symlink",
            EntryKind::Char => "char",
            EntryKind::Block => "block",
            EntryKind::Dir => "dir",
            EntryKind::Fifo => "fifo",
            EntryKind::Global => "",
        }
    }
}

/// One entry of the input tar, with its metadata as Go's `tar.Reader` reports it.
#[derive(Debug, Clone, Default)]
pub struct TarEntry {
    /// Offset of the entry's first block (its PAX, GNU long-name or global headers included).
    pub start: u64,
    /// Offset of the payload: the end of the entry's header blocks.
    pub data: u64,
    /// Payload bytes stored in the archive (for sparse files, the stored fragments only).
    pub stored: u64,
    /// Kind; `None` only while parsing.
    pub kind: Option<EntryKind>,
    /// Name as stored (prefix, long name and PAX path applied).
    pub name: Vec<u8>,
    /// Link target (symlinks, hardlinks).
    pub link: Vec<u8>,
    /// Raw mode field.
    pub mode: i64,
    /// Owner.
    pub uid: i64,
    /// Group.
    pub gid: i64,
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Modification time: seconds since the epoch and nanoseconds (0..1e9).
    pub mtime: (i64, u32),
    /// Device numbers (char, block).
    pub dev: (i64, i64),
    /// Logical size of a regular file (the expanded size of a sparse one).
    pub size: u64,
    /// Extended attributes from `SCHILY.xattr.*`, sorted by name, one value per name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For sparse files: the data fragments `(offset in file, length)`, stored back to back.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// A numeric field by the shared rules ([`tar::parse_number`]).
fn numeric(field: &[u8]) -> Option<i64> {
    tar::parse_number(field).ok()
}

fn parse_decimal(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', digits @ ..] => (true, digits),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    parse_decimal(s).and_then(|v| u64::try_from(v).ok())
}

/// Parses a PAX time: decimal seconds with an optional fraction, possibly negative.
fn parse_pax_time(s: &[u8]) -> Option<(i64, u32)> {
    let mut parts = s.splitn(2, |&b| b == b'.');
    let (int, frac) = (parts.next().unwrap_or(s), parts.next().unwrap_or_default());
    let neg = int.first() == Some(&b'-');
    let secs = if int == b"-" || int.is_empty() { 0 } else { parse_decimal(int)? };
    let mut nanos: u32 = 0;
    for i in 0..9 {
        let d = match frac.get(i) {
            Some(&d) if d.is_ascii_digit() => u32::from(d - b'0'),
            Some(_) => return None,
            None => 0,
        };
        nanos = nanos * 10 + d;
    }
    if frac.iter().any(|d| !d.is_ascii_digit()) {
        return None;
    }
    if neg && nanos > 0 {
        // -1.25 is 1.25 s before the epoch: floor seconds -2, nanoseconds 0.75e9.
        Some((secs.checked_sub(1)?, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

/// Pending state from metadata headers that apply to the next real entry.
#[derive(Default)]
struct Pending {
    start: Option<u64>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<i64>,
    gid: Option<i64>,
    uname: Option<Vec<u8>>,
    gname: Option<Vec<u8>>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse_major: Option<u64>,
    sparse_minor: Option<u64>,
    sparse_name: Option<Vec<u8>>,
    sparse_size: Option<u64>,
    sparse_map: Option<Vec<u64>>,
    sparse_pairs: Vec<u64>,
}

/// Reads tar headers from a [`ReadAt`], entry by entry.
pub struct TarScanner<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    pos: u64,
    size: u64,
    done: bool,
}

impl<'a, R: ReadAt + ?Sized> TarScanner<'a, R> {
    /// Starts at the beginning of `src`.
    pub fn new(src: &'a R) -> Self {
        TarScanner { src, pos: 0, size: src.size(), done: false }
    }

    fn read_block(&self, at: u64, block: &mut [u8; 512]) -> Result<bool, Error> {
        if at >= self.size {
            return Ok(false);
        }
        if self.size - at < BLOCK {
            return Err(Error::Truncated { offset: at, what: "a tar header" });
        }
        self.src.read_exact_at(at, block)?;
        Ok(true)
    }

    fn read_body(&self, at: u64, len: u64, what: &'static str) -> Result<Vec<u8>, Error> {
        if len > MAX_SPECIAL {
            return Err(Error::BadHeader { offset: at, what: "PAX or GNU long-name header over 1 MiB" });
        }
        let end = padded(len).and_then(|p| at.checked_add(p));
        if end.is_none_or(|e| e > self.size) {
            return Err(Error::Truncated { offset: at, what });
        }
        let mut body = alloc::vec![0u8; len as usize];
        self.src.read_exact_at(at, &mut body)?;
        Ok(body)
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<TarEntry>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut pending = Pending::default();
        let mut block = [0u8; 512];
        loop {
            let at = self.pos;
            if !self.read_block(at, &mut block)? {
                if pending.start.is_some() {
                    return Err(Error::Truncated { offset: at, what: "the entry a PAX or GNU header announces" });
                }
                if at == 0 {
                    return Err(Error::NotTar("the input is empty"));
                }
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                let mut second = [0u8; 512];
                let more = self.read_block(at + BLOCK, &mut second)?;
                if more && second.iter().any(|&b| b != 0) {
                    return Err(Error::BadHeader { offset: at + BLOCK, what: "data after a zero block" });
                }
                if pending.start.is_some() {
                    return Err(Error::BadHeader {
                        offset: at,
                        what: "end of archive right after a PAX or GNU header",
                    });
                }
                self.done = true;
                return Ok(None);
            }
            if !checksum_ok(&block) {
                if at == 0 {
                    return Err(Error::NotTar("no valid tar header at offset 0"));
                }
                return Err(Error::BadHeader { offset: at, what: "header checksum mismatch" });
            }
            pending.start.get_or_insert(at);
            let flag = block[156];
            let field_size = numeric(&block[124..136])
                .and_then(|v| u64::try_from(v).ok())
                .ok_or(Error::BadHeader { offset: at, what: "invalid size field" })?;
            let body_at = at + BLOCK;
            match flag {
                b'x' | b'g' | b'L' | b'K' => {
                    let body = self.read_body(body_at, field_size, "a PAX or GNU long-name header")?;
                    self.pos = body_at + padded(field_size).unwrap_or(0);
                    if flag == b'g' && pending.start == Some(at) {
                        // A global header on its own: an item of the stream, not part of an entry.
                        let kind = Some(EntryKind::Global);
                        return Ok(Some(TarEntry { start: at, data: self.pos, kind, ..TarEntry::default() }));
                    }
                    match flag {
                        b'x' => parse_pax(&body, &mut pending).map_err(|e| e.at(at))?,
                        b'L' => pending.long_name = Some(trim_nul(&body).to_vec()),
                        b'K' => pending.long_link = Some(trim_nul(&body).to_vec()),
                        _ => {} // global PAX header: kept in the stream, not applied (as Go does)
                    }
                    continue;
                }
                _ => return self.finish_entry(&block, at, field_size, pending).map(Some),
            }
        }
    }

    fn finish_entry(&mut self, block: &[u8; 512], at: u64, field_size: u64, p: Pending) -> Result<TarEntry, Error> {
        let bad = |what| Error::BadHeader { offset: at, what };
        let magic = &block[257..263];
        let version = &block[263..265];
        let ustar = magic == b"ustar\0" && version == b"00";
        let gnu = magic == b"ustar " && version == b" \0";
        let mut e = TarEntry { start: p.start.unwrap_or(at), ..TarEntry::default() };
        e.name = trim_nul(&block[..100]).to_vec();
        {
            let prefix = tar::name_prefix(block);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&e.name);
                e.name = full;
            }
        }
        e.link = trim_nul(&block[157..257]).to_vec();
        e.mode = numeric(&block[100..108]).ok_or(bad("invalid mode field"))?;
        e.uid = numeric(&block[108..116]).ok_or(bad("invalid uid field"))?;
        e.gid = numeric(&block[116..124]).ok_or(bad("invalid gid field"))?;
        e.mtime = (numeric(&block[136..148]).ok_or(bad("invalid mtime field"))?, 0);
        if ustar || gnu {
            e.uname = trim_nul(&block[265..297]).to_vec();
            e.gname = trim_nul(&block[297..329]).to_vec();
            // Go parses these for every entry; only devices use them, so be lenient elsewhere.
            e.dev = (numeric(&block[329..337]).unwrap_or(0), numeric(&block[337..345]).unwrap_or(0));
        }
        let flag = block[156];
        let mut size = field_size;
        // PAX records override the header; GNU long names override PAX (Go's order).
        if let Some(v) = p.path {
            e.name = v;
        }
        if let Some(v) = p.linkpath {
            e.link = v;
        }
        if let Some(v) = p.size {
            size = v;
        }
        if let Some(v) = p.uid {
            e.uid = v;
        }
        if let Some(v) = p.gid {
            e.gid = v;
        }
        if let Some(v) = p.uname {
            e.uname = v;
        }
        if let Some(v) = p.gname {
            e.gname = v;
        }
        if let Some(v) = p.mtime {
            e.mtime = v;
        }
        e.xattrs = p.xattrs;
        if let Some(v) = p.long_name {
            e.name = v;
        }
        if let Some(v) = p.long_link {
            e.link = v;
        }
        let kind = match flag {
            b'0' | b'7' | b'S' => EntryKind::Reg,
            0 if e.name.ends_with(b"/") => EntryKind::Dir,
            0 => EntryKind::Reg,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::Char,
            b'4' => EntryKind::Block,
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            other => return Err(Error::Unsupported { offset: at, typeflag: other }),
        };
        e.kind = Some(kind);
        let mut header_end = at + BLOCK;
        if kind == EntryKind::Reg {
            e.size = size;
            e.stored = size;
        }
        if flag == b'S' {
            // Old GNU sparse: up to 4 fragments in the header, more in extension blocks.
            let mut frags = Vec::new();
            let push = |entry: &[u8; 24], frags: &mut Vec<(u64, u64)>| -> Result<(), Error> {
                let off = numeric(&entry[..12]).and_then(|v| u64::try_from(v).ok());
                let len = numeric(&entry[12..24]).and_then(|v| u64::try_from(v).ok());
                match (off, len) {
                    (Some(o), Some(l)) if entry.iter().any(|&b| b != 0) => {
                        if frags.len() >= MAX_SPARSE_FRAGMENTS {
                            return Err(Error::BadHeader { offset: at, what: "too many sparse fragments" });
                        }
                        frags.push((o, l));
                        Ok(())
                    }
                    (Some(_), Some(_)) => Ok(()),
                    _ => Err(Error::BadHeader { offset: at, what: "invalid sparse map" }),
                }
            };
            // Four 24-byte (offset, length) entries from offset 386.
            for entry in block[386..482].as_chunks::<24>().0 {
                push(entry, &mut frags)?;
            }
            let mut extended = block[482] != 0;
            let real =
                numeric(&block[483..495]).and_then(|v| u64::try_from(v).ok()).ok_or(bad("invalid sparse size"))?;
            let mut ext = [0u8; 512];
            while extended {
                if !self.read_block(header_end, &mut ext)? {
                    return Err(Error::Truncated { offset: header_end, what: "a sparse extension block" });
                }
                // 21 entries, then the "extended" flag at 504.
                for entry in ext[..504].as_chunks::<24>().0 {
                    push(entry, &mut frags)?;
                }
                extended = ext[504] != 0;
                header_end += BLOCK;
            }
            e.size = real;
            e.sparse = Some(frags);
        } else if kind == EntryKind::Reg
            && (p.sparse_major.is_some() || p.sparse_map.is_some() || !p.sparse_pairs.is_empty())
        {
            if let Some(v) = p.sparse_name {
                e.name = v;
            }
            let real = p.sparse_size.ok_or(bad("sparse file without GNU.sparse.(real)size"))?;
            let flat = if p.sparse_major == Some(1) {
                // Format 1.0: the map leads the payload, as decimal lines, padded to a block.
                let (flat, map_len) = self.read_sparse_map_10(header_end, size, at)?;
                header_end += map_len;
                e.stored = size - map_len;
                flat
            } else if let Some(map) = p.sparse_map {
                map
            } else {
                p.sparse_pairs
            };
            if flat.len() % 2 != 0 {
                return Err(bad("odd sparse map"));
            }
            e.size = real;
            e.sparse = Some(flat.as_chunks::<2>().0.iter().map(|&[offset, len]| (offset, len)).collect());
        }
        if let Some(frags) = &e.sparse {
            // Fragments must be in order, inside the file, and add up to what is stored.
            let mut end = 0u64;
            let mut total = 0u64;
            for &(off, len) in frags {
                let frag_end = off.checked_add(len).ok_or(bad("invalid sparse map"))?;
                if off < end || frag_end > e.size {
                    return Err(bad("invalid sparse map"));
                }
                end = frag_end;
                total = total.checked_add(len).ok_or(bad("invalid sparse map"))?;
            }
            if total != e.stored {
                return Err(bad("sparse map does not match the stored size"));
            }
        }
        // Names and link targets come from PAX records, GNU long names or GNU.sparse.name as
        // well as the header; none may hold a NUL byte (readers refuse such TOC entries).
        if e.name.contains(&0) || e.link.contains(&0) {
            return Err(bad("name or link target contains a NUL byte"));
        }
        e.data = header_end;
        let next = padded(e.stored).and_then(|p| header_end.checked_add(p)).ok_or(bad("invalid size field"))?;
        if header_end.checked_add(e.stored).is_none_or(|end| end > self.size) {
            return Err(Error::EntryTooLarge {
                name: e.name.clone(),
                size: e.stored,
                available: self.size.saturating_sub(header_end),
            });
        }
        if next > self.size {
            return Err(Error::Truncated { offset: self.size, what: "the padding after the last entry" });
        }
        self.pos = next;
        Ok(e)
    }

    fn read_sparse_map_10(&self, at: u64, stored: u64, hdr: u64) -> Result<(Vec<u64>, u64), Error> {
        let bad = Error::BadHeader { offset: hdr, what: "invalid GNU sparse 1.0 map" };
        let mut numbers: Vec<u64> = Vec::new();
        let mut want: Option<usize> = None;
        let mut cur: Vec<u8> = Vec::new();
        let mut consumed = 0u64;
        let mut block = [0u8; 512];
        loop {
            if consumed >= stored || !self.read_block(at + consumed, &mut block)? {
                return Err(Error::Truncated { offset: at + consumed, what: "a GNU sparse map" });
            }
            consumed += BLOCK;
            for &b in block.iter() {
                if b == b'\n' {
                    let v = parse_u64(&cur).ok_or(bad.clone())?;
                    cur.clear();
                    match want {
                        None => {
                            let n =
                                usize::try_from(v).ok().filter(|&n| n <= MAX_SPARSE_FRAGMENTS).ok_or(bad.clone())?;
                            want = Some(2 * n);
                        }
                        Some(_) => numbers.push(v),
                    }
                    if want == Some(numbers.len()) {
                        return Ok((numbers, consumed));
                    }
                } else {
                    if cur.len() > 20 {
                        return Err(bad);
                    }
                    cur.push(b);
                }
            }
        }
    }
}

fn parse_pax(body: &[u8], p: &mut Pending) -> Result<(), Error> {
    let bad = |what| Error::BadHeader { offset: 0, what };
    tar::pax_records(body, bad("malformed PAX record"), |key, value| {
        // Go's validPAXRecord: no NUL in a name's or owner's value, nor in any other key.
        if matches!(key, b"path" | b"linkpath" | b"uname" | b"gname") && value.contains(&0) {
            return Err(bad("PAX record value contains a NUL byte"));
        }
        if key.contains(&0) {
            return Err(bad("PAX record key contains a NUL byte"));
        }
        match key {
            b"path" => p.path = Some(value.to_vec()),
            b"linkpath" => p.linkpath = Some(value.to_vec()),
            b"size" => p.size = Some(parse_u64(value).ok_or(bad("invalid PAX size"))?),
            b"uid" => p.uid = Some(parse_decimal(value).ok_or(bad("invalid PAX uid"))?),
            b"gid" => p.gid = Some(parse_decimal(value).ok_or(bad("invalid PAX gid"))?),
            b"uname" => p.uname = Some(value.to_vec()),
            b"gname" => p.gname = Some(value.to_vec()),
            b"mtime" => p.mtime = Some(parse_pax_time(value).ok_or(bad("invalid PAX mtime"))?),
            b"GNU.sparse.major" => p.sparse_major = Some(parse_u64(value).ok_or(bad("invalid sparse record"))?),
            b"GNU.sparse.minor" => p.sparse_minor = Some(parse_u64(value).ok_or(bad("invalid sparse record"))?),
            b"GNU.sparse.name" => p.sparse_name = Some(value.to_vec()),
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => {
                p.sparse_size = Some(parse_u64(value).ok_or(bad("invalid sparse record"))?)
            }
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                if p.sparse_pairs.len() >= 2 * MAX_SPARSE_FRAGMENTS {
                    return Err(bad("too many sparse fragments"));
                }
                p.sparse_pairs.push(parse_u64(value).ok_or(bad("invalid sparse record"))?)
            }
            b"GNU.sparse.map" => {
                let mut map = Vec::new();
                if !value.is_empty() {
                    for part in value.split(|&b| b == b',') {
                        if map.len() >= 2 * MAX_SPARSE_FRAGMENTS {
                            return Err(bad("too many sparse fragments"));
                        }
                        map.push(parse_u64(part).ok_or(bad("invalid sparse map"))?);
                    }
                }
                p.sparse_map = Some(map);
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    match p.xattrs.binary_search_by(|(k, _)| k.as_slice().cmp(name)) {
                        Ok(i) => {
                            if let Some((_, old)) = p.xattrs.get_mut(i) {
                                *old = value.to_vec();
                            }
                        }
                        Err(i) => p.xattrs.insert(i, (name.to_vec(), value.to_vec())),
                    }
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(numeric(b"0000644\0"), Some(0o644));
        assert_eq!(numeric(b"  755 \0"), Some(0o755));
        assert_eq!(numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), Some(1 << 32));
        assert_eq!(numeric(&[0xff; 8]), Some(-1));
        assert_eq!(numeric(b"0009"), None);
        assert_eq!(parse_pax_time(b"1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"1577934245"), Some((1_577_934_245, 0)));
        assert_eq!(parse_pax_time(b"1.x"), None);
    }

    #[test]
    fn pax_parsing() {
        let mut p = Pending::default();
        parse_pax(b"16 path=a/b/c/d\n25 SCHILY.xattr.user.k=v\n", &mut p).unwrap();
        assert_eq!(p.path.as_deref(), Some(&b"a/b/c/d"[..]));
        assert_eq!(p.xattrs, alloc::vec![(b"user.k".to_vec(), b"v".to_vec())]);
        assert!(parse_pax(b"99 path=x\n", &mut Pending::default()).is_err());
        assert!(parse_pax(b"9 =x\nxx\n", &mut Pending::default()).is_err());
    }

    /// The reader (the TOC entry, `crate::tar::toc_json`) and the writer's scanner read one
    /// header by one set of rules. Each case is one on which they disagreed before they shared
    /// `crate::tar`: what one accepted the other refused, or read as another size.
    #[test]
    fn the_reader_and_the_writer_read_a_header_alike() {
        const JSON: &[u8] = b"{}";
        // A TOC-named ustar header for a 2-byte payload, altered by `alter`, its checksum
        // stored as the `signed` or the unsigned sum.
        let header = |alter: &dyn Fn(&mut [u8; 512]), signed: bool| {
            let mut h = [0u8; 512];
            h[..17].copy_from_slice(crate::tar::TOC_NAME);
            h[100..108].copy_from_slice(b"0000644\0");
            h[124..136].copy_from_slice(b"00000000002\0");
            h[156] = b'0';
            h[257..265].copy_from_slice(b"ustar\x0000");
            alter(&mut h);
            let (unsigned, signed_sum) = tar::checksums(&h);
            let sum = if signed { signed_sum } else { unsigned };
            h[148..156].copy_from_slice(alloc::format!("{sum:06o}\0 ").as_bytes());
            let mut tar = h.to_vec();
            tar.extend_from_slice(JSON);
            tar.resize(512 * 4, 0);
            tar
        };
        // What each side makes of it: the payload's length, or None when refused.
        let read = |tar: &[u8]| {
            let reader = crate::tar::toc_json(tar).ok().map(|r| r.len() as u64);
            let writer = TarScanner::new(tar).next_entry().ok().flatten().map(|e| e.size);
            (reader, writer)
        };
        let high_bit_owner = |h: &mut [u8; 512]| h[265..270].copy_from_slice("jos\u{e9}".as_bytes());
        // What the case is, how it alters the header, whether its checksum is signed, what
        // size both sides must read (None: both refuse).
        type Case<'a> = (&'a str, &'a dyn Fn(&mut [u8; 512]), bool, Option<u64>);
        let cases: [Case<'_>; 8] = [
            ("plain", &|_| {}, false, Some(2)),
            // Old tars summed signed chars: only a byte over 0x7f tells the sums apart.
            ("signed checksum", &high_bit_owner, true, Some(2)),
            ("unsigned checksum", &high_bit_owner, false, Some(2)),
            (
                "base-256 size",
                &|h| h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
                false,
                Some(2),
            ),
            // GNU base-256 may be negative; a size may not.
            ("negative size", &|h| h[124..136].copy_from_slice(&[0xff; 12]), false, None),
            // Octal ends at the first NUL; a space inside the digits is not octal.
            ("text after a NUL", &|h| h[124..136].copy_from_slice(b"000002\0junk\0"), false, Some(2)),
            ("space inside the digits", &|h| h[124..136].copy_from_slice(b"00 000002\0\0\0"), false, None),
            // The prefix belongs to POSIX ustar (magic and version); in another header it is not read.
            (
                "prefix of a non-ustar header",
                &|h| {
                    h[263..265].copy_from_slice(b"  ");
                    h[345..348].copy_from_slice(b"dir");
                },
                false,
                Some(2),
            ),
        ];
        for (what, alter, signed, want) in cases {
            assert_eq!(read(&header(alter, signed)), (want, want), "{what}");
        }
        // A blank size field is 0 to both.
        let blank = header(&|h| h[124..136].fill(b' '), false);
        assert_eq!(read(&blank).1, Some(0));
        assert_eq!(crate::tar::toc_json(&blank), Ok(512..512));
    }
}
