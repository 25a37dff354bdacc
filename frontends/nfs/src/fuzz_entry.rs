//! The NFS fuzz entry (feature `fuzzing`), shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/nfs_records.rs`) and the corpus regression test
//! (`frontends/nfs/tests/fuzz_corpus.rs`).
//!
//! [`nfs_records`] feeds arbitrary bytes, as the byte stream of one client connection, to the
//! vendored nfs3_server's connection loop (`test_reexports::process_socket`) over an in-memory
//! duplex stream: no socket, no port. The server serves [`NfsFs`] over a layer opened afresh
//! for each input from the all-types fixture (every entry kind, hardlinks, whiteouts), so a call that carries a valid
//! handle reaches crfs's own LOOKUP, READ, READDIR(PLUS), ACCESS and READLINK code. Handles
//! carry the fixed [`GENERATION`] and the fixture's TOC digest, so they are the same in every
//! process and a corpus can hold them.
//!
//! Input layout: an empty input does nothing. If bit 0 of the first byte is set, the rest is
//! the connection's byte stream as it is (record marks included, so framing is fuzzed too).
//! Otherwise the rest is a list of calls, each a u16 little-endian length and that many bytes
//! (the last may be short), each sent as one record (a last-fragment record mark, then the
//! bytes).
//!
//! Errors the server answers and connections it closes are the expected answer to bad input.
//! A [`Finding`] is an input after which the connection did not end within [`DEADLINE`] once
//! the client had sent everything (counting no time the process spent stopped), or the server task failed (a panic). A panic elsewhere is
//! caught by the fuzzer (libFuzzer's panic hook) or by the test's panic hook; allocations by
//! the fuzzer's malloc limit and the test's counting allocator.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crfs_core::fuzz_entry::Finding;
use crfs_core::{Digest, Layer};
use crfs_vfs::{LayerFs, Options};
use nfs3_server::test_reexports::{RPCContext, process_socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use crate::{GENERATION, NfsFs, Services};
use nfs3_server::programs::{ProgramCall, ProgramReply, RpcPrograms, Transport};

/// The layer served.
pub const FIXTURE: &[u8] = include_bytes!("../../../testdata/fixtures/all-types.esgz");
/// How long one input may keep its connection open after the client has sent everything
/// (time the process spends stopped does not count).
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How often the deadline is checked.
const TICK: Duration = Duration::from_millis(500);
/// Bytes the in-memory stream buffers in each direction.
const PIPE_BYTES: usize = 64 << 10;

/// The file system served: [`FIXTURE`] as one layer.
pub type FixtureFs = NfsFs<LayerFs<Vec<u8>>>;

/// Opens [`FIXTURE`]; `None` if it does not open (it always does).
pub fn fixture_fs() -> Option<FixtureFs> {
    let layer = Layer::open(FIXTURE.to_vec()).ok()?;
    let identity: Digest = layer.toc_digest();
    // No read-ahead thread: it would outlive the input, and LeakSanitizer, checking between
    // inputs, reports the state of a thread still exiting as leaked.
    let options = Options { read_ahead: false, ..Options::default() };
    Some(NfsFs::new(LayerFs::new(Arc::new(layer), options), identity))
}

/// Serves one connection to `fs` on the current tokio runtime, as the TCP server would: the
/// client's end of the in-memory stream and the connection's task.
pub fn connect(fs: Arc<FixtureFs>) -> (DuplexStream, JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(PIPE_BYTES);
    let mut ctx = RPCContext::test_ctx_with_generation("/", fs, GENERATION);
    ctx.programs = Some(Arc::new(fuzz_services()));
    let connection = tokio::spawn(async move {
        // An error is how the server ends a connection it cannot parse: not a finding.
        let _ = process_socket(server, ctx).await;
    });
    (client, connection)
}

/// A runtime for one input. It is dropped when the input ends, which waits for every read
/// still running on its blocking pool and joins the pool's threads: nothing an input started
/// outlives it, so LeakSanitizer (checking between inputs and at exit) sees no thread state,
/// and the next input starts from nothing. A current-thread runtime is cheap to make (well
/// under the cost of opening the fixture).
fn input_runtime() -> Result<tokio::runtime::Runtime, Finding> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|_| Finding("the runtime could not be set up"))
}

/// The byte stream an input stands for (see the module docs).
pub fn stream_of(data: &[u8]) -> Vec<u8> {
    let Some((&flags, rest)) = data.split_first() else { return Vec::new() };
    if flags & 1 == 1 {
        return rest.to_vec();
    }
    let mut stream = Vec::with_capacity(rest.len() + rest.len() / 2);
    let mut rest = rest;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = &rest[2..2 + len.min(rest.len() - 2)];
        stream.extend_from_slice(&(0x8000_0000 | body.len() as u32).to_be_bytes());
        stream.extend_from_slice(body);
        rest = &rest[2 + body.len()..];
    }
    stream
}

/// The input as the calls of `stream_of`'s list layout (the inverse, for writing seeds).
pub fn input_of_calls<'a>(calls: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut input = vec![0];
    for call in calls {
        let len = call.len().min(usize::from(u16::MAX));
        input.extend_from_slice(&(len as u16).to_le_bytes());
        input.extend_from_slice(&call[..len]);
    }
    input
}

/// Serves `data` (see the module docs) as one connection and returns the reply bytes' count.
pub fn nfs_records(data: &[u8]) -> Result<u64, Finding> {
    let runtime = input_runtime()?;
    // A fresh file system per input, so that no input's outcome depends on the inputs before
    // it: a finding replays alone, and a chunk cached by one input cannot hide the decode and
    // verify paths from the next. It costs about 3 ms per input in the fuzz build (the
    // committed corpus runs in 2.1 s instead of 0.6 s) and reaches more code (cov 7,857 to
    // 7,880 instead of 6,195 on that corpus).
    let fs = Arc::new(fixture_fs().ok_or(Finding("the fixture layer could not be opened"))?);
    let stream = stream_of(data);
    let outcome = runtime.block_on(async move {
        let (client, connection) = connect(fs);
        let abort = connection.abort_handle();
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let send = async move {
            // The server may close the connection before reading everything: not a finding.
            let _ = to_server.write_all(&stream).await;
            let _ = to_server.shutdown().await;
        };
        let receive = async move {
            let mut buf = vec![0u8; PIPE_BYTES];
            let mut total = 0u64;
            while let Ok(n) = from_server.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            total
        };
        let exchange = async move {
            let ((), replied) = tokio::join!(send, receive);
            connection.await.map(|_| replied)
        };
        let mut exchange = std::pin::pin!(exchange);
        let mut waited = Duration::ZERO;
        loop {
            let tick = Instant::now();
            match tokio::time::timeout(TICK, &mut exchange).await {
                Ok(Ok(replied)) => return Ok(replied),
                Ok(Err(_)) => return Err(Finding("the connection task failed")),
                Err(_) => {
                    // A process stopped meanwhile (SIGSTOP, as benchmarks on this machine do to
                    // fuzzers) sees one long tick: it counts as two at most.
                    waited += tick.elapsed().min(TICK * 2);
                    if waited >= DEADLINE {
                        abort.abort();
                        return Err(Finding("the connection did not end after the client's last byte"));
                    }
                }
            }
        }
    });
    // Waits for reads the connection left running and joins the blocking pool (see
    // `input_runtime`).
    drop(runtime);
    outcome
}

/// The services a fuzzed server answers with: NFS, MOUNT, NLM and NSM at 127.0.0.1:2049, the
/// portmapper at 127.0.0.1:111, over TCP and UDP.
pub fn fuzz_services() -> Services {
    let nfs = std::net::SocketAddr::from(([127, 0, 0, 1], 2049));
    let portmap = std::net::SocketAddr::from(([127, 0, 0, 1], 111));
    let mut table = crate::served_programs(nfs, true);
    table.extend(crate::portmapper_programs(portmap, true));
    Services::new(table)
}

/// The largest successful reply any of these programs may give: a DUMP of the table, or a
/// TEST's holder with its 1 KiB owner handle, is far below it.
pub const MAX_PROGRAM_REPLY: usize = 8 << 10;

/// The `rpc_programs` target: the input as a list of calls (the same u16-length list as
/// [`stream_of`]'s, without its flags byte) to the portmapper, the lock manager and the status
/// monitor, one [`Services`] for the whole input, so lock state carries from call to call.
/// Each call: a program byte (`% 4`: portmapper, NLM, NSM, NFS — which is not served here), a
/// version byte, a procedure byte, a flags byte (bit 0: UDP), then the XDR arguments. A
/// finding is a successful reply over [`MAX_PROGRAM_REPLY`] or a lock table over its bound.
/// Returns the bytes of every reply.
pub fn rpc_programs(data: &[u8]) -> Result<u64, Finding> {
    const PROGRAMS: [u32; 4] = [crate::portmap::PROGRAM, crate::locks::NLM_PROGRAM, crate::locks::NSM_PROGRAM, 100_003];
    let services = fuzz_services();
    let mut total = 0u64;
    let mut rest = data;
    while let [lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (call, after) = tail.split_at(len);
        rest = after;
        let [prog, vers, proc, flags, args @ ..] = call else { continue };
        let reply = services.call(&ProgramCall {
            prog: PROGRAMS[usize::from(prog % 4)],
            vers: u32::from(*vers),
            proc: u32::from(*proc),
            args,
            client: std::net::SocketAddr::from(([127, 0, 0, 1], 700)),
            local: std::net::SocketAddr::from(([127, 0, 0, 1], 2049)),
            transport: if flags & 1 == 1 { Transport::Udp } else { Transport::Tcp },
            auth: None,
        });
        if let ProgramReply::Success(bytes) = reply {
            if bytes.len() > MAX_PROGRAM_REPLY {
                return Err(Finding("a program's reply is over its bound"));
            }
            total += bytes.len() as u64;
        }
        if services.lock_count() > crate::locks::MAX_LOCKS {
            return Err(Finding("the lock table is over its bound"));
        }
    }
    Ok(total)
}
