//! `crfs`: the command-line front-end.
//!
//! This binary owns argument parsing, output formatting and exit codes only; formats live in
//! crfs-core. It must never hold format logic of its own.

mod inspect;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// crfs: use container image layers (stargz, eStargz, zstd:chunked) without pulling them.
#[derive(Parser, Debug)]
#[command(name = "crfs", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a blob's format, TOC location and digest, and what it holds.
    Info {
        /// The layer blob (a local file).
        blob: std::path::PathBuf,
    },
    /// List a directory of a blob, like ls.
    Ls {
        /// Long format: mode, links, owner, group, size, mtime, name.
        #[arg(short = 'l')]
        long: bool,
        /// Recursive. Without -l: one path per line, relative to the layer root, directories
        /// included.
        #[arg(short = 'R')]
        recursive: bool,
        /// The layer blob.
        blob: std::path::PathBuf,
        /// A path inside the layer (default: the root).
        path: Option<String>,
    },
    /// Write files of a blob to standard output.
    Cat {
        /// Skip chunk digest checks.
        #[arg(long)]
        no_verify: bool,
        /// The layer blob.
        blob: std::path::PathBuf,
        /// Paths inside the layer.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Read every chunk of a blob and check every digest.
    Verify {
        /// Also require the TOC digest to equal this (sha256:HEX).
        #[arg(long, value_name = "DIGEST")]
        toc_digest: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// The layer blob.
        blob: std::path::PathBuf,
    },
    /// Show what crfs does on the sample layer built into this binary.
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { blob } => inspect::info(&blob),
        Command::Ls { long, recursive, blob, path } => inspect::ls(&blob, path.as_deref(), long, recursive),
        Command::Cat { no_verify, blob, paths } => inspect::cat(&blob, &paths, !no_verify),
        Command::Verify { toc_digest, threads, blob } => inspect::verify(&blob, toc_digest.as_deref(), threads),
        Command::Demo => inspect::demo(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("crfs: {message}");
            ExitCode::FAILURE
        }
    }
}
