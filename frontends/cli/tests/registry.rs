//! `crfs` on images in a real registry (Debian's docker-registry on 127.0.0.1, images pushed by
//! skopeo): inspection by reference, `crfs mount HOST/REPO:TAG DIR`, and the /crfs namespace
//! through FUSE and through `crfs nfs` (libnfs's nfs-ls and nfs-cat, plus an NFSv3 client of
//! our own that keeps handles across server restarts, which libnfs's path-based opens never do).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "../../remote/tests/common/mod.rs"]
mod common;
mod mounted;
#[path = "../../nfs/tests/support/client.rs"]
mod nfs_client;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use crfs_testkit::{assert_same_listing, in_ci, scratch_dir, testdata, tree_listing};
use mounted::Mounted;

fn crfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crfs"))
}

fn fuse_ok() -> bool {
    let ok = Path::new("/dev/fuse").exists();
    assert!(ok || !in_ci(), "CI needs /dev/fuse");
    ok
}

/// The fixture's listing as an image root shows it: whiteout files consumed.
fn image_listing() -> String {
    let list = fs::read_to_string(testdata().join("fixtures/all-types.esgz.list")).unwrap();
    list.lines().filter(|l| !l.starts_with(".\t") && !l.contains(".wh.")).map(|l| format!("{l}\n")).collect()
}

fn without_root(listing: &str) -> String {
    listing.lines().filter(|l| !l.starts_with(".\t")).map(|l| format!("{l}\n")).collect()
}

#[test]
fn inspect_and_mount_an_image_by_reference() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = common::registry_with_image("cli-ref", false);
    let reference = format!("{}/test/all-types:v1", reg.host());

    let out = crfs().args(["info", &reference]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want_digest = fs::read_to_string(testdata().join("fixtures/all-types.esgz.toc-digest")).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(want_digest.trim()));
    let out = crfs().args(["cat", &reference, "links/rel"]).output().unwrap();
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = crfs().args(["verify", &reference]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = crfs().args(["ls", &reference, "wh"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "opaque\n", "an image's root consumes its whiteouts");

    let missing = crfs().args(["ls", &format!("{}/test/all-types:v9", reg.host())]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    if !fuse_ok() {
        return;
    }
    let scratch = scratch_dir("cli-registry-mount");
    let m = Mounted::new(&[&reference], &scratch.join("mnt"));
    assert_same_listing("mounted image", &without_root(&tree_listing(&m.1)), &image_listing());
    // The mount said, and `crfs status` says, how its layer is read and was checked.
    let log = fs::read_to_string(m.1.with_extension("log")).unwrap();
    assert!(log.contains(": lazy; TOC checked against the manifest's toc.digest"), "{log}");
    // The status file is rewritten every second: wait for the reads above to show.
    let t0 = std::time::Instant::now();
    let line = loop {
        let status = crfs().arg("status").arg(&m.1).output().unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let text = String::from_utf8_lossy(&status.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with(&format!("{reference} layer sha256:"))).map(str::to_owned);
        let line = line.unwrap_or_else(|| panic!("{text}"));
        // "…; N bytes fetched, M reads from the disk cache"
        let numbers: Vec<u64> = line
            .rsplit_once("; ")
            .unwrap()
            .1
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        if numbers.iter().sum::<u64>() > 0 {
            break line;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{line}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(line.contains(": lazy; TOC checked against the manifest's toc.digest; "), "{line}");
    drop(m);
    let gone = crfs().arg("status").arg(scratch.join("mnt")).output().unwrap();
    assert_eq!(gone.status.code(), Some(1), "{}", String::from_utf8_lossy(&gone.stdout));
}

/// Every regular file below `root`, relative path → bytes.
fn file_bytes(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walk(root)
        .into_iter()
        .filter(|p| fs::symlink_metadata(root.join(p)).unwrap().is_file())
        .map(|p| {
            let bytes = fs::read(root.join(&p)).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_cached_image_mounts_by_tag_with_the_registry_stopped() {
    if !common::have_tools() || !fuse_ok() {
        return;
    }
    let (reg, _pushed) = common::registry_with_image("cli-offline", false);
    let reference = format!("{}/test/all-types:v1", reg.host());
    let scratch = scratch_dir("cli-offline");
    let cache = scratch.join("cache");
    let cache_arg = cache.to_str().unwrap();
    let online = {
        let m = Mounted::new(&["--cache-dir", cache_arg, &reference], &scratch.join("mnt"));
        assert_same_listing("online", &without_root(&tree_listing(&m.1)), &image_listing());
        file_bytes(&m.1)
    };
    assert!(online.iter().any(|(p, b)| p == "files/small.txt" && b == b"hello, world\n"));
    drop(reg);

    let m = Mounted::new(&["--cache-dir", cache_arg, &reference], &scratch.join("mnt"));
    assert_same_listing("offline", &without_root(&tree_listing(&m.1)), &image_listing());
    assert_eq!(file_bytes(&m.1), online, "every file reads the same from the cache");
    drop(m);
    let log = fs::read_to_string(scratch.join("mnt.log")).unwrap();
    assert!(log.contains("using the digest this tag last resolved to"), "{log}");
    let out = crfs().args(["ls", "--cache-dir", cache_arg, &reference.replace(":v1", ":v2")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a tag never resolved needs the registry");
    let out = crfs().args(["ls", "--no-disk-cache", &reference]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "so does any tag without a cache");
}

#[test]
fn the_http_proxy_of_the_environment_is_used() {
    if !common::have_tools() {
        return;
    }
    let (reg, pushed) = common::registry_with_image("cli-http-proxy", false);
    let proxy = common::Proxy::start(reg.port, |_, _| common::Fault::Pass);
    // A name that resolves nowhere: only a proxy can reach it.
    let reference = "registry.invalid:5000/test/all-types:v1";
    let run = |proxy_url: Option<String>| {
        let mut cmd = crfs();
        cmd.args(["cat", "--no-disk-cache", "--plain-http", reference, "files/small.txt"]);
        for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "NO_PROXY", "no_proxy"] {
            cmd.env_remove(var);
        }
        if let Some(url) = proxy_url {
            cmd.env("HTTP_PROXY", url);
        }
        cmd.output().unwrap()
    };
    let out = run(Some(format!("http://127.0.0.1:{}", proxy.port)));
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.path.contains("/manifests/v1")), "{seen:?}");
    assert!(seen.iter().any(|s| s.path.contains(&pushed.layer_digest)), "{seen:?}");
    assert!(seen.iter().all(|s| s.proxied_host.as_deref() == Some("registry.invalid:5000")), "{seen:?}");
    let out = run(None);
    assert_eq!(out.status.code(), Some(1), "without the proxy the name does not resolve");
}

#[test]
fn the_namespace_serves_images_and_layers_on_lookup() {
    if !common::have_tools() || !fuse_ok() {
        return;
    }
    let (reg, pushed) = common::registry_with_image("cli-ns", false);
    let scratch = scratch_dir("cli-namespace");
    let m = Mounted::new(&[], &scratch.join("crfs"));
    let root = &m.1;
    let readme = fs::read_to_string(root.join("README")).unwrap();
    assert!(readme.contains("image/<host>/<repo>:<tag>/"));
    let image = root.join("image").join(reg.host()).join("test").join("all-types:v1");
    assert_same_listing("namespace image", &without_root(&tree_listing(&image)), &image_listing());
    assert_eq!(fs::read(image.join("files/small.txt")).unwrap(), b"hello, world\n");
    // Listing image/ shows what was looked up so far.
    let hosts: Vec<String> = fs::read_dir(root.join("image"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(hosts, [reg.host()]);
    // The image's layers by digest.
    let layers = root.join("layer").join(reg.host()).join("test").join("all-types:v1");
    let digests: Vec<String> =
        fs::read_dir(&layers).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(digests, std::slice::from_ref(&pushed.layer_digest));
    assert!(layers.join(&pushed.layer_digest).join("wh/.wh.gone").is_file(), "a layer shows what it holds");
    let by_digest = root.join("layer").join(reg.host()).join("test").join(format!("all-types@{}", pushed.layer_digest));
    assert!(by_digest.join("files/small.txt").is_file());
    // Missing tags and repositories: ENOENT.
    let e = fs::metadata(root.join("image").join(reg.host()).join("test").join("all-types:nope")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    let e = fs::metadata(root.join("image").join(reg.host()).join("no/such/repo:v1")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
}

/// Pushes `fixture` as `HOST/REPO:TAG`; returns what the layout holds.
fn push(reg: &common::Registry, fixture: &str, repo: &str, tag: &str) -> common::Pushed {
    let layout = reg.dir.join(format!("layout-{}", repo.replace('/', "-")));
    let pushed = common::make_layout(&layout, fixture, tag, &[]);
    common::skopeo_copy(&layout, tag, &format!("{}/{repo}:{tag}", reg.host()), None, false);
    pushed
}

fn nfs(cmd: &str, url: &str) -> std::process::Output {
    Command::new(cmd).arg(url).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn nfs_cat(served: &support::Served, path: &str) -> Vec<u8> {
    let out = nfs("nfs-cat", &served.url(path));
    assert!(out.status.success(), "nfs-cat {path}: {}\n{}", String::from_utf8_lossy(&out.stderr), served.log());
    out.stdout
}

/// The names `nfs-ls` prints for a directory (the last field of each line).
fn nfs_names(served: &support::Served, path: &str) -> Vec<String> {
    let out = nfs("nfs-ls", &served.url(path));
    assert!(out.status.success(), "nfs-ls {path}: {}\n{}", String::from_utf8_lossy(&out.stderr), served.log());
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

/// Top-level names of a fixture's listing (whiteout files consumed, as an image root shows).
fn top_names(fixture: &str) -> Vec<String> {
    let list = fs::read_to_string(testdata().join("fixtures").join(format!("{fixture}.list"))).unwrap();
    let mut names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|p| *p != "." && !p.contains('/') && !p.starts_with(".wh."))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// A path's sha256 as the fixture's listing gives it.
fn listed_sha(fixture: &str, path: &str) -> String {
    let list = fs::read_to_string(testdata().join("fixtures").join(format!("{fixture}.list"))).unwrap();
    let line = list.lines().find(|l| l.split('\t').next() == Some(path)).unwrap();
    line.split('\t').nth(10).unwrap().to_string()
}

mod rpc {
    //! Just enough NFSv3 to hold handles across a restart.
    pub use super::nfs_client::{Client, mount};
    use nfs3_client::nfs3_types::nfs3::*;
    use nfs3_client::nfs3_types::xdr_codec::Opaque;

    pub fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    pub async fn lookup_path(c: &mut Client, root: &nfs_fh3, path: &str) -> nfs_fh3 {
        let mut fh = root.clone();
        for part in path.split('/') {
            let name = filename3(Opaque::owned(part.as_bytes().to_vec()));
            let args = LOOKUP3args { what: diropargs3 { dir: fh.clone(), name } };
            fh = match c.lookup(&args).await.unwrap() {
                Nfs3Result::Ok(r) => r.object,
                Nfs3Result::Err((stat, _)) => panic!("lookup {part} of {path}: {stat:?}"),
            };
        }
        fh
    }

    pub async fn getattr(c: &mut Client, fh: &nfs_fh3) -> Result<fattr3, nfsstat3> {
        match c.getattr(&GETATTR3args { object: fh.clone() }).await.unwrap() {
            Nfs3Result::Ok(r) => Ok(r.obj_attributes),
            Nfs3Result::Err((stat, _)) => Err(stat),
        }
    }

    pub async fn read(c: &mut Client, fh: &nfs_fh3) -> Result<Vec<u8>, nfsstat3> {
        match c.read(&READ3args { file: fh.clone(), offset: 0, count: 1 << 20 }).await.unwrap() {
            Nfs3Result::Ok(r) => Ok(r.data.to_vec()),
            Nfs3Result::Err((stat, _)) => Err(stat),
        }
    }

    /// The names in a directory (one READDIR page is enough for these).
    pub async fn names(c: &mut Client, dir: &nfs_fh3) -> Result<Vec<String>, nfsstat3> {
        let args = READDIR3args { dir: dir.clone(), cookie: 0, cookieverf: cookieverf3::default(), count: 65536 };
        match c.readdir(&args).await.unwrap() {
            Nfs3Result::Ok(r) => {
                let mut names: Vec<String> =
                    r.reply.entries.0.iter().map(|e| String::from_utf8_lossy(&e.name.0).into_owned()).collect();
                names.sort();
                Ok(names)
            }
            Nfs3Result::Err((stat, _)) => Err(stat),
        }
    }

    pub const STALE: nfsstat3 = nfsstat3::NFS3ERR_STALE;
}

#[test]
fn the_namespace_over_nfs_with_libnfs_and_a_restart() {
    if !common::have_tools() || !support::libnfs_available() {
        return;
    }
    let reg = common::Registry::start("cli-ns-nfs", false);
    let all = push(&reg, "all-types.esgz", "test/all-types", "v1");
    let many = push(&reg, "many.esgz", "deep/er/many", "v2");
    let host = reg.host();
    let scratch = scratch_dir("cli-ns-nfs");
    let cache = scratch.join("cache");
    let args = ["--cache-dir".as_ref(), cache.as_os_str()];
    let mut served = support::Served::start_args(&args, "127.0.0.1:0");

    // The root: README, image/, layer/.
    assert_eq!(nfs_names(&served, ""), ["README", "image", "layer"]);
    // (libnfs mounts a URL's directory part: "//README" mounts "/" and opens README.)
    assert!(String::from_utf8(nfs_cat(&served, "/README")).unwrap().contains("image/<host>/<repo>:<tag>/"));
    // A layer by digest before any image names it: no manifest annotation to check its TOC
    // against, so (being small) it is fetched whole once and checked against its digest.
    let layer_only = format!("layer/{host}/deep/er/many@{}/d00/f001", many.layer_digest);
    let f001 = nfs_cat(&served, &layer_only);
    assert_eq!(common::sha256_hex(&f001), listed_sha("many.esgz", "d00/f001"));
    assert!(served.log().contains("fetching it whole to check it against the layer digest"), "{}", served.log());
    // Two images through one export, one of them in a nested repo path.
    let all_root = format!("image/{host}/test/all-types:v1");
    let many_root = format!("image/{host}/deep/er/many:v2");
    assert_eq!(nfs_names(&served, &all_root), top_names("all-types.esgz"));
    assert_eq!(nfs_cat(&served, &format!("{all_root}/files/small.txt")), b"hello, world\n");
    assert_eq!(nfs_names(&served, &many_root), top_names("many.esgz"));
    assert_eq!(nfs_cat(&served, &format!("{many_root}/d00/f001")), f001);
    assert_eq!(nfs_names(&served, &format!("image/{host}")), ["deep", "test"]);
    // Their layers, by tag and by digest.
    assert_eq!(nfs_names(&served, &format!("layer/{host}/test/all-types:v1")), std::slice::from_ref(&all.layer_digest));
    let in_list = format!("layer/{host}/test/all-types:v1/{}/wh/.wh.gone", all.layer_digest);
    assert!(nfs("nfs-cat", &served.url(&in_list)).status.success(), "a layer shows its whiteout files");
    // Missing tags and repositories: not found.
    for missing in [format!("image/{host}/test/all-types:nope"), format!("image/{host}/no/such/repo:v1")] {
        let out = nfs("nfs-ls", &served.url(&missing));
        assert!(!out.status.success(), "{missing} listed");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains("noent") || err.contains("no such file"), "{missing}: {err}");
    }

    // Handles: by digest, by tag, in a layer by digest, and a synthetic directory.
    let paths = [
        format!("image/{host}/test/all-types@{}/files/small.txt", all.manifest_digest),
        format!("{all_root}/files/small.txt"),
        format!("layer/{host}/deep/er/many@{}/d00/f001", many.layer_digest),
        format!("image/{host}/deep/er"),
    ];
    let rt = rpc::runtime();
    let before: Vec<_> = rt.block_on(async {
        let (root, mut c) = rpc::mount(served.port).await;
        let mut out = Vec::new();
        for p in &paths {
            let fh = rpc::lookup_path(&mut c, &root, p).await;
            let attr = rpc::getattr(&mut c, &fh).await.unwrap();
            out.push((fh, attr.fileid));
        }
        out
    });
    assert_eq!(served.stop().code(), Some(0));

    // A restarted server with the same cache directory answers every old handle.
    let served = support::Served::start_args(&args, "127.0.0.1:0");
    rt.block_on(async {
        let (root, mut c) = rpc::mount(served.port).await;
        for ((fh, fileid), p) in before.iter().zip(&paths) {
            let attr = rpc::getattr(&mut c, fh).await.unwrap_or_else(|e| panic!("{p} after restart: {e:?}"));
            assert_eq!(attr.fileid, *fileid, "{p}: the file id survives the restart");
        }
        assert_eq!(rpc::read(&mut c, &before[0].0).await.unwrap(), b"hello, world\n");
        assert_eq!(rpc::read(&mut c, &before[1].0).await.unwrap(), b"hello, world\n");
        assert_eq!(rpc::read(&mut c, &before[2].0).await.unwrap(), f001);
        // The old directory handle lists what this server has looked up (nothing there yet)
        // and resolves names in it.
        assert_eq!(rpc::names(&mut c, &before[3].0).await.unwrap(), [".", ".."]);
        let again = rpc::lookup_path(&mut c, &before[3].0, "many:v2/d00/f001").await;
        assert_eq!(rpc::read(&mut c, &again).await.unwrap(), f001);
        assert_eq!(rpc::names(&mut c, &before[3].0).await.unwrap(), [".", "..", "many:v2"]);
        // Looked up again, in the other order, the paths give the very same handles.
        for ((fh, _), p) in before.iter().zip(&paths).rev() {
            assert_eq!(rpc::lookup_path(&mut c, &root, p).await.data.to_vec(), fh.data.to_vec(), "{p}");
        }
    });
    drop(served);

    // A server that keeps nothing on disk cannot know those digests: the handles are stale.
    let bare = support::Served::start_args(&["--no-disk-cache"], "127.0.0.1:0");
    rt.block_on(async {
        let (_, mut c) = rpc::mount(bare.port).await;
        assert_eq!(rpc::getattr(&mut c, &before[0].0).await.err(), Some(rpc::STALE));
        assert_eq!(rpc::getattr(&mut c, &before[3].0).await.err(), Some(rpc::STALE));
    });
}

/// Credentials never reach the logs: `crfs` against a registry behind basic auth, with every
/// log target at trace level (the HTTP stack's included), prints neither the password nor the
/// base64 `Authorization: Basic` value, whether the credentials are right or wrong.
#[test]
fn credentials_never_reach_the_logs() {
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = common::registry_with_image("cli-creds-log", true);
    let reference = format!("{}/test/all-types:v1", reg.host());
    let good = format!("{}:{}", common::USER, common::PASSWORD);
    let out = crfs()
        .args(["cat", &reference, "links/rel"])
        .env("RUST_LOG", "trace")
        .env("CRFS_REGISTRY_CREDS", &good)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.stdout, b"hello, world\n", "{stderr}");
    assert!(stderr.contains("TRACE"), "trace logging is on: {stderr}");
    assert!(stderr.contains("reqwest") || stderr.contains("hyper"), "the HTTP stack logs too: {stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("sending the basic credentials"),
        "the auth exchange is logged: {stderr}"
    );
    assert!(!stderr.contains(common::PASSWORD), "the password is in the log");
    assert!(!stderr.contains(&common::base64_basic()), "the basic-auth header is in the log");

    let wrong = "crfs:wrong-secret-4711";
    let out = crfs().args(["ls", &reference]).env("RUST_LOG", "trace").args(["--creds", wrong]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wrong username or password"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-4711"), "the wrong password is in the log");
}

/// The ways to give credentials that `ps` cannot see (`--creds-file`, `--creds USER` with the
/// password on standard input, `--authfile`) work; `--creds USER:PASSWORD` works with a warning;
/// and flag credentials must name one registry: with references at two registries, or none,
/// the command refuses them.
#[test]
fn credentials_from_files_stdin_and_the_command_line() {
    use std::io::Write;
    if !common::have_tools() {
        return;
    }
    let (reg, _pushed) = common::registry_with_image("cli-creds-ways", true);
    let reference = format!("{}/test/all-types:v1", reg.host());
    let good = format!("{}:{}", common::USER, common::PASSWORD);
    let cat = |args: &[&str]| {
        let mut cmd = crfs();
        cmd.args(["cat", &reference, "links/rel"]).args(args).env_remove("CRFS_REGISTRY_CREDS");
        cmd
    };

    let creds_file = reg.dir.join("creds");
    fs::write(&creds_file, format!("{good}\n")).unwrap();
    let out = cat(&["--creds-file", creds_file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));

    let authfile = reg.dir.join("auth.json");
    fs::write(&authfile, common::docker_auths_json(&reg.host())).unwrap();
    let out = cat(&["--authfile", authfile.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));

    let mut child = cat(&["--creds", common::USER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{}\n", common::PASSWORD).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("visible"), "no warning without a password argument");

    let out = cat(&["--creds", &good]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.stdout, b"hello, world\n", "{stderr}");
    assert!(stderr.contains("other local users can read it"), "{stderr}");

    // Nothing on standard input: a clear refusal.
    let out = cat(&["--creds", common::USER]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no password on standard input"));

    // Two registries (the second a proxy of the same one): which one would get them?
    let proxy = common::Proxy::start(reg.port, |_, _| common::Fault::Pass);
    let second = format!("{}/test/all-types:v1", proxy.host());
    let nfs = |sources: &[&str]| {
        crfs()
            .args(["nfs", "--listen", "127.0.0.1:0", "--no-disk-cache", "--creds-file", creds_file.to_str().unwrap()])
            .args(sources)
            .output()
            .unwrap()
    };
    let out = nfs(&[&reference, &second]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("for one registry") && stderr.contains("--authfile"), "{stderr}");
    // The /crfs namespace names no registry.
    let out = nfs(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("none is named here"), "{stderr}");
    assert!(proxy.seen().is_empty(), "refused before any request");
}

/// Ordinary layers (not eStargz): two gzip tars and a zstd tar, pushed by skopeo, are fetched
/// whole once, indexed, and served like lazy ones; the indexed copies are reused.
#[test]
fn plain_tar_layers_are_fetched_whole_indexed_and_reused() {
    use crfs_testkit::{TarBuilder, TarEntry::*};
    if !common::have_tools() {
        return;
    }
    const T: u64 = 1_600_000_000;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let tars = [
        TarBuilder::default()
            .add("etc/", Dir, 0o755, T)
            .add("etc/os-release", File(b"ID=crfs-test\n"), 0o644, T)
            .add("etc/gone", File(b"whited out above"), 0o644, T)
            .add("usr/", Dir, 0o755, T)
            .add("usr/big.bin", File(&big), 0o644, T)
            .add("usr/link", Symlink("big.bin"), 0o777, T)
            .finish(),
        TarBuilder::default()
            .add("etc/", Dir, 0o755, T + 5)
            .add("etc/os-release", File(b"ID=crfs-test\nVERSION=2\n"), 0o600, T + 5)
            .add("etc/.wh.gone", File(b""), 0o644, T + 5)
            .add("srv/", Dir, 0o750, T + 5)
            .add("srv/data", File(b"served"), 0o640, T + 5)
            .finish(),
        TarBuilder::default()
            .add("srv/", Dir, 0o750, T + 9)
            .add("srv/zstd", File(b"zstd layer"), 0o644, T + 9)
            .finish(),
    ];
    let scratch = scratch_dir("cli-plain-layers");
    let gzip = |tar: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, tar).unwrap();
        enc.finish().unwrap()
    };
    let layers = [
        (gzip(&tars[0]), "application/vnd.oci.image.layer.v1.tar+gzip"),
        (gzip(&tars[1]), "application/vnd.oci.image.layer.v1.tar+gzip"),
        (zstd::encode_all(&tars[2][..], 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd"),
    ];
    let diff_ids: Vec<String> = tars.iter().map(|t| common::sha256_hex(t)).collect();
    let reg = common::Registry::start("cli-plain", false);
    let layout = scratch.join("layout");
    common::make_plain_layout(&layout, "v1", &layers, &diff_ids);
    let reference = format!("{}/test/plain:v1", reg.host());
    common::skopeo_copy(&layout, "v1", &reference, None, false);

    // What extracting the tars in order gives (the one whiteout applied by hand).
    let rootfs = scratch.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    for (i, tar) in tars.iter().enumerate() {
        let path = scratch.join(format!("x{i}.tar"));
        fs::write(&path, tar).unwrap();
        let st = Command::new("tar")
            .args(["--exclude=.wh.*", "--same-owner", "-xpf"])
            .arg(&path)
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(st.success());
    }
    fs::remove_file(rootfs.join("etc/gone")).unwrap();
    let mut want_paths: Vec<String> = walk(&rootfs);
    want_paths.sort();

    let cache = scratch.join("cache");
    let cache_arg = cache.to_str().unwrap();
    let out = crfs().args(["ls", "-R", "--cache-dir", cache_arg, &reference]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let mut got_paths: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_start_matches("./").to_owned()).collect();
    got_paths.retain(|p| !p.is_empty() && p != ".");
    got_paths.sort();
    assert_eq!(got_paths, want_paths);
    assert_eq!(log.matches("is not lazy").count(), 3, "one line per plain layer: {log}");
    let converted = fs::read_dir(cache.join("converted/sha256")).unwrap().count();
    assert_eq!(converted, 3, "each layer's indexed copy is kept");

    // Second open through a counting proxy: no blob is fetched again.
    let proxy = common::Proxy::start(reg.port, |_, _| common::Fault::Pass);
    let via_proxy = format!("{}/test/plain:v1", proxy.host());
    for path in ["etc/os-release", "usr/big.bin", "usr/link", "srv/data", "srv/zstd"] {
        let out = crfs().args(["cat", "--cache-dir", cache_arg, &via_proxy, path]).output().unwrap();
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, fs::read(rootfs.join(path)).unwrap(), "{path}");
    }
    assert!(proxy.blob_gets().is_empty(), "cached copies are used: {:?}", proxy.blob_gets());
    assert!(!proxy.seen().is_empty(), "the manifest still came through the proxy");

    // The same layers from the OCI layout skopeo pushed from (local files, indexed the same way).
    let spec = format!("oci:{}:v1", layout.display());
    let out = crfs().args(["ls", "-R", "--no-disk-cache", &spec]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut from_layout: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    from_layout.sort();
    assert_eq!(from_layout, got_paths);

    // A damaged copy is made again.
    let copies: Vec<_> = fs::read_dir(cache.join("converted/sha256")).unwrap().map(|e| e.unwrap().path()).collect();
    for c in &copies {
        fs::write(c, b"not a layer").unwrap();
    }
    let out = crfs().args(["cat", "--cache-dir", cache_arg, &reference, "usr/big.bin"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, big);
    assert!(copies.iter().all(|c| fs::metadata(c).unwrap().len() > 100), "copies made again");

    // Without a disk cache the copy lives in an unlinked temporary file.
    let out = crfs().args(["cat", "--no-disk-cache", &reference, "usr/big.bin"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, big);

    if !fuse_ok() {
        return;
    }
    let m = Mounted::new(&["--cache-dir", cache_arg, &reference], &scratch.join("mnt"));
    let mut mounted = walk(&m.1);
    mounted.sort();
    assert_eq!(mounted, want_paths);
    for p in &want_paths {
        let (a, b) = (m.1.join(p), rootfs.join(p));
        let (ma, mb) = (fs::symlink_metadata(&a).unwrap(), fs::symlink_metadata(&b).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "{p}");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&ma.permissions()),
            std::os::unix::fs::PermissionsExt::mode(&mb.permissions()),
            "{p}"
        );
        if ma.is_file() {
            assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{p}");
        } else if ma.is_symlink() {
            assert_eq!(fs::read_link(&a).unwrap(), fs::read_link(&b).unwrap(), "{p}");
        }
    }
}

/// Paths below `root`, relative, directories included.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if p.symlink_metadata().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Every file of 5 of many.esgz's 50 directories (500 files) read through a FUSE mount of the
/// image, in readdir order and in reverse (a depth-first walk with a stack): neighbouring reads
/// coalesced (the default) against one request per read (`--max-coalesce 0`), counted by a
/// proxy in front of the registry. (Few directories, so that the uncoalesced run stays short.)
#[test]
fn reading_every_file_of_a_mount_coalesces_requests() {
    if !common::have_tools() || !fuse_ok() {
        return;
    }
    let reg = common::Registry::start("cli-coalesce", false);
    push(&reg, "many.esgz", "test/many", "v1");
    let want = without_root(&fs::read_to_string(testdata().join("fixtures/many.esgz.list")).unwrap());
    let scratch = scratch_dir("cli-coalesce");
    let mut counts = Vec::new();
    for max in ["0", "2M"] {
        let proxy = common::Proxy::start(reg.port, |_, _| common::Fault::Pass);
        let reference = format!("{}/test/many:v1", proxy.host());
        let m =
            Mounted::new(&["--no-disk-cache", "--max-coalesce", max, &reference], &scratch.join(format!("mnt{max}")));
        let opened = proxy.blob_gets().len();
        for (i, dir) in ["d03", "d10", "d11", "d27", "d40"].iter().enumerate() {
            let mut names: Vec<_> = fs::read_dir(m.1.join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
            if i % 2 == 1 {
                names.reverse();
            }
            for path in names {
                let rel = path.strip_prefix(&m.1).unwrap().to_str().unwrap().to_owned();
                let line = want.lines().find(|l| l.split('\t').next() == Some(rel.as_str())).unwrap();
                let sha = common::sha256_hex(&fs::read(&path).unwrap());
                assert!(line.contains(&sha), "{rel}: wrong bytes");
            }
        }
        let gets = proxy.blob_gets().len() - opened;
        eprintln!("--max-coalesce {max}: reading 500 files took {gets} blob GETs (opening: {opened})");
        counts.push(gets);
    }
    assert!(counts[0] >= 10 * counts[1], "coalescing cuts requests at least tenfold: {counts:?}");
}

/// `--hosts-dir`: a containerd-style hosts.toml for a registry that is down sends every
/// request to its mirrors, in order, skipping hosts crfs cannot use as written.
#[test]
fn hosts_toml_mirrors_are_used_before_the_registry() {
    if !common::have_tools() {
        return;
    }
    let (mirror_reg, _pushed) = common::registry_with_image("cli-hosts-mirror", false);
    let mirror = common::Proxy::start(mirror_reg.port, |_, _| common::Fault::Pass);
    let empty = common::Registry::start("cli-hosts-empty", false);
    let upstream = "127.0.0.1:1"; // nothing listens there
    let hosts = scratch_dir("cli-hosts").join("certs.d");
    fs::create_dir_all(hosts.join(upstream)).unwrap();
    let write = |text: String| fs::write(hosts.join(upstream).join("hosts.toml"), text).unwrap();
    write(format!(
        "server = \"http://{upstream}\"\n\n\
         [host.\"http://localhost:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n\n\
         [host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n\
         [host.\"http://{}/v2\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        mirror.port,  // skipped (skip_verify), though it has the image
        empty.host(), // tried: has no such image
        mirror.host(),
    ));
    let reference = format!("{upstream}/test/all-types:v1");
    let hosts_arg = hosts.to_str().unwrap();
    let out =
        crfs().args(["cat", "--no-disk-cache", "--hosts-dir", hosts_arg, &reference, "links/rel"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello, world\n");
    let gets = mirror.blob_gets();
    assert!(!gets.is_empty());
    assert!(gets.iter().all(|s| s.path.ends_with(&format!("?ns={upstream}"))), "{gets:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("skip_verify is not supported"), "{log}");

    // Without the hosts directory the registry itself is asked, and it is down.
    let out = crfs().args(["cat", "--no-disk-cache", &reference, "links/rel"]).output().unwrap();
    assert!(!out.status.success());
    // `--mirror` does the same as a one-host hosts.toml.
    let flag = format!("{upstream}={}", mirror.host());
    let out = crfs().args(["cat", "--no-disk-cache", "--mirror", &flag, &reference, "links/rel"]).output().unwrap();
    assert_eq!(out.stdout, b"hello, world\n", "{}", String::from_utf8_lossy(&out.stderr));
    // A pull-only mirror is not used to resolve tags.
    write(format!("[host.\"http://{}\"]\n  capabilities = [\"pull\"]\n", mirror.host()));
    let out =
        crfs().args(["cat", "--no-disk-cache", "--hosts-dir", hosts_arg, &reference, "links/rel"]).output().unwrap();
    assert!(!out.status.success());
    // A broken file is a clear error.
    write("[host.\"http://x\"]\nca = 5\n".into());
    let out = crfs().args(["ls", "--no-disk-cache", "--hosts-dir", hosts_arg, &reference]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("hosts.toml") && err.contains("`ca`"), "{err}");
}
