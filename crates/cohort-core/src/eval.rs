//! Evaluation: one decision per key over a compiled config. Infallible and allocation-free
//! (`evaluate_all` allocates only its result vector).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{
    Allocation, CompiledConfig, CompiledExperiment, CompiledFlag, CompiledHoldout, CompiledServe, Entry,
};
use crate::context::Context;
use crate::hash::{MAX_UNIT_BYTES, bucket};
use crate::logic::{Env, Outcome, decide};
use crate::model::ExperimentStatus;

/// Why a decision came out as it did; aligned with OpenFeature's resolution reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no rules and a fixed default: everyone gets the same value.
    Static,
    /// A targeting rule matched and served a fixed variation.
    TargetingMatch,
    /// A pseudorandom, deterministic split assigned the variation or variant.
    Split,
    /// The flag is switched off, or the experiment is not running.
    Disabled,
    /// Nothing matched: the fallback value, or not enrolled in the experiment.
    Default,
    /// The decision could not be made; see the error code. Callers serve their own default.
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ProviderNotReady,
    FlagNotFound,
    ParseError,
    TypeMismatch,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProviderNotReady => "PROVIDER_NOT_READY",
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// What a key resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Flag,
    Experiment,
}

/// One evaluation's outcome, borrowing from the config and the key it was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub key: &'a str,
    /// `None` when the key does not exist.
    pub kind: Option<DecisionKind>,
    /// The variation (flags) or variant (experiments) served; `None` when there is none.
    pub variant: Option<&'a str>,
    /// The flag's variation value or the variant's payload.
    pub value: Option<&'a Value>,
    /// `value` as JSON text, serialized at compile time.
    pub value_json: Option<&'a str>,
    /// Whether the unit is enrolled in the experiment (an exposure should be recorded).
    pub enrolled: bool,
    pub reason: Reason,
    pub error: Option<ErrorCode>,
    /// The id of the flag rule that matched.
    pub rule_id: Option<&'a str>,
    /// The experiment, for experiment decisions (its id, breakdown attributes, ...).
    pub experiment: Option<&'a CompiledExperiment>,
    /// For a running experiment in an enabled holdout's scope: the holdout, and whether it
    /// holds the unit out. The caller records the holdout's exposure either way.
    pub holdout: Option<HoldoutHit<'a>>,
    /// The flag's metadata, when it has any.
    pub metadata: Option<&'a serde_json::Map<String, Value>>,
}

/// An experiment decision's holdout: which one, and whether the unit is held out.
#[derive(Debug, Clone, Copy)]
pub struct HoldoutHit<'a> {
    pub holdout: &'a CompiledHoldout,
    /// Held out: the unit gets the experiment's not-enrolled outcome.
    pub held_out: bool,
}

impl<'a> Decision<'a> {
    fn new(key: &'a str, kind: Option<DecisionKind>, reason: Reason) -> Self {
        Decision {
            key,
            kind,
            variant: None,
            value: None,
            value_json: None,
            enrolled: false,
            reason,
            error: None,
            rule_id: None,
            experiment: None,
            holdout: None,
            metadata: None,
        }
    }

    fn error(key: &'a str, kind: Option<DecisionKind>, code: ErrorCode) -> Self {
        Decision { error: Some(code), ..Decision::new(key, kind, Reason::Error) }
    }

    /// The value as a bool, or why it is not one.
    pub fn bool_value(&self) -> Result<bool, ErrorCode> {
        self.typed(Value::as_bool)
    }

    pub fn string_value(&self) -> Result<&'a str, ErrorCode> {
        self.typed(Value::as_str)
    }

    pub fn number_value(&self) -> Result<f64, ErrorCode> {
        self.typed(Value::as_f64)
    }

    /// The value as JSON, or why there is none.
    pub fn json_value(&self) -> Result<&'a Value, ErrorCode> {
        self.typed(Some)
    }

    fn typed<T>(&self, get: impl FnOnce(&'a Value) -> Option<T>) -> Result<T, ErrorCode> {
        if let Some(code) = self.error {
            return Err(code);
        }
        match self.value {
            Some(v) => get(v).ok_or(ErrorCode::TypeMismatch),
            // Not enrolled or disabled with no value: the caller's default applies.
            None => Err(ErrorCode::General),
        }
    }
}

/// Evaluates one flag or experiment for a context. A targeting that reads the time
/// (`$flagd.timestamp`) sees none: use [`evaluate_at`] when [`CompiledConfig::reads_clock`].
pub fn evaluate<'a>(config: &'a CompiledConfig, ctx: &Context, key: &'a str) -> Decision<'a> {
    evaluate_with(config, ctx, key, None)
}

/// [`evaluate`] at a time, in Unix seconds (the caller reads the clock).
pub fn evaluate_at<'a>(config: &'a CompiledConfig, ctx: &Context, key: &'a str, now: i64) -> Decision<'a> {
    evaluate_with(config, ctx, key, Some(now))
}

fn evaluate_with<'a>(
    config: &'a CompiledConfig,
    ctx: &Context,
    key: &'a str,
    now: Option<i64>,
) -> Decision<'a> {
    match config.index.get(key) {
        Some(Entry::Flag(i)) => evaluate_flag(config, &config.flags[*i], ctx, now),
        Some(Entry::Experiment(i)) => evaluate_experiment(config, &config.experiments[*i], ctx),
        None => Decision::error(key, None, ErrorCode::FlagNotFound),
    }
}

/// Evaluates every flag, then every experiment, in definition order.
pub fn evaluate_all<'a>(config: &'a CompiledConfig, ctx: &Context) -> Vec<Decision<'a>> {
    evaluate_all_with(config, ctx, None)
}

/// [`evaluate_all`] at a time, in Unix seconds.
pub fn evaluate_all_at<'a>(config: &'a CompiledConfig, ctx: &Context, now: i64) -> Vec<Decision<'a>> {
    evaluate_all_with(config, ctx, Some(now))
}

fn evaluate_all_with<'a>(config: &'a CompiledConfig, ctx: &Context, now: Option<i64>) -> Vec<Decision<'a>> {
    let mut out = Vec::with_capacity(config.len());
    out.extend(config.flags.iter().map(|f| evaluate_flag(config, f, ctx, now)));
    out.extend(config.experiments.iter().map(|e| evaluate_experiment(config, e, ctx)));
    out
}

/// The unit to bucket, or the error that prevents bucketing.
fn unit(ctx: &Context) -> Result<&str, ErrorCode> {
    match ctx.key() {
        None => Err(ErrorCode::TargetingKeyMissing),
        Some(k) if k.len() > MAX_UNIT_BYTES => Err(ErrorCode::InvalidContext),
        Some(k) => Ok(k),
    }
}

pub(crate) fn evaluate_flag<'a>(
    config: &'a CompiledConfig,
    flag: &'a CompiledFlag,
    ctx: &Context,
    now: Option<i64>,
) -> Decision<'a> {
    let kind = Some(DecisionKind::Flag);
    let metadata = (!flag.metadata.is_empty()).then_some(&flag.metadata);
    let nothing = |reason: Reason| Decision { metadata, ..Decision::new(&flag.key, kind, reason) };
    let serve_variation = |index: usize, reason: Reason, rule_id: Option<&'a str>| {
        let v = &flag.variations[index];
        Decision {
            variant: Some(&*v.key),
            value: Some(&v.value),
            value_json: Some(&*v.json),
            rule_id,
            metadata,
            ..Decision::new(&flag.key, kind, reason)
        }
    };
    let serve = |s: &'a CompiledServe, fixed_reason: Reason, rule_id: Option<&'a str>| match s {
        CompiledServe::Variation(i) => serve_variation(*i, fixed_reason, rule_id),
        CompiledServe::Split(split) => match unit(ctx) {
            Ok(unit) => {
                let b = bucket(&flag.salt, unit);
                // Weights sum to 10000 and b < 10000, so a bound always exists.
                let index = split.iter().find(|(upper, _)| b < *upper).map_or(0, |(_, i)| *i);
                serve_variation(index, Reason::Split, rule_id)
            }
            Err(code) => Decision { rule_id, metadata, ..Decision::error(&flag.key, kind, code) },
        },
    };

    if !flag.enabled {
        return match flag.off {
            Some(off) => serve_variation(off, Reason::Disabled, None),
            None => nothing(Reason::Disabled),
        };
    }
    let mut fixed = Reason::Static;
    if let Some(targeting) = &flag.targeting {
        let env = Env { ctx, flag_key: &flag.key, now };
        let find = |name: &str| flag.variations.iter().position(|v| *v.key == *name);
        match decide(&targeting.expr, &env, find) {
            Outcome::Variant(i) => return serve_variation(i, Reason::TargetingMatch, None),
            // flagd says TARGETING_MATCH of a split too; an analysed split also exposes.
            Outcome::Split(i) => {
                let experiment = flag.experiment.as_ref();
                return Decision {
                    enrolled: experiment.is_some(),
                    experiment,
                    ..serve_variation(i, Reason::TargetingMatch, None)
                };
            }
            Outcome::Invalid => {
                return Decision { metadata, ..Decision::error(&flag.key, kind, ErrorCode::General) };
            }
            Outcome::Default => fixed = Reason::Default,
        }
    }
    for rule in &flag.rules {
        if rule.cond.matches(ctx, config) {
            return serve(&rule.serve, Reason::TargetingMatch, Some(&rule.id));
        }
    }
    if !flag.rules.is_empty() {
        fixed = Reason::Default;
    }
    match &flag.default {
        Some(default) => serve(default, fixed, None),
        // The caller's default: flagd says DEFAULT whether or not there is targeting.
        None => nothing(Reason::Default),
    }
}

pub(crate) fn evaluate_experiment<'a>(
    config: &'a CompiledConfig,
    exp: &'a CompiledExperiment,
    ctx: &Context,
) -> Decision<'a> {
    let kind = Some(DecisionKind::Experiment);
    if exp.status != ExperimentStatus::Running {
        return Decision { experiment: Some(exp), ..Decision::new(&exp.key, kind, Reason::Disabled) };
    }
    let unit = match unit(ctx) {
        Ok(u) => u,
        Err(code) => return Decision { experiment: Some(exp), ..Decision::error(&exp.key, kind, code) },
    };
    // Before targeting and allocation: a held-out unit is out whatever they say, and everyone
    // in scope is counted on one side of the holdout.
    let holdout = exp.holdout.map(|i| {
        let holdout = &config.holdouts[i];
        HoldoutHit { holdout, held_out: bucket(&holdout.salt, unit) < holdout.share_bp }
    });
    let not_enrolled =
        || Decision { experiment: Some(exp), holdout, ..Decision::new(&exp.key, kind, Reason::Default) };
    if holdout.is_some_and(|h| h.held_out) {
        return not_enrolled();
    }
    if let Some(cond) = &exp.targeting
        && !cond.matches(ctx, config)
    {
        return not_enrolled();
    }
    let allocated = match &exp.allocation {
        Allocation::Traffic(bp) => *bp > 0 && bucket(&exp.id_text, unit) < *bp,
        Allocation::Layer { salt, start, end, .. } => (*start..*end).contains(&bucket(salt, unit)),
    };
    if !allocated {
        return not_enrolled();
    }
    let b = bucket(&exp.salt, unit);
    let Some(v) = exp.variants.iter().find(|v| b < v.upper) else {
        return not_enrolled();
    };
    let has_payload = !v.payload.is_null();
    Decision {
        variant: Some(&*v.key),
        value: has_payload.then_some(&v.payload),
        value_json: has_payload.then_some(&*v.json),
        enrolled: true,
        experiment: Some(exp),
        holdout,
        ..Decision::new(&exp.key, kind, Reason::Split)
    }
}

#[cfg(test)]
mod tests;
