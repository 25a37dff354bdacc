//! crfs-nfs at the RPC level: a real server on 127.0.0.1 and nfs3_client speaking MOUNT and
//! NFSv3 to it, so every fix to nfsserve's behaviour is checked on the wire: READDIR paging
//! by cookie, cookies that are not fileids (hardlinks), ACCESS from mode bits with EXECUTE
//! kept, handles that survive a restart, NFS3ERR_STALE across layers, NFS3ERR_ROFS for every
//! write, FSINFO and FSSTAT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crfs_core::{Digest, FileReadAt, Layer};
use crfs_nfs::NfsFs;
use crfs_testkit::testdata;
use crfs_vfs::{LayerFs, MergedFs, Options, ReadOnlyFs};
use nfs3_client::Nfs3Client;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioIo;
use nfs3_server::tcp::NFSTcp;
use support::bigdir;
use tokio::net::TcpStream;

type Client = Nfs3Client<TokioIo<TcpStream>>;

fn fixture(name: &str) -> std::path::PathBuf {
    testdata().join("fixtures").join(name)
}

fn layer_fs(blob: &Path) -> LayerFs<FileReadAt> {
    let layer = Layer::open(FileReadAt::open(blob).unwrap()).unwrap();
    LayerFs::new(Arc::new(layer), Options::default())
}

/// A server for `blob` on a free port, inside the test's runtime; aborted on drop.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(blob: &Path) -> Server {
    let fs = layer_fs(blob);
    let identity = crfs_nfs::layer_identity(&fs);
    serve_fs(fs, identity).await
}

async fn serve_fs<F: ReadOnlyFs>(fs: F, identity: Digest) -> Server {
    let listener = crfs_nfs::listen(NfsFs::new(fs, identity), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = SocketAddr::new(listener.get_listen_ip(), listener.get_listen_port());
    let task = tokio::spawn(async move {
        let _ = listener.handle_forever().await;
    });
    Server { addr, task }
}

/// MOUNTs `/` and returns the root handle and an NFS client (AUTH_NULL).
async fn mount(server: &Server) -> (nfs_fh3, Client) {
    support::client::mount(server.addr.port()).await
}

/// An NFS client that sends an AUTH_UNIX credential for `uid`/`gid`.
async fn client_as(server: &Server, uid: u32, gid: u32) -> Client {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let cred = auth_unix { uid, gid, machinename: Opaque::owned(b"test".to_vec()), ..auth_unix::default() };
    Nfs3Client::new_with_auth(TokioIo::new(stream), opaque_auth::auth_unix(&cred), opaque_auth::default())
}

fn ok<T, E>(what: &str, r: Nfs3Result<T, E>) -> T {
    match r {
        Nfs3Result::Ok(v) => v,
        Nfs3Result::Err((stat, _)) => panic!("{what}: {stat:?}"),
    }
}

fn status<T, E>(r: Nfs3Result<T, E>) -> nfsstat3 {
    match r {
        Nfs3Result::Ok(_) => nfsstat3::NFS3_OK,
        Nfs3Result::Err((stat, _)) => stat,
    }
}

fn name(s: &str) -> filename3<'static> {
    filename3(Opaque::owned(s.as_bytes().to_vec()))
}

async fn lookup(c: &mut Client, dir: &nfs_fh3, n: &str) -> nfs_fh3 {
    let args = LOOKUP3args { what: diropargs3 { dir: dir.clone(), name: name(n) } };
    ok(n, c.lookup(&args).await.unwrap()).object
}

async fn attr_at(c: &mut Client, root: &nfs_fh3, path: &str) -> fattr3 {
    let fh = lookup_path(c, root, path).await;
    getattr(c, &fh).await.unwrap()
}

async fn lookup_path(c: &mut Client, root: &nfs_fh3, path: &str) -> nfs_fh3 {
    let mut fh = root.clone();
    for part in path.split('/') {
        fh = lookup(c, &fh, part).await;
    }
    fh
}

async fn getattr(c: &mut Client, fh: &nfs_fh3) -> Result<fattr3, nfsstat3> {
    match c.getattr(&GETATTR3args { object: fh.clone() }).await.unwrap() {
        Nfs3Result::Ok(r) => Ok(r.obj_attributes),
        Nfs3Result::Err((stat, _)) => Err(stat),
    }
}

/// Lists a directory with plain READDIR, `count` bytes a page, resuming from each page's last
/// cookie with the verifier the server gave. Returns (name, fileid, cookie) and the pages.
async fn readdir_all(c: &mut Client, dir: &nfs_fh3, count: u32) -> (Vec<(String, u64, u64)>, usize) {
    let (mut cookie, mut verf, mut out, mut pages) = (0, cookieverf3::default(), Vec::new(), 0);
    loop {
        let args = READDIR3args { dir: dir.clone(), cookie, cookieverf: verf, count };
        let page = ok("readdir", c.readdir(&args).await.unwrap());
        pages += 1;
        assert!(pages < 100_000, "READDIR never reached EOF");
        verf = page.cookieverf;
        for e in &page.reply.entries.0 {
            out.push((String::from_utf8(e.name.0.to_vec()).unwrap(), e.fileid, e.cookie));
            cookie = e.cookie;
        }
        if page.reply.eof {
            return (out, pages);
        }
        assert!(!page.reply.entries.0.is_empty(), "an empty page without EOF");
    }
}

/// The same with READDIRPLUS, checking each entry's attributes and handle.
async fn readdirplus_all(c: &mut Client, dir: &nfs_fh3, dircount: u32) -> (Vec<(String, u64, u64)>, usize) {
    let (mut cookie, mut verf, mut out, mut pages) = (0, cookieverf3::default(), Vec::new(), 0);
    loop {
        let args = READDIRPLUS3args { dir: dir.clone(), cookie, cookieverf: verf, dircount, maxcount: 64 * 1024 };
        let page = ok("readdirplus", c.readdirplus(&args).await.unwrap());
        pages += 1;
        assert!(pages < 100_000, "READDIRPLUS never reached EOF");
        verf = page.cookieverf;
        for e in &page.reply.entries.0 {
            let attr = match &e.name_attributes {
                Nfs3Option::Some(a) => a.clone(),
                Nfs3Option::None => panic!("no attributes"),
            };
            assert_eq!(attr.fileid, e.fileid);
            assert!(matches!(e.name_handle, Nfs3Option::Some(_)), "no handle");
            out.push((String::from_utf8(e.name.0.to_vec()).unwrap(), e.fileid, e.cookie));
            cookie = e.cookie;
        }
        if page.reply.eof {
            return (out, pages);
        }
        assert!(!page.reply.entries.0.is_empty(), "an empty page without EOF");
    }
}

/// Every name once, "." and ".." included, and cookies distinct.
fn assert_each_once(entries: &[(String, u64, u64)], want: &[String]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, _, _) in entries {
        *seen.entry(n).or_default() += 1;
    }
    let dup: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dup.is_empty(), "names listed more than once: {dup:?}");
    let mut got: Vec<&str> = seen.keys().copied().filter(|n| *n != "." && *n != "..").collect();
    got.sort_unstable();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(got.len(), want.len(), "listed {} names, want {}", got.len(), want.len());
    assert_eq!(got, want);
    assert!(seen.contains_key(".") && seen.contains_key(".."));
    let cookies: std::collections::BTreeSet<u64> = entries.iter().map(|e| e.2).collect();
    assert_eq!(cookies.len(), entries.len(), "cookies repeat");
}

#[tokio::test(flavor = "multi_thread")]
async fn readdir_pages_by_cookie_through_hardlinks() {
    let server = serve(&fixture("all-types.esgz")).await;
    let (root, mut c) = mount(&server).await;
    let links = lookup(&mut c, &root, "links").await;
    let want: Vec<String> = ["abs", "dangling", "hard1", "hard2", "hard3", "rel"].map(String::from).to_vec();
    // Pages so small that every boundary falls somewhere, including between the three names
    // of one inode (a fileid cookie cannot tell them apart; ours can).
    for count in [150, 170, 200, 4096] {
        let (entries, pages) = readdir_all(&mut c, &links, count).await;
        assert_each_once(&entries, &want);
        if count < 200 {
            assert!(pages > 3, "count {count}: {pages} pages");
        }
        let hard: Vec<_> = entries.iter().filter(|e| e.0.starts_with("hard")).collect();
        assert!(hard.iter().all(|e| e.1 == hard[0].1), "hardlinks share a fileid: {hard:?}");
        assert!(hard.iter().all(|e| e.2 != e.1), "cookies are not fileids: {hard:?}");
    }
    for dircount in [60, 100, 8192] {
        let (entries, _) = readdirplus_all(&mut c, &links, dircount).await;
        assert_each_once(&entries, &want);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readdir_pages_a_directory_with_mtime_zero() {
    // many.esgz's root has mtime 0: its cookie verifier must not be the all-zero "none".
    let server = serve(&fixture("many.esgz")).await;
    let (root, mut c) = mount(&server).await;
    let want: Vec<String> = (0..50).map(|i| format!("d{i:02}")).collect();
    let (entries, pages) = readdir_all(&mut c, &root, 200).await;
    assert!(pages > 5, "{pages} pages");
    assert_each_once(&entries, &want);
    let d07 = lookup(&mut c, &root, "d07").await;
    let (entries, pages) = readdir_all(&mut c, &d07, 300).await;
    assert!(pages > 5, "{pages} pages");
    assert_eq!(entries.len(), 102);
}

#[tokio::test(flavor = "multi_thread")]
async fn readdir_pages_five_thousand_names_exactly_once() {
    let dir = crfs_testkit::scratch_dir("nfs-rpc-bigdir");
    let Some(blob) = bigdir::blob(&dir) else { return };
    let server = serve(&blob).await;
    let (root, mut c) = mount(&server).await;
    let big = lookup(&mut c, &root, "big").await;
    let want = bigdir::names();
    assert_eq!(want.len(), bigdir::ENTRIES);
    let (entries, pages) = readdir_all(&mut c, &big, 1024).await;
    assert!(pages > 50, "{pages} pages");
    assert_each_once(&entries, &want);
    let (entries, pages) = readdirplus_all(&mut c, &big, 1024).await;
    assert!(pages > 50, "{pages} pages");
    assert_each_once(&entries, &want);
    // Hardlinks: one fileid for f0250 and f0250.link.
    let f = entries.iter().find(|e| e.0 == "f0250").unwrap();
    let l = entries.iter().find(|e| e.0 == "f0250.link").unwrap();
    assert_eq!(f.1, l.1);
    assert_ne!(f.2, l.2);
    // And the content through the link.
    let link = lookup(&mut c, &big, "f0250.link").await;
    let read = ok("read", c.read(&READ3args { file: link, offset: 0, count: 4096 }).await.unwrap());
    assert_eq!(read.data.to_vec(), bigdir::content("f0250"));
    assert!(read.eof);
}

async fn access(c: &mut Client, fh: &nfs_fh3) -> u32 {
    let all = ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE | ACCESS3_EXECUTE;
    ok("access", c.access(&ACCESS3args { object: fh.clone(), access: all }).await.unwrap()).access
}

#[tokio::test(flavor = "multi_thread")]
async fn access_keeps_execute_and_follows_the_mode() {
    let server = serve(&fixture("all-types.esgz")).await;
    let (root, mut c) = mount(&server).await;
    let suid = lookup_path(&mut c, &root, "files/suid").await; // 4755 root
    let small = lookup_path(&mut c, &root, "files/small.txt").await; // 0644 root
    let private = lookup_path(&mut c, &root, "dirs/private").await; // 0700 1000:1000
    let secret = lookup_path(&mut c, &root, "dirs/private/secret").await; // 0600 1000:1000

    let mut user = client_as(&server, 1000, 1000).await;
    assert_eq!(access(&mut user, &suid).await, ACCESS3_READ | ACCESS3_EXECUTE);
    assert_eq!(access(&mut user, &small).await, ACCESS3_READ);
    assert_eq!(access(&mut user, &secret).await, ACCESS3_READ);
    assert_eq!(access(&mut user, &private).await, ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_EXECUTE);

    let mut other = client_as(&server, 1001, 1001).await;
    assert_eq!(access(&mut other, &suid).await, ACCESS3_READ | ACCESS3_EXECUTE);
    assert_eq!(access(&mut other, &secret).await, 0);
    assert_eq!(access(&mut other, &private).await, 0);

    let mut root_user = client_as(&server, 0, 0).await;
    assert_eq!(access(&mut root_user, &suid).await, ACCESS3_READ | ACCESS3_EXECUTE);
    assert_eq!(access(&mut root_user, &small).await, ACCESS3_READ);
    assert_eq!(access(&mut root_user, &secret).await, ACCESS3_READ);

    // AUTH_NULL is nobody, not root.
    assert_eq!(access(&mut c, &secret).await, 0);
    assert_eq!(access(&mut c, &small).await, ACCESS3_READ);
}

#[tokio::test(flavor = "multi_thread")]
async fn handles_survive_a_restart_and_go_stale_across_layers() {
    let blob = fixture("all-types.esgz");
    let first = serve(&blob).await;
    let (root, mut c) = mount(&first).await;
    let data = lookup_path(&mut c, &root, "links/hard2").await;
    let dir = lookup(&mut c, &root, "files").await;
    let before = getattr(&mut c, &data).await.unwrap();
    drop(c);
    drop(first);

    // A new server process for the same layer: the old handles still resolve.
    let second = serve(&blob).await;
    let (root2, mut c) = mount(&second).await;
    assert_eq!(root2.data.to_vec(), root.data.to_vec(), "the root handle is stable");
    let after = getattr(&mut c, &data).await.unwrap();
    assert_eq!(after.fileid, before.fileid);
    assert_eq!(after.size, 5000);
    let read =
        ok("read after restart", c.read(&READ3args { file: data.clone(), offset: 0, count: 1 << 20 }).await.unwrap());
    assert_eq!(read.data.len(), 5000);
    assert!(read.eof);
    let small = lookup(&mut c, &dir, "small.txt").await;
    let read = ok("read", c.read(&READ3args { file: small, offset: 0, count: 100 }).await.unwrap());
    assert_eq!(read.data.to_vec(), b"hello, world\n");

    // Same layer in another format = another TOC: a different layer, so stale.
    let other = serve(&fixture("many.esgz")).await;
    let (_, mut c) = mount(&other).await;
    assert_eq!(getattr(&mut c, &data).await.err(), Some(nfsstat3::NFS3ERR_STALE));
    assert_eq!(getattr(&mut c, &root).await.err(), Some(nfsstat3::NFS3ERR_STALE));
    let args = LOOKUP3args { what: diropargs3 { dir: dir.clone(), name: name("small.txt") } };
    assert_eq!(status(c.lookup(&args).await.unwrap()), nfsstat3::NFS3ERR_STALE);
    // Garbage is a bad handle.
    let junk = nfs_fh3 { data: Opaque::owned(vec![1, 2, 3]) };
    assert_eq!(getattr(&mut c, &junk).await.err(), Some(nfsstat3::NFS3ERR_BADHANDLE));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_write_procedure_is_rofs() {
    let server = serve(&fixture("all-types.esgz")).await;
    let (root, mut c) = mount(&server).await;
    let file = lookup_path(&mut c, &root, "files/small.txt").await;
    let dir = lookup(&mut c, &root, "files").await;
    let at = |n: &str| diropargs3 { dir: dir.clone(), name: name(n) };
    let rofs = nfsstat3::NFS3ERR_ROFS;
    let sattr = sattr3::default();
    let args = SETATTR3args { object: file.clone(), new_attributes: sattr.clone(), guard: Nfs3Option::None };
    assert_eq!(status(c.setattr(&args).await.unwrap()), rofs, "SETATTR");
    let data = Opaque::owned(b"x".to_vec());
    let args = WRITE3args { file: file.clone(), offset: 0, count: 1, stable: stable_how::FILE_SYNC, data };
    assert_eq!(status(c.write(&args).await.unwrap()), rofs, "WRITE");
    let args = CREATE3args { where_: at("new"), how: createhow3::UNCHECKED(sattr.clone()) };
    assert_eq!(status(c.create(&args).await.unwrap()), rofs, "CREATE");
    let args = CREATE3args { where_: at("new"), how: createhow3::EXCLUSIVE(createverf3([1; 8])) };
    assert_eq!(status(c.create(&args).await.unwrap()), rofs, "CREATE exclusive");
    let args = MKDIR3args { where_: at("newdir"), attributes: sattr.clone() };
    assert_eq!(status(c.mkdir(&args).await.unwrap()), rofs, "MKDIR");
    let symlink =
        symlinkdata3 { symlink_attributes: sattr.clone(), symlink_data: nfspath3(Opaque::owned(b"t".to_vec())) };
    let args = SYMLINK3args { where_: at("ln"), symlink };
    assert_eq!(status(c.symlink(&args).await.unwrap()), rofs, "SYMLINK");
    let args = MKNOD3args { where_: at("fifo"), what: mknoddata3::NF3FIFO(sattr.clone()) };
    assert_eq!(status(c.mknod(&args).await.unwrap()), rofs, "MKNOD");
    let args = REMOVE3args { object: at("small.txt") };
    assert_eq!(status(c.remove(&args).await.unwrap()), rofs, "REMOVE");
    let args = RMDIR3args { object: diropargs3 { dir: root.clone(), name: name("files") } };
    assert_eq!(status(c.rmdir(&args).await.unwrap()), rofs, "RMDIR");
    let args = RENAME3args { from: at("small.txt"), to: at("moved") };
    assert_eq!(status(c.rename(&args).await.unwrap()), rofs, "RENAME");
    let args = LINK3args { file: file.clone(), link: at("again") };
    assert_eq!(status(c.link(&args).await.unwrap()), rofs, "LINK");
    let args = COMMIT3args { file: file.clone(), offset: 0, count: 0 };
    assert_eq!(status(c.commit(&args).await.unwrap()), rofs, "COMMIT");
    // Nothing changed.
    let args = LOOKUP3args { what: at("new") };
    assert_eq!(status(c.lookup(&args).await.unwrap()), nfsstat3::NFS3ERR_NOENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn fsinfo_fsstat_attributes_and_reads() {
    let blob = fixture("all-types.esgz");
    let server = serve(&blob).await;
    let (root, mut c) = mount(&server).await;
    let info = ok("fsinfo", c.fsinfo(&FSINFO3args { fsroot: root.clone() }).await.unwrap());
    assert_eq!((info.rtmax, info.rtpref), (1 << 20, 1 << 20));
    assert_eq!(info.properties & FSF3_CANSETTIME, 0);
    assert_ne!(info.properties & FSF3_LINK, 0);
    assert_ne!(info.properties & FSF3_SYMLINK, 0);
    let stat = ok("fsstat", c.fsstat(&FSSTAT3args { fsroot: root.clone() }).await.unwrap());
    let totals = layer_fs(&blob).statfs();
    assert_eq!(stat.tbytes, totals.blocks * u64::from(totals.block_size));
    assert_eq!(stat.tfiles, totals.files);
    assert_eq!((stat.fbytes, stat.abytes, stat.ffiles, stat.afiles), (0, 0, 0, 0));
    assert_eq!(stat.invarsec, u32::MAX);

    // Attributes: types, modes with setuid, devices, symlinks, times stable across calls.
    let suid = attr_at(&mut c, &root, "files/suid").await;
    assert_eq!((suid.type_, suid.mode, suid.size), (ftype3::NF3REG, 0o4755, 300));
    assert_eq!(suid.mtime, suid.ctime);
    let null = attr_at(&mut c, &root, "dev/null").await;
    assert_eq!((null.type_, null.rdev.specdata1, null.rdev.specdata2), (ftype3::NF3CHR, 1, 3));
    let lp = attr_at(&mut c, &root, "dev/loop0").await;
    assert_eq!((lp.type_, lp.rdev.specdata1, lp.rdev.specdata2, lp.gid), (ftype3::NF3BLK, 7, 0, 6));
    let fifo = attr_at(&mut c, &root, "dev/fifo").await;
    assert_eq!(fifo.type_, ftype3::NF3FIFO);
    let sticky = attr_at(&mut c, &root, "dirs/sticky").await;
    assert_eq!((sticky.type_, sticky.mode), (ftype3::NF3DIR, 0o1777));
    let rel = lookup_path(&mut c, &root, "links/rel").await;
    let attr = getattr(&mut c, &rel).await.unwrap();
    assert_eq!((attr.type_, attr.size), (ftype3::NF3LNK, 18));
    let target = ok("readlink", c.readlink(&READLINK3args { symlink: rel }).await.unwrap());
    assert_eq!(target.data.0.to_vec(), b"../files/small.txt");
    let hard1 = attr_at(&mut c, &root, "links/hard1").await;
    let data = attr_at(&mut c, &root, "files/data.bin").await;
    assert_eq!((hard1.fileid, hard1.nlink), (data.fileid, 4));

    // Reads: pieces, EOF, past the end, a directory.
    let medium = lookup_path(&mut c, &root, "files/medium.bin").await;
    let mut whole = Vec::new();
    loop {
        let r = ok(
            "read",
            c.read(&READ3args { file: medium.clone(), offset: whole.len() as u64, count: 3000 }).await.unwrap(),
        );
        whole.extend_from_slice(&r.data);
        assert_eq!(r.eof, whole.len() == 10_000);
        if r.eof {
            break;
        }
    }
    let layer = Layer::open(FileReadAt::open(&blob).unwrap()).unwrap();
    let id = layer.index().lookup_path(b"files/medium.bin").unwrap();
    let mut want = Vec::new();
    layer.read_file_verified(id, &mut want).unwrap();
    assert_eq!(whole, want);
    let past = ok("read past the end", c.read(&READ3args { file: medium, offset: 20_000, count: 10 }).await.unwrap());
    assert!(past.data.is_empty() && past.eof);
    let dir = lookup(&mut c, &root, "files").await;
    assert_eq!(status(c.read(&READ3args { file: dir, offset: 0, count: 10 }).await.unwrap()), nfsstat3::NFS3ERR_ISDIR);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merged_image_is_served_with_its_own_identity() {
    let (lower, upper) = (fixture("all-types.esgz"), fixture("many.esgz"));
    let open = |p: &Path| Arc::new(Layer::open(FileReadAt::open(p).unwrap()).unwrap());
    let layers = vec![open(&lower), open(&upper)];
    let identity = crfs_nfs::image_identity(layers.iter().map(|l| l.toc_digest()));
    let merged = MergedFs::new(layers, Options::default()).unwrap();
    let server = serve_fs(merged, identity).await;
    let (root, mut c) = mount(&server).await;
    let (entries, _) = readdirplus_all(&mut c, &root, 8192).await;
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert!(names.contains(&"links") && names.contains(&"d49"), "{names:?}");
    let small = lookup_path(&mut c, &root, "files/small.txt").await;
    let read = ok("read", c.read(&READ3args { file: small.clone(), offset: 0, count: 100 }).await.unwrap());
    assert_eq!(read.data.to_vec(), b"hello, world\n");
    // Its handles mean nothing to a server for one of its layers alone, and vice versa.
    let single = serve(&lower).await;
    let (single_root, mut s) = mount(&single).await;
    assert_eq!(getattr(&mut s, &small).await.err(), Some(nfsstat3::NFS3ERR_STALE));
    assert_eq!(getattr(&mut c, &single_root).await.err(), Some(nfsstat3::NFS3ERR_STALE));
}

/// A record mark claiming a gigabyte ends that connection at once, without the server
/// allocating it; other clients are still served.
#[tokio::test]
async fn an_oversized_request_ends_its_connection_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let blob = fixture("all-types.esgz");
    let server = serve(&blob).await;
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    // Last-fragment bit and a length of 1 GiB, then a few bytes of the claimed body.
    raw.write_all(&(0x8000_0000u32 | (1 << 30)).to_be_bytes()).await.unwrap();
    raw.write_all(&[0u8; 64]).await.unwrap();
    let mut buf = [0u8; 16];
    // Closed at once when idle; the bound only has to outlast a loaded CI machine (5 s did not
    // once, under a full parallel test run with two builds beside it).
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), raw.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection stays open: {read:?}");
    let (root, mut c) = mount(&server).await;
    assert_eq!(attr_at(&mut c, &root, "files/suid").await.size, 300);
}
