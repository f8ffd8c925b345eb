//! The gRPC codecs of every generated client and server: prost, but a message that does not
//! decode is INVALID_ARGUMENT (the caller sent bytes that are not the message) rather than
//! tonic-prost's INTERNAL, which would blame the service.
//!
//! [`ProtoCodec`] has tonic's default buffers. [`ConfigCodec`], for the config service, starts
//! its buffers small: each `Sync` stream holds an encode and a decode buffer for as long as it
//! lives, and tonic's default of 8 KiB each would be most of an idle stream's memory on a
//! server with 10,000 of them; the messages on a stream are small, and a buffer grows when one
//! needs more.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// Initial capacity of each [`ConfigCodec`] buffer.
const BUFFER_BYTES: usize = 1024;
/// Encoded messages are handed to the transport once this much is buffered (tonic's default).
const YIELD_BYTES: usize = 32 * 1024;

/// Prost with INVALID_ARGUMENT for undecodable messages; every generated service but the
/// config service's uses it.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder::new(BufferSettings::default())
    }
}

/// [`ProtoCodec`] with [`BUFFER_BYTES`] buffers; the generated config service code uses it.
#[derive(Debug, Clone)]
pub struct ConfigCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ConfigCodec<T, U> {
    fn default() -> Self {
        ConfigCodec(PhantomData)
    }
}

impl<T, U> Codec for ConfigCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }
}

/// Decodes a prost message; bytes that are not one are the sender's fault: INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U> {
    buffer_settings: BufferSettings,
    _message: PhantomData<U>,
}

impl<U> CheckedDecoder<U> {
    pub fn new(buffer_settings: BufferSettings) -> Self {
        CheckedDecoder { buffer_settings, _message: PhantomData }
    }
}

impl<U: prost::Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| malformed::<U>(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer_settings
    }
}

/// The status of a message that does not decode as `U`.
pub fn malformed<U>(error: &prost::DecodeError) -> Status {
    let name = std::any::type_name::<U>().rsplit("::").next().unwrap_or("message");
    Status::invalid_argument(format!("malformed {name}: {error}"))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::malformed;
    use crate::config::v1::SyncRequest;

    #[test]
    fn an_undecodable_message_is_the_callers_fault() {
        // Field 1 with wire type 7, which does not exist.
        let error = SyncRequest::decode(&[0x0f_u8, 0x01][..]).unwrap_err();
        let status = malformed::<SyncRequest>(&error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("malformed SyncRequest: "), "{}", status.message());
    }
}
