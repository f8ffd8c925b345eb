//! Wire ↔ core conversions: round trips, and bad input named by field.

use std::collections::HashMap;

use cohort_core::{AttrValue, Context, Definitions, compile, evaluate};
use serde_json::json;

use super::*;

fn attr(kind: pb::attribute_value::Kind) -> pb::AttributeValue {
    pb::AttributeValue { kind: Some(kind) }
}

#[test]
fn context_round_trips() {
    let ctx = Context::new("user-1")
        .with("country", "NZ")
        .with("age", 41)
        .with("beta", true)
        .with("groups", vec!["a", "b"]);
    let wire = pb::EvaluationContext::from(&ctx);
    assert_eq!(Context::try_from(wire).unwrap(), ctx);
}

#[test]
fn an_empty_targeting_key_is_absent() {
    let ctx = Context::try_from(pb::EvaluationContext::default()).unwrap();
    assert_eq!(ctx.targeting_key, None);
}

#[test]
fn bad_contexts_name_the_field() {
    use pb::attribute_value::Kind;
    let bad = |attributes: HashMap<String, pb::AttributeValue>| {
        Context::try_from(pb::EvaluationContext { targeting_key: "u".into(), attributes })
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        bad(HashMap::from([("age".into(), pb::AttributeValue { kind: None })])),
        "attributes[\"age\"]: no value is set"
    );
    assert_eq!(
        bad(HashMap::from([("score".into(), attr(Kind::NumberValue(f64::NAN)))])),
        "attributes[\"score\"]: NaN is not a finite number"
    );
    assert_eq!(
        bad(HashMap::from([("".into(), attr(Kind::BoolValue(true)))])),
        "attributes[\"\"]: a name must be 1 to 256 bytes"
    );
    let too_many = (0..=MAX_ATTRIBUTES).map(|i| (format!("a{i}"), attr(Kind::BoolValue(true)))).collect();
    assert_eq!(bad(too_many), "attributes: 257 attributes, at most 256 allowed");
    let long_key = pb::EvaluationContext { targeting_key: "k".repeat(257), attributes: HashMap::new() };
    let err = Context::try_from(long_key).unwrap_err().at("contexts[3]");
    assert_eq!(err.to_string(), "contexts[3].targeting_key: is 257 bytes, at most 256 allowed");
}

#[test]
fn decisions_encode_values_by_json_type() {
    let defs: Definitions = serde_json::from_value(json!({
        "flags": [{
            "key": "theme", "type": "json", "salt": "t",
            "variations": [{"key": "dark", "value": {"bg": "#000"}}], "off_variation": "dark",
            "default": {"variation": "dark"},
        }],
        "experiments": [{
            "id": "00000000-0000-4000-8000-000000000001", "key": "exp", "status": "running",
            "variants": [{"key": "a", "weight_bp": 10000}, {"key": "b", "weight_bp": 0}],
        }],
    }))
    .unwrap();
    let config = compile(&defs).unwrap();
    let ctx = Context::new("u").with("x", AttrValue::Bool(true));

    let flag = pb::Decision::from(&evaluate(&config, &ctx, "theme"));
    assert_eq!(flag.value, Some(pb::decision::Value::JsonValue("{\"bg\":\"#000\"}".into())));
    assert_eq!(decision_value(&flag).unwrap(), json!({"bg": "#000"}));
    assert_eq!(flag.reason(), pb::Reason::Static);
    assert_eq!(flag.kind(), pb::DecisionKind::Flag);

    let exp = pb::Decision::from(&evaluate(&config, &ctx, "exp"));
    assert_eq!((exp.variant.as_str(), exp.enrolled, exp.value.is_none()), ("a", true, true));
    assert_eq!(exp.experiment_id, "00000000-0000-4000-8000-000000000001");

    let missing = pb::Decision::from(&evaluate(&config, &ctx, "nope"));
    assert_eq!(missing.error_code(), pb::ErrorCode::FlagNotFound);
    assert_eq!(missing.kind(), pb::DecisionKind::Unspecified);
}

#[test]
fn entity_kinds_and_actions_round_trip_through_the_wire() {
    use cohort_core::model::{EntityKind, ExperimentAction};

    use crate::config::v1 as cpb;
    use crate::convert::{entity_kind, experiment_action};

    for kind in EntityKind::ALL {
        assert_eq!(entity_kind(cpb::EntityKind::from(kind) as i32), Some(kind));
    }
    for action in ExperimentAction::ALL {
        assert_eq!(experiment_action(cpb::ExperimentAction::from(action) as i32), Some(action));
    }
    assert_eq!(entity_kind(cpb::EntityKind::Unspecified as i32), None);
    assert_eq!(entity_kind(99), None);
    assert_eq!(experiment_action(cpb::ExperimentAction::Unspecified as i32), None);
}
