//! crfs-core: reads stargz, eStargz and zstd:chunked container layer blobs.
//!
//! What this crate owns: the bytes and the formats. A blob is reached only through [`ReadAt`]
//! (positional reads through `&self`, so one blob serves many threads). [`footer`] finds the
//! TOC from the blob's tail; [`toc`] fetches, decompresses and digests it; [`index`] streams its
//! JSON (serde + serde-json-core, see [`json`]) into a compact [`Index`] arena of fixed-size
//! nodes, names, sorted child ranges and chunk tables; [`layer::Layer`] ties a blob to its index
//! and decodes chunks ([`gzip`] via miniz_oxide, zstd via ruzstd behind the `zstd` feature),
//! verifying `chunkDigest`s.
//!
//! [`oci`] names the manifest annotations of lazy layers and, under `std`, reads local OCI
//! image layouts.
//!
//! What it must never depend on: std (it is `#![no_std]` + `alloc`; the `std` feature only adds
//! a `ReadAt` for files, `std::error::Error` and the OCI layout reader), sockets, threads, FUSE
//! or NFS types, registries.
//! No input may make it panic, allocate without bound or recurse on input-controlled depth.

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod digest;
pub mod error;
pub mod file_reader;
pub mod footer;
#[cfg(feature = "fuzzing")]
pub mod fuzz_entry;
pub mod gzip;
pub mod index;
pub mod json;
pub mod layer;
pub mod oci;
pub mod read_at;
pub mod tar;
pub mod time;
pub mod toc;
pub mod writer;
#[cfg(feature = "zstd")]
pub mod zstd;

pub use digest::Digest;
pub use error::{Error, Result};
pub use file_reader::FileReader;
pub use footer::Format;
pub use index::{Chunk, Index, Kind, Node, NodeId, ROOT};
pub use layer::{Layer, OpenOptions};
#[cfg(feature = "std")]
pub use read_at::FileReadAt;
pub use read_at::ReadAt;
