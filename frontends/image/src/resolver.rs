//! The /crfs namespace's resolver: `image/HOST/REPO:TAG` and `layer/HOST/REPO@DIGEST` paths
//! to images and layers in registries, opened as [`crate::Images`] opens them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crfs_core::{Layer, ReadAt as _};
use crfs_remote::{LayerDesc, Remote, SourceLayer};
use crfs_vfs::{ResolveError, ResolvedImage, Resolver, Version};

use crate::Blob;
use crate::error::Error;
use crate::layer;
use crate::plain::PlainLayers;

/// The largest layer a `layer/…@sha256:` path no manifest describes is fetched whole to be
/// checked against its digest; a bigger one is read lazily, its chunks checked against its
/// (unverified) TOC.
pub(crate) const WHOLE_FETCH_LIMIT: u64 = 256 << 20;

/// Manifest descriptors of layers seen in resolved images, by (host/repo, blob digest).
type SeenLayers = HashMap<(String, String), LayerDesc>;

/// Resolves namespace paths to images and layers in registries.
pub struct RegistryResolver {
    remote: Remote,
    verify: bool,
    plain: Arc<PlainLayers>,
    /// Descriptors of layers seen in resolved images: a layer opened again by digest (after a
    /// release, or as `layer/...@digest`) is then checked against its manifest's annotation.
    /// Descriptors are small; the layers themselves are not kept here.
    seen: Mutex<SeenLayers>,
}

impl RegistryResolver {
    /// A resolver over `remote`, verifying layers when `verify` is set, sharing `plain`'s
    /// indexed copies.
    pub fn new(remote: Remote, verify: bool, plain: Arc<PlainLayers>) -> Self {
        RegistryResolver { remote, verify, plain, seen: Mutex::new(HashMap::new()) }
    }

    fn open(&self, name: &str, l: &SourceLayer) -> Result<Arc<Layer<Blob>>, Error> {
        let cache = self.remote.disk_cache();
        layer::open(&self.plain, name, l, self.verify, cache.as_deref()).map(|o| o.layer)
    }
}

/// A registry error as the namespace hears it (not found, denied, failed).
fn resolve_error(e: crfs_remote::Error) -> ResolveError {
    use crfs_remote::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NoPlatform => ResolveError::NotFound(e.message().to_owned()),
        ErrorKind::Auth => ResolveError::Denied(e.message().to_owned()),
        _ => ResolveError::Failed(e.to_string()),
    }
}

impl Resolver for RegistryResolver {
    type Blob = Blob;

    fn image(&self, host: &str, repo: &str, version: &Version) -> Result<ResolvedImage<Blob>, ResolveError> {
        let spec = match version {
            Version::Tag(t) => format!("{host}/{repo}:{t}"),
            Version::Digest(d) => format!("{host}/{repo}@{d}"),
        };
        let source = self.remote.open_source(&spec).map_err(resolve_error)?;
        let digest = source.image.as_ref().map(|i| i.manifest_digest.clone()).unwrap_or_default();
        let named: Vec<(String, &SourceLayer)> = source
            .layers
            .iter()
            .map(|l| {
                let layer_digest = l.desc.as_ref().map(|d| d.digest.as_str()).unwrap_or_default();
                (format!("{spec} layer {layer_digest}"), l)
            })
            .collect();
        {
            // Known from the manifest whether or not they open now.
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for desc in source.layers.iter().filter_map(|l| l.desc.as_ref()) {
                seen.insert((format!("{host}/{repo}"), desc.digest.clone()), desc.clone());
            }
        }
        let cache = self.remote.disk_cache();
        let opened = layer::open_all(&self.plain, &named, self.verify, cache.as_deref())?;
        let layers = opened
            .into_iter()
            .zip(&source.layers)
            .map(|(o, l)| (l.desc.as_ref().map(|d| d.digest.clone()).unwrap_or_default(), o.layer))
            .collect();
        Ok(ResolvedImage { digest, layers })
    }

    /// A layer by digest. One seen in a manifest is verified as that manifest says. Any other
    /// has its size from a HEAD request and no annotation to check its TOC against: with
    /// verification on, up to `WHOLE_FETCH_LIMIT` (256 MiB) it is fetched whole once and checked
    /// against the digest its path names; a bigger one is read lazily, its chunks checked
    /// against the TOC's digests (a log line says so), which catches corrupt data but not a
    /// forged TOC.
    fn layer(&self, host: &str, repo: &str, digest: &str) -> Result<Arc<Layer<Blob>>, ResolveError> {
        let repo_ref = format!("{host}/{repo}");
        let name = format!("{repo_ref}@{digest}");
        let desc =
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&(repo_ref.clone(), digest.to_string())).cloned();
        let source = match desc {
            Some(desc) => {
                let blob = self.remote.open_blob(&repo_ref, digest, desc.size).map_err(resolve_error)?;
                SourceLayer::in_registry(blob, Some(desc))
            }
            None => {
                let blob = self.remote.open_blob_unsized(&repo_ref, digest).map_err(resolve_error)?;
                if self.verify && blob.size() <= WHOLE_FETCH_LIMIT {
                    // The path names the blob's digest: small enough, it is fetched once and
                    // checked against it (`layer::open`), then read from its own TOC.
                    let desc = LayerDesc {
                        digest: digest.to_owned(),
                        size: blob.size(),
                        media_type: String::new(),
                        annotations: Default::default(),
                    };
                    return Ok(self.open(&name, &SourceLayer::in_registry(blob, Some(desc)))?);
                }
                if self.verify {
                    tracing::warn!(layer = %name, "no manifest names this layer: its TOC is not verified; chunks are checked against the TOC's digests");
                } else {
                    tracing::warn!(layer = %name, "no manifest names this layer, and --no-verify: nothing is verified");
                }
                SourceLayer::in_registry(blob, None)
            }
        };
        Ok(self.open(&name, &source)?)
    }
}
