//! Context limits for JSON contexts match the wire conversion's.

use cohort_proto::common::v1 as common;

use super::*;

#[test]
fn json_contexts_are_held_to_the_wire_limits() {
    let ok = Context::new("user-1").with("country", "NZ").with("age", 42).with("tags", vec!["a", "b"]);
    assert!(check_context(&ok).is_ok());

    let long_key = Context::new("u".repeat(cohort_core::hash::MAX_UNIT_BYTES + 1));
    assert_eq!(check_context(&long_key).unwrap_err().field, "targeting_key");

    let long_value = Context::new("u").with("bio", "x".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1));
    let e = check_context(&long_value).unwrap_err().at("context");
    assert_eq!(e.field, "context.attributes[\"bio\"]");

    let empty_name = Context::new("u").with("", "x");
    assert_eq!(check_context(&empty_name).unwrap_err().field, "attributes[\"\"]");

    // The protobuf path names the same field for the same fault.
    let wire = common::EvaluationContext {
        targeting_key: "u".into(),
        attributes: [(
            "bio".to_owned(),
            common::AttributeValue {
                kind: Some(common::attribute_value::Kind::StringValue(
                    "x".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1),
                )),
            },
        )]
        .into(),
    };
    assert_eq!(Context::try_from(wire).unwrap_err().at("context").field, e.field);
}

#[test]
fn an_unset_wire_context_is_anonymous() {
    assert_eq!(wire_context(None).unwrap(), Context::anonymous());
}
