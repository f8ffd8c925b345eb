//! The offline commands, over files alone (no server, no key): `validate` reads the files as
//! `apply` does, puts their definitions together as one environment and compiles it with
//! cohort-core; `eval` evaluates that environment for one context with cohort-core's
//! evaluator (the SDK's answer) and explains each answer from the definitions.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use cohort_core::hash::{MAX_UNIT_BYTES, bucket};
use cohort_core::model::{Condition, Definitions, ExperimentDef, ExperimentStatus, FlagDef, Serve};
use cohort_core::{AttrValue, CompiledConfig, Context, Decision, DecisionKind, ErrorCode, Reason};
use serde::Serialize;
use serde_json::Value;

use crate::Outcome;
use crate::apply::{compile_entries, duplicates};
use crate::console::Console;
use crate::definition::Def;
use crate::diagnostic::Diagnostic;
use crate::document::{self, FileFormat, Spec};
use crate::error::CtlError;

/// The files read and compiled as one environment.
#[derive(Debug)]
pub struct Checked {
    /// Files read (those holding definitions, and those with problems).
    pub files: usize,
    /// Definitions read.
    pub definitions: usize,
    /// Every problem; empty when the files are valid.
    pub errors: Vec<Diagnostic>,
    /// The environment, when the files are valid.
    pub compiled: Option<(Definitions, CompiledConfig)>,
    /// Keys of the experiments and holdouts whose file gives no `id` (the server assigns one):
    /// they are compiled with a stand-in.
    pub stand_in_ids: BTreeSet<String>,
}

/// Reads `paths` as `apply` does and compiles their definitions as one environment.
pub fn check(paths: &[PathBuf], format: FileFormat, stdin: &mut dyn Read) -> Checked {
    let (mut specs, mut errors) = document::load(paths, format, stdin);
    errors.extend(duplicates(&specs));
    let mut stand_in_ids = BTreeSet::new();
    for spec in &mut specs {
        if spec.id_given {
            continue;
        }
        // As apply's plan does: a stand-in the server would replace on create.
        match &mut spec.def {
            Def::Experiment(e) => e.id = uuid::Uuid::new_v4(),
            Def::Holdout(h) => h.id = uuid::Uuid::new_v4(),
            _ => continue,
        }
        stand_in_ids.insert(spec.key().to_owned());
    }
    let mut files: BTreeSet<&str> = specs.iter().map(|s| s.origin.file.as_ref()).collect();
    files.extend(errors.iter().filter_map(|d| d.file.as_deref()));
    let files = files.len();
    let mut compiled = None;
    if errors.is_empty() {
        match compile_entries(specs.iter().map(|s: &Spec| (&s.def, Some(&s.origin))).collect()) {
            Ok(c) => compiled = Some(c),
            Err(found) => errors = found,
        }
    }
    Checked { files, definitions: specs.len(), errors, compiled, stand_in_ids }
}

/// `validate -o json`.
#[derive(Debug, Serialize)]
struct ValidateReport<'a> {
    valid: bool,
    files: usize,
    definitions: usize,
    errors: &'a [Diagnostic],
}

fn count(n: usize, one: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") }
}

/// `validate`: every problem of the files on stderr (or as JSON), then a summary.
pub fn validate(paths: &[PathBuf], format: FileFormat, con: &mut Console<'_>) -> Result<Outcome, CtlError> {
    let checked = check(paths, format, con.input);
    let valid = checked.errors.is_empty();
    if con.is_json() {
        con.json(&ValidateReport {
            valid,
            files: checked.files,
            definitions: checked.definitions,
            errors: &checked.errors,
        })?;
    } else {
        for d in &checked.errors {
            con.note(d.to_string())?;
        }
        let what = format!("{}, {}", count(checked.files, "file"), count(checked.definitions, "definition"));
        if valid {
            con.line(format!("{what}: valid"))?;
        } else {
            con.note(format!("{what}: {}", count(checked.errors.len(), "problem")))?;
        }
    }
    Ok(if valid { Outcome::Done } else { Outcome::Failed })
}

/// `--context`: OpenFeature's context JSON into a [`Context`]. `targetingKey` is the unit
/// (null: none); strings, numbers, booleans and lists of strings are attributes; nested
/// objects flatten to dotted names (`{"user": {"plan": "pro"}}` is `user.plan`), as the
/// services convert OFREP's and flagd's contexts.
pub fn parse_context(text: &str) -> Result<Context, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("must be a JSON object, e.g. '{\"targetingKey\": \"u-42\", \"country\": \"NZ\"}'".into());
    };
    let mut ctx = Context::anonymous();
    for (name, value) in fields {
        if name == "targetingKey" {
            ctx.targeting_key = match value {
                Value::Null => None,
                Value::String(key) if key.len() > MAX_UNIT_BYTES => {
                    return Err(format!("targetingKey: at most {MAX_UNIT_BYTES} bytes"));
                }
                Value::String(key) => Some(key),
                _ => return Err("targetingKey: must be a string".into()),
            };
        } else {
            flatten(&mut ctx, name, value)?;
        }
    }
    Ok(ctx)
}

fn flatten(ctx: &mut Context, name: String, value: Value) -> Result<(), String> {
    if name.is_empty() || name.ends_with('.') {
        return Err(format!("{name:?}: an attribute needs a name"));
    }
    let attr = match value {
        Value::Object(fields) => {
            for (field, value) in fields {
                flatten(ctx, format!("{name}.{field}"), value)?;
            }
            return Ok(());
        }
        Value::String(s) => AttrValue::String(s),
        Value::Bool(b) => AttrValue::Bool(b),
        Value::Number(n) => match n.as_f64() {
            Some(n) if n.is_finite() => AttrValue::Number(n),
            _ => return Err(format!("{name}: {n} is not a finite number")),
        },
        Value::Array(items) => {
            let strings: Option<Vec<String>> =
                items.into_iter().map(|v| if let Value::String(s) = v { Some(s) } else { None }).collect();
            match strings {
                Some(list) => AttrValue::StringList(list),
                None => return Err(format!("{name}: a list must hold strings only")),
            }
        }
        Value::Null => return Err(format!("{name}: null is no attribute value; leave the field out")),
    };
    if ctx.attributes.contains_key(&name) {
        return Err(format!("{name}: given twice (as a dotted name and as a nested field)"));
    }
    ctx.attributes.insert(name, attr);
    Ok(())
}

/// One step of how an answer came about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Neither a flag nor an experiment of the files has the key.
    NotFound,
    /// The flag is switched off.
    Disabled { off_variation: Option<String> },
    /// The flag's flagd targeting returned a variant, or null (then the default applies).
    Targeting { variant: Option<String> },
    /// The flag's flagd targeting could not be evaluated.
    TargetingFailed,
    /// A flag rule, in order: the first that matches serves.
    Rule { index: usize, id: String, matched: bool },
    /// The flag's default serves (no rule matched, or targeting returned null).
    Default,
    /// The flag has no default: nothing is served, the caller's default applies.
    NoDefault,
    /// A fixed variation is served.
    Serve { variation: String },
    /// A split by the flag's salt: the unit's bucket and the variation's range of buckets.
    Split { salt: String, bucket: u32, range: [u32; 2], variation: String },
    /// The unit cannot be bucketed.
    NoUnit { error_code: ErrorCode },
    /// The experiment is not running.
    NotRunning { status: ExperimentStatus },
    /// The file gives the experiment no `id`, which its traffic bucket (and variant bucket,
    /// without a `salt`) hash: the server assigns it, and this evaluation used a stand-in.
    StandInId,
    /// An enabled holdout whose scope the experiment is in.
    Holdout { holdout: String, bucket: u32, share_bp: u32, held_out: bool },
    /// The experiment's targeting condition.
    ExperimentTargeting { matched: bool },
    /// Traffic allocation (experiments in no layer): `bucket(id, unit) < traffic_bp`.
    Traffic { bucket: u32, traffic_bp: u32, allocated: bool },
    /// The experiment's range of its layer: `start <= bucket(layer salt, unit) < end`.
    Layer { layer: String, bucket: u32, range: [u32; 2], allocated: bool },
    /// The variant: `bucket(salt, unit)` within the variant's range.
    Variant { bucket: u32, range: [u32; 2], variant: String },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::NotFound => f.write_str("no flag or experiment has this key in the files"),
            Step::Disabled { off_variation: Some(v) } => write!(f, "disabled: serves its off variation {v}"),
            Step::Disabled { off_variation: None } => {
                f.write_str("disabled, with no off variation: nothing is served")
            }
            Step::Targeting { variant: Some(v) } => write!(f, "targeting returned variant {v}"),
            Step::Targeting { variant: None } => f.write_str("targeting returned null"),
            Step::TargetingFailed => f.write_str("targeting could not be evaluated"),
            Step::Rule { index, id, matched } => {
                let name = if *id == index.to_string() {
                    format!("rule {index}")
                } else {
                    format!("rule {index} ({id})")
                };
                write!(f, "{name}: {}", if *matched { "matched" } else { "did not match" })
            }
            Step::Default => f.write_str("the default"),
            Step::NoDefault => f.write_str("no default: nothing is served"),
            Step::Serve { variation } => write!(f, "serves {variation}"),
            Step::Split { salt, bucket, range: [a, b], variation } => {
                write!(f, "split by salt {salt}: bucket {bucket} in [{a}, {b}): {variation}")
            }
            Step::NoUnit { error_code } => write!(f, "cannot bucket the unit ({})", error_code.as_str()),
            Step::NotRunning { status } => write!(f, "{}: not running, nobody is enrolled", status.as_str()),
            Step::StandInId => f.write_str(
                "the file gives no id: the server assigns one, so the buckets hashed with it differ",
            ),
            Step::Holdout { holdout, bucket, share_bp, held_out: true } => {
                write!(f, "holdout {holdout}: bucket {bucket} < {share_bp}: held out")
            }
            Step::Holdout { holdout, bucket, share_bp, held_out: false } => {
                write!(f, "holdout {holdout}: bucket {bucket} >= {share_bp}: not held out")
            }
            Step::ExperimentTargeting { matched } => {
                write!(f, "targeting: {}", if *matched { "matched" } else { "did not match" })
            }
            Step::Traffic { bucket, traffic_bp, allocated: true } => {
                write!(f, "traffic: bucket {bucket} < {traffic_bp}: allocated")
            }
            Step::Traffic { bucket, traffic_bp, allocated: false } => {
                write!(f, "traffic: bucket {bucket} >= {traffic_bp}: not allocated")
            }
            Step::Layer { layer, bucket, range: [a, b], allocated } => {
                let verdict = if *allocated { "in" } else { "not in" };
                write!(f, "layer {layer}: bucket {bucket} {verdict} [{a}, {b})")
            }
            Step::Variant { bucket, range: [a, b], variant } => {
                write!(f, "variant: bucket {bucket} in [{a}, {b}): {variant}")
            }
        }
    }
}

/// One key's answer, as the SDK gives it, and how it came about.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub key: String,
    pub kind: Option<DecisionKind>,
    pub value: Option<Value>,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// Experiments (and flags whose split is analysed): whether the unit is enrolled.
    pub enrolled: bool,
    pub explanation: Vec<Step>,
}

impl Evaluation {
    /// `flag new-checkout: true (variant on, TARGETING_MATCH)`.
    pub fn headline(&self) -> String {
        let kind = match self.kind {
            Some(DecisionKind::Flag) => "flag ",
            Some(DecisionKind::Experiment) => "experiment ",
            None => "",
        };
        let value = self.value.as_ref().map_or_else(|| "no value".to_owned(), Value::to_string);
        let mut about = Vec::new();
        if let Some(v) = &self.variant {
            about.push(format!("variant {v}"));
        }
        about.push(self.reason.as_str().to_owned());
        if let Some(code) = self.error_code {
            about.push(code.as_str().to_owned());
        }
        format!("{kind}{}: {value} ({})", self.key, about.join(", "))
    }
}

/// `eval`: evaluates `keys` (default: every flag, then every experiment) for `ctx`. Fails when
/// the files are not valid or a key names nothing in them.
pub fn eval(
    paths: &[PathBuf],
    format: FileFormat,
    ctx: &Context,
    keys: &[String],
    con: &mut Console<'_>,
) -> Result<Outcome, CtlError> {
    let checked = check(paths, format, con.input);
    let Some((defs, config)) = &checked.compiled else {
        for d in &checked.errors {
            con.note(d.to_string())?;
        }
        con.note(format!(
            "{}: nothing evaluated (`cohortctl validate` checks files)",
            count(checked.errors.len(), "problem")
        ))?;
        return Ok(Outcome::Failed);
    };
    let results = evaluate_keys(defs, config, ctx, keys, &checked.stand_in_ids);
    if con.is_json() {
        con.json(&results)?;
    } else {
        for r in &results {
            con.line(r.headline())?;
            for step in &r.explanation {
                con.line(format!("  {step}"))?;
            }
        }
    }
    let missing = results.iter().any(|r| r.kind.is_none());
    Ok(if missing { Outcome::Failed } else { Outcome::Done })
}

/// Evaluates and explains `keys` (every flag then every experiment when empty).
pub fn evaluate_keys(
    defs: &Definitions,
    config: &CompiledConfig,
    ctx: &Context,
    keys: &[String],
    stand_in_ids: &BTreeSet<String>,
) -> Vec<Evaluation> {
    let all: Vec<&str> = if keys.is_empty() {
        config.flags().iter().map(|f| f.key()).chain(config.experiments().iter().map(|e| e.key())).collect()
    } else {
        keys.iter().map(String::as_str).collect()
    };
    let now = config.reads_clock().then(unix_now);
    all.into_iter()
        .map(|key| {
            let d = match now {
                Some(now) => cohort_core::evaluate_at(config, ctx, key, now),
                None => cohort_core::evaluate(config, ctx, key),
            };
            explain(defs, ctx, &d, stand_in_ids)
        })
        .collect()
}

fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

/// The decision, with the steps that led to it.
fn explain(
    defs: &Definitions,
    ctx: &Context,
    d: &Decision<'_>,
    stand_in_ids: &BTreeSet<String>,
) -> Evaluation {
    let mut steps = Vec::new();
    match d.kind {
        None => steps.push(Step::NotFound),
        Some(DecisionKind::Flag) => {
            if let Some(flag) = defs.flags.iter().find(|f| f.key == d.key) {
                explain_flag(defs, flag, ctx, d, &mut steps);
            }
        }
        Some(DecisionKind::Experiment) => {
            if let (Some(e), Some(compiled)) =
                (defs.experiments.iter().find(|e| e.key == d.key), d.experiment)
            {
                explain_experiment(defs, e, compiled, ctx, d, stand_in_ids.contains(d.key), &mut steps);
            }
        }
    }
    Evaluation {
        key: d.key.to_owned(),
        kind: d.kind,
        value: d.value.cloned(),
        variant: d.variant.map(str::to_owned),
        reason: d.reason,
        error_code: d.error,
        rule_id: d.rule_id.map(str::to_owned),
        enrolled: d.enrolled,
        explanation: steps,
    }
}

/// The unit splits bucket, or why there is none (as cohort-core decides).
fn unit(ctx: &Context) -> Result<&str, ErrorCode> {
    match ctx.key() {
        None => Err(ErrorCode::TargetingKeyMissing),
        Some(k) if k.len() > MAX_UNIT_BYTES => Err(ErrorCode::InvalidContext),
        Some(k) => Ok(k),
    }
}

fn rule_id(flag: &FlagDef, index: usize) -> String {
    flag.rules[index].id.clone().unwrap_or_else(|| index.to_string())
}

fn explain_flag(defs: &Definitions, flag: &FlagDef, ctx: &Context, d: &Decision<'_>, steps: &mut Vec<Step>) {
    if !flag.enabled {
        steps.push(Step::Disabled { off_variation: flag.off_variation.clone() });
        return;
    }
    // A flag has flagd targeting or rules, not both.
    if flag.targeting.is_some() {
        match (d.reason, d.rule_id) {
            (Reason::TargetingMatch, None) => {
                steps.push(Step::Targeting { variant: d.variant.map(str::to_owned) });
                return;
            }
            (Reason::Error, None) if d.error == Some(ErrorCode::General) => {
                steps.push(Step::TargetingFailed);
                return;
            }
            _ => steps.push(Step::Targeting { variant: None }),
        }
    }
    // The first rule that matches serves, so every rule before the one that served did not
    // match. Rule ids default to the index, which an explicit id may repeat: then the rule
    // that served is the first of those whose condition matches.
    let matched = d.rule_id.and_then(|id| {
        let candidates: Vec<usize> = (0..flag.rules.len()).filter(|i| rule_id(flag, *i) == id).collect();
        match candidates.as_slice() {
            [only] => Some(*only),
            _ => candidates.into_iter().find(|i| condition_matches(defs, &flag.rules[*i].condition, ctx)),
        }
    });
    for index in 0..matched.unwrap_or(flag.rules.len()) {
        steps.push(Step::Rule { index, id: rule_id(flag, index), matched: false });
    }
    let serve = match matched {
        Some(index) => {
            steps.push(Step::Rule { index, id: rule_id(flag, index), matched: true });
            &flag.rules[index].serve
        }
        None => match &flag.default {
            Some(default) => {
                steps.push(Step::Default);
                default
            }
            None => {
                steps.push(Step::NoDefault);
                return;
            }
        },
    };
    match serve {
        Serve::Variation(v) => steps.push(Step::Serve { variation: v.clone() }),
        Serve::Split(weights) => match unit(ctx) {
            Ok(unit) => {
                let b = bucket(&flag.salt, unit);
                let mut start = 0;
                for w in weights {
                    let end = start + w.weight_bp;
                    if b < end {
                        steps.push(Step::Split {
                            salt: flag.salt.clone(),
                            bucket: b,
                            range: [start, end],
                            variation: w.variation.clone(),
                        });
                        break;
                    }
                    start = end;
                }
            }
            Err(error_code) => steps.push(Step::NoUnit { error_code }),
        },
    }
}

fn explain_experiment(
    defs: &Definitions,
    def: &ExperimentDef,
    exp: &cohort_core::CompiledExperiment,
    ctx: &Context,
    d: &Decision<'_>,
    stand_in_id: bool,
    steps: &mut Vec<Step>,
) {
    if exp.status() != ExperimentStatus::Running {
        steps.push(Step::NotRunning { status: exp.status() });
        return;
    }
    let unit = match unit(ctx) {
        Ok(unit) => unit,
        Err(error_code) => {
            steps.push(Step::NoUnit { error_code });
            return;
        }
    };
    if stand_in_id {
        steps.push(Step::StandInId);
    }
    if let Some(hit) = d.holdout {
        let h = hit.holdout;
        steps.push(Step::Holdout {
            holdout: h.key().to_owned(),
            bucket: bucket(h.salt(), unit),
            share_bp: h.share_bp(),
            held_out: hit.held_out,
        });
        if hit.held_out {
            return;
        }
    }
    if let Some(cond) = &def.targeting {
        let matched = condition_matches(defs, cond, ctx);
        steps.push(Step::ExperimentTargeting { matched });
        if !matched {
            return;
        }
    }
    let allocated =
        match exp.layer() {
            Some(layer_key) => {
                let Some((layer, range)) = defs.layers.iter().find(|l| l.key == layer_key).and_then(|l| {
                    l.experiments.iter().find(|r| r.experiment == def.key).map(|r| (l, r.range))
                }) else {
                    return;
                };
                let b = bucket(&layer.salt, unit);
                let allocated = (range[0]..range[1]).contains(&b);
                steps.push(Step::Layer { layer: layer.key.clone(), bucket: b, range, allocated });
                allocated
            }
            None => {
                let traffic_bp = def.traffic_bp.unwrap_or(10_000);
                let b = bucket(exp.id_text(), unit);
                let allocated = traffic_bp > 0 && b < traffic_bp;
                steps.push(Step::Traffic { bucket: b, traffic_bp, allocated });
                allocated
            }
        };
    if !allocated {
        return;
    }
    let b = bucket(def.salt.as_deref().unwrap_or(exp.id_text()), unit);
    let mut start = 0;
    for (variant, weight) in exp.variants() {
        let end = start + weight;
        if b < end {
            steps.push(Step::Variant { bucket: b, range: [start, end], variant: variant.to_owned() });
            return;
        }
        start = end;
    }
}

/// Whether `cond` matches `ctx` in the environment `defs` (its segments): cohort-core decides,
/// through a flag with that one rule compiled next to the definitions.
fn condition_matches(defs: &Definitions, cond: &Condition, ctx: &Context) -> bool {
    let mut key = "cohortctl-condition".to_owned();
    while defs.flags.iter().any(|f| f.key == key) || defs.experiments.iter().any(|e| e.key == key) {
        key.push('-');
    }
    let probe = serde_json::json!({
        "key": key,
        "type": "boolean",
        "variations": [{"key": "yes", "value": true}, {"key": "no", "value": false}],
        "rules": [{"condition": cond, "serve": {"variation": "yes"}}],
        "default": {"variation": "no"},
    });
    let Ok(probe) = serde_json::from_value::<FlagDef>(probe) else { return false };
    let mut with_probe = defs.clone();
    with_probe.flags.push(probe);
    match cohort_core::compile(&with_probe) {
        Ok(config) => cohort_core::evaluate(&config, ctx, &key).variant == Some("yes"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
