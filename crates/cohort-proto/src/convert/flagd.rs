//! flagd's wire types ↔ core: the evaluation context, which flagd's providers send as a
//! `google.protobuf.Struct`, into a [`Context`]; and JSON values out as protobuf `Value`s.
//!
//! The context rule: `targetingKey` is the unit; strings,
//! numbers, booleans and lists of strings are attributes; nested objects flatten to dotted
//! names (`{"user": {"plan": "pro"}}` is `user.plan`). Anything else (a null, a list holding
//! anything but strings), and anything beyond the limits of [`super`], is an error naming the
//! field by its dotted path; but `targetingKey: null` is no targeting key, as the Python
//! provider sends it for a context without one.

/// The protobuf JSON types flagd's messages carry.
pub use super::structured::{Kind, ListValue, Struct, Value, json_object, json_value};
use cohort_core::hash::MAX_UNIT_BYTES;
use cohort_core::{AttrValue, Context};

use super::{MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_LIST_ELEMENTS};
use crate::ProtoError;

/// The context field that names the unit (OpenFeature's targeting key).
pub const TARGETING_KEY: &str = "targetingKey";

/// The [`Context`] of a flagd request's `context`; unset is the anonymous context. Errors name
/// the field relative to the context (`user.plan`, `tags[2]`).
pub fn context(ctx: Option<Struct>) -> Result<Context, ProtoError> {
    let mut out = Context::anonymous();
    let Some(ctx) = ctx else { return Ok(out) };
    for (name, value) in ctx.fields {
        if name == TARGETING_KEY {
            out.targeting_key = targeting_key(value)?;
        } else {
            flatten(&mut out, name, value)?;
        }
    }
    Ok(out)
}

fn targeting_key(value: Value) -> Result<Option<String>, ProtoError> {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Ok(None),
        Some(Kind::StringValue(key)) if key.len() > MAX_UNIT_BYTES => Err(ProtoError::new(
            TARGETING_KEY,
            format!("is {} bytes, at most {MAX_UNIT_BYTES} allowed", key.len()),
        )),
        Some(Kind::StringValue(key)) => Ok(Some(key)),
        Some(other) => {
            Err(ProtoError::new(TARGETING_KEY, format!("must be a string, not {}", kind_name(&other))))
        }
    }
}

/// Adds `value` as attribute `name`, or each field of an object under `name.`.
fn flatten(out: &mut Context, name: String, value: Value) -> Result<(), ProtoError> {
    if name.is_empty() || name.ends_with('.') || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
        // Quoted: the name may be empty.
        let message = format!("a name must be 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes");
        return Err(ProtoError::new(format!("{name:?}"), message));
    }
    let long = |s: &str| s.len() > MAX_ATTRIBUTE_VALUE_BYTES;
    let too_long =
        |s: &str| format!("a string of {} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES} allowed", s.len());
    let attr = match value.kind {
        None => return Err(ProtoError::new(name, "no value is set")),
        Some(Kind::NullValue(_)) => {
            return Err(ProtoError::new(name, "null is no attribute value; leave the field out"));
        }
        Some(Kind::StructValue(object)) => {
            for (field, value) in object.fields {
                // An empty field name would make `user.` (or a clash with `user`).
                let nested = if field.is_empty() { format!("{name}.") } else { format!("{name}.{field}") };
                flatten(out, nested, value)?;
            }
            return Ok(());
        }
        Some(Kind::StringValue(s)) if long(&s) => return Err(ProtoError::new(name, too_long(&s))),
        Some(Kind::StringValue(s)) => AttrValue::String(s),
        Some(Kind::NumberValue(n)) if !n.is_finite() => {
            return Err(ProtoError::new(name, format!("{n} is not a finite number")));
        }
        Some(Kind::NumberValue(n)) => AttrValue::Number(n),
        Some(Kind::BoolValue(b)) => AttrValue::Bool(b),
        Some(Kind::ListValue(list)) => AttrValue::StringList(string_list(&name, list)?),
    };
    if out.attributes.len() >= MAX_ATTRIBUTES {
        return Err(ProtoError::new("", format!("more than {MAX_ATTRIBUTES} attributes")));
    }
    if out.attributes.contains_key(&name) {
        return Err(ProtoError::new(name, "given twice (as a dotted name and as a nested field)"));
    }
    out.attributes.insert(name, attr);
    Ok(())
}

fn string_list(name: &str, list: ListValue) -> Result<Vec<String>, ProtoError> {
    if list.values.len() > MAX_LIST_ELEMENTS {
        return Err(ProtoError::new(
            name,
            format!("{} elements, at most {MAX_LIST_ELEMENTS} allowed", list.values.len()),
        ));
    }
    list.values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v.kind {
            Some(Kind::StringValue(s)) if s.len() > MAX_ATTRIBUTE_VALUE_BYTES => Err(ProtoError::new(
                format!("{name}[{i}]"),
                format!("a string of {} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES} allowed", s.len()),
            )),
            Some(Kind::StringValue(s)) => Ok(s),
            other => Err(ProtoError::new(
                format!("{name}[{i}]"),
                format!(
                    "a list attribute holds strings only, not {}",
                    other.as_ref().map_or("an unset value", kind_name)
                ),
            )),
        })
        .collect()
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::NullValue(_) => "null",
        Kind::NumberValue(_) => "a number",
        Kind::StringValue(_) => "a string",
        Kind::BoolValue(_) => "a boolean",
        Kind::StructValue(_) => "an object",
        Kind::ListValue(_) => "a list",
    }
}

#[cfg(test)]
mod tests;
