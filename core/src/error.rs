//! The reader's error type (the writer, under the `write` feature, has its own, `writer::Error`).

use core::fmt;

/// Everything that can go wrong while opening or reading a layer blob.
///
/// Each variant names one precise cause; `Display` gives a one-line message fit for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The underlying `ReadAt` failed; the message comes from it.
    Io(IoError),
    /// The blob ended before `needed` bytes at `offset` could be read.
    UnexpectedEof {
        /// Where the read started.
        offset: u64,
        /// How many bytes it needed.
        needed: u64,
    },
    /// No known footer (eStargz, legacy stargz, zstd:chunked) at the end of the blob.
    NoFooter,
    /// The blob uses the eStargz external-TOC footer, whose TOC lives in another image.
    ExternalToc,
    /// A footer was recognised but its fields are invalid.
    BadFooter(&'static str),
    /// The TOC location the footer gives lies outside the blob.
    TocOutOfRange {
        /// The TOC's offset, as the footer gives it.
        offset: u64,
        /// The TOC's length, as the footer gives it (0 when the footer gives none).
        size: u64,
        /// The blob's size.
        blob_size: u64,
    },
    /// A gzip member is malformed (bad magic, flags, header or trailer).
    BadGzip(&'static str),
    /// A gzip member's CRC32 or length trailer does not match its contents.
    GzipChecksum,
    /// A compressed stream is corrupt or ends early.
    Corrupt(&'static str),
    /// The TOC tar entry is missing or malformed.
    BadTocTar(&'static str),
    /// The TOC's JSON is not valid; `entry` is how many entries had been read before the fault.
    BadJson {
        /// How many entries had been read.
        entry: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The TOC's `version` is not 1.
    UnsupportedVersion(i64),
    /// A TOC entry is invalid; `entry` is its index in `entries`.
    BadEntry {
        /// The entry's index in `entries`.
        entry: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A hardlink's target does not exist, or the links form a cycle.
    BadHardlink {
        /// The hardlink entry's index in `entries`.
        entry: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A size set by the input exceeds a limit set by the caller.
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size (bytes or a count, as `what` says).
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// A digest string is not `sha256:` followed by 64 hex digits.
    BadDigest,
    /// The TOC digest differs from the expected one.
    TocDigestMismatch,
    /// A decompressed chunk does not match its `chunkDigest`.
    ChunkDigestMismatch {
        /// The chunk's offset within its file.
        chunk_offset: u64,
    },
    /// A whole file does not match its `digest`.
    FileDigestMismatch,
    /// The node is not a regular file (reads), or not a directory (listings).
    WrongType,
    /// The blob is zstd:chunked but the crate was built without the `zstd` feature.
    ZstdUnsupported,
}

/// An I/O failure reported by a `ReadAt` implementation: a kind plus a short static message.
///
/// Kept `Copy`-cheap and allocation-free so that `Error` stays usable in no_std code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoError {
    /// The OS error number, when there is one (0 otherwise).
    pub errno: i32,
    /// What failed.
    pub what: &'static str,
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) if e.errno != 0 => write!(f, "I/O error: {} (os error {})", e.what, e.errno),
            Error::Io(e) => write!(f, "I/O error: {}", e.what),
            Error::UnexpectedEof { offset, needed } => {
                write!(f, "blob ends before {needed} bytes at offset {offset}")
            }
            Error::NoFooter => f.write_str("not a stargz, eStargz or zstd:chunked blob (no footer found)"),
            Error::ExternalToc => f.write_str("eStargz blob with an external TOC is not supported"),
            Error::BadFooter(what) => write!(f, "invalid footer: {what}"),
            Error::TocOutOfRange { offset, size, blob_size } => {
                write!(f, "TOC at offset {offset} with size {size} lies outside the {blob_size}-byte blob")
            }
            Error::BadGzip(what) => write!(f, "invalid gzip member: {what}"),
            Error::GzipChecksum => f.write_str("gzip member fails its CRC32/length check"),
            Error::Corrupt(what) => write!(f, "corrupt compressed data: {what}"),
            Error::BadTocTar(what) => write!(f, "invalid TOC tar entry: {what}"),
            Error::BadJson { entry, what } => write!(f, "invalid TOC JSON (after {entry} entries): {what}"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported TOC version {v} (want 1)"),
            Error::BadEntry { entry, what } => write!(f, "invalid TOC entry #{entry}: {what}"),
            Error::BadHardlink { entry, what } => write!(f, "invalid hardlink in TOC entry #{entry}: {what}"),
            Error::TooLarge { what, size, limit } => {
                write!(f, "{what} of {size} bytes exceeds the limit of {limit} bytes")
            }
            Error::BadDigest => f.write_str("invalid digest (want sha256:<64 hex digits>)"),
            Error::TocDigestMismatch => f.write_str("TOC digest does not match the expected digest"),
            Error::ChunkDigestMismatch { chunk_offset } => {
                write!(f, "chunk at file offset {chunk_offset} does not match its digest")
            }
            Error::FileDigestMismatch => f.write_str("file content does not match its digest"),
            Error::WrongType => f.write_str("wrong file type for this operation"),
            Error::ZstdUnsupported => f.write_str("zstd:chunked support was not compiled in"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T> = core::result::Result<T, Error>;
