//! The spool's bytes on disk: segment headers, checksummed length-prefixed records, and the
//! drain checkpoint.
//!
//! A segment is `CHSPOOL1` followed by records. A record is
//! `[len: u32 LE][crc: u32 LE][payload: len bytes]`, where `crc` is CRC32C over the length
//! bytes and the payload, so a torn length is caught as surely as a torn payload. The payload
//! is a protobuf [`SpoolRecord`]: the accepted events of one request.

use cohort_proto::events::v1 as pb;
use prost::Message;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"CHSPOOL1";
/// Where the first record of a segment starts.
pub const SEGMENT_HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;
/// Length and checksum before each payload.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest payload a reader accepts; anything claiming more is a torn or corrupt length.
pub const MAX_RECORD_BYTES: usize = 128 << 20;

/// First bytes of the checkpoint file.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"CHCKPT01";
/// Magic, segment, offset, CRC32C.
pub const CHECKPOINT_LEN: usize = 8 + 8 + 8 + 4;

/// The accepted events of one request, as spooled.
#[derive(Clone, PartialEq, Message)]
pub struct SpoolRecord {
    /// The environment of the key that sent them (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub environment_id: Vec<u8>,
    /// When the service accepted them, in milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub received_at_ms: i64,
    /// The events, validated.
    #[prost(message, repeated, tag = "3")]
    pub events: Vec<pb::Event>,
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload)
}

/// Encodes a record with its length and checksum, ready to append.
pub fn frame(record: &SpoolRecord) -> Vec<u8> {
    let len = record.encoded_len();
    let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + len);
    buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    record.encode_raw(&mut buf);
    seal(buf)
}

/// Fills in the header of `buf` (8 reserved bytes, then the payload).
fn seal(mut buf: Vec<u8>) -> Vec<u8> {
    let len_bytes = u32::try_from(buf.len() - RECORD_HEADER_LEN).unwrap_or(u32::MAX).to_le_bytes();
    let crc = checksum(len_bytes, &buf[RECORD_HEADER_LEN..]);
    buf[..4].copy_from_slice(&len_bytes);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Frames an arbitrary payload (tests and tools).
pub fn frame_bytes(payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    buf.extend_from_slice(payload);
    seal(buf)
}

/// What a record header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A plausible record of `len` payload bytes with checksum `crc`.
    Record { len: usize, crc: u32 },
    /// Not a record: a zero or impossible length.
    Invalid,
}

/// Reads a record header.
pub fn parse_header(bytes: [u8; RECORD_HEADER_LEN]) -> Header {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len == 0 || len > MAX_RECORD_BYTES { Header::Invalid } else { Header::Record { len, crc } }
}

/// Whether `payload` matches the checksum of its header.
pub fn verify(len: usize, crc: u32, payload: &[u8]) -> bool {
    payload.len() == len && checksum((len as u32).to_le_bytes(), payload) == crc
}

/// The checkpoint file's bytes for `position`.
pub fn encode_checkpoint(position: Position) -> [u8; CHECKPOINT_LEN] {
    let mut out = [0u8; CHECKPOINT_LEN];
    out[..8].copy_from_slice(CHECKPOINT_MAGIC);
    out[8..16].copy_from_slice(&position.segment.to_le_bytes());
    out[16..24].copy_from_slice(&position.offset.to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out[24..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The position in a checkpoint file, or `None` if it is not one.
pub fn decode_checkpoint(bytes: &[u8]) -> Option<Position> {
    if bytes.len() != CHECKPOINT_LEN || &bytes[..8] != CHECKPOINT_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
    if crc32c::crc32c(&bytes[..24]) != crc {
        return None;
    }
    Some(Position {
        segment: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        offset: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
    })
}
