//! Cache parameters, ETags and the decision JSON.

use cohort_sdk::{Client, Definitions};

use super::*;

#[test]
fn cache_is_asked_for_with_a_query_parameter() {
    assert_eq!(cache_seconds(None).unwrap(), None);
    assert_eq!(cache_seconds(Some("x=1")).unwrap(), None);
    assert_eq!(cache_seconds(Some("x=1&cache=30")).unwrap(), Some(30));
    assert!(cache_seconds(Some("cache=soon")).is_err());
}

#[test]
fn etags_change_with_the_version_and_the_request() {
    let a = etag(3, "Bearer k", b"{}");
    assert_eq!(a, etag(3, "Bearer k", b"{}"));
    assert_ne!(a, etag(4, "Bearer k", b"{}"));
    assert_ne!(a, etag(3, "Bearer j", b"{}"));
    assert_ne!(a, etag(3, "Bearer k", b"{\"keys\":[]}"));
    assert!(a.starts_with("\"3-") && a.ends_with('"'));
}

#[test]
fn decisions_are_written_as_json_objects() {
    let defs: Definitions = serde_json::from_value(serde_json::json!({
        "flags": [{
            "key": "banner", "type": "json", "salt": "b",
            "variations": [{"key": "on", "value": {"text": "hi \"there\""}}, {"key": "off", "value": {"text": ""}}],
            "off_variation": "off", "default": {"variation": "on"}
        }]
    }))
    .unwrap();
    let client = Client::from_definitions(&defs).unwrap();
    let cfg = client.config();
    let ctx = Context::new("u");
    let mut out = Vec::new();
    write_decision(&mut out, &cfg.evaluate("banner", &ctx));
    out.push(b',');
    write_decision(&mut out, &cfg.evaluate("nope", &ctx));
    let parsed: serde_json::Value = serde_json::from_slice(&[b"{", &out[..], b"}"].concat()).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({
            "banner": {"variant": "on", "value": {"text": "hi \"there\""}, "reason": "STATIC", "error_code": null, "enrolled": false},
            "nope": {"variant": null, "value": null, "reason": "ERROR", "error_code": "FLAG_NOT_FOUND", "enrolled": false},
        })
    );
}
