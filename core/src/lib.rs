//! crfs-core: reads stargz, eStargz and zstd:chunked container layer blobs.
//!
//! What this crate owns: the bytes and the formats. A blob is reached only through [`ReadAt`]
//! (positional reads through `&self`, so one blob serves many threads). [`footer`] finds the
//! TOC from the blob's tail; [`toc`] fetches, decompresses and digests it; [`index`] streams its
//! JSON (serde + serde-json-core) into a compact [`Index`] arena of fixed-size
//! nodes, names, sorted child ranges and chunk tables; [`layer::Layer`] ties a blob to its index
//! and decodes chunks ([`gzip`] via miniz_oxide, zstd via ruzstd behind the `zstd` feature),
//! verifying `chunkDigest`s. A decode allocates its output once; a caller that keeps a
//! [`Scratch`] (the compressed-bytes buffer, up to 1 MiB, and the decompressors) from chunk to
//! chunk makes that the only allocation for chunks whose compressed bytes fit in it, and one
//! more for bigger ones. The core keeps no state of its own: per-thread reuse is the
//! embedder's (crfs-vfs keeps a `Scratch` per thread).
//!
//! [`oci`] names the manifest annotations of lazy layers and, under `std`, reads local OCI
//! image layouts.
//!
//! The writer (module `writer`, behind the `write` feature, off by default) turns a tar into an
//! eStargz or zstd:chunked blob; it has its own error type, `writer::Error`, beside the
//! reader's [`Error`]. It shares the reader's rules rather than restating them: one tar header
//! module (numbers, checksums, prefixes, PAX records), one path cleaner, one hardlink resolver,
//! one TOC entry name and one [`Format`], all internal to the crate, so that what the writer
//! writes is what the reader reads.
//!
//! What it must never depend on: std for its reading and writing (it is `#![no_std]` + `alloc`),
//! files, sockets, registries, FUSE or NFS types. The `std` feature (on by default) adds a
//! `ReadAt` for files ([`FileReadAt`]), `std::error::Error` for the error types, the OCI
//! layout reader, and, only when an embedder asks ([`OpenOptions::threads`] in
//! [`Layer::open_with`]), threads while a layer opens: the second half of a TOC of 1 MiB or
//! more is parsed on a second thread, and the TOC's digest is computed on another while the
//! index is built. Both are scoped threads that end before the call returns, and each step runs
//! on the calling thread when no thread can be started. Otherwise, and always without `std`,
//! everything runs on the caller's thread.
//! No input may make it panic, allocate without bound or recurse on input-controlled depth.

#![no_std]
#![deny(missing_docs)]
// No slice index or range may panic: `.get()` and friends, with an error where the data can be
// at fault. Tests index freely.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod digest;
pub mod error;
pub mod file_reader;
pub mod footer;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_entry;
pub mod gzip;
mod hardlink;
pub mod index;
mod json;
pub mod layer;
pub mod oci;
mod path;
pub mod read_at;
mod tar;
mod time;
pub mod toc;
#[cfg(feature = "write")]
pub mod writer;
#[cfg(feature = "zstd")]
mod zstd;

pub use digest::Digest;
pub use error::{Error, Result};
pub use file_reader::FileReader;
pub use footer::Format;
pub use index::{Chunk, ChunkIter, Chunks, Index, Kind, Node, NodeId, ROOT, ReadPiece, ReadPieces};
pub use layer::{Layer, OpenOptions, Scratch};
#[cfg(feature = "std")]
pub use read_at::FileReadAt;
pub use read_at::{ReadAt, TransferCounts};
