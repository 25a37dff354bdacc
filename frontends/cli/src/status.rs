//! `crfs status MOUNTPOINT`: what each layer of a running mount is doing.
//!
//! A serving process rewrites a small status file every [`PERIOD`] while it serves, under the
//! runtime directory (`/run/crfs` for root, else `$XDG_RUNTIME_DIR/crfs`, else
//! `/tmp/crfs-UID`), named by a digest of the canonical mountpoint, and removes it when it
//! stops. `crfs status` prints that file, or says why there is none.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crfs_image::{Error, ErrorKind, Result};

/// How often a serving process rewrites its status file.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The runtime directory status files live in.
fn runtime_dir() -> PathBuf {
    if crate::mount::is_root() {
        return PathBuf::from("/run/crfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("crfs"),
        _ => std::env::temp_dir().join(format!("crfs-{}", nix::unistd::getuid())),
    }
}

/// The status file of the mount at `mountpoint` (canonical).
fn status_file(mountpoint: &Path) -> PathBuf {
    let digest = crfs_core::Digest::of(mountpoint.as_os_str().as_encoded_bytes()).to_string();
    let hex = digest.trim_start_matches("sha256:");
    runtime_dir().join(format!("{}.status", hex.get(..16).unwrap_or(hex)))
}

/// Keeps the status file of the mount at `mountpoint` (canonical) up to date with `describe`
/// until the returned guard is dropped, which removes it.
pub fn publish(mountpoint: &Path, describe: impl Fn() -> String + Send + 'static) -> Publisher {
    let file = status_file(mountpoint);
    let shown = mountpoint.display().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, file2) = (stop.clone(), file.clone());
    let writer = move || {
        let dir = file2.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), "no status file (crfs status): {e}");
            return;
        }
        let tmp = file2.with_extension(format!("tmp{}", std::process::id()));
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let text = format!("crfs {} pid {}\n{}", shown, std::process::id(), describe());
            let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &file2));
            if let Err(e) = written {
                tracing::debug!(file = %file2.display(), "status not written: {e}");
            }
            std::thread::sleep(PERIOD);
        }
    };
    if let Err(e) = std::thread::Builder::new().name("crfs-status".into()).spawn(writer) {
        tracing::warn!("no status file (crfs status): {e}");
    }
    Publisher { file, stop }
}

/// Removes the status file when dropped (the serving process stopped).
pub struct Publisher {
    file: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.file);
    }
}

/// `crfs status MOUNTPOINT`: prints the mount's status file.
pub fn show(mountpoint: &Path) -> Result<()> {
    let shown = mountpoint.display();
    let canonical = mountpoint.canonicalize().map_err(|e| Error::io(&shown, e))?;
    let file = status_file(&canonical);
    let (text, modified) =
        match std::fs::read_to_string(&file).and_then(|t| Ok((t, std::fs::metadata(&file)?.modified()?))) {
            Ok(found) => found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let why = format!("{shown}: no crfs mount or store serves it (as this user); nothing to report");
                return Err(Error::new(ErrorKind::NotFound, why));
            }
            Err(e) => return Err(Error::io(file.display(), e)),
        };
    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
    if age > PERIOD * 10 {
        let why = format!("{shown}: the serving process stopped updating its status {} s ago", age.as_secs());
        return Err(Error::new(ErrorKind::Io, why));
    }
    print!("{text}");
    Ok(())
}
