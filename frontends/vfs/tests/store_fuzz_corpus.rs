//! The `layer_store` fuzz corpus as a regression test on stable: every file in
//! `fuzz/corpus/layer_store/` and `fuzz/artifacts/layer_store/` goes through
//! `crfs_vfs::fuzz_entry::layer_store` (as the cargo-fuzz target does), which must report no
//! finding and no panic, within a CPU-time and a memory bound. The seeds are written here too
//! (`write_seeds`, ignored): walks containers/storage makes, and a few made-up ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../core/tests/bounds/mod.rs"]
mod bounds;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bounds::{peak, timed};
use crfs_testkit::corpus_files;
use crfs_vfs::fuzz_entry::{NAMES, layer_store};

/// Peak memory one input may hold: the fixture, its index and a 1 MiB chunk cache.
const MEMORY_BOUND: usize = 16 << 20;
/// CPU time one input may take in a debug build.
const TIME_BOUND: Duration = Duration::from_secs(2);

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(kind).join("layer_store")
}

/// The index of a name in `NAMES`, as a name operand.
fn name(n: &str) -> u8 {
    u8::try_from(NAMES.iter().position(|k| *k == n).unwrap()).unwrap()
}

/// The seeds: each a list of requests in the entry's encoding.
#[rustfmt::skip]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (lookup, create, rmdir, readdir, read) = (0u8, 1u8, 2u8, 3u8, 4u8);
    // Inode operands index the inode numbers seen so far: 0 root, 1 the reference directory,
    // 2 the layer directory, 3 diff, 4 info, 5 blob, then what lookups below diff add.
    let reference = name("cmVnaXN0cnkudGVzdDo1MDAwL2xpYi9hcHA6djE=");
    let pull = vec![
        lookup, 0, reference,
        lookup, 1, name("sha256:1111111111111111111111111111111111111111111111111111111111111111"),
        lookup, 2, name("diff"),
        lookup, 2, name("info"),
        lookup, 2, name("blob"),
        read, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4,
        create, 2, name("use"),
        create, 2, name("use"),
        rmdir, 1, name("sha256:1111111111111111111111111111111111111111111111111111111111111111"),
        readdir, 3, 0,
        lookup, 3, name("files"),
        lookup, 6, name("small.txt"),
        read, 7, 0, 0, 0, 0, 0, 0, 0, 0, 255,
        rmdir, 1, name("sha256:1111111111111111111111111111111111111111111111111111111111111111"),
        lookup, 6, name(".."),
        read, 7, 0, 0, 0, 0, 0, 0, 0, 0, 255,
        read, 5, 0, 16, 0, 0, 0, 0, 0, 0, 64,
    ];
    let declined = vec![
        lookup, 0, reference,
        lookup, 1, name("sha256:2222222222222222222222222222222222222222222222222222222222222222"),
        lookup, 2, name("diff"),
        lookup, 2, name("blob"),
        readdir, 2, 0,
        8, 0,
        rmdir, 1, name("sha256:2222222222222222222222222222222222222222222222222222222222222222"),
    ];
    let made_up = vec![
        lookup, 0, 128 + 4, b'A', b'A', b'A', b'A',
        lookup, 0, 128 + 8, b'Y', b'W', b'J', b'j', b'Z', b'A', b'=', b'=',
        lookup, 1, 128 + 9, b's', b'h', b'a', b'2', b'5', b'6', b':', b'0', b'0',
        create, 0, 128 + 1, b'x',
        rmdir, 0, 128 + 3, b'a', b'b', b'c',
        readdir, 255, 1, 0, 0, 0, 1, 0, 0, 0, 0,
        9, 255, 0, 0, 0, 0, 0, 0, 0, 0,
        6, 0, 128 + 16, b't', b'r', b'u', b's', b't', b'e', b'd', b'.', b'o', b'v', b'e', b'r', b'l', b'a', b'y', b'.',
    ];
    vec![("pull-use-release", pull), ("declined", declined), ("made-up-names", made_up)]
}

#[test]
fn every_layer_store_corpus_input_passes_within_bounds() {
    let mut inputs: Vec<(String, Vec<u8>)> = seeds().into_iter().map(|(n, d)| (format!("seed {n}"), d)).collect();
    for path in corpus_files(&dir("corpus")).iter().chain(&corpus_files(&dir("artifacts"))) {
        inputs.push((path.display().to_string(), std::fs::read(path).unwrap()));
    }
    assert!(inputs.len() >= 3);
    for (what, data) in &inputs {
        let ((outcome, took, _wall), bytes) = peak(|| timed(|| layer_store(data)));
        let answered = outcome.unwrap_or_else(|finding| panic!("{what}: {finding:?}"));
        // The pull seed walks into the layer, releases it and reads it again: every one of
        // its 17 requests is answered but the use and release signals (errors by design).
        if what == "seed pull-use-release" {
            assert_eq!(answered, 13, "{what}");
        }
        assert!(took <= TIME_BOUND, "{what}: took {took:?} of CPU time");
        assert!(bytes <= MEMORY_BOUND, "{what}: held {bytes} bytes at once");
    }
}

#[test]
#[ignore = "writes the seed corpus into fuzz/corpus/layer_store"]
fn write_seeds() {
    let corpus = dir("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for (name, data) in seeds() {
        std::fs::write(corpus.join(format!("seed-{name}")), data).unwrap();
    }
}
