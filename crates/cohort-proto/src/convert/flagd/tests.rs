//! flagd contexts: the Struct mapping and its errors, and JSON values out.

use cohort_core::{AttrValue, Context};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::json;

use super::{context, json_object, json_value};

fn v(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

fn s(text: &str) -> Value {
    v(Kind::StringValue(text.into()))
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    v(Kind::StructValue(strukt(fields)))
}

fn list(values: Vec<Value>) -> Value {
    v(Kind::ListValue(ListValue { values }))
}

fn strukt(fields: Vec<(&str, Value)>) -> Struct {
    Struct { fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}

/// The error of converting `fields`, as `field: message`.
fn error(fields: Vec<(&str, Value)>) -> String {
    context(Some(strukt(fields))).unwrap_err().to_string()
}

#[test]
fn the_targeting_key_is_the_unit_and_the_rest_typed_attributes() {
    let ctx = context(Some(strukt(vec![
        ("targetingKey", s("user-1")),
        ("country", s("NZ")),
        ("age", v(Kind::NumberValue(41.0))),
        ("beta", v(Kind::BoolValue(true))),
        ("groups", list(vec![s("a"), s("b")])),
    ])))
    .unwrap();
    let expected = Context::new("user-1")
        .with("country", "NZ")
        .with("age", 41)
        .with("beta", true)
        .with("groups", vec!["a", "b"]);
    assert_eq!(ctx, expected);
}

#[test]
fn nested_objects_flatten_to_dotted_names() {
    let ctx = context(Some(strukt(vec![(
        "user",
        object(vec![("plan", s("pro")), ("org", object(vec![("id", v(Kind::NumberValue(7.0)))]))]),
    )])))
    .unwrap();
    assert_eq!(ctx.attributes.get("user.plan"), Some(&AttrValue::String("pro".into())));
    assert_eq!(ctx.attributes.get("user.org.id"), Some(&AttrValue::Number(7.0)));
    assert_eq!(ctx.attributes.len(), 2);
    assert_eq!(ctx.targeting_key, None);
}

#[test]
fn a_null_targeting_key_is_none_and_an_unset_context_is_anonymous() {
    // The Python provider sends `targetingKey: null` for a context without one.
    let ctx = context(Some(strukt(vec![("targetingKey", v(Kind::NullValue(0)))]))).unwrap();
    assert_eq!(ctx, Context::anonymous());
    assert_eq!(context(None).unwrap(), Context::anonymous());
}

#[test]
fn anything_else_is_an_error_naming_the_field() {
    assert_eq!(
        error(vec![("targetingKey", v(Kind::NumberValue(1.0)))]),
        "targetingKey: must be a string, not a number"
    );
    assert_eq!(
        error(vec![("targetingKey", s(&"x".repeat(300)))]),
        "targetingKey: is 300 bytes, at most 256 allowed"
    );
    assert_eq!(
        error(vec![("user", object(vec![("tags", list(vec![s("a"), v(Kind::NumberValue(2.0))]))]))]),
        "user.tags[1]: a list attribute holds strings only, not a number"
    );
    assert_eq!(
        error(vec![("tags", list(vec![object(vec![])]))]),
        "tags[0]: a list attribute holds strings only, not an object"
    );
    assert_eq!(error(vec![("age", v(Kind::NumberValue(f64::NAN)))]), "age: NaN is not a finite number");
    assert_eq!(
        error(vec![("user", object(vec![("middle", v(Kind::NullValue(0)))]))]),
        "user.middle: null is no attribute value; leave the field out"
    );
    assert_eq!(error(vec![("plan", Value { kind: None })]), "plan: no value is set");
    assert_eq!(error(vec![("", s("x"))]), "\"\": a name must be 1 to 256 bytes");
    assert_eq!(error(vec![("user", object(vec![("", s("x"))]))]), "\"user.\": a name must be 1 to 256 bytes");
    assert_eq!(
        error(vec![("bio", s(&"x".repeat(5000)))]),
        "bio: a string of 5000 bytes, at most 4096 allowed"
    );
    // Two spellings of one name.
    let clash = error(vec![("user.plan", s("a")), ("user", object(vec![("plan", s("b"))]))]);
    assert_eq!(clash, "user.plan: given twice (as a dotted name and as a nested field)");
}

#[test]
fn the_attribute_limit_counts_flattened_names() {
    let fields: Vec<(String, Value)> = (0..=256).map(|i| (format!("a{i}"), s("x"))).collect();
    let nested = Struct { fields: fields.into_iter().collect() };
    let err = context(Some(strukt(vec![("user", v(Kind::StructValue(nested)))]))).unwrap_err();
    assert_eq!(err.message, "more than 256 attributes");
    // Placed under the caller's field, it names the context.
    assert_eq!(err.at("context").field, "context");
}

#[test]
fn json_values_become_protobuf_values() {
    let value = json!({"a": [1, "two", true, null], "b": {"c": 1.5}});
    let serde_json::Value::Object(map) = &value else { unreachable!() };
    let converted = json_object(map);
    assert_eq!(
        converted.fields["a"],
        list(vec![v(Kind::NumberValue(1.0)), s("two"), v(Kind::BoolValue(true)), v(Kind::NullValue(0))])
    );
    assert_eq!(converted.fields["b"], object(vec![("c", v(Kind::NumberValue(1.5)))]));
    assert_eq!(json_value(&json!("x")), s("x"));
}
