//! crfs-remote against real components: Debian's docker-registry (anonymous and behind
//! htpasswd basic auth), images pushed by skopeo, and a fault-injecting proxy of our own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fault, PASSWORD, Proxy, USER, registry_with_image, test_credentials, test_options};
use crfs_core::{Layer, ReadAt};
use crfs_remote::{Credentials, ErrorKind, Mirror, RegistryBlob, RegistryCredentials, Remote};

fn fixture(name: &str) -> std::path::PathBuf {
    crfs_testkit::testdata().join("fixtures").join(name)
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(fixture("all-types.esgz")).unwrap()
}

fn expected_listing() -> String {
    std::fs::read_to_string(fixture("all-types.esgz.list")).unwrap()
}

/// Opens the only layer of `reference` and checks its listing against the fixture's.
fn open_and_list(remote: &Remote, reference: &str) -> Layer<Arc<dyn ReadAt + Send + Sync>> {
    let source = remote.open_source(reference).unwrap();
    assert_eq!(source.layers.len(), 1);
    let l = &source.layers[0];
    let expected_toc_digest = l.desc.as_ref().unwrap().expected_toc_digest().unwrap();
    let options = crfs_core::OpenOptions { expected_toc_digest, ..Default::default() };
    let layer = Layer::open_with(Arc::clone(&l.blob), &options).unwrap();
    crfs_testkit::assert_same_listing(reference, &crfs_testkit::layer_listing(&layer), &expected_listing());
    layer
}

#[test]
fn resolve_open_and_list_through_the_registry() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("plain", false);
    let remote = Remote::new(test_options()).unwrap();
    let reference = format!("{}/test/all-types:v1", reg.host());
    let image = remote.resolve(&reference).unwrap();
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    assert_eq!(image.index_digest, None);
    assert_eq!(image.registry, reg.host());
    assert_eq!(image.repository, "test/all-types");
    assert_eq!(image.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(image.layers.len(), 1);
    let desc = &image.layers[0];
    assert_eq!((desc.digest.as_str(), desc.size), (pushed.layer_digest.as_str(), pushed.layer_size));
    assert_eq!(desc.toc_digest(), Some(pushed.toc_digest.as_str()));

    // The layer through RegistryBlob, verified against the annotation.
    let blob = remote.open_layer(&image, desc).unwrap();
    let opts =
        crfs_core::OpenOptions { expected_toc_digest: desc.expected_toc_digest().unwrap(), ..Default::default() };
    let layer = Layer::open_with(blob, &opts).unwrap();
    crfs_testkit::assert_same_listing("registry", &crfs_testkit::layer_listing(&layer), &expected_listing());

    // The same through open_source, by tag and by digest.
    open_and_list(&remote, &reference);
    open_and_list(&remote, &format!("{}/test/all-types@{}", reg.host(), pushed.manifest_digest));

    // A wrong toc.digest is refused.
    let bad = crfs_core::OpenOptions {
        expected_toc_digest: crfs_core::Digest::parse(&pushed.layer_digest),
        ..Default::default()
    };
    let err = Layer::open_with(remote.open_layer(&image, desc).unwrap(), &bad).unwrap_err();
    assert_eq!(err, crfs_core::Error::TocDigestMismatch);

    // Missing images and tags are reported as such.
    let err = remote.resolve(&format!("{}/test/all-types:nope", reg.host())).unwrap_err();
    assert!(err.kind() == ErrorKind::NotFound, "{err}");
    let err = remote.resolve(&format!("{}/test/nothing:v1", reg.host())).unwrap_err();
    assert!(err.kind() == ErrorKind::NotFound, "{err}");
}

#[test]
fn oci_layout_and_plain_url_sources() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("url", false);
    let remote = Remote::new(test_options()).unwrap();
    // The layout skopeo pushed from, as a source of its own.
    let layout = reg.dir.join("layout");
    open_and_list(&remote, &format!("oci:{}:v1", layout.display()));
    // The blob by URL: HEAD for the size, then Range GETs.
    let url = format!("http://{}/v2/test/all-types/blobs/{}", reg.host(), pushed.layer_digest);
    let blob = remote.open_url(&url, None).unwrap();
    assert_eq!(blob.size(), pushed.layer_size);
    let layer = Layer::open(blob).unwrap();
    crfs_testkit::assert_same_listing("url", &crfs_testkit::layer_listing(&layer), &expected_listing());
    let err =
        remote.open_url(&format!("http://{}/v2/test/all-types/blobs/sha256:{}", reg.host(), "0".repeat(64)), None);
    assert!(err.is_err());
}

#[test]
fn manifest_list_platform_selection() {
    if !common::have_tools() {
        return;
    }
    let reg = common::Registry::start("index", false);
    let layout = reg.dir.join("layout");
    let host = crfs_remote::Platform::host();
    let host_str = format!("{}/{}", host.os, host.architecture);
    let others: Vec<&str> =
        ["linux/amd64", "linux/arm64", "linux/riscv64"].into_iter().filter(|p| *p != host_str).collect();
    let mut platforms = others.clone();
    platforms.push(&host_str);
    let pushed = common::make_layout(&layout, "all-types.esgz", "multi", &platforms);
    common::skopeo_copy(&layout, "multi", &format!("{}/test/multi:v1", reg.host()), None, true);
    let reference = format!("{}/test/multi:v1", reg.host());

    let remote = Remote::new(test_options()).unwrap();
    let image = remote.resolve(&reference).unwrap();
    assert!(image.index_digest.is_some());
    assert_eq!(image.manifest_digest, pushed.manifest_digest, "host platform picked");
    open_and_list(&remote, &reference);

    let other: crfs_remote::Platform = others[0].parse().unwrap();
    let remote_other = Remote::new(crfs_remote::Options { platform: Some(other), ..test_options() }).unwrap();
    let image_other = remote_other.resolve(&reference).unwrap();
    assert_ne!(image_other.manifest_digest, image.manifest_digest);
    assert_eq!(image_other.index_digest, image.index_digest);

    let none =
        Remote::new(crfs_remote::Options { platform: Some("plan9/mips".parse().unwrap()), ..test_options() }).unwrap();
    let err = none.resolve(&reference).unwrap_err();
    assert!(err.kind() == ErrorKind::NoPlatform, "{err}");
    assert!(err.to_string().contains("plan9/mips") && err.to_string().contains(others[0]), "{err}");
}

#[test]
fn basic_auth_right_wrong_and_missing_credentials() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = registry_with_image("auth", true);
    let reference = format!("{}/test/all-types:v1", reg.host());
    let with = |creds: Option<Credentials>| {
        let credentials = creds.map(|credentials| RegistryCredentials { registry: reg.host(), credentials });
        Remote::new(crfs_remote::Options { credentials, ..test_options() }).unwrap()
    };

    let good = with(Some(Credentials { username: USER.into(), password: PASSWORD.into() }));
    open_and_list(&good, &reference);

    let wrong = with(Some(Credentials::parse(&format!("{USER}:not-the-password")).unwrap()));
    let err = wrong.resolve(&reference).unwrap_err();
    assert!(err.kind() == ErrorKind::Auth, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&reg.host()) && msg.contains("refused") && msg.contains("wrong username or password"),
        "{msg}"
    );

    let anonymous = with(None);
    let err = anonymous.resolve(&reference).unwrap_err();
    assert!(err.kind() == ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("requires credentials"), "{err}");

    // A blob opened without valid credentials reads as EACCES, not as data.
    let desc = good.resolve(&reference).unwrap().layers[0].clone();
    let blob = wrong.open_blob(&reference, &desc.digest, desc.size).unwrap();
    let mut buf = [0u8; 16];
    match blob.read_at(0, &mut buf).unwrap_err() {
        crfs_core::Error::Io(e) => assert_eq!(e.errno, 13, "{e:?}"),
        e => panic!("{e}"),
    }
}

/// Explicit credentials go to the registry they name only: a mirror of it (a recording proxy in
/// front of the same registry) and another registry host (another proxy) never see an
/// `Authorization` header, and the registry itself gets them.
#[test]
fn explicit_credentials_reach_only_the_registry_they_name() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = registry_with_image("creds-scope", true);
    let mirror = Proxy::start(reg.port, |_, _| Fault::Pass);
    let other = Proxy::start(reg.port, |_, _| Fault::Pass);
    let remote = Remote::new(crfs_remote::Options {
        credentials: Some(test_credentials(reg.host())),
        mirrors: vec![Mirror { registry: reg.host(), mirror: mirror.host() }],
        ..test_options()
    })
    .unwrap();

    // The mirror refuses the anonymous client; the registry then serves it with the credentials.
    let reference = format!("{}/test/all-types:v1", reg.host());
    let image = remote.resolve(&reference).unwrap();
    assert_eq!(image.mirror, None, "the mirror refused: the image came from the registry");
    open_and_list(&remote, &reference);
    let to_mirror = mirror.seen();
    assert!(!to_mirror.is_empty(), "the mirror was tried first");
    assert!(to_mirror.iter().all(|s| !s.authorization), "credentials reached the mirror: {to_mirror:?}");

    // Another registry host gets none either, so it refuses.
    let err = remote.resolve(&format!("{}/test/all-types:v1", other.host())).unwrap_err();
    assert!(err.kind() == ErrorKind::Auth && err.to_string().contains("requires credentials"), "{err}");
    let to_other = other.seen();
    assert!(!to_other.is_empty() && to_other.iter().all(|s| !s.authorization), "{to_other:?}");

    // The same host named by the credentials does get them (so the proxy does record them).
    let named =
        Remote::new(crfs_remote::Options { credentials: Some(test_credentials(other.host())), ..test_options() })
            .unwrap();
    open_and_list(&named, &format!("{}/test/all-types:v1", other.host()));
    assert!(other.seen().iter().any(|s| s.authorization), "the named host got the credentials");
}

/// `auth_file` (`--authfile`, Docker config.json format) gives each host its own credentials;
/// a host it has no entry for gets none; a file that is not JSON is refused up front.
#[test]
fn auth_file_credentials_are_per_host() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = registry_with_image("authfile", true);
    let other = Proxy::start(reg.port, |_, _| Fault::Pass);
    let file = reg.dir.join("auth.json");
    std::fs::write(&file, common::docker_auths_json(&reg.host())).unwrap();
    let remote = Remote::new(crfs_remote::Options { auth_file: Some(file.clone()), ..test_options() }).unwrap();
    open_and_list(&remote, &format!("{}/test/all-types:v1", reg.host()));
    let err = remote.resolve(&format!("{}/test/all-types:v1", other.host())).unwrap_err();
    assert!(err.kind() == ErrorKind::Auth, "{err}");
    assert!(other.seen().iter().all(|s| !s.authorization));

    std::fs::write(&file, "USER:PASSWORD\n").unwrap();
    let err = Remote::new(crfs_remote::Options { auth_file: Some(file.clone()), ..test_options() }).unwrap_err();
    assert!(err.kind() == ErrorKind::Invalid && err.to_string().contains("not a JSON auth file"), "{err}");
    assert!(!err.to_string().contains("PASSWORD"), "{err}");
}

/// Where the TOC and a small file's chunk live in the fixture, from a local open.
fn local_layout() -> (u64, u64, u64, u64) {
    let blob = fixture_bytes();
    let layer = Layer::open(blob.clone()).unwrap();
    let toc_offset = layer.footer().toc_offset;
    let id = layer.index().lookup_path(b"dotted/file.txt").unwrap();
    let chunk = layer.index().chunks(id).get(0).unwrap();
    (blob.len() as u64, toc_offset, chunk.offset, chunk.size)
}

#[test]
fn one_small_file_costs_footer_toc_and_its_chunk() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("count", false);
    let proxy = Proxy::start(reg.port, |_, _| Fault::Pass);
    let remote = Remote::new(common::counting_options()).unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let image = remote.resolve(&reference).unwrap();
    let desc = &image.layers[0];
    let blob = remote.open_layer(&image, desc).unwrap();
    let opts =
        crfs_core::OpenOptions { expected_toc_digest: desc.expected_toc_digest().unwrap(), ..Default::default() };
    let layer = Layer::open_with(blob, &opts).unwrap();
    let opened = proxy.blob_gets();
    let id = layer.index().lookup_path(b"dotted/file.txt").unwrap();
    let mut out = Vec::new();
    layer.read_file_verified(id, &mut out).unwrap();
    let local = Layer::open(fixture_bytes()).unwrap();
    let mut want = Vec::new();
    local.read_file_verified(local.index().lookup_path(b"dotted/file.txt").unwrap(), &mut want).unwrap();
    assert_eq!(out, want);
    let all = proxy.blob_gets();
    let (size, toc_offset, _chunk_offset, _chunk_size) = local_layout();
    let bytes: u64 = all.iter().map(|s| s.body_bytes).sum();
    eprintln!(
        "blob {size} bytes: open = {} GETs ({} bytes), + one small file = {} GETs, {bytes} bytes in all; ranges {:?}",
        opened.len(),
        opened.iter().map(|s| s.body_bytes).sum::<u64>(),
        all.len(),
        all.iter().map(|s| s.range.clone().unwrap_or_default()).collect::<Vec<_>>()
    );
    assert!(all.iter().all(|s| s.range.is_some()), "every blob GET is a range request");
    assert!(opened.len() <= 2, "open = footer + TOC: {opened:?}");
    assert_eq!(all.len(), opened.len() + 1, "one small file = one more request");
    // Footer + TOC (everything from the TOC offset to the end) + the file's chunk, nothing else:
    // the TOC is at most the tail from toc_offset, and the chunk is far smaller than 64 KiB.
    assert!(bytes <= (size - toc_offset) + 64 + 4096, "{bytes} bytes fetched");
    assert_eq!(remote.stats().requests, all.len() as u64);
    assert_eq!(pushed.layer_size, size);
    // Connections are reused: the proxy saw fewer connections than requests is not observable
    // here, but the counters must match what the proxy saw.
    assert_eq!(remote.stats().bytes, bytes);
}

/// Reads the whole blob in odd-sized pieces at odd offsets through a faulty proxy; each read
/// must give the fixture's bytes or an error.
fn read_pieces(blob: &dyn ReadAt, want: &[u8]) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    let mut off = 0u64;
    let mut len = 1usize;
    while off < want.len() as u64 {
        let mut buf = vec![0u8; len];
        match blob.read_at(off, &mut buf) {
            Ok(n) => {
                assert!(n > 0);
                assert_eq!(&buf[..n], &want[off as usize..off as usize + n], "wrong bytes at {off}+{n}");
                ok += 1;
            }
            Err(_) => failed += 1,
        }
        off += len as u64;
        len = len * 3 + 7;
    }
    (ok, failed)
}

#[test]
fn faults_give_right_bytes_or_errors() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("faults", false);
    let want = fixture_bytes();
    // Each fault hits every other blob GET, so retries succeed.
    let transient = [
        Fault::Reset,
        Fault::Status(503),
        Fault::Status(429),
        Fault::Status(500),
        Fault::Delay(Duration::from_millis(700)), // past the 300 ms request timeout below
        Fault::Stall(Duration::from_millis(700)),
        Fault::Short(10),
        Fault::Shift(1),
        Fault::Full200,
    ];
    // Each fault with one request per read, and with neighbouring reads coalesced.
    for (fault, max_coalesce) in transient.iter().flat_map(|f| [(f.clone(), 0), (f.clone(), 2 << 20)]) {
        let t0 = std::time::Instant::now();
        let f = fault.clone();
        // Slow answers cost a timeout each: fewer of them.
        let slow = matches!(fault, Fault::Delay(_) | Fault::Stall(_));
        let every = if slow { 5 } else { 2 };
        let proxy =
            Proxy::start(
                reg.port,
                move |s, n| {
                    if s.path.contains("/blobs/") && n % every == 0 { f.clone() } else { Fault::Pass }
                },
            );
        let timeout = Duration::from_millis(if slow { 300 } else { 2000 });
        let remote =
            Remote::new(crfs_remote::Options { request_timeout: timeout, max_coalesce, ..test_options() }).unwrap();
        let reference = format!("{}/test/all-types:v1", proxy.host());
        let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
        let (ok, failed) = read_pieces(&blob, &want);
        let stats = remote.stats();
        eprintln!(
            "{fault:?} (coalescing up to {max_coalesce}): {ok} reads ok, {failed} failed; {stats:?}; {:?}",
            t0.elapsed()
        );
        assert_eq!(failed, 0, "{fault:?}: transient faults are retried");
        // Coalesced, the few requests may all fall between the faulty ones.
        if fault != Fault::Full200 && max_coalesce == 0 {
            assert!(stats.retries > 0, "{fault:?}: retried");
        }
        // And whole layers open and list through it.
        let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
        let layer = Layer::open(blob).unwrap();
        crfs_testkit::assert_same_listing(
            &format!("{fault:?}"),
            &crfs_testkit::layer_listing(&layer),
            &expected_listing(),
        );
        eprintln!("{fault:?}: listed after {:?}", t0.elapsed());
    }

    // Faults on every request: errors, never bytes.
    for fault in
        [Fault::Status(503), Fault::Status(501), Fault::Status(404), Fault::Short(3), Fault::Shift(2), Fault::Reset]
    {
        let t0 = std::time::Instant::now();
        let f = fault.clone();
        let proxy = Proxy::start(reg.port, move |_, _| f.clone());
        let mut options = test_options();
        options.retry.max_attempts = 3;
        let remote = Remote::new(options).unwrap();
        let reference = format!("{}/test/all-types:v1", proxy.host());
        let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
        let (ok, failed) = read_pieces(&blob, &want);
        eprintln!("always {fault:?}: {ok} ok, {failed} failed; {:?}; {:?}", remote.stats(), t0.elapsed());
        // A body cut after 3 bytes still serves reads of up to 3 bytes (the first one, 1 byte).
        let max_ok = if matches!(fault, Fault::Short(_)) { 1 } else { 0 };
        assert!(ok <= max_ok, "{fault:?}: {ok} reads succeeded");
        assert!(failed > 0);
        if matches!(fault, Fault::Status(501 | 404)) {
            assert_eq!(remote.stats().retries, 0, "{fault:?} is not retried");
        }
    }

    // Corrupt content with correct framing: the core's digests catch it.
    let proxy = Proxy::start(reg.port, |_, _| Fault::Garbage);
    let remote = Remote::new(test_options()).unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
    assert!(Layer::open_with(blob, &pushed.verified_open_options()).is_err());
}

#[test]
fn redirects_drop_credentials_and_expired_targets_are_resolved_again() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("redirect", true);
    let proxy = Proxy::start(reg.port, |s, _| if s.path.contains("/blobs/") { Fault::Redirect } else { Fault::Pass });
    let remote = Remote::new(crfs_remote::Options {
        credentials: Some(test_credentials(proxy.host())),
        max_coalesce: 0, // one request per read, counted below
        ..common::counting_options()
    })
    .unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
    let want = fixture_bytes();
    let (ok, failed) = read_pieces(&blob, &want);
    assert_eq!(failed, 0);
    let seen = proxy.blob_gets();
    let to_registry: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/v2/")).collect();
    let to_storage: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/storage/")).collect();
    assert!(to_registry.iter().all(|s| s.authorization), "credentials go to the registry");
    assert!(to_storage.iter().all(|s| !s.authorization), "but never to blob storage: {to_storage:?}");
    assert_eq!(to_registry.len(), 1, "the redirect target is cached");
    assert_eq!(to_storage.len(), ok);

    // Expire the signed URLs: the next read gets 403 from storage, asks the registry again.
    proxy.sig.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (ok2, failed2) = read_pieces(&blob, &want);
    assert_eq!(failed2, 0);
    let seen2 = proxy.blob_gets();
    let again = seen2.iter().filter(|s| s.path.starts_with("/v2/")).count();
    assert_eq!(again, 2, "one new redirect after expiry");
    assert_eq!(seen2.len(), seen.len() + ok2 + 2, "one 403 and one registry GET extra");
}

#[test]
fn disk_cache_serves_a_second_open_with_the_registry_stopped() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("cache", false);
    let cache_dir = reg.dir.join("cache");
    let options = || crfs_remote::Options {
        cache: Some(crfs_remote::CacheOptions { dir: cache_dir.clone(), max_bytes: 64 << 20 }),
        ..test_options()
    };
    let reference = format!("{}/test/all-types:v1", reg.host());
    let read_all = |remote: &Remote, reference: &str| {
        let image = remote.resolve(reference).unwrap();
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.layers[0].digest, pushed.layer_digest);
        let blob = remote.open_layer(&image, &image.layers[0]).unwrap();
        let layer = Layer::open_with(blob, &pushed.verified_open_options()).unwrap();
        crfs_testkit::assert_same_listing("cache", &crfs_testkit::layer_listing(&layer), &expected_listing());
        image
    };
    let first = Remote::new(options()).unwrap();
    let image = read_all(&first, &reference);
    let fetched = first.stats();
    assert!(fetched.requests > 0);
    drop(reg); // the registry is gone

    // By tag: the registry cannot be reached, so the tag's last digest is used, after two
    // attempts rather than the whole retry policy (the default one: about 6 s of backoff).
    let second = Remote::new(crfs_remote::Options { retry: Default::default(), ..options() }).unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(read_all(&second, &reference), image);
    let fell_back = t0.elapsed();
    let s = second.stats();
    eprintln!("first open: {fetched:?}; second open, registry stopped: {s:?}");
    assert_eq!(s.requests, 0, "every blob byte from the cache");
    assert_eq!(s.cache_hits, fetched.requests + fetched.cache_hits);
    // By digest: the manifest comes from the cache without asking the registry.
    let by_digest = reference.replace(":v1", &format!("@{}", image.manifest_digest));
    let third = Remote::new(options()).unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(read_all(&third, &by_digest).manifest_digest, image.manifest_digest);
    assert!(t0.elapsed() < std::time::Duration::from_secs(1), "no retries: {:?}", t0.elapsed());
    // A tag never resolved before, and any tag without a disk cache, is a network error,
    // after the whole retry policy.
    let t0 = std::time::Instant::now();
    let e = second.resolve(&reference.replace(":v1", ":v2")).unwrap_err();
    let gave_up = t0.elapsed();
    eprintln!("fell back after {fell_back:?}; gave up without a fallback after {gave_up:?}");
    assert!(e.kind() == ErrorKind::Network, "{e}");
    assert!(fell_back < std::time::Duration::from_secs(2), "{fell_back:?}");
    assert!(gave_up > std::time::Duration::from_secs(3), "{gave_up:?}");
    let e = Remote::new(test_options()).unwrap().resolve(&reference).unwrap_err();
    assert!(e.kind() == ErrorKind::Network, "{e}");
}

#[test]
fn whole_blob_answers_fill_the_cache() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("full200", false);
    let proxy = Proxy::start(reg.port, |_, _| Fault::Full200);
    let cache_dir = reg.dir.join("cache");
    let remote = Remote::new(crfs_remote::Options {
        cache: Some(crfs_remote::CacheOptions { dir: cache_dir, max_bytes: 64 << 20 }),
        ..common::counting_options()
    })
    .unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
    let (_, failed) = read_pieces(&blob, &fixture_bytes());
    assert_eq!(failed, 0);
    assert_eq!(proxy.blob_gets().len(), 1, "after one whole-blob answer every read is local");
}

#[test]
fn anonymous_bearer_tokens_and_their_expiry() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("bearer", false);
    let proxy = Proxy::start_with_tokens(reg.port);
    let remote = Remote::new(test_options()).unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let layer = open_and_list(&remote, &reference);
    drop(layer);
    let tokens = |p: &Proxy| p.seen().iter().filter(|s| s.path.starts_with("/token")).count();
    let before = tokens(&proxy);
    assert!(before >= 1, "a token was fetched");
    let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
    let mut buf = vec![0u8; 100];
    blob.read_exact_at(0, &mut buf).unwrap();
    assert_eq!(tokens(&proxy), before, "the token is reused");
    // The token expires: the next read gets 401, fetches a new token once, and succeeds.
    proxy.token.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    blob.read_exact_at(100, &mut buf).unwrap();
    assert_eq!(&buf[..], &fixture_bytes()[100..200]);
    assert_eq!(tokens(&proxy), before + 1, "one refresh");
    assert!(proxy.blob_gets().iter().all(|s| s.range.is_some()));
}

/// With credentials and a registry that wants bearer tokens (a private repository at Docker
/// Hub, say), the token is asked for with the basic credentials, and the registry itself only
/// ever sees the token.
#[test]
fn bearer_tokens_are_asked_for_with_the_credentials() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = registry_with_image("bearer-creds", false);
    let proxy = Proxy::start_with_tokens(reg.port);
    let remote =
        Remote::new(crfs_remote::Options { credentials: Some(test_credentials(proxy.host())), ..test_options() })
            .unwrap();
    open_and_list(&remote, &format!("{}/test/all-types:v1", proxy.host()));
    let seen = proxy.seen();
    let tokens: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/token")).collect();
    assert_eq!(tokens.len(), 1, "{seen:?}");
    assert!(tokens[0].authorization, "the token request carries the credentials");
    assert!(tokens[0].path.contains("scope=repository%3Atest%2Fall-types%3Apull"), "{}", tokens[0].path);
    assert!(tokens[0].path.contains("service=crfs-test"), "{}", tokens[0].path);
    let repo: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/v2/test/")).collect();
    assert!(!repo.is_empty() && repo.iter().all(|s| s.authorization), "{repo:?}");
}

/// The Docker config is read from $DOCKER_CONFIG, which only a child process can set safely:
/// the test runs itself again with it.
#[test]
fn docker_config_credentials() {
    if let Ok(host) = std::env::var("CRFS_TEST_DOCKER_CONFIG_REGISTRY") {
        // The child: no explicit credentials, only the Docker config.
        let remote = Remote::new(crfs_remote::Options { docker_config: true, ..test_options() }).unwrap();
        open_and_list(&remote, &format!("{host}/test/all-types:v1"));
        return;
    }
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = registry_with_image("dockercfg", true);
    let config = reg.dir.join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.json"), common::docker_auths_json(&reg.host())).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["docker_config_credentials", "--exact", "--nocapture"])
        .env("DOCKER_CONFIG", &config)
        .env("CRFS_TEST_DOCKER_CONFIG_REGISTRY", reg.host())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "child failed:\n{text}");
}

#[test]
fn concurrent_reads_share_connections_and_work_inside_a_runtime() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("concurrent", false);
    let proxy = Proxy::start(reg.port, |_, _| Fault::Pass);
    // One request per read: no coalescing (random reads from 8 threads are sometimes neighbours).
    let remote = Remote::new(crfs_remote::Options { max_coalesce: 0, ..common::counting_options() }).unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let blob = Arc::new(remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap());
    let want = Arc::new(fixture_bytes());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (blob, want) = (Arc::clone(&blob), Arc::clone(&want));
            std::thread::spawn(move || {
                for i in 0..25u64 {
                    let off = (t * 997 + i * 611) % (want.len() as u64 - 300);
                    let mut buf = vec![0u8; 1 + ((t + i) % 300) as usize];
                    blob.read_exact_at(off, &mut buf).unwrap();
                    assert_eq!(&buf[..], &want[off as usize..off as usize + buf.len()]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let requests = remote.stats().requests;
    let connections = proxy.connections.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("{requests} range requests from 8 threads over {connections} connections");
    assert_eq!(requests, 200);
    assert!(connections <= 16, "connections are pooled and reused: {connections}");

    // From inside another runtime (an async front-end calling a synchronous ReadAt).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let got = rt.block_on(async {
        let mut buf = vec![0u8; 64];
        blob.read_exact_at(1000, &mut buf).map(|()| buf)
    });
    assert_eq!(got.unwrap(), want[1000..1064].to_vec());
}

/// 5 000 files (many.esgz, 1.3 MB): what opening, one small file and every file cost.
#[test]
fn many_files_costs() {
    if !common::have_tools() {
        return;
    }
    let reg = common::Registry::start("many", false);
    let layout = reg.dir.join("layout");
    let pushed = common::make_layout(&layout, "many.esgz", "v1", &[]);
    common::skopeo_copy(&layout, "v1", &format!("{}/test/many:v1", reg.host()), None, false);
    let proxy = Proxy::start(reg.port, |_, _| Fault::Pass);
    let remote = Remote::new(common::counting_options()).unwrap();
    let reference = format!("{}/test/many:v1", proxy.host());
    let t0 = std::time::Instant::now();
    let image = remote.resolve(&reference).unwrap();
    let resolved_in = t0.elapsed();
    let desc = &image.layers[0];
    let blob = remote.open_layer(&image, desc).unwrap();
    let opts =
        crfs_core::OpenOptions { expected_toc_digest: desc.expected_toc_digest().unwrap(), ..Default::default() };
    let layer = Layer::open_with(blob, &opts).unwrap();
    let opened_in = t0.elapsed();
    let open = remote.stats();
    let id = layer.index().lookup_path(b"d00/f001").unwrap();
    let mut out = Vec::new();
    layer.read_file_verified(id, &mut out).unwrap();
    let first_byte = t0.elapsed();
    let one = remote.stats();
    assert_eq!(one.requests, open.requests + 1, "one small file, one request");
    let chunk = layer.index().chunks(id).get(0).unwrap();
    // Every file, straight from the registry (no proxy in between).
    let direct = Remote::new(common::counting_options()).unwrap();
    let blob = direct.open_blob(&format!("{}/test/many:v1", reg.host()), &desc.digest, desc.size).unwrap();
    let layer = Layer::open_with(blob, &opts).unwrap();
    let t1 = std::time::Instant::now();
    let listing = crfs_testkit::layer_listing(&layer);
    let remote_all = t1.elapsed();
    let all = direct.stats();
    crfs_testkit::assert_same_listing("many", &listing, &std::fs::read_to_string(fixture("many.esgz.list")).unwrap());
    // The same after a whole-blob prefetch into the disk cache (background fetch).
    let cached = Remote::new(crfs_remote::Options {
        cache: Some(crfs_remote::CacheOptions { dir: reg.dir.join("cache"), max_bytes: 64 << 20 }),
        ..common::counting_options()
    })
    .unwrap();
    let t3 = std::time::Instant::now();
    let blob = cached.open_blob(&format!("{}/test/many:v1", reg.host()), &desc.digest, desc.size).unwrap();
    blob.prefetch(0, u64::MAX).unwrap();
    let layer = Layer::open_with(blob, &opts).unwrap();
    assert_eq!(crfs_testkit::layer_listing(&layer), listing);
    let prefetched_all = t3.elapsed();
    assert_eq!(cached.stats().requests, 1);
    let local = Layer::open(std::fs::read(fixture("many.esgz")).unwrap()).unwrap();
    let t2 = std::time::Instant::now();
    let _ = crfs_testkit::layer_listing(&local);
    let local_all = t2.elapsed();
    eprintln!(
        "many.esgz ({} bytes): resolve {resolved_in:.1?}, +open {opened_in:.1?}, {} range requests, {} bytes (TOC from {} to the end); \
         first byte of d00/f001 after {first_byte:.1?}: +1 request, +{} bytes (chunk {} bytes compressed); \
         every file: {} requests, {} bytes, {remote_all:.1?}; after a whole-blob prefetch (1 request) \
         {prefetched_all:.1?}; local {local_all:.1?}",
        pushed.layer_size,
        open.requests,
        open.bytes,
        layer.footer().toc_offset,
        one.bytes - open.bytes,
        chunk.compressed_end - chunk.offset,
        all.requests,
        all.bytes,
    );
    assert!(one.bytes - open.bytes < 64 << 10);
}

#[test]
fn prefetch_fills_the_cache_in_one_request() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("prefetch", false);
    let proxy = Proxy::start(reg.port, |_, _| Fault::Pass);
    let remote = Remote::new(crfs_remote::Options {
        cache: Some(crfs_remote::CacheOptions { dir: reg.dir.join("cache"), max_bytes: 64 << 20 }),
        ..common::counting_options()
    })
    .unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let blob = remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
    assert_eq!(blob.prefetch(0, u64::MAX).unwrap(), pushed.layer_size);
    assert_eq!(blob.prefetch(0, u64::MAX).unwrap(), 0, "already cached");
    let layer = Layer::open_with(blob, &pushed.verified_open_options()).unwrap();
    crfs_testkit::assert_same_listing("prefetch", &crfs_testkit::layer_listing(&layer), &expected_listing());
    assert_eq!(proxy.blob_gets().len(), 1, "the whole blob in one request, then every read local");
    // Without a cache there is nowhere to put it.
    let bare = Remote::new(test_options()).unwrap();
    let blob = bare.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap();
    assert!(blob.prefetch(0, 100).is_err());
}

#[test]
fn mirrors_are_tried_in_order_before_the_registry() {
    if !common::have_tools() {
        return;
    }
    let (upstream, _pushed) = registry_with_image("upstream", false);
    let (mirror_reg, _) = registry_with_image("mirror", false);
    let mirror = Proxy::start(mirror_reg.port, |_, _| Fault::Pass);
    let empty = common::Registry::start("empty-mirror", false);
    let closed = "127.0.0.1:1"; // nothing listens there
    let options = |mirrors: Vec<crfs_remote::Mirror>| {
        let mut o = test_options();
        o.mirrors = mirrors;
        o.retry.max_attempts = 2;
        Remote::new(o).unwrap()
    };
    let m = |r: &str, h: &str| crfs_remote::Mirror::parse(&format!("{r}={h}")).unwrap();

    // The registry is down; its mirror has the image: everything comes from the mirror, with
    // the registry named in ?ns=.
    let remote = options(vec![m(closed, &mirror.host())]);
    let reference = format!("{closed}/test/all-types:v1");
    let image = remote.resolve(&reference).unwrap();
    assert_eq!(image.mirror.as_deref(), Some(mirror.host().as_str()));
    assert_eq!(image.registry, closed);
    let blob = remote.open_layer(&image, &image.layers[0]).unwrap();
    let layer = Layer::open_with(
        blob,
        &crfs_core::OpenOptions {
            expected_toc_digest: image.layers[0].expected_toc_digest().unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    crfs_testkit::assert_same_listing("mirror", &crfs_testkit::layer_listing(&layer), &expected_listing());
    let gets = mirror.blob_gets();
    assert!(!gets.is_empty());
    assert!(gets.iter().all(|s| s.path.ends_with(&format!("?ns={closed}"))), "{gets:?}");

    // Mirrors that fail (down, or without the image) are skipped, in order, for the registry.
    let remote = options(vec![m(&upstream.host(), closed), m(&upstream.host(), &empty.host())]);
    let image = remote.resolve(&format!("{}/test/all-types:v1", upstream.host())).unwrap();
    assert_eq!(image.mirror, None);
    let blob = remote.open_layer(&image, &image.layers[0]).unwrap();
    let mut buf = [0u8; 64];
    blob.read_exact_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..], &fixture_bytes()[..64]);

    // Mirrors of other registries are not used.
    let remote = options(vec![m("ghcr.io", closed)]);
    assert_eq!(remote.resolve(&format!("{}/test/all-types:v1", upstream.host())).unwrap().mirror, None);
    assert!(crfs_remote::Mirror::parse("nomirror").is_err());
}

#[test]
fn https_with_an_extra_ca() {
    if !common::have_tools() {
        return;
    }
    let reg = common::Registry::start_tls("tls");
    let layout = reg.dir.join("layout");
    let pushed = common::make_layout(&layout, "all-types.esgz", "v1", &[]);
    common::skopeo_copy(&layout, "v1", &format!("{}/test/all-types:v1", reg.host()), None, false);
    let url = format!("https://{}/v2/test/all-types/blobs/{}", reg.host(), pushed.layer_digest);

    let trusted =
        Remote::new(crfs_remote::Options { ca_certs: vec![reg.dir.join("ca.pem")], ..test_options() }).unwrap();
    let blob = trusted.open_url(&url, Some(&pushed.layer_digest)).unwrap();
    assert_eq!(blob.size(), pushed.layer_size);
    let layer = Layer::open(blob).unwrap();
    crfs_testkit::assert_same_listing("https", &crfs_testkit::layer_listing(&layer), &expected_listing());

    // Without the CA the server is not trusted: a prompt error, not retries.
    let untrusted = Remote::new(test_options()).unwrap();
    let err = untrusted.open_url(&url, None).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(untrusted.stats().retries, 0);

    // A CA given for one host (a hosts.toml `ca`) is trusted for that host only.
    let ca = reg.dir.join("ca.pem");
    let for_host = |host: &str| {
        Remote::new(crfs_remote::Options { host_ca_certs: vec![(host.to_owned(), ca.clone())], ..test_options() })
            .unwrap()
    };
    let blob = for_host(&reg.host()).open_url(&url, Some(&pushed.layer_digest)).unwrap();
    assert_eq!(blob.size(), pushed.layer_size);
    let err = for_host("other.example:443").open_url(&url, None).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// A registry holding many.esgz (5,000 files) as `test/many:v1`.
fn registry_with_many(name: &str) -> common::Registry {
    let reg = common::Registry::start(name, false);
    let layout = reg.dir.join("layout");
    common::make_layout(&layout, "many.esgz", "v1", &[]);
    common::skopeo_copy(&layout, "v1", &format!("{}/test/many:v1", reg.host()), None, false);
    reg
}

/// many.esgz's layer opened through `proxy`, its TOC checked against the manifest.
fn open_many(remote: &Remote, proxy: &Proxy) -> Layer<RegistryBlob> {
    let image = remote.resolve(&format!("{}/test/many:v1", proxy.host())).unwrap();
    let desc = &image.layers[0];
    let opts =
        crfs_core::OpenOptions { expected_toc_digest: desc.expected_toc_digest().unwrap(), ..Default::default() };
    Layer::open_with(remote.open_layer(&image, desc).unwrap(), &opts).unwrap()
}

/// Reading every file of many.esgz (5 000 files) in blob order: neighbouring chunk reads are
/// coalesced into far fewer requests, with and without a disk cache, and the bytes are the
/// same. Requests are counted by the proxy in front of the registry.
#[test]
fn neighbouring_reads_are_coalesced() {
    if !common::have_tools() {
        return;
    }
    let reg = registry_with_many("coalesce");
    let want = std::fs::read_to_string(fixture("many.esgz.list")).unwrap();
    let mut counts = Vec::new();
    for (max_coalesce, disk) in [(0, false), (2 << 20, false), (2 << 20, true)] {
        let proxy = Proxy::start(reg.port, |_, _| Fault::Pass);
        let cache = disk.then(|| crfs_remote::CacheOptions {
            dir: reg.dir.join(format!("cache-{max_coalesce}")),
            max_bytes: 64 << 20,
        });
        let remote = Remote::new(crfs_remote::Options { max_coalesce, cache, ..common::counting_options() }).unwrap();
        let layer = open_many(&remote, &proxy);
        let opened = proxy.blob_gets().len();
        crfs_testkit::assert_same_listing("many", &crfs_testkit::layer_listing(&layer), &want);
        let gets = proxy.blob_gets().len() - opened;
        assert_eq!(remote.stats().retries, 0);
        eprintln!("max_coalesce {max_coalesce}, disk cache {disk}: every file took {gets} blob GETs");
        counts.push(gets);
    }
    assert!(counts[0] >= 10 * counts[1], "coalescing cuts requests at least tenfold: {counts:?}");
    assert!(counts[0] >= 10 * counts[2], "also with a disk cache: {counts:?}");
}

/// Four readers walking four quarters of many.esgz in turns (file i of each quarter, then
/// file i + 1 of each): each keeps its own run of neighbouring reads, so requests stay few.
#[test]
fn interleaved_readers_each_keep_their_coalescing() {
    if !common::have_tools() {
        return;
    }
    let reg = registry_with_many("interleave");
    for disk in [false, true] {
        let proxy = Proxy::start(reg.port, |_, _| Fault::Pass);
        let cache = disk.then(|| crfs_remote::CacheOptions { dir: reg.dir.join("cache"), max_bytes: 64 << 20 });
        let remote = Remote::new(crfs_remote::Options { cache, ..common::counting_options() }).unwrap();
        let layer = open_many(&remote, &proxy);
        let index = layer.index();
        let mut files: Vec<(u64, crfs_core::NodeId)> = (0..index.len() as crfs_core::NodeId)
            .map(|id| index.resolve(id))
            .filter(|&ino| index.node(ino).unwrap().kind() == crfs_core::Kind::Reg)
            .filter_map(|ino| index.chunks(ino).first().map(|c| (c.offset, ino)))
            .collect();
        files.sort();
        files.dedup();
        let quarter = files.len().div_ceil(4);
        let opened = proxy.blob_gets().len();
        let mut data = Vec::new();
        for i in 0..quarter {
            for q in files.chunks(quarter) {
                if let Some(&(_, ino)) = q.get(i) {
                    layer.read_file_verified(ino, &mut data).unwrap();
                }
            }
        }
        let gets = proxy.blob_gets().len() - opened;
        eprintln!("{} files read by 4 interleaved readers (disk cache {disk}): {gets} blob GETs", files.len());
        assert!(files.len() >= 10 * gets, "each reader's reads are coalesced: {gets} GETs for {} files", files.len());
    }
}

/// A low-priority fetch of the whole blob (`--background-fetch`) waits while a read is in
/// progress: with the read's request held back 1 s by the proxy, the background fetch asks
/// for nothing until the read is done, then fills the cache.
#[test]
fn background_fetches_wait_while_reads_are_in_progress() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("idle", false);
    let proxy = Proxy::start(reg.port, |_, n| if n == 0 { Fault::Delay(Duration::from_secs(1)) } else { Fault::Pass });
    let cache = crfs_remote::CacheOptions { dir: reg.dir.join("cache"), max_bytes: 64 << 20 };
    let remote = Remote::new(crfs_remote::Options { cache: Some(cache), ..common::counting_options() }).unwrap();
    let reference = format!("{}/test/all-types:v1", proxy.host());
    let blob = Arc::new(remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap());
    let want = fixture_bytes();
    let reader = {
        let blob = Arc::clone(&blob);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 100];
            blob.read_exact_at(1000, &mut buf).map(|()| buf)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let background = {
        let blob = Arc::clone(&blob);
        std::thread::spawn(move || RegistryBlob::prefetch_when_idle(&blob, 0, pushed.layer_size))
    };
    std::thread::sleep(Duration::from_millis(500));
    // The proxy logs a request once answered: the held-back read is not there yet, and a
    // background fetch that did not wait would be.
    assert_eq!(proxy.blob_gets().len(), 0, "the background fetch has not asked: {:?}", proxy.blob_gets());
    assert_eq!(reader.join().unwrap().unwrap(), &want[1000..1100]);
    assert_eq!(background.join().unwrap().unwrap(), pushed.layer_size, "then the whole blob came");
    let gets = proxy.blob_gets().len();
    assert_eq!(gets, 2);
    let (_, failed) = read_pieces(&blob, &want);
    assert_eq!(failed, 0);
    assert_eq!(proxy.blob_gets().len(), gets, "every read is local afterwards");
}

/// Reads that start inside bytes already fetched (a window, the disk cache) and run past
/// them fetch only the rest, and a coalesced request stops where fetched bytes begin: across
/// runs of such reads, forwards and out of order, no byte is asked for twice. Without a disk
/// cache, a coalesced request's bytes stay in memory when its stream is pushed out by four
/// others, and a forward run stops short of bytes fetched before and no longer held (the TOC
/// at the end of a layer, fetched when it was opened).
#[test]
fn no_byte_is_fetched_twice_by_overlapping_reads() {
    if !common::have_tools() {
        return;
    }
    let reg = registry_with_many("split");
    let want = std::fs::read(fixture("many.esgz")).unwrap();
    let size = want.len() as u64;
    let runs: [&[(u64, u64)]; 4] = [
        // Forwards, each read starting inside what the previous requests brought.
        &[(0, 100), (100, 200), (200_000, 400_000), (399_000, 1_000_000), (990_000, size)],
        // A read landing just after the fetched run, then one between them (with a disk cache:
        // without one, a read that is not coalesced keeps nothing).
        &[(0, 100), (100, 200), (270_000, 280_000), (250_000, 265_000)],
        // A coalesced run, then four reads far apart (four new streams push the run's out),
        // then a read inside what the run brought.
        &[
            (0, 100),
            (100, 200),
            (500_000, 500_100),
            (600_000, 600_100),
            (700_000, 700_100),
            (800_000, 800_100),
            (150_000, 151_000),
        ],
        // The last 100 000 bytes (as a TOC), then a forward run that reaches them.
        &[(size - 100_000, size), (size - 300_000, size - 299_900), (size - 299_900, size - 299_800)],
    ];
    for (n, reads) in runs.iter().enumerate() {
        let modes: &[bool] = if n == 1 { &[true] } else { &[false, true] };
        for &disk in modes {
            let proxy = Proxy::start(reg.port, |_, _| Fault::Pass);
            let dir = reg.dir.join(format!("split-cache-{n}"));
            let cache = disk.then_some(crfs_remote::CacheOptions { dir, max_bytes: 64 << 20 });
            let remote = Remote::new(crfs_remote::Options { cache, ..common::counting_options() }).unwrap();
            let image = remote.resolve(&format!("{}/test/many:v1", proxy.host())).unwrap();
            let blob = remote.open_layer(&image, &image.layers[0]).unwrap();
            for &(start, end) in *reads {
                let mut buf = vec![0u8; (end - start) as usize];
                blob.read_exact_at(start, &mut buf).unwrap();
                assert!(buf == want[start as usize..end as usize], "bytes {start}..{end}");
            }
            let mut ranges: Vec<(u64, u64)> = proxy
                .blob_gets()
                .iter()
                .map(|s| {
                    let r = s.range.as_deref().unwrap().trim_start_matches("bytes=");
                    let (a, b) = r.split_once('-').unwrap();
                    (a.parse().unwrap(), b.parse::<u64>().unwrap() + 1)
                })
                .collect();
            ranges.sort();
            eprintln!("run {n}, disk cache {disk}: blob requests {ranges:?}");
            assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "a byte was fetched twice: {ranges:?}");
            if n == 0 {
                assert_eq!(ranges.iter().map(|r| r.1 - r.0).sum::<u64>(), size, "every byte once");
            }
        }
    }
}

/// While a coalesced request is under way (held back 600 ms by the proxy), seven other threads
/// reading inside it wait for it rather than asking again: two requests in all (the first
/// read and the coalesced one), right bytes everywhere. With the request failing,
/// the waiting reads fetch on their own and still get the right bytes.
#[test]
fn concurrent_reads_wait_for_a_coalesced_request_under_way() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("inflight", false);
    let want = Arc::new(fixture_bytes());
    for fail in [false, true] {
        // Failing: half the body, then a stall past the request timeout, and no retry.
        let slow = if fail { Fault::Stall(Duration::from_secs(3)) } else { Fault::Delay(Duration::from_millis(600)) };
        let proxy =
            Proxy::start(
                reg.port,
                move |s, n| if s.path.contains("/blobs/") && n == 1 { slow.clone() } else { Fault::Pass },
            );
        let mut options = common::counting_options();
        if fail {
            options.request_timeout = Duration::from_millis(700);
            options.retry.max_attempts = 1;
        }
        let remote = Remote::new(options).unwrap();
        let reference = format!("{}/test/all-types:v1", proxy.host());
        let blob = Arc::new(remote.open_blob(&reference, &pushed.layer_digest, pushed.layer_size).unwrap());
        let read = |blob: &RegistryBlob, off: u64, len: usize| {
            let mut buf = vec![0u8; len];
            let r = blob.read_exact_at(off, &mut buf);
            (r, buf)
        };
        let (r, buf) = read(&blob, 0, 100);
        r.unwrap();
        assert_eq!(&buf[..], &want[..100]);
        // The neighbour: coalesced, and held back (or failed) by the proxy.
        let first = {
            let (blob, want) = (Arc::clone(&blob), Arc::clone(&want));
            std::thread::spawn(move || {
                let (r, buf) = read(&blob, 100, 100);
                (r.is_ok(), buf == want[100..200])
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let others: Vec<_> = (0..7u64)
            .map(|i| {
                let (blob, want) = (Arc::clone(&blob), Arc::clone(&want));
                std::thread::spawn(move || {
                    let off = 300 + i * 1000;
                    let (r, buf) = read(&blob, off, 500);
                    r.unwrap();
                    assert_eq!(&buf[..], &want[off as usize..off as usize + 500]);
                })
            })
            .collect();
        for t in others {
            t.join().unwrap();
        }
        let (ok, right) = first.join().unwrap();
        let gets = proxy.blob_gets().len();
        eprintln!("coalesced request {}: {gets} blob GETs", if fail { "failing" } else { "slow" });
        if fail {
            assert!(!ok, "the read that asked gets the error");
            assert_eq!(gets, 2 + 7, "the waiting reads ask on their own after the failure");
        } else {
            assert!(ok && right);
            assert_eq!(gets, 2, "the seven reads inside it waited for it");
        }
    }
}

/// A server of its own on loopback: each connection, on a thread of its own, has its request
/// line go to `answer` with the connection (headers already read, and a body with a
/// Content-Length too). Returns the port.
fn hostile_server(answer: impl Fn(&str, &mut std::net::TcpStream) + Send + Sync + 'static) -> u16 {
    recording_server(move |line, _, conn| answer(line, conn))
}

/// As [`hostile_server`], `answer` also getting the request's header lines, lowercased.
fn recording_server(answer: impl Fn(&str, &str, &mut std::net::TcpStream) + Send + Sync + 'static) -> u16 {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut headers = String::new();
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    headers.push_str(&header.to_ascii_lowercase());
                    header.clear();
                }
                let length = headers
                    .lines()
                    .find_map(|h| h.strip_prefix("content-length:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let _ = std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink());
                answer(&line, &headers, &mut conn);
            });
        }
    });
    port
}

/// Writes `head`, then an endless body of spaces after `prefix` (up to 1 GiB), counting the
/// body bytes in `sent`.
fn send_endless(conn: &mut std::net::TcpStream, head: &str, prefix: &[u8], sent: &std::sync::atomic::AtomicU64) {
    use std::io::Write;
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(prefix);
    let piece = vec![b' '; 64 << 10];
    while conn.write_all(&piece).is_ok() {
        if sent.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::SeqCst) > 1 << 30 {
            break;
        }
    }
}

/// The head of a 200 answer: with a Content-Length claiming a gigabyte, or without one.
fn endless_head(content_type: &str, claim_length: bool) -> String {
    let length = if claim_length { "Content-Length: 1073741824" } else { "Connection: close" };
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{length}\r\n\r\n")
}

/// A registry of its own that answers every manifest GET with an endless body, with or without
/// a Content-Length claiming a gigabyte: resolving fails with a clear error after at most the
/// manifest bound, instead of holding what the server sends.
#[test]
fn an_endless_manifest_is_refused_while_it_arrives() {
    use std::io::Write;
    for claim_length in [true, false] {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let port = hostile_server(move |line, conn| {
            if !line.contains("/manifests/") {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
                return;
            }
            send_endless(
                conn,
                &endless_head("application/vnd.oci.image.manifest.v1+json", claim_length),
                b"",
                &counter,
            );
        });
        let remote = Remote::new(test_options()).unwrap();
        let t0 = std::time::Instant::now();
        let err = remote.resolve(&format!("127.0.0.1:{port}/hostile/image:v1")).unwrap_err();
        let took = t0.elapsed();
        let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
        eprintln!("claim {claim_length}: {err} after {took:?}; server had sent {sent} body bytes");
        assert!(err.kind() == ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("manifest too large"), "{err}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(sent < 64 << 20, "the client stopped reading early: {sent} bytes sent");
    }
}

/// A registry whose token server answers with an endless token (with or without a Content-Length
/// claiming a gigabyte), or refuses with an endless explanation: resolving fails with a clear
/// error, quickly, having read at most about the token bound.
#[test]
fn an_endless_token_answer_is_refused_while_it_arrives() {
    use std::io::Write;
    for (claim_length, refuse) in [(true, false), (false, false), (false, true)] {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let port = Arc::new(std::sync::atomic::AtomicU16::new(0));
        let own_port = Arc::clone(&port);
        let bound = hostile_server(move |line, conn| {
            if line.starts_with("GET /token") {
                let head = if refuse {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                        .to_owned()
                } else {
                    endless_head("application/json", claim_length)
                };
                send_endless(conn, &head, b"{\"token\":\"", &counter);
                return;
            }
            let realm = format!("http://127.0.0.1:{}/token", own_port.load(std::sync::atomic::Ordering::SeqCst));
            let head = format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"hostile\"\r\n\
                 Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            let _ = conn.write_all(head.as_bytes());
        });
        port.store(bound, std::sync::atomic::Ordering::SeqCst);
        let remote = Remote::new(test_options()).unwrap();
        let t0 = std::time::Instant::now();
        let err = remote.resolve(&format!("127.0.0.1:{bound}/hostile/image:v1")).unwrap_err();
        let took = t0.elapsed();
        let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
        eprintln!("claim {claim_length}, refuse {refuse}: {err} after {took:?}; token server sent {sent} body bytes");
        let expected = if refuse { "requires credentials" } else { "token answer too large" };
        assert!(err.to_string().contains(expected), "{err}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(sent < 64 << 20, "the client stopped reading early: {sent} bytes sent");
    }
}

/// `pull_image` streams blobs through crfs's own client: a body cut short is resumed from the
/// first byte not received (a resumed request answered with the whole blob has its head
/// skipped), so the layout gets exactly the blob; bytes that do not match the digest never
/// reach the layout.
#[test]
fn image_pulls_resume_cut_blobs_and_refuse_wrong_bytes() {
    use std::sync::atomic::{AtomicU64, Ordering};
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("pull-resume", false);
    let hex = pushed.layer_digest.trim_start_matches("sha256:").to_owned();
    let size = pushed.layer_size as usize;
    for corrupt in [false, true] {
        let layer_gets = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&layer_gets);
        let layer = hex.clone();
        let proxy = Proxy::start(reg.port, move |seen, _| {
            if !seen.path.contains(&layer) {
                return Fault::Pass;
            }
            match counter.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Fault::Short(size / 3),
                _ if corrupt => Fault::Garbage,
                _ => Fault::Full200,
            }
        });
        let dir = reg.dir.join(format!("pulled-{corrupt}"));
        std::fs::create_dir_all(&dir).unwrap();
        let remote = Remote::new(test_options()).unwrap();
        let result = remote.pull_image(&format!("{}/test/all-types:v1", proxy.host()), &dir, None, None);
        let ranges: Vec<_> = proxy.blob_gets().into_iter().filter(|s| s.path.contains(&hex)).map(|s| s.range).collect();
        let pulled = dir.join("blobs/sha256").join(&hex);
        if corrupt {
            let err = result.unwrap_err();
            assert!(err.to_string().contains("do not match its digest"), "{err}");
            assert!(!pulled.exists(), "wrong bytes reached the layout");
            continue;
        }
        let report = result.unwrap();
        assert_eq!(std::fs::read(&pulled).unwrap(), fixture_bytes(), "the layout holds exactly the blob");
        assert_eq!(layer_gets.load(Ordering::SeqCst), 3, "{ranges:?}");
        assert_eq!(ranges[0], None, "the first request asks for the whole blob");
        let resumed = ranges[1].clone().unwrap();
        let from: usize = resumed.trim_start_matches("bytes=").split('-').next().unwrap().parse().unwrap();
        assert!(from > 0 && from <= size / 3, "the second request resumes where the cut was: {resumed}");
        assert!(ranges[2].as_ref().is_some_and(|r| r != &resumed), "the third resumes further on: {ranges:?}");
        assert!(report.bytes >= pushed.layer_size, "{}", report.bytes);
    }
}

/// `pull_image` takes the image from the registry's mirror when the mirror has it (the
/// registry is not asked), and from the registry when the mirror fails.
#[test]
fn image_pulls_try_mirrors_first() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = registry_with_image("pull-mirror", false);
    for mirror_works in [true, false] {
        let direct = Proxy::start(reg.port, |_, _| Fault::Pass);
        let mirror = Proxy::start(reg.port, move |_, _| if mirror_works { Fault::Pass } else { Fault::Status(404) });
        let remote = Remote::new(crfs_remote::Options {
            mirrors: vec![Mirror { registry: direct.host(), mirror: mirror.host() }],
            ..test_options()
        })
        .unwrap();
        let dir = reg.dir.join(format!("pulled-mirror-{mirror_works}"));
        std::fs::create_dir_all(&dir).unwrap();
        let report = remote.pull_image(&format!("{}/test/all-types:v1", direct.host()), &dir, None, None).unwrap();
        assert_eq!(report.blobs, 2, "config and layer");
        assert!(!mirror.seen().is_empty(), "the mirror is asked first");
        if mirror_works {
            assert_eq!(report.mirror, Some(mirror.host()));
            assert!(direct.seen().is_empty(), "the registry is not asked: {:?}", direct.seen());
            assert_eq!(mirror.blob_gets().len(), 2, "{:?}", mirror.seen());
        } else {
            assert_eq!(report.mirror, None);
            assert_eq!(direct.blob_gets().len(), 2, "{:?}", direct.seen());
        }
    }
}

/// A registry of its own whose blob answers are wrong in each way a pull can meet: `pull_image`
/// gives a clear error for each (never a panic, never a blob in the layout).
#[test]
fn hostile_blob_answers_to_an_image_pull_are_errors() {
    use std::io::Write;
    let blob = b"{}";
    let blob_digest = crfs_core::Digest::of(blob).to_string();
    let empty_digest = crfs_core::Digest::of(b"").to_string();
    let cases: [(&str, u64, &str, &str); 5] = [
        // (config digest, config size, blob answer, expected message)
        (
            &empty_digest,
            0,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/0\r\nContent-Length: 0\r\n\r\n",
            "206",
        ),
        (&blob_digest, 2, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}{}{", "not the blob"),
        (&blob_digest, 2, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}{}{", "longer than the blob"),
        (
            &blob_digest,
            2,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/9\r\nContent-Length: 2\r\n\r\n{}",
            "another range",
        ),
        (&blob_digest, 2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", "do not match its digest"),
    ];
    for (config_digest, config_size, answer, expected) in cases {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[]}}"#
        );
        let answer = answer.to_owned();
        let port = hostile_server(move |line, conn| {
            let reply = if line.contains("/manifests/") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{manifest}",
                    manifest.len()
                )
            } else if line.contains("/blobs/") {
                answer.clone()
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_owned()
            };
            let _ = conn.write_all(reply.as_bytes());
        });
        let dir = crfs_testkit::scratch_dir(&format!("hostile-pull-{port}"));
        let remote = Remote::new(test_options()).unwrap();
        let err = remote.pull_image(&format!("127.0.0.1:{port}/hostile/image:v1"), &dir, None, None).unwrap_err();
        eprintln!("{expected}: {err}");
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        let blobs = dir.join("blobs/sha256");
        let kept: Vec<_> = std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().file_name()).collect();
        let config = config_digest.trim_start_matches("sha256:");
        assert!(!kept.iter().any(|n| n.to_str() == Some(config)), "a wrong blob reached the layout: {kept:?}");
    }
}

/// `pull_image` moves blobs side by side: a registry of its own answers no blob request until
/// two are waiting at once (or 10 s have passed, then with 404), so a pull one blob at a time
/// fails and one with several streams gets every blob.
#[test]
fn image_pulls_fetch_blobs_side_by_side() {
    use std::io::Write;
    use std::sync::{Condvar, Mutex};
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = b"not a tar, but a blob all the same".to_vec();
    let config_digest = crfs_core::Digest::of(&config).to_string();
    let layer_digest = crfs_core::Digest::of(&layer).to_string();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let waiting = Arc::new((Mutex::new(0u32), Condvar::new()));
    let (blobs, gate) = ([(config_digest.clone(), config), (layer_digest.clone(), layer)], Arc::clone(&waiting));
    let port = hostile_server(move |line, conn| {
        let ok = |body: &[u8], kind: &str| {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            [head.as_bytes(), body].concat()
        };
        let reply = if line.contains("/manifests/") {
            ok(manifest.as_bytes(), "application/vnd.oci.image.manifest.v1+json")
        } else if let Some((_, body)) = blobs.iter().find(|(d, _)| line.contains(d.as_str())) {
            let (count, arrived) = &*gate;
            let mut n = count.lock().unwrap();
            *n += 1;
            arrived.notify_all();
            let (n, timeout) = arrived.wait_timeout_while(n, Duration::from_secs(10), |n| *n < 2).unwrap();
            drop(n);
            if timeout.timed_out() {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
            } else {
                ok(body, "application/octet-stream")
            }
        } else {
            ok(b"{}", "application/json")
        };
        let _ = conn.write_all(&reply);
    });
    let dir = crfs_testkit::scratch_dir(&format!("side-by-side-{port}"));
    let remote = Remote::new(test_options()).unwrap();
    let report = remote.pull_image(&format!("127.0.0.1:{port}/parallel/image:v1"), &dir, None, None).unwrap();
    assert_eq!(report.blobs, 2);
    for digest in [config_digest, layer_digest] {
        assert!(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:")).exists(), "{digest}");
    }
    assert_eq!(*waiting.0.lock().unwrap(), 2, "each blob asked once");
}

/// A layout (in a scratch directory named `name`) holding one image: a manifest with a config
/// and `layers` (as plain tar layers, whatever their bytes). Returns the directory and the
/// manifest's descriptor.
fn layout_of(name: &str, layers: &[&[u8]]) -> (std::path::PathBuf, crfs_remote::BlobRef) {
    let dir = crfs_testkit::scratch_dir(name);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let digest = crfs_core::Digest::of(data).to_string();
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), data).unwrap();
        (digest, data.len() as u64)
    };
    let (config, config_size) =
        put(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            let (digest, size) = put(l);
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{size}}}"#)
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{}]}}"#,
        layers.join(",")
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    let top = crfs_remote::BlobRef {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: manifest_digest,
        size: manifest_size,
    };
    (dir, top)
}

/// A destination registry that answers an upload with an endless refusal: the push fails with
/// the start of that text, having read a bounded part of it, instead of holding what it sends.
#[test]
fn an_endless_refusal_to_a_push_is_read_only_in_part() {
    use std::io::Write;
    let (dir, top) = layout_of("endless-refusal", &[]);
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let port = hostile_server(move |line, conn| {
        if line.starts_with("POST ") {
            let head = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
            send_endless(conn, head, b"upload refused because", &counter);
        } else if line.starts_with("HEAD ") {
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        } else {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    let remote = Remote::new(test_options()).unwrap();
    let t0 = std::time::Instant::now();
    let err = remote.push_image(&dir, &top, &format!("127.0.0.1:{port}/hostile/image:v1"), None, None).unwrap_err();
    let took = t0.elapsed();
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("{err} after {took:?}; the server sent {sent} body bytes");
    assert!(err.to_string().contains("upload refused because"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(sent < 64 << 20, "the client stopped reading early: {sent} bytes sent");
}

/// Credentials go to the registry's own origin only: an upload session whose Location is on
/// another host (blob storage, or a registry sending them elsewhere) gets the bytes without
/// them, and the push still completes.
#[test]
fn push_credentials_stay_on_the_registry_origin() {
    use std::io::Write;
    use std::sync::Mutex;
    let (dir, top) = layout_of("push-origin", &[]);
    type Log = Arc<Mutex<Vec<(String, bool)>>>;
    let reply = |conn: &mut std::net::TcpStream, status: &str, extra: &str| {
        let _ = write!(conn, "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
    };
    // Blob storage: takes the bytes and the commit.
    let storage_log: Log = Arc::default();
    let log = Arc::clone(&storage_log);
    let storage = recording_server(move |line, headers, conn| {
        log.lock().unwrap().push((line.trim().to_owned(), headers.contains("authorization:")));
        let location = "Location: /upload/session-1\r\n";
        if line.starts_with("PATCH ") { reply(conn, "202 Accepted", location) } else { reply(conn, "201 Created", "") }
    });
    // The registry: no blob yet, upload sessions on the storage host, manifests taken.
    let registry_log: Log = Arc::default();
    let log = Arc::clone(&registry_log);
    let registry = recording_server(move |line, headers, conn| {
        log.lock().unwrap().push((line.trim().to_owned(), headers.contains("authorization:")));
        if line.starts_with("HEAD ") {
            reply(conn, "404 Not Found", "")
        } else if line.starts_with("POST ") {
            reply(conn, "202 Accepted", &format!("Location: http://localhost:{storage}/upload/session-1\r\n"))
        } else if line.starts_with("PUT ") {
            reply(conn, "201 Created", "")
        } else {
            reply(conn, "200 OK", "")
        }
    });
    let host = format!("127.0.0.1:{registry}");
    let remote =
        Remote::new(crfs_remote::Options { credentials: Some(test_credentials(host.clone())), ..test_options() })
            .unwrap();
    let report = remote.push_image(&dir, &top, &format!("{host}/origin/image:v1"), None, None).unwrap();
    assert_eq!(report.uploaded, 1, "{report:?}");
    let to_registry = registry_log.lock().unwrap().clone();
    let to_storage = storage_log.lock().unwrap().clone();
    eprintln!("registry: {to_registry:?}\nstorage: {to_storage:?}");
    let methods: Vec<&str> = to_storage.iter().map(|(l, _)| l.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["PATCH", "PUT"], "the bytes and the commit went to the storage host");
    assert!(to_storage.iter().all(|(_, auth)| !auth), "credentials reached another origin: {to_storage:?}");
    let uploads_and_manifest: Vec<_> = to_registry.iter().filter(|(l, _)| !l.starts_with("GET /v2/ ")).collect();
    assert!(uploads_and_manifest.iter().all(|(_, auth)| *auth), "the registry gets them: {to_registry:?}");
    assert!(to_registry.iter().any(|(l, _)| l.starts_with("PUT /v2/origin/image/manifests/v1")), "{to_registry:?}");
}

/// `push_image` moves blobs side by side too: a registry of its own answers no blob HEAD until
/// two are waiting at once (or 10 s have passed, then with 500), so a push one blob at a time
/// fails and one with several streams uploads both blobs.
#[test]
fn image_pushes_move_blobs_side_by_side() {
    use std::io::Write;
    use std::sync::{Condvar, Mutex};
    let (dir, top) = layout_of("push-side-by-side", &[b"a layer's bytes"]);
    let waiting = Arc::new((Mutex::new(0u32), Condvar::new()));
    let gate = Arc::clone(&waiting);
    let port = hostile_server(move |line, conn| {
        let reply = if line.starts_with("HEAD ") {
            let (count, arrived) = &*gate;
            let mut n = count.lock().unwrap();
            *n += 1;
            arrived.notify_all();
            let (n, timeout) = arrived.wait_timeout_while(n, Duration::from_secs(10), |n| *n < 2).unwrap();
            drop(n);
            if timeout.timed_out() { "500 Internal Server Error\r\n" } else { "404 Not Found\r\n" }
        } else if line.starts_with("POST ") {
            "202 Accepted\r\nLocation: /upload/session\r\n"
        } else if line.starts_with("PATCH ") {
            "202 Accepted\r\n"
        } else if line.starts_with("PUT ") {
            "201 Created\r\n"
        } else {
            "200 OK\r\n"
        };
        let _ = write!(conn, "HTTP/1.1 {reply}Content-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let remote = Remote::new(test_options()).unwrap();
    let report = remote.push_image(&dir, &top, &format!("127.0.0.1:{port}/parallel/image:v1"), None, None).unwrap();
    assert_eq!((report.uploaded, report.existed), (2, 0), "{report:?}");
    assert_eq!(*waiting.0.lock().unwrap(), 2, "each blob asked once");
}

/// A pull can leave layers at the registry ([`crfs_remote::LeaveOut`]), and a push of that
/// layout, given the pulled image as its source, gets them there: mounted from the source
/// repository on the same registry; on another registry (the same one under another name, so
/// no mount is asked), fetched from the source (from its mirror when the pull used one),
/// checked, and uploaded. Without a source the push refuses the layout before any upload.
#[test]
fn layers_a_pull_leaves_out_are_mounted_or_fetched_by_the_push() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = registry_with_image("leave-out", false);
    let remote = Remote::new(common::counting_options()).unwrap();
    let source = format!("{}/test/all-types:v1", reg.host());
    let dir = reg.dir.join("pulled-without-layers");
    std::fs::create_dir_all(&dir).unwrap();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let leave_out: crfs_remote::LeaveOut = Arc::new(move |layer: &serde_json::Value| {
        seen.lock().unwrap().push(layer["digest"].as_str().unwrap_or_default().to_owned());
        true
    });
    let report = remote.pull_image(&source, &dir, Some(leave_out), None).unwrap();
    assert_eq!(*asked.lock().unwrap(), std::slice::from_ref(&pushed.layer_digest), "asked about the layer only");
    assert_eq!((report.blobs, report.left_out), (1, 1), "the config fetched, the layer left out: {report:?}");
    let layer_path = dir.join("blobs/sha256").join(pushed.layer_digest.trim_start_matches("sha256:"));
    assert!(!layer_path.exists(), "the layer is not in the layout");

    // Without a source: refused, nothing written under the tag.
    let err = remote.push_image(&dir, &report.top, &format!("{}/copy/none:v1", reg.host()), None, None).unwrap_err();
    assert!(err.to_string().contains("not in the layout"), "{err}");
    let none = remote.pull_image(&format!("{}/copy/none:v1", reg.host()), &reg.dir.join("none"), None, None);
    assert!(none.is_err(), "the tag was not written");

    // The same registry: both blobs mounted, nothing fetched.
    let from = crfs_remote::ImageSource { reference: &source, mirror: None };
    let mounted = remote.push_image(&dir, &report.top, &format!("{}/copy/a:v1", reg.host()), Some(from), None).unwrap();
    assert_eq!((mounted.mounted, mounted.uploaded, mounted.fetched), (2, 0, 0), "{mounted:?}");
    assert!(!layer_path.exists(), "a mount needs no bytes");

    // Another registry name: the layer is fetched from the source's mirror, then uploaded.
    let mirror = Proxy::start(reg.port, |_, _| Fault::Pass);
    let mirror_host = mirror.host();
    let from = crfs_remote::ImageSource { reference: &source, mirror: Some(&mirror_host) };
    let elsewhere = format!("localhost:{}/copy/b:v1", reg.port);
    let uploaded = remote.push_image(&dir, &report.top, &elsewhere, Some(from), None).unwrap();
    assert_eq!((uploaded.uploaded, uploaded.fetched, uploaded.mounted), (2, 1, 0), "{uploaded:?}");
    let fetched: Vec<String> = mirror.blob_gets().into_iter().map(|s| s.path).collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].contains(&format!("/blobs/{}", pushed.layer_digest)), "{fetched:?}");
    let original = std::fs::read(crfs_testkit::testdata().join("fixtures/all-types.esgz")).unwrap();
    assert_eq!(std::fs::read(&layer_path).unwrap(), original, "the fetched layer, checked, is in the layout");

    // What the other name holds now is the whole image.
    let whole = reg.dir.join("pulled-from-elsewhere");
    std::fs::create_dir_all(&whole).unwrap();
    let again = remote.pull_image(&elsewhere, &whole, None, None).unwrap();
    assert_eq!((again.top.digest.as_str(), again.blobs), (report.top.digest.as_str(), 2));
    let copied = whole.join("blobs/sha256").join(pushed.layer_digest.trim_start_matches("sha256:"));
    assert_eq!(std::fs::read(copied).unwrap(), original);
}
