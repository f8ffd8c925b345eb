//! `POST /api/v1/evaluate`: the JSON shape, CORS, caching on request, errors.

use cohort_proto::config::v1 as cpb;

use crate::{Stack, flag_json, header, http_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_evaluates_with_cors_and_caching_on_request() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("banner", true)).await;
    stack.allow_origins("production", &["https://app.example"]).await;
    let auth = format!("Bearer {}", stack.tenant.sdk_key);
    let body = r#"{"context": {"targeting_key": "user-1", "attributes": {"country": "NZ"}}, "keys": ["banner", "nope"]}"#;
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("origin", "https://app.example"),
    ];

    let (status, h, text) = http_request(stack.http, "POST", "/api/v1/evaluate", &headers, body).await;
    assert_eq!(status, 200, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(json["config_version"].as_u64().unwrap() > 0);
    assert_eq!(
        json["decisions"]["banner"],
        serde_json::json!({"variant": "on", "value": true, "reason": "STATIC", "error_code": null, "enrolled": false})
    );
    assert_eq!(json["decisions"]["nope"]["error_code"], "FLAG_NOT_FOUND");
    assert_eq!(header(&h, "cache-control"), Some("no-store"));
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://app.example"));
    assert!(header(&h, "etag").is_none());

    // Every key when none is named.
    let (_, _, text) =
        http_request(stack.http, "POST", "/api/v1/evaluate", &headers, r#"{"context": {}}"#).await;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["decisions"].as_object().unwrap().len(), 1, "{text}");

    // Caching when asked: max-age (capped), an ETag, and 304 on a match.
    let (status, h, _) = http_request(stack.http, "POST", "/api/v1/evaluate?cache=30", &headers, body).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "cache-control"), Some("private, max-age=30"));
    let etag = header(&h, "etag").unwrap().to_owned();
    let mut conditional = headers.to_vec();
    conditional.push(("if-none-match", &etag));
    let (status, h, _) =
        http_request(stack.http, "POST", "/api/v1/evaluate?cache=30", &conditional, body).await;
    assert_eq!(status, 304);
    assert_eq!(header(&h, "etag"), Some(etag.as_str()));
    let (_, h, _) = http_request(stack.http, "POST", "/api/v1/evaluate?cache=100000", &headers, body).await;
    assert_eq!(header(&h, "cache-control"), Some("private, max-age=300"));

    // Preflight.
    let (status, h, _) = http_request(
        stack.http,
        "OPTIONS",
        "/api/v1/evaluate",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
        ],
        "",
    )
    .await;
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://app.example"));
    assert!(header(&h, "access-control-allow-methods").unwrap().contains("POST"));
    assert!(header(&h, "access-control-allow-headers").unwrap().contains("authorization"));

    // Errors: a bad field, a missing key, an unknown key; CORS headers on those too.
    let bad = r#"{"context": {"targeting_key": "u", "attributes": {"age": {"nested": 1}}}}"#;
    let (status, h, text) = http_request(stack.http, "POST", "/api/v1/evaluate", &headers, bad).await;
    assert_eq!(status, 400, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(json["violations"][0]["field"].as_str().unwrap().starts_with("context.attributes"), "{text}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://app.example"));
    // An attribute written twice is refused, named, rather than the last one winning.
    let twice = r#"{"context": {"targeting_key": "u", "attributes": {"country": "NZ", "country": "AU"}}}"#;
    let (status, _, text) = http_request(stack.http, "POST", "/api/v1/evaluate", &headers, twice).await;
    assert_eq!(status, 400, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["violations"][0]["field"], "context.attributes.country", "{text}");
    assert!(
        json["violations"][0]["description"].as_str().unwrap().starts_with("duplicate key \"country\""),
        "{text}"
    );
    let (status, _, _) = http_request(stack.http, "POST", "/api/v1/evaluate", &[], body).await;
    assert_eq!(status, 401);
    let (status, _, _) = http_request(
        stack.http,
        "POST",
        "/api/v1/evaluate",
        &[("authorization", "Bearer cohort_sdk_unknown")],
        body,
    )
    .await;
    assert_eq!(status, 401);
    stack.stop().await;
}
