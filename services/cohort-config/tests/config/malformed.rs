//! Input the service cannot read gets the caller's error: bytes that are not the request
//! message are INVALID_ARGUMENT, on a unary call and on a Sync stream (which must not end
//! OK); and the `Bearer` scheme is case-insensitive.

use std::marker::PhantomData;
use std::net::SocketAddr;

use bytes::BufMut;
use cohort_db::testing::TestDb;
use cohort_proto::codec::CheckedDecoder;
use cohort_proto::config::v1 as pb;
use pb::sync_response::Message as Out;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::{Server, http_get};

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

async fn grpc(addr: SocketAddr) -> tonic::client::Grpc<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connect");
    tonic::client::Grpc::new(channel)
}

fn with_auth<T>(authorization: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", authorization.parse().unwrap());
    r
}

#[tokio::test]
async fn a_malformed_unary_request_is_invalid_argument() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut client = grpc(server.grpc).await;
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static("/cohort.config.v1.ConfigService/ListEnvironments");
    let request = with_auth(&format!("Bearer {}", t.admin_key), GARBAGE.to_vec());
    let status = client
        .unary::<_, pb::ListEnvironmentsResponse, _>(request, path.clone(), Raw(PhantomData))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The same path with a real message works.
    client.ready().await.unwrap();
    let request =
        with_auth(&format!("Bearer {}", t.admin_key), pb::ListEnvironmentsRequest {}.encode_to_vec());
    let listed = client.unary::<_, pb::ListEnvironmentsResponse, _>(request, path, Raw(PhantomData)).await;
    assert_eq!(listed.unwrap().into_inner().environments.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_garbage_sync_stream_ends_invalid_argument() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let path = PathAndQuery::from_static("/cohort.config.v1.ConfigService/Sync");
    let hello = pb::SyncRequest {
        message: Some(pb::sync_request::Message::Hello(pb::Hello {
            known_version: 0,
            client: "test".into(),
        })),
    };
    // Garbage instead of Hello, and garbage after it, on a stream the client keeps open.
    for opening in [vec![GARBAGE.to_vec()], vec![hello.encode_to_vec(), GARBAGE.to_vec()]] {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
        for message in &opening {
            tx.send(message.clone()).await.unwrap();
        }
        let mut client = grpc(server.grpc).await;
        client.ready().await.unwrap();
        let request = with_auth(&format!("Bearer {}", t.sdk_key), ReceiverStream::new(rx));
        let mut stream = client
            .streaming::<_, _, pb::SyncResponse, _>(request, path.clone(), Raw(PhantomData))
            .await
            .expect("the stream opens")
            .into_inner();
        let status = loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await;
            match next.expect("the stream ends within 10 s") {
                Ok(Some(pb::SyncResponse { message: Some(Out::Snapshot(_) | Out::Heartbeat(_)) })) => {
                    assert_eq!(opening.len(), 2, "config only after a hello");
                }
                Ok(Some(other)) => panic!("unexpected {other:?}"),
                Ok(None) => panic!("the stream ended OK"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        drop(tx);
    }
    server.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let request = with_auth(&format!("{scheme} {}", t.admin_key), pb::ListEnvironmentsRequest {});
        assert!(c.list_environments(request).await.is_ok(), "{scheme}");
        let auth = format!("{scheme} {}", t.sdk_key);
        let (status, _, body) = http_get(server.http, "/api/v1/config", &[("Authorization", &auth)]).await;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    let request = with_auth(&format!("Basic {}", t.admin_key), pb::ListEnvironmentsRequest {});
    assert_eq!(c.list_environments(request).await.unwrap_err().code(), Code::Unauthenticated);
    server.stop().await;
}
