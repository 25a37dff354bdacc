//! Local OCI image layouts (`oci:DIR[:TAG]`) for [`Remote::open_layout`] and the image
//! transfers: crfs-core's layout rules (`crfs_core::oci`), with their errors as this crate's.
//!
//! [`Remote::open_layout`]: crate::Remote::open_layout

use std::path::{Path, PathBuf};

pub(crate) use crfs_core::oci::{REF_NAME, split_spec};

use crate::error::{Error, ErrorKind, Result};

/// A layout error as this crate's: a bad digest is `Invalid`, a blob too large or not
/// matching its digest is `Protocol`, anything else `Local`.
fn from_layout(e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::InvalidInput => ErrorKind::Invalid,
        std::io::ErrorKind::InvalidData => ErrorKind::Protocol,
        _ => ErrorKind::Local,
    };
    Error::new(kind, e.to_string()).with_source(e)
}

/// `DIR/blobs/sha256/HEX` for a `sha256:HEX` digest (see `crfs_core::oci::blob_path`).
pub(crate) fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    crfs_core::oci::blob_path(dir, digest).map_err(from_layout)
}

/// A small layout blob checked against its digest (see `crfs_core::oci::read_blob`).
pub(crate) fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    crfs_core::oci::read_blob(dir, digest).map_err(from_layout)
}
