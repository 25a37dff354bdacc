//! The writer: a tar in, an eStargz or zstd:chunked blob out, laid out as the reference
//! `estargz` package's `Build` lays it out (`writer/plan.rs` lists the rules). Compiled with the
//! `write` feature only.
//!
//! Three steps, each usable alone so that a std front-end can run the middle one on many
//! threads:
//!
//! 1. [`plan()`] scans the input tar's headers through [`ReadAt`] (`writer/tarscan.rs`), orders the entries
//!    as the reference `Build` does (duplicates, prioritized files, landmarks) and lays out the
//!    gzip members and TOC entries ([`Plan`], [`Assembler`]).
//! 2. Each member is filled from the input ([`Plan::fill_member`]) and compressed on its own
//!    ([`Plan::compress_member`], with any [`Deflate`]); members are independent, so they can be
//!    compressed in any order and on any thread.
//! 3. The [`Assembler`] takes the members in order, records offsets and digests, hashes the
//!    DiffID and writes the TOC member and the literal 51-byte footer.
//!
//! [`convert`] runs the three steps on one thread. Output is deterministic: it depends only on
//! the input, the [`Options`] and the deflater.
//!
//! Tar headers are copied from the input byte for byte (the reference's "lossless" mode), so a
//! plain `tar -xzf` of the blob sees the input's own headers; only the landmark, the TOC entry
//! and sparse files (expanded into regular files) get headers written here (`writer/tarhdr.rs`). Reading and writing headers follow the crate's
//! one set of tar rules, and names, hardlinks, the TOC entry name and [`Format`] are the reader's.

pub mod compress;
mod plan;
pub(crate) mod tarhdr;
pub(crate) mod tarscan;
mod toc_json;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[cfg(feature = "zstd")]
pub use compress::ZstdFrames;
pub use compress::{Deflate, GzipMembers, MemberCompressor, MinizDeflate};
pub use plan::{Assembler, ChunkRef, Member, Plan, plan};

use crate::digest::Digest;
use crate::footer::Format;
use crate::read_at::ReadAt;

/// Default chunk size: 4 MiB, as the reference.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// Default gzip level: 9, as the reference.
pub const DEFAULT_LEVEL: u8 = 9;

/// How to write the blob.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output format: [`Format::Estargz`] (gzip members, the 51-byte footer) or
    /// [`Format::ZstdChunked`] as stargz-snapshotter writes it (a zstd frame per member, the TOC
    /// JSON in a zstd frame inside a skippable frame, the 40-byte `GnUlInUx` footer in another;
    /// unlike the reference (v0.12), the tar end-of-archive blocks end the last payload frame, so
    /// the decompressed stream is a complete tar). The other formats are refused.
    pub format: Format,
    /// Largest chunk of a regular file in one gzip member.
    pub chunk_size: u64,
    /// Compression level: gzip 0 to 9; zstd 0 to 22 (what a zstd compressor makes of it is its
    /// own business: ruzstd has one level).
    pub level: u8,
    /// Files to put first (paths in the layer; `/`, `./` prefixes allowed), in this order.
    pub prioritized: Vec<String>,
    /// Most bytes of holes that expanding GNU sparse files may add to one layer (the sum of
    /// each sparse file's size minus its stored data). A sparse map claiming more is refused
    /// before anything is laid out, so a hostile map cannot make the plan grow or the writer
    /// run without bound.
    pub max_sparse_holes: u64,
}

/// The error for a format the writer does not write.
pub(crate) const UNWRITTEN_FORMAT: Error = Error::BadOption("the writer writes eStargz and zstd:chunked only");

/// Default of [`Options::max_sparse_holes`]: 16 GiB.
pub const DEFAULT_MAX_SPARSE_HOLES: u64 = 16 << 30;

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Estargz,
            chunk_size: DEFAULT_CHUNK_SIZE,
            level: DEFAULT_LEVEL,
            prioritized: Vec::new(),
            max_sparse_holes: DEFAULT_MAX_SPARSE_HOLES,
        }
    }
}

/// What a finished blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// sha256 of the TOC JSON (the `containerd.io/snapshot/stargz/toc.digest` annotation).
    pub toc_digest: Digest,
    /// sha256 of the whole uncompressed stream, TOC entry and tar end included.
    pub diff_id: Digest,
    /// Length of that stream (the `io.containers.estargz.uncompressed-size` annotation).
    pub uncompressed_size: u64,
    /// zstd:chunked only: sha256 of the compressed TOC (the `manifest-checksum` annotation).
    pub toc_compressed_digest: Option<Digest>,
    /// zstd:chunked only: the `manifest-position` annotation's offset, compressed length and
    /// uncompressed length of the TOC (its type is always 1).
    pub manifest_position: Option<(u64, u64, u64)>,
    /// Length of the blob.
    pub blob_size: u64,
    /// Offset of the TOC's gzip member.
    pub toc_offset: u64,
    /// Number of TOC entries.
    pub entries: usize,
    /// Prioritized names that were not in the input (skipped).
    pub missed_prioritized: Vec<Vec<u8>>,
}

/// Why a conversion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Reading the input failed.
    Read(crate::Error),
    /// The input is not a tar archive.
    NotTar(&'static str),
    /// A tar header is malformed.
    BadHeader {
        /// The header's offset in the input.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// The input ends inside `what`.
    Truncated {
        /// Where the missing bytes start.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// An entry declares more payload than the input holds.
    EntryTooLarge {
        /// The entry's name.
        name: Vec<u8>,
        /// The payload bytes its header says the input stores.
        size: u64,
        /// The bytes the input holds after the header.
        available: u64,
    },
    /// An entry type eStargz cannot hold (e.g. GNU volume headers, multi-volume parts).
    Unsupported {
        /// The header's offset in the input.
        offset: u64,
        /// The header's typeflag.
        typeflag: u8,
    },
    /// The compressor failed.
    Deflate(&'static str),
    /// Writing the output failed.
    Write(&'static str),
    /// Invalid options, or the steps were driven out of order.
    BadOption(&'static str),
    /// Expanding sparse files would add more than [`Options::max_sparse_holes`] bytes of holes;
    /// `name` is the file that crossed the limit.
    SparseTooLarge {
        /// The file that crossed the limit.
        name: Vec<u8>,
        /// The bytes of holes expanded up to and including it.
        holes: u64,
        /// The limit.
        limit: u64,
    },
    /// A hardlink whose target is not in the layer, is a directory, or leads back to itself
    /// through other links: its TOC would not open.
    BadHardlink {
        /// The hardlink's name.
        name: Vec<u8>,
        /// Its target, as the tar names it.
        target: Vec<u8>,
        /// What is wrong.
        what: &'static str,
    },
}

impl Error {
    /// Sets the offset of a header error found while parsing a header's body.
    pub(crate) fn at(self, offset: u64) -> Self {
        match self {
            Error::BadHeader { what, .. } => Error::BadHeader { offset, what },
            other => other,
        }
    }
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::UnexpectedEof { offset, .. } => Error::Truncated { offset, what: "the input" },
            e => Error::Read(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read(e) => write!(f, "reading the input: {e}"),
            Error::NotTar(what) => write!(f, "not a tar archive: {what}"),
            Error::BadHeader { offset, what } => write!(f, "invalid tar header at offset {offset}: {what}"),
            Error::Truncated { offset, what } => {
                write!(f, "truncated tar: the input ends in {what} (at offset {offset})")
            }
            Error::EntryTooLarge { name, size, available } => write!(
                f,
                "truncated tar: entry \"{}\" declares {size} bytes but only {available} follow",
                String::from_utf8_lossy(name)
            ),
            Error::Unsupported { offset, typeflag } => {
                write!(f, "unsupported tar entry type {:?} at offset {offset}", char::from(*typeflag))
            }
            Error::Deflate(what) => write!(f, "compression failed: {what}"),
            Error::Write(what) => write!(f, "writing the output: {what}"),
            Error::BadOption(what) => write!(f, "invalid option: {what}"),
            Error::SparseTooLarge { name, holes, limit } => write!(
                f,
                "sparse file \"{}\": expanding the layer's sparse files would add at least {holes} bytes of holes, \
                 more than the limit of {limit}",
                String::from_utf8_lossy(name)
            ),
            Error::BadHardlink { name, target, what } => write!(
                f,
                "hardlink \"{}\" to \"{}\": {what}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(target)
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Converts the tar in `src` on one thread, passing the blob's bytes to `sink` in order.
/// `compressor` makes every member; it must suit `options.format`.
pub fn convert<R: ReadAt + ?Sized>(
    src: &R,
    options: &Options,
    compressor: &mut dyn MemberCompressor,
    mut sink: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<Summary, Error> {
    let (plan, mut assembler) = plan(src, options)?;
    let mut data = Vec::new();
    let mut out = Vec::new();
    for i in 0..plan.members().len() {
        plan.fill_member(src, i, &mut data)?;
        out.clear();
        let digest = plan.compress_member(i, &data, compressor, &mut out)?;
        sink(&out)?;
        assembler.add(&plan, &data, out.len() as u64, digest)?;
    }
    out.clear();
    let summary = assembler.finish(&plan, compressor, &mut out)?;
    sink(&out)?;
    Ok(summary)
}

/// The core's own compressor for `options`: miniz_oxide gzip members, or ruzstd frames.
pub fn default_compressor(options: &Options) -> Result<alloc::boxed::Box<dyn MemberCompressor>, Error> {
    match options.format {
        Format::Estargz => Ok(alloc::boxed::Box::new(GzipMembers::miniz(options.level))),
        #[cfg(feature = "zstd")]
        Format::ZstdChunked => Ok(alloc::boxed::Box::new(ZstdFrames::new(options.level))),
        #[cfg(not(feature = "zstd"))]
        Format::ZstdChunked => Err(Error::BadOption("zstd:chunked needs the zstd feature")),
        Format::LegacyStargz | Format::ZstdChunkedV2 => Err(UNWRITTEN_FORMAT),
    }
}

/// [`convert`] into a `Vec`, with the [`default_compressor`].
pub fn convert_to_vec<R: ReadAt + ?Sized>(src: &R, options: &Options) -> Result<(Vec<u8>, Summary), Error> {
    let mut blob = Vec::new();
    let mut compressor = default_compressor(options)?;
    let summary = convert(src, options, compressor.as_mut(), |bytes| {
        blob.extend_from_slice(bytes);
        Ok(())
    })?;
    Ok((blob, summary))
}
