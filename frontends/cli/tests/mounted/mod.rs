//! A background `crfs mount` for the CLI tests that need one running (registry.rs, soak.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test support code

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn crfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crfs"))
}

pub fn is_mounted(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap();
    fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == dir.to_str())
}

/// A background `crfs mount`, stopped with SIGTERM when dropped; its log is `<dir>.log`.
pub struct Mounted(pub Child, pub PathBuf);

impl Mounted {
    pub fn new(args: &[&str], dir: &Path) -> Mounted {
        fs::create_dir_all(dir).unwrap();
        // The log goes to a file next to the mountpoint: a pipe nobody reads would block a
        // long-running mount once it filled.
        let log = dir.with_extension("log");
        let mut child = crfs()
            .arg("mount")
            .args(args)
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(dir) {
            if let Some(status) = child.try_wait().unwrap() {
                let stderr = fs::read_to_string(&log).unwrap_or_default();
                panic!("crfs mount {args:?} exited with {status}: {stderr}");
            }
            assert!(Instant::now() < deadline, "mount did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mounted(child, dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        if is_mounted(&self.1) {
            let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&self.1).status();
        }
    }
}
