//! Errors of opening images and layers: a kind a front-end maps to an errno, a status or an
//! exit code, a one-line message for users, and the error it came from.

use std::fmt;

/// What went wrong, in the terms a front-end answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such image, tag, platform, layer or file (ENOENT).
    NotFound,
    /// A registry refused the credentials, or asked for some (EACCES).
    Denied,
    /// The network or a server kept failing (EIO).
    Network,
    /// A local file or resource could not be read or written, or a blob read failed (EIO).
    Io,
    /// Data that does not match what describes it: a TOC against its manifest annotation, a
    /// blob against its digest, a malformed layer or answer (EIO).
    Corrupt,
    /// Something crfs does not read or serve here: a layer without a TOC and no descriptor to
    /// fetch it by, a TOC past a limit, an option that does not apply to this source (EINVAL).
    Unsupported,
    /// A malformed argument: a reference, digest, platform, credentials or mirror (EINVAL).
    Invalid,
}

impl ErrorKind {
    /// The errno a filesystem front-end answers with (Linux and the BSDs agree on these).
    pub fn errno(self) -> i32 {
        const ENOENT: i32 = 2;
        const EIO: i32 = 5;
        const EACCES: i32 = 13;
        const EINVAL: i32 = 22;
        match self {
            ErrorKind::NotFound => ENOENT,
            ErrorKind::Denied => EACCES,
            ErrorKind::Network | ErrorKind::Io | ErrorKind::Corrupt => EIO,
            ErrorKind::Unsupported | ErrorKind::Invalid => EINVAL,
        }
    }
}

/// Why opening an image or a layer failed.
///
/// `Display` is the whole one-line message (what was being opened, then why), as a user sees
/// it; [`std::error::Error::source`] is the error it came from (crfs-remote's, crfs-core's, an
/// I/O error), for programs that look at it. Its text is already in the message: print one or
/// the other, not both.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result of opening images and layers.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind` with a message and no source.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    /// The same error, recording `source` as its cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// The same error with `what` (the layer, source or file concerned) before its message.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A registry client's error about `what`: its kind kept (refused credentials are
    /// [`ErrorKind::Denied`]), its message after `what`.
    pub fn remote(what: impl fmt::Display, e: crfs_remote::Error) -> Error {
        Error::from(e).context(what)
    }

    /// A layer error from crfs-core about `what`: a blob read the registry refused is
    /// [`ErrorKind::Denied`], a format crfs does not read [`ErrorKind::Unsupported`], any
    /// other fault in the data [`ErrorKind::Corrupt`].
    pub fn layer(what: impl fmt::Display, e: crfs_core::Error) -> Error {
        Error::from(e).context(what)
    }

    /// A local I/O error about `what` (a path, usually).
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Error {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::Denied,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what}: {e}")).with_source(e)
    }
}

/// A registry client's error, its kind kept (see [`Error::remote`]).
impl From<crfs_remote::Error> for Error {
    fn from(e: crfs_remote::Error) -> Self {
        Error::new(kind_of_remote(e.kind()), e.to_string()).with_source(e)
    }
}

/// A crfs-core error, its kind read from it (see [`Error::layer`]).
impl From<crfs_core::Error> for Error {
    fn from(e: crfs_core::Error) -> Self {
        Error::new(kind_of_core(&e), e.to_string()).with_source(e)
    }
}

/// How a registry client's error kind reads here.
fn kind_of_remote(kind: crfs_remote::ErrorKind) -> ErrorKind {
    use crfs_remote::ErrorKind as R;
    match kind {
        R::Invalid => ErrorKind::Invalid,
        R::Auth => ErrorKind::Denied,
        R::NotFound | R::NoPlatform => ErrorKind::NotFound,
        R::Protocol => ErrorKind::Corrupt,
        R::Network => ErrorKind::Network,
        // Local, and kinds added later.
        _ => ErrorKind::Io,
    }
}

/// How a crfs-core error reads here.
fn kind_of_core(e: &crfs_core::Error) -> ErrorKind {
    use crfs_core::Error as C;
    const ENOENT: i32 = 2;
    const EACCES: i32 = 13;
    match e {
        C::Io(io) if io.errno == EACCES => ErrorKind::Denied,
        C::Io(io) if io.errno == ENOENT => ErrorKind::NotFound,
        C::Io(_) => ErrorKind::Io,
        C::NoFooter | C::ExternalToc | C::UnsupportedVersion(_) | C::ZstdUnsupported | C::TooLarge { .. } => {
            ErrorKind::Unsupported
        }
        _ => ErrorKind::Corrupt,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// How the /crfs namespace hears of a failed resolution: not found (ENOENT), denied (EACCES),
/// anything else (EIO).
impl From<Error> for crfs_vfs::ResolveError {
    fn from(e: Error) -> Self {
        match e.kind {
            ErrorKind::NotFound => crfs_vfs::ResolveError::NotFound(e.message),
            ErrorKind::Denied => crfs_vfs::ResolveError::Denied(e.message),
            _ => crfs_vfs::ResolveError::Failed(e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_blob_read_is_denied_and_keeps_its_source() {
        let refused = crfs_core::Error::Io(crfs_core::error::IoError { errno: 13, what: "registry refused" });
        let e = Error::layer("img layer sha256:1", refused.clone());
        assert_eq!(e.kind(), ErrorKind::Denied);
        assert_eq!(e.kind().errno(), 13);
        assert!(e.to_string().starts_with("img layer sha256:1: "), "{e}");
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<crfs_core::Error>());
        assert_eq!(source, Some(&refused));
        assert!(matches!(crfs_vfs::ResolveError::from(e), crfs_vfs::ResolveError::Denied(_)));
    }

    #[test]
    fn format_faults_are_corrupt_or_unsupported() {
        assert_eq!(Error::layer("x", crfs_core::Error::TocDigestMismatch).kind(), ErrorKind::Corrupt);
        assert_eq!(Error::layer("x", crfs_core::Error::NoFooter).kind(), ErrorKind::Unsupported);
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(Error::io("/nope", missing).kind(), ErrorKind::NotFound);
    }
}
