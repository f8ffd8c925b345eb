//! Holdouts through the API: ids assigned on create and kept, validation naming the field,
//! deletion only once disabled, audit rows, and the internal API handing enabled holdouts to
//! the analysis service and finding them by key.

use cohort_db::keys::{KeyKind, generate};
use cohort_db::testing::{Tenant, TestDb};
use cohort_proto::config::v1 as pb;
use pb::EntityKind::{Experiment, Holdout, Layer, Metric};
use pb::config_service_client::ConfigServiceClient;
use pb::internal_service_client::InternalServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{Server, authed, create, experiment_json, find_experiments};

/// A tenant whose environment holds metric `m`, experiments `a` (in layer `l`) and `b`.
async fn seeded(c: &mut ConfigServiceClient<Channel>, t: &Tenant) {
    let metric = json!({"key": "m", "event": "purchase", "aggregation": "conversion"});
    create(c, &t.admin_key, "production", Metric, metric.to_string()).await;
    create(c, &t.admin_key, "production", Experiment, experiment_json("a")).await;
    create(c, &t.admin_key, "production", Experiment, experiment_json("b")).await;
    let layer = json!({"key": "l", "salt": "l", "experiments": [{"experiment": "a", "range": [0, 5000]}]});
    create(c, &t.admin_key, "production", Layer, layer.to_string()).await;
}

async fn try_create(
    c: &mut ConfigServiceClient<Channel>,
    admin: &str,
    definition: Value,
) -> Result<pb::Entity, Status> {
    let request = pb::CreateEntityRequest {
        environment: "production".into(),
        kind: Holdout as i32,
        definition: cohort_proto::convert::structured::json_struct(&definition),
        reason: String::new(),
    };
    Ok(c.create_entity(authed(admin, request)).await?.into_inner().entity.unwrap())
}

async fn try_update(
    c: &mut ConfigServiceClient<Channel>,
    admin: &str,
    definition: Value,
    expected_revision: i64,
) -> Result<pb::Entity, Status> {
    let request = pb::UpdateEntityRequest {
        environment: "production".into(),
        kind: Holdout as i32,
        key: definition["key"].as_str().unwrap().into(),
        definition: cohort_proto::convert::structured::json_struct(&definition),
        expected_revision,
        reason: String::new(),
    };
    Ok(c.update_entity(authed(admin, request)).await?.into_inner().entity.unwrap())
}

fn definition(e: &pb::Entity) -> Value {
    cohort_proto::convert::structured::to_json(e.definition.as_ref()).unwrap()
}

/// The field violations of a refusal, as `field: description`.
fn violations(status: &Status) -> Vec<String> {
    let details = status.get_error_details();
    let v = details.bad_request().map(|b| b.field_violations.clone()).unwrap_or_default();
    v.into_iter().map(|v| format!("{}: {}", v.field, v.description)).collect()
}

#[tokio::test]
async fn a_holdout_gets_an_id_on_create_and_keeps_it() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    seeded(&mut c, &t).await;

    let created = try_create(&mut c, &t.admin_key, json!({"key": "h", "share_bp": 500, "metrics": ["m"]}))
        .await
        .expect("created");
    let stored = definition(&created);
    let id = stored["id"].as_str().expect("an id was assigned").to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(stored["enabled"], json!(true), "defaults are made explicit");

    // Written without an id, the stored one stays.
    let updated = try_update(
        &mut c,
        &t.admin_key,
        json!({"key": "h", "share_bp": 500, "metrics": ["m"], "description": "all of H2"}),
        created.revision,
    )
    .await
    .expect("updated");
    assert_eq!(definition(&updated)["id"], json!(id));
    assert_eq!(definition(&updated)["description"], json!("all of H2"));

    // Another id is refused, naming the field.
    let other = json!({"id": uuid::Uuid::now_v7(), "key": "h", "share_bp": 500});
    let err = try_update(&mut c, &t.admin_key, other, updated.revision).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let details = err.get_error_details();
    let failure = details.precondition_failure().expect("precondition details");
    let named: Vec<(&str, &str)> =
        failure.violations.iter().map(|v| (v.subject.as_str(), v.description.as_str())).collect();
    assert_eq!(named, [("definition.id", "a holdout's id never changes")]);

    let audit = c
        .list_audit(authed(
            &t.admin_key,
            pb::ListAuditRequest {
                environment: "production".into(),
                kind: Holdout as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<(&str, &str)> =
        audit.entries.iter().map(|e| (e.key.as_str(), e.action.as_str())).collect();
    assert_eq!(actions, [("h", "update"), ("h", "create")], "newest first");
    server.stop().await;
}

#[tokio::test]
async fn holdout_validation_names_the_field() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    seeded(&mut c, &t).await;
    try_create(&mut c, &t.admin_key, json!({"key": "wide", "share_bp": 500})).await.expect("the first");

    let rule = "an experiment may be in the scope of one enabled holdout at most";
    let cases = [
        (json!({"key": "h", "share_bp": 0}), "definition.share_bp: 0 must be 1 to 5000 basis points"),
        (json!({"key": "h", "share_bp": 6000}), "definition.share_bp: 6000 must be 1 to 5000 basis points"),
        (
            json!({"key": "h", "share_bp": 100, "enabled": false, "layers": ["nope"]}),
            "definition.layers[0]: unknown layer \"nope\"",
        ),
        (
            json!({"key": "h", "share_bp": 100, "enabled": false, "metrics": ["nope"]}),
            "definition.metrics[0]: unknown metric \"nope\"",
        ),
        (
            json!({"key": "a", "share_bp": 100, "enabled": false}),
            "definition.key: duplicate key \"a\", already used by experiments[0]",
        ),
        (
            json!({"key": "h", "share_bp": 100}),
            &format!(
                "definition.layers: with no layers it covers every experiment, and enabled holdout \"wide\" \
                 covers some of them; {rule}"
            ),
        ),
        (
            json!({"key": "h", "share_bp": 100, "layers": ["l"]}),
            &format!(
                "definition.layers: enabled holdout \"wide\" has no layers, so it covers every experiment already; {rule}"
            ),
        ),
        (json!({"key": "h", "share_bp": 100, "shares": 3}), "definition.shares: unknown field"),
    ];
    for (holdout, expected) in cases {
        let err = try_create(&mut c, &t.admin_key, holdout.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{holdout}: {err:?}");
        let found = violations(&err);
        assert!(found.iter().any(|v| v == expected), "{holdout}: expected {expected:?} among {found:#?}");
    }
    // Two environment-wide holdouts: the existing one is told of the new one too, by key.
    let err = try_create(&mut c, &t.admin_key, json!({"key": "h", "share_bp": 100})).await.unwrap_err();
    let expected = format!(
        "holdouts[\"wide\"].layers: with no layers it covers every experiment, and enabled holdout \"h\" \
         covers some of them; {rule}"
    );
    assert!(violations(&err).contains(&expected), "{:#?}", violations(&err));
    server.stop().await;
}

#[tokio::test]
async fn an_enabled_holdout_is_disabled_before_it_is_deleted() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let created = try_create(&mut c, &t.admin_key, json!({"key": "h", "share_bp": 500})).await.unwrap();
    let delete = |revision| pb::DeleteEntityRequest {
        environment: "production".into(),
        kind: Holdout as i32,
        key: "h".into(),
        expected_revision: revision,
        reason: String::new(),
    };
    let err = c.delete_entity(authed(&t.admin_key, delete(created.revision))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("disable it"), "{}", err.message());

    let mut off = definition(&created);
    off["enabled"] = json!(false);
    let disabled = try_update(&mut c, &t.admin_key, off, created.revision).await.expect("disabled");
    c.delete_entity(authed(&t.admin_key, delete(disabled.revision))).await.expect("deleted once disabled");
    server.stop().await;
}

#[tokio::test]
async fn the_internal_api_lists_enabled_holdouts_and_finds_them_by_key() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let service = generate(KeyKind::Service);
    let entry = format!("cohort-analysis={}", hex::encode(&service.hash));
    let server = Server::start_with(&db.url, &["--service-keys", &entry]).await;
    let mut c = server.client().await;
    seeded(&mut c, &t).await;
    let on = try_create(&mut c, &t.admin_key, json!({"key": "on", "share_bp": 500, "layers": ["l"]}))
        .await
        .unwrap();
    try_create(&mut c, &t.admin_key, json!({"key": "off", "share_bp": 500, "enabled": false})).await.unwrap();
    let on_id = definition(&on)["id"].as_str().unwrap().to_owned();

    let mut internal =
        InternalServiceClient::connect(format!("http://{}", server.grpc)).await.expect("connect internal");
    let running =
        internal.list_running(authed(&service.secret, pb::ListRunningRequest {})).await.unwrap().into_inner();
    assert!(running.experiments.is_empty(), "no experiment was started");
    let holdouts: Vec<(String, String, i64)> = running
        .holdouts
        .iter()
        .map(|h| {
            let d: Value = serde_json::from_str(&h.definition_json).unwrap();
            (h.environment_id.clone(), d["key"].as_str().unwrap().to_owned(), h.revision)
        })
        .collect();
    assert_eq!(holdouts, [(t.environment_id.to_string(), "on".to_owned(), 1)], "enabled holdouts only");
    assert_eq!(running.holdouts[0].organization_id, t.organization_id.to_string());
    assert_eq!(running.metrics.len(), 1, "the metrics of an environment with an enabled holdout");

    for name in ["on", on_id.as_str()] {
        let found = find_experiments(&mut internal, &service.secret, t.organization_id, name).await;
        let found: Vec<(&str, &str)> = found.iter().map(|(k, i)| (k.as_str(), i.as_str())).collect();
        assert_eq!(found, [("on", on_id.as_str())], "{name}");
    }
    server.stop().await;
}
