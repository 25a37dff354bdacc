//! The OCI vocabulary around a layer blob: the manifest annotations that describe lazy layers
//! (eStargz and zstd:chunked), and, with the `std` feature, local OCI image layouts
//! (`oci:DIR[:TAG]`, as skopeo names them): splitting the spec, where a blob lives, and reading
//! a small blob checked against its digest.
//!
//! Shared by crfs-remote (serving a layout's image), crfs-convert (rewriting every platform of
//! one, writing the annotations) and crfs-image (checking a layer against them), so each name
//! and rule is written once, beside the format it describes.

/// The layer annotation holding the sha256 of the layer's uncompressed TOC JSON (eStargz,
/// zstd:chunked); crfs refuses a layer whose TOC does not match it.
pub const TOC_DIGEST_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";
/// The layer annotation with the size of the fully uncompressed layer (eStargz).
pub const UNCOMPRESSED_SIZE_ANNOTATION: &str = "io.containers.estargz.uncompressed-size";
/// The zstd:chunked layer annotations holding the sha256 of the compressed TOC: the current
/// name first, then the one Debian's skopeo (containers/image of 2022) writes.
pub const MANIFEST_CHECKSUM_ANNOTATIONS: [&str; 2] =
    ["io.github.containers.zstd-chunked.manifest-checksum", "io.containers.zstd-chunked.manifest-checksum"];
/// The zstd:chunked layer annotation `OFFSET:COMPRESSED_LEN:UNCOMPRESSED_LEN:1` locating the TOC.
pub const MANIFEST_POSITION_ANNOTATION: &str = "io.github.containers.zstd-chunked.manifest-position";
/// The index annotation naming an image in a layout (the `TAG` of `oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[cfg(feature = "std")]
pub use layout::{MAX_JSON_BLOB, blob_path, read_blob, split_spec};

/// Local OCI image layouts. Errors are `std::io::Error`s: `InvalidInput` for a digest that is
/// not `sha256:HEX`, `InvalidData` for a blob too large or not matching its digest, and the
/// file system's own otherwise; each message names the path or digest.
#[cfg(feature = "std")]
mod layout {
    use std::format;
    use std::io::{Error, ErrorKind, Result};
    use std::path::{Path, PathBuf};

    use crate::Digest;

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
        let ok = Digest::parse(digest).is_some();
        match digest.split_once(':') {
            Some((algo, hex)) if ok => Ok(dir.join("blobs").join(algo).join(hex)),
            _ => Err(Error::new(ErrorKind::InvalidInput, format!("{digest}: not a sha256 digest"))),
        }
    }

    /// The largest manifest, index or config read into memory.
    pub const MAX_JSON_BLOB: u64 = 16 << 20;

    /// Reads a small layout blob (a manifest, index or config) and checks it against its digest.
    pub fn read_blob(dir: &Path, digest: &str) -> Result<std::vec::Vec<u8>> {
        let path = blob_path(dir, digest)?;
        let local = |e: Error| Error::new(e.kind(), format!("{}: {e}", path.display()));
        let len = std::fs::metadata(&path).map_err(local)?.len();
        if len > MAX_JSON_BLOB {
            let why = format!("{}: {len} bytes is too large for a manifest or config", path.display());
            return Err(Error::new(ErrorKind::InvalidData, why));
        }
        let data = std::fs::read(&path).map_err(local)?;
        if Some(Digest::of(&data)) != Digest::parse(digest) {
            let why = format!("{}: content does not match its digest", path.display());
            return Err(Error::new(ErrorKind::InvalidData, why));
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
            assert_eq!(
                blob_path(Path::new("/d"), "sha256:../../etc/passwd").unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            assert!(blob_path(Path::new("/d"), "sha512:00").is_err());
        }
    }
}
