//! `cohort.evaluation.v1.EvaluateResponse`, written by hand rather than generated, for one
//! addition: decisions encoded straight from cohort-core's borrowed decisions
//! ([`EncodedDecisions`]), so answering a request does not first copy every key, variant,
//! value and id into owned protobuf strings only to encode and drop them. On the wire it is
//! exactly evaluation.proto's message.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use cohort_core::Decision;
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::common::v1 as common;
use crate::convert::{DecisionFields, ValueField};

/// Decisions for one context, and the config version they were made with.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct EvaluateResponse {
    /// One per requested key, in request order, or every flag then every experiment.
    pub decisions: Vec<common::Decision>,
    pub config_version: u64,
    /// Decisions encoded in advance, sent after `decisions`. Only ever sent: decoding puts
    /// every decision in `decisions`.
    pub encoded: EncodedDecisions,
}

impl EvaluateResponse {
    /// A response of decisions already encoded.
    pub fn encoded(encoded: EncodedDecisions, config_version: u64) -> Self {
        EvaluateResponse { decisions: Vec::new(), config_version, encoded }
    }

    /// How many decisions the response carries.
    pub fn len(&self) -> usize {
        self.decisions.len() + self.encoded.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `EvaluateResponse.decisions` entries (field 1: key, length, message), encoded from
/// cohort-core decisions.
#[derive(Clone, PartialEq, Default)]
pub struct EncodedDecisions {
    bytes: Bytes,
    count: usize,
}

impl std::fmt::Debug for EncodedDecisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncodedDecisions({} decisions, {} bytes)", self.count, self.bytes.len())
    }
}

impl EncodedDecisions {
    /// How many decisions.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// Builds [`EncodedDecisions`] one decision at a time.
#[derive(Debug, Default)]
pub struct DecisionEncoder {
    buf: BytesMut,
    count: usize,
    /// Leave out what only the definitions' authors need (the rule and experiment ids).
    public: bool,
}

impl DecisionEncoder {
    /// An encoder with room for about `decisions` typical decisions.
    pub fn with_capacity(decisions: usize) -> Self {
        DecisionEncoder { buf: BytesMut::with_capacity(decisions * 96), count: 0, public: false }
    }

    /// An encoder for answers to client-side keys: no rule or experiment ids, which say how
    /// the definitions are built and are of no use to a browser.
    pub fn public_with_capacity(decisions: usize) -> Self {
        DecisionEncoder { public: true, ..DecisionEncoder::with_capacity(decisions) }
    }

    /// Appends `d` as the wire form of `common::Decision::from(d)`, byte for byte (without
    /// the ids, for a public encoder).
    pub fn push(&mut self, d: &Decision<'_>) {
        let mut fields = DecisionFields::of(d);
        if self.public {
            fields.rule_id = "";
            fields.experiment_id = "";
        }
        let len = fields.encoded_len();
        encode_key(1, WireType::LengthDelimited, &mut self.buf);
        encode_varint(len as u64, &mut self.buf);
        let start = self.buf.len();
        fields.encode(&mut self.buf);
        debug_assert_eq!(self.buf.len() - start, len);
        self.count += 1;
    }

    pub fn finish(self) -> EncodedDecisions {
        EncodedDecisions { bytes: self.buf.freeze(), count: self.count }
    }
}

impl DecisionFields<'_> {
    /// Fields in tag order, proto3 defaults left out (a oneof member is always written).
    fn encoded_len(&self) -> usize {
        let string = |tag: u32, s: &str| {
            if s.is_empty() { 0 } else { key_len(tag) + encoded_len_varint(s.len() as u64) + s.len() }
        };
        let enumeration =
            |tag: u32, v: i32| if v == 0 { 0 } else { key_len(tag) + encoded_len_varint(v as i64 as u64) };
        let value = match &self.value {
            None => 0,
            Some(ValueField::Bool(_)) => key_len(4) + 1,
            Some(ValueField::String(s)) => key_len(5) + encoded_len_varint(s.len() as u64) + s.len(),
            Some(ValueField::Number(_)) => key_len(6) + 8,
            Some(ValueField::Json(j)) => key_len(7) + encoded_len_varint(j.len() as u64) + j.len(),
        };
        string(1, self.key)
            + enumeration(2, self.kind)
            + string(3, self.variant)
            + value
            + if self.enrolled { key_len(8) + 1 } else { 0 }
            + enumeration(9, self.reason)
            + enumeration(10, self.error_code)
            + string(11, self.rule_id)
            + string(12, self.experiment_id)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        fn bytes(tag: u32, s: &str, buf: &mut impl BufMut) {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.put_slice(s.as_bytes());
        }
        fn string(tag: u32, s: &str, buf: &mut impl BufMut) {
            if !s.is_empty() {
                bytes(tag, s, buf);
            }
        }
        fn enumeration(tag: u32, v: i32, buf: &mut impl BufMut) {
            if v != 0 {
                encode_key(tag, WireType::Varint, buf);
                encode_varint(v as i64 as u64, buf);
            }
        }
        string(1, self.key, buf);
        enumeration(2, self.kind, buf);
        string(3, self.variant, buf);
        match &self.value {
            None => {}
            Some(ValueField::Bool(b)) => {
                encode_key(4, WireType::Varint, buf);
                buf.put_u8(u8::from(*b));
            }
            Some(ValueField::String(s)) => bytes(5, s, buf),
            Some(ValueField::Number(n)) => {
                encode_key(6, WireType::SixtyFourBit, buf);
                buf.put_f64_le(*n);
            }
            Some(ValueField::Json(j)) => bytes(7, j, buf),
        }
        if self.enrolled {
            encode_key(8, WireType::Varint, buf);
            buf.put_u8(1);
        }
        enumeration(9, self.reason, buf);
        enumeration(10, self.error_code, buf);
        string(11, self.rule_id, buf);
        string(12, self.experiment_id, buf);
    }
}

impl prost::Message for EvaluateResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for d in &self.decisions {
            prost::encoding::message::encode(1, d, buf);
        }
        buf.put_slice(&self.encoded.bytes);
        if self.config_version != 0 {
            prost::encoding::uint64::encode(2, &self.config_version, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let merged = match tag {
            1 => prost::encoding::message::merge_repeated(wire_type, &mut self.decisions, buf, ctx),
            2 => prost::encoding::uint64::merge(wire_type, &mut self.config_version, buf, ctx),
            _ => return prost::encoding::skip_field(wire_type, tag, buf, ctx),
        };
        merged.map_err(|mut e| {
            e.push("EvaluateResponse", if tag == 1 { "decisions" } else { "config_version" });
            e
        })
    }

    fn encoded_len(&self) -> usize {
        prost::encoding::message::encoded_len_repeated(1, &self.decisions)
            + self.encoded.bytes.len()
            + if self.config_version != 0 {
                prost::encoding::uint64::encoded_len(2, &self.config_version)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        self.decisions.clear();
        self.config_version = 0;
        self.encoded = EncodedDecisions::default();
    }
}

#[cfg(test)]
mod tests;
