//! `crfs convert` (a tar layer to eStargz or zstd:chunked) and `crfs image convert` (every
//! layer of an image in an OCI layout); crfs-convert does the work. Both remove their
//! temporary output on SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crfs_convert::image::{Event, Events};
use crfs_convert::{Error, Format, Options, Output, Settings, Summary};

/// How to convert (flags shared by `convert` and `image convert`).
#[derive(clap::Args, Debug)]
pub struct ConvertOptions {
    /// Output format: gzip eStargz, or stargz-snapshotter's zstd:chunked (40-byte footer).
    #[arg(long, default_value = "estargz", value_parser = ["estargz", "zstd-chunked"])]
    format: String,
    /// Largest piece of a file in one gzip member or zstd frame, in bytes (K, M, G suffixes).
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = crate::mount::parse_size)]
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
    #[arg(long, value_name = "BYTES", default_value = "16G", value_parser = crate::mount::parse_size)]
    max_sparse_holes: u64,
}

impl ConvertOptions {
    /// The converter's settings for these flags (no progress callback yet).
    fn settings(&self) -> Result<Settings, String> {
        let mut prioritized = self.prioritize.clone();
        for file in &self.prioritize_from {
            let text = std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            prioritized.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
        }
        let zstd = self.format == "zstd-chunked";
        let level = self.level.unwrap_or(if zstd { 3 } else { 9 });
        if !zstd && level > 9 {
            return Err(format!("--level {level}: gzip levels are 0 to 9"));
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
    /// The image: an OCI image layout, oci:DIR[:TAG] (without TAG, the layout's only image).
    src: String,
    /// Where to write the converted image: oci:DIR[:TAG] (created if missing; an existing
    /// layout gets the image added, and TAG moved to it).
    dst: String,
}

/// Removes the temporary output and exits at the first SIGINT or SIGTERM (destructors do not
/// run when a signal kills the process).
fn clean_up_on_signal() -> Result<signal_hook::iterator::Handle, String> {
    crate::source::on_stop_signal(|sig| {
        crfs_convert::cleanup::remove_all();
        eprintln!("crfs: interrupted; partial output removed");
        std::process::exit(128 + sig);
    })
}

/// Runs `crfs convert`.
pub fn run(args: ConvertArgs) -> Result<(), String> {
    let mut settings = args.options.settings()?;
    let to_stdout = args.output == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        return Err("refusing to write a blob to a terminal (redirect standard output)".into());
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
    written.map_err(|e| format!("writing the summary: {e}"))
}

/// Runs `crfs image convert`: prints one line per distinct layer (`converted SRC -> NEW` or
/// `kept SRC`), then `image DIGEST`.
pub fn run_image(args: ImageConvertArgs) -> Result<(), String> {
    let settings = args.options.settings()?;
    let signals = clean_up_on_signal()?;
    let terminal = std::io::stderr().is_terminal();
    // One bar per layer, left on screen when the layer is done.
    let bar: Arc<Mutex<Option<indicatif::ProgressBar>>> = Arc::new(Mutex::new(None));
    let events: Events = {
        let bar = bar.clone();
        Arc::new(move |e: &Event<'_>| {
            let mut current = bar.lock().unwrap_or_else(|e| e.into_inner());
            match e {
                Event::LayerStart { digest, .. } if terminal => {
                    *current = progress_bar(&format!("layer {}", short(digest)));
                }
                Event::Progress { done, total } => {
                    if let Some(b) = current.as_ref() {
                        b.set_length(*total);
                        b.set_position(*done);
                    }
                }
                Event::LayerDone { digest, new_digest, .. } => {
                    if let Some(b) = current.take() {
                        // The finished bar stays on its line; what follows starts below it.
                        b.finish();
                        eprintln!();
                    }
                    println!("converted {digest} -> {new_digest}");
                }
                Event::LayerKept { digest } => println!("kept {digest}"),
                Event::LayerStart { .. } => {}
            }
        })
    };
    let result = crfs_convert::image::convert_image(&args.src, &args.dst, &settings, Some(events));
    signals.close();
    if let Some(b) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
        b.abandon();
    }
    let report = result.map_err(|e| format!("{}: {e}", args.src))?;
    println!("image {}", report.descriptor.digest());
    Ok(())
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

fn message(input: &str, e: &Error) -> String {
    match e {
        Error::Writer(_) | Error::BadCompression { .. } | Error::Image(_) => {
            let name = if input == "-" { "standard input" } else { input };
            format!("{name}: {e}")
        }
        Error::Io { .. } => e.to_string(),
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
