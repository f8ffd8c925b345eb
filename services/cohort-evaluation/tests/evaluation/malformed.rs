//! Bytes that are not an `EvaluateRequest` are INVALID_ARGUMENT, not INTERNAL; the `Bearer`
//! scheme is case-insensitive over gRPC and HTTP.

use std::marker::PhantomData;

use bytes::BufMut;
use cohort_proto::codec::CheckedDecoder;
use cohort_proto::common::v1 as common;
use cohort_proto::config::v1 as cpb;
use cohort_proto::evaluation::v1 as pb;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::{Stack, flag_json, http_request};

/// Not a protobuf message: field 1 with wire type 7, which does not exist.
const GARBAGE: &[u8] = &[0x0f, 0x01, 0x02];

/// Sends raw bytes as the request message; decodes answers as `U`.
struct Raw<U>(PhantomData<U>);

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl<U: prost::Message + Default + Send + 'static> Codec for Raw<U> {
    type Encode = Vec<u8>;
    type Decode = U;
    type Encoder = RawEncoder;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> CheckedDecoder<U> {
        CheckedDecoder::new(BufferSettings::default())
    }
}

fn with_auth<T>(authorization: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", authorization.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_is_invalid_argument_and_bearer_is_case_insensitive() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;
    let key = stack.tenant.sdk_key.clone();
    let channel = Channel::from_shared(format!("http://{}", stack.grpc)).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static("/cohort.evaluation.v1.EvaluationService/Evaluate");
    let status = grpc
        .unary::<_, pb::EvaluateResponse, _>(
            with_auth(&format!("Bearer {key}"), GARBAGE.to_vec()),
            path,
            Raw(PhantomData),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let mut client = stack.client().await;
    let context = common::EvaluationContext { targeting_key: "u".into(), attributes: Default::default() };
    let request = pb::EvaluateRequest { context: Some(context), keys: vec!["f".into()] };
    for scheme in ["bearer", "BEARER"] {
        let auth = format!("{scheme} {key}");
        client
            .evaluate(with_auth(&auth, request.clone()))
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e:?}"));
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let body = r#"{"context": {"targeting_key": "u"}, "keys": ["f"]}"#;
        let (status, _, text) = http_request(stack.http, "POST", "/api/v1/evaluate", &headers, body).await;
        assert_eq!(status, 200, "{scheme}: {text}");
    }
    stack.stop().await;
}
