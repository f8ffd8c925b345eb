//! Flags in flagd's form through the API: JSONLogic targeting validated on write with the
//! path of the offending node and nothing stored, and a flag whose split is analysed: its
//! experiment id assigned on create and kept, handed to the analysis service as a running
//! experiment and found by the flag's key.

use cohort_db::keys::{KeyKind, generate};
use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::{Flag, Metric};
use pb::internal_service_client::InternalServiceClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{Server, authed, create, find_experiments};

fn price(targeting: Value, experiment: Option<Value>) -> Value {
    let mut flag = json!({
        "key": "price", "type": "string",
        "variations": [{"key": "low", "value": "9.99"}, {"key": "high", "value": "12.99"}],
        "default": {"variation": "low"},
        "targeting": targeting,
    });
    if let Some(x) = experiment {
        flag["experiment"] = x;
    }
    flag
}

#[tokio::test]
async fn flagd_targeting_is_checked_on_write_and_an_analysed_split_runs_as_an_experiment() {
    let db = TestDb::new().await;
    let t = db.seed_tenant("acme").await;
    let service = generate(KeyKind::Service);
    let entry = format!("cohort-analysis={}", hex::encode(&service.hash));
    let server = Server::start_with(&db.url, &["--service-keys", &entry]).await;
    let mut c = server.client().await;
    let metric = json!({"key": "buys", "event": "purchase", "aggregation": "conversion"});
    create(&mut c, &t.admin_key, "production", Metric, metric.to_string()).await;

    // An unknown sem_ver operator: refused with the node's path, nothing stored.
    let bad = price(json!({"if": [{"sem_ver": [{"var": "app"}, "≈", "1.0.0"]}, "high", null]}), None);
    let request = pb::CreateEntityRequest {
        environment: "production".into(),
        kind: Flag as i32,
        definition: cohort_proto::convert::structured::json_struct(&bad),
        reason: String::new(),
    };
    let err = c.create_entity(authed(&t.admin_key, request)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations: Vec<(String, String)> = err
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| (v.field.clone(), v.description.clone()))
        .collect();
    assert_eq!(
        violations,
        [(
            "definition.targeting.if[0].sem_ver[1]".to_owned(),
            "unknown operator \"≈\"; sem_ver compares with =, !=, <, <=, >, >=, ^ or ~".to_owned()
        )]
    );
    let list =
        pb::ListEntitiesRequest { environment: "production".into(), kind: Flag as i32, ..Default::default() };
    assert!(
        c.list_entities(authed(&t.admin_key, list.clone())).await.unwrap().into_inner().entities.is_empty()
    );

    // An analysed split, written without an id: one is assigned, and kept on update.
    let split = json!({"fractional": [["low", 50], ["high", 50]]});
    let written = create(
        &mut c,
        &t.admin_key,
        "production",
        Flag,
        price(split.clone(), Some(json!({"metrics": ["buys"]}))).to_string(),
    )
    .await;
    let stored: Value =
        cohort_proto::convert::structured::to_json(written.entity.unwrap().definition.as_ref()).unwrap();
    let id = stored["experiment"]["id"].as_str().expect("an id is assigned").to_owned();
    let update = pb::UpdateEntityRequest {
        environment: "production".into(),
        kind: Flag as i32,
        key: "price".into(),
        definition: cohort_proto::convert::structured::json_struct(&price(
            split.clone(),
            Some(json!({"metrics": ["buys"], "control": "high"})),
        )),
        expected_revision: 1,
        reason: String::new(),
    };
    let updated = c.update_entity(authed(&t.admin_key, update.clone())).await.unwrap().into_inner();
    let stored: Value =
        cohort_proto::convert::structured::to_json(updated.entity.unwrap().definition.as_ref()).unwrap();
    assert_eq!(stored["experiment"]["id"], id.as_str(), "the id is kept");
    let mut moved =
        price(split, Some(json!({"id": "0191e3a4-0000-7000-8000-000000000001", "metrics": ["buys"]})));
    moved["experiment"]["control"] = json!("high");
    let err = c
        .update_entity(authed(
            &t.admin_key,
            pb::UpdateEntityRequest {
                definition: cohort_proto::convert::structured::json_struct(&moved),
                expected_revision: 2,
                ..update
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // The analysis service sees it as a running experiment, and finds it by the flag's key.
    let mut internal = InternalServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    let running =
        internal.list_running(authed(&service.secret, pb::ListRunningRequest {})).await.unwrap().into_inner();
    assert_eq!(running.experiments.len(), 1);
    let e: Value = serde_json::from_str(&running.experiments[0].definition_json).unwrap();
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["key"], "price");
    assert_eq!(e["status"], "running");
    assert_eq!(
        e["variants"],
        json!([{"key": "low", "weight_bp": 5000, "control": false}, {"key": "high", "weight_bp": 5000, "control": true}])
    );
    assert_eq!(e["primary_metrics"], json!(["buys"]));
    assert_eq!(running.metrics.len(), 1);
    for name in ["price", id.as_str()] {
        let found = find_experiments(&mut internal, &service.secret, t.organization_id, name).await;
        let found: Vec<(&str, &str)> = found.iter().map(|(k, i)| (k.as_str(), i.as_str())).collect();
        assert_eq!(found, [("price", id.as_str())], "{name}");
    }
    server.stop().await;
}
