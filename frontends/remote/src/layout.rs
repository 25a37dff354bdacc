//! Local OCI image layouts (`oci:DIR[:TAG]`, as skopeo names them): splitting the spec, where a
//! blob lives, and reading a blob checked against its digest. Shared by [`Remote::open_layout`]
//! (one platform's image, to serve) and crfs-convert's image converter (every platform, to
//! rewrite).
//!
//! [`Remote::open_layout`]: crate::Remote::open_layout

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The index annotation naming an image in a layout (the `TAG` of `oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Splits `oci:DIR[:TAG]` (the `oci:` prefix is optional); a last `:` part containing `/`
/// belongs to DIR.
pub fn split_spec(spec: &str) -> (PathBuf, Option<&str>) {
    let rest = spec.strip_prefix("oci:").unwrap_or(spec);
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !tag.is_empty() => (PathBuf::from(dir), Some(tag)),
        _ => (PathBuf::from(rest), None),
    }
}

/// `DIR/blobs/sha256/HEX` for a `sha256:HEX` digest; any other digest is refused, so a
/// digest can never name a path outside the layout.
pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    let ok = crfs_core::Digest::parse(digest).is_some();
    match digest.split_once(':') {
        Some((algo, hex)) if ok => Ok(dir.join("blobs").join(algo).join(hex)),
        _ => Err(Error::Invalid(format!("{digest}: not a sha256 digest"))),
    }
}

/// The largest manifest, index or config read into memory.
pub const MAX_JSON_BLOB: u64 = 16 << 20;

/// Reads a small layout blob (a manifest, index or config) and checks it against its digest.
pub fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let path = blob_path(dir, digest)?;
    let len = std::fs::metadata(&path).map_err(|e| Error::Local(format!("{}: {e}", path.display())))?.len();
    if len > MAX_JSON_BLOB {
        return Err(Error::Protocol(format!("{}: {len} bytes is too large for a manifest or config", path.display())));
    }
    let data = std::fs::read(&path).map_err(|e| Error::Local(format!("{}: {e}", path.display())))?;
    if Some(crfs_core::Digest::of(&data)) != crfs_core::Digest::parse(digest) {
        return Err(Error::Protocol(format!("{}: content does not match its digest", path.display())));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_paths() {
        assert_eq!(split_spec("oci:/tmp/x:v1"), (PathBuf::from("/tmp/x"), Some("v1")));
        assert_eq!(split_spec("oci:/tmp/x"), (PathBuf::from("/tmp/x"), None));
        assert_eq!(split_spec("oci:a:b/c"), (PathBuf::from("a:b/c"), None));
        let hex = "ab".repeat(32);
        assert_eq!(
            blob_path(Path::new("/d"), &format!("sha256:{hex}")).unwrap(),
            Path::new("/d/blobs/sha256").join(&hex)
        );
        assert!(blob_path(Path::new("/d"), "sha256:../../etc/passwd").is_err());
        assert!(blob_path(Path::new("/d"), "sha512:00").is_err());
    }
}
