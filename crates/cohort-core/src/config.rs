//! The compiled, read-only form of an environment that evaluation runs over.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use serde_json::Value;
use uuid::Uuid;

use crate::condition::{Cond, SegmentLookup};
use crate::context::Context;
use crate::logic::Targeting;
use crate::model::{ExperimentStatus, FlagType, MetricDef};

/// A validated environment config. Built only by [`crate::compile`]; evaluation over it cannot fail.
#[derive(Debug, Clone, Default)]
pub struct CompiledConfig {
    pub(crate) version: u64,
    pub(crate) index: HashMap<Box<str>, Entry, RandomState>,
    pub(crate) flags: Vec<CompiledFlag>,
    pub(crate) experiments: Vec<CompiledExperiment>,
    pub(crate) segments: Vec<CompiledSegment>,
    pub(crate) metrics: Vec<MetricDef>,
    pub(crate) holdouts: Vec<CompiledHoldout>,
    pub(crate) reads_clock: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    Flag(usize),
    Experiment(usize),
}

impl CompiledConfig {
    /// The environment version the definitions were read at.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn flags(&self) -> &[CompiledFlag] {
        &self.flags
    }

    pub fn experiments(&self) -> &[CompiledExperiment] {
        &self.experiments
    }

    pub fn metrics(&self) -> &[MetricDef] {
        &self.metrics
    }

    /// Every holdout, disabled ones included.
    pub fn holdouts(&self) -> &[CompiledHoldout] {
        &self.holdouts
    }

    /// The enabled holdout whose scope `exp` is in, if any.
    pub fn holdout_of(&self, exp: &CompiledExperiment) -> Option<&CompiledHoldout> {
        exp.holdout.map(|i| &self.holdouts[i])
    }

    pub fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        match self.index.get(key) {
            Some(Entry::Flag(i)) => Some(&self.flags[*i]),
            _ => None,
        }
    }

    pub fn experiment(&self, key: &str) -> Option<&CompiledExperiment> {
        match self.index.get(key) {
            Some(Entry::Experiment(i)) => Some(&self.experiments[*i]),
            _ => None,
        }
    }

    /// Whether some flag's targeting reads the time (`$flagd.timestamp`): evaluate it with
    /// [`crate::evaluate_at`].
    pub fn reads_clock(&self) -> bool {
        self.reads_clock
    }

    /// Number of flags and experiments.
    pub fn len(&self) -> usize {
        self.flags.len() + self.experiments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SegmentLookup for CompiledConfig {
    fn segment_matches(&self, index: usize, ctx: &Context) -> bool {
        self.segments[index].matches(ctx, self)
    }
}

#[derive(Debug, Clone)]
pub struct CompiledFlag {
    pub(crate) key: Box<str>,
    pub(crate) flag_type: FlagType,
    pub(crate) salt: Box<str>,
    pub(crate) enabled: bool,
    pub(crate) variations: Vec<CompiledVariation>,
    /// `None`: a disabled flag serves nothing.
    pub(crate) off: Option<usize>,
    pub(crate) rules: Vec<CompiledRule>,
    /// JSONLogic targeting (flagd's dialect), instead of rules.
    pub(crate) targeting: Option<Targeting>,
    /// `None`: nothing is served when nothing matches.
    pub(crate) default: Option<CompiledServe>,
    /// The flag set's metadata overlaid with the flag's own.
    pub(crate) metadata: serde_json::Map<String, Value>,
    /// Its `fractional` split analysed as this experiment (always running, in no layer).
    pub(crate) experiment: Option<CompiledExperiment>,
}

impl CompiledFlag {
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn flag_type(&self) -> FlagType {
        self.flag_type
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// Its metadata (the flag set's, overlaid with the flag's own).
    pub fn metadata(&self) -> &serde_json::Map<String, Value> {
        &self.metadata
    }
    /// The experiment its split is analysed as, if any.
    pub fn experiment(&self) -> Option<&CompiledExperiment> {
        self.experiment.as_ref()
    }
    /// Variation keys in configured order.
    pub fn variation_keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.variations.iter().map(|v| &*v.key)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledVariation {
    pub(crate) key: Box<str>,
    pub(crate) value: Value,
    /// The value as JSON text, serialized once so encoders never do it per request.
    pub(crate) json: Box<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) id: Box<str>,
    pub(crate) cond: Cond,
    pub(crate) serve: CompiledServe,
}

#[derive(Debug, Clone)]
pub(crate) enum CompiledServe {
    Variation(usize),
    /// Cumulative upper bounds (exclusive) in basis points, paired with variation indexes.
    Split(Box<[(u32, usize)]>),
}

/// How an experiment decides who is enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Allocation {
    /// `bucket(id, unit) < traffic_bp`.
    Traffic(u32),
    /// `start <= bucket(layer_salt, unit) < end`.
    Layer { layer: Box<str>, salt: Box<str>, start: u32, end: u32 },
}

#[derive(Debug, Clone)]
pub struct CompiledExperiment {
    pub(crate) id: Uuid,
    pub(crate) id_text: Box<str>,
    pub(crate) key: Box<str>,
    pub(crate) salt: Box<str>,
    pub(crate) status: ExperimentStatus,
    pub(crate) allocation: Allocation,
    pub(crate) variants: Vec<CompiledVariant>,
    pub(crate) control: usize,
    pub(crate) targeting: Option<Cond>,
    pub(crate) primary_metrics: Vec<String>,
    pub(crate) guardrail_metrics: Vec<String>,
    pub(crate) breakdown_attributes: Vec<String>,
    /// Index in [`CompiledConfig::holdouts`] of the enabled holdout whose scope this is in.
    pub(crate) holdout: Option<usize>,
}

impl CompiledExperiment {
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The id as hyphenated text, formatted once at compile time.
    pub fn id_text(&self) -> &str {
        &self.id_text
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn status(&self) -> ExperimentStatus {
        self.status
    }
    /// Variant keys and weights in configured order.
    pub fn variants(&self) -> impl ExactSizeIterator<Item = (&str, u32)> {
        self.variants.iter().map(|v| (&*v.key, v.weight_bp))
    }
    pub fn control_variant(&self) -> &str {
        &self.variants[self.control].key
    }
    pub fn primary_metrics(&self) -> &[String] {
        &self.primary_metrics
    }
    pub fn guardrail_metrics(&self) -> &[String] {
        &self.guardrail_metrics
    }
    /// Context attributes recorded with exposures, so results can be broken down by them.
    pub fn breakdown_attributes(&self) -> &[String] {
        &self.breakdown_attributes
    }
    /// The layer this experiment is in, if any.
    pub fn layer(&self) -> Option<&str> {
        match &self.allocation {
            Allocation::Layer { layer, .. } => Some(layer),
            Allocation::Traffic(_) => None,
        }
    }
}

/// A holdout: `bucket(salt, unit) < share_bp` holds the unit out of the experiments in its
/// scope.
#[derive(Debug, Clone)]
pub struct CompiledHoldout {
    pub(crate) id: Uuid,
    pub(crate) id_text: Box<str>,
    pub(crate) key: Box<str>,
    pub(crate) salt: Box<str>,
    pub(crate) share_bp: u32,
    pub(crate) enabled: bool,
    pub(crate) layers: Vec<String>,
    pub(crate) metrics: Vec<String>,
}

impl CompiledHoldout {
    /// The experiment id its exposures are recorded under.
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The id as hyphenated text, formatted once at compile time.
    pub fn id_text(&self) -> &str {
        &self.id_text
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn salt(&self) -> &str {
        &self.salt
    }
    pub fn share_bp(&self) -> u32 {
        self.share_bp
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// The layers it covers; empty: every experiment.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }
    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledVariant {
    pub(crate) key: Box<str>,
    pub(crate) weight_bp: u32,
    /// Exclusive cumulative upper bound of this variant's buckets.
    pub(crate) upper: u32,
    pub(crate) payload: Value,
    pub(crate) json: Box<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledSegment {
    pub(crate) include: Box<[Box<str>]>,
    pub(crate) exclude: Box<[Box<str>]>,
    pub(crate) cond: Option<Cond>,
}

impl CompiledSegment {
    fn matches(&self, ctx: &Context, config: &CompiledConfig) -> bool {
        if let Some(key) = ctx.key() {
            let listed = |list: &[Box<str>]| list.binary_search_by(|u| (**u).cmp(key)).is_ok();
            if listed(&self.exclude) {
                return false;
            }
            if listed(&self.include) {
                return true;
            }
        }
        self.cond.as_ref().is_some_and(|c| c.matches(ctx, config))
    }
}
