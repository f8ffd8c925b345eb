//! flagd's flag-definition files (flagd.dev/reference/flag-definitions; the JSON schema at
//! flagd.dev/schema/v0/flags.json) to and from Cohort's flag definitions.
//!
//! A flagd flag becomes a [`FlagDef`] with JSONLogic `targeting`, the `$evaluators` it refers to,
//! its metadata and its flag set's, so it compiles, evaluates and exports like it was written.
//! Only the file's shape is checked here; [`crate::compile`] checks the rest.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::compile::ConfigError;
use crate::model::{FlagDef, FlagType, Serve, Variation};

/// The schema flagd files name in `$schema`.
pub const SCHEMA: &str = "https://flagd.dev/schema/v0/flags.json";

/// Whether a document is a flagd file: its `flags` is an object of flags by key (Cohort's
/// definitions hold a list).
pub fn is_flagd_file(doc: &Value) -> bool {
    doc.get("flags").is_some_and(Value::is_object)
}

/// The flags of a flagd file, or every problem with its shape, each with the path of the
/// field at fault (`flags["new-welcome"].state`).
pub fn import(doc: &Value) -> Result<Vec<FlagDef>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(ConfigError { path, message });
    let Some(top) = doc.as_object() else {
        err(".".into(), "a flagd file is a JSON object with `flags`".into());
        return Err(errors);
    };
    for key in top.keys() {
        if !matches!(key.as_str(), "$schema" | "flags" | "$evaluators" | "metadata") {
            err(
                format!("{key:?}"),
                "unknown property of a flagd file (expected flags, $evaluators, metadata, $schema)".into(),
            );
        }
    }
    let empty = Map::new();
    let evaluators = match top.get("$evaluators") {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            err("$evaluators".into(), format!("{} is not an object of evaluators by name", kind(other)));
            &empty
        }
    };
    let set_metadata = match top.get("metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            err("metadata".into(), format!("{} is not an object", kind(other)));
            Map::new()
        }
    };
    let flags = match top.get("flags") {
        Some(Value::Object(f)) => f,
        Some(other) => {
            err("flags".into(), format!("{} is not an object of flags by key", kind(other)));
            return Err(errors);
        }
        None => {
            err("flags".into(), "a flagd file needs `flags`".into());
            return Err(errors);
        }
    };
    let mut out = Vec::with_capacity(flags.len());
    for (key, flag) in flags {
        let path = format!("flags[{key:?}]");
        let Some(f) = flag.as_object() else {
            err(path, format!("{} is not a flag object", kind(flag)));
            continue;
        };
        for field in f.keys() {
            if !matches!(field.as_str(), "state" | "variants" | "defaultVariant" | "targeting" | "metadata") {
                err(
                    format!("{path}.{field}"),
                    "unknown property of a flag (expected state, variants, defaultVariant, targeting, metadata)"
                        .into(),
                );
            }
        }
        let enabled = match f.get("state") {
            Some(Value::String(s)) if s == "ENABLED" => true,
            Some(Value::String(s)) if s == "DISABLED" => false,
            Some(other) => {
                err(format!("{path}.state"), format!("{other} is not ENABLED or DISABLED"));
                true
            }
            None => {
                err(format!("{path}.state"), "a flag needs a state: ENABLED or DISABLED".into());
                true
            }
        };
        let variants = match f.get("variants") {
            Some(Value::Object(v)) if !v.is_empty() => v,
            Some(Value::Object(_)) => {
                err(format!("{path}.variants"), "a flag needs at least one variant".into());
                continue;
            }
            Some(other) => {
                err(
                    format!("{path}.variants"),
                    format!("{} is not an object of variants by name", kind(other)),
                );
                continue;
            }
            None => {
                err(format!("{path}.variants"), "a flag needs variants".into());
                continue;
            }
        };
        let Some(flag_type) = infer_type(variants, &path, &mut err) else { continue };
        let default = match f.get("defaultVariant") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) => Some(Serve::Variation(v.clone())),
            Some(other) => {
                err(format!("{path}.defaultVariant"), format!("{other} is not a variant name or null"));
                continue;
            }
        };
        let metadata = match f.get("metadata") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                err(format!("{path}.metadata"), format!("{} is not an object", kind(other)));
                continue;
            }
        };
        let targeting = f.get("targeting").cloned();
        let mut used = BTreeMap::new();
        if let Some(t) = &targeting {
            referenced(t, evaluators, &mut used);
        }
        out.push(FlagDef {
            key: key.clone(),
            flag_type,
            salt: String::new(),
            enabled,
            description: String::new(),
            variations: variants
                .iter()
                .map(|(k, v)| Variation { key: k.clone(), value: v.clone() })
                .collect(),
            off_variation: None,
            rules: Vec::new(),
            default,
            targeting,
            evaluators: used,
            metadata,
            flag_set_metadata: set_metadata.clone(),
            experiment: None,
        });
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Every variant of a flag has one type, which is the flag's.
fn infer_type(
    variants: &Map<String, Value>,
    path: &str,
    err: &mut impl FnMut(String, String),
) -> Option<FlagType> {
    let type_of = |v: &Value| match v {
        Value::Bool(_) => Some(FlagType::Boolean),
        Value::String(_) => Some(FlagType::String),
        Value::Number(_) => Some(FlagType::Number),
        Value::Object(_) | Value::Array(_) => Some(FlagType::Json),
        Value::Null => None,
    };
    let mut first: Option<(&str, FlagType)> = None;
    let mut ok = true;
    for (name, value) in variants {
        let Some(t) = type_of(value) else {
            err(format!("{path}.variants[{name:?}]"), "null is not a variant value".into());
            ok = false;
            continue;
        };
        match first {
            None => first = Some((name, t)),
            Some((other, ft)) if ft != t => {
                err(
                    format!("{path}.variants[{name:?}]"),
                    format!(
                        "{value} is {}, but variant {other:?} is {}; every variant of a flag has one type",
                        article(t),
                        article(ft)
                    ),
                );
                ok = false;
            }
            Some(_) => {}
        }
    }
    if ok { first.map(|(_, t)| t) } else { None }
}

fn article(t: FlagType) -> &'static str {
    match t {
        FlagType::Boolean => "a boolean",
        FlagType::String => "a string",
        FlagType::Number => "a number",
        FlagType::Json => "an object",
    }
}

/// The evaluators `logic` refers to, and those they refer to in turn.
fn referenced(logic: &Value, evaluators: &Map<String, Value>, out: &mut BTreeMap<String, Value>) {
    match logic {
        Value::Object(m) => {
            if m.len() == 1
                && let Some(Value::String(name)) = m.get("$ref")
            {
                if let Some(body) = evaluators.get(name)
                    && !out.contains_key(name)
                {
                    out.insert(name.clone(), body.clone());
                    referenced(body, evaluators, out);
                }
                return;
            }
            m.values().for_each(|v| referenced(v, evaluators, out));
        }
        Value::Array(items) => items.iter().for_each(|v| referenced(v, evaluators, out)),
        _ => {}
    }
}

/// Whether a flag can be written as a flagd flag: no Cohort rules, no off variation (a
/// disabled flagd flag serves nothing), and a fixed default or none.
pub fn exportable(f: &FlagDef) -> bool {
    f.rules.is_empty() && f.off_variation.is_none() && !matches!(f.default, Some(Serve::Split(_)))
}

/// A flagd file of the [`exportable`] flags among `flags`. The flag set's metadata goes at the
/// top when every flag shares it, else into each flag's own. Evaluators of one name must
/// agree; each disagreement is an error naming both flags.
pub fn export(flags: &[FlagDef]) -> Result<Value, Vec<String>> {
    let flags: Vec<&FlagDef> = flags.iter().filter(|f| exportable(f)).collect();
    let mut errors = Vec::new();
    let mut evaluators: BTreeMap<&str, (&Value, &str)> = BTreeMap::new();
    for f in &flags {
        for (name, body) in &f.evaluators {
            match evaluators.get(name.as_str()) {
                Some((other, owner)) if *other != body => errors.push(format!(
                    "flags {owner:?} and {:?} define evaluator {name:?} differently; a flagd file has one",
                    f.key
                )),
                Some(_) => {}
                None => {
                    evaluators.insert(name, (body, &f.key));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let shared = flags
        .first()
        .map(|f| &f.flag_set_metadata)
        .filter(|m| flags.iter().all(|f| f.flag_set_metadata == **m));
    let mut out = Map::new();
    for f in &flags {
        let mut flag = Map::new();
        flag.insert("state".into(), json!(if f.enabled { "ENABLED" } else { "DISABLED" }));
        let variants: Map<String, Value> =
            f.variations.iter().map(|v| (v.key.clone(), v.value.clone())).collect();
        flag.insert("variants".into(), Value::Object(variants));
        match &f.default {
            Some(Serve::Variation(v)) => flag.insert("defaultVariant".into(), json!(v)),
            _ => flag.insert("defaultVariant".into(), Value::Null),
        };
        if let Some(t) = &f.targeting {
            flag.insert("targeting".into(), t.clone());
        }
        let mut metadata = if shared.is_some() { Map::new() } else { f.flag_set_metadata.clone() };
        metadata.extend(f.metadata.clone());
        if !metadata.is_empty() {
            flag.insert("metadata".into(), Value::Object(metadata));
        }
        out.insert(f.key.clone(), Value::Object(flag));
    }
    let mut doc = Map::new();
    doc.insert("$schema".into(), json!(SCHEMA));
    doc.insert("flags".into(), Value::Object(out));
    if !evaluators.is_empty() {
        let e: Map<String, Value> =
            evaluators.into_iter().map(|(k, (v, _))| (k.to_owned(), v.clone())).collect();
        doc.insert("$evaluators".into(), Value::Object(e));
    }
    if let Some(m) = shared.filter(|m| !m.is_empty()) {
        doc.insert("metadata".into(), Value::Object(m.clone()));
    }
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests;
