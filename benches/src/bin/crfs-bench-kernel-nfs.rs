//! `crfs-bench-kernel-nfs --crfs BIN --guest DIR --scratch DIR [--runs N] [--clients C,..]
//! [--ops O,..] BLOB`: the CPU time
//! `crfs` spends serving the Linux kernel's own NFS client, against serving the same work
//! through FUSE.
//!
//! The kernel client runs in Debian's kernel under qemu (`crfs_testkit::guest`, files from
//! `testdata/kernel-nfs/build-guest.sh` in `--guest DIR`); this machine's own kernel has no NFS
//! client. qemu may only have TCG here, which makes the guest slow: its wall time measures the
//! emulator, so the figure compared is the server's CPU time (user + system, from
//! /proc/PID/stat when the operation ends), whatever the client's speed.
//!
//! Each run measures, in an order rotated from run to run, with a fresh `crfs` process and cold
//! caches each time (host page cache dropped; in the guest, its caches dropped and a new
//! mount):
//! - `fuse`: `crfs mount BLOB MNT` on the host;
//! - `nfs`: `crfs nfs BLOB` (standard ports: run as root, with nothing else on 111 and 2049),
//!   mounted in the guest with `mount -t nfs -o nolock 10.0.2.2:/ MNT`, the plain line (no
//!   cache options);
//! - `nfs-cached`: the same with `-o nolock,nocto,actimeo=86400` (attributes trusted for a day,
//!   no revalidation on open);
//!
//! and for each, two operations: `read-all` (`find . -type f -exec cat {} +`, GNU find and cat
//! on both sides) and `ls-lR` (GNU `ls -lR`). It prints one line per measurement:
//! `CLIENT OP CPU_SECONDS WALL_SECONDS CHECK`, where CHECK is the bytes read (read-all) or the
//! lines listed (ls-lR) and must be the same for every client; a difference is an error.
//! `--clients` and `--ops` pick some of them (to profile one, say).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crfs_benches::{Args, BenchResult, run};
use crfs_testkit::guest::{Guest, MOUNT_SECS};

const USAGE: &str =
    "crfs-bench-kernel-nfs --crfs BIN --guest DIR --scratch DIR [--runs N] [--clients C,..] [--ops O,..] BLOB";

const CLIENTS: [&str; 3] = ["fuse", "nfs", "nfs-cached"];
const OPS: [&str; 2] = ["read-all", "ls-lR"];
/// The guest's mount point.
const GUEST_MNT: &str = "/mnt/crfs";

fn main() -> std::process::ExitCode {
    run("crfs-bench-kernel-nfs", || {
        const VALUED: [&str; 6] = ["crfs", "guest", "scratch", "runs", "clients", "ops"];
        let args = Args::parse(&VALUED)?;
        args.only(&VALUED)?;
        let [blob] = args.positional() else {
            return Err(format!("usage: {USAGE}"));
        };
        let need = |name: &str| args.value(name).map(PathBuf::from).ok_or(format!("--{name} is required: {USAGE}"));
        let (crfs, guest_dir, scratch) = (need("crfs")?, need("guest")?, need("scratch")?);
        let runs = args.number("runs", 3)?;
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        let mut bench = Bench {
            crfs,
            blob: PathBuf::from(blob),
            mnt: scratch.join("mnt"),
            logs: scratch.clone(),
            guest: Guest::boot(&scratch, &guest_dir.join("vmlinuz"), &guest_dir.join("initrd.cpio.gz"))?,
            checks: BTreeMap::new(),
        };
        std::fs::create_dir_all(&bench.mnt).map_err(|e| format!("{}: {e}", bench.mnt.display()))?;
        let clients = pick(&CLIENTS, args.value("clients"))?;
        let ops = pick(&OPS, args.value("ops"))?;
        let cases: Vec<(&str, &'static str)> = clients.iter().flat_map(|c| ops.iter().map(move |o| (*c, *o))).collect();
        for r in 0..runs as usize {
            for k in 0..cases.len() {
                let (client, op) = cases[(k + r) % cases.len()];
                let m = bench.measure(client, op)?;
                println!("{client} {op} {:.3} {:.3} {}", m.cpu, m.wall, m.check);
                std::io::stdout().flush().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

/// The names of `all` that `wanted` (comma-separated) lists, or all of them.
fn pick(all: &[&'static str], wanted: Option<&str>) -> BenchResult<Vec<&'static str>> {
    let Some(wanted) = wanted else { return Ok(all.to_vec()) };
    wanted
        .split(',')
        .map(|w| all.iter().copied().find(|a| *a == w).ok_or(format!("{w}: not one of {}", all.join(", "))))
        .collect()
}

struct Bench {
    crfs: PathBuf,
    blob: PathBuf,
    /// The host's FUSE mount point.
    mnt: PathBuf,
    logs: PathBuf,
    guest: Guest,
    /// The CHECK of each operation, from its first measurement.
    checks: BTreeMap<&'static str, String>,
}

struct Measured {
    cpu: f64,
    wall: f64,
    check: String,
}

impl Bench {
    fn measure(&mut self, client: &str, op: &'static str) -> BenchResult<Measured> {
        sh("sync; echo 3 > /proc/sys/vm/drop_caches")?;
        let log = std::fs::File::create(self.logs.join(format!("crfs-{client}.log"))).map_err(|e| e.to_string())?;
        let measured = if client == "fuse" {
            let mut server = Server(
                Command::new(&self.crfs)
                    .arg("mount")
                    .arg(&self.blob)
                    .arg(&self.mnt)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("{}: {e}", self.crfs.display()))?,
            );
            wait_until("the FUSE mount", || sh(&format!("mountpoint -q {}", self.mnt.display())).is_ok())?;
            let dir = self.mnt.display().to_string();
            let started = Instant::now();
            let check = sh(&op_script(op, &dir, ""))?;
            let wall = started.elapsed().as_secs_f64();
            let cpu = server.cpu()?;
            sh(&format!("umount {dir}"))?;
            server.stop();
            Measured { cpu, wall, check }
        } else {
            let mut server = Server(
                Command::new(&self.crfs)
                    .arg("nfs")
                    .arg(&self.blob)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("{}: {e}", self.crfs.display()))?,
            );
            wait_until("crfs nfs on 127.0.0.1:2049", || TcpStream::connect(("127.0.0.1", 2049)).is_ok())?;
            let options = if client == "nfs" { "nolock" } else { "nolock,nocto,actimeo=86400" };
            let mount = format!(
                "echo 3 > /proc/sys/vm/drop_caches && mkdir -p {GUEST_MNT} && \
                 timeout -s KILL {MOUNT_SECS} /bin/mount -t nfs -o {options} 10.0.2.2:/ {GUEST_MNT}"
            );
            let mounted = self.guest.run(&mount);
            if mounted.rc != 0 {
                return Err(format!("guest: mount -o {options}: exit {}: {}", mounted.rc, mounted.err));
            }
            let calls_before = self.nfs3_calls();
            let started = Instant::now();
            let ran = self.guest.run_for(&op_script(op, GUEST_MNT, "/gnu/"), Duration::from_secs(1800));
            let wall = started.elapsed().as_secs_f64();
            let cpu = server.cpu()?;
            let calls_after = self.nfs3_calls();
            let calls = calls_after.iter().zip(calls_before).map(|((name, n), (_, b))| (*name, n.saturating_sub(b)));
            let calls: Vec<String> = calls.filter(|(_, n)| *n > 0).map(|(name, n)| format!("{name} {n}")).collect();
            eprintln!("{client} {op}: NFSv3 calls from the guest: {}", calls.join(", "));
            self.guest.umount(GUEST_MNT);
            server.stop();
            if ran.rc != 0 {
                return Err(format!("guest: {op}: exit {}: {}", ran.rc, ran.err));
            }
            Measured { cpu, wall, check: ran.text().trim().to_string() }
        };
        let want = self.checks.entry(op).or_insert_with(|| measured.check.clone());
        if *want != measured.check {
            return Err(format!("{client} {op}: got {}, the first client {want}", measured.check));
        }
        Ok(measured)
    }
}

impl Bench {
    /// The guest client's NFSv3 calls so far, by procedure (/proc/net/rpc/nfs, line `proc3`).
    fn nfs3_calls(&mut self) -> Vec<(&'static str, u64)> {
        const PROCS: [&str; 22] = [
            "null",
            "getattr",
            "setattr",
            "lookup",
            "access",
            "readlink",
            "read",
            "write",
            "create",
            "mkdir",
            "symlink",
            "mknod",
            "remove",
            "rmdir",
            "rename",
            "link",
            "readdir",
            "readdirplus",
            "fsstat",
            "fsinfo",
            "pathconf",
            "commit",
        ];
        let text = self.guest.run("cat /proc/net/rpc/nfs").text();
        let counts: Vec<u64> = text
            .lines()
            .find_map(|l| l.strip_prefix("proc3 "))
            .map(|l| l.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        PROCS.iter().copied().zip(counts.into_iter().chain(std::iter::repeat(0))).collect()
    }
}

/// The shell script of operation `op` in `dir`, with GNU tools from `gnu` (the guest keeps them
/// under /gnu, where busybox applets cannot stand in for them); it prints the CHECK.
fn op_script(op: &str, dir: &str, gnu: &str) -> String {
    match op {
        "read-all" => format!("cd {dir} && {gnu}find . -type f -exec {gnu}cat {{}} + | wc -c"),
        _ => format!("{gnu}ls -lR {dir} | wc -l"),
    }
}

/// Runs `script` with sh; its trimmed stdout, or an error with its stderr.
fn sh(script: &str) -> BenchResult<String> {
    let out = Command::new("sh").arg("-c").arg(script).output().map_err(|e| format!("sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{script}`: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not come up in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A crfs process, stopped (SIGTERM, then waited for) when dropped.
struct Server(Child);

impl Server {
    /// User + system CPU seconds the process has used so far (all its threads).
    fn cpu(&mut self) -> BenchResult<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).map_err(|e| e.to_string())?;
        // Fields after the command name (which may hold spaces) start at field 3, the state.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or("unreadable /proc/PID/stat");
        let (utime, stime) = (ticks(11)?, ticks(12)?);
        Ok((utime + stime) as f64 / clock_ticks()? as f64)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Clock ticks per second, as /proc counts CPU time (`getconf CLK_TCK`).
fn clock_ticks() -> BenchResult<u64> {
    sh("getconf CLK_TCK")?.parse().map_err(|e| format!("getconf CLK_TCK: {e}"))
}
