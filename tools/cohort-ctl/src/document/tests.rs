//! The three document shapes, and where their problems are reported.

use cohort_core::model::ExperimentStatus;

use super::parse_text;
use crate::definition::{Def, Kind};

const FLAG: &str = "\
kind: flag
key: new-checkout
type: boolean
salt: nc-1
variations:
  - {key: on, value: true}
  - {key: off, value: false}
off_variation: off
default: {variation: off}
";

#[test]
fn a_single_document_with_kind() {
    let (specs, problems) = parse_text("flag.yaml", FLAG, false);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(specs.len(), 1);
    assert_eq!((specs[0].kind(), specs[0].key()), (Kind::Flag, "new-checkout"));
    let Def::Flag(f) = &specs[0].def else { panic!("a flag") };
    assert!(f.enabled, "defaults fill in");
    assert_eq!(specs[0].origin.line(), 1);
}

#[test]
fn a_multi_document_stream() {
    let text = format!(
        "kind: metric\nkey: purchases\nevent: purchase\naggregation: conversion\n---\n{FLAG}---\n\
         kind: experiment\nkey: button\nstatus: running\nvariants:\n  - {{key: a, weight_bp: 5000}}\n  - {{key: b, weight_bp: 5000}}\n"
    );
    let (specs, problems) = parse_text("all.yaml", &text, false);
    assert!(problems.is_empty(), "{problems:?}");
    let kinds: Vec<Kind> = specs.iter().map(|s| s.kind()).collect();
    assert_eq!(kinds, [Kind::Metric, Kind::Flag, Kind::Experiment]);
    let exp = &specs[2];
    assert_eq!(exp.origin.line(), 16);
    assert!(!exp.id_given, "the server assigns the id");
    assert_eq!(exp.status, Some(ExperimentStatus::Running));
}

#[test]
fn a_whole_environment_document() {
    let text = r#"{
  "version": 12,
  "flags": [],
  "segments": [{"key": "staff", "include": ["u1"]}],
  "experiments": [
    {"id": "6a1f0e3c-2b7d-4c59-9e8a-0d3c5b7a9f21", "key": "e1", "status": "paused",
     "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 5000}]}
  ],
  "layers": [{"key": "main", "salt": "m", "experiments": [{"experiment": "e1", "range": [0, 5000]}]}]
}"#;
    let (specs, problems) = parse_text("env.json", text, true);
    assert!(problems.is_empty(), "{problems:?}");
    let found: Vec<(Kind, &str)> = specs.iter().map(|s| (s.kind(), s.key())).collect();
    assert!(found.contains(&(Kind::Segment, "staff")));
    assert!(found.contains(&(Kind::Layer, "main")));
    let exp = specs.iter().find(|s| s.kind() == Kind::Experiment).unwrap();
    assert!(exp.id_given);
    assert_eq!(exp.status, Some(ExperimentStatus::Paused));
    assert_eq!(exp.origin.line(), 6);
    assert_eq!(exp.origin.line_of(&crate::source::parse_path("variants[1]")), 7);
}

#[test]
fn model_errors_name_the_file_line_and_field() {
    let text = "kind: flag\nkey: f\ntype: boolean\nsalt: s\nvariations:\n  - key: on\n    value: true\n    colour: red\noff_variation: on\ndefault: {variation: on}\n";
    let (specs, problems) = parse_text("f.yaml", text, false);
    assert!(specs.is_empty());
    assert_eq!(problems.len(), 1);
    let shown = problems[0].to_string();
    assert!(shown.starts_with("f.yaml:8: flag f: variations[0].colour: unknown field `colour`"), "{shown}");

    let text = "kind: segment\nkey: s\ninclude: 7\n";
    let (_, problems) = parse_text("s.yaml", text, false);
    assert!(
        problems[0].to_string().starts_with("s.yaml:3: segment s: include: invalid type"),
        "{}",
        problems[0]
    );

    let (_, problems) = parse_text("m.yaml", "kind: metric\nevent: e\naggregation: sum\n", false);
    assert!(
        problems[0].to_string().starts_with("m.yaml:1: metric ?: missing field `key`"),
        "{}",
        problems[0]
    );
}

#[test]
fn shape_and_syntax_errors_name_the_file_and_line() {
    let (_, p) = parse_text("x.yaml", "key: a\n---\nkind: widget\nkey: b\n", false);
    assert_eq!(p.len(), 2);
    assert!(p[0].to_string().starts_with("x.yaml:1: a document needs `kind:`"), "{}", p[0]);
    assert!(p[1].to_string().starts_with("x.yaml:3: kind: unknown kind \"widget\""), "{}", p[1]);

    let (_, p) = parse_text("bad.yaml", "kind: flag\nkey: [unclosed\nsalt: s\n", false);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].to_string().starts_with("bad.yaml:") && p[0].to_string().contains("invalid YAML"),
        "{}",
        p[0]
    );
    assert!(p[0].line.unwrap() >= 2, "{:?}", p[0]);

    let (_, p) = parse_text("bad.json", "{\n  \"kind\": \"flag\",\n  \"key\": \n}\n", true);
    assert!(p[0].to_string().starts_with("bad.json:4: invalid JSON"), "{}", p[0]);

    let (_, p) = parse_text("env.yaml", "flags: {}\nwidgets: []\n", false);
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(shown.iter().any(|s| s.starts_with("env.yaml:1: flags: expected a list")), "{shown:?}");
    assert!(shown.iter().any(|s| s.starts_with("env.yaml:2: widgets: unknown field")), "{shown:?}");

    let (_, p) = parse_text("empty.yaml", "# nothing\n", false);
    assert!(p[0].to_string().starts_with("empty.yaml: contains no definitions"));
}

#[test]
fn duplicate_keys_in_json_name_the_key_and_line() {
    // serde_json alone would keep the last value and apply a disabled flag.
    let text = "{\n  \"kind\": \"flag\",\n  \"key\": \"f\",\n  \"enabled\": true,\n  \"enabled\": false\n}\n";
    let (specs, p) = parse_text("f.json", text, true);
    assert!(specs.is_empty());
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].to_string(), "f.json:5: enabled: duplicate key \"enabled\"");

    let nested = "{\"flags\": [{\"key\": \"g\",\n \"variations\": [{\"key\": \"on\", \"key\": \"off\"}]}]}";
    let (_, p) = parse_text("env.json", nested, true);
    assert_eq!(p[0].to_string(), "env.json:2: flags[0].variations[0].key: duplicate key \"key\"");
}
