//! Image layers that are not eStargz or zstd:chunked (plain tar, tar+gzip, tar+zstd).
//!
//! Such a layer has no TOC, so it cannot be read lazily: it is fetched whole once (checked
//! against the manifest's digest), converted locally to eStargz by the same code as
//! `crfs convert`, and that copy is what gets mounted. The copy is kept in the disk cache
//! directory as `converted/<algorithm>/<hex>` (named by the original layer's digest; written to
//! a temporary file and renamed into place, so concurrent processes see all of it or none), and
//! the next open of the same layer uses it without fetching anything. Copies count towards the
//! cache's bound and are evicted least recently used first, like fetched ranges; an evicted copy
//! stays readable by whoever has it open, and is made again on the next open. Without a disk
//! cache the copy lives in an unlinked temporary file for as long as the layer is open.
//!
//! A layer is taken for a plain one when its descriptor has none of the annotations of lazy
//! layers (toc.digest, zstd:chunked's manifest-checksum) and the core finds no footer in it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crfs_core::oci::{MANIFEST_CHECKSUM_ANNOTATIONS, TOC_DIGEST_ANNOTATION};
use crfs_core::{FileReadAt, ReadAt};
use crfs_remote::{DiskCache, LayerDesc, SourceLayer};

use crate::Blob;
use crate::error::{Error, ErrorKind, Result};

/// Whether a layer descriptor carries nothing that says it is lazy (eStargz or zstd:chunked).
pub fn unannotated(desc: &LayerDesc) -> bool {
    !desc.annotations.contains_key(TOC_DIGEST_ANNOTATION)
        && !MANIFEST_CHECKSUM_ANNOTATIONS.iter().any(|k| desc.annotations.contains_key(*k))
}

/// Where the converted copy of layer `digest` lives in the cache.
fn converted_path(cache: &DiskCache, digest: &str) -> Result<PathBuf> {
    cache.converted_path(digest).ok_or_else(|| Error::new(ErrorKind::Invalid, format!("{digest}: not a sha256 digest")))
}

fn open_blob(path: &Path) -> Result<Blob> {
    FileReadAt::open(path).map(|f| Arc::new(f) as Blob).map_err(|e| Error::io(path.display(), e))
}

/// A temporary file removed when dropped (the fetched original blob).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The plain layers of one [`crate::Images`]: fetched, checked, converted, cached and evicted
/// here. Conversions run one at a time (a layer shared by two images being resolved at once is
/// then fetched once: the second finds the first's copy).
#[derive(Debug, Default)]
pub struct PlainLayers {
    /// Held while a layer is fetched and converted.
    one_at_a_time: Mutex<()>,
    /// Numbers the temporary files of this value's conversions.
    seq: AtomicU64,
}

impl PlainLayers {
    /// The converted copy of this layer made by an earlier run, if the cache holds one.
    pub fn cached(&self, desc: &LayerDesc, cache: Option<&DiskCache>) -> Option<Blob> {
        let path = converted_path(cache?, &desc.digest).ok()?;
        let blob = open_blob(&path).ok()?;
        // Recently used: eviction goes by modification time.
        let _ = std::fs::File::open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        tracing::info!(layer = %desc.digest, copy = %path.display(), "layer is not lazy; using its local copy");
        Some(blob)
    }

    /// Removes this layer's indexed copy (found unusable).
    pub fn discard(&self, desc: &LayerDesc, cache: Option<&DiskCache>) {
        if let Some(path) = cache.and_then(|c| converted_path(c, &desc.digest).ok()) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Waits for this value's copies being made to finish (one at a time), then the copy an
    /// earlier one made of `desc`'s layer, if any. Hold the guard while making a new one.
    fn take_turn(&self, desc: &LayerDesc, cache: Option<&DiskCache>) -> (std::sync::MutexGuard<'_, ()>, Option<Blob>) {
        let turn = self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
        (turn, self.cached(desc, cache))
    }

    /// Where a copy of `desc`'s layer is made (a work directory) and kept (in the cache).
    fn places(&self, desc: &LayerDesc, cache: Option<&DiskCache>) -> Result<(PathBuf, Option<PathBuf>)> {
        let (work, dest) = match cache {
            Some(c) => (c.dir().join("tmp"), Some(converted_path(c, &desc.digest)?)),
            None => (std::env::temp_dir(), None),
        };
        std::fs::create_dir_all(&work).map_err(|e| Error::io(work.display(), e))?;
        Ok((work, dest))
    }

    /// Fetches the whole layer into a temporary file in `work`, checked against its digest;
    /// returns it and the stem of its name (for files made from it).
    fn fetch_whole(&self, name: &str, l: &SourceLayer, work: &Path) -> Result<(TempFile, String)> {
        let digest = l.desc.as_ref().map_or("", |d| d.digest.as_str());
        let hex = digest.split_once(':').map_or("", |(_, h)| h);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let stem = format!("plain-{}-{seq}-{}", std::process::id(), hex.get(..16).unwrap_or(hex));
        let original = TempFile(work.join(format!("{stem}.orig")));
        let file = std::fs::File::create(&original.0).map_err(|e| Error::io(original.0.display(), e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        l.copy_whole(&mut out).map_err(|e| Error::remote(format!("{name}: fetching the whole layer"), e))?;
        std::io::Write::flush(&mut out).map_err(|e| Error::io(original.0.display(), e))?;
        Ok((original, stem))
    }

    /// Fetches the whole layer once and checks it against the manifest's blob digest: for a
    /// layer that has a TOC but no annotation to check that TOC against. Returns the local
    /// copy (kept in the disk cache when there is one), to be read through its own TOC.
    pub fn fetch_checked(&self, name: &str, l: &SourceLayer, cache: Option<&DiskCache>) -> Result<Blob> {
        let Some(desc) = &l.desc else {
            return Err(Error::new(ErrorKind::Invalid, format!("{name}: no digest to check the layer against")));
        };
        let (_one, cached) = self.take_turn(desc, cache);
        if let Some(copy) = cached {
            return Ok(copy);
        }
        tracing::warn!(
            layer = %name,
            bytes = desc.size,
            "the manifest gives no TOC digest for this layer: fetching it whole to check it against the layer \
             digest (--no-verify reads it lazily, unchecked)"
        );
        let (work, dest) = self.places(desc, cache)?;
        let (original, _) = self.fetch_whole(name, l, &work)?;
        let blob = match (&dest, cache) {
            (Some(dest), Some(c)) => {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
                }
                std::fs::rename(&original.0, dest).map_err(|e| Error::io(dest.display(), e))?;
                let blob = open_blob(dest)?;
                c.added(blob.size());
                blob
            }
            // Only the open file keeps it once `original` is dropped.
            _ => open_blob(&original.0)?,
        };
        tracing::info!(layer = %name, "layer checked against its digest; read from the local copy");
        Ok(blob)
    }

    /// Fetches the whole layer, checks its digest, converts it to eStargz and returns the copy.
    /// `why` is what opening it lazily said.
    pub fn fetch_and_index(
        &self,
        name: &str,
        l: &SourceLayer,
        cache: Option<&DiskCache>,
        why: &crfs_core::Error,
    ) -> Result<Blob> {
        let Some(desc) = &l.desc else { return Err(Error::layer(name, why.clone())) };
        let (_one, cached) = self.take_turn(desc, cache);
        if let Some(copy) = cached {
            return Ok(copy);
        }
        tracing::warn!(
            layer = %name,
            bytes = desc.size,
            media_type = %desc.media_type,
            "layer is not lazy (not eStargz or zstd:chunked: {why}); fetching it whole and indexing it locally"
        );
        let (work, dest) = self.places(desc, cache)?;
        let (original, stem) = self.fetch_whole(name, l, &work)?;
        let input = original
            .0
            .to_str()
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("{}: not UTF-8", original.0.display())))?
            .to_owned();
        // Level 1: the copy is local, so converting fast matters more than its size.
        let settings = crfs_convert::Settings {
            options: crfs_convert::Options { level: 1, ..crfs_convert::Options::default() },
            ..crfs_convert::Settings::default()
        };
        let converted = match &dest {
            Some(d) => d.clone(),
            None => work.join(format!("{stem}.esgz")),
        };
        if let Some(parent) = converted.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        }
        let summary = crfs_convert::convert(&input, crfs_convert::Output::Path(&converted), &settings)
            .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{name}: indexing the layer: {e}")).with_source(e))?;
        let blob = open_blob(&converted)?;
        match cache {
            Some(c) => c.added(blob.size()),
            // Only the open file keeps it now.
            None => drop(std::fs::remove_file(&converted)),
        }
        tracing::info!(layer = %name, uncompressed = summary.uncompressed_size, copy = %converted.display(), "layer indexed");
        Ok(blob)
    }
}
