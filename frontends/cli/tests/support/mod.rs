//! A `crfs nfs` process for the CLI tests, and whether libnfs-utils is there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test support code

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crfs_testkit::in_ci;

/// libnfs-utils must be installed in CI; elsewhere a machine without it skips.
pub fn libnfs_available() -> bool {
    let ok = Command::new("nfs-ls").arg("--usage").output().is_ok();
    assert!(ok || !in_ci(), "CI needs libnfs-utils (nfs-ls, nfs-cat, nfs-cp) for the NFS tests");
    if !ok {
        eprintln!("skipping: libnfs-utils is not installed");
    }
    ok
}

/// A running `crfs nfs`; stopped (SIGTERM) when dropped.
pub struct Served {
    child: Option<Child>,
    pub port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    pub fn start(blob: &Path, listen: &str) -> Served {
        Served::start_layers(&[blob], listen)
    }

    pub fn start_layers(blobs: &[&Path], listen: &str) -> Served {
        Served::start_args(blobs, listen)
    }

    /// `crfs nfs --listen LISTEN ARGS...`, once it prints its mount commands.
    pub fn start_args(args: &[impl AsRef<OsStr>], listen: &str) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crfs"))
            .args(["nfs", "--listen", listen])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut port = None;
            for line in lines.lines().map_while(Result::ok) {
                {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(p) = line.strip_prefix("crfs: listening on port ") {
                    port = Some(p.trim().parse::<u16>().unwrap());
                }
                // The macOS mount command is the last line printed at start.
                if let (Some(p), true) = (port, line.trim_start().starts_with("macOS:")) {
                    let _ = tx.send(p);
                }
            }
        });
        let mut served = Served { child: Some(child), port: 0, stderr };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => served.port = port,
            Err(_) => {
                let status = served.stop();
                panic!("crfs nfs did not start ({status}): {}", served.log());
            }
        }
        served
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("nfs://127.0.0.1/{path}?version=3&nfsport={0}&mountport={0}", self.port)
    }

    pub fn signal(&mut self, sig: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // kill(2) would need unsafe code (denied here): use the command.
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("crfs nfs did not exit after signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
