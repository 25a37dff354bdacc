//! The portmapper (RPC program 100000; RFC 1833): versions 2 (GETPORT) and 3 and 4
//! (rpcbind: GETADDR, GETVERSADDR), with NULL and DUMP in each, answering only for what this
//! server really serves. It is what lets `mount -t nfs HOST:/ DIR` find NFS, MOUNT and the
//! lock manager without port options.
//!
//! | proc | v2 | v3 / v4 |
//! |---|---|---|
//! | 0 | NULL | NULL |
//! | 1, 2 | SET, UNSET: refused (false) | SET, UNSET: refused (false) |
//! | 3 | GETPORT(mapping) → port, 0 if not served | GETADDR(rpcb) → universal address, "" if not served |
//! | 4 | DUMP → pmaplist | DUMP → rpcblist |
//! | 6 | — | GETTIME → seconds since 1970 |
//! | 9 | — | GETVERSADDR (v4): as GETADDR, this version only |
//!
//! Everything else (CALLIT, which would make the portmapper a reflector, among them) is
//! PROC_UNAVAIL. Nothing registers here: the table is fixed when the server binds its sockets.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use nfs3_server::programs::{ProgramCall, ProgramReply, Transport};

use crate::xdr::{Garbage, Reader, Writer};

/// The portmapper's RPC program number.
pub const PROGRAM: u32 = 100_000;
/// IP protocol numbers of a version 2 `mapping`.
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
/// Longest netid, universal address or owner string accepted (rpcbind's strings are short;
/// this bounds what a caller can make us read).
const MAX_STRING: usize = 255;
/// Who owns the registrations in a DUMP.
const OWNER: &[u8] = b"crfs";

/// One program version served on one transport at one address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// RPC program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// TCP or UDP.
    pub transport: Transport,
    /// Where it is served: an IPv4 address (netids `tcp`, `udp`) or IPv6 (`tcp6`, `udp6`).
    pub addr: SocketAddr,
}

/// The portmapper's answers, from a fixed table.
#[derive(Debug)]
pub struct Portmapper {
    table: Vec<Registration>,
}

impl Portmapper {
    /// A portmapper that knows `table` (its own registrations included).
    pub fn new(table: Vec<Registration>) -> Self {
        Portmapper { table }
    }

    /// What it answers for.
    pub fn registrations(&self) -> &[Registration] {
        &self.table
    }

    /// Answers one call to program 100000.
    pub fn call(&self, call: &ProgramCall<'_>) -> ProgramReply {
        let result = match (call.vers, call.proc) {
            (2..=4, 0) => Reader::new(call.args).end().map(|()| Vec::new()),
            (2, 1 | 2) => mapping(call.args).map(|_| Writer::new().bool(false).finish()),
            (2, 3) => mapping(call.args).map(|(prog, vers, prot)| {
                // Version 2 knows IPv4 only.
                let found = transport_of_prot(prot).and_then(|t| self.find(prog, Some(vers), (t, false)));
                Writer::new().u32(found.map_or(0, |r| u32::from(r.addr.port()))).finish()
            }),
            (2, 4) => Reader::new(call.args).end().map(|()| self.dump_v2()),
            (3 | 4, 1 | 2) => rpcb(call.args).map(|_| Writer::new().bool(false).finish()),
            (3 | 4, 3) => rpcb(call.args).map(|q| self.getaddr(q, None, call.local)),
            (4, 9) => rpcb(call.args).map(|q| self.getaddr(q, Some(q.vers), call.local)),
            (3 | 4, 4) => Reader::new(call.args).end().map(|()| self.dump_v3(call.local)),
            (3 | 4, 6) => Reader::new(call.args).end().map(|()| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                Writer::new().u32(u32::try_from(now).unwrap_or(u32::MAX)).finish()
            }),
            (2..=4, _) => return ProgramReply::ProcUnavail,
            _ => return ProgramReply::ProgMismatch { low: 2, high: 4 },
        };
        match result {
            Ok(bytes) => ProgramReply::Success(bytes),
            Err(Garbage) => ProgramReply::GarbageArgs,
        }
    }

    /// The registration of `prog` on a transport and address family (IPv6 if true): of
    /// version `vers`, or of any version if `None`.
    fn find(&self, prog: u32, vers: Option<u32>, (transport, ipv6): (Transport, bool)) -> Option<&Registration> {
        self.table.iter().find(|r| {
            r.prog == prog && vers.is_none_or(|v| r.vers == v) && r.transport == transport && r.addr.is_ipv6() == ipv6
        })
    }

    /// GETADDR (v3, v4) answers for the exact version if it is served, else for any version of
    /// the program on that transport, so the caller learns the versions from the program
    /// itself (rpcbind does the same); GETVERSADDR for the exact version only.
    fn getaddr(&self, q: Rpcb<'_>, exact: Option<u32>, local: SocketAddr) -> Vec<u8> {
        let found = netid_transport(q.netid).and_then(|t| {
            self.find(q.prog, Some(q.vers), t).or_else(|| exact.map_or_else(|| self.find(q.prog, None, t), |_| None))
        });
        let addr = found.map(|r| universal_address(r.addr, local)).unwrap_or_default();
        Writer::new().opaque(addr.as_bytes()).finish()
    }

    fn dump_v2(&self) -> Vec<u8> {
        let mut w = Writer::new();
        for r in self.table.iter().filter(|r| r.addr.is_ipv4()) {
            let prot = match r.transport {
                Transport::Tcp => IPPROTO_TCP,
                Transport::Udp => IPPROTO_UDP,
            };
            w.bool(true).u32(r.prog).u32(r.vers).u32(prot).u32(u32::from(r.addr.port()));
        }
        w.bool(false).finish()
    }

    fn dump_v3(&self, local: SocketAddr) -> Vec<u8> {
        let mut w = Writer::new();
        for r in &self.table {
            let netid: &[u8] = match (r.transport, r.addr.is_ipv6()) {
                (Transport::Tcp, false) => b"tcp",
                (Transport::Udp, false) => b"udp",
                (Transport::Tcp, true) => b"tcp6",
                (Transport::Udp, true) => b"udp6",
            };
            let addr = universal_address(r.addr, local);
            w.bool(true).u32(r.prog).u32(r.vers).opaque(netid).opaque(addr.as_bytes()).opaque(OWNER);
        }
        w.bool(false).finish()
    }
}

/// A version 2 `mapping`: program, version, protocol (the port is ignored).
fn mapping(args: &[u8]) -> Result<(u32, u32, u32), Garbage> {
    let mut r = Reader::new(args);
    let (prog, vers, prot, _port) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    r.end()?;
    Ok((prog, vers, prot))
}

/// A version 3/4 `rpcb`, the parts a query uses.
#[derive(Copy, Clone)]
struct Rpcb<'a> {
    prog: u32,
    vers: u32,
    netid: &'a [u8],
}

fn rpcb(args: &[u8]) -> Result<Rpcb<'_>, Garbage> {
    let mut r = Reader::new(args);
    let (prog, vers, netid) = (r.u32()?, r.u32()?, r.opaque(MAX_STRING)?);
    let (_addr, _owner) = (r.opaque(MAX_STRING)?, r.opaque(MAX_STRING)?);
    r.end()?;
    Ok(Rpcb { prog, vers, netid })
}

fn transport_of_prot(prot: u32) -> Option<Transport> {
    match prot {
        IPPROTO_TCP => Some(Transport::Tcp),
        IPPROTO_UDP => Some(Transport::Udp),
        _ => None,
    }
}

/// A netid's transport and whether it is IPv6.
fn netid_transport(netid: &[u8]) -> Option<(Transport, bool)> {
    match netid {
        b"tcp" => Some((Transport::Tcp, false)),
        b"udp" => Some((Transport::Udp, false)),
        b"tcp6" => Some((Transport::Tcp, true)),
        b"udp6" => Some((Transport::Udp, true)),
        _ => None,
    }
}

/// A universal address (RFC 5665): the address, then the port as two decimal bytes
/// (`127.0.0.1.8.1`, `::1.8.1`). A registration on the wildcard address is named by the
/// address the call arrived at, when that is of the same family, as rpcbind does.
pub fn universal_address(addr: SocketAddr, local: SocketAddr) -> String {
    let [p1, p2] = addr.port().to_be_bytes();
    let ip = if addr.ip().is_unspecified() && addr.is_ipv6() == local.is_ipv6() { local.ip() } else { addr.ip() };
    format!("{ip}.{p1}.{p2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm() -> Portmapper {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let tcp = |prog, vers, port| Registration { prog, vers, transport: Transport::Tcp, addr: at(port) };
        let udp = |prog, vers, port| Registration { prog, vers, transport: Transport::Udp, addr: at(port) };
        let tcp6 =
            Registration { prog: 100_003, vers: 3, transport: Transport::Tcp, addr: "[::1]:2049".parse().unwrap() };
        Portmapper::new(vec![
            tcp(PROGRAM, 2, 111),
            udp(PROGRAM, 2, 111),
            tcp(100_003, 3, 2049),
            tcp(100_005, 3, 2049),
            udp(100_005, 3, 2049),
            tcp(100_021, 4, 2049),
            tcp6,
        ])
    }

    fn call(vers: u32, proc: u32, args: &[u8]) -> ProgramReply {
        pm().call(&ProgramCall {
            prog: PROGRAM,
            vers,
            proc,
            args,
            client: "127.0.0.1:700".parse().unwrap(),
            local: "127.0.0.1:111".parse().unwrap(),
            transport: Transport::Udp,
            auth: None,
        })
    }

    fn success(reply: ProgramReply) -> Vec<u8> {
        match reply {
            ProgramReply::Success(bytes) => bytes,
            other => panic!("not a success: {other:?}"),
        }
    }

    fn getport(prog: u32, vers: u32, prot: u32) -> u32 {
        let args = Writer::new().u32(prog).u32(vers).u32(prot).u32(0).finish();
        Reader::new(&success(call(2, 3, &args))).u32().unwrap()
    }

    fn getaddr(vers: u32, proc: u32, prog: u32, pvers: u32, netid: &str) -> String {
        let args = Writer::new().u32(prog).u32(pvers).opaque(netid.as_bytes()).opaque(b"").opaque(b"").finish();
        let reply = success(call(vers, proc, &args));
        String::from_utf8(Reader::new(&reply).opaque(64).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn getport_answers_only_for_what_is_served() {
        assert_eq!(getport(100_003, 3, IPPROTO_TCP), 2049);
        assert_eq!(getport(100_003, 3, IPPROTO_UDP), 0, "no NFS over UDP");
        assert_eq!(getport(100_003, 4, IPPROTO_TCP), 0, "no NFSv4");
        assert_eq!(getport(100_021, 4, IPPROTO_TCP), 2049);
        assert_eq!(getport(100_021, 4, IPPROTO_UDP), 0);
        assert_eq!(getport(123_456, 1, IPPROTO_TCP), 0);
        assert_eq!(getport(100_005, 3, 99), 0, "unknown protocol");
    }

    #[test]
    fn getaddr_falls_back_to_another_version_but_getversaddr_does_not() {
        assert_eq!(getaddr(4, 3, 100_005, 3, "udp"), "127.0.0.1.8.1");
        assert_eq!(getaddr(3, 3, 100_003, 3, "tcp"), "127.0.0.1.8.1");
        assert_eq!(getaddr(4, 3, 100_003, 4, "tcp"), "127.0.0.1.8.1", "v4 asked, v3 offered");
        assert_eq!(getaddr(4, 9, 100_003, 4, "tcp"), "", "GETVERSADDR is exact");
        assert_eq!(getaddr(4, 3, 100_003, 3, "tcp6"), "::1.8.1");
        assert_eq!(getaddr(4, 3, 100_005, 3, "tcp6"), "");
        assert_eq!(getaddr(4, 3, 123_456, 1, "tcp"), "");
        let args = Writer::new().u32(100_003).u32(3).opaque(b"tcp").opaque(b"").opaque(b"").finish();
        assert_eq!(call(3, 9, &args), ProgramReply::ProcUnavail, "no GETVERSADDR in v3");
    }

    #[test]
    fn dumps_list_every_registration() {
        let v2 = success(call(2, 4, &[]));
        assert_eq!(v2.len(), 6 * 20 + 4, "IPv4 only in version 2");
        let mut r = Reader::new(&v2);
        assert!(r.bool().unwrap());
        assert_eq!((r.u32(), r.u32(), r.u32(), r.u32()), (Ok(PROGRAM), Ok(2), Ok(IPPROTO_TCP), Ok(111)));
        let v4 = success(call(4, 4, &[]));
        let mut r = Reader::new(&v4);
        let mut n = 0;
        while r.bool().unwrap() {
            let (_prog, _vers) = (r.u32().unwrap(), r.u32().unwrap());
            let netid = r.opaque(8).unwrap();
            let addr = r.opaque(64).unwrap();
            match netid {
                b"tcp" | b"udp" => assert!(addr.starts_with(b"127.0.0.1.")),
                b"tcp6" => assert_eq!(addr, b"::1.8.1"),
                other => panic!("{other:?}"),
            }
            assert_eq!(r.opaque(8).unwrap(), OWNER);
            n += 1;
        }
        assert_eq!(n, 7);
        r.end().unwrap();
    }

    #[test]
    fn wildcard_registrations_are_named_by_the_address_called() {
        let wild: SocketAddr = "0.0.0.0:2049".parse().unwrap();
        assert_eq!(universal_address(wild, "10.0.0.5:111".parse().unwrap()), "10.0.0.5.8.1");
        assert_eq!(universal_address(wild, "[::1]:111".parse().unwrap()), "0.0.0.0.8.1");
        assert_eq!(universal_address("[::1]:111".parse().unwrap(), wild), "::1.0.111");
    }

    #[test]
    fn set_is_refused_and_bad_calls_get_rpc_errors() {
        let args = Writer::new().u32(100_003).u32(3).u32(IPPROTO_TCP).u32(9).finish();
        assert_eq!(success(call(2, 1, &args)), [0, 0, 0, 0]);
        assert_eq!(call(2, 5, &args), ProgramReply::ProcUnavail, "CALLIT");
        assert_eq!(call(5, 0, &[]), ProgramReply::ProgMismatch { low: 2, high: 4 });
        assert_eq!(call(2, 3, &args[..12]), ProgramReply::GarbageArgs);
        assert_eq!(call(2, 0, &[0]), ProgramReply::GarbageArgs);
        let long = Writer::new().u32(1).u32(1).opaque(&[b'x'; 300]).opaque(b"").opaque(b"").finish();
        assert_eq!(call(4, 3, &long), ProgramReply::GarbageArgs);
    }
}
