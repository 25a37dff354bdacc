//! `crfs convert`: a tar layer to eStargz (crfs-convert does the work).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crfs_convert::{Error, Format, Options, Output, Settings, Summary};

/// Arguments of `crfs convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
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
    /// The layer: a tar, tar.gz or tar.zst file, or - for standard input.
    input: String,
    /// Where to write the blob, or - for standard output.
    output: String,
}

/// Runs `crfs convert`.
pub fn run(args: ConvertArgs) -> Result<(), String> {
    let mut prioritized = args.prioritize.clone();
    for file in &args.prioritize_from {
        let text = std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        prioritized.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
    }
    let zstd = args.format == "zstd-chunked";
    let level = args.level.unwrap_or(if zstd { 3 } else { 9 });
    if !zstd && level > 9 {
        return Err(format!("--level {level}: gzip levels are 0 to 9"));
    }
    let to_stdout = args.output == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        return Err("refusing to write a blob to a terminal (redirect standard output)".into());
    }
    let progress = progress_bar();
    let mut settings = Settings {
        options: Options {
            format: if zstd { Format::ZstdChunked } else { Format::Estargz },
            chunk_size: args.chunk_size,
            level,
            prioritized,
        },
        threads: args.threads.unwrap_or(0),
        progress: None,
    };
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

/// The summary lines; zstd:chunked adds its two manifest annotations.
fn report(s: &Summary) -> String {
    let mut text =
        format!("toc-digest {}\ndiff-id {}\nuncompressed-size {}\n", s.toc_digest, s.diff_id, s.uncompressed_size);
    if let (Some(checksum), Some((offset, len, json_len))) = (s.toc_compressed_digest, s.manifest_position) {
        text.push_str(&format!("manifest-checksum {checksum}\nmanifest-position {offset}:{len}:{json_len}:1\n"));
    }
    text
}

fn message(input: &str, e: &Error) -> String {
    match e {
        Error::Writer(_) | Error::BadCompression { .. } => {
            let name = if input == "-" { "standard input" } else { input };
            format!("{name}: {e}")
        }
        Error::Io { .. } => e.to_string(),
    }
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} converting {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    )
    .ok()?;
    bar.set_style(style);
    Some(bar)
}
