//! `crfs nfs` mounted by the real Linux kernel NFS client: Debian's own kernel
//! (linux-image-amd64) booted once under qemu with a small initramfs that
//! `testdata/kernel-nfs/build-guest.sh` builds at test time (busybox, the NFS client modules,
//! util-linux mount, nfs-common's mount.nfs and rpc.statd, rpcbind, and the host's GNU ls,
//! find, stat, sha256sum and flock). The guest reaches the host's 127.0.0.1 as 10.0.2.2 through
//! qemu's user-mode network, so `crfs nfs` runs here on 127.0.0.1:2049 (and, with the standard
//! ports, its portmapper on 111: hence root). The host drives the guest over a second serial
//! port, one shell script at a time (the protocol is in testdata/kernel-nfs/init.sh; the guest's driver is
//! `crfs_testkit::guest`), and acts
//! between the steps: it restarts crfs, serves another blob, starts a registry.
//!
//! Cases, each reported on its own (PASS/FAIL/SKIP) before the test fails on any failure:
//! - the guest's command port answers every command while orphaned processes exit (the
//!   test's own plumbing: see `command_port_survives_orphans`);
//! - explicit ports (`-o vers=3,proto=tcp,port=2049,mountport=2049,mountproto=tcp,nolock`
//!   against `crfs nfs --listen 127.0.0.1:2049`): the all-types and many fixtures equal their
//!   reference listings (every lstat field but xattrs, which NFSv3 does not carry; sha256 of
//!   every file; symlink targets; device numbers; hardlinks share an inode); `ls -lR` and `find`
//!   print what they print on a FUSE mount of the same blob on the host; a 5,000-name
//!   directory lists each name once; writes get EROFS (opening an existing file for writing:
//!   EACCES, as crfs's ACCESS replies grant no write); flock is local under `nolock`; a
//!   restart of crfs while the guest reads through held handles (an open file, a working
//!   directory) gives no error and no wrong byte; a server of another layer answers those
//!   handles with ESTALE; the /crfs namespace resolves an image of a loopback docker-registry
//!   on lookup;
//! - the standard ports (`crfs nfs BLOB` without `--listen`): `rpcinfo 10.0.2.2` lists
//!   the portmapper, NFS v3, MOUNT, NLM v4 and NSM on 2049, and no NFSv4 or NFS over UDP; the literal lines
//!   people type, `mount -t nfs 10.0.2.2:/ /mnt` (with rpcbind and rpc.statd running in the
//!   guest), `-o vers=3` and `-o nolock`, mount and read; flock through NLM without `nolock`
//!   (returns at once, shared and exclusive locks conflict between two processes as flock's
//!   do), and locally with `nolock`. The guest sits behind qemu's NAT, so nothing on the host
//!   can call it back (NLM_GRANTED for a lock that had to wait is not tested).
//!
//! Needs root, qemu-system-x86_64, apt-get (the guest's .debs, cached in
//! target/kernel-nfs-guest/debs or $CRFS_VM_DEBS), binutils, /dev/fuse, docker-registry and
//! skopeo, and Go for the 5,000-name directory's blob. Locally a missing piece skips (the whole
//! test, or the one case); with CI=true it fails. $CRFS_VM_ACCEL picks qemu's accelerator
//! (default: kvm, then tcg when kvm runs no guest). The whole run takes a few minutes under
//! TCG.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "../../nfs/tests/support/bigdir.rs"]
mod bigdir;
#[path = "../../remote/tests/common/mod.rs"]
mod common;
mod mounted;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::net::TcpStream;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crfs_testkit::guest::{self, Guest, Ran};
use crfs_testkit::{assert_same_listing, escape, is_root, need, scratch_dir, testdata};

/// The explicit options that work without a portmapper: one port for MOUNT and NFS, no locks.
const EXPLICIT: &str = "vers=3,proto=tcp,port=2049,mountport=2049,mountproto=tcp,nolock";

fn fixture(name: &str) -> PathBuf {
    testdata().join("fixtures").join(name)
}

// ---------------------------------------------------------------------------------------------
// The guest.

// ---------------------------------------------------------------------------------------------
// crfs nfs on the host.

struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// `crfs nfs ARGS`, once it answers on 127.0.0.1:2049 or has printed its mount commands.
    fn start(args: &[&OsStr], log: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crfs"))
            .arg("nfs")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("crfs nfs {args:?} exited with {status}: {}", fs::read_to_string(log).unwrap_or_default());
            }
            if TcpStream::connect(("127.0.0.1", 2049)).is_ok()
                || fs::read_to_string(log).is_ok_and(|l| l.contains("Linux:"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "crfs nfs {args:?} did not start: {}", fs::read_to_string(log).unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, log: log.to_path_buf() }
    }

    /// SIGTERM; crfs must exit 0.
    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                assert!(status.success(), "crfs nfs exited with {status}: {log}");
                return;
            }
            assert!(Instant::now() < deadline, "crfs nfs did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Today's way: one port for MOUNT and NFS.
fn explicit(source: &[&OsStr], log: &Path) -> Server {
    let mut args: Vec<&OsStr> = vec!["--listen".as_ref(), "127.0.0.1:2049".as_ref()];
    args.extend_from_slice(source);
    Server::start(&args, log)
}

// ---------------------------------------------------------------------------------------------
// Listings.

/// The fixture's reference listing without the xattr field (NFSv3 has no xattrs).
fn reference(list: &str) -> String {
    let text = fs::read_to_string(fixture(list)).unwrap();
    text.lines().map(|l| format!("{}\t-\n", l.rsplit_once('\t').unwrap().0)).collect()
}

fn unhex(s: &str) -> u32 {
    u32::from_str_radix(s, 16).unwrap()
}

/// The canonical listing (testdata/interop's format, xattrs `-`) of the guest's `dir`, from
/// GNU find, stat and sha256sum there; also each hardlinked file's inode, by path.
fn guest_listing(g: &mut Guest, dir: &str) -> (String, BTreeMap<String, u64>) {
    let split = |ran: Ran| -> Vec<Vec<u8>> {
        assert_eq!(ran.rc, 0, "{}", ran.err);
        ran.out.split(|b| *b == 0).filter(|r| !r.is_empty()).map(<[u8]>::to_vec).collect()
    };
    let rel = |p: &[u8]| -> Vec<u8> {
        let p = p.strip_prefix(b".").unwrap();
        p.strip_prefix(b"/").unwrap_or(p).to_vec()
    };
    let stats = split(
        g.run(&format!("cd {dir} && /gnu/find . -exec /gnu/stat --printf '%f %u %g %s %Y %h %t %T %i %n\\0' {{}} +")),
    );
    let sums = split(g.run(&format!("cd {dir} && /gnu/find . -type f -exec /gnu/sha256sum -z {{}} +")));
    let links = split(g.run(&format!("cd {dir} && /gnu/find . -type l -printf '%p\\0%l\\0'")));
    let sha: BTreeMap<Vec<u8>, String> =
        sums.iter().map(|r| (rel(&r[66..]), String::from_utf8(r[..64].to_vec()).unwrap())).collect();
    let target: BTreeMap<Vec<u8>, Vec<u8>> = links.chunks(2).map(|c| (rel(&c[0]), c[1].clone())).collect();
    let mut lines = Vec::new();
    let mut inodes = BTreeMap::new();
    for r in stats {
        let mut f = r.splitn(10, |b| *b == b' ');
        let mut field = || String::from_utf8(f.next().unwrap().to_vec()).unwrap();
        let (mode, uid, gid, size, mtime, nlink, major, minor, ino) =
            (unhex(&field()), field(), field(), field(), field(), field(), field(), field(), field());
        let path = rel(f.next().unwrap());
        let kind = match mode & 0o170_000 {
            0o040_000 => "dir",
            0o100_000 => "reg",
            0o120_000 => "symlink",
            0o020_000 => "char",
            0o060_000 => "block",
            0o010_000 => "fifo",
            _ => "other",
        };
        let size = if matches!(kind, "reg" | "symlink") { size } else { "0".into() };
        let nlink_field = if kind == "dir" { "-".into() } else { nlink.clone() };
        let link = target.get(&path).map_or("-".into(), |t| escape(t));
        let dev =
            if matches!(kind, "char" | "block") { format!("{},{}", unhex(&major), unhex(&minor)) } else { "-".into() };
        let sum = sha.get(&path).cloned().unwrap_or_else(|| "-".into());
        let shown = if path.is_empty() { ".".to_string() } else { escape(&path) };
        if kind == "reg" && nlink != "1" {
            inodes.insert(shown.clone(), ino.parse().unwrap());
        }
        lines.push(format!(
            "{shown}\t{kind}\t{:04o}\t{uid}\t{gid}\t{size}\t{mtime}\t{nlink_field}\t{link}\t{dev}\t{sum}\t-",
            mode & 0o7777
        ));
    }
    lines.sort();
    (lines.iter().map(|l| format!("{l}\n")).collect(), inodes)
}

/// Hardlinked files (nlink > 1) grouped the way a reference listing groups them: same
/// content, mode, owner, mtime and link count.
fn reference_link_groups(listing: &str) -> BTreeSet<Vec<String>> {
    let mut groups: BTreeMap<Vec<&str>, Vec<String>> = BTreeMap::new();
    for l in listing.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f[1] == "reg" && f[7] != "1" {
            groups.entry(vec![f[2], f[3], f[4], f[6], f[7], f[10]]).or_default().push(f[0].to_string());
        }
    }
    groups.into_values().collect()
}

fn inode_groups(inodes: &BTreeMap<String, u64>) -> BTreeSet<Vec<String>> {
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (path, ino) in inodes {
        groups.entry(*ino).or_default().push(path.clone());
    }
    groups.into_values().collect()
}

/// The guest's listing of `dir` equals the reference `list`, hardlinks included.
fn assert_tree(g: &mut Guest, dir: &str, list: &str) {
    let want = reference(list);
    let (got, inodes) = guest_listing(g, dir);
    assert_same_listing(&format!("kernel NFS client, {list}"), &got, &want);
    assert_eq!(inode_groups(&inodes), reference_link_groups(&want), "hardlinks share one inode");
}

/// `ls -lR` and `find` as run on both sides (the same GNU binaries): the program and its
/// arguments, for the C locale with numeric owners and times in seconds.
const LS_LR: [&str; 2] = ["ls", "-lnR --time-style=+%s ."];
const FIND: [&str; 2] = ["find", ". -printf '%y %M %n %U %G %s %T@ %i %p -> %l\\n'"];

fn host_output(dir: &Path, cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// Files of `list` with plain names (sha256sum -c needs no escapes for them), as
/// `HASH  ./PATH` lines.
fn sums_file(list: &str) -> String {
    reference(list)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1] == "reg" && !f[0].contains('%')).then(|| format!("{}  ./{}\n", f[10], f[0]))
        })
        .collect()
}

/// Reads through held handles while the host restarts crfs (same blob): no error, no wrong
/// byte, and reads go on after the restart.
fn restart_while_reading(g: &mut Guest, scratch: &Path, server: &mut Option<Server>, blob: &Path) {
    let sums = sums_file("all-types.esgz.list");
    assert!(sums.lines().count() > 20, "{sums}");
    let small = "./files/small.txt";
    let small_sha = sums.lines().find(|l| l.ends_with(small)).unwrap().split(' ').next().unwrap().to_string();
    let hard_sha = sums.lines().find(|l| l.ends_with("./links/hard1")).unwrap().split(' ').next().unwrap().to_string();
    g.ok(&format!(
        "rm -f /tmp/stop /tmp/bad /tmp/rounds /tmp/done
cat > /tmp/sums <<'EOF'
{sums}EOF
cat > /tmp/reader.sh <<'EOF'
cd /mnt/a/files || exit 1
exec 4< /mnt/a/links/hard1
n=0
while [ ! -e /tmp/stop ]; do
    echo 3 > /proc/sys/vm/drop_caches
    (cd /mnt/a && /gnu/sha256sum --quiet -c /tmp/sums) >> /tmp/bad 2>&1 || echo \"round $n: a file read wrong\" >> /tmp/bad
    s=$(/gnu/sha256sum < small.txt 2>> /tmp/bad)
    [ \"$s\" = '{small_sha}  -' ] || echo \"round $n: small.txt in the working directory: $s\" >> /tmp/bad
    s=$(/gnu/sha256sum < /proc/self/fd/4 2>> /tmp/bad)
    [ \"$s\" = '{hard_sha}  -' ] || echo \"round $n: the open file: $s\" >> /tmp/bad
    n=$((n + 1))
    echo $n > /tmp/rounds
done
echo $n > /tmp/done
EOF
touch /tmp/bad
setsid sh /tmp/reader.sh > /tmp/reader.log 2>&1 &"
    ));
    let rounds = |g: &mut Guest| -> u64 { g.ok("cat /tmp/rounds 2>/dev/null || echo 0").trim().parse().unwrap() };
    let wait_rounds = |g: &mut Guest, n: u64| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while rounds(g) < n {
            assert!(Instant::now() < deadline, "the reader did not get to round {n}: {}", g.ok("cat /tmp/bad"));
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    wait_rounds(g, 2);
    server.take().unwrap().stop();
    let at_stop = rounds(g);
    std::thread::sleep(Duration::from_secs(2));
    *server = Some(explicit(&[blob.as_os_str()], &scratch.join("crfs-restarted.log")));
    wait_rounds(g, at_stop + 3);
    g.ok("touch /tmp/stop; wait-for /tmp/done 60");
    let bad = g.ok("cat /tmp/bad /tmp/reader.log");
    assert!(bad.is_empty(), "reads across the restart:\n{bad}");
    let kernel = g.ok("dmesg | grep -e 'nfs:' -e 'lockd:' || true");
    eprintln!("guest: {} rounds of reads, {at_stop} before the restart; kernel said: {kernel}", rounds(g));
}

/// A file held open and a working directory from one layer, then crfs serves another: both
/// answer ESTALE, and no byte of the other layer comes back.
fn another_layer_is_stale(g: &mut Guest, scratch: &Path, server: &mut Option<Server>) {
    g.ok("touch /tmp/stop; rm -f /tmp/go /tmp/held /tmp/st.*
cat > /tmp/holder.sh <<'EOF'
cd /mnt/a/escape || exit 1
exec 5< /mnt/a/dotted/file.txt
touch /tmp/held
while [ ! -e /tmp/go ]; do sleep 0.2; done
echo 3 > /proc/sys/vm/drop_caches
/gnu/cat <&5 > /tmp/st.read 2> /tmp/st.readerr
echo $? > /tmp/st.readrc
/gnu/ls . > /tmp/st.ls 2> /tmp/st.lserr
echo $? > /tmp/st.lsrc
EOF
setsid sh /tmp/holder.sh > /tmp/holder.log 2>&1 &
wait-for /tmp/held 30 || { cat /tmp/holder.log; exit 1; }");
    server.take().unwrap().stop();
    *server = Some(explicit(&[fixture("many.esgz").as_os_str()], &scratch.join("crfs-many.log")));
    g.ok("touch /tmp/go; wait-for /tmp/st.lsrc 60");
    let report = g.ok("for f in /tmp/st.* /tmp/holder.log; do echo \"== $f\"; cat $f; done");
    let mut file = |name: &str| g.ok(&format!("cat /tmp/st.{name}"));
    assert_ne!(file("readrc").trim(), "0", "{report}");
    assert!(file("readerr").contains("Stale file handle"), "{report}");
    assert_eq!(file("read"), "", "{report}");
    assert_ne!(file("lsrc").trim(), "0", "{report}");
    assert!(file("lserr").contains("Stale file handle"), "{report}");
}

fn writes_get_erofs(g: &mut Guest, dir: &str) {
    let before = g.ok(&format!("/gnu/sha256sum {dir}/files/small.txt"));
    // What reaches the server as a change gets NFS3ERR_ROFS, EROFS in the guest.
    for (what, cmd) in [
        ("create", format!("echo x > {dir}/files/new.txt")),
        ("mkdir", format!("mkdir {dir}/files/newdir")),
        ("chmod", format!("chmod 600 {dir}/files/small.txt")),
        ("touch", format!("touch {dir}/files/small.txt")),
        ("rm", format!("rm {dir}/files/small.txt")),
        ("rename", format!("mv {dir}/files/small.txt {dir}/files/moved.txt")),
        ("symlink", format!("ln -s x {dir}/files/newlink")),
        ("link", format!("ln {dir}/files/small.txt {dir}/files/newhard")),
    ] {
        let ran = g.run(&cmd);
        assert_ne!(ran.rc, 0, "{what}: `{cmd}` succeeded");
        assert!(ran.err.contains("Read-only file system"), "{what}: `{cmd}`: {}", ran.err);
    }
    // Opening an existing file for writing stops at open: crfs's ACCESS replies grant no
    // write bits (as knfsd's do for a read-only export), so the client says EACCES itself
    // before any byte could be taken; EROFS would do as well.
    for (what, cmd) in [
        ("truncate", format!("echo x > {dir}/files/small.txt")),
        ("append", format!("echo x >> {dir}/files/small.txt")),
    ] {
        let ran = g.run(&cmd);
        assert_ne!(ran.rc, 0, "{what}: `{cmd}` succeeded");
        assert!(
            ran.err.contains("Permission denied") || ran.err.contains("Read-only file system"),
            "{what}: `{cmd}`: {}",
            ran.err
        );
    }
    assert_eq!(g.ok(&format!("/gnu/sha256sum {dir}/files/small.txt")), before);
    let names = g.ok(&format!("ls -a {dir}/files"));
    for gone in ["new.txt", "newdir", "moved.txt", "newlink", "newhard"] {
        assert!(!names.lines().any(|n| n == gone), "{gone} appeared: {names}");
    }
}

/// flock(1) on a file of `dir`: `-n` returns at once with success; an exclusive lock held by
/// one process refuses both kinds to another, a shared one admits shared and refuses
/// exclusive; released, the file locks again.
fn flock_behaves(g: &mut Guest, dir: &str) {
    let file = format!("{dir}/files/small.txt");
    let started = Instant::now();
    let ran = g.run_for(&format!("run-watched 20 /gnu/flock -n {file} true"), Duration::from_secs(40));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(ran.rc, 0, "flock -n {file}: exit {} after {secs:.1} s: {}", ran.rc, ran.err);
    assert!(secs < 10.0, "flock -n took {secs:.1} s");
    // The exit status of a non-blocking flock(1) of `kind`; one that hangs fails here, with
    // run-watched's report of where it waits.
    let try_lock = |g: &mut Guest, kind: &str| -> i32 {
        let ran = g.run_for(&format!("run-watched 20 /gnu/flock -n {kind} -E 7 {file} true"), Duration::from_secs(40));
        assert_ne!(ran.rc, 125, "flock -n {kind} {file} hung: {}", ran.err);
        ran.rc
    };
    for (held, shared_rc, exclusive_rc) in [("-x", 7, 7), ("-s", 0, 7)] {
        g.ok(&format!(
            "rm -f /tmp/held /tmp/release
setsid /gnu/flock {held} {file} sh -c 'touch /tmp/held; while [ ! -e /tmp/release ]; do sleep 0.1; done' > /tmp/flock.log 2>&1 &
wait-for /tmp/held 20 || {{ cat /tmp/flock.log; exit 1; }}"
        ));
        assert_eq!(try_lock(g, "-s"), shared_rc, "a shared lock while another process holds {held}");
        assert_eq!(try_lock(g, "-x"), exclusive_rc, "an exclusive lock while another process holds {held}");
        // The holder exits within a second on a quiet host; a loaded one running the guest
        // under TCG can take many. Up to 60 s, then fail here rather than in the next check.
        g.ok("touch /tmp/release; n=0; while pgrep -f '/gnu/flock' > /dev/null && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done; ! pgrep -f '/gnu/flock' > /dev/null");
        // Once the holder is gone the lock is free; a descendant still closing its copy of
        // the descriptor may keep it a moment longer, so ask again for up to 30 s.
        let freed = g.run_for(
            &format!(
                "n=0
while :; do
    run-watched 20 /gnu/flock -n -x -E 7 {file} true
    rc=$?
    [ $rc = 7 ] || exit $rc
    [ $n -lt 60 ] || exit 7
    sleep 0.5
    n=$((n + 1))
done"
            ),
            // 60 tries take 30 s on a quiet host; under TCG on a loaded one each flock(1) can
            // take a second or more to start (seen: more than 60 s in all).
            Duration::from_secs(150),
        );
        assert_eq!(freed.rc, 0, "an exclusive lock once {held} is released: {}", freed.err);
    }
}

/// Orphaned processes (daemons, background jobs, busybox timeout's watcher) go to the guest's
/// PID 1, and each exit sends it a SIGCHLD. When PID 1 itself read the commands, a SIGCHLD
/// during a line made busybox sh drop the line's start, and the command was never answered
/// (2 of 9 CI runs lost a flock case that way). Each command here leaves an orphan that exits
/// while the next, long, line arrives.
fn command_port_survives_orphans(g: &mut Guest) {
    let padding = "x".repeat(2000);
    for i in 0..20 {
        let ran =
            g.run_for(&format!("setsid sh -c 'sleep 0.0{}' &\n: {padding}\necho {i}", i % 10), Duration::from_secs(30));
        assert_eq!((ran.rc, ran.text()), (0, format!("{i}\n")), "{}", ran.err);
    }
}

/// The 5,000-name directory: each name once, link counts, a few contents.
fn big_directory(g: &mut Guest, dir: &str) {
    let out = g.ok(&format!("/gnu/find {dir}/big -mindepth 1 -printf '%f %n %s\\n'"));
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        *seen.entry(f[0]).or_default() += 1;
        let index: usize = f[0][1..5].parse().unwrap();
        let links = if index.is_multiple_of(bigdir::LINK_EVERY) { "2" } else { "1" };
        assert_eq!(f[1], links, "{line}");
        assert_eq!(f[2], bigdir::content(f[0]).len().to_string(), "{line}");
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "listed more than once: {twice:?}");
    let want = bigdir::names();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), want.iter().map(String::as_str).collect::<Vec<_>>());
    // `ls -f` (readdir order, no stat) agrees.
    let ls = g.ok(&format!("/gnu/ls -f {dir}/big"));
    let mut names: Vec<&str> = ls.lines().filter(|n| *n != "." && *n != "..").collect();
    names.sort_unstable();
    assert_eq!(names.len(), bigdir::ENTRIES, "ls -f");
    assert_eq!(names, want.iter().map(String::as_str).collect::<Vec<_>>(), "ls -f");
    for name in ["f0000", "f0000.link", "f4749", "f4749.link", "f4999"] {
        if want.iter().any(|w| w == name) {
            assert_eq!(g.ok(&format!("cat {dir}/big/{name}")).as_bytes(), bigdir::content(name), "{name}");
        }
    }
    let inodes = g.ok(&format!("/gnu/stat -c %i {dir}/big/f0250 {dir}/big/f0250.link"));
    let inodes: Vec<&str> = inodes.lines().collect();
    assert_eq!(inodes[0], inodes[1], "a hardlink shares its target's inode");
}

/// An image of a loopback docker-registry through the /crfs namespace, looked up on demand.
fn namespace_image(g: &mut Guest, scratch: &Path, server: &mut Option<Server>) {
    let (reg, _pushed) = common::registry_with_image("kernel-nfs", false);
    let cache = scratch.join("ns-cache");
    drop(server.take());
    *server = Some(explicit(&["--cache-dir".as_ref(), cache.as_os_str()], &scratch.join("crfs-namespace.log")));
    g.mount(&format!("-o {EXPLICIT}"), "/mnt/n");
    let root = g.ok("ls /mnt/n");
    assert_eq!(root, "README\nimage\nlayer\n");
    let image = format!("/mnt/n/image/{}/test/all-types:v1", reg.host());
    let top = g.ok(&format!("ls -a {image}/"));
    let want_top: Vec<String> = reference("all-types.esgz.list")
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|p| *p != "." && !p.contains('/') && !p.starts_with(".wh."))
        .map(str::to_string)
        .collect();
    let mut got_top: Vec<&str> = top.lines().filter(|n| *n != "." && *n != "..").collect();
    got_top.sort_unstable();
    assert_eq!(got_top, want_top, "the image's top level");
    assert_eq!(g.ok(&format!("cat {image}/files/small.txt")), "hello, world\n");
    // The whole image: the layer's listing with its whiteout files consumed.
    let (got, _) = guest_listing(g, &image);
    let want: String =
        reference("all-types.esgz.list").lines().filter(|l| !l.contains(".wh.")).map(|l| format!("{l}\n")).collect();
    let strip_root =
        |s: &str| -> String { s.lines().filter(|l| !l.starts_with(".\t")).map(|l| format!("{l}\n")).collect() };
    assert_same_listing("the namespace's image through the kernel client", &strip_root(&got), &strip_root(&want));
    g.umount("/mnt/n");
    drop(reg);
}

// ---------------------------------------------------------------------------------------------

struct Report {
    results: Vec<(String, Result<f64, String>)>,
}

impl Report {
    /// Runs one case; a panic is its failure, the next case still runs.
    fn case(&mut self, name: &str, f: impl FnOnce()) {
        eprintln!("--- {name}");
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(f)).map(|()| started.elapsed().as_secs_f64()).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        });
        self.results.push((name.to_string(), result));
    }

    fn skip(&mut self, name: &str, why: &str) {
        eprintln!("--- {name}: SKIPPED ({why})");
        self.results.push((name.to_string(), Ok(-1.0)));
    }
}

fn build_guest(scratch: &Path) -> Option<(PathBuf, PathBuf)> {
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/kernel-nfs-guest");
    let built = guest::build_guest(&out, &scratch.join("build-guest.log"));
    need(built.is_ok(), &format!("a guest built by build-guest.sh ({})", built.as_ref().err().map_or("", |e| e)))
        .then_some(built.ok())
        .flatten()
}

#[test]
fn the_kernel_nfs_client_mounts_reads_and_locks() {
    if !need(is_root(), "root (crfs binds ports 111 and 2049)")
        || !need(
            Command::new("qemu-system-x86_64").arg("--version").output().is_ok(),
            "qemu-system-x86_64 (package qemu-system-x86)",
        )
    {
        return;
    }
    let started = Instant::now();
    let scratch = scratch_dir("nfs-kernel");
    let Some((kernel, initrd)) = build_guest(&scratch) else { return };
    let mut g = Guest::boot(&scratch, &kernel, &initrd).unwrap_or_else(|e| panic!("the guest did not boot: {e}"));
    let mut report = Report { results: Vec::new() };
    report.case("guest: its command port survives orphans exiting while a command arrives", || {
        command_port_survives_orphans(&mut g);
    });
    let all_types = fixture("all-types.esgz");
    let mut server = Some(explicit(&[all_types.as_os_str()], &scratch.join("crfs-all-types.log")));

    // Explicit ports: what works without a portmapper.
    report.case("explicit: mount -o vers=3,proto=tcp,port=2049,mountport=2049,mountproto=tcp,nolock", || {
        let line = g.mount(&format!("-o {EXPLICIT}"), "/mnt/a");
        assert!(line.starts_with("10.0.2.2:/ /mnt/a nfs ") && line.contains("vers=3"), "{line}");
    });
    report.case("explicit: all-types equals the reference listing", || {
        assert_tree(&mut g, "/mnt/a", "all-types.esgz.list")
    });
    if need(Path::new("/dev/fuse").exists(), "/dev/fuse") {
        report.case("explicit: ls -lR and find agree with FUSE on the host", || {
            let fuse = mounted::Mounted::new(&[all_types.to_str().unwrap()], &scratch.join("fuse"));
            for [program, args] in [LS_LR, FIND] {
                let want = host_output(&fuse.1, &format!("LC_ALL=C {program} {args}"));
                let got = g.ok(&format!("cd /mnt/a && LC_ALL=C /gnu/{program} {args}"));
                assert_eq!(got, want, "`{program} {args}`: kernel NFS client (left) vs FUSE (right)");
            }
        });
    } else {
        report.skip("explicit: ls -lR and find agree with FUSE on the host", "no /dev/fuse");
    }
    report.case("explicit: writes get EROFS (opening for writing: EACCES)", || writes_get_erofs(&mut g, "/mnt/a"));
    report.case("explicit: flock is local with nolock", || flock_behaves(&mut g, "/mnt/a"));
    report.case("explicit: a restart while reading: no error, no wrong byte", || {
        restart_while_reading(&mut g, &scratch, &mut server, &all_types);
    });
    report
        .case("explicit: another layer's handles get ESTALE", || another_layer_is_stale(&mut g, &scratch, &mut server));
    g.umount("/mnt/a");
    report.case("explicit: many equals the reference listing", || {
        if server.is_none() {
            server = Some(explicit(&[fixture("many.esgz").as_os_str()], &scratch.join("crfs-many.log")));
        }
        g.mount(&format!("-o {EXPLICIT}"), "/mnt/m");
        assert_tree(&mut g, "/mnt/m", "many.esgz.list");
    });
    g.umount("/mnt/m");
    match bigdir::blob(&scratch) {
        Some(blob) => report.case("explicit: a 5,000-name directory lists each name once", || {
            drop(server.take());
            server = Some(explicit(&[blob.as_os_str()], &scratch.join("crfs-bigdir.log")));
            g.mount(&format!("-o {EXPLICIT}"), "/mnt/b");
            big_directory(&mut g, "/mnt/b");
        }),
        None => report.skip("explicit: a 5,000-name directory lists each name once", "no Go to build its blob"),
    }
    g.umount("/mnt/b");
    if common::have_tools() {
        report.case("explicit: the /crfs namespace resolves a registry's image on lookup", || {
            namespace_image(&mut g, &scratch, &mut server);
        });
    } else {
        report.skip(
            "explicit: the /crfs namespace resolves a registry's image on lookup",
            "no docker-registry or skopeo",
        );
    }

    // The lines people type: `crfs nfs BLOB` on the standard ports, its own portmapper.
    drop(server.take());
    let plain = Server::start(&[all_types.as_os_str()], &scratch.join("crfs-plain.log"));
    // Its portmapper may come up just after 2049; today there is none, so this only waits.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", 111)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // `rpcinfo HOST` (rpcbind v4 DUMP, straight to port 111). Not `rpcinfo -p`: libtirpc first
    // asks the portmapper where the portmapper is, and connects to the universal address it
    // gets. crfs answers with the address the call reached it at, 127.0.0.1 here, which behind
    // qemu's NAT is the guest itself (rpcbind does the same); mount.nfs and the kernel use
    // only the port, so the mounts below are not affected.
    report.case("plain: rpcinfo 10.0.2.2 lists what crfs serves, and only that", || {
        let ran = g.run_for("timeout -s KILL 20 /usr/sbin/rpcinfo 10.0.2.2", Duration::from_secs(40));
        assert_eq!(ran.rc, 0, "rpcinfo: exit {}: {}", ran.rc, ran.err);
        let listed: BTreeSet<Vec<String>> =
            ran.text().lines().skip(1).map(|l| l.split_whitespace().take(4).map(str::to_string).collect()).collect();
        for want in [
            ["100000", "2", "tcp", "127.0.0.1.0.111"],
            ["100000", "4", "udp", "127.0.0.1.0.111"],
            ["100003", "3", "tcp", "127.0.0.1.8.1"],
            ["100005", "3", "udp", "127.0.0.1.8.1"],
            ["100021", "4", "tcp", "127.0.0.1.8.1"],
            ["100024", "1", "udp", "127.0.0.1.8.1"],
        ] {
            let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
            assert!(listed.contains(&want), "no {want:?} in\n{}", ran.text());
        }
        assert!(
            !listed.iter().any(|l| l[0] == "100003" && (l[1] == "4" || l[2] == "udp")),
            "NFSv4 or NFS over UDP listed:\n{}",
            ran.text()
        );
        assert!(
            listed.iter().all(|l| ["100000", "100003", "100005", "100021", "100024"].contains(&l[0].as_str())),
            "{}",
            ran.text()
        );
    });
    let small = "hello, world\n";
    for (name, args, dir) in [
        ("plain: mount -t nfs 10.0.2.2:/ (rpcbind and statd in the guest)", "", "/mnt/p1"),
        ("plain: mount -t nfs -o vers=3 10.0.2.2:/", "-o vers=3", "/mnt/p2"),
        ("plain: mount -t nfs -o nolock 10.0.2.2:/", "-o nolock", "/mnt/p3"),
    ] {
        report.case(name, || {
            let line = g.mount(args, dir);
            assert!(line.contains("vers=3"), "{line}");
            assert_eq!(g.ok(&format!("cat {dir}/files/small.txt")), small);
            assert_eq!(g.ok(&format!("readlink {dir}/links/rel")), "../files/small.txt\n");
        });
    }
    report.case("plain: flock through NLM (mounted without nolock)", || {
        let line = g.mount_line("/mnt/p1");
        assert!(!line.contains("nolock"), "{line}");
        flock_behaves(&mut g, "/mnt/p1");
    });
    report.case("plain: flock is local with nolock", || {
        let line = g.mount_line("/mnt/p3");
        assert!(line.contains("nolock"), "{line}");
        flock_behaves(&mut g, "/mnt/p3");
    });
    for dir in ["/mnt/p1", "/mnt/p2", "/mnt/p3"] {
        g.umount(dir);
    }
    drop(plain);

    eprintln!(
        "\nkernel NFS client, {:.0} s in all (guest console: {}):",
        started.elapsed().as_secs_f64(),
        scratch.display()
    );
    let mut failed = Vec::new();
    for (name, result) in &report.results {
        match result {
            Ok(secs) if *secs < 0.0 => eprintln!("  SKIP  {name}"),
            Ok(secs) => eprintln!("  PASS  {name} ({secs:.1} s)"),
            Err(why) => {
                eprintln!("  FAIL  {name}: {}", why.lines().next().unwrap_or_default());
                failed.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), report.results.len(), failed.join("\n\n"));
}
