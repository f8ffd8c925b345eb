//! What retention reads of `ListRunning`'s definitions.

use cohort_proto::config::v1 as pb;
use serde_json::json;

use super::{format_day, needs};

const ENV: &str = "7f0c2a8e-3b5d-4c1e-9a6f-1d2e3f405162";
const OTHER_ENV: &str = "0b8e4d7c-1a2b-4c3d-8e9f-a0b1c2d3e4f5";

fn metric(environment: &str, definition: serde_json::Value) -> pb::EnvironmentMetric {
    pb::EnvironmentMetric { environment_id: environment.to_owned(), definition_json: definition.to_string() }
}

#[test]
fn the_longest_pre_period_of_an_experiments_own_metrics_counts() {
    let list = pb::ListRunningResponse {
        experiments: vec![pb::RunningExperiment {
            environment_id: ENV.to_owned(),
            definition_json: json!({
                "id": "11111111-1111-4111-8111-111111111111", "key": "checkout", "status": "running",
                "variants": [], "primary_metrics": ["revenue"], "guardrail_metrics": ["errors"],
                "a_field_of_a_newer_version": true
            })
            .to_string(),
            ..Default::default()
        }],
        holdouts: vec![pb::RunningHoldout {
            environment_id: ENV.to_owned(),
            definition_json: json!({
                "id": "22222222-2222-4222-8222-222222222222", "key": "global", "share_bp": 500,
                "metrics": ["visits"]
            })
            .to_string(),
            ..Default::default()
        }],
        metrics: vec![
            metric(
                ENV,
                json!({"key": "revenue", "event": "buy", "aggregation": "sum", "cuped": {"pre_period_seconds": 86400}}),
            ),
            metric(
                ENV,
                json!({"key": "errors", "event": "err", "aggregation": "count", "cuped": {"pre_period_seconds": 3600}}),
            ),
            // Not the experiment's, and not its environment's: neither counts.
            metric(
                ENV,
                json!({"key": "unused", "event": "x", "aggregation": "count", "cuped": {"pre_period_seconds": 999999}}),
            ),
            metric(
                OTHER_ENV,
                json!({"key": "visits", "event": "v", "aggregation": "count", "cuped": {"pre_period_seconds": 999999}}),
            ),
            metric(
                ENV,
                json!({"key": "visits", "event": "v", "aggregation": "count", "window_seconds": 604800}),
            ),
        ],
    };
    let needs = needs(&list).unwrap();
    assert_eq!(needs.len(), 2);
    assert_eq!(needs[0].key, "checkout");
    assert_eq!(needs[0].experiment_id.to_string(), "11111111-1111-4111-8111-111111111111");
    assert_eq!(needs[0].environment_id.to_string(), ENV);
    assert_eq!(needs[0].pre_period_ms, 86_400_000);
    assert_eq!(needs[1].key, "global");
    assert_eq!(needs[1].pre_period_ms, 0);
}

#[test]
fn a_definition_that_does_not_parse_fails_the_cycle() {
    let list = pb::ListRunningResponse {
        experiments: vec![pb::RunningExperiment {
            environment_id: ENV.to_owned(),
            definition_json: "{\"key\": \"no id\"}".to_owned(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(needs(&list).unwrap_err().contains("does not parse"));
    let list = pb::ListRunningResponse {
        metrics: vec![metric(ENV, json!({"key": "m", "cuped": {"pre_period_seconds": "a day"}}))],
        ..Default::default()
    };
    assert!(needs(&list).is_err());
}

#[test]
fn days_are_named_in_utc() {
    assert_eq!(format_day(0), "1970-01-01");
    // 2026-05-31T23:59:59.999Z
    assert_eq!(format_day(1_780_271_999_999), "2026-05-31");
    assert_eq!(format_day(1_780_272_000_000), "2026-06-01");
}
