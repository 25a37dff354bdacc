//! Verifying a layer as its manifest says: the one place where a TOC is checked against the
//! manifest's annotations.
//!
//! | annotation | checked against | when |
//! |---|---|---|
//! | `containerd.io/snapshot/stargz/toc.digest` | sha256 of the TOC JSON | by crfs-core while opening (`OpenOptions::expected_toc_digest`) |
//! | zstd:chunked `manifest-checksum` | sha256 of the compressed TOC | after opening, when there is no `toc.digest` |
//! | neither | the whole blob against the manifest's layer digest | before use: the layer is fetched once and read from that copy, not lazily (`layer`); with verification off it is read lazily, unchecked |
//!
//! A blob named on its own (a file, a URL) has no manifest and is not checked against one; its
//! chunks are still checked against the TOC's digests when verification is on.

use crfs_core::oci::MANIFEST_CHECKSUM_ANNOTATIONS;
use crfs_core::{Digest, Layer, OpenOptions};
use crfs_remote::LayerDesc;

use crate::Blob;
use crate::error::{Error, ErrorKind, Result};

/// How crfs-image opens every layer: with crfs-core's helper threads (a large TOC parses in
/// two halves at once and hashes beside the index build; a mount is ready sooner), and the
/// TOC digest the manifest names, if any.
pub(crate) fn open_options(expected_toc_digest: Option<Digest>) -> OpenOptions {
    OpenOptions { expected_toc_digest, threads: true, ..OpenOptions::default() }
}

/// How an opened layer's TOC was checked against its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The TOC's sha256 equals the manifest's `toc.digest` annotation.
    TocDigest,
    /// The compressed TOC's sha256 equals zstd:chunked's `manifest-checksum` annotation.
    ManifestChecksum,
    /// A layer without a TOC, fetched whole, checked against the manifest's blob digest and
    /// indexed locally (the index is crfs's own).
    BlobDigest,
    /// Not checked against a manifest: verification is off, or no manifest describes the blob.
    Unchecked,
}

/// Opens `blob` (named `name` in messages) and checks it as `desc` says when `verify` is set.
pub fn open_checked(
    name: &str,
    blob: Blob,
    desc: Option<&LayerDesc>,
    verify: bool,
) -> Result<(Layer<Blob>, Verification)> {
    let expected = match desc.filter(|_| verify) {
        Some(d) => d.expected_toc_digest().map_err(|e| Error::remote(name, e))?,
        None => None,
    };
    let toc_checked = expected.is_some();
    let layer = Layer::open_with(blob, &open_options(expected)).map_err(|e| Error::layer(name, e))?;
    let verification = check(name, &layer, desc, verify, toc_checked)?;
    Ok((layer, verification))
}

/// Checks an opened layer's TOC against `desc` when `verify` is set and the TOC was not
/// already checked against `toc.digest` (`toc_checked`): zstd:chunked's manifest-checksum, else
/// the layer is refused.
pub fn check(
    name: &str,
    layer: &Layer<Blob>,
    desc: Option<&LayerDesc>,
    verify: bool,
    toc_checked: bool,
) -> Result<Verification> {
    let verification = match (verify, desc, toc_checked) {
        (_, _, true) => Verification::TocDigest,
        (true, Some(desc), false) => {
            match MANIFEST_CHECKSUM_ANNOTATIONS.iter().find_map(|k| desc.annotations.get(*k)) {
                Some(c) if Digest::parse(c) == Some(layer.toc_compressed_digest()) => Verification::ManifestChecksum,
                Some(c) => {
                    let why = format!("{name}: TOC does not match the manifest-checksum annotation {c}");
                    return Err(Error::new(ErrorKind::Corrupt, why));
                }
                None => {
                    let why = format!(
                        "{name}: the manifest gives no TOC digest to verify this layer against (toc.digest \
                         annotation); pass --no-verify to use it unverified"
                    );
                    return Err(Error::new(ErrorKind::Unsupported, why));
                }
            }
        }
        _ => Verification::Unchecked,
    };
    tracing::info!(layer = %name, format = layer.format().name(), toc_digest = %layer.toc_digest(), ?verification, "opened layer");
    Ok(verification)
}
