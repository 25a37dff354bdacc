//! `crfs mount` and `crfs umount`.

use std::path::{Path, PathBuf};

use crfs_fuse::{Mount, MountConfig};
use crfs_vfs::ReadOnlyFs;

use crfs_image::{Error, ErrorKind, Result};

use crate::args::{FUSE_CACHE_DEFAULT, NamespaceFlags, RemoteArgs, ServeArgs, invalid};
use crate::signals::on_stop_signal;

/// How long to keep serving open files after a signal's unmount before exiting.
const UNMOUNT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Where `crfs mount` with no source serves the namespace, as the original crfs did.
pub const DEFAULT_MOUNTPOINT: &str = "/crfs";

/// What `crfs mount [MOUNTPOINT]` (the namespace) was asked to do.
pub struct NamespaceArgs {
    pub mountpoint: PathBuf,
    pub remote: RemoteArgs,
    pub serve: ServeArgs,
    pub allow_other: bool,
    pub namespace: NamespaceFlags,
}

/// What `crfs store MOUNTPOINT` was asked to do.
pub struct StoreArgs {
    pub mountpoint: PathBuf,
    pub remote: RemoteArgs,
    pub serve: ServeArgs,
    pub allow_other: bool,
}

/// What `crfs mount SOURCE... MOUNTPOINT` was asked to do.
pub struct MountArgs {
    /// Blob files, URLs, OCI layouts or registry images, stacked bottom first.
    pub sources: Vec<String>,
    pub remote: RemoteArgs,
    pub mountpoint: PathBuf,
    pub serve: ServeArgs,
    pub allow_other: bool,
}

/// Whether `path` is itself a mount point, per /proc/self/mountinfo.
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|mp| Path::new(&unescape_mountinfo(mp)) == path)
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a mountpoint that is missing, not a directory, stale or already mounted.
fn check_mountpoint(mountpoint: &Path) -> Result<PathBuf> {
    let shown = mountpoint.display();
    match std::fs::metadata(mountpoint) {
        Ok(m) if !m.is_dir() => return Err(invalid(format!("{shown}: mountpoint is not a directory"))),
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(invalid(format!(
                "{shown}: stale mount (transport endpoint is not connected); run `crfs umount {shown}`"
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::new(ErrorKind::NotFound, format!("{shown}: mountpoint does not exist")));
        }
        Err(e) => return Err(Error::io(&shown, e)),
    }
    let canonical = mountpoint.canonicalize().map_err(|e| Error::io(&shown, e))?;
    if is_mount_point(&canonical) {
        // stat may answer from the kernel's attribute cache even when the server behind the
        // mount is gone; statfs always asks it.
        if nix::sys::statfs::statfs(&canonical).err() == Some(nix::errno::Errno::ENOTCONN) {
            return Err(invalid(format!(
                "{shown}: stale mount (transport endpoint is not connected); run `crfs umount {shown}`"
            )));
        }
        return Err(invalid(format!("{shown}: something is already mounted there (mountpoint is busy)")));
    }
    Ok(canonical)
}

pub(crate) fn is_root() -> bool {
    // The effective uid is the third field of the Uid: line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Refuses early what fusermount3 would refuse for an ordinary user.
fn check_user_can_mount(allow_other: bool) -> Result<()> {
    if is_root() {
        return Ok(());
    }
    if allow_other && !user_allow_other_enabled() {
        return Err(Error::new(
            ErrorKind::Denied,
            "--allow-other needs `user_allow_other` in /etc/fuse.conf when not run as root",
        ));
    }
    // Ordinary users mount through fusermount3, which fuser only tries after opening
    // /dev/fuse itself; a device closed to them fails before that.
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        let why = "ordinary users need it readable and writable (mode 0666, as Debian's udev sets it), or run as root";
        return Err(Error::new(ErrorKind::Denied, format!("/dev/fuse: {e}; {why}")).with_source(e));
    }
    Ok(())
}

fn user_allow_other_enabled() -> bool {
    std::fs::read_to_string("/etc/fuse.conf")
        .map(|c| c.lines().any(|l| l.split('#').next().is_some_and(|l| l.trim() == "user_allow_other")))
        .unwrap_or(false)
}

pub fn mount(args: MountArgs) -> Result<()> {
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    check_user_can_mount(args.allow_other)?;
    let layers = args.remote.images(args.serve.verify(), &args.sources)?.open(&args.sources)?;
    let reports: Vec<crfs_image::LayerReport> = layers.iter().map(crfs_image::OpenedLayer::report).collect();
    for r in &reports {
        eprintln!("crfs: {}: {}", r.name, r.state);
    }
    let _status = crate::status::publish(&mountpoint, move || reports.iter().map(|r| r.line() + "\n").collect());
    let source = args.sources.join(" ");
    let config = MountConfig {
        allow_other: args.allow_other,
        threads: args.serve.threads,
        fs_name: source.clone(),
        read_only: true,
    };
    let (fs, _identity) = crfs_image::tree(layers, args.serve.fs_options(FUSE_CACHE_DEFAULT))?;
    serve(fs, &mountpoint, &config, &source)
}

/// Serves every image and layer under one mountpoint, each resolved on first lookup.
pub fn mount_namespace(args: NamespaceArgs) -> Result<()> {
    if args.mountpoint == Path::new(DEFAULT_MOUNTPOINT) && !args.mountpoint.exists() {
        std::fs::create_dir_all(&args.mountpoint).map_err(|e| Error::io(DEFAULT_MOUNTPOINT, e))?;
    }
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    check_user_can_mount(args.allow_other)?;
    let ns = args
        .remote
        .images(args.serve.verify(), &[])?
        .namespace(args.namespace.options(&args.serve, FUSE_CACHE_DEFAULT))?;
    let config = MountConfig {
        allow_other: args.allow_other,
        threads: args.serve.threads,
        fs_name: "crfs".into(),
        read_only: true,
    };
    serve(ns, &mountpoint, &config, "the crfs namespace")
}

/// Serves containers/storage's Additional Layer Store: every layer of every image a runtime
/// pulls is looked up here first.
pub fn mount_store(args: StoreArgs) -> Result<()> {
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    check_user_can_mount(args.allow_other)?;
    let options =
        crfs_vfs::StoreOptions { fs: args.serve.fs_options(FUSE_CACHE_DEFAULT), ..crfs_vfs::StoreOptions::default() };
    let store = std::sync::Arc::new(args.remote.images(args.serve.verify(), &[])?.store(options)?);
    let described = store.clone();
    let _status = crate::status::publish(&mountpoint, move || described.status());
    // Not `ro`: containers/storage signals use and release with create and rmdir.
    let config = MountConfig {
        allow_other: args.allow_other,
        threads: args.serve.threads,
        fs_name: "crfs-store".into(),
        read_only: false,
    };
    let source = format!("the layer store (storage.conf: additionallayerstores = [\"{}:ref\"])", mountpoint.display());
    serve(store, &mountpoint, &config, &source)
}

/// Mounts `fs` and serves it until unmounted or signalled.
fn serve<F: ReadOnlyFs>(fs: F, mountpoint: &Path, config: &MountConfig, source: &str) -> Result<()> {
    let mut mount = Mount::new(fs, mountpoint, config)
        .map_err(|e| Error::io(format_args!("mounting {}", mountpoint.display()), e))?;

    // SIGINT/SIGTERM unmount; the serving loop then ends and we exit 0.
    let mut unmounter = mount.unmounter();
    let handle = on_stop_signal(move |sig| {
        tracing::info!(signal = sig, "unmounting");
        if let Err(e) = unmounter.unmount() {
            tracing::error!("unmount failed: {e}");
        }
        // The unmount is lazy: files still open keep the connection alive and the serving
        // loop running. Give it a moment to end on its own, then exit anyway; those files
        // then get ENOTCONN, as with any FUSE server that stops.
        std::thread::sleep(UNMOUNT_GRACE);
        tracing::warn!("files were still open at unmount; exiting");
        std::process::exit(0);
    })?;
    // Once the mount answers, lift the kernel's 128 KiB readahead cap (root only).
    let mp = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        if let Err(e) = crfs_fuse::raise_readahead(&mp, crfs_fuse::READAHEAD_KB) {
            tracing::debug!("readahead left at the kernel's default: {e}");
        }
    });
    eprintln!("crfs: {source} mounted on {} (Ctrl-C or `crfs umount` to unmount)", mountpoint.display());
    let served = mount.run();
    handle.close();
    served.map_err(|e| Error::io(format_args!("serving {}", mountpoint.display()), e))
}

/// Unmounts a crfs mount, lazily, so a stale mount left by a crash is cleared too.
pub fn umount(mountpoint: &Path) -> Result<()> {
    let shown = mountpoint.display();
    let attempts: [(&str, &[&str]); 2] = [("fusermount3", &["-u", "-z"]), ("umount", &["-l"])];
    let mut last_error = String::new();
    for (program, flags) in attempts {
        match std::process::Command::new(program).args(flags).arg(mountpoint).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => last_error = String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => last_error = format!("{program}: {e}"),
        }
    }
    Err(Error::new(ErrorKind::Io, format!("{shown}: cannot unmount: {last_error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b\134c"), "/mnt/a b\\c");
        assert_eq!(unescape_mountinfo(r"/x\04"), r"/x\04");
    }
}
