//! The client every request goes through, and a leaf of this crate (it imports only `cache`,
//! `error` and `platform`): one tokio runtime, the HTTP connection pools, the options (mirrors,
//! TLS, credentials, retry policy), the auth state per repository, the counters and the disk
//! cache. [`crate::Remote`] is a cheap handle on one; `fetch`, `token`, `blob`, `registry` and
//! `transfer` use it and never each other's internals.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::cache::DiskCache;
use crate::error::{Error, FetchError, Result};

/// A low-priority fetch goes on only once no read has been in progress for this long.
pub const IDLE_AFTER: Duration = Duration::from_millis(50);
use crate::platform::Platform;

/// A username and password for a registry (basic auth, or exchanged for a bearer token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token (never printed: `Debug` hides it).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses `USER:PASSWORD` (the password may contain `:`).
    pub fn parse(s: &str) -> Result<Credentials> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials { username: u.to_owned(), password: p.to_owned() }),
            _ => Err(Error::invalid("credentials must be USER:PASSWORD")),
        }
    }
}

/// Credentials given explicitly for one registry host: sent to that host only, never to its
/// mirrors nor to any other registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The registry as named in image references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// What to present to that registry.
    pub credentials: Credentials,
}

/// The environment variable a front-end reads `USER:PASSWORD` from, for the registry named in
/// the image reference (the CLI turns it into [`Options::credentials`]).
pub const CREDS_ENV: &str = "CRFS_REGISTRY_CREDS";

/// Whether two registry names are the same host (`docker.io` and `index.docker.io` are).
pub fn same_registry(a: &str, b: &str) -> bool {
    let norm = |r: &str| if r == "docker.io" { "index.docker.io".to_owned() } else { r.to_ascii_lowercase() };
    norm(a) == norm(b)
}

/// When to give up on a range read, and how to space the retries of transient failures
/// (connect errors, timeouts, 429, 5xx except 501, cut or short bodies).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// No retry starts after this much time since the first attempt.
    pub deadline: Duration,
    /// Most attempts per read, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time (with jitter), capped at `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(60),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The on-disk cache of fetched compressed ranges.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// The cache's directory (created if missing; processes may share it).
    pub dir: PathBuf,
    /// Bound on the bytes kept, across every process sharing `dir`.
    pub max_bytes: u64,
}

/// A registry mirror: images of `registry` are looked for at `mirror` first (containerd's
/// convention: same repository path, `?ns=REGISTRY` added to every URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The registry mirrored, as in references (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The mirror's host (and port).
    pub mirror: String,
}

impl Mirror {
    /// Parses `REGISTRY=MIRROR` (the `--mirror` flag).
    pub fn parse(s: &str) -> Result<Mirror> {
        match s.split_once('=') {
            Some((r, m)) if !r.is_empty() && !m.is_empty() && !m.contains('/') => {
                Ok(Mirror { registry: r.to_owned(), mirror: m.to_owned() })
            }
            _ => Err(Error::invalid(format!("{s}: a mirror is REGISTRY=MIRROR_HOST[:PORT]"))),
        }
    }

    /// Whether this mirrors the registry of a reference (`docker.io` and `index.docker.io`
    /// are the same).
    pub(crate) fn mirrors(&self, registry: &str) -> bool {
        same_registry(&self.registry, registry)
    }
}

/// How a [`crate::Remote`] reaches registries and servers.
#[derive(Debug, Clone)]
pub struct Options {
    /// The platform picked from manifest lists and OCI indexes; `None` means the host's.
    pub platform: Option<Platform>,
    /// Plain HTTP for every registry (always used for localhost, 127.0.0.0/8 and ::1).
    pub plain_http: bool,
    /// Mirrors, tried in order before the registry they mirror.
    pub mirrors: Vec<Mirror>,
    /// Hosts (`HOST[:PORT]`) always reached over plain HTTP (`http://` hosts of a hosts.toml).
    pub plain_http_hosts: Vec<String>,
    /// PEM files of extra certificate authorities trusted for HTTPS to every host, beside the
    /// system's.
    pub ca_certs: Vec<PathBuf>,
    /// PEM files of certificate authorities trusted for one host only (`HOST[:PORT]`, as in
    /// references): a hosts.toml `ca`.
    pub host_ca_certs: Vec<(String, PathBuf)>,
    /// Mirrors of every registry that no entry of `mirrors` names and that is not in
    /// `configured_registries` (a hosts directory's `_default`).
    pub default_mirrors: Vec<String>,
    /// Registries configured on their own (a hosts.toml of their own), so `default_mirrors`
    /// do not apply to them.
    pub configured_registries: Vec<String>,
    /// Credentials given explicitly (a flag, a file, [`CREDS_ENV`]), for their registry only;
    /// they come before `auth_file` and the Docker config for that registry.
    pub credentials: Option<RegistryCredentials>,
    /// A file in Docker's config.json format (`auths`, `credHelpers`, `credsStore`; podman's
    /// `--authfile`), looked up by the host contacted (registry or mirror), before the Docker
    /// config. Read once, by [`crate::Remote::new`].
    pub auth_file: Option<PathBuf>,
    /// Look up `~/.docker/config.json` (`$DOCKER_CONFIG`): auths, credsStore, credHelpers.
    pub docker_config: bool,
    /// When and how often a failed read is tried again.
    pub retry: RetryPolicy,
    /// Connecting to a server times out after this.
    pub connect_timeout: Duration,
    /// One request (headers and body of one range) times out after this; it is then retried.
    pub request_timeout: Duration,
    /// The disk cache of compressed ranges, if any.
    pub cache: Option<CacheOptions>,
    /// The largest request that neighbouring reads are coalesced into (see `blob`); 0 fetches
    /// every read on its own.
    pub max_coalesce: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            platform: None,
            plain_http: false,
            mirrors: Vec::new(),
            plain_http_hosts: Vec::new(),
            ca_certs: Vec::new(),
            host_ca_certs: Vec::new(),
            default_mirrors: Vec::new(),
            configured_registries: Vec::new(),
            credentials: None,
            auth_file: None,
            docker_config: true,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            cache: None,
            max_coalesce: 2 << 20,
        }
    }
}

impl Options {
    /// Adds what a containerd-style hosts directory configures (see [`crate::HostsConfig`]):
    /// its mirrors after those already given, its per-host CA certificates, its plain-HTTP
    /// hosts, its `_default` mirrors.
    pub fn add_hosts(&mut self, hosts: crate::HostsConfig) {
        self.mirrors.extend(hosts.mirrors);
        self.host_ca_certs.extend(hosts.host_ca_certs);
        self.plain_http_hosts.extend(hosts.plain_http_hosts);
        self.default_mirrors.extend(hosts.default_mirrors);
        self.configured_registries.extend(hosts.configured_registries);
    }

    /// The hosts tried for `registry` before the registry itself, in order.
    pub fn mirrors_of(&self, registry: &str) -> Vec<String> {
        let named: Vec<String> =
            self.mirrors.iter().filter(|m| m.mirrors(registry)).map(|m| m.mirror.clone()).collect();
        let configured = self.configured_registries.iter().any(|r| same_registry(r, registry));
        if named.is_empty() && !configured { self.default_mirrors.clone() } else { named }
    }
}

/// What a `Remote` has done, for tests, `crfs info` and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests for blob bytes (range GETs and HEADs), retries included.
    pub requests: u64,
    /// Body bytes received for blob data.
    pub bytes: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// Reads served from the disk cache.
    pub cache_hits: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
    pub cache_hits: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

pub(crate) struct Client {
    runtime: Option<tokio::runtime::Runtime>,
    /// Reads in progress (any blob), and when the last one ended: low-priority fetches wait
    /// for both to allow them.
    pub reading: Activity,
    /// The pool for blob data: range GETs, HEADs, redirects to blob storage.
    http: reqwest::Client,
    /// Pools for the hosts that trust CAs of their own (`Options::host_ca_certs`).
    host_http: HashMap<String, reqwest::Client>,
    /// Auth state per `registry/repository`, shared by the blobs of that repository.
    pub repos: Mutex<HashMap<String, Arc<RepoAuth>>>,
    pub options: Options,
    /// The contents of `options.auth_file`.
    auth_file: Option<Vec<u8>>,
    pub platform: Platform,
    pub counters: Counters,
    pub cache: Option<Arc<DiskCache>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Never blocks, so dropping the last handle inside some async context is fine.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The basic auth a Docker config (or auth file) lookup found, if any.
fn docker_auth(
    registry: &str,
    found: std::result::Result<docker_credential::DockerCredential, docker_credential::CredentialRetrievalError>,
) -> Option<RegistryAuth> {
    match found {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => Some(RegistryAuth::Basic(u, p)),
        Ok(docker_credential::DockerCredential::IdentityToken(_)) => {
            tracing::warn!(
                registry,
                "the Docker config holds an identity token for this registry, which crfs cannot use; \
                 trying anonymous access"
            );
            None
        }
        Err(_) => None,
    }
}

/// Whether `host` (with or without `:port`) is this machine.
pub(crate) fn is_loopback_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Verifies servers with the system's certificate authorities plus `extra`, loaded on the
/// first TLS handshake, as reqwest's own verifier would (rustls-platform-verifier). Loading
/// the system store (Debian's: 151 files) took about 50 ms of every start, before the first
/// request, although a registry reached over plain HTTP (a loopback one) never needs it.
#[derive(Debug)]
struct LazyVerifier {
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    loaded: OnceLock<std::result::Result<Arc<dyn ServerCertVerifier>, rustls::Error>>,
}

impl LazyVerifier {
    fn verifier(&self) -> std::result::Result<&Arc<dyn ServerCertVerifier>, rustls::Error> {
        self.loaded
            .get_or_init(|| {
                let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
                    self.extra.clone(),
                    self.provider.clone(),
                )?;
                Ok(Arc::new(verifier) as Arc<dyn ServerCertVerifier>)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    /// What the provider verifies, which is what the platform verifier answers too; asked for
    /// every ClientHello, so it must not load the store.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The HTTP pool for blob data, trusting `ca` beside the system's certificate authorities.
fn http_client(options: &Options, ca: Vec<CertificateDer<'static>>) -> Result<reqwest::Client> {
    let provider =
        CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = LazyVerifier { extra: ca, provider: provider.clone(), loaded: OnceLock::new() };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::local(format!("configuring TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest asks for itself when built with HTTP/1 only, as here.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        // reqwest takes a rustls config of the rustls version it was built with (one in
        // Cargo.lock); another would fail `build` with "Unknown TLS backend".
        .tls_backend_preconfigured(tls)
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("crfs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::local(format!("creating the HTTP client: {e}")))
}

impl Client {
    /// Creates the context: a small runtime (two worker threads), the HTTP pool and the cache.
    pub(crate) fn new(options: Options) -> Result<Client> {
        // reqwest and oci-client are built without a default TLS provider (aws-lc-rs is a long C
        // build); ring is installed as the process default. Err means one is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("crfs-remote")
            .enable_all()
            .build()
            .map_err(|e| Error::local(format!("starting the I/O runtime: {e}")))?;
        let read_pem = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>> {
            let pem = std::fs::read(path).map_err(|e| Error::local(format!("{}: {e}", path.display())))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::invalid(format!("{}: not PEM certificates: {e}", path.display())))?;
            match certs.is_empty() {
                true => Err(Error::invalid(format!("{}: no PEM certificate in it", path.display()))),
                false => Ok(certs),
            }
        };
        let mut ca = Vec::new();
        for path in &options.ca_certs {
            ca.extend(read_pem(path)?);
        }
        let http = http_client(&options, ca.clone())?;
        let mut host_ca: HashMap<String, Vec<CertificateDer<'static>>> = HashMap::new();
        for (host, path) in &options.host_ca_certs {
            let certs = read_pem(path)?;
            host_ca.entry(host.clone()).or_insert_with(|| ca.clone()).extend(certs);
        }
        let host_http = host_ca
            .into_iter()
            .map(|(host, certs)| Ok((host, http_client(&options, certs)?)))
            .collect::<Result<_>>()?;
        let auth_file = match &options.auth_file {
            Some(path) => {
                let json = std::fs::read(path).map_err(|e| Error::local(format!("{}: {e}", path.display())))?;
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&json) {
                    return Err(Error::invalid(format!("{}: not a JSON auth file: {e}", path.display())));
                }
                Some(json)
            }
            None => None,
        };
        let platform = options.platform.clone().unwrap_or_else(Platform::host);
        let cache = match &options.cache {
            Some(c) => Some(Arc::new(DiskCache::open(&c.dir, c.max_bytes)?)),
            None => None,
        };
        Ok(Client {
            runtime: Some(runtime),
            http,
            host_http,
            repos: Mutex::new(HashMap::new()),
            options,
            auth_file,
            platform,
            counters: Counters::default(),
            reading: Activity::default(),
            cache,
        })
    }

    /// The HTTP pool for a URL: its host's own when that host trusts CAs of its own.
    pub fn http_for(&self, url: &reqwest::Url) -> &reqwest::Client {
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        self.host_http.get(&host).unwrap_or(&self.http)
    }

    /// Runs `fut` on the runtime and waits for it. From a thread outside any runtime (FUSE
    /// threads, the CLI) it is `block_on`; from inside some other runtime (an async front-end)
    /// the future is spawned and this thread waits on a channel, which never panics.
    pub fn run<T, E, F>(&self, fut: F, lost: impl FnOnce() -> E) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let Some(rt) = self.runtime.as_ref() else { return Err(lost()) };
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(fut);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| Err(lost()))
    }

    /// The URL scheme for a registry host.
    pub fn scheme_for(&self, registry: &str) -> &'static str {
        let listed = self.options.plain_http_hosts.iter().any(|h| h == registry);
        if self.options.plain_http || listed || is_loopback_host(registry) { "http" } else { "https" }
    }

    /// The credentials for `registry`, the host contacted (a registry or a mirror): explicit
    /// ones if they name this host, then the auth file, then the Docker config. Returns the auth
    /// and where it came from (for error messages).
    pub fn credentials_for(&self, registry: &str) -> (RegistryAuth, &'static str) {
        if let Some(c) = &self.options.credentials
            && same_registry(&c.registry, registry)
        {
            let RegistryCredentials { credentials: Credentials { username, password }, .. } = c;
            return (RegistryAuth::Basic(username.clone(), password.clone()), "the given credentials");
        }
        // docker_credential normalises docker.io <-> index.docker.io and runs helpers.
        let key = if registry == "index.docker.io" { "docker.io" } else { registry };
        if let Some(json) = &self.auth_file
            && let Some(auth) = docker_auth(registry, docker_credential::get_credential_from_reader(&json[..], key))
        {
            return (auth, "the auth file credentials");
        }
        if self.options.docker_config
            && let Some(auth) = docker_auth(registry, docker_credential::get_credential(key))
        {
            return (auth, "the Docker config credentials");
        }
        (RegistryAuth::Anonymous, "anonymous access")
    }
}

/// Reads in progress, and when the last one ended.
#[derive(Default)]
pub(crate) struct Activity {
    in_progress: std::sync::atomic::AtomicU64,
    last_end: Mutex<Option<Instant>>,
}

/// Counts one read in progress while alive.
pub(crate) struct Reading<'a>(&'a Activity);

impl Activity {
    pub(crate) fn begin(&self) -> Reading<'_> {
        self.in_progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Reading(self)
    }

    /// Waits until no read is in progress and none ended within [`IDLE_AFTER`].
    pub(crate) fn wait_idle(&self) {
        loop {
            let busy = self.in_progress.load(std::sync::atomic::Ordering::SeqCst) > 0;
            let recent = self.last_end.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed());
            match (busy, recent) {
                (true, _) => std::thread::sleep(IDLE_AFTER),
                (false, Some(ago)) if ago < IDLE_AFTER => std::thread::sleep(IDLE_AFTER - ago),
                _ => return,
            }
        }
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.0.in_progress.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What to send with each request to a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    /// Nothing: the registry asked for nothing, and no credentials were given.
    Nothing,
    Bearer(String),
    Basic(String, String),
}

/// How requests to one registry repository authenticate, shared by all its blobs.
pub(crate) struct RepoAuth {
    pub reference: oci_client::Reference,
    /// The token scopes asked for (see `token`).
    pub scopes: Vec<String>,
    pub creds: RegistryAuth,
    /// Where `creds` came from, for messages.
    pub source: &'static str,
    state: tokio::sync::Mutex<AuthState>,
}

struct AuthState {
    /// `None` until the registry was first asked (see `token`).
    credential: Option<Credential>,
    /// Bumped at every refresh, so concurrent 401s refresh once.
    generation: u64,
}

impl RepoAuth {
    /// Auth for pulling from `reference`'s repository.
    pub fn new(reference: oci_client::Reference, creds: RegistryAuth, source: &'static str) -> Self {
        let scopes = vec![format!("repository:{}:pull", reference.repository())];
        Self::with_scopes(reference, scopes, creds, source)
    }

    /// Auth for pushing to `reference`'s repository, and for mounting blobs from the
    /// repositories `mount_from` (on the same registry).
    pub fn for_push(
        reference: oci_client::Reference,
        mount_from: &[&str],
        creds: RegistryAuth,
        source: &'static str,
    ) -> Self {
        let mut scopes = vec![format!("repository:{}:pull,push", reference.repository())];
        scopes.extend(mount_from.iter().map(|repo| format!("repository:{repo}:pull")));
        Self::with_scopes(reference, scopes, creds, source)
    }

    fn with_scopes(
        reference: oci_client::Reference,
        scopes: Vec<String>,
        creds: RegistryAuth,
        source: &'static str,
    ) -> Self {
        RepoAuth {
            reference,
            scopes,
            creds,
            source,
            state: tokio::sync::Mutex::new(AuthState { credential: None, generation: 0 }),
        }
    }

    /// The credential to send, asking for one with `ask` (see `token`) the first time; and
    /// the generation it belongs to.
    pub async fn current<F>(&self, ask: impl FnOnce() -> F) -> std::result::Result<(Credential, u64), FetchError>
    where
        F: Future<Output = std::result::Result<Credential, FetchError>>,
    {
        let mut st = self.state.lock().await;
        let credential = match &st.credential {
            Some(c) => c.clone(),
            None => {
                let c = ask().await?;
                st.credential = Some(c.clone());
                st.generation += 1;
                c
            }
        };
        Ok((credential, st.generation))
    }

    /// Asks for a new credential with `ask` unless another request already did since `seen`.
    pub async fn refresh<F>(&self, seen: u64, ask: impl FnOnce() -> F) -> std::result::Result<(), FetchError>
    where
        F: Future<Output = std::result::Result<Credential, FetchError>>,
    {
        let mut st = self.state.lock().await;
        if st.generation == seen {
            st.credential = Some(ask().await?);
            st.generation += 1;
        }
        Ok(())
    }
}
