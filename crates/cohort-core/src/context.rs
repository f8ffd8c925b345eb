//! The evaluation context: who is asking (the targeting key) and their typed attributes.

use std::collections::HashMap;
use std::fmt;

use foldhash::fast::RandomState;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The attribute name that conditions use to refer to the targeting key itself.
pub const TARGETING_KEY_ATTRIBUTE: &str = "targeting_key";

/// A typed context attribute. Nested objects are not attributes: flatten them to names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    String(String),
    Number(f64),
    Bool(bool),
    StringList(Vec<String>),
}

impl AttrValue {
    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::String(_) => "string",
            AttrValue::Number(_) => "number",
            AttrValue::Bool(_) => "bool",
            AttrValue::StringList(_) => "list of strings",
        }
    }

    /// The value as a string breakdown key (results are broken down by these).
    pub fn to_breakdown_string(&self) -> String {
        match self {
            AttrValue::String(s) => s.clone(),
            AttrValue::Number(n) => n.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::StringList(l) => l.join(","),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::String(v.to_owned())
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::String(v)
    }
}
impl From<f64> for AttrValue {
    fn from(v: f64) -> Self {
        AttrValue::Number(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Number(v as f64)
    }
}
impl From<i32> for AttrValue {
    fn from(v: i32) -> Self {
        AttrValue::Number(f64::from(v))
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}
impl From<Vec<String>> for AttrValue {
    fn from(v: Vec<String>) -> Self {
        AttrValue::StringList(v)
    }
}
impl From<Vec<&str>> for AttrValue {
    fn from(v: Vec<&str>) -> Self {
        AttrValue::StringList(v.into_iter().map(str::to_owned).collect())
    }
}

impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttrVisitor;

        impl<'de> Visitor<'de> for AttrVisitor {
            type Value = AttrValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, bool or list of strings")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AttrValue, E> {
                Ok(AttrValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AttrValue, E> {
                Ok(AttrValue::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AttrValue, E> {
                Ok(AttrValue::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AttrValue, E> {
                Ok(AttrValue::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AttrValue, E> {
                Ok(AttrValue::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<AttrValue, E> {
                Ok(AttrValue::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttrValue, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(AttrValue::StringList(items))
            }
        }

        deserializer.deserialize_any(AttrVisitor)
    }
}

/// Context attributes by name. foldhash: attribute lookups are most of a condition's cost.
pub type Attributes = HashMap<String, AttrValue, RandomState>;

/// Who a decision is for. The targeting key is the randomization unit (usually a user id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting_key: Option<String>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub attributes: Attributes,
}

impl Context {
    /// A context for one unit with no attributes.
    pub fn new(targeting_key: impl Into<String>) -> Self {
        Context { targeting_key: Some(targeting_key.into()), attributes: Attributes::default() }
    }

    /// A context with no targeting key (for flags that need none).
    pub fn anonymous() -> Self {
        Context::default()
    }

    /// Adds or replaces an attribute.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<AttrValue>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Sets an attribute in place.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<AttrValue>) {
        self.attributes.insert(name.into(), value.into());
    }

    /// The targeting key when it is present and non-empty.
    pub fn key(&self) -> Option<&str> {
        self.targeting_key.as_deref().filter(|k| !k.is_empty())
    }

    /// An attribute by name; `targeting_key` names the targeting key unless an attribute shadows it.
    pub(crate) fn lookup(&self, name: &str) -> Option<Attr<'_>> {
        if let Some(v) = self.attributes.get(name) {
            return Some(Attr::Value(v));
        }
        if name == TARGETING_KEY_ATTRIBUTE {
            return self.key().map(Attr::Str);
        }
        None
    }
}

/// A borrowed attribute, so the targeting key can be matched like any string attribute.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attr<'a> {
    Value(&'a AttrValue),
    Str(&'a str),
}

impl<'a> Attr<'a> {
    pub(crate) fn as_str(self) -> Option<&'a str> {
        match self {
            Attr::Str(s) => Some(s),
            Attr::Value(AttrValue::String(s)) => Some(s),
            Attr::Value(_) => None,
        }
    }
}
