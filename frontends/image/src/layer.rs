//! Opening one layer of a source: lazy when it has a TOC, indexed locally when it has none,
//! and verified as its manifest says either way. The policy an embedder gets from
//! [`crate::Images`] and the namespace resolver alike.

use std::sync::Arc;

use crfs_core::Layer;
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
    /// From a local eStargz copy made by an earlier open and kept in the disk cache: the
    /// layer has no TOC.
    IndexedCopy,
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
/// in the disk cache.
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
            // Lazy after all, but nothing to check its TOC against.
            Ok(layer) => {
                let verification = check(name, &layer, Some(desc), verify, false)?;
                Ok(Opened { layer: Arc::new(layer), access: Access::Lazy, verification })
            }
        };
    }
    let (layer, verification) = open_checked(name, l.blob.clone(), l.desc.as_ref(), verify)?;
    Ok(Opened { layer: Arc::new(layer), access: Access::Lazy, verification })
}
