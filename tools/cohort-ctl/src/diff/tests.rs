//! The recursive diff: leaves, nested objects, arrays growing and shrinking.

use serde_json::json;

use super::diff;

fn lines(before: serde_json::Value, after: serde_json::Value) -> Vec<String> {
    diff(&before, &after).iter().map(ToString::to_string).collect()
}

#[test]
fn equal_trees_have_no_differences() {
    let v = json!({"key": "x", "rules": [{"serve": {"variation": "on"}}], "enabled": true});
    assert!(diff(&v, &v).is_empty());
}

#[test]
fn changed_leaves_are_named_by_their_paths() {
    let before = json!({"key": "c", "enabled": false, "rules": [{"serve": {"variation": "off"}}, {"x": 1}]});
    let after = json!({"key": "c", "enabled": true, "rules": [{"serve": {"variation": "on"}}, {"x": 1}]});
    assert_eq!(lines(before, after), ["enabled: false → true", "rules[0].serve.variation: \"off\" → \"on\""]);
}

#[test]
fn object_fields_and_array_elements_are_added_and_removed() {
    let before = json!({"tags": ["a", "b", "c"], "old": 1, "same": {"k": [1]}});
    let after = json!({"tags": ["a", "x"], "same": {"k": [1, 2]}, "new": {"n": null}});
    assert_eq!(
        lines(before, after),
        // Object keys in serde_json's (sorted) order.
        [
            "old: removed 1",
            "same.k[1]: added 2",
            "tags[1]: \"b\" → \"x\"",
            "tags[2]: removed \"c\"",
            "new: added {\"n\":null}",
        ]
    );
}

#[test]
fn a_change_of_type_replaces_the_whole_node() {
    assert_eq!(lines(json!({"a": [1]}), json!({"a": {"b": 1}})), ["a: [1] → {\"b\":1}"]);
    assert_eq!(lines(json!(1), json!(2)), [".: 1 → 2"]);
}
