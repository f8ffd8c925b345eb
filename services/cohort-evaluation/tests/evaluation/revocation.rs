//! An SDK key revoked while its client is live stops working within seconds, over gRPC and
//! HTTP: the config service ends the client's stream, and the service closes the client.

use std::time::{Duration, Instant};

use cohort_proto::common::v1 as common;
use cohort_proto::config::v1 as cpb;
use cohort_proto::evaluation::v1 as pb;
use tonic::Code;

use crate::{Stack, authed, flag_json, http_request};

fn request() -> pb::EvaluateRequest {
    let context = common::EvaluationContext { targeting_key: "u".into(), attributes: Default::default() };
    pb::EvaluateRequest { context: Some(context), keys: vec!["f".into()] }
}

async fn http_evaluate(stack: &Stack, key: &str) -> u16 {
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let body = r#"{"context": {"targeting_key": "u"}, "keys": ["f"]}"#;
    http_request(stack.http, "POST", "/api/v1/evaluate", &headers, body).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_its_client_is_live_is_refused_within_seconds() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;
    let mut config = stack.config_client().await;
    let created = config
        .create_api_key(authed(
            &stack.tenant.admin_key,
            cpb::CreateApiKeyRequest {
                kind: cpb::KeyKind::Sdk as i32,
                name: "app".into(),
                environment: "production".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create sdk key")
        .into_inner();
    let (id, key) = (created.key.unwrap().id, created.secret);
    let mut client = stack.client().await;
    client.evaluate(authed(&key, request())).await.expect("served while the key works");
    assert_eq!(http_evaluate(&stack, &key).await, 200);

    config
        .revoke_api_key(authed(&stack.tenant.admin_key, cpb::RevokeApiKeyRequest { id }))
        .await
        .expect("revoke");
    let revoked = Instant::now();
    let status = loop {
        match client.evaluate(authed(&key, request())).await {
            Ok(_) => {
                assert!(revoked.elapsed() < Duration::from_secs(5), "still served 5 s after the revocation");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(http_evaluate(&stack, &key).await, 401);
    // The environment's other key is unaffected.
    client.evaluate(authed(&stack.tenant.sdk_key, request())).await.expect("the other key works");
    let metrics = stack.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cohort_evaluation_environment_closes_total{outcome=\"rejected\"} 1")),
        "{metrics}"
    );
    stack.stop().await;
}
