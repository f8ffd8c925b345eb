//! Conversions between wire types and cohort-core types. Wire → core validates every field and
//! names the one at fault; core → wire cannot fail. [`flagd`] holds flagd's (Struct contexts).

use std::borrow::Cow;

use cohort_core::hash::MAX_UNIT_BYTES;
use cohort_core::{AttrValue, Context, Decision, DecisionKind, ErrorCode, Reason};

use crate::common::v1 as pb;

pub mod flagd;
pub mod structured;

/// Most attributes one context may carry.
pub const MAX_ATTRIBUTES: usize = 256;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 256;
/// Longest string attribute value (and list element), in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 4096;
/// Most elements of a list attribute.
pub const MAX_LIST_ELEMENTS: usize = 1000;

/// A wire message that does not convert: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProtoError {
    /// Path of the bad field, e.g. `context.attributes["age"]`.
    pub field: String,
    pub message: String,
}

impl ProtoError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ProtoError { field: field.into(), message: message.into() }
    }

    /// Places the error under an outer field: `targeting_key` becomes `contexts[2].targeting_key`.
    pub fn at(mut self, outer: &str) -> Self {
        self.field = if self.field.is_empty() { outer.to_owned() } else { format!("{outer}.{}", self.field) };
        self
    }
}

impl TryFrom<pb::EvaluationContext> for Context {
    type Error = ProtoError;

    fn try_from(ctx: pb::EvaluationContext) -> Result<Self, ProtoError> {
        if ctx.targeting_key.len() > MAX_UNIT_BYTES {
            return Err(ProtoError::new(
                "targeting_key",
                format!("is {} bytes, at most {MAX_UNIT_BYTES} allowed", ctx.targeting_key.len()),
            ));
        }
        if ctx.attributes.len() > MAX_ATTRIBUTES {
            return Err(ProtoError::new(
                "attributes",
                format!("{} attributes, at most {MAX_ATTRIBUTES} allowed", ctx.attributes.len()),
            ));
        }
        let mut out = Context {
            targeting_key: (!ctx.targeting_key.is_empty()).then_some(ctx.targeting_key),
            attributes: Default::default(),
        };
        out.attributes.reserve(ctx.attributes.len());
        for (name, value) in ctx.attributes {
            let field = || format!("attributes[{name:?}]");
            if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
                return Err(ProtoError::new(
                    field(),
                    format!("a name must be 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes"),
                ));
            }
            let value = attr_value(value).map_err(|message| ProtoError::new(field(), message))?;
            out.attributes.insert(name, value);
        }
        Ok(out)
    }
}

fn attr_value(value: pb::AttributeValue) -> Result<AttrValue, String> {
    use pb::attribute_value::Kind;
    let check_len = |s: &str| {
        if s.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            Err(format!("a string of {} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES} allowed", s.len()))
        } else {
            Ok(())
        }
    };
    match value.kind {
        None => Err("no value is set".to_owned()),
        Some(Kind::StringValue(s)) => check_len(&s).map(|()| AttrValue::String(s)),
        Some(Kind::NumberValue(n)) if !n.is_finite() => Err(format!("{n} is not a finite number")),
        Some(Kind::NumberValue(n)) => Ok(AttrValue::Number(n)),
        Some(Kind::BoolValue(b)) => Ok(AttrValue::Bool(b)),
        Some(Kind::StringList(list)) => {
            if list.values.len() > MAX_LIST_ELEMENTS {
                return Err(format!("{} elements, at most {MAX_LIST_ELEMENTS} allowed", list.values.len()));
            }
            list.values.iter().try_for_each(|s| check_len(s))?;
            Ok(AttrValue::StringList(list.values))
        }
    }
}

impl From<&Context> for pb::EvaluationContext {
    fn from(ctx: &Context) -> Self {
        pb::EvaluationContext {
            targeting_key: ctx.targeting_key.clone().unwrap_or_default(),
            attributes: ctx.attributes.iter().map(|(k, v)| (k.clone(), v.into())).collect(),
        }
    }
}

impl From<&AttrValue> for pb::AttributeValue {
    fn from(v: &AttrValue) -> Self {
        use pb::attribute_value::Kind;
        let kind = match v {
            AttrValue::String(s) => Kind::StringValue(s.clone()),
            AttrValue::Number(n) => Kind::NumberValue(*n),
            AttrValue::Bool(b) => Kind::BoolValue(*b),
            AttrValue::StringList(l) => Kind::StringList(pb::StringList { values: l.clone() }),
        };
        pb::AttributeValue { kind: Some(kind) }
    }
}

impl From<Reason> for pb::Reason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Static => pb::Reason::Static,
            Reason::TargetingMatch => pb::Reason::TargetingMatch,
            Reason::Split => pb::Reason::Split,
            Reason::Disabled => pb::Reason::Disabled,
            Reason::Default => pb::Reason::Default,
            Reason::Error => pb::Reason::Error,
        }
    }
}

impl TryFrom<pb::Reason> for Reason {
    type Error = ProtoError;

    fn try_from(r: pb::Reason) -> Result<Self, ProtoError> {
        Ok(match r {
            pb::Reason::Unspecified => return Err(ProtoError::new("reason", "is unspecified")),
            pb::Reason::Static => Reason::Static,
            pb::Reason::TargetingMatch => Reason::TargetingMatch,
            pb::Reason::Split => Reason::Split,
            pb::Reason::Disabled => Reason::Disabled,
            pb::Reason::Default => Reason::Default,
            pb::Reason::Error => Reason::Error,
        })
    }
}

impl From<Option<ErrorCode>> for pb::ErrorCode {
    fn from(code: Option<ErrorCode>) -> Self {
        match code {
            None => pb::ErrorCode::Unspecified,
            Some(ErrorCode::ProviderNotReady) => pb::ErrorCode::ProviderNotReady,
            Some(ErrorCode::FlagNotFound) => pb::ErrorCode::FlagNotFound,
            Some(ErrorCode::ParseError) => pb::ErrorCode::ParseError,
            Some(ErrorCode::TypeMismatch) => pb::ErrorCode::TypeMismatch,
            Some(ErrorCode::TargetingKeyMissing) => pb::ErrorCode::TargetingKeyMissing,
            Some(ErrorCode::InvalidContext) => pb::ErrorCode::InvalidContext,
            Some(ErrorCode::General) => pb::ErrorCode::General,
        }
    }
}

impl From<pb::ErrorCode> for Option<ErrorCode> {
    fn from(code: pb::ErrorCode) -> Self {
        match code {
            pb::ErrorCode::Unspecified => None,
            pb::ErrorCode::ProviderNotReady => Some(ErrorCode::ProviderNotReady),
            pb::ErrorCode::FlagNotFound => Some(ErrorCode::FlagNotFound),
            pb::ErrorCode::ParseError => Some(ErrorCode::ParseError),
            pb::ErrorCode::TypeMismatch => Some(ErrorCode::TypeMismatch),
            pb::ErrorCode::TargetingKeyMissing => Some(ErrorCode::TargetingKeyMissing),
            pb::ErrorCode::InvalidContext => Some(ErrorCode::InvalidContext),
            pb::ErrorCode::General => Some(ErrorCode::General),
        }
    }
}

/// A decision's fields as `pb::Decision` carries them, borrowed: the one core → wire mapping
/// of a decision, which both the owned conversion below and the evaluation service's direct
/// encoding (`evaluate_response`) use.
pub(crate) struct DecisionFields<'a> {
    pub(crate) key: &'a str,
    pub(crate) kind: i32,
    pub(crate) variant: &'a str,
    pub(crate) value: Option<ValueField<'a>>,
    pub(crate) enrolled: bool,
    pub(crate) reason: i32,
    pub(crate) error_code: i32,
    pub(crate) rule_id: &'a str,
    pub(crate) experiment_id: &'a str,
}

/// The `value` oneof of a decision, borrowed.
pub(crate) enum ValueField<'a> {
    Bool(bool),
    String(&'a str),
    Number(f64),
    /// Objects, arrays and null as JSON text, serialized at compile time (so they cost a
    /// copy, not an encode) or, for values compiled without it, now.
    Json(Cow<'a, str>),
}

impl<'a> DecisionFields<'a> {
    pub(crate) fn of(d: &Decision<'a>) -> Self {
        use serde_json::Value as J;
        let value = d.value.map(|v| match v {
            J::Bool(b) => ValueField::Bool(*b),
            J::String(s) => ValueField::String(s),
            J::Number(n) => ValueField::Number(n.as_f64().unwrap_or_default()),
            other => {
                ValueField::Json(d.value_json.map_or_else(|| Cow::Owned(other.to_string()), Cow::Borrowed))
            }
        });
        let kind = match d.kind {
            None => pb::DecisionKind::Unspecified,
            Some(DecisionKind::Flag) => pb::DecisionKind::Flag,
            Some(DecisionKind::Experiment) => pb::DecisionKind::Experiment,
        };
        DecisionFields {
            key: d.key,
            kind: kind.into(),
            variant: d.variant.unwrap_or_default(),
            value,
            enrolled: d.enrolled,
            reason: pb::Reason::from(d.reason).into(),
            error_code: pb::ErrorCode::from(d.error).into(),
            rule_id: d.rule_id.unwrap_or_default(),
            experiment_id: d.experiment.map_or("", |e| e.id_text()),
        }
    }
}

impl From<&Decision<'_>> for pb::Decision {
    fn from(d: &Decision<'_>) -> Self {
        use pb::decision::Value as V;
        let f = DecisionFields::of(d);
        pb::Decision {
            key: f.key.to_owned(),
            kind: f.kind,
            variant: f.variant.to_owned(),
            value: f.value.map(|v| match v {
                ValueField::Bool(b) => V::BoolValue(b),
                ValueField::String(s) => V::StringValue(s.to_owned()),
                ValueField::Number(n) => V::NumberValue(n),
                ValueField::Json(text) => V::JsonValue(text.into_owned()),
            }),
            enrolled: f.enrolled,
            reason: f.reason,
            error_code: f.error_code,
            rule_id: f.rule_id.to_owned(),
            experiment_id: f.experiment_id.to_owned(),
        }
    }
}

/// The decision's value back as JSON, for clients and conformance checks.
pub fn decision_value(d: &pb::Decision) -> Result<serde_json::Value, ProtoError> {
    use pb::decision::Value as V;
    Ok(match &d.value {
        None => serde_json::Value::Null,
        Some(V::BoolValue(b)) => (*b).into(),
        Some(V::StringValue(s)) => s.as_str().into(),
        Some(V::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .ok_or_else(|| ProtoError::new("number_value", format!("{n} is not a finite number")))?,
        Some(V::JsonValue(text)) => serde_json::from_str(text)
            .map_err(|e| ProtoError::new("json_value", format!("is not valid JSON: {e}")))?,
    })
}

/// Entity kinds and lifecycle actions between cohort-core and the config API.
mod config_enums {
    use cohort_core::model::{EntityKind, ExperimentAction};

    use crate::config::v1 as pb;

    impl From<EntityKind> for pb::EntityKind {
        fn from(kind: EntityKind) -> Self {
            match kind {
                EntityKind::Flag => pb::EntityKind::Flag,
                EntityKind::Experiment => pb::EntityKind::Experiment,
                EntityKind::Layer => pb::EntityKind::Layer,
                EntityKind::Segment => pb::EntityKind::Segment,
                EntityKind::Metric => pb::EntityKind::Metric,
                EntityKind::Holdout => pb::EntityKind::Holdout,
            }
        }
    }

    impl From<ExperimentAction> for pb::ExperimentAction {
        fn from(action: ExperimentAction) -> Self {
            match action {
                ExperimentAction::Start => pb::ExperimentAction::Start,
                ExperimentAction::Pause => pb::ExperimentAction::Pause,
                ExperimentAction::Resume => pb::ExperimentAction::Resume,
                ExperimentAction::Complete => pb::ExperimentAction::Complete,
            }
        }
    }

    /// The kind a wire value names; `None` for UNSPECIFIED and values this build does not know.
    pub fn entity_kind(value: i32) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| pb::EntityKind::from(*k) as i32 == value)
    }

    /// The action a wire value names; `None` for UNSPECIFIED and values this build does not know.
    pub fn experiment_action(value: i32) -> Option<ExperimentAction> {
        ExperimentAction::ALL.into_iter().find(|a| pb::ExperimentAction::from(*a) as i32 == value)
    }
}

pub use config_enums::{entity_kind, experiment_action};

#[cfg(test)]
mod tests;
