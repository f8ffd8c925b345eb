//! The definitions an environment is made of, as people write them (JSON or YAML via serde).
//!
//! Nothing here is trusted: [`crate::compile`] validates every field and builds the
//! [`crate::CompiledConfig`] that evaluation reads.
//!
//! Readers ignore fields they do not know, so an SDK keeps accepting documents from a newer
//! config service that added optional fields; the config service refuses unknown fields when
//! they are written, so a typo never reaches storage.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Everything one environment serves at one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// The environment's config version this set was read at (0 when unknown).
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub flags: Vec<FlagDef>,
    #[serde(default)]
    pub experiments: Vec<ExperimentDef>,
    #[serde(default)]
    pub layers: Vec<LayerDef>,
    #[serde(default)]
    pub segments: Vec<SegmentDef>,
    #[serde(default)]
    pub metrics: Vec<MetricDef>,
    #[serde(default)]
    pub holdouts: Vec<HoldoutDef>,
}

/// The type every variation of a flag has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    Boolean,
    String,
    Number,
    Json,
}

impl FlagType {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Json => "json",
        }
    }
}

/// A feature flag: ordered rules pick a variation, or a weighted split of variations; or, for a
/// flag brought from flagd, JSONLogic targeting in flagd's dialect picks one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagDef {
    pub key: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    /// Salt for this flag's splits; changing it reshuffles who gets which variation. Needed
    /// only when a rule or the default serves a split.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
    /// The kill switch: a disabled flag serves its off variation to everyone.
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub variations: Vec<Variation>,
    /// Served when the flag is disabled; without one, a disabled flag serves nothing (reason
    /// `DISABLED`) and callers use their own default, as flagd's disabled flags do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variation: Option<String>,
    /// Evaluated in order; the first rule whose condition matches serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FlagRule>,
    /// Served when no rule matches; without one, nothing is served (reason `DEFAULT`) and
    /// callers use their own default (flagd's `"defaultVariant": null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Serve>,
    /// JSONLogic in flagd's dialect, instead of `rules` (flags brought from flagd's flag
    /// definitions): it yields a variation key (`true`/`false` name the variations `"true"` and
    /// `"false"`), or null for the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting: Option<Value>,
    /// The shared evaluators (flagd's `$evaluators`) that `targeting` refers to by
    /// `{"$ref": name}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub evaluators: std::collections::BTreeMap<String, Value>,
    /// Returned with every resolution (OFREP's and flagd's `metadata`): strings, numbers and
    /// booleans.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, Value>,
    /// The metadata of the flagd flag set the flag came in (its file's top-level `metadata`),
    /// returned under the flag's own.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub flag_set_metadata: serde_json::Map<String, Value>,
    /// Analyse the flag's `fractional` split like an experiment: units the split assigns are
    /// exposed with their variation, and the analysis service compares the variations over
    /// these metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<FlagExperimentDef>,
}

/// A flag's split analysed as an experiment (its targeting's one `fractional`, with written-out
/// variations and weights). The flag stays a flag: it is switched by its owner, never paused by
/// a guardrail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagExperimentDef {
    /// The experiment id its exposures are recorded under; the config service assigns one.
    pub id: Uuid,
    pub metrics: Vec<String>,
    /// The variation the others are compared with; the split's first when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// As an experiment's: the smallest relative effect worth detecting on the first metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_detectable_effect: Option<f64>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variation {
    pub key: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagRule {
    /// A stable id for reporting which rule matched; defaults to the rule's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub condition: Condition,
    pub serve: Serve,
}

/// What a rule serves: one variation, or a weighted split by the flag's salt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    Variation(String),
    Split(Vec<WeightedVariation>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedVariation {
    pub variation: String,
    pub weight_bp: u32,
}

/// Where an experiment is in its life. Only running experiments enroll units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Running,
    Paused,
    Completed,
}

impl ExperimentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Paused => "paused",
            ExperimentStatus::Completed => "completed",
        }
    }

    /// Live experiments hold their layer range: a paused one may resume.
    pub fn is_live(self) -> bool {
        matches!(self, ExperimentStatus::Running | ExperimentStatus::Paused)
    }
}

/// The moves of an experiment's lifecycle: draft → running (start), running → paused
/// (pause), paused → running (resume), running or paused → completed (complete). The one
/// table the config service enforces and cohortctl plans with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentAction {
    Start,
    Pause,
    Resume,
    Complete,
}

impl ExperimentAction {
    pub const ALL: [ExperimentAction; 4] = [
        ExperimentAction::Start,
        ExperimentAction::Pause,
        ExperimentAction::Resume,
        ExperimentAction::Complete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentAction::Start => "start",
            ExperimentAction::Pause => "pause",
            ExperimentAction::Resume => "resume",
            ExperimentAction::Complete => "complete",
        }
    }

    /// The status this action moves to from `from`, if the move is legal.
    pub fn target(self, from: ExperimentStatus) -> Option<ExperimentStatus> {
        use ExperimentStatus::*;
        match (self, from) {
            (ExperimentAction::Start, Draft) => Some(Running),
            (ExperimentAction::Pause, Running) => Some(Paused),
            (ExperimentAction::Resume, Paused) => Some(Running),
            (ExperimentAction::Complete, Running | Paused) => Some(Completed),
            _ => None,
        }
    }
}

/// The kinds of entity an environment holds, each a list of [`Definitions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityKind {
    Flag,
    Experiment,
    Layer,
    Segment,
    Metric,
    Holdout,
}

impl EntityKind {
    pub const ALL: [EntityKind; 6] = [
        EntityKind::Flag,
        EntityKind::Experiment,
        EntityKind::Layer,
        EntityKind::Segment,
        EntityKind::Metric,
        EntityKind::Holdout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Flag => "flag",
            EntityKind::Experiment => "experiment",
            EntityKind::Layer => "layer",
            EntityKind::Segment => "segment",
            EntityKind::Metric => "metric",
            EntityKind::Holdout => "holdout",
        }
    }

    /// The list in [`Definitions`] this kind lives in.
    pub fn plural(self) -> &'static str {
        match self {
            EntityKind::Flag => "flags",
            EntityKind::Experiment => "experiments",
            EntityKind::Layer => "layers",
            EntityKind::Segment => "segments",
            EntityKind::Metric => "metrics",
            EntityKind::Holdout => "holdouts",
        }
    }

    /// The kind named exactly by its singular (`flag`) or plural (`flags`).
    pub fn parse(name: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == name || k.plural() == name)
    }
}

impl std::fmt::Display for EntityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EntityKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDef {
    pub id: Uuid,
    pub key: String,
    /// Salt of the variant assignment; defaults to the experiment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    pub status: ExperimentStatus,
    /// Share of eligible units enrolled, in basis points, for an experiment in no layer.
    /// Defaults to 10000. An experiment in a layer gets its traffic from its layer range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_bp: Option<u32>,
    pub variants: Vec<VariantDef>,
    /// Units that do not match are not enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting: Option<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_metrics: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrail_metrics: Vec<String>,
    /// Context attributes results are broken down by (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakdown_attributes: Vec<String>,
    /// The smallest relative effect on the first primary metric worth detecting (0.05 = 5 %);
    /// with the baseline it sets the planned sample size, and so each look's information
    /// fraction. The analysis service's default applies when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_detectable_effect: Option<f64>,
    /// The planned units per variant, overriding the size derived from the effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_units_per_variant: Option<u64>,
    /// How the primary metrics decide: group-sequential looks (the default) or one
    /// fixed-horizon test at the planned sample.
    #[serde(default, skip_serializing_if = "AnalysisMethod::is_default")]
    pub analysis: AnalysisMethod,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// How an experiment's primary metrics reach a decision (`docs/spec/stats.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisMethod {
    /// O'Brien-Fleming looks as information accrues; repeated confidence intervals; safe to
    /// watch.
    #[default]
    Sequential,
    /// One test when the planned sample is reached; until then nothing is decided.
    FixedHorizon,
}

impl AnalysisMethod {
    pub fn is_default(&self) -> bool {
        *self == AnalysisMethod::Sequential
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantDef {
    pub key: String,
    pub weight_bp: u32,
    /// The baseline every other variant is compared with; the first variant when none is marked.
    #[serde(default)]
    pub control: bool,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub payload: Value,
}

/// The exposure variant of a unit a holdout keeps out of the experiments in its scope.
pub const HOLDOUT_VARIANT: &str = "holdout";

/// The exposure variant of a unit in a holdout's scope that it does not keep out: the
/// population the holdout is compared with.
pub const GENERAL_VARIANT: &str = "general";

/// A share of units kept out of every experiment in its scope (they get each experiment's
/// not-enrolled outcome), so the experiments' combined effect can be measured against them
/// over time. Flags are not affected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutDef {
    /// The experiment id its exposures are recorded under; the config service assigns one.
    pub id: Uuid,
    pub key: String,
    /// Salt of the held-out draw; defaults to the holdout id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Share of units held out, in basis points (1 to 5000).
    pub share_bp: u32,
    /// A disabled holdout holds nobody out and records nothing.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The layers whose experiments it covers; empty: every experiment of the environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// The metrics its results compare.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// As on [`ExperimentDef::minimum_detectable_effect`], for the analysis plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_detectable_effect: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A mutual-exclusion group: each experiment owns a range of the layer's buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDef {
    pub key: String,
    pub salt: String,
    #[serde(default)]
    pub experiments: Vec<LayerRange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRange {
    /// The experiment's key.
    pub experiment: String,
    /// `[start, end)` in basis points of the layer's buckets.
    pub range: [u32; 2],
}

/// A reusable audience: explicit exclusions win, then explicit inclusions, then the condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDef {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// How a metric's events are reduced to one number per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Converted at least once after first exposure (0 or 1 per unit).
    Conversion,
    /// Number of events after first exposure.
    Count,
    /// Sum of event values after first exposure.
    Sum,
    /// Mean of the unit's event values after first exposure.
    Mean,
    /// Σ numerator / Σ denominator over all exposed units (revenue per order): both sides
    /// are per-unit sums, described by [`MetricDef::ratio`].
    Ratio,
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Conversion => "conversion",
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Mean => "mean",
            Aggregation::Ratio => "ratio",
        }
    }
}

/// One side of a ratio metric, per unit: its events counted, or their values summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Count,
    Sum,
}

/// The two sides of a ratio metric. The numerator is the metric's own `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioDef {
    /// Per unit: the sum of the event's values (the default) or the number of events.
    #[serde(default = "default_numerator")]
    pub numerator: Measure,
    /// The denominator's event (may be the metric's own event: revenue per order).
    pub denominator_event: String,
    /// Per unit: the number of denominator events (the default) or the sum of their values.
    #[serde(default = "default_denominator")]
    pub denominator: Measure,
}

fn default_numerator() -> Measure {
    Measure::Sum
}

fn default_denominator() -> Measure {
    Measure::Count
}

/// CUPED variance reduction: each unit's value of the same metric before its first exposure
/// is the covariate (`docs/spec/stats.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CupedDef {
    /// How far before its first exposure a unit's events count as its covariate.
    pub pre_period_seconds: u64,
}

/// Which way is good for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDef {
    pub key: String,
    /// The event name that feeds it.
    pub event: String,
    pub aggregation: Aggregation,
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// For guardrails: the relative change in the harmful direction that is tolerated
    /// (0.02 = a 2 % degradation); crossing it significantly pauses the experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail_threshold: Option<f64>,
    /// Only events within this many seconds of the unit's first exposure count (a conversion
    /// window, e.g. 604800 for 7 days); absent: every event from the first exposure on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// The sides of a `ratio` metric (required for it, refused for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<RatioDef>,
    /// Adjust by each unit's pre-exposure value (conversion, count and sum metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuped: Option<CupedDef>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Separates an event name from its span in a stream key (event names hold no control
/// characters).
const STREAM_SEPARATOR: char = '\u{1f}';

/// Which of a unit's events a stream takes, relative to the unit's first exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Span {
    /// From the first exposure on, and before `window` seconds after it when given.
    After { window: Option<u64> },
    /// In the `seconds` before the first exposure (CUPED's pre-period).
    Before { seconds: u64 },
}

/// What the analysis aggregates per unit: one event's occurrences within a span. Metrics
/// reading the same event over the same span share one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream<'a> {
    pub event: &'a str,
    pub span: Span,
}

impl<'a> Stream<'a> {
    /// The stream's key: the event name alone, or with `\u{1f}` and the window (`604800`) or
    /// the pre-period (`-1209600`).
    pub fn key(&self) -> String {
        match self.span {
            Span::After { window: None } => self.event.to_owned(),
            Span::After { window: Some(w) } => format!("{}{STREAM_SEPARATOR}{w}", self.event),
            Span::Before { seconds } => format!("{}{STREAM_SEPARATOR}-{seconds}", self.event),
        }
    }

    /// The stream a [`Stream::key`] names (a malformed span reads as no window).
    pub fn parse(key: &'a str) -> Stream<'a> {
        let Some((event, span)) = key.split_once(STREAM_SEPARATOR) else {
            return Stream { event: key, span: Span::After { window: None } };
        };
        let span = match span.strip_prefix('-') {
            Some(s) => s.parse().map_or(Span::After { window: None }, |seconds| Span::Before { seconds }),
            None => Span::After { window: span.parse().ok() },
        };
        Stream { event, span }
    }
}

impl MetricDef {
    /// The stream of the metric's event after exposure (a ratio's numerator).
    pub fn stream(&self) -> String {
        Stream { event: &self.event, span: Span::After { window: self.window_seconds } }.key()
    }

    /// A ratio's denominator stream, within the same window.
    pub fn denominator_stream(&self) -> Option<String> {
        let r = self.ratio.as_ref().filter(|_| self.aggregation == Aggregation::Ratio)?;
        Some(Stream { event: &r.denominator_event, span: Span::After { window: self.window_seconds } }.key())
    }

    /// CUPED's pre-period stream: the metric's event before exposure.
    pub fn pre_period_stream(&self) -> Option<String> {
        let c = self.cuped.as_ref()?;
        Some(Stream { event: &self.event, span: Span::Before { seconds: c.pre_period_seconds } }.key())
    }

    /// Every stream the metric reads.
    pub fn streams(&self) -> Vec<String> {
        let mut out = vec![self.stream()];
        out.extend(self.denominator_stream());
        out.extend(self.pre_period_stream());
        out
    }

    /// The pairs of streams whose per-unit cross products the metric needs: (numerator,
    /// denominator) for a ratio, (pre-period, post-exposure) for CUPED.
    pub fn stream_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(d) = self.denominator_stream() {
            out.push((self.stream(), d));
        }
        if let Some(p) = self.pre_period_stream() {
            out.push((p, self.stream()));
        }
        out
    }
}

fn default_direction() -> Direction {
    Direction::Increase
}

/// A targeting condition over context attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Condition {
    All {
        conditions: Vec<Condition>,
    },
    Any {
        conditions: Vec<Condition>,
    },
    Not {
        condition: Box<Condition>,
    },
    Equals {
        attribute: String,
        value: ScalarValue,
    },
    NotEquals {
        attribute: String,
        value: ScalarValue,
    },
    In {
        attribute: String,
        values: Vec<ScalarValue>,
    },
    NotIn {
        attribute: String,
        values: Vec<ScalarValue>,
    },
    Contains {
        attribute: String,
        value: String,
    },
    StartsWith {
        attribute: String,
        value: String,
    },
    EndsWith {
        attribute: String,
        value: String,
    },
    Matches {
        attribute: String,
        pattern: String,
    },
    Lt {
        attribute: String,
        value: f64,
    },
    Lte {
        attribute: String,
        value: f64,
    },
    Gt {
        attribute: String,
        value: f64,
    },
    Gte {
        attribute: String,
        value: f64,
    },
    SemverEq {
        attribute: String,
        value: String,
    },
    SemverLt {
        attribute: String,
        value: String,
    },
    SemverLte {
        attribute: String,
        value: String,
    },
    SemverGt {
        attribute: String,
        value: String,
    },
    SemverGte {
        attribute: String,
        value: String,
    },
    /// The attribute (RFC 3339 text or Unix seconds) is strictly before `value` (RFC 3339).
    Before {
        attribute: String,
        value: String,
    },
    /// The attribute (RFC 3339 text or Unix seconds) is strictly after `value` (RFC 3339).
    After {
        attribute: String,
        value: String,
    },
    Exists {
        attribute: String,
    },
    InSegment {
        segment: String,
    },
}

/// A literal compared with an attribute: a string, number or bool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScalarValue {
    Bool(bool),
    Number(f64),
    String(String),
}
