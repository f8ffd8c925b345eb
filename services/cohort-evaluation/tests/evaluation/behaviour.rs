//! Keys, bad requests, config changes, exposures, batches, idle environments, and an
//! environment whose config cannot be loaded.

use std::time::{Duration, Instant};

use clap::Parser;
use cohort_evaluation::Settings;
use cohort_proto::common::v1 as common;
use cohort_proto::config::v1 as cpb;
use cohort_proto::evaluation::v1 as pb;
use cohort_proto::evaluation::v1::evaluation_service_client::EvaluationServiceClient;
use cohort_proto::events::v1 as epb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::{PATIENCE, Stack, authed, flag_json};

fn context(unit: &str) -> common::EvaluationContext {
    common::EvaluationContext { targeting_key: unit.into(), attributes: Default::default() }
}

fn request(unit: &str, keys: &[&str]) -> pb::EvaluateRequest {
    pb::EvaluateRequest { context: Some(context(unit)), keys: keys.iter().map(|k| (*k).to_owned()).collect() }
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_and_bad_requests_name_the_field() {
    let stack = Stack::start_with(&["--max-keys", "5", "--max-batch-contexts", "3"]).await;
    let mut client = stack.client().await;

    // An unknown key is refused promptly, not after the init timeout.
    let started = Instant::now();
    let status = client.evaluate(authed("cohort_sdk_not-a-real-key", request("u", &[]))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // ... and remembered for a while.
    let started = Instant::now();
    let status = client.evaluate(authed("cohort_sdk_not-a-real-key", request("u", &[]))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(started.elapsed() < Duration::from_millis(500));
    // No key at all.
    let status = client.evaluate(request("u", &[])).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let key = stack.tenant.sdk_key.clone();
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;

    // A bad attribute names its field under `context`.
    let mut bad = context("u");
    bad.attributes.insert(
        "age".into(),
        common::AttributeValue { kind: Some(common::attribute_value::Kind::NumberValue(f64::NAN)) },
    );
    let status = client
        .evaluate(authed(&key, pb::EvaluateRequest { context: Some(bad.clone()), keys: vec!["f".into()] }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), vec!["context.attributes[\"age\"]".to_owned()]);

    // In a batch, under `contexts[i]`.
    let long = context(&"x".repeat(300));
    let status = client
        .evaluate_batch(authed(
            &key,
            pb::EvaluateBatchRequest { contexts: vec![context("a"), long], keys: vec![] },
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&status), vec!["contexts[1].targeting_key".to_owned()]);

    // Limits.
    let status =
        client.evaluate(authed(&key, request("u", &["a", "b", "c", "d", "e", "f"]))).await.unwrap_err();
    assert_eq!(violations(&status), vec!["keys".to_owned()]);
    let status = client.evaluate(authed(&key, request("u", &["a", ""]))).await.unwrap_err();
    assert_eq!(violations(&status), vec!["keys[1]".to_owned()]);
    let four = pb::EvaluateBatchRequest { contexts: vec![context("a"); 4], keys: vec![] };
    let status = client.evaluate_batch(authed(&key, four)).await.unwrap_err();
    assert_eq!(violations(&status), vec!["contexts".to_owned()]);

    // The good key works, and a missing flag is a decision, not an error.
    let r = client.evaluate(authed(&key, request("u", &["f", "missing"]))).await.unwrap().into_inner();
    assert_eq!(r.decisions[0].variant, "on");
    assert_eq!(r.decisions[1].error_code, common::ErrorCode::FlagNotFound as i32);

    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(
            "cohort_grpc_requests_total{method=\"/cohort.evaluation.v1.EvaluationService/Evaluate\",code=\"unauthenticated\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "cohort_grpc_requests_total{method=\"/cohort.evaluation.v1.EvaluationService/Evaluate\",code=\"ok\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("cohort_evaluation_environments 1"), "{metrics}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_reach_the_service_and_exposures_reach_the_event_service() {
    let stack = Stack::start().await;
    let mut client = stack.client().await;
    let key = stack.tenant.sdk_key.clone();
    let (revision, _) = stack.create("production", cpb::EntityKind::Flag, flag_json("checkout", false)).await;
    let experiment = serde_json::json!({
        "key": "button",
        "variants": [
            {"key": "control", "weight_bp": 5000, "control": true},
            {"key": "treatment", "weight_bp": 5000},
        ],
    });
    let (exp_revision, _) =
        stack.create("production", cpb::EntityKind::Experiment, experiment.to_string()).await;
    stack.transition("production", "button", cpb::ExperimentAction::Start, exp_revision).await;

    let r = client.evaluate(authed(&key, request("user-7", &["checkout"]))).await.unwrap().into_inner();
    assert_eq!(r.decisions[0].variant, "off");
    let before = r.config_version;

    // The change is written through the config API and pushed over the SDK's stream.
    let mut config = stack.config_client().await;
    let written = config
        .update_entity(authed(
            &stack.tenant.admin_key,
            cpb::UpdateEntityRequest {
                environment: "production".into(),
                kind: cpb::EntityKind::Flag as i32,
                key: "checkout".into(),
                definition: cohort_proto::convert::structured::text_struct(&flag_json("checkout", true)),
                expected_revision: revision,
                reason: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = client.evaluate(authed(&key, request("user-7", &["checkout"]))).await.unwrap().into_inner();
        if r.decisions[0].variant == "on" {
            assert!(r.config_version >= written.version && r.config_version > before);
            break;
        }
        assert!(Instant::now() < deadline, "the change did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every key when none is named: flags, then experiments. Enrolled units record exposures.
    let r = client.evaluate(authed(&key, request("user-7", &[]))).await.unwrap().into_inner();
    let keys: Vec<&str> = r.decisions.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["checkout", "button"]);
    let button = &r.decisions[1];
    assert!(button.enrolled, "{button:?}");
    let experiment_id = button.experiment_id.clone();

    // A batch shares one config version.
    let batch =
        pb::EvaluateBatchRequest { contexts: vec![context("a"), context("b")], keys: vec!["button".into()] };
    let b = client.evaluate_batch(authed(&key, batch)).await.unwrap().into_inner();
    assert_eq!(b.results.len(), 2);
    assert!(
        b.results.iter().all(|x| x.config_version == b.results[0].config_version && x.decisions.len() == 1)
    );

    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = stack.events.events.lock().unwrap().iter().any(|e| {
            matches!(&e.kind, Some(epb::event::Kind::Exposure(x))
                if x.unit == "user-7" && x.experiment_id == experiment_id && x.variant == button.variant)
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no exposure for user-7 arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.stop().await;
    // Shutdown closed the client, which delivered the batch's exposures too.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_environments_are_closed_and_come_back_on_use() {
    let stack = Stack::start_with(&["--idle-timeout", "300ms"]).await;
    let mut client = stack.client().await;
    let key = stack.tenant.sdk_key.clone();
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;
    client.evaluate(authed(&key, request("u", &["f"]))).await.unwrap();
    assert!(stack.metrics().await.contains("cohort_evaluation_environments 1"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = stack.metrics().await;
        if m.contains("cohort_evaluation_environments 0")
            && m.contains("cohort_evaluation_environment_closes_total{outcome=\"idle\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the idle environment was not closed:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client.evaluate(authed(&key, request("u", &["f"]))).await.unwrap().into_inner();
    assert_eq!(r.decisions[0].variant, "on");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_without_a_config_answers_unavailable_with_a_retry_hint() {
    // A config service that is not there: nothing can load.
    let settings = Settings::try_parse_from([
        "cohort-evaluation",
        "--config-endpoint",
        "http://127.0.0.1:1",
        "--events-endpoint",
        "http://127.0.0.1:1",
        "--init-timeout",
        "300ms",
        "--shutdown-grace",
        "5s",
    ])
    .unwrap();
    let (addr, shutdown, task) = crate::in_process(settings).await;
    let mut client = EvaluationServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let started = Instant::now();
    let status = client.evaluate(authed("cohort_sdk_whatever", request("u", &[]))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.get_details_retry_info().and_then(|r| r.retry_delay).is_some(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_beyond_the_maximum_close_the_least_recently_used() {
    let stack = Stack::start_with(&["--max-environments", "1"]).await;
    let mut client = stack.client().await;
    let first = stack.tenant.sdk_key.clone();
    let second = stack.environment("staging").await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;
    stack.create("staging", cpb::EntityKind::Flag, flag_json("f", false)).await;
    let r = client.evaluate(authed(&first, request("u", &["f"]))).await.unwrap().into_inner();
    assert_eq!(r.decisions[0].variant, "on");
    let r = client.evaluate(authed(&second, request("u", &["f"]))).await.unwrap().into_inner();
    assert_eq!(r.decisions[0].variant, "off");
    let m = stack.metrics().await;
    assert!(m.contains("cohort_evaluation_environment_closes_total{outcome=\"evicted\"} 1"), "{m}");
    assert!(m.contains("cohort_evaluation_environments 1"), "{m}");
    // The evicted one comes back on its next use.
    let r = client.evaluate(authed(&first, request("u", &["f"]))).await.unwrap().into_inner();
    assert_eq!(r.decisions[0].variant, "on");
    stack.stop().await;
}
