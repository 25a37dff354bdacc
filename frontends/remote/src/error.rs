//! Errors of resolving and opening remote sources, and how fetch failures reach `ReadAt`.

use std::fmt;

/// Why resolving an image or opening a remote blob failed. Messages are meant for users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A reference, URL, digest or platform string could not be parsed.
    Invalid(String),
    /// The registry refused the request for lack of (valid) credentials.
    Auth(String),
    /// The image, manifest or blob does not exist.
    NotFound(String),
    /// No image in a manifest list / OCI index matches the platform.
    NoPlatform(String),
    /// The registry or server answered something unusable (protocol violations, bad manifests).
    Protocol(String),
    /// The network or server kept failing until the retry deadline.
    Network(String),
    /// A local file could not be read.
    Local(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid: {m}"),
            Error::Auth(m) => write!(f, "authentication failed: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::NoPlatform(m) => write!(f, "no matching platform: {m}"),
            Error::Protocol(m) => write!(f, "bad response: {m}"),
            Error::Network(m) => write!(f, "network: {m}"),
            Error::Local(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

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
        match self.class {
            Class::Unauthorized => Error::Auth(m),
            Class::Transient => Error::Network(m),
            Class::NotFound => Error::NotFound(m),
            _ => Error::Protocol(m),
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// errno values (Linux and the BSDs agree on these two).
pub(crate) const EIO: i32 = 5;
pub(crate) const EACCES: i32 = 13;
