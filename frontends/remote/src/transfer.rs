//! Whole images between a registry and a local OCI image layout, for `crfs image convert`.
//!
//! [`Remote::pull_image`] copies an image (an index with every platform, or one manifest) into
//! a layout: manifests and indexes byte for byte as the registry serves them (so their digests
//! are kept), configs and layers streamed to files; every one checked against the digest and
//! size that names it before it is renamed into place. It can leave layers out ([`LeaveOut`]):
//! a conversion leaves out the layers it keeps as they are, when it pushes to a registry.
//!
//! [`Remote::push_image`] pushes an image of a layout: first the blobs (skipped when a HEAD
//! finds them; mounted from the source repository when it is on the same registry; else
//! uploaded, after being fetched from the source image if the layout lacks them), then each platform's manifest by digest, then the top manifest or
//! index under the tag (or by digest). The tag is written last, so a failure leaves nothing
//! new under it.
//!
//! Both go through crfs's own client, as a mount's reads do: tokens (pull scope; pull,push
//! scope and the source repository's pull scope to push) and every answer read under a bound,
//! credentials never sent off the registry's origin, the retries of [`crate::RetryPolicy`].
//! A pull resumes a cut body where it stopped. A push uploads each blob as the Docker client
//! does: `POST` to open a session (asking to mount the blob from the source repository when
//! that is on the same registry), one streamed `PATCH`, `PUT ?digest=` to commit; a session that
//! fails part way is started again, at most three times.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use oci_client::Reference;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;

use crate::client::{Client, RepoAuth};
use crate::error::{Class, Error, ErrorKind, FetchError, Result};
use crate::fetch::{self, Call, Endpoint, StreamError};
use crate::layout;
use crate::registry::{auth_error, parse_reference};
use crate::remote::Remote;

/// Manifest media types asked for and understood.
const MANIFEST_TYPES: [&str; 4] =
    [OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
/// Indexes nested deeper than this are refused.
const MAX_DEPTH: usize = 4;
/// Bytes read from a file per upload piece.
const UPLOAD_PIECE: usize = 1 << 20;

/// A manifest, index or blob as a descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The media type the descriptor gives.
    pub media_type: String,
    /// `sha256:…`
    pub digest: String,
    /// The blob's length in bytes.
    pub size: u64,
}

/// How a blob got where it had to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Downloaded into the layout.
    Pulled,
    /// Uploaded to the registry.
    Uploaded,
    /// The registry had it already (HEAD).
    Existed,
    /// Mounted from the source repository of the same registry.
    Mounted,
}

/// What a transfer reports as it goes.
pub enum TransferEvent<'a> {
    /// A blob starts moving: its digest and size.
    Start {
        /// The blob's digest.
        digest: &'a str,
        /// Its length.
        size: u64,
    },
    /// Bytes of a blob moved so far (several blobs may be moving at once).
    Progress {
        /// The blob's digest.
        digest: &'a str,
        /// Bytes moved.
        done: u64,
        /// The blob's length.
        total: u64,
    },
    /// A blob is where it has to be.
    Done {
        /// The blob's digest.
        digest: &'a str,
        /// Its length.
        size: u64,
        /// Whether it was downloaded, uploaded, already there, or mounted.
        how: Moved,
    },
}

/// Receives [`TransferEvent`]s (progress bars, output lines).
pub type TransferEvents = Arc<dyn Fn(&TransferEvent<'_>) + Send + Sync>;

/// How many blobs [`Remote::pull_image`] and [`Remote::push_image`] move at once (skopeo's
/// default is 6; registries and their storage serve several streams faster than one, over
/// long links most of all).
pub const TRANSFER_STREAMS: usize = 4;

/// Layers [`Remote::pull_image`] leaves at the registry: called with each layer's descriptor as
/// its manifest has it (`mediaType`, `digest`, `size`, `annotations`), true to leave it out. A
/// layer is fetched all the same when another descriptor of the same digest is not left out.
pub type LeaveOut = Arc<dyn Fn(&serde_json::Value) -> bool + Send + Sync>;

/// What [`Remote::pull_image`] fetched.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image as the layout's `index.json` names it.
    pub top: BlobRef,
    /// Manifests and indexes fetched.
    pub manifests: usize,
    /// Distinct blobs (configs, layers) downloaded, and their bytes.
    pub blobs: usize,
    /// The bytes of those blobs.
    pub bytes: u64,
    /// Distinct layers left at the registry (see [`LeaveOut`]).
    pub left_out: usize,
    /// The mirror the image came from, or `None` for the registry itself.
    pub mirror: Option<String>,
}

/// What [`Remote::push_image`] did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// The reference written last (`HOST/REPO:TAG` or `HOST/REPO@DIGEST`).
    pub pushed: String,
    /// Blobs uploaded, and their bytes.
    pub uploaded: usize,
    /// The bytes of those blobs.
    pub uploaded_bytes: u64,
    /// Of those, the blobs the layout did not hold, fetched from the source image first.
    pub fetched: usize,
    /// Blobs the registry already had.
    pub existed: usize,
    /// Blobs mounted from the source repository.
    pub mounted: usize,
    /// Manifests and indexes pushed.
    pub manifests: usize,
}

/// Whether `spec` is written as a registry reference: `docker://REF`, or `HOST[:PORT]/REPO…`
/// whose first component is a host (has a `.` or a `:`, or is `localhost`).
pub fn is_registry_reference(spec: &str) -> bool {
    if spec.starts_with("docker://") {
        return true;
    }
    match spec.split_once('/') {
        Some((host, repo)) => {
            !repo.is_empty() && !host.starts_with('.') && (host.contains(['.', ':']) || host == "localhost")
        }
        None => false,
    }
}

/// A reference split into the registry's view, and whether it names a tag or digest itself
/// (oci-client fills in `latest` otherwise).
fn reference_of(spec: &str) -> Result<(Reference, bool)> {
    let bare = spec.strip_prefix("docker://").unwrap_or(spec);
    let last = bare.rsplit('/').next().unwrap_or(bare);
    let explicit = last.contains([':', '@']);
    Ok((parse_reference(spec)?, explicit))
}

/// A destination reference: a tag or none, never a digest.
fn destination(spec: &str) -> Result<(Reference, bool)> {
    let (parsed, explicit) = reference_of(spec)?;
    if parsed.digest().is_some() {
        return Err(Error::invalid(format!(
            "{spec}: a destination is HOST/REPO[:TAG]; the pushed image's digest is only known once converted"
        )));
    }
    Ok((parsed, explicit))
}

/// The media type of a manifest or index: its `mediaType`, else guessed from its fields.
fn media_type_of(value: &serde_json::Value) -> Option<String> {
    match value.get("mediaType").and_then(|m| m.as_str()) {
        Some(m) => Some(m.to_owned()),
        None if value.get("manifests").is_some() => Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned()),
        None if value.get("config").is_some() => Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
        None => None,
    }
}

fn is_index(media: &str) -> bool {
    media == OCI_IMAGE_INDEX_MEDIA_TYPE || media == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

/// A descriptor of a manifest: digest (sha256 only) and size.
fn descriptor(v: &serde_json::Value, default_media: &str, parent: &str) -> Result<BlobRef> {
    let digest = v.get("digest").and_then(|d| d.as_str()).unwrap_or_default();
    if crfs_core::Digest::parse(digest).is_none() {
        return Err(Error::protocol(format!("{parent}: descriptor with digest {digest:?}: only sha256 is supported")));
    }
    let size = v
        .get("size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| Error::protocol(format!("{parent}: descriptor {digest} has no size")))?;
    let media_type = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or(default_media).to_owned();
    Ok(BlobRef { media_type, digest: digest.to_owned(), size })
}

/// What a manifest or index points to.
struct Children {
    /// Child manifests (of an index).
    manifests: Vec<BlobRef>,
    /// A manifest's config, then its layers.
    blobs: Vec<BlobRef>,
    /// The digests of the layers that the pull's [`LeaveOut`] picked.
    left_out: HashSet<String>,
}

/// Reads a manifest or index (`data`, described by `node`) once: its children, and the layers
/// `leave_out` picks.
fn children(data: &[u8], node: &BlobRef, leave_out: Option<&LeaveOut>) -> Result<Children> {
    let what = &node.digest;
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| Error::protocol(format!("{what}: not JSON: {e}")))?;
    let list = |key: &str| value.get(key).and_then(|v| v.as_array()).map(Vec::as_slice).unwrap_or_default();
    if is_index(&node.media_type) {
        let manifests =
            list("manifests").iter().map(|m| descriptor(m, OCI_IMAGE_MEDIA_TYPE, what)).collect::<Result<Vec<_>>>()?;
        return Ok(Children { manifests, blobs: Vec::new(), left_out: HashSet::new() });
    }
    if !MANIFEST_TYPES.contains(&node.media_type.as_str()) {
        return Err(Error::protocol(format!("{what}: unsupported manifest media type {}", node.media_type)));
    }
    let config = value.get("config").ok_or_else(|| Error::protocol(format!("{what}: a manifest without config")))?;
    let mut blobs = vec![descriptor(config, "", what)?];
    let mut left_out = HashSet::new();
    for l in list("layers") {
        let layer = descriptor(l, "", what)?;
        if leave_out.is_some_and(|pick| pick(l)) {
            left_out.insert(layer.digest.clone());
        }
        blobs.push(layer);
    }
    Ok(Children { manifests: Vec::new(), blobs, left_out })
}

/// The temporary name a blob is written to before it is checked and renamed.
fn partial_path(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.rsplit(':').next().unwrap_or_default();
    dir.join("blobs").join("sha256").join(format!(".{hex}.partial"))
}

/// Writes `data` as a layout blob (through a temporary file renamed into place).
fn write_blob(dir: &Path, digest: &str, data: &[u8]) -> Result<()> {
    let dest = layout::blob_path(dir, digest)?;
    let tmp = partial_path(dir, digest);
    let local = |e: std::io::Error| Error::local(format!("writing {}: {e}", dest.display()));
    std::fs::write(&tmp, data).map_err(local)?;
    std::fs::rename(&tmp, &dest).map_err(local)
}

/// The registry image a layout was pulled from, for [`Remote::push_image`]: where the push
/// mounts blobs from (on the same registry) and fetches the blobs the layout lacks (the layers
/// a pull left out, [`LeaveOut`]).
#[derive(Debug, Clone, Copy)]
pub struct ImageSource<'a> {
    /// `HOST/REPO[:TAG|@DIGEST]`, `docker://` accepted, as given to [`Remote::pull_image`].
    pub reference: &'a str,
    /// The mirror the pull used ([`PullReport::mirror`]), which missing blobs are fetched from.
    pub mirror: Option<&'a str>,
}

/// One blob on its way from a layout to the registry.
#[derive(Clone, Copy)]
struct BlobPush<'a> {
    /// The layout holding it (or, if it lacks it, where `fetch_from` puts it first).
    dir: &'a Path,
    blob: &'a BlobRef,
    auth: &'a Arc<RepoAuth>,
    /// The repository (on the same registry) to mount it from, if any.
    mount_from: Option<&'a Reference>,
    /// The source image's registry, to fetch the blob from first (set only when the layout
    /// lacks it).
    fetch_from: Option<&'a Session>,
}

struct Session {
    inner: Arc<Client>,
    creds: RegistryAuth,
    source: &'static str,
    reference: Reference,
    events: Option<TransferEvents>,
}

impl Session {
    fn new(inner: Arc<Client>, reference: Reference, events: Option<TransferEvents>) -> Session {
        let registry = reference.resolve_registry().to_owned();
        let (creds, source) = inner.credentials_for(&registry);
        Session { inner, creds, source, reference, events }
    }

    /// Credentials with a push-scope token for the destination (and pull scope on the
    /// repositories blobs are mounted from).
    fn push_auth(&self, mount_from: &[&str]) -> Arc<RepoAuth> {
        Arc::new(RepoAuth::for_push(self.reference.clone(), mount_from, self.creds.clone(), self.source))
    }

    /// An endpoint at `url` for a push request: with the credentials only when `url` is on the
    /// registry's own origin (an upload location may send elsewhere).
    fn push_endpoint(&self, url: reqwest::Url, auth: &Arc<RepoAuth>) -> Result<Endpoint> {
        let registry = self.inner.v2_url(&self.reference, "blobs", "uploads/")?;
        let auth = (url.origin() == registry.origin()).then(|| Arc::clone(auth));
        Ok(Endpoint::new(url, auth))
    }

    /// A failed request of a pull or push as an error a user can act on.
    fn request_error(&self, e: FetchError, what: &str) -> Error {
        let at = format!("{}: {what}", self.reference.whole());
        match e.class {
            Class::Unauthorized => auth_error(&self.reference, self.source),
            Class::NotFound => Error::not_found(format!("{at}: {e}")),
            _ => match e.to_error() {
                e if matches!(e.kind(), ErrorKind::Network | ErrorKind::Protocol) => e.context(at),
                other => other,
            },
        }
    }

    /// Whether the destination repository has the blob `digest` (HEAD).
    async fn blob_exists(&self, auth: &Arc<RepoAuth>, digest: &str) -> Result<bool> {
        let ep = Endpoint::new(self.inner.v2_url(&self.reference, "blobs", digest)?, Some(Arc::clone(auth)));
        match fetch::fetch_size(&self.inner, &ep).await {
            Ok(_) => Ok(true),
            Err(e) if e.class == Class::NotFound => Ok(false),
            Err(e) => Err(self.request_error(e, &format!("blob {digest}"))),
        }
    }

    /// The upload location an answer names, resolved against the URL asked.
    fn location(&self, resp: &reqwest::Response, asked: &reqwest::Url) -> Result<reqwest::Url> {
        let value = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            Error::protocol(format!("{}: an upload answer without a Location", self.reference.whole()))
        })?;
        asked
            .join(value)
            .map_err(|e| Error::protocol(format!("{}: upload Location {value:?}: {e}", self.reference.whole())))
    }

    fn emit(&self, e: &TransferEvent<'_>) {
        if let Some(f) = &self.events {
            f(e);
        }
    }

    /// A manifest or index by `reference`, raw, checked against the digest it is asked by
    /// (read as `crfs mount` reads them: bounded while it arrives).
    async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String)> {
        crate::registry::fetch_manifest_checked(&self.inner, reference, None).await
    }

    /// Streams a blob into the layout `dir`, checked against its digest and size; a blob
    /// already there (shared by platforms) is not fetched again. Returns the bytes fetched.
    /// The blob comes through crfs's own client, as a mount reads it (bounded answers and
    /// tokens, retries that resume where a cut body stopped, credentials never sent to blob
    /// storage).
    async fn pull_blob(&self, dir: &Path, blob: &BlobRef) -> Result<u64> {
        let dest = layout::blob_path(dir, &blob.digest)?;
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == blob.size) {
            return Ok(0);
        }
        let (reference, digest) = (&self.reference, blob.digest.as_str());
        let ep = Endpoint::new(self.inner.v2_url(reference, "blobs", digest)?, Some(self.inner.repo_auth(reference)));
        let tmp = partial_path(dir, digest);
        let local = |e: std::io::Error| Error::local(format!("writing {}: {e}", tmp.display()));
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(local)?);
        self.emit(&TransferEvent::Start { digest, size: blob.size });
        let mut hasher = crfs_core::digest::Hasher::default();
        let mut done = 0u64;
        let mut sink = |piece: &[u8]| {
            hasher.update(piece);
            file.write_all(piece)?;
            done += piece.len() as u64;
            self.emit(&TransferEvent::Progress { digest, done, total: blob.size });
            Ok(())
        };
        fetch::stream_blob(&self.inner, &ep, blob.size, &mut sink).await.map_err(|e| match e {
            StreamError::Sink(e) => local(e),
            StreamError::Fetch(e) => self.request_error(e, &format!("blob {digest}")),
        })?;
        if done != blob.size || hasher.finish().to_string() != digest {
            return Err(Error::protocol(format!(
                "blob {digest}: the {done} bytes received do not match its digest and size ({})",
                blob.size
            )));
        }
        file.into_inner().map_err(|e| local(e.into_error()))?.sync_all().map_err(local)?;
        std::fs::rename(&tmp, &dest).map_err(local)?;
        self.emit(&TransferEvent::Done { digest, size: blob.size, how: Moved::Pulled });
        Ok(done)
    }

    /// Copies the image into the layout `dir` (which exists), without the layers `leave_out`
    /// picks.
    async fn pull(&self, dir: &Path, leave_out: Option<&LeaveOut>) -> Result<PullReport> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::local(format!("{}: {e}", blobs.display())))?;
        let (data, digest) = self.manifest(&self.reference).await?;
        let value: serde_json::Value = serde_json::from_slice(&data)
            .map_err(|e| Error::protocol(format!("{}: not JSON: {e}", self.reference.whole())))?;
        let media_type = media_type_of(&value)
            .ok_or_else(|| Error::protocol(format!("{}: neither a manifest nor an index", self.reference.whole())))?;
        let top = BlobRef { media_type, digest, size: data.len() as u64 };
        let mut report = PullReport { top: top.clone(), manifests: 0, blobs: 0, bytes: 0, left_out: 0, mirror: None };
        let mut todo = vec![(top.clone(), Some(data), 0usize)];
        let mut seen_blobs = HashSet::new();
        let mut left_out = HashSet::new();
        let mut wanted = Vec::new();
        while let Some((node, data, depth)) = todo.pop() {
            if depth > MAX_DEPTH {
                return Err(Error::protocol(format!("{}: image indexes nested too deep", self.reference.whole())));
            }
            let data = match data {
                Some(d) => d,
                None => {
                    let r = self.reference.clone_with_digest(node.digest.clone());
                    let (d, _) = self.manifest(&r).await?;
                    if d.len() as u64 != node.size {
                        return Err(Error::protocol(format!(
                            "{}: {} bytes, its descriptor says {}",
                            node.digest,
                            d.len(),
                            node.size
                        )));
                    }
                    d
                }
            };
            let Children { manifests, blobs, left_out: leave } = children(&data, &node, leave_out)?;
            write_blob(dir, &node.digest, &data)?;
            report.manifests += 1;
            // The config (first) is always fetched, whatever a layer of the same digest says.
            for (i, b) in blobs.into_iter().enumerate() {
                if i > 0 && leave.contains(&b.digest) {
                    left_out.insert(b.digest);
                } else if seen_blobs.insert(b.digest.clone()) {
                    wanted.push(b);
                }
            }
            todo.extend(manifests.into_iter().rev().map(|m| (m, None, depth + 1)));
        }
        // Blobs move TRANSFER_STREAMS at a time (configs and layers of every platform, each once);
        // the first failure ends the pull.
        let mut pulls = futures_util::stream::iter(wanted)
            .map(|b| async move { self.pull_blob(dir, &b).await })
            .buffer_unordered(TRANSFER_STREAMS);
        while let Some(bytes) = pulls.next().await {
            report.bytes += bytes?;
            report.blobs += 1;
        }
        drop(pulls);
        report.left_out = left_out.difference(&seen_blobs).count();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
            "manifests": [{"mediaType": top.media_type, "digest": top.digest, "size": top.size}],
        });
        let local = |e: std::io::Error| Error::local(format!("writing {}: {e}", dir.display()));
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(local)?;
        std::fs::write(dir.join("index.json"), index.to_string()).map_err(local)?;
        tracing::info!(image = %self.reference.whole(), digest = %top.digest, manifests = report.manifests,
            blobs = report.blobs, bytes = report.bytes, left_out = report.left_out, "image pulled");
        Ok(report)
    }

    /// One blob of the layout to the registry: skipped, mounted or uploaded (fetched from the
    /// source first if the layout lacks it; then the second value is true).
    async fn push_blob(&self, push: &BlobPush<'_>) -> Result<(Moved, bool)> {
        let digest = push.blob.digest.as_str();
        if self.blob_exists(push.auth, digest).await? {
            return Ok((Moved::Existed, false));
        }
        let path = layout::blob_path(push.dir, digest)?;
        let lacking = std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if lacking && push.fetch_from.is_none() {
            return Err(Error::local(format!("blob {digest}: not in the layout {}", push.dir.display())));
        }
        let push = &BlobPush { fetch_from: push.fetch_from.filter(|_| lacking), ..*push };
        // An upload that fails part way is started again from its first byte, in a new session
        // (a registry keeps what a cut PATCH sent, so resending it there would append).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.upload(push).await {
                Err(e) if e.kind() == ErrorKind::Network && attempt < UPLOAD_ATTEMPTS => {
                    tracing::info!(digest, attempt, "upload failed ({}); starting it again", e.message());
                }
                done => return done.map(|how| (how, lacking && how == Moved::Uploaded)),
            }
        }
    }

    /// One upload session: `POST …/blobs/uploads/` (asking to mount from `mount_from`), then
    /// the bytes in one streamed `PATCH` (fetched from `fetch_from` first when the layout lacks
    /// them), then `PUT ?digest=` to commit them.
    async fn upload(&self, push: &BlobPush<'_>) -> Result<Moved> {
        let BlobPush { dir, blob, auth, mount_from, fetch_from } = *push;
        use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
        use reqwest::{Method, StatusCode};
        let (digest, size) = (blob.digest.as_str(), blob.size);
        let mut start = self.inner.v2_url(&self.reference, "blobs", "uploads/")?;
        if let Some(from) = mount_from {
            start.query_pairs_mut().append_pair("mount", digest).append_pair("from", from.repository());
        }
        let ep = Endpoint::new(start.clone(), Some(Arc::clone(auth)));
        let empty = |r: reqwest::RequestBuilder| r.header(CONTENT_LENGTH, 0);
        let start_call = Call {
            method: Method::POST,
            ok: &[StatusCode::CREATED, StatusCode::ACCEPTED],
            whole_timeout: true,
            prepare: &empty,
        };
        let begun = fetch::send_expecting(&self.inner, &ep, &start_call)
            .await
            .map_err(|e| self.request_error(e, "starting an upload"))?;
        if begun.status() == StatusCode::CREATED {
            return match mount_from {
                Some(_) => Ok(Moved::Mounted),
                None => Err(Error::protocol(format!("{}: 201 to an upload start", self.reference.whole()))),
            };
        }
        if let Some(from) = mount_from {
            tracing::debug!(digest, from = %from.whole(), "cross-repository mount not done; uploading");
        }
        let location = self.location(&begun, &start)?;
        drop(begun);

        let path = layout::blob_path(dir, digest)?;
        if let Some(source) = fetch_from {
            // Checked against its digest and size before it is renamed into place; a blob an
            // earlier session of this push fetched is not fetched again.
            source.pull_blob(dir, blob).await?;
        }
        self.emit(&TransferEvent::Start { digest, size });
        let (events, owned_digest) = (self.events.clone(), digest.to_owned());
        let body = move |r: reqwest::RequestBuilder| {
            let stream = file_stream(path.clone(), owned_digest.clone(), size, events.clone());
            r.header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(stream))
        };
        let patch_ep = self.push_endpoint(location.clone(), auth)?;
        let mut generation = 0;
        let patch = Call {
            method: Method::PATCH,
            ok: &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
            whole_timeout: false,
            prepare: &body,
        };
        let sent = fetch::send_once(&self.inner, &patch_ep, &patch, &mut generation)
            .await
            .map_err(|e| self.request_error(e, &format!("uploading blob {digest}")))?;
        let mut commit = if sent.headers().contains_key(reqwest::header::LOCATION) {
            self.location(&sent, &location)?
        } else {
            location
        };
        drop(sent);
        commit.query_pairs_mut().append_pair("digest", digest);
        let commit_ep = self.push_endpoint(commit, auth)?;
        let commit_call =
            Call { method: Method::PUT, ok: &[StatusCode::CREATED], whole_timeout: true, prepare: &empty };
        fetch::send_expecting(&self.inner, &commit_ep, &commit_call)
            .await
            .map_err(|e| self.request_error(e, &format!("committing blob {digest}")))?;
        Ok(Moved::Uploaded)
    }

    /// Pushes the image `top` of the layout `dir`; see the module docs. `source` is the image's
    /// registry source and the mirror it was pulled from, if any.
    async fn push(&self, dir: &Path, top: &BlobRef, source: Option<(Reference, Option<String>)>) -> Result<PushReport> {
        // Children before parents, each manifest once; the top last.
        let mut order: Vec<(BlobRef, Vec<u8>)> = Vec::new();
        let mut blobs: Vec<BlobRef> = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![(top.clone(), 0usize, false)];
        while let Some((node, depth, expanded)) = stack.pop() {
            if expanded {
                let data = layout::read_blob(dir, &node.digest)?;
                order.push((node, data));
                continue;
            }
            if depth > MAX_DEPTH {
                return Err(Error::protocol(format!("{}: image indexes nested too deep", top.digest)));
            }
            if !seen.insert(node.digest.clone()) {
                continue;
            }
            let data = layout::read_blob(dir, &node.digest)?;
            let Children { manifests, blobs: node_blobs, .. } = children(&data, &node, None)?;
            blobs.extend(node_blobs.into_iter().filter(|b| seen.insert(b.digest.clone())));
            stack.push((node, depth, true));
            stack.extend(manifests.into_iter().rev().map(|m| (m, depth + 1, false)));
        }

        let reference = &self.reference;
        let (source, mirror) = source.unzip();
        let fetch_from = source.clone().map(|mut from| {
            if let Some(mirror) = mirror.flatten() {
                from.set_mirror_registry(mirror);
            }
            Session::new(Arc::clone(&self.inner), from, self.events.clone())
        });
        let mount_from = source.filter(|from| {
            from.resolve_registry() == reference.resolve_registry() && from.repository() != reference.repository()
        });
        let mount_repos: Vec<&str> = mount_from.iter().map(|r| r.repository()).collect();
        let auth = self.push_auth(&mount_repos);
        let mut report = PushReport::default();
        // Blobs move TRANSFER_STREAMS at a time; the first failure ends the push, before any
        // manifest is written.
        let mount_from = mount_from.as_ref();
        let fetch_from = fetch_from.as_ref();
        let auth = &auth;
        let mut pushes = futures_util::stream::iter(blobs)
            .map(|b| async move {
                let how = self.push_blob(&BlobPush { dir, blob: &b, auth, mount_from, fetch_from }).await;
                (b, how)
            })
            .buffer_unordered(TRANSFER_STREAMS);
        while let Some((b, how)) = pushes.next().await {
            let (how, fetched) = how?;
            report.fetched += usize::from(fetched);
            match how {
                Moved::Uploaded => {
                    report.uploaded += 1;
                    report.uploaded_bytes += b.size;
                }
                Moved::Existed => report.existed += 1,
                Moved::Mounted => report.mounted += 1,
                Moved::Pulled => {}
            }
            tracing::debug!(digest = %b.digest, size = b.size, ?how, "blob pushed");
            self.emit(&TransferEvent::Done { digest: &b.digest, size: b.size, how });
        }
        drop(pushes);
        let last = order.len().saturating_sub(1);
        for (i, (node, data)) in order.into_iter().enumerate() {
            let target = if i == last { reference.clone() } else { reference.clone_with_digest(node.digest.clone()) };
            let content_type: reqwest::header::HeaderValue = node
                .media_type
                .parse()
                .map_err(|_| Error::protocol(format!("{}: bad media type {:?}", node.digest, node.media_type)))?;
            let name = target.digest().or(target.tag()).unwrap_or(node.digest.as_str()).to_owned();
            let ep = Endpoint::new(self.inner.v2_url(&target, "manifests", &name)?, Some(Arc::clone(auth)));
            let body = bytes::Bytes::from(data);
            let put = move |r: reqwest::RequestBuilder| {
                r.header(reqwest::header::CONTENT_TYPE, content_type.clone()).body(body.clone())
            };
            let call = Call {
                method: reqwest::Method::PUT,
                ok: &[reqwest::StatusCode::CREATED],
                whole_timeout: true,
                prepare: &put,
            };
            fetch::send_expecting(&self.inner, &ep, &call)
                .await
                .map_err(|e| self.request_error(e, &format!("manifest {}", node.digest)))?;
            report.manifests += 1;
            if i == last {
                report.pushed = target.whole();
            }
        }
        tracing::info!(image = %report.pushed, uploaded = report.uploaded, bytes = report.uploaded_bytes,
            fetched = report.fetched, existed = report.existed, mounted = report.mounted, manifests = report.manifests, "image pushed");
        Ok(report)
    }
}

/// How many upload sessions one blob gets when the network keeps failing.
const UPLOAD_ATTEMPTS: u32 = 3;

/// A file's bytes as an upload stream, reporting progress; a file of another size than the
/// descriptor's is an error.
fn file_stream(
    path: PathBuf,
    digest: String,
    size: u64,
    events: Option<TransferEvents>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let opened = std::fs::File::open(&path);
    futures_util::stream::unfold((opened.map(Some), 0u64), move |(file, done)| {
        let events = events.clone();
        let path = path.clone();
        let digest = digest.clone();
        async move {
            let mut file = match file {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some((Err(e), (Ok(None), done))),
            };
            let mut buf = vec![0u8; UPLOAD_PIECE];
            match file.read(&mut buf) {
                Ok(0) if done == size => None,
                Ok(0) => {
                    let e = std::io::Error::other(format!("{}: {done} bytes, not {size}", path.display()));
                    Some((Err(e), (Ok(None), done)))
                }
                Ok(n) => {
                    buf.truncate(n);
                    let done = done + n as u64;
                    if let Some(f) = &events {
                        f(&TransferEvent::Progress { digest: &digest, done, total: size });
                    }
                    Some((Ok(bytes::Bytes::from(buf)), (Ok(Some(file)), done)))
                }
                Err(e) => Some((Err(e), (Ok(None), done))),
            }
        }
    })
}

impl Remote {
    /// Copies the image `reference` (`HOST/REPO[:TAG|@DIGEST]`, `docker://` accepted; every
    /// platform of an index) into the OCI layout `dir`, whose `index.json` then names it alone
    /// (without a tag). The registry's mirrors (`Options::mirrors_of`) are tried first, in
    /// order, each for the whole image; then the registry. Blobs a failed attempt left complete
    /// in `dir` were checked before they were renamed into place, and are not fetched again.
    /// Layers `leave_out` picks are not fetched (the layout then lacks them: a push from it
    /// mounts or fetches them, given this image as its [`ImageSource`]).
    pub fn pull_image(
        &self,
        reference: &str,
        dir: &Path,
        leave_out: Option<LeaveOut>,
        events: Option<TransferEvents>,
    ) -> Result<PullReport> {
        let (reference, _) = reference_of(reference)?;
        let mirrors = self.inner.options.mirrors_of(reference.registry());
        let inner = Arc::clone(&self.inner);
        let dir = dir.to_path_buf();
        let pull = async move {
            for mirror in mirrors {
                let mut at_mirror = reference.clone();
                at_mirror.set_mirror_registry(mirror.clone());
                let session = Session::new(Arc::clone(&inner), at_mirror, events.clone());
                match session.pull(&dir, leave_out.as_ref()).await {
                    Ok(report) => return Ok(PullReport { mirror: Some(mirror), ..report }),
                    Err(e) => tracing::info!(mirror, "mirror failed, trying the next host: {e}"),
                }
            }
            Session::new(inner, reference, events).pull(&dir, leave_out.as_ref()).await
        };
        self.inner.run(pull, || Error::local("the I/O runtime stopped"))
    }

    /// Checks, before any work, that `reference` (a destination, as [`Remote::push_image`]
    /// takes it) can be pushed to: the registry answers, and takes the credentials for a
    /// push-scope token (token auth) or a blob HEAD (basic auth).
    pub fn check_push(&self, reference: &str) -> Result<()> {
        let (parsed, _) = destination(reference)?;
        let session = Session::new(Arc::clone(&self.inner), parsed, None);
        self.inner.run(
            async move {
                let auth = session.push_auth(&[]);
                let empty = crfs_core::Digest::of(b"").to_string();
                session.blob_exists(&auth, &empty).await.map(|_| ())
            },
            || Error::local("the I/O runtime stopped"),
        )
    }

    /// Pushes the image `top` of the OCI layout `dir` to `reference` (`HOST/REPO[:TAG]`;
    /// without a tag, by digest only). With a `source` (the registry image the layout was
    /// pulled from) on the same registry, blobs the destination lacks are mounted from there
    /// when the registry allows it; blobs the layout lacks (layers the pull left out) are
    /// fetched from the source when they can be neither found nor mounted at the destination.
    pub fn push_image(
        &self,
        dir: &Path,
        top: &BlobRef,
        reference: &str,
        source: Option<ImageSource<'_>>,
        events: Option<TransferEvents>,
    ) -> Result<PushReport> {
        let (parsed, explicit) = destination(reference)?;
        let target = if explicit {
            parsed
        } else {
            Reference::with_digest(parsed.registry().to_owned(), parsed.repository().to_owned(), top.digest.clone())
        };
        let source = match source {
            Some(ImageSource { reference, mirror }) => Some((reference_of(reference)?.0, mirror.map(str::to_owned))),
            None => None,
        };
        let session = Session::new(Arc::clone(&self.inner), target, events);
        let (dir, top) = (dir.to_path_buf(), top.clone());
        self.inner
            .run(async move { session.push(&dir, &top, source).await }, || Error::local("the I/O runtime stopped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references_need_a_host() {
        assert!(is_registry_reference("127.0.0.1:5000/app:v1"));
        assert!(is_registry_reference("localhost/app"));
        assert!(is_registry_reference("ghcr.io/o/app@sha256:00"));
        assert!(is_registry_reference("docker://busybox"));
        assert!(!is_registry_reference("busybox"));
        assert!(!is_registry_reference("dir/sub"));
        assert!(!is_registry_reference("/tmp/layout"));
        assert!(!is_registry_reference("./x.y/z"));
        assert!(!reference_of("127.0.0.1:5000/a/b").unwrap().1);
        assert!(reference_of("127.0.0.1:5000/a/b:v2").unwrap().1);
        assert!(reference_of(&("docker://127.0.0.1:5000/a/b@sha256:".to_owned() + &"0".repeat(64))).unwrap().1);
        let by_digest = "127.0.0.1:5000/a/b@sha256:".to_owned() + &"0".repeat(64);
        assert!(reference_of(&by_digest).is_ok());
        assert!(destination(&by_digest).is_err(), "a destination is never a digest");
    }

    fn node(media_type: &str) -> BlobRef {
        BlobRef { media_type: media_type.into(), digest: format!("sha256:{}", "1".repeat(64)), size: 1 }
    }

    #[test]
    fn children_of_indexes_and_manifests() {
        let d = |c: &str| format!("sha256:{}", c.repeat(64));
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":7,"platform":{{"os":"linux"}}}}]}}"#,
            d("a")
        );
        let value: serde_json::Value = serde_json::from_str(&index).unwrap();
        assert_eq!(media_type_of(&value).as_deref(), Some(OCI_IMAGE_INDEX_MEDIA_TYPE), "guessed from its fields");
        let every_layer: LeaveOut = Arc::new(|_| true);
        let Children { manifests, blobs, left_out } =
            children(index.as_bytes(), &node(OCI_IMAGE_INDEX_MEDIA_TYPE), Some(&every_layer)).unwrap();
        assert_eq!(manifests, [BlobRef { media_type: OCI_IMAGE_MEDIA_TYPE.into(), digest: d("a"), size: 7 }]);
        assert!(blobs.is_empty());
        assert!(left_out.is_empty(), "an index has no layers to leave out");

        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{}","size":2}},"layers":[{{"mediaType":"l","digest":"{}","size":3}}]}}"#,
            d("b"),
            d("c")
        );
        let Children { manifests, blobs, left_out } =
            children(manifest.as_bytes(), &node(IMAGE_MANIFEST_MEDIA_TYPE), None).unwrap();
        assert!(manifests.is_empty());
        let digests: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(digests, [d("b"), d("c")]);
        assert!(left_out.is_empty());
        // Only layers are offered to the pick, the config never.
        let left_out =
            children(manifest.as_bytes(), &node(IMAGE_MANIFEST_MEDIA_TYPE), Some(&every_layer)).unwrap().left_out;
        assert_eq!(left_out, HashSet::from([d("c")]));
        let none_picked: LeaveOut = Arc::new(|l| l.get("mediaType").and_then(|m| m.as_str()) == Some("x"));
        let left_out =
            children(manifest.as_bytes(), &node(IMAGE_MANIFEST_MEDIA_TYPE), Some(&none_picked)).unwrap().left_out;
        assert!(left_out.is_empty(), "a pick that picks nothing leaves nothing out");

        let sha512 = manifest.replace(&d("c"), "sha512:00");
        assert!(children(sha512.as_bytes(), &node(OCI_IMAGE_MEDIA_TYPE), None).is_err(), "only sha256 digests");
        assert!(children(manifest.as_bytes(), &node("application/x-other"), None).is_err());
        assert!(children(b"not json", &node(OCI_IMAGE_MEDIA_TYPE), None).is_err());
        assert!(children(br#"{"schemaVersion":2}"#, &node(OCI_IMAGE_MEDIA_TYPE), None).is_err(), "no config");
    }
}
