//! Images in OCI registries: resolving a reference to its layers, and opening layer blobs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use oci_client::Reference;
use oci_client::manifest::{OciDescriptor, OciImageIndex, OciImageManifest, OciManifest};

use crate::blob::{Blob, HttpBlob, RegistryBlob};
use crate::client::{Client, RepoAuth, RetryPolicy};
use crate::error::{Error, ErrorKind, FetchError, Result};
use crate::fetch::{Endpoint, fetch_size};
use crate::remote::Remote;

pub use crfs_core::oci::{
    MANIFEST_CHECKSUM_ANNOTATIONS, MANIFEST_POSITION_ANNOTATION, TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION,
};

/// One layer of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDesc {
    /// `sha256:…` of the compressed blob.
    pub digest: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// OCI or Docker layer media type.
    pub media_type: String,
    /// The descriptor's annotations (the TOC digest and the zstd:chunked manifest position of
    /// lazy layers among them).
    pub annotations: BTreeMap<String, String>,
}

impl LayerDesc {
    /// The `toc.digest` annotation, if present.
    pub fn toc_digest(&self) -> Option<&str> {
        self.annotations.get(TOC_DIGEST_ANNOTATION).map(String::as_str)
    }

    /// The `toc.digest` annotation parsed, ready for `crfs_core::OpenOptions::expected_toc_digest`.
    /// `Ok(None)` when absent; an error when present but malformed.
    pub fn expected_toc_digest(&self) -> Result<Option<crfs_core::Digest>> {
        match self.toc_digest() {
            None => Ok(None),
            Some(s) => crfs_core::Digest::parse(s)
                .map(Some)
                .ok_or_else(|| Error::invalid(format!("layer {}: bad {TOC_DIGEST_ANNOTATION} {s:?}", self.digest))),
        }
    }

    fn from_oci(d: &OciDescriptor) -> Result<LayerDesc> {
        let size =
            u64::try_from(d.size).map_err(|_| Error::protocol(format!("layer {} has a negative size", d.digest)))?;
        Ok(LayerDesc {
            digest: d.digest.clone(),
            size,
            media_type: d.media_type.clone(),
            annotations: d.annotations.clone().unwrap_or_default().into_iter().collect(),
        })
    }
}

/// The largest image config [`Remote::image_config`] fetches (real ones are a few KiB; one
/// with a long history may reach hundreds).
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// The errno a blob read reports when the registry refused it (401, 403).
const EACCES: i32 = 13;

/// The `rootfs.diff_ids` of an image config (JSON): each layer's uncompressed digest, bottom
/// first.
pub fn config_diff_ids(config: &[u8]) -> Result<Vec<String>> {
    let value: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| Error::protocol(format!("image config: not JSON: {e}")))?;
    let ids = value.pointer("/rootfs/diff_ids").and_then(|v| v.as_array());
    let ids = ids.ok_or_else(|| Error::protocol("image config: no rootfs.diff_ids"))?;
    ids.iter()
        .map(|v| match v.as_str() {
            Some(d) if crfs_core::Digest::parse(d).is_some() => Ok(d.to_owned()),
            _ => Err(Error::protocol(format!("image config: {v} is not a sha256 diff id"))),
        })
        .collect()
}

/// A resolved image: one platform's manifest and its layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The reference as given, normalised (`docker.io/library/…` for short names).
    pub reference: String,
    /// The registry host (`index.docker.io` for Docker Hub), empty for a local OCI layout.
    pub registry: String,
    /// The mirror the image was found at (blobs are read from there too), if any.
    pub mirror: Option<String>,
    /// The repository path within the registry.
    pub repository: String,
    /// Digest of the manifest list / OCI index the reference named, if it named one.
    pub index_digest: Option<String>,
    /// Digest of the image manifest.
    pub manifest_digest: String,
    /// Media type of the image manifest (OCI or Docker v2).
    pub media_type: String,
    /// Digest of the image config blob.
    pub config_digest: String,
    /// Size of the image config blob, as the manifest gives it.
    pub config_size: u64,
    /// The layers, bottom first.
    pub layers: Vec<LayerDesc>,
}

impl Image {
    pub(crate) fn from_manifest(
        reference: String,
        registry: String,
        repository: String,
        index_digest: Option<String>,
        manifest_digest: String,
        m: &OciImageManifest,
    ) -> Result<Image> {
        Ok(Image {
            reference,
            registry,
            mirror: None,
            repository,
            index_digest,
            manifest_digest,
            media_type: m.media_type.clone().unwrap_or_else(|| oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned()),
            config_digest: m.config.digest.clone(),
            config_size: u64::try_from(m.config.size)
                .map_err(|_| Error::protocol(format!("config {} has a negative size", m.config.digest)))?,
            layers: m.layers.iter().map(LayerDesc::from_oci).collect::<Result<_>>()?,
        })
    }
}

/// Parses an image reference (`[REGISTRY/]REPO[:TAG][@DIGEST]`, `docker://` accepted).
pub(crate) fn parse_reference(s: &str) -> Result<Reference> {
    let s = s.strip_prefix("docker://").unwrap_or(s);
    crate::reference::parse(s).map_err(|e| Error::invalid(format!("{s}: not an image reference: {e}")))
}

/// The registry an image reference names (`docker.io` when it names none): the one host that
/// [`crate::Options::credentials`] for this reference must be given for.
pub fn registry_of(reference: &str) -> Result<String> {
    Ok(parse_reference(reference)?.registry().to_owned())
}

/// The error for credentials a registry refused (or asked for), saying how to give them.
pub(crate) fn auth_error(reference: &Reference, source: &str) -> Error {
    let registry = reference.resolve_registry();
    let repo = reference.repository();
    if source == "anonymous access" {
        Error::auth(format!(
            "{registry} requires credentials for {repo}: give them with --creds-file FILE, \
             --authfile FILE, $CRFS_REGISTRY_CREDS, --creds USER, or `docker login {registry}`"
        ))
    } else {
        Error::auth(format!("{registry} refused {source} for {repo} (wrong username or password?)"))
    }
}

impl Client {
    /// The shared auth state of one repository.
    pub(crate) fn repo_auth(&self, reference: &Reference) -> Arc<RepoAuth> {
        let registry = reference.resolve_registry().to_owned();
        let key = format!("{registry}/{}", reference.repository());
        let mut repos = self.repos.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(repos.entry(key).or_insert_with(|| {
            let (creds, source) = self.credentials_for(&registry);
            Arc::new(RepoAuth::new(reference.clone(), creds, source))
        }))
    }

    /// `…/v2/REPO/KIND/NAME` at the reference's host (`blobs` by digest, `manifests` by tag or
    /// digest), with `?ns=` when the host is a mirror.
    pub(crate) fn v2_url(&self, reference: &Reference, kind: &str, name: &str) -> Result<reqwest::Url> {
        let registry = reference.resolve_registry();
        let ns = reference.namespace().map(|ns| format!("?ns={ns}")).unwrap_or_default();
        let url = format!("{}://{registry}/v2/{}/{kind}/{name}{ns}", self.scheme_for(registry), reference.repository());
        reqwest::Url::parse(&url).map_err(|e| Error::invalid(format!("{url}: {e}")))
    }
}

/// The manifest media types asked for: Docker v2 and OCI, images and lists.
const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
];

/// Manifests larger than this are refused (the distribution spec lets registries refuse
/// manifests over 4 MiB; real ones are a few KiB).
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The key a tag's last resolution is kept under in the disk cache: `REGISTRY/REPO:TAG`.
fn tag_key(reference: &Reference) -> Option<String> {
    let tag = reference.tag().filter(|_| reference.digest().is_none())?;
    Some(format!("{}/{}:{tag}", reference.resolve_registry(), reference.repository()))
}

fn parse_manifest(bytes: &[u8], digest: &str) -> Result<OciManifest> {
    serde_json::from_slice(bytes).map_err(|e| Error::protocol(format!("manifest {digest}: {e}")))
}

/// The manifest or index `reference` names, at its host (`resolve_registry`, a mirror when one
/// is set), and its digest: a manifest asked for by digest must have that digest. At most
/// [`MAX_MANIFEST_BYTES`] are read.
/// `policy` replaces the `Remote`'s retry policy when given.
pub(crate) async fn fetch_manifest_checked(
    inner: &Arc<Client>,
    reference: &Reference,
    policy: Option<RetryPolicy>,
) -> Result<(Vec<u8>, String)> {
    let registry = reference.resolve_registry();
    let version = reference.digest().or(reference.tag()).unwrap_or("latest");
    let url = inner.v2_url(reference, "manifests", version)?;
    let auth = inner.repo_auth(reference);
    let source = auth.source;
    let ep = crate::fetch::Endpoint::new(url, Some(auth)).with_policy(policy);
    let bytes = crate::fetch::fetch_manifest(inner, &ep, &MANIFEST_MEDIA_TYPES.join(", "), MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match e.class {
            crate::error::Class::NotFound => {
                Error::not_found(format!("{}: no such image at {registry}", reference.whole()))
            }
            crate::error::Class::Unauthorized => auth_error(reference, source),
            _ => e.to_error(),
        })?;
    let digest = crfs_core::Digest::of(&bytes).to_string();
    if let Some(want) = reference.digest()
        && want != digest
    {
        return Err(Error::protocol(format!("{}: the manifest served has digest {digest}", reference.whole())));
    }
    Ok((bytes, digest))
}

/// The digest of the manifest `reference`'s index lists for the platform of the options.
fn choose_platform(inner: &Client, reference: &Reference, index: &OciImageIndex) -> Result<String> {
    inner.platform.select(&index.manifests).ok_or_else(|| {
        Error::no_platform(format!(
            "{} has no image for {} (it has: {})",
            reference.whole(),
            inner.platform,
            crate::platform::describe(&index.manifests)
        ))
    })
}

fn nested_index(reference: &Reference, inner: &Client) -> Error {
    Error::protocol(format!("{}: the index entry for {} is itself an index", reference.whole(), inner.platform))
}

/// Resolves `reference`: by digest from the disk cache when it holds the manifests; else at
/// each mirror of its registry in turn, then the registry itself. When no host can be reached,
/// a tag falls back to the digest it last resolved to, if the cache holds that image's manifests.
async fn resolve(inner: Arc<Client>, reference: Reference) -> Result<Image> {
    if let Some(digest) = reference.digest()
        && let Some(image) = resolve_cached(&inner, &reference, digest)?
    {
        tracing::debug!(reference = %reference.whole(), "manifests from the disk cache");
        return Ok(image);
    }
    // With a digest to fall back on, an unreachable registry is not waited for long.
    let fallback = match (inner.cache.as_ref(), tag_key(&reference)) {
        (Some(cache), Some(key)) => cache.get_ref(&key).is_some(),
        _ => false,
    };
    let policy = fallback.then(|| quick_policy(&inner.options.retry));
    let resolved = resolve_online(Arc::clone(&inner), reference.clone(), policy).await;
    let (Some(cache), Some(key)) = (inner.cache.as_ref(), tag_key(&reference)) else { return resolved };
    match resolved {
        Ok(image) => {
            cache.put_ref(&key, image.index_digest.as_deref().unwrap_or(&image.manifest_digest));
            Ok(image)
        }
        Err(why) if why.kind() == ErrorKind::Network => {
            let Some((digest, when)) = cache.get_ref(&key) else { return Err(why) };
            let Some(image) = resolve_cached(&inner, &reference, &digest)? else { return Err(why) };
            let why = why.message();
            let age = when.elapsed().map(|d| d.as_secs()).unwrap_or(0);
            tracing::warn!(
                reference = %reference.whole(),
                digest,
                resolved_secs_ago = age,
                "the registry cannot be reached ({why}); using the digest this tag last resolved to"
            );
            Ok(image)
        }
        Err(e) => Err(e),
    }
}

/// The image `digest` (a manifest, or an index narrowed to the platform) from the disk cache
/// alone; `None` when something is not there.
fn resolve_cached(inner: &Client, reference: &Reference, digest: &str) -> Result<Option<Image>> {
    let Some(cache) = inner.cache.as_ref() else { return Ok(None) };
    let Some(bytes) = cache.get_whole(digest, MAX_MANIFEST_BYTES) else { return Ok(None) };
    let (index_digest, manifest, manifest_digest) = match parse_manifest(&bytes, digest)? {
        OciManifest::Image(m) => (None, m, digest.to_owned()),
        OciManifest::ImageIndex(index) => {
            let chosen = choose_platform(inner, reference, &index)?;
            let Some(bytes) = cache.get_whole(&chosen, MAX_MANIFEST_BYTES) else { return Ok(None) };
            match parse_manifest(&bytes, &chosen)? {
                OciManifest::Image(m) => (Some(digest.to_owned()), m, chosen),
                OciManifest::ImageIndex(_) => return Err(nested_index(reference, inner)),
            }
        }
    };
    Image::from_manifest(
        reference.whole(),
        reference.resolve_registry().to_owned(),
        reference.repository().to_owned(),
        index_digest,
        manifest_digest,
        &manifest,
    )
    .map(Some)
}

/// The retry policy for resolving a tag that has a digest to fall back on: two attempts
/// within a second (or less, as `policy` says), instead of the several seconds of backoff a
/// read without a fallback waits before it fails.
fn quick_policy(policy: &RetryPolicy) -> RetryPolicy {
    RetryPolicy {
        deadline: policy.deadline.min(Duration::from_secs(1)),
        max_attempts: policy.max_attempts.min(2),
        ..policy.clone()
    }
}

/// Resolves through each mirror of the reference's registry in turn, then the registry itself,
/// each under `policy` when given (else the `Remote`'s).
async fn resolve_online(inner: Arc<Client>, reference: Reference, policy: Option<RetryPolicy>) -> Result<Image> {
    let mirrors = inner.options.mirrors_of(reference.registry());
    for mirror in mirrors {
        let mut r = reference.clone();
        r.set_mirror_registry(mirror.clone());
        match resolve_at(Arc::clone(&inner), r, policy.clone()).await {
            Ok(mut image) => {
                image.registry = reference.resolve_registry().to_owned();
                image.mirror = Some(mirror);
                return Ok(image);
            }
            Err(e) => tracing::info!(mirror, "mirror failed, trying the next host: {e}"),
        }
    }
    resolve_at(inner, reference, policy).await
}

/// Resolves at one host: `reference.resolve_registry()` (the mirror, when one is set). Every
/// manifest fetched is kept in the disk cache, if there is one.
async fn resolve_at(inner: Arc<Client>, reference: Reference, policy: Option<RetryPolicy>) -> Result<Image> {
    let registry = reference.resolve_registry().to_owned();
    let pull = |r: Reference| {
        let inner = Arc::clone(&inner);
        let policy = policy.clone();
        async move {
            let (bytes, digest) = fetch_manifest_checked(&inner, &r, policy).await?;
            let manifest = parse_manifest(&bytes, &digest)?;
            if let Some(cache) = &inner.cache {
                cache.put_whole(&digest, &bytes);
            }
            Ok((manifest, digest))
        }
    };
    let (manifest, digest) = pull(reference.clone()).await?;
    let (index_digest, manifest, manifest_digest) = match manifest {
        OciManifest::Image(m) => (None, m, digest),
        OciManifest::ImageIndex(index) => {
            let chosen = choose_platform(&inner, &reference, &index)?;
            match pull(reference.clone_with_digest(chosen.clone())).await? {
                (OciManifest::Image(m), _) => (Some(digest), m, chosen),
                (OciManifest::ImageIndex(_), _) => return Err(nested_index(&reference, &inner)),
            }
        }
    };
    Image::from_manifest(
        reference.whole(),
        registry,
        reference.repository().to_owned(),
        index_digest,
        manifest_digest,
        &manifest,
    )
}

impl Remote {
    /// Resolves an image reference to one platform's manifest and its layers: manifest lists
    /// and OCI indexes are narrowed to the platform of the options (default: the host's).
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let reference = parse_reference(reference)?;
        let inner = Arc::clone(&self.inner);
        self.inner.run(resolve(inner, reference), || Error::local("the I/O runtime stopped"))
    }

    /// Opens one layer of a resolved image, at the host (mirror or registry) it came from.
    pub fn open_layer(&self, image: &Image, layer: &LayerDesc) -> Result<RegistryBlob> {
        let mut reference = parse_reference(&image.reference)?;
        if let Some(m) = &image.mirror {
            reference.set_mirror_registry(m.clone());
        }
        self.open_blob_at(reference, &layer.digest, layer.size)
    }

    /// The image's config blob, fetched from where the image came from and checked against
    /// its digest. Configs larger than [`MAX_CONFIG_BYTES`] are refused.
    pub fn image_config(&self, image: &Image) -> Result<Vec<u8>> {
        if image.config_size > MAX_CONFIG_BYTES {
            return Err(Error::protocol(format!(
                "config {}: {} bytes, more than the {MAX_CONFIG_BYTES} accepted",
                image.config_digest, image.config_size
            )));
        }
        let desc = LayerDesc {
            digest: image.config_digest.clone(),
            size: image.config_size,
            media_type: String::new(),
            annotations: BTreeMap::new(),
        };
        let blob = self.open_layer(image, &desc)?;
        let mut bytes = vec![0; image.config_size as usize];
        let mut done = 0;
        while let Some(rest) = bytes.get_mut(done..).filter(|r| !r.is_empty()) {
            match crfs_core::ReadAt::read_at(&blob, done as u64, rest) {
                Ok(0) => return Err(Error::protocol(format!("config {}: short read", image.config_digest))),
                Ok(n) => done += n,
                Err(e) => {
                    let kind = match &e {
                        crfs_core::Error::Io(io) if io.errno == EACCES => ErrorKind::Auth,
                        _ => ErrorKind::Network,
                    };
                    return Err(Error::new(kind, format!("config {}: {e}", image.config_digest)));
                }
            }
        }
        if crfs_core::Digest::parse(&image.config_digest) != Some(crfs_core::Digest::of(&bytes)) {
            return Err(Error::protocol(format!("config {}: the bytes do not match the digest", image.config_digest)));
        }
        Ok(bytes)
    }

    /// Opens a blob of a registry repository by digest and size (nothing is fetched yet).
    /// Mirrors are not consulted: use [`Remote::open_layer`] on a resolved image for that.
    pub fn open_blob(&self, reference: &str, digest: &str, size: u64) -> Result<RegistryBlob> {
        self.open_blob_at(parse_reference(reference)?, digest, size)
    }

    /// Opens a blob of a registry repository by digest alone: its size comes from a HEAD
    /// request (no manifest names it). Mirrors are not consulted.
    pub fn open_blob_unsized(&self, reference: &str, digest: &str) -> Result<RegistryBlob> {
        let mut blob = self.open_blob_at(parse_reference(reference)?, digest, 0)?;
        blob.blob.size = self.blob_size(&blob.blob.ep)?;
        Ok(blob)
    }

    /// The size of the blob at `ep`, by HEAD (or a one-byte GET); a 404 is `NotFound`.
    fn blob_size(&self, ep: &Arc<Endpoint>) -> Result<u64> {
        let inner = Arc::clone(&self.inner);
        let ep2 = Arc::clone(ep);
        self.inner
            .run(async move { fetch_size(&inner, &ep2).await }, || {
                FetchError::permanent("the I/O runtime stopped", String::new())
            })
            .map_err(|e| match e.class {
                crate::error::Class::NotFound => Error::not_found(format!("{}: {e}", ep.url)),
                _ => e.to_error(),
            })
    }

    fn open_blob_at(&self, reference: Reference, digest: &str, size: u64) -> Result<RegistryBlob> {
        if crfs_core::Digest::parse(digest).is_none() {
            return Err(Error::invalid(format!("{digest}: not a sha256 digest")));
        }
        let url = self.inner.v2_url(&reference, "blobs", digest)?;
        let auth = self.inner.repo_auth(&reference);
        Ok(RegistryBlob {
            blob: Blob {
                inner: Arc::clone(&self.inner),
                ep: Arc::new(Endpoint::new(url, Some(auth))),
                size,
                digest: Some(digest.to_owned()),
                ahead: Default::default(),
                fetched: Default::default(),
                cache_hits: Default::default(),
            },
        })
    }

    /// Opens a blob at a plain HTTP(S) URL; its size comes from a HEAD request. `digest`, when
    /// known, lets the disk cache keep its bytes (without it nothing is cached).
    pub fn open_url(&self, url: &str, digest: Option<&str>) -> Result<HttpBlob> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Error::invalid(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid(format!("{url}: only http and https URLs")));
        }
        if let Some(d) = digest
            && crfs_core::Digest::parse(d).is_none()
        {
            return Err(Error::invalid(format!("{d}: not a sha256 digest")));
        }
        let ep = Arc::new(Endpoint::new(parsed, None));
        let size = self.blob_size(&ep)?;
        Ok(HttpBlob {
            blob: Blob {
                inner: Arc::clone(&self.inner),
                ep,
                size,
                digest: digest.map(str::to_owned),
                ahead: Default::default(),
                fetched: Default::default(),
                cache_hits: Default::default(),
            },
        })
    }
}
