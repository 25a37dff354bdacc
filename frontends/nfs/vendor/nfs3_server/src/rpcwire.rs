use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Instant;

use messages::{CompleteRpcMessage, HandleResult, IncomingRpcMessage};
use nfs3_types::rpc::{
    RPC_VERSION_2, accept_stat_data, auth_flavor, auth_stat, auth_unix, call_body, fragment_header,
};
use nfs3_types::xdr_codec::{Pack, Unpack};
use nfs3_types::{nfs3 as nfs, portmap};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{error, info, trace, warn};

use crate::context::RPCContext;
use crate::programs::{ProgramCall, ProgramReply, RpcPrograms, Serves, Transport};
use crate::transaction_tracker::{self, TransactionError, TransactionLock};

use crate::vfs::NfsFileSystem;
use crate::{mount_handlers, nfs_handlers, portmap_handlers};

pub mod messages;

// Information from RFC 5531
// https://datatracker.ietf.org/doc/html/rfc5531

pub(crate) async fn handle_rpc_message<T>(
    mut context: RPCContext<T>,
    message: CompleteRpcMessage,
) -> anyhow::Result<HandleResult>
where
    T: NfsFileSystem,
{
    let message = IncomingRpcMessage::try_from(message)?;
    let xid = message.xid();
    let call = message.body();
    let prog = call.prog;

    if call.rpcvers != RPC_VERSION_2 {
        warn!("Invalid RPC version {} != {RPC_VERSION_2}", call.rpcvers);
        return message.into_rpc_mismatch();
    }

    let unix = call.cred.flavor == auth_flavor::AUTH_UNIX;
    if unix {
        let auth = auth_unix::unpack(&mut Cursor::new(&call.cred.body.0))?.0;
        context.auth = auth;
    }
    // crfs patch (PATCHES.md, "ACCESS hook"): remember the flavor for the ACCESS handler.
    context.auth_is_unix = unix;

    // crfs patch (PATCHES.md, "Other RPC programs and UDP"): NFS (over TCP) and MOUNT are
    // served here on sockets that serve everything; every other program, the portmapper
    // included, goes to the `RpcPrograms` hook when there is one. Unknown programs are
    // answered PROG_UNAVAIL without a log line per call.
    let builtin = context.serves == Serves::Everything
        && (prog == nfs3_types::mount::PROGRAM
            || (prog == nfs::PROGRAM && context.transport == Transport::Tcp));
    if !builtin {
        return match context.programs.clone() {
            Some(programs) => call_program(&context, programs.as_ref(), message, unix),
            None if prog == portmap::PROGRAM && context.serves == Serves::Everything => {
                portmap_handlers::handle_portmap(context, message).await
            }
            None => {
                trace!("program {prog} is not served here");
                message.into_error_reply(accept_stat_data::PROG_UNAVAIL)
            }
        };
    }

    if !context.vfs.authorize(unix.then_some(&context.auth)) {
        warn!(
            "refusing a call from uid {} on {}",
            context.auth.uid, context.client_addr
        );
        return message.into_auth_error(auth_stat::AUTH_TOOWEAK);
    }

    // A UDP call is never a retransmission of a TCP one, and the programs served over UDP
    // are idempotent: a lost reply must be answered again, not dropped as a duplicate.
    let _transaction = if context.transport == Transport::Tcp {
        match lock_transaction(
            &context.transaction_tracker,
            &context.client_addr,
            xid,
            call,
        ) {
            Ok(lock) => Some(lock),
            Err(Some(err)) => return message.into_error_reply(err),
            // This is a retransmission, so we don't need to do anything
            Err(None) => return Ok(HandleResult::NoReply),
        }
    } else {
        None
    };

    if prog == nfs::PROGRAM {
        nfs_handlers::handle_nfs(context, message).await
    } else {
        mount_handlers::handle_mount(context, message).await
    }
}

/// crfs patch (PATCHES.md, "Other RPC programs and UDP"): one call through the hook.
fn call_program<T>(
    context: &RPCContext<T>,
    programs: &dyn RpcPrograms,
    mut message: IncomingRpcMessage,
    unix: bool,
) -> anyhow::Result<HandleResult>
where
    T: NfsFileSystem,
{
    let call = message.body();
    let (prog, vers, proc) = (call.prog, call.vers, call.proc);
    if context.serves == Serves::PortmapOnly && prog != portmap::PROGRAM {
        return message.into_error_reply(accept_stat_data::PROG_UNAVAIL);
    }
    let data = message.take_data();
    let start = usize::try_from(data.position()).unwrap_or(usize::MAX);
    let args = data.get_ref().get(start..).unwrap_or_default();
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let reply = programs.call(&ProgramCall {
        prog,
        vers,
        proc,
        args,
        client: context.client_addr.parse().unwrap_or(unspecified),
        local: context.local_addr,
        transport: context.transport,
        auth: unix.then_some(&context.auth),
    });
    match reply {
        ProgramReply::Success(result) => message.into_success_reply(&RawXdr(result)),
        ProgramReply::ProgUnavail => message.into_error_reply(accept_stat_data::PROG_UNAVAIL),
        ProgramReply::ProgMismatch { low, high } => {
            message.into_error_reply(accept_stat_data::PROG_MISMATCH { low, high })
        }
        ProgramReply::ProcUnavail => message.into_error_reply(accept_stat_data::PROC_UNAVAIL),
        ProgramReply::GarbageArgs => message.into_error_reply(accept_stat_data::GARBAGE_ARGS),
        ProgramReply::SystemErr => message.into_error_reply(accept_stat_data::SYSTEM_ERR),
    }
}

/// An XDR result already encoded by the hook, packed as it is.
struct RawXdr(Vec<u8>);

impl Pack for RawXdr {
    fn packed_size(&self) -> usize {
        self.0.len()
    }

    fn pack(&self, output: &mut impl std::io::Write) -> nfs3_types::xdr_codec::Result<usize> {
        output
            .write_all(&self.0)
            .map_err(nfs3_types::xdr_codec::Error::Io)?;
        Ok(self.0.len())
    }
}

/// Handles the RPC message and returns a result. The handler is an async function
pub async fn handle<I, O, T>(
    context: RPCContext<T>,
    mut message: IncomingRpcMessage,
    handler: impl AsyncFnOnce(RPCContext<T>, u32, I) -> O,
) -> anyhow::Result<HandleResult>
where
    I: Unpack,
    O: Pack + Send + 'static,
    T: NfsFileSystem,
{
    let mut cursor = message.take_data();
    let (args, _) = match I::unpack(&mut cursor) {
        Ok(ok) => ok,
        Err(err) => {
            error!("Failed to unpack message: {err}");
            return message.into_error_reply(accept_stat_data::GARBAGE_ARGS);
        }
    };
    if cursor.position() != cursor.get_ref().len() as u64 {
        error!("Unpacked message size does not match expected size");
        return message.into_error_reply(accept_stat_data::GARBAGE_ARGS);
    }

    let result = handler(context, message.xid(), args).await;
    message.into_success_reply(&result)
}

fn lock_transaction(
    transaction_tracker: &transaction_tracker::TransactionTracker,
    client_addr: &str,
    xid: u32,
    call: &call_body<'_>,
) -> Result<TransactionLock, Option<accept_stat_data>> {
    let transaction = transaction_tracker.start_transaction(client_addr, xid, Instant::now());

    match transaction {
        Ok(lock) => Ok(lock),
        Err(TransactionError::AlreadyExists) => {
            info!(
                "Retransmission detected, xid: {xid}, client_addr: {client_addr}, call: {call:?}",
            );
            Err(None)
        }
        Err(TransactionError::TooManyRequests) => {
            warn!("Too many requests, xid: {xid}, client_addr: {client_addr}, call: {call:?}",);

            Err(Some(accept_stat_data::SYSTEM_ERR))
        }
    }
}

/// Bytes of replies gathered before they are written.
const WRITE_BUFFER: usize = 64 * 1024;

/// crfs patch (PATCHES.md, "One task per connection"): a connection's replies, each behind its
/// record mark. Small replies gather in a buffer, written when the connection has nothing else
/// to do ([`flush`](Self::flush)) or when it is full; a reply that does not fit goes out at once
/// with what the buffer holds, in one vectored write, so a big reply (a READ's 1 MiB) is never
/// copied into the buffer and its record mark never leaves alone.
#[derive(Debug, Default)]
pub struct ReplyWriter {
    buf: Vec<u8>,
}

impl ReplyWriter {
    /// Writes `reply` behind its record mark, or buffers it.
    pub async fn push(
        &mut self,
        out: &mut (impl AsyncWrite + Unpin),
        reply: &CompleteRpcMessage,
    ) -> std::io::Result<()> {
        let length = reply.len();
        let mark = u32::try_from(length)
            .ok()
            .filter(|l| *l < 1 << 31)
            .map(|l| fragment_header::new(l, true).into_xdr_buf())
            .ok_or_else(|| std::io::Error::other(format!("a reply of {length} bytes")))?;
        trace!("Writing fragment length: {length}");
        if self.buf.len() + mark.len() + length <= WRITE_BUFFER {
            self.buf.extend_from_slice(&mark);
            for part in reply.parts() {
                self.buf.extend_from_slice(part);
            }
            return Ok(());
        }
        self.buf.extend_from_slice(&mark);
        let [head, tail, padding] = reply.parts();
        write_all_vectored(out, [&self.buf, head, tail, padding]).await?;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered.
    pub async fn flush(&mut self, out: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            out.write_all(&self.buf).await?;
            self.buf.clear();
            out.flush().await?;
        }
        Ok(())
    }
}

/// Writes every byte of `parts`, in order, with as few (vectored) writes as the socket takes.
async fn write_all_vectored<const N: usize>(
    out: &mut (impl AsyncWrite + Unpin),
    mut parts: [&[u8]; N],
) -> std::io::Result<()> {
    loop {
        let slices = parts.map(std::io::IoSlice::new);
        let first = parts.iter().position(|p| !p.is_empty());
        let Some(first) = first else { return Ok(()) };
        let mut n = out
            .write_vectored(slices.get(first..).unwrap_or_default())
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        for part in &mut parts {
            let taken = n.min(part.len());
            *part = part.get(taken..).unwrap_or_default();
            n -= taken;
        }
    }
}
