//! crfs-fuse: serves a crfs-vfs filesystem over FUSE with fuser.
//!
//! What it owns: the translation between fuser's requests and [`crfs_vfs::LayerFs`] calls,
//! errno mapping, kernel tuning at init (readahead, readdirplus, cached symlinks), reply TTLs
//! and mounting. It holds no filesystem logic: anything both FUSE and NFS need lives in vfs.
//! File data is answered from the slice vfs lends ([`ReadOnlyFs::read_with`]), written to
//! /dev/fuse without a copy of its own; the rest of each chunk a read decoded goes to the
//! kernel's page cache once ([`ReadOnlyFs::take_whole_chunk`], FUSE_NOTIFY_STORE, from a
//! thread of its own: see `PageCacheFiller`).
//!
//! Must never depend on: crfs-image, crfs-remote or any registry or HTTP code, crfs-nfs or the
//! NFS server (nfs3_server, vendored under frontends/nfs/vendor), or the blob formats. A tree
//! to serve comes from crfs-image (or any `ReadOnlyFs`).

#![deny(missing_docs)]

use std::ffi::OsStr;
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use crfs_vfs::{Attr, FileKind, FsError, ReadOnlyFs, WholeChunk};
use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL,
    TimeOrNow, WriteFlags,
};

/// How long the kernel may cache entries and attributes: the image never changes.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// The largest readahead we ask the kernel for; it grants at most what it offered.
const MAX_READAHEAD: u32 = 16 << 20;

/// What to mount and how.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Let other users (and root) see the mount (`allow_other`).
    pub allow_other: bool,
    /// Request-handling threads.
    pub threads: usize,
    /// The source name shown in /proc/mounts.
    pub fs_name: String,
    /// Mount `ro`, so that the kernel refuses every change without asking. Off only for a
    /// tree that takes create or rmdir requests as signals (the layer store); every change
    /// is still answered with an error.
    pub read_only: bool,
}

/// A crfs-vfs filesystem (one layer or a merged image) served over FUSE.
pub struct FuseFs<F> {
    fs: F,
    /// Chunks for the page-cache filler; `None` when nothing fills.
    fill: Option<SyncSender<Fill>>,
}

impl<F: ReadOnlyFs> FuseFs<F> {
    /// Wraps a vfs filesystem; reads are answered, nothing more goes to the page cache.
    pub fn new(fs: F) -> Self {
        FuseFs { fs, fill: None }
    }

    /// After a read of `read` in file `ino`: queues the chunks it touched that nobody handed
    /// to the page cache yet, for the filler. Never waits: with the queue full the chunk is
    /// left out, and later reads of it are answered from crfs's cache or decoded again.
    fn queue_fill(&self, ino: INodeNo, read: Range<u64>) {
        let Some(fill) = &self.fill else { return };
        if read.is_empty() {
            return;
        }
        // The chunk at the start of the read, and the one at its end if that is another.
        for at in [read.start, read.end - 1] {
            let Some(chunk) = self.fs.take_whole_chunk(ino.0, at) else { continue };
            let ranges = fill_ranges(&chunk, &read);
            if ranges.iter().all(Range::is_empty) {
                continue;
            }
            match fill.try_send(Fill { ino, chunk, ranges }) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// One chunk to store in the kernel's page cache: the parts of it at `ranges` (file offsets).
struct Fill {
    ino: INodeNo,
    chunk: WholeChunk,
    ranges: [Range<u64>; 2],
}

/// The page size the stores are aligned to. The kernel marks a page it was handed as up to
/// date only when the store covers all of it (or runs from its start to the end of the file);
/// a partly covered page is still read through crfs as usual, so a bigger page size costs only
/// some of the gain.
const PAGE: u64 = 4096;

/// The parts of `chunk` worth storing after a read of `read`: its whole pages before the read
/// and after it, the last one running to the end of the file when the chunk ends there.
fn fill_ranges(chunk: &WholeChunk, read: &Range<u64>) -> [Range<u64>; 2] {
    let start = chunk.file_offset.next_multiple_of(PAGE);
    let chunk_end = chunk.file_offset.saturating_add(chunk.data.len() as u64).min(chunk.file_size);
    let end = if chunk_end == chunk.file_size { chunk_end } else { chunk_end / PAGE * PAGE };
    let before = start..(read.start / PAGE * PAGE).min(end);
    let after = read.end.next_multiple_of(PAGE).max(start)..end;
    // A read that starts before the chunk or ends after it leaves nothing on that side.
    [before, after].map(|r| r.start..r.end.max(r.start))
}

/// Stores whole chunks in the kernel's page cache (FUSE_NOTIFY_STORE), from a thread of its
/// own.
///
/// A chunk is up to 4 MiB, and a read of 4 KiB anywhere in it costs the decode of all of it.
/// crfs's cache holds only a few chunks (16 MiB by default), so random reads over a larger
/// working set decoded the same chunks again and again (2,000 random 4 KiB reads in 123 MiB
/// of big files: 8.9 s, against 0.77 s for squashfuse_ll with its 128 KiB blocks). Stored in
/// the page cache, the rest of the chunk is read by the kernel without asking crfs, for as
/// long as the kernel keeps those pages; that memory is the kernel's to reclaim, not crfs's.
///
/// Not on the request threads: the kernel locks each page it fills, and pages of the same
/// chunk may be locked by the kernel's own read-ahead, waiting on READs queued for those
/// request threads. A request thread that stored could wait on requests only it would answer.
/// This thread answers none, so it only ever waits for threads that make progress.
struct PageCacheFiller;

impl PageCacheFiller {
    /// Chunks queued at most: each queued chunk is memory crfs holds until it is stored.
    const QUEUE: usize = 2;

    /// The queue's two ends.
    fn queue() -> (SyncSender<Fill>, Receiver<Fill>) {
        std::sync::mpsc::sync_channel(Self::QUEUE)
    }

    /// Starts the thread; it ends when the session (and with it the queue's sender) is gone.
    fn start(queue: Receiver<Fill>, notifier: fuser::Notifier) {
        let run = move || {
            while let Ok(fill) = queue.recv() {
                for range in &fill.ranges {
                    let Some(bytes) = range.start.checked_sub(fill.chunk.file_offset).and_then(|from| {
                        fill.chunk.data.get(from as usize..)?.get(..range.end.saturating_sub(range.start) as usize)
                    }) else {
                        continue;
                    };
                    if bytes.is_empty() {
                        continue;
                    }
                    if let Err(e) = notifier.store(fill.ino, range.start, bytes) {
                        // The kernel may refuse (an old kernel, a file it forgot); reads still
                        // work, they only reach crfs.
                        tracing::debug!(ino = fill.ino.0, offset = range.start, "page cache store refused: {e}");
                    }
                }
            }
        };
        if let Err(e) = std::thread::Builder::new().name("crfs-page-fill".into()).spawn(run) {
            tracing::debug!("no page cache filler ({e}); reads are answered from crfs's cache");
        }
    }
}

fn errno(e: FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::Invalid => Errno::EINVAL,
        FsError::NoXattr => Errno::ENODATA,
        FsError::Io => Errno::EIO,
        FsError::ReadOnly => Errno::EROFS,
        FsError::Denied => Errno::EACCES,
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::Reg => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Char => FileType::CharDevice,
        FileKind::Block => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
    }
}

/// The kernel's 32-bit device encoding (`new_encode_dev`), which FUSE attributes carry.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: encode_dev(a.rdev_major, a.rdev_minor),
        blksize: crfs_vfs::BLOCK_SIZE,
        flags: 0,
    }
}

fn xattr_reply(value: Result<Vec<u8>, FsError>, size: u32, reply: ReplyXattr) {
    match value {
        Err(e) => reply.error(errno(e)),
        Ok(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
    }
}

impl<F: ReadOnlyFs> Filesystem for FuseFs<F> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Take the largest readahead the kernel allows.
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        // Always READDIRPLUS (not AUTO): every listing brings attributes and creates dentries,
        // so walking into subdirectories and stat-ing entries costs no LOOKUP.
        for flag in [InitFlags::FUSE_DO_READDIRPLUS, InitFlags::FUSE_CACHE_SYMLINKS, InitFlags::FUSE_PARALLEL_DIROPS] {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!("kernel lacks FUSE capability {flag:?}");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Zero-message opens: on ENOSYS the kernel stops sending OPEN (and RELEASE) and opens
        // every file with FOPEN_KEEP_CACHE, which is what we would answer anyway. The mount is
        // read-only, so the kernel refuses opens for writing before they reach us. A tree
        // that counts open files (the namespace keeps an image in memory while one is open)
        // gets every open and, in `release`, every close.
        if !self.fs.counts_opens() {
            reply.error(Errno::ENOSYS);
            return;
        }
        match self.fs.open(ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.close(ino.0);
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Answered from the bytes the tree lends (a cached chunk, for a read inside one): fuser
        // writes them to /dev/fuse as they are, without a copy of ours.
        let mut reply = Some(reply);
        let mut answered = 0;
        let result = self.fs.read_with(ino.0, offset, size, &mut |data| {
            if let Some(reply) = reply.take() {
                answered = data.len() as u64;
                reply.data(data);
            }
        });
        match (result, reply) {
            (Err(e), Some(reply)) => reply.error(errno(e)),
            _ => self.queue_fill(ino, offset..offset.saturating_add(answered)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing to flush in a read-only tree; ENOSYS makes the kernel stop sending FLUSH.
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Zero-message opendir, as for open: the kernel then keeps directory listings cached
        // (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR) and sends READDIR(PLUS) directly.
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let result = self.fs.readdir(ino.0, offset, &mut |e| {
            !reply.add(INodeNo(e.attr.ino), e.next_offset, file_type(e.attr.kind), OsStr::from_bytes(e.name))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        // Each entry comes with its attributes: nothing is looked up again.
        let result = self.fs.readdir(ino.0, offset, &mut |e| {
            !reply.add(
                INodeNo(e.attr.ino),
                e.next_offset,
                OsStr::from_bytes(e.name),
                &TTL,
                &file_attr(&e.attr),
                Generation(0),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(s.blocks, 0, 0, s.files, 0, s.block_size, s.name_max, s.block_size);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.fs.has_xattrs() {
            // `ls -l` asks two xattrs of every file; ENOSYS tells the kernel to stop asking.
            return reply.error(Errno::ENOSYS);
        }
        xattr_reply(self.fs.getxattr(ino.0, name.as_bytes()), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.fs.has_xattrs() {
            return reply.error(Errno::ENOSYS);
        }
        xattr_reply(self.fs.listxattr(ino.0), size, reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        match self.fs.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    // Everything that would change the tree: EROFS.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, _r: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno(self.fs.rmdir(parent.0, name.as_bytes())));
    }

    fn symlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _t: &Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(&self, _req: &Request, parent: INodeNo, name: &OsStr, _m: u32, _u: u32, _f: i32, reply: ReplyCreate) {
        reply.error(errno(self.fs.create(parent.0, name.as_bytes())));
    }

    /// No ioctls (FS_IOC_GETFLAGS and the like, which container runtimes ask on every
    /// directory): ENOTTY, as for any file without them, without a log line each.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// No poll support: ENOSYS once, and the kernel stops asking (files always read as ready).
    /// Go programs (podman, containers/storage) poll every file they open.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, _v: &[u8], _f: i32, _p: u32, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
}

/// A mounted session, not yet serving.
pub struct Mount<F: ReadOnlyFs> {
    session: fuser::Session<FuseFs<F>>,
}

/// Unmounts a [`Mount`] from another thread (a signal handler thread, say).
pub struct Unmounter(fuser::SessionUnmounter);

impl Unmounter {
    /// Unmounts; the serving loop then returns.
    pub fn unmount(&mut self) -> io::Result<()> {
        self.0.unmount()
    }
}

impl<F: ReadOnlyFs> Mount<F> {
    /// Mounts `fs` at `mountpoint` (read-only as `config` says; the tree is read-only either way). As root this mounts directly; as another user
    /// fuser falls back to the fusermount3 helper.
    pub fn new(fs: F, mountpoint: &Path, config: &MountConfig) -> io::Result<Self> {
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::FSName(config.fs_name.clone()),
            MountOption::Subtype("crfs".to_string()),
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
        ];
        if config.read_only {
            cfg.mount_options.push(MountOption::RO);
        }
        // Devices in an image are data to look at, not to open: keep nodev; a layer is served
        // for a container runtime, so setuid bits keep their meaning only as root.
        cfg.acl = if config.allow_other { SessionACL::All } else { SessionACL::Owner };
        cfg.n_threads = Some(config.threads.max(1));
        cfg.clone_fd = true;
        let (fill, filled) = PageCacheFiller::queue();
        let session = fuser::Session::new(FuseFs { fs, fill: Some(fill) }, mountpoint, &cfg)?;
        PageCacheFiller::start(filled, session.notifier());
        Ok(Mount { session })
    }

    /// A handle that unmounts this mount from another thread.
    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter(self.session.unmount_callable())
    }

    /// Serves requests until the filesystem is unmounted.
    pub fn run(self) -> io::Result<()> {
        self.session.run()
    }
}

/// Readahead crfs asks for on its mounts: FUSE reads are at most 1 MiB (256 pages).
pub const READAHEAD_KB: u32 = 1024;

/// Raises the kernel's readahead for the FUSE mount at `mountpoint` to `kb` KiB.
///
/// The kernel starts a FUSE mount's backing device at 128 KiB whatever the filesystem asks in
/// INIT, which caps sequential READs at 128 KiB; the device's `read_ahead_kb` in sysfs lifts
/// that (root only). Call it once the mount serves requests: it stats the mountpoint.
pub fn raise_readahead(mountpoint: &Path, kb: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    std::fs::write(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"), kb.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    fn chunk(file_offset: u64, len: usize, file_size: u64) -> WholeChunk {
        WholeChunk { file_offset, file_size, data: Arc::new(crfs_vfs::ChunkData::zeroed(len)) }
    }

    #[test]
    fn fill_ranges_are_whole_pages_outside_the_read() {
        const MIB: u64 = 1 << 20;
        // A read in the middle of a 4 MiB chunk: the pages before it and after it.
        let c = chunk(4 * MIB, 4 << 20, 100 * MIB);
        assert_eq!(fill_ranges(&c, &(5 * MIB + 100..5 * MIB + 5000)), [4 * MIB..5 * MIB, 5 * MIB + 8192..8 * MIB]);
        // A read covering the whole chunk: nothing to store.
        assert!(fill_ranges(&c, &(4 * MIB..8 * MIB)).iter().all(Range::is_empty));
        // The file's last chunk: its partial last page goes too, up to the end of the file.
        let last = chunk(MIB, 5000, MIB + 5000);
        assert_eq!(fill_ranges(&last, &(MIB..MIB + 100)), [MIB..MIB, MIB + 4096..MIB + 5000]);
        // A read across two chunks: the first keeps its pages before the read, the second its
        // pages after it, and neither side is inverted.
        let (first, second) = (chunk(0, 4 << 20, 100 * MIB), chunk(4 * MIB, 4 << 20, 100 * MIB));
        let across = 4 * MIB - 8192..4 * MIB + 8192;
        let [a, b] = fill_ranges(&first, &across);
        assert_eq!((a, b.is_empty(), b.start <= b.end), (0..4 * MIB - 8192, true, true));
        let [a, b] = fill_ranges(&second, &across);
        assert_eq!((a.is_empty(), a.start <= a.end, b), (true, true, 4 * MIB + 8192..8 * MIB));
        // A chunk not on page boundaries (zstd:chunked may cut anywhere): whole pages inside it.
        let odd = chunk(1000, 20_000, MIB);
        assert_eq!(fill_ranges(&odd, &(10_000..10_100)), [4096..8192, 12_288..20_480]);
    }
}
