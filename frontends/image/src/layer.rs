//! Opening one layer of a source: lazy when it has a TOC, indexed locally when it has none,
//! and verified as its manifest says either way. The policy an embedder gets from
//! [`crate::Images`] and the namespace resolver alike.

use std::sync::Arc;

use crfs_core::{Layer, ReadAt as _};
use crfs_remote::{DiskCache, SourceLayer};

use crate::Blob;
use crate::error::{Error, Result};
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
