//! `crfs nfs`: serve a layer, an image, or the whole /crfs namespace over NFSv3 on a local TCP
//! port.

use std::net::SocketAddr;

use crfs_nfs::{NfsFs, NfsServer};
use crfs_vfs::ReadOnlyFs;

use crate::args::{NamespaceFlags, RemoteArgs, ServeArgs};
use crate::signals::on_stop_signal;

/// Where `crfs nfs` listens unless told otherwise: loopback, an unprivileged port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:11111";

/// What `crfs nfs` was asked to do.
pub struct NfsArgs {
    /// What to serve; none: the /crfs namespace.
    pub sources: Vec<String>,
    pub remote: RemoteArgs,
    pub listen: SocketAddr,
    pub serve: ServeArgs,
    pub namespace: NamespaceFlags,
}

/// The read-only mount commands for a server on `addr`, Linux first, then macOS.
pub fn mount_commands(addr: SocketAddr) -> [String; 2] {
    let (ip, port) = (addr.ip(), addr.port());
    // The tree never changes: cache attributes for a day, skip close-to-open revalidation,
    // read 1 MiB at a time. One TCP port serves MOUNT and NFS; there is no lock manager.
    [
        format!(
            "sudo mount -t nfs -o vers=3,proto=tcp,port={port},mountport={port},mountproto=tcp,nolock,noacl,ro,\
             nocto,actimeo=86400,rsize=1048576 {ip}:/ /mnt"
        ),
        format!(
            "sudo mount_nfs -o vers=3,tcp,port={port},mountport={port},nolocks,rdonly,actimeo=86400,\
             rsize=1048576 {ip}:/ /Volumes/crfs"
        ),
    ]
}

pub fn serve(args: NfsArgs) -> Result<(), String> {
    if args.sources.is_empty() {
        let images = args.remote.images(args.serve.verify(), &[]).map_err(|e| e.to_string())?;
        let ns = images.namespace(args.namespace.options(&args.serve)).map_err(|e| e.to_string())?;
        return run(NfsFs::stable(ns), &args, "the crfs namespace");
    }
    let images = args.remote.images(args.serve.verify(), &args.sources).map_err(|e| e.to_string())?;
    let layers = images.open(&args.sources).map_err(|e| e.to_string())?;
    let source = args.sources.join(" ");
    let (fs, identity) = crfs_image::tree(layers, args.serve.fs_options()).map_err(|e| e.to_string())?;
    run(NfsFs::new(fs, identity), &args, &source)
}

fn run<F: ReadOnlyFs>(fs: NfsFs<F>, args: &NfsArgs, source: &str) -> Result<(), String> {
    let server = NfsServer::bind_nfs(fs, args.listen, args.serve.threads)
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    let addr = server.local_addr();

    // SIGINT/SIGTERM stop the server; run() then returns and we exit 0.
    let stopper = server.stopper();
    let handle = on_stop_signal(move |sig| {
        tracing::info!(signal = sig, "stopping");
        stopper.stop();
    })
    .map_err(|e| e.to_string())?;

    let [linux, macos] = mount_commands(addr);
    eprintln!("crfs: serving {source} over NFSv3 on {addr} (read-only; Ctrl-C to stop)");
    eprintln!("crfs: listening on port {}", addr.port());
    eprintln!("  Linux: {linux}");
    eprintln!("  macOS: {macos}");
    let served = server.run();
    handle.close();
    served.map_err(|e| format!("serving on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_commands_name_the_port_twice_and_are_read_only() {
        let [linux, macos] = mount_commands("127.0.0.1:2050".parse().unwrap());
        assert!(linux.contains("port=2050,mountport=2050"), "{linux}");
        assert!(linux.contains(",ro,") && linux.contains("nolock") && linux.ends_with("127.0.0.1:/ /mnt"), "{linux}");
        assert!(macos.starts_with("sudo mount_nfs -o vers=3,tcp,port=2050,mountport=2050,"), "{macos}");
        assert!(macos.contains("rdonly") && macos.contains("nolocks"), "{macos}");
    }
}
