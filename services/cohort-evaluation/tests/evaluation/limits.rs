//! A key over its request rate is answered RESOURCE_EXHAUSTED (HTTP 429) with a retry hint,
//! without touching other keys; an address that keeps failing to authenticate is answered
//! late, and counted.

use std::time::Duration;

use cohort_proto::evaluation::v1 as pb;
use tonic::Code;

use crate::{Stack, header, http_request};

fn evaluate(key: &str) -> tonic::Request<pb::EvaluateRequest> {
    let request = pb::EvaluateRequest {
        context: Some(cohort_proto::common::v1::EvaluationContext {
            targeting_key: "u1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cohort_dev::testing::authed(key, request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_is_told_when_to_retry_and_other_keys_are_served() {
    let stack = Stack::start_with(&["--key-rate-limit", "1", "--key-rate-burst", "3"]).await;
    let other = stack.environment("staging").await;
    let key = stack.tenant.sdk_key.clone();
    let mut client = stack.client().await;
    let mut refused = None;
    for _ in 0..10 {
        if let Err(status) = client.evaluate(evaluate(&key)).await {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("the burst of 3 runs out within 10 requests");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    use tonic_types::StatusExt;
    let retry = status.get_details_retry_info().and_then(|r| r.retry_delay).expect("a retry hint");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    client.evaluate(evaluate(&other)).await.expect("another key has its own allowance");

    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let (status, h, body) =
        http_request(stack.http, "POST", "/api/v1/evaluate", &headers, r#"{"context": {}}"#).await;
    assert_eq!(status, 429, "{body}");
    assert!(header(&h, "retry-after").is_some(), "{h:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_authentications_from_one_address_are_slowed() {
    let stack = Stack::start().await;
    let headers = [("authorization", "Bearer cohort_sdk_0000"), ("content-type", "application/json")];
    // The allowance is 30 a minute; the 31st and later are held and counted.
    for _ in 0..32 {
        let (status, _, _) =
            http_request(stack.http, "POST", "/api/v1/evaluate", &headers, r#"{"context": {}}"#).await;
        assert_eq!(status, 401);
    }
    let metrics = stack.metrics().await;
    let slowed = metrics
        .lines()
        .find(|l| l.starts_with("cohort_auth_failures_slowed_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("the counter is exported:\n{metrics}"));
    assert!(slowed >= 1.0, "{slowed}");
    stack.stop().await;
}
