//! Real components for the remote tests: Debian's docker-registry on 127.0.0.1 (optionally
//! behind htpasswd basic auth), images pushed by skopeo from an OCI layout, and a
//! fault-injecting HTTP proxy of our own in front of the registry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub const USER: &str = "crfs";
pub const PASSWORD: &str = "hunter2-crfs";
/// bcrypt (cost 5) of PASSWORD, as htpasswd -B writes it.
const PASSWORD_BCRYPT: &str = "$2b$05$5QARqjtf/UvmftITozmHBOGJaNM9vXvJluPtaNMmQuGtCLBUqs/fS";

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether docker-registry and skopeo are installed; in CI their absence fails the test.
pub fn have_tools() -> bool {
    let ok = Path::new(REGISTRY_BIN).exists() && which("skopeo");
    if !ok {
        assert!(!crfs_testkit::in_ci(), "docker-registry and skopeo must be installed in CI");
        eprintln!("SKIPPED: docker-registry or skopeo not installed (apt-get install docker-registry skopeo)");
    }
    ok
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A docker-registry process with its storage in a scratch directory; killed on drop.
pub struct Registry {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Registry {
    pub fn start(name: &str, htpasswd: bool) -> Registry {
        Self::start_with(name, htpasswd, false)
    }

    /// A registry serving HTTPS with a certificate for 127.0.0.1 from a fresh test CA, whose
    /// certificate is `dir/ca.pem`.
    pub fn start_tls(name: &str) -> Registry {
        Self::start_with(name, false, true)
    }

    fn start_with(name: &str, htpasswd: bool, tls: bool) -> Registry {
        let dir = crfs_testkit::scratch_dir(&format!("registry-{name}"));
        let tls_conf = if tls { make_certs(&dir) } else { String::new() };
        let mut auth = String::new();
        if htpasswd {
            let file = dir.join("htpasswd");
            std::fs::write(&file, format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: crfs-test\n    path: {}\n", file.display());
        }
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: crfs-test-secret\n{tls_conf}{auth}",
                    dir.join("storage").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting docker-registry");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken, probably: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Registry { port, dir, child };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start; see {}", dir.join("registry.log").display());
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A CA and a server certificate for IP 127.0.0.1 signed by it (openssl); returns the
/// registry's `http.tls` configuration.
fn make_certs(dir: &Path) -> String {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=crfs test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    )
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an OCI layout made from one fixture blob holds.
pub struct Pushed {
    pub layer_digest: String,
    pub layer_size: u64,
    pub toc_digest: String,
    pub manifest_digest: String,
}

impl Pushed {
    /// Open options that require this layer's TOC digest, as the manifest annotation gives it.
    pub fn verified_open_options(&self) -> crfs_core::OpenOptions {
        crfs_core::OpenOptions { expected_toc_digest: crfs_core::Digest::parse(&self.toc_digest), ..Default::default() }
    }
}

fn write_blob(dir: &Path, data: &[u8]) -> (String, u64) {
    let hex = sha256_hex(data);
    let path = dir.join("blobs/sha256").join(&hex);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    (format!("sha256:{hex}"), data.len() as u64)
}

/// Writes an OCI image layout with one image tagged `tag`: the fixture blob as its only layer
/// (with the toc.digest annotation), a config whose diff_id is the sha256 of the gunzipped blob.
/// With `platforms`, the tag names an OCI index with one copy of the image per platform.
pub fn make_layout(dir: &Path, fixture: &str, tag: &str, platforms: &[&str]) -> Pushed {
    let fixtures = crfs_testkit::testdata().join("fixtures");
    let blob = std::fs::read(fixtures.join(fixture)).unwrap();
    let toc_digest = std::fs::read_to_string(fixtures.join(format!("{fixture}.toc-digest"))).unwrap().trim().to_owned();
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(&blob[..]).read_to_end(&mut raw).unwrap();
    let diff_id = format!("sha256:{}", sha256_hex(&raw));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (layer_digest, layer_size) = write_blob(dir, &blob);
    let manifest_for = |os: &str, arch: &str| {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"{os}","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let (config_digest, config_size) = write_blob(dir, config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{layer_size},"annotations":{{"containerd.io/snapshot/stargz/toc.digest":"{toc_digest}"}}}}]}}"#
        );
        write_blob(dir, manifest.as_bytes())
    };
    let (top_type, top_digest, top_size, manifest_digest) = if platforms.is_empty() {
        let host = crfs_remote::Platform::host();
        let (d, s) = manifest_for(&host.os, &host.architecture);
        ("application/vnd.oci.image.manifest.v1+json", d.clone(), s, d)
    } else {
        let mut entries = Vec::new();
        let mut host_digest = String::new();
        for p in platforms {
            let (os, arch) = p.split_once('/').unwrap();
            let (d, s) = manifest_for(os, arch);
            if crfs_remote::Platform::host().matches(os, arch, None) {
                host_digest = d.clone();
            }
            entries.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{s},"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#
            ));
        }
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        );
        let (d, s) = write_blob(dir, index.as_bytes());
        ("application/vnd.oci.image.index.v1+json", d, s, host_digest)
    };
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{top_type}","digest":"{top_digest}","size":{top_size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
        ),
    )
    .unwrap();
    Pushed { layer_digest, layer_size, toc_digest, manifest_digest }
}

/// Writes an OCI image layout with one image tagged `tag` whose layers are `layers` as given
/// (blob bytes and media type), with no annotations: what `docker build` or skopeo make of
/// ordinary tar layers. `diff_ids` are the sha256 of each layer's uncompressed tar.
pub fn make_plain_layout(dir: &Path, tag: &str, layers: &[(Vec<u8>, &str)], diff_ids: &[String]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let host = crfs_remote::Platform::host();
    let diff_ids: Vec<String> = diff_ids.iter().map(|d| format!("\"sha256:{d}\"")).collect();
    let config = format!(
        r#"{{"architecture":"{}","os":"{}","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        host.architecture,
        host.os,
        diff_ids.join(",")
    );
    let (config_digest, config_size) = write_blob(dir, config.as_bytes());
    let descs: Vec<String> = layers
        .iter()
        .map(|(data, media_type)| {
            let (d, s) = write_blob(dir, data);
            format!(r#"{{"mediaType":"{media_type}","digest":"{d}","size":{s}}}"#)
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{}]}}"#,
        descs.join(",")
    );
    let (digest, size) = write_blob(dir, manifest.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
        ),
    )
    .unwrap();
    digest
}

/// `skopeo copy oci:LAYOUT:TAG docker://DEST` over plain HTTP, with optional credentials.
pub fn skopeo_copy(layout: &Path, tag: &str, dest: &str, creds: Option<&str>, all: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    // skopeo must not pick up a user's policy; insecureAcceptAnything is what tests need.
    let policy = layout.with_extension("policy.json");
    std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    cmd.arg("--policy").arg(&policy);
    cmd.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{dest}"));
    let out = cmd.stdin(Stdio::null()).output().expect("running skopeo");
    assert!(out.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A registry with the all-types eStargz fixture pushed as `test/all-types:v1`.
pub fn registry_with_image(name: &str, htpasswd: bool) -> (Registry, Pushed) {
    let reg = Registry::start(name, htpasswd);
    let layout = reg.dir.join("layout");
    let pushed = make_layout(&layout, "all-types.esgz", "v1", &[]);
    let creds = format!("{USER}:{PASSWORD}");
    skopeo_copy(&layout, "v1", &format!("{}/test/all-types:v1", reg.host()), htpasswd.then_some(creds.as_str()), false);
    (reg, pushed)
}

/// The test user's credentials ([`USER`], [`PASSWORD`]), for `registry` only.
pub fn test_credentials(registry: String) -> crfs_remote::RegistryCredentials {
    crfs_remote::RegistryCredentials {
        registry,
        credentials: crfs_remote::Credentials { username: USER.into(), password: PASSWORD.into() },
    }
}

/// Patient options for tests that count requests exactly: no timeout-driven retry even on a
/// loaded machine.
pub fn counting_options() -> crfs_remote::Options {
    crfs_remote::Options { request_timeout: Duration::from_secs(30), ..test_options() }
}

/// Fast retries, so fault tests finish quickly.
pub fn test_options() -> crfs_remote::Options {
    crfs_remote::Options {
        docker_config: false,
        retry: crfs_remote::RetryPolicy {
            deadline: Duration::from_secs(20),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
        },
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..crfs_remote::Options::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The fault-injecting proxy.

/// What the proxy does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward as is.
    Pass,
    /// Close the connection without answering.
    Reset,
    /// Answer with this status and an empty body.
    Status(u16),
    /// Wait, then forward.
    Delay(Duration),
    /// Forward without the Range header, so the registry answers 200 with the whole blob.
    Full200,
    /// Forward, but cut the body after this many bytes (headers unchanged) and close.
    Short(usize),
    /// Forward, but stall this long after the headers and the first half of the body.
    Stall(Duration),
    /// Answer a range request with the next range over: 206 whose Content-Range and body are
    /// shifted by this many bytes.
    Shift(u64),
    /// Answer 206 with the asked Content-Range but bytes from elsewhere (corrupt content).
    Garbage,
    /// Redirect blob GETs to this proxy's storage endpoint on `localhost` (another host).
    Redirect,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: bool,
    pub fault: Fault,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// The host of an absolute-form request (`GET http://HOST/…`: a client using this as
    /// its HTTP proxy).
    pub proxied_host: Option<String>,
}

type Plan = dyn Fn(&Seen, u64) -> Fault + Send + Sync;

/// A proxy on 127.0.0.1 in front of `upstream`, applying `plan` to each request (given the
/// request and its number among blob GETs).
pub struct Proxy {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    /// Signature generation of storage URLs: older ones get 403 (expired).
    pub sig: Arc<AtomicU64>,
    /// With token auth: the generation of the only valid bearer token (`tok-N`); bump it to
    /// expire the tokens handed out. 0: no token auth.
    pub token: Arc<AtomicU64>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: u16, plan: impl Fn(&Seen, u64) -> Fault + Send + Sync + 'static) -> Proxy {
        Self::start_inner(upstream, plan, false)
    }

    /// A proxy that also plays a registry with token auth, like Docker Hub: /v2/ requests
    /// without the current bearer token get 401 with a `WWW-Authenticate: Bearer` challenge
    /// whose realm is this proxy's /token, which hands out tokens to anyone.
    pub fn start_with_tokens(upstream: u16) -> Proxy {
        Self::start_inner(upstream, |_, _| Fault::Pass, true)
    }

    fn start_inner(upstream: u16, plan: impl Fn(&Seen, u64) -> Fault + Send + Sync + 'static, tokens: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sig = Arc::new(AtomicU64::new(1));
        let token = Arc::new(AtomicU64::new(u64::from(tokens)));
        let connections = Arc::new(AtomicU64::new(0));
        let plan: Arc<Plan> = Arc::new(plan);
        let blob_gets = Arc::new(AtomicU64::new(0));
        {
            let (log, stop, sig, token, connections) =
                (log.clone(), stop.clone(), sig.clone(), token.clone(), connections.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (log, plan, sig, token, blob_gets) =
                        (log.clone(), plan.clone(), sig.clone(), token.clone(), blob_gets.clone());
                    std::thread::spawn(move || {
                        let _ = serve_conn(conn, upstream, port, &log, &*plan, &sig, &token, &blob_gets);
                    });
                }
            });
        }
        Proxy { port, log, stop, sig, token, connections }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// Blob GETs seen (registry paths and storage paths).
    pub fn blob_gets(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method == "GET" && is_blob_path(&s.path)).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn is_blob_path(path: &str) -> bool {
    path.contains("/blobs/sha256:") || path.starts_with("/storage/")
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    proxied_host: Option<String>,
    /// The body, by Content-Length (pushes).
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    // Absolute form, as clients send to an HTTP proxy: forwarded to the upstream all the same.
    let (proxied_host, path) = match target.strip_prefix("http://") {
        Some(rest) => match rest.split_once('/') {
            Some((host, path)) => (Some(host.to_owned()), format!("/{path}")),
            None => (Some(rest.to_owned()), "/".to_owned()),
        },
        None => (None, target.to_owned()),
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len = header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, proxied_host, body })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Sends a request upstream (one connection, Connection: close) and reads the whole answer.
fn upstream_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    // The client's Host, so that the Location of an upload session points back at the proxy.
    let upstream_host = format!("127.0.0.1:{port}");
    let host = header(headers, "host").unwrap_or(&upstream_host);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("connection") {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let _ = parts.next();
    let status: u16 = parts.next().unwrap_or("0").parse().unwrap_or(0);
    let reason = parts.next().unwrap_or("").to_owned();
    let mut hs = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            hs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut body = Vec::new();
    if method != "HEAD" {
        if header(&hs, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk[..n]);
            }
            hs.retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
        } else {
            r.read_to_end(&mut body)?;
        }
    }
    Ok(Response { status, reason, headers: hs, body })
}

fn write_response(c: &mut TcpStream, resp: &Response, head_only: bool, cut: Option<usize>) -> std::io::Result<u64> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
    let mut has_len = false;
    for (k, v) in &resp.headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        if k.eq_ignore_ascii_case("content-length") {
            has_len = true;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len && !head_only {
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    out.push_str("\r\n");
    let body: &[u8] = match cut {
        _ if head_only => &[],
        Some(n) => &resp.body[..n.min(resp.body.len())],
        None => &resp.body[..],
    };
    // One write: headers and body in separate small writes meet Nagle and delayed ACKs.
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    c.write_all(&bytes)?;
    c.flush()?;
    Ok(body.len() as u64)
}

fn simple(status: u16, headers: Vec<(String, String)>) -> Response {
    Response { status, reason: "Fault".into(), headers, body: Vec::new() }
}

fn parse_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[allow(clippy::too_many_arguments)] // the proxy's shared state, passed as is
fn serve_conn(
    conn: TcpStream,
    upstream: u16,
    self_port: u16,
    log: &Mutex<Vec<Seen>>,
    plan: &Plan,
    sig: &AtomicU64,
    token: &AtomicU64,
    blob_gets: &AtomicU64,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut c = conn;
    while let Some(req) = read_request(&mut reader) {
        let range = header(&req.headers, "range").map(str::to_owned);
        let mut seen = Seen {
            method: req.method.clone(),
            path: req.path.clone(),
            range: range.clone(),
            authorization: header(&req.headers, "authorization").is_some(),
            fault: Fault::Pass,
            body_bytes: 0,
            proxied_host: req.proxied_host.clone(),
        };
        let n = if req.method == "GET" && is_blob_path(&req.path) {
            blob_gets.fetch_add(1, Ordering::SeqCst)
        } else {
            u64::MAX
        };
        let fault = if req.path.starts_with("/storage/") { Fault::Pass } else { plan(&seen, n) };
        seen.fault = fault.clone();
        let head_only = req.method == "HEAD";
        let mut headers = req.headers.clone();
        let mut close = false;
        let generation = token.load(Ordering::SeqCst);
        let valid = format!("Bearer tok-{generation}");
        let resp = if generation > 0 && req.path.starts_with("/token") {
            let body = format!(r#"{{"token":"tok-{generation}","expires_in":300}}"#).into_bytes();
            Response {
                status: 200,
                reason: "OK".into(),
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            }
        } else if generation > 0
            && req.path.starts_with("/v2/")
            && header(&req.headers, "authorization") != Some(valid.as_str())
        {
            let challenge = format!(r#"Bearer realm="http://127.0.0.1:{self_port}/token",service="crfs-test""#);
            simple(401, vec![("WWW-Authenticate".into(), challenge)])
        } else if let Some(rest) = req.path.strip_prefix("/storage/") {
            // Blob storage: /storage/REPO-PATH?sig=N; no credentials needed, old signatures expire.
            let (blob_path, q) = rest.split_once("?sig=").unwrap_or((rest, "0"));
            if q.parse::<u64>().unwrap_or(0) < sig.load(Ordering::SeqCst) {
                simple(403, vec![])
            } else {
                // Fetch from the registry with the test credentials (storage's own access).
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
                let auth = base64_basic();
                headers.push(("Authorization".into(), auth));
                upstream_request(upstream, &req.method, &format!("/{blob_path}"), &headers, &[])?
            }
        } else {
            match &fault {
                Fault::Pass | Fault::Short(_) | Fault::Stall(_) | Fault::Garbage | Fault::Shift(_) => {
                    let mut r = match (&fault, range.as_deref().and_then(parse_range)) {
                        (Fault::Shift(d), Some((a, b))) => {
                            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("range"));
                            headers.push(("Range".into(), format!("bytes={}-{}", a + d, b + d)));
                            upstream_request(upstream, &req.method, &req.path, &headers, &req.body)?
                        }
                        _ => upstream_request(upstream, &req.method, &req.path, &headers, &req.body)?,
                    };
                    if fault == Fault::Garbage && r.status == 206 {
                        for b in &mut r.body {
                            *b = b.wrapping_add(1);
                        }
                    }
                    r
                }
                Fault::Reset => {
                    log.lock().unwrap().push(seen);
                    return Ok(());
                }
                Fault::Status(s) => {
                    let _ = upstream_request; // the registry never sees it
                    simple(*s, vec![])
                }
                Fault::Delay(d) => {
                    std::thread::sleep(*d);
                    upstream_request(upstream, &req.method, &req.path, &headers, &req.body)?
                }
                Fault::Full200 => {
                    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("range"));
                    upstream_request(upstream, &req.method, &req.path, &headers, &req.body)?
                }
                Fault::Redirect => {
                    let s = sig.load(Ordering::SeqCst);
                    let loc = format!("http://localhost:{self_port}/storage{}?sig={s}", req.path);
                    simple(307, vec![("Location".into(), loc)])
                }
            }
        };
        let cut = match fault {
            Fault::Short(n) => {
                close = true;
                Some(n)
            }
            _ => None,
        };
        // Logged before answering, so a client that got the answer also finds it in the log.
        seen.body_bytes = if head_only { 0 } else { cut.unwrap_or(usize::MAX).min(resp.body.len()) as u64 };
        log.lock().unwrap().push(seen);
        if let (Fault::Stall(d), false) = (&fault, head_only) {
            let half = resp.body.len() / 2;
            let mut first = Response {
                status: resp.status,
                reason: resp.reason.clone(),
                headers: resp.headers.clone(),
                body: resp.body.clone(),
            };
            if !first.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
                first.headers.push(("Content-Length".into(), resp.body.len().to_string()));
            }
            write_response(&mut c, &first, false, Some(half))?;
            std::thread::sleep(*d);
            c.write_all(&resp.body[half..])?;
        } else {
            write_response(&mut c, &resp, head_only, cut)?;
        }
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// A Docker config.json (`auths`) giving USER:PASSWORD to `host`.
pub fn docker_auths_json(host: &str) -> String {
    let auth = base64_basic().trim_start_matches("Basic ").to_owned();
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

/// `Basic base64(USER:PASSWORD)`, written out by hand to keep the helpers dependency-free.
pub fn base64_basic() -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{USER}:{PASSWORD}");
    let b = input.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// Counts of what was fetched, keyed by a label.
pub fn tally(seen: &[Seen]) -> HashMap<&'static str, u64> {
    let mut m = HashMap::new();
    for s in seen {
        let k = if is_blob_path(&s.path) { "blob" } else { "other" };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
