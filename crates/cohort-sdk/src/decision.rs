//! Owned evaluation results: [`Evaluation`] (a whole decision), [`Details`] (an
//! OpenFeature-style typed resolution) and [`Assignment`] (an experiment's answer).
//!
//! They copy out of the compiled config so they outlive it; the zero-copy path is
//! [`crate::ConfigGuard`], which hands out cohort-core's borrowed `Decision`.

use cohort_core::{Decision, DecisionKind, ErrorCode, Reason};
use serde_json::Value;
use uuid::Uuid;

/// A decision copied out of the config: everything cohort-core's `Decision` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub key: String,
    /// `None` when the key does not exist (or no config is loaded).
    pub kind: Option<DecisionKind>,
    /// The variation (flags) or variant (experiments) served.
    pub variant: Option<String>,
    /// The flag's value or the variant's payload.
    pub value: Option<Value>,
    /// Whether the unit is enrolled in the experiment (an exposure was recorded).
    pub enrolled: bool,
    pub reason: Reason,
    pub error: Option<ErrorCode>,
    /// The id of the flag rule that matched.
    pub rule_id: Option<String>,
    /// The experiment's id, for experiment decisions.
    pub experiment_id: Option<Uuid>,
    /// The version of the config that decided.
    pub config_version: u64,
}

impl Evaluation {
    pub(crate) fn new(d: &Decision<'_>, config_version: u64) -> Self {
        Evaluation {
            key: d.key.to_owned(),
            kind: d.kind,
            variant: d.variant.map(str::to_owned),
            value: d.value.cloned(),
            enrolled: d.enrolled,
            reason: d.reason,
            error: d.error,
            rule_id: d.rule_id.map(str::to_owned),
            experiment_id: d.experiment.map(|e| e.id()),
            config_version,
        }
    }
}

/// A typed resolution in OpenFeature's shape: the value served (the caller's default on any
/// error), the variant, the reason and, on error, the code and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Details<T> {
    pub value: T,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub config_version: u64,
}

impl<T> Details<T> {
    /// Resolves `d` with `get`, falling back to `default` with the reason and error.
    pub(crate) fn resolve<'a>(
        d: &Decision<'a>,
        default: T,
        type_name: &'static str,
        get: impl FnOnce(&'a Value) -> Option<T>,
        config_version: u64,
    ) -> Self {
        let failed = |code: ErrorCode, message: String, default: T| Details {
            value: default,
            variant: None,
            reason: Reason::Error,
            error: Some(code),
            error_message: Some(message),
            config_version,
        };
        if let Some(code) = d.error {
            return failed(code, error_message(code, d.key), default);
        }
        let Some(value) = d.value else {
            // Not enrolled, or a disabled experiment: no value, so the default, without error.
            return Details {
                value: default,
                variant: d.variant.map(str::to_owned),
                reason: d.reason,
                error: None,
                error_message: None,
                config_version,
            };
        };
        match get(value) {
            Some(v) => Details {
                value: v,
                variant: d.variant.map(str::to_owned),
                reason: d.reason,
                error: None,
                error_message: None,
                config_version,
            },
            None => failed(
                ErrorCode::TypeMismatch,
                format!("the value of {} is not a {type_name}", d.key),
                default,
            ),
        }
    }
}

/// A human-readable message for an error code about `key`.
pub(crate) fn error_message(code: ErrorCode, key: &str) -> String {
    match code {
        ErrorCode::ProviderNotReady => "no config loaded yet".to_owned(),
        ErrorCode::FlagNotFound => format!("no flag or experiment named {key}"),
        ErrorCode::TargetingKeyMissing => format!("{key} needs a targeting key"),
        ErrorCode::InvalidContext => format!("the context is invalid for {key}"),
        ErrorCode::TypeMismatch => format!("{key} is of another type"),
        ErrorCode::ParseError => format!("{key} could not be parsed"),
        ErrorCode::General => format!("{key} could not be evaluated"),
    }
}

/// An experiment's answer for one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub key: String,
    /// Whether the unit is in the experiment; an exposure is recorded when it is.
    pub enrolled: bool,
    /// The variant assigned, when enrolled.
    pub variant: Option<String>,
    /// The variant's payload, when it has one.
    pub payload: Option<Value>,
    pub experiment_id: Option<Uuid>,
    pub reason: Reason,
    /// Why no assignment could be made: FLAG_NOT_FOUND, TYPE_MISMATCH (the key is a flag),
    /// PROVIDER_NOT_READY, TARGETING_KEY_MISSING, ...
    pub error: Option<ErrorCode>,
    pub config_version: u64,
}

impl Assignment {
    pub(crate) fn new(d: &Decision<'_>, config_version: u64) -> Self {
        if d.kind == Some(DecisionKind::Flag) {
            return Assignment {
                key: d.key.to_owned(),
                enrolled: false,
                variant: None,
                payload: None,
                experiment_id: None,
                reason: Reason::Error,
                error: Some(ErrorCode::TypeMismatch),
                config_version,
            };
        }
        Assignment {
            key: d.key.to_owned(),
            enrolled: d.enrolled,
            variant: d.variant.map(str::to_owned),
            payload: d.value.cloned(),
            experiment_id: d.experiment.map(|e| e.id()),
            reason: d.reason,
            error: d.error,
            config_version,
        }
    }

    /// The variant when enrolled, otherwise `default` (usually the control's key).
    pub fn variant_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.variant.as_deref().unwrap_or(default)
    }
}

#[cfg(test)]
mod tests;
