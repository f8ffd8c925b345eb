//! Compile on write: validate definitions and build the [`CompiledConfig`] evaluation reads.
//!
//! Every problem is reported, each with the path of the field at fault, so a writer can fix
//! everything in one round trip.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet};
use std::fmt;

use regex::RegexBuilder;
use serde_json::Value;
use uuid::Uuid;

use crate::condition::{CmpOp, Cond, ScalarSet, TextOp, parse_semver_lenient};
use crate::config::{
    Allocation, CompiledConfig, CompiledExperiment, CompiledFlag, CompiledHoldout, CompiledRule,
    CompiledSegment, CompiledServe, CompiledVariant, CompiledVariation, Entry,
};
use crate::hash::{BUCKETS, MAX_UNIT_BYTES};
use crate::logic::Targeting;
use crate::model::{
    Aggregation, AnalysisMethod, Condition, Definitions, ExperimentDef, ExperimentStatus, FlagDef, FlagType,
    HoldoutDef, LayerDef, MetricDef, ScalarValue, SegmentDef, Serve, VariantDef,
};
use crate::time::parse_rfc3339_millis;

mod storable;

/// Size limits that keep one environment's config bounded in memory and evaluation time.
pub mod limits {
    pub const MAX_KEY_BYTES: usize = 128;
    pub const MAX_SALT_BYTES: usize = 64;
    pub const MAX_ATTRIBUTE_BYTES: usize = 256;
    pub const MAX_STRING_BYTES: usize = 4096;
    pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
    pub const MAX_ENTRIES: usize = 20_000;
    pub const MAX_SEGMENTS: usize = 10_000;
    pub const MAX_LAYERS: usize = 1_000;
    pub const MAX_METRICS: usize = 10_000;
    /// Longest metric window: a year.
    pub const MAX_WINDOW_SECONDS: u64 = 366 * 86_400;
    pub const MAX_VARIATIONS: usize = 100;
    pub const MAX_VARIANTS: usize = 20;
    pub const MAX_RULES: usize = 1_000;
    pub const MAX_CONDITION_DEPTH: usize = 16;
    pub const MAX_LIST_VALUES: usize = 10_000;
    pub const MAX_SEGMENT_UNITS: usize = 100_000;
    pub const MAX_REGEX_BYTES: usize = 1024;
    /// Compiled program size per regex, so a pattern cannot blow up memory or matching time.
    pub const MAX_REGEX_PROGRAM_BYTES: usize = 256 * 1024;
    pub const MAX_METRICS_PER_EXPERIMENT: usize = 20;
    pub const MAX_HOLDOUTS: usize = 1_000;
    /// The largest share a holdout may keep out: half the units.
    pub const MAX_HOLDOUT_SHARE_BP: u32 = 5_000;
    pub const MAX_BREAKDOWN_ATTRIBUTES: usize = 5;
}
use limits::*;

/// One problem in a set of definitions: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where, e.g. `experiments[3].variants[1].weight_bp`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a set of definitions (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Validates definitions and compiles them, or reports every problem found.
pub fn compile(defs: &Definitions) -> Result<CompiledConfig, ConfigErrors> {
    let mut c = Compiler { errors: Vec::new(), segment_index: HashMap::new(), metric_keys: HashSet::new() };
    let config = c.definitions(defs);
    if c.errors.is_empty() { Ok(config) } else { Err(ConfigErrors(c.errors)) }
}

struct Compiler<'d> {
    errors: Vec<ConfigError>,
    segment_index: HashMap<&'d str, usize>,
    metric_keys: HashSet<&'d str>,
}

impl<'d> Compiler<'d> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }

    fn definitions(&mut self, defs: &'d Definitions) -> CompiledConfig {
        self.limit("flags", defs.flags.len() + defs.experiments.len(), MAX_ENTRIES, "flags and experiments");
        self.limit("segments", defs.segments.len(), MAX_SEGMENTS, "segments");
        self.limit("layers", defs.layers.len(), MAX_LAYERS, "layers");
        self.limit("metrics", defs.metrics.len(), MAX_METRICS, "metrics");
        self.limit("holdouts", defs.holdouts.len(), MAX_HOLDOUTS, "holdouts");
        self.storable(defs);

        // Segments first: conditions everywhere refer to them by key.
        let mut seen = HashMap::new();
        for (i, s) in defs.segments.iter().enumerate() {
            let path = format!("segments[{i}].key");
            if self.key(&path, &s.key) {
                if let Some(first) = seen.insert(s.key.as_str(), i) {
                    self.err(
                        path,
                        format!("duplicate segment key {:?}, first used by segments[{first}]", s.key),
                    );
                } else {
                    self.segment_index.insert(&s.key, i);
                }
            }
        }
        self.segment_cycles(&defs.segments);
        let segments = defs.segments.iter().enumerate().map(|(i, s)| self.segment(i, s)).collect();

        let metrics = self.metrics(&defs.metrics);
        self.metric_keys = defs.metrics.iter().map(|m| m.key.as_str()).collect();
        let layer_of = self.layers(defs);

        let mut index =
            HashMap::with_capacity_and_hasher(defs.flags.len() + defs.experiments.len(), Default::default());
        let mut owner: HashMap<&str, String> = HashMap::new();
        let mut claim = |c: &mut Self, key: &'d str, path: String, entry: Entry| {
            if let Some(first) = owner.get(key) {
                c.err(format!("{path}.key"), format!("duplicate key {key:?}, already used by {first}"));
            } else {
                owner.insert(key, path);
                index.insert(Box::from(key), entry);
            }
        };
        let mut flags = Vec::with_capacity(defs.flags.len());
        for (i, f) in defs.flags.iter().enumerate() {
            let path = format!("flags[{i}]");
            // Claimed before compiling so a duplicate is reported even when the flag is invalid;
            // the index is only used when every entry compiled.
            claim(self, &f.key, path.clone(), Entry::Flag(flags.len()));
            if let Some(flag) = self.flag(&path, f) {
                flags.push(flag);
            }
        }
        let mut experiments = Vec::with_capacity(defs.experiments.len());
        let mut ids: HashMap<Uuid, String> = HashMap::new();
        for (i, f) in defs.flags.iter().enumerate() {
            if let Some(x) = &f.experiment
                && let Some(first) = ids.insert(x.id, format!("flags[{i}]"))
            {
                self.err(
                    format!("flags[{i}].experiment.id"),
                    format!("duplicate id {}, already used by {first}", x.id),
                );
            }
        }
        for (i, e) in defs.experiments.iter().enumerate() {
            let path = format!("experiments[{i}]");
            if let Some(first) = ids.insert(e.id, path.clone()) {
                self.err(
                    format!("{path}.id"),
                    format!("duplicate experiment id {}, first used by {first}", e.id),
                );
            }
            claim(self, &e.key, path.clone(), Entry::Experiment(experiments.len()));
            if let Some(exp) = self.experiment(&path, e, layer_of.get(e.key.as_str()), &defs.metrics) {
                experiments.push(exp);
            }
        }
        let holdouts = self.holdouts(defs, &owner, &mut experiments);
        let reads_clock = flags.iter().any(|f| f.targeting.as_ref().is_some_and(|t| t.reads_clock));
        CompiledConfig {
            version: defs.version,
            index,
            flags,
            experiments,
            segments,
            metrics,
            holdouts,
            reads_clock,
        }
    }

    /// Refuses text the store cannot hold (NUL), wherever it is in a definition.
    fn storable(&mut self, defs: &Definitions) {
        fn each<T: serde::Serialize>(c: &mut Compiler<'_>, list: &str, items: &[T]) {
            for (i, item) in items.iter().enumerate() {
                for field in storable::nul_paths(item) {
                    let path =
                        if field == "." { format!("{list}[{i}]") } else { format!("{list}[{i}].{field}") };
                    c.err(path, "contains a NUL character (\\u0000), which cannot be stored");
                }
            }
        }
        each(self, "flags", &defs.flags);
        each(self, "experiments", &defs.experiments);
        each(self, "layers", &defs.layers);
        each(self, "segments", &defs.segments);
        each(self, "metrics", &defs.metrics);
        each(self, "holdouts", &defs.holdouts);
    }

    fn limit(&mut self, path: &str, len: usize, max: usize, what: &str) {
        if len > max {
            self.err(path, format!("{len} {what}, at most {max} allowed"));
        }
    }

    /// Keys: 1 to 128 bytes of `[A-Za-z0-9_.:-]`, starting with a letter or digit.
    fn key(&mut self, path: &str, key: &str) -> bool {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        let msg = if key.is_empty() {
            "must not be empty".to_owned()
        } else if key.len() > MAX_KEY_BYTES {
            format!("is {} bytes, at most {MAX_KEY_BYTES} allowed", key.len())
        } else if !key.starts_with(|c: char| c.is_ascii_alphanumeric()) || !key.chars().all(ok_char) {
            format!("{key:?} must start with a letter or digit and contain only letters, digits and _ - . :")
        } else {
            return true;
        };
        self.err(path, msg);
        false
    }

    /// Salts: `[A-Za-z0-9_-]{1,64}` (which includes hyphenated UUIDs), per the bucketing spec.
    fn salt(&mut self, path: &str, salt: &str) -> bool {
        let ok = !salt.is_empty()
            && salt.len() <= MAX_SALT_BYTES
            && salt.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            self.err(
                path,
                format!("{salt:?} is not a valid salt: 1 to {MAX_SALT_BYTES} characters of A-Z a-z 0-9 _ -"),
            );
        }
        ok
    }

    fn unique_keys<'k>(&mut self, path: impl Fn(usize) -> String, keys: impl Iterator<Item = &'k str>) {
        let mut seen = HashMap::new();
        for (i, k) in keys.enumerate() {
            if self.key(&path(i), k)
                && let Some(first) = seen.insert(k, i)
            {
                self.err(path(i), format!("duplicate key {k:?}, first used at index {first}"));
            }
        }
    }

    fn payload(&mut self, path: &str, value: &Value) -> Box<str> {
        let json = value.to_string();
        if json.len() > MAX_PAYLOAD_BYTES {
            self.err(path, format!("is {} bytes of JSON, at most {MAX_PAYLOAD_BYTES} allowed", json.len()));
        }
        json.into_boxed_str()
    }

    fn flag(&mut self, path: &str, f: &FlagDef) -> Option<CompiledFlag> {
        let before = self.errors.len();
        self.key(&format!("{path}.key"), &f.key);
        let splits = f.rules.iter().map(|r| &r.serve).chain(&f.default).any(|s| matches!(s, Serve::Split(_)));
        if splits && f.salt.is_empty() {
            self.err(format!("{path}.salt"), "a flag that serves a split needs a salt");
        } else if !f.salt.is_empty() {
            self.salt(&format!("{path}.salt"), &f.salt);
        }
        if f.variations.is_empty() {
            self.err(format!("{path}.variations"), "a flag needs at least one variation");
        }
        self.limit(&format!("{path}.variations"), f.variations.len(), MAX_VARIATIONS, "variations");
        self.limit(&format!("{path}.rules"), f.rules.len(), MAX_RULES, "rules");
        let mut seen = HashMap::new();
        for (i, v) in f.variations.iter().enumerate() {
            let vpath = format!("{path}.variations[{i}].key");
            if self.variation_key(&vpath, &v.key)
                && let Some(first) = seen.insert(v.key.as_str(), i)
            {
                self.err(vpath, format!("duplicate key {:?}, first used at index {first}", v.key));
            }
        }

        // A number flag with a fractional variation is a float flag: its whole values are
        // written `10.0`, so a client reading JSON (Python's OpenFeature providers check the
        // type) sees one type whichever variation it gets.
        let float_flag = f.flag_type == FlagType::Number
            && f.variations.iter().any(|v| v.value.as_f64().is_some_and(|x| x.fract() != 0.0));
        let mut variations = Vec::with_capacity(f.variations.len());
        for (i, v) in f.variations.iter().enumerate() {
            let vpath = format!("{path}.variations[{i}].value");
            let type_ok = match f.flag_type {
                FlagType::Boolean => v.value.is_boolean(),
                FlagType::String => v.value.is_string(),
                FlagType::Number => v.value.is_number(),
                FlagType::Json => !v.value.is_null(),
            };
            if !type_ok {
                self.err(&vpath, format!("{} is not a {} value", v.value, f.flag_type.as_str()));
            }
            let json = match v.value.as_f64() {
                Some(x) if float_flag && (v.value.is_i64() || v.value.is_u64()) => {
                    self.payload(&vpath, &Value::from(x))
                }
                _ => self.payload(&vpath, &v.value),
            };
            variations.push(CompiledVariation { key: v.key.as_str().into(), value: v.value.clone(), json });
        }
        let find = |key: &str| f.variations.iter().position(|v| v.key == key);
        let off = f.off_variation.as_ref().map(|key| {
            let index = find(key);
            if index.is_none() {
                self.err(format!("{path}.off_variation"), format!("unknown variation {key:?}"));
            }
            index
        });
        let mut rules = Vec::with_capacity(f.rules.len());
        let mut rule_ids = HashSet::new();
        for (i, r) in f.rules.iter().enumerate() {
            let rpath = format!("{path}.rules[{i}]");
            let id = r.id.clone().unwrap_or_else(|| i.to_string());
            if r.id.is_some() && self.key(&format!("{rpath}.id"), &id) && !rule_ids.insert(id.clone()) {
                self.err(format!("{rpath}.id"), format!("duplicate rule id {id:?}"));
            }
            let cond = self.condition(&format!("{rpath}.condition"), &r.condition, 0);
            let serve = self.serve(&format!("{rpath}.serve"), &r.serve, &find);
            if let (Some(cond), Some(serve)) = (cond, serve) {
                rules.push(CompiledRule { id: id.into(), cond, serve });
            }
        }
        let targeting = self.targeting(path, f);
        let experiment = match (&f.experiment, &targeting) {
            (Some(_), Some(t)) => self.flag_experiment(path, f, t.as_ref()),
            _ => None,
        };
        let default = f.default.as_ref().map(|d| self.serve(&format!("{path}.default"), d, &find));
        let mut metadata = serde_json::Map::new();
        for (field, map) in [("flag_set_metadata", &f.flag_set_metadata), ("metadata", &f.metadata)] {
            for (k, v) in map {
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    self.err(
                        format!("{path}.{field}.{k}"),
                        format!("{v} is not a metadata value: a string, number or boolean"),
                    );
                }
                metadata.insert(k.clone(), v.clone());
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(CompiledFlag {
            key: f.key.as_str().into(),
            flag_type: f.flag_type,
            salt: f.salt.as_str().into(),
            enabled: f.enabled,
            variations,
            off: off.flatten(),
            rules,
            targeting: targeting.flatten(),
            default: default.flatten(),
            metadata,
            experiment,
        })
    }

    /// A flag's split as the experiment its exposures name: the one `fractional` that decides
    /// the targeting's result, with written-out variations and weights.
    fn flag_experiment(
        &mut self,
        path: &str,
        f: &FlagDef,
        t: Option<&Targeting>,
    ) -> Option<CompiledExperiment> {
        let x = f.experiment.as_ref()?;
        let xpath = format!("{path}.experiment");
        let split = match split_of(t) {
            Ok(split) => split,
            Err(why) => {
                self.err(&xpath, why);
                return None;
            }
        };
        self.limit(&format!("{xpath}.metrics"), x.metrics.len(), MAX_METRICS_PER_EXPERIMENT, "metrics");
        let mut seen = HashSet::new();
        for (i, m) in x.metrics.iter().enumerate() {
            if !self.metric_keys.contains(m.as_str()) {
                self.err(format!("{xpath}.metrics[{i}]"), format!("unknown metric {m:?}"));
            } else if !seen.insert(m) {
                self.err(format!("{xpath}.metrics[{i}]"), format!("metric {m:?} is listed twice"));
            }
        }
        if let Some(mde) = x.minimum_detectable_effect
            && !(mde > 0.0 && mde <= 10.0)
        {
            self.err(
                format!("{xpath}.minimum_detectable_effect"),
                format!("{mde} must be a relative effect above 0 and at most 10 (1000 %)"),
            );
        }
        let bp = split_basis_points(split);
        let mut control = 0;
        if let Some(c) = &x.control {
            match split.iter().position(|(v, _)| f.variations[*v].key == *c) {
                Some(i) => control = i,
                None => self
                    .err(format!("{xpath}.control"), format!("{c:?} is not a variation the split assigns")),
            }
        }
        let id_text = x.id.hyphenated().to_string();
        let mut upper = 0;
        let variants = split
            .iter()
            .zip(&bp)
            .map(|((v, _), weight_bp)| {
                upper += weight_bp;
                let variation = &f.variations[*v];
                CompiledVariant {
                    key: variation.key.as_str().into(),
                    weight_bp: *weight_bp,
                    upper,
                    payload: variation.value.clone(),
                    json: variation.value.to_string().into(),
                }
            })
            .collect();
        Some(CompiledExperiment {
            id: x.id,
            id_text: id_text.into(),
            key: f.key.as_str().into(),
            salt: Box::from(""),
            status: ExperimentStatus::Running,
            allocation: Allocation::Traffic(BUCKETS),
            variants,
            control,
            targeting: None,
            primary_metrics: x.metrics.clone(),
            guardrail_metrics: Vec::new(),
            breakdown_attributes: Vec::new(),
            holdout: None,
        })
    }

    /// A variation key: flagd's variants are any name, so 1 to 128 bytes with no control
    /// characters (exposures and results carry it).
    fn variation_key(&mut self, path: &str, key: &str) -> bool {
        let msg = if key.is_empty() {
            "must not be empty".to_owned()
        } else if key.len() > MAX_KEY_BYTES {
            format!("is {} bytes, at most {MAX_KEY_BYTES} allowed", key.len())
        } else if key.chars().any(char::is_control) {
            format!("{key:?} must not contain control characters")
        } else {
            return true;
        };
        self.err(path, msg);
        false
    }

    /// Compiles a flag's JSONLogic targeting; `Some(None)` when it has none that does anything.
    fn targeting(&mut self, path: &str, f: &FlagDef) -> Option<Option<Targeting>> {
        if !f.evaluators.is_empty() && f.targeting.is_none() {
            self.err(format!("{path}.evaluators"), "evaluators are for targeting, and this flag has none");
        }
        let logic = f.targeting.as_ref()?;
        if !f.rules.is_empty() {
            self.err(format!("{path}.targeting"), "a flag has rules or targeting, not both");
            return None;
        }
        let names: Vec<&str> = f.variations.iter().map(|v| v.key.as_str()).collect();
        match crate::logic::compile_targeting(
            logic,
            &format!("{path}.targeting"),
            &f.evaluators,
            &format!("{path}.evaluators"),
            &names,
        ) {
            Ok(t) => Some(t),
            Err(errors) => {
                for e in errors {
                    self.err(e.path, e.message);
                }
                None
            }
        }
    }

    fn serve(
        &mut self,
        path: &str,
        serve: &Serve,
        find: &impl Fn(&str) -> Option<usize>,
    ) -> Option<CompiledServe> {
        match serve {
            Serve::Variation(key) => {
                let index = find(key);
                if index.is_none() {
                    self.err(format!("{path}.variation"), format!("unknown variation {key:?}"));
                }
                Some(CompiledServe::Variation(index?))
            }
            Serve::Split(parts) => {
                if parts.is_empty() {
                    self.err(format!("{path}.split"), "a split needs at least one variation");
                    return None;
                }
                let before = self.errors.len();
                let mut upper = 0u64;
                let mut bounds = Vec::with_capacity(parts.len());
                let mut seen = HashSet::new();
                for (i, p) in parts.iter().enumerate() {
                    let ppath = format!("{path}.split[{i}]");
                    match find(&p.variation) {
                        Some(index) => {
                            if !seen.insert(index) {
                                self.err(
                                    format!("{ppath}.variation"),
                                    format!("variation {:?} appears twice in the split", p.variation),
                                );
                            }
                            upper += u64::from(p.weight_bp);
                            bounds.push((upper.min(u64::from(BUCKETS)) as u32, index));
                        }
                        None => self.err(
                            format!("{ppath}.variation"),
                            format!("unknown variation {:?}", p.variation),
                        ),
                    }
                }
                if upper != u64::from(BUCKETS) && self.errors.len() == before {
                    self.err(
                        format!("{path}.split[{}].weight_bp", parts.len() - 1),
                        format!("weights sum to {upper}, expected {BUCKETS}"),
                    );
                }
                (self.errors.len() == before).then(|| CompiledServe::Split(bounds.into()))
            }
        }
    }

    fn experiment(
        &mut self,
        path: &str,
        e: &ExperimentDef,
        layer: Option<&LayerSlot>,
        metrics: &[MetricDef],
    ) -> Option<CompiledExperiment> {
        let before = self.errors.len();
        let id_text = e.id.hyphenated().to_string();
        self.key(&format!("{path}.key"), &e.key);
        let salt = e.salt.clone().unwrap_or_else(|| id_text.clone());
        self.salt(&format!("{path}.salt"), &salt);

        let vpath = format!("{path}.variants");
        if e.variants.len() < 2 {
            self.err(&vpath, "an experiment needs at least two variants");
        }
        self.limit(&vpath, e.variants.len(), MAX_VARIANTS, "variants");
        self.unique_keys(|i| format!("{vpath}[{i}].key"), e.variants.iter().map(|v| v.key.as_str()));
        let mut upper = 0u64;
        let mut variants = Vec::with_capacity(e.variants.len());
        let mut control = None;
        for (i, v) in e.variants.iter().enumerate() {
            if v.weight_bp > BUCKETS {
                self.err(
                    format!("{vpath}[{i}].weight_bp"),
                    format!("{} is more than {BUCKETS}", v.weight_bp),
                );
            }
            upper += u64::from(v.weight_bp);
            if v.control {
                match control {
                    Some(first) => self.err(
                        format!("{vpath}[{i}].control"),
                        format!("only one variant can be the control, and variants[{first}] already is"),
                    ),
                    None => control = Some(i),
                }
            }
            let json = self.payload(&format!("{vpath}[{i}].payload"), &v.payload);
            variants.push(CompiledVariant {
                key: v.key.as_str().into(),
                weight_bp: v.weight_bp,
                upper: upper.min(u64::from(BUCKETS)) as u32,
                payload: v.payload.clone(),
                json,
            });
        }
        if !e.variants.is_empty() && upper != u64::from(BUCKETS) {
            self.err(
                format!("{vpath}[{}].weight_bp", e.variants.len() - 1),
                format!("weights sum to {upper}, expected {BUCKETS}"),
            );
        }

        let allocation = match (layer, e.traffic_bp) {
            (Some(slot), Some(_)) => {
                self.err(
                    format!("{path}.traffic_bp"),
                    format!(
                        "the experiment is in layer {:?}, whose range sets its traffic; remove traffic_bp",
                        slot.layer
                    ),
                );
                None
            }
            (Some(slot), None) => Some(Allocation::Layer {
                layer: slot.layer.as_str().into(),
                salt: slot.salt.as_str().into(),
                start: slot.start,
                end: slot.end,
            }),
            (None, traffic) => {
                let bp = traffic.unwrap_or(BUCKETS);
                if bp > BUCKETS {
                    self.err(format!("{path}.traffic_bp"), format!("{bp} is more than {BUCKETS}"));
                }
                Some(Allocation::Traffic(bp))
            }
        };

        let targeting = match &e.targeting {
            Some(cond) => Some(self.condition(&format!("{path}.targeting"), cond, 0)?),
            None => None,
        };
        for (field, list) in
            [("primary_metrics", &e.primary_metrics), ("guardrail_metrics", &e.guardrail_metrics)]
        {
            self.limit(&format!("{path}.{field}"), list.len(), MAX_METRICS_PER_EXPERIMENT, "metrics");
            let mut seen = HashSet::new();
            for (i, m) in list.iter().enumerate() {
                let mpath = format!("{path}.{field}[{i}]");
                if !metrics.iter().any(|d| d.key == *m) {
                    self.err(mpath, format!("unknown metric {m:?}"));
                } else if !seen.insert(m) {
                    self.err(mpath, format!("metric {m:?} is listed twice"));
                }
            }
        }
        if let Some(mde) = e.minimum_detectable_effect
            && !(mde > 0.0 && mde <= 10.0)
        {
            self.err(
                format!("{path}.minimum_detectable_effect"),
                format!("{mde} must be a relative effect above 0 and at most 10 (1000 %)"),
            );
        }
        if let Some(n) = e.planned_units_per_variant
            && n < 100
        {
            self.err(
                format!("{path}.planned_units_per_variant"),
                format!("{n} is too few; plan at least 100"),
            );
        }
        let bpath = format!("{path}.breakdown_attributes");
        self.limit(&bpath, e.breakdown_attributes.len(), MAX_BREAKDOWN_ATTRIBUTES, "breakdown attributes");
        let mut seen = HashSet::new();
        for (i, a) in e.breakdown_attributes.iter().enumerate() {
            if self.attribute(&format!("{bpath}[{i}]"), a) && !seen.insert(a) {
                self.err(format!("{bpath}[{i}]"), format!("attribute {a:?} is listed twice"));
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(CompiledExperiment {
            id: e.id,
            id_text: id_text.into(),
            key: e.key.as_str().into(),
            salt: salt.into(),
            status: e.status,
            allocation: allocation?,
            variants,
            control: control.unwrap_or(0),
            targeting,
            primary_metrics: e.primary_metrics.clone(),
            guardrail_metrics: e.guardrail_metrics.clone(),
            breakdown_attributes: e.breakdown_attributes.clone(),
            holdout: None,
        })
    }

    /// Validates holdouts, then points each experiment at the enabled holdout whose scope it
    /// is in. `owner` holds the flag and experiment keys: results are looked up by key, so a
    /// holdout's key must name nothing else.
    fn holdouts(
        &mut self,
        defs: &'d Definitions,
        owner: &HashMap<&str, String>,
        experiments: &mut [CompiledExperiment],
    ) -> Vec<CompiledHoldout> {
        let layer_keys: HashSet<&str> = defs.layers.iter().map(|l| l.key.as_str()).collect();
        // Exposures carry the holdout's id as their experiment id.
        let mut ids: HashMap<Uuid, String> = HashMap::new();
        for (i, e) in defs.experiments.iter().enumerate() {
            ids.entry(e.id).or_insert_with(|| format!("experiments[{i}]"));
        }
        for (i, f) in defs.flags.iter().enumerate() {
            if let Some(x) = &f.experiment {
                ids.entry(x.id).or_insert_with(|| format!("flags[{i}]"));
            }
        }
        let mut keys = HashMap::new();
        let mut compiled = Vec::with_capacity(defs.holdouts.len());
        let mut compiled_index = HashMap::new();
        for (i, h) in defs.holdouts.iter().enumerate() {
            let path = format!("holdouts[{i}]");
            let before = self.errors.len();
            let kpath = format!("{path}.key");
            if self.key(&kpath, &h.key) {
                if let Some(first) = owner.get(h.key.as_str()) {
                    self.err(kpath, format!("duplicate key {:?}, already used by {first}", h.key));
                } else if let Some(first) = keys.insert(h.key.as_str(), i) {
                    self.err(
                        kpath,
                        format!("duplicate holdout key {:?}, first used by holdouts[{first}]", h.key),
                    );
                }
            }
            match ids.entry(h.id) {
                MapEntry::Occupied(first) => {
                    self.err(
                        format!("{path}.id"),
                        format!("duplicate id {}, already used by {}", h.id, first.get()),
                    );
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(path.clone());
                }
            }
            let id_text = h.id.hyphenated().to_string();
            let salt = h.salt.clone().unwrap_or_else(|| id_text.clone());
            self.salt(&format!("{path}.salt"), &salt);
            if !(1..=MAX_HOLDOUT_SHARE_BP).contains(&h.share_bp) {
                self.err(
                    format!("{path}.share_bp"),
                    format!("{} must be 1 to {MAX_HOLDOUT_SHARE_BP} basis points", h.share_bp),
                );
            }
            let mut seen = HashSet::new();
            for (j, l) in h.layers.iter().enumerate() {
                let lpath = format!("{path}.layers[{j}]");
                if !layer_keys.contains(l.as_str()) {
                    self.err(lpath, format!("unknown layer {l:?}"));
                } else if !seen.insert(l) {
                    self.err(lpath, format!("layer {l:?} is listed twice"));
                }
            }
            self.limit(&format!("{path}.metrics"), h.metrics.len(), MAX_METRICS_PER_EXPERIMENT, "metrics");
            let mut seen = HashSet::new();
            for (j, m) in h.metrics.iter().enumerate() {
                let mpath = format!("{path}.metrics[{j}]");
                if !defs.metrics.iter().any(|d| d.key == *m) {
                    self.err(mpath, format!("unknown metric {m:?}"));
                } else if !seen.insert(m) {
                    self.err(mpath, format!("metric {m:?} is listed twice"));
                }
            }
            if let Some(mde) = h.minimum_detectable_effect
                && !(mde > 0.0 && mde <= 10.0)
            {
                self.err(
                    format!("{path}.minimum_detectable_effect"),
                    format!("{mde} must be a relative effect above 0 and at most 10 (1000 %)"),
                );
            }
            if self.errors.len() == before {
                compiled_index.insert(i, compiled.len());
                compiled.push(CompiledHoldout {
                    id: h.id,
                    id_text: id_text.into(),
                    key: h.key.as_str().into(),
                    salt: salt.into(),
                    share_bp: h.share_bp,
                    enabled: h.enabled,
                    layers: h.layers.clone(),
                    metrics: h.metrics.clone(),
                });
            }
        }
        self.holdout_scopes(&defs.holdouts);

        // Exact only when every holdout compiled; otherwise the config is discarded anyway.
        let mut wide = None;
        let mut by_layer: HashMap<&str, usize> = HashMap::new();
        for (i, h) in defs.holdouts.iter().enumerate().filter(|(_, h)| h.enabled) {
            let Some(&c) = compiled_index.get(&i) else { continue };
            if h.layers.is_empty() {
                wide.get_or_insert(c);
            }
            for l in &h.layers {
                by_layer.entry(l.as_str()).or_insert(c);
            }
        }
        for exp in experiments {
            exp.holdout = wide.or_else(|| exp.layer().and_then(|l| by_layer.get(l).copied()));
        }
        compiled
    }

    /// An experiment may be in the scope of one enabled holdout at most, so whether a unit is
    /// held out never depends on which holdout is asked. Both holdouts of a clash are
    /// reported, each naming the other, so whoever wrote either one sees it.
    fn holdout_scopes(&mut self, holdouts: &[HoldoutDef]) {
        const RULE: &str = "an experiment may be in the scope of one enabled holdout at most";
        let enabled: Vec<(usize, &HoldoutDef)> =
            holdouts.iter().enumerate().filter(|(_, h)| h.enabled).collect();
        let wide: Vec<usize> = enabled.iter().filter(|(_, h)| h.layers.is_empty()).map(|(i, _)| *i).collect();
        let mut by_layer: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, h) in &enabled {
            for l in &h.layers {
                let list = by_layer.entry(l.as_str()).or_default();
                if list.last() != Some(i) {
                    list.push(*i);
                }
            }
        }
        for &(i, h) in &enabled {
            let path = format!("holdouts[{i}].layers");
            if h.layers.is_empty() {
                if let Some((_, other)) = enabled.iter().find(|(j, _)| *j != i) {
                    self.err(
                        path,
                        format!(
                            "with no layers it covers every experiment, and enabled holdout {:?} covers some of them; {RULE}",
                            other.key
                        ),
                    );
                }
            } else if let Some(&j) = wide.first() {
                self.err(
                    path,
                    format!(
                        "enabled holdout {:?} has no layers, so it covers every experiment already; {RULE}",
                        holdouts[j].key
                    ),
                );
            } else {
                for (k, l) in h.layers.iter().enumerate() {
                    let others = by_layer.get(l.as_str()).map_or(&[][..], Vec::as_slice);
                    if let Some(&j) = others.iter().find(|&&j| j != i) {
                        self.err(
                            format!("{path}[{k}]"),
                            format!("layer {l:?} is also in enabled holdout {:?}; {RULE}", holdouts[j].key),
                        );
                    }
                }
            }
        }
    }

    /// Validates layers and returns, per experiment key, the slot it holds in its layer.
    fn layers(&mut self, defs: &'d Definitions) -> HashMap<&'d str, LayerSlot> {
        let experiments: HashMap<&str, &ExperimentDef> =
            defs.experiments.iter().map(|e| (e.key.as_str(), e)).collect();
        let mut slots: HashMap<&str, LayerSlot> = HashMap::new();
        let mut keys = HashMap::new();
        for (li, layer) in defs.layers.iter().enumerate() {
            let path = format!("layers[{li}]");
            if self.key(&format!("{path}.key"), &layer.key)
                && let Some(first) = keys.insert(layer.key.as_str(), li)
            {
                self.err(
                    format!("{path}.key"),
                    format!("duplicate layer key {:?}, first used by layers[{first}]", layer.key),
                );
            }
            self.salt(&format!("{path}.salt"), &layer.salt);
            self.layer_ranges(&path, layer, &experiments, &mut slots);
        }
        slots
    }

    fn layer_ranges(
        &mut self,
        path: &str,
        layer: &'d LayerDef,
        experiments: &HashMap<&str, &ExperimentDef>,
        slots: &mut HashMap<&'d str, LayerSlot>,
    ) {
        let mut live: Vec<(usize, u32, u32)> = Vec::new();
        for (i, r) in layer.experiments.iter().enumerate() {
            let rpath = format!("{path}.experiments[{i}]");
            let [start, end] = r.range;
            let Some(exp) = experiments.get(r.experiment.as_str()) else {
                self.err(format!("{rpath}.experiment"), format!("unknown experiment {:?}", r.experiment));
                continue;
            };
            if start >= end || end > BUCKETS {
                self.err(
                    format!("{rpath}.range"),
                    format!("[{start}, {end}) is not a range within [0, {BUCKETS})"),
                );
                continue;
            }
            if exp.status.is_live() {
                if let Some((other, s, e)) = live.iter().find(|(_, s, e)| start < *e && *s < end) {
                    self.err(
                        format!("{rpath}.range"),
                        format!(
                            "[{start}, {end}) overlaps [{s}, {e}) of live experiment {:?}",
                            layer.experiments[*other].experiment
                        ),
                    );
                    continue;
                }
                live.push((i, start, end));
            }
            let slot = LayerSlot { layer: layer.key.clone(), salt: layer.salt.clone(), start, end };
            if let Some(prev) = slots.insert(r.experiment.as_str(), slot) {
                self.err(
                    format!("{rpath}.experiment"),
                    format!("experiment {:?} is already in layer {:?}", r.experiment, prev.layer),
                );
            }
        }
    }

    fn metrics(&mut self, metrics: &[MetricDef]) -> Vec<MetricDef> {
        self.unique_keys(|i| format!("metrics[{i}].key"), metrics.iter().map(|m| m.key.as_str()));
        for (i, m) in metrics.iter().enumerate() {
            self.event_name(&format!("metrics[{i}].event"), &m.event);
            match (&m.ratio, m.aggregation) {
                (None, Aggregation::Ratio) => self.err(
                    format!("metrics[{i}].ratio"),
                    "a ratio metric needs its denominator: {\"denominator_event\": ...}",
                ),
                (Some(r), Aggregation::Ratio) => {
                    self.event_name(&format!("metrics[{i}].ratio.denominator_event"), &r.denominator_event)
                }
                (Some(_), other) => self.err(
                    format!("metrics[{i}].ratio"),
                    format!("only ratio metrics have a ratio (this one is {})", other.as_str()),
                ),
                (None, _) => {}
            }
            if let Some(c) = &m.cuped {
                if matches!(m.aggregation, Aggregation::Mean | Aggregation::Ratio) {
                    self.err(
                        format!("metrics[{i}].cuped"),
                        format!(
                            "CUPED adjusts conversion, count and sum metrics, not {} metrics",
                            m.aggregation.as_str()
                        ),
                    );
                }
                if !(1..=MAX_WINDOW_SECONDS).contains(&c.pre_period_seconds) {
                    self.err(
                        format!("metrics[{i}].cuped.pre_period_seconds"),
                        format!(
                            "{} must be 1 to {MAX_WINDOW_SECONDS} seconds (a year)",
                            c.pre_period_seconds
                        ),
                    );
                }
            }
            if let Some(w) = m.window_seconds
                && !(1..=MAX_WINDOW_SECONDS).contains(&w)
            {
                self.err(
                    format!("metrics[{i}].window_seconds"),
                    format!("{w} must be 1 to {MAX_WINDOW_SECONDS} seconds (a year)"),
                );
            }
            if let Some(t) = m.guardrail_threshold
                && (!t.is_finite() || t < 0.0)
            {
                self.err(
                    format!("metrics[{i}].guardrail_threshold"),
                    format!("{t} must be a finite, non-negative relative change"),
                );
            }
        }
        metrics.to_vec()
    }

    /// An event name a metric reads: stream keys separate it from its span with a control
    /// character, so it holds none.
    fn event_name(&mut self, path: &str, event: &str) {
        if event.is_empty() || event.len() > MAX_KEY_BYTES {
            self.err(path.to_owned(), format!("must be 1 to {MAX_KEY_BYTES} bytes"));
        } else if event.chars().any(char::is_control) {
            self.err(path.to_owned(), "must not contain control characters");
        }
    }

    fn segment(&mut self, i: usize, s: &SegmentDef) -> CompiledSegment {
        let path = format!("segments[{i}]");
        let mut units = |field: &str, list: &[String]| -> Box<[Box<str>]> {
            self.limit(&format!("{path}.{field}"), list.len(), MAX_SEGMENT_UNITS, "units");
            for (j, u) in list.iter().enumerate() {
                if u.is_empty() || u.len() > MAX_UNIT_BYTES {
                    self.err(
                        format!("{path}.{field}[{j}]"),
                        format!("a unit id must be 1 to {MAX_UNIT_BYTES} bytes"),
                    );
                }
            }
            let mut sorted: Vec<Box<str>> = list.iter().map(|u| u.as_str().into()).collect();
            sorted.sort_unstable();
            sorted.dedup();
            sorted.into()
        };
        let include = units("include", &s.include);
        let exclude = units("exclude", &s.exclude);
        let cond = s.condition.as_ref().and_then(|c| self.condition(&format!("{path}.condition"), c, 0));
        CompiledSegment { include, exclude, cond }
    }

    /// Reports each cycle of segments that refer to each other through `in_segment`.
    fn segment_cycles(&mut self, segments: &[SegmentDef]) {
        fn refs<'a>(c: &'a Condition, out: &mut Vec<&'a str>) {
            match c {
                Condition::All { conditions } | Condition::Any { conditions } => {
                    conditions.iter().for_each(|c| refs(c, out));
                }
                Condition::Not { condition } => refs(condition, out),
                Condition::InSegment { segment } => out.push(segment),
                _ => {}
            }
        }
        let edges: Vec<Vec<usize>> = segments
            .iter()
            .map(|s| {
                let mut out = Vec::new();
                if let Some(c) = &s.condition {
                    refs(c, &mut out);
                }
                out.iter().filter_map(|k| self.segment_index.get(k).copied()).collect()
            })
            .collect();
        // Iterative DFS with colours: 0 unvisited, 1 on the stack, 2 done.
        let mut colour = vec![0u8; segments.len()];
        for root in 0..segments.len() {
            if colour[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            colour[root] = 1;
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                if let Some(&child) = edges[node].get(*next) {
                    *next += 1;
                    match colour[child] {
                        0 => {
                            colour[child] = 1;
                            stack.push((child, 0));
                        }
                        1 => {
                            let start = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                            let mut names: Vec<&str> =
                                stack[start..].iter().map(|(n, _)| segments[*n].key.as_str()).collect();
                            names.push(&segments[child].key);
                            self.err(
                                format!("segments[{node}].condition"),
                                format!("segments refer to each other in a cycle: {}", names.join(" -> ")),
                            );
                        }
                        _ => {}
                    }
                } else {
                    colour[node] = 2;
                    stack.pop();
                }
            }
        }
    }

    fn attribute(&mut self, path: &str, name: &str) -> bool {
        let ok = !name.is_empty() && name.len() <= MAX_ATTRIBUTE_BYTES;
        if !ok {
            self.err(path, format!("an attribute name must be 1 to {MAX_ATTRIBUTE_BYTES} bytes"));
        }
        ok
    }

    fn text(&mut self, path: &str, value: &str) -> bool {
        let ok = value.len() <= MAX_STRING_BYTES;
        if !ok {
            self.err(path, format!("is {} bytes, at most {MAX_STRING_BYTES} allowed", value.len()));
        }
        ok
    }

    fn scalar(&mut self, path: &str, value: &ScalarValue) -> bool {
        match value {
            ScalarValue::String(s) => self.text(path, s),
            ScalarValue::Number(n) if !n.is_finite() => {
                self.err(path, format!("{n} is not a finite number"));
                false
            }
            _ => true,
        }
    }

    fn condition(&mut self, path: &str, c: &Condition, depth: usize) -> Option<Cond> {
        if depth >= MAX_CONDITION_DEPTH {
            self.err(path, format!("conditions nest more than {MAX_CONDITION_DEPTH} deep"));
            return None;
        }
        let before = self.errors.len();
        let attr = |c: &mut Self, a: &str| -> Box<str> {
            c.attribute(&format!("{path}.attribute"), a);
            a.into()
        };
        let cond = match c {
            Condition::All { conditions } | Condition::Any { conditions } => {
                let children: Vec<Cond> = conditions
                    .iter()
                    .enumerate()
                    .filter_map(|(i, child)| {
                        self.condition(&format!("{path}.conditions[{i}]"), child, depth + 1)
                    })
                    .collect();
                let children = children.into_boxed_slice();
                if matches!(c, Condition::All { .. }) { Cond::All(children) } else { Cond::Any(children) }
            }
            Condition::Not { condition } => {
                Cond::Not(Box::new(self.condition(&format!("{path}.condition"), condition, depth + 1)?))
            }
            Condition::Equals { attribute, value } | Condition::NotEquals { attribute, value } => {
                self.scalar(&format!("{path}.value"), value);
                Cond::Equals {
                    attr: attr(self, attribute),
                    value: value.clone().into(),
                    negate: matches!(c, Condition::NotEquals { .. }),
                }
            }
            Condition::In { attribute, values } | Condition::NotIn { attribute, values } => {
                self.limit(&format!("{path}.values"), values.len(), MAX_LIST_VALUES, "values");
                for (i, v) in values.iter().enumerate() {
                    self.scalar(&format!("{path}.values[{i}]"), v);
                }
                Cond::In {
                    attr: attr(self, attribute),
                    set: ScalarSet::new(values.clone()),
                    negate: matches!(c, Condition::NotIn { .. }),
                }
            }
            Condition::Contains { attribute, value }
            | Condition::StartsWith { attribute, value }
            | Condition::EndsWith { attribute, value } => {
                self.text(&format!("{path}.value"), value);
                let op = match c {
                    Condition::Contains { .. } => TextOp::Contains,
                    Condition::StartsWith { .. } => TextOp::StartsWith,
                    _ => TextOp::EndsWith,
                };
                Cond::Text { attr: attr(self, attribute), op, value: value.as_str().into() }
            }
            Condition::Matches { attribute, pattern } => {
                let attr = attr(self, attribute);
                if pattern.len() > MAX_REGEX_BYTES {
                    self.err(
                        format!("{path}.pattern"),
                        format!("is {} bytes, at most {MAX_REGEX_BYTES} allowed", pattern.len()),
                    );
                    return None;
                }
                match RegexBuilder::new(pattern)
                    .size_limit(MAX_REGEX_PROGRAM_BYTES)
                    .dfa_size_limit(MAX_REGEX_PROGRAM_BYTES)
                    .build()
                {
                    Ok(re) => Cond::Regex { attr, re },
                    Err(e) => {
                        let msg = e.to_string().lines().last().unwrap_or("invalid").trim().to_owned();
                        self.err(format!("{path}.pattern"), format!("invalid regular expression: {msg}"));
                        return None;
                    }
                }
            }
            Condition::Lt { attribute, value }
            | Condition::Lte { attribute, value }
            | Condition::Gt { attribute, value }
            | Condition::Gte { attribute, value } => {
                if !value.is_finite() {
                    self.err(format!("{path}.value"), format!("{value} is not a finite number"));
                }
                let op = match c {
                    Condition::Lt { .. } => CmpOp::Lt,
                    Condition::Lte { .. } => CmpOp::Lte,
                    Condition::Gt { .. } => CmpOp::Gt,
                    _ => CmpOp::Gte,
                };
                Cond::Number { attr: attr(self, attribute), op, value: *value }
            }
            Condition::SemverEq { attribute, value }
            | Condition::SemverLt { attribute, value }
            | Condition::SemverLte { attribute, value }
            | Condition::SemverGt { attribute, value }
            | Condition::SemverGte { attribute, value } => {
                let op = match c {
                    Condition::SemverEq { .. } => CmpOp::Eq,
                    Condition::SemverLt { .. } => CmpOp::Lt,
                    Condition::SemverLte { .. } => CmpOp::Lte,
                    Condition::SemverGt { .. } => CmpOp::Gt,
                    _ => CmpOp::Gte,
                };
                let attr = attr(self, attribute);
                let Some(version) = parse_semver_lenient(value) else {
                    self.err(format!("{path}.value"), format!("{value:?} is not a semantic version"));
                    return None;
                };
                Cond::Semver { attr, op, value: version }
            }
            Condition::Before { attribute, value } | Condition::After { attribute, value } => {
                let attr = attr(self, attribute);
                let Some(millis) = parse_rfc3339_millis(value) else {
                    self.err(
                        format!("{path}.value"),
                        format!("{value:?} is not an RFC 3339 date or timestamp"),
                    );
                    return None;
                };
                Cond::Date { attr, before: matches!(c, Condition::Before { .. }), millis }
            }
            Condition::Exists { attribute } => Cond::Exists { attr: attr(self, attribute) },
            Condition::InSegment { segment } => match self.segment_index.get(segment.as_str()) {
                Some(&i) => Cond::Segment(i),
                None => {
                    self.err(format!("{path}.segment"), format!("unknown segment {segment:?}"));
                    return None;
                }
            },
        };
        (self.errors.len() == before).then_some(cond)
    }
}

/// The split a flag experiment analyses: its targeting's one `fractional` that decides the
/// result with written-out variations and weights.
fn split_of(t: Option<&Targeting>) -> Result<&[(usize, u64)], &'static str> {
    const NEED: &str = "analysing a flag needs one fractional split in its targeting that decides the \
         result, with written-out variations and weights";
    match t {
        Some(t) if t.splits.len() == 1 && t.open_splits == 0 => {
            let split = t.splits[0].as_slice();
            let mut seen = HashSet::new();
            if split.iter().any(|(v, _)| !seen.insert(v)) {
                return Err("the split names a variation twice, so its share cannot be checked");
            }
            if split.iter().filter(|(_, w)| *w > 0).count() < 2 {
                return Err("the split gives every unit one variation: there is nothing to compare");
            }
            Ok(split)
        }
        _ => Err(NEED),
    }
}

/// Integer weights as basis points summing to 10000: each floor(w * 10000 / total), the rest
/// to the largest remainders (earliest first on ties).
fn split_basis_points(split: &[(usize, u64)]) -> Vec<u32> {
    let total: u128 = split.iter().map(|(_, w)| u128::from(*w)).sum();
    let scaled: Vec<u128> = split.iter().map(|(_, w)| u128::from(*w) * u128::from(BUCKETS)).collect();
    let mut bp: Vec<u32> = scaled.iter().map(|s| (s / total) as u32).collect();
    let mut order: Vec<usize> = (0..split.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(scaled[i] % total));
    let short = BUCKETS - bp.iter().sum::<u32>();
    for &i in order.iter().take(short as usize) {
        bp[i] += 1;
    }
    bp
}

/// The experiment the analysis service analyses for a flag with `experiment`: the split's
/// variations (the written-out weights as basis points), the flag's key, the experiment's id
/// and metrics. `None` when the flag has none or its targeting has no such split (it would not
/// have compiled).
pub fn flag_experiment(f: &FlagDef) -> Option<ExperimentDef> {
    let x = f.experiment.as_ref()?;
    let names: Vec<&str> = f.variations.iter().map(|v| v.key.as_str()).collect();
    let t = crate::logic::compile_targeting(
        f.targeting.as_ref()?,
        "targeting",
        &f.evaluators,
        "evaluators",
        &names,
    )
    .ok()??;
    let split = split_of(Some(&t)).ok()?;
    let bp = split_basis_points(split);
    let control = x.control.as_deref().unwrap_or(names[split[0].0]);
    Some(ExperimentDef {
        id: x.id,
        key: f.key.clone(),
        salt: None,
        status: ExperimentStatus::Running,
        traffic_bp: None,
        variants: split
            .iter()
            .zip(bp)
            .map(|((v, _), weight_bp)| VariantDef {
                key: names[*v].to_owned(),
                weight_bp,
                control: names[*v] == control,
                payload: Value::Null,
            })
            .collect(),
        targeting: None,
        primary_metrics: x.metrics.clone(),
        guardrail_metrics: Vec::new(),
        breakdown_attributes: Vec::new(),
        minimum_detectable_effect: x.minimum_detectable_effect,
        planned_units_per_variant: None,
        analysis: AnalysisMethod::Sequential,
        description: format!("the fractional split of flag {}", f.key),
    })
}

/// The range an experiment holds in its layer.
#[derive(Debug, Clone)]
struct LayerSlot {
    layer: String,
    salt: String,
    start: u32,
    end: u32,
}

#[cfg(test)]
mod tests;
