//! The console's API over a real config and analysis service and a fresh database: the
//! caller's key decides everything (a wrong one is refused), writes come back with the
//! services' field errors and stale-revision refusals in console/API.md's shape, and only the
//! built page's own files are served.

use cohort_dev::stack::Service;
use cohort_dev::testing::TestCluster;
use cohort_dev::testing::http::{Response, request};
use serde_json::{Value, json};

async fn call(addr: std::net::SocketAddr, method: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let headers: Vec<(&str, &str)> = if key.is_empty() {
        vec![]
    } else {
        vec![("authorization", auth.as_str()), ("content-type", "application/json")]
    };
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let Response { status, body, .. } = request(addr, method, path, &headers, &body).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}")))
}

#[tokio::test]
async fn the_api_speaks_for_the_callers_key_and_names_what_is_wrong() {
    let page = tempfile::tempdir().unwrap();
    std::fs::write(page.path().join("index.html"), "<!doctype html><title>Cohort</title>").unwrap();
    std::fs::create_dir(page.path().join("assets")).unwrap();
    std::fs::write(page.path().join("assets/app-1a2b.js"), "export {}").unwrap();
    let mut cluster = TestCluster::with(&[Service::Config, Service::Analysis]).await;
    let assets = page.path().display().to_string();
    let console = cluster.add(Service::Console, &[("--assets-dir", &assets)]).await.http;
    let t = cluster.seed_organization("acme").await;
    let rival = cluster.seed_organization("rival").await;
    let base = "/api/v1/environments/production";

    // A wrong key, or none, is refused; the right one sees its organization only.
    let (status, body) = call(console, "GET", "/api/v1/session", "cohort_admin_nope", Value::Null).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{body}");
    let (status, _) = call(console, "GET", "/api/v1/session", "", Value::Null).await;
    assert_eq!(status, 401);
    let (status, body) = call(console, "GET", "/api/v1/session", &t.admin_key, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let envs: Vec<&str> =
        body["environments"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(envs, ["production"]);

    // Create, read, edit with the revision read; a stale edit is refused and changes nothing.
    let flag = json!({
        "key": "dark-mode", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "default": {"variation": "on"},
    });
    let (status, created) =
        call(console, "POST", &format!("{base}/entities/flag"), &t.admin_key, json!({"definition": flag}))
            .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        (created["entity"]["kind"].as_str(), created["entity"]["revision"].as_i64()),
        (Some("flag"), Some(1))
    );
    let mut off = flag.clone();
    off["enabled"] = json!(false);
    let path = format!("{base}/entities/flag/dark-mode");
    let (status, updated) =
        call(console, "PUT", &path, &t.admin_key, json!({"definition": off, "expected_revision": 1})).await;
    assert_eq!((status, updated["entity"]["revision"].as_i64()), (200, Some(2)), "{updated}");
    let (status, stale) =
        call(console, "PUT", &path, &t.admin_key, json!({"definition": flag, "expected_revision": 1})).await;
    assert_eq!((status, stale["error"]["code"].as_str()), (409, Some("FAILED_PRECONDITION")), "{stale}");
    let (_, now) = call(console, "GET", &path, &t.admin_key, Value::Null).await;
    assert_eq!((now["revision"].as_i64(), &now["definition"]["enabled"]), (Some(2), &json!(false)));

    // Field errors arrive with their paths; nothing is stored.
    let mut bad = flag.clone();
    bad["key"] = json!("bad-one");
    bad["variations"][1]["value"] = json!("nope");
    let (status, err) =
        call(console, "POST", &format!("{base}/entities/flag"), &t.admin_key, json!({"definition": bad}))
            .await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{err}");
    assert_eq!(err["error"]["violations"][0]["field"], "definition.variations[1].value", "{err}");
    // A key written twice is refused, named, rather than the last one silently winning.
    let auth = format!("Bearer {}", t.admin_key);
    let twice = flag.to_string().replacen('{', r#"{"enabled": true, "enabled": false, "#, 1);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let body = format!(r#"{{"definition": {twice}}}"#);
    let refused = request(console, "POST", &format!("{base}/entities/flag"), &headers, &body).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains(r#"duplicate key \"enabled\""#), "{}", refused.body);
    let (_, listed) =
        call(console, "GET", &format!("{base}/entities?kind=flag"), &t.admin_key, Value::Null).await;
    assert_eq!(listed["entities"].as_array().map(Vec::len), Some(1), "{listed}");

    // Another organization's key sees none of it.
    let (status, _) = call(console, "GET", &path, &rival.admin_key, Value::Null).await;
    assert_eq!(status, 404);

    // The audit trail, newest first, with what changed; propagation per version.
    let (_, audit) =
        call(console, "GET", &format!("{base}/audit?kind=flag&key=dark-mode"), &t.admin_key, Value::Null)
            .await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["update", "create"], "{audit}");
    assert_eq!(audit["entries"][0]["after"]["enabled"], json!(false));
    let (status, propagation) =
        call(console, "GET", &format!("{base}/propagation?last=5"), &t.admin_key, Value::Null).await;
    assert_eq!(status, 200, "{propagation}");
    let versions: Vec<u64> =
        propagation["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [2, 1]);

    // Lifecycle moves need their names; an experiment with no results yet has none.
    let experiment = json!({"key": "checkout", "variants": [
        {"key": "a", "weight_bp": 5000, "control": true}, {"key": "b", "weight_bp": 5000}]});
    call(
        console,
        "POST",
        &format!("{base}/entities/experiment"),
        &t.admin_key,
        json!({"definition": experiment}),
    )
    .await;
    let transition = format!("{base}/experiments/checkout/transition");
    let (status, err) =
        call(console, "POST", &transition, &t.admin_key, json!({"action": "launch", "expected_revision": 1}))
            .await;
    assert_eq!((status, err["error"]["violations"][0]["field"].as_str()), (400, Some("action")), "{err}");
    let (status, started) = call(
        console,
        "POST",
        &transition,
        &t.admin_key,
        json!({"action": "start", "reason": "ready", "expected_revision": 1}),
    )
    .await;
    assert_eq!(
        (status, started["entity"]["definition"]["status"].as_str()),
        (200, Some("running")),
        "{started}"
    );
    let (status, results) =
        call(console, "GET", &format!("{base}/results/checkout"), &t.admin_key, Value::Null).await;
    assert_eq!((status, &results), (200, &json!({"latest": null, "looks": []})));

    // The page's own files, and nothing else.
    let page = request(console, "GET", "/", &[], "").await;
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert!(page.header("content-security-policy").is_some_and(|p| p.contains("default-src 'self'")));
    let bundle = request(console, "GET", "/assets/app-1a2b.js", &[], "").await;
    assert_eq!(
        (bundle.status, bundle.header("cache-control")),
        (200, Some("public, max-age=31536000, immutable"))
    );
    for path in ["/../Cargo.toml", "/assets/../index.html", "/etc/passwd"] {
        assert_eq!(request(console, "GET", path, &[], "").await.status, 404, "{path}");
    }
    let (status, err) = call(console, "GET", "/api/v1/nothing", &t.admin_key, Value::Null).await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    cluster.stop().await;
}
