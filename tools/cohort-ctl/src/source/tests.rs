//! Marked YAML trees, scalar resolution, and field paths resolved to lines.

use serde_json::json;

use super::{Segment, format_path, parse_path, parse_yaml};

const EXPERIMENT: &str = "\
# A comment on line 1
kind: experiment
key: checkout-button
variants:
  - key: control
    weight_bp: 5000
    control: true
  - key: green
    weight_bp: 4000
    payload:
      color: green
targeting: {op: in, attribute: country, values: [NZ, AU]}
";

#[test]
fn values_follow_the_yaml_core_schema() {
    let docs = parse_yaml(
        "a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: \"true\"\ng: hello\nh: !!str 42\ni: [1, two]\nj: null\nk: -7\n",
    )
    .unwrap();
    assert_eq!(
        docs[0].to_json(),
        json!({"a": 1, "b": 1.5, "c": true, "d": null, "e": "1", "f": "true", "g": "hello",
               "h": "42", "i": [1, "two"], "j": null, "k": -7})
    );
}

#[test]
fn streams_split_into_documents_and_drop_empty_ones() {
    let docs = parse_yaml("---\nkey: a\n---\nkey: b\n---\n").unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].to_json(), json!({"key": "b"}));
    assert_eq!(docs[1].line, 4);
    assert!(parse_yaml("# only a comment\n").unwrap().is_empty());
}

#[test]
fn anchors_and_aliases_copy_values() {
    let docs = parse_yaml("base: &v {key: on, value: true}\ncopy: *v\n").unwrap();
    assert_eq!(docs[0].to_json()["copy"], json!({"key": "on", "value": true}));
}

#[test]
fn syntax_errors_and_duplicate_keys_name_their_line() {
    let e = parse_yaml("key: a\nvariants:\n  - key: b\n   bad: [\n").unwrap_err();
    assert!(e.line >= 4, "{e:?}");
    let e = parse_yaml("key: a\nsalt: x\nkey: b\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("duplicate key \"key\""), "{e:?}");
}

#[test]
fn paths_parse_in_the_servers_notation() {
    use Segment::*;
    assert_eq!(
        parse_path("definition.variants[1].weight_bp"),
        [Field("definition".into()), Field("variants".into()), Index(1), Field("weight_bp".into())]
    );
    assert_eq!(
        parse_path(r#"layers["main \"x\""].experiments[0].range"#),
        [
            Field("layers".into()),
            Key("main \"x\"".into()),
            Field("experiments".into()),
            Index(0),
            Field("range".into())
        ]
    );
    assert_eq!(parse_path("."), []);
    assert_eq!(parse_path("default.split[0].?"), [Field("default".into()), Field("split".into()), Index(0)]);
    let path = parse_path(r#"flags["a"].rules[2].condition"#);
    assert_eq!(format_path(&path), r#"flags["a"].rules[2].condition"#);
}

#[test]
fn paths_resolve_to_the_line_of_their_node() {
    let doc = &parse_yaml(EXPERIMENT).unwrap()[0];
    let line = |p: &str| doc.line_of(&parse_path(p));
    assert_eq!(line(""), 2, "the document starts at its first key");
    assert_eq!(line("key"), 3);
    assert_eq!(line("variants"), 4);
    assert_eq!(line("variants[0]"), 5);
    assert_eq!(line("variants[1].weight_bp"), 9);
    assert_eq!(line("variants[1].payload.color"), 11);
    assert_eq!(line("targeting.values[1]"), 12, "flow collections keep their line");
    // What is not written points at its nearest written ancestor.
    assert_eq!(line("variants[1].control"), 8);
    assert_eq!(line("variants[7].weight_bp"), 4);
    assert_eq!(line("salt"), 2);
    // A list element by its key.
    assert_eq!(line(r#"variants["green"].weight_bp"#), 9);
}

#[test]
fn json_text_resolves_lines_too() {
    let text = "{\n  \"key\": \"f\",\n  \"variations\": [\n    {\"key\": \"on\", \"value\": true},\n    {\"key\": \"off\",\n     \"value\": false}\n  ]\n}\n";
    let doc = &parse_yaml(text).unwrap()[0];
    assert_eq!(doc.to_json()["variations"][1], json!({"key": "off", "value": false}));
    assert_eq!(doc.line_of(&parse_path("variations[1].value")), 6);
    assert_eq!(doc.line_of(&parse_path("variations[0]")), 4);
}
