//! Living beside a system rpcbind: where the portmapper's port is taken (rpcbind on a Linux
//! host, macOS's own), crfs registers its programs there with PMAPPROC_SET (version 2, over
//! UDP) and takes them out with PMAPPROC_UNSET when it stops.
//!
//! rpcbind accepts SET and UNSET only from loopback and, over UDP and TCP, only from a
//! privileged source port (rpcbind's `is_loopback`), so the call leaves from a port below
//! 1024 when crfs may bind one (root; macOS lets anyone). A program another daemon already
//! registered (the host's own lock manager or status monitor) is left alone: SET answers false
//! for it, and crfs says so instead of taking it over.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use nfs3_server::programs::Transport;
use tokio::net::UdpSocket;

use crate::portmap::{PROGRAM, Registration};
use crate::xdr::{Reader, Writer};

const PMAPPROC_SET: u32 = 1;
const PMAPPROC_UNSET: u32 = 2;
/// How long one attempt waits for rpcbind's answer, and how many attempts are made.
const WAIT: Duration = Duration::from_millis(500);
const ATTEMPTS: usize = 3;
/// Privileged source ports tried, highest first (as `bindresvport` does, below the range the
/// kernel hands out to its own RPC clients' reserved ports).
const RESERVED: std::ops::RangeInclusive<u16> = 600..=1023;

/// Registers `table` with the rpcbind at `at`; returns what it accepted. Fails only if rpcbind
/// does not answer, or refuses NFS itself (without it a plain mount cannot find crfs).
pub async fn set_all(at: SocketAddr, table: &[Registration]) -> io::Result<Vec<Registration>> {
    let socket = client_socket(at).await?;
    let mut accepted = Vec::new();
    // Version 2 registers IPv4 addresses only.
    for (xid, r) in (1_u32..).zip(table.iter().filter(|r| r.addr.is_ipv4())) {
        if call(&socket, at, xid, PMAPPROC_SET, r).await? {
            accepted.push(*r);
        } else if r.prog == nfs3_server::nfs3_types::nfs3::PROGRAM {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("the rpcbind on {at} refused to register NFS (another NFS server is registered there)"),
            ));
        } else {
            tracing::warn!(
                "the rpcbind on {at} already has program {} version {} over {:?}: left to its owner",
                r.prog,
                r.vers,
                r.transport
            );
        }
    }
    Ok(accepted)
}

/// Takes `registered` (what [`set_all`] accepted) out of the rpcbind at `at`. UNSET removes a
/// program version on every transport, so a version is only unset if every transport of it
/// was ours.
pub async fn unset_all(at: SocketAddr, registered: &[Registration]) -> io::Result<()> {
    let socket = client_socket(at).await?;
    let mut done: Vec<(u32, u32)> = Vec::new();
    for (xid, r) in (1_u32..).zip(registered) {
        if r.prog == PROGRAM || done.contains(&(r.prog, r.vers)) {
            continue;
        }
        done.push((r.prog, r.vers));
        call(&socket, at, xid, PMAPPROC_UNSET, r).await?;
    }
    Ok(())
}

/// A UDP socket on loopback, from a privileged port if one can be bound.
async fn client_socket(at: SocketAddr) -> io::Result<UdpSocket> {
    let ip = match at {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => *a.ip(),
        _ => Ipv4Addr::LOCALHOST,
    };
    for port in RESERVED.rev() {
        if let Ok(socket) = UdpSocket::bind((ip, port)).await {
            return Ok(socket);
        }
    }
    UdpSocket::bind((ip, 0)).await
}

/// One SET or UNSET call; rpcbind's boolean answer.
async fn call(socket: &UdpSocket, at: SocketAddr, xid: u32, proc: u32, r: &Registration) -> io::Result<bool> {
    let prot = match r.transport {
        Transport::Tcp => 6,
        Transport::Udp => 17,
    };
    let mut w = Writer::new();
    // rpc_msg: xid, CALL, RPC version 2, program, version, procedure, AUTH_NULL cred and verf.
    w.u32(xid).u32(0).u32(2).u32(PROGRAM).u32(2).u32(proc).u32(0).u32(0).u32(0).u32(0);
    w.u32(r.prog).u32(r.vers).u32(prot).u32(u32::from(r.addr.port()));
    let request = w.finish();
    let mut buf = [0_u8; 512];
    for _ in 0..ATTEMPTS {
        socket.send_to(&request, at).await?;
        let Ok(received) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf)).await else { continue };
        let (len, from) = received?;
        if from != at {
            continue;
        }
        match parse_reply(buf.get(..len).unwrap_or_default(), xid) {
            Some(Ok(answer)) => return Ok(answer),
            Some(Err(e)) => return Err(io::Error::other(format!("rpcbind on {at}: {e}"))),
            None => continue,
        }
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer from the rpcbind on {at}")))
}

/// A reply's boolean result: `None` if it is not the reply to `xid`, an error if the call
/// was denied or not accepted.
fn parse_reply(bytes: &[u8], xid: u32) -> Option<Result<bool, &'static str>> {
    let mut r = Reader::new(bytes);
    if r.u32().ok()? != xid || r.u32().ok()? != 1 {
        return None;
    }
    let answer = (|| -> Result<Result<bool, &'static str>, crate::xdr::Garbage> {
        if r.u32()? != 0 {
            return Ok(Err("call denied"));
        }
        let (_flavor, _verf) = (r.u32()?, r.opaque(400)?);
        if r.u32()? != 0 {
            return Ok(Err("call not accepted"));
        }
        Ok(Ok(r.bool()?))
    })();
    Some(answer.unwrap_or(Err("malformed reply")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let ok = Writer::new().u32(7).u32(1).u32(0).u32(0).opaque(b"").u32(0).bool(true).finish();
        assert_eq!(parse_reply(&ok, 7), Some(Ok(true)));
        assert_eq!(parse_reply(&ok, 8), None, "another call's reply");
        let denied = Writer::new().u32(7).u32(1).u32(1).u32(1).finish();
        assert_eq!(parse_reply(&denied, 7), Some(Err("call denied")));
        let unavail = Writer::new().u32(7).u32(1).u32(0).u32(0).opaque(b"").u32(1).finish();
        assert_eq!(parse_reply(&unavail, 7), Some(Err("call not accepted")));
        assert_eq!(parse_reply(&ok[..20], 7), Some(Err("malformed reply")));
    }
}
