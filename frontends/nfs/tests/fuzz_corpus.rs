//! The `nfs_records` fuzz corpus as a regression test on stable: every file in
//! `fuzz/corpus/nfs_records/` and `fuzz/artifacts/nfs_records/` goes through
//! `crfs_nfs::fuzz_entry::nfs_records` (as the cargo-fuzz target does), which must report no
//! finding and no panic (the server's own tasks included), within a CPU-time and a memory bound.
//!
//! `write_seeds` (ignored) makes the seed corpus: an NFSv3, MOUNT and PORTMAP client
//! (nfs3_client) walks the fixture over the same in-memory connection, and what it sends is
//! recorded (fuzz/README.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../core/tests/bounds/mod.rs"]
mod bounds;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bounds::{peak, timed};
use crfs_nfs::fuzz_entry::{FixtureFs, connect, fixture_fs, input_of_calls, nfs_records};
use crfs_testkit::corpus_files;
use nfs3_client::io::{AsyncRead, AsyncWrite};
use nfs3_client::nfs3_types::mount::dirpath;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioIo;
use nfs3_client::{MountClient, Nfs3Client, PortmapperClient};
use tokio::io::DuplexStream;

/// Peak memory one input may hold: a request is at most 2 MiB, a READ reply at most 1 MiB.
const MEMORY_BOUND: usize = 32 << 20;
/// CPU time one input may take in a debug build.
const TIME_BOUND: Duration = Duration::from_secs(2);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn every_nfs_corpus_input_passes_within_bounds() {
    // A panic in a server task (a request handler, a spawn_blocking read) is turned into an
    // error reply or a closed connection by tokio: count them here instead.
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let corpus = corpus_files(&fuzz_dir().join("corpus/nfs_records"));
    let artifacts = corpus_files(&fuzz_dir().join("artifacts/nfs_records"));
    assert!(corpus.len() >= 10, "fuzz/corpus/nfs_records has {} inputs", corpus.len());
    let (mut worst, mut replied, mut answered) = ((Duration::ZERO, 0usize), 0u64, 0usize);
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap();
        let what = path.display().to_string();
        let ((outcome, took, wall), bytes) = peak(|| timed(|| nfs_records(&data)));
        let reply_bytes = outcome.unwrap_or_else(|finding| panic!("{what}: {finding:?}"));
        assert_eq!(PANICS.load(Ordering::SeqCst), 0, "{what}: a server task panicked");
        assert!(took <= TIME_BOUND, "{what}: took {took:?} of CPU time");
        assert!(wall <= TIME_BOUND * 30, "{what}: took {wall:?} of wall time");
        assert!(bytes <= MEMORY_BOUND, "{what}: held {bytes} bytes at once");
        worst = (worst.0.max(took), worst.1.max(bytes));
        replied += reply_bytes;
        answered += usize::from(reply_bytes > 0);
    }
    // The corpus reaches the file system: its calls are answered, not all refused at the door.
    // A merged corpus also keeps the inputs that cover refusals (broken record marks, calls
    // that do not parse), which get no reply: 281 of 602 got one after the fifth round. A
    // change that refused every call, or a corpus of noise, would get almost none.
    assert!(answered * 4 > corpus.len(), "only {answered} of {} inputs got a reply", corpus.len());
    assert!(replied > 20_000, "the corpus got only {replied} reply bytes");
    eprintln!(
        "nfs_records: {} corpus + {} artifacts, slowest {:?}, peak {} KiB, {answered} answered, {replied} reply bytes",
        corpus.len(),
        artifacts.len(),
        worst.0,
        worst.1 >> 10
    );
}

/// The entry's input layouts: the list layout frames each call as one record, and the raw
/// layout passes bytes through.
#[test]
fn input_layouts() {
    let input = input_of_calls([&b"abc"[..], &b""[..]]);
    assert_eq!(input, [0, 3, 0, b'a', b'b', b'c', 0, 0]);
    let stream = crfs_nfs::fuzz_entry::stream_of(&input);
    assert_eq!(stream, [0x80, 0, 0, 3, b'a', b'b', b'c', 0x80, 0, 0, 0]);
    assert_eq!(crfs_nfs::fuzz_entry::stream_of(&[1, 9, 8]), [9, 8]);
    // A short last call is sent as far as it goes.
    assert_eq!(crfs_nfs::fuzz_entry::stream_of(&[0, 5, 0, b'x']), [0x80, 0, 0, 1, b'x']);
    assert_eq!(nfs_records(&[]).unwrap(), 0);
    assert_eq!(nfs_records(&[1, 0xff, 0xff, 0xff, 0xff]).unwrap(), 0, "an oversized record ends the connection");
}

// ------------------------------------------------------------------------------------------------
// Seeds.

/// nfs3_client's I/O over the in-memory stream, keeping a copy of everything the client sends.
struct Recording {
    io: TokioIo<DuplexStream>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    async fn async_read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.io.async_read(buf).await
    }
}

impl AsyncWrite for Recording {
    async fn async_write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.io.async_write(buf).await?;
        self.sent.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn recording(fs: &Arc<FixtureFs>, sent: &Arc<Mutex<Vec<u8>>>) -> Recording {
    let (client, _connection) = connect(Arc::clone(fs));
    Recording { io: TokioIo::new(client), sent: Arc::clone(sent) }
}

/// The records of a client's byte stream (one fragment each, as nfs3_client sends them).
fn records_of(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while stream.len() >= 4 {
        let len = (u32::from_be_bytes(stream[..4].try_into().unwrap()) & 0x7fff_ffff) as usize;
        out.push(stream[4..4 + len].to_vec());
        stream = &stream[4 + len..];
    }
    out
}

fn name(s: &[u8]) -> filename3<'static> {
    filename3(Opaque::owned(s.to_vec()))
}

/// Every call of a walk over the tree: each directory listed both ways, each entry looked up,
/// its attributes and access asked, files read, symlinks read; then every write procedure.
async fn walk(c: &mut Nfs3Client<Recording>, root: &nfs_fh3) {
    let _ = c.null().await;
    let _ = c.fsinfo(&FSINFO3args { fsroot: root.clone() }).await;
    let _ = c.fsstat(&FSSTAT3args { fsroot: root.clone() }).await;
    let _ = c.pathconf(&PATHCONF3args { object: root.clone() }).await;
    let mut dirs = vec![root.clone()];
    let mut some_file = None;
    while let Some(dir) = dirs.pop() {
        let args = READDIR3args { dir: dir.clone(), cookie: 0, cookieverf: cookieverf3::default(), count: 512 };
        let _ = c.readdir(&args).await;
        let args = READDIRPLUS3args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            dircount: 4096,
            maxcount: 64 << 10,
        };
        let Ok(Nfs3Result::Ok(page)) = c.readdirplus(&args).await else { continue };
        for e in &page.reply.entries.0 {
            let (Nfs3Option::Some(fh), Nfs3Option::Some(attr)) = (&e.name_handle, &e.name_attributes) else {
                continue;
            };
            if e.name.0.as_ref() == b"." || e.name.0.as_ref() == b".." {
                continue;
            }
            let args = LOOKUP3args { what: diropargs3 { dir: dir.clone(), name: name(&e.name.0) } };
            let _ = c.lookup(&args).await;
            let _ = c.getattr(&GETATTR3args { object: fh.clone() }).await;
            let _ = c.access(&ACCESS3args { object: fh.clone(), access: 0x3f }).await;
            match attr.type_ {
                ftype3::NF3DIR => dirs.push(fh.clone()),
                ftype3::NF3REG => {
                    let _ = c.read(&READ3args { file: fh.clone(), offset: 0, count: 4096 }).await;
                    some_file.get_or_insert_with(|| (fh.clone(), dir.clone()));
                }
                ftype3::NF3LNK => {
                    let _ = c.readlink(&READLINK3args { symlink: fh.clone() }).await;
                }
                _ => {}
            }
        }
    }
    let Some((file, dir)) = some_file else { return };
    let at = |n: &[u8]| diropargs3 { dir: dir.clone(), name: name(n) };
    let sattr = sattr3::default();
    let _ =
        c.setattr(&SETATTR3args { object: file.clone(), new_attributes: sattr.clone(), guard: Nfs3Option::None }).await;
    let data = Opaque::owned(b"x".to_vec());
    let _ = c.write(&WRITE3args { file: file.clone(), offset: 0, count: 1, stable: stable_how::FILE_SYNC, data }).await;
    let _ = c.create(&CREATE3args { where_: at(b"new"), how: createhow3::UNCHECKED(sattr.clone()) }).await;
    let _ = c.mkdir(&MKDIR3args { where_: at(b"newdir"), attributes: sattr.clone() }).await;
    let symlink =
        symlinkdata3 { symlink_attributes: sattr.clone(), symlink_data: nfspath3(Opaque::owned(b"t".to_vec())) };
    let _ = c.symlink(&SYMLINK3args { where_: at(b"ln"), symlink }).await;
    let _ = c.mknod(&MKNOD3args { where_: at(b"fifo"), what: mknoddata3::NF3FIFO(sattr.clone()) }).await;
    let _ = c.remove(&REMOVE3args { object: at(b"x") }).await;
    let _ = c.rmdir(&RMDIR3args { object: at(b"x") }).await;
    let _ = c.rename(&RENAME3args { from: at(b"x"), to: at(b"y") }).await;
    let _ = c.link(&LINK3args { file: file.clone(), link: at(b"again") }).await;
    let _ = c.commit(&COMMIT3args { file, offset: 0, count: 0 }).await;
}

/// Writes the seed corpus into `$CRFS_FUZZ_SEEDS/nfs_records/`: the whole recorded session
/// (raw layout), all its calls (list layout), and each call alone.
#[test]
#[ignore = "makes the seed corpus; run by hand (fuzz/README.md)"]
fn write_seeds() {
    let out = PathBuf::from(std::env::var_os("CRFS_FUZZ_SEEDS").expect("set CRFS_FUZZ_SEEDS")).join("nfs_records");
    std::fs::create_dir_all(&out).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let fs = Arc::new(fixture_fs().unwrap());
        let mut portmap = PortmapperClient::new(recording(&fs, &sent));
        let _ = portmap.null().await;
        let _ = portmap.getport(100_005, 3, 6).await;
        let _ = portmap.dump().await;
        let mut mount = MountClient::new(recording(&fs, &sent));
        let _ = mount.null().await;
        let root = mount.mnt(dirpath(Opaque::borrowed(b"/"))).await.unwrap().fhandle;
        let _ = mount.export().await;
        let _ = mount.dump().await;
        let _ = mount.umnt(dirpath(Opaque::borrowed(b"/nope"))).await;
        let root = nfs_fh3 { data: Opaque::owned(root.0.to_vec()) };
        walk(&mut Nfs3Client::new(recording(&fs, &sent)), &root).await;
        let cred =
            auth_unix { uid: 1000, gid: 1000, machinename: Opaque::owned(b"fuzz".to_vec()), ..auth_unix::default() };
        let auth = opaque_auth::auth_unix(&cred);
        walk(&mut Nfs3Client::new_with_auth(recording(&fs, &sent), auth, opaque_auth::default()), &root).await;
    });
    let stream = sent.lock().unwrap().clone();
    let calls = records_of(&stream);
    assert!(calls.len() > 100, "{} calls recorded", calls.len());
    let mut raw = vec![1];
    raw.extend_from_slice(&stream);
    std::fs::write(out.join("session-raw"), &raw).unwrap();
    std::fs::write(out.join("session-calls"), input_of_calls(calls.iter().map(Vec::as_slice))).unwrap();
    for (i, call) in calls.iter().enumerate() {
        std::fs::write(out.join(format!("call-{i:04}")), input_of_calls([call.as_slice()])).unwrap();
    }
    eprintln!("{} calls, {} bytes, written to {}", calls.len(), stream.len(), out.display());
}
