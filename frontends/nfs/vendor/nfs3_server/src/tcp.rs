use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::Poll;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, error, info};

use crate::context::RPCContext;
use crate::programs::{RpcPrograms, Serves, Transport};
use crate::rpcwire::messages::{CompleteRpcMessage, HandleResult, RecordReader};
use crate::rpcwire::{ReplyWriter, handle_rpc_message};
use crate::transaction_tracker::{Cleaner, TransactionTracker};
use crate::vfs::adapters::ReadOnlyAdapter;
use crate::vfs::{NfsFileSystem, NfsReadFileSystem};

/// A NFS Tcp Connection Handler
pub struct NFSTcpListener<T: NfsFileSystem + 'static> {
    listener: TcpListener,
    port: u16,
    arcfs: Arc<T>,
    mount_signal: Option<mpsc::Sender<bool>>,
    export_name: Arc<String>,
    transaction_tracker: Arc<TransactionTracker>,
    file_handle_converter: crate::vfs::handle::FileHandleConverter,
    stop_notify: Arc<tokio::sync::Notify>,
    // crfs patch (PATCHES.md, "Other RPC programs and UDP").
    programs: Option<Arc<dyn RpcPrograms>>,
}

impl<T: NfsFileSystem + 'static> Drop for NFSTcpListener<T> {
    fn drop(&mut self) {
        self.stop_notify.notify_waiters();
    }
}

#[must_use]
pub fn generate_host_ip(hostnum: u16) -> String {
    format!(
        "127.88.{}.{}",
        ((hostnum >> 8) & 0xFF) as u8,
        (hostnum & 0xFF) as u8
    )
}

/// A call being answered: the future of its reply.
type Call = Pin<Box<dyn Future<Output = anyhow::Result<HandleResult>> + Send>>;

/// Calls of one connection still being answered (waiting for a blocking thread) at most; past
/// this the connection reads no more calls until some are answered, so a client that sends
/// calls faster than they are answered is held back by TCP instead of growing memory.
// crfs patch (PATCHES.md, "One task per connection").
const MAX_CALLS_IN_FLIGHT: usize = 128;

/// processes an established socket
// crfs patch (PATCHES.md, "One task per connection"): the connection's one task reads the
// calls, answers each at once when it needs no waiting (the answer is ready on its first poll:
// every call but one that waits for a blocking thread, such as a READ that decodes), keeps the
// others running in `in_flight`, and writes the replies, flushed when it has nothing else to
// do. Upstream spawned a task per call and sent every reply through a channel to a writer
// task: three task wake-ups per call and a task to schedule. While a reply is being written no
// call is read; the socket buffers them.
pub(crate) async fn process_socket<IO, T>(
    mut socket: IO,
    context: RPCContext<T>,
) -> Result<(), anyhow::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: NfsFileSystem + 'static,
{
    let mut records = RecordReader::default();
    let mut replies = ReplyWriter::default();
    let mut in_flight: FuturesUnordered<Call> = FuturesUnordered::new();
    let mut reading = true;
    loop {
        while reading && in_flight.len() < MAX_CALLS_IN_FLIGHT {
            match records.next_message() {
                Ok(Some(message)) => {
                    let mut call: Call = Box::pin(handle_rpc_message(context.clone(), message));
                    match poll_once(&mut call).await {
                        Poll::Ready(result) => answer(&mut socket, &mut replies, result).await?,
                        Poll::Pending => in_flight.push(call),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!("Message loop broken due to {e}");
                    reading = false;
                }
            }
        }
        while let Some(Some(result)) = in_flight.next().now_or_never() {
            answer(&mut socket, &mut replies, result).await?;
        }
        replies.flush(&mut socket).await?;
        // Every call read is answered once the client has stopped sending.
        if !reading && in_flight.is_empty() {
            return Ok(());
        }
        let event = tokio::select! {
            read = records.fill(&mut socket), if reading && in_flight.len() < MAX_CALLS_IN_FLIGHT => Event::Read(read),
            result = in_flight.next(), if !in_flight.is_empty() => Event::Answered(result),
            else => Event::Answered(None),
        };
        match event {
            Event::Read(Ok(0)) => reading = false,
            Event::Read(Ok(_)) | Event::Answered(None) => {}
            Event::Read(Err(e)) => {
                debug!("Message loop broken due to {e}");
                reading = false;
            }
            Event::Answered(Some(result)) => answer(&mut socket, &mut replies, result).await?,
        }
    }
}

/// What the connection's task woke for.
enum Event {
    Read(io::Result<usize>),
    Answered(Option<anyhow::Result<HandleResult>>),
}

/// Polls `call` once, in the connection task's context (so that it wakes the task when it can
/// go on).
async fn poll_once(call: &mut Call) -> Poll<anyhow::Result<HandleResult>> {
    std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await
}

/// Writes (or buffers) a call's reply; an error ends the connection.
async fn answer<IO: tokio::io::AsyncWrite + Unpin>(
    socket: &mut IO,
    replies: &mut ReplyWriter,
    result: anyhow::Result<HandleResult>,
) -> Result<(), anyhow::Error> {
    match result {
        Ok(HandleResult::Reply(reply)) => Ok(replies.push(socket, &reply).await?),
        Ok(HandleResult::NoReply) => Ok(()),
        Err(err) => {
            error!("Error handling RPC message: {err}");
            replies.flush(socket).await?;
            Err(anyhow::anyhow!("Error handling RPC message"))
        }
    }
}

pub trait NFSTcp: Send + Sync {
    /// Gets the true listening port. Useful if the bound port number is 0
    fn get_listen_port(&self) -> u16;

    /// Gets the true listening IP. Useful on windows when the IP may be random
    fn get_listen_ip(&self) -> IpAddr;

    /// Sets a mount listener. A "true" signal will be sent on a mount
    /// and a "false" will be sent on an unmount
    fn set_mount_listener(&mut self, signal: mpsc::Sender<bool>);

    /// Loops forever and never returns handling all incoming connections.
    fn handle_forever(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl<RO> NFSTcpListener<ReadOnlyAdapter<RO>>
where
    RO: NfsReadFileSystem + 'static,
{
    /// Create a new `NFSTcpListener` with a read-only file system.
    ///
    /// It binds to a ipstr of the form [ip address]:port. For instance,
    /// "127.0.0.1:12000". `fs` is an instance of an implementation
    /// of [`NfsReadFileSystem`].
    pub async fn bind_ro(ipstr: &str, fs: RO) -> io::Result<Self> {
        Self::bind(ipstr, ReadOnlyAdapter::new(fs)).await
    }
}

impl<T: NfsFileSystem + 'static> NFSTcpListener<T> {
    /// Create a new `NFSTcpListener`.
    ///
    /// It binds to a ipstr of the form [ip address]:port. For instance,
    /// "127.0.0.1:12000". `fs` is an instance of an implementation
    /// of [`NfsFileSystem`].
    pub async fn bind(ipstr: &str, fs: T) -> io::Result<Self> {
        Self::bind_inner(ipstr, fs, None).await
    }

    /// Create a new `NFSTcpListener` with a specific generation number.
    ///
    /// The generation number is embedded in file handles and used to detect
    /// stale handles from previous server instances. When multiple NFS server
    /// instances share the same generation number, file handles remain valid
    /// across all instances (e.g. behind a load balancer).
    pub async fn bind_with_generation(
        ipstr: &str,
        fs: T,
        generation_number: u64,
    ) -> io::Result<Self> {
        Self::bind_inner(ipstr, fs, Some(generation_number)).await
    }

    async fn bind_inner(ipstr: &str, fs: T, generation_number: Option<u64>) -> io::Result<Self> {
        let (ip, port) = ipstr.split_once(':').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "IP Address must be of form ip:port",
            )
        })?;
        let port = port.parse::<u16>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "Port not in range 0..=65535",
            )
        })?;

        let arcfs: Arc<T> = Arc::new(fs);

        if ip == "auto" {
            let mut num_tries_left = 32;

            for try_ip in 1u16.. {
                let ip = generate_host_ip(try_ip);

                let result = Self::bind_internal(&ip, port, arcfs.clone(), generation_number).await;

                match result {
                    Err(_) => {
                        if num_tries_left == 0 {
                            return result;
                        }
                        num_tries_left -= 1;
                    }
                    Ok(_) => {
                        return result;
                    }
                }
            }
            unreachable!(); // Does not detect automatically that loop above never terminates.
        } else {
            // Otherwise, try this.
            Self::bind_internal(ip, port, arcfs, generation_number).await
        }
    }

    async fn bind_internal(
        ip: &str,
        port: u16,
        arcfs: Arc<T>,
        generation_number: Option<u64>,
    ) -> io::Result<Self> {
        let ipstr = format!("{ip}:{port}");
        let listener = TcpListener::bind(&ipstr).await?;
        info!("Listening on {:?}", &ipstr);

        let port = match listener.local_addr().expect("failed to get local address") {
            SocketAddr::V4(s) => s.port(),
            SocketAddr::V6(s) => s.port(),
        };

        let file_handle_converter = generation_number.map_or_else(
            crate::vfs::handle::FileHandleConverter::new,
            crate::vfs::handle::FileHandleConverter::with_generation_number,
        );

        Ok(Self {
            listener,
            port,
            arcfs,
            mount_signal: None,
            export_name: Arc::from("/".to_string()),
            transaction_tracker: Self::new_transaction_tracker(),
            stop_notify: Arc::new(tokio::sync::Notify::new()),
            file_handle_converter,
            programs: None,
        })
    }

    fn new_transaction_tracker() -> Arc<TransactionTracker> {
        const TRANSACTION_LIFETIME: Duration = Duration::from_secs(60);
        const MAX_ACTIVE_TRANSACTIONS: u16 = 256;
        const TRANSACTION_TRIM_THRESHOLD: usize = 2048;

        Arc::new(TransactionTracker::new(
            TRANSACTION_LIFETIME,
            MAX_ACTIVE_TRANSACTIONS,
            TRANSACTION_TRIM_THRESHOLD,
        ))
    }

    /// crfs patch (PATCHES.md, "Other RPC programs and UDP"): the programs answered besides
    /// NFS and MOUNT (the portmapper among them), on every socket this listener serves.
    pub fn set_programs(&mut self, programs: Arc<dyn RpcPrograms>) {
        self.programs = Some(programs);
    }

    /// The context of one connection or datagram.
    fn context(
        &self,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
        transport: Transport,
        serves: Serves,
    ) -> RPCContext<T> {
        RPCContext {
            local_port: self.port,
            client_addr: client_addr.to_string(),
            auth: nfs3_types::rpc::auth_unix::default(),
            auth_is_unix: false,
            vfs: self.arcfs.clone(),
            mount_signal: self.mount_signal.clone(),
            export_name: self.export_name.clone(),
            transaction_tracker: self.transaction_tracker.clone(),
            file_handle_converter: self.file_handle_converter,
            transport,
            local_addr,
            serves,
            programs: self.programs.clone(),
        }
    }

    /// crfs patch (PATCHES.md, "Other RPC programs and UDP"): serves the connections of
    /// another TCP socket (the portmapper's well-known port, say) until an accept fails.
    pub async fn serve_tcp(&self, listener: TcpListener, serves: Serves) -> io::Result<()> {
        loop {
            let (socket, peer) = listener.accept().await?;
            let Ok(local) = socket.local_addr() else {
                continue;
            };
            let context = self.context(peer, local, Transport::Tcp, serves);
            debug!("Accepting connection from {peer} on {local}");
            tokio::spawn(async move {
                let _ = socket.set_nodelay(true);
                let _ = process_socket(socket, context).await;
            });
        }
    }

    /// crfs patch (PATCHES.md, "Other RPC programs and UDP"): answers the calls arriving as
    /// datagrams on `socket`, one call per datagram, each reply to its sender. NFS itself is
    /// not served over UDP (its replies outgrow a datagram); MOUNT and the hook's programs are.
    pub async fn serve_udp(&self, socket: UdpSocket, serves: Serves) -> io::Result<()> {
        /// The largest UDP payload over IPv4.
        const MAX_DATAGRAM: usize = 65_507;
        /// Calls answered at once; a datagram beyond them is dropped (its sender retries), so
        /// a flood of datagrams cannot pile up tasks without bound.
        const MAX_IN_FLIGHT: usize = 256;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let socket = Arc::new(socket);
        let local = socket.local_addr()?;
        let mut buf = vec![0_u8; MAX_DATAGRAM];
        loop {
            let (len, peer) = match socket.recv_from(&mut buf).await {
                Ok(got) => got,
                // An ICMP error for an earlier reply, reported on this socket: not ours to end on.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                debug!("dropping a datagram from {peer}: {MAX_IN_FLIGHT} calls in flight");
                continue;
            };
            let message = CompleteRpcMessage::from_datagram(buf.get(..len).unwrap_or_default());
            let context = self.context(peer, local, Transport::Udp, serves);
            let socket = Arc::clone(&socket);
            tokio::spawn(async move {
                let _permit = permit;
                match handle_rpc_message(context, message).await {
                    Ok(HandleResult::Reply(reply)) => {
                        let _ = socket.send_to(&reply.into_inner(), peer).await;
                    }
                    Ok(HandleResult::NoReply) => {}
                    Err(e) => debug!("datagram from {peer}: {e}"),
                }
            });
        }
    }

    /// Sets an optional NFS export name.
    ///
    /// - `export_name`: The desired export name without slashes.
    ///
    /// Example: Name `foo` results in the export path `/foo`.
    /// Default path is `/` if not set.
    pub fn with_export_name<S: AsRef<str>>(&mut self, export_name: S) {
        self.export_name = Arc::new(format!(
            "/{}",
            export_name
                .as_ref()
                .trim_end_matches('/')
                .trim_start_matches('/')
        ));
    }
}

impl<T: NfsFileSystem + 'static> NFSTcp for NFSTcpListener<T> {
    /// Gets the true listening port. Useful if the bound port number is 0
    fn get_listen_port(&self) -> u16 {
        let addr = self
            .listener
            .local_addr()
            .expect("failed to get local address");
        addr.port()
    }

    fn get_listen_ip(&self) -> IpAddr {
        let addr = self
            .listener
            .local_addr()
            .expect("failed to get local address");
        addr.ip()
    }

    /// Sets a mount listener. A "true" signal will be sent on a mount
    /// and a "false" will be sent on an unmount
    fn set_mount_listener(&mut self, signal: mpsc::Sender<bool>) {
        self.mount_signal = Some(signal);
    }

    /// Loops forever and never returns handling all incoming connections.
    async fn handle_forever(&self) -> io::Result<()> {
        let cleaner_future = Cleaner::new(
            self.transaction_tracker.clone(),
            Duration::from_secs(10),
            Arc::clone(&self.stop_notify),
        )
        .run();
        tokio::spawn(cleaner_future);

        loop {
            let (socket, peer) = self.listener.accept().await?;
            let Ok(local) = socket.local_addr() else {
                continue;
            };
            let context = self.context(peer, local, Transport::Tcp, Serves::Everything);
            info!("Accepting connection from {}", context.client_addr);
            debug!("Accepting socket {:?} {:?}", socket, context);
            tokio::spawn(async move {
                let _ = socket.set_nodelay(true);
                let _ = process_socket(socket, context).await;
            });
        }
    }
}
