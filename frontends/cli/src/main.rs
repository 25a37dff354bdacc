//! `crfs`: the command-line front-end.
//!
//! This binary owns argument parsing, output formatting and exit codes: clap argument structs
//! (`args`) turned into the options of the libraries, what each command prints, and the one
//! place an error is printed (`crfs: MESSAGE`, exit status 1). What an image means (sources,
//! layers, verification, plain layers, prefetch, the /crfs namespace) is crfs-image's; formats
//! are crfs-core's; serving is crfs-fuse's and crfs-nfs's. Besides those it uses crfs-vfs
//! (walking a tree for `ls` and `cat`), crfs-remote (image transfers of `crfs image convert`)
//! and crfs-convert. Modules: `args` and `signals` are leaves; the commands (`inspect`,
//! `mount`, `nfs`, `convert`) use them and never each other.

// Doc comments of clap arguments are the `--help` text, where `oci:DIR[:TAG]` is syntax the
// user types, not a link to resolve, and `DIR/<registry>/hosts.toml` is not an HTML tag.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod args;
mod convert;
mod inspect;
mod mount;
mod nfs;
mod signals;
mod status;

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
        #[command(flatten)]
        remote: args::RemoteArgs,
        /// A layer blob file, blob URL, oci:DIR[:TAG] or registry image (each layer shown).
        blob: String,
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
        #[command(flatten)]
        remote: args::RemoteArgs,
        /// A layer blob file, blob URL, oci:DIR[:TAG] or registry image (layers merged).
        blob: String,
        /// A path inside the layer (default: the root).
        path: Option<String>,
    },
    /// Write files of a blob to standard output.
    Cat {
        /// Skip chunk digest checks.
        #[arg(long)]
        no_verify: bool,
        #[command(flatten)]
        remote: args::RemoteArgs,
        /// A layer blob file, blob URL, oci:DIR[:TAG] or registry image (layers merged).
        blob: String,
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
        #[command(flatten)]
        remote: args::RemoteArgs,
        /// A layer blob file, blob URL, oci:DIR[:TAG] or registry image (layers merged).
        blob: String,
    },
    /// Mount a layer, a stack of layers, an image, or the whole /crfs namespace read-only with
    /// FUSE, and serve it until unmounted or interrupted.
    Mount {
        #[command(flatten)]
        serve: args::ServeArgs,
        /// Let other users see the mount (non-root users need user_allow_other in /etc/fuse.conf).
        #[arg(long)]
        allow_other: bool,
        #[command(flatten)]
        remote: args::RemoteArgs,
        /// What to mount, then where (an existing directory). A source is a blob file, a blob
        /// URL, oci:DIR[:TAG] or a registry image (HOST/REPO:TAG); several are stacked bottom
        /// first into one merged tree, whiteouts applied. With only a mountpoint (default
        /// /crfs), every image is a path away: MOUNTPOINT/image/HOST/REPO:TAG/.
        #[arg(value_name = "SOURCE... MOUNTPOINT", num_args = 0..)]
        paths: Vec<String>,
        #[command(flatten)]
        namespace: args::NamespaceFlags,
    },
    /// Serve a layer blob, an image's layers (merged), or with no source the whole /crfs
    /// namespace, read-only over NFSv3, for macOS and hosts without FUSE, until interrupted;
    /// prints the mount commands.
    Nfs {
        #[command(flatten)]
        listen: nfs::ListenArgs,
        #[command(flatten)]
        serve: args::ServeArgs,
        #[command(flatten)]
        remote: args::RemoteArgs,
        /// What to serve: blob files, URLs, oci:DIR[:TAG] or registry images, stacked bottom
        /// first into one merged tree, whiteouts applied. None: the /crfs namespace (README,
        /// image/HOST/REPO:TAG/, layer/HOST/REPO:TAG/).
        #[arg(value_name = "SOURCE", num_args = 0..)]
        sources: Vec<String>,
        #[command(flatten)]
        namespace: args::NamespaceFlags,
    },
    /// Serve containers/storage's Additional Layer Store over FUSE, so that podman, CRI-O
    /// and buildah pull eStargz and zstd:chunked images lazily: add
    /// `additionallayerstores = ["MOUNTPOINT:ref"]` under [storage.options] in storage.conf
    /// (overlay driver). Layers without a TOC are declined and pulled by the runtime as usual.
    Store {
        #[command(flatten)]
        serve: args::ServeArgs,
        /// Let other users see the mount (non-root users need user_allow_other in /etc/fuse.conf).
        #[arg(long)]
        allow_other: bool,
        #[command(flatten)]
        remote: args::RemoteArgs,
        /// Where to serve the store (an existing directory).
        mountpoint: std::path::PathBuf,
    },
    /// Show what each layer of a running `crfs mount` or `crfs store` is doing: lazy or not and
    /// why, how it was checked, bytes fetched so far and reads served by the disk cache.
    Status {
        /// The mountpoint.
        mountpoint: std::path::PathBuf,
    },
    /// Unmount a crfs mount (also clears a stale mount left by a crash).
    Umount {
        /// The mountpoint.
        mountpoint: std::path::PathBuf,
    },
    /// Convert a tar layer (tar, tar.gz, tar.zst or - for stdin) to eStargz or zstd:chunked, on
    /// every core; prints its TOC digest, DiffID and uncompressed size.
    Convert(convert::ConvertArgs),
    /// Work on whole images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show what crfs does on the sample layer built into this binary.
    Demo,
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Convert every layer of an image (all platforms) to eStargz or zstd:chunked, writing the
    /// image with new manifests, layer annotations and DiffIDs: crfs image convert SRC DST,
    /// each an OCI layout oci:DIR[:TAG] or a registry image HOST[:PORT]/REPO[:TAG] (pulled
    /// whole; pushed with the tag last).
    Convert(convert::ImageConvertArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let debug = match &cli.command {
        Command::Mount { serve, .. } | Command::Nfs { serve, .. } | Command::Store { serve, .. } => serve.debug,
        _ => false,
    };
    // The layer store is a daemon whose decisions (lazy, declined, used, released) are what
    // its users look for: those lines are on by default.
    let default_filter = if matches!(cli.command, Command::Store { .. }) {
        "warn,crfs_image::store=info,crfs_vfs::store=info"
    } else {
        "warn"
    };
    let filter = if debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter))
    };
    // Plain text when stderr is a file or a pipe (logs kept by a service manager or a test).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let result = match cli.command {
        Command::Info { remote, blob } => inspect::info(&blob, &remote),
        Command::Ls { long, recursive, remote, blob, path } => {
            inspect::ls(&blob, &remote, path.as_deref(), long, recursive)
        }
        Command::Cat { no_verify, remote, blob, paths } => inspect::cat(&blob, &remote, &paths, !no_verify),
        Command::Verify { toc_digest, threads, remote, blob } => {
            inspect::verify(&blob, &remote, toc_digest.as_deref(), threads)
        }
        Command::Mount { serve, allow_other, remote, mut paths, namespace } if paths.len() < 2 => {
            mount::mount_namespace(mount::NamespaceArgs {
                mountpoint: paths.pop().map_or_else(|| std::path::PathBuf::from(mount::DEFAULT_MOUNTPOINT), Into::into),
                remote,
                serve,
                allow_other,
                namespace,
            })
        }
        Command::Mount { serve, allow_other, remote, mut paths, namespace: _ } => mount::mount(mount::MountArgs {
            mountpoint: paths.pop().unwrap_or_default().into(),
            sources: paths,
            remote,
            serve,
            allow_other,
        }),
        Command::Nfs { listen, serve, remote, sources, namespace } => {
            nfs::serve(nfs::NfsArgs { sources, remote, listen, serve, namespace })
        }
        Command::Store { serve, allow_other, remote, mountpoint } => {
            mount::mount_store(mount::StoreArgs { mountpoint, remote, serve, allow_other })
        }
        Command::Status { mountpoint } => status::show(&mountpoint),
        Command::Umount { mountpoint } => mount::umount(&mountpoint),
        Command::Convert(args) => convert::run(args),
        Command::Image(ImageCommand::Convert(args)) => convert::run_image(args),
        Command::Demo => inspect::demo(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::debug!(kind = ?e.kind(), "failed: {e}");
            eprintln!("crfs: {e}");
            ExitCode::FAILURE
        }
    }
}
