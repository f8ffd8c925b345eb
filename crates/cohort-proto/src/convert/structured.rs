//! JSON ↔ `google.protobuf.Struct`, for the definitions and results the public APIs carry as
//! structured data. A Struct's numbers are doubles: a whole number within ±2^53 comes back as
//! a JSON integer (so `weight_bp: 5000` is still an integer to serde), anything else as a
//! float; NaN and infinities, which JSON cannot hold, are refused with the field's path.

/// The protobuf JSON types, for callers without prost-types.
pub use prost_types::value::Kind;
pub use prost_types::{ListValue, Struct, Value};

use crate::ProtoError;

/// Largest integer a double holds exactly (2^53).
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// A JSON value as a protobuf `Value` (numbers as doubles, as JSON has them).
pub fn json_value(value: &serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue { values: items.iter().map(json_value).collect() })
        }
        serde_json::Value::Object(object) => Kind::StructValue(json_object(object)),
    };
    Value { kind: Some(kind) }
}

/// A JSON object as a protobuf `Struct`.
pub fn json_object(object: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct { fields: object.iter().map(|(k, v)| (k.clone(), json_value(v))).collect() }
}

/// A JSON value that should be an object as a `Struct`; `None` for anything else (a stored
/// definition or result is always an object).
pub fn json_struct(value: &serde_json::Value) -> Option<Struct> {
    value.as_object().map(json_object)
}

/// JSON text as a `Struct`, for callers holding a definition as text; `None` unless the text
/// is a JSON object.
pub fn text_struct(text: &str) -> Option<Struct> {
    serde_json::from_str::<serde_json::Value>(text).ok().as_ref().and_then(json_struct)
}

/// An optional `Struct` (a message field) as JSON: null when unset.
pub fn to_json(s: Option<&Struct>) -> Result<serde_json::Value, ProtoError> {
    s.map_or(Ok(serde_json::Value::Null), |s| struct_json(s, "value"))
}

/// A `Struct` as a JSON object. `field` names the Struct in errors (`definition` gives
/// `definition.rules[0].weight`).
pub fn struct_json(s: &Struct, field: &str) -> Result<serde_json::Value, ProtoError> {
    let mut out = serde_json::Map::with_capacity(s.fields.len());
    for (name, value) in &s.fields {
        out.insert(name.clone(), value_json(value, &format!("{field}.{name}"))?);
    }
    Ok(serde_json::Value::Object(out))
}

/// A protobuf `Value` as JSON; `field` names it in errors.
pub fn value_json(value: &Value, field: &str) -> Result<serde_json::Value, ProtoError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => {
            number(*n).ok_or_else(|| ProtoError::new(field, "must be a finite number"))?
        }
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .iter()
                .enumerate()
                .map(|(i, v)| value_json(v, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => struct_json(s, field)?,
    })
}

fn number(n: f64) -> Option<serde_json::Value> {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT {
        // Exact: |n| ≤ 2^53 fits an i64 without rounding.
        #[allow(clippy::cast_possible_truncation)]
        return Some(serde_json::Value::from(n as i64));
    }
    serde_json::Number::from_f64(n).map(serde_json::Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_definition_round_trips_with_integers_kept_integers() {
        let def = json!({
            "key": "checkout", "weight_bp": 5000, "ratio": 0.25, "neg": -3, "big": 9_007_199_254_740_992_i64,
            "tags": ["a", 1, null, true, {"x": 1.5}], "nested": {"empty": {}}
        });
        let s = json_struct(&def).expect("an object");
        let back = struct_json(&s, "definition").expect("converts");
        assert_eq!(back, def);
        assert!(back["weight_bp"].is_i64(), "whole numbers come back as integers");
        assert!(back["ratio"].is_f64());
    }

    #[test]
    fn non_finite_numbers_are_refused_with_their_path() {
        let mut s = Struct::default();
        let list = Value {
            kind: Some(Kind::ListValue(ListValue {
                values: vec![Value { kind: Some(Kind::NumberValue(f64::NAN)) }],
            })),
        };
        s.fields.insert("rules".into(), list);
        let err = struct_json(&s, "definition").expect_err("NaN is not JSON");
        assert_eq!(err.field, "definition.rules[0]");
    }

    #[test]
    fn beyond_two_to_the_53_a_whole_number_is_a_float() {
        let v = value_json(&Value { kind: Some(Kind::NumberValue(1e300)) }, "x").expect("finite");
        assert!(v.is_f64());
    }

    #[test]
    fn only_objects_make_structs() {
        assert!(json_struct(&json!([1])).is_none());
        assert!(json_struct(&json!("s")).is_none());
    }
}
