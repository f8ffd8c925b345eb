//! The Sync stream: snapshot then deltas, resume from a known version, cross-replica pushes,
//! failover to another replica, stalled clients, and acknowledgments.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::Flag;
use pb::sync_response::Message as Out;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use cohort_proto::config::v1::config_service_client::ConfigServiceClient;

use cohort_dev::testing::Proxy;

use crate::{Server, authed, create, flag_json};

struct Stream {
    tx: mpsc::Sender<pb::SyncRequest>,
    rx: Streaming<pb::SyncResponse>,
}

async fn open(server: &Server, key: &str, known_version: u64) -> Result<Stream, tonic::Status> {
    open_at(server.grpc, key, known_version).await
}

async fn open_at(addr: std::net::SocketAddr, key: &str, known_version: u64) -> Result<Stream, tonic::Status> {
    let (tx, rx) = mpsc::channel(16);
    let hello = pb::sync_request::Message::Hello(pb::Hello { known_version, client: "test".into() });
    tx.send(pb::SyncRequest { message: Some(hello) }).await.unwrap();
    let mut client = ConfigServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    let rx = client.sync(authed(key, ReceiverStream::new(rx))).await?.into_inner();
    Ok(Stream { tx, rx })
}

impl Stream {
    /// The next snapshot, delta or goodbye, skipping heartbeats and pongs.
    async fn next(&mut self) -> Option<Out> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.rx.message())
                .await
                .expect("a message within 10 s")
                .ok()??;
            match msg.message? {
                Out::Heartbeat(_) | Out::Pong(_) => continue,
                other => return Some(other),
            }
        }
    }

    async fn ack(&self, version: u64) {
        let ack = pb::sync_request::Message::Ack(pb::Ack { version });
        self.tx.send(pb::SyncRequest { message: Some(ack) }).await.unwrap();
    }
}

/// What a client holds: definitions by (kind, key), and the version.
#[derive(Debug, Default, PartialEq)]
struct Held {
    version: u64,
    entities: BTreeMap<(i32, String), String>,
}

impl Held {
    fn apply(&mut self, msg: &Out) {
        match msg {
            Out::Snapshot(s) => {
                let defs: serde_json::Value = serde_json::from_slice(&s.definitions_json).unwrap();
                self.entities.clear();
                for (list, kind) in [
                    ("flags", 1),
                    ("experiments", 2),
                    ("layers", 3),
                    ("segments", 4),
                    ("metrics", 5),
                    ("holdouts", 6),
                ] {
                    for d in defs[list].as_array().unwrap() {
                        self.entities.insert((kind, d["key"].as_str().unwrap().to_owned()), d.to_string());
                    }
                }
                self.version = s.version;
            }
            Out::Delta(d) => {
                assert_eq!(d.from_version, self.version, "a delta starts where the client is");
                for c in &d.changes {
                    if c.definition_json.is_empty() {
                        self.entities.remove(&(c.kind, c.key.clone()));
                    } else {
                        let v: serde_json::Value = serde_json::from_str(&c.definition_json).unwrap();
                        self.entities.insert((c.kind, c.key.clone()), v.to_string());
                    }
                }
                self.version = d.to_version;
            }
            other => panic!("not a config message: {other:?}"),
        }
    }
}

fn version_of(msg: &Out) -> u64 {
    match msg {
        Out::Snapshot(s) => s.version,
        Out::Delta(d) => d.to_version,
        other => panic!("not a config message: {other:?}"),
    }
}

#[tokio::test]
async fn snapshot_then_deltas_with_acknowledged_propagation() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    create(&mut c, &t.admin_key, "production", Flag, flag_json("first", true)).await;

    let mut s = open(&server, &t.sdk_key, 0).await.unwrap();
    let snapshot = s.next().await.unwrap();
    assert!(matches!(&snapshot, Out::Snapshot(snap) if snap.version == 1));
    s.ack(1).await;

    create(&mut c, &t.admin_key, "production", Flag, flag_json("second", true)).await;
    let delta = s.next().await.unwrap();
    let Out::Delta(d) = &delta else { panic!("expected a delta, got {delta:?}") };
    assert_eq!((d.from_version, d.to_version, d.changes.len()), (1, 2, 1));
    assert_eq!(d.changes[0].key, "second");
    s.ack(2).await;

    let mut propagation = pb::GetPropagationResponse::default();
    for _ in 0..40 {
        propagation = c
            .get_propagation(authed(
                &t.admin_key,
                pb::GetPropagationRequest { environment: "production".into(), version: 2 },
            ))
            .await
            .unwrap()
            .into_inner();
        if propagation.acknowledged == 1 && propagation.connected == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((propagation.acknowledged, propagation.connected), (1, 1));
    assert!(propagation.max_ms < 5_000.0, "commit to ack took {} ms", propagation.max_ms);
    server.stop().await;
}

#[tokio::test]
async fn holdout_changes_reach_the_stream() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let holdout = serde_json::json!({"key": "h", "share_bp": 500});
    let created =
        create(&mut c, &t.admin_key, "production", pb::EntityKind::Holdout, holdout.to_string()).await;

    let mut s = open(&server, &t.sdk_key, 0).await.unwrap();
    let mut held = Held::default();
    held.apply(&s.next().await.unwrap());
    let stored = &held.entities[&(pb::EntityKind::Holdout as i32, "h".to_owned())];
    assert!(stored.contains("\"share_bp\":500"), "{stored}");

    let mut off: serde_json::Value =
        cohort_proto::convert::structured::to_json(created.entity.unwrap().definition.as_ref()).unwrap();
    off["enabled"] = false.into();
    let update = pb::UpdateEntityRequest {
        environment: "production".into(),
        kind: pb::EntityKind::Holdout as i32,
        key: "h".into(),
        definition: cohort_proto::convert::structured::json_struct(&off),
        expected_revision: 1,
        reason: String::new(),
    };
    c.update_entity(authed(&t.admin_key, update)).await.unwrap();
    let delta = s.next().await.unwrap();
    let Out::Delta(d) = &delta else { panic!("expected a delta, got {delta:?}") };
    assert_eq!((d.changes[0].kind, d.changes[0].key.as_str()), (pb::EntityKind::Holdout as i32, "h"));
    held.apply(&delta);

    let delete = pb::DeleteEntityRequest {
        environment: "production".into(),
        kind: pb::EntityKind::Holdout as i32,
        key: "h".into(),
        expected_revision: 2,
        reason: String::new(),
    };
    c.delete_entity(authed(&t.admin_key, delete)).await.unwrap();
    held.apply(&s.next().await.unwrap());
    assert!(held.entities.is_empty(), "{held:?}");
    assert_eq!(held.version, 3);
    server.stop().await;
}

#[tokio::test]
async fn reconnecting_with_a_known_version_gets_only_what_it_missed() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    create(&mut c, &t.admin_key, "production", Flag, flag_json("a", true)).await;
    create(&mut c, &t.admin_key, "production", Flag, flag_json("b", true)).await;
    create(&mut c, &t.admin_key, "production", Flag, flag_json("c", true)).await;

    let mut s = open(&server, &t.sdk_key, 1).await.unwrap();
    let Some(Out::Delta(d)) = s.next().await else { panic!("expected a delta") };
    assert_eq!((d.from_version, d.to_version), (1, 3));
    let keys: Vec<&str> = d.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["b", "c"]);

    // Up to date: only heartbeats, no config.
    let mut s = open(&server, &t.sdk_key, 3).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), s.rx.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first.message, Some(Out::Heartbeat(pb::Heartbeat { version: 3, .. }))), "{first:?}");

    // A version the server never had (a reset database): a full snapshot.
    let mut s = open(&server, &t.sdk_key, 99).await.unwrap();
    assert!(matches!(s.next().await, Some(Out::Snapshot(snap)) if snap.version == 3));
    server.stop().await;
}

#[tokio::test]
async fn a_write_on_one_replica_reaches_a_stream_on_the_other() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let (a, b) = (Server::start(&db.url).await, Server::start(&db.url).await);
    let mut s = open(&b, &t.sdk_key, 0).await.unwrap();
    assert!(matches!(s.next().await, Some(Out::Snapshot(snap)) if snap.version == 0));
    let mut c = a.client().await;
    create(&mut c, &t.admin_key, "production", Flag, flag_json("from-a", true)).await;
    let Some(Out::Delta(d)) = s.next().await else { panic!("expected a delta") };
    assert_eq!((d.to_version, d.changes[0].key.as_str()), (1, "from-a"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn clients_of_a_stopped_replica_resume_on_another_and_miss_nothing() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let (a, b) = (Server::start(&db.url).await, Server::start(&db.url).await);
    let mut held = Held::default();
    let mut s = open(&a, &t.sdk_key, 0).await.unwrap();
    held.apply(&s.next().await.unwrap());
    let mut cb = b.client().await;
    create(&mut cb, &t.admin_key, "production", Flag, flag_json("one", true)).await;
    held.apply(&s.next().await.unwrap());
    assert_eq!(held.version, 1);

    let stopping = tokio::spawn(a.stop());
    assert!(matches!(s.next().await, Some(Out::GoAway(_))), "a stopping replica says goodbye");
    stopping.await.unwrap();
    // Committed while the client was between replicas.
    create(&mut cb, &t.admin_key, "production", Flag, flag_json("two", true)).await;
    create(&mut cb, &t.admin_key, "production", Flag, flag_json("three", false)).await;

    let mut s = open(&b, &t.sdk_key, held.version).await.unwrap();
    let msg = s.next().await.unwrap();
    assert!(matches!(&msg, Out::Delta(d) if d.from_version == 1 && d.to_version == 3), "{msg:?}");
    held.apply(&msg);
    let mut fresh = Held::default();
    fresh.apply(&open(&b, &t.sdk_key, 0).await.unwrap().next().await.unwrap());
    assert_eq!(held, fresh, "the resumed client holds exactly the current config");
    b.stop().await;
}

#[tokio::test]
async fn a_stalled_client_never_delays_the_others_and_ends_up_current() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let mut stalled = open(&server, &t.sdk_key, 0).await.unwrap();
    let mut active = open(&server, &t.sdk_key, 0).await.unwrap();
    let mut active_held = Held::default();
    active_held.apply(&active.next().await.unwrap());

    let writes = 40;
    for i in 0..writes {
        // Large-ish definitions fill the stalled stream's buffers quickly.
        let mut flag: serde_json::Value =
            serde_json::from_str(&flag_json(&format!("flag-{i}"), true)).unwrap();
        flag["description"] = "x".repeat(8_000).into();
        create(&mut c, &t.admin_key, "production", Flag, flag.to_string()).await;
        let msg = active.next().await.unwrap();
        active_held.apply(&msg);
        // The active client follows every write as it commits.
        assert_eq!(version_of(&msg), i + 1);
    }
    let mut stalled_held = Held::default();
    let mut messages = 0;
    while stalled_held.version < writes {
        stalled_held.apply(&stalled.next().await.unwrap());
        messages += 1;
    }
    assert_eq!(stalled_held, active_held);
    assert!(messages <= writes + 1, "{messages} messages");
    server.stop().await;
}

#[tokio::test]
async fn sync_needs_an_sdk_key_and_a_hello() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let err = open(&server, &t.admin_key, 0).await.err().unwrap();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = open(&server, "cohort_sdk_0000", 0).await.err().unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);

    let (tx, rx) = mpsc::channel(4);
    let ping = pb::sync_request::Message::Ping(pb::Ping { nonce: 1 });
    tx.send(pb::SyncRequest { message: Some(ping) }).await.unwrap();
    let mut stream =
        server.client().await.sync(authed(&t.sdk_key, ReceiverStream::new(rx))).await.unwrap().into_inner();
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn clients_of_a_killed_replica_reconnect_elsewhere_and_miss_nothing() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let (a, b) = (Server::start(&db.url).await, Server::start(&db.url).await);
    let to_a = Proxy::start(a.grpc).await;
    let mut held = Held::default();
    let mut s = open_at(to_a.addr, &t.sdk_key, 0).await.unwrap();
    held.apply(&s.next().await.unwrap());
    let mut cb = b.client().await;
    create(&mut cb, &t.admin_key, "production", Flag, flag_json("before", true)).await;
    held.apply(&s.next().await.unwrap());

    // Replica A's process dies: every connection to it drops, with no goodbye.
    to_a.sever();
    // The stream ends with an error or simply stops; no GoAway from a killed process.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.rx.message().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of a killed replica ends");
    create(&mut cb, &t.admin_key, "production", Flag, flag_json("during", true)).await;

    let mut s = open(&b, &t.sdk_key, held.version).await.unwrap();
    let msg = s.next().await.unwrap();
    assert!(matches!(&msg, Out::Delta(d) if d.from_version == 1 && d.to_version == 2), "{msg:?}");
    held.apply(&msg);
    create(&mut cb, &t.admin_key, "production", Flag, flag_json("after", true)).await;
    held.apply(&s.next().await.unwrap());
    let mut fresh = Held::default();
    fresh.apply(&open(&b, &t.sdk_key, 0).await.unwrap().next().await.unwrap());
    assert_eq!(held, fresh);
    a.stop().await;
    b.stop().await;
}
