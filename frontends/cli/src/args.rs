//! The flags several commands share, as clap argument structs, and what they turn into: the
//! options of crfs-image, crfs-remote and crfs-vfs. Also the value parsers. A leaf: it imports
//! no other module of the binary.

use std::path::PathBuf;
use std::time::Duration;

use crfs_image::{CredentialsOrigin, Error, ErrorKind, GivenCredentials, Images, Result};
use crfs_remote::{CacheOptions, Credentials, HostsConfig, Mirror, Options as RemoteOptions, Platform, SourceKind};
use crfs_vfs::{NamespaceOptions, Options};

/// A malformed flag.
pub fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

/// Parses sizes like `512M`, `2G`, `65536` (K, M, G, T are powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s}: unknown size suffix (use K, M, G or T)")),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s}: not a size"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s}: too large"))
}

/// The chunk cache of the FUSE commands (`mount`, `store`) without `--cache-size`. Over FUSE
/// the rest of every decoded chunk goes to the kernel's page cache, so crfs's cache holds only
/// chunks still being read: reading every file of the 55k-entry corpus peaked at 52-53 MiB
/// with 8M against 62-68 MiB with 16M, in the same time (5.6 s against 5.4 s, medians of 3,
/// interleaved), and 2,000 random 4 KiB reads took 0.51 s either way.
pub const FUSE_CACHE_DEFAULT: u64 = 8 << 20;
/// The chunk cache of `crfs nfs` without `--cache-size`. An NFS server cannot fill its
/// client's cache: a 4 MiB chunk read in 1 MiB READs must stay in crfs's cache between them,
/// for every reader at once (16 MiB: one for each of the 4 request threads).
pub const NFS_CACHE_DEFAULT: u64 = 16 << 20;

/// How a tree is served, by FUSE or NFS (flags shared by `mount`, `store` and `nfs`).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Bytes of decompressed chunks to keep in memory (K, M, G suffixes): chunks still being
    /// read; file data already read stays in the kernel's page cache. Default: 8M for FUSE
    /// (`mount`, `store`), 16M for `nfs`.
    #[arg(long, value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Request-handling threads.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Skip chunk digest checks (they are on by default).
    #[arg(long)]
    pub no_verify: bool,
    /// Present OCI whiteouts the way overlayfs expects (.wh.X as a 0/0 char device X, opaque
    /// directories with trusted.overlay.opaque=y), so a single layer can be an overlay lowerdir.
    #[arg(long)]
    pub overlay_whiteouts: bool,
    /// Log every request (same as RUST_LOG=debug).
    #[arg(long)]
    pub debug: bool,
}

impl ServeArgs {
    /// Whether chunk digests are checked.
    pub fn verify(&self) -> bool {
        !self.no_verify
    }

    /// The vfs options these flags ask for, with a cache of `default_cache` bytes unless
    /// `--cache-size` says otherwise ([`FUSE_CACHE_DEFAULT`], [`NFS_CACHE_DEFAULT`]).
    pub fn fs_options(&self, default_cache: u64) -> Options {
        Options {
            verify: self.verify(),
            overlay_whiteouts: self.overlay_whiteouts,
            cache_bytes: self.cache_size.unwrap_or(default_cache),
            ..Options::default()
        }
    }
}

/// How to reach registries: TLS, plain HTTP, credentials (flags shared by every command that
/// talks to one).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry (always so for localhost and 127.0.0.1).
    #[arg(long)]
    pub plain_http: bool,
    /// Credentials for the registry named in the image reference, and for no other host (not
    /// its mirrors). USER reads the password from standard input (one line); USER:PASSWORD
    /// works but is visible to other local users (ps), as is every argument. Else
    /// --creds-file, else $CRFS_REGISTRY_CREDS (USER:PASSWORD); then --authfile, then
    /// ~/.docker/config.json.
    #[arg(long, value_name = "USER[:PASSWORD]", conflicts_with = "creds_file")]
    pub creds: Option<String>,
    /// Like --creds, read from FILE holding USER:PASSWORD (one line).
    #[arg(long, value_name = "FILE")]
    pub creds_file: Option<PathBuf>,
    /// Credentials per registry or mirror host from FILE in Docker's config.json format
    /// ({"auths": {"HOST": {"auth": "base64(USER:PASSWORD)"}}}; podman's and skopeo's
    /// --authfile). The only explicit credentials the /crfs namespace uses.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Extra certificate authority (PEM) trusted for HTTPS registries (repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
}

impl RegistryArgs {
    /// The registry client options these flags ask for (no disk cache, no mirrors), for the
    /// image references to be opened with them: explicit credentials go to the one registry
    /// those name, and to no other host.
    pub fn options(&self, references: &[&str]) -> Result<RemoteOptions> {
        let given = self.given_credentials()?;
        Ok(RemoteOptions {
            credentials: crfs_image::scope_credentials(given.as_ref(), references)?,
            ..self.unscoped_options()
        })
    }

    /// The registry client options these flags ask for, without explicit credentials.
    fn unscoped_options(&self) -> RemoteOptions {
        RemoteOptions {
            plain_http: self.plain_http,
            ca_certs: self.ca_cert.clone(),
            auth_file: self.authfile.clone(),
            ..RemoteOptions::default()
        }
    }

    /// Explicit credentials: `--creds`, `--creds-file`, else `$CRFS_REGISTRY_CREDS`.
    fn given_credentials(&self) -> Result<Option<GivenCredentials>> {
        let flag = |credentials| Some(GivenCredentials { credentials, origin: CredentialsOrigin::Flag });
        if let Some(c) = &self.creds {
            if c.contains(':') {
                tracing::warn!(
                    "--creds USER:PASSWORD puts the password where other local users can read it (ps, \
                     /proc/PID/cmdline): prefer --creds USER with the password on standard input, \
                     --creds-file, --authfile or $CRFS_REGISTRY_CREDS"
                );
                return Credentials::parse(c).map(flag).map_err(|e| invalid(format!("--creds: {e}")));
            }
            return password_from_stdin(c).map(flag);
        }
        if let Some(path) = &self.creds_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::io(format!("--creds-file {}", path.display()), e))?;
            let line = text.lines().next().unwrap_or_default();
            return Credentials::parse(line)
                .map(flag)
                .map_err(|e| invalid(format!("--creds-file {}: {e}", path.display())));
        }
        Ok(GivenCredentials::from_env())
    }
}

/// Which hosts images are pulled from before their registry (flags shared by every command
/// that pulls).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MirrorArgs {
    /// A mirror tried before a registry when pulling, REGISTRY=MIRROR (repeatable; tried in
    /// order).
    #[arg(long, value_name = "REGISTRY=MIRROR")]
    pub mirror: Vec<String>,
    /// Mirrors from a containerd-style hosts directory: DIR/<registry>/hosts.toml, its
    /// [host."https://MIRROR"] sections tried in order after any --mirror, then its `server`;
    /// each `ca` file is trusted for its host only; hosts with skip_verify or override_path are
    /// skipped; DIR/_default/hosts.toml's hosts mirror registries without a directory of their
    /// own. Not read unless given (e.g. --hosts-dir /etc/containerd/certs.d).
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
}

impl MirrorArgs {
    /// Adds the mirrors (and the hosts directory's CAs) these flags give to `options`.
    pub fn apply(&self, options: &mut RemoteOptions) -> Result<()> {
        for m in &self.mirror {
            options.mirrors.push(Mirror::parse(m).map_err(|e| invalid(format!("--mirror: {e}")))?);
        }
        if let Some(dir) = &self.hosts_dir {
            let hosts = HostsConfig::load(dir).map_err(|e| Error::remote("--hosts-dir", e))?;
            tracing::debug!(mirrors = hosts.mirrors.len(), dir = %dir.display(), "hosts directory read");
            options.add_hosts(hosts);
        }
        Ok(())
    }
}

/// Where remote layers come from and how they are fetched (flags shared by several commands).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Platform to pick from a multi-platform image (os/arch[/variant]; default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// Keep fetched compressed ranges here, so a later mount reads them without the network.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bound of the on-disk cache (K, M, G suffixes).
    #[arg(long, default_value = "4G", value_parser = parse_size)]
    pub disk_cache_size: u64,
    /// Keep nothing on disk (by default fetched ranges go to $XDG_CACHE_HOME/crfs, or
    /// ~/.cache/crfs).
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_disk_cache: bool,
    /// After the prioritized files, fetch whole layers into the disk cache in the background, at
    /// low priority (2 MiB at a time, only while no read is in progress).
    #[arg(long)]
    pub background_fetch: bool,
    /// Neighbouring reads of a blob (within 64 KiB) are fetched together, in requests of up to
    /// this many bytes (K, M suffixes; 0: one request per read).
    #[arg(long, default_value = "2M", value_parser = parse_size)]
    pub max_coalesce: u64,
}

/// How the /crfs namespace behaves (flags of `mount` and `nfs` when they serve it).
#[derive(clap::Args, Debug, Clone)]
pub struct NamespaceFlags {
    /// In the /crfs namespace: how long a tag stays pinned to the digest it first resolved
    /// to, in seconds (default: for the life of the server).
    #[arg(long, value_name = "SECONDS")]
    pub pin_ttl: Option<u64>,
    /// In the /crfs namespace: drop an image or layer (index, caches, open blobs) from memory
    /// once it has been unused this many seconds with no file open; its next use resolves its
    /// pinned digest again. 0 keeps everything.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub idle_release: u64,
}

impl NamespaceFlags {
    /// The namespace options these flags and `serve`'s ask for (`default_cache`: see
    /// [`ServeArgs::fs_options`]).
    pub fn options(&self, serve: &ServeArgs, default_cache: u64) -> NamespaceOptions {
        NamespaceOptions {
            fs: serve.fs_options(default_cache),
            pin_ttl: self.pin_ttl.map(Duration::from_secs),
            idle_release: (self.idle_release > 0).then(|| Duration::from_secs(self.idle_release)),
            ..NamespaceOptions::default()
        }
    }
}

/// Where fetched ranges go when `--cache-dir` is not given.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("crfs"))
}

impl RemoteArgs {
    /// The disk cache directory, unless `--no-disk-cache`.
    pub fn disk_cache_dir(&self) -> Option<PathBuf> {
        if self.no_disk_cache { None } else { self.cache_dir.clone().or_else(default_cache_dir) }
    }

    /// How images are opened with these flags, verifying layers when `verify` is set.
    pub fn image_options(&self, verify: bool) -> Result<crfs_image::Options> {
        let platform = match &self.platform {
            Some(p) => Some(p.parse::<Platform>().map_err(|e| invalid(format!("--platform {p}: {e}")))?),
            None => None,
        };
        let cache = self.disk_cache_dir().map(|dir| CacheOptions { dir, max_bytes: self.disk_cache_size });
        let mut remote =
            RemoteOptions { platform, cache, max_coalesce: self.max_coalesce, ..self.registry.unscoped_options() };
        self.mirrors.apply(&mut remote)?;
        Ok(crfs_image::Options {
            remote,
            credentials: self.registry.given_credentials()?,
            verify,
            background_fetch: self.background_fetch,
        })
    }

    /// An image opener for these flags, to open `specs` (none: the /crfs namespace). Local
    /// files alone need no registry: the registry flags are then neither read nor checked.
    pub fn images(&self, verify: bool, specs: &[String]) -> Result<Images> {
        let files_only = !specs.is_empty() && specs.iter().all(|s| SourceKind::of(s) == SourceKind::File);
        let options = if files_only {
            crfs_image::Options { verify, background_fetch: self.background_fetch, ..crfs_image::Options::default() }
        } else {
            self.image_options(verify)?
        };
        Ok(Images::new(options))
    }
}

/// `--creds USER`: the password is the first line of standard input, which must not be a
/// terminal (it would echo).
fn password_from_stdin(username: &str) -> Result<Credentials> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if username.is_empty() {
        return Err(invalid("--creds: the user name is empty"));
    }
    if stdin.is_terminal() {
        return Err(invalid(
            "--creds USER reads the password from standard input, which is a terminal: pipe it in, or use \
             --creds-file FILE",
        ));
    }
    let mut password = String::new();
    stdin.lock().read_line(&mut password).map_err(|e| Error::io("--creds: reading the password", e))?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(invalid("--creds USER: no password on standard input"));
    }
    Ok(Credentials { username: username.to_owned(), password: password.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
