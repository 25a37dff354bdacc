//! crfs-nfs: serves a crfs-vfs filesystem over NFSv3, for macOS and hosts without FUSE.
//!
//! What it owns: the translation between NFSv3 procedures and [`crfs_vfs::ReadOnlyFs`] calls
//! (one layer or an image's merged layers; [`NfsFs`], an `nfs3_server::vfs::NfsFileSystem`),
//! file handles that survive a server
//! restart ([`Handle`]), nfsstat3 mapping, the numbers a client tunes itself by (FSINFO:
//! 1 MiB reads; FSSTAT: the layer's totals, `invarsec` = forever), the RPC programs a plain
//! `mount -t nfs HOST:/ DIR` needs besides NFS and MOUNT ([`Services`]: the portmapper in
//! [`portmap`], the lock manager and the status monitor's NOTIFY in [`locks`], their XDR in
//! [`xdr`]) and the server's lifetime ([`NfsServer`]: a multi-thread tokio runtime; NFS, MOUNT
//! and the lock manager on one port over TCP and, but for NFS, UDP; the portmapper on its own
//! port, or registered with a system rpcbind that holds it, or answering on the NFS port
//! only). It holds no filesystem logic: anything both FUSE and NFS need lives in vfs.
//!
//! The RPC layer is nfs3_server, a maintained fork of nfsserve, patched in
//! `vendor/nfs3_server`, over nfs3_types (XDR), patched in `vendor/nfs3_types` (see PATCHES.md
//! in each). `fuzz_entry` (feature `fuzzing`) drives it with arbitrary bytes in memory.
//! nfsserve's plain READDIR ignored its cookie, used fileids as directory cookies (hardlinks
//! made listings skip names), stripped EXECUTE from ACCESS on read-only exports and let
//! handles go stale at every restart. Here:
//! - directory cookies are vfs readdir offsets (`next_offset`), unique per name even when
//!   one inode appears under several names;
//! - ACCESS answers from the mode bits and the caller's AUTH_UNIX credential;
//! - a handle is a [`StableId`] behind a fixed generation: a kind byte, 32 bytes naming the
//!   content and the inode number within it (41 bytes; 49 with the generation, of NFSv3's 64).
//!   A single tree is named by its identity (the layer's TOC digest, or a digest of an image's
//!   layer TOC digests: [`layer_identity`], [`image_identity`]), so a handle resolves in any
//!   server serving the same tree and gets NFS3ERR_STALE from a server serving another.
//! - the /crfs namespace ([`NfsFs::stable`]) names its inodes itself (synthetic paths by their
//!   sha256, image and layer nodes by manifest or blob digest plus inode): handles do not
//!   depend on lookup order, and a restarted server re-resolves them on demand
//!   ([`ReadOnlyFs::find_stable`]). What it cannot re-resolve is NFS3ERR_STALE; a registry
//!   that fails meanwhile is NFS3ERR_IO, so the client keeps the handle. File ids are derived
//!   from the same identity ([`StableId::fileid`]), so they survive a restart too.
//!
//! Must never depend on: fuser, registry or HTTP code, or the blob formats (crfs-core is
//! used for `Digest`; tree identities come from crfs-vfs).

#![deny(missing_docs)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crfs_core::Digest;
use crfs_vfs::{Attr, FileKind, FsError, Ino, ROOT_INO, ReadOnlyFs, StableId};
use nfs3_server::nfs3_types::mount::PROGRAM as MOUNT_PROGRAM;
use nfs3_server::nfs3_types::nfs3 as nfs;
use nfs3_server::nfs3_types::nfs3::{
    ACCESS3_EXECUTE, ACCESS3_LOOKUP, ACCESS3_READ, FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK, FSINFO3resok,
    FSSTAT3resok, createverf3, fattr3, filename3, ftype3, nfspath3, nfsstat3, nfstime3, post_op_attr, sattr3,
    specdata3, stable_how,
};
use nfs3_server::nfs3_types::rpc::auth_unix;
use nfs3_server::nfs3_types::xdr_codec::Opaque;
use nfs3_server::programs::{ProgramCall, ProgramReply, RpcPrograms, Serves, Transport};
use nfs3_server::tcp::{NFSTcp, NFSTcpListener};
use tokio::net::{TcpListener, UdpSocket};

use crate::locks::LockManager;
use crate::portmap::{Portmapper, Registration};
use nfs3_server::vfs::{
    DirEntry, DirEntryPlus, FileHandle, NextResult, NfsFileSystem, NfsReadFileSystem, ReadDirIterator,
    ReadDirPlusIterator, VFSCapabilities,
};

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_entry;
pub mod locks;
pub mod portmap;
mod rpcbind;
pub mod xdr;

/// The largest READ we serve, and the size we ask clients to use (FSINFO rtmax and rtpref).
pub const MAX_IO: u32 = 1 << 20;

/// The generation nfs3_server puts before every handle. It is fixed, so handles outlive the
/// server; the identity inside [`Handle`] is what tells trees apart. Raise it only to retire
/// every handle ever issued (older generations then get NFS3ERR_STALE).
pub const GENERATION: u64 = 0x6372_6673_0000_0002; // "crfs", handle format 2 (StableId)

/// Bytes of a handle: kind, 32-byte tree identity, inode number.
const HANDLE_LEN: usize = 1 + 32 + 8;
/// Directory entries fetched from vfs per batch while answering READDIR(PLUS).
const DIR_BATCH: usize = 256;
/// Directory read size we suggest (FSINFO dtpref).
const DTPREF: u32 = 1 << 20;
/// The uid and gid of a caller without an AUTH_UNIX credential.
const NOBODY: u32 = 65534;

/// A file handle: a [`StableId`] as bytes (kind, tree, inode number big-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    bytes: [u8; HANDLE_LEN],
}

impl Handle {
    fn new(id: StableId) -> Self {
        let mut bytes = [0; HANDLE_LEN];
        bytes[0] = id.kind;
        bytes[1..33].copy_from_slice(&id.tree);
        bytes[33..].copy_from_slice(&id.ino.to_be_bytes());
        Handle { bytes }
    }

    /// The identity the handle carries.
    pub fn id(&self) -> StableId {
        let mut tree = [0; 32];
        tree.copy_from_slice(&self.bytes[1..33]);
        let mut ino = [0; 8];
        ino.copy_from_slice(&self.bytes[33..]);
        StableId { kind: self.bytes[0], tree, ino: Ino::from_be_bytes(ino) }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.id();
        let tree: String = id.tree.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "Handle({}:{tree}…:{})", id.kind, id.ino)
    }
}

impl FileHandle for Handle {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Handle { bytes: bytes.try_into().ok()? })
    }
}

pub use crfs_vfs::{image_identity, layer_identity};

/// How handles and file ids name inodes.
#[derive(Clone, Copy)]
enum Naming {
    /// One tree, named by its identity; file ids are the tree's inode numbers.
    Whole([u8; 32]),
    /// A tree whose inodes carry their own [`StableId`] (the namespace).
    Stable,
}

impl Naming {
    fn handle<F: ReadOnlyFs>(self, fs: &F, ino: Ino) -> Result<Handle, nfsstat3> {
        match self {
            Naming::Whole(tree) => Ok(Handle::new(StableId { kind: StableId::WHOLE, tree, ino })),
            Naming::Stable => fs.stable_id(ino).map(Handle::new).ok_or(nfsstat3::NFS3ERR_STALE),
        }
    }

    /// The inode a handle names; NFS3ERR_STALE if it was issued for other content or names
    /// nothing that can be found (again).
    fn ino<F: ReadOnlyFs>(self, fs: &F, handle: &Handle) -> Result<Ino, nfsstat3> {
        let id = handle.id();
        match self {
            Naming::Whole(tree) if id.kind == StableId::WHOLE && id.tree == tree => {
                fs.getattr(id.ino).map(|_| id.ino).map_err(|_| nfsstat3::NFS3ERR_STALE)
            }
            Naming::Whole(_) => Err(nfsstat3::NFS3ERR_STALE),
            Naming::Stable => fs.find_stable(&id).map_err(|e| match e {
                FsError::Io => nfsstat3::NFS3ERR_IO,
                FsError::Denied => nfsstat3::NFS3ERR_ACCES,
                _ => nfsstat3::NFS3ERR_STALE,
            }),
        }
    }

    fn fileid<F: ReadOnlyFs>(self, fs: &F, ino: Ino) -> u64 {
        match self {
            Naming::Whole(_) => ino,
            Naming::Stable => fs.stable_id(ino).map_or(ino, |id| id.fileid()),
        }
    }
}

/// A read-only tree as an NFSv3 file system.
pub struct NfsFs<F> {
    fs: Arc<F>,
    naming: Naming,
    fsid: u64,
}

fn nfs_error(e: FsError) -> nfsstat3 {
    match e {
        FsError::NotFound => nfsstat3::NFS3ERR_NOENT,
        FsError::NotDir => nfsstat3::NFS3ERR_NOTDIR,
        FsError::IsDir => nfsstat3::NFS3ERR_ISDIR,
        FsError::Invalid => nfsstat3::NFS3ERR_INVAL,
        FsError::NoXattr => nfsstat3::NFS3ERR_NOENT,
        FsError::Io => nfsstat3::NFS3ERR_IO,
        FsError::ReadOnly => nfsstat3::NFS3ERR_ROFS,
        FsError::Denied => nfsstat3::NFS3ERR_ACCES,
    }
}

fn ftype(kind: FileKind) -> ftype3 {
    match kind {
        FileKind::Dir => ftype3::NF3DIR,
        FileKind::Reg => ftype3::NF3REG,
        FileKind::Symlink => ftype3::NF3LNK,
        FileKind::Char => ftype3::NF3CHR,
        FileKind::Block => ftype3::NF3BLK,
        FileKind::Fifo => ftype3::NF3FIFO,
    }
}

fn nfs_time(t: std::time::SystemTime) -> nfstime3 {
    // nfstime3 counts unsigned 32-bit seconds: earlier times are the epoch, later ones 2106.
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    match u32::try_from(d.as_secs()) {
        Ok(seconds) => nfstime3 { seconds, nseconds: d.subsec_nanos() },
        Err(_) => nfstime3 { seconds: u32::MAX, nseconds: 999_999_999 },
    }
}

/// NFS attributes: the same every time, so clients may cache them for as long as they like.
fn fattr(a: &Attr, fileid: u64, fsid: u64) -> fattr3 {
    let time = nfs_time(a.mtime);
    fattr3 {
        type_: ftype(a.kind),
        mode: u32::from(a.perm),
        // A link count of 0 makes clients treat the file as deleted.
        nlink: a.nlink.max(1),
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.blocks.saturating_mul(512),
        rdev: specdata3 { specdata1: a.rdev_major, specdata2: a.rdev_minor },
        fsid,
        fileid,
        atime: time,
        mtime: time,
        ctime: time,
    }
}

/// Which ACCESS3 bits a caller holds on a file with attributes `a`, by the mode bits, as
/// the kernel's `generic_permission` decides (no write bits: the export is read-only).
fn access_bits(a: &Attr, auth: Option<&auth_unix>) -> u32 {
    let (uid, gid, groups): (u32, u32, &[u32]) = match auth {
        Some(cred) => (cred.uid, cred.gid, &cred.gids),
        None => (NOBODY, NOBODY, &[]),
    };
    let dir = a.kind == FileKind::Dir;
    let perm = u32::from(a.perm);
    let exec = if dir { ACCESS3_LOOKUP | ACCESS3_EXECUTE } else { ACCESS3_EXECUTE };
    if uid == 0 {
        // Root reads and searches everything, and executes what has any x bit.
        let any_x = perm & 0o111 != 0;
        return ACCESS3_READ | if dir || any_x { exec } else { 0 };
    }
    let class = if uid == a.uid {
        perm >> 6
    } else if gid == a.gid || groups.contains(&a.gid) {
        perm >> 3
    } else {
        perm
    };
    let mut bits = 0;
    if class & 0o4 != 0 {
        bits |= ACCESS3_READ;
    }
    if class & 0o1 != 0 {
        bits |= exec;
    }
    bits
}

impl<F: ReadOnlyFs> NfsFs<F> {
    /// Serves `fs`, whose content `identity` names ([`layer_identity`], [`image_identity`]):
    /// handles carry it, so they stay valid for exactly the same content.
    pub fn new(fs: F, identity: Digest) -> Self {
        NfsFs { fs: Arc::new(fs), naming: Naming::Whole(identity.0), fsid: fsid_of(&identity) }
    }

    /// Serves `fs`, which names its own inodes ([`ReadOnlyFs::stable_id`]): the /crfs
    /// namespace.
    pub fn stable(fs: F) -> Self {
        NfsFs { fs: Arc::new(fs), naming: Naming::Stable, fsid: fsid_of(&Digest::of(b"crfs namespace")) }
    }

    /// The vfs filesystem served.
    pub fn vfs(&self) -> &F {
        &self.fs
    }

    /// The handle of inode `ino`.
    pub fn handle(&self, ino: Ino) -> Result<Handle, nfsstat3> {
        self.naming.handle(&*self.fs, ino)
    }

    fn ino(&self, handle: &Handle) -> Result<Ino, nfsstat3> {
        self.naming.ino(&*self.fs, handle)
    }

    fn attr_of(&self, ino: Ino) -> Result<fattr3, nfsstat3> {
        let fileid = self.naming.fileid(&*self.fs, ino);
        self.fs.getattr(ino).map(|a| fattr(&a, fileid, self.fsid)).map_err(nfs_error)
    }

    fn dir_iter(&self, dir: &Handle, cookie: u64, plus: bool) -> Result<DirIter<F>, nfsstat3> {
        let mut iter = DirIter {
            fs: Arc::clone(&self.fs),
            naming: self.naming,
            fsid: self.fsid,
            dir: self.ino(dir)?,
            offset: cookie,
            buffered: VecDeque::new(),
            done: false,
            plus,
        };
        // The first batch is read here so a bad directory fails the call, not its first entry.
        iter.refill()?;
        Ok(iter)
    }
}

/// The fsid of content named `identity`.
fn fsid_of(identity: &Digest) -> u64 {
    let mut fsid = [0; 8];
    fsid.copy_from_slice(&identity.0[16..24]);
    u64::from_be_bytes(fsid)
}

/// One directory entry, owned, with the attributes the listing gave it.
struct Entry {
    attr: Attr,
    cookie: u64,
    name: Vec<u8>,
}

/// READDIR and READDIRPLUS pages: vfs readdir from a cookie, in batches. The cookie of each
/// entry is vfs's `next_offset`, which resumes right after it.
pub struct DirIter<F> {
    fs: Arc<F>,
    naming: Naming,
    fsid: u64,
    dir: Ino,
    offset: u64,
    buffered: VecDeque<Entry>,
    done: bool,
    plus: bool,
}

impl<F: ReadOnlyFs> DirIter<F> {
    fn refill(&mut self) -> Result<(), nfsstat3> {
        let mut full = false;
        let buffered = &mut self.buffered;
        self.fs
            .readdir(self.dir, self.offset, &mut |e| {
                if buffered.len() >= DIR_BATCH {
                    full = true;
                    return false;
                }
                buffered.push_back(Entry { attr: e.attr, cookie: e.next_offset, name: e.name.to_vec() });
                true
            })
            .map_err(nfs_error)?;
        if let Some(last) = self.buffered.back() {
            self.offset = last.cookie;
        }
        self.done = !full;
        Ok(())
    }

    fn next_entry(&mut self) -> NextResult<Entry> {
        if self.buffered.is_empty()
            && !self.done
            && let Err(e) = self.refill()
        {
            return NextResult::Err(e);
        }
        match self.buffered.pop_front() {
            Some(e) => NextResult::Ok(e),
            None => NextResult::Eof,
        }
    }
}

impl<F: ReadOnlyFs> ReadDirIterator for DirIter<F> {
    async fn next(&mut self) -> NextResult<DirEntry> {
        match self.next_entry() {
            NextResult::Ok(e) => NextResult::Ok(DirEntry {
                fileid: self.naming.fileid(&*self.fs, e.attr.ino),
                name: filename3(Opaque::owned(e.name)),
                cookie: e.cookie,
            }),
            NextResult::Eof => NextResult::Eof,
            NextResult::Err(s) => NextResult::Err(s),
        }
    }
}

impl<F: ReadOnlyFs> ReadDirPlusIterator<Handle> for DirIter<F> {
    async fn next(&mut self) -> NextResult<DirEntryPlus<Handle>> {
        match self.next_entry() {
            NextResult::Ok(e) => {
                let fileid = self.naming.fileid(&*self.fs, e.attr.ino);
                let attr = self.plus.then(|| fattr(&e.attr, fileid, self.fsid));
                NextResult::Ok(DirEntryPlus {
                    fileid,
                    name: filename3(Opaque::owned(e.name)),
                    cookie: e.cookie,
                    name_attributes: attr,
                    name_handle: self.naming.handle(&*self.fs, e.attr.ino).ok(),
                })
            }
            NextResult::Eof => NextResult::Eof,
            NextResult::Err(s) => NextResult::Err(s),
        }
    }
}

impl<F: ReadOnlyFs> NfsReadFileSystem for NfsFs<F> {
    type Handle = Handle;

    fn root_dir(&self) -> Handle {
        // The root always has an identity: a whole tree's, or the namespace root's path.
        self.handle(ROOT_INO).unwrap_or(Handle { bytes: [0; HANDLE_LEN] })
    }

    async fn lookup(&self, dirid: &Handle, filename: &filename3<'_>) -> Result<Handle, nfsstat3> {
        let dir = self.ino(dirid)?;
        let attr = match self.naming {
            Naming::Whole(_) => self.fs.lookup(dir, &filename.0),
            Naming::Stable => {
                // A lookup in the namespace may resolve an image from a registry: off the
                // async workers.
                let fs = Arc::clone(&self.fs);
                let name = filename.0.to_vec();
                tokio::task::spawn_blocking(move || fs.lookup(dir, &name)).await.map_err(|_| nfsstat3::NFS3ERR_IO)?
            }
        };
        self.handle(attr.map_err(nfs_error)?.ino)
    }

    async fn getattr(&self, id: &Handle) -> Result<fattr3, nfsstat3> {
        let ino = self.ino(id)?;
        self.attr_of(ino)
    }

    async fn read(&self, id: &Handle, offset: u64, count: u32) -> Result<(Vec<u8>, bool), nfsstat3> {
        let ino = self.ino(id)?;
        let count = count.min(MAX_IO);
        // nfs3_server takes the data as an owned Vec and writes it to the socket as it is (the
        // reply's tail), so `read` (one allocation, one copy out of the chunk cache) is the only
        // copy in user space; `read_with` would copy the same. From the cache, answered here: a
        // hop to a blocking thread and back costs more than that copy. Reads that decode chunks
        // (CPU) or read the blob (I/O) go off the async workers.
        let (data, size) = match self.fs.read_if_cached(ino, offset, count) {
            Some(data) => (data.map_err(nfs_error)?, self.fs.getattr(ino).map_err(nfs_error)?.size),
            None => {
                let fs = Arc::clone(&self.fs);
                tokio::task::spawn_blocking(move || {
                    let size = fs.getattr(ino)?.size;
                    fs.read(ino, offset, count).map(|data| (data, size))
                })
                .await
                .map_err(|_| nfsstat3::NFS3ERR_IO)?
                .map_err(nfs_error)?
            }
        };
        let eof = offset.saturating_add(data.len() as u64) >= size;
        Ok((data, eof))
    }

    async fn readdir(&self, dirid: &Handle, cookie: u64) -> Result<impl ReadDirIterator, nfsstat3> {
        self.dir_iter(dirid, cookie, false)
    }

    async fn readdirplus(&self, dirid: &Handle, cookie: u64) -> Result<impl ReadDirPlusIterator<Handle>, nfsstat3> {
        self.dir_iter(dirid, cookie, true)
    }

    async fn readlink(&self, id: &Handle) -> Result<nfspath3<'_>, nfsstat3> {
        let ino = self.ino(id)?;
        self.fs.readlink(ino).map(|target| nfspath3(Opaque::owned(target))).map_err(nfs_error)
    }

    async fn fsinfo(&self, root: &Handle) -> Result<FSINFO3resok, nfsstat3> {
        let ino = self.ino(root)?;
        Ok(FSINFO3resok {
            obj_attributes: post_op_attr::Some(self.attr_of(ino)?),
            rtmax: MAX_IO,
            rtpref: MAX_IO,
            rtmult: crfs_vfs::BLOCK_SIZE,
            wtmax: MAX_IO,
            wtpref: MAX_IO,
            wtmult: crfs_vfs::BLOCK_SIZE,
            dtpref: DTPREF,
            maxfilesize: i64::MAX as u64,
            time_delta: nfstime3 { seconds: 0, nseconds: 1 },
            // Hard links and symlinks exist; every file shares these properties. No
            // CANSETTIME: times never change.
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS,
        })
    }

    async fn fsstat(&self, root: &Handle) -> Result<FSSTAT3resok, nfsstat3> {
        let ino = self.ino(root)?;
        let totals = self.fs.statfs();
        Ok(FSSTAT3resok {
            obj_attributes: post_op_attr::Some(self.attr_of(ino)?),
            tbytes: totals.blocks.saturating_mul(u64::from(totals.block_size)),
            fbytes: 0,
            abytes: 0,
            tfiles: totals.files,
            ffiles: 0,
            afiles: 0,
            // The numbers never change: clients need not ask again.
            invarsec: u32::MAX,
        })
    }

    async fn access(&self, id: &Handle, auth: Option<&auth_unix>, requested: u32) -> Result<u32, nfsstat3> {
        let ino = self.ino(id)?;
        let attr = self.fs.getattr(ino).map_err(nfs_error)?;
        Ok(access_bits(&attr, auth) & requested)
    }
}

impl<F: ReadOnlyFs> NfsFileSystem for NfsFs<F> {
    fn capabilities(&self) -> VFSCapabilities {
        VFSCapabilities::ReadOnly
    }

    async fn setattr(&self, _id: &Handle, _setattr: sattr3) -> Result<fattr3, nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn write(
        &self,
        _id: &Handle,
        _offset: u64,
        _data: &[u8],
        _stable: stable_how,
    ) -> Result<(fattr3, stable_how), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn create(
        &self,
        _dirid: &Handle,
        _filename: &filename3<'_>,
        _attr: sattr3,
    ) -> Result<(Handle, fattr3), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn create_exclusive(
        &self,
        _dirid: &Handle,
        _filename: &filename3<'_>,
        _createverf: createverf3,
    ) -> Result<Handle, nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn mkdir(&self, _dirid: &Handle, _dirname: &filename3<'_>) -> Result<(Handle, fattr3), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn remove(&self, _dirid: &Handle, _filename: &filename3<'_>) -> Result<(), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn rename<'a>(
        &self,
        _from_dirid: &Handle,
        _from_filename: &filename3<'a>,
        _to_dirid: &Handle,
        _to_filename: &filename3<'a>,
    ) -> Result<(), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn symlink<'a>(
        &self,
        _dirid: &Handle,
        _linkname: &filename3<'a>,
        _symlink: &nfspath3<'a>,
        _attr: &sattr3,
    ) -> Result<(Handle, fattr3), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn commit(&self, _id: &Handle, _offset: u64, _count: u32) -> Result<(), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }
}

/// Binds an NFS server for `fs` on `addr` (IPv4; port 0 picks a free port) inside the
/// current tokio runtime, with no portmapper or lock manager of its own. Serve it with
/// `NFSTcp::handle_forever`.
pub async fn listen<F: ReadOnlyFs>(fs: NfsFs<F>, addr: SocketAddr) -> io::Result<NFSTcpListener<NfsFs<F>>> {
    if addr.is_ipv6() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv6 listen addresses are not supported"));
    }
    NFSTcpListener::bind_with_generation(&addr.to_string(), fs, GENERATION).await
}

/// The RPC programs served beside NFS and MOUNT: the portmapper, the lock manager and the
/// status monitor's NOTIFY.
pub struct Services {
    portmap: Portmapper,
    locks: LockManager,
}

impl Services {
    /// Services whose portmapper answers from `table`.
    pub fn new(table: Vec<Registration>) -> Self {
        Services { portmap: Portmapper::new(table), locks: LockManager::new() }
    }

    /// What the portmapper answers for.
    pub fn registrations(&self) -> &[Registration] {
        self.portmap.registrations()
    }

    /// Locks held now.
    pub fn lock_count(&self) -> usize {
        self.locks.held()
    }
}

impl RpcPrograms for Services {
    fn call(&self, call: &ProgramCall<'_>) -> ProgramReply {
        match call.prog {
            portmap::PROGRAM => self.portmap.call(call),
            locks::NLM_PROGRAM => self.locks.nlm(call),
            locks::NSM_PROGRAM => self.locks.nsm(call),
            _ => ProgramReply::ProgUnavail,
        }
    }
}

/// The programs and versions served at `addr`, on TCP and (but for NFS) on UDP.
pub(crate) fn served_programs(addr: SocketAddr, udp: bool) -> Vec<Registration> {
    let mut table = Vec::new();
    let versions =
        [(nfs::PROGRAM, 3), (MOUNT_PROGRAM, 1), (MOUNT_PROGRAM, 3), (locks::NLM_PROGRAM, 4), (locks::NSM_PROGRAM, 1)];
    for (prog, vers) in versions {
        table.push(Registration { prog, vers, transport: Transport::Tcp, addr });
        if udp && prog != nfs::PROGRAM {
            table.push(Registration { prog, vers, transport: Transport::Udp, addr });
        }
    }
    table
}

/// The portmapper's own entries (versions 2 to 4) at `addr`.
pub(crate) fn portmapper_programs(addr: SocketAddr, udp: bool) -> Vec<Registration> {
    let transports: &[Transport] = if udp { &[Transport::Tcp, Transport::Udp] } else { &[Transport::Tcp] };
    (2..=4)
        .flat_map(|vers| {
            transports.iter().map(move |&transport| Registration { prog: portmap::PROGRAM, vers, transport, addr })
        })
        .collect()
}

/// Where a server listens.
#[derive(Copy, Clone, Debug)]
pub struct Endpoints {
    /// NFS, MOUNT, NLM and NSM, over TCP and (but for NFS) UDP. IPv4; port 0 picks a free one.
    pub nfs: SocketAddr,
    /// The portmapper's address (port 111 for the OS's plain mount commands), over TCP and UDP;
    /// `None`: the portmapper answers on the NFS port only.
    pub portmap: Option<SocketAddr>,
    /// Also serve the same ports on IPv6 loopback (`[::1]`), where it exists: `localhost`
    /// resolves to `::1` first on many hosts, and `mount.nfs` takes the first address.
    pub ipv6_loopback: bool,
}

/// Who answers the portmapper's well-known port for this server.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Portmap {
    /// crfs's own portmapper, at this address.
    Own(SocketAddr),
    /// The system's rpcbind, already on that address, with crfs's programs registered in it
    /// (and removed again when the server stops).
    System(SocketAddr),
    /// Only on the NFS port: clients must name the ports.
    NfsPortOnly,
}

/// Stops a running [`NfsServer`] from any thread.
#[derive(Clone)]
pub struct Stopper(Arc<tokio::sync::Notify>);

impl Stopper {
    /// Makes [`NfsServer::run`] return (also if called before it starts).
    pub fn stop(&self) {
        self.0.notify_one();
    }
}

/// A socket served besides the NFS port's TCP listener.
enum Extra {
    Tcp(TcpListener, Serves),
    Udp(UdpSocket, Serves),
}

/// A bound NFS server with its own multi-thread runtime.
pub struct NfsServer<F: ReadOnlyFs> {
    runtime: tokio::runtime::Runtime,
    listener: NFSTcpListener<NfsFs<F>>,
    addr: SocketAddr,
    extra: Vec<Extra>,
    portmap: Portmap,
    /// What a system rpcbind accepted, to take out again at the end.
    registered: Vec<Registration>,
    services: Arc<Services>,
    stop: Arc<tokio::sync::Notify>,
}

impl<F: ReadOnlyFs> NfsServer<F> {
    /// Binds `addr` (IPv4; port 0 picks a free port) for `fs` (named by `identity`, see
    /// [`NfsFs::new`]), with `threads` worker threads.
    pub fn bind(fs: F, identity: Digest, addr: SocketAddr, threads: usize) -> io::Result<Self> {
        Self::bind_nfs(NfsFs::new(fs, identity), addr, threads)
    }

    /// Binds `addr` for an [`NfsFs`] made by the caller ([`NfsFs::stable`] for the namespace),
    /// with the portmapper on that port only.
    pub fn bind_nfs(fs: NfsFs<F>, addr: SocketAddr, threads: usize) -> io::Result<Self> {
        Self::bind_endpoints(fs, Endpoints { nfs: addr, portmap: None, ipv6_loopback: false }, threads)
    }

    /// Binds every socket of `endpoints`. Where the portmapper's address is taken (a system
    /// rpcbind), crfs's programs are registered with whatever answers there instead; if that
    /// fails too, so does this. A UDP socket that cannot be bound beside the NFS port only
    /// leaves UDP out (and out of the portmapper's answers); so does IPv6 loopback.
    pub fn bind_endpoints(fs: NfsFs<F>, endpoints: Endpoints, threads: usize) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("crfs-nfs")
            .enable_io()
            .enable_time()
            .build()?;
        let (mut listener, extra, table, portmap, registered) = runtime.block_on(bind_all(fs, endpoints))?;
        let addr = SocketAddr::new(listener.get_listen_ip(), listener.get_listen_port());
        let services = Arc::new(Services::new(table));
        listener.set_programs(Arc::clone(&services) as Arc<dyn RpcPrograms>);
        Ok(NfsServer {
            runtime,
            listener,
            addr,
            extra,
            portmap,
            registered,
            services,
            stop: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The NFS address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Who answers the portmapper's port.
    pub fn portmap(&self) -> Portmap {
        self.portmap
    }

    /// Whether MOUNT and the lock manager are served over UDP too.
    pub fn serves_udp(&self) -> bool {
        self.services.registrations().iter().any(|r| r.transport == Transport::Udp && r.addr == self.addr)
    }

    /// What the portmapper answers for.
    pub fn registrations(&self) -> &[Registration] {
        self.services.registrations()
    }

    /// A handle that stops [`run`](Self::run).
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Serves until stopped, then drops every connection (and takes crfs's programs out of a
    /// system rpcbind it registered them with).
    pub fn run(self) -> io::Result<()> {
        let NfsServer { runtime, listener, extra, portmap, registered, stop, .. } = self;
        let listener = Arc::new(listener);
        let served = runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for socket in extra {
                let l = Arc::clone(&listener);
                match socket {
                    Extra::Tcp(socket, serves) => tasks.spawn(async move { l.serve_tcp(socket, serves).await }),
                    Extra::Udp(socket, serves) => tasks.spawn(async move { l.serve_udp(socket, serves).await }),
                };
            }
            let others = async {
                match tasks.join_next().await {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => Err(io::Error::other(e)),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = listener.handle_forever() => r,
                r = others => r,
                () = stop.notified() => Ok(()),
            }
        });
        if let Portmap::System(at) = portmap
            && let Err(e) = runtime.block_on(rpcbind::unset_all(at, &registered))
        {
            tracing::warn!("taking crfs's programs out of the rpcbind on {at}: {e}");
        }
        runtime.shutdown_timeout(Duration::from_secs(1));
        drop(listener);
        served
    }
}

/// What [`bind_all`] bound: the NFS listener, the other sockets, the portmapper's table, who
/// answers the portmapper's port, and what a system rpcbind accepted.
type Bound<F> = (NFSTcpListener<NfsFs<F>>, Vec<Extra>, Vec<Registration>, Portmap, Vec<Registration>);

async fn bind_all<F: ReadOnlyFs>(fs: NfsFs<F>, endpoints: Endpoints) -> io::Result<Bound<F>> {
    let listener = listen(fs, endpoints.nfs).await?;
    let addr = SocketAddr::new(listener.get_listen_ip(), listener.get_listen_port());
    let mut extra = Vec::new();
    let udp = match UdpSocket::bind(addr).await {
        Ok(socket) => {
            extra.push(Extra::Udp(socket, Serves::Everything));
            true
        }
        Err(e) => {
            tracing::warn!("no UDP on {addr} ({e}): MOUNT and locks over TCP only");
            false
        }
    };
    let mut table = served_programs(addr, udp);
    let (portmap, registered) = match endpoints.portmap {
        None => (Portmap::NfsPortOnly, Vec::new()),
        Some(at) => match bind_pair(at).await {
            Ok((tcp, udp)) => {
                extra.push(Extra::Tcp(tcp, Serves::PortmapOnly));
                extra.push(Extra::Udp(udp, Serves::PortmapOnly));
                (Portmap::Own(at), Vec::new())
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let accepted = rpcbind::set_all(at, &table).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("{at} is taken, and registering with what holds it failed: {e}"))
                })?;
                (Portmap::System(at), accepted)
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("portmapper on {at}: {e}"))),
        },
    };
    match portmap {
        Portmap::Own(at) => table.extend(portmapper_programs(at, true)),
        Portmap::System(_) | Portmap::NfsPortOnly => table.extend(portmapper_programs(addr, udp)),
    }
    if endpoints.ipv6_loopback {
        let v6 = |port| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        match bind_pair(v6(addr.port())).await {
            Ok((tcp, udp)) => {
                extra.push(Extra::Tcp(tcp, Serves::Everything));
                extra.push(Extra::Udp(udp, Serves::Everything));
                table.extend(served_programs(v6(addr.port()), true));
                if let Portmap::Own(at) = portmap {
                    match bind_pair(v6(at.port())).await {
                        Ok((tcp, udp)) => {
                            extra.push(Extra::Tcp(tcp, Serves::PortmapOnly));
                            extra.push(Extra::Udp(udp, Serves::PortmapOnly));
                            table.extend(portmapper_programs(v6(at.port()), true));
                        }
                        Err(e) => tracing::debug!("no portmapper on [::1]: {e}"),
                    }
                }
            }
            Err(e) => tracing::debug!("not serving on [::1]: {e}"),
        }
    }
    Ok((listener, extra, table, portmap, registered))
}

/// TCP and UDP sockets at `at`.
async fn bind_pair(at: SocketAddr) -> io::Result<(TcpListener, UdpSocket)> {
    let tcp = TcpListener::bind(at).await?;
    let udp = UdpSocket::bind(at).await?;
    Ok((tcp, udp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: FileKind, perm: u16, uid: u32, gid: u32) -> Attr {
        Attr {
            ino: 2,
            kind,
            perm,
            nlink: 1,
            uid,
            gid,
            size: 0,
            blocks: 0,
            rdev_major: 0,
            rdev_minor: 0,
            mtime: UNIX_EPOCH,
        }
    }

    fn cred(uid: u32, gid: u32, gids: &[u32]) -> auth_unix {
        auth_unix { uid, gid, gids: gids.to_vec(), ..auth_unix::default() }
    }

    #[test]
    fn access_follows_mode_bits_and_keeps_execute() {
        let exe = attr(FileKind::Reg, 0o755, 0, 0);
        assert_eq!(access_bits(&exe, Some(&cred(1000, 1000, &[]))), ACCESS3_READ | ACCESS3_EXECUTE);
        assert_eq!(access_bits(&exe, Some(&cred(0, 0, &[]))), ACCESS3_READ | ACCESS3_EXECUTE);
        let secret = attr(FileKind::Reg, 0o600, 1000, 1000);
        assert_eq!(access_bits(&secret, Some(&cred(1000, 5, &[]))), ACCESS3_READ);
        assert_eq!(access_bits(&secret, Some(&cred(1001, 1000, &[]))), 0);
        assert_eq!(access_bits(&secret, None), 0);
        assert_eq!(access_bits(&secret, Some(&cred(0, 0, &[]))), ACCESS3_READ);
        let group = attr(FileKind::Reg, 0o050, 1, 6);
        assert_eq!(access_bits(&group, Some(&cred(2, 2, &[6]))), ACCESS3_READ | ACCESS3_EXECUTE);
        let dir = attr(FileKind::Dir, 0o711, 0, 0);
        assert_eq!(access_bits(&dir, Some(&cred(7, 7, &[]))), ACCESS3_LOOKUP | ACCESS3_EXECUTE);
        let private = attr(FileKind::Dir, 0o700, 1000, 1000);
        assert_eq!(access_bits(&private, Some(&cred(0, 0, &[]))), ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_EXECUTE);
    }

    #[test]
    fn handles_round_trip_and_carry_their_identity() {
        let id = StableId { kind: StableId::IMAGE, tree: [7; 32], ino: 0x0102_0304_0506_0708 };
        let h = Handle::new(id);
        assert_eq!(h.id(), id);
        assert_eq!(h.as_bytes().len(), 41, "with the 8-byte generation, within NFSv3's 64");
        assert_eq!(Handle::from_bytes(h.as_bytes()), Some(h));
        assert_eq!(Handle::from_bytes(&h.as_bytes()[1..]), None);
    }

    #[test]
    fn times_clamp_to_nfstime3() {
        assert_eq!(nfs_time(UNIX_EPOCH), nfstime3 { seconds: 0, nseconds: 0 });
        let late = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(nfs_time(late).seconds, u32::MAX);
        let t = UNIX_EPOCH + Duration::new(1_600_000_000, 5);
        assert_eq!(nfs_time(t), nfstime3 { seconds: 1_600_000_000, nseconds: 5 });
    }
}
