//! Typed resolution: defaults on error, on a missing value and on a type mismatch.

use cohort_core::{Context, Definitions, ErrorCode, Reason, compile, evaluate};
use serde_json::{Value, json};

use super::{Assignment, Details};

fn config() -> cohort_core::CompiledConfig {
    let defs: Definitions = serde_json::from_value(json!({
        "flags": [{
            "key": "b", "type": "boolean", "salt": "s",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "off_variation": "off", "default": {"variation": "on"},
        }],
        "experiments": [{
            "id": "00000000-0000-4000-8000-000000000001", "key": "e", "status": "paused",
            "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 5000}],
        }],
    }))
    .unwrap();
    compile(&defs).unwrap()
}

#[test]
fn value_of_the_right_type() {
    let c = config();
    let d = evaluate(&c, &Context::new("u"), "b");
    let det = Details::resolve(&d, false, "bool", Value::as_bool, 3);
    assert_eq!(
        (det.value, det.variant.as_deref(), det.reason, det.error),
        (true, Some("on"), Reason::Static, None)
    );
    assert_eq!(det.config_version, 3);
}

#[test]
fn type_mismatch_serves_the_default() {
    let c = config();
    let d = evaluate(&c, &Context::new("u"), "b");
    let det = Details::resolve(&d, "dflt", "string", Value::as_str, 0);
    assert_eq!(det.value, "dflt");
    assert_eq!(det.reason, Reason::Error);
    assert_eq!(det.error, Some(ErrorCode::TypeMismatch));
    assert!(det.error_message.unwrap().contains("not a string"));
}

#[test]
fn not_found_serves_the_default() {
    let c = config();
    let d = evaluate(&c, &Context::new("u"), "missing");
    let det = Details::resolve(&d, 1.5, "number", Value::as_f64, 0);
    assert_eq!((det.value, det.error), (1.5, Some(ErrorCode::FlagNotFound)));
}

#[test]
fn no_value_serves_the_default_without_error() {
    let c = config();
    let d = evaluate(&c, &Context::new("u"), "e");
    let det = Details::resolve(&d, false, "bool", Value::as_bool, 0);
    assert_eq!((det.value, det.reason, det.error), (false, Reason::Disabled, None));
}

#[test]
fn assignment_of_a_flag_is_a_type_mismatch() {
    let c = config();
    let a = Assignment::new(&evaluate(&c, &Context::new("u"), "b"), 0);
    assert!(!a.enrolled);
    assert_eq!(a.error, Some(ErrorCode::TypeMismatch));
    assert_eq!(a.variant_or("control"), "control");
}
