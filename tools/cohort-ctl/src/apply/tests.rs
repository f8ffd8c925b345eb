//! Planning against stored state, dependency order, and refused writes read back into the
//! files' lines.

use std::collections::HashMap;

use serde_json::json;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Current, Write, order, plan, preflight, status_diagnostics};
use crate::definition::{Def, Kind};
use crate::document::{Origin, parse_text};
use crate::lifecycle::Action;

const FILE: &str = "\
kind: experiment
key: button
status: completed
variants:
  - key: a
    weight_bp: 5000
  - key: b
    weight_bp: 4000
---
kind: layer
key: main
salt: m
experiments:
  - {experiment: button, range: [0, 5000]}
";

fn stored(kind: Kind, value: serde_json::Value, revision: i64) -> ((Kind, String), Current) {
    let def = Def::parse(kind, &value).unwrap();
    ((kind, def.key().to_owned()), Current { canonical: def.canonical(), def, revision })
}

#[test]
fn experiments_keep_their_stored_id_and_move_along_the_legal_path() {
    let (specs, problems) = parse_text("e.yaml", FILE, false);
    assert!(problems.is_empty(), "{problems:?}");
    let id = "6a1f0e3c-2b7d-4c59-9e8a-0d3c5b7a9f21";
    let current: HashMap<_, _> = [stored(
        Kind::Experiment,
        json!({"id": id, "key": "button", "status": "running",
               "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 4000}]}),
        4,
    )]
    .into();
    let item = plan(specs[0].clone(), &current).unwrap();
    assert!(matches!(item.write, Write::None), "same definition once the id and status are the stored ones");
    assert_eq!(item.moves, [Action::Complete]);
    assert_eq!(item.revision, 4);
    let Def::Experiment(end) = &item.end else { panic!() };
    assert_eq!(end.id.to_string(), id);

    // A new experiment is created without the id and status the server assigns.
    let item = plan(specs[0].clone(), &HashMap::new()).unwrap();
    let Write::Create(body) = &item.write else { panic!("a create") };
    assert!(body.get("id").is_none() && body.get("status").is_none(), "{body}");
    assert_eq!(item.moves, [Action::Start, Action::Complete]);
}

#[test]
fn impossible_moves_point_at_the_status_line() {
    let (specs, _) = parse_text("e.yaml", &FILE.replace("status: completed", "status: draft"), false);
    let current: HashMap<_, _> = [stored(
        Kind::Experiment,
        json!({"id": "6a1f0e3c-2b7d-4c59-9e8a-0d3c5b7a9f21", "key": "button", "status": "paused",
               "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 4000}]}),
        2,
    )]
    .into();
    let d = plan(specs[0].clone(), &current).unwrap_err();
    assert!(
        d.to_string()
            .starts_with("e.yaml:3: experiment button: status: cannot move from paused back to draft"),
        "{d}"
    );
}

#[test]
fn writes_go_in_dependency_order() {
    let text = "\
kind: layer\nkey: l\nsalt: s\n---\n\
kind: segment\nkey: outer\ncondition: {op: in_segment, segment: inner}\n---\n\
kind: experiment\nkey: e\nvariants: [{key: a, weight_bp: 10000}]\n---\n\
kind: segment\nkey: inner\ninclude: [u]\n---\n\
kind: metric\nkey: m\nevent: e\naggregation: count\n---\n\
kind: holdout\nkey: h\nshare_bp: 100\nlayers: [l]\n---\n\
kind: flag\nkey: f\ntype: boolean\nsalt: s\nvariations: [{key: on, value: true}]\noff_variation: on\ndefault: {variation: on}\n";
    let (specs, problems) = parse_text("all.yaml", text, false);
    assert!(problems.is_empty(), "{problems:?}");
    let mut items: Vec<_> = specs.into_iter().map(|s| plan(s, &HashMap::new()).unwrap()).collect();
    order(&mut items);
    let keys: Vec<&str> = items.iter().map(|i| i.spec.key()).collect();
    assert_eq!(keys, ["m", "inner", "outer", "f", "e", "l", "h"]);
}

#[test]
fn holdouts_keep_their_stored_id_and_are_created_without_one() {
    let text = "kind: holdout\nkey: h\nshare_bp: 500\n";
    let (specs, problems) = parse_text("h.yaml", text, false);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(!specs[0].id_given);
    let id = "0192f0c4-6a1e-7c3d-9b1a-3f2e4d5c6b7a";
    let current: HashMap<_, _> =
        [stored(Kind::Holdout, json!({"id": id, "key": "h", "share_bp": 500}), 3)].into();
    let item = plan(specs[0].clone(), &current).unwrap();
    assert!(matches!(item.write, Write::None), "the same holdout once the id is the stored one");
    let Def::Holdout(end) = &item.end else { panic!() };
    assert_eq!(end.id.to_string(), id);

    let item = plan(specs[0].clone(), &HashMap::new()).unwrap();
    let Write::Create(body) = &item.write else { panic!("a create") };
    assert!(body.get("id").is_none(), "the server assigns the id: {body}");
    assert_eq!(body["share_bp"], json!(500));
}

fn origin_of(kind: Kind, key: &str, text: &str) -> Origin {
    let (specs, _) = parse_text("e.yaml", text, false);
    specs.into_iter().find(|s| s.kind() == kind && s.key() == key).unwrap().origin
}

#[test]
fn field_violations_point_at_their_lines() {
    let mut details = ErrorDetails::new();
    details
        .add_bad_request_violation("definition.variants[1].weight_bp", "weights sum to 9000, expected 10000");
    details.add_bad_request_violation("layers[\"main\"].experiments[0].range", "overlaps");
    details.add_bad_request_violation("layers[\"other\"].experiments[0]", "elsewhere");
    details.add_bad_request_violation("definition", "must be a JSON object");
    let status = Status::with_error_details(Code::InvalidArgument, "invalid request: …", details);
    let origin = origin_of(Kind::Experiment, "button", FILE);
    let layer = origin_of(Kind::Layer, "main", FILE);
    let others = |k: Kind, key: &str| (k == Kind::Layer && key == "main").then(|| layer.clone());
    let found: Vec<String> = status_diagnostics(&status, Kind::Experiment, "button", &origin, &others)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "e.yaml:8: experiment button: variants[1].weight_bp: weights sum to 9000, expected 10000",
            "e.yaml:14: layer main: experiments[0].range: overlaps (after the write of experiment button)",
            "e.yaml:1: layer other: experiments[0]: elsewhere (after the write of experiment button)",
            "e.yaml:1: experiment button: must be a JSON object",
        ]
    );
}

#[test]
fn preconditions_say_what_was_refused_and_why_once() {
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation("STATE", "expected_revision", "stale; current revision is 3");
    let status = Status::with_error_details(
        Code::FailedPrecondition,
        "experiment \"button\" is at revision 3, not 2: it changed since it was read: expected_revision: stale; current revision is 3",
        details,
    );
    let origin = origin_of(Kind::Experiment, "button", FILE);
    let found: Vec<String> = status_diagnostics(&status, Kind::Experiment, "button", &origin, &|_, _| None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "e.yaml:1: experiment button: experiment \"button\" is at revision 3, not 2: it changed since it was read",
            "e.yaml:1: experiment button: expected_revision: stale; current revision is 3",
        ]
    );

    let plain = Status::not_found("metric \"m\" does not exist");
    let found = status_diagnostics(&plain, Kind::Experiment, "button", &origin, &|_, _| None);
    assert_eq!(found[0].to_string(), "e.yaml:1: experiment button: not found: metric \"m\" does not exist");
}

/// A flagd file whose flags share an evaluator with an operator flagd does not have, and
/// one with a bad `sem_ver` comparison.
const FLAGD: &str = r#"{
  "$evaluators": {
    "staff": {"ends_wiht": [{"var": "email"}, "@example.com"]}
  },
  "flags": {
    "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
          "targeting": {"if": [{"$ref": "staff"}, "on", "off"]}},
    "b": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
          "targeting": {"if": [{"$ref": "staff"}, "on", "off"]}},
    "c": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
          "targeting": {"if": [{"sem_ver": [{"var": "version"}, "~=", "1.2.0"]}, "on", null]}}
  }
}
"#;

#[test]
fn flagd_compile_errors_name_the_flag_as_the_file_does() {
    let (specs, problems) = parse_text("f.flagd.json", FLAGD, true);
    assert!(problems.is_empty(), "{problems:?}");
    let items: Vec<_> = specs.into_iter().map(|s| plan(s, &HashMap::new()).unwrap()).collect();
    let found: Vec<String> = preflight(&items, &HashMap::new()).iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "the shared evaluator once, not once per flag: {found:#?}");
    assert!(
        found[0]
            .starts_with("f.flagd.json:3: $evaluators[\"staff\"].ends_wiht: unknown operator \"ends_wiht\""),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with(
            "f.flagd.json:11: flags[\"c\"].targeting.if[0].sem_ver[1]: unknown operator \"~=\"; sem_ver compares"
        ),
        "{found:#?}"
    );
}

#[test]
fn flagd_field_violations_from_the_server_name_the_flag_as_the_file_does() {
    let (specs, _) = parse_text("f.flagd.json", FLAGD, true);
    let c = specs.iter().find(|s| s.key() == "c").unwrap();
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation("definition.targeting.if[0].sem_ver[1]", "unknown operator");
    details.add_bad_request_violation("flags[\"a\"].targeting", "elsewhere");
    let status = Status::with_error_details(Code::InvalidArgument, "invalid request: …", details);
    let a = specs.iter().find(|s| s.key() == "a").unwrap().origin.clone();
    let others = |k: Kind, key: &str| (k == Kind::Flag && key == "a").then(|| a.clone());
    let found: Vec<String> = status_diagnostics(&status, Kind::Flag, "c", &c.origin, &others)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "f.flagd.json:11: flags[\"c\"].targeting.if[0].sem_ver[1]: unknown operator",
            "f.flagd.json:7: flags[\"a\"].targeting: elsewhere (after the write of flag c)",
        ]
    );
}
