//! Hostile inputs: every malformed, truncated, contradictory or oversized blob must give a clear
//! `Error` (or, where a tree is the right answer, a safe tree) within a second and in bounded
//! memory, and never panic. A bad chunk must fail only the reads that touch it.
//!
//! Blobs are built here by a small test-only writer (gzip members through miniz_oxide's deflate,
//! zstd frames through ruzstd's encoder, a hand-made tar header for `stargz.index.json`, the
//! footers emitted literally) so that each test injects exactly one fault into an otherwise valid
//! blob. The committed fixtures in testdata/fixtures are mutated too. Memory is measured with a
//! counting global allocator (per thread, so parallel tests do not disturb each other).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bounds;
mod common;

use std::collections::BTreeMap;

use crfs_core::footer::read_footer;
use crfs_core::index::Limits;
use crfs_core::{Digest, Error, Format, Index, Kind, Layer, NodeId, OpenOptions, ROOT, ReadAt};

use bounds::{SECOND, peak, timed, within};

/// With `CRFS_HOSTILE_DUMP=<dir>`, every blob the suite opens (up to 64 KiB) is written there,
/// named by its digest: the seeds of the fuzz corpora (fuzz/README.md).
fn dump(blob: &[u8]) {
    if let Some(dir) = std::env::var_os("CRFS_HOSTILE_DUMP")
        && blob.len() <= 64 << 10
    {
        let name = Digest::of(blob).to_string().replace(':', "-");
        std::fs::write(std::path::Path::new(&dir).join(name), blob).unwrap();
    }
}

/// How the suite opens blobs: with helper threads, as crfs's commands do (crfs-image), so a
/// large TOC takes the two-halves path; the library's default, one thread, is what every other
/// test suite opens with.
fn threaded() -> OpenOptions {
    OpenOptions { threads: true, ..OpenOptions::default() }
}

fn open(blob: &[u8]) -> Result<Layer<&[u8]>, Error> {
    dump(blob);
    within("open", SECOND, || Layer::open_with(blob, &threaded()))
}

/// Opens an owned blob (for layers that outlive the expression that built the blob).
fn open_vec(blob: Vec<u8>) -> Result<Layer<Vec<u8>>, Error> {
    dump(&blob);
    within("open", SECOND, || Layer::open_with(blob, &threaded()))
}

fn open_with<'a>(blob: &'a [u8], options: &OpenOptions) -> Result<Layer<&'a [u8]>, Error> {
    dump(blob);
    within("open", SECOND, || Layer::open_with(blob, options))
}

// ------------------------------------------------------------------------------------------------
// A test-only blob writer.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    Gzip,
    #[cfg(feature = "zstd")]
    Zstd,
}

fn formats() -> Vec<Fmt> {
    #[cfg(feature = "zstd")]
    return vec![Fmt::Gzip, Fmt::Zstd];
    #[cfg(not(feature = "zstd"))]
    return vec![Fmt::Gzip];
}

/// One gzip member: fixed 10-byte header (no flags, OS 255), raw deflate, CRC32, ISIZE.
fn gzip_member(data: &[u8]) -> Vec<u8> {
    let mut m = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    m.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    m.extend(crc32fast::hash(data).to_le_bytes());
    m.extend((data.len() as u32).to_le_bytes());
    m
}

#[cfg(feature = "zstd")]
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn compress(fmt: Fmt, data: &[u8]) -> Vec<u8> {
    match fmt {
        Fmt::Gzip => gzip_member(data),
        #[cfg(feature = "zstd")]
        Fmt::Zstd => zstd_frame(data),
    }
}

/// A ustar header block: `name`, octal `size`, `typeflag`, a valid checksum.
fn tar_header(name: &[u8], size: u64, typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_tar_checksum(&mut h);
    h
}

fn set_tar_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn pad_block(tar: &mut Vec<u8>) {
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// The tar stream of a TOC member: header, JSON, padding, end-of-archive.
fn toc_tar(json: &[u8]) -> Vec<u8> {
    let mut tar = tar_header(b"stargz.index.json", json.len() as u64, b'0').to_vec();
    tar.extend_from_slice(json);
    pad_block(&mut tar);
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// The 51-byte eStargz footer, literally (the table in crfs-core's `footer` module).
fn estargz_footer(toc_offset_hex: &str) -> Vec<u8> {
    let mut f = vec![0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x1a, 0x00, b'S', b'G', 0x16, 0x00];
    assert_eq!(toc_offset_hex.len(), 16);
    f.extend_from_slice(toc_offset_hex.as_bytes());
    f.extend_from_slice(b"STARGZ");
    f.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(f.len(), 51);
    f
}

/// The 48-byte zstd:chunked tail: a skippable frame holding the 40-byte `GnUlInUx` footer.
fn zstd_footer(toc_offset: u64, toc_len: u64, raw_len: u64) -> Vec<u8> {
    let mut f = vec![0x50, 0x2a, 0x4d, 0x18, 40, 0, 0, 0];
    for v in [toc_offset, toc_len, raw_len, 1] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(b"GnUlInUx");
    f
}

/// JSON string literal for `s` (quotes included).
fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn digest(data: &[u8]) -> String {
    Digest::of(data).to_string()
}

/// Builds a blob entry by entry; each payload piece gets its own gzip member or zstd frame.
struct Builder {
    fmt: Fmt,
    blob: Vec<u8>,
    entries: Vec<String>,
}

impl Builder {
    fn new(fmt: Fmt) -> Builder {
        Builder { fmt, blob: Vec::new(), entries: Vec::new() }
    }

    /// Appends `payload` compressed and returns the member's offset.
    fn member(&mut self, payload: &[u8]) -> u64 {
        let off = self.blob.len() as u64;
        let m = compress(self.fmt, payload);
        self.blob.extend_from_slice(&m);
        off
    }

    /// Appends raw bytes (a hand-made or damaged member) and returns their offset.
    fn raw(&mut self, bytes: &[u8]) -> u64 {
        let off = self.blob.len() as u64;
        self.blob.extend_from_slice(bytes);
        off
    }

    fn entry(&mut self, json: impl Into<String>) -> &mut Self {
        self.entries.push(json.into());
        self
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(format!(r#"{{"name":{},"type":"dir","mode":493}}"#, js(name)))
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(format!(r#"{{"name":{},"type":"symlink","linkName":{}}}"#, js(name), js(target)))
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(format!(r#"{{"name":{},"type":"hardlink","linkName":{}}}"#, js(name), js(target)))
    }

    /// A regular file split into `chunk`-byte pieces, each in its own member. Returns the
    /// members' offsets.
    fn file(&mut self, name: &str, data: &[u8], chunk: usize) -> Vec<u64> {
        if data.is_empty() {
            self.entry(format!(r#"{{"name":{},"type":"reg","mode":420,"digest":"{}"}}"#, js(name), digest(data)));
            return Vec::new();
        }
        let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
        let mut offsets = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let off = self.member(piece);
            offsets.push(off);
            if i == 0 {
                let chunk_size = if pieces.len() > 1 { format!(r#","chunkSize":{chunk}"#) } else { String::new() };
                self.entry(format!(
                    r#"{{"name":{},"type":"reg","size":{},"mode":420,"offset":{off},"digest":"{}"{chunk_size},"chunkDigest":"{}"}}"#,
                    js(name),
                    data.len(),
                    digest(data),
                    digest(piece)
                ));
            } else {
                self.entry(format!(
                    r#"{{"name":{},"type":"chunk","offset":{off},"chunkOffset":{},"chunkSize":{},"chunkDigest":"{}"}}"#,
                    js(name),
                    i * chunk,
                    piece.len(),
                    digest(piece)
                ));
            }
        }
        offsets
    }

    fn toc_json(&self) -> Vec<u8> {
        format!(r#"{{"version":1,"entries":[{}]}}"#, self.entries.join(",")).into_bytes()
    }

    fn finish(&self) -> Vec<u8> {
        self.finish_with_toc(&self.toc_json())
    }

    /// The blob with `json` as its TOC, whatever the entries say.
    fn finish_with_toc(&self, json: &[u8]) -> Vec<u8> {
        match self.fmt {
            Fmt::Gzip => self.finish_with_toc_member(&gzip_member(&toc_tar(json))),
            #[cfg(feature = "zstd")]
            Fmt::Zstd => {
                let mut blob = self.blob.clone();
                let frame = zstd_frame(json);
                blob.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18]);
                blob.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                let toc_offset = blob.len() as u64;
                blob.extend_from_slice(&frame);
                blob.extend(zstd_footer(toc_offset, frame.len() as u64, json.len() as u64));
                blob
            }
        }
    }

    /// gzip only: the blob with `member` as its TOC member, then the footer pointing at it.
    fn finish_with_toc_member(&self, member: &[u8]) -> Vec<u8> {
        assert_eq!(self.fmt, Fmt::Gzip);
        let mut blob = self.blob.clone();
        let toc_offset = blob.len() as u64;
        blob.extend_from_slice(member);
        blob.extend(estargz_footer(&format!("{toc_offset:016x}")));
        blob
    }
}

/// A blob holding `json` as its TOC and nothing else.
fn blob_with_toc(fmt: Fmt, json: &str) -> Vec<u8> {
    Builder::new(fmt).finish_with_toc(json.as_bytes())
}

/// A blob with one payload member (so offset 0 is valid data) and the TOC `{"version":1,"entries":[<entries>]}`.
fn blob_with_entries(fmt: Fmt, entries: &str) -> Vec<u8> {
    let mut b = Builder::new(fmt);
    b.member(b"0123456789");
    b.finish_with_toc(format!(r#"{{"version":1,"entries":[{entries}]}}"#).as_bytes())
}

fn open_entries(fmt: Fmt, entries: &str) -> Result<Layer<Vec<u8>>, Error> {
    let blob = blob_with_entries(fmt, entries);
    within("open", SECOND, || Layer::open(blob))
}

// ------------------------------------------------------------------------------------------------
// Checking trees and reads.

/// Checks that the index is a tree: every node reachable from the root exactly once, names
/// plain (no '/', NUL, "." or ".."), children sorted and unique, parent links consistent,
/// hardlinks resolved to non-directories, chunks tiling files.
fn check_tree(index: &Index) {
    let n = index.len();
    assert!(n >= 1);
    let root = index.node(ROOT).unwrap();
    assert_eq!(root.kind(), Kind::Dir);
    assert_eq!(root.parent(), ROOT);
    assert!(index.name(ROOT).is_empty());
    let mut seen = vec![false; n];
    seen[0] = true;
    let mut reached = 1usize;
    for dir in 0..n as NodeId {
        let children = index.children(dir);
        if index.node(dir).unwrap().kind() != Kind::Dir {
            assert!(children.is_empty());
            continue;
        }
        for pair in children.windows(2) {
            assert!(index.name(pair[0]) < index.name(pair[1]), "children of {dir} not strictly sorted");
        }
        for &c in children {
            assert!(!seen[c as usize], "node {c} reached twice");
            seen[c as usize] = true;
            reached += 1;
            assert_eq!(index.node(c).unwrap().parent(), dir);
            assert_eq!(index.lookup(dir, index.name(c)), Some(c));
        }
    }
    assert_eq!(reached, n, "some nodes are unreachable from the root");
    for id in 1..n as NodeId {
        let name = index.name(id);
        assert!(!name.is_empty() && name != b"." && name != b"..", "bad name {name:?}");
        assert!(!name.contains(&b'/') && !name.contains(&0), "bad name {name:?}");
        let path = index.path(id);
        assert!(!path.starts_with(b"/"));
        assert!(path.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b"." && c != b".."));
        assert_eq!(index.lookup_path(&path), Some(index.resolve(id)));
        let node = index.node(id).unwrap();
        if node.kind() == Kind::Hardlink {
            let target = index.node(index.resolve(id)).unwrap().kind();
            assert!(target != Kind::Hardlink && target != Kind::Dir);
        }
        if node.kind() == Kind::Reg {
            let mut pos = 0;
            for c in index.chunks(id) {
                assert_eq!(c.file_offset, pos);
                pos += c.size;
            }
            assert_eq!(pos, node.size());
        }
    }
}

/// One line per node: "path kind", plus " -> target" for symlinks, " => path" for hardlinks
/// and " size" for regular files. Sorted.
fn tree(index: &Index) -> Vec<String> {
    check_tree(index);
    let mut lines: Vec<String> = (0..index.len() as NodeId)
        .map(|id| {
            let path = String::from_utf8_lossy(&index.path(id)).into_owned();
            let node = index.node(id).unwrap();
            let extra = match node.kind() {
                Kind::Symlink => format!(" -> {}", String::from_utf8_lossy(index.symlink_target(id))),
                Kind::Hardlink => format!(" => {}", String::from_utf8_lossy(&index.path(index.resolve(id)))),
                Kind::Reg => format!(" {}", node.size()),
                _ => String::new(),
            };
            format!("{} {}{extra}", if path.is_empty() { "." } else { &path }, node.kind().name())
        })
        .collect();
    lines.sort();
    lines
}

fn lines(s: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = s.iter().map(|l| l.to_string()).collect();
    v.sort();
    v
}

fn id_of<R: ReadAt>(layer: &Layer<R>, path: &str) -> NodeId {
    layer.index().lookup_path(path.as_bytes()).unwrap_or_else(|| panic!("no {path}"))
}

/// Reads a file through `read_at` (verifying chunks) in one call.
fn read<R: ReadAt>(layer: &Layer<R>, id: NodeId, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len];
    let n = within("read", SECOND, || layer.read_at(id, offset, &mut buf, true))?;
    buf.truncate(n);
    Ok(buf)
}

fn read_whole<R: ReadAt>(layer: &Layer<R>, path: &str) -> Result<Vec<u8>, Error> {
    let id = id_of(layer, path);
    let mut out = Vec::new();
    within("read file", SECOND, || layer.read_file_verified(id, &mut out))?;
    Ok(out)
}

/// Opens nothing, reads everything: every regular file read whole (verified) and in pieces
/// (unverified), each within the time bound. Returns how many reads failed.
fn read_everything<R: ReadAt>(layer: &Layer<R>) -> usize {
    let index = layer.index();
    let mut failures = 0;
    let mut out = Vec::new();
    for id in 0..index.len() as NodeId {
        if index.node(index.resolve(id)).unwrap().kind() != Kind::Reg {
            continue;
        }
        if within("read file", SECOND, || layer.read_file_verified(id, &mut out)).is_err() {
            failures += 1;
        }
        let size = index.node(index.resolve(id)).unwrap().size();
        let mut buf = [0u8; 777];
        for off in [0, size / 3, size.saturating_sub(5), size, size + 1, u64::MAX] {
            let _ = within("read_at", SECOND, || layer.read_at(id, off, &mut buf, false));
        }
    }
    failures
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// A deterministic xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::testdata().join("fixtures").join(name)).unwrap()
}

/// path (escaped as in the .list files) -> sha256 hex of regular files.
fn fixture_shas(name: &str) -> BTreeMap<String, String> {
    let list = std::fs::read_to_string(common::testdata().join("fixtures").join(format!("{name}.list"))).unwrap();
    list.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1] == "reg").then(|| (f[0].to_string(), f[10].to_string()))
        })
        .collect()
}

fn fixture_names() -> Vec<&'static str> {
    let mut v = vec!["all-types.esgz", "all-types-c4096.esgz", "all-types.stargz"];
    if cfg!(feature = "zstd") {
        v.push("all-types.zstdchunked");
    }
    v
}

/// The sample everything else is derived from: a dir, a 4-chunk file, a small file, a symlink,
/// a hardlink and an empty file.
fn sample(fmt: Fmt) -> Builder {
    let mut b = Builder::new(fmt);
    b.dir("d");
    b.file("d/big", &pattern(4000, 1), 1000);
    b.file("d/small", b"small file\n", 4096);
    b.symlink("d/sl", "big");
    b.hardlink("d/hl", "d/big");
    b.file("empty", b"", 1);
    b
}

fn sample_tree() -> Vec<String> {
    lines(&[
        ". dir",
        "d dir",
        "d/big reg 4000",
        "d/small reg 11",
        "d/sl symlink -> big",
        "d/hl hardlink => d/big",
        "empty reg 0",
    ])
}

// ------------------------------------------------------------------------------------------------
// The builder itself: a valid blob opens and reads back exactly.

#[test]
fn builder_writes_valid_blobs() {
    for fmt in formats() {
        let b = sample(fmt);
        let blob = b.finish();
        let layer = open(&blob).unwrap();
        assert_eq!(layer.format(), if fmt == Fmt::Gzip { Format::Estargz } else { Format::ZstdChunked });
        assert_eq!(tree(layer.index()), sample_tree());
        assert_eq!(read_whole(&layer, "d/big").unwrap(), pattern(4000, 1));
        assert_eq!(read_whole(&layer, "d/hl").unwrap(), pattern(4000, 1));
        assert_eq!(read_whole(&layer, "d/small").unwrap(), b"small file\n");
        assert_eq!(read_whole(&layer, "empty").unwrap(), b"");
        assert_eq!(read_everything(&layer), 0);
    }
}

// ------------------------------------------------------------------------------------------------
// Empty, tiny, truncated and random blobs.

#[test]
fn empty_and_tiny_blobs_have_no_footer() {
    for len in 0..=128 {
        for fill in [0x00u8, 0x5a, 0xff] {
            let blob = vec![fill; len];
            assert_eq!(open(&blob).err(), Some(Error::NoFooter), "{len} bytes of {fill:#x}");
        }
    }
}

#[test]
fn a_footer_alone_points_outside_the_blob() {
    let footer = estargz_footer("0000000000000000");
    assert_eq!(open(&footer).err(), Some(Error::TocOutOfRange { offset: 0, size: 0, blob_size: 51 }));
    let footer = zstd_footer(0, 9, 1);
    assert_eq!(open(&footer).err(), Some(Error::TocOutOfRange { offset: 0, size: 9, blob_size: 48 }));
}

#[test]
fn every_truncation_of_a_built_blob_fails_cleanly() {
    for fmt in formats() {
        let blob = sample(fmt).finish();
        for len in 0..blob.len() {
            let err = open(&blob[..len]).err();
            assert_eq!(err, Some(Error::NoFooter), "{fmt:?} truncated to {len} of {}", blob.len());
        }
    }
}

#[test]
fn fixture_truncations_fail_cleanly() {
    for name in fixture_names() {
        let blob = fixture(name);
        for i in 0..64 {
            let len = blob.len() * i / 64;
            assert_eq!(open(&blob[..len]).err(), Some(Error::NoFooter), "{name} cut to {len}");
            // Cutting the front instead keeps the footer but shifts every offset.
            let err = open(&blob[len.max(1)..]).err();
            assert!(err.is_some(), "{name} without its first {len} bytes opened");
        }
    }
}

#[test]
fn random_bytes_are_not_a_layer() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..2000 {
        let len = rng.below(4096);
        let mut blob: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them end in a well-formed footer pointing somewhere inside.
        if i % 2 == 1 {
            let off = rng.below(len + 1) as u64;
            if i % 4 == 1 {
                blob.extend(estargz_footer(&format!("{off:016x}")));
            } else {
                blob.extend(zstd_footer(off, rng.below(len + 8) as u64, rng.below(1 << 20) as u64));
            }
        }
        let err = open(&blob).err();
        assert!(err.is_some(), "random blob #{i} opened");
    }
}

// ------------------------------------------------------------------------------------------------
// Footers and TOC locations.

#[test]
fn toc_offsets_outside_the_blob() {
    let b = sample(Fmt::Gzip);
    let good = b.finish();
    let size = good.len() as u64;
    let with_offset = |hex: &str| {
        let mut blob = good.clone();
        let at = blob.len() - 51;
        blob.truncate(at);
        blob.extend(estargz_footer(hex));
        blob
    };
    let data_end = size - 51;
    for (hex, want) in [
        (format!("{data_end:016x}"), Error::TocOutOfRange { offset: data_end, size: 0, blob_size: size }),
        (format!("{size:016x}"), Error::TocOutOfRange { offset: size, size: 0, blob_size: size }),
        ("7fffffffffffffff".into(), Error::TocOutOfRange { offset: i64::MAX as u64, size: 0, blob_size: size }),
        ("8000000000000000".into(), Error::BadFooter("TOC offset overflows int64")),
        ("ffffffffffffffff".into(), Error::BadFooter("TOC offset overflows int64")),
        ("-000000000000001".into(), Error::BadFooter("TOC offset is not hexadecimal")),
        ("                ".into(), Error::BadFooter("TOC offset is not hexadecimal")),
    ] {
        assert_eq!(open(&with_offset(&hex)).err(), Some(want), "offset {hex}");
    }
    // Offsets inside the blob but not at the TOC member.
    assert_eq!(open(&with_offset("0000000000000000")).err(), Some(Error::BadTocTar("header checksum mismatch")));
    assert_eq!(open(&with_offset("0000000000000001")).err(), Some(Error::BadGzip("bad magic")));
    // Upper-case hex is accepted, as the reference's parser does.
    let toc = b.blob.len() as u64;
    let upper = format!("{toc:016X}");
    assert!(open(&with_offset(&upper)).is_ok());
}

#[test]
fn footer_field_faults() {
    let good = sample(Fmt::Gzip).finish();
    let tail = good.len() - 51;
    let mutate = |at: usize, value: u8| {
        let mut blob = good.clone();
        blob[tail + at] = value;
        blob
    };
    assert_eq!(open(&mutate(12, b'X')).err(), Some(Error::BadFooter("extra subfield is not SG")));
    assert_eq!(open(&mutate(14, 21)).err(), Some(Error::BadFooter("subfield is not <16 hex digits>STARGZ")));
    assert_eq!(open(&mutate(37, b'z')).err(), Some(Error::BadFooter("subfield is not <16 hex digits>STARGZ")));
    assert_eq!(open(&mutate(40, 1)).err(), Some(Error::BadFooter("footer member is not empty")));
    assert_eq!(open(&mutate(50, 1)).err(), Some(Error::BadFooter("footer member is not empty")));
    // Not a gzip header at all: no footer.
    assert_eq!(open(&mutate(0, 0)).err(), Some(Error::NoFooter));
    // MTIME, XFL and OS are not checked (the reference ignores them too).
    assert!(open(&mutate(5, 0x42)).is_ok());
    // The external-TOC variant is recognised and refused.
    let mut ext = good[..tail].to_vec();
    ext.extend_from_slice(&[0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 21, 0, b'S', b'G', 17, 0]);
    ext.extend_from_slice(b"STARGZEXTERNALTOC");
    ext.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(open(&ext).err(), Some(Error::ExternalToc));
}

#[test]
fn legacy_footer_faults() {
    let good = fixture("all-types.stargz");
    let layer = open(&good).unwrap();
    assert_eq!(layer.format(), Format::LegacyStargz);
    let size = good.len() as u64;
    let with_hex = |hex: &[u8]| {
        let mut blob = good.clone();
        let at = blob.len() - 47 + 12;
        blob[at..at + 16].copy_from_slice(hex);
        blob
    };
    let toc_end = size - 47;
    assert_eq!(
        open(&with_hex(format!("{toc_end:016x}").as_bytes())).err(),
        Some(Error::TocOutOfRange { offset: toc_end, size: 0, blob_size: size })
    );
    assert_eq!(
        open(&with_hex(b"7fffffffffffffff")).err(),
        Some(Error::TocOutOfRange { offset: i64::MAX as u64, size: 0, blob_size: size })
    );
    // A legacy footer that fails its checks is simply not a footer.
    assert_eq!(open(&with_hex(b"ffffffffffffffff")).err(), Some(Error::NoFooter));
    assert_eq!(open(&with_hex(b"zzzzzzzzzzzzzzzz")).err(), Some(Error::NoFooter));
    // Offset 0: the first member holds the tar header of a directory.
    assert_eq!(open(&with_hex(b"0000000000000000")).err(), Some(Error::BadTocTar("first entry is not a regular file")));
    let mut no_magic = good.clone();
    let at = no_magic.len() - 47 + 28;
    no_magic[at] = b's';
    assert_eq!(open(&no_magic).err(), Some(Error::NoFooter));
}

#[test]
fn zstd_footer_faults() {
    let mut blob = vec![0u8; 100];
    let put = |blob: &mut Vec<u8>, off: u64, len: u64, raw: u64| {
        blob.truncate(100);
        blob.extend(zstd_footer(off, len, raw));
    };
    let size = 148;
    for (off, len, want) in [
        (u64::MAX - 3, 10, Error::TocOutOfRange { offset: u64::MAX - 3, size: 10, blob_size: size }),
        (0, u64::MAX, Error::TocOutOfRange { offset: 0, size: u64::MAX, blob_size: size }),
        (10, 0, Error::TocOutOfRange { offset: 10, size: 0, blob_size: size }),
        (200, 1, Error::TocOutOfRange { offset: 200, size: 1, blob_size: size }),
        (100, 10, Error::TocOutOfRange { offset: 100, size: 10, blob_size: size }),
    ] {
        put(&mut blob, off, len, 10);
        assert_eq!(open(&blob).err(), Some(want), "offset {off} len {len}");
    }
    // Manifest type other than 1.
    put(&mut blob, 0, 10, 10);
    let at = blob.len() - 16;
    blob[at] = 2;
    assert_eq!(open(&blob).err(), Some(Error::BadFooter("zstd:chunked manifest type is not 1")));
    // A TOC length over the limit is refused before anything is read.
    put(&mut blob, 8, 90, 10);
    let small = OpenOptions { max_toc_size: 50, ..OpenOptions::default() };
    assert_eq!(open_with(&blob, &small).err(), Some(Error::TooLarge { what: "TOC", size: 90, limit: 50 }));
    put(&mut blob, 8, 10, 51);
    #[cfg(feature = "zstd")]
    assert_eq!(open_with(&blob, &small).err(), Some(Error::TooLarge { what: "TOC", size: 51, limit: 50 }));
    #[cfg(not(feature = "zstd"))]
    assert_eq!(open_with(&blob, &small).err(), Some(Error::ZstdUnsupported));
}

// ------------------------------------------------------------------------------------------------
// The TOC member: gzip framing and the tar header.

#[test]
fn corrupt_toc_member() {
    let b = sample(Fmt::Gzip);
    let tar = toc_tar(&b.toc_json());
    let member = gzip_member(&tar);
    let with = |m: &[u8]| b.finish_with_toc_member(m);
    let n = member.len();
    let mutated = |at: usize, x: u8| {
        let mut m = member.clone();
        m[at] ^= x;
        m
    };
    assert!(open(&with(&member)).is_ok());
    assert_eq!(open(&with(&mutated(0, 0xff))).err(), Some(Error::BadGzip("bad magic")));
    assert_eq!(open(&with(&mutated(2, 1))).err(), Some(Error::BadGzip("compression method is not deflate")));
    assert_eq!(open(&with(&mutated(3, 0x80))).err(), Some(Error::BadGzip("reserved flag bits set")));
    assert_eq!(open(&with(&mutated(n - 8, 1))).err(), Some(Error::GzipChecksum));
    assert_eq!(open(&with(&mutated(n - 1, 1))).err(), Some(Error::GzipChecksum));
    // FNAME set but no NUL anywhere after the header: a truncated header.
    let mut no_nul = member[..10].to_vec();
    no_nul[3] = 0x08;
    no_nul.extend(std::iter::repeat_n(b'a', 100));
    assert_eq!(open(&with(&no_nul)).err(), Some(Error::BadGzip("header truncated")));
    // Deflate data cut short, or the trailer missing.
    assert_eq!(open(&with(&member[..n / 2])).err(), Some(Error::Corrupt("gzip member ends early")));
    assert_eq!(open(&with(&member[..n - 4])).err(), Some(Error::BadGzip("trailer truncated")));
    // A member that is not deflate at all (BTYPE=11 is reserved).
    let mut bad_deflate = member[..10].to_vec();
    bad_deflate.extend_from_slice(&[0xff; 64]);
    assert_eq!(open(&with(&bad_deflate)).err(), Some(Error::Corrupt("invalid deflate data")));
    // Junk after the member (before the footer) is ignored, like the reference's single-member read.
    let mut junk = member.clone();
    junk.extend_from_slice(b"junk after the TOC member");
    assert!(open(&with(&junk)).is_ok());
    // Every single-byte flip: either an error from the member or, for the ignored header bytes
    // (MTIME, XFL, OS), the same TOC.
    let want_digest = open(&with(&member)).unwrap().toc_digest();
    for at in 0..n {
        match open(&with(&mutated(at, 0x10))) {
            Ok(layer) => {
                assert!((4..10).contains(&at), "flip at {at} of the TOC member went unnoticed");
                assert_eq!(layer.toc_digest(), want_digest);
            }
            Err(Error::BadGzip(_) | Error::GzipChecksum | Error::Corrupt(_)) => {}
            Err(e) => panic!("flip at {at}: unexpected {e:?}"),
        }
    }
}

#[test]
fn corrupt_toc_tar_header() {
    let b = sample(Fmt::Gzip);
    let json = b.toc_json();
    let open_tar = |tar: &[u8]| open(&b.finish_with_toc_member(&gzip_member(tar))).map(|_| ());
    let with_header = |h: [u8; 512]| {
        let mut tar = h.to_vec();
        tar.extend_from_slice(&json);
        pad_block(&mut tar);
        tar.extend_from_slice(&[0u8; 1024]);
        tar
    };
    let size = json.len() as u64;
    assert_eq!(open_tar(&with_header(tar_header(b"stargz.index.json", size, b'0'))), Ok(()));
    assert_eq!(open_tar(&with_header(tar_header(b"stargz.index.json", size, 0))), Ok(()));
    let not_toc = Err(Error::BadTocTar("first entry is not stargz.index.json"));
    assert_eq!(open_tar(&with_header(tar_header(b"other.json", size, b'0'))), not_toc);
    assert_eq!(open_tar(&with_header(tar_header(b"./stargz.index.json", size, b'0'))), not_toc);
    assert_eq!(
        open_tar(&with_header(tar_header(b"stargz.index.json", size, b'5'))),
        Err(Error::BadTocTar("first entry is not a regular file"))
    );
    assert_eq!(
        open_tar(&with_header(tar_header(b"stargz.index.json", size + 100_000, b'0'))),
        Err(Error::BadTocTar("entry runs past the member"))
    );
    let mut h = tar_header(b"stargz.index.json", size, b'0');
    h[0] = b'S';
    assert_eq!(open_tar(&with_header(h)), Err(Error::BadTocTar("header checksum mismatch")));
    // Absurd sizes: base-256 with the top bits, 11 octal digits of 7, non-octal text.
    let mut h = tar_header(b"stargz.index.json", 0, b'0');
    h[124..136].copy_from_slice(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    set_tar_checksum(&mut h);
    assert_eq!(open_tar(&with_header(h)), Err(Error::BadTocTar("number overflows")));
    h[124..136].copy_from_slice(&[0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    set_tar_checksum(&mut h);
    assert_eq!(open_tar(&with_header(h)), Err(Error::BadTocTar("negative base-256 number")));
    h[124..136].copy_from_slice(b"77777777777\0");
    set_tar_checksum(&mut h);
    assert_eq!(open_tar(&with_header(h)), Err(Error::BadTocTar("entry runs past the member")));
    h[124..136].copy_from_slice(b"0000000009\0\0");
    set_tar_checksum(&mut h);
    assert_eq!(open_tar(&with_header(h)), Err(Error::BadTocTar("number is not octal")));
    // Too short for a header.
    assert_eq!(open_tar(&[0u8; 100]), Err(Error::BadTocTar("truncated header")));
    // An endless run of PAX headers.
    let mut pax = Vec::new();
    for _ in 0..20 {
        pax.extend_from_slice(&tar_header(b"pax", 0, b'x'));
    }
    pax.extend(toc_tar(&json));
    assert_eq!(open_tar(&pax), Err(Error::BadTocTar("too many metadata headers")));
    // A PAX path record renames the entry, as a tar reader would.
    let record = b"26 path=stargz.index.json\n";
    let mut renamed = tar_header(b"pax", record.len() as u64, b'x').to_vec();
    renamed.extend_from_slice(record);
    pad_block(&mut renamed);
    renamed.extend(with_header(tar_header(b"whatever", size, b'0')));
    assert_eq!(open_tar(&renamed), Ok(()));
    // Malformed PAX records.
    for bad in [&b"99 path=x\n"[..], b"x path=y\n", b"10 path=abc", b"3 p\n"] {
        let mut tar = tar_header(b"pax", bad.len() as u64, b'x').to_vec();
        tar.extend_from_slice(bad);
        pad_block(&mut tar);
        tar.extend(toc_tar(&json));
        assert!(matches!(open_tar(&tar), Err(Error::BadTocTar(_))), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn toc_member_bomb_stays_within_the_limit() {
    // 16 MiB of zeros deflates to ~16 KiB; the TOC limit is 1 MiB.
    let bomb = gzip_member(&vec![0u8; 16 << 20]);
    let blob = Builder::new(Fmt::Gzip).finish_with_toc_member(&bomb);
    let options = OpenOptions { max_toc_size: 1 << 20, ..OpenOptions::default() };
    let (result, bytes) = peak(|| open_with(&blob, &options).err());
    assert_eq!(result, Some(Error::TooLarge { what: "gzip member", size: (1 << 20) + 1, limit: 1 << 20 }));
    assert!(bytes < 4 << 20, "peak {bytes} bytes for a 1 MiB TOC limit");
}

// ------------------------------------------------------------------------------------------------
// The TOC JSON.

#[test]
fn toc_that_is_not_json() {
    for fmt in formats() {
        let mut wrong = Vec::new();
        for (json, what) in [
            ("", "unexpected end of JSON"),
            ("   ", "unexpected end of JSON"),
            ("null", "value of the wrong type"),
            ("[]", "value of the wrong type"),
            ("\"toc\"", "value of the wrong type"),
            ("hello", "value of the wrong type"),
            ("{", "unexpected end of JSON"),
            ("{\"version\":1,\"entries\":[}", "value of the wrong type"),
            ("{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"dir\"}", "unexpected end of JSON"),
            ("{\"version\":1,\"entries\":5}", "value of the wrong type"),
            ("{\"version\":1,\"entries\":[5]}", "value of the wrong type"),
            ("{\"version\":1,\"entries\":[[]]}", "value of the wrong type"),
            ("{\"version\":1,\"entries\":[{\"name\":5,\"type\":\"dir\"}]}", "value of the wrong type"),
            ("{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"dir\"},]}", "trailing comma"),
            ("{\"version\":1} {}", "trailing characters"),
            ("{\"version\":1,}", "trailing comma"),
            ("{version:1}", "object key is not a string"),
            ("{\"version\" 1}", "expected ':'"),
            ("{\"entries\":[]}", "no \"version\" field"),
        ] {
            let err = open(&blob_with_toc(fmt, json)).err();
            if !matches!(err, Some(Error::BadJson { what: w, .. }) if w == what) {
                wrong.push(format!("{fmt:?} {json:?}: {err:?}, want {what}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        // Binary and invalid UTF-8 garbage.
        for json in [&b"\x00\x01\x02"[..], b"{\"version\":1,\"entries\":[{\"name\":\"\xff\xfe\",\"type\":\"dir\"}]}"] {
            let err = open(&Builder::new(fmt).finish_with_toc(json)).err();
            assert!(matches!(err, Some(Error::BadJson { .. })), "{fmt:?} {json:?}: {err:?}");
        }
        // The entry count in the error is how many entries were read.
        let json = r#"{"version":1,"entries":[{"name":"a","type":"dir"},{"name":"b","type":"dir"},{"name":}]}"#;
        assert_eq!(
            open(&blob_with_toc(fmt, json)).err(),
            Some(Error::BadJson { entry: 2, what: "value of the wrong type" })
        );
    }
}

#[test]
fn toc_that_is_not_version_1() {
    for fmt in formats() {
        for (version, want) in [
            ("0", Error::UnsupportedVersion(0)),
            ("2", Error::UnsupportedVersion(2)),
            ("-1", Error::UnsupportedVersion(-1)),
            ("null", Error::UnsupportedVersion(0)),
            ("9223372036854775807", Error::UnsupportedVersion(i64::MAX)),
            ("-9223372036854775808", Error::UnsupportedVersion(i64::MIN)),
        ] {
            let json = format!(r#"{{"version":{version},"entries":[{{"name":"a","type":"dir"}}]}}"#);
            assert_eq!(open(&blob_with_toc(fmt, &json)).err(), Some(want), "{fmt:?} version {version}");
        }
        for version in ["\"1\"", "1.0", "1e0", "true", "[1]", "{}", "18446744073709551616", "9223372036854775808"] {
            let json = format!(r#"{{"version":{version},"entries":[]}}"#);
            let err = open(&blob_with_toc(fmt, &json)).err();
            assert!(matches!(err, Some(Error::BadJson { .. })), "{fmt:?} version {version}: {err:?}");
        }
        // Version after the entries is fine; a duplicate version key: the last one counts.
        let json = r#"{"entries":[{"name":"a","type":"dir"}],"version":1}"#;
        assert!(open(&blob_with_toc(fmt, json)).is_ok());
        let json = r#"{"version":1,"entries":[],"version":2}"#;
        assert_eq!(open(&blob_with_toc(fmt, json)).err(), Some(Error::UnsupportedVersion(2)));
    }
}

#[test]
fn deep_json_nesting() {
    for fmt in formats() {
        let nest = |open_: &str, close: &str, depth: usize, inner: &str| {
            format!(r#"{{"version":1,"junk":{}{inner}{},"entries":[]}}"#, open_.repeat(depth), close.repeat(depth))
        };
        // The top object counts as one level: 31 more fit, 32 more do not.
        assert!(open(&blob_with_toc(fmt, &nest("[", "]", 31, ""))).is_ok());
        let deep = Some(Error::BadJson { entry: 0, what: "nesting too deep" });
        assert_eq!(open(&blob_with_toc(fmt, &nest("[", "]", 32, ""))).err(), deep);
        assert_eq!(open(&blob_with_toc(fmt, &nest("{\"a\":", "}", 32, "1"))).err(), deep);
        // A million levels (the Go reference overflows its stack on far fewer), in arrays,
        // objects, and inside an entry's xattrs.
        assert_eq!(open(&blob_with_toc(fmt, &nest("[", "]", 1_000_000, ""))).err(), deep);
        assert_eq!(open(&blob_with_toc(fmt, &nest("{\"a\":", "}", 300_000, "1"))).err(), deep);
        // A known field holding nested arrays is a type error at once, whatever the depth.
        let xattrs =
            format!(r#"{{"name":"f","type":"dir","xattrs":{{"k":{}1{}}}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let err = open_entries(fmt, &xattrs).err();
        assert!(matches!(err, Some(Error::BadJson { what: "value of the wrong type", .. })), "{err:?}");
        // Unbalanced: only opening brackets.
        assert_eq!(open(&blob_with_toc(fmt, &format!(r#"{{"version":1,"x":{}"#, "[".repeat(500_000)))).err(), deep);
        // Brackets inside strings (with escaped quotes) do not count.
        let name = format!("{}\\\"{}", "[".repeat(100), "{".repeat(100));
        let entries = format!(r#"{{"name":"{name}","type":"dir"}}"#);
        let layer = open_entries(fmt, &entries).unwrap();
        assert_eq!(tree(layer.index()), lines(&[". dir", &format!("{}\"{} dir", "[".repeat(100), "{".repeat(100))]));
    }
}

// ------------------------------------------------------------------------------------------------
// Entry fields: negative, overflowing and absurd numbers.

#[test]
fn negative_and_out_of_range_numbers() {
    let d = digest(b"0123456789");
    for fmt in formats() {
        for (entry, what) in [
            (r#"{"name":"f","type":"reg","size":-1}"#.to_string(), "negative size"),
            (r#"{"name":"f","type":"dir","mode":-1}"#.to_string(), "negative mode"),
            (r#"{"name":"f","type":"dir","uid":-1}"#.to_string(), "uid out of range"),
            (r#"{"name":"f","type":"dir","gid":-2147483648}"#.to_string(), "gid out of range"),
            (r#"{"name":"f","type":"dir","uid":4294967296}"#.to_string(), "uid out of range"),
            (r#"{"name":"f","type":"char","devMajor":4294967296}"#.to_string(), "devMajor out of range"),
            (r#"{"name":"f","type":"block","devMinor":-1}"#.to_string(), "devMinor out of range"),
            (r#"{"name":"f","type":"char","devMajor":9223372036854775807}"#.to_string(), "devMajor out of range"),
            (format!(r#"{{"name":"f","type":"reg","size":10,"offset":-1,"digest":"{d}"}}"#), "negative offset"),
            (
                format!(r#"{{"name":"f","type":"reg","size":10,"offset":0,"innerOffset":-5,"digest":"{d}"}}"#),
                "negative innerOffset",
            ),
            (
                format!(r#"{{"name":"f","type":"reg","size":10,"offset":0,"chunkSize":-4,"digest":"{d}"}}"#),
                "negative chunkSize",
            ),
            (
                r#"{"name":"f","type":"reg","size":10,"offset":0,"chunkSize":4},{"name":"f","type":"chunk","offset":0,"chunkOffset":-4}"#
                    .to_string(),
                "negative chunkOffset",
            ),
            (
                r#"{"name":"f","type":"reg","size":10,"offset":0,"chunkOffset":3}"#.to_string(),
                "regular file entry with a non-zero chunkOffset",
            ),
            (r#"{"name":"f","type":"reg","size":10,"offset":0,"digest":"sha256:00"}"#.to_string(), "invalid digest"),
            (
                r#"{"name":"f","type":"reg","size":10,"offset":0,"chunkDigest":"md5:00"}"#.to_string(),
                "invalid chunkDigest",
            ),
            (r#"{"name":"f","type":"reg","size":10,"offset":0,"chunkType":"holes"}"#.to_string(), "unknown chunkType"),
            (r#"{"name":"f","type":"sock"}"#.to_string(), "unknown type"),
            (r#"{"name":"f"}"#.to_string(), "no type"),
            (r#"{"type":"dir"}"#.to_string(), "no name"),
            (
                r#"{"name":"f","type":"reg","size":10,"offset":999999}"#.to_string(),
                "data offset outside the blob's data area",
            ),
            (
                r#"{"name":"f","type":"reg","size":10,"offset":9223372036854775807}"#.to_string(),
                "data offset outside the blob's data area",
            ),
        ] {
            let err = open_entries(fmt, &entry).err();
            let entry_index = if what == "negative chunkOffset" { 1 } else { 0 };
            assert_eq!(err, Some(Error::BadEntry { entry: entry_index, what }), "{fmt:?} {entry}");
        }
        // Numbers JSON itself cannot hold as integers.
        for number in [
            "18446744073709551616",
            "99999999999999999999999",
            "-9223372036854775809",
            "1.5",
            "1e3",
            "0x10",
            "--1",
            "+1",
        ] {
            let entry = format!(r#"{{"name":"f","type":"reg","size":{number}}}"#);
            let err = open_entries(fmt, &entry).err();
            assert!(matches!(err, Some(Error::BadJson { entry: 0, .. })), "{fmt:?} size {number}: {err:?}");
        }
        // Mode bits beyond 0o7777 are masked, as the reference does; file-type bits are dropped.
        let layer = open_entries(fmt, r#"{"name":"f","type":"dir","mode":1099511644141}"#).unwrap();
        assert_eq!(layer.index().node(id_of(&layer, "f")).unwrap().mode(), 0o7755);
        // The largest device numbers that fit.
        let layer =
            open_entries(fmt, r#"{"name":"c","type":"char","devMajor":4294967295,"devMinor":4294967295}"#).unwrap();
        assert_eq!(layer.index().node(id_of(&layer, "c")).unwrap().rdev(), (u32::MAX, u32::MAX));
    }
}

#[test]
fn absurd_sizes_are_not_allocated() {
    for fmt in formats() {
        // Chunks the index holds (up to 4 GiB - 1 each) but no read may allocate: a file that
        // claims 4 GiB - 1 bytes in one chunk, and 2^40 bytes in chunks of 2^31.
        let entries = format!(
            "{},{}",
            r#"{"name":"huge","type":"reg","size":4294967295,"offset":0}"#,
            r#"{"name":"chunked","type":"reg","size":1099511627776,"offset":0,"chunkSize":2147483648}"#,
        );
        let entries = (1..512u64).fold(entries, |mut all, i| {
            let at = i << 31;
            all.push_str(&format!(
                r#",{{"name":"chunked","type":"chunk","offset":0,"chunkOffset":{at},"chunkSize":2147483648}}"#
            ));
            all
        });
        let (layer, bytes) = peak(|| open_entries(fmt, &entries));
        let layer = layer.unwrap();
        assert!(bytes < 1 << 20, "{fmt:?}: opening took {bytes} bytes");
        assert_eq!(layer.index().stats().file_bytes, u64::from(u32::MAX) + (1 << 40));
        for name in ["huge", "chunked"] {
            let id = id_of(&layer, name);
            let mut buf = [0u8; 16];
            for (offset, verify) in
                [(0, true), (0, false), (1 << 31, false), (1 << 39, false), (i64::MAX as u64 - 1, false)]
            {
                let size = layer.index().node(id).unwrap().size();
                let (result, bytes) = peak(|| layer.read_at(id, offset, &mut buf, verify));
                assert!(
                    matches!(result, Err(Error::TooLarge { what: "chunk", .. }) | Err(Error::Corrupt(_)))
                        || (offset >= size && result == Ok(0)),
                    "{fmt:?} {name} @{offset}: {result:?}"
                );
                assert!(bytes < 1 << 20, "{fmt:?} {name}: a read took {bytes} bytes");
            }
        }
        // A large innerOffset the index holds is refused by reads the same way.
        let entries = r#"{"name":"f","type":"reg","size":4,"offset":0,"innerOffset":1073741823}"#;
        let layer = open_entries(fmt, entries).unwrap();
        let mut buf = [0u8; 4];
        let (result, bytes) = peak(|| layer.read_at(id_of(&layer, "f"), 0, &mut buf, false));
        assert_eq!(result, Err(Error::TooLarge { what: "chunk", size: (1 << 30) + 3, limit: 64 << 20 }));
        assert!(bytes < 1 << 20);
    }
}

/// The index keeps a chunk's size in 32 bits and its innerOffset in 30: a chunk past either
/// bound is refused when the layer is opened, with the bound, never truncated; one at the
/// bound opens. Sizes of 2^62 and i64::MAX, and their sum overflowing u64, are refused too.
#[test]
fn chunks_past_the_index_bounds_are_refused_at_open() {
    let max_size = u64::from(u32::MAX);
    let max_inner = (1u64 << 30) - 1;
    for fmt in formats() {
        let cases = [
            (format!(r#"{{"name":"f","type":"reg","size":{},"offset":0}}"#, max_size + 1), "chunk size", max_size + 1),
            (
                r#"{"name":"f","type":"reg","size":4611686018427387904,"offset":0,"chunkSize":2305843009213693952},{"name":"f","type":"chunk","offset":0,"chunkOffset":2305843009213693952}"#.to_string(),
                "chunk size",
                1 << 61,
            ),
            (r#"{"name":"f","type":"reg","size":9223372036854775807,"offset":0}"#.to_string(), "chunk size", i64::MAX as u64),
            (
                format!(
                    r#"{{"name":"f","type":"reg","size":8,"offset":0,"chunkSize":4}},{{"name":"f","type":"chunk","offset":0,"chunkOffset":4,"innerOffset":{}}}"#,
                    max_inner + 1
                ),
                "chunk innerOffset",
                max_inner + 1,
            ),
            (
                r#"{"name":"f","type":"reg","size":4,"offset":0,"innerOffset":9223372036854775807}"#.to_string(),
                "chunk innerOffset",
                i64::MAX as u64,
            ),
        ];
        for (entries, what, size) in cases {
            let limit = if what == "chunk size" { max_size } else { max_inner };
            let (result, bytes) = peak(|| open_entries(fmt, &entries));
            assert_eq!(result.err(), Some(Error::TooLarge { what, size, limit }), "{fmt:?} {entries}");
            assert!(bytes < 1 << 20, "{fmt:?}: opening took {bytes} bytes");
        }
        // At the bounds: a zeros chunk of 4 GiB - 1 bytes, and a chunk at innerOffset 2^30 - 1.
        let entries = format!(
            r#"{{"name":"z","type":"reg","size":{max_size},"chunkSize":{max_size},"chunkType":"zeros"}},{{"name":"i","type":"reg","size":4,"offset":0,"innerOffset":{max_inner}}}"#
        );
        let layer = open_entries(fmt, &entries).unwrap();
        let z = layer.index().chunks(id_of(&layer, "z")).get(0).unwrap();
        assert_eq!((z.size, z.zeros, z.compressed_end, z.inner_offset), (max_size, true, 0, 0));
        assert_eq!(layer.index().node(id_of(&layer, "z")).unwrap().size(), max_size);
        let mut buf = [1u8; 16];
        assert_eq!(layer.read_at(id_of(&layer, "z"), 0, &mut buf, true), Ok(16));
        assert_eq!(buf, [0; 16]);
        // Reads near its end need more than the layer's 64 MiB chunk limit.
        let result = layer.read_at(id_of(&layer, "z"), max_size - 8, &mut buf, true);
        assert!(matches!(result, Err(Error::TooLarge { what: "chunk", .. })), "{result:?}");
        let i = layer.index().chunks(id_of(&layer, "i")).get(0).unwrap();
        assert_eq!((i.inner_offset, i.size, i.zeros), (max_inner, 4, false));
    }
}

#[test]
fn claimed_sizes_under_the_limits_allocate_only_what_the_data_holds() {
    // A chunk that claims 60 MiB (under the 64 MiB chunk limit) but whose member is ten bytes.
    for fmt in formats() {
        let entries = r#"{"name":"f","type":"reg","size":62914560,"offset":0}"#;
        let layer = open_entries(fmt, entries).unwrap();
        let id = id_of(&layer, "f");
        let mut buf = vec![0u8; 1 << 16];
        let (result, bytes) = peak(|| layer.read_at(id, 0, &mut buf, true));
        assert!(matches!(result, Err(Error::Corrupt(_))), "{fmt:?}: {result:?}");
        assert!(bytes < 4 << 20, "{fmt:?}: a verified read of a 10-byte member took {bytes} bytes");
        let mut out = Vec::new();
        let (result, bytes) = peak(|| layer.read_file_verified(id, &mut out));
        assert!(matches!(result, Err(Error::Corrupt(_))), "{fmt:?}: {result:?}");
        assert!(bytes < 4 << 20, "{fmt:?}: reading a 10-byte member whole took {bytes} bytes");
    }
    // A zstd:chunked footer that claims a 400 MiB TOC (under the 512 MiB limit) for a 20-byte frame.
    #[cfg(feature = "zstd")]
    {
        let mut blob = b"pad.....".to_vec();
        let frame = zstd_frame(br#"{"version":1,"entries":[]}"#);
        blob.extend_from_slice(&frame);
        blob.extend(zstd_footer(8, frame.len() as u64, 400 << 20));
        let (result, bytes) = peak(|| open(&blob).err());
        assert_eq!(result, Some(Error::Corrupt("zstd frame is corrupt or ends early")));
        assert!(bytes < 4 << 20, "a TOC claim of 400 MiB took {bytes} bytes");
        // And one that claims fewer bytes than the frame holds.
        let mut blob = b"pad.....".to_vec();
        blob.extend_from_slice(&frame);
        blob.extend(zstd_footer(8, frame.len() as u64, 10));
        assert_eq!(open(&blob).err(), Some(Error::Corrupt("zstd frame holds more than its declared length")));
    }
}

// ------------------------------------------------------------------------------------------------
// Names.

#[test]
fn hostile_names_stay_inside_the_root() {
    for fmt in formats() {
        let mut b = Builder::new(fmt);
        for name in [
            "../../etc/passwd",
            "/abs/olute",
            "a/../../../b",
            "./dot/./slash//double///",
            "c/d/..",
            "..",
            "/",
            "",
            ".",
            "./",
            "e/../e/f",
            "x/y/z/../../w",
        ] {
            b.dir(name);
        }
        b.symlink("s/up", "../../../../etc/shadow");
        b.symlink("s/abs", "/etc/shadow");
        b.symlink("s/empty", "");
        let layer = open_vec(b.finish()).unwrap();
        assert_eq!(
            tree(layer.index()),
            lines(&[
                ". dir",
                "abs dir",
                "abs/olute dir",
                "b dir",
                "c dir",
                "dot dir",
                "dot/slash dir",
                "dot/slash/double dir",
                "e dir",
                "e/f dir",
                "etc dir",
                "etc/passwd dir",
                "s dir",
                "s/abs symlink -> /etc/shadow",
                "s/empty symlink -> ",
                "s/up symlink -> ../../../../etc/shadow",
                "x dir",
                "x/w dir",
            ])
        );
        // Path resolution through hostile symlinks stays inside the layer.
        assert_eq!(layer.index().resolve_path(b"s/up"), None);
        assert_eq!(layer.index().resolve_path(b"../../s/../etc/passwd"), Some(id_of(&layer, "etc/passwd")));
    }
}

#[test]
fn nul_bytes_and_overlong_components_are_refused() {
    for fmt in formats() {
        for (entry, what) in [
            (r#"{"name":"a\u0000b","type":"dir"}"#.to_string(), "name contains a NUL byte"),
            (r#"{"name":"\u0000","type":"dir"}"#.to_string(), "name contains a NUL byte"),
            (r#"{"name":"h","type":"hardlink","linkName":"x\u0000"}"#.to_string(), "linkName contains a NUL byte"),
            (r#"{"name":"s","type":"symlink","linkName":"x\u0000"}"#.to_string(), "linkName contains a NUL byte"),
            (format!(r#"{{"name":"d/{}","type":"dir"}}"#, "n".repeat(65536)), "name component longer than 65535 bytes"),
            (r#"{"name":"a\x","type":"dir"}"#.to_string(), "invalid escape sequence"),
            (r#"{"name":"a\u12","type":"dir"}"#.to_string(), "invalid \\u escape"),
            ("{\"name\":\"a\u{1}b\",\"type\":\"dir\"}".to_string(), "control character in string"),
        ] {
            let err = open_entries(fmt, &entry).err();
            assert_eq!(err, Some(Error::BadEntry { entry: 0, what }), "{fmt:?} {}", &entry[..entry.len().min(80)]);
        }
        // 65535 is fine, as is a path of many long components.
        let entries = format!(r#"{{"name":"d/{}","type":"dir"}}"#, "n".repeat(65535));
        assert_eq!(open_entries(fmt, &entries).unwrap().index().len(), 3);
        let entries = format!(r#"{{"name":"{}","type":"dir"}}"#, vec!["m".repeat(60000); 20].join("/"));
        assert_eq!(open_entries(fmt, &entries).unwrap().index().len(), 21);
    }
}

#[test]
fn every_json_escape_in_names_and_xattr_keys() {
    for fmt in formats() {
        let entries = [
            r#"{"name":"esc/q\"b\\s\/t\b\f\n\r\t","type":"reg","xattrs":{"user.q\"b\\s\/t\b\f\n\r\t":"MQ=="}}"#,
            r#"{"name":"esc/\u0041\u00e9\u2028\uffff\u0026\u003c","type":"reg"}"#,
            r#"{"name":"esc/pair\ud83d\ude00","type":"reg","xattrs":{"user.\ud83d\ude00":"Mg==","user.\uD83D\uDE01":""}}"#,
            r#"{"name":"esc/lone\ud83dx","type":"reg","xattrs":{"user.\ude00":"Mw=="}}"#,
            r#"{"name":"esc/lowfirst\ude00\ud83d","type":"reg"}"#,
            r#"{"name":"esc/raw😀é","type":"reg"}"#,
            r#"{"name":"esc/highhigh\ud83d\ud83d\ude00","type":"reg"}"#,
            r#"{"\u006eame":"esc/escaped-key","\u0074ype":"reg"}"#,
        ]
        .join(",");
        let layer = open_entries(fmt, &entries).unwrap();
        let index = layer.index();
        // "\/" unescapes to a slash, which then separates components like any other.
        assert_eq!(
            tree(index),
            lines(&[
                ". dir",
                "esc dir",
                "esc/q\"b\\s dir",
                "esc/q\"b\\s/t\u{8}\u{c}\n\r\t reg 0",
                "esc/A\u{e9}\u{2028}\u{ffff}&< reg 0",
                "esc/pair\u{1f600} reg 0",
                "esc/lone\u{fffd}x reg 0",
                "esc/lowfirst\u{fffd}\u{fffd} reg 0",
                "esc/raw\u{1f600}\u{e9} reg 0",
                "esc/highhigh\u{fffd}\u{1f600} reg 0",
                "esc/escaped-key reg 0",
            ])
        );
        let xattrs = |path: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
            let id = index.lookup_path(path.as_bytes()).unwrap();
            index.xattrs(id).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
        };
        assert_eq!(
            xattrs("esc/q\"b\\s/t\u{8}\u{c}\n\r\t"),
            vec![(b"user.q\"b\\s/t\x08\x0c\n\r\t".to_vec(), b"1".to_vec())]
        );
        assert_eq!(
            xattrs("esc/pair\u{1f600}"),
            vec![("user.\u{1f600}".as_bytes().to_vec(), b"2".to_vec()), ("user.\u{1f601}".as_bytes().to_vec(), vec![])]
        );
        assert_eq!(xattrs("esc/lone\u{fffd}x"), vec![("user.\u{fffd}".as_bytes().to_vec(), b"3".to_vec())]);
        // Bad xattr values and keys.
        for (entry, what) in [
            (r#"{"name":"f","type":"dir","xattrs":{"k":"not base64!"}}"#, "xattr value is not base64"),
            (r#"{"name":"f","type":"dir","xattrs":{"k\q":"MQ=="}}"#, "invalid escape sequence"),
            (r#"{"name":"f","type":"dir","xattrs":{"user.a\u0000user.b":"MQ=="}}"#, "xattr name contains a NUL byte"),
        ] {
            assert_eq!(open_entries(fmt, entry).err(), Some(Error::BadEntry { entry: 0, what }), "{entry}");
        }
        let err = open_entries(fmt, r#"{"name":"f","type":"dir","xattrs":{"k":5}}"#).err();
        assert!(matches!(err, Some(Error::BadJson { entry: 0, .. })), "{err:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// Contradictory trees.

#[test]
fn file_and_directory_with_the_same_name() {
    for fmt in formats() {
        let d = digest(b"0123456789");
        let reg = |name: &str| format!(r#"{{"name":"{name}","type":"reg","size":10,"offset":0,"digest":"{d}"}}"#);
        let dir = |name: &str| format!(r#"{{"name":"{name}","type":"dir"}}"#);
        let sym = |name: &str| format!(r#"{{"name":"{name}","type":"symlink","linkName":"x"}}"#);
        for (entries, want) in [
            // A file used as a parent becomes a directory; its own entry is overridden.
            (vec![reg("a"), reg("a/b")], vec![". dir", "a dir", "a/b reg 10"]),
            (vec![reg("a/b"), reg("a")], vec![". dir", "a dir", "a/b reg 10"]),
            (vec![sym("a"), reg("a/b")], vec![". dir", "a dir", "a/b reg 10"]),
            // A later entry of the same name wins, whatever its type.
            (vec![dir("a"), reg("a")], vec![". dir", "a reg 10"]),
            (vec![reg("a"), dir("a")], vec![". dir", "a dir"]),
            (vec![reg("a"), sym("a/")], vec![". dir", "a symlink -> x"]),
            (vec![reg("a"), reg("./a"), reg("/a")], vec![". dir", "a reg 10"]),
            // ... unless it has children: then the latest directory entry of that name is kept.
            (vec![dir("a"), reg("a/b"), reg("a")], vec![". dir", "a dir", "a/b reg 10"]),
            // The root is always a directory.
            (vec![reg("."), reg(""), sym("/")], vec![". dir"]),
            (vec![reg("/"), dir("./"), reg("f")], vec![". dir", "f reg 10"]),
            // Names that clean to the same path under a file.
            (vec![reg("x"), reg("x/../x/y"), reg("x/./z")], vec![". dir", "x dir", "x/y reg 10", "x/z reg 10"]),
        ] {
            let layer = open_entries(fmt, &entries.join(",")).unwrap();
            assert_eq!(tree(layer.index()), lines(&want), "{fmt:?} {entries:?}");
            assert_eq!(read_everything(&layer), 0);
        }
        // A directory's mode survives when a file of the same name came first.
        let entries = [reg("a"), r#"{"name":"a","type":"dir","mode":448}"#.to_string(), reg("a/b"), reg("a")];
        let layer = open_entries(fmt, &entries.join(",")).unwrap();
        assert_eq!(layer.index().node(id_of(&layer, "a")).unwrap().mode(), 0o700);
    }
}

#[test]
fn missing_parents_are_synthesised_once_whatever_the_byte_order() {
    // Bytes below '/' ('!', '-', '.', ' ') sort "a/b!" between "a/b" and "a/b/c": the parent
    // synthesis must still find every ancestor exactly once.
    for fmt in formats() {
        let names = ["a/b!/x", "a/b/c", "a/b-/y", "a/b/d/e", "a/b.", "a/b/d/f", "a/b /z", "a!/q", "a/b/d/e/g"];
        let entries: Vec<String> = names.iter().map(|n| format!(r#"{{"name":"{n}","type":"dir"}}"#)).collect();
        let layer = open_entries(fmt, &entries.join(",")).unwrap();
        assert_eq!(
            tree(layer.index()),
            lines(&[
                ". dir",
                "a dir",
                "a!/q dir",
                "a! dir",
                "a/b dir",
                "a/b!/x dir",
                "a/b! dir",
                "a/b /z dir",
                "a/b  dir",
                "a/b-/y dir",
                "a/b- dir",
                "a/b. dir",
                "a/b/c dir",
                "a/b/d dir",
                "a/b/d/e dir",
                "a/b/d/e/g dir",
                "a/b/d/f dir",
            ])
        );
    }
}

#[test]
fn hardlink_faults() {
    for fmt in formats() {
        let d = digest(b"0123456789");
        let reg = |name: &str| format!(r#"{{"name":"{name}","type":"reg","size":10,"offset":0,"digest":"{d}"}}"#);
        let hl = |name: &str, target: &str| format!(r#"{{"name":"{name}","type":"hardlink","linkName":"{target}"}}"#);
        let dir = |name: &str| format!(r#"{{"name":"{name}","type":"dir"}}"#);
        for (entries, want) in [
            (vec![hl("a", "b"), hl("b", "a")], Error::BadHardlink { entry: 0, what: "hardlinks form a cycle" }),
            (vec![hl("a", "a")], Error::BadHardlink { entry: 0, what: "hardlinks form a cycle" }),
            (vec![hl("a", "./a/../a")], Error::BadHardlink { entry: 0, what: "hardlinks form a cycle" }),
            (
                vec![reg("f"), hl("a", "b"), hl("b", "c"), hl("c", "a")],
                Error::BadHardlink { entry: 1, what: "hardlinks form a cycle" },
            ),
            (vec![hl("a", "missing")], Error::BadHardlink { entry: 0, what: "target does not exist" }),
            (vec![hl("a", "")], Error::BadHardlink { entry: 0, what: "target is a directory" }),
            (vec![hl("a", "/")], Error::BadHardlink { entry: 0, what: "target is a directory" }),
            (vec![hl("a", "../..")], Error::BadHardlink { entry: 0, what: "target is a directory" }),
            (vec![dir("d"), hl("a", "d")], Error::BadHardlink { entry: 1, what: "target is a directory" }),
            // A file that became a directory because something lives under it.
            (vec![reg("f"), reg("f/g"), hl("a", "f")], Error::BadHardlink { entry: 2, what: "target is a directory" }),
            (vec![hl("a", "b"), hl("b", "c")], Error::BadHardlink { entry: 1, what: "target does not exist" }),
            // Landmarks leave the tree, so links to them dangle.
            (
                vec![reg(".prefetch.landmark"), hl("a", ".prefetch.landmark")],
                Error::BadHardlink { entry: 1, what: "target does not exist" },
            ),
        ] {
            let err = open_entries(fmt, &entries.join(",")).err();
            // Which link of a cycle is reported depends on the walk; the variant and message do not.
            match (&err, &want) {
                (Some(Error::BadHardlink { what, .. }), Error::BadHardlink { what: w, .. })
                    if *w == "hardlinks form a cycle" && what == w => {}
                _ => assert_eq!(err.as_ref(), Some(&want), "{fmt:?} {entries:?}"),
            }
        }
        // Chains resolve to the final target; link counts add up.
        let entries = [
            reg("f"),
            hl("a", "b"),
            hl("b", "c"),
            hl("c", "f"),
            hl("d", "/f"),
            r#"{"name":"s","type":"symlink","linkName":"f"}"#.to_string(),
            hl("t", "s"),
        ];
        let layer = open_entries(fmt, &entries.join(",")).unwrap();
        let index = layer.index();
        assert_eq!(
            tree(index),
            lines(&[
                ". dir",
                "a hardlink => f",
                "b hardlink => f",
                "c hardlink => f",
                "d hardlink => f",
                "f reg 10",
                "s symlink -> f",
                "t hardlink => s"
            ])
        );
        assert_eq!(index.node(id_of(&layer, "f")).unwrap().nlink(), 5);
        assert_eq!(index.node(id_of(&layer, "s")).unwrap().nlink(), 2);
        assert_eq!(read_whole(&layer, "a").unwrap(), b"0123456789");
        // A link to a name that a later entry replaces follows the replacement.
        let entries = [reg("f"), hl("h", "f"), r#"{"name":"f","type":"symlink","linkName":"elsewhere"}"#.to_string()];
        let layer = open_entries(fmt, &entries.join(",")).unwrap();
        assert_eq!(tree(layer.index()), lines(&[". dir", "f symlink -> elsewhere", "h hardlink => f"]));
    }
}

#[test]
fn long_hardlink_chains_and_cycles_are_fast() {
    // The Go reference resolves links recursively and overflows its stack on long chains.
    let d = digest(b"0123456789");
    for n in [1_000usize, 20_000] {
        // l0 -> l1 -> ... -> l(n-1) -> f
        let mut entries = vec![format!(r#"{{"name":"f","type":"reg","size":10,"offset":0,"digest":"{d}"}}"#)];
        for i in 0..n {
            let target = if i + 1 == n { "f".to_string() } else { format!("l{}", i + 1) };
            entries.push(format!(r#"{{"name":"l{i}","type":"hardlink","linkName":"{target}"}}"#));
        }
        let layer = open_entries(Fmt::Gzip, &entries.join(",")).unwrap();
        assert_eq!(layer.index().node(id_of(&layer, "f")).unwrap().nlink(), n as u32 + 1);
        assert_eq!(layer.index().resolve(id_of(&layer, "l0")), id_of(&layer, "f"));
        // The same chain closed into a cycle.
        entries[n] = format!(r#"{{"name":"l{}","type":"hardlink","linkName":"l0"}}"#, n - 1);
        let err = open_entries(Fmt::Gzip, &entries.join(",")).err();
        assert!(matches!(err, Some(Error::BadHardlink { what: "hardlinks form a cycle", .. })), "{err:?}");
    }
}

#[test]
fn deep_paths_and_many_missing_parents_are_fast() {
    // Entries whose parents are all missing must be synthesised without quadratic work.
    let deep = vec!["p"; 3000].join("/");
    let mut entries = Vec::new();
    for i in 0..300 {
        entries.push(format!(r#"{{"name":"{deep}/f{i}","type":"dir"}}"#));
    }
    let layer = open_entries(Fmt::Gzip, &entries.join(",")).unwrap();
    assert_eq!(layer.index().len(), 1 + 3000 + 300);
    check_tree(layer.index());
    // Distinct deep chains with no directory entries: 100 entries of 6 KB would need 300,000
    // synthesised directories whose paths total 900 MB. Refused, quickly and in bounded memory.
    let mut entries = Vec::new();
    for i in 0..100 {
        entries.push(format!(r#"{{"name":"r{i}/{deep}","type":"dir"}}"#));
    }
    let (err, bytes) = peak(|| open_entries(Fmt::Gzip, &entries.join(",")).err());
    assert!(matches!(err, Some(Error::TooLarge { what: "paths of synthesised parent directories", .. })), "{err:?}");
    assert!(bytes < 64 << 20, "peak {bytes} bytes");
    // The same depth with every directory listed (as writers do) is an ordinary tree.
    let mut entries = Vec::new();
    let mut path = String::from("q");
    for _ in 0..1500 {
        entries.push(format!(r#"{{"name":"{path}","type":"dir"}}"#));
        path.push_str("/q");
    }
    let layer = open_entries(Fmt::Gzip, &entries.join(",")).unwrap();
    assert_eq!(layer.index().len(), 1501);
}

#[test]
fn overlapping_and_misplaced_chunks() {
    let whole = pattern(30, 7);
    for fmt in formats() {
        let mut b = Builder::new(fmt);
        let offs: Vec<u64> = whole.chunks(10).map(|p| b.member(p)).collect();
        let dg: Vec<String> = whole.chunks(10).map(digest).collect();
        let head = format!(
            r#"{{"name":"f","type":"reg","size":30,"offset":{},"chunkSize":10,"chunkDigest":"{}"}}"#,
            offs[0], dg[0]
        );
        let chunk = |off: u64, at: i64, size: i64, d: &str| {
            format!(
                r#"{{"name":"f","type":"chunk","offset":{off},"chunkOffset":{at},"chunkSize":{size},"chunkDigest":"{d}"}}"#
            )
        };
        let good = [head.clone(), chunk(offs[1], 10, 10, &dg[1]), chunk(offs[2], 20, 10, &dg[2])];
        let toc = |e: &[String]| format!(r#"{{"version":1,"entries":[{}]}}"#, e.join(","));
        let layer = open_vec(b.finish_with_toc(toc(&good).as_bytes())).unwrap();
        assert_eq!(read_whole(&layer, "f").unwrap(), whole);
        let tile = Error::BadEntry { entry: 0, what: "chunks do not tile the file" };
        let cover = Error::BadEntry { entry: 0, what: "chunks do not cover the file" };
        for (entries, want) in [
            // Overlap: the second chunk starts inside the first.
            (vec![head.clone(), chunk(offs[1], 5, 10, &dg[1]), chunk(offs[2], 20, 10, &dg[2])], tile.clone()),
            // A gap.
            (vec![head.clone(), chunk(offs[1], 10, 5, &dg[1]), chunk(offs[2], 20, 10, &dg[2])], tile.clone()),
            // Out of order.
            (vec![head.clone(), chunk(offs[2], 20, 10, &dg[2]), chunk(offs[1], 10, 10, &dg[1])], tile.clone()),
            // Duplicated.
            (vec![head.clone(), chunk(offs[1], 10, 10, &dg[1]), chunk(offs[1], 10, 10, &dg[1])], tile.clone()),
            // Past the end of the file.
            (vec![head.clone(), chunk(offs[1], 10, 10, &dg[1]), chunk(offs[2], 20, 1000, &dg[2])], cover.clone()),
            // Missing the last chunk.
            (vec![head.clone(), chunk(offs[1], 10, 10, &dg[1])], cover.clone()),
            // Overflowing sizes.
            (
                vec![head.clone(), chunk(offs[1], 10, i64::MAX, &dg[1]), chunk(offs[2], i64::MAX, i64::MAX, &dg[2])],
                tile.clone(),
            ),
        ] {
            let err = open(&b.finish_with_toc(toc(&entries).as_bytes())).err();
            assert_eq!(err, Some(want), "{fmt:?} {entries:?}");
        }
        // A chunk whose offset lies past the data area (in the TOC or the footer).
        let past = [head.clone(), chunk(offs[1], 10, 10, &dg[1]), chunk(10_000_000, 20, 10, &dg[2])];
        let err = open(&b.finish_with_toc(toc(&past).as_bytes())).err();
        assert_eq!(err, Some(Error::BadEntry { entry: 0, what: "data offset outside the blob's data area" }));
        // chunkOffset past the end with the size omitted.
        let bad = [head.clone(), r#"{"name":"f","type":"chunk","offset":0,"chunkOffset":31}"#.to_string()];
        let err = open(&b.finish_with_toc(toc(&bad).as_bytes())).err();
        assert_eq!(err, Some(Error::BadEntry { entry: 1, what: "chunkOffset past the end of the file" }));
        // Chunks with no regular file before them are ignored, as in the reference.
        let stray = [r#"{"name":"d","type":"dir"}"#.to_string(), chunk(offs[1], 10, 10, &dg[1])];
        let layer = open_vec(b.finish_with_toc(toc(&stray).as_bytes())).unwrap();
        assert_eq!(tree(layer.index()), lines(&[". dir", "d dir"]));
        // Two files sharing one member's bytes (overlapping compressed spans) both read.
        let shared = [
            format!(r#"{{"name":"a","type":"reg","size":10,"offset":{},"chunkDigest":"{}"}}"#, offs[1], dg[1]),
            format!(r#"{{"name":"b","type":"reg","size":10,"offset":{},"chunkDigest":"{}"}}"#, offs[1], dg[1]),
        ];
        let layer = open_vec(b.finish_with_toc(toc(&shared).as_bytes())).unwrap();
        assert_eq!(read_whole(&layer, "a").unwrap(), &whole[10..20]);
        assert_eq!(read_whole(&layer, "b").unwrap(), &whole[10..20]);
    }
}

// ------------------------------------------------------------------------------------------------
// Chunk faults: more data than claimed, less, corrupt, failing the digest.

#[test]
fn chunks_that_inflate_to_more_than_they_claim() {
    for fmt in formats() {
        let mut b = Builder::new(fmt);
        // 8 MiB of zeros behind a chunk that claims 4 bytes.
        let off = b.member(&vec![0u8; 8 << 20]);
        let entries = [
            format!(r#"{{"name":"ok","type":"reg","size":4,"offset":{off},"chunkDigest":"{}"}}"#, digest(&[0; 4])),
            format!(r#"{{"name":"bad","type":"reg","size":4,"offset":{off},"chunkDigest":"{}"}}"#, digest(b"abcd")),
        ];
        let blob = b.finish_with_toc(format!(r#"{{"version":1,"entries":[{}]}}"#, entries.join(",")).as_bytes());
        let layer = open(&blob).unwrap();
        let (data, bytes) = peak(|| read_whole(&layer, "ok"));
        assert_eq!(data.unwrap(), [0; 4]);
        assert!(bytes < 1 << 20, "{fmt:?}: a 4-byte chunk took {bytes} bytes");
        let (result, bytes) = peak(|| read(&layer, id_of(&layer, "bad"), 0, 4));
        assert_eq!(result, Err(Error::ChunkDigestMismatch { chunk_offset: 0 }));
        assert!(bytes < 1 << 20, "{fmt:?}: a 4-byte chunk took {bytes} bytes");
    }
}

#[test]
fn chunks_that_hold_less_than_they_claim() {
    for fmt in formats() {
        let mut b = Builder::new(fmt);
        let off = b.member(b"short");
        let entries = format!(r#"{{"name":"f","type":"reg","size":100,"offset":{off}}}"#);
        let blob = b.finish_with_toc(format!(r#"{{"version":1,"entries":[{entries}]}}"#).as_bytes());
        let layer = open(&blob).unwrap();
        let id = id_of(&layer, "f");
        // The first five bytes are there; anything past them is an error.
        let mut buf = [0u8; 5];
        assert_eq!(layer.read_at(id, 0, &mut buf, false), Ok(5));
        assert_eq!(&buf, b"short");
        let err = read(&layer, id, 0, 100).err();
        let want = match fmt {
            Fmt::Gzip => Error::Corrupt("gzip member holds fewer bytes than the TOC says"),
            #[cfg(feature = "zstd")]
            Fmt::Zstd => Error::Corrupt("zstd frame is corrupt or ends early"),
        };
        assert_eq!(err, Some(want));
    }
}

/// A 4-chunk file with one bad chunk: only the reads touching it fail.
fn check_one_bad_chunk(fmt: Fmt, bad: usize, damage: impl Fn(&[u8]) -> Vec<u8>, want: Error) {
    let data = pattern(4000, 3);
    let other = pattern(1500, 9);
    let mut b = Builder::new(fmt);
    let mut offsets = Vec::new();
    let mut entries = Vec::new();
    for (i, piece) in data.chunks(1000).enumerate() {
        let member = compress(fmt, piece);
        let off = if i == bad { b.raw(&damage(&member)) } else { b.raw(&member) };
        offsets.push(off);
        entries.push(if i == 0 {
            format!(
                r#"{{"name":"f","type":"reg","size":4000,"offset":{off},"chunkSize":1000,"digest":"{}","chunkDigest":"{}"}}"#,
                digest(&data),
                digest(piece)
            )
        } else {
            format!(
                r#"{{"name":"f","type":"chunk","offset":{off},"chunkOffset":{},"chunkSize":1000,"chunkDigest":"{}"}}"#,
                i * 1000,
                digest(piece)
            )
        });
    }
    b.entries = entries;
    b.file("g", &other, 1000);
    let layer = open_vec(b.finish()).unwrap();
    let f = id_of(&layer, "f");
    let g = id_of(&layer, "g");
    let lo = bad as u64 * 1000;
    for (offset, len) in [(0u64, 4000usize), (lo, 1), (lo + 999, 1), (lo.saturating_sub(10), 20), (lo + 990, 20)] {
        if offset + len as u64 > 4000 || (offset + len as u64) <= lo || offset >= lo + 1000 {
            continue;
        }
        assert_eq!(read(&layer, f, offset, len).err(), Some(want.clone()), "{fmt:?} read {offset}+{len}");
    }
    for i in (0..4).filter(|&i| i != bad) {
        let at = i as u64 * 1000;
        assert_eq!(read(&layer, f, at, 1000).unwrap(), &data[at as usize..at as usize + 1000]);
        assert_eq!(read(&layer, f, at + 10, 500).unwrap(), &data[at as usize + 10..at as usize + 510]);
    }
    assert_eq!(read_whole(&layer, "f").err(), Some(want));
    assert_eq!(read_whole(&layer, "g").unwrap(), other);
    assert_eq!(read(&layer, g, 999, 2).unwrap(), &other[999..1001]);
}

#[test]
fn a_bad_chunk_fails_only_the_reads_that_touch_it() {
    for fmt in formats() {
        for bad in 0..4 {
            // Valid compression, wrong content: the digest catches it.
            let other = pattern(1000, 200);
            check_one_bad_chunk(
                fmt,
                bad,
                |_| compress(fmt, &other),
                Error::ChunkDigestMismatch { chunk_offset: bad as u64 * 1000 },
            );
        }
        // Broken framing.
        let (magic, corrupt) = match fmt {
            Fmt::Gzip => (Error::BadGzip("bad magic"), Error::Corrupt("invalid deflate data")),
            #[cfg(feature = "zstd")]
            Fmt::Zstd => {
                (Error::Corrupt("invalid zstd frame header"), Error::Corrupt("zstd frame is corrupt or ends early"))
            }
        };
        check_one_bad_chunk(fmt, 2, |m| [&[0u8; 4][..], &m[4..]].concat(), magic);
        let header_len = if fmt == Fmt::Gzip { 10 } else { 6 };
        check_one_bad_chunk(
            fmt,
            1,
            |m| {
                let mut m = m.to_vec();
                m[header_len..].fill(0xff);
                m
            },
            corrupt,
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Mutated fixtures.

/// For each regular file: its id, and the compressed spans of its chunks.
fn file_spans<R: ReadAt>(layer: &Layer<R>) -> Vec<(NodeId, Vec<(u64, u64)>)> {
    let index = layer.index();
    (0..index.len() as NodeId)
        .filter(|&id| index.node(id).unwrap().kind() == Kind::Reg)
        .map(|id| (id, index.chunks(id).iter().map(|c| (c.offset, c.compressed_end)).collect()))
        .collect()
}

#[test]
fn flipped_bytes_in_fixtures() {
    for name in fixture_names() {
        let blob = fixture(name);
        let shas = fixture_shas(name);
        let layer = open(&blob).unwrap();
        let spans = file_spans(&layer);
        let paths: Vec<String> = spans.iter().map(|(id, _)| common::escape(&layer.index().path(*id))).collect();
        let toc_start = layer.footer().toc_offset as usize;
        let mut rng = Rng(0x1234_5678 ^ blob.len() as u64);
        // Every byte of the footer, every fifth byte of the TOC member (the first ones all), and
        // 100 random bytes of payload.
        let footer_start = blob.len() - layer.footer().footer_len as usize;
        let mut positions: Vec<usize> = (toc_start.saturating_sub(8)..footer_start)
            .filter(|&at| at < toc_start + 64 || at % 5 == blob.len() % 5)
            .collect();
        positions.extend(footer_start..blob.len());
        positions.extend((0..100).map(|_| rng.below(toc_start)));
        // With the TOC digest known (as the layer annotation gives it), a flip in the TOC is
        // always caught: gzip members have a CRC, but zstd frames need not carry a checksum, and
        // a flipped zstd literal decodes to different JSON.
        let want = std::fs::read_to_string(common::testdata().join(format!("fixtures/{name}.toc-digest"))).unwrap();
        let options = OpenOptions { expected_toc_digest: Digest::parse(want.trim()), ..OpenOptions::default() };
        for at in positions {
            let mut bad = blob.clone();
            bad[at] ^= 1 << rng.below(8);
            let _ = open(&bad).map(|layer| check_tree(layer.index()));
            let layer = match open_with(&bad, &options) {
                Ok(layer) => layer,
                Err(e) => {
                    assert!(at >= toc_start.saturating_sub(8), "{name}: flip at {at} in payload broke the TOC: {e:?}");
                    continue;
                }
            };
            // The TOC opened: either the flip missed it, or it lies in a payload member.
            let mut data = Vec::new();
            for ((id, chunk_spans), path) in spans.iter().zip(&paths) {
                let touched = chunk_spans.iter().any(|&(s, e)| (s..e).contains(&(at as u64)));
                let node_ok = layer.index().node(*id).is_some_and(|n| n.kind() == Kind::Reg);
                if !node_ok {
                    continue;
                }
                match within("read", SECOND, || layer.read_file_verified(*id, &mut data)) {
                    Ok(()) => {
                        // Verified reads never return wrong bytes (legacy stargz multi-chunk
                        // files have only a whole-file digest, which read_file_verified checks).
                        assert_eq!(Digest::of(&data).to_string()[7..], shas[path], "{name}: flip at {at}, {path}");
                    }
                    Err(e) => assert!(touched, "{name}: flip at {at} broke {path}, which it does not touch: {e:?}"),
                }
            }
        }
    }
}

#[test]
fn random_mutations_of_fixtures_and_built_blobs() {
    let mut blobs: Vec<(String, Vec<u8>)> = fixture_names().into_iter().map(|n| (n.to_string(), fixture(n))).collect();
    for fmt in formats() {
        blobs.push((format!("sample {fmt:?}"), sample(fmt).finish()));
    }
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut opened = 0usize;
    let rounds = 2500;
    for round in 0..rounds {
        let (name, original) = &blobs[round % blobs.len()];
        let mut blob = original.clone();
        let toc = read_footer(&original[..]).unwrap().toc_offset as usize;
        for _ in 0..1 + rng.below(3) {
            // Aim most mutations at the TOC member and footer, where parsing happens.
            let toc = toc.min(blob.len() - 1);
            let at = if rng.below(4) == 0 { rng.below(blob.len()) } else { toc + rng.below(blob.len() - toc) };
            let at = at.min(blob.len().saturating_sub(1));
            match rng.below(6) {
                0 => blob[at] ^= 1 << rng.below(8),
                1 => blob[at] = rng.next() as u8,
                2 => {
                    let end = (at + 1 + rng.below(64)).min(blob.len());
                    for b in &mut blob[at..end] {
                        *b = rng.next() as u8;
                    }
                }
                3 => {
                    let end = (at + 1 + rng.below(64)).min(blob.len());
                    blob.drain(at..end);
                }
                4 => {
                    let bytes: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                    blob.splice(at..at, bytes);
                }
                _ => blob.truncate(at),
            }
            if blob.is_empty() {
                break;
            }
        }
        within(&format!("{name} round {round}"), 2 * SECOND, || {
            if let Ok(layer) = open(&blob) {
                opened += 1;
                check_tree(layer.index());
                read_everything(&layer);
            }
        });
    }
    eprintln!("{opened} of {rounds} mutated blobs still opened");
}

#[test]
fn random_mutations_of_toc_json() {
    // Mutate the JSON before compression, so the parser and index builder see the damage.
    for fmt in formats() {
        let b = sample(fmt);
        let mut json = b.toc_json();
        // Add every kind of entry so mutations can turn one into another.
        let extra = br#",{"name":"dev/c","type":"char","devMajor":1,"devMinor":3,"xattrs":{"user.a":"YQ=="}},{"name":"dev/f","type":"fifo","mode":420,"uid":5,"gid":6,"modtime":"2020-01-02T03:04:05Z"}]}"#;
        json.truncate(json.len() - 2);
        json.extend_from_slice(extra);
        assert!(open(&b.finish_with_toc(&json)).is_ok());
        let alphabet = b"{}[]\":,\\0123456789-.eE/ntruefalsnul \x00\xff";
        let mut rng = Rng(0x0bad_5eed ^ fmt as u64);
        let mut opened = 0;
        for _ in 0..1500 {
            let mut j = json.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(j.len());
                match rng.below(4) {
                    0 => j[at] = alphabet[rng.below(alphabet.len())],
                    1 => {
                        j.remove(at);
                    }
                    2 => j.insert(at, alphabet[rng.below(alphabet.len())]),
                    _ => {
                        let end = (at + rng.below(40)).min(j.len());
                        let copy = j[at..end].to_vec();
                        let to = rng.below(j.len());
                        j.splice(to..to, copy);
                    }
                }
            }
            if let Ok(layer) = open(&b.finish_with_toc(&j)) {
                opened += 1;
                check_tree(layer.index());
                read_everything(&layer);
            }
        }
        eprintln!("{fmt:?}: {opened} of 1500 mutated TOCs still opened");
    }
}

/// Large TOCs are parsed in two halves on two threads, cut at a comma guessed near the middle
/// (`json::Split`). Damage around the middle must give exactly what one pass over the text
/// gives: the same index, or the same error.
#[test]
fn toc_parsed_in_halves_equals_one_pass_under_damage() {
    let mut b = Builder::new(Fmt::Gzip);
    b.dir("top");
    for i in 0..1800 {
        let data = pattern(30 + i % 50, i as u8);
        b.file(&format!("top/d{}/f{i},{{\"x\":[1,{{}}]}}", i % 40), &data, 16);
        if i % 500 == 0 {
            b.hardlink(&format!("top/link{i}"), &format!("top/d{}/f{},{{\"x\":[1,{{}}]}}", (i + 7) % 40, i + 7));
        }
    }
    let json = b.toc_json();
    assert!(json.len() > 1 << 20, "the TOC ({} bytes) must be large enough to be split", json.len());
    let one_pass = |json: &[u8], blob: &[u8]| {
        let data_end = read_footer(&blob).map(|f| f.toc_offset).unwrap_or(0);
        Index::from_json(json, data_end, Limits::default())
    };
    // The undamaged TOC does take the two-halves path.
    struct Count(usize);
    impl crfs_core::fuzz_entry::EntrySink for Count {
        fn entry(&mut self, _: &crfs_core::fuzz_entry::RawEntry<'_>) -> Result<(), Error> {
            self.0 += 1;
            Ok(())
        }
    }
    let split = crfs_core::fuzz_entry::Split::find(&json).unwrap();
    let mut head = Count(0);
    assert_eq!(crfs_core::fuzz_entry::parse_toc_head(&json[..split.comma], &mut head), Some(1));
    assert!(head.0 > 1000, "{} entries in the first half", head.0);
    let whole = b.finish_with_toc(&json);
    let layer = open(&whole).unwrap();
    assert_eq!(Ok(layer.index()), one_pass(&json, &whole).as_ref());
    check_tree(layer.index());

    let alphabet = b"{}[]\":,\\0123456789 \n";
    let mut rng = Rng(0x5711_7ea5);
    let (mut same_ok, mut same_err) = (0, 0);
    for _ in 0..16 {
        let mut j = json.clone();
        let at = j.len() / 2 - 1000 + rng.below(2000);
        match rng.below(3) {
            0 => j[at] = alphabet[rng.below(alphabet.len())],
            1 => {
                j.remove(at);
            }
            _ => j.insert(at, alphabet[rng.below(alphabet.len())]),
        }
        let blob = b.finish_with_toc(&j);
        let through_layer = within("open", 10 * SECOND, || open(&blob)).map(|l| l.index().clone());
        let expected = one_pass(&j, &blob);
        assert_eq!(through_layer, expected, "damage at {at}");
        if expected.is_ok() { same_ok += 1 } else { same_err += 1 }
    }
    eprintln!("16 damaged TOCs of {} bytes: {same_ok} opened, {same_err} refused, all as one pass", json.len());
}

// ------------------------------------------------------------------------------------------------
// Scale.

#[test]
fn a_million_entries() {
    // 1000 directories of 1000 files each, every file with a size, an offset and a digest.
    let d = digest(b"0123456789");
    let mut json = String::with_capacity(110 << 20);
    json.push_str(r#"{"version":1,"entries":["#);
    for dir in 0..1000 {
        if dir > 0 {
            json.push(',');
        }
        json.push_str(&format!(r#"{{"name":"dir{dir:03}/","type":"dir","mode":493}}"#));
        for file in 0..999 {
            json.push_str(&format!(
                r#",{{"name":"dir{dir:03}/file{file:03}","type":"reg","size":10,"offset":0,"mode":420,"digest":"{d}"}}"#
            ));
        }
    }
    json.push_str("]}");
    let limit = if cfg!(debug_assertions) { 60 * SECOND } else { 5 * SECOND };
    let ((index, bytes), took, wall) = timed(|| peak(|| Index::from_json(json.as_bytes(), 1 << 20, Limits::default())));
    let index = index.unwrap();
    assert_eq!(index.len(), 1_000_001);
    assert_eq!(index.stats().toc_entries, 1_000_000);
    let heap = index.heap_bytes();
    let names: usize = (0..index.len() as NodeId).map(|id| index.name(id).len()).sum();
    eprintln!(
        "a million entries ({} MB of JSON): {took:?} CPU, {wall:?} wall, index heap {heap} bytes = {:.1} bytes/entry ({:.1} + names), \
         peak while building {bytes} bytes = {:.1} bytes/entry",
        json.len() >> 20,
        heap as f64 / 1e6,
        (heap - names) as f64 / 1e6,
        bytes as f64 / 1e6,
    );
    assert!(took < limit, "took {took:?}");
    assert!(heap < 1_000_000 * 200, "index heap {heap} bytes");
    assert!(bytes < 1_000_000 * 600, "peak {bytes} bytes while building");
    let f = index.lookup_path(b"dir999/file998").unwrap();
    assert_eq!(index.node(f).unwrap().size(), 10);
    // More entries than the limit: refused while parsing, before the tree is built.
    let (err, _) = peak(|| Index::from_json(json.as_bytes(), 1 << 20, Limits { max_entries: 1000 }).err());
    assert_eq!(err, Some(Error::TooLarge { what: "TOC entry count", size: 1001, limit: 1000 }));
}

#[test]
fn chunks_packed_into_one_member_are_decoded_once_per_read() {
    // 4096 chunks of 64 bytes, all in one member (innerOffset), the way writers with a minimum
    // chunk size pack small payloads. Decoding each from the member's start would inflate
    // 512 MiB to read the file once; a hostile TOC could make that minutes per read.
    let n = 4096usize;
    let data = pattern(n * 64, 5);
    for fmt in formats() {
        let mut b = Builder::new(fmt);
        let off = b.member(&data);
        let mut entries = Vec::new();
        for i in 0..n {
            let piece = &data[i * 64..i * 64 + 64];
            entries.push(if i == 0 {
                format!(
                    r#"{{"name":"f","type":"reg","size":{},"offset":{off},"chunkSize":64,"chunkDigest":"{}"}}"#,
                    n * 64,
                    digest(piece)
                )
            } else {
                format!(
                    r#"{{"name":"f","type":"chunk","offset":{off},"innerOffset":{},"chunkOffset":{},"chunkSize":64,"chunkDigest":"{}"}}"#,
                    i * 64,
                    i * 64,
                    digest(piece)
                )
            });
        }
        // A second file whose last chunk claims more than the shared member holds.
        let off2 = b.member(&data[..256]);
        for i in 0..4 {
            let (size, inner) = if i == 3 { (1000, 192) } else { (64, i * 64) };
            let piece = &data[i * 64..i * 64 + 64];
            entries.push(if i == 0 {
                format!(
                    r#"{{"name":"g","type":"reg","size":1192,"offset":{off2},"chunkSize":64,"chunkDigest":"{}"}}"#,
                    digest(piece)
                )
            } else {
                format!(
                    r#"{{"name":"g","type":"chunk","offset":{off2},"innerOffset":{inner},"chunkOffset":{},"chunkSize":{size},"chunkDigest":"{}"}}"#,
                    i * 64,
                    digest(piece)
                )
            });
        }
        let blob = b.finish_with_toc(format!(r#"{{"version":1,"entries":[{}]}}"#, entries.join(",")).as_bytes());
        let layer = open_vec(blob).unwrap();
        let f = id_of(&layer, "f");
        assert_eq!(read(&layer, f, 0, 128 << 10).unwrap(), &data[..128 << 10]);
        assert_eq!(read(&layer, f, 1000, 100_000).unwrap(), &data[1000..101_000]);
        assert_eq!(read_whole(&layer, "f").unwrap(), data);
        let mut buf = vec![0u8; 128 << 10];
        let (n_read, bytes) = peak(|| layer.read_at(f, 64, &mut buf, false));
        assert_eq!(n_read, Ok(128 << 10));
        assert!(bytes < 2 << 20, "{fmt:?}: {bytes} bytes");
        // The bad chunk fails only the reads that touch it.
        let g = id_of(&layer, "g");
        assert_eq!(read(&layer, g, 0, 192).unwrap(), &data[..192]);
        assert_eq!(read(&layer, g, 10, 100).unwrap(), &data[10..110]);
        let want = match fmt {
            Fmt::Gzip => Error::Corrupt("gzip member holds fewer bytes than the TOC says"),
            #[cfg(feature = "zstd")]
            Fmt::Zstd => Error::Corrupt("zstd frame is corrupt or ends early"),
        };
        assert_eq!(read(&layer, g, 0, 1192).err(), Some(want.clone()));
        assert_eq!(read(&layer, g, 150, 50).err(), Some(want.clone()));
        assert_eq!(read_whole(&layer, "g").err(), Some(want));
    }
}

/// PAX records: (key, value).
type PaxRecords<'a> = &'a [(&'a [u8], &'a [u8])];

/// A tar entry carrying `records` in a PAX header, then an empty regular file `f`.
fn tar_with_pax(records: PaxRecords<'_>, typeflag: u8) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        // "<len> <key>=<value>\n", where <len> counts itself.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while format!("{len}").len() + rest != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len} ").as_bytes());
        body.extend_from_slice(key);
        body.push(b'=');
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    let mut tar = tar_header(b"PaxHeaders/f", body.len() as u64, b'x').to_vec();
    tar.extend_from_slice(&body);
    pad_block(&mut tar);
    tar.extend_from_slice(&tar_header(b"f", 0, typeflag));
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// Found by the `layer_read` fuzz target (fuzz/artifacts/layer_read/crash-9be355b1…): the
/// writer took a PAX `path` holding a NUL byte and wrote a TOC entry the reader then refused,
/// so its own blob did not open. Go's archive/tar refuses NUL in `path`, `linkpath`, `uname`,
/// `gname` values and in any key; so does the writer now, and any name or link target that
/// still holds one (GNU.sparse.name) is refused too.
#[test]
fn the_writer_refuses_nul_bytes_in_names() {
    use crfs_core::writer::{Error as WriteError, Options, convert_to_vec};
    let cases: [(PaxRecords<'_>, u8); 6] = [
        (&[(b"path", b"a\0b")], b'0'),
        (&[(b"linkpath", b"t\0u")], b'2'),
        (&[(b"uname", b"ro\0ot")], b'0'),
        (&[(b"gname", b"wh\0eel")], b'0'),
        (&[(b"SCHILY.xattr.user.a\0b", b"v")], b'0'),
        (
            &[
                (b"GNU.sparse.major", b"0"),
                (b"GNU.sparse.minor", b"1"),
                (b"GNU.sparse.name", b"s\0p"),
                (b"GNU.sparse.realsize", b"0"),
                (b"GNU.sparse.map", b""),
            ],
            b'0',
        ),
    ];
    for (records, typeflag) in cases {
        let tar = tar_with_pax(records, typeflag);
        let got = within("convert", SECOND, || convert_to_vec(tar.as_slice(), &Options::default()));
        assert!(matches!(got, Err(WriteError::BadHeader { .. })), "{records:?}: {got:?}");
    }
    // The same tar without the NUL converts, and the blob opens.
    let tar = tar_with_pax(&[(b"path", b"ab")], b'0');
    let (blob, _) = convert_to_vec(tar.as_slice(), &Options::default()).unwrap();
    let layer = open(&blob).unwrap();
    assert!(layer.index().lookup_path(b"ab").is_some());
}

/// The writer refuses a hardlink its own reader refuses, instead of writing a layer that does
/// not open (found by the `layer_read` fuzz target: a link to a name not in the tar,
/// `fuzz/artifacts/layer_read/crash-9d1fd663…`): a missing target, a directory (also when a
/// later entry of the same name replaced the file), a cycle. A chain of links to a file converts.
#[test]
fn the_writer_refuses_hardlinks_the_reader_refuses() {
    use crfs_core::writer::{Error as WriteError, Options, convert_to_vec};
    use crfs_testkit::{TarBuilder, TarEntry, TarEntry::*};
    let cases: [(&[(&str, TarEntry<'_>)], &str); 5] = [
        (&[("f", File(b"x")), ("l", Hardlink("missing"))], "not in the layer"),
        (&[("d/", Dir), ("l", Hardlink("./d"))], "a directory"),
        (&[("t", File(b"x")), ("l", Hardlink("t")), ("t/", Dir)], "a directory"),
        (&[("a", Hardlink("b")), ("b", Hardlink("c")), ("c", Hardlink("a"))], "a cycle"),
        (&[("a", Hardlink("a"))], "a cycle"),
    ];
    for (entries, why) in cases {
        let names: Vec<&str> = entries.iter().map(|(name, _)| *name).collect();
        let mut tar = TarBuilder::default();
        for (name, entry) in entries {
            tar.add(name, *entry, 0o644, 1);
        }
        let got = within("convert", SECOND, || convert_to_vec(tar.finish().as_slice(), &Options::default()));
        match got {
            Err(e @ WriteError::BadHardlink { .. }) => assert!(e.to_string().contains(why), "{names:?}: {e}"),
            other => panic!("{names:?}: {:?}", other.map(|(_, s)| s.toc_digest)),
        }
    }
    let tar = TarBuilder::default()
        .add("f", File(b"data"), 0o644, 1)
        .add("l1", Hardlink("f"), 0o644, 1)
        .add("l2", Hardlink("./l1"), 0o644, 1)
        .finish();
    let (blob, _) = convert_to_vec(tar.as_slice(), &Options::default()).unwrap();
    let layer = open(&blob).unwrap();
    let mut bytes = Vec::new();
    layer.read_file_verified(layer.index().lookup_path(b"l2").unwrap(), &mut bytes).unwrap();
    assert_eq!(bytes, b"data");
}

/// The writer and the reader share one hardlink resolver, one path cleaner and one rule for
/// what a directory is, so links the reader refuses are refused when written. Before they did,
/// the writer looked only at the target entry's own type and wrote layers that did not open:
/// a link to a file that another entry lives under (the reader makes it a directory), to a
/// directory only implied by deeper names, to the root.
#[test]
fn the_writer_and_the_reader_agree_on_hardlink_targets() {
    use crfs_core::writer::{Error as WriteError, Options, convert_to_vec};
    use crfs_testkit::{TarBuilder, TarEntry, TarEntry::*};
    let cases: [&[(&str, TarEntry<'_>)]; 4] = [
        &[("f", File(b"x")), ("f/g", File(b"y")), ("l", Hardlink("f"))],
        &[("a/b/c", File(b"x")), ("l", Hardlink("a/b"))],
        &[("f", File(b"x")), ("l", Hardlink("./"))],
        &[("f", File(b"x")), ("l", Hardlink("x/../f/"))],
    ];
    for (n, entries) in cases.iter().enumerate() {
        let mut tar = TarBuilder::default();
        for (name, entry) in *entries {
            tar.add(name, *entry, 0o644, 1);
        }
        let got = within("convert", SECOND, || convert_to_vec(tar.finish().as_slice(), &Options::default()));
        match (n, got) {
            // The last target cleans to "f", a file: the link is written and resolves.
            (3, Ok((blob, _))) => {
                let layer = open(&blob).unwrap();
                let index = layer.index();
                let (l, f) = (index.lookup_path(b"l").unwrap(), index.lookup_path(b"f").unwrap());
                assert_eq!(index.resolve(l), f);
            }
            (0..3, Err(e @ WriteError::BadHardlink { .. })) => {
                assert!(e.to_string().contains("a directory"), "{n}: {e}")
            }
            (_, other) => panic!("case {n}: {:?}", other.map(|(_, s)| s.toc_digest)),
        }
    }
}

/// `read_chunk_into` (the vfs's decode, into a buffer the caller allocates) gives what
/// `read_chunk` gives, byte for byte and error for error: a chunk with a member of its own, a
/// zeros chunk, chunks packed into one member, a corrupt chunk. A chunk whose compressed bytes
/// cannot expand to its claimed size is refused before the caller is asked for the buffer.
#[test]
fn read_chunk_into_matches_read_chunk_and_asks_only_for_what_data_can_back() {
    let data = pattern(300_000, 9);
    // 1.5 MiB that does not compress: its compressed span is more than a Scratch keeps.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..3 << 19)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for fmt in formats() {
        let mut b = Builder::new(fmt);
        let whole = b.member(&data);
        let noisy = b.member(&noise);
        let packed = b.member(&data[..192]);
        let tiny = b.member(b"x");
        let entries = [
            format!(
                r#"{{"name":"whole","type":"reg","size":{},"offset":{whole},"digest":"{}"}}"#,
                data.len(),
                digest(&data)
            ),
            r#"{"name":"zeros","type":"reg","size":4096,"offset":0,"chunkType":"zeros"}"#.to_string(),
            format!(
                r#"{{"name":"packed","type":"reg","size":192,"offset":{packed},"chunkSize":64,"chunkDigest":"{}"}}"#,
                digest(&data[..64])
            ),
            format!(
                r#"{{"name":"packed","type":"chunk","offset":{packed},"innerOffset":64,"chunkOffset":64,"chunkSize":128,"chunkDigest":"{}"}}"#,
                digest(&data[64..192])
            ),
            // Right bytes, wrong digest: EIO for this chunk, whichever call decodes it.
            format!(
                r#"{{"name":"corrupt","type":"reg","size":{},"offset":{whole},"digest":"{}"}}"#,
                data.len(),
                digest(b"no")
            ),
            format!(
                r#"{{"name":"noise","type":"reg","size":{},"offset":{noisy},"digest":"{}"}}"#,
                noise.len(),
                digest(&noise)
            ),
            // One byte of data claiming 16 MiB: no buffer is asked for.
            format!(r#"{{"name":"bomb","type":"reg","size":{},"offset":{tiny}}}"#, 16 << 20),
        ];
        let blob = b.finish_with_toc(format!(r#"{{"version":1,"entries":[{}]}}"#, entries.join(",")).as_bytes());
        let layer = open_vec(blob).unwrap();
        let mut scratch = crfs_core::Scratch::default();
        for name in ["whole", "zeros", "packed", "corrupt", "noise", "bomb"] {
            let f = id_of(&layer, name);
            for chunk in 0..layer.index().chunks(f).len() {
                let mut want = Vec::new();
                let want = layer.read_chunk(f, chunk, true, &mut want).map(|()| want);
                let mut asked = Vec::new();
                let got = layer.read_chunk_into(f, chunk, true, &mut scratch, |len| {
                    asked.push(len);
                    vec![0u8; len]
                });
                assert_eq!(got, want, "{fmt:?} {name} chunk {chunk}");
                let size = layer.index().chunks(f).get(chunk).unwrap().size as usize;
                match name {
                    "bomb" => assert!(asked.is_empty(), "{fmt:?}: asked for {asked:?}"),
                    // The compressed span first (from the member's offset to the TOC's), then the chunk.
                    "noise" => {
                        assert_eq!(asked.len(), 2, "{fmt:?}: {asked:?}");
                        assert!(
                            asked[0] > crfs_core::Scratch::KEEP_COMPRESSED && asked[1] == size,
                            "{fmt:?}: {asked:?}"
                        );
                    }
                    _ => assert_eq!(asked, [size], "{fmt:?} {name} chunk {chunk}"),
                }
            }
        }
        let f = id_of(&layer, "whole");
        assert_eq!(layer.read_chunk_into(f, 0, true, &mut scratch, |len| vec![0u8; len]).unwrap(), data);
        // A caller that hands back a buffer of another size gets an error, not a short chunk.
        assert!(layer.read_chunk_into(f, 0, true, &mut scratch, |len| vec![0u8; len - 1]).is_err());
    }
}
