//! The kernel NFS client's guest: Debian's own kernel booted under qemu with the initramfs
//! `testdata/kernel-nfs/build-guest.sh` builds, driven over a serial port one shell script at
//! a time (the protocol is in testdata/kernel-nfs/init.sh). The guest reaches the host's
//! 127.0.0.1 as 10.0.2.2 through qemu's user-mode network. Used by the CLI's kernel-client test
//! and by `benches/nfs-compare.sh` (through `crfs-bench-kernel-nfs`).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How long a mount line may take in the guest before it counts as failed.
pub const MOUNT_SECS: u32 = 25;

/// Builds (or finds up to date) the guest's kernel and initramfs in `out` with
/// build-guest.sh, its messages in `log`: (vmlinuz, initrd).
pub fn build_guest(out: &Path, log: &Path) -> Result<(PathBuf, PathBuf), String> {
    let script = crate::testdata().join("kernel-nfs/build-guest.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(out)
        .stderr(fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?)
        .status()
        .map_err(|e| format!("bash {}: {e}", script.display()))?;
    let text = fs::read_to_string(log).unwrap_or_default();
    eprint!("{text}");
    if !status.success() {
        return Err(format!("build-guest.sh: {status}: {text}"));
    }
    Ok((out.join("vmlinuz"), out.join("initrd.cpio.gz")))
}

/// What one guest script did.
pub struct Ran {
    /// Its exit status.
    pub rc: i32,
    /// Its standard output.
    pub out: Vec<u8>,
    /// Its standard error.
    pub err: String,
}

impl Ran {
    /// Standard output as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

/// The booted VM and its command port.
pub struct Guest {
    qemu: Child,
    port: BufReader<UnixStream>,
    next: u64,
    dir: PathBuf,
    /// Set once a script timed out: the guest's state is unknown, later scripts fail at once.
    dead: bool,
}

impl Guest {
    /// Boots the guest (files from [`build_guest`]) with each accelerator in turn until one
    /// runs it: `$CRFS_VM_ACCEL` (comma-separated), default kvm then tcg. `dir` gets the
    /// command socket and the console and qemu logs.
    pub fn boot(dir: &Path, kernel: &Path, initrd: &Path) -> Result<Guest, String> {
        let accels = std::env::var("CRFS_VM_ACCEL").unwrap_or_else(|_| "kvm,tcg".into());
        let mut tried = Vec::new();
        for accel in accels.split(',') {
            match Guest::boot_with(dir, kernel, initrd, accel) {
                Ok(g) => return Ok(g),
                Err(e) => tried.push(format!("{accel}: {e}")),
            }
        }
        Err(tried.join("; "))
    }

    fn boot_with(dir: &Path, kernel: &Path, initrd: &Path, accel: &str) -> Result<Guest, String> {
        let sock = dir.join("ctl.sock");
        let console = dir.join(format!("console-{accel}.log"));
        let stderr = dir.join(format!("qemu-{accel}.log"));
        let _ = fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut qemu = Command::new("qemu-system-x86_64")
            .args(["-accel", accel, "-m", "1024", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("unix:{}", sock.display()))
            .args(["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
        let fail = |qemu: &mut Child, why: String| {
            let _ = qemu.kill();
            let _ = qemu.wait();
            let log = fs::read_to_string(&stderr).unwrap_or_default();
            let con = fs::read_to_string(&console).unwrap_or_default();
            let tail: String =
                con.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            Err(format!("{why}\nqemu: {log}\nconsole:\n{tail}"))
        };
        // qemu connects to the port as it starts.
        listener.set_nonblocking(true).unwrap();
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return fail(&mut qemu, format!("accept: {e}")),
            }
            if let Ok(Some(status)) = qemu.try_wait() {
                return fail(&mut qemu, format!("qemu exited with {status}"));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return fail(&mut qemu, "qemu never opened the command port".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stream.set_nonblocking(false).unwrap();
        let mut port = BufReader::new(stream);
        let mut line = String::new();
        loop {
            // A KVM that opens but runs no guest never gets there; a working one boots in a few
            // seconds.
            let limit = Duration::from_secs(if accel == "tcg" { 180 } else { 8 });
            let Some(left) = limit.checked_sub(started.elapsed()) else {
                return fail(&mut qemu, format!("no @@READY after {:?}", started.elapsed()));
            };
            port.get_ref().set_read_timeout(Some(left.min(Duration::from_secs(1)))).unwrap();
            match port.read_line(&mut line) {
                Ok(0) => return fail(&mut qemu, "the command port closed".into()),
                Ok(_) if line.trim_end() == "@@READY" => break,
                Ok(_) => line.clear(),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return fail(&mut qemu, format!("reading the command port: {e}")),
            }
        }
        eprintln!("guest: up after {:.1} s with -accel {accel}", started.elapsed().as_secs_f64());
        Ok(Guest { qemu, port, next: 0, dir: dir.to_path_buf(), dead: false })
    }

    /// Runs `script` with the guest's sh; panics if the guest does not answer within `limit`.
    pub fn run_for(&mut self, script: &str, limit: Duration) -> Ran {
        assert!(!self.dead, "the guest stopped answering earlier");
        self.next += 1;
        let id = self.next;
        let b64 = base64::engine::general_purpose::STANDARD;
        let stream = self.port.get_mut();
        writeln!(stream, "{id} {}", b64.encode(script)).unwrap();
        stream.flush().unwrap();
        let deadline = Instant::now() + limit;
        let (mut out, mut err) = (String::new(), String::new());
        let mut into_err = false;
        let mut line = String::new();
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                self.dead = true;
                panic!("the guest did not finish within {limit:?}: {script}");
            };
            self.port.get_ref().set_read_timeout(Some(left.max(Duration::from_millis(10)))).unwrap();
            // A read that times out mid-line keeps what it read in `line`: the next read_line
            // appends the rest, so `line` is cleared only once a whole line is handled.
            match self.port.read_line(&mut line) {
                Ok(0) => {
                    self.dead = true;
                    panic!("the guest closed its command port; console: {}", self.dir.display());
                }
                Ok(_) if !line.ends_with('\n') => continue,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => panic!("reading the command port: {e}"),
            }
            let l = line.trim_end();
            if l == format!("@@OUT {id}") {
                into_err = false;
            } else if l == format!("@@ERR {id}") {
                into_err = true;
            } else if let Some(rc) = l.strip_prefix(&format!("@@END {id} ")) {
                let unpack = |text: String| {
                    let mut bytes = Vec::new();
                    flate2::read::GzDecoder::new(&b64.decode(text).unwrap()[..]).read_to_end(&mut bytes).unwrap();
                    bytes
                };
                let out = unpack(out);
                let err = String::from_utf8_lossy(&unpack(err)).into_owned();
                return Ran { rc: rc.parse().unwrap(), out, err };
            } else if into_err {
                err.push_str(l);
            } else {
                out.push_str(l);
            }
            line.clear();
        }
    }

    /// Runs `script`, at most 120 s.
    pub fn run(&mut self, script: &str) -> Ran {
        self.run_for(script, Duration::from_secs(120))
    }

    /// Runs `script`, which must succeed; its stdout.
    pub fn ok(&mut self, script: &str) -> String {
        let ran = self.run(script);
        assert_eq!(ran.rc, 0, "guest: {script}\nstdout: {}\nstderr: {}", ran.text(), ran.err);
        ran.text()
    }

    /// Mounts `10.0.2.2:/` on `dir` with `/bin/mount -t nfs ARGS` (ARGS as typed), at most
    /// MOUNT_SECS; the mount's /proc/mounts line.
    pub fn mount(&mut self, args: &str, dir: &str) -> String {
        let line = ["/bin/mount -t nfs", args, "10.0.2.2:/", dir]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let started = Instant::now();
        let ran = self.run(&format!("mkdir -p {dir} && timeout -s KILL {MOUNT_SECS} {line}"));
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(ran.rc, 0, "`{line}` failed after {secs:.1} s (exit {}): {}", ran.rc, ran.err);
        eprintln!("guest: `{line}` took {secs:.1} s");
        self.mount_line(dir)
    }

    /// The /proc/mounts line of the NFS mount on `dir`.
    pub fn mount_line(&mut self, dir: &str) -> String {
        let mounts = self.ok("cat /proc/mounts");
        let line = mounts.lines().find(|l| l.split(' ').nth(1) == Some(dir) && l.split(' ').nth(2) == Some("nfs"));
        line.unwrap_or_else(|| panic!("no NFS mount on {dir}:\n{mounts}")).to_string()
    }

    /// Unmounts `dir` (forced and lazy), ignoring failures.
    pub fn umount(&mut self, dir: &str) {
        if self.dead {
            return;
        }
        // -f -l: the server behind it may be gone or another one.
        let _ = self.run_for(&format!("umount -f -l {dir}"), Duration::from_secs(30));
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}
