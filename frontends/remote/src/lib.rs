//! crfs-remote: where blob bytes come from when they are not in a local file.
//!
//! It owns the network side of crfs: resolving image references in OCI registries (manifest
//! lists and OCI indexes narrowed to a platform, Docker and OCI media types, anonymous bearer
//! tokens, basic auth from flags, files, the environment or `~/.docker/config.json`; explicit
//! credentials only for the registry they name), and turning
//! `crfs_core::ReadAt` calls on a registry blob or an HTTP(S) URL into verified Range requests
//! (206 with a matching Content-Range, or a whole-blob 200 sliced; retries with backoff inside a
//! deadline; redirects to blob storage without credentials; expired redirects resolved again),
//! with an optional on-disk cache of fetched ranges keyed by blob digest.
//!
//! Main types: [`Remote`] (the shared context: one tokio runtime, one HTTP pool for blob data,
//! registry clients, credentials, cache, counters), [`Image`] / [`LayerDesc`] (what `resolve`
//! returns), [`RegistryBlob`] and [`HttpBlob`] (the `ReadAt` implementations), [`DiskCache`],
//! and [`Remote::open_source`], which turns a command-line source into layers. Errors are
//! [`Error`]: an [`ErrorKind`] (a registry refusing credentials is [`ErrorKind::Auth`]), a
//! message, and the failed request or I/O error as its `source`.
//!
//! Modules, leaves first (no two import each other): `error`; `http` (reqwest helpers:
//! classing failures, redacting URLs, bounded bodies); `cache`; `platform`; `client` (the
//! shared connection pools, options, auth state per repository, counters, retry policy);
//! `token` (how a request authenticates); `fetch` (range reads under the retry policy); `blob`
//! (the `ReadAt` types); `remote` (the [`Remote`] handle); `registry`, `source`, `transfer`.
//!
//! `ReadAt` is synchronous and called from FUSE threads; each read is run on the `Remote`'s own
//! runtime (`block_on` from plain threads, spawn-and-wait from inside another runtime).
//!
//! Wiring a front-end (flags map to [`Options`] fields: `--platform` → `platform`,
//! `--plain-http` → `plain_http`, `--mirror REGISTRY=MIRROR` → `mirrors`, `--hosts-dir DIR` → `Options::add_hosts(HostsConfig::load(DIR)?)`, `--ca-cert FILE` → `ca_certs`, `--creds`, `--creds-file`, `$CRFS_REGISTRY_CREDS` → `credentials` (with the reference's registry, [`registry_of`]), `--authfile FILE` → `auth_file`, `--cache-dir` and
//! `--cache-size` → `cache`; checking a layer against its manifest is crfs-image's):
//!
//! ```no_run
//! use crfs_remote::{Options, Remote, SourceKind};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = "127.0.0.1:5000/app/python:3.12"; // or https://…/blob, oci:DIR:TAG, a file
//! let source = if SourceKind::of(spec) == SourceKind::File {
//!     crfs_remote::open_file_source(std::path::Path::new(spec))? // no runtime, no network
//! } else {
//!     Remote::new(Options { plain_http: false, ..Options::default() })?.open_source(spec)?
//! };
//! for layer in &source.layers {
//!     // Bottom layer first; the TOC is checked against the toc.digest annotation.
//!     let expected_toc_digest = match &layer.desc {
//!         Some(desc) => desc.expected_toc_digest()?,
//!         None => None,
//!     };
//!     let options = crfs_core::OpenOptions { expected_toc_digest, ..Default::default() };
//!     let opened = crfs_core::Layer::open_with(layer.blob.clone(), &options)?;
//!     println!("{} entries", opened.index().len());
//! }
//! # Ok(()) }
//! ```
//!
//! For `crfs image convert`, [`Remote::pull_image`] copies a whole image (every platform) into
//! a local OCI layout and [`Remote::push_image`] pushes one from a layout (see `transfer`).
//!
//! It must never depend on crfs-vfs, crfs-image, crfs-fuse, crfs-nfs or the CLI, nor look inside a layer:
//! it sees bytes and descriptors, never a TOC entry (data flows remote → core → vfs).
//!
//! Crates: oci-client for the image reference and manifest types only (references are parsed
//! by `reference`, which is faster than oci-client's regular expression); reqwest (rustls with the
//! ring provider) for every request (blob ranges, manifests, tokens, uploads), because
//! oci-client's client hides the Content-Range it got, cannot cache redirect targets, and reads
//! manifests, token answers and error bodies whole, with no bound; rustls-platform-verifier
//! (reqwest's own verifier) to check servers against the system's CAs, loaded when the first
//! TLS connection needs them (`client`'s `LazyVerifier`); futures-util and bytes for
//! upload streams and side-by-side pulls; http-auth to parse `WWW-Authenticate` (see `token`);
//! docker_credential for the Docker config; toml for containerd's hosts.toml files.

#![deny(missing_docs)]

mod blob;
mod cache;
mod client;
mod error;
mod fetch;
#[cfg(feature = "fuzzing")]
pub mod fuzz_entry;
mod hosts;
mod http;
mod layout;
mod platform;
mod reference;
mod registry;
mod remote;
mod source;
mod token;
mod transfer;

pub use blob::{
    COALESCE_GAP, COALESCE_START, HttpBlob, IDLE_AFTER, IDLE_PIECE, MAX_STREAMS, PREFETCH_PIECE, RegistryBlob,
};
pub use cache::{CacheWriter, DiskCache};
pub use client::{
    CREDS_ENV, CacheOptions, Credentials, Mirror, Options, RegistryCredentials, RetryPolicy, Stats, same_registry,
};
pub use error::{Error, ErrorKind, Result};
pub use hosts::HostsConfig;
pub use platform::Platform;
pub use registry::{
    Image, LayerDesc, MANIFEST_CHECKSUM_ANNOTATIONS, MANIFEST_POSITION_ANNOTATION, MAX_CONFIG_BYTES,
    TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, config_diff_ids, registry_of,
};
pub use remote::Remote;
pub use source::{Source, SourceKind, SourceLayer, open_file_source};
pub use transfer::{
    BlobRef, ImageSource, LeaveOut, Moved, PullReport, PushReport, TransferEvent, TransferEvents, is_registry_reference,
};
