//! The three document shapes and flagd's files, and where their problems are reported.

use cohort_core::model::ExperimentStatus;

use super::{FileFormat, Form, parse_text, parse_text_as};
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

    let (_, p) = parse_text("env.yaml", "flags: []\nwidgets: []\n", false);
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with("env.yaml:2: widgets: unknown field"), "{shown:?}");
    let (_, p) = parse_text("env.yaml", "segments: {}\n", false);
    assert!(
        p[0].to_string().starts_with("env.yaml:1: segments: expected a list, found a mapping"),
        "{}",
        p[0]
    );

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

/// A flagd flag-definition file of our own: a shared evaluator, a fractional split, a flag
/// with no default variant, flag-set metadata.
const FLAGD: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "metadata": {"flagSetId": "storefront"},
  "$evaluators": {
    "beta-testers": {"ends_with": [{"var": "email"}, "@beta.example.org"]}
  },
  "flags": {
    "quick-reorder": {
      "state": "ENABLED",
      "variants": {
        "yes": true,
        "no": false
      },
      "defaultVariant": "no",
      "targeting": {"if": [{"$ref": "beta-testers"}, "yes", null]}
    },
    "banner-tone": {
      "state": "DISABLED",
      "variants": {"calm": "calm", "loud": "loud"},
      "defaultVariant": null,
      "targeting": {"fractional": [["calm", 70], ["loud", 30]]}
    }
  }
}
"#;

fn line(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("the needle is in the text") + 1
}

#[test]
fn flagd_files_are_told_by_their_shape_and_read_as_flags() {
    for format in [FileFormat::Auto, FileFormat::Flagd] {
        let (specs, problems) = parse_text_as("shop.flagd.json", FLAGD, true, format);
        assert!(problems.is_empty(), "{problems:?}");
        let keys: Vec<(Kind, &str)> = specs.iter().map(|s| (s.kind(), s.key())).collect();
        assert_eq!(keys, [(Kind::Flag, "banner-tone"), (Kind::Flag, "quick-reorder")], "{format:?}");
        let reorder = &specs[1];
        assert_eq!(reorder.origin.line(), line(FLAGD, "\"quick-reorder\""));
        assert!(matches!(&reorder.origin.form, Form::Flagd { variants } if variants[..] == ["no", "yes"]));
        let Def::Flag(f) = &reorder.def else { panic!("a flag") };
        assert_eq!(f.evaluators.keys().collect::<Vec<_>>(), ["beta-testers"]);
        assert_eq!(f.flag_set_metadata["flagSetId"], "storefront");
    }

    // The same file as YAML, which flagd reads too.
    let yaml = "flags:\n  dark-mode:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: off\n";
    let (specs, problems) = parse_text("flags.yaml", yaml, false);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!((specs[0].key(), specs[0].origin.line()), ("dark-mode", 2));

    // Insisting on Cohort's format: the mapping of flags is refused, with the way out.
    let (specs, p) = parse_text_as("shop.flagd.json", FLAGD, true, FileFormat::Cohort);
    assert!(specs.is_empty());
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(&format!(
            "shop.flagd.json:{}: flags: expected a list, found a mapping (flags by key are a flagd file: \
             apply it with --format flagd or auto)",
            line(FLAGD, "\"flags\"")
        )),
        "{shown:?}"
    );

    // Insisting on flagd's: a Cohort document is not one.
    let (specs, p) = parse_text_as("flag.yaml", FLAG, false, FileFormat::Flagd);
    assert!(specs.is_empty());
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(shown.contains(&"flag.yaml:1: flags: a flagd file needs `flags`".to_owned()), "{shown:?}");
    assert!(
        shown.iter().any(|s| s.starts_with("flag.yaml:2: \"key\": unknown property of a flagd file")),
        "{shown:?}"
    );
}

#[test]
fn flagd_shape_errors_name_the_file_line_and_path() {
    let bad = FLAGD
        .replace("\"state\": \"DISABLED\"", "\"state\": \"ON\"")
        .replace("\"no\": false", "\"no\": \"false\"");
    let (specs, p) = parse_text("shop.flagd.json", &bad, true);
    assert!(specs.is_empty(), "one bad flag refuses the file");
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!(
                "shop.flagd.json:{}: flags[\"banner-tone\"].state: \"ON\" is not ENABLED or DISABLED",
                line(&bad, "\"ON\"")
            ),
            format!(
                "shop.flagd.json:{}: flags[\"quick-reorder\"].variants[\"yes\"]: true is a boolean, but variant \"no\" \
                 is a string; every variant of a flag has one type",
                line(&bad, "\"yes\": true")
            ),
        ]
    );
    // Still about the flag, for `-o json`.
    assert_eq!((p[0].kind, p[0].key.as_deref()), (Some(Kind::Flag), Some("banner-tone")));
}

#[test]
fn flagd_flags_are_named_as_the_file_names_them() {
    let (specs, _) = parse_text("shop.flagd.json", FLAGD, true);
    let origin = &specs[1].origin;
    let at = |field: &str| origin.diagnostic(Kind::Flag, "quick-reorder", field, "bad").to_string();
    let file = "shop.flagd.json";
    assert_eq!(
        at("targeting.if[0]"),
        format!("{file}:{}: flags[\"quick-reorder\"].targeting.if[0]: bad", line(FLAGD, "\"if\""))
    );
    // The model's names (the server's `definition.` prefix too) become flagd's.
    assert_eq!(
        at("definition.variations[1].value"),
        format!("{file}:{}: flags[\"quick-reorder\"].variants[\"yes\"]: bad", line(FLAGD, "\"yes\": true"))
    );
    assert_eq!(
        at("default.variation"),
        format!(
            "{file}:{}: flags[\"quick-reorder\"].defaultVariant: bad",
            line(FLAGD, "\"defaultVariant\": \"no\"")
        )
    );
    assert_eq!(
        at("enabled"),
        format!("{file}:{}: flags[\"quick-reorder\"].state: bad", line(FLAGD, "\"state\": \"ENABLED\""))
    );
    // Evaluators and the flag set's metadata are the file's, not the flag's.
    assert_eq!(
        at("evaluators[\"beta-testers\"].ends_with[1]"),
        format!(
            "{file}:{}: $evaluators[\"beta-testers\"].ends_with[1]: bad",
            line(FLAGD, "\"beta-testers\": {")
        )
    );
    assert_eq!(
        at("flag_set_metadata.flagSetId"),
        format!("{file}:{}: metadata.flagSetId: bad", line(FLAGD, "\"flagSetId\""))
    );
    assert_eq!(
        at("."),
        format!("{file}:{}: flags[\"quick-reorder\"]: bad", line(FLAGD, "\"quick-reorder\""))
    );
    // Machines still get the flag.
    let d = origin.diagnostic(Kind::Flag, "quick-reorder", "targeting", "bad");
    assert_eq!((d.kind, d.key.as_deref()), (Some(Kind::Flag), Some("quick-reorder")));
}
