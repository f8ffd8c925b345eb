//! `cohort.config.v1.SyncResponse`, written by hand rather than generated, for one addition: a
//! response encoded once that a server writes as is to every stream it goes to
//! ([`sync_response::Message::Encoded`]), so fanning a version out to 10,000 streams does not
//! clone and encode its delta 10,000 times. On the wire it is exactly config.proto's message.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};
use prost::{DecodeError, Message as _};

use self::sync_response::Message;
use crate::config::v1::{Delta, GoAway, Heartbeat, Pong, Snapshot};

/// What the server sends on a `Sync` stream.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct SyncResponse {
    pub message: Option<sync_response::Message>,
}

/// The `message` oneof of [`SyncResponse`].
pub mod sync_response {
    use super::*;

    #[derive(Clone, PartialEq, Debug)]
    pub enum Message {
        Snapshot(Snapshot),
        Delta(Delta),
        Heartbeat(Heartbeat),
        Pong(Pong),
        GoAway(GoAway),
        /// A response encoded in advance, written to the wire unchanged. Only ever sent:
        /// decoding it yields the message it holds.
        Encoded(Encoded),
    }

    /// A whole `SyncResponse`, encoded; clones share the bytes.
    #[derive(Clone, PartialEq)]
    pub struct Encoded(Bytes);

    impl Encoded {
        pub fn new(message: Message) -> Encoded {
            Encoded(SyncResponse { message: Some(message) }.encode_to_vec().into())
        }

        /// The encoded bytes (a protobuf `SyncResponse`).
        pub fn bytes(&self) -> &Bytes {
            &self.0
        }
    }

    impl std::fmt::Debug for Encoded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Encoded({} bytes)", self.0.len())
        }
    }
}

impl prost::Message for SyncResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        use prost::encoding::message::encode;
        match &self.message {
            Some(Message::Snapshot(m)) => encode(1, m, buf),
            Some(Message::Delta(m)) => encode(2, m, buf),
            Some(Message::Heartbeat(m)) => encode(3, m, buf),
            Some(Message::Pong(m)) => encode(4, m, buf),
            Some(Message::GoAway(m)) => encode(5, m, buf),
            Some(Message::Encoded(e)) => buf.put_slice(e.bytes()),
            None => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let slot = &mut self.message;
        let merged = match tag {
            1 => merge(slot, wire_type, buf, ctx, Message::Snapshot, |m| match m {
                Message::Snapshot(v) => Some(v),
                _ => None,
            }),
            2 => merge(slot, wire_type, buf, ctx, Message::Delta, |m| match m {
                Message::Delta(v) => Some(v),
                _ => None,
            }),
            3 => merge(slot, wire_type, buf, ctx, Message::Heartbeat, |m| match m {
                Message::Heartbeat(v) => Some(v),
                _ => None,
            }),
            4 => merge(slot, wire_type, buf, ctx, Message::Pong, |m| match m {
                Message::Pong(v) => Some(v),
                _ => None,
            }),
            5 => merge(slot, wire_type, buf, ctx, Message::GoAway, |m| match m {
                Message::GoAway(v) => Some(v),
                _ => None,
            }),
            _ => return prost::encoding::skip_field(wire_type, tag, buf, ctx),
        };
        merged.map_err(|mut e| {
            e.push("SyncResponse", "message");
            e
        })
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::message::encoded_len;
        match &self.message {
            Some(Message::Snapshot(m)) => encoded_len(1, m),
            Some(Message::Delta(m)) => encoded_len(2, m),
            Some(Message::Heartbeat(m)) => encoded_len(3, m),
            Some(Message::Pong(m)) => encoded_len(4, m),
            Some(Message::GoAway(m)) => encoded_len(5, m),
            Some(Message::Encoded(e)) => e.bytes().len(),
            None => 0,
        }
    }

    fn clear(&mut self) {
        self.message = None;
    }
}

/// One oneof field: merged into the value already there when it is the same field (protobuf
/// semantics for a repeated occurrence), else replacing it.
fn merge<M: prost::Message + Default>(
    slot: &mut Option<Message>,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
    wrap: fn(M) -> Message,
    held: fn(&mut Message) -> Option<&mut M>,
) -> Result<(), DecodeError> {
    if let Some(existing) = slot.as_mut().and_then(held) {
        return prost::encoding::message::merge(wire_type, existing, buf, ctx);
    }
    let mut value = M::default();
    prost::encoding::message::merge(wire_type, &mut value, buf, ctx)?;
    *slot = Some(wrap(value));
    Ok(())
}

#[cfg(test)]
mod tests;
