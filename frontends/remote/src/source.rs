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

use crfs_core::{FileReadAt, OpenOptions, ReadAt};
use oci_client::manifest::{OciImageManifest, OciManifest};

use crate::error::{Error, Result};
use crate::layout::{
    REF_NAME, blob_path as layout_blob_path, read_blob as read_layout_blob, split_spec as split_layout,
};
use crate::registry::{Image, LayerDesc, parse_reference};
use crate::remote::Remote;

/// What kind of source a spec names (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Url,
    OciLayout,
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
}

impl std::fmt::Debug for SourceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLayer").field("size", &self.blob.size()).field("desc", &self.desc).finish()
    }
}

impl SourceLayer {
    /// Options for `crfs_core::Layer::open_with`: the default limits, and the TOC digest from
    /// the `toc.digest` annotation when `verify` is set and the manifest has one.
    pub fn open_options(&self, verify: bool) -> Result<OpenOptions> {
        let mut o = OpenOptions::default();
        if verify && let Some(d) = &self.desc {
            o.expected_toc_digest = d.expected_toc_digest()?;
        }
        Ok(o)
    }
}

/// A source opened: its layers bottom first, and the image they came from, if any.
#[derive(Debug, Clone)]
pub struct Source {
    pub kind: SourceKind,
    pub image: Option<Image>,
    pub layers: Vec<SourceLayer>,
}

fn open_file(path: &Path) -> Result<Arc<dyn ReadAt + Send + Sync>> {
    FileReadAt::open(path)
        .map(|f| Arc::new(f) as Arc<dyn ReadAt + Send + Sync>)
        .map_err(|e| Error::Local(format!("{}: {e}", path.display())))
}

/// A local blob file as a source (no network, no `Remote` needed).
pub fn open_file_source(path: &Path) -> Result<Source> {
    Ok(Source { kind: SourceKind::File, image: None, layers: vec![SourceLayer { blob: open_file(path)?, desc: None }] })
}

fn parse_manifest(data: &[u8], what: &str) -> Result<OciManifest> {
    serde_json::from_slice(data).map_err(|e| Error::Protocol(format!("{what}: not an image manifest or index: {e}")))
}

impl Remote {
    /// Opens an image from a local OCI image layout (`oci:DIR[:TAG]`).
    pub fn open_layout(&self, spec: &str) -> Result<Source> {
        let (dir, tag) = split_layout(spec);
        let index_path = dir.join("index.json");
        let index_data =
            std::fs::read(&index_path).map_err(|e| Error::Local(format!("{}: {e}", index_path.display())))?;
        let OciManifest::ImageIndex(index) = parse_manifest(&index_data, &index_path.display().to_string())? else {
            return Err(Error::Protocol(format!("{}: not an OCI index", index_path.display())));
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
            return Err(Error::NotFound(match tag {
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
                        return Err(Error::NoPlatform(format!(
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
                    return Err(Error::Protocol(format!("{spec}: nested image indexes")));
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
                    return Err(Error::Protocol(format!("{spec}: layer {} is not {} bytes", l.digest, l.size)));
                }
                Ok(SourceLayer { blob, desc: Some(l.clone()) })
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
                Ok(Source {
                    kind: SourceKind::Url,
                    image: None,
                    layers: vec![SourceLayer { blob: Arc::new(blob), desc: None }],
                })
            }
            SourceKind::OciLayout => self.open_layout(spec),
            SourceKind::Registry => {
                parse_reference(spec)?;
                let image = self.resolve(spec)?;
                let layers = image
                    .layers
                    .iter()
                    .map(|l| {
                        let blob = self.open_layer(&image, l)?;
                        Ok(SourceLayer { blob: Arc::new(blob), desc: Some(l.clone()) })
                    })
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
