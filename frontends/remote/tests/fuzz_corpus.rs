//! The `reference` fuzz corpus as a regression test on stable: every file in
//! `fuzz/corpus/reference/` and `fuzz/artifacts/reference/` goes through
//! `crfs_remote::fuzz_entry::reference` (the image-reference parser against oci-client's, and
//! read back from its written form), which must report no finding and no panic, within a
//! CPU-time and a memory bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../core/tests/bounds/mod.rs"]
mod bounds;

use std::path::Path;
use std::time::Duration;

use bounds::{peak, timed};
use crfs_remote::fuzz_entry::reference;
use crfs_testkit::corpus_files;

/// Peak memory one input may hold. Nearly all of it is the oracle's: oci-client's regular
/// expression grows its matching caches (up to 6 MB seen, for a reference with a digest);
/// crfs's parser holds a few short strings.
const MEMORY_BOUND: usize = 16 << 20;
/// CPU time one input may take in a debug build.
const TIME_BOUND: Duration = Duration::from_secs(1);

#[test]
fn every_reference_corpus_input_passes_within_bounds() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let corpus = corpus_files(&fuzz.join("corpus/reference"));
    assert!(corpus.len() >= 10, "fuzz/corpus/reference has {} inputs", corpus.len());
    // oci-client compiles its expression on first use: not an input's cost.
    reference(b"warm-up").unwrap();
    for path in corpus.iter().chain(&corpus_files(&fuzz.join("artifacts/reference"))) {
        let data = std::fs::read(path).unwrap();
        let what = path.display().to_string();
        let ((outcome, took, _wall), bytes) = peak(|| timed(|| reference(&data)));
        outcome.unwrap_or_else(|finding| panic!("{what}: {finding:?}"));
        assert!(took <= TIME_BOUND, "{what}: took {took:?} of CPU time");
        assert!(bytes <= MEMORY_BOUND, "{what}: held {bytes} bytes at once");
    }
}
