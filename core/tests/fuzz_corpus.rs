//! The fuzz corpora as a regression test on stable: every file in `fuzz/corpus/<target>/` and
//! `fuzz/artifacts/<target>/` goes through the same entry point as the cargo-fuzz target
//! (`crfs_core::fuzz_entry`), which must report no finding, and must stay within a CPU-time and
//! a memory bound, as the hostile suite's inputs do.
//!
//! `write_seeds` (ignored) makes the seed corpora from testdata/fixtures and the blobs the
//! hostile suite opens (fuzz/README.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bounds;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bounds::{peak, timed};
use crfs_core::fuzz_entry::{ENTRIES, toc_input_of};
use crfs_testkit::corpus_files;

/// Peak memory one input may hold: the entries' limits (a 16 MiB TOC, 4 MiB chunks and
/// outputs) with room for the index and copies.
const MEMORY_BOUND: usize = 160 << 20;
/// CPU time one input may take in a debug build.
const TIME_BOUND: Duration = Duration::from_secs(2);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_corpus_input_passes_its_entry_within_bounds() {
    let mut summary = Vec::new();
    for &(target, entry) in ENTRIES {
        let corpus = corpus_files(&fuzz_dir().join("corpus").join(target));
        let artifacts = corpus_files(&fuzz_dir().join("artifacts").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
        let mut worst = (Duration::ZERO, 0usize);
        for path in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(path).unwrap();
            let what = path.display().to_string();
            let ((outcome, took, wall), bytes) = peak(|| timed(|| entry(&data)));
            assert_eq!(outcome, Ok(()), "{what}");
            assert!(took <= TIME_BOUND, "{what}: took {took:?} of CPU time");
            assert!(wall <= TIME_BOUND * 30, "{what}: took {wall:?} of wall time");
            assert!(bytes <= MEMORY_BOUND, "{what}: held {bytes} bytes at once");
            worst = (worst.0.max(took), worst.1.max(bytes));
        }
        summary.push(format!(
            "{target}: {} corpus + {} artifacts, slowest {:?}, peak {} KiB",
            corpus.len(),
            artifacts.len(),
            worst.0,
            worst.1 >> 10
        ));
    }
    eprintln!("{}", summary.join("\n"));
}

/// Writes seed corpora into `$CRFS_FUZZ_SEEDS/<target>/` from the fixtures and, when
/// `$CRFS_HOSTILE_DUMP` names a directory the hostile suite filled, from its blobs.
#[test]
#[ignore = "makes seed corpora; run by hand (fuzz/README.md)"]
fn write_seeds() {
    let out = PathBuf::from(std::env::var_os("CRFS_FUZZ_SEEDS").expect("set CRFS_FUZZ_SEEDS"));
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    let mut blobs = Vec::new();
    let mut tars = Vec::new();
    for path in corpus_files(&fixtures) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        if name.ends_with(".tar") {
            tars.push((name, data));
        } else if [".esgz", ".stargz", ".zstdchunked"].iter().any(|s| name.ends_with(s)) && data.len() <= 64 << 10 {
            blobs.push((name, data));
        }
    }
    if let Some(dir) = std::env::var_os("CRFS_HOSTILE_DUMP") {
        for path in corpus_files(Path::new(&dir)) {
            blobs.push((path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()));
        }
    }
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    for (name, blob) in &blobs {
        write("layer_open", name, blob);
        write("footer", name, &blob[blob.len().saturating_sub(128)..]);
        if let Some(input) = toc_input_of(blob) {
            write("toc_json", name, &input);
        }
        // The decoders get the blob from its start (a first gzip member or zstd frame),
        // asking for 4 KiB.
        let mut framed = vec![0x00, 0x10, 0x00];
        framed.extend_from_slice(blob);
        let zstd = blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        write(if zstd { "zstd" } else { "gzip" }, name, &framed);
    }
    for (name, tar) in &tars {
        write("tar_scan", name, tar);
        for flags in [0u8, 1, 2, 3] {
            let mut input = vec![flags];
            input.extend_from_slice(tar);
            write("layer_read", &format!("{name}-{flags}"), &input);
        }
    }
}
