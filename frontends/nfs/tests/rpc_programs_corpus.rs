//! The `rpc_programs` fuzz corpus as a regression test on stable: every file in
//! `fuzz/corpus/rpc_programs/` and `fuzz/artifacts/rpc_programs/` goes through
//! `crfs_nfs::fuzz_entry::rpc_programs` (the portmapper, the lock manager and the status
//! monitor, fed calls straight from the input), which must report no finding and no panic,
//! within a CPU-time and a memory bound.
//!
//! `write_rpc_program_seeds` (ignored) makes the seeds: the calls a kernel client and rpcinfo
//! make (GETPORT, GETADDR, DUMP; LOCK, TEST, UNLOCK, CANCEL; NOTIFY, FREE_ALL), with set
//! `CRFS_FUZZ_SEEDS=DIR`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../core/tests/bounds/mod.rs"]
mod bounds;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bounds::{peak, timed};
use crfs_nfs::fuzz_entry::rpc_programs;
use crfs_nfs::xdr::Writer;
use crfs_testkit::corpus_files;

/// Peak memory one input may hold: the lock table's bound is 65,536 locks of a few hundred
/// bytes, far more than an input can make; the calls themselves are under 64 KiB.
const MEMORY_BOUND: usize = 32 << 20;
/// CPU time one input may take in a debug build.
const TIME_BOUND: Duration = Duration::from_secs(2);

fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(kind).join("rpc_programs")
}

#[test]
fn every_rpc_programs_corpus_input_passes_within_bounds() {
    let corpus = corpus_files(&corpus_dir("corpus"));
    assert!(corpus.len() >= 5, "fuzz/corpus/rpc_programs has {} inputs", corpus.len());
    let mut replied = 0;
    for path in corpus.iter().chain(&corpus_files(&corpus_dir("artifacts"))) {
        let data = std::fs::read(path).unwrap();
        let what = path.display().to_string();
        let ((outcome, took, _wall), bytes) = peak(|| timed(|| rpc_programs(&data)));
        replied += outcome.unwrap_or_else(|finding| panic!("{what}: {finding:?}"));
        assert!(took <= TIME_BOUND, "{what}: took {took:?} of CPU time");
        assert!(bytes <= MEMORY_BOUND, "{what}: held {bytes} bytes at once");
    }
    // The seeds are answered, not refused: a DUMP alone is hundreds of bytes.
    assert!(replied > 1_000, "the corpus got only {replied} reply bytes");
}

/// One call of the entry's layout: program selector, version, procedure, flags, arguments.
fn call(prog: u8, vers: u8, proc: u8, udp: bool, args: &[u8]) -> Vec<u8> {
    let mut c = vec![prog, vers, proc, u8::from(udp)];
    c.extend_from_slice(args);
    c
}

fn input(calls: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in calls {
        out.extend_from_slice(&u16::try_from(c.len()).unwrap().to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

fn alock(w: &mut Writer, host: &[u8], svid: i32, offset: u64, len: u64) {
    w.opaque(host).opaque(b"\x63\x72\x66\x73\0\0\0\x02handle").opaque(&svid.to_be_bytes()).i32(svid);
    w.u64(offset).u64(len);
}

fn lock(host: &[u8], svid: i32, exclusive: bool, block: bool, offset: u64, len: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.opaque(b"cookie").bool(block).bool(exclusive);
    alock(&mut w, host, svid, offset, len);
    w.bool(false).i32(1);
    call(1, 4, 2, false, &w.finish())
}

#[test]
fn seeds_are_answered() {
    for (name, data) in seeds() {
        let replied = rpc_programs(&data).unwrap();
        // Wrong versions and programs get RPC errors, which carry no result bytes.
        assert_eq!(replied > 0, name != "mismatches", "{name}: {replied}");
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mapping = |prog: u32, vers: u32, prot: u32| Writer::new().u32(prog).u32(vers).u32(prot).u32(0).finish();
    let rpcb = |prog: u32, vers: u32, netid: &[u8]| {
        Writer::new().u32(prog).u32(vers).opaque(netid).opaque(b"127.0.0.1.8.1").opaque(b"superuser").finish()
    };
    let portmap = input(&[
        call(0, 2, 0, true, &[]),
        call(0, 2, 3, true, &mapping(100_005, 3, 17)),
        call(0, 2, 3, false, &mapping(100_003, 3, 6)),
        call(0, 2, 3, false, &mapping(100_021, 4, 6)),
        call(0, 4, 3, false, &rpcb(100_003, 3, b"tcp")),
        call(0, 4, 9, true, &rpcb(100_021, 4, b"udp")),
        call(0, 3, 3, true, &rpcb(100_024, 1, b"tcp6")),
        call(0, 2, 4, false, &[]),
        call(0, 4, 4, false, &[]),
        call(0, 3, 6, true, &[]),
        call(0, 2, 1, true, &mapping(100_003, 3, 6)),
        call(0, 4, 2, true, &rpcb(100_003, 3, b"tcp")),
    ]);
    let mut test = Writer::new();
    test.opaque(b"c2").bool(true);
    alock(&mut test, b"guest", 7, 0, 0);
    let mut unlock = Writer::new();
    unlock.opaque(b"c3");
    alock(&mut unlock, b"guest", 1, 10, 5);
    let mut cancel = Writer::new();
    cancel.opaque(b"c4").bool(true).bool(true);
    alock(&mut cancel, b"guest", 2, 0, 0);
    let locks = input(&[
        call(1, 4, 0, false, &[]),
        lock(b"guest", 1, false, false, 0, 0),
        lock(b"guest", 2, false, false, 0, 100),
        lock(b"guest", 3, true, true, 50, 10),
        call(1, 4, 1, false, &test.finish()),
        call(1, 4, 4, false, &unlock.finish()),
        lock(b"guest", 1, true, false, u64::MAX - 3, 9),
        call(1, 4, 3, true, &cancel.finish()),
        call(1, 4, 23, true, &Writer::new().opaque(b"guest").i32(3).finish()),
    ]);
    let nsm = input(&[
        lock(b"other", 1, true, false, 0, 0),
        call(2, 1, 0, true, &[]),
        call(2, 1, 6, true, &Writer::new().opaque(b"other").i32(5).finish()),
        lock(b"another", 9, true, false, 0, 0),
    ]);
    let mismatches = input(&[call(0, 5, 0, true, &[]), call(1, 1, 2, false, &[]), call(3, 3, 0, false, &[])]);
    vec![("portmap", portmap), ("locks", locks), ("nsm", nsm), ("mismatches", mismatches)]
}

#[test]
#[ignore = "writes the seed corpus; set CRFS_FUZZ_SEEDS=DIR"]
fn write_rpc_program_seeds() {
    let out = PathBuf::from(std::env::var_os("CRFS_FUZZ_SEEDS").expect("set CRFS_FUZZ_SEEDS")).join("rpc_programs");
    std::fs::create_dir_all(&out).unwrap();
    for (name, data) in seeds() {
        std::fs::write(out.join(name), data).unwrap();
    }
}
