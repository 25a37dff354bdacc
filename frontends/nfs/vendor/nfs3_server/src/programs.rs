//! crfs patch (PATCHES.md, "Other RPC programs and UDP"): a hook for the RPC programs this
//! server does not implement itself (the portmapper, a lock manager, a status monitor), and the
//! transports a call can arrive on.

use std::net::SocketAddr;

use nfs3_types::rpc::auth_unix;

/// How a call reached the server.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection (record-marked calls).
    Tcp,
    /// One UDP datagram per call.
    Udp,
}

/// Which programs a socket serves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Serves {
    /// NFS (TCP only), MOUNT and every program of the [`RpcPrograms`] hook.
    Everything,
    /// Only the portmapper (program 100000), through the [`RpcPrograms`] hook: a socket on the
    /// portmapper's well-known port.
    PortmapOnly,
}

/// One call of a program other than NFS and MOUNT.
#[derive(Debug)]
pub struct ProgramCall<'a> {
    pub prog: u32,
    pub vers: u32,
    pub proc: u32,
    /// The procedure's XDR arguments, after the RPC header.
    pub args: &'a [u8],
    /// The caller's address, as the socket saw it.
    pub client: SocketAddr,
    /// The server's address the call arrived at (the wildcard address for a UDP socket bound
    /// to it).
    pub local: SocketAddr,
    pub transport: Transport,
    /// The caller's `AUTH_UNIX` credential, if the call carried one.
    pub auth: Option<&'a auth_unix>,
}

/// The answer to a [`ProgramCall`].
#[derive(Debug, PartialEq, Eq)]
pub enum ProgramReply {
    /// SUCCESS, with the procedure's XDR result.
    Success(Vec<u8>),
    /// PROG_UNAVAIL: the program is not served here.
    ProgUnavail,
    /// PROG_MISMATCH: the program is served, in versions `low..=high` only.
    ProgMismatch { low: u32, high: u32 },
    /// PROC_UNAVAIL: the program and version are served, the procedure is not.
    ProcUnavail,
    /// GARBAGE_ARGS: the arguments did not decode.
    GarbageArgs,
    /// SYSTEM_ERR: the server could not carry the call out.
    SystemErr,
}

/// The programs a server answers besides NFS and MOUNT, portmapper included.
pub trait RpcPrograms: Send + Sync + 'static {
    /// Answers one call. Called on the server's runtime: it must not block.
    fn call(&self, call: &ProgramCall<'_>) -> ProgramReply;
}
