//! The scorecard over a result shaped as the analysis service writes it.

use serde_json::{Value, json};

use super::{CSV_HEADERS, csv_rows, looks_table, render};
use crate::console::csv;

fn result() -> Value {
    json!({
        "experiment_id": "0190b5a4-0000-7000-8000-000000000001",
        "experiment_key": "checkout-button",
        "computed_at_ms": 1_772_366_400_000_i64,
        "analysis": "sequential",
        "look": 2,
        "information_fraction": 0.5,
        "boundary": 2.963,
        "planned_units_per_variant": 4000,
        "units": {"control": 2000, "green": 2010},
        "excluded_units": 3,
        "srm": {"chi_square": 0.02, "p_value": 0.87, "detected": false},
        "metrics": [
            {
                "metric": "purchase", "event": "purchase", "aggregation": "conversion", "role": "primary",
                "variants": [
                    {"variant": "control", "n": 2000, "mean": 0.1},
                    {"variant": "green", "n": 2010, "mean": 0.125}
                ],
                "comparisons": [{
                    "variant": "green", "abs_diff": 0.025, "rel_diff": 0.25, "p_value": 0.0123,
                    "interval": {"kind": "repeated", "level": 0.95, "look": 2, "rel": [0.051, 0.449]},
                    "crossed_at_look": 2
                }],
                "p_value_family": "primary metrics × treatments (1)"
            },
            {
                "metric": "errors, client", "event": "error", "aggregation": "count", "role": "guardrail",
                "variants": [
                    {"variant": "control", "n": 2000, "mean": 0.5},
                    {"variant": "green", "n": 2010, "mean": 0.75}
                ],
                "comparisons": [{
                    "variant": "green", "rel_diff": 0.5, "p_value": 0.001,
                    "interval": {"kind": "always_valid", "level": 0.95, "rel": [0.2, 0.8]},
                    "harmful": true
                }],
                "p_value_family": "guardrails",
                "guardrail": {"threshold": 0.1, "method": "cs", "harmful_variants": ["green"], "harm_detected": true}
            }
        ],
        "segments": [],
        "segment_comparisons": 0,
        "warnings": ["a \"quoted\" note"],
        "decided_at_look": 2,
        "paused_by_guardrail": "errors, client: green is harmful",
        "a_field_from_a_newer_service": {"ignored": true}
    })
}

#[test]
fn the_scorecard_shows_each_arm_with_lift_interval_and_significance() {
    let text = render(&result()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "experiment checkout-button, sequential   look 2   information 50%   boundary z ±2.96   SRM ok (p=0.87)"
    );
    assert_eq!(
        lines[1],
        "units: control 2000, green 2010; 3 excluded (saw more than one variant); planned 4000 per variant"
    );
    assert_eq!(lines[2], "computed 2026-03-01T12:00:00Z");
    let at = text.find("  purchase (primary, conversion)\n").expect("the primary metric's heading");
    let block: Vec<&str> = text[at..].lines().skip(1).take(3).collect();
    assert_eq!(
        block,
        [
            "  VARIANT  UNITS  CONVERSIONS   LIFT    REPEATED CI (REL.)  P       SIGNIFICANT",
            "  control  2000   10.00% (200)",
            "  green    2010   12.50% (251)  +25.0%  [+5.1%, +44.9%]     0.0123  yes (look 2)",
        ]
    );
    assert!(text.contains("  errors, client (guardrail, count)\n"), "{text}");
    assert!(text.contains("  green    2010   0.7500  +50.0%  [+20.0%, +80.0%]"), "{text}");
    assert!(text.contains("HARMFUL\n"), "{text}");
    assert!(text.contains("  guardrail: at most 10% worse, watched every cycle: HARM DETECTED\n"), "{text}");
    assert!(text.contains("\ndecided at look 2: a primary metric's interval excluded 0\n"), "{text}");
    assert!(text.contains("\npaused: errors, client: green is harmful\n"), "{text}");
    assert!(text.ends_with("note: a \"quoted\" note\n"), "{text}");
}

#[test]
fn a_result_before_any_exposure_still_renders() {
    let text = render(&json!({"experiment_key": "new", "look": 0, "srm": {"detected": false}})).unwrap();
    assert_eq!(text, "experiment new   look 0   information 0%   boundary z —   SRM —\nunits: none yet\n");
    assert!(render(&json!({"look": "two"})).unwrap_err().contains("cannot read"));
}

#[test]
fn looks_are_one_row_each_with_the_primary_lifts() {
    let mut first = result();
    first["look"] = json!(1);
    first["decided_at_look"] = Value::Null;
    let text = looks_table(&[result(), first]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("LOOK  COMPUTED"), "{text}");
    assert!(
        lines[1].starts_with("2     2026-03-01T12:00:00Z  50%          4010   ok (p=0.87)  at look 2"),
        "{text}"
    );
    assert!(lines[1].ends_with("purchase green +25.0% [+5.1%, +44.9%]"), "{text}");
    assert!(lines[2].contains("  no  "), "{text}");
}

#[test]
fn csv_has_a_row_per_arm_and_metric_quoted_where_needed() {
    let rows = csv_rows(&result()).unwrap();
    assert_eq!(rows.len(), 4);
    let text = csv(&CSV_HEADERS, &rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "experiment,look,computed_at,metric,role,aggregation,variant,units,mean,lift,interval,interval_low,interval_high,p_value,significant"
    );
    assert_eq!(
        lines[1],
        "checkout-button,2,2026-03-01T12:00:00Z,purchase,primary,conversion,control,2000,0.1,,,,,,"
    );
    assert_eq!(
        lines[2],
        "checkout-button,2,2026-03-01T12:00:00Z,purchase,primary,conversion,green,2010,0.125,0.25,repeated,0.051,0.449,0.0123,yes (look 2)"
    );
    // A metric name with a comma is quoted.
    assert!(
        lines[4].starts_with("checkout-button,2,2026-03-01T12:00:00Z,\"errors, client\",guardrail,"),
        "{text}"
    );
    assert!(lines[4].ends_with(",HARMFUL"), "{text}");
}
