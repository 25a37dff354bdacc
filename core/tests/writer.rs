//! The writer: crfs reads back what it writes, the reference Go reader opens it, bad inputs fail
//! cleanly, and tar features (long names, PAX, sparse files, duplicates) survive.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_same_listing, interop, interop_bin, listing, testdata};
use crfs_core::Format;
use crfs_core::writer::{self, Error, Options};
use crfs_core::{Digest, Layer, OpenOptions};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

fn tmpdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("writer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(chunk_size: u64, level: u8, prioritized: &[&str]) -> Options {
    Options {
        chunk_size,
        level,
        prioritized: prioritized.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    }
}

/// Inflates every gzip member of `blob`; returns the whole stream and each member's offset.
fn gunzip_members(blob: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < blob.len() {
        starts.push(pos);
        let header = crfs_core::gzip::parse_header(&blob[pos..]).unwrap();
        let data = &blob[pos + header.len..];
        let mut member = vec![0u8; 1 << 16];
        let mut decomp = Box::<DecompressorOxide>::default();
        let (mut in_pos, mut out_pos) = (0, 0);
        loop {
            let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
            let (status, consumed, written) = decompress(&mut decomp, &data[in_pos..], &mut member, out_pos, flags);
            in_pos += consumed;
            out_pos += written;
            match status {
                TINFLStatus::Done => break,
                TINFLStatus::HasMoreOutput => member.resize(member.len() * 2, 0),
                s => panic!("inflate at {pos}: {s:?}"),
            }
        }
        member.truncate(out_pos);
        let trailer = &data[in_pos..in_pos + 8];
        assert_eq!(u32::from_le_bytes(trailer[..4].try_into().unwrap()), crc32fast::hash(&member), "crc at {pos}");
        assert_eq!(u32::from_le_bytes(trailer[4..].try_into().unwrap()), member.len() as u32);
        out.extend_from_slice(&member);
        pos += header.len + in_pos + 8;
    }
    (out, starts)
}

/// Decodes every zstd frame of a zstd:chunked blob (skippable frames are skipped).
fn unzstd(blob: &[u8], size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize + 1);
    ruzstd::decoding::FrameDecoder::new().decode_all_to_vec(blob, &mut out).unwrap();
    out
}

/// Converts to zstd:chunked and checks the blob's frames, footer, annotations and listing.
fn convert_and_check_zstd(tar: &[u8], opts: &Options) -> (Vec<u8>, writer::Summary, String) {
    let opts = Options { format: Format::ZstdChunked, ..opts.clone() };
    let (blob, summary) = writer::convert_to_vec(tar, &opts).unwrap();
    assert_eq!(blob.len() as u64, summary.blob_size);
    let stream = unzstd(&blob, summary.uncompressed_size);
    assert_eq!(stream.len() as u64, summary.uncompressed_size);
    assert_eq!(Digest::of(&stream), summary.diff_id, "DiffID");
    assert!(stream.ends_with(&[0u8; 1024]), "tar end-of-archive");
    let (offset, len, json_len) = summary.manifest_position.unwrap();
    let toc = &blob[offset as usize..(offset + len) as usize];
    assert_eq!(Some(Digest::of(toc)), summary.toc_compressed_digest);
    assert_eq!(&blob[offset as usize - 8..offset as usize - 4], &[0x50, 0x2a, 0x4d, 0x18]);
    assert_eq!(&blob[blob.len() - 8..], b"GnUlInUx");
    let layer = Layer::open_with(
        blob.clone(),
        &OpenOptions { expected_toc_digest: Some(summary.toc_digest), ..OpenOptions::default() },
    )
    .unwrap();
    assert_eq!(layer.format(), crfs_core::Format::ZstdChunked);
    assert_eq!(layer.toc_json_len() as u64, json_len);
    let list = listing(&layer);
    (blob, summary, list)
}

/// Converts, reads the blob back with crfs-core and checks what the writer promised.
fn convert_and_check(tar: &[u8], opts: &Options) -> (Vec<u8>, writer::Summary, String) {
    if opts.format == Format::ZstdChunked {
        return convert_and_check_zstd(tar, opts);
    }
    let (blob, summary) = writer::convert_to_vec(tar, opts).unwrap();
    assert_eq!(blob.len() as u64, summary.blob_size);
    let (stream, starts) = gunzip_members(&blob);
    assert_eq!(Digest::of(&stream), summary.diff_id, "DiffID");
    assert_eq!(stream.len() as u64, summary.uncompressed_size);
    assert!(stream.ends_with(&[0u8; 1024]), "tar end-of-archive");
    assert_eq!(*starts.last().unwrap() as u64, blob.len() as u64 - 51, "footer is the last member");
    assert!(starts.contains(&(summary.toc_offset as usize)));
    let layer = Layer::open_with(
        blob.clone(),
        &OpenOptions { expected_toc_digest: Some(summary.toc_digest), ..OpenOptions::default() },
    )
    .unwrap();
    // Every chunk offset is a member start.
    let index = layer.index();
    for id in 0..index.len() as u32 {
        for c in index.chunks(id) {
            assert!(starts.contains(&(c.offset as usize)), "chunk offset {} is not a member start", c.offset);
        }
    }
    let list = listing(&layer);
    (blob, summary, list)
}

fn toc_json(blob: &[u8]) -> String {
    let footer = crfs_core::footer::read_footer(blob).unwrap();
    let toc = crfs_core::toc::read_toc(blob, &footer, 1 << 30).unwrap();
    String::from_utf8(toc.json().to_vec()).unwrap()
}

fn fixture_tar() -> (Vec<u8>, String) {
    let dir = testdata().join("fixtures");
    (
        std::fs::read(dir.join("all-types.tar")).unwrap(),
        std::fs::read_to_string(dir.join("all-types.tar.list")).unwrap(),
    )
}

#[test]
fn reads_back_every_entry_type() {
    let (tar, want) = fixture_tar();
    for opts in [
        Options::default(),
        options(4096, 9, &[]),
        options(1, 1, &[]),
        options(512, 0, &["files/medium.bin", "links/hard2"]),
        options(3000, 6, &["/xattr/file", "./unicode/日本語/ファイル", "orphan/sub/file.txt", "no/such/file"]),
        Options { format: Format::ZstdChunked, ..Options::default() },
        Options { format: Format::ZstdChunked, ..options(4096, 0, &["files/medium.bin"]) },
    ] {
        let (_, summary, list) = convert_and_check(&tar, &opts);
        assert_same_listing(&format!("{opts:?}"), &list, &want);
        let missed: Vec<&[u8]> = summary.missed_prioritized.iter().map(|m| m.as_slice()).collect();
        let want_missed: Vec<&[u8]> =
            if opts.prioritized.iter().any(|p| p == "no/such/file") { vec![b"no/such/file"] } else { vec![] };
        assert_eq!(missed, want_missed);
    }
}

#[test]
fn output_is_deterministic() {
    let (tar, _) = fixture_tar();
    let opts = options(4096, 9, &["files/medium.bin"]);
    let (a, sa) = writer::convert_to_vec(tar.as_slice(), &opts).unwrap();
    let (b, sb) = writer::convert_to_vec(tar.as_slice(), &opts).unwrap();
    assert_eq!(a, b);
    assert_eq!(sa, sb);
}

#[test]
fn landmarks_and_prioritized_order() {
    let (tar, _) = fixture_tar();
    let (blob, ..) = convert_and_check(&tar, &Options::default());
    let json = toc_json(&blob);
    let first = json.find("\"name\": ").unwrap();
    assert!(json[first..].starts_with("\"name\": \".no.prefetch.landmark\""), "{}", &json[..300]);
    assert!(!json.contains("\".prefetch.landmark\""));

    let (blob, ..) = convert_and_check(&tar, &options(4096, 9, &["links/hard2", "files/small.txt"]));
    let json = toc_json(&blob);
    let names: Vec<&str> =
        json.lines().filter_map(|l| l.trim().strip_prefix("\"name\": \"")).map(|n| n.trim_end_matches("\",")).collect();
    // The root ("./"), hard2's parent, then along the hardlink chain the target's parent and
    // target (two entries: 5000 bytes in 4096-byte chunks), hard1, hard2; then small.txt (its
    // parent already moved); then the landmark; then the rest in tar order.
    assert_eq!(
        &names[..10],
        [
            "./",
            "links/",
            "files/",
            "files/data.bin",
            "files/data.bin",
            "links/hard1",
            "links/hard2",
            "files/small.txt",
            ".prefetch.landmark",
            "./dotted/"
        ]
    );
    // The landmark is a one-byte file in a member of its own.
    let landmark = json.find("\".prefetch.landmark\"").unwrap();
    let entry = &json[landmark..json[landmark..].find('}').unwrap() + landmark];
    assert!(entry.contains("\"size\": 1,"), "{entry}");
    let want = format!("\"digest\": \"{}\"", Digest::of(&[0x0f]));
    assert!(entry.contains(&want), "{entry}");
}

#[test]
fn chunk_entries_follow_the_reference_rules() {
    // 10 000 bytes at chunk size 4096: reg (chunkSize 4096), chunk 4096 (chunkSize 4096), chunk 8192 (no chunkSize).
    let (tar, _) = fixture_tar();
    let (blob, ..) = convert_and_check(&tar, &options(4096, 9, &[]));
    let json = toc_json(&blob);
    let at = json.find("\"name\": \"files/medium.bin\"").unwrap();
    let text = &json[at..];
    let entries: Vec<&str> = text.split("\t\t}").take(3).collect();
    assert!(entries[0].contains("\"type\": \"reg\"") && entries[0].contains("\"chunkSize\": 4096"));
    assert!(!entries[0].contains("chunkOffset"));
    assert!(entries[1].contains("\"type\": \"chunk\"") && entries[1].contains("\"chunkOffset\": 4096"));
    assert!(entries[1].contains("\"chunkSize\": 4096"));
    assert!(entries[2].contains("\"chunkOffset\": 8192") && !entries[2].contains("chunkSize"));
    // An empty file has the digest of nothing and no offset.
    let at = json.find("\"name\": \"files/empty\"").unwrap();
    let empty = &json[at..at + json[at..].find('}').unwrap()];
    assert!(empty.contains(&format!("\"digest\": \"{}\"", Digest::of(b""))) && !empty.contains("offset"));
}

// ---------------------------------------------------------------------------------------------
// Hand-made tars: features Go's tar writer does not produce.

fn header(name: &[u8], typeflag: u8, size: u64, gnu: bool) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"13606670245\0");
    h[156] = typeflag;
    if gnu {
        h[257..265].copy_from_slice(b"ustar  \0");
    } else {
        h[257..265].copy_from_slice(b"ustar\x0000");
    }
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn push_entry(tar: &mut Vec<u8>, h: [u8; 512], data: &[u8]) {
    tar.extend_from_slice(&h);
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let base = k.len() + v.len() + 3;
        let mut n = base + base.to_string().len();
        if base + n.to_string().len() != n {
            n = base + n.to_string().len();
        }
        out.extend_from_slice(format!("{n} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

#[test]
fn long_names_pax_and_duplicates() {
    let long_dir = "d".repeat(120);
    let long_name = format!("{long_dir}/{}", "f".repeat(150));
    let long_link = format!("../{}", "t".repeat(140));
    let mut tar = Vec::new();
    // GNU long name and long link.
    push_entry(
        &mut tar,
        header(b"././@LongLink", b'L', long_name.len() as u64 + 1, true),
        format!("{long_name}\0").as_bytes(),
    );
    push_entry(&mut tar, header(b"ignored", b'0', 5, true), b"hello");
    push_entry(&mut tar, header(b"././@LongLink", b'K', long_link.len() as u64, true), long_link.as_bytes());
    push_entry(&mut tar, header(b"gnu-symlink", b'2', 0, true), b"");
    // PAX path, linkpath, xattrs, uid, mtime with a fraction, size.
    let records = pax(&[
        ("path", b"pax/\xce\xbb-name"),
        ("SCHILY.xattr.user.k", b"v\0w"),
        ("uid", b"4000000000"),
        ("mtime", b"1600000000.75"),
        ("size", b"3"),
        ("comment", b"ignored"),
    ]);
    push_entry(&mut tar, header(b"PaxHeaders/x", b'x', records.len() as u64, false), &records);
    push_entry(&mut tar, header(b"short", b'0', 3, false), b"abc");
    // ustar prefix.
    let mut h = header(b"name-in-prefixed-dir", b'0', 2, false);
    h[345..355].copy_from_slice(b"prefix/dir");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    push_entry(&mut tar, h, b"pp");
    // A global header (kept, not applied), a duplicate, "./" prefixes, an old TOC and landmark.
    let global = pax(&[("comment", b"git archive")]);
    push_entry(&mut tar, header(b"pax_global_header", b'g', global.len() as u64, false), &global);
    push_entry(&mut tar, header(b"./dup", b'0', 5, false), b"first");
    push_entry(&mut tar, header(b"stargz.index.json", b'0', 2, false), b"{}");
    push_entry(&mut tar, header(b"./.prefetch.landmark", b'0', 1, false), b"\x0f");
    push_entry(&mut tar, header(b"dup", b'0', 6, false), b"second");
    tar.extend_from_slice(&[0u8; 1024]);

    let (blob, _, list) = convert_and_check(&tar, &Options::default());
    let json = toc_json(&blob);
    assert!(json.contains(&format!("\"name\": \"{long_name}\"")));
    assert!(json.contains(&format!("\"linkName\": \"{long_link}\"")));
    assert!(json.contains("\"name\": \"pax/λ-name\""));
    assert!(json.contains("\"uid\": 4000000000"));
    assert!(json.contains("\"modtime\": \"2020-09-13T12:26:41Z\""), "rounded up from .75");
    assert!(json.contains("\"user.k\": \"dgB3\""));
    assert!(json.contains("\"name\": \"prefix/dir/name-in-prefixed-dir\""));
    assert!(!json.contains("\"./dup\"") && json.contains("\"name\": \"dup\""));
    assert!(!json.contains("stargz.index.json") && json.contains(".no.prefetch.landmark"));
    assert_eq!(json.matches("landmark").count(), 1);
    for line in [
        format!("{long_name}\treg\t0644\t0\t0\t5\t"),
        format!("gnu-symlink\tsymlink\t0644\t0\t0\t{}\t", long_link.len()),
        "pax/%CE%BB-name\treg\t0644\t4000000000\t0\t3\t1600000001\t".to_string(),
        "prefix/dir/name-in-prefixed-dir\treg\t0644\t0\t0\t2\t".to_string(),
        format!("dup\treg\t0644\t0\t0\t6\t1578856613\t1\t-\t-\t{}\t-", hex(&Digest::of(b"second").0)),
    ] {
        assert!(list.lines().any(|l| l.starts_with(&line)), "missing {line:?} in\n{list}");
    }
    // The blob's tar stream keeps the input's headers byte for byte (the global one included).
    let (stream, _) = gunzip_members(&blob);
    assert!(stream.windows(global.len()).any(|w| w == global.as_slice()));
    assert!(stream.windows(records.len()).any(|w| w == records.as_slice()));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sparse_files_are_expanded() {
    let have_tar = Command::new("tar").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have_tar {
        assert!(!common::in_ci(), "CI needs GNU tar");
        eprintln!("skipping: no tar");
        return;
    }
    let dir = tmpdir("sparse");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Data, a hole, data, a trailing hole: 5 MiB logical.
    let mut content = vec![0u8; 5 << 20];
    content[..70_000].iter_mut().enumerate().for_each(|(i, b)| *b = (i % 253) as u8 + 1);
    content[3 << 20..(3 << 20) + 9000].fill(0xaa);
    let f = std::fs::File::create(src.join("sparse.bin")).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    let mut w = std::io::BufWriter::new(f);
    w.write_all(&content[..70_000]).unwrap();
    w.seek(SeekFrom::Start(3 << 20)).unwrap();
    w.write_all(&content[3 << 20..(3 << 20) + 9000]).unwrap();
    w.into_inner().unwrap().set_len(5 << 20).unwrap();
    std::fs::write(src.join("plain.txt"), b"plain\n").unwrap();
    for format in ["gnu", "pax", "posix"] {
        let tar_path = dir.join(format!("{format}.tar"));
        let mut cmd = Command::new("tar");
        cmd.args(["--sparse", "--owner=0", "--group=0", "--numeric-owner"]);
        cmd.arg(format!("--format={}", if format == "posix" { "posix" } else { format }));
        if format == "posix" {
            // The 0.1 map-in-a-record flavour.
            cmd.args(["--sparse-version=0.1"]);
        }
        let status =
            cmd.arg("-cf").arg(&tar_path).arg("-C").arg(&src).args(["sparse.bin", "plain.txt"]).status().unwrap();
        assert!(status.success());
        let tar = std::fs::read(&tar_path).unwrap();
        if tar.len() >= 1 << 20 {
            // The filesystem reported no holes, so tar stored zeros: still a valid round trip.
            eprintln!("{format}: tar made no sparse entry here");
        }
        let (blob, ..) = convert_and_check(&tar, &options(1 << 20, 6, &[]));
        let layer = Layer::open(blob.clone()).unwrap();
        let index = layer.index();
        let id = index.lookup(crfs_core::ROOT, b"sparse.bin").unwrap_or_else(|| panic!("{format}: no sparse.bin"));
        let mut data = Vec::new();
        layer.read_file_verified(id, &mut data).unwrap();
        assert!(data == content, "{format}: expanded content differs");
        // And plain tar sees a regular file with the same bytes.
        let out = dir.join(format!("x-{format}"));
        std::fs::create_dir_all(&out).unwrap();
        let blob_path = dir.join(format!("{format}.esgz"));
        std::fs::write(&blob_path, &blob).unwrap();
        let status = Command::new("tar").arg("-xzf").arg(&blob_path).arg("-C").arg(&out).status().unwrap();
        assert!(status.success());
        assert!(std::fs::read(out.join("sparse.bin")).unwrap() == content, "{format}: tar -xzf content");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_fail_with_clear_errors() {
    let (tar, _) = fixture_tar();
    let fail = |input: &[u8]| writer::convert_to_vec(input, &Options::default()).unwrap_err();
    assert_eq!(fail(b""), Error::NotTar("the input is empty"));
    assert!(matches!(fail(&[0x5a; 4096]), Error::NotTar(_)));
    let mut gz = Vec::new();
    crfs_core::writer::compress::gzip_member(&mut writer::MinizDeflate::new(6), 6, &tar, &mut gz).unwrap();
    assert!(matches!(fail(&gz), Error::NotTar(_)));
    // Cut inside a header, inside a payload, inside padding.
    assert!(matches!(fail(&tar[..700]), Error::Truncated { .. }), "{}", fail(&tar[..700]));
    let e = fail(&tar[..512 * 3 + 10]);
    assert!(matches!(e, Error::EntryTooLarge { .. } | Error::Truncated { .. }), "{e}");
    let msg = fail(&tar[..512 * 3 + 10]).to_string();
    assert!(msg.starts_with("truncated tar"), "{msg}");
    // A corrupted header checksum in the middle.
    let mut bad = tar.clone();
    bad[1024 + 5] ^= 0x20;
    assert!(matches!(fail(&bad), Error::BadHeader { offset: 1024, .. }), "{}", fail(&bad));
    // Unsupported type.
    let mut v = Vec::new();
    push_entry(&mut v, header(b"vol", b'V', 0, true), b"");
    assert!(matches!(fail(&v), Error::Unsupported { typeflag: b'V', .. }));
    // Options.
    assert!(matches!(writer::convert_to_vec(tar.as_slice(), &options(0, 9, &[])), Err(Error::BadOption(_))));
    assert!(matches!(writer::convert_to_vec(tar.as_slice(), &options(10, 10, &[])), Err(Error::BadOption(_))));
}

#[test]
fn tars_without_end_blocks_are_accepted() {
    let mut tar = Vec::new();
    push_entry(&mut tar, header(b"a", b'0', 1, false), b"a");
    let (_, _, list) = convert_and_check(&tar, &Options::default());
    assert!(list.contains("\na\treg\t"));
    tar.extend_from_slice(&[0u8; 512]);
    convert_and_check(&tar, &Options::default());
}

// ---------------------------------------------------------------------------------------------
// The reference Go reader (testkit's interop helper); skipped outside CI without Go.

fn go_check(bin: &Path, dir: &Path, tar_path: &Path, tar_list: &str, opts: &Options, what: &str) {
    let tar = std::fs::read(tar_path).unwrap();
    let (blob, summary, ours) = convert_and_check(&tar, opts);
    assert_same_listing(&format!("{what}: crfs-core reading its own blob"), &ours, tar_list);
    let path = dir.join(format!("{what}.esgz"));
    std::fs::write(&path, &blob).unwrap();
    let p = path.to_str().unwrap();
    let reference = interop(bin, &["list", p]);
    assert_same_listing(&format!("{what}: reference listing"), &reference, tar_list);
    let verified = interop(bin, &["verify", p, &summary.toc_digest.to_string()]);
    assert_eq!(verified.trim(), "ok", "{what}");
}

#[test]
fn reference_reader_opens_our_blobs() {
    let Some(bin) = interop_bin() else { return };
    let dir = tmpdir("go");
    for kind in ["all-types", "chunks", "many"] {
        let tar = dir.join(format!("{kind}.tar"));
        interop(&bin, &["mktar", "-kind", kind, "-out", tar.to_str().unwrap()]);
        let list = interop(&bin, &["list-tar", tar.to_str().unwrap()]);
        let prio: &[&str] = match kind {
            "all-types" => &["files/medium.bin", "links/hard2", "xattr/file"],
            "chunks" => &["chunks/big-9MiB", "chunks/size-0004097"],
            _ => &["d07/f003", "d42/"],
        };
        for (i, opts) in [
            Options::default(),
            options(4096, 9, &[]),
            options(65536, 1, prio),
            options(1 << 20, 6, prio),
            options(100_000, 0, &[]),
            Options { format: Format::ZstdChunked, ..options(65536, 3, prio) },
        ]
        .iter()
        .enumerate()
        {
            go_check(&bin, &dir, &tar, &list, opts, &format!("{kind}-{i}"));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Strips `"offset": N` lines, the only TOC lines that depend on the compressor.
fn without_offsets(json: &str) -> String {
    json.lines().filter(|l| !l.trim_start().starts_with("\"offset\": ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn same_toc_and_diff_id_as_the_reference() {
    // For tars written by Go's tar writer, the reference's re-encoded headers equal the input's,
    // so crfs (which copies headers) writes the same uncompressed stream: same DiffID, and the
    // same TOC but for compressed offsets.
    let Some(bin) = interop_bin() else { return };
    let dir = tmpdir("same");
    for (kind, args, opts) in [
        ("all-types", vec![], Options::default()),
        (
            "all-types",
            vec!["-chunk-size", "4096", "-prioritize", "files/medium.bin,links/hard2"],
            options(4096, 9, &["files/medium.bin", "links/hard2"]),
        ),
        ("chunks", vec!["-chunk-size", "65536", "-level", "1"], options(65536, 1, &[])),
        ("many", vec![], Options::default()),
    ] {
        let tar = dir.join(format!("{kind}.tar"));
        interop(&bin, &["mktar", "-kind", kind, "-out", tar.to_str().unwrap()]);
        let go_blob = dir.join(format!("{kind}.go.esgz"));
        let mut full = vec!["build", "-in", tar.to_str().unwrap(), "-out", go_blob.to_str().unwrap()];
        full.extend(args.iter().copied());
        let printed = interop(&bin, &full);
        let go_diff = printed.lines().find_map(|l| l.strip_prefix("diff-id ")).unwrap().to_string();
        let (blob, summary) = writer::convert_to_vec(std::fs::read(&tar).unwrap().as_slice(), &opts).unwrap();
        let go = std::fs::read(&go_blob).unwrap();
        let (go_json, ours) = (toc_json(&go), toc_json(&blob));
        assert_eq!(without_offsets(&ours), without_offsets(&go_json), "{kind} {args:?}: TOC");
        // The streams are equal up to the TOC entry, whose offsets differ with the compressor.
        let (go_stream, ours_stream) = (gunzip_members(&go).0, gunzip_members(&blob).0);
        assert_eq!(Digest::of(&go_stream).to_string(), go_diff);
        let toc_entry = |s: &[u8], json: &str| s.len() - 1024 - json.len().div_ceil(512) * 512 - 512;
        let (a, b) = (toc_entry(&go_stream, &go_json), toc_entry(&ours_stream, &ours));
        assert!(go_stream[..a] == ours_stream[..b], "{kind} {args:?}: tar streams differ");
        assert_eq!(&ours_stream[b..b + 17], b"stargz.index.json");
        // The TOC headers differ only in the size field (and so the checksum).
        assert_eq!(go_stream[a..a + 124], ours_stream[b..b + 124], "{kind} {args:?}: TOC header");
        assert_eq!(go_stream[a + 156..a + 512], ours_stream[b + 156..b + 512], "{kind} {args:?}: TOC header");
        assert_eq!(Digest::of(&ours_stream), summary.diff_id);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mangled_tars_never_panic() {
    // Deterministic mutations of the fixture: flipped bytes in headers and PAX records,
    // truncations anywhere. Every one must end in Ok or a clean Err.
    let (tar, _) = fixture_tar();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(2_685_821_657_736_338_717)
    };
    let headers: Vec<usize> = (0..tar.len()).step_by(512).collect();
    let opts = options(1000, 1, &["files/medium.bin", "links/hard2"]);
    for round in 0..1000 {
        let mut t = tar.clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let block = headers[(next() % headers.len() as u64) as usize];
            let at = block + (next() % 512) as usize;
            t[at] = match next() % 4 {
                0 => 0,
                1 => 0xff,
                2 => b'7',
                _ => next() as u8,
            };
            // Mostly keep the checksum valid, so the mangled fields get parsed.
            if next() % 4 != 0 && !(148..156).contains(&(at - block)) {
                let h = &mut t[block..block + 512];
                h[148..156].fill(b' ');
                let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
                h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            }
        }
        if round % 3 == 0 {
            t.truncate((next() % tar.len() as u64) as usize);
        }
        let _ = writer::convert_to_vec(t.as_slice(), &opts);
    }
}

#[test]
fn same_toc_as_the_reference_for_gnu_tar_archives() {
    // GNU tar's own formats (long names as 'L'/'K' records, PAX with sub-second mtimes, atime and
    // ctime records): the reference re-encodes the headers, so only the TOC can be compared,
    // and it must be the same but for compressed offsets.
    let Some(bin) = interop_bin() else { return };
    if !Command::new("tar").arg("--version").output().is_ok_and(|o| o.status.success()) {
        assert!(!common::in_ci(), "CI needs GNU tar");
        return;
    }
    let dir = tmpdir("gnu-tar");
    let src = dir.join("src");
    let deep = src.join("d".repeat(90)).join("e".repeat(90)).join("f".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("g".repeat(120)), b"deep and long\n").unwrap();
    std::fs::write(src.join("small"), b"x").unwrap();
    std::fs::write(src.join("big"), vec![7u8; 300_000]).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::hard_link(src.join("big"), src.join("big-link")).unwrap();
    std::os::unix::fs::symlink("t".repeat(150), src.join("long-symlink")).unwrap();
    std::os::unix::fs::symlink("small", src.join("short-symlink")).unwrap();
    let status = Command::new("mkfifo").arg(src.join("fifo")).status().unwrap();
    assert!(status.success());
    for format in ["gnu", "posix"] {
        let tar = dir.join(format!("{format}.tar"));
        let status = Command::new("tar")
            .args([&format!("--format={format}"), "--sort=name", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let go_blob = dir.join(format!("{format}.go.esgz"));
        for (args, opts) in [
            (vec!["-level", "1"], options(DEFAULT_CHUNK, 1, &[])),
            (vec!["-level", "1", "-chunk-size", "65536", "-prioritize", "big-link"], options(65536, 1, &["big-link"])),
        ] {
            let mut full = vec!["build", "-in", tar.to_str().unwrap(), "-out", go_blob.to_str().unwrap()];
            full.extend(args.iter().copied());
            interop(&bin, &full);
            let (blob, ..) = convert_and_check(&std::fs::read(&tar).unwrap(), &opts);
            let (go, ours) = (toc_json(&std::fs::read(&go_blob).unwrap()), toc_json(&blob));
            assert_eq!(without_offsets(&ours), without_offsets(&go), "{format} {args:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

const DEFAULT_CHUNK: u64 = writer::DEFAULT_CHUNK_SIZE;

/// An old GNU sparse entry ('S'): `frags` (offset, length) in the header, `real` the claimed
/// size, the fragments' bytes stored back to back.
fn gnu_sparse(tar: &mut Vec<u8>, name: &[u8], real: u64, frags: &[(u64, u64)], data: &[u8]) {
    // Numbers in GNU base-256 (they may not fit in 11 octal digits).
    let base256 = |field: &mut [u8], v: u64| {
        field.fill(0);
        field[0] = 0x80;
        field[4..12].copy_from_slice(&v.to_be_bytes());
    };
    let mut h = header(name, b'S', data.len() as u64, true);
    for (i, &(off, len)) in frags.iter().enumerate() {
        let at = 386 + 24 * i;
        base256(&mut h[at..at + 12], off);
        base256(&mut h[at + 12..at + 24], len);
    }
    base256(&mut h[483..495], real);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    push_entry(tar, h, data);
}

#[test]
fn hostile_sparse_sizes_are_refused_before_any_work() {
    // A 4 EiB file of holes with 10 stored bytes at its very end.
    let mut tar = Vec::new();
    gnu_sparse(&mut tar, b"huge", 1 << 62, &[((1 << 62) - 10, 10)], b"0123456789");
    tar.resize(tar.len() + 1024, 0);
    let start = std::time::Instant::now();
    let e = writer::convert_to_vec(tar.as_slice(), &Options::default()).unwrap_err();
    assert!(
        matches!(&e, Error::SparseTooLarge { name, limit, .. } if name == b"huge" && *limit == writer::DEFAULT_MAX_SPARSE_HOLES),
        "{e}"
    );
    assert!(e.to_string().contains("sparse file \"huge\""), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "took {:?}", start.elapsed());

    // The limit is per layer: two files of 3 MiB of holes each pass 8 MiB and fail 5 MiB.
    let mut tar = Vec::new();
    for name in [&b"a"[..], b"b"] {
        gnu_sparse(&mut tar, name, (3 << 20) + 4, &[(0, 2), ((3 << 20) + 2, 2)], b"xyzw");
    }
    tar.resize(tar.len() + 1024, 0);
    let with_limit = |limit| Options { chunk_size: 1 << 20, max_sparse_holes: limit, ..Options::default() };
    let e = writer::convert_to_vec(tar.as_slice(), &with_limit(5 << 20)).unwrap_err();
    assert!(matches!(&e, Error::SparseTooLarge { name, holes, .. } if name == b"b" && *holes == 6 << 20), "{e}");
    let (blob, ..) = convert_and_check(&tar, &with_limit(8 << 20));
    let layer = Layer::open(blob).unwrap();
    for name in [&b"a"[..], b"b"] {
        let id = layer.index().lookup(crfs_core::ROOT, name).unwrap();
        let mut data = Vec::new();
        layer.read_file_verified(id, &mut data).unwrap();
        let mut want = vec![0u8; (3 << 20) + 4];
        want[..2].copy_from_slice(b"xy");
        want[(3 << 20) + 2..].copy_from_slice(b"zw");
        assert!(data == want, "{}: expanded content", String::from_utf8_lossy(name));
    }
}

/// One `Format` for the reader and the writer: the writer writes the two formats it knows and
/// refuses the two it only reads, before reading any input.
#[test]
fn the_writer_refuses_the_formats_it_only_reads() {
    let (tar, _) = fixture_tar();
    for format in [Format::LegacyStargz, Format::ZstdChunkedV2] {
        let opts = Options { format, ..Options::default() };
        assert!(matches!(writer::convert_to_vec(tar.as_slice(), &opts), Err(Error::BadOption(_))), "{format:?}");
        assert!(matches!(writer::plan(&[][..], &opts), Err(Error::BadOption(_))), "{format:?}");
    }
    assert_eq!(Options::default().format, Format::Estargz);
}
