//! `crfs nfs`: serve a layer, an image, or the whole /crfs namespace over NFSv3, where the OS's
//! plain `mount -t nfs localhost:/ DIR` finds it (port 2049 and a portmapper on 111) when crfs
//! may bind those ports, or on an unprivileged port named in the mount options otherwise.

use std::net::SocketAddr;

use crfs_image::{Error, ErrorKind, Result};
use crfs_nfs::{Endpoints, NfsFs, NfsServer, Portmap};
use crfs_vfs::ReadOnlyFs;

use crate::args::{NFS_CACHE_DEFAULT, NamespaceFlags, RemoteArgs, ServeArgs};
use crate::signals::on_stop_signal;

/// NFS's well-known address on loopback.
pub const STANDARD_NFS: &str = "127.0.0.1:2049";
/// The portmapper's well-known address on loopback.
pub const STANDARD_PORTMAP: &str = "127.0.0.1:111";
/// Where `crfs nfs` listens when it may not bind the well-known ports: loopback, an
/// unprivileged port, no portmapper.
pub const UNPRIVILEGED_LISTEN: &str = "127.0.0.1:11111";

/// Where `crfs nfs` listens.
#[derive(clap::Args, Debug, Clone)]
pub struct ListenArgs {
    /// Address for NFS, MOUNT and the lock manager (IPv4; port 0 picks a free port). Default:
    /// 127.0.0.1:2049 with a portmapper on 127.0.0.1:111 when crfs may bind them (root, or
    /// macOS), else 127.0.0.1:11111 without one. Given, no portmapper runs unless --portmap
    /// is given too.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of the portmapper (rpcbind protocol), which lets clients find NFS without port
    /// options. If something already answers there (a system rpcbind), crfs registers its
    /// programs with it instead.
    #[arg(long, conflicts_with = "no_portmap")]
    pub portmap: Option<SocketAddr>,
    /// No portmapper: clients must name the port (`port=…,mountport=…`).
    #[arg(long)]
    pub no_portmap: bool,
}

impl ListenArgs {
    /// The endpoints asked for; `standard` tells whether the defaults are the well-known ports.
    fn endpoints(&self, may_bind_low_ports: bool) -> (Endpoints, bool) {
        let parse = |s: &str| s.parse::<SocketAddr>().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let standard = self.listen.is_none() && may_bind_low_ports;
        let nfs = self.listen.unwrap_or_else(|| parse(if standard { STANDARD_NFS } else { UNPRIVILEGED_LISTEN }));
        let portmap = match (self.no_portmap, self.portmap) {
            (true, _) => None,
            (false, Some(at)) => Some(at),
            (false, None) if standard => Some(parse(STANDARD_PORTMAP)),
            (false, None) => None,
        };
        (Endpoints { nfs, portmap, ipv6_loopback: standard }, standard)
    }
}

/// Whether this process may bind ports below 1024: root, or any user on macOS (since 10.14).
fn may_bind_low_ports() -> bool {
    cfg!(target_os = "macos") || crate::mount::is_root()
}

/// What `crfs nfs` was asked to do.
pub struct NfsArgs {
    /// What to serve; none: the /crfs namespace.
    pub sources: Vec<String>,
    pub remote: RemoteArgs,
    pub listen: ListenArgs,
    pub serve: ServeArgs,
    pub namespace: NamespaceFlags,
}

/// The shortest mount commands that work for a server on `addr` found through `portmap`:
/// Linux first, then macOS. Read-only, and the tree never changes, so attributes may be
/// cached for a day (`actimeo`) without close-to-open revalidation (`nocto`) — those are
/// speed, printed separately, not needed.
pub fn mount_commands(addr: SocketAddr, portmap: Portmap) -> [String; 2] {
    let (ip, port) = (addr.ip(), addr.port());
    let found = match portmap {
        Portmap::Own(at) | Portmap::System(at) => at.port() == 111 && port == 2049,
        Portmap::NfsPortOnly => false,
    };
    if found {
        // Loopback is served on 127.0.0.1 and (where it exists) ::1, so `localhost` works
        // whichever the resolver gives first. Locks are served (NLM), but the Linux client
        // needs its own rpc.statd for them; `nolock` keeps locks local where it is not running.
        let host = if ip.is_loopback() { "localhost".to_string() } else { ip.to_string() };
        [
            format!("sudo mount -t nfs {host}:/ /mnt   (add -o nolock where rpc.statd is not running)"),
            format!("sudo mount -t nfs {host}:/ /Volumes/crfs"),
        ]
    } else {
        [
            format!(
                "sudo mount -t nfs -o vers=3,proto=tcp,port={port},mountport={port},mountproto=tcp,nolock {ip}:/ /mnt"
            ),
            format!("sudo mount_nfs -o vers=3,tcp,port={port},mountport={port},nolocks {ip}:/ /Volumes/crfs"),
        ]
    }
}

pub fn serve(args: NfsArgs) -> Result<()> {
    if args.sources.is_empty() {
        let images = args.remote.images(args.serve.verify(), &[])?;
        let ns = images.namespace(args.namespace.options(&args.serve, NFS_CACHE_DEFAULT))?;
        return run(NfsFs::stable(ns), &args, "the crfs namespace");
    }
    let images = args.remote.images(args.serve.verify(), &args.sources)?;
    let layers = images.open(&args.sources)?;
    for l in &layers {
        eprintln!("crfs: {}: {}", l.name, l.state());
    }
    let source = args.sources.join(" ");
    let (fs, identity) = crfs_image::tree(layers, args.serve.fs_options(NFS_CACHE_DEFAULT))?;
    run(NfsFs::new(fs, identity), &args, &source)
}

fn run<F: ReadOnlyFs>(fs: NfsFs<F>, args: &NfsArgs, source: &str) -> Result<()> {
    let (endpoints, standard) = args.listen.endpoints(may_bind_low_ports());
    let server = NfsServer::bind_endpoints(fs, endpoints, args.serve.threads).map_err(|e| {
        if standard && e.kind() == std::io::ErrorKind::AddrInUse {
            let why =
                format!("{e} (another NFS server, e.g. the kernel's nfsd, holds it): pass --listen 127.0.0.1:PORT");
            Error::new(ErrorKind::Io, why).with_source(e)
        } else {
            Error::io(format_args!("listening on {}", endpoints.nfs), e)
        }
    })?;
    let addr = server.local_addr();
    let portmap = server.portmap();

    // SIGINT/SIGTERM stop the server; run() then returns and we exit 0.
    let stopper = server.stopper();
    let handle = on_stop_signal(move |sig| {
        tracing::info!(signal = sig, "stopping");
        stopper.stop();
    })?;

    let [linux, macos] = mount_commands(addr, portmap);
    eprintln!("crfs: serving {source} over NFSv3 on {addr} (read-only; Ctrl-C to stop)");
    eprintln!("crfs: listening on port {}", addr.port());
    match portmap {
        Portmap::Own(at) => eprintln!("crfs: portmapper on {at}"),
        Portmap::System(at) => eprintln!("crfs: registered with the rpcbind on {at}"),
        Portmap::NfsPortOnly => {}
    }
    eprintln!("  Linux: {linux}");
    eprintln!("  macOS: {macos}");
    eprintln!("  faster (the tree never changes): add -o nocto,actimeo=86400 on Linux, -o actimeo=86400 on macOS");
    let served = server.run();
    handle.close();
    served.map_err(|e| Error::io(format_args!("serving on {addr}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(args: &[&str]) -> ListenArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            listen: ListenArgs,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("crfs").chain(args.iter().copied())).unwrap().listen
    }

    #[test]
    fn defaults_use_the_well_known_ports_only_when_they_can_be_bound() {
        let (e, standard) = listen(&[]).endpoints(true);
        assert!(standard);
        assert_eq!(e.nfs.to_string(), STANDARD_NFS);
        assert_eq!(e.portmap.map(|a| a.to_string()).as_deref(), Some(STANDARD_PORTMAP));
        let (e, standard) = listen(&[]).endpoints(false);
        assert!(!standard);
        assert_eq!((e.nfs.to_string().as_str(), e.portmap), (UNPRIVILEGED_LISTEN, None));
        let (e, _) = listen(&["--listen", "127.0.0.1:2050"]).endpoints(true);
        assert_eq!((e.nfs.port(), e.portmap), (2050, None), "--listen alone: no portmapper");
        let (e, _) = listen(&["--listen", "127.0.0.1:2050", "--portmap", "127.0.0.1:1111"]).endpoints(false);
        assert_eq!(e.portmap.map(|a| a.port()), Some(1111));
        let (e, _) = listen(&["--no-portmap"]).endpoints(true);
        assert_eq!((e.nfs.port(), e.portmap), (2049, None));
    }

    #[test]
    fn mount_commands_are_plain_with_a_portmapper_and_name_ports_without() {
        let nfs: SocketAddr = "127.0.0.1:2049".parse().unwrap();
        let [linux, macos] = mount_commands(nfs, Portmap::Own("127.0.0.1:111".parse().unwrap()));
        assert!(linux.starts_with("sudo mount -t nfs localhost:/ /mnt"), "{linux}");
        assert_eq!(macos, "sudo mount -t nfs localhost:/ /Volumes/crfs");
        let lan: SocketAddr = "192.168.1.5:2049".parse().unwrap();
        let [linux, _] = mount_commands(lan, Portmap::Own("192.168.1.5:111".parse().unwrap()));
        assert!(linux.starts_with("sudo mount -t nfs 192.168.1.5:/ /mnt"), "{linux}");
        let [linux, macos] = mount_commands("127.0.0.1:2050".parse().unwrap(), Portmap::NfsPortOnly);
        assert!(linux.contains("port=2050,mountport=2050") && linux.contains("nolock"), "{linux}");
        assert!(macos.starts_with("sudo mount_nfs -o vers=3,tcp,port=2050,mountport=2050,nolocks"), "{macos}");
        let [linux, _] = mount_commands(nfs, Portmap::Own("127.0.0.1:1111".parse().unwrap()));
        assert!(linux.contains("port=2049"), "a portmapper off 111 is not found by plain mounts: {linux}");
    }
}
