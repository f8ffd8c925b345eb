use std::path::{Path, PathBuf};

use cohort_core::hash::bucket;
use cohort_core::{Context, Reason};
use serde_json::{Value, json};

use super::{Step, check, eval, parse_context, validate};
use crate::Outcome;
use crate::console::{Console, Format};
use crate::document::FileFormat;

/// A flag with a rule by id, a rule that splits, and a default; a running experiment with
/// an id, given traffic.
const CHECKOUT: &str = "\
kind: flag
key: new-checkout
type: boolean
salt: nc-1
variations: [{key: on, value: true}, {key: off, value: false}]
rules:
  - id: aussies
    condition: {op: in, attribute: country, values: [AU]}
    serve: {variation: on}
  - condition: {op: in, attribute: country, values: [NZ]}
    serve: {split: [{variation: on, weight_bp: 3000}, {variation: off, weight_bp: 7000}]}
default: {variation: off}
---
kind: experiment
key: price
id: 6f1c1a43-3c51-4a57-9d77-1b0e6c3f2a11
salt: price-1
status: running
traffic_bp: 6000
variants:
  - {key: control, weight_bp: 5000, control: true}
  - {key: cheaper, weight_bp: 5000, payload: {discount: 10}}
";

/// flagd's file: an `if` on an attribute, a disabled flag.
const FLAGD: &str = r#"{
  "flags": {
    "sourdough-beta": {
      "state": "ENABLED",
      "variants": {"yes": true, "no": false},
      "defaultVariant": "no",
      "targeting": {"if": [{"ends_with": [{"var": "email"}, "@crumb.example.net"]}, "yes", null]}
    },
    "night-oven": {
      "state": "DISABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off"
    }
  }
}
"#;

struct Ran {
    outcome: Outcome,
    out: String,
    err: String,
}

fn run(format: Format, f: impl FnOnce(&mut Console<'_>) -> Result<Outcome, crate::CtlError>) -> Ran {
    let (mut out, mut err, mut input) = (Vec::new(), Vec::new(), std::io::empty());
    let outcome = {
        let mut con = Console { out: &mut out, err: &mut err, input: &mut input, format, terminal: false };
        f(&mut con).expect("the command ran")
    };
    Ran { outcome, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
}

fn validate_files(paths: &[PathBuf], format: Format) -> Ran {
    run(format, |con| validate(paths, FileFormat::Auto, con))
}

fn eval_json(paths: &[PathBuf], context: &str, keys: &[&str]) -> (Outcome, Value) {
    let ctx = parse_context(context).unwrap();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let ran = run(Format::Json, |con| eval(paths, FileFormat::Auto, &ctx, &keys, con));
    let value = serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}", ran.out));
    (ran.outcome, value)
}

#[test]
fn valid_files_and_a_directory_are_summed_up_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = write(dir.path(), "checkout.yaml", CHECKOUT);
    let flagd = write(dir.path(), "bakery.flagd.json", FLAGD);

    let ran = validate_files(&[checkout, flagd], Format::Table);
    assert_eq!(ran.outcome, Outcome::Done);
    assert_eq!(ran.out, "2 files, 4 definitions: valid\n");
    assert_eq!(ran.err, "");

    let ran = validate_files(&[dir.path().to_path_buf()], Format::Json);
    assert_eq!(ran.outcome, Outcome::Done);
    let report: Value = serde_json::from_str(&ran.out).unwrap();
    assert_eq!(report, json!({"valid": true, "files": 2, "definitions": 4, "errors": []}));
}

#[test]
fn problems_name_file_line_and_field_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let bad = CHECKOUT.replace("weight_bp: 5000, payload", "weight_bp: 4000, payload");
    let file = write(dir.path(), "bad.yaml", &bad);
    let name = file.display().to_string();
    let line = line_of(&bad, "cheaper");

    let ran = validate_files(std::slice::from_ref(&file), Format::Table);
    assert_eq!(ran.outcome, Outcome::Failed);
    assert_eq!(ran.out, "", "nothing on stdout when invalid");
    assert_eq!(
        ran.err,
        format!(
            "{name}:{line}: experiment price: variants[1].weight_bp: weights sum to 9000, expected 10000\n\
             1 file, 2 definitions: 1 problem\n"
        )
    );

    let ran = validate_files(std::slice::from_ref(&file), Format::Json);
    assert_eq!(ran.outcome, Outcome::Failed);
    let report: Value = serde_json::from_str(&ran.out).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["line"], line);
    assert_eq!(report["errors"][0]["field"], "variants[1].weight_bp");
    assert_eq!(report["errors"][0]["file"], name);

    // A YAML syntax error, a flagd file's bad state, and the same flag in two files.
    let broken = write(dir.path(), "broken.yaml", "kind: flag\nkey: [unclosed\n");
    let bad_flagd_text = FLAGD.replace("\"DISABLED\"", "\"OFF\"");
    let bad_flagd = write(dir.path(), "bad.flagd.json", &bad_flagd_text);
    let ran = validate_files(&[broken.clone(), bad_flagd.clone()], Format::Table);
    assert_eq!(ran.outcome, Outcome::Failed);
    let state_line = line_of(&bad_flagd_text, "\"OFF\"");
    assert!(ran.err.contains(&format!("{}:3: invalid YAML", broken.display())), "{}", ran.err);
    assert!(
        ran.err.contains(&format!("{}:{state_line}: flags[\"night-oven\"].state: ", bad_flagd.display())),
        "{}",
        ran.err
    );
    assert!(ran.err.ends_with("2 files, 0 definitions: 2 problems\n"), "{}", ran.err);

    let twice = write(dir.path(), "again.yaml", CHECKOUT);
    let first = write(dir.path(), "first.yaml", CHECKOUT);
    let ran = validate_files(&[first.clone(), twice.clone()], Format::Table);
    assert_eq!(ran.outcome, Outcome::Failed);
    assert!(
        ran.err.starts_with(&format!(
            "{}:1: flag new-checkout: defined twice; first at {}:1\n",
            twice.display(),
            first.display()
        )),
        "{}",
        ran.err
    );
}

#[test]
fn experiments_without_ids_validate_with_stand_ins() {
    let dir = tempfile::tempdir().unwrap();
    let no_ids = "kind: experiment\nkey: a\nvariants: [{key: x, weight_bp: 5000}, {key: y, weight_bp: 5000}]\n---\n\
                  kind: experiment\nkey: b\nvariants: [{key: x, weight_bp: 5000}, {key: y, weight_bp: 5000}]\n";
    let file = write(dir.path(), "drafts.yaml", no_ids);
    let checked = check(&[file], FileFormat::Auto, &mut std::io::empty());
    assert!(
        checked.errors.is_empty(),
        "two experiments without ids are not one id twice: {:?}",
        checked.errors
    );
    assert_eq!(checked.stand_in_ids.iter().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn contexts_read_as_openfeature_json_with_nested_objects_dotted() {
    let ctx = parse_context(
        r#"{"targetingKey": "u-42", "country": "NZ", "age": 41, "beta": true,
            "tags": ["a", "b"], "user": {"plan": "pro", "org": {"id": "o-1"}}}"#,
    )
    .unwrap();
    let want = Context::new("u-42")
        .with("country", "NZ")
        .with("age", 41)
        .with("beta", true)
        .with("tags", vec!["a", "b"])
        .with("user.plan", "pro")
        .with("user.org.id", "o-1");
    assert_eq!(ctx, want);
    assert_eq!(parse_context(r#"{"targetingKey": null}"#).unwrap(), Context::anonymous());
    assert_eq!(parse_context("{}").unwrap(), Context::anonymous());

    let refused = |text: &str| parse_context(text).unwrap_err();
    assert!(refused("{\"targetingKey\": ").starts_with("not JSON"));
    assert!(refused("[1]").starts_with("must be a JSON object"));
    assert_eq!(refused(r#"{"targetingKey": 42}"#), "targetingKey: must be a string");
    assert_eq!(refused(r#"{"plan": null}"#), "plan: null is no attribute value; leave the field out");
    assert_eq!(refused(r#"{"ids": [1, 2]}"#), "ids: a list must hold strings only");
    assert_eq!(
        refused(r#"{"user.plan": "a", "user": {"plan": "b"}}"#),
        "user.plan: given twice (as a dotted name and as a nested field)"
    );
}

#[test]
fn a_rule_split_is_explained_with_the_bucket_cohort_core_computes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "checkout.yaml", CHECKOUT);
    let (outcome, results) = eval_json(
        std::slice::from_ref(&file),
        r#"{"targetingKey": "u-42", "country": "NZ"}"#,
        &["new-checkout"],
    );
    assert_eq!(outcome, Outcome::Done);

    // What the SDK says, straight from cohort-core.
    let checked = check(std::slice::from_ref(&file), FileFormat::Auto, &mut std::io::empty());
    let (_, config) = checked.compiled.unwrap();
    let ctx = Context::new("u-42").with("country", "NZ");
    let d = cohort_core::evaluate(&config, &ctx, "new-checkout");
    let b = bucket("nc-1", "u-42");
    let (range, variation) = if b < 3000 { ([0, 3000], "on") } else { ([3000, 10000], "off") };
    assert_eq!(d.variant, Some(variation));
    assert_eq!(d.reason, Reason::Split);
    assert_eq!(d.rule_id, Some("1"));

    let r = &results[0];
    assert_eq!(r["key"], "new-checkout");
    assert_eq!(r["kind"], "flag");
    assert_eq!(r["variant"], variation);
    assert_eq!(r["value"], variation == "on");
    assert_eq!(r["reason"], "SPLIT");
    assert_eq!(r["error_code"], Value::Null);
    assert_eq!(r["rule_id"], "1");
    assert_eq!(
        r["explanation"],
        json!([
            {"step": "rule", "index": 0, "id": "aussies", "matched": false},
            {"step": "rule", "index": 1, "id": "1", "matched": true},
            {"step": "split", "salt": "nc-1", "bucket": b, "range": range, "variation": variation},
        ])
    );

    // As text, with the first rule matching and no targeting key for nobody's split.
    let ctx = parse_context(r#"{"country": "AU"}"#).unwrap();
    let ran = run(Format::Table, |con| eval(std::slice::from_ref(&file), FileFormat::Auto, &ctx, &[], con));
    assert_eq!(ran.outcome, Outcome::Done);
    assert_eq!(
        ran.out,
        "flag new-checkout: true (variant on, TARGETING_MATCH)\n  rule 0 (aussies): matched\n  serves on\n\
         experiment price: no value (ERROR, TARGETING_KEY_MISSING)\n  cannot bucket the unit (TARGETING_KEY_MISSING)\n"
    );
    let ctx = parse_context(r#"{"country": "NZ"}"#).unwrap();
    let ran = run(Format::Table, |con| {
        eval(std::slice::from_ref(&file), FileFormat::Auto, &ctx, &["new-checkout".into()], con)
    });
    assert_eq!(
        ran.out,
        "flag new-checkout: no value (ERROR, TARGETING_KEY_MISSING)\n  rule 0 (aussies): did not match\n  \
         rule 1: matched\n  cannot bucket the unit (TARGETING_KEY_MISSING)\n"
    );
}

#[test]
fn an_experiment_is_explained_by_traffic_and_variant_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "checkout.yaml", CHECKOUT);
    let id = "6f1c1a43-3c51-4a57-9d77-1b0e6c3f2a11";
    // Find one unit allocated and one not, by cohort-core's hash.
    let units: Vec<String> = (0..200).map(|i| format!("u-{i}")).collect();
    let allocated = units.iter().find(|u| bucket(id, u) < 6000).unwrap();
    let left_out = units.iter().find(|u| bucket(id, u) >= 6000).unwrap();

    let (_, results) =
        eval_json(std::slice::from_ref(&file), &json!({"targetingKey": allocated}).to_string(), &["price"]);
    let (b, variant_b) = (bucket(id, allocated), bucket("price-1", allocated));
    let (range, variant) = if variant_b < 5000 { ([0, 5000], "control") } else { ([5000, 10000], "cheaper") };
    let r = &results[0];
    assert_eq!(r["kind"], "experiment");
    assert_eq!(r["variant"], variant);
    assert_eq!(r["enrolled"], true);
    assert_eq!(r["reason"], "SPLIT");
    assert_eq!(r["value"], if variant == "cheaper" { json!({"discount": 10}) } else { Value::Null });
    assert_eq!(
        r["explanation"],
        json!([
            {"step": "traffic", "bucket": b, "traffic_bp": 6000, "allocated": true},
            {"step": "variant", "bucket": variant_b, "range": range, "variant": variant},
        ])
    );

    let (_, results) = eval_json(&[file], &json!({"targetingKey": left_out}).to_string(), &["price"]);
    assert_eq!(results[0]["reason"], "DEFAULT");
    assert_eq!(results[0]["enrolled"], false);
    assert_eq!(
        results[0]["explanation"],
        json!([{"step": "traffic", "bucket": bucket(id, left_out), "traffic_bp": 6000, "allocated": false}])
    );
}

#[test]
fn layers_targeting_and_status_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
kind: experiment
key: hero
id: 0d5c3e0e-6a49-4e0f-8f64-61c1f8f6b7a2
status: running
targeting: {op: in, attribute: country, values: [NZ]}
variants: [{key: a, weight_bp: 5000}, {key: b, weight_bp: 5000}]
---
kind: experiment
key: later
variants: [{key: a, weight_bp: 5000}, {key: b, weight_bp: 5000}]
---
kind: layer
key: home
salt: home-1
experiments: [{experiment: hero, range: [0, 5000]}]
";
    let file = write(dir.path(), "home.yaml", text);
    let unit = (0..200).map(|i| format!("u-{i}")).find(|u| bucket("home-1", u) < 5000).unwrap();
    let ctx = json!({"targetingKey": unit, "country": "NZ"}).to_string();
    let (outcome, results) = eval_json(std::slice::from_ref(&file), &ctx, &[]);
    assert_eq!(outcome, Outcome::Done);
    let hero = &results[0];
    let steps = hero["explanation"].as_array().unwrap();
    assert_eq!(steps[0], json!({"step": "experiment_targeting", "matched": true}));
    assert_eq!(
        steps[1],
        json!({"step": "layer", "layer": "home", "bucket": bucket("home-1", &unit), "range": [0, 5000], "allocated": true})
    );
    assert_eq!(steps[2]["variant"], hero["variant"], "the explanation ends where cohort-core did");
    assert_eq!(results[1]["key"], "later");
    assert_eq!(results[1]["reason"], "DISABLED");
    assert_eq!(results[1]["explanation"], json!([{"step": "not_running", "status": "draft"}]));

    let ctx = json!({"targetingKey": unit, "country": "AU"}).to_string();
    let (_, results) = eval_json(&[file], &ctx, &["hero"]);
    assert_eq!(results[0]["reason"], "DEFAULT");
    assert_eq!(results[0]["explanation"], json!([{"step": "experiment_targeting", "matched": false}]));
}

#[test]
fn flagd_targeting_says_which_variant_it_returned() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bakery.flagd.json", FLAGD);
    let (_, results) = eval_json(
        std::slice::from_ref(&file),
        r#"{"targetingKey": "u-1", "email": "jo@crumb.example.net"}"#,
        &[],
    );
    let by_key = |key: &str| results.as_array().unwrap().iter().find(|r| r["key"] == key).unwrap().clone();
    assert_eq!(results.as_array().unwrap().len(), 2);
    let sourdough = by_key("sourdough-beta");
    assert_eq!(sourdough["variant"], "yes");
    assert_eq!(sourdough["reason"], "TARGETING_MATCH");
    assert_eq!(sourdough["explanation"], json!([{"step": "targeting", "variant": "yes"}]));
    let oven = by_key("night-oven");
    assert_eq!(oven["reason"], "DISABLED");
    // flagd's disabled flags serve nothing: the caller's default.
    assert_eq!(oven["variant"], Value::Null);
    assert_eq!(oven["explanation"], json!([{"step": "disabled", "off_variation": null}]));

    let (_, results) = eval_json(&[file], r#"{"email": "jo@example.net"}"#, &["sourdough-beta"]);
    assert_eq!(results[0]["variant"], "no");
    assert_eq!(results[0]["reason"], "DEFAULT");
    assert_eq!(
        results[0]["explanation"],
        json!([{"step": "targeting", "variant": null}, {"step": "default"}, {"step": "serve", "variation": "no"}])
    );
}

#[test]
fn a_rule_whose_id_repeats_another_rules_index_is_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    // Rule 1's explicit id "0" is rule 0's implicit one.
    let text = "\
kind: flag
key: banner
type: string
variations: [{key: red, value: red}, {key: blue, value: blue}]
rules:
  - condition: {op: in, attribute: country, values: [AU]}
    serve: {variation: red}
  - id: '0'
    condition: {op: in, attribute: country, values: [NZ]}
    serve: {variation: blue}
default: {variation: red}
";
    let file = write(dir.path(), "banner.yaml", text);
    let (_, results) = eval_json(&[file], r#"{"country": "NZ"}"#, &[]);
    assert_eq!(results[0]["variant"], "blue");
    assert_eq!(
        results[0]["explanation"],
        json!([
            {"step": "rule", "index": 0, "id": "0", "matched": false},
            {"step": "rule", "index": 1, "id": "0", "matched": true},
            {"step": "serve", "variation": "blue"},
        ])
    );
}

#[test]
fn the_explanation_agrees_with_cohort_core_for_many_units() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "checkout.yaml", CHECKOUT);
    let checked = check(&[file], FileFormat::Auto, &mut std::io::empty());
    let (defs, config) = checked.compiled.unwrap();
    for i in 0..300 {
        let ctx = Context::new(format!("unit-{i}")).with("country", "NZ");
        for r in super::evaluate_keys(&defs, &config, &ctx, &[], &checked.stand_in_ids) {
            let last = r.explanation.last().unwrap();
            let explained = match last {
                Step::Split { variation, .. } => Some(variation.clone()),
                Step::Variant { variant, .. } => Some(variant.clone()),
                Step::Traffic { allocated: false, .. } => None,
                other => panic!("{other:?}"),
            };
            assert_eq!(explained, r.variant, "{}: {:?}", r.key, r.explanation);
        }
    }
}

#[test]
fn eval_fails_on_invalid_files_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let bad = CHECKOUT.replace("salt: nc-1\n", "");
    let file = write(dir.path(), "bad.yaml", &bad);
    let ctx = Context::new("u-1");
    let ran = run(Format::Table, |con| eval(&[file], FileFormat::Auto, &ctx, &[], con));
    assert_eq!(ran.outcome, Outcome::Failed);
    assert_eq!(ran.out, "");
    assert!(
        ran.err.contains("flag new-checkout: salt: a flag that serves a split needs a salt"),
        "{}",
        ran.err
    );
    assert!(ran.err.ends_with("1 problem: nothing evaluated (`cohortctl validate` checks files)\n"));

    let file = write(dir.path(), "good.yaml", CHECKOUT);
    let ran = run(Format::Table, |con| eval(&[file], FileFormat::Auto, &ctx, &["nope".into()], con));
    assert_eq!(ran.outcome, Outcome::Failed);
    assert_eq!(
        ran.out,
        "nope: no value (ERROR, FLAG_NOT_FOUND)\n  no flag or experiment has this key in the files\n"
    );
}
