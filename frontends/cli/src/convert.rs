//! `crfs convert` (a tar layer to eStargz or zstd:chunked) and `crfs image convert` (every
//! layer of an image, from and to OCI layouts or registries); crfs-convert does the work,
//! crfs-remote the pulls and pushes. Both remove their temporary output on SIGINT or SIGTERM.
//!
//! A registry source is pulled (every platform, digests kept) into a temporary layout under
//! `$TMPDIR`; a registry destination gets the converted image in another temporary layout,
//! pushed from there. Both are removed at the end, on error and on a stop signal. From a
//! registry to a registry, the layers kept as they are (already converted, or not tar) are not
//! pulled: the push mounts them from the source repository, or fetches them from the source to
//! upload them when it cannot.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crfs_convert::image::{Event, Events, KeptLayers, keeps_layer_as_described};
use crfs_convert::{Error as ConvertError, Format, Options, Output, Settings, Summary};
use crfs_image::{Error, ErrorKind, Result};
use crfs_remote::{BlobRef, ImageSource, LeaveOut, Moved, Remote, TransferEvent, TransferEvents};

use crate::args::{MirrorArgs, RegistryArgs, invalid};

/// How to convert (flags shared by `convert` and `image convert`).
#[derive(clap::Args, Debug)]
pub struct ConvertOptions {
    /// Output format: gzip eStargz, or stargz-snapshotter's zstd:chunked (40-byte footer).
    #[arg(long, default_value = "estargz", value_parser = ["estargz", "zstd-chunked"])]
    format: String,
    /// Largest piece of a file in one gzip member or zstd frame, in bytes (K, M, G suffixes).
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = crate::args::parse_size)]
    chunk_size: u64,
    /// Compression level: gzip 0 (store) to 9 (best), default 9; zstd 1 to 22, default 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=22))]
    level: Option<u8>,
    /// Put this file first (with its parent directories), for prefetching. Repeatable; kept in
    /// order, before those of --prioritize-from.
    #[arg(long = "prioritize", value_name = "PATH")]
    prioritize: Vec<String>,
    /// Read more files to put first from FILE, one path per line.
    #[arg(long, value_name = "FILE")]
    prioritize_from: Vec<PathBuf>,
    /// Compression threads (default: one per core). The output is the same for any count.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Most bytes of holes that expanding GNU sparse files may add to a layer (K, M, G
    /// suffixes); a layer claiming more is refused.
    #[arg(long, value_name = "BYTES", default_value = "16G", value_parser = crate::args::parse_size)]
    max_sparse_holes: u64,
}

impl ConvertOptions {
    /// The converter's settings for these flags (no progress callback yet).
    fn settings(&self) -> Result<Settings> {
        let mut prioritized = self.prioritize.clone();
        for file in &self.prioritize_from {
            let text =
                std::fs::read_to_string(file).map_err(|e| Error::io(format_args!("reading {}", file.display()), e))?;
            prioritized.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
        }
        let zstd = self.format == "zstd-chunked";
        let level = self.level.unwrap_or(if zstd { 3 } else { 9 });
        if !zstd && level > 9 {
            return Err(invalid(format!("--level {level}: gzip levels are 0 to 9")));
        }
        Ok(Settings {
            options: Options {
                format: if zstd { Format::ZstdChunked } else { Format::Estargz },
                chunk_size: self.chunk_size,
                level,
                prioritized,
                max_sparse_holes: self.max_sparse_holes,
            },
            threads: self.threads.unwrap_or(0),
            progress: None,
        })
    }
}

/// Arguments of `crfs convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    #[command(flatten)]
    options: ConvertOptions,
    /// The layer: a tar, tar.gz or tar.zst file, or - for standard input.
    input: String,
    /// Where to write the blob, or - for standard output.
    output: String,
}

/// Arguments of `crfs image convert`.
#[derive(clap::Args, Debug)]
pub struct ImageConvertArgs {
    #[command(flatten)]
    options: ConvertOptions,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    mirrors: MirrorArgs,
    /// The image: an OCI image layout, oci:DIR[:TAG] (without TAG, the layout's only image), or
    /// a registry image, HOST[:PORT]/REPO[:TAG|@DIGEST] (docker:// accepted; without TAG,
    /// latest), pulled with every platform.
    src: String,
    /// Where to write the converted image: oci:DIR[:TAG] (created if missing; an existing
    /// layout gets the image added, and TAG moved to it), or a registry, HOST[:PORT]/REPO[:TAG]
    /// (docker:// accepted): blobs the registry lacks are pushed, then the manifests, the tag
    /// last; without TAG the image is pushed by digest only.
    dst: String,
}

/// Where `crfs image convert` reads or writes an image.
enum End {
    Layout(String),
    Registry(String),
}

impl End {
    fn of(spec: &str) -> Result<End> {
        if spec.starts_with("oci:") {
            Ok(End::Layout(spec.to_owned()))
        } else if crfs_remote::is_registry_reference(spec) {
            Ok(End::Registry(spec.to_owned()))
        } else {
            Err(invalid(format!(
                "{spec}: not an OCI layout (write it as oci:DIR[:TAG]) nor a registry image (HOST[:PORT]/REPO[:TAG])"
            )))
        }
    }
}

/// A new temporary OCI layout under `$TMPDIR` for an image on its way from or to a registry,
/// readable by this user only (images may be private): removed when dropped, or by the signal
/// handler.
fn staging(role: &str) -> Result<(PathBuf, crfs_convert::cleanup::Tracked)> {
    use std::os::unix::fs::PermissionsExt;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    for attempt in 0..100u32 {
        let name = format!("crfs-image-{role}.{}.{}", std::process::id(), nanos.wrapping_add(attempt));
        let dir = std::env::temp_dir().join(name);
        // None: the name is taken; try another.
        if let Some(tracked) = crfs_convert::cleanup::create_dir_all(&dir)
            .map_err(|e| Error::io(format_args!("creating {}", dir.display()), e))?
        {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir.display(), e))?;
            return Ok((dir, tracked));
        }
    }
    Err(Error::new(ErrorKind::Io, format!("no free name for a temporary layout in {}", std::env::temp_dir().display())))
}

/// Removes the temporary output and exits at the first SIGINT or SIGTERM (destructors do not
/// run when a signal kills the process).
fn clean_up_on_signal() -> Result<signal_hook::iterator::Handle> {
    crate::signals::on_stop_signal(|sig| {
        crfs_convert::cleanup::remove_all();
        eprintln!("crfs: interrupted; partial output removed");
        std::process::exit(128 + sig);
    })
}

/// Runs `crfs convert`.
pub fn run(args: ConvertArgs) -> Result<()> {
    let mut settings = args.options.settings()?;
    let to_stdout = args.output == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(invalid("refusing to write a blob to a terminal (redirect standard output)"));
    }
    let signals = clean_up_on_signal()?;
    let progress = progress_bar("converting");
    if let Some(bar) = &progress {
        let bar = bar.clone();
        settings.progress = Some(Arc::new(move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        }));
    }
    let result = if to_stdout {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        crfs_convert::convert(&args.input, Output::Stream(&mut lock), &settings)
    } else {
        crfs_convert::convert(&args.input, Output::Path(Path::new(&args.output)), &settings)
    };
    signals.close();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let summary = result.map_err(|e| message(&args.input, &e))?;
    for missed in &summary.missed_prioritized {
        eprintln!("crfs: warning: prioritized file not in the layer: {}", String::from_utf8_lossy(missed));
    }
    let text = report(&summary);
    let written = if to_stdout {
        std::io::stderr().write_all(text.as_bytes())
    } else {
        std::io::stdout().write_all(text.as_bytes())
    };
    written.map_err(|e| Error::io("writing the summary", e))
}

/// Runs `crfs image convert`: prints one line per distinct layer (`converted SRC -> NEW` or
/// `kept SRC`); for a registry destination one per blob (`uploaded`, `exists` or `mounted
/// DIGEST`), then `pushed REFERENCE` and a count; last `image DIGEST`.
pub fn run_image(args: ImageConvertArgs) -> Result<()> {
    let settings = args.options.settings()?;
    let src = End::of(&args.src)?;
    let dst = End::of(&args.dst)?;
    let signals = clean_up_on_signal()?;
    let bar: Arc<Mutex<Option<indicatif::ProgressBar>>> = Arc::new(Mutex::new(None));
    let result = convert_image(&args, &src, &dst, &settings, &bar);
    signals.close();
    if let Some(b) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
        b.abandon();
    }
    let digest = result?;
    println!("image {digest}");
    Ok(())
}

/// Pull (a registry source), convert, push (a registry destination); the image's digest.
fn convert_image(
    args: &ImageConvertArgs,
    src: &End,
    dst: &End,
    settings: &Settings,
    bar: &Arc<Mutex<Option<indicatif::ProgressBar>>>,
) -> Result<String> {
    let references: Vec<&str> = [src, dst]
        .into_iter()
        .filter_map(|end| match end {
            End::Registry(reference) => Some(reference.as_str()),
            End::Layout(_) => None,
        })
        .collect();
    let remote = match references.as_slice() {
        [] => None,
        // Explicit credentials go to the one registry named (two need --authfile).
        named => {
            let mut options = args.registry.options(named)?;
            args.mirrors.apply(&mut options)?;
            Some(Remote::new(options)?)
        }
    };
    let remote = || remote.as_ref().ok_or_else(|| invalid("no registry client"));
    if let End::Registry(reference) = dst {
        // Credentials and reachability before a conversion that may take long.
        remote()?.check_push(reference).map_err(|e| Error::remote(reference, e))?;
    }
    let mut staged = Vec::new();
    // Registry to registry, the layers kept as they are stay at the registry: the push mounts
    // them from the source repository, or fetches them from it to upload them.
    let leave_kept = matches!((src, dst), (End::Registry(_), End::Registry(_)));
    // The mirror a registry source was pulled from, if any: the push fetches from it too.
    let mut pulled_mirror = None;
    let src_layout = match src {
        End::Layout(spec) => spec.clone(),
        End::Registry(reference) => {
            let (dir, tracked) = staging("src")?;
            staged.push(tracked);
            let leave_out: Option<LeaveOut> = leave_kept.then(|| Arc::new(keeps_layer_as_described) as LeaveOut);
            let pulled = remote()?
                .pull_image(reference, &dir, leave_out, Some(transfer_events("pulling")))
                .map_err(|e| Error::remote(reference, e))?;
            tracing::info!(reference, digest = %pulled.top.digest, blobs = pulled.blobs, bytes = pulled.bytes,
                left_out = pulled.left_out, mirror = pulled.mirror.as_deref().unwrap_or("none"), "source pulled");
            let left = if leave_kept {
                format!("; {} kept layers left at the registry", pulled.left_out)
            } else {
                String::new()
            };
            println!("pulled {} blobs ({} bytes){left}", pulled.blobs, pulled.bytes);
            pulled_mirror = pulled.mirror;
            format!("oci:{}", dir.display())
        }
    };
    let dst_layout = match dst {
        End::Layout(spec) => spec.clone(),
        End::Registry(_) => {
            let (dir, tracked) = staging("dst")?;
            staged.push(tracked);
            format!("oci:{}", dir.display())
        }
    };
    let kept_layers = if leave_kept { KeptLayers::MaybeAtRegistry } else { KeptLayers::InSource };
    let report =
        crfs_convert::image::convert_image(&src_layout, &dst_layout, settings, kept_layers, Some(layer_events(bar)))
            .map_err(|e| Error::new(kind_of(&e), format!("{}: {e}", args.src)))?;
    let digest = report.descriptor.digest().to_string();
    if let End::Registry(reference) = dst {
        let top = BlobRef {
            media_type: report.descriptor.media_type().to_string(),
            digest: digest.clone(),
            size: report.descriptor.size(),
        };
        let source = match src {
            End::Registry(r) => Some(ImageSource { reference: r.as_str(), mirror: pulled_mirror.as_deref() }),
            End::Layout(_) => None,
        };
        let (dir, _) = crfs_core::oci::split_spec(&dst_layout);
        let pushed = remote()?
            .push_image(&dir, &top, reference, source, Some(transfer_events("pushing")))
            .map_err(|e| Error::remote(reference, e))?;
        println!("pushed {}", pushed.pushed);
        println!(
            "blobs: {} uploaded ({} bytes), {} already there, {} mounted",
            pushed.uploaded, pushed.uploaded_bytes, pushed.existed, pushed.mounted
        );
        if pushed.fetched > 0 {
            println!("of the blobs uploaded, {} were fetched from the source first", pushed.fetched);
        }
    }
    drop(staged);
    Ok(digest)
}

/// Progress bars and output lines for the layers being converted: one bar per layer, left on
/// screen when the layer is done.
fn layer_events(bar: &Arc<Mutex<Option<indicatif::ProgressBar>>>) -> Events {
    let terminal = std::io::stderr().is_terminal();
    let bar = bar.clone();
    Arc::new(move |e: &Event<'_>| {
        let mut current = bar.lock().unwrap_or_else(|e| e.into_inner());
        match e {
            Event::LayerStart { digest, .. } if terminal => {
                *current = progress_bar(&format!("layer {}", short(digest)));
            }
            Event::Progress { done, total } => advance(&current, *done, *total),
            Event::LayerDone { digest, new_digest, .. } => {
                finish_bar(&mut current);
                println!("converted {digest} -> {new_digest}");
            }
            Event::LayerKept { digest } => println!("kept {digest}"),
            Event::LayerStart { .. } => {}
        }
    })
}

/// Progress bars (`VERB DIGEST`, one per blob moving, several at once when pulls run side by
/// side) and output lines for blobs pulled or pushed.
fn transfer_events(verb: &'static str) -> TransferEvents {
    let terminal = std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let bars: Mutex<std::collections::HashMap<String, indicatif::ProgressBar>> = Mutex::default();
    Arc::new(move |e: &TransferEvent<'_>| {
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        match e {
            TransferEvent::Start { digest, .. } if terminal => {
                if let Some(bar) = progress_bar(&format!("{verb} {}", short(digest))) {
                    bars.insert((*digest).to_owned(), multi.add(bar));
                }
            }
            TransferEvent::Start { .. } => {}
            TransferEvent::Progress { digest, done, total } => advance(&bars.get(*digest).cloned(), *done, *total),
            TransferEvent::Done { digest, size, how } => {
                if let Some(bar) = bars.remove(*digest) {
                    bar.finish();
                }
                match how {
                    Moved::Pulled => tracing::debug!(digest, size, "pulled"),
                    Moved::Uploaded => println!("uploaded {digest} ({size} bytes)"),
                    Moved::Existed => println!("exists {digest}"),
                    Moved::Mounted => println!("mounted {digest}"),
                }
            }
        }
    })
}

fn advance(current: &Option<indicatif::ProgressBar>, done: u64, total: u64) {
    if let Some(b) = current.as_ref() {
        b.set_length(total);
        b.set_position(done);
    }
}

/// Leaves a finished bar on its line; what follows starts below it.
fn finish_bar(current: &mut Option<indicatif::ProgressBar>) {
    if let Some(b) = current.take() {
        b.finish();
        eprintln!();
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// The summary lines; zstd:chunked adds its two manifest annotations.
fn report(s: &Summary) -> String {
    let mut text =
        format!("toc-digest {}\ndiff-id {}\nuncompressed-size {}\n", s.toc_digest, s.diff_id, s.uncompressed_size);
    if let (Some(checksum), Some(position)) = (s.toc_compressed_digest, crfs_convert::image::manifest_position(s)) {
        text.push_str(&format!("manifest-checksum {checksum}\nmanifest-position {position}\n"));
    }
    text
}

/// What kind of failure a conversion error is: bad input is corrupt data, the rest local I/O.
fn kind_of(e: &ConvertError) -> ErrorKind {
    match e {
        ConvertError::Writer(_) | ConvertError::BadCompression { .. } | ConvertError::Image(_) => ErrorKind::Corrupt,
        ConvertError::Io { .. } => ErrorKind::Io,
    }
}

/// A conversion error about `input` (named unless the error names its file itself).
fn message(input: &str, e: &ConvertError) -> Error {
    match e {
        ConvertError::Writer(_) | ConvertError::BadCompression { .. } | ConvertError::Image(_) => {
            let name = if input == "-" { "standard input" } else { input };
            Error::new(kind_of(e), format!("{name}: {e}"))
        }
        ConvertError::Io { .. } => Error::new(kind_of(e), e.to_string()),
    }
}

fn progress_bar(what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what} {{bar:30}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"
    ))
    .ok()?;
    bar.set_style(style);
    Some(bar)
}
