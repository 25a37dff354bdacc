//! The layer store's fuzz entry (feature `fuzzing`), shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/layer_store.rs`) and the corpus regression test
//! (`frontends/vfs/tests/store_fuzz_corpus.rs`).
//!
//! [`layer_store`] plays arbitrary bytes as requests a FUSE client (the kernel, on behalf of
//! containers/storage or anyone else) may send to a [`LayerStoreFs`]: lookups of any name in
//! any directory, create and rmdir (the store's use and release signals), listings, reads,
//! attributes and xattrs, on inode numbers it was given or made up. The store's source serves
//! the all-types fixture as layer [`LAZY`] of image [`REFERENCE`], declines [`DECLINED`] and
//! fails on anything else, so inputs reach every state of a layer slot: not opened, opened,
//! released and reopened, refused and asked again.
//!
//! Input: a list of requests, each an opcode byte and its operands (an input that ends in the
//! middle of one stops there). An inode operand is one byte: an index into the inode numbers
//! seen so far (the root first), or 255 followed by eight bytes of a made-up number. A name
//! operand is one byte `k`: below 128, the `k`-th of [`NAMES`] (modulo their count), names that
//! lead somewhere; else `k - 128` bytes of the input as they are.
//!
//! A [`Finding`] is a lookup whose answer `getattr` then contradicts, a listing whose offsets
//! do not advance, or a store that grows past its bound. A panic is caught by the fuzzer or by
//! the test's panic hook; allocations by the fuzzer's malloc limit and the test's counting
//! allocator.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crfs_core::Layer;
pub use crfs_core::fuzz_entry::Finding;

use crate::{Ino, LayerSource, LayerStoreFs, Options, ROOT_INO, ReadOnlyFs, ResolveError, StoreLayer, StoreOptions};

/// The layer served.
pub const FIXTURE: &[u8] = include_bytes!("../../../testdata/fixtures/all-types.esgz");
/// The image reference the source knows.
pub const REFERENCE: &str = "registry.test:5000/lib/app:v1";
/// The digest of the layer it serves.
pub const LAZY: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
/// The digest of a layer it declines.
pub const DECLINED: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
/// At most this many reference and layer directories.
const MAX_NODES: usize = 64;
/// At most this many entries taken from one listing.
const MAX_LISTED: usize = 512;

/// Names that lead somewhere: the reference's base64, the layer digests, the layer
/// directory's files, and names inside the fixture.
pub const NAMES: &[&str] = &[
    "cmVnaXN0cnkudGVzdDo1MDAwL2xpYi9hcHA6djE=", // base64 of REFERENCE
    LAZY,
    DECLINED,
    "diff",
    "info",
    "blob",
    "use",
    ".",
    "..",
    "dirs",
    "private",
    "files",
    "small.txt",
    "dev",
    "null",
    "links",
    "wh",
    ".wh.gone",
    "gone",
    "escape",
];

/// The store's source: the fixture as [`LAZY`] of [`REFERENCE`].
struct FixtureSource {
    /// Whether the fixture failed to open (it never does).
    broken: AtomicBool,
}

impl LayerSource for FixtureSource {
    type Blob = Vec<u8>;

    fn layer(&self, reference: &str, digest: &str) -> Result<StoreLayer<Vec<u8>>, ResolveError> {
        match (reference == REFERENCE, digest) {
            (true, LAZY) => match Layer::open(FIXTURE.to_vec()) {
                Ok(layer) => Ok(StoreLayer { layer: Arc::new(layer), info: b"{\"compressed-size\":1}\n".to_vec() }),
                Err(_) => {
                    self.broken.store(true, Ordering::Relaxed);
                    Err(ResolveError::Failed("the fixture does not open".into()))
                }
            },
            (true, DECLINED) => Err(ResolveError::NotFound("declined".into())),
            _ => Err(ResolveError::Failed("no such layer".into())),
        }
    }
}

/// Reads operands off the front of the input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn ino(&mut self, seen: &[Ino]) -> Option<Ino> {
        match self.byte()? {
            255 => self.u64(),
            i => seen.get(usize::from(i) % seen.len().max(1)).copied(),
        }
    }

    fn name(&mut self) -> Option<&'a [u8]> {
        match self.byte()? {
            k if k < 128 => NAMES.get(usize::from(k) % NAMES.len()).map(|n| n.as_bytes()),
            k => self.bytes(usize::from(k - 128)),
        }
    }
}

fn check(ok: bool, what: &'static str) -> Result<(), Finding> {
    if ok { Ok(()) } else { Err(Finding(what)) }
}

/// Plays `data` as requests to a fresh store (see the module docs); returns how many were
/// answered without an error.
pub fn layer_store(data: &[u8]) -> Result<usize, Finding> {
    // No read-ahead thread: it would outlive the input.
    let fs_options = Options { read_ahead: false, cache_bytes: 1 << 20, ..Options::default() };
    let options = StoreOptions { fs: fs_options, negative_ttl: Duration::ZERO, max_nodes: MAX_NODES };
    let store = LayerStoreFs::new(FixtureSource { broken: AtomicBool::new(false) }, options);
    let mut seen: Vec<Ino> = vec![ROOT_INO];
    let mut input = Input(data);
    let mut answered = 0;
    while let Some(op) = input.byte() {
        let Some(ino) = input.ino(&seen) else { break };
        match op % 10 {
            0 => {
                let Some(name) = input.name() else { break };
                if let Ok(a) = store.lookup(ino, name) {
                    answered += 1;
                    let again = store.getattr(a.ino);
                    check(again.is_ok_and(|b| b.ino == a.ino && b.kind == a.kind), "getattr contradicts lookup")?;
                    if seen.len() < 250 && !seen.contains(&a.ino) {
                        seen.push(a.ino);
                    }
                }
            }
            1 => {
                let Some(name) = input.name() else { break };
                let _ = store.create(ino, name);
            }
            2 => {
                let Some(name) = input.name() else { break };
                let _ = store.rmdir(ino, name);
            }
            3 => {
                let Some(offset) = input.byte() else { break };
                let (mut listed, mut last, mut advancing) = (0, u64::from(offset), true);
                let listing = store.readdir(ino, u64::from(offset), &mut |e| {
                    advancing &= e.next_offset > last;
                    last = e.next_offset;
                    listed += 1;
                    listed < MAX_LISTED
                });
                answered += usize::from(listing.is_ok());
                check(advancing, "a listing's offsets do not advance")?;
            }
            4 => {
                let (Some(offset), Some(size)) = (input.u64(), input.byte()) else { break };
                if store.open(ino).is_ok() {
                    let got = store.read(ino, offset % (2 << 20), u32::from(size) << 8);
                    answered += usize::from(got.is_ok());
                    check(got.is_err() || got.is_ok_and(|g| g.len() <= usize::from(size) << 8), "a read too long")?;
                    store.close(ino);
                }
            }
            5 => {
                let _ = store.parent(ino);
            }
            6 => {
                let Some(name) = input.name() else { break };
                let _ = store.getxattr(ino, name);
                let _ = store.listxattr(ino);
            }
            7 => {
                let _ = store.readlink(ino);
            }
            8 => {
                let _ = store.statfs();
                let _ = store.status();
            }
            _ => {
                let _ = store.getattr(ino);
            }
        }
    }
    check(store.layers().len() <= MAX_NODES / 3, "the store grew past its bound")?;
    check(!store.source().broken.load(Ordering::Relaxed), "the fixture did not open")?;
    Ok(answered)
}
