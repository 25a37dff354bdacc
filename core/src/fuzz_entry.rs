//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus regression test
//! (`core/tests/fuzz_corpus.rs`), behind the `fuzzing` feature.
//!
//! Each entry takes arbitrary bytes and drives one part of the core with them. Errors from the
//! core are the expected answer to bad input and are ignored; what an entry reports as a
//! [`Finding`] is an input on which the core broke one of its own promises (a layer the writer
//! made that does not open or verify, two ways of reading a file that disagree, a decoder whose
//! prefix is not a prefix). A panic, a hang or a runaway allocation is caught by the fuzzer or
//! the test around the entry. The fuzz targets panic on a `Finding`; the test asserts there is
//! none.
//!
//! The limits are smaller than [`OpenOptions::default`]'s so that one input costs at most a few
//! tens of MiB and a fraction of a second: [`MAX_TOC`], [`MAX_CHUNK`], [`MAX_OUTPUT`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::footer::{MAX_FOOTER_LEN, parse_footer, read_footer};
use crate::index::{Kind, NodeId};
use crate::layer::{Layer, OpenOptions};
use crate::path::clean as clean_name;
use crate::read_at::ReadAt;
use crate::tar::TOC_NAME;
use crate::writer::compress::{estargz_footer, gzip_member, skippable_frame, zstd_footer};
use crate::writer::tarhdr::{HeaderSpec, pad_len, write_header};
use crate::writer::tarscan::{EntryKind, TarScanner};
use crate::writer::{self, MinizDeflate};
use crate::{gzip, toc};

/// Largest TOC an entry accepts, compressed or not.
pub const MAX_TOC: u64 = 16 << 20;
/// Largest chunk an entry lets a read decode.
pub const MAX_CHUNK: u64 = 4 << 20;
/// Largest output a decoder entry asks for, and largest file read whole.
pub const MAX_OUTPUT: usize = 4 << 20;
/// Most entries a TOC may have here.
pub const MAX_ENTRIES: usize = 1 << 16;

/// The TOC parser's streaming interface, for the tests that drive it directly.
pub use crate::json::{EntrySink, RawEntry, Split, parse_toc_head};

/// An input on which the core broke a promise of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding(pub &'static str);

/// What an entry returns.
pub type Outcome = Result<(), Finding>;

fn check(ok: bool, what: &'static str) -> Outcome {
    if ok { Ok(()) } else { Err(Finding(what)) }
}

fn options() -> OpenOptions {
    OpenOptions {
        max_toc_size: MAX_TOC,
        max_entries: MAX_ENTRIES,
        max_chunk_size: MAX_CHUNK,
        expected_toc_digest: None,
        // As crfs's commands open layers (the corpora were grown on this path).
        threads: true,
    }
}

/// Reads a little-endian number from the front of `data` (missing bytes are zero) and returns
/// it with the rest.
fn take_le(data: &[u8], n: usize) -> (u64, &[u8]) {
    let (head, rest) = data.split_at_checked(n.min(data.len())).unwrap_or((data, &[]));
    let mut v = 0u64;
    for (i, &b) in head.iter().enumerate() {
        v |= u64::from(b) << (8 * i);
    }
    (v, rest)
}

// ------------------------------------------------------------------------------------------------
// Footer.

/// Footer parsing: `read_footer` on the whole input as a blob, and `parse_footer` on its tail
/// with a blob size taken from its first 8 bytes. A footer accepted must point inside the blob.
pub fn footer(data: &[u8]) -> Outcome {
    if let Ok(f) = read_footer(data) {
        let end = f.toc_offset.checked_add(f.toc_len).and_then(|e| e.checked_add(f.footer_len));
        // zstd footers may lack their skippable-frame header (8 bytes), see footer.rs.
        let slack = if f.format.is_zstd() { 8 } else { 0 };
        check(end.is_some_and(|e| e <= data.len() as u64 + slack), "accepted footer points past the blob")?;
        check(f.toc_len > 0, "accepted footer has an empty TOC")?;
    }
    let (blob_size, rest) = take_le(data, 8);
    let tail = rest.get(rest.len().saturating_sub(MAX_FOOTER_LEN as usize)..).unwrap_or(rest);
    // parse_footer's contract: `tail` is the end of a blob of `blob_size` bytes.
    if blob_size >= tail.len() as u64
        && let Ok(f) = parse_footer(tail, blob_size)
    {
        check(f.toc_offset.checked_add(f.toc_len).is_some_and(|e| e <= blob_size), "TOC range past the blob")?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Layers.

/// Opens the input as a layer blob and, if it opens, reads every file.
pub fn layer_open(data: &[u8]) -> Outcome {
    match Layer::open_with(data, &options()) {
        Ok(layer) => read_every_file(&layer, false),
        Err(_) => Ok(()),
    }
}

/// Builds a blob around a TOC: `payload`, then the TOC (a gzip member holding a tar entry
/// `stargz.index.json`, or a zstd frame in a skippable frame) and the footer. The payload's
/// offsets in the blob are its own, so a TOC and payload cut from one real blob fit.
pub fn toc_blob(zstd: bool, payload: &[u8], json: &[u8]) -> Vec<u8> {
    let mut blob = payload.to_vec();
    if zstd {
        let mut frame = Vec::new();
        // Level 0: raw blocks. Without the `zstd` feature there is no compressor (and no
        // reader): the frame stays empty and the blob is refused.
        let options = writer::Options { format: crate::Format::ZstdChunked, level: 0, ..Default::default() };
        if let Ok(mut compressor) = writer::default_compressor(&options) {
            let _ = compressor.member(json, &mut frame);
        }
        skippable_frame(&frame, &mut blob);
        let toc_offset = payload.len() as u64 + 8;
        skippable_frame(&zstd_footer(toc_offset, frame.len() as u64, json.len() as u64), &mut blob);
    } else {
        let mut member = Vec::with_capacity(json.len() + 2048);
        write_header(
            &HeaderSpec { typeflag: b'0', name: TOC_NAME, size: json.len() as u64, ..HeaderSpec::default() },
            &mut member,
        );
        member.extend_from_slice(json);
        member.resize(member.len() + pad_len(json.len() as u64) as usize + 1024, 0);
        // Level 0 (stored blocks): the point is the JSON, not the deflate.
        let _ = gzip_member(&mut MinizDeflate::new(0), 0, &member, &mut blob);
        blob.extend_from_slice(&estargz_footer(payload.len() as u64));
    }
    blob
}

/// The structured-TOC input: byte 0 bit 0 picks zstd:chunked, bytes 1..5 are the payload's
/// length (u32 LE, clamped), then the payload, then the TOC JSON. Returns (zstd, payload, json).
pub fn split_toc_input(data: &[u8]) -> (bool, &[u8], &[u8]) {
    let zstd = data.first().is_some_and(|b| b & 1 == 1);
    let (len, rest) = take_le(data.get(1..).unwrap_or_default(), 4);
    let len = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
    let (payload, json) = rest.split_at_checked(len).unwrap_or((rest, &[]));
    (zstd, payload, json)
}

/// The structured-TOC input for a real blob (the inverse of [`toc_blob`]): its payload up to
/// the TOC and its TOC JSON. `None` if the blob does not open.
pub fn toc_input_of(blob: &[u8]) -> Option<Vec<u8>> {
    let f = read_footer(blob).ok()?;
    let t = toc::read_toc(blob, &f, MAX_TOC).ok()?;
    let payload_end = if f.format.is_zstd() { f.toc_offset.checked_sub(8)? } else { f.toc_offset };
    let payload = blob.get(..usize::try_from(payload_end).ok()?)?;
    let mut out = alloc::vec![u8::from(f.format.is_zstd())];
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(t.json());
    Some(out)
}

/// TOC parsing and index building on fuzzed JSON: the input ([`split_toc_input`]) is wrapped
/// into a valid blob ([`toc_blob`]), which must get past the footer and the TOC member to the
/// JSON; if it opens, every file is read.
pub fn toc_json(data: &[u8]) -> Outcome {
    let (zstd, payload, json) = split_toc_input(data);
    if zstd && cfg!(not(feature = "zstd")) {
        return Ok(());
    }
    let blob = toc_blob(zstd, payload, json);
    match Layer::open_with(blob.as_slice(), &options()) {
        Ok(layer) => {
            check(layer.toc_json_len() == json.len(), "TOC JSON length differs from what was wrapped")?;
            read_every_file(&layer, false)
        }
        // Only what the JSON says may fail: the wrapping itself is valid.
        Err(crate::Error::NoFooter | crate::Error::BadFooter(_) | crate::Error::TocOutOfRange { .. }) => {
            Err(Finding("a wrapped TOC's footer was refused"))
        }
        Err(_) => Ok(()),
    }
}

/// Reads every regular file of `layer`: whole and verified when small enough, and in pieces
/// through `read_at`. Pieces must agree with the whole; with `must_verify` (a layer the writer
/// just made) every file must verify.
fn read_every_file<R: ReadAt>(layer: &Layer<R>, must_verify: bool) -> Outcome {
    let index = layer.index();
    let mut whole = Vec::new();
    let mut piece = alloc::vec![0u8; 4096];
    for id in 0..index.len() {
        let id = id as NodeId;
        let Some(node) = index.node(index.resolve(id)) else { continue };
        if node.kind() != Kind::Reg {
            continue;
        }
        let size = node.size();
        let verified = size <= MAX_OUTPUT as u64 && layer.read_file_verified(id, &mut whole).is_ok();
        if must_verify {
            check(verified || size > MAX_OUTPUT as u64, "a file the writer made does not verify")?;
        }
        if verified {
            check(whole.len() as u64 == size, "verified file length differs from its size")?;
        }
        for offset in [0, size / 2, size.saturating_sub(100)] {
            let Ok(n) = layer.read_at(id, offset, &mut piece, false) else { continue };
            check(n as u64 == (size - offset.min(size)).min(piece.len() as u64), "read_at returned a short read")?;
            if verified {
                let at = offset as usize;
                let read = piece.get(..n);
                check(read.is_some() && whole.get(at..at + n) == read, "read_at and read_file_verified disagree")?;
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Decoders.

/// gzip member inflate: `inflate_member` with a limit, and `inflate_prefix` for a length taken
/// from the first 3 bytes. A whole member's prefixes must be its prefixes.
pub fn gzip(data: &[u8]) -> Outcome {
    let (want, member) = take_le(data, 3);
    let want = want as usize;
    let whole = gzip::inflate_member(member, MAX_OUTPUT);
    let mut prefix = Vec::new();
    let got = gzip::inflate_prefix(member, want, &mut prefix);
    if got.is_ok() {
        check(prefix.len() == want, "inflate_prefix returned the wrong length")?;
    }
    if let Ok(whole) = whole {
        let mut again = Vec::new();
        check(gzip::inflate_prefix(member, whole.len(), &mut again).is_ok(), "a whole member's prefix fails")?;
        check(again == whole, "inflate_prefix differs from inflate_member")?;
        if want <= whole.len() {
            check(got.is_ok() && whole.get(..want) == Some(prefix.as_slice()), "a shorter prefix differs")?;
        }
    }
    Ok(())
}

/// zstd frame decode: `decode_exact` and `decode_prefix` for a length taken from the first 3
/// bytes. A prefix of a frame that decodes whole must be its prefix.
#[cfg(feature = "zstd")]
pub fn zstd(data: &[u8]) -> Outcome {
    let (want, frame) = take_le(data, 3);
    let want = want as usize;
    let mut prefix = Vec::new();
    let got = crate::zstd::decode_prefix(frame, want, &mut prefix);
    if got.is_ok() {
        check(prefix.len() == want, "decode_prefix returned the wrong length")?;
    }
    if let Ok(whole) = crate::zstd::decode_exact(frame, want) {
        check(whole.len() == want, "decode_exact returned the wrong length")?;
        check(got.is_ok() && prefix == whole, "decode_prefix differs from decode_exact")?;
        let half = want / 2;
        let mut shorter = Vec::new();
        check(crate::zstd::decode_prefix(frame, half, &mut shorter).is_ok(), "a shorter prefix fails")?;
        check(whole.get(..half) == Some(shorter.as_slice()), "a shorter prefix differs")?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The writer.

/// The writer's tar scanner over the input, entry by entry, then the writer's planning step.
/// Every entry must lie inside the input and start after the previous one.
pub fn tar_scan(data: &[u8]) -> Outcome {
    let mut scanner = TarScanner::new(data);
    let mut last_start = None;
    while let Ok(Some(e)) = scanner.next_entry() {
        check(last_start.is_none_or(|s| e.start > s), "entries do not advance")?;
        last_start = Some(e.start);
        check(e.start <= e.data, "payload before header")?;
        check(e.data.checked_add(e.stored).is_some_and(|end| end <= data.len() as u64), "payload past the input")?;
    }
    let _ = writer::plan(data, &writer::Options::default());
    Ok(())
}

/// Options from the first byte of a writer input: bit 0 picks zstd:chunked, bits 1-2 the chunk
/// size (512 B, 4 KiB, 64 KiB or the default 4 MiB).
pub fn writer_options(flags: u8) -> writer::Options {
    let format = if flags & 1 == 1 { crate::Format::ZstdChunked } else { crate::Format::Estargz };
    let chunk_size = match (flags >> 1) & 3 {
        0 => 512,
        1 => 4096,
        2 => 65536,
        _ => writer::DEFAULT_CHUNK_SIZE,
    };
    writer::Options { format, chunk_size, level: 1, prioritized: Vec::new(), ..writer::Options::default() }
}

/// A layer written from the input (byte 0: [`writer_options`], then a tar), opened and read
/// whole: what the writer accepts must open with its own TOC digest, every file must verify,
/// and a regular file whose name is unique in the tar must read back as the tar's bytes.
pub fn layer_read(data: &[u8]) -> Outcome {
    let Some((&flags, tar)) = data.split_first() else { return Ok(()) };
    let options = writer_options(flags);
    let Ok((blob, summary)) = writer::convert_to_vec(tar, &options) else { return Ok(()) };
    let open = OpenOptions { expected_toc_digest: Some(summary.toc_digest), ..self::options() };
    let Ok(layer) = Layer::open_with(blob.as_slice(), &open) else {
        return Err(Finding("a blob the writer made does not open"));
    };
    read_every_file(&layer, true)?;
    // Names used once, with their payloads.
    let mut scanner = TarScanner::new(tar);
    let mut seen: BTreeMap<Vec<u8>, Option<(u64, u64)>> = BTreeMap::new();
    while let Ok(Some(e)) = scanner.next_entry() {
        let plain = e.kind == Some(EntryKind::Reg) && e.sparse.is_none();
        let name = clean_name(&e.name);
        let payload = plain.then_some((e.data, e.size));
        seen.entry(name).and_modify(|v| *v = None).or_insert(payload);
    }
    let mut bytes = Vec::new();
    for (name, payload) in seen {
        let Some((start, len)) = payload else { continue };
        let Some(id) = layer.index().lookup_path(&name) else { continue };
        if name.is_empty() || layer.index().node(id).is_none_or(|n| n.kind() != Kind::Reg) || len > MAX_OUTPUT as u64 {
            continue;
        }
        check(layer.read_file_verified(id, &mut bytes).is_ok(), "a written file does not verify")?;
        let want = tar.get(start as usize..(start + len) as usize);
        check(want == Some(&bytes[..]), "a written file differs from the tar")?;
    }
    Ok(())
}

/// An entry point.
pub type Entry = fn(&[u8]) -> Outcome;

/// Every entry, by name (the fuzz target's and its corpus directory's).
pub const ENTRIES: &[(&str, Entry)] = &[
    ("footer", footer),
    ("layer_open", layer_open),
    ("toc_json", toc_json),
    ("gzip", gzip),
    #[cfg(feature = "zstd")]
    ("zstd", zstd),
    ("tar_scan", tar_scan),
    ("layer_read", layer_read),
];
