//! The config service's gRPC codec: prost, with small initial buffers. Each `Sync` stream
//! holds an encode and a decode buffer for as long as it lives, and tonic's default of 8 KiB
//! each would be most of an idle stream's memory on a server with 10,000 of them; the
//! messages on a stream are small, and a buffer grows when one needs more.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial capacity of each buffer.
const BUFFER_BYTES: usize = 1024;
/// Encoded messages are handed to the transport once this much is buffered (tonic's default).
const YIELD_BYTES: usize = 32 * 1024;

/// A [`ProstCodec`] with [`BUFFER_BYTES`] buffers; the generated config service code uses it.
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
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }
}
