//! Serving a tree over a real FUSE mount from the test's own process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test support code

use std::path::Path;
use std::time::{Duration, Instant};

use crfs_fuse::{Mount, MountConfig};
use crfs_vfs::ReadOnlyFs;

/// A tree mounted at a directory and served by a thread; unmounted when dropped, so a failed
/// assertion leaves no mount behind.
pub struct Served {
    unmounter: crfs_fuse::Unmounter,
    server: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Mounts `tree` at `mnt` (read-only, two request threads) and waits until the mount
    /// appears.
    pub fn mount<F: ReadOnlyFs>(tree: F, mnt: &Path) -> Served {
        let config = MountConfig { allow_other: false, threads: 2, fs_name: "crfs-test".into(), read_only: true };
        let mut mount = Mount::new(tree, mnt, &config).unwrap();
        let unmounter = mount.unmounter();
        let server = std::thread::spawn(move || mount.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(mnt) {
            assert!(Instant::now() < deadline, "mount did not appear");
            std::thread::sleep(Duration::from_millis(10));
        }
        Served { unmounter, server: Some(server) }
    }

    /// Unmounts and checks that the serving loop ended without an error.
    pub fn unmount(mut self) {
        self.unmounter.unmount().unwrap();
        self.server.take().unwrap().join().unwrap().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = self.unmounter.unmount();
        }
    }
}

fn is_mounted(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == dir.to_str())
}
