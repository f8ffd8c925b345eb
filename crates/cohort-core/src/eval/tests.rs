//! Typed access to decisions.

use serde_json::json;

use crate::model::Definitions;
use crate::{Context, ErrorCode, Reason, compile, evaluate, evaluate_all};

fn config() -> crate::CompiledConfig {
    let defs: Definitions = serde_json::from_value(json!({
        "flags": [{
            "key": "limit", "type": "number", "salt": "s",
            "variations": [{"key": "low", "value": 5}], "off_variation": "low", "default": {"variation": "low"},
        }],
        "experiments": [{
            "id": "00000000-0000-4000-8000-000000000001", "key": "exp", "status": "running",
            "variants": [{"key": "a", "weight_bp": 10000, "payload": {"x": 1}}, {"key": "b", "weight_bp": 0}],
            "breakdown_attributes": ["country"],
        }],
    }))
    .unwrap();
    compile(&defs).unwrap()
}

#[test]
fn typed_values() {
    let config = config();
    let ctx = Context::new("u");
    let d = evaluate(&config, &ctx, "limit");
    assert_eq!(d.number_value(), Ok(5.0));
    assert_eq!(d.bool_value(), Err(ErrorCode::TypeMismatch));
    assert_eq!(d.string_value(), Err(ErrorCode::TypeMismatch));
    assert_eq!(d.value_json, Some("5"));
    assert_eq!(evaluate(&config, &ctx, "missing").bool_value(), Err(ErrorCode::FlagNotFound));
}

#[test]
fn experiment_decisions_carry_the_experiment() {
    let config = config();
    let d = evaluate(&config, &Context::new("u"), "exp");
    assert!(d.enrolled);
    assert_eq!(d.reason, Reason::Split);
    assert_eq!(d.json_value(), Ok(&json!({"x": 1})));
    let exp = d.experiment.unwrap();
    assert_eq!(exp.breakdown_attributes(), ["country"]);
    assert_eq!(exp.id().to_string(), "00000000-0000-4000-8000-000000000001");
}

#[test]
fn a_zero_weight_variant_is_never_served() {
    let config = config();
    for i in 0..2000 {
        assert_eq!(evaluate(&config, &Context::new(format!("u{i}")), "exp").variant, Some("a"));
    }
}

#[test]
fn evaluate_all_covers_every_key() {
    let config = config();
    let all = evaluate_all(&config, &Context::new("u"));
    let keys: Vec<&str> = all.iter().map(|d| d.key).collect();
    assert_eq!(keys, ["limit", "exp"]);
}
