//! Turning what a user names (a blob file, a blob URL, `oci:DIR[:TAG]`, a registry image) into
//! opened layers and one tree to serve. Shared by mount, nfs and the inspection commands.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::plain;
use crfs_core::{Digest, Layer, ReadAt};
use crfs_remote::{
    CREDS_ENV, CacheOptions, Credentials, DiskCache, HostsConfig, MANIFEST_CHECKSUM_ANNOTATIONS, Mirror,
    Options as RemoteOptions, Platform, RegistryCredentials, Remote, SourceKind, SourceLayer, registry_of,
    same_registry,
};
use crfs_vfs::{
    LayerFs, MergedFs, NamespaceFs, NamespaceOptions, Options, ReadOnlyFs, ResolveError, ResolvedImage, Resolver,
    Version,
};

/// Blob bytes from wherever they live.
pub type Blob = Arc<dyn ReadAt + Send + Sync>;

/// How a tree is served, by FUSE or NFS (flags shared by `mount` and `nfs`).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Bytes of decompressed chunks to keep in memory (K, M, G suffixes).
    #[arg(long, default_value = "256M", value_parser = crate::args::parse_size)]
    pub cache_size: u64,
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

    /// The vfs options these flags ask for.
    pub fn fs_options(&self) -> Options {
        Options {
            verify: self.verify(),
            overlay_whiteouts: self.overlay_whiteouts,
            cache_bytes: self.cache_size,
            ..Options::default()
        }
    }
}

/// Runs `on_signal` once, on a thread of its own, at the first SIGINT or SIGTERM. Returns the
/// handle that stops waiting.
pub fn on_stop_signal(on_signal: impl FnOnce(i32) + Send + 'static) -> Result<signal_hook::iterator::Handle, String> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            on_signal(sig);
        }
    });
    Ok(handle)
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
    pub fn options(&self, references: &[&str]) -> Result<RemoteOptions, String> {
        Ok(RemoteOptions {
            plain_http: self.plain_http,
            ca_certs: self.ca_cert.clone(),
            credentials: self.scoped_credentials(references)?,
            auth_file: self.authfile.clone(),
            ..RemoteOptions::default()
        })
    }

    /// Explicit credentials: `--creds`, `--creds-file`, else `$CRFS_REGISTRY_CREDS`; and
    /// whether they came from a flag.
    fn explicit_credentials(&self) -> Result<Option<(Credentials, bool)>, String> {
        if let Some(c) = &self.creds {
            if c.contains(':') {
                tracing::warn!(
                    "--creds USER:PASSWORD puts the password where other local users can read it (ps, \
                     /proc/PID/cmdline): prefer --creds USER with the password on standard input, \
                     --creds-file, --authfile or $CRFS_REGISTRY_CREDS"
                );
                return Credentials::parse(c).map(|c| Some((c, true))).map_err(|e| format!("--creds: {e}"));
            }
            return password_from_stdin(c).map(|c| Some((c, true)));
        }
        if let Some(path) = &self.creds_file {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--creds-file {}: {e}", path.display()))?;
            let line = text.lines().next().unwrap_or_default();
            return Credentials::parse(line)
                .map(|c| Some((c, true)))
                .map_err(|e| format!("--creds-file {}: {e}", path.display()));
        }
        match std::env::var(CREDS_ENV) {
            Ok(v) => match Credentials::parse(&v) {
                Ok(c) => Ok(Some((c, false))),
                Err(e) => {
                    tracing::warn!("${CREDS_ENV} ignored: {e}");
                    Ok(None)
                }
            },
            Err(_) => Ok(None),
        }
    }

    /// Explicit credentials scoped to the one registry that `references` (image references)
    /// name. From a flag they are an error when there is no such single registry (the /crfs
    /// namespace, or several registries); from the environment they are then left unused.
    fn scoped_credentials(&self, references: &[&str]) -> Result<Option<RegistryCredentials>, String> {
        let Some((credentials, from_flag)) = self.explicit_credentials()? else { return Ok(None) };
        let mut registries: Vec<String> = Vec::new();
        for r in references {
            let registry = registry_of(r).map_err(|e| e.to_string())?;
            if !registries.iter().any(|known| same_registry(known, &registry)) {
                registries.push(registry);
            }
        }
        match (registries.as_slice(), from_flag) {
            ([registry], _) => Ok(Some(RegistryCredentials { registry: registry.clone(), credentials })),
            ([], true) => Err("--creds and --creds-file are for the registry an image reference names, and none is \
                               named here: give per-host credentials with --authfile FILE"
                .into()),
            (many, true) => Err(format!(
                "--creds and --creds-file are for one registry, and the references name {}: give per-host \
                 credentials with --authfile FILE",
                many.join(", ")
            )),
            (_, false) => {
                tracing::debug!("${CREDS_ENV} unused: no single registry is named");
                Ok(None)
            }
        }
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
    pub fn apply(&self, options: &mut RemoteOptions) -> Result<(), String> {
        for m in &self.mirror {
            options.mirrors.push(Mirror::parse(m).map_err(|e| format!("--mirror: {e}"))?);
        }
        if let Some(dir) = &self.hosts_dir {
            let hosts = HostsConfig::load(dir).map_err(|e| format!("--hosts-dir: {e}"))?;
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
    #[arg(long, default_value = "4G", value_parser = crate::args::parse_size)]
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
    #[arg(long, default_value = "2M", value_parser = crate::args::parse_size)]
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

/// The file, in the disk cache directory, where the namespace keeps what re-resolves NFS
/// handles after a restart.
const NAMESPACE_REFS: &str = "namespace-refs";

/// The /crfs namespace over the registries, with a thread that releases idle images.
pub fn namespace(
    remote: &RemoteArgs,
    serve: &ServeArgs,
    flags: &NamespaceFlags,
) -> Result<Arc<NamespaceFs<RegistryResolver>>, String> {
    if serve.overlay_whiteouts {
        return Err("--overlay-whiteouts applies to a single layer, not to the namespace".into());
    }
    let resolver = RegistryResolver::new(remote.remote(&[])?, serve.verify());
    let idle = (flags.idle_release > 0).then(|| Duration::from_secs(flags.idle_release));
    let options = NamespaceOptions {
        fs: serve.fs_options(),
        pin_ttl: flags.pin_ttl.map(Duration::from_secs),
        idle_release: idle,
        ..NamespaceOptions::default()
    };
    let ns = Arc::new(NamespaceFs::new(resolver, options));
    if let Some(dir) = remote.disk_cache_dir() {
        let file = dir.join(NAMESPACE_REFS);
        let loaded = std::fs::create_dir_all(&dir).and_then(|()| ns.remember_in(&file));
        match loaded {
            Ok(n) => tracing::info!(file = %file.display(), entries = n, "namespace references loaded"),
            Err(e) => tracing::warn!(file = %file.display(), "cannot keep namespace references: {e}"),
        }
    }
    if let Some(idle) = idle {
        let weak = Arc::downgrade(&ns);
        let period = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        let sweeper = move || {
            loop {
                std::thread::sleep(period);
                let Some(ns) = weak.upgrade() else { return };
                let released = ns.release_idle();
                if released > 0 {
                    tracing::debug!(released, loaded = ns.loaded_trees(), "released idle images");
                }
            }
        };
        std::thread::Builder::new()
            .name("crfs-release".into())
            .spawn(sweeper)
            .map_err(|e| format!("starting the release thread: {e}"))?;
    }
    Ok(ns)
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

    /// A registry/HTTP client for these flags and the image references to be opened with it
    /// (explicit credentials go to their registry only; none for the /crfs namespace).
    pub fn remote(&self, references: &[&str]) -> Result<Remote, String> {
        let platform = match &self.platform {
            Some(p) => Some(p.parse::<Platform>().map_err(|e| format!("--platform {p}: {e}"))?),
            None => None,
        };
        let cache = self.disk_cache_dir().map(|dir| CacheOptions { dir, max_bytes: self.disk_cache_size });
        let mut options =
            RemoteOptions { platform, cache, max_coalesce: self.max_coalesce, ..self.registry.options(references)? };
        self.mirrors.apply(&mut options)?;
        Remote::new(options).map_err(|e| e.to_string())
    }
}

/// `--creds USER`: the password is the first line of standard input, which must not be a
/// terminal (it would echo).
fn password_from_stdin(username: &str) -> Result<Credentials, String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if username.is_empty() {
        return Err("--creds: the user name is empty".into());
    }
    if stdin.is_terminal() {
        return Err("--creds USER reads the password from standard input, which is a terminal: pipe it in, or \
                    use --creds-file FILE"
            .into());
    }
    let mut password = String::new();
    stdin.lock().read_line(&mut password).map_err(|e| format!("--creds: reading the password: {e}"))?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err("--creds USER: no password on standard input".into());
    }
    Ok(Credentials { username: username.to_owned(), password: password.to_owned() })
}

/// One opened layer and where it came from, for messages.
pub struct OpenedLayer {
    pub name: String,
    pub layer: Arc<Layer<Blob>>,
    /// Whether it is a layer of an image (whose root filesystem applies whiteouts) rather
    /// than a blob named on its own (shown as the layer holds it).
    pub of_image: bool,
}

/// Opens one layer, checking its TOC against the manifest's annotation when `verify` is set:
/// `toc.digest` (sha256 of the TOC JSON) or zstd:chunked's manifest-checksum (sha256 of the
/// compressed TOC). A layer of an image with neither is refused unless `verify` is off.
///
/// A layer of an image without those annotations whose blob has no footer either is a plain
/// tar layer: it is fetched whole and indexed locally (see `plain`), its copy kept in
/// the disk cache.
fn open_layer(
    name: &str,
    l: &SourceLayer,
    verify: bool,
    cache: Option<&DiskCache>,
) -> Result<Arc<Layer<Blob>>, String> {
    if let Some(desc) = l.desc.as_ref().filter(|d| plain::unannotated(d)) {
        if let Some(copy) = plain::cached(desc, cache) {
            match Layer::open(copy) {
                Ok(layer) => return Ok(Arc::new(layer)),
                Err(e) => {
                    tracing::warn!(layer = %name, "the indexed copy is unusable ({e}); making it again");
                    plain::discard(desc, cache);
                }
            }
        }
        match Layer::open(l.blob.clone()) {
            Err(e) => {
                let copy = plain::fetch_and_index(name, l, cache, &e.to_string())?;
                let layer = Layer::open(copy).map_err(|e| format!("{name}: the indexed copy: {e}"))?;
                return Ok(Arc::new(layer));
            }
            // Lazy after all, but nothing to check its TOC against.
            Ok(layer) => return checked(name, layer, l, verify, None),
        }
    }
    let options = l.open_options(verify).map_err(|e| format!("{name}: {e}"))?;
    let layer = Layer::open_with(l.blob.clone(), &options).map_err(|e| format!("{name}: {e}"))?;
    checked(name, layer, l, verify, options.expected_toc_digest)
}

/// Checks an opened image layer's TOC against the manifest when `verify` is set and the TOC
/// was not already checked against `toc.digest` (`toc_checked`): zstd:chunked's
/// manifest-checksum, else the layer is refused.
fn checked(
    name: &str,
    layer: Layer<Blob>,
    l: &SourceLayer,
    verify: bool,
    toc_checked: Option<Digest>,
) -> Result<Arc<Layer<Blob>>, String> {
    if let (true, Some(desc), None) = (verify, &l.desc, toc_checked) {
        let checksum = MANIFEST_CHECKSUM_ANNOTATIONS.iter().find_map(|k| desc.annotations.get(*k));
        match checksum {
            Some(c) if Digest::parse(c) == Some(layer.toc_compressed_digest()) => {}
            Some(c) => return Err(format!("{name}: TOC does not match the manifest-checksum annotation {c}")),
            None => {
                return Err(format!(
                    "{name}: the manifest gives no TOC digest to verify this layer against (toc.digest \
                     annotation); pass --no-verify to use it unverified"
                ));
            }
        }
    }
    tracing::info!(layer = %name, format = layer.format().name(), toc_digest = %layer.toc_digest(), "opened layer");
    Ok(Arc::new(layer))
}

/// Opens every source, bottom first; an image contributes all its layers.
pub fn open_layers(specs: &[String], remote_args: &RemoteArgs, verify: bool) -> Result<Vec<OpenedLayer>, String> {
    let mut remote: Option<Remote> = None;
    let references: Vec<&str> =
        specs.iter().map(String::as_str).filter(|s| SourceKind::of(s) == SourceKind::Registry).collect();
    let mut out = Vec::new();
    for spec in specs {
        let source = if SourceKind::of(spec) == SourceKind::File {
            crfs_remote::open_file_source(std::path::Path::new(spec)).map_err(|e| e.to_string())?
        } else {
            if remote.is_none() {
                remote = Some(remote_args.remote(&references)?);
            }
            let Some(r) = remote.as_ref() else { return Err("no registry client".into()) };
            r.open_source(spec).map_err(|e| format!("{spec}: {e}"))?
        };
        let many = source.layers.len() > 1;
        for l in &source.layers {
            let name = match (&l.desc, many) {
                (Some(d), _) => format!("{spec} layer {}", d.digest),
                (None, _) => spec.clone(),
            };
            let cache = remote.as_ref().and_then(Remote::disk_cache);
            let layer = open_layer(&name, l, verify, cache.as_deref())?;
            out.push(OpenedLayer { layer, name, of_image: source.image.is_some() });
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no layers", specs.join(" ")));
    }
    start_prefetch(&out, remote_args.background_fetch);
    Ok(out)
}

/// In the background: each layer's prioritized region (before `.prefetch.landmark`), then,
/// with `whole`, every layer in full at low priority (only while no read is in progress). Only
/// remote blobs with a disk cache act on it.
fn start_prefetch(layers: &[OpenedLayer], whole: bool) {
    let prioritized: Vec<(String, Blob, u64)> = layers
        .iter()
        .filter_map(|l| l.layer.index().prefetch_landmark().map(|end| (l.name.clone(), l.layer.blob().clone(), end)))
        .collect();
    let complete: Vec<(String, Blob)> =
        layers.iter().filter(|_| whole).map(|l| (l.name.clone(), l.layer.blob().clone())).collect();
    if prioritized.is_empty() && complete.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for (name, blob, end) in prioritized {
            match blob.prefetch(0, end) {
                Ok(()) => tracing::debug!(layer = %name, bytes = end, "prefetched the prioritized files"),
                Err(e) => tracing::debug!(layer = %name, "prefetch skipped: {e}"),
            }
        }
        for (name, blob) in complete {
            match blob.prefetch_when_idle(0, blob.size()) {
                Ok(()) => tracing::debug!(layer = %name, bytes = blob.size(), "fetched in the background"),
                Err(e) => tracing::debug!(layer = %name, "background fetch skipped: {e}"),
            }
        }
    });
}

/// A blob on its own as the layer holds it; an image's layers, or several sources, merged
/// (whiteouts applied); with the tree's identity: the layer's TOC digest, or a digest of the
/// layers' TOC digests.
pub fn tree(layers: Vec<OpenedLayer>, options: Options) -> Result<(Box<dyn ReadOnlyFs>, Digest), String> {
    if layers.len() == 1 && !layers.iter().any(|l| l.of_image) {
        let layer = layers.into_iter().map(|l| l.layer).next().ok_or("no layers")?;
        let identity = layer.toc_digest();
        return Ok((Box::new(LayerFs::new(layer, options)), identity));
    }
    if options.overlay_whiteouts {
        return Err("--overlay-whiteouts applies to a single layer; a merged image applies its whiteouts".into());
    }
    let identity = crfs_vfs::image_identity(layers.iter().map(|l| l.layer.toc_digest()));
    let fs = MergedFs::new(layers.into_iter().map(|l| l.layer).collect(), options)
        .map_err(|e| format!("merging layers: {e:?}"))?;
    Ok((Box::new(fs), identity))
}

/// Manifest descriptors of layers seen in resolved images, by (host/repo, blob digest).
type SeenLayers = std::collections::HashMap<(String, String), crfs_remote::LayerDesc>;

/// The /crfs namespace's resolver: references to images in registries.
pub struct RegistryResolver {
    remote: Remote,
    verify: bool,
    /// Descriptors of layers seen in resolved images: a layer opened again by digest (after a
    /// release, or as `layer/...@digest`) is then checked against its manifest's annotation.
    /// Descriptors are small; the layers themselves are not kept here.
    seen: std::sync::Mutex<SeenLayers>,
}

impl RegistryResolver {
    pub fn new(remote: Remote, verify: bool) -> Self {
        RegistryResolver { remote, verify, seen: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

fn resolve_error(e: crfs_remote::Error) -> ResolveError {
    use crfs_remote::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NoPlatform => ResolveError::NotFound(e.message().to_owned()),
        ErrorKind::Auth => ResolveError::Denied(e.message().to_owned()),
        _ => ResolveError::Failed(e.to_string()),
    }
}

impl Resolver for RegistryResolver {
    type Blob = Blob;

    fn image(&self, host: &str, repo: &str, version: &Version) -> Result<ResolvedImage<Blob>, ResolveError> {
        let spec = match version {
            Version::Tag(t) => format!("{host}/{repo}:{t}"),
            Version::Digest(d) => format!("{host}/{repo}@{d}"),
        };
        let source = self.remote.open_source(&spec).map_err(resolve_error)?;
        let cache = self.remote.disk_cache();
        let digest = source.image.as_ref().map(|i| i.manifest_digest.clone()).unwrap_or_default();
        let mut layers = Vec::with_capacity(source.layers.len());
        for l in &source.layers {
            let layer_digest = l.desc.as_ref().map(|d| d.digest.clone()).unwrap_or_default();
            let layer = open_layer(&format!("{spec} layer {layer_digest}"), l, self.verify, cache.as_deref())
                .map_err(ResolveError::Failed)?;
            if let Some(desc) = &l.desc {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.insert((format!("{host}/{repo}"), layer_digest.clone()), desc.clone());
            }
            layers.push((layer_digest, layer));
        }
        Ok(ResolvedImage { digest, layers })
    }

    /// A layer by digest. One seen in a manifest is verified as that manifest says; any other
    /// is opened with its size from a HEAD request, and its TOC cannot be checked against a
    /// manifest annotation: with verification on, chunks are still checked against the TOC's
    /// digests (a log line says so), which catches corrupt data but not a forged TOC.
    fn layer(&self, host: &str, repo: &str, digest: &str) -> Result<Arc<Layer<Blob>>, ResolveError> {
        let repo_ref = format!("{host}/{repo}");
        let name = format!("{repo_ref}@{digest}");
        let desc =
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&(repo_ref.clone(), digest.to_string())).cloned();
        let source = match desc {
            Some(desc) => {
                let blob = self.remote.open_blob(&repo_ref, digest, desc.size).map_err(resolve_error)?;
                SourceLayer::in_registry(blob, Some(desc))
            }
            None => {
                let blob = self.remote.open_blob_unsized(&repo_ref, digest).map_err(resolve_error)?;
                if self.verify {
                    tracing::warn!(layer = %name, "no manifest names this layer: its TOC is not verified; chunks are checked against the TOC's digests");
                } else {
                    tracing::warn!(layer = %name, "no manifest names this layer, and --no-verify: nothing is verified");
                }
                SourceLayer::in_registry(blob, None)
            }
        };
        open_layer(&name, &source, self.verify, self.remote.disk_cache().as_deref()).map_err(ResolveError::Failed)
    }
}
