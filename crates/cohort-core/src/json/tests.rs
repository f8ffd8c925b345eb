//! Strict JSON: duplicate keys found at any depth, named with their path.

use serde_json::{Value, json};

use super::{JsonError, duplicate_key, from_slice};

#[test]
fn a_repeated_top_level_key_is_named() {
    let text = br#"{"key": "f", "enabled": true, "enabled": false}"#;
    let d = duplicate_key(text).expect("the second enabled is found");
    assert_eq!((d.path.as_str(), d.key.as_str()), ("enabled", "enabled"));
    assert_eq!(d.line, 1);
    let err = from_slice::<Value>(text).unwrap_err();
    assert!(matches!(err, JsonError::DuplicateKey(_)), "{err}");
    assert!(err.to_string().starts_with("enabled: duplicate key \"enabled\""), "{err}");
}

#[test]
fn nested_duplicates_carry_their_path() {
    let text =
        br#"{"variations": [{"key": "a", "value": {"x": 1}}, {"key": "b", "value": {"y": 1, "y": 2}}]}"#;
    let d = duplicate_key(text).unwrap();
    assert_eq!(d.path, "variations[1].value.y");
    assert_eq!(d.key, "y");
    // Escaped spellings of the same key are the same key.
    let d = duplicate_key(br#"[{"a\u0062": 1, "ab": 2}]"#).unwrap();
    assert_eq!((d.path.as_str(), d.key.as_str()), ("[0].ab", "ab"));
}

#[test]
fn large_objects_are_checked_too() {
    let mut text = String::from("{");
    for i in 0..100 {
        text.push_str(&format!("\"k{i}\": {i},"));
    }
    text.push_str("\"k42\": 0}");
    assert_eq!(duplicate_key(text.as_bytes()).unwrap().path, "k42");
}

#[test]
fn unique_keys_and_invalid_text_are_left_alone() {
    let value = json!({"a": {"b": [1, {"c": null, "d": "x"}]}, "e": 1.5});
    let text = value.to_string();
    assert_eq!(duplicate_key(text.as_bytes()), None);
    assert_eq!(from_slice::<Value>(text.as_bytes()).unwrap(), value);
    // The same key in sibling objects is fine.
    assert_eq!(duplicate_key(br#"[{"a": 1}, {"a": 2}]"#), None);
    // Not JSON: no duplicate to report; the parse reports the syntax.
    assert_eq!(duplicate_key(b"{\"a\": "), None);
    assert!(matches!(from_slice::<Value>(b"{\"a\": "), Err(JsonError::Invalid(_))));
}
