//! OFREP (`/ofrep/v1/evaluate/flags[/{key}]`): answers and errors in the protocol's shape,
//! experiments with their exposures, the bulk ETag, keys in either header, CORS and rate
//! limits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cohort_proto::config::v1 as cpb;
use cohort_proto::events::v1 as epb;
use serde_json::{Value, json};

use crate::{PATIENCE, Stack, flag_json, header, http_request};

const BULK: &str = "/ofrep/v1/evaluate/flags";

fn flag(key: &str) -> String {
    format!("{BULK}/{key}")
}

/// A POST with `headers` (name, value); status, headers and the body as JSON (null if none).
async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, h, text) = http_request(addr, "POST", path, &all, body).await;
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text:?}: {e}"))
    };
    (status, h, json)
}

/// A flag split 50/50 by unit.
fn split_flag(key: &str) -> String {
    json!({
        "key": key, "type": "boolean", "salt": format!("{key}-salt"),
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off",
        "default": {"split": [{"variation": "on", "weight_bp": 5000}, {"variation": "off", "weight_bp": 5000}]},
    })
    .to_string()
}

/// A running experiment everyone is enrolled in; the treatment carries a payload. Returns its
/// revision.
async fn running_experiment(stack: &Stack, key: &str) -> i64 {
    let experiment = json!({
        "key": key,
        "variants": [
            {"key": "control", "weight_bp": 5000, "control": true},
            {"key": "treatment", "weight_bp": 5000, "payload": {"color": "red"}},
        ],
    });
    let (revision, _) = stack.create("production", cpb::EntityKind::Experiment, experiment.to_string()).await;
    stack.transition("production", key, cpb::ExperimentAction::Start, revision).await.0
}

fn exposed(stack: &Stack, unit: &str) -> Option<epb::Exposure> {
    stack.events.events.lock().unwrap().iter().find_map(|e| match &e.kind {
        Some(epb::event::Kind::Exposure(x)) if x.unit == unit => Some(x.clone()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flag_answers_in_ofreps_shape_with_its_errors() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("banner", true)).await;
    stack.create("production", cpb::EntityKind::Flag, split_flag("rollout")).await;
    let auth = format!("Bearer {}", stack.tenant.sdk_key);
    let bearer = [("authorization", auth.as_str())];

    let body = r#"{"context": {"targetingKey": "user-1", "user": {"plan": "pro"}}}"#;
    let (status, h, json) = post(stack.http, &flag("banner"), &bearer, body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json,
        json!({"key": "banner", "reason": "STATIC", "variant": "on", "value": true, "metadata": {}})
    );
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    let (status, _, json) = post(stack.http, &flag("rollout"), &bearer, body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["reason"], "SPLIT");
    assert_eq!(json["value"], json!(json["variant"] == "on"));

    // The key in X-API-Key answers the same.
    let key = stack.tenant.sdk_key.as_str();
    let (status, _, json) = post(stack.http, &flag("banner"), &[("x-api-key", key)], body).await;
    assert_eq!((status, &json["value"]), (200, &json!(true)), "{json}");

    // Unknown flag.
    let (status, _, json) = post(stack.http, &flag("nope"), &bearer, body).await;
    assert_eq!(status, 404, "{json}");
    assert_eq!((&json["key"], &json["errorCode"]), (&json!("nope"), &json!("FLAG_NOT_FOUND")));

    // Not a request.
    for bad in ["{\"context\": ", "[]", r#"{"context": "user-1"}"#] {
        let (status, _, json) = post(stack.http, &flag("banner"), &bearer, bad).await;
        assert_eq!(status, 400, "{bad}: {json}");
        assert_eq!((&json["key"], &json["errorCode"]), (&json!("banner"), &json!("PARSE_ERROR")), "{bad}");
    }

    // A split needs a unit; a flag with one value for everyone does not.
    let (status, _, json) =
        post(stack.http, &flag("rollout"), &bearer, r#"{"context": {"plan": "pro"}}"#).await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["errorCode"], "TARGETING_KEY_MISSING");
    assert!(json["errorDetails"].as_str().unwrap().contains("targetingKey"), "{json}");
    let (status, _, _) = post(stack.http, &flag("banner"), &bearer, r#"{"context": {}}"#).await;
    assert_eq!(status, 200);

    // A context Cohort cannot take names the field.
    let invalid = r#"{"context": {"targetingKey": "u", "user": {"tags": ["a", 1]}}}"#;
    let (status, _, json) = post(stack.http, &flag("banner"), &bearer, invalid).await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["errorCode"], "INVALID_CONTEXT");
    assert!(json["errorDetails"].as_str().unwrap().starts_with("context.user.tags[1]: "), "{json}");

    // Keys: none, unknown (either header), not an SDK or client key.
    let (status, _, _) = post(stack.http, &flag("banner"), &[], body).await;
    assert_eq!(status, 401);
    let (status, _, _) =
        post(stack.http, &flag("banner"), &[("authorization", "Bearer cohort_sdk_unknown")], body).await;
    assert_eq!(status, 401);
    let (status, _, _) =
        post(stack.http, &flag("banner"), &[("x-api-key", "cohort_sdk_unknown")], body).await;
    assert_eq!(status, 401);
    let admin = stack.tenant.admin_key.as_str();
    let (status, _, _) = post(stack.http, &flag("banner"), &[("x-api-key", admin)], body).await;
    assert_eq!(status, 403);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_resolve_like_flags_and_record_exposures() {
    let stack = Stack::start().await;
    running_experiment(&stack, "button").await;
    stack.allow_origins("production", &["https://shop.example"]).await;
    let auth = format!("Bearer {}", stack.tenant.sdk_key);
    let unit = |u: &str| format!(r#"{{"context": {{"targetingKey": "{u}"}}}}"#);

    let (status, _, json) =
        post(stack.http, &flag("button"), &[("authorization", &auth)], &unit("user-7")).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["reason"], "SPLIT");
    let variant = json["variant"].as_str().unwrap().to_owned();
    let value = if variant == "treatment" { json!({"color": "red"}) } else { json!("control") };
    assert_eq!(json["value"], value, "{json}");
    let experiment_id = json["metadata"]["experimentId"].as_str().expect("an SDK key sees the id").to_owned();
    assert_eq!(
        json["metadata"],
        json!({"experimentId": experiment_id, "variant": variant, "enrolled": true})
    );

    // The exposure reaches the event service, as the SDK records it.
    let deadline = Instant::now() + PATIENCE;
    let exposure = loop {
        if let Some(x) = exposed(&stack, "user-7") {
            break x;
        }
        assert!(Instant::now() < deadline, "no exposure for user-7");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (exposure.experiment_id.as_str(), exposure.variant.as_str()),
        (experiment_id.as_str(), variant.as_str())
    );

    // A client key from an allowed page: the same answer without the id.
    let web = stack.client_key("production").await;
    let browser = [("x-api-key", web.as_str()), ("origin", "https://shop.example")];
    let (status, h, json) = post(stack.http, &flag("button"), &browser, &unit("user-7")).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://shop.example"));
    assert_eq!(json["metadata"], json!({"variant": variant, "enrolled": true}));
    let (status, _, json) = post(stack.http, BULK, &browser, &unit("user-7")).await;
    assert_eq!(status, 200, "{json}");
    assert!(!json.to_string().contains("experimentId"), "{json}");

    // Preflight for the OFREP paths, with OFREP's headers.
    let (status, h, _) = http_request(
        stack.http,
        "OPTIONS",
        &flag("button"),
        &[
            ("origin", "https://shop.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-api-key, content-type, if-none-match"),
        ],
        "",
    )
    .await;
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://shop.example"));
    let allowed = header(&h, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed.contains("x-api-key") && allowed.contains("if-none-match"), "{allowed}");

    // Another site: refused before evaluating, so its visitor records nothing.
    let evil = [("x-api-key", web.as_str()), ("origin", "https://evil.example")];
    let (status, _, _) = post(stack.http, &flag("button"), &evil, &unit("evil-visitor")).await;
    assert_eq!(status, 403);
    let (status, _, _) = post(stack.http, BULK, &evil, &unit("evil-visitor")).await;
    assert_eq!(status, 403);

    // A unit the experiment does not target: no value, the caller's default applies.
    let narrow = json!({
        "key": "narrow",
        "targeting": {"op": "equals", "attribute": "beta", "value": true},
        "variants": [{"key": "a", "weight_bp": 5000, "control": true}, {"key": "b", "weight_bp": 5000}],
    });
    let (revision, _) = stack.create("production", cpb::EntityKind::Experiment, narrow.to_string()).await;
    stack.transition("production", "narrow", cpb::ExperimentAction::Start, revision).await;
    let deadline = Instant::now() + PATIENCE;
    let json = loop {
        let (status, _, json) =
            post(stack.http, &flag("narrow"), &[("authorization", &auth)], &unit("outsider")).await;
        if status == 200 && json["reason"] != "DISABLED" {
            break json;
        }
        assert!(Instant::now() < deadline, "the experiment did not arrive: {status} {json}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(json["reason"], "DEFAULT", "{json}");
    assert!(json.get("value").is_none() && json["variant"].is_null(), "{json}");
    assert_eq!(json["metadata"]["enrolled"], false);

    let events = stack.events.clone();
    stack.stop().await;
    let recorded = events.events.lock().unwrap();
    let any = |u: &str| {
        recorded.iter().any(|e| matches!(&e.kind, Some(epb::event::Kind::Exposure(x)) if x.unit == u))
    };
    assert!(!any("evil-visitor") && !any("outsider"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_evaluation_has_an_etag_that_follows_the_config_and_the_request() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("banner", true)).await;
    stack.create("production", cpb::EntityKind::Flag, split_flag("rollout")).await;
    running_experiment(&stack, "button").await;
    let draft = json!({
        "key": "later",
        "variants": [{"key": "a", "weight_bp": 5000, "control": true}, {"key": "b", "weight_bp": 5000}],
    });
    stack.create("production", cpb::EntityKind::Experiment, draft.to_string()).await;
    let auth = format!("Bearer {}", stack.tenant.sdk_key);
    let bearer = [("authorization", auth.as_str())];
    let body = r#"{"context": {"targetingKey": "user-1", "country": "NZ"}}"#;

    let (status, h, json) = post(stack.http, BULK, &bearer, body).await;
    assert_eq!(status, 200, "{json}");
    let keys: Vec<&str> =
        json["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    // Flags, then running experiments only.
    assert_eq!(keys, ["banner", "rollout", "button"], "{json}");
    assert_eq!(
        json["flags"][0],
        json!({"key": "banner", "reason": "STATIC", "variant": "on", "value": true, "metadata": {}})
    );
    assert_eq!(json["flags"][2]["metadata"]["enrolled"], true);
    let etag = header(&h, "etag").expect("an ETag").to_owned();

    // The same request, spelt differently, with the key in the other header: 304.
    let respelt = r#"{ "context": { "country": "NZ", "targetingKey": "user-1" } }"#;
    let key = stack.tenant.sdk_key.as_str();
    let (status, h, json) =
        post(stack.http, BULK, &[("x-api-key", key), ("if-none-match", &etag)], respelt).await;
    assert_eq!(status, 304, "{json}");
    assert_eq!(header(&h, "etag"), Some(etag.as_str()));
    // Another context answers anew.
    let other = r#"{"context": {"targetingKey": "user-2", "country": "NZ"}}"#;
    let (status, h, _) =
        post(stack.http, BULK, &[("authorization", &auth), ("if-none-match", &etag)], other).await;
    assert_eq!(status, 200);
    assert_ne!(header(&h, "etag"), Some(etag.as_str()));

    // A split without a unit is an error element; the others answer.
    let (status, _, json) = post(stack.http, BULK, &bearer, r#"{"context": {}}"#).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["flags"][0]["value"], true);
    assert_eq!(json["flags"][1]["key"], "rollout");
    assert_eq!(json["flags"][1]["errorCode"], "TARGETING_KEY_MISSING");
    assert_eq!(json["flags"][2]["errorCode"], "TARGETING_KEY_MISSING");

    // Bad bodies and contexts: 400 without a key.
    let (status, _, json) = post(stack.http, BULK, &bearer, "nope").await;
    assert_eq!(status, 400);
    assert_eq!(json["errorCode"], "PARSE_ERROR");
    assert!(json.get("key").is_none(), "{json}");
    let (status, _, json) = post(stack.http, BULK, &bearer, r#"{"context": {"plan": null}}"#).await;
    assert_eq!(status, 400);
    assert_eq!(json["errorCode"], "INVALID_CONTEXT");
    assert!(json["errorDetails"].as_str().unwrap().starts_with("context.plan: "), "{json}");

    // A config change (a new version) misses the old ETag.
    stack.create("production", cpb::EntityKind::Flag, flag_json("checkout", false)).await;
    let conditional = [("authorization", auth.as_str()), ("if-none-match", etag.as_str())];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, h, json) = post(stack.http, BULK, &conditional, body).await;
        if status == 200 {
            assert_ne!(header(&h, "etag"), Some(etag.as_str()));
            assert_eq!(json["flags"].as_array().unwrap().len(), 4, "{json}");
            break;
        }
        assert_eq!(status, 304);
        assert!(Instant::now() < deadline, "the change did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_is_told_when_to_retry_in_either_header() {
    let stack = Stack::start_with(&["--key-rate-limit", "1", "--key-rate-burst", "3"]).await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("banner", true)).await;
    let staging = stack.environment("staging").await;
    let auth = format!("Bearer {}", stack.tenant.sdk_key);
    let body = r#"{"context": {"targetingKey": "u"}}"#;
    for headers in [[("authorization", auth.as_str())], [("x-api-key", staging.as_str())]] {
        let mut refused = None;
        for _ in 0..10 {
            let (status, h, json) = post(stack.http, &flag("banner"), &headers, body).await;
            if status == 429 {
                refused = Some(h);
                break;
            }
            assert!(status == 200 || status == 404, "{status} {json}");
        }
        let h = refused.unwrap_or_else(|| panic!("the burst of 3 runs out within 10 requests: {headers:?}"));
        assert!(header(&h, "retry-after").is_some(), "{h:?}");
    }
    stack.stop().await;
}
