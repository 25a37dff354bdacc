//! `ReadAt`: the one door through which the core sees blob bytes.

use crate::error::{Error, Result};

/// What a remote blob has transferred: see [`ReadAt::transfer_counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransferCounts {
    /// Bytes fetched from the network (a registry, a URL).
    pub fetched_bytes: u64,
    /// Reads served from a local cache instead.
    pub cache_hits: u64,
}

/// Positional reads from an immutable blob of known size.
///
/// Takes `&self`, so one blob can serve many threads at once; implementations must be safe
/// to call concurrently. Implemented here for byte slices, `Vec<u8>`, references and (with the
/// `std` feature) `std::fs::File`; the std crates implement it for remote blobs.
pub trait ReadAt {
    /// Total size of the blob in bytes.
    fn size(&self) -> u64;

    /// Reads up to `buf.len()` bytes at `offset`, returning how many were read.
    /// Returns 0 only at or past the end of the blob.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// A hint that `[start, end)` will be read soon: a remote blob may fetch it ahead in few,
    /// large requests. The default does nothing; errors here are never fatal to a reader.
    fn prefetch(&self, start: u64, end: u64) -> Result<()> {
        let _ = (start, end);
        Ok(())
    }

    /// Like [`ReadAt::prefetch`], at low priority: a remote blob fetches `[start, end)` only
    /// while no read is in progress, so it never delays one by more than one small request.
    /// The default does nothing.
    fn prefetch_when_idle(&self, start: u64, end: u64) -> Result<()> {
        let _ = (start, end);
        Ok(())
    }

    /// What a remote blob has transferred so far, for status output; `None` for a local blob
    /// (the default).
    fn transfer_counts(&self) -> Option<TransferCounts> {
        None
    }

    /// Fills `buf` completely from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let needed = buf.len() as u64;
        let mut done = 0usize;
        while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
            let at = offset + done as u64;
            let n = self.read_at(at, rest)?;
            if n == 0 {
                return Err(Error::UnexpectedEof { offset, needed });
            }
            done += n;
        }
        Ok(())
    }
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let Ok(start) = usize::try_from(offset) else { return Ok(0) };
        let Some(rest) = self.get(start..) else { return Ok(0) };
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
}

impl ReadAt for alloc::vec::Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.as_slice().read_at(offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        (**self).read_at(offset, buf)
    }

    fn prefetch(&self, start: u64, end: u64) -> Result<()> {
        (**self).prefetch(start, end)
    }

    fn prefetch_when_idle(&self, start: u64, end: u64) -> Result<()> {
        (**self).prefetch_when_idle(start, end)
    }

    fn transfer_counts(&self) -> Option<TransferCounts> {
        (**self).transfer_counts()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for alloc::sync::Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        (**self).read_at(offset, buf)
    }

    fn prefetch(&self, start: u64, end: u64) -> Result<()> {
        (**self).prefetch(start, end)
    }

    fn prefetch_when_idle(&self, start: u64, end: u64) -> Result<()> {
        (**self).prefetch_when_idle(start, end)
    }

    fn transfer_counts(&self) -> Option<TransferCounts> {
        (**self).transfer_counts()
    }
}

/// A local file with its size fixed at open time (the blob is immutable).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct FileReadAt {
    file: std::fs::File,
    size: u64,
}

#[cfg(feature = "std")]
impl FileReadAt {
    /// Opens `path` read-only and records its size.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        Ok(FileReadAt { file, size })
    }

    /// Wraps an already open file.
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(FileReadAt { file, size })
    }
}

#[cfg(all(feature = "std", unix))]
impl ReadAt for FileReadAt {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        if offset >= self.size {
            return Ok(0);
        }
        let max = usize::try_from(self.size - offset).unwrap_or(usize::MAX);
        let len = buf.len().min(max);
        let buf = buf.get_mut(..len).unwrap_or_default();
        loop {
            match self.file.read_at(buf, offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Io(crate::error::IoError {
                        errno: e.raw_os_error().unwrap_or(0),
                        what: "reading the blob file",
                    }));
                }
            }
        }
    }
}
