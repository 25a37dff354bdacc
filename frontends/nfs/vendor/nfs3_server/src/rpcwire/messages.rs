use std::io::Cursor;

use anyhow::bail;
use nfs3_types::rpc::{
    accept_stat_data, accepted_reply, auth_stat, call_body, fragment_header, msg_body, opaque_auth,
    rejected_reply, reply_body, rpc_msg,
};
use nfs3_types::xdr_codec::{Pack, Unpack, Void};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest RPC call accepted: a WRITE of the 1 MiB maximum plus its headers, with room to spare.
const MAX_MESSAGE_SIZE: usize = 2 << 20;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 64 * 1024;

/// crfs patch (PATCHES.md, "One task per connection"): splits a connection's bytes into RPC
/// calls (record marking, RFC 5531 section 11). [`fill`](Self::fill) reads whatever the socket
/// has into a buffer and is cancel safe, so the connection's one task can wait for bytes and
/// for the calls it has in progress at once; [`next_message`](Self::next_message) takes the
/// whole calls out of the buffer. Upstream read each fragment with `read_exact`, which must not
/// be cancelled, in a task of its own.
#[derive(Debug, Default)]
pub struct RecordReader {
    /// Bytes read from the socket; those before `pos` are consumed.
    buf: Vec<u8>,
    pos: usize,
    /// The fragments of the call being assembled, without their record marks.
    message: Vec<u8>,
    /// Bytes of the current fragment still to come and whether it is its call's last;
    /// `None` between fragments.
    fragment: Option<(usize, bool)>,
}

impl RecordReader {
    /// Reads what `input` has (up to [`READ_SIZE`] bytes); `Ok(0)` at its end. Cancel safe: if
    /// the future is dropped before it completes, nothing was read.
    pub async fn fill(&mut self, input: &mut (impl AsyncRead + Unpin)) -> std::io::Result<usize> {
        // `next_message` consumed every whole fragment, so at most a partial record mark is
        // left: move it to the front and keep the buffer at its size.
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.buf.reserve(READ_SIZE);
        input.read_buf(&mut self.buf).await
    }

    /// The next whole call among the bytes read so far, if there is one. An error (the
    /// connection must end) for a call larger than [`MAX_MESSAGE_SIZE`]: a record mark may
    /// claim up to 2 GiB per fragment, and fragments add up (crfs patch, PATCHES.md, "Bounded
    /// request size": upstream allocated whatever was claimed).
    pub fn next_message(&mut self) -> anyhow::Result<Option<CompleteRpcMessage>> {
        loop {
            let (left, last) = match self.fragment {
                Some(fragment) => fragment,
                None => {
                    let Some(&[a, b, c, d]) = self.buf.get(self.pos..self.pos + 4) else {
                        return Ok(None);
                    };
                    self.pos += 4;
                    let header = fragment_header::from([a, b, c, d]);
                    let length = header.fragment_length() as usize;
                    let claimed = self.message.len() + length;
                    if claimed > MAX_MESSAGE_SIZE {
                        bail!(
                            "RPC message of more than {MAX_MESSAGE_SIZE} bytes ({claimed} claimed)"
                        );
                    }
                    self.message.reserve(length);
                    (length, header.eof())
                }
            };
            let available = self.buf.get(self.pos..).unwrap_or_default();
            let take = left.min(available.len());
            self.message
                .extend_from_slice(available.get(..take).unwrap_or_default());
            self.pos += take;
            if take < left {
                self.fragment = Some((left - take, last));
                return Ok(None);
            }
            self.fragment = None;
            if last {
                return Ok(Some(CompleteRpcMessage::new(std::mem::take(
                    &mut self.message,
                ))));
            }
        }
    }
}

/// An RPC message: a call as read, or a reply to write. A reply may carry a tail: bytes that
/// follow the head on the wire, written from their own buffer (crfs patch, PATCHES.md, "READ
/// data copied once": a READ's data, which upstream copied into the packed reply).
#[derive(Debug)]
pub struct CompleteRpcMessage {
    head: Vec<u8>,
    tail: Vec<u8>,
}

/// Zero bytes that pad a tail to a multiple of four (XDR).
const PADDING: [u8; 3] = [0; 3];

impl CompleteRpcMessage {
    const fn new(head: Vec<u8>) -> Self {
        Self {
            head,
            tail: Vec::new(),
        }
    }

    /// crfs patch (PATCHES.md, "Other RPC programs and UDP"): a datagram holds one whole call,
    /// without a record mark.
    pub fn from_datagram(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The head, the tail and the tail's padding, as written.
    pub fn parts(&self) -> [&[u8]; 3] {
        let padding = (4 - self.tail.len() % 4) % 4;
        [
            &self.head,
            &self.tail,
            PADDING.get(..padding).unwrap_or_default(),
        ]
    }

    /// The message's length on the wire.
    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    /// The message as one buffer.
    pub fn into_inner(self) -> Vec<u8> {
        if self.tail.is_empty() {
            return self.head;
        }
        let mut bytes = Vec::with_capacity(self.len());
        for part in self.parts() {
            bytes.extend_from_slice(part);
        }
        bytes
    }
}

pub struct IncomingRpcMessage {
    xid: u32,
    body: call_body<'static>,
    data: Option<Vec<u8>>,
    message_start: usize, // offset of the start of the message in the data buffer
}

impl TryFrom<CompleteRpcMessage> for IncomingRpcMessage {
    type Error = anyhow::Error;

    fn try_from(packed: CompleteRpcMessage) -> Result<Self, Self::Error> {
        let packed = packed.head;
        let (rpc, pos) = match rpc_msg::unpack(&mut Cursor::new(&packed)) {
            Ok(ok) => ok,
            Err(err) => {
                bail!("Failed to unpack RPC message: {err}");
            }
        };

        let xid = rpc.xid;
        let body = match rpc.body {
            msg_body::CALL(call) => call,
            msg_body::REPLY(_) => {
                bail!("Expected a CALL message, got REPLY. XID: {xid}");
            }
        };

        Ok(Self {
            xid,
            body,
            data: Some(packed),
            message_start: pos,
        })
    }
}

impl IncomingRpcMessage {
    pub const fn xid(&self) -> u32 {
        self.xid
    }
    pub const fn body(&self) -> &call_body<'static> {
        &self.body
    }

    pub const fn take_data(&mut self) -> Cursor<Vec<u8>> {
        let data = self.data.take().expect("Data already taken");
        let mut cursor = Cursor::new(data);
        cursor.set_position(self.message_start as u64);
        cursor
    }

    pub fn into_success_reply<T>(self, message: &T) -> anyhow::Result<HandleResult>
    where
        T: Pack + 'static,
    {
        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted_reply {
                verf: opaque_auth::default(),
                reply_data: accept_stat_data::SUCCESS,
            })),
        };

        pack(&rpc, message).map(HandleResult::Reply)
    }

    /// crfs patch (PATCHES.md, "READ data copied once"): a success reply whose last bytes,
    /// `tail`, are written from their own buffer after `message` (which ends with the length
    /// of the XDR opaque that `tail` is); the padding that follows is added on writing.
    pub fn into_success_reply_with_tail<T>(
        self,
        message: &T,
        tail: Vec<u8>,
    ) -> anyhow::Result<HandleResult>
    where
        T: Pack + 'static,
    {
        let HandleResult::Reply(mut reply) = self.into_success_reply(message)? else {
            bail!("a success reply is always a reply");
        };
        reply.tail = tail;
        Ok(HandleResult::Reply(reply))
    }

    pub fn into_rpc_mismatch(self) -> anyhow::Result<HandleResult> {
        use nfs3_types::rpc::RPC_VERSION_2;

        let reply =
            reply_body::MSG_DENIED(rejected_reply::rpc_mismatch(RPC_VERSION_2, RPC_VERSION_2));

        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply),
        };
        pack(&rpc, &Void).map(HandleResult::Reply)
    }

    pub fn into_auth_error(self, stat: auth_stat) -> anyhow::Result<HandleResult> {
        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply_body::MSG_DENIED(rejected_reply::auth_error(stat))),
        };
        pack(&rpc, &Void).map(HandleResult::Reply)
    }

    pub fn into_error_reply(self, err: accept_stat_data) -> anyhow::Result<HandleResult> {
        let rpc = rpc_msg {
            xid: self.xid,
            body: msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted_reply {
                verf: opaque_auth::default(),
                reply_data: err,
            })),
        };
        pack(&rpc, &Void).map(HandleResult::Reply)
    }
}

pub enum HandleResult {
    Reply(CompleteRpcMessage),
    NoReply,
}

fn pack<T>(rpc: &rpc_msg, message: &T) -> anyhow::Result<CompleteRpcMessage>
where
    T: Pack + 'static,
{
    let size = rpc
        .packed_size()
        .checked_add(message.packed_size())
        .expect("Failed to calculate size");

    let mut cursor = Cursor::new(Vec::with_capacity(size));
    rpc.pack(&mut cursor)?;
    message.pack(&mut cursor)?;
    Ok(CompleteRpcMessage::new(cursor.into_inner()))
}
