//! Errors of resolving and opening remote sources, and how fetch failures reach `ReadAt`.

use std::fmt;
use std::sync::Arc;

/// What kind of failure an [`Error`] is: what a caller decides on (retry, ask for
/// credentials, report ENOENT or EACCES).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A reference, URL, digest or platform string could not be parsed.
    Invalid,
    /// The registry refused the request for lack of (valid) credentials.
    Auth,
    /// The image, manifest or blob does not exist.
    NotFound,
    /// No image in a manifest list / OCI index matches the platform.
    NoPlatform,
    /// The registry or server answered something unusable (protocol violations, bad manifests).
    Protocol,
    /// The network or server kept failing until the retry deadline.
    Network,
    /// A local file could not be read.
    Local,
}

/// Why resolving an image or opening a remote blob failed: a kind, a message meant for users,
/// and the error it came from, if any ([`std::error::Error::source`]: a failed request, an I/O
/// error). The message already includes what the source says; `Display` shows the kind's
/// prefix and the message.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message and no source.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    /// The same error, recording `source` as its cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same error with `what` before its message (kind and source kept).
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind's prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, m)
    }

    pub(crate) fn auth(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Auth, m)
    }

    pub(crate) fn not_found(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, m)
    }

    pub(crate) fn no_platform(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::NoPlatform, m)
    }

    pub(crate) fn protocol(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, m)
    }

    pub(crate) fn local(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Local, m)
    }
}

/// Two errors are equal when their kind and message are (sources are not compared).
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.message;
        match self.kind {
            ErrorKind::Invalid => write!(f, "invalid: {m}"),
            ErrorKind::Auth => write!(f, "authentication failed: {m}"),
            ErrorKind::NotFound => write!(f, "not found: {m}"),
            ErrorKind::NoPlatform => write!(f, "no matching platform: {m}"),
            ErrorKind::Protocol => write!(f, "bad response: {m}"),
            ErrorKind::Network => write!(f, "network: {m}"),
            ErrorKind::Local => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Result of resolving and opening.
pub type Result<T> = std::result::Result<T, Error>;

/// How one attempt at a range read failed, which decides whether it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Connect errors, timeouts, 429, 5xx except 501, cut or short bodies: retried with backoff.
    Transient,
    /// 401 from the registry: refresh the token once, then give up.
    Unauthorized,
    /// 403 (or 401/400) from a cached redirect target: resolve the redirect again.
    ExpiredRedirect,
    /// 404 from the registry: fail now.
    NotFound,
    /// Anything else: fail now.
    Permanent,
}

/// A failed fetch: its class, a static summary for `crfs_core::Error::Io`, details for the log.
#[derive(Debug, Clone)]
pub(crate) struct FetchError {
    pub class: Class,
    pub what: &'static str,
    pub detail: String,
}

impl FetchError {
    pub fn new(class: Class, what: &'static str, detail: impl Into<String>) -> Self {
        FetchError { class, what, detail: detail.into() }
    }

    pub fn transient(what: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Class::Transient, what, detail)
    }

    pub fn permanent(what: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Class::Permanent, what, detail)
    }

    /// The error a `ReadAt` caller sees: EACCES for refused credentials, EIO otherwise.
    pub fn to_core(&self) -> crfs_core::Error {
        let errno = if self.class == Class::Unauthorized { EACCES } else { EIO };
        crfs_core::Error::Io(crfs_core::error::IoError { errno, what: self.what })
    }

    /// The error for resolve/open callers, with the details.
    pub fn to_error(&self) -> Error {
        let m = format!("{}: {}", self.what, self.detail);
        let kind = match self.class {
            Class::Unauthorized => ErrorKind::Auth,
            Class::Transient => ErrorKind::Network,
            Class::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Protocol,
        };
        Error::new(kind, m).with_source(self.clone())
    }
}

impl std::error::Error for FetchError {}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// errno values (Linux and the BSDs agree on these two).
pub(crate) const EIO: i32 = 5;
pub(crate) const EACCES: i32 = 13;
