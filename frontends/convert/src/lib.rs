//! crfs-convert: tar layers to eStargz, compressed on every core.
//!
//! What it owns: getting a tar to the core's writer ([`input`]: a plain tar is read in place; a
//! tar.gz, tar.zst or standard input is first spooled, decompressed, to a temporary file, since
//! the writer reads the tar twice and out of order), compressing the writer's gzip members on
//! worker threads ([`engine`], with zlib-rs through flate2 as the deflater), and writing the blob
//! to a temporary file renamed into place, so that an error leaves no partial output.
//!
//! The bytes never depend on the thread count: the core's plan fixes every member boundary
//! before compression starts, each member is compressed on its own with the same settings, and
//! members are written in plan order.
//!
//! [`image`] converts whole images in OCI image layouts (every platform, every layer, new
//! manifests, configs and annotations), on top of crfs-core's layout helpers and annotation
//! names (`crfs_core::oci`) and oci-spec's types. [`cleanup`] lists every temporary or uncommitted path, so that a front-end's signal
//! handler can remove them before exiting.
//!
//! What it must never do: know the format. Ordering, headers, TOC and footer all come from
//! `crfs_core::writer`. It must never depend on crfs-vfs, crfs-remote (no
//! network, no async runtime), crfs-image, the FUSE or NFS front-ends or the CLI.

#![deny(missing_docs)]

pub mod cleanup;
pub mod engine;
pub mod image;
pub mod input;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use crfs_core::Format;
pub use crfs_core::writer::{Options, Summary};
pub use engine::ZlibDeflate;

/// Why a conversion failed. `Display` gives one line.
#[derive(Debug)]
pub enum Error {
    /// Opening, reading or writing a file (or stdin/stdout).
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The error it met.
        error: std::io::Error,
    },
    /// The input is compressed but its stream is broken.
    BadCompression {
        /// The compression the input was taken for (`gzip`, `zstd`).
        format: &'static str,
        /// The decoder's error.
        error: std::io::Error,
    },
    /// The tar or the options are not acceptable.
    Writer(crfs_core::writer::Error),
    /// An OCI image layout is missing something or holds something unusable.
    Image(String),
}

impl Error {
    fn io(what: impl Into<String>, error: std::io::Error) -> Self {
        Error::Io { what: what.into(), error }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, error } => write!(f, "{what}: {error}"),
            Error::BadCompression { format, error } => write!(f, "broken {format} input: {error}"),
            Error::Writer(e) => write!(f, "{e}"),
            Error::Image(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crfs_core::writer::Error> for Error {
    fn from(e: crfs_core::writer::Error) -> Self {
        Error::Writer(e)
    }
}

/// How to convert.
#[derive(Clone, Default)]
pub struct Settings {
    /// The writer's options (chunk size, level, prioritized files).
    pub options: Options,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Called from time to time with (uncompressed bytes written, total).
    pub progress: Option<std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>>,
}

/// Where the blob goes.
pub enum Output<'a> {
    /// A file, written through a temporary file in the same directory and renamed into place.
    Path(&'a Path),
    /// A stream (standard output); on error, what was written stays written.
    Stream(&'a mut dyn Write),
}

/// Converts `input` (a tar, tar.gz or tar.zst path, or `-` for standard input) to eStargz.
pub fn convert(input: &str, output: Output<'_>, settings: &Settings) -> Result<Summary, Error> {
    let src = input::open(input)?;
    match output {
        Output::Stream(w) => {
            let summary = engine::run(&src, settings, w)?;
            w.flush().map_err(|e| Error::io("writing the output", e))?;
            Ok(summary)
        }
        Output::Path(path) => {
            let tmp = TempOutput::create(path)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &tmp.file);
            let summary = engine::run(&src, settings, &mut w)?;
            w.flush().map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
            drop(w);
            tmp.commit(path)?;
            Ok(summary)
        }
    }
}

/// A temporary output file beside the destination, removed unless committed (also on a stop
/// signal: see [`cleanup`]).
struct TempOutput {
    file: std::fs::File,
    tracked: cleanup::Tracked,
}

impl TempOutput {
    fn create(dest: &Path) -> Result<Self, Error> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = dir.join(format!(".{name}.crfs-tmp.{}", std::process::id()));
        let (file, tracked) =
            cleanup::create_file(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(TempOutput { file, tracked })
    }

    fn path(&self) -> &Path {
        self.tracked.path()
    }

    /// Syncs and renames the file to `dest`; it stays there.
    fn commit(self, dest: &Path) -> Result<(), Error> {
        self.file.sync_all().map_err(|e| Error::io(format!("writing {}", self.path().display()), e))?;
        let tmp = self.path().to_path_buf();
        cleanup::commit(vec![self.tracked], || std::fs::rename(&tmp, dest))
            .map_err(|e| Error::io(format!("renaming to {}", dest.display()), e))
    }
}
