//! Browsers: client-side keys evaluate here (their config is streamed under the service's own
//! key) and are told nothing beyond their decisions; a request from a browser is answered only
//! from an origin its key's environment allows, before anything is evaluated or recorded.

use std::time::{Duration, Instant};

use cohort_proto::common::v1 as common;
use cohort_proto::config::v1 as cpb;
use cohort_proto::evaluation::v1 as pb;
use cohort_proto::events::v1 as epb;

use crate::{PATIENCE, Stack, authed, flag_json, header, http_request};

fn request(unit: &str) -> pb::EvaluateRequest {
    pb::EvaluateRequest {
        context: Some(common::EvaluationContext {
            targeting_key: unit.into(),
            attributes: Default::default(),
        }),
        keys: Vec::new(),
    }
}

/// A running experiment everyone is enrolled in.
async fn running_experiment(stack: &Stack) {
    let experiment = serde_json::json!({
        "key": "button",
        "variants": [
            {"key": "control", "weight_bp": 5000, "control": true},
            {"key": "treatment", "weight_bp": 5000},
        ],
    });
    let (revision, _) = stack.create("production", cpb::EntityKind::Experiment, experiment.to_string()).await;
    stack.transition("production", "button", cpb::ExperimentAction::Start, revision).await;
}

fn exposed(stack: &Stack, unit: &str) -> bool {
    stack
        .events
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(&e.kind, Some(epb::event::Kind::Exposure(x)) if x.unit == unit))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_evaluates_and_is_told_nothing_beyond_its_decisions() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("checkout", true)).await;
    running_experiment(&stack).await;
    let web = stack.client_key("production").await;
    let mut client = stack.client().await;

    let server =
        client.evaluate(authed(&stack.tenant.sdk_key, request("user-1"))).await.unwrap().into_inner();
    assert!(!server.decisions[1].experiment_id.is_empty(), "{server:?}");

    let r =
        client.evaluate(authed(&web, request("user-1"))).await.expect("a client key evaluates").into_inner();
    let keys: Vec<&str> = r.decisions.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["checkout", "button"]);
    for (d, s) in r.decisions.iter().zip(&server.decisions) {
        assert_eq!((d.variant.as_str(), d.enrolled, d.reason), (s.variant.as_str(), s.enrolled, s.reason));
        assert_eq!((d.rule_id.as_str(), d.experiment_id.as_str()), ("", ""), "{d:?}");
    }
    let batch = pb::EvaluateBatchRequest { contexts: vec![request("user-2").context.unwrap()], keys: vec![] };
    let b = client.evaluate_batch(authed(&web, batch)).await.unwrap().into_inner();
    assert!(b.results[0].decisions.iter().all(|d| d.experiment_id.is_empty()));

    // Its exposures are recorded, as an embedded SDK's are.
    let deadline = Instant::now() + PATIENCE;
    while !exposed(&stack, "user-1") {
        assert!(Instant::now() < deadline, "no exposure for the client key's unit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revoked: refused within seconds (the stream opened for it ends).
    let mut config = stack.config_client().await;
    let keys = config
        .list_api_keys(authed(&stack.tenant.admin_key, cpb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .keys;
    let id = keys.iter().find(|k| k.kind == cpb::KeyKind::Client as i32).unwrap().id.clone();
    config.revoke_api_key(authed(&stack.tenant.admin_key, cpb::RevokeApiKeyRequest { id })).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match client.evaluate(authed(&web, request("user-1"))).await {
            Err(s) if s.code() == tonic::Code::Unauthenticated => break,
            other => assert!(Instant::now() < deadline, "still answered after revocation: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_are_answered_only_from_origins_their_environment_allows() {
    let stack = Stack::start().await;
    running_experiment(&stack).await;
    stack.allow_origins("production", &["https://shop.example"]).await;
    let web = stack.client_key("production").await;
    let auth = format!("Bearer {web}");
    let post = |origin: Option<&'static str>, unit: &'static str| {
        let auth = auth.clone();
        let addr = stack.http;
        async move {
            let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
            if let Some(origin) = origin {
                headers.push(("origin", origin));
            }
            let body = format!(r#"{{"context": {{"targeting_key": "{unit}"}}}}"#);
            http_request(addr, "POST", "/api/v1/evaluate", &headers, &body).await
        }
    };

    let (status, h, text) = post(Some("https://shop.example"), "shopper").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://shop.example"));
    assert!(text.contains("\"button\""), "{text}");
    assert!(!text.contains("experiment_id") && !text.contains("rule_id"), "{text}");

    // Another site: refused before evaluating, so nothing is recorded for its visitor.
    let (status, _, text) = post(Some("https://evil.example"), "evil-visitor").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("https://evil.example") && text.contains("cors_origins"), "{text}");
    assert!(!text.contains("button"), "{text}");
    // A server (no Origin) is no browser.
    let (status, _, text) = post(None, "server-side").await;
    assert_eq!(status, 200, "{text}");

    // Preflights carry no key: answered for whoever asks; the request that follows decides.
    let (status, h, _) = http_request(
        stack.http,
        "OPTIONS",
        "/api/v1/evaluate",
        &[("origin", "https://evil.example"), ("access-control-request-method", "POST")],
        "",
    )
    .await;
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://evil.example"));
    assert!(header(&h, "access-control-allow-credentials").is_none());

    // An environment that lists no origin answers no browser, whatever the key.
    let staging = stack.environment("staging").await;
    let staging_auth = format!("Bearer {staging}");
    let headers = [("authorization", staging_auth.as_str()), ("origin", "https://shop.example")];
    let (status, _, text) = http_request(stack.http, "POST", "/api/v1/evaluate", &headers, "{}").await;
    assert_eq!(status, 403, "{text}");

    // A change of the list reaches the service within its refresh interval.
    stack.allow_origins("production", &["*"]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, text) = post(Some("https://evil.example"), "now-allowed").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 403, "{text}");
        assert!(Instant::now() < deadline, "the new origins did not arrive");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = stack.events.clone();
    stack.stop().await;
    // Shutdown delivered every queued exposure: the refused visitor has none.
    let recorded = events.events.lock().unwrap();
    let unit = |u: &str| {
        recorded.iter().any(|e| matches!(&e.kind, Some(epb::event::Kind::Exposure(x)) if x.unit == u))
    };
    assert!(unit("shopper") && unit("server-side") && unit("now-allowed"));
    assert!(!unit("evil-visitor"), "a refused browser request recorded an exposure");
}
