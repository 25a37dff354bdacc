//! crfs-image: what an image means to crfs, as library code an embedder can reuse.
//!
//! Given a source as a user names it (a blob file, a blob URL, `oci:DIR[:TAG]`, a registry
//! reference), [`Images::open`] resolves it to layers (through crfs-remote), opens them side by
//! side ([`PARALLEL_OPENS`] at once, so an image waits for the registry's round trips
//! once rather than once per layer), decides for each
//! whether it is read lazily or fetched whole and indexed locally, and says why
//! ([`Access`]); verifies each as its manifest says, the `toc.digest` and zstd:chunked
//! `manifest-checksum` checks written once in `verify` ([`Verification`]); handles plain
//! layers (fetch, check against the blob digest, convert with crfs-convert, cache, evict) in
//! state owned by the [`Images`] value; and starts prefetch and background fetch. [`tree`]
//! turns opened layers into one crfs-vfs tree and its identity; [`Images::namespace`] serves
//! every image a path away through [`RegistryResolver`], the `crfs_vfs::Resolver` of the /crfs
//! namespace; [`Images::store`] serves containers/storage's Additional Layer Store through
//! [`StoreSource`], which decides which layers a container runtime may use lazily. [`scope_credentials`] keeps explicit credentials to the one registry named.
//!
//! The shape follows stargz-snapshotter's `fs/layer` (a resolver returning layers with their
//! verify and prefetch policy) and nydus's `service`: front-ends (the CLI, FUSE, NFS) parse
//! arguments and translate requests; the policy lives here.
//!
//! Errors are [`Error`]: an [`ErrorKind`] (not found, denied, network, I/O, corrupt,
//! unsupported, invalid) that maps to an errno ([`ErrorKind::errno`]) and to
//! `crfs_vfs::ResolveError`, a one-line message, and the crfs-remote, crfs-core or I/O error it
//! came from as its `source`. A registry refusing a layer's blob (401/403) is `Denied`, so the
//! namespace answers EACCES, not EIO.
//!
//! ```no_run
//! use crfs_image::{Images, Options};
//! # fn main() -> Result<(), crfs_image::Error> {
//! let images = Images::new(Options::default()); // verify on, no disk cache, anonymous
//! let layers = images.open(&["127.0.0.1:5000/app/python:3.12".to_owned()])?;
//! for l in &layers {
//!     println!("{}: {:?}, checked by {:?}", l.name, l.access, l.verification);
//! }
//! let (tree, identity) = crfs_image::tree(layers, crfs_vfs::Options::default())?;
//! # let _ = (tree, identity);
//! # Ok(()) }
//! ```
//!
//! Depends on crfs-core, crfs-vfs, crfs-remote and crfs-convert. It must never depend on a
//! front-end (crfs-fuse, crfs-nfs, the CLI), on fuser or NFS types, nor parse command lines.

#![deny(missing_docs)]

mod credentials;
mod error;
mod images;
mod layer;
mod plain;
mod prefetch;
mod resolver;
mod store;
mod verify;

use std::sync::Arc;

pub use credentials::{CredentialsOrigin, GivenCredentials, scope_credentials};
pub use error::{Error, ErrorKind, Result};
pub use images::{Images, Options, tree};
pub use layer::{Access, LayerReport, OpenedLayer, PARALLEL_OPENS};
pub use resolver::RegistryResolver;
pub use store::StoreSource;
pub use verify::Verification;

/// Blob bytes from wherever they live.
pub type Blob = Arc<dyn crfs_core::ReadAt + Send + Sync>;
