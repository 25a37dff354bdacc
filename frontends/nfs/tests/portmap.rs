//! The programs beside NFS, on real loopback sockets: a server bound with its own portmapper
//! (on a free port standing in for 111) answers GETPORT/GETADDR over UDP and TCP for exactly
//! what it serves, the NFS port answers MOUNT over UDP and the lock manager over TCP, a
//! client probing NFSv4 gets PROG_MISMATCH 3..3, unknown programs PROG_UNAVAIL, and the
//! portmapper's port serves nothing but the portmapper.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crfs_core::{FileReadAt, Layer};
use crfs_nfs::portmap::PROGRAM as PORTMAP;
use crfs_nfs::xdr::{Reader, Writer};
use crfs_nfs::{Endpoints, NfsFs, NfsServer, Portmap};
use crfs_testkit::testdata;
use crfs_vfs::{LayerFs, Options};

const NFS: u32 = 100_003;
const MOUNT: u32 = 100_005;
const NLM: u32 = 100_021;
const NSM: u32 = 100_024;

/// What an RPC reply said.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Success(Vec<u8>),
    ProgUnavail,
    ProgMismatch(u32, u32),
    ProcUnavail,
    GarbageArgs,
}

fn call_bytes(xid: u32, prog: u32, vers: u32, proc: u32, args: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(xid).u32(0).u32(2).u32(prog).u32(vers).u32(proc).u32(0).u32(0).u32(0).u32(0);
    let mut bytes = w.finish();
    bytes.extend_from_slice(args);
    bytes
}

fn parse(bytes: &[u8], xid: u32) -> Reply {
    let mut r = Reader::new(bytes);
    assert_eq!(r.u32(), Ok(xid));
    assert_eq!(r.u32(), Ok(1), "a REPLY");
    assert_eq!(r.u32(), Ok(0), "MSG_ACCEPTED");
    r.u32().unwrap();
    r.opaque(400).unwrap();
    match r.u32().unwrap() {
        0 => Reply::Success(r.rest().to_vec()),
        1 => Reply::ProgUnavail,
        2 => Reply::ProgMismatch(r.u32().unwrap(), r.u32().unwrap()),
        3 => Reply::ProcUnavail,
        4 => Reply::GarbageArgs,
        other => panic!("accept_stat {other}"),
    }
}

fn udp_call(to: SocketAddr, prog: u32, vers: u32, proc: u32, args: &[u8]) -> Reply {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.send_to(&call_bytes(7, prog, vers, proc, args), to).unwrap();
    let mut buf = [0; 65536];
    let (len, from) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(from, to);
    parse(&buf[..len], 7)
}

fn tcp_call(to: SocketAddr, prog: u32, vers: u32, proc: u32, args: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(to).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = call_bytes(9, prog, vers, proc, args);
    let mark = (0x8000_0000_u32 | body.len() as u32).to_be_bytes();
    stream.write_all(&[&mark[..], &body].concat()).unwrap();
    let mut mark = [0; 4];
    stream.read_exact(&mut mark).unwrap();
    let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
    let mut reply = vec![0; len];
    stream.read_exact(&mut reply).unwrap();
    parse(&reply, 9)
}

fn u32_of(reply: Reply) -> u32 {
    let Reply::Success(bytes) = reply else { panic!("{reply:?}") };
    let mut r = Reader::new(&bytes);
    let v = r.u32().unwrap();
    r.end().unwrap();
    v
}

fn string_of(reply: Reply) -> String {
    let Reply::Success(bytes) = reply else { panic!("{reply:?}") };
    let mut r = Reader::new(&bytes);
    let v = String::from_utf8(r.opaque(100).unwrap().to_vec()).unwrap();
    r.end().unwrap();
    v
}

fn getport(pm: SocketAddr, tcp: bool, prog: u32, vers: u32, prot: u32) -> u32 {
    let args = Writer::new().u32(prog).u32(vers).u32(prot).u32(0).finish();
    if tcp { u32_of(tcp_call(pm, PORTMAP, 2, 3, &args)) } else { u32_of(udp_call(pm, PORTMAP, 2, 3, &args)) }
}

/// A server for the all-types fixture with its portmapper on a free port; stopped on drop.
struct Served {
    nfs: SocketAddr,
    portmap: SocketAddr,
    stopper: crfs_nfs::Stopper,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn serve() -> Served {
    let blob = testdata().join("fixtures").join("all-types.esgz");
    let layer = Layer::open(FileReadAt::open(&blob).unwrap()).unwrap();
    let identity = layer.toc_digest();
    let fs = NfsFs::new(LayerFs::new(Arc::new(layer), Options::default()), identity);
    // A free port for the portmapper: bind and release one (another test could take it in
    // between; the bind below would then fail loudly, not silently).
    let free = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let endpoints = Endpoints { nfs: "127.0.0.1:0".parse().unwrap(), portmap: Some(free), ipv6_loopback: false };
    let server = NfsServer::bind_endpoints(fs, endpoints, 2).unwrap();
    let Portmap::Own(portmap) = server.portmap() else { panic!("{:?}", server.portmap()) };
    assert!(server.serves_udp());
    let nfs = server.local_addr();
    let stopper = server.stopper();
    let thread = std::thread::spawn(move || server.run().unwrap());
    Served { nfs, portmap, stopper, thread: Some(thread) }
}

#[test]
fn the_portmapper_answers_only_for_what_is_served() {
    let s = serve();
    let port = u32::from(s.nfs.port());
    for tcp in [false, true] {
        assert_eq!(getport(s.portmap, tcp, NFS, 3, 6), port);
        assert_eq!(getport(s.portmap, tcp, NFS, 3, 17), 0, "no NFS over UDP");
        assert_eq!(getport(s.portmap, tcp, NFS, 4, 6), 0, "no NFSv4");
        assert_eq!(getport(s.portmap, tcp, MOUNT, 3, 17), port);
        assert_eq!(getport(s.portmap, tcp, MOUNT, 1, 6), port);
        assert_eq!(getport(s.portmap, tcp, NLM, 4, 6), port);
        assert_eq!(getport(s.portmap, tcp, NLM, 1, 6), 0);
        assert_eq!(getport(s.portmap, tcp, NSM, 1, 17), port);
        assert_eq!(getport(s.portmap, tcp, 123_456, 1, 6), 0);
        assert_eq!(getport(s.portmap, tcp, PORTMAP, 2, 17), u32::from(s.portmap.port()));
    }
    let rpcb = |prog: u32, vers: u32, netid: &str| {
        Writer::new().u32(prog).u32(vers).opaque(netid.as_bytes()).opaque(b"").opaque(b"").finish()
    };
    let [hi, lo] = s.nfs.port().to_be_bytes();
    let want = format!("127.0.0.1.{hi}.{lo}");
    assert_eq!(string_of(udp_call(s.portmap, PORTMAP, 4, 3, &rpcb(NFS, 3, "tcp"))), want);
    assert_eq!(string_of(tcp_call(s.portmap, PORTMAP, 3, 3, &rpcb(MOUNT, 3, "udp"))), want);
    assert_eq!(string_of(udp_call(s.portmap, PORTMAP, 4, 3, &rpcb(NFS, 3, "udp"))), "");
    assert_eq!(string_of(udp_call(s.portmap, PORTMAP, 4, 3, &rpcb(NFS, 3, "tcp6"))), "");
    assert_eq!(string_of(udp_call(s.portmap, PORTMAP, 4, 9, &rpcb(NLM, 3, "tcp"))), "", "GETVERSADDR is exact");
    // DUMP lists every registration: 5 program versions on TCP, 4 on UDP, the portmapper's 3
    // versions on both.
    let Reply::Success(dump) = udp_call(s.portmap, PORTMAP, 2, 4, &[]) else { panic!() };
    assert_eq!(dump.len(), (5 + 4 + 6) * 20 + 4);
    assert_eq!(udp_call(s.portmap, PORTMAP, 2, 5, &[]), Reply::ProcUnavail, "no CALLIT");
    assert_eq!(udp_call(s.portmap, PORTMAP, 2, 1, &[0; 16]), Reply::Success(vec![0; 4]), "SET refused");
    assert_eq!(udp_call(s.portmap, PORTMAP, 5, 0, &[]), Reply::ProgMismatch(2, 4));
    assert_eq!(udp_call(s.portmap, PORTMAP, 2, 3, &[0; 3]), Reply::GarbageArgs);
}

#[test]
fn the_nfs_port_serves_mount_over_udp_locks_and_a_v4_probe() {
    let s = serve();
    assert_eq!(tcp_call(s.nfs, NFS, 4, 0, &[]), Reply::ProgMismatch(3, 3), "NFSv4 probe");
    assert_eq!(tcp_call(s.nfs, NFS, 3, 0, &[]), Reply::Success(Vec::new()));
    assert_eq!(udp_call(s.nfs, NFS, 3, 0, &[]), Reply::ProgUnavail, "no NFS over UDP");
    assert_eq!(udp_call(s.nfs, MOUNT, 3, 0, &[]), Reply::Success(Vec::new()));
    assert_eq!(udp_call(s.nfs, MOUNT, 1, 2, &[]), Reply::Success(vec![0; 4]), "DUMP v1: an empty list");
    assert_eq!(udp_call(s.nfs, MOUNT, 1, 1, &Writer::new().opaque(b"/").finish()), Reply::ProcUnavail);
    assert_eq!(udp_call(s.nfs, MOUNT, 2, 0, &[]), Reply::ProgMismatch(1, 3));
    // EXPORT over UDP: one export, "/".
    let Reply::Success(exports) = udp_call(s.nfs, MOUNT, 3, 5, &[]) else { panic!() };
    let mut r = Reader::new(&exports);
    assert_eq!((r.bool(), r.opaque(16)), (Ok(true), Ok(&b"/"[..])));
    assert_eq!(tcp_call(s.nfs, 123_456, 1, 0, &[]), Reply::ProgUnavail);
    assert_eq!(
        udp_call(s.portmap, MOUNT, 3, 0, &[]),
        Reply::ProgUnavail,
        "the portmapper's port serves the portmapper"
    );
    assert_eq!(tcp_call(s.portmap, NFS, 3, 0, &[]), Reply::ProgUnavail);

    // A whole-file exclusive lock, then a second owner is denied, then unlock frees it.
    let lock = |svid: i32, exclusive: bool| {
        let mut w = Writer::new();
        w.opaque(b"ck").bool(false).bool(exclusive);
        w.opaque(b"client").opaque(b"fh").opaque(&svid.to_be_bytes()).i32(svid).u64(0).u64(0);
        w.bool(false).i32(1);
        w.finish()
    };
    let stat = |reply: Reply| {
        let Reply::Success(bytes) = reply else { panic!("{reply:?}") };
        let mut r = Reader::new(&bytes);
        assert_eq!(r.opaque(8), Ok(&b"ck"[..]));
        r.u32().unwrap()
    };
    assert_eq!(stat(tcp_call(s.nfs, NLM, 4, 2, &lock(1, true))), 0, "GRANTED");
    assert_eq!(stat(udp_call(s.nfs, NLM, 4, 2, &lock(2, false))), 1, "DENIED, over UDP too");
    let mut w = Writer::new();
    w.opaque(b"ck").opaque(b"client").opaque(b"fh").opaque(&1_i32.to_be_bytes()).i32(1).u64(0).u64(0);
    assert_eq!(stat(tcp_call(s.nfs, NLM, 4, 4, &w.finish())), 0, "UNLOCK");
    assert_eq!(stat(tcp_call(s.nfs, NLM, 4, 2, &lock(2, false))), 0);
    assert_eq!(tcp_call(s.nfs, NLM, 1, 0, &[]), Reply::ProgMismatch(4, 4));
    assert_eq!(udp_call(s.nfs, NSM, 1, 0, &[]), Reply::Success(Vec::new()));
}
