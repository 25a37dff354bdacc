//! `crfs store` under Debian's podman (runc, overlay driver, the store in storage.conf's
//! `additionallayerstores`), against docker-registry on loopback through a counting proxy:
//! - `podman pull` of an eStargz image made by `crfs image convert` fetches only the layer's
//!   footer and TOC, and `podman run` of it prints what the image holds (busybox-static);
//! - `podman run` of the same image as plain gzip still works: the store declines its layer;
//! - `podman push` of the lazily pulled image gives an image `crfs verify` accepts, whose layer
//!   unpacks to the DiffID its config names;
//! - `podman rmi` releases the layer, and pulling again works;
//! - a store restart while no container runs leaves the pulled image working;
//! - buildah (the same containers/storage, another program) pulls through the store as lazily,
//!   and `buildah from` / `buildah run` / `buildah mount` read the image's files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "../../remote/tests/common/mod.rs"]
mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Fault, Proxy, Registry, make_plain_layout, sha256_hex, skopeo_copy};
use crfs_testkit::{TarBuilder, TarEntry, is_root, need, scratch_dir};

const BUSYBOX: &str = "/bin/busybox";
const MESSAGE: &[u8] = b"hello from a lazily pulled layer\n";

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Whether everything these tests need is here (in CI it must be).
fn have_everything() -> bool {
    need(is_root(), "root (podman with the overlay driver, FUSE)")
        && need(have("podman") && have("runc"), "podman and runc")
        && need(common::have_tools(), "docker-registry and skopeo")
        && need(Path::new(BUSYBOX).exists(), "busybox-static (/bin/busybox)")
}

/// A busybox-static root filesystem as one tar layer: the binary, a few applet links, a file.
fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut tar = TarBuilder::default();
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        tar.add(d, TarEntry::Dir, 0o755, 1_700_000_000);
    }
    tar.add("bin/busybox", TarEntry::File(&busybox), 0o755, 1_700_000_000);
    for applet in ["sh", "cat", "ls", "sha256sum", "wc"] {
        tar.add(&format!("bin/{applet}"), TarEntry::Symlink("busybox"), 0o777, 1_700_000_000);
    }
    tar.add("etc/message", TarEntry::File(MESSAGE), 0o644, 1_700_000_000);
    tar.finish()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

/// Podman (or buildah, which reads the same containers/storage configuration) with its own
/// storage (overlay, the store as an additional layer store) and registries configuration,
/// nothing of the host's.
struct Podman {
    dir: PathBuf,
    program: &'static str,
}

impl Podman {
    fn new(dir: &Path, store: &Path, insecure: &[String]) -> Podman {
        Podman::of("podman", dir, store, insecure)
    }

    fn buildah(dir: &Path, store: &Path, insecure: &[String]) -> Podman {
        Podman::of("buildah", dir, store, insecure)
    }

    fn of(program: &'static str, dir: &Path, store: &Path, insecure: &[String]) -> Podman {
        std::fs::create_dir_all(dir).unwrap();
        // conmon's sockets live under the run root, and a unix socket path has at most 107
        // bytes: with a long one, every `podman run` waits 20 s for a container that exited.
        static PODMANS: AtomicUsize = AtomicUsize::new(0);
        let n = PODMANS.fetch_add(1, Ordering::SeqCst);
        let run = std::env::temp_dir().join(format!("crfs-pm-{}-{n}", std::process::id()));
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{}\"\ngraphroot = \"{}/root\"\n\
                 [storage.options]\nadditionallayerstores = [\"{}:ref\"]\n",
                run.display(),
                dir.display(),
                store.display()
            ),
        )
        .unwrap();
        let registries: String =
            insecure.iter().map(|h| format!("[[registry]]\nlocation = \"{h}\"\ninsecure = true\n")).collect();
        std::fs::write(dir.join("registries.conf"), registries).unwrap();
        std::fs::write(dir.join("policy.json"), r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        Podman { dir: dir.to_path_buf(), program }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.program);
        cmd.env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.dir.join("registries.conf"))
            .stdin(Stdio::null());
        match self.program {
            "podman" => cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]),
            _ => cmd.args(["--cgroup-manager", "cgroupfs"]),
        };
        cmd.args(args);
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let t0 = Instant::now();
        let out = self.command(args).output().expect("running podman");
        assert!(
            out.status.success(),
            "{} {args:?} failed:\n{}{}",
            self.program,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{} {args:?}: {:.2} s", self.program, t0.elapsed().as_secs_f64());
        if t0.elapsed() > Duration::from_secs(5) {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8(out.stdout).unwrap()
    }

    /// `podman run --rm IMAGE ARGS…`, with rlimits this sandbox lets runc set.
    fn run(&self, image: &str, args: &[&str]) -> String {
        let mut all =
            vec!["run", "--rm", "--network=none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", image];
        all.extend(args);
        self.ok(&all)
    }
}

/// `crfs store MOUNTPOINT`, logging to a file; unmounted when dropped.
struct Store {
    child: Child,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl Store {
    fn start(mountpoint: &Path, cache: &Path, log: &Path) -> Store {
        std::fs::create_dir_all(mountpoint).unwrap();
        let mountpoint = &mountpoint.canonicalize().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_crfs"))
            .arg("store")
            .arg("--cache-dir")
            .arg(cache)
            .arg(mountpoint)
            .env("RUST_LOG", "info")
            .env_remove("CRFS_REGISTRY_CREDS")
            .env("DOCKER_CONFIG", mountpoint.with_extension("docker"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
            .spawn()
            .expect("starting crfs store");
        let t0 = Instant::now();
        let mounts = || std::fs::read_to_string("/proc/self/mounts").unwrap();
        let target = format!("crfs-store {} fuse", mountpoint.display());
        while !mounts().contains(&target) {
            assert!(t0.elapsed() < Duration::from_secs(20), "crfs store did not mount; see {}", log.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Store { child, mountpoint: mountpoint.to_path_buf(), log: log.to_path_buf() }
    }

    /// Starts with an empty disk cache and log.
    fn start_fresh(mountpoint: &Path, cache: &Path, log: &Path) -> Store {
        let _ = std::fs::remove_file(log);
        let _ = std::fs::remove_dir_all(cache);
        Store::start(mountpoint, cache, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// SIGTERM, and wait for the process to unmount and exit.
    fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let t0 = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(20), "crfs store did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
    }
}

/// Pushes the busybox image to `registry` twice: `app/busybox:plain` as plain gzip (as
/// docker or skopeo would push it) and `app/busybox:esgz`, converted by `crfs image convert`.
fn push_images(dir: &Path, registry: &str, creds: Option<&str>, tar: &[u8]) {
    let layout = dir.join("layout");
    let _ = std::fs::remove_dir_all(&layout);
    let diff_id = sha256_hex(tar);
    make_plain_layout(&layout, "plain", &[(gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip")], &[diff_id]);
    skopeo_copy(&layout, "plain", &format!("{registry}/app/busybox:plain"), creds, false);
    let mut convert = Command::new(env!("CARGO_BIN_EXE_crfs"));
    convert.args([
        "image",
        "convert",
        &format!("{registry}/app/busybox:plain"),
        &format!("{registry}/app/busybox:esgz"),
    ]);
    if let Some(c) = creds {
        convert.args(["--creds", c]);
    }
    let out = convert.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Waits (up to 10 s: the status file is rewritten every second) for `crfs status DIR` to
/// print what `want` accepts.
fn status_until(dir: &Path, want: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_crfs")).arg("status").arg(dir).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && want(&text) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "crfs status: {text}{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Bytes of blob bodies the proxy forwarded since `from` requests.
fn blob_bytes(proxy: &Proxy, from: usize) -> u64 {
    let seen = proxy.seen();
    let blobs: Vec<_> = seen.iter().skip(from).filter(|s| s.path.contains("/blobs/")).collect();
    for s in &blobs {
        eprintln!("  {} {} {:?}: {} bytes", s.method, s.path, s.range, s.body_bytes);
    }
    blobs.iter().map(|s| s.body_bytes).sum()
}

#[test]
fn podman_pulls_and_runs_through_the_store() {
    if !have_everything() {
        return;
    }
    let dir = scratch_dir("podman-store").canonicalize().unwrap();
    let registry = Registry::start("podman-store", false);
    let proxy = Proxy::start(registry.port, |_, _| Fault::Pass);
    let (host, direct) = (proxy.host(), registry.host());

    let tar = busybox_layer();
    push_images(&dir, &direct, None, &tar);

    let (store_dir, cache, log) = (dir.join("store"), dir.join("cache"), dir.join("store.log"));
    let store = Store::start_fresh(&store_dir, &cache, &log);
    let podman = Podman::new(&dir.join("podman"), &store_dir, &[host.clone(), direct.clone()]);
    let _ = podman.command(&["rmi", "--all", "--force"]).output();
    let lazy = format!("{host}/app/busybox:esgz");

    // Pull: only the footer and the TOC of the layer cross the network.
    let before = proxy.seen().len();
    podman.ok(&["pull", &lazy]);
    let layer_size = std::fs::metadata(BUSYBOX).unwrap().len();
    let fetched = blob_bytes(&proxy, before);
    eprintln!("pull fetched {fetched} bytes of blobs; the binary alone is {layer_size}");
    assert!(fetched < layer_size / 4, "the pull fetched {fetched} bytes: not lazy");
    assert!(store.log().contains("lazy: TOC checked against toc.digest"), "{}", store.log());
    status_until(&store_dir, |s| s.contains(": lazy; in use by 1 image layers; ") && s.contains(" bytes fetched"));

    // Run: the file and the binary the container reads are the image's.
    let out = podman.run(&lazy, &["sh", "-c", "cat /etc/message; sha256sum /bin/busybox"]);
    let want_sum = sha256_hex(&std::fs::read(BUSYBOX).unwrap());
    assert_eq!(out, format!("{}{want_sum}  /bin/busybox\n", String::from_utf8_lossy(MESSAGE)));

    // Plain gzip: declined by the store, pulled whole by podman, runs the same.
    let plain = format!("{host}/app/busybox:plain");
    let out = podman.run(&plain, &["cat", "/etc/message"]);
    assert_eq!(out.as_bytes(), MESSAGE);
    assert!(store.log().contains("declined: "), "{}", store.log());
    status_until(&store_dir, |s| s.contains(": declined: ") && s.contains("the manifest gives no TOC digest"));

    // Push the lazily pulled image to another repository: what arrives is a valid image
    // whose layer unpacks to the DiffID the config names.
    let pushed = format!("{direct}/app/pushed:v1");
    podman.ok(&["push", &lazy, &pushed]);
    let verify = Command::new(env!("CARGO_BIN_EXE_crfs")).args(["verify", &pushed]).output().unwrap();
    assert!(verify.status.success(), "crfs verify {pushed}: {}", String::from_utf8_lossy(&verify.stderr));
    let copied = dir.join("pushed-layout");
    let _ = std::fs::remove_dir_all(&copied);
    let skopeo = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", "--policy"])
        .arg(podman.dir.join("policy.json"))
        .arg(format!("docker://{pushed}"))
        .arg(format!("oci:{}:v1", copied.display()))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "{}", String::from_utf8_lossy(&skopeo.stderr));
    let blobs: Vec<Vec<u8>> = std::fs::read_dir(copied.join("blobs/sha256"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let unpacked: Vec<String> = blobs
        .iter()
        .filter(|b| b.starts_with(&[0x1f, 0x8b]))
        .map(|b| format!("sha256:{}", sha256_hex(&gunzip(b))))
        .collect();
    let config = blobs.iter().find_map(|b| {
        let v: serde_json::Value = serde_json::from_slice(b).ok()?;
        v.pointer("/rootfs/diff_ids").cloned()
    });
    assert_eq!(Some(serde_json::json!(unpacked)), config, "the pushed layer against its config's DiffIDs");

    // rmi releases the layer; pulling again works.
    podman.ok(&["rmi", &lazy]);
    assert!(store.log().contains("unused: dropped from memory"), "{}", store.log());
    podman.ok(&["pull", &lazy]);
    assert_eq!(podman.run(&lazy, &["cat", "/etc/message"]).as_bytes(), MESSAGE);

    // A store restart while no container runs: the pulled image still runs.
    store.stop();
    let store = Store::start(&store_dir, &cache, &log);
    assert_eq!(podman.run(&lazy, &["cat", "/etc/message"]).as_bytes(), MESSAGE);
    podman.ok(&["rmi", "--all", "--force"]);
    drop(store);
}

/// A registry the store has no credentials for, and podman has: the store answers EACCES,
/// containers/storage takes the layer as not in the store, podman pulls it itself and runs it.
#[test]
fn a_registry_refusing_the_store_leaves_podman_pulling_as_usual() {
    if !have_everything() {
        return;
    }
    let dir = scratch_dir("podman-store-denied").canonicalize().unwrap();
    let registry = Registry::start("podman-store-denied", true);
    let host = registry.host();
    let creds = format!("{}:{}", common::USER, common::PASSWORD);
    push_images(&dir, &host, Some(&creds), &busybox_layer());

    let (store_dir, cache, log) = (dir.join("store"), dir.join("cache"), dir.join("store.log"));
    let store = Store::start_fresh(&store_dir, &cache, &log);
    let podman = Podman::new(&dir.join("podman"), &store_dir, std::slice::from_ref(&host));
    let _ = podman.command(&["rmi", "--all", "--force"]).output();
    let lazy = format!("{host}/app/busybox:esgz");
    // Without credentials podman itself is refused, in words.
    let out = podman.command(&["pull", &lazy]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication required") || err.contains("unauthorized"), "{err}");
    // With them, it pulls the layer itself: the store was refused.
    let t0 = Instant::now();
    podman.ok(&["pull", "--creds", &creds, &lazy]);
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert_eq!(podman.run(&lazy, &["cat", "/etc/message"]).as_bytes(), MESSAGE);
    let log_text = store.log();
    assert!(log_text.contains("cannot serve") && log_text.contains("Denied"), "{log_text}");
    podman.ok(&["rmi", "--all", "--force"]);
}

/// buildah reads the same containers/storage configuration: `buildah pull` through the store
/// fetches only the footer and the TOC, and a working container made `from` the image runs
/// its binary and shows its files through `buildah mount`.
#[test]
fn buildah_pulls_and_runs_through_the_store() {
    if !have_everything() || !need(have("buildah"), "buildah") {
        return;
    }
    let dir = scratch_dir("buildah-store").canonicalize().unwrap();
    let registry = Registry::start("buildah-store", false);
    let proxy = Proxy::start(registry.port, |_, _| Fault::Pass);
    let (host, direct) = (proxy.host(), registry.host());
    push_images(&dir, &direct, None, &busybox_layer());

    let (store_dir, cache, log) = (dir.join("store"), dir.join("cache"), dir.join("store.log"));
    let store = Store::start_fresh(&store_dir, &cache, &log);
    let buildah = Podman::buildah(&dir.join("buildah"), &store_dir, &[host.clone(), direct.clone()]);
    let _ = buildah.command(&["rm", "--all"]).output();
    let _ = buildah.command(&["rmi", "--all", "--force"]).output();
    let lazy = format!("{host}/app/busybox:esgz");

    let before = proxy.seen().len();
    buildah.ok(&["pull", "--quiet", &lazy]);
    let fetched = blob_bytes(&proxy, before);
    let layer_size = std::fs::metadata(BUSYBOX).unwrap().len();
    eprintln!("buildah pull fetched {fetched} bytes of blobs; the binary alone is {layer_size}");
    assert!(fetched < layer_size / 4, "the pull fetched {fetched} bytes: not lazy");
    assert!(store.log().contains("lazy: TOC checked against toc.digest"), "{}", store.log());

    let ctr = buildah.ok(&["from", "--quiet", "--pull=never", &lazy]);
    let ctr = ctr.trim();
    let out = buildah.ok(&[
        "run",
        "--runtime",
        "runc",
        "--network",
        "none",
        ctr,
        "--",
        "sh",
        "-c",
        "cat /etc/message; sha256sum /bin/busybox",
    ]);
    let want_sum = sha256_hex(&std::fs::read(BUSYBOX).unwrap());
    assert_eq!(out, format!("{}{want_sum}  /bin/busybox\n", String::from_utf8_lossy(MESSAGE)));
    // The container's root, as buildah mounts it (overlay over the store's diff/).
    let root = buildah.ok(&["mount", ctr]);
    assert_eq!(std::fs::read(Path::new(root.trim()).join("etc/message")).unwrap(), MESSAGE);
    buildah.ok(&["umount", ctr]);
    buildah.ok(&["rm", ctr]);
    buildah.ok(&["rmi", "--all", "--force"]);
    drop(store);
}
