//! Revoking an SDK key ends its Sync streams with UNAUTHENTICATED within seconds: on the
//! replica that revoked it, on another replica (through the database's notification), and
//! when the notification is lost (the periodic recheck). Its cached authentication goes too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::Flag;
use pb::sync_response::Message as Out;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use uuid::Uuid;

use cohort_proto::config::v1::config_service_client::ConfigServiceClient;

use crate::{Server, authed, create, flag_json, http_get};

/// A poll interval long enough that only a notification can end a stream in time.
const NO_POLL: &[&str] = &["--poll-interval", "60s"];

/// A new SDK key for `production`: its id and secret.
async fn sdk_key(c: &mut ConfigServiceClient<Channel>, admin: &str) -> (Uuid, String) {
    let request = pb::CreateApiKeyRequest {
        kind: pb::KeyKind::Sdk as i32,
        name: "app".into(),
        environment: "production".into(),
        ..Default::default()
    };
    let created = c.create_api_key(authed(admin, request)).await.expect("create sdk key").into_inner();
    (Uuid::parse_str(&created.key.unwrap().id).unwrap(), created.secret)
}

/// An open Sync stream past its first config; keep the sender to keep the stream open.
async fn open(addr: SocketAddr, key: &str) -> (mpsc::Sender<pb::SyncRequest>, Streaming<pb::SyncResponse>) {
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::sync_request::Message::Hello(pb::Hello { known_version: 0, client: "test".into() });
    tx.send(pb::SyncRequest { message: Some(hello) }).await.unwrap();
    let mut client = ConfigServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    let mut stream = client.sync(authed(key, ReceiverStream::new(rx))).await.expect("sync").into_inner();
    let first = next_config(&mut stream).await;
    assert!(matches!(first, Ok(Out::Snapshot(_))), "{first:?}");
    (tx, stream)
}

/// The next snapshot or delta, skipping heartbeats, or how the stream ended.
async fn next_config(stream: &mut Streaming<pb::SyncResponse>) -> Result<Out, tonic::Status> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a message within 10 s")?
            .ok_or_else(|| tonic::Status::ok("the stream ended without a status"))?;
        match message.message {
            Some(Out::Heartbeat(_)) | Some(Out::Pong(_)) | None => continue,
            Some(other) => return Ok(other),
        }
    }
}

/// Waits for the stream to end; asserts it ends UNAUTHENTICATED with no config on the way,
/// and within `limit` of `since`.
async fn ends_unauthenticated(stream: &mut Streaming<pb::SyncResponse>, since: Instant, limit: Duration) {
    // Heartbeats keep coming on a stream that is not ended: bound the whole wait.
    let deadline = tokio::time::Instant::from_std(since + limit);
    match tokio::time::timeout_at(deadline, next_config(stream)).await {
        Ok(Err(status)) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
        Ok(Ok(message)) => panic!("config after the revocation: {message:?}"),
        Err(_) => panic!("the stream was still open {limit:?} after the revocation"),
    }
}

async fn revoke(c: &mut ConfigServiceClient<Channel>, admin: &str, id: Uuid) {
    c.revoke_api_key(authed(admin, pb::RevokeApiKeyRequest { id: id.to_string() })).await.expect("revoke");
}

async fn snapshot(c: &mut ConfigServiceClient<Channel>, key: &str) -> Result<u64, Code> {
    let request = authed(key, pb::GetSnapshotRequest { environment: String::new() });
    c.get_snapshot(request).await.map(|r| r.into_inner().version).map_err(|s| s.code())
}

#[tokio::test]
async fn a_revoked_keys_streams_end_at_once_and_the_key_stops_working() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start_with(&db.url, NO_POLL).await;
    let mut c = server.client().await;
    let (id, secret) = sdk_key(&mut c, &t.admin_key).await;
    // Authenticated once, so the key is in the auth cache.
    assert_eq!(snapshot(&mut c, &secret).await, Ok(0));
    let (_tx, mut revoked) = open(server.grpc, &secret).await;
    let (_tx2, mut other) = open(server.grpc, &t.sdk_key).await;

    let at = Instant::now();
    revoke(&mut c, &t.admin_key, id).await;
    ends_unauthenticated(&mut revoked, at, Duration::from_secs(2)).await;
    assert_eq!(snapshot(&mut c, &secret).await, Err(Code::Unauthenticated), "not served from the cache");
    let (status, _, _) =
        http_get(server.http, "/api/v1/config", &[("Authorization", &format!("Bearer {secret}"))]).await;
    assert_eq!(status, 401);
    let mut again = c.clone();
    let (_keep, rx) = mpsc::channel::<pb::SyncRequest>(1);
    let err = again.sync(authed(&secret, ReceiverStream::new(rx))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // The environment's other key keeps its stream.
    create(&mut c, &t.admin_key, "production", Flag, flag_json("after", true)).await;
    let delta = next_config(&mut other).await;
    assert!(matches!(&delta, Ok(Out::Delta(d)) if d.to_version == 1), "{delta:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_revocation_on_one_replica_ends_the_keys_streams_on_another() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let (a, b) = (Server::start_with(&db.url, NO_POLL).await, Server::start_with(&db.url, NO_POLL).await);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let (id, secret) = sdk_key(&mut ca, &t.admin_key).await;
    assert_eq!(snapshot(&mut cb, &secret).await, Ok(0));
    let (_tx, mut on_b) = open(b.grpc, &secret).await;
    // A write through A reaching B's stream: B follows A's notifications.
    create(&mut ca, &t.admin_key, "production", Flag, flag_json("before", true)).await;
    assert!(matches!(next_config(&mut on_b).await, Ok(Out::Delta(_))));

    let at = Instant::now();
    revoke(&mut ca, &t.admin_key, id).await;
    ends_unauthenticated(&mut on_b, at, Duration::from_secs(3)).await;
    assert_eq!(snapshot(&mut cb, &secret).await, Err(Code::Unauthenticated), "B's auth cache forgot it");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_revocation_whose_notice_is_lost_is_found_by_the_periodic_check() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let (id, secret) = sdk_key(&mut c, &t.admin_key).await;
    let (_tx, mut stream) = open(server.grpc, &secret).await;

    // Revoked behind the service's back: no notification.
    let at = Instant::now();
    let client = db.pool.get().await.unwrap();
    client.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", &[&id]).await.unwrap();
    // The test server polls every second.
    ends_unauthenticated(&mut stream, at, Duration::from_secs(4)).await;
    server.stop().await;
}
