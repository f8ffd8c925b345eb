//! Writes are all or nothing: `ApplyBatch` commits several operations as one version (with an
//! audit row each, and one delta on the Sync stream) or nothing at all; text the store cannot
//! hold (NUL) and duplicate JSON keys are refused with the field named; experiments written
//! without an id get a fresh one, kept on update.

use std::time::Duration;

use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::{Experiment, Flag, Metric, Segment};
use pb::batch_operation::Operation;
use pb::sync_response::Message as Out;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt;

use crate::{Server, authed, create, experiment_json, flag_json};

fn create_op(kind: pb::EntityKind, definition: String) -> pb::BatchOperation {
    pb::BatchOperation {
        operation: Some(Operation::Create(pb::CreateOperation {
            kind: kind as i32,
            definition: cohort_proto::convert::structured::text_struct(&definition),
            reason: String::new(),
        })),
    }
}

fn metric_json(key: &str) -> String {
    json!({"key": key, "event": key, "aggregation": "conversion"}).to_string()
}

fn segment_json(key: &str) -> String {
    json!({"key": key, "include": ["u1", "u2"]}).to_string()
}

fn batch(environment: &str, operations: Vec<pb::BatchOperation>) -> pb::ApplyBatchRequest {
    pb::ApplyBatchRequest { environment: environment.into(), operations }
}

/// The field violations of an INVALID_ARGUMENT status, as `field: description`.
fn violations(status: &tonic::Status) -> Vec<String> {
    let details = status.get_error_details();
    let Some(bad) = details.bad_request() else { return Vec::new() };
    bad.field_violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect()
}

async fn version_and_keys(
    c: &mut pb::config_service_client::ConfigServiceClient<tonic::transport::Channel>,
    key: &str,
) -> (u64, Vec<String>) {
    let snapshot = c
        .get_snapshot(authed(key, pb::GetSnapshotRequest { environment: "production".into() }))
        .await
        .unwrap()
        .into_inner();
    let entities = c
        .list_entities(authed(
            key,
            pb::ListEntitiesRequest { environment: "production".into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .entities;
    (snapshot.version, entities.into_iter().map(|e| e.key).collect())
}

async fn next(stream: &mut tonic::Streaming<pb::SyncResponse>) -> Out {
    let m = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
    m.message.unwrap()
}

/// The next snapshot or delta, past heartbeats.
async fn next_config(stream: &mut tonic::Streaming<pb::SyncResponse>) -> Out {
    loop {
        match next(stream).await {
            Out::Heartbeat(_) | Out::Pong(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_batch_is_one_version_with_an_audit_row_per_operation_and_one_delta() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    create(&mut c, &t.admin_key, "production", Flag, flag_json("old", true)).await;

    // A stream at version 1 sees the batch as one delta with every change.
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::sync_request::Message::Hello(pb::Hello { known_version: 1, client: "test".into() });
    tx.send(pb::SyncRequest { message: Some(hello) }).await.unwrap();
    let mut stream = c.sync(authed(&t.sdk_key, ReceiverStream::new(rx))).await.unwrap().into_inner();
    // Up to date: the server answers with a heartbeat, nothing else.
    assert!(matches!(next(&mut stream).await, Out::Heartbeat(_)));

    let experiment = json!({
        "key": "checkout",
        "variants": [{"key": "control", "weight_bp": 5000}, {"key": "treatment", "weight_bp": 5000}],
        "primary_metrics": ["purchase"],
    });
    let operations = vec![
        create_op(Metric, metric_json("purchase")),
        create_op(Segment, segment_json("beta")),
        create_op(Experiment, experiment.to_string()),
        pb::BatchOperation {
            operation: Some(Operation::Transition(pb::TransitionOperation {
                key: "checkout".into(),
                action: pb::ExperimentAction::Start as i32,
                expected_revision: 1,
                reason: "launch".into(),
            })),
        },
        pb::BatchOperation {
            operation: Some(Operation::Delete(pb::DeleteOperation {
                kind: Flag as i32,
                key: "old".into(),
                expected_revision: 1,
                reason: String::new(),
            })),
        },
    ];
    let r = c.apply_batch(authed(&t.admin_key, batch("production", operations))).await.unwrap().into_inner();
    assert_eq!(r.version, 2, "one version for the whole batch");
    assert_eq!(r.results.len(), 5);
    assert!(r.results.iter().all(|w| w.version == 2));
    let started = r.results[3].entity.as_ref().unwrap();
    assert_eq!(started.revision, 2);
    let def: serde_json::Value =
        cohort_proto::convert::structured::to_json(started.definition.as_ref()).unwrap();
    assert_eq!(def["status"], "running");
    assert!(r.results[4].entity.is_none(), "a delete leaves no entity");

    let audit = c
        .list_audit(authed(
            &t.admin_key,
            pb::ListAuditRequest { environment: "production".into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let batch_rows: Vec<_> =
        audit.iter().filter(|a| a.version == 2).map(|a| (a.action.as_str(), a.key.as_str())).rev().collect();
    assert_eq!(
        batch_rows,
        [
            ("create", "purchase"),
            ("create", "beta"),
            ("create", "checkout"),
            ("start", "checkout"),
            ("delete", "old")
        ]
    );
    assert_eq!(audit.iter().find(|a| a.action == "start").unwrap().reason, "launch");

    let Out::Delta(d) = next_config(&mut stream).await else { panic!("expected a delta") };
    assert_eq!((d.from_version, d.to_version, d.changes.len()), (1, 2, 5));
    assert!(d.changes.iter().all(|ch| ch.version == 2));
    assert!(d.changes[4].definition_json.is_empty() && d.changes[4].key == "old");

    // A client reconnecting from version 1 gets the same delta from the change log.
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::sync_request::Message::Hello(pb::Hello { known_version: 1, client: "test".into() });
    tx.send(pb::SyncRequest { message: Some(hello) }).await.unwrap();
    let mut again = c.sync(authed(&t.sdk_key, ReceiverStream::new(rx))).await.unwrap().into_inner();
    let Out::Delta(from_log) = next_config(&mut again).await else { panic!("expected a delta") };
    assert_eq!(from_log.changes, d.changes);

    // And the snapshot agrees.
    let (version, mut keys) = version_and_keys(&mut c, &t.admin_key).await;
    keys.sort();
    assert_eq!((version, keys), (2, vec!["beta".to_owned(), "checkout".into(), "purchase".into()]));
    drop(tx);
    server.stop().await;
}

#[tokio::test]
async fn a_nul_anywhere_fails_the_whole_batch_and_stores_nothing() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    create(&mut c, &t.admin_key, "production", Flag, flag_json("existing", true)).await;
    let before = version_and_keys(&mut c, &t.admin_key).await;

    let mut flag: serde_json::Value = serde_json::from_str(&flag_json("bad", true)).unwrap();
    flag["type"] = json!("json");
    flag["variations"][0]["value"] = json!({"label": "on\u{0}"});
    flag["variations"][1]["value"] = json!({"label": "off"});
    let operations = vec![
        create_op(Metric, metric_json("purchase")),
        create_op(Segment, segment_json("beta")),
        create_op(Flag, flag.to_string()),
    ];
    let err = c.apply_batch(authed(&t.admin_key, batch("production", operations))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        violations(&err),
        [
            "operations[2].definition.variations[0].value.label: contains a NUL character (\\u0000), which cannot be stored"
        ]
    );
    assert_eq!(version_and_keys(&mut c, &t.admin_key).await, before, "nothing was stored");

    // A single write is refused the same way, rather than failing inside PostgreSQL.
    let mut f: serde_json::Value = serde_json::from_str(&flag_json("bad", true)).unwrap();
    f["description"] = json!("\u{0}");
    let err = c
        .create_entity(authed(
            &t.admin_key,
            pb::CreateEntityRequest {
                environment: "production".into(),
                kind: Flag as i32,
                definition: cohort_proto::convert::structured::json_struct(&f),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        violations(&err),
        ["definition.description: contains a NUL character (\\u0000), which cannot be stored"]
    );
    assert_eq!(version_and_keys(&mut c, &t.admin_key).await, before);
    server.stop().await;
}

#[tokio::test]
async fn experiments_without_an_id_get_a_fresh_one_and_keep_it() {
    let db = TestDb::new().await;
    let a = db.seed_tenant("alpha").await;
    let b = db.seed_tenant("beta").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    // The same copied definition, with no id, in two tenants.
    let wa = create(&mut c, &a.admin_key, "production", Experiment, experiment_json("test")).await;
    let wb = create(&mut c, &b.admin_key, "production", Experiment, experiment_json("test")).await;
    let id = |e: Option<&pb::Entity>| {
        let v: serde_json::Value =
            cohort_proto::convert::structured::to_json(e.unwrap().definition.as_ref()).unwrap();
        uuid::Uuid::parse_str(v["id"].as_str().unwrap()).unwrap()
    };
    let (ida, idb) = (id(wa.entity.as_ref()), id(wb.entity.as_ref()));
    assert_ne!(ida, idb, "two tenants never share an experiment id");
    assert_eq!(ida.get_version_num(), 7);

    // An update without an id keeps the stored one, singly and in a batch.
    let mut edited: serde_json::Value = serde_json::from_str(&experiment_json("test")).unwrap();
    edited["status"] = json!("draft");
    edited["description"] = json!("edited");
    let updated = c
        .update_entity(authed(
            &a.admin_key,
            pb::UpdateEntityRequest {
                environment: "production".into(),
                kind: Experiment as i32,
                key: "test".into(),
                definition: cohort_proto::convert::structured::json_struct(&edited),
                expected_revision: 1,
                reason: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(id(updated.entity.as_ref()), ida);
    edited["description"] = json!("edited again");
    let update = pb::BatchOperation {
        operation: Some(Operation::Update(pb::UpdateOperation {
            kind: Experiment as i32,
            key: "test".into(),
            definition: cohort_proto::convert::structured::json_struct(&edited),
            expected_revision: 2,
            reason: String::new(),
        })),
    };
    let new = create_op(Experiment, experiment_json("second"));
    let r = c
        .apply_batch(authed(&a.admin_key, batch("production", vec![update, new])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(id(r.results[0].entity.as_ref()), ida);
    assert_eq!(id(r.results[1].entity.as_ref()).get_version_num(), 7);
    assert_ne!(id(r.results[1].entity.as_ref()), ida);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_is_authorized_like_single_writes() {
    let db = TestDb::new().await;
    let a = db.seed_tenant("alpha").await;
    let b = db.seed_tenant("beta").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let ops = || vec![create_op(Metric, metric_json("m"))];
    let err = c.apply_batch(authed(&a.sdk_key, batch("production", ops()))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let a_env = a.environment_id.to_string();
    let err = c.apply_batch(authed(&b.admin_key, batch(&a_env, ops()))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another organization's environment does not exist");
    let err = c.apply_batch(tonic::Request::new(batch("production", ops()))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(version_and_keys(&mut c, &a.admin_key).await, (0, Vec::new()));
    let r = c.apply_batch(authed(&a.admin_key, batch(&a_env, ops()))).await.unwrap().into_inner();
    assert_eq!(r.version, 1);
    server.stop().await;
}
