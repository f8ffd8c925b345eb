//! Importing flagd files (shape errors with paths, types inferred, evaluators carried) and
//! exporting them back as they were written.

use serde_json::{Value, json};

use super::*;
use crate::model::Definitions;
use crate::{Context, Reason, compile, evaluate};

fn file() -> Value {
    json!({
        "$schema": SCHEMA,
        "metadata": {"flagSetId": "shop", "version": "4"},
        "$evaluators": {
            "staff": {"ends_with": [{"var": "email"}, "@example.com"]},
            "staff-in-nz": {"and": [{"$ref": "staff"}, {"==": [{"var": "country"}, "NZ"]}]},
            "unused": {"==": [1, 1]}
        },
        "flags": {
            "new-welcome": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "staff-in-nz"}, "on", "off"]},
                "metadata": {"version": "17"}
            },
            "colour": {
                "state": "DISABLED",
                "variants": {"red": "#c05543", "green": "#2f5230"},
                "defaultVariant": null
            }
        }
    })
}

#[test]
fn imports_flags_with_types_evaluators_and_metadata() {
    assert!(is_flagd_file(&file()));
    assert!(!is_flagd_file(&json!({"flags": []})));
    let flags = import(&file()).unwrap();
    let welcome = flags.iter().find(|f| f.key == "new-welcome").unwrap();
    assert_eq!(welcome.flag_type, FlagType::Boolean);
    assert!(welcome.enabled);
    assert_eq!(welcome.default, Some(Serve::Variation("off".into())));
    // Only what the targeting reaches, transitively.
    assert_eq!(welcome.evaluators.keys().collect::<Vec<_>>(), ["staff", "staff-in-nz"]);
    assert_eq!(welcome.flag_set_metadata["flagSetId"], "shop");
    let colour = flags.iter().find(|f| f.key == "colour").unwrap();
    assert_eq!(colour.flag_type, FlagType::String);
    assert!(!colour.enabled && colour.default.is_none() && colour.evaluators.is_empty());

    let config = compile(&Definitions { flags, ..Definitions::default() }).unwrap();
    let staff = Context::new("u").with("email", "a@example.com").with("country", "NZ");
    let d = evaluate(&config, &staff, "new-welcome");
    assert_eq!((d.variant, d.reason), (Some("on"), Reason::TargetingMatch));
    // Flag metadata over the flag set's.
    let m = d.metadata.unwrap();
    assert_eq!((m["version"].as_str(), m["flagSetId"].as_str()), (Some("17"), Some("shop")));
    let d = evaluate(&config, &staff, "colour");
    assert_eq!((d.variant, d.value, d.reason), (None, None, Reason::Disabled));
}

#[test]
fn shape_errors_name_the_field() {
    let bad = json!({
        "flags": {
            "a": {"state": "ON", "variants": {"x": 1}},
            "b": {"state": "ENABLED", "variants": {"on": true, "off": "false"}},
            "c": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": 3, "colour": 1},
            "d": {"variants": {}},
            "e": 7
        },
        "extra": true
    });
    let errors: Vec<String> = import(&bad).unwrap_err().iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "\"extra\": unknown property of a flagd file (expected flags, $evaluators, metadata, $schema)",
            "flags[\"a\"].state: \"ON\" is not ENABLED or DISABLED",
            "flags[\"b\"].variants[\"on\"]: true is a boolean, but variant \"off\" is a string; every variant of a flag has one type",
            "flags[\"c\"].colour: unknown property of a flag (expected state, variants, defaultVariant, targeting, metadata)",
            "flags[\"c\"].defaultVariant: 3 is not a variant name or null",
            "flags[\"d\"].state: a flag needs a state: ENABLED or DISABLED",
            "flags[\"d\"].variants: a flag needs at least one variant",
            "flags[\"e\"]: a number is not a flag object",
        ]
    );
}

#[test]
fn exports_back_what_was_imported() {
    let flags = import(&file()).unwrap();
    let exported = export(&flags).unwrap();
    let mut expected = file();
    // Unused evaluators are not kept; a missing default variant is written null.
    expected["$evaluators"].as_object_mut().unwrap().remove("unused");
    assert_eq!(exported, expected);
    // Round trip.
    assert_eq!(import(&exported).unwrap(), flags);
}

#[test]
fn export_skips_cohort_only_flags_and_reports_clashing_evaluators() {
    let mut flags = import(&file()).unwrap();
    let mut cohort_flag = flags[0].clone();
    cohort_flag.key = "cohort-only".into();
    cohort_flag.off_variation = Some("off".into());
    flags.push(cohort_flag);
    let doc = export(&flags).unwrap();
    assert!(doc["flags"].get("cohort-only").is_none());

    let mut other = import(&file()).unwrap().remove(1);
    other.key = "other".into();
    other.evaluators.insert("staff".into(), json!({"==": [1, 2]}));
    other.targeting = Some(json!({"$ref": "staff"}));
    flags.push(other);
    assert_eq!(
        export(&flags).unwrap_err(),
        ["flags \"colour\" and \"other\" define evaluator \"staff\" differently; a flagd file has one"
            .to_owned()]
        .iter()
        .map(|s| s.replace("colour", "new-welcome"))
        .collect::<Vec<_>>()
    );
}

#[test]
fn flag_set_metadata_moves_into_flags_when_sets_differ() {
    let mut flags = import(&file()).unwrap();
    flags[0].flag_set_metadata.insert("flagSetId".into(), json!("other"));
    let doc = export(&flags).unwrap();
    assert!(doc.get("metadata").is_none());
    assert_eq!(doc["flags"]["colour"]["metadata"], json!({"flagSetId": "other", "version": "4"}));
    assert_eq!(doc["flags"]["new-welcome"]["metadata"], json!({"flagSetId": "shop", "version": "17"}));
}
