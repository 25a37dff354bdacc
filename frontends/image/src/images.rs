//! [`Images`]: sources as a user names them, opened into layers and trees to serve.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crfs_core::Digest;
use crfs_remote::{Remote, SourceKind};
use crfs_vfs::{LayerFs, LayerStoreFs, MergedFs, NamespaceFs, NamespaceOptions, ReadOnlyFs, StoreOptions};

use crate::credentials::{GivenCredentials, scope_credentials};
use crate::error::{Error, ErrorKind, Result};
use crate::layer::{self, OpenedLayer};
use crate::plain::PlainLayers;
use crate::prefetch;
use crate::resolver::RegistryResolver;
use crate::store::StoreSource;

/// How images are opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// How registries and servers are reached: platform, TLS, mirrors, disk cache, coalescing.
    /// Its `credentials` are replaced by `credentials` scoped to the references opened.
    pub remote: crfs_remote::Options,
    /// Credentials given explicitly, for the one registry the references opened name.
    pub credentials: Option<GivenCredentials>,
    /// Check each layer's TOC against its manifest (see `verify`) and, where a front-end
    /// reads, chunks against their digests.
    pub verify: bool,
    /// After the prioritized files, fetch whole layers into the disk cache in the background,
    /// at low priority.
    pub background_fetch: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { remote: crfs_remote::Options::default(), credentials: None, verify: true, background_fetch: false }
    }
}

impl Options {
    /// The registry client options for opening `references` (image references): the given
    /// credentials go to the one registry those name, and to no other host.
    pub fn remote_options(&self, references: &[&str]) -> Result<crfs_remote::Options> {
        let credentials = scope_credentials(self.credentials.as_ref(), references)?;
        Ok(crfs_remote::Options { credentials, ..self.remote.clone() })
    }

    /// A registry client for `references`.
    fn client(&self, references: &[&str]) -> Result<Remote> {
        let options = self.remote_options(references)?;
        Ok(Remote::new(options)?)
    }
}

/// The file, in the disk cache directory, where the namespace keeps what re-resolves NFS
/// handles after a restart.
const NAMESPACE_REFS: &str = "namespace-refs";

/// Opens images: the entry point of this crate. It owns the state of plain layers (indexed
/// copies being made), shared by everything it opens.
#[derive(Debug)]
pub struct Images {
    options: Options,
    plain: Arc<PlainLayers>,
}

impl Images {
    /// Opens images with `options`.
    pub fn new(options: Options) -> Images {
        Images { options, plain: Arc::new(PlainLayers::default()) }
    }

    /// The options images are opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Opens every source (a blob file, a blob URL, `oci:DIR[:TAG]`, a registry reference),
    /// bottom first; an image contributes all its layers. Starts prefetching each layer's
    /// prioritized files, and with `background_fetch` whole layers.
    pub fn open(&self, specs: &[String]) -> Result<Vec<OpenedLayer>> {
        let verify = self.options.verify;
        let mut remote: Option<Remote> = None;
        let references: Vec<&str> =
            specs.iter().map(String::as_str).filter(|s| SourceKind::of(s) == SourceKind::Registry).collect();
        let mut sources = Vec::new();
        for spec in specs {
            let source = if SourceKind::of(spec) == SourceKind::File {
                crfs_remote::open_file_source(Path::new(spec))?
            } else {
                let r = match remote.take() {
                    Some(r) => r,
                    None => self.options.client(&references)?,
                };
                let source = r.open_source(spec).map_err(|e| Error::remote(spec, e))?;
                remote = Some(r);
                source
            };
            sources.push((spec, source));
        }
        // Every layer of every source, opened side by side (`layer::open_all`).
        let mut to_open: Vec<(String, &crfs_remote::SourceLayer)> = Vec::new();
        let mut of_image = Vec::new();
        for (spec, source) in &sources {
            for l in &source.layers {
                let name = match &l.desc {
                    Some(d) => format!("{spec} layer {}", d.digest),
                    None => (*spec).clone(),
                };
                to_open.push((name, l));
                of_image.push(source.image.is_some());
            }
        }
        let cache = remote.as_ref().and_then(Remote::disk_cache);
        let opened = layer::open_all(&self.plain, &to_open, verify, cache.as_deref())?;
        let out: Vec<OpenedLayer> = opened
            .into_iter()
            .zip(to_open)
            .zip(of_image)
            .map(|((opened, (name, _)), of_image)| OpenedLayer {
                layer: opened.layer,
                name,
                of_image,
                access: opened.access,
                verification: opened.verification,
            })
            .collect();
        if out.is_empty() {
            return Err(Error::new(ErrorKind::NotFound, format!("{}: no layers", specs.join(" "))));
        }
        prefetch::start(&out, self.options.background_fetch);
        Ok(out)
    }

    /// The Additional Layer Store for podman, CRI-O and buildah (see `crfs_vfs::LayerStoreFs`):
    /// layers resolved on first lookup by the reference the runtime pulls, lazy ones served,
    /// others declined.
    pub fn store(&self, options: StoreOptions) -> Result<LayerStoreFs<StoreSource>> {
        let source = StoreSource::new(self.options.client(&[])?, self.options.verify, self.options.background_fetch);
        Ok(LayerStoreFs::new(source, options))
    }

    /// The /crfs namespace over the registries, each image and layer resolved on first
    /// lookup, with a thread that releases idle ones (`options.idle_release`). With a disk
    /// cache, what re-resolves NFS handles after a restart is kept in it.
    pub fn namespace(&self, options: NamespaceOptions) -> Result<Arc<NamespaceFs<RegistryResolver>>> {
        if options.fs.overlay_whiteouts {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "--overlay-whiteouts applies to a single layer, not to the namespace",
            ));
        }
        let resolver = RegistryResolver::new(self.options.client(&[])?, self.options.verify, self.plain.clone());
        let idle = options.idle_release;
        let ns = Arc::new(NamespaceFs::new(resolver, options));
        if let Some(dir) = self.options.remote.cache.as_ref().map(|c| &c.dir) {
            let file = dir.join(NAMESPACE_REFS);
            let loaded = std::fs::create_dir_all(dir).and_then(|()| ns.remember_in(&file));
            match loaded {
                Ok(n) => tracing::info!(file = %file.display(), entries = n, "namespace references loaded"),
                Err(e) => tracing::warn!(file = %file.display(), "cannot keep namespace references: {e}"),
            }
        }
        if let Some(idle) = idle {
            let weak = Arc::downgrade(&ns);
            let period = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
            let sweeper = move || {
                loop {
                    std::thread::sleep(period);
                    let Some(ns) = weak.upgrade() else { return };
                    let released = ns.release_idle();
                    if released > 0 {
                        tracing::debug!(released, loaded = ns.loaded_trees(), "released idle images");
                    }
                }
            };
            std::thread::Builder::new()
                .name("crfs-release".into())
                .spawn(sweeper)
                .map_err(|e| Error::io("starting the release thread", e))?;
        }
        Ok(ns)
    }
}

/// One tree to serve: a blob on its own as the layer holds it; an image's layers, or several
/// sources, merged (whiteouts applied). With the tree's identity: the layer's TOC digest, or a
/// digest of the layers' TOC digests (`crfs_vfs::image_identity`).
pub fn tree(layers: Vec<OpenedLayer>, options: crfs_vfs::Options) -> Result<(Box<dyn ReadOnlyFs>, Digest)> {
    if layers.len() == 1 && !layers.iter().any(|l| l.of_image) {
        let layer =
            layers.into_iter().map(|l| l.layer).next().ok_or_else(|| Error::new(ErrorKind::NotFound, "no layers"))?;
        let identity = layer.toc_digest();
        return Ok((Box::new(LayerFs::new(layer, options)), identity));
    }
    if options.overlay_whiteouts {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "--overlay-whiteouts applies to a single layer; a merged image applies its whiteouts",
        ));
    }
    let identity = crfs_vfs::image_identity(layers.iter().map(|l| l.layer.toc_digest()));
    let fs = MergedFs::new(layers.into_iter().map(|l| l.layer).collect(), options)
        .map_err(|e| Error::new(ErrorKind::Corrupt, format!("merging layers: {e:?}")))?;
    Ok((Box::new(fs), identity))
}
