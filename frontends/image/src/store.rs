//! The layers of `crfs store`, containers/storage's Additional Layer Store: which layers are
//! served lazily (and verified how), which are declined so the runtime pulls them itself, and
//! the `info` each layer answers with.
//!
//! A layer is served when its manifest says it is lazy (a `toc.digest` or zstd:chunked
//! `manifest-checksum` annotation) and it opens and verifies as [`crate::Images`] would open
//! it. Anything else is declined: a plain gzip layer, an eStargz layer whose manifest lost its
//! annotations (unless verification is off: then it is served unverified), a TOC that does not
//! match its annotation (the runtime then pulls the blob and checks its digest). A registry
//! that refuses the store's credentials answers EACCES; containers/storage treats every
//! failure as "not in the store" and pulls the layer itself with its own credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crfs_remote::{Image, LayerDesc, Remote, UNCOMPRESSED_SIZE_ANNOTATION};
use crfs_vfs::{LayerSource, ResolveError, StoreLayer};

use crate::Blob;
use crate::error::{Error, ErrorKind};
use crate::layer::{Access, OpenedLayer};
use crate::plain::unannotated;
use crate::verify::{Verification, open_checked};

/// containers/storage's `archive.Compression` numbers, as its layer JSON carries them.
const COMPRESSION_GZIP: u8 = 2;
const COMPRESSION_ZSTD: u8 = 4;

/// An image as the store needs it: the manifest's layers and the config's DiffIDs.
struct Resolved {
    image: Image,
    diff_ids: Vec<String>,
}

/// The store's layers, from registries through crfs-remote.
pub struct StoreSource {
    remote: Remote,
    verify: bool,
    background_fetch: bool,
    /// Images by the reference containers/image named them with. A reference resolves again
    /// when a digest not in its manifest is asked for (the tag moved).
    images: Mutex<HashMap<String, Arc<Resolved>>>,
}

impl StoreSource {
    /// A source reading through `remote`, verifying layers when `verify` is set, fetching
    /// whole layers in the background when `background_fetch` is.
    pub fn new(remote: Remote, verify: bool, background_fetch: bool) -> Self {
        StoreSource { remote, verify, background_fetch, images: Mutex::new(HashMap::new()) }
    }

    /// The image `reference` names, holding layer `digest` if it can.
    fn image(&self, reference: &str, digest: &str) -> Result<Arc<Resolved>, Error> {
        let known = self.images.lock().unwrap_or_else(|e| e.into_inner()).get(reference).cloned();
        if let Some(r) = known.filter(|r| r.image.layers.iter().any(|l| l.digest == digest)) {
            return Ok(r);
        }
        let image = self.remote.resolve(reference).map_err(|e| Error::remote(reference, e))?;
        let config = self.remote.image_config(&image).map_err(|e| Error::remote(reference, e))?;
        let diff_ids = crfs_remote::config_diff_ids(&config).map_err(|e| Error::remote(reference, e))?;
        if diff_ids.len() != image.layers.len() {
            let why = format!(
                "{reference}: the manifest has {} layers and the config {} DiffIDs",
                image.layers.len(),
                diff_ids.len()
            );
            return Err(Error::new(ErrorKind::Corrupt, why));
        }
        let resolved = Arc::new(Resolved { image, diff_ids });
        self.images.lock().unwrap_or_else(|e| e.into_inner()).insert(reference.to_owned(), resolved.clone());
        Ok(resolved)
    }
}

/// The layer's JSON as containers/storage's `Layer` reads it from `info`: its compressed and
/// uncompressed digests and sizes and its compression. The uncompressed size is left out when
/// the manifest does not give it (`io.containers.estargz.uncompressed-size`).
fn layer_info(desc: &LayerDesc, diff_id: &str, zstd: bool) -> Vec<u8> {
    // Digests were checked to be `sha256:` and hex, so nothing here needs JSON escaping.
    let mut json = format!(
        "{{\"compressed-diff-digest\":\"{}\",\"compressed-size\":{},\"diff-digest\":\"{diff_id}\"",
        desc.digest, desc.size
    );
    if let Some(size) = desc.annotations.get(UNCOMPRESSED_SIZE_ANNOTATION).and_then(|s| s.parse::<u64>().ok()) {
        json.push_str(&format!(",\"diff-size\":{size}"));
    }
    let compression = if zstd { COMPRESSION_ZSTD } else { COMPRESSION_GZIP };
    json.push_str(&format!(",\"compression\":{compression}}}\n"));
    json.into_bytes()
}

/// A refusal the runtime answers by pulling the layer itself: declined, with why.
fn declined(why: String) -> ResolveError {
    ResolveError::NotFound(why)
}

impl LayerSource for StoreSource {
    type Blob = Blob;

    fn layer(&self, reference: &str, digest: &str) -> Result<StoreLayer<Blob>, ResolveError> {
        let resolved = self.image(reference, digest).map_err(|e| match e.kind() {
            ErrorKind::Corrupt | ErrorKind::Unsupported | ErrorKind::Invalid => declined(e.to_string()),
            _ => e.into(),
        })?;
        let image = &resolved.image;
        let found = image.layers.iter().zip(&resolved.diff_ids).find(|(l, _)| l.digest == digest);
        let Some((desc, diff_id)) = found else {
            return Err(declined(format!("{reference} has no layer {digest}")));
        };
        let name = format!("{reference} layer {digest}");
        if self.verify && unannotated(desc) {
            return Err(declined(format!(
                "{name}: the manifest gives no TOC digest (not eStargz or zstd:chunked, or its annotations were lost)"
            )));
        }
        let blob: Blob = Arc::new(self.remote.open_layer(image, desc).map_err(|e| Error::remote(&name, e))?);
        let (layer, verification) = open_checked(&name, blob, Some(desc), self.verify).map_err(|e| match e.kind() {
            ErrorKind::Corrupt | ErrorKind::Unsupported | ErrorKind::Invalid => declined(e.to_string()),
            _ => e.into(),
        })?;
        let layer = Arc::new(layer);
        let how = match verification {
            Verification::TocDigest => "TOC checked against toc.digest",
            Verification::ManifestChecksum => "TOC checked against manifest-checksum",
            Verification::BlobDigest | Verification::Unchecked => "unverified (--no-verify)",
        };
        tracing::info!(layer = %name, format = layer.format().name(), "lazy: {how}");
        let info = layer_info(desc, diff_id, layer.format().is_zstd());
        let opened = OpenedLayer { name, layer: layer.clone(), of_image: true, access: Access::Lazy, verification };
        crate::prefetch::start(std::slice::from_ref(&opened), self.background_fetch);
        Ok(StoreLayer { layer, info })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_the_json_containers_storage_reads() {
        let mut desc = LayerDesc {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 1234,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            annotations: Default::default(),
        };
        let diff = format!("sha256:{}", "b".repeat(64));
        let json = String::from_utf8(layer_info(&desc, &diff, false)).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"compressed-diff-digest\":\"{}\",\"compressed-size\":1234,\"diff-digest\":\"{diff}\",\"compression\":2}}\n",
                desc.digest
            )
        );
        desc.annotations.insert(UNCOMPRESSED_SIZE_ANNOTATION.into(), "5678".into());
        let json = String::from_utf8(layer_info(&desc, &diff, true)).unwrap();
        assert!(json.ends_with(",\"diff-size\":5678,\"compression\":4}\n"), "{json}");
    }
}
