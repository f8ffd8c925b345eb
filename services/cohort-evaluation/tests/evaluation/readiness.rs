//! Readiness means holding config, which outlives the config service and its database: the
//! service stays ready and keeps serving a loaded environment while the config service is down.

use cohort_proto::common::v1 as common;
use cohort_proto::config::v1 as cpb;
use cohort_proto::evaluation::v1 as pb;

use crate::{Stack, authed, flag_json, http_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_ready_and_serving_while_the_config_service_is_down() {
    let mut stack = Stack::start().await;
    assert_eq!(http_request(stack.admin, "GET", "/readyz", &[], "").await.0, 200);
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;
    let context = common::EvaluationContext { targeting_key: "u".into(), attributes: Default::default() };
    let request = || pb::EvaluateRequest { context: Some(context.clone()), keys: vec!["f".into()] };
    let mut client = stack.client().await;
    let key = stack.tenant.sdk_key.clone();
    let before = client.evaluate(authed(&key, request())).await.expect("served").into_inner();

    stack.kill_config_service().await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(http_request(stack.admin, "GET", "/readyz", &[], "").await.0, 200);
    let after = client.evaluate(authed(&key, request())).await.expect("served from memory").into_inner();
    assert_eq!(after.config_version, before.config_version);
    stack.stop().await;
}
