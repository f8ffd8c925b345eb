//! The context mapping, request bodies, ETags and the answers' JSON.

use cohort_sdk::{Client, Definitions};
use serde_json::json;

use super::*;
use crate::evaluate::check_context;

fn map(context: Value) -> Result<Context, ContextError> {
    match context {
        Value::Object(members) => context_from_json(&members),
        other => panic!("not an object: {other}"),
    }
}

fn rejected(context: Value) -> ContextError {
    map(context.clone()).expect_err(&format!("{context} should be refused"))
}

#[test]
fn every_accepted_type_maps_to_an_attribute() {
    let ctx = map(json!({
        "targetingKey": "user-1",
        "country": "NZ",
        "age": 42,
        "score": -1.5,
        "big": 18446744073709551615u64,
        "beta": true,
        "tags": ["a", "b"],
        "none": [],
    }))
    .unwrap();
    let expected = Context::new("user-1")
        .with("country", "NZ")
        .with("age", 42)
        .with("score", -1.5)
        .with("big", 18446744073709551615u64 as f64)
        .with("beta", true)
        .with("tags", vec!["a", "b"])
        .with("none", Vec::<String>::new());
    assert_eq!(ctx, expected);
    assert!(check_context(&ctx).is_ok());
}

#[test]
fn objects_flatten_to_dotted_names() {
    let ctx = map(json!({
        "user": {"plan": "pro", "org": {"id": "o1", "seats": 5}, "empty": {}},
        "device.os": "ios",
    }))
    .unwrap();
    assert_eq!(ctx.targeting_key, None);
    let expected = Context::anonymous()
        .with("user.plan", "pro")
        .with("user.org.id", "o1")
        .with("user.org.seats", 5)
        .with("device.os", "ios");
    assert_eq!(ctx, expected);
}

#[test]
fn nesting_is_allowed_to_the_depth_limit() {
    let mut deepest = json!("x");
    for name in ["h", "g", "f", "e", "d", "c", "b"] {
        deepest = json!({ name: deepest });
    }
    // a.b.c.d.e.f.g.h: eight names.
    let ctx = map(json!({ "a": deepest.clone() })).unwrap();
    assert_eq!(ctx.attributes["a.b.c.d.e.f.g.h"], AttrValue::String("x".into()));

    let e = rejected(json!({ "z": { "a": deepest } }));
    assert_eq!(e.path, "context.z.a.b.c.d.e.f.g");
    assert!(e.message.contains("nested"), "{e}");
}

#[test]
fn each_rejection_names_the_field() {
    let cases = [
        (json!({"targetingKey": 42}), "context.targetingKey", "must be a string, not a number"),
        (json!({"targetingKey": null}), "context.targetingKey", "must be a string, not null"),
        (json!({"nickname": null}), "context.nickname", "null"),
        (json!({"user": {"middle": null}}), "context.user.middle", "null"),
        (json!({"ids": [1, 2]}), "context.ids[0]", "only strings, not a number"),
        (json!({"mixed": ["a", true]}), "context.mixed[1]", "only strings, not a boolean"),
        (json!({"nested": [["a"]]}), "context.nested[0]", "only strings, not a list"),
        (json!({"objects": [{"a": "b"}]}), "context.objects[0]", "only strings, not an object"),
        (json!({"user.plan": "a", "user": {"plan": "b"}}), "context.user.plan", "given twice"),
        (json!({"": "x"}), "context.", "a name must be"),
    ];
    for (context, path, message) in cases {
        let e = rejected(context.clone());
        assert_eq!(e.path, path, "{context}");
        assert!(e.message.contains(message), "{context}: {e}");
        // errorDetails starts with the path.
        assert!(e.to_string().starts_with(&format!("{path}: ")), "{e}");
    }
}

#[test]
fn the_wire_limits_apply() {
    let long = "x".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1);
    assert_eq!(rejected(json!({"bio": long})).path, "context.bio");
    assert_eq!(rejected(json!({"tags": ["ok", long]})).path, "context.tags[1]");
    let many: Vec<String> = (0..=MAX_LIST_ELEMENTS).map(|i| i.to_string()).collect();
    assert_eq!(rejected(json!({"tags": many})).path, "context.tags");
    let unit = "u".repeat(MAX_UNIT_BYTES + 1);
    assert_eq!(rejected(json!({"targetingKey": unit})).path, "context.targetingKey");
    let name = "n".repeat(MAX_ATTRIBUTE_NAME_BYTES + 1);
    assert_eq!(rejected(json!({ name.clone(): 1 })).path, format!("context.{name}"));

    let mut members = Map::new();
    for i in 0..=MAX_ATTRIBUTES {
        members.insert(format!("a{i}"), json!(i));
    }
    let e = context_from_json(&members).unwrap_err();
    assert_eq!(e.path, "context");

    // At the limits: accepted here, and by the check every JSON context passes.
    let mut members = Map::new();
    for i in 0..MAX_ATTRIBUTES {
        members.insert(format!("a{i}"), json!("x".repeat(MAX_ATTRIBUTE_VALUE_BYTES)));
    }
    members.insert("targetingKey".into(), json!("u".repeat(MAX_UNIT_BYTES)));
    let ctx = context_from_json(&members).unwrap();
    assert!(check_context(&ctx).is_ok());
}

#[test]
fn bodies_that_are_not_a_request_are_parse_errors() {
    let code = |body: &str| match parse_body(body.as_bytes()) {
        Err(OfrepError::BadRequest { code, details }) => (code, details),
        other => panic!("{body}: {other:?}"),
    };
    for body in ["", "not json", "[1]", "\"context\"", r#"{"context": 3}"#, r#"{"context": ["a"]}"#] {
        assert_eq!(code(body).0, ErrorCode::ParseError, "{body}");
    }
    let (c, details) = code(r#"{"context": {"a": 1, "a": 2}}"#);
    assert_eq!(c, ErrorCode::InvalidContext);
    assert!(details.starts_with("context.a: duplicate key"), "{details}");
    assert_eq!(code(r#"{"context": {}, "context": {}}"#).0, ErrorCode::ParseError);
    assert_eq!(code(r#"{"context": {"tags": [null]}}"#).0, ErrorCode::InvalidContext);

    assert_eq!(parse_body(b"{}").unwrap(), Context::anonymous());
    assert_eq!(parse_body(br#"{"context": null, "other": 1}"#).unwrap(), Context::anonymous());
    let ctx = parse_body(br#"{"context": {"targetingKey": "u", "plan": "pro"}}"#).unwrap();
    assert_eq!(ctx, Context::new("u").with("plan", "pro"));
}

#[test]
fn the_key_comes_from_authorization_or_x_api_key() {
    let headers = |pairs: &[(&'static str, &str)]| {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    };
    let h = headers(&[("authorization", "Bearer k1"), ("x-api-key", "k2")]);
    assert_eq!(authorization(&h), Some("Bearer k1".into()));
    let h = headers(&[("x-api-key", " k2 ")]);
    assert_eq!(authorization(&h), Some("Bearer k2".into()));
    let h = headers(&[("authorization", "Basic abc"), ("x-api-key", "k2")]);
    assert_eq!(authorization(&h), Some("Bearer k2".into()));
    let h = headers(&[("authorization", "Basic abc")]);
    assert_eq!(authorization(&h), Some("Basic abc".into()));
    assert_eq!(authorization(&headers(&[("x-api-key", "")])), None);
    assert_eq!(authorization(&HeaderMap::new()), None);
}

#[test]
fn etags_follow_the_answer_not_the_spelling() {
    let ctx = |body: &str| parse_body(body.as_bytes()).unwrap();
    let a = etag(3, "k", &ctx(r#"{"context": {"targetingKey": "u", "user": {"plan": "pro"}, "n": 1}}"#));
    assert!(a.starts_with("\"3-") && a.ends_with('"'), "{a}");
    // Member order, white space, nesting or dots, 1 or 1.0: the same context.
    assert_eq!(a, etag(3, "k", &ctx(r#"{"context":{"n":1.0,"user.plan":"pro","targetingKey":"u"}}"#)));
    // Anything that may change the answer changes it.
    assert_ne!(a, etag(4, "k", &ctx(r#"{"context": {"targetingKey": "u", "user.plan": "pro", "n": 1}}"#)));
    assert_ne!(a, etag(3, "j", &ctx(r#"{"context": {"targetingKey": "u", "user.plan": "pro", "n": 1}}"#)));
    assert_ne!(a, etag(3, "k", &ctx(r#"{"context": {"targetingKey": "v", "user.plan": "pro", "n": 1}}"#)));
    assert_ne!(a, etag(3, "k", &ctx(r#"{"context": {"targetingKey": "u", "user.plan": "pro", "n": 2}}"#)));
    assert_ne!(a, etag(3, "k", &ctx(r#"{"context": {"targetingKey": "u", "user.plan": "pro", "n": "1"}}"#)));
    assert_ne!(a, etag(3, "k", &ctx(r#"{"context": {"targetingKey": "u", "user.plan": "pro"}}"#)));
    // No targeting key, an empty one, and one that reads like the absence marker differ
    // only where the evaluation differs.
    let none = etag(3, "k", &ctx(r#"{"context": {}}"#));
    assert_eq!(none, etag(3, "k", &ctx(r#"{"context": {"targetingKey": ""}}"#)));
    assert_ne!(none, etag(3, "k", &ctx(r#"{"context": {"targetingKey": "k"}}"#)));
    // A list is not the string of its elements.
    assert_ne!(
        etag(3, "k", &ctx(r#"{"context": {"t": ["a", "b"]}}"#)),
        etag(3, "k", &ctx(r#"{"context": {"t": ["ab"]}}"#))
    );

    assert!(etag_matches(&a, &a));
    assert!(etag_matches(&format!("\"x\", W/{a}"), &a));
    assert!(etag_matches("*", &a));
    assert!(!etag_matches("\"3-0\"", &a));
}

fn config() -> Client {
    let defs: Definitions = serde_json::from_value(json!({
        "flags": [
            {
                "key": "banner", "type": "json", "salt": "b",
                "variations": [{"key": "on", "value": {"text": "hi \"there\""}}, {"key": "off", "value": {"text": ""}}],
                "off_variation": "off",
                "rules": [{"id": "nz", "condition": {"op": "equals", "attribute": "country", "value": "NZ"}, "serve": {"variation": "on"}}],
                "default": {"variation": "off"}
            },
            {
                "key": "rollout", "type": "boolean", "salt": "r",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "off_variation": "off",
                "default": {"split": [{"variation": "on", "weight_bp": 5000}, {"variation": "off", "weight_bp": 5000}]}
            }
        ],
        "experiments": [
            {
                "id": "00000000-0000-0000-0000-00000000000e", "key": "button", "status": "running",
                "variants": [
                    {"key": "control", "weight_bp": 5000, "control": true},
                    {"key": "treatment", "weight_bp": 5000, "payload": {"color": "red"}}
                ]
            },
            {
                "id": "00000000-0000-0000-0000-00000000000f", "key": "narrow", "status": "running",
                "targeting": {"op": "equals", "attribute": "beta", "value": true},
                "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 5000}]
            }
        ]
    }))
    .unwrap();
    Client::from_definitions(&defs).unwrap()
}

fn success(client: &Client, key: &str, ctx: &Context, public: bool) -> Value {
    let cfg = client.config();
    let d = cfg.evaluate(key, ctx);
    assert_eq!(d.error, None, "{d:?}");
    let mut out = Vec::new();
    write_success(&mut out, &d, public);
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

#[test]
fn flags_answer_with_their_variation_and_rule() {
    let client = config();
    let nz = Context::new("u").with("country", "NZ");
    assert_eq!(
        success(&client, "banner", &nz, false),
        json!({"key": "banner", "reason": "TARGETING_MATCH", "variant": "on", "value": {"text": "hi \"there\""}, "metadata": {"ruleId": "nz"}})
    );
    assert_eq!(success(&client, "banner", &nz, true)["metadata"], json!({}));
    assert_eq!(
        success(&client, "banner", &Context::new("u"), false),
        json!({"key": "banner", "reason": "DEFAULT", "variant": "off", "value": {"text": ""}, "metadata": {}})
    );
    let split = success(&client, "rollout", &Context::new("u"), false);
    assert_eq!(split["reason"], "SPLIT");
    assert_eq!(split["value"], json!(split["variant"] == "on"));
}

#[test]
fn experiments_answer_with_their_variant_or_defer_to_the_code_default() {
    let client = config();
    // Find a unit in each variant.
    let unit_in = |variant: &str| {
        (0..1000)
            .map(|i| Context::new(format!("u{i}")))
            .find(|c| client.config().evaluate_without_exposure("button", c).variant == Some(variant))
            .unwrap()
    };
    assert_eq!(
        success(&client, "button", &unit_in("treatment"), false),
        json!({
            "key": "button", "reason": "SPLIT", "variant": "treatment", "value": {"color": "red"},
            "metadata": {"experimentId": "00000000-0000-0000-0000-00000000000e", "variant": "treatment", "enrolled": true}
        })
    );
    // No payload: the variant key is the value. A client key is told no id.
    assert_eq!(
        success(&client, "button", &unit_in("control"), true),
        json!({
            "key": "button", "reason": "SPLIT", "variant": "control", "value": "control",
            "metadata": {"variant": "control", "enrolled": true}
        })
    );
    // Not enrolled: no value and a null variant (the caller's default), and said so.
    assert_eq!(
        success(&client, "narrow", &Context::new("u"), false),
        json!({
            "key": "narrow", "reason": "DEFAULT", "variant": null,
            "metadata": {"experimentId": "00000000-0000-0000-0000-00000000000f", "enrolled": false}
        })
    );
}

#[test]
fn failures_name_the_key_and_an_ofrep_code() {
    let client = config();
    let cfg = client.config();
    let d = cfg.evaluate("rollout", &Context::anonymous());
    assert_eq!(d.error, Some(ErrorCode::TargetingKeyMissing));
    let mut out = Vec::new();
    write_failure(&mut out, d.key, ErrorCode::TargetingKeyMissing);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["key"], "rollout");
    assert_eq!(v["errorCode"], "TARGETING_KEY_MISSING");
    assert!(v["errorDetails"].as_str().unwrap().contains("targetingKey"));

    assert!(matches!(decision_error(ErrorCode::FlagNotFound), OfrepError::NotFound));
    assert!(matches!(
        decision_error(ErrorCode::TypeMismatch),
        OfrepError::BadRequest { code: ErrorCode::General, .. }
    ));
    assert!(matches!(
        decision_error(ErrorCode::ProviderNotReady),
        OfrepError::Api(ApiError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn error_answers_have_ofreps_shape() {
    async fn answer(e: OfrepError, key: Option<&str>) -> (StatusCode, HeaderMap, Value) {
        let r = e.respond(key);
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
    let (status, _, body) = answer(OfrepError::NotFound, Some("nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["key"], "nope");
    assert_eq!(body["errorCode"], "FLAG_NOT_FOUND");

    let (status, _, body) = answer(OfrepError::parse("bad"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"errorCode": "PARSE_ERROR", "errorDetails": "bad"}));

    let (status, _, body) = answer(OfrepError::Internal, None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, json!({"errorDetails": "internal error"}));

    // Every 429 says when to retry.
    let (status, headers, _) = answer(ServiceError::ResourceExhausted("busy".into()).into(), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "1");
}
