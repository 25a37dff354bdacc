//! A minimal lock manager, so that `flock` and `fcntl` locks on a mount without `nolock` get
//! their answer at once instead of hanging: NLM version 4 (program 100021, the version NFSv3
//! clients use; RFC 1813 and X/Open's XNFS) and the one call of the status monitor, NSM
//! (program 100024), that concerns a server: NOTIFY, a client saying it rebooted.
//!
//! Locks are advisory and the export is read-only, but two clients that lock the same range
//! still exclude each other: this is a real lock table, shared and exclusive byte ranges per
//! file handle and owner (the client's name, its process id `svid` and owner handle `oh`).
//!
//! | NLM4 proc | answer |
//! |---|---|
//! | 0 NULL | void |
//! | 1 TEST | GRANTED, or DENIED with the holder |
//! | 2 LOCK, 22 NM_LOCK | GRANTED; on a conflict DENIED, or BLOCKED if the caller will wait |
//! | 3 CANCEL | GRANTED (nothing waits here) |
//! | 4 UNLOCK | GRANTED, the range freed (split where it was part of a larger lock) |
//! | 23 FREE_ALL | void; every lock of that client freed |
//! | others | PROC_UNAVAIL |
//!
//! Choices, and why:
//! - BLOCKED is never followed by a GRANTED callback: the Linux client asks again every 30
//!   seconds while it waits, so a blocking lock waits at most that long past its release. A
//!   callback would need an RPC client to each caller's lock manager.
//! - The asynchronous `_MSG`/`_RES` procedures (6 to 15) are not served: they answer by
//!   calling the client back. The Linux client does not use them.
//! - Locks live in memory: a restarted server has none, and no grace period is kept (a
//!   read-only export loses no data to a lost advisory lock).
//! - The table is bounded ([`MAX_LOCKS`]); past it, LOCK answers DENIED_NOLOCKS (ENOLCK).

use std::collections::HashMap;
use std::sync::Mutex;

use nfs3_server::programs::{ProgramCall, ProgramReply};

use crate::xdr::{Garbage, Reader, Writer};

/// The lock manager's RPC program number.
pub const NLM_PROGRAM: u32 = 100_021;
/// The NLM version served.
pub const NLM_VERSION: u32 = 4;
/// The status monitor's RPC program number.
pub const NSM_PROGRAM: u32 = 100_024;
/// The NSM version served.
pub const NSM_VERSION: u32 = 1;
/// Locks held at once, over every file and client.
pub const MAX_LOCKS: usize = 65_536;

/// NLM's bound on a caller name (LM_MAXSTRLEN) and on a netobj (MAXNETOBJ_SZ).
const MAX_NAME: usize = 1024;
const MAX_NETOBJ: usize = 1024;
/// An NFSv3 file handle's bound (NFS3_FHSIZE).
const MAX_FH: usize = 64;

/// nlm4_stats.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Stat {
    Granted = 0,
    Denied = 1,
    DeniedNolocks = 2,
    Blocked = 3,
}

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    host: Box<[u8]>,
    svid: i32,
    oh: Box<[u8]>,
}

/// One held range: `start..end`, `end == u64::MAX` meaning to the end of the file.
#[derive(Clone, Debug)]
struct Held {
    owner: Owner,
    exclusive: bool,
    start: u64,
    end: u64,
}

impl Held {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

/// An `nlm4_lock`, borrowed from the call.
struct Lock<'a> {
    caller: &'a [u8],
    fh: &'a [u8],
    oh: &'a [u8],
    svid: i32,
    start: u64,
    end: u64,
}

impl Lock<'_> {
    fn read<'a>(r: &mut Reader<'a>) -> Result<Lock<'a>, Garbage> {
        let (caller, fh, oh) = (r.opaque(MAX_NAME)?, r.opaque(MAX_FH)?, r.opaque(MAX_NETOBJ)?);
        let (svid, offset, len) = (r.i32()?, r.u64()?, r.u64()?);
        // A length of 0, or one running past 2^64, reaches the end of the file.
        let end = if len == 0 { u64::MAX } else { offset.saturating_add(len) };
        Ok(Lock { caller, fh, oh, svid, start: offset, end })
    }

    fn owner(&self) -> Owner {
        Owner { host: self.caller.into(), svid: self.svid, oh: self.oh.into() }
    }

    fn is_owner(&self, o: &Owner) -> bool {
        *o.host == *self.caller && o.svid == self.svid && *o.oh == *self.oh
    }
}

#[derive(Default)]
struct Table {
    files: HashMap<Box<[u8]>, Vec<Held>>,
    count: usize,
}

impl Table {
    fn conflict(&self, lock: &Lock<'_>, exclusive: bool) -> Option<&Held> {
        self.files
            .get(lock.fh)?
            .iter()
            .find(|h| !lock.is_owner(&h.owner) && h.overlaps(lock.start, lock.end) && (exclusive || h.exclusive))
    }

    /// Frees the owner's part of the range, splitting locks that reach past it.
    fn unlock(&mut self, lock: &Lock<'_>) {
        let Some(held) = self.files.get_mut(lock.fh) else { return };
        if !held.iter().any(|h| lock.is_owner(&h.owner) && h.overlaps(lock.start, lock.end)) {
            return;
        }
        let before = held.len();
        let mut kept = Vec::with_capacity(held.len());
        for h in held.drain(..) {
            if !lock.is_owner(&h.owner) || !h.overlaps(lock.start, lock.end) {
                kept.push(h);
                continue;
            }
            if h.start < lock.start {
                kept.push(Held { end: lock.start, ..h.clone() });
            }
            if lock.end < h.end {
                kept.push(Held { start: lock.end, ..h });
            }
        }
        self.count = self.count + kept.len() - before;
        if kept.is_empty() {
            self.files.remove(lock.fh);
        } else {
            *held = kept;
        }
    }

    fn lock(&mut self, lock: &Lock<'_>, exclusive: bool, block: bool) -> Stat {
        if self.conflict(lock, exclusive).is_some() {
            return if block { Stat::Blocked } else { Stat::Denied };
        }
        // The new lock replaces whatever this owner held of the range (POSIX semantics: a
        // shared lock can be upgraded, an exclusive one downgraded, in place).
        self.unlock(lock);
        if self.count >= MAX_LOCKS {
            return Stat::DeniedNolocks;
        }
        let held = Held { owner: lock.owner(), exclusive, start: lock.start, end: lock.end };
        self.files.entry(lock.fh.into()).or_default().push(held);
        self.count += 1;
        Stat::Granted
    }

    fn free_all(&mut self, host: &[u8]) {
        let mut count = 0;
        self.files.retain(|_, held| {
            held.retain(|h| *h.owner.host != *host);
            count += held.len();
            !held.is_empty()
        });
        self.count = count;
    }
}

/// The lock manager and the status monitor's NOTIFY.
#[derive(Default)]
pub struct LockManager {
    table: Mutex<Table>,
}

impl LockManager {
    /// An empty lock table.
    pub fn new() -> Self {
        LockManager::default()
    }

    /// Locks held now.
    pub fn held(&self) -> usize {
        self.with_table(|t| t.count)
    }

    fn with_table<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        // A panic cannot happen while the table is held (no call in there panics), so a
        // poisoned lock still guards a consistent table.
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut table)
    }

    /// Answers one call to program 100021.
    pub fn nlm(&self, call: &ProgramCall<'_>) -> ProgramReply {
        if call.vers != NLM_VERSION {
            return ProgramReply::ProgMismatch { low: NLM_VERSION, high: NLM_VERSION };
        }
        let mut r = Reader::new(call.args);
        let result = match call.proc {
            0 => Ok(Vec::new()),
            1 => self.test(&mut r),
            2 | 22 => self.lock(&mut r),
            3 => cancel(&mut r),
            4 => self.unlock(&mut r),
            23 => self.forget_host(&mut r),
            _ => return ProgramReply::ProcUnavail,
        };
        finish(result, &r)
    }

    /// Answers one call to program 100024: NULL, and NOTIFY (a monitored host restarted:
    /// its locks are gone).
    pub fn nsm(&self, call: &ProgramCall<'_>) -> ProgramReply {
        if call.vers != NSM_VERSION {
            return ProgramReply::ProgMismatch { low: NSM_VERSION, high: NSM_VERSION };
        }
        let mut r = Reader::new(call.args);
        let result = match call.proc {
            0 => Ok(Vec::new()),
            6 => self.forget_host(&mut r),
            _ => return ProgramReply::ProcUnavail,
        };
        finish(result, &r)
    }

    /// NLM's FREE_ALL (an `nlm4_notify`) and NSM's NOTIFY (a `stat_chge`) have the same
    /// arguments, a host name and its new state, and the same meaning here: the host restarted,
    /// so it holds no locks.
    fn forget_host(&self, r: &mut Reader<'_>) -> Result<Vec<u8>, Garbage> {
        let (name, _state) = (r.opaque(MAX_NAME)?, r.i32()?);
        self.with_table(|t| t.free_all(name));
        Ok(Vec::new())
    }

    fn test(&self, r: &mut Reader<'_>) -> Result<Vec<u8>, Garbage> {
        let (cookie, exclusive, lock) = (r.opaque(MAX_NETOBJ)?, r.bool()?, Lock::read(r)?);
        let mut w = Writer::new();
        w.opaque(cookie);
        self.with_table(|t| match t.conflict(&lock, exclusive) {
            None => {
                w.u32(Stat::Granted as u32);
            }
            Some(h) => {
                let len = if h.end == u64::MAX { 0 } else { h.end - h.start };
                w.u32(Stat::Denied as u32).bool(h.exclusive).i32(h.owner.svid).opaque(&h.owner.oh);
                w.u64(h.start).u64(len);
            }
        });
        Ok(w.finish())
    }

    fn lock(&self, r: &mut Reader<'_>) -> Result<Vec<u8>, Garbage> {
        let (cookie, block, exclusive) = (r.opaque(MAX_NETOBJ)?, r.bool()?, r.bool()?);
        let lock = Lock::read(r)?;
        let (_reclaim, _state) = (r.bool()?, r.i32()?);
        let stat = self.with_table(|t| t.lock(&lock, exclusive, block));
        Ok(res(cookie, stat))
    }

    fn unlock(&self, r: &mut Reader<'_>) -> Result<Vec<u8>, Garbage> {
        let (cookie, lock) = (r.opaque(MAX_NETOBJ)?, Lock::read(r)?);
        self.with_table(|t| t.unlock(&lock));
        Ok(res(cookie, Stat::Granted))
    }
}

fn cancel(r: &mut Reader<'_>) -> Result<Vec<u8>, Garbage> {
    let (cookie, _block, _exclusive) = (r.opaque(MAX_NETOBJ)?, r.bool()?, r.bool()?);
    Lock::read(r)?;
    Ok(res(cookie, Stat::Granted))
}

/// An nlm4_res.
fn res(cookie: &[u8], stat: Stat) -> Vec<u8> {
    Writer::new().opaque(cookie).u32(stat as u32).finish()
}

fn finish(result: Result<Vec<u8>, Garbage>, r: &Reader<'_>) -> ProgramReply {
    match result.and_then(|bytes| r.end().map(|()| bytes)) {
        Ok(bytes) => ProgramReply::Success(bytes),
        Err(Garbage) => ProgramReply::GarbageArgs,
    }
}

#[cfg(test)]
mod tests {
    use nfs3_server::programs::Transport;

    use super::*;

    struct Args<'a> {
        host: &'a str,
        svid: i32,
        fh: &'a [u8],
        offset: u64,
        len: u64,
    }

    fn alock(w: &mut Writer, a: &Args<'_>) {
        w.opaque(a.host.as_bytes()).opaque(a.fh).opaque(format!("oh-{}", a.svid).as_bytes());
        w.i32(a.svid).u64(a.offset).u64(a.len);
    }

    fn call(m: &LockManager, prog: u32, proc: u32, args: &[u8]) -> ProgramReply {
        let c = ProgramCall {
            prog,
            vers: if prog == NLM_PROGRAM { 4 } else { 1 },
            proc,
            args,
            client: "127.0.0.1:800".parse().unwrap(),
            local: "127.0.0.1:2049".parse().unwrap(),
            transport: Transport::Tcp,
            auth: None,
        };
        if prog == NLM_PROGRAM { m.nlm(&c) } else { m.nsm(&c) }
    }

    /// The stat of an nlm4_res or nlm4_testres whose cookie is "c".
    fn stat(reply: ProgramReply) -> u32 {
        let ProgramReply::Success(bytes) = reply else { panic!("{reply:?}") };
        let mut r = Reader::new(&bytes);
        assert_eq!(r.opaque(8).unwrap(), b"c");
        r.u32().unwrap()
    }

    fn lock(m: &LockManager, a: &Args<'_>, exclusive: bool, block: bool) -> u32 {
        let mut w = Writer::new();
        w.opaque(b"c").bool(block).bool(exclusive);
        alock(&mut w, a);
        w.bool(false).i32(3);
        stat(call(m, NLM_PROGRAM, 2, &w.finish()))
    }

    fn test(m: &LockManager, a: &Args<'_>, exclusive: bool) -> u32 {
        let mut w = Writer::new();
        w.opaque(b"c").bool(exclusive);
        alock(&mut w, a);
        stat(call(m, NLM_PROGRAM, 1, &w.finish()))
    }

    fn unlock(m: &LockManager, a: &Args<'_>) -> u32 {
        let mut w = Writer::new();
        w.opaque(b"c");
        alock(&mut w, a);
        stat(call(m, NLM_PROGRAM, 4, &w.finish()))
    }

    const F: &[u8] = b"file-1";

    fn a(host: &'static str, svid: i32, offset: u64, len: u64) -> Args<'static> {
        Args { host, svid, fh: F, offset, len }
    }

    #[test]
    fn shared_locks_coexist_and_exclusive_ones_exclude() {
        let m = LockManager::new();
        assert_eq!(lock(&m, &a("x", 1, 0, 0), false, false), 0);
        assert_eq!(lock(&m, &a("y", 2, 0, 0), false, false), 0, "two shared whole-file locks");
        assert_eq!(lock(&m, &a("y", 3, 10, 5), true, false), 1, "exclusive over shared: DENIED");
        assert_eq!(lock(&m, &a("y", 3, 10, 5), true, true), 3, "BLOCKED when the caller waits");
        assert_eq!(test(&m, &a("z", 4, 0, 1), true), 1);
        assert_eq!(test(&m, &a("z", 4, 0, 1), false), 0);
        unlock(&m, &a("x", 1, 0, 0));
        unlock(&m, &a("y", 2, 0, 0));
        assert_eq!(m.held(), 0);
        assert_eq!(lock(&m, &a("y", 3, 10, 5), true, false), 0);
        assert_eq!(lock(&m, &a("x", 1, 0, 10), true, false), 0, "adjacent, not overlapping");
        assert_eq!(lock(&m, &a("x", 1, 14, 1), false, false), 1);
        assert_eq!(lock(&m, &a("x", 1, 15, 1), true, false), 0);
        let other = Args { fh: b"file-2", ..a("x", 9, 0, 0) };
        assert_eq!(lock(&m, &other, true, false), 0, "another file");
    }

    #[test]
    fn an_owner_relocks_and_unlocks_parts_of_its_ranges() {
        let m = LockManager::new();
        assert_eq!(lock(&m, &a("x", 1, 0, 100), false, false), 0);
        assert_eq!(lock(&m, &a("x", 1, 0, 100), true, false), 0, "upgrade in place");
        assert_eq!(m.held(), 1);
        unlock(&m, &a("x", 1, 40, 10));
        assert_eq!(m.held(), 2, "split around the hole");
        assert_eq!(lock(&m, &a("y", 2, 40, 10), true, false), 0, "the hole is free");
        assert_eq!(lock(&m, &a("y", 2, 39, 1), false, false), 1);
        assert_eq!(lock(&m, &a("y", 2, 50, 1), false, false), 1);
        assert_eq!(test(&m, &a("x", 1, 0, 0), true), 1, "y's hole lock conflicts with x's test");
        let mut w = Writer::new();
        w.opaque(b"c").bool(true);
        alock(&mut w, &a("z", 7, 45, 0));
        let ProgramReply::Success(bytes) = call(&m, NLM_PROGRAM, 1, &w.finish()) else { panic!() };
        let mut r = Reader::new(&bytes);
        r.opaque(8).unwrap();
        assert_eq!(r.u32(), Ok(1));
        assert!(r.bool().unwrap(), "holder is exclusive");
        let svid = r.i32().unwrap();
        assert!(svid == 1 || svid == 2);
        r.opaque(8).unwrap();
        let (offset, len) = (r.u64().unwrap(), r.u64().unwrap());
        assert!((offset, len) == (0, 40) || (offset, len) == (40, 10) || (offset, len) == (50, 50));
        r.end().unwrap();
    }

    #[test]
    fn a_rebooted_client_loses_its_locks() {
        let m = LockManager::new();
        assert_eq!(lock(&m, &a("x", 1, 0, 0), true, false), 0);
        assert_eq!(lock(&m, &Args { fh: b"f2", ..a("x", 2, 0, 0) }, true, false), 0);
        assert_eq!(lock(&m, &a("y", 1, 0, 0), true, false), 1);
        let notify = Writer::new().opaque(b"x").i32(5).finish();
        assert_eq!(call(&m, NSM_PROGRAM, 6, &notify), ProgramReply::Success(Vec::new()));
        assert_eq!(m.held(), 0);
        assert_eq!(lock(&m, &a("y", 1, 0, 0), true, false), 0);
        assert_eq!(
            call(&m, NLM_PROGRAM, 23, &Writer::new().opaque(b"y").i32(1).finish()),
            ProgramReply::Success(Vec::new())
        );
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn ranges_past_the_end_of_u64_reach_eof() {
        let m = LockManager::new();
        assert_eq!(lock(&m, &a("x", 1, u64::MAX - 1, 10), true, false), 0);
        assert_eq!(lock(&m, &a("y", 1, 1 << 63, 0), true, false), 1);
    }

    #[test]
    fn bad_calls_get_rpc_errors() {
        let m = LockManager::new();
        assert_eq!(call(&m, NLM_PROGRAM, 2, &[0, 0, 0, 1]), ProgramReply::GarbageArgs);
        assert_eq!(call(&m, NLM_PROGRAM, 7, &[]), ProgramReply::ProcUnavail, "LOCK_MSG");
        assert_eq!(call(&m, NSM_PROGRAM, 2, &[]), ProgramReply::ProcUnavail, "MON");
        let big_fh = Args { fh: &[1; 65], ..a("x", 1, 0, 0) };
        let mut w = Writer::new();
        w.opaque(b"c").bool(false).bool(true);
        alock(&mut w, &big_fh);
        w.bool(false).i32(0);
        assert_eq!(call(&m, NLM_PROGRAM, 2, &w.finish()), ProgramReply::GarbageArgs);
        let mut w = Writer::new();
        w.opaque(b"c");
        alock(&mut w, &a("x", 1, 0, 0));
        let mut trailing = w.finish();
        trailing.extend_from_slice(&[0; 4]);
        assert_eq!(call(&m, NLM_PROGRAM, 4, &trailing), ProgramReply::GarbageArgs);
        let wrong = ProgramCall {
            prog: NLM_PROGRAM,
            vers: 3,
            proc: 0,
            args: &[],
            client: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
            transport: Transport::Udp,
            auth: None,
        };
        assert_eq!(m.nlm(&wrong), ProgramReply::ProgMismatch { low: 4, high: 4 });
    }

    #[test]
    fn the_table_is_bounded() {
        let m = LockManager::new();
        let fhs: Vec<[u8; 8]> = (0..MAX_LOCKS as u64).map(u64::to_be_bytes).collect();
        for fh in &fhs {
            assert_eq!(lock(&m, &Args { fh, ..a("x", 1, 0, 1) }, false, false), 0);
        }
        assert_eq!(lock(&m, &a("x", 1, 0, 1), false, false), 2, "DENIED_NOLOCKS");
        let first = Args { fh: &fhs[0], ..a("x", 1, 0, 1) };
        assert_eq!(lock(&m, &first, true, false), 0, "relocking a held range needs no room");
    }
}
