//! Converting a whole image in an OCI image layout (`oci:SRC[:TAG]` to `oci:DST[:TAG]`).
//!
//! The image named in SRC's `index.json` (by its `org.opencontainers.image.ref.name`, or the
//! only one) is walked: an image index keeps all its platforms; each image manifest gets every
//! tar layer converted (each distinct layer digest once), its config's `rootfs.diff_ids`
//! rewritten to the new layers' DiffIDs, and the layer descriptors annotated the way
//! stargz-snapshotter's converter does (`containerd.io/snapshot/stargz/toc.digest`,
//! `io.containers.estargz.uncompressed-size`, and for zstd:chunked the manifest checksum and
//! position). Layers already converted (with a TOC digest or manifest-checksum annotation) and
//! blobs that are not tar layers are copied as they are (or left where they are, at the registry
//! the image was pulled from: [`KeptLayers`]). A Docker image (schema 2 manifests and
//! manifest lists) comes out as an OCI one: its manifests, index, config and layer media types
//! become their OCI equivalents, the bytes of configs and kept layers staying as they are.
//!
//! Writes are atomic: every blob goes to a temporary file renamed to its digest, and DST's
//! `index.json` is replaced last, by a rename. On error (or on a stop signal, see
//! [`crate::cleanup`]) the blobs written so far are removed, and DST itself if this run
//! created it; DST's index is never half-written. Tags follow skopeo: `DST:TAG` names the
//! result in DST's index (an older image of that name loses the name), plain `DST` adds it
//! unnamed.
//!
//! Source blobs are checked against their digests and sizes before use. JSON written here has
//! its object keys sorted, so the same input gives the same manifest digests.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crfs_core::Digest;
use crfs_core::digest::Hasher;
use crfs_core::oci::{
    self as layout, MANIFEST_CHECKSUM_ANNOTATIONS, MANIFEST_POSITION_ANNOTATION, REF_NAME, TOC_DIGEST_ANNOTATION,
    UNCOMPRESSED_SIZE_ANNOTATION,
};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::cleanup::{self, Tracked};
use crate::{Error, Format, Settings, Summary};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker media types and the OCI ones a converted image has instead.
const DOCKER_TO_OCI: [(&str, &str); 5] = [
    ("application/vnd.docker.distribution.manifest.v2+json", OCI_MANIFEST),
    ("application/vnd.docker.distribution.manifest.list.v2+json", OCI_INDEX),
    ("application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", GZIP_LAYER),
    ("application/vnd.docker.image.rootfs.diff.tar", "application/vnd.oci.image.layer.v1.tar"),
];

/// The OCI media type for a Docker one; any other is returned as it is.
fn oci_type(media: &str) -> &str {
    DOCKER_TO_OCI.iter().find(|(docker, _)| *docker == media).map_or(media, |(_, oci)| oci)
}

/// `desc` with its Docker media type, if any, replaced by the OCI one.
fn with_oci_type(desc: &Descriptor) -> Descriptor {
    let mut out = desc.clone();
    out.set_media_type(MediaType::from(oci_type(desc.media_type().as_ref())));
    out
}
/// Layer media types converted (anything else is copied as it is).
const TAR_LAYERS: [&str; 5] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Image indexes nested deeper than this are refused.
const MAX_DEPTH: usize = 4;

/// What [`convert_image`] reports as it goes.
pub enum Event<'a> {
    /// A layer starts converting: its source digest and compressed size.
    LayerStart {
        /// The source layer's digest.
        digest: &'a str,
        /// Its compressed size.
        size: u64,
    },
    /// Uncompressed bytes of the current layer written so far, of the total.
    Progress {
        /// Bytes written.
        done: u64,
        /// The layer's uncompressed size.
        total: u64,
    },
    /// A layer is done: the new blob's digest and its conversion summary.
    LayerDone {
        /// The source layer's digest.
        digest: &'a str,
        /// The converted blob's digest.
        new_digest: &'a str,
        /// What the writer reports about the blob.
        summary: &'a Summary,
    },
    /// A layer was already converted (or is not a tar layer) and is copied as it is (or left
    /// at the registry, see [`KeptLayers`]).
    LayerKept {
        /// The layer's digest.
        digest: &'a str,
    },
}

/// Receives [`Event`]s (progress bars, logs).
pub type Events = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// The outcome of [`convert_image`].
#[derive(Debug, Clone)]
pub struct Report {
    /// The descriptor of the converted image as written to DST's index.json.
    pub descriptor: Descriptor,
    /// Distinct layers converted.
    pub converted: usize,
    /// Distinct layers copied unchanged (already eStargz or zstd:chunked, or not tar).
    pub kept: usize,
}

/// Where the bytes of kept layers (see [`keeps_layer`]) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptLayers {
    /// In SRC, like every other blob: they are copied to DST.
    InSource,
    /// In SRC, or left at the registry SRC was pulled from (a pull that left them out, see
    /// `crfs_remote::Remote::pull_image`): those missing from SRC are left out of DST too, for
    /// the push of DST to mount or fetch them there. DST is then complete only with them.
    MaybeAtRegistry,
}

/// Whether [`convert_image`] keeps a layer as it is, rather than converting it: it is already
/// converted (it has a TOC digest or manifest-checksum annotation), or it is not a tar layer.
/// `has_annotation` says whether the layer's descriptor has an annotation of that key.
pub fn keeps_layer(media_type: &str, has_annotation: impl Fn(&str) -> bool) -> bool {
    has_annotation(TOC_DIGEST_ANNOTATION)
        || MANIFEST_CHECKSUM_ANNOTATIONS.iter().any(|key| has_annotation(key))
        || !TAR_LAYERS.contains(&media_type)
}

/// [`keeps_layer`] for a layer descriptor as its manifest has it (JSON); one without a media
/// type is not kept (its conversion fails, as the manifest does not parse).
pub fn keeps_layer_as_described(descriptor: &serde_json::Value) -> bool {
    let Some(media_type) = descriptor.get("mediaType").and_then(|m| m.as_str()) else { return false };
    let annotations = descriptor.get("annotations").and_then(|a| a.as_object());
    keeps_layer(media_type, |key| annotations.is_some_and(|a| a.contains_key(key)))
}

/// Converts the image `src` (`oci:DIR[:TAG]`) into `dst` (`oci:DIR[:TAG]`); see the module docs.
pub fn convert_image(
    src: &str,
    dst: &str,
    settings: &Settings,
    kept_layers: KeptLayers,
    events: Option<Events>,
) -> Result<Report, Error> {
    let (src_dir, src_tag) = layout_spec(src)?;
    let (dst_dir, dst_tag) = layout_spec(dst)?;
    let entry = pick_entry(&src_dir, src_tag)?;
    let mut created = Vec::new();
    let blobs = dst_dir.join("blobs").join("sha256");
    if let Some(t) =
        cleanup::create_dir_all(&blobs).map_err(|e| Error::io(format!("creating {}", blobs.display()), e))?
    {
        created.push(t);
    }
    let mut job = Job {
        src: src_dir,
        dst: dst_dir.clone(),
        settings,
        kept_layers,
        events,
        layers: HashMap::new(),
        written: Vec::new(),
        converted: 0,
        kept: 0,
    };
    let mut top = job.node(&entry, 0)?;
    let mut annotations = top.annotations().clone().unwrap_or_default();
    annotations.remove(REF_NAME);
    if let Some(tag) = dst_tag {
        annotations.insert(REF_NAME.to_owned(), tag.to_owned());
    }
    top.set_annotations((!annotations.is_empty()).then_some(annotations));

    // DST's index: skopeo's rules for adding an image to a layout.
    let index_path = dst_dir.join("index.json");
    let mut index = match std::fs::read(&index_path) {
        Ok(data) => serde_json::from_slice::<ImageIndex>(&data)
            .map_err(|e| Error::Image(format!("{}: not an OCI index: {e}", index_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => empty_index()?,
        Err(e) => return Err(Error::io(format!("reading {}", index_path.display()), e)),
    };
    add_manifest(&mut index, top.clone());
    let layout_file = dst_dir.join("oci-layout");
    if !layout_file.exists() {
        let tracked = write_file_tracked(&dst_dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let final_tracked = cleanup::rename(tracked, &layout_file)
            .map_err(|e| Error::io(format!("writing {}", layout_file.display()), e))?;
        job.written.extend(final_tracked);
    }
    let tmp_index = write_file_tracked(&dst_dir, "index.json", &canonical_json(&index)?)?;
    let tmp_path = tmp_index.path().to_path_buf();
    let mut keep = std::mem::take(&mut job.written);
    keep.extend(created);
    keep.push(tmp_index);
    cleanup::commit(keep, || std::fs::rename(&tmp_path, &index_path))
        .map_err(|e| Error::io(format!("writing {}", index_path.display()), e))?;
    Ok(Report { descriptor: top, converted: job.converted, kept: job.kept })
}

/// `oci:DIR[:TAG]` split, refusing anything else.
fn layout_spec(spec: &str) -> Result<(PathBuf, Option<&str>), Error> {
    if !spec.starts_with("oci:") {
        return Err(Error::Image(format!("{spec}: not an OCI layout (write it as oci:DIR[:TAG])")));
    }
    Ok(layout::split_spec(spec))
}

fn empty_index() -> Result<ImageIndex, Error> {
    oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .map_err(|e| Error::Image(format!("building an index: {e}")))
}

/// The entry of SRC's index.json named `tag`, or its only entry.
fn pick_entry(dir: &Path, tag: Option<&str>) -> Result<Descriptor, Error> {
    let path = dir.join("index.json");
    let data = std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let index: ImageIndex = serde_json::from_slice(&data)
        .map_err(|e| Error::Image(format!("{}: not an OCI index: {e}", path.display())))?;
    let named = |d: &&Descriptor| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) == tag;
    let found = match tag {
        Some(_) => index.manifests().iter().find(named),
        None if index.manifests().len() == 1 => index.manifests().first(),
        None => None,
    };
    found.cloned().ok_or_else(|| {
        Error::Image(match tag {
            Some(t) => format!("{}: no image tagged {t:?}", dir.display()),
            None => format!("{}: {} images; name one as oci:DIR:TAG", dir.display(), index.manifests().len()),
        })
    })
}

/// skopeo's rule: a named entry takes the name from any older entry holding it; an unnamed
/// entry with the same digest is replaced; otherwise the entry is appended.
fn add_manifest(index: &mut ImageIndex, desc: Descriptor) {
    let name = |d: &Descriptor| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)).cloned();
    let mut entries = index.manifests().clone();
    if let Some(n) = name(&desc) {
        for e in entries.iter_mut() {
            if name(e).as_deref() == Some(n.as_str()) {
                let mut a = e.annotations().clone().unwrap_or_default();
                a.remove(REF_NAME);
                e.set_annotations((!a.is_empty()).then_some(a));
            }
        }
    }
    if let Some(e) = entries.iter_mut().find(|e| e.digest() == desc.digest() && name(e).is_none()) {
        *e = desc;
    } else {
        entries.push(desc);
    }
    index.set_manifests(entries);
}

/// JSON with every object's keys sorted (oci-spec keeps annotations in hash maps, whose order
/// changes from run to run).
fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let value = serde_json::to_value(value).map_err(|e| Error::Image(format!("encoding JSON: {e}")))?;
    serde_json::to_vec(&sorted(value)).map_err(|e| Error::Image(format!("encoding JSON: {e}")))
}

/// Creates `DIR/.NAME.crfs-tmp.PID` holding `data`, synced, tracked.
fn write_file_tracked(dir: &Path, name: &str, data: &[u8]) -> Result<Tracked, Error> {
    let path = dir.join(format!(".{name}.crfs-tmp.{}", std::process::id()));
    let (mut file, tracked) =
        cleanup::create_file(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(tracked)
}

/// Writes through to `inner`, hashing and counting what went through.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A converted (or kept) layer.
#[derive(Clone)]
struct LayerOut {
    desc: Descriptor,
    /// The new DiffID; `None` when the layer was kept as it is.
    diff_id: Option<String>,
}

struct Job<'a> {
    src: PathBuf,
    dst: PathBuf,
    settings: &'a Settings,
    kept_layers: KeptLayers,
    events: Option<Events>,
    layers: HashMap<String, LayerOut>,
    /// Blobs this run added to DST, removed unless the index is committed.
    written: Vec<Tracked>,
    converted: usize,
    kept: usize,
}

impl Job<'_> {
    fn emit(&self, e: &Event<'_>) {
        if let Some(f) = &self.events {
            f(e);
        }
    }

    fn src_blob(&self, desc: &Descriptor) -> Result<PathBuf, Error> {
        layout::blob_path(&self.src, desc.digest().as_ref()).map_err(|e| Error::Image(format!("source: {e}")))
    }

    fn dst_blob(&self, digest: &str) -> Result<PathBuf, Error> {
        layout::blob_path(&self.dst, digest).map_err(|e| Error::Image(format!("destination: {e}")))
    }

    /// Converts what `desc` points to (an index or a manifest) and returns its new descriptor
    /// (same media type, annotations and platform; new digest and size).
    fn node(&mut self, desc: &Descriptor, depth: usize) -> Result<Descriptor, Error> {
        let docker = desc.media_type().as_ref() != oci_type(desc.media_type().as_ref());
        let media = oci_type(desc.media_type().as_ref()).to_owned();
        let digest = desc.digest().to_string();
        let data = layout::read_blob(&self.src, &digest).map_err(|e| Error::Image(format!("source: {e}")))?;
        if data.len() as u64 != desc.size() {
            return Err(Error::Image(format!("source: {digest} is {} bytes, not {}", data.len(), desc.size())));
        }
        let new_data = match media.as_str() {
            OCI_INDEX if depth < MAX_DEPTH => {
                let mut index: ImageIndex = serde_json::from_slice(&data)
                    .map_err(|e| Error::Image(format!("{digest}: not an OCI image index: {e}")))?;
                let mut manifests = Vec::with_capacity(index.manifests().len());
                for m in index.manifests() {
                    manifests.push(self.node(m, depth + 1)?);
                }
                index.set_manifests(manifests);
                if docker {
                    index.set_media_type(Some(MediaType::ImageIndex));
                }
                canonical_json(&index)?
            }
            OCI_INDEX => return Err(Error::Image(format!("{digest}: image indexes nested too deep"))),
            OCI_MANIFEST => {
                let manifest: ImageManifest = serde_json::from_slice(&data)
                    .map_err(|e| Error::Image(format!("{digest}: not an OCI image manifest: {e}")))?;
                self.manifest(manifest, &digest, docker)?
            }
            other => return Err(Error::Image(format!("{digest}: unsupported media type {other}"))),
        };
        let (new_digest, size) = self.put_blob(&new_data)?;
        let mut out = with_oci_type(desc);
        out.set_digest(oci_digest(&new_digest)?);
        out.set_size(size);
        Ok(out)
    }

    /// A manifest's new bytes; a Docker one (`docker`) becomes an OCI one.
    fn manifest(&mut self, mut manifest: ImageManifest, digest: &str, docker: bool) -> Result<Vec<u8>, Error> {
        let mut layers = Vec::with_capacity(manifest.layers().len());
        let mut diff_ids = Vec::with_capacity(manifest.layers().len());
        for l in manifest.layers() {
            let out = self.layer(l)?;
            diff_ids.push(out.diff_id.clone());
            layers.push(out.desc);
        }
        let config_desc = manifest.config().clone();
        if docker {
            manifest.set_media_type(Some(MediaType::ImageManifest));
            manifest.set_config(with_oci_type(&config_desc));
        }
        if diff_ids.iter().all(Option::is_none) {
            self.copy_blob(&config_desc)?;
        } else {
            let config_digest = config_desc.digest().to_string();
            let data =
                layout::read_blob(&self.src, &config_digest).map_err(|e| Error::Image(format!("source: {e}")))?;
            let mut config: serde_json::Value = serde_json::from_slice(&data)
                .map_err(|e| Error::Image(format!("config {config_digest}: not JSON: {e}")))?;
            let Some(ids) = config.pointer_mut("/rootfs/diff_ids").and_then(|v| v.as_array_mut()) else {
                return Err(Error::Image(format!("config {config_digest}: no rootfs.diff_ids")));
            };
            if ids.len() != diff_ids.len() {
                return Err(Error::Image(format!(
                    "manifest {digest}: {} layers but its config lists {} diff_ids",
                    diff_ids.len(),
                    ids.len()
                )));
            }
            for (slot, new) in ids.iter_mut().zip(&diff_ids) {
                if let Some(new) = new {
                    *slot = serde_json::Value::String(new.clone());
                }
            }
            let (new_digest, size) = self.put_blob(&canonical_json(&config)?)?;
            let mut c = with_oci_type(&config_desc);
            c.set_digest(oci_digest(&new_digest)?);
            c.set_size(size);
            manifest.set_config(c);
        }
        manifest.set_layers(layers);
        canonical_json(&manifest)
    }

    /// A layer converted, or copied if it is already converted or not a tar layer.
    fn layer(&mut self, desc: &Descriptor) -> Result<LayerOut, Error> {
        let digest = desc.digest().to_string();
        if let Some(done) = self.layers.get(&digest) {
            return Ok(done.clone());
        }
        let annotations = desc.annotations().clone().unwrap_or_default();
        let out = if keeps_layer(desc.media_type().as_ref(), |key| annotations.contains_key(key)) {
            let at_registry = self.kept_layers == KeptLayers::MaybeAtRegistry
                && std::fs::symlink_metadata(self.src_blob(desc)?)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            if !at_registry {
                self.copy_blob(desc)?;
            }
            self.emit(&Event::LayerKept { digest: &digest });
            self.kept += 1;
            LayerOut { desc: with_oci_type(desc), diff_id: None }
        } else {
            let out = self.convert_layer(desc).map_err(|e| match e {
                Error::Io { .. } => e,
                other => Error::Image(format!("layer {digest}: {other}")),
            })?;
            self.converted += 1;
            out
        };
        self.layers.insert(digest, out.clone());
        Ok(out)
    }

    fn convert_layer(&mut self, desc: &Descriptor) -> Result<LayerOut, Error> {
        let digest = desc.digest().to_string();
        let path = self.src_blob(desc)?;
        check_blob(&path, &digest, desc.size())?;
        self.emit(&Event::LayerStart { digest: &digest, size: desc.size() });
        let path_str = path.to_str().ok_or_else(|| Error::Image(format!("{}: not UTF-8", path.display())))?;
        let input = crate::input::open(path_str)?;
        let mut settings = self.settings.clone();
        if let Some(events) = self.events.clone() {
            settings.progress = Some(Arc::new(move |done, total| events(&Event::Progress { done, total })));
        }
        let mut blob = self.new_blob(&digest)?;
        let summary = crate::engine::run(&input, &settings, &mut blob.writer)?;
        let (new_digest, len) = self.publish(blob, None)?;

        let mut annotations = desc.annotations().clone().unwrap_or_default();
        annotations.insert(TOC_DIGEST_ANNOTATION.to_owned(), summary.toc_digest.to_string());
        annotations.insert(UNCOMPRESSED_SIZE_ANNOTATION.to_owned(), summary.uncompressed_size.to_string());
        let media = match self.settings.options.format {
            // The writer writes only eStargz and zstd:chunked (`GnUlInUx`).
            Format::Estargz | Format::LegacyStargz => GZIP_LAYER,
            Format::ZstdChunked | Format::ZstdChunkedV2 => {
                if let (Some(checksum), Some(position)) = (summary.toc_compressed_digest, manifest_position(&summary)) {
                    annotations.insert(MANIFEST_CHECKSUM_ANNOTATIONS[0].to_owned(), checksum.to_string());
                    annotations.insert(MANIFEST_POSITION_ANNOTATION.to_owned(), position);
                }
                ZSTD_LAYER
            }
        };
        let mut new = Descriptor::new(MediaType::from(media), len, oci_digest(&new_digest)?);
        new.set_annotations(Some(annotations));
        self.emit(&Event::LayerDone { digest: &digest, new_digest: &new_digest, summary: &summary });
        Ok(LayerOut { desc: new, diff_id: Some(summary.diff_id.to_string()) })
    }

    /// Adds `data` to DST's blobs (unless there already); its digest and size.
    fn put_blob(&mut self, data: &[u8]) -> Result<(String, u64), Error> {
        let digest = Digest::of(data).to_string();
        let dest = self.dst_blob(&digest)?;
        if !std::fs::metadata(&dest).is_ok_and(|m| m.len() == data.len() as u64) {
            let dir = self.dst.join("blobs").join("sha256");
            let tmp = write_file_tracked(&dir, digest.trim_start_matches("sha256:"), data)?;
            let renamed =
                cleanup::rename(tmp, &dest).map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
            self.written.extend(renamed);
        }
        Ok((digest, data.len() as u64))
    }

    /// Copies a blob from SRC to DST as it is (checked against its digest and size on the way).
    fn copy_blob(&mut self, desc: &Descriptor) -> Result<(), Error> {
        let digest = desc.digest().to_string();
        let from = self.src_blob(desc)?;
        let dest = self.dst_blob(&digest)?;
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == desc.size()) {
            return Ok(());
        }
        let mut blob = self.new_blob(&digest)?;
        let mut r = std::fs::File::open(&from).map_err(|e| Error::Image(format!("source blob {digest}: {e}")))?;
        std::io::copy(&mut r, &mut blob.writer)
            .map_err(|e| Error::io(format!("copying {} to {}", from.display(), blob.tmp.path().display()), e))?;
        self.publish(blob, Some((&digest, desc.size())))?;
        Ok(())
    }

    /// A temporary file in DST's blobs, tracked, and a writer that hashes what goes in.
    fn new_blob(&self, source_digest: &str) -> Result<NewBlob, Error> {
        let hex = source_digest.rsplit(':').next().unwrap_or_default();
        let path = self.dst.join("blobs").join("sha256").join(format!(".{hex}.crfs-tmp.{}", std::process::id()));
        let (file, tmp) =
            cleanup::create_file(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let writer = HashingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            hasher: Hasher::default(),
            len: 0,
        };
        Ok(NewBlob { writer, tmp })
    }

    /// Syncs a new blob and renames it to its digest; with `expect`, it must have that digest and
    /// size. Returns the digest and size.
    fn publish(&mut self, blob: NewBlob, expect: Option<(&str, u64)>) -> Result<(String, u64), Error> {
        let NewBlob { writer, tmp } = blob;
        let HashingWriter { inner, hasher, len } = writer;
        let what = || format!("writing {}", tmp.path().display());
        let file = inner.into_inner().map_err(|e| Error::io(what(), e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(what(), e))?;
        let digest = hasher.finish().to_string();
        if let Some((want, size)) = expect
            && (want != digest || size != len)
        {
            return Err(Error::Image(format!(
                "source blob {want}: content does not match its digest and size ({len} bytes, {size} expected)"
            )));
        }
        let dest = self.dst_blob(&digest)?;
        let renamed = cleanup::rename(tmp, &dest).map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        self.written.extend(renamed);
        Ok((digest, len))
    }
}

/// A blob being written into DST.
struct NewBlob {
    writer: HashingWriter<std::io::BufWriter<std::fs::File>>,
    tmp: Tracked,
}

/// Checks a source blob's size and digest (one read of the file).
fn check_blob(path: &Path, digest: &str, size: u64) -> Result<(), Error> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::Image(format!("source blob {digest}: {e}")))?;
    let mut hasher = HashingWriter { inner: std::io::sink(), hasher: Hasher::default(), len: 0 };
    std::io::copy(&mut f, &mut hasher).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let HashingWriter { hasher, len, .. } = hasher;
    if len != size {
        return Err(Error::Image(format!("source blob {digest}: {len} bytes, the manifest says {size}")));
    }
    if hasher.finish().to_string() != digest {
        return Err(Error::Image(format!("source blob {digest}: content does not match its digest")));
    }
    Ok(())
}

fn oci_digest(s: &str) -> Result<oci_spec::image::Digest, Error> {
    s.parse().map_err(|e| Error::Image(format!("{s}: {e}")))
}

/// The zstd:chunked `manifest-position` annotation: `OFFSET:LENGTH:UNCOMPRESSED_LENGTH:1`.
pub fn manifest_position(s: &Summary) -> Option<String> {
    s.manifest_position.map(|(offset, len, json_len)| format!("{offset}:{len}:{json_len}:1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_layers_are_the_converted_ones_and_those_not_tar() {
        let layer = |v: serde_json::Value| keeps_layer_as_described(&v);
        let gzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        assert!(!layer(serde_json::json!({"mediaType": gzip, "digest": "sha256:0", "size": 1})));
        assert!(!layer(serde_json::json!({"mediaType": gzip, "annotations": {"other": "x"}})));
        assert!(layer(
            serde_json::json!({"mediaType": GZIP_LAYER, "annotations": {TOC_DIGEST_ANNOTATION: "sha256:1"}})
        ));
        let checksum = MANIFEST_CHECKSUM_ANNOTATIONS[0];
        assert!(layer(serde_json::json!({"mediaType": ZSTD_LAYER, "annotations": {checksum: "sha256:1"}})));
        assert!(layer(serde_json::json!({"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip"})));
        assert!(!layer(serde_json::json!({"digest": "sha256:0", "size": 1})), "no media type: fetched");
    }
}
