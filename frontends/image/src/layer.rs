//! Opening one layer of a source: lazy when it has a TOC, indexed locally when it has none,
//! and verified as its manifest says either way. The policy an embedder gets from
//! [`crate::Images`] and the namespace resolver alike.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crfs_core::{Layer, ReadAt as _};
use crfs_remote::{DiskCache, SourceLayer};

use crate::Blob;
use crate::error::{Error, ErrorKind, Result};
use crate::plain::{PlainLayers, unannotated};
use crate::verify::{Verification, check, open_checked};

/// How a layer's bytes are read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Lazily, chunk by chunk, from where the blob lives: it has a TOC (eStargz, stargz,
    /// zstd:chunked).
    Lazy,
    /// From a local copy made by an earlier open and kept in the disk cache: an eStargz copy
    /// of a layer without a TOC, or the layer itself, checked whole (see `WholeChecked`).
    IndexedCopy,
    /// From a local copy made now: the layer has a TOC but its manifest gives no TOC digest
    /// to check it against, so it was fetched whole and checked against the blob digest.
    WholeChecked,
    /// From a local eStargz copy made now, the blob fetched whole: opening it lazily failed
    /// with `why` (no footer, for a plain tar layer).
    Indexed {
        /// What opening the blob lazily said.
        why: crfs_core::Error,
    },
}

/// One opened layer and where it came from, for messages.
pub struct OpenedLayer {
    /// The source it came from, and its digest when it is a layer of an image.
    pub name: String,
    /// The layer, ready to serve.
    pub layer: Arc<Layer<Blob>>,
    /// Whether it is a layer of an image (whose root filesystem applies whiteouts) rather
    /// than a blob named on its own (shown as the layer holds it).
    pub of_image: bool,
    /// Lazy or not, and why.
    pub access: Access,
    /// How its TOC was checked against its manifest.
    pub verification: Verification,
}

impl OpenedLayer {
    /// Where this layer's bytes come from and how it was checked, in words: one line for the
    /// user (`crfs mount` prints it for each layer).
    pub fn state(&self) -> String {
        let access = match &self.access {
            Access::Lazy => "lazy".to_owned(),
            Access::IndexedCopy => "local copy from the disk cache (checked against the layer digest)".to_owned(),
            Access::WholeChecked => {
                "fetched whole and checked against the layer digest (the manifest gives no TOC digest)".to_owned()
            }
            Access::Indexed { why } => format!("fetched whole and indexed locally (not lazy: {why})"),
        };
        let checked = match (&self.access, self.verification) {
            (Access::Lazy, Verification::TocDigest) => "; TOC checked against the manifest's toc.digest",
            (Access::Lazy, Verification::ManifestChecksum) => "; TOC checked against the manifest-checksum",
            (Access::Lazy, _) => "; TOC not checked against a manifest",
            _ => "",
        };
        format!("{access}{checked}")
    }

    /// A handle on this layer's state that outlives it being moved into a tree.
    pub fn report(&self) -> LayerReport {
        LayerReport { name: self.name.clone(), state: self.state(), blob: self.layer.blob().clone() }
    }
}

/// One layer's state for `crfs status`: what [`OpenedLayer::state`] said at open, and the
/// blob's transfers so far.
#[derive(Clone)]
pub struct LayerReport {
    /// The layer's name (source and digest).
    pub name: String,
    /// How it is read and was checked.
    pub state: String,
    blob: Blob,
}

impl LayerReport {
    /// `NAME: STATE; N bytes fetched, N cache hits` (transfers only for remote blobs).
    pub fn line(&self) -> String {
        match self.blob.transfer_counts() {
            Some(t) => format!(
                "{}: {}; {} bytes fetched, {} reads from the disk cache",
                self.name, self.state, t.fetched_bytes, t.cache_hits
            ),
            None => format!("{}: {}", self.name, self.state),
        }
    }
}

/// A layer as [`open`] returns it, before it is named.
pub struct Opened {
    /// The layer.
    pub layer: Arc<Layer<Blob>>,
    /// Lazy or not, and why.
    pub access: Access,
    /// How it was checked.
    pub verification: Verification,
}

/// Layers opened at once by one [`crate::Images::open`] or one image of the namespace.
/// Opening a lazy layer is two round trips (its footer, then its TOC) and the TOC's parse, so
/// an image's layers opened side by side wait for the registry once instead of once per layer.
/// Each opening in progress holds its TOC's text and tables (about ten times the compressed
/// TOC), so their number is bounded.
pub const PARALLEL_OPENS: usize = 4;

/// Opens `layers` (each with its name for messages) as [`open`] does, up to
/// [`PARALLEL_OPENS`] at once, and returns them in the order given. The first layer in that
/// order that fails to open gives the error; after a failure no further layer is started.
pub fn open_all(
    plain: &PlainLayers,
    layers: &[(String, &SourceLayer)],
    verify: bool,
    cache: Option<&DiskCache>,
) -> Result<Vec<Opened>> {
    let opened: Mutex<Vec<Option<Result<Opened>>>> = Mutex::new(layers.iter().map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((name, l)) = layers.get(i) else { break };
            let result = open(plain, name, l, verify, cache);
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            if let Some(slot) = opened.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                *slot = Some(result);
            }
        }
    };
    std::thread::scope(|scope| {
        // This thread opens layers too; a helper that cannot be spawned only means fewer at
        // once.
        for _ in 1..PARALLEL_OPENS.min(layers.len()) {
            let spawned = std::thread::Builder::new().name("crfs-layer-open".into()).spawn_scoped(scope, work);
            if spawned.is_err() {
                break;
            }
        }
        work();
    });
    let mut out = Vec::with_capacity(layers.len());
    for (slot, (name, _)) in opened.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().zip(layers) {
        match slot {
            Some(result) => out.push(result?),
            // Not started because an earlier layer failed, whose error came first: not reached.
            None => return Err(Error::new(ErrorKind::Io, format!("{name}: not opened"))),
        }
    }
    Ok(out)
}

/// Opens one layer, checking its TOC against the manifest's annotation when `verify` is set
/// (see `verify`). A layer of an image with no such annotation whose blob has no footer either
/// is a plain tar layer: it is fetched whole and indexed locally (see `plain`), its copy kept
/// in the disk cache. One with a footer (eStargz or zstd:chunked whose manifest lost its
/// annotations, as Docker schema 2 manifests do) is fetched whole once and checked against the
/// blob digest when `verify` is set, else read lazily and unchecked.
pub fn open(
    plain: &PlainLayers,
    name: &str,
    l: &SourceLayer,
    verify: bool,
    cache: Option<&DiskCache>,
) -> Result<Opened> {
    if let Some(desc) = l.desc.as_ref().filter(|d| unannotated(d)) {
        if let Some(copy) = plain.cached(desc, cache) {
            match Layer::open_with(copy, &crate::verify::open_options(None)) {
                Ok(layer) => {
                    let (access, verification) = (Access::IndexedCopy, Verification::BlobDigest);
                    return Ok(Opened { layer: Arc::new(layer), access, verification });
                }
                Err(e) => {
                    tracing::warn!(layer = %name, "the indexed copy is unusable ({e}); making it again");
                    plain.discard(desc, cache);
                }
            }
        }
        return match Layer::open_with(l.blob.clone(), &crate::verify::open_options(None)) {
            Err(why) => {
                let copy = plain.fetch_and_index(name, l, cache, &why)?;
                let layer = Layer::open_with(copy, &crate::verify::open_options(None))
                    .map_err(|e| Error::layer(format!("{name}: the indexed copy"), e))?;
                Ok(Opened {
                    layer: Arc::new(layer),
                    access: Access::Indexed { why },
                    verification: Verification::BlobDigest,
                })
            }
            // A TOC, but nothing to check it against: checked whole, or lazy and unchecked.
            Ok(layer) if verify => {
                drop(layer);
                let copy = plain.fetch_checked(name, l, cache)?;
                let layer = Layer::open_with(copy, &crate::verify::open_options(None))
                    .map_err(|e| Error::layer(format!("{name}: the checked copy"), e))?;
                Ok(Opened {
                    layer: Arc::new(layer),
                    access: Access::WholeChecked,
                    verification: Verification::BlobDigest,
                })
            }
            Ok(layer) => {
                let verification = check(name, &layer, Some(desc), verify, false)?;
                Ok(Opened { layer: Arc::new(layer), access: Access::Lazy, verification })
            }
        };
    }
    let (layer, verification) = open_checked(name, l.blob.clone(), l.desc.as_ref(), verify)?;
    Ok(Opened { layer: Arc::new(layer), access: Access::Lazy, verification })
}
