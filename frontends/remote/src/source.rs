//! Mount sources as a user writes them, turned into layers.
//!
//! | spec | kind |
//! |---|---|
//! | `http://…`, `https://…` | one blob at a URL |
//! | `oci:DIR[:TAG]` | an image in a local OCI image layout |
//! | an existing local path | one local blob file |
//! | anything else (`[REGISTRY/]REPO[:TAG][@DIGEST]`, `docker://` optional) | an image in a registry |

use std::path::Path;
use std::sync::Arc;

use crfs_core::{FileReadAt, ReadAt};
use oci_client::manifest::{OciImageManifest, OciManifest};

use crate::blob::RegistryBlob;
use crate::error::{Error, Result};
use crate::layout::{
    REF_NAME, blob_path as layout_blob_path, read_blob as read_layout_blob, split_spec as split_layout,
};
use crate::registry::{Image, LayerDesc, parse_reference};
use crate::remote::Remote;

/// What kind of source a spec names (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// One local blob file.
    File,
    /// One blob at an HTTP(S) URL.
    Url,
    /// An image in a local OCI image layout (`oci:DIR[:TAG]`).
    OciLayout,
    /// An image in a registry.
    Registry,
}

impl SourceKind {
    /// Classifies a spec without touching the network. Local files need no [`Remote`].
    pub fn of(spec: &str) -> SourceKind {
        if spec.starts_with("http://") || spec.starts_with("https://") {
            SourceKind::Url
        } else if spec.starts_with("oci:") {
            SourceKind::OciLayout
        } else if spec.starts_with("docker://") {
            SourceKind::Registry
        } else if Path::new(spec).exists() || spec.starts_with('/') || spec.starts_with('.') {
            SourceKind::File
        } else {
            SourceKind::Registry
        }
    }
}

/// One layer of a source.
#[derive(Clone)]
pub struct SourceLayer {
    /// The blob bytes.
    pub blob: Arc<dyn ReadAt + Send + Sync>,
    /// The manifest's descriptor, for images (registry or OCI layout).
    pub desc: Option<LayerDesc>,
    /// The same blob when it is in a registry, for reads that bypass the range cache.
    registry: Option<Arc<RegistryBlob>>,
}

impl std::fmt::Debug for SourceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLayer").field("size", &self.blob.size()).field("desc", &self.desc).finish()
    }
}

/// Whole-blob copies read this much per request.
const COPY_PIECE: u64 = 8 << 20;

impl SourceLayer {
    /// A layer of `blob`, described by `desc` when a manifest names it.
    pub fn new(blob: Arc<dyn ReadAt + Send + Sync>, desc: Option<LayerDesc>) -> SourceLayer {
        SourceLayer { blob, desc, registry: None }
    }

    /// A layer in a registry.
    pub fn in_registry(blob: RegistryBlob, desc: Option<LayerDesc>) -> SourceLayer {
        let blob = Arc::new(blob);
        SourceLayer { blob: blob.clone(), desc, registry: Some(blob) }
    }

    /// Copies the whole blob to `out`, a piece of at most 8 MiB in memory at a time, and checks
    /// it against the descriptor's digest (an error after the last byte if it does not match:
    /// the caller must then discard what it wrote). Registry blobs are read past the range
    /// cache, since the copy is kept elsewhere. Returns the bytes copied.
    pub fn copy_whole(&self, out: &mut dyn std::io::Write) -> Result<u64> {
        let size = self.blob.size();
        let mut hasher = crfs_core::digest::Hasher::default();
        let mut at = 0;
        let mut buf = Vec::new();
        while at < size {
            let end = at.saturating_add(COPY_PIECE).min(size);
            match &self.registry {
                Some(r) => buf = r.read_uncached(at, end)?,
                None => {
                    buf.resize(usize::try_from(end - at).unwrap_or(0), 0);
                    let n =
                        self.blob.read_at(at, &mut buf).map_err(|e| Error::local(format!("reading the blob: {e}")))?;
                    buf.truncate(n);
                }
            }
            if buf.is_empty() {
                return Err(Error::protocol(format!("the blob ended at {at} of {size} bytes")));
            }
            hasher.update(&buf);
            out.write_all(&buf).map_err(|e| Error::local(format!("writing a copy of the blob: {e}")))?;
            at += buf.len() as u64;
        }
        if let Some(d) = &self.desc {
            let got = hasher.finish();
            if crfs_core::Digest::parse(&d.digest) != Some(got) {
                return Err(Error::protocol(format!("blob {} does not match its digest (got {got})", d.digest)));
            }
        }
        Ok(size)
    }
}

/// A source opened: its layers bottom first, and the image they came from, if any.
#[derive(Debug, Clone)]
pub struct Source {
    /// What the spec named.
    pub kind: SourceKind,
    /// The image, for an OCI layout or a registry; `None` for a single blob.
    pub image: Option<Image>,
    /// The layers, bottom first (one for a single blob).
    pub layers: Vec<SourceLayer>,
}

fn open_file(path: &Path) -> Result<Arc<dyn ReadAt + Send + Sync>> {
    FileReadAt::open(path)
        .map(|f| Arc::new(f) as Arc<dyn ReadAt + Send + Sync>)
        .map_err(|e| Error::local(format!("{}: {e}", path.display())))
}

/// A local blob file as a source (no network, no `Remote` needed).
pub fn open_file_source(path: &Path) -> Result<Source> {
    Ok(Source { kind: SourceKind::File, image: None, layers: vec![SourceLayer::new(open_file(path)?, None)] })
}

fn parse_manifest(data: &[u8], what: &str) -> Result<OciManifest> {
    serde_json::from_slice(data).map_err(|e| Error::protocol(format!("{what}: not an image manifest or index: {e}")))
}

impl Remote {
    /// Opens an image from a local OCI image layout (`oci:DIR[:TAG]`).
    pub fn open_layout(&self, spec: &str) -> Result<Source> {
        let (dir, tag) = split_layout(spec);
        let index_path = dir.join("index.json");
        let index_data =
            std::fs::read(&index_path).map_err(|e| Error::local(format!("{}: {e}", index_path.display())))?;
        let OciManifest::ImageIndex(index) = parse_manifest(&index_data, &index_path.display().to_string())? else {
            return Err(Error::protocol(format!("{}: not an OCI index", index_path.display())));
        };
        let entry = match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|m| m.annotations.as_ref().and_then(|a| a.get(REF_NAME)).is_some_and(|n| n == t)),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => None,
        };
        let Some(entry) = entry else {
            return Err(Error::not_found(match tag {
                Some(t) => format!("{}: no image tagged {t:?}", dir.display()),
                None => format!("{}: several images; name one as oci:DIR:TAG", dir.display()),
            }));
        };
        let mut digest = entry.digest.clone();
        let mut index_digest = None;
        let manifest: OciImageManifest;
        let mut depth = 0;
        loop {
            match parse_manifest(&read_layout_blob(&dir, &digest)?, &digest)? {
                OciManifest::Image(m) => {
                    manifest = m;
                    break;
                }
                OciManifest::ImageIndex(idx) if depth == 0 => {
                    let Some(chosen) = self.inner.platform.select(&idx.manifests) else {
                        return Err(Error::no_platform(format!(
                            "{spec} has no image for {} (it has: {})",
                            self.inner.platform,
                            crate::platform::describe(&idx.manifests)
                        )));
                    };
                    index_digest = Some(digest);
                    digest = chosen;
                    depth += 1;
                }
                OciManifest::ImageIndex(_) => {
                    return Err(Error::protocol(format!("{spec}: nested image indexes")));
                }
            }
        }
        let image = Image::from_manifest(
            spec.to_owned(),
            String::new(),
            dir.display().to_string(),
            index_digest,
            digest,
            &manifest,
        )?;
        let layers = image
            .layers
            .iter()
            .map(|l| {
                let blob = open_file(&layout_blob_path(&dir, &l.digest)?)?;
                if blob.size() != l.size {
                    return Err(Error::protocol(format!("{spec}: layer {} is not {} bytes", l.digest, l.size)));
                }
                Ok(SourceLayer::new(blob, Some(l.clone())))
            })
            .collect::<Result<_>>()?;
        Ok(Source { kind: SourceKind::OciLayout, image: Some(image), layers })
    }

    /// Opens a source as written on a command line (see the module docs): a local blob file,
    /// a blob URL, an OCI layout, or an image in a registry (resolved; layers opened lazily,
    /// nothing fetched yet but the manifests).
    pub fn open_source(&self, spec: &str) -> Result<Source> {
        match SourceKind::of(spec) {
            SourceKind::File => open_file_source(Path::new(spec)),
            SourceKind::Url => {
                let blob = self.open_url(spec, None)?;
                Ok(Source { kind: SourceKind::Url, image: None, layers: vec![SourceLayer::new(Arc::new(blob), None)] })
            }
            SourceKind::OciLayout => self.open_layout(spec),
            SourceKind::Registry => {
                parse_reference(spec)?;
                let image = self.resolve(spec)?;
                let layers = image
                    .layers
                    .iter()
                    .map(|l| Ok(SourceLayer::in_registry(self.open_layer(&image, l)?, Some(l.clone()))))
                    .collect::<Result<_>>()?;
                Ok(Source { kind: SourceKind::Registry, image: Some(image), layers })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_layout_specs() {
        assert_eq!(SourceKind::of("https://x/y"), SourceKind::Url);
        assert_eq!(SourceKind::of("oci:/tmp/x:v1"), SourceKind::OciLayout);
        assert_eq!(SourceKind::of("127.0.0.1:5000/a/b:v1"), SourceKind::Registry);
        assert_eq!(SourceKind::of("docker://busybox"), SourceKind::Registry);
        assert_eq!(SourceKind::of("./blob.esgz"), SourceKind::File);
    }
}
