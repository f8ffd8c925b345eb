//! One experiment's analysis from its aggregates, with no I/O: per-variant summaries, the
//! comparisons against control, the sample-ratio check, the plan's information fraction,
//! whether this cycle is a formal look, the decision (`docs/spec/stats.md`: repeated
//! intervals at O'Brien-Fleming looks, or one fixed-horizon test at the planned sample) and
//! guardrails, watched every cycle with always-valid intervals.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cohort_core::model::{
    Aggregation, AnalysisMethod, Direction, ExperimentDef, ExperimentStatus, GENERAL_VARIANT,
    HOLDOUT_VARIANT, HoldoutDef, Measure, MetricDef, VariantDef,
};
use cohort_stats::{
    Comparison, ConfidenceSequence, CupedSummary, Effect, Interval, MeanSummary, ProportionSummary,
    RatioSummary, SequentialPlan, compare_cuped, compare_means, compare_proportions, compare_ratios,
    holm_adjust, repeated_interval, sample_size_means, sample_size_proportions, srm_check,
};
use serde::{Deserialize, Serialize};

/// Per-unit sums of one event for the units of one variant (units without the event add 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EventSums {
    /// Units with at least one event after their first exposure.
    pub units_with_events: u64,
    pub count_sum: f64,
    pub count_sum_sq: f64,
    pub value_sum: f64,
    pub value_sum_sq: f64,
    /// Units with at least one valued event, and the sums of their per-unit mean values.
    pub mean_units: u64,
    pub mean_sum: f64,
    pub mean_sum_sq: f64,
}

impl EventSums {
    pub fn add(&mut self, o: &EventSums) {
        self.units_with_events += o.units_with_events;
        self.count_sum += o.count_sum;
        self.count_sum_sq += o.count_sum_sq;
        self.value_sum += o.value_sum;
        self.value_sum_sq += o.value_sum_sq;
        self.mean_units += o.mean_units;
        self.mean_sum += o.mean_sum;
        self.mean_sum_sq += o.mean_sum_sq;
    }
}

/// Per-unit cross products of two streams a and b for the units of one variant (units
/// without events in both add 0): what a ratio's covariance and CUPED's θ need.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairSums {
    /// Units with events in both streams: Σ of the product of the two conversion indicators.
    pub units: u64,
    /// Σ count_a · count_b.
    pub count_count: f64,
    /// Σ count_a · value_sum_b.
    pub count_value: f64,
    /// Σ value_sum_a · count_b.
    pub value_count: f64,
    /// Σ value_sum_a · value_sum_b.
    pub value_value: f64,
}

impl PairSums {
    pub fn add(&mut self, o: &PairSums) {
        self.units += o.units;
        self.count_count += o.count_count;
        self.count_value += o.count_value;
        self.value_count += o.value_count;
        self.value_value += o.value_value;
    }

    /// Σ a·b for the per-unit measures of a and b (`None`: the conversion indicator).
    fn product(&self, a: Option<Measure>, b: Option<Measure>) -> f64 {
        match (a, b) {
            (Some(Measure::Count), Some(Measure::Count)) => self.count_count,
            (Some(Measure::Count), Some(Measure::Sum)) => self.count_value,
            (Some(Measure::Sum), Some(Measure::Count)) => self.value_count,
            (Some(Measure::Sum), Some(Measure::Sum)) => self.value_value,
            _ => self.units as f64,
        }
    }
}

/// The key of the pair of streams `a` and `b` (stream keys hold no `\u{1e}`).
pub fn pair_key(a: &str, b: &str) -> String {
    format!("{a}\u{1e}{b}")
}

/// The streams of a [`pair_key`].
pub fn split_pair(key: &str) -> (&str, &str) {
    key.split_once('\u{1e}').unwrap_or((key, ""))
}

/// What SQL reduced an experiment's events to, for one population (all units or a segment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    /// Units exposed to exactly one variant, by variant.
    pub units: BTreeMap<String, u64>,
    /// (variant, stream: an event within a span, [`MetricDef::streams`]) → sums.
    pub events: HashMap<(String, String), EventSums>,
    /// (variant, [`pair_key`] of [`MetricDef::stream_pairs`]) → cross products.
    pub pairs: HashMap<(String, String), PairSums>,
}

impl Aggregates {
    pub fn add(&mut self, o: &Aggregates) {
        for (v, n) in &o.units {
            *self.units.entry(v.clone()).or_default() += n;
        }
        for (k, s) in &o.events {
            self.events.entry(k.clone()).or_default().add(s);
        }
        for (k, s) in &o.pairs {
            self.pairs.entry(k.clone()).or_default().add(s);
        }
    }

    fn stream(&self, variant: &str, stream: &str) -> EventSums {
        self.events.get(&(variant.to_owned(), stream.to_owned())).copied().unwrap_or_default()
    }

    fn pair(&self, variant: &str, a: &str, b: &str) -> PairSums {
        self.pairs.get(&(variant.to_owned(), pair_key(a, b))).copied().unwrap_or_default()
    }

    fn total_units(&self) -> u64 {
        self.units.values().sum()
    }
}

/// Analysis settings that experiments do not set themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub alpha: f64,
    pub power: f64,
    /// Relative minimum detectable effect when the experiment names none.
    pub default_mde: f64,
    /// Planned units per variant for experiments with no primary metric.
    pub default_planned_units: u64,
    /// No look before every variant has this many units.
    pub min_units_per_variant: u64,
    /// A new formal look needs this much more information than the last (bounds the looks).
    pub min_look_step: f64,
    /// Breakdown values kept per attribute; the rest are grouped as "other".
    pub max_segment_values: usize,
    /// Experiments whose aggregation state one cycle rebuilds from all their rows (after a
    /// start, resume, change or crash); the rest wait, so every cycle stays short.
    pub max_rebuilds_per_cycle: usize,
    /// Time after which a cycle starts no more rebuilds (it finishes the few under way).
    pub rebuild_budget: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            power: 0.8,
            default_mde: 0.1,
            default_planned_units: 10_000,
            min_units_per_variant: 100,
            min_look_step: 0.02,
            max_segment_values: 10,
            max_rebuilds_per_cycle: 100,
            rebuild_budget: Duration::from_secs(4),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Guardrail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantStats {
    pub variant: String,
    /// Units in the metric's denominator.
    pub n: u64,
    /// Conversion rate or mean per unit.
    pub mean: Option<f64>,
}

/// Which interval a comparison shows, and so what it may be read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalKind {
    /// Sequential primary metrics: estimate ± c_k·SE at the boundary c_k of look k. Intervals
    /// of all looks hold together at 1 − α, so reading one at every look is safe.
    Repeated,
    /// Fixed-horizon analyses and segments: estimate ± z·SE (t for means), valid once, at the
    /// planned sample.
    FixedHorizon,
    /// Guardrails: a confidence sequence, valid however often it is read.
    AlwaysValid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    pub kind: IntervalKind,
    /// Coverage, 1 − α.
    pub level: f64,
    /// The look whose boundary a repeated interval uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look: Option<u32>,
    /// The multiplier of the standard error: the look's boundary c_k for repeated intervals,
    /// the normal quantile for fixed-horizon ones (for proportions), none for always-valid ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_value: Option<f64>,
    /// For the absolute difference.
    pub abs: Option<[f64; 2]>,
    /// For the relative difference.
    pub rel: Option<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonResult {
    pub variant: String,
    pub abs_diff: Option<f64>,
    pub rel_diff: Option<f64>,
    /// Standard error of `abs_diff` (unpooled for conversions, Welch for means).
    pub abs_std_error: Option<f64>,
    /// Delta-method standard error of `rel_diff`.
    pub rel_std_error: Option<f64>,
    /// The fixed-horizon test's statistic: pooled z (conversions) or Welch t (means).
    pub statistic: Option<f64>,
    /// The fixed-horizon test's nominal p-value: a description of the data, not a decision
    /// (the decision is `crossed_at_look`).
    pub p_value: Option<f64>,
    /// Holm-adjusted within the metric's family (see `MetricResult::p_value_family`).
    pub p_value_holm: Option<f64>,
    /// The interval to read.
    pub interval: Option<IntervalReport>,
    /// Primary metrics: the look at which this comparison's interval first excluded 0 at a
    /// look (|abs_diff / abs_std_error| ≥ c_k); it stands from then on, in every later result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossed_at_look: Option<u32>,
    /// Guardrail metrics: the always-valid interval lies wholly beyond the tolerated change,
    /// on the harmful side.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub harmful: bool,
    /// CUPED metrics: the estimate, standard error, statistic, p-value and intervals above
    /// are adjusted; this holds θ, the unadjusted ones and the variance reduction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuped: Option<CupedReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailResult {
    /// The tolerated relative degradation.
    pub threshold: f64,
    /// Checked every cycle with an always-valid interval (a confidence sequence).
    pub method: String,
    /// The treatments found harmful this cycle.
    pub harmful_variants: Vec<String>,
    /// Harm beyond the threshold was found: the experiment is paused.
    pub harm_detected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub metric: String,
    pub event: String,
    pub aggregation: Aggregation,
    pub role: Role,
    pub variants: Vec<VariantStats>,
    pub comparisons: Vec<ComparisonResult>,
    /// The comparisons `p_value_holm` was adjusted over, e.g. "primary metrics × treatments (4)".
    pub p_value_family: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<GuardrailResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentResult {
    pub attribute: String,
    pub value: String,
    pub units: u64,
    /// Segments never decide: their intervals are fixed-horizon and exploratory.
    pub exploratory: bool,
    pub metrics: Vec<MetricResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrmReport {
    pub chi_square: Option<f64>,
    pub p_value: Option<f64>,
    pub detected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    pub experiment_id: String,
    pub experiment_key: String,
    pub computed_at_ms: i64,
    /// A holdout's result: its held-out units (`holdout`, the control) against the rest of
    /// its scope (`general`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holdout: bool,
    /// How the primary metrics decide.
    pub analysis: AnalysisMethod,
    /// The latest formal look (0 before the first).
    pub look: u32,
    pub information_fraction: f64,
    /// The z boundary of that look.
    pub boundary: Option<f64>,
    pub planned_units_per_variant: Option<u64>,
    pub units: BTreeMap<String, u64>,
    pub excluded_units: u64,
    pub srm: SrmReport,
    pub metrics: Vec<MetricResult>,
    pub segments: Vec<SegmentResult>,
    /// Segment comparisons made: read any one significant segment with that many in mind.
    pub segment_comparisons: usize,
    pub warnings: Vec<String>,
    /// The first look at which a primary comparison crossed (its interval excluded 0): the
    /// experiment's decision, which stands from then on. Absent while undecided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at_look: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by_guardrail: Option<String>,
    /// What the result counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<ResultCoverage>,
}

/// What a result counts: every event stored before `as_of_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultCoverage {
    /// When the cycle's database snapshot was taken (Unix ms): every event stored before it is
    /// counted, none after.
    pub as_of_ms: i64,
    /// The snapshot's xmin: every event stored by a transaction below it is counted.
    pub ingest_position: u64,
    /// The newest acknowledgement time (Unix ms) among the environment's counted events.
    pub newest_event_received_ms: Option<i64>,
    /// How old the data were when the result was computed: `computed_at_ms − as_of_ms`. The
    /// lag to now is now − `as_of_ms`.
    pub lag_ms: i64,
}

/// The frozen sample-size plan of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub planned_units_per_variant: u64,
    pub basis: serde_json::Value,
}

/// Makes the plan once the control has enough units to estimate its baseline.
pub fn make_plan(exp: &ExperimentDef, metrics: &[MetricDef], agg: &Aggregates, s: &Settings) -> Option<Plan> {
    if let Some(n) = exp.planned_units_per_variant {
        return Some(Plan {
            planned_units_per_variant: n,
            basis: serde_json::json!({"source": "experiment"}),
        });
    }
    let control = control_variant(exp);
    let control_units = agg.units.get(control).copied().unwrap_or(0);
    if control_units < s.min_units_per_variant {
        return None;
    }
    let mde = exp.minimum_detectable_effect.unwrap_or(s.default_mde);
    let Some(metric) = exp.primary_metrics.first().and_then(|k| metrics.iter().find(|m| m.key == *k)) else {
        return Some(Plan {
            planned_units_per_variant: s.default_planned_units,
            basis: serde_json::json!({"source": "default", "reason": "no primary metric"}),
        });
    };
    let planned = match summarize(metric, control, agg, false) {
        Summary::Proportion(p) => {
            let baseline = p.rate().unwrap_or(0.0).clamp(0.001, 0.999);
            let effect = Effect::Relative(mde.min(0.999 / baseline - 1.0));
            sample_size_proportions(baseline, effect, s.alpha, s.power).ok()
        }
        Summary::Mean(m) => match (m.mean(), m.variance()) {
            (Some(mean), Some(var)) if mean != 0.0 && var > 0.0 => {
                sample_size_means(var.sqrt(), (mde * mean).abs(), s.alpha, s.power).ok()
            }
            _ => None,
        },
        // The delta method's per-unit variance: n · Var(R).
        Summary::Ratio(r) => match (r.ratio(), r.variance()) {
            (Some(ratio), Some(var)) if ratio != 0.0 && var > 0.0 => {
                sample_size_means((var * r.n() as f64).sqrt(), (mde * ratio).abs(), s.alpha, s.power).ok()
            }
            _ => None,
        },
        // Plans are made unadjusted (`adjust` false above): CUPED only shortens them.
        Summary::Cuped(..) => None,
    };
    let planned = planned.unwrap_or(s.default_planned_units).max(s.min_units_per_variant);
    Some(Plan {
        planned_units_per_variant: planned,
        basis: serde_json::json!({
            "source": "power", "metric": metric.key, "control_units": control_units,
            "minimum_detectable_effect": mde, "alpha": s.alpha, "power": s.power,
        }),
    })
}

/// A holdout as the experiment its results come from: the held-out units (control) against
/// the general population of its scope, split by its share, over its metrics, sequentially.
pub fn holdout_experiment(h: &HoldoutDef) -> ExperimentDef {
    let variant = |key: &str, weight_bp: u32, control: bool| VariantDef {
        key: key.to_owned(),
        weight_bp,
        control,
        payload: serde_json::Value::Null,
    };
    ExperimentDef {
        id: h.id,
        key: h.key.clone(),
        salt: h.salt.clone(),
        status: ExperimentStatus::Running,
        traffic_bp: None,
        variants: vec![
            variant(HOLDOUT_VARIANT, h.share_bp, true),
            variant(GENERAL_VARIANT, 10_000u32.saturating_sub(h.share_bp), false),
        ],
        targeting: None,
        primary_metrics: h.metrics.clone(),
        guardrail_metrics: Vec::new(),
        breakdown_attributes: Vec::new(),
        minimum_detectable_effect: h.minimum_detectable_effect,
        planned_units_per_variant: None,
        analysis: AnalysisMethod::Sequential,
        description: h.description.clone(),
    }
}

pub fn control_variant(exp: &ExperimentDef) -> &str {
    exp.variants.iter().find(|v| v.control).or(exp.variants.first()).map_or("", |v| v.key.as_str())
}

enum Summary {
    Proportion(ProportionSummary),
    Mean(MeanSummary),
    Ratio(RatioSummary),
    /// A CUPED metric: the post-exposure values with their pre-period covariate, and the
    /// unadjusted mean per unit.
    Cuped(CupedSummary, Option<f64>),
}

impl Summary {
    fn n(&self) -> u64 {
        match self {
            Summary::Proportion(p) => p.units(),
            Summary::Mean(m) => m.n(),
            Summary::Ratio(r) => r.n(),
            Summary::Cuped(c, _) => c.n(),
        }
    }
}

/// The per-unit Σ and Σ² of a stream for a measure (`None`: the conversion indicator, whose
/// square is itself).
fn per_unit(s: &EventSums, measure: Option<Measure>) -> (f64, f64) {
    match measure {
        None => (s.units_with_events as f64, s.units_with_events as f64),
        Some(Measure::Count) => (s.count_sum, s.count_sum_sq),
        Some(Measure::Sum) => (s.value_sum, s.value_sum_sq),
    }
}

/// The per-unit measure of a zero-filled metric (conversion, count, sum).
fn measure_of(aggregation: Aggregation) -> Option<Measure> {
    match aggregation {
        Aggregation::Count => Some(Measure::Count),
        Aggregation::Sum => Some(Measure::Sum),
        _ => None,
    }
}

/// One variant's summary of `metric` in `agg`; with `adjust` false a CUPED metric is
/// summarized as if it had none (for planning).
fn summarize(metric: &MetricDef, variant: &str, agg: &Aggregates, adjust: bool) -> Summary {
    let units = agg.units.get(variant).copied().unwrap_or(0);
    let s = agg.stream(variant, &metric.stream());
    let mean = |n: u64, sum: f64, sum_sq: f64| {
        MeanSummary::new(n, sum, sum_sq)
            .unwrap_or_else(|_| MeanSummary::new(0, 0.0, 0.0).expect("empty summary"))
    };
    if let (Some(pre), true) = (metric.pre_period_stream(), adjust) {
        let m = measure_of(metric.aggregation);
        let (sum_y, sum_y2) = per_unit(&s, m);
        let (sum_x, sum_x2) = per_unit(&agg.stream(variant, &pre), m);
        let sum_xy = agg.pair(variant, &pre, &metric.stream()).product(m, m);
        let unadjusted = (units > 0).then(|| sum_y / units as f64);
        return match CupedSummary::new(units, sum_y, sum_y2, sum_x, sum_x2, sum_xy) {
            Ok(c) => Summary::Cuped(c, unadjusted),
            Err(_) => Summary::Mean(mean(0, 0.0, 0.0)),
        };
    }
    match metric.aggregation {
        Aggregation::Conversion => Summary::Proportion(
            ProportionSummary::new(units, s.units_with_events.min(units))
                .unwrap_or_else(|_| ProportionSummary::new(0, 0).expect("empty summary")),
        ),
        Aggregation::Count => Summary::Mean(mean(units, s.count_sum, s.count_sum_sq)),
        Aggregation::Sum => Summary::Mean(mean(units, s.value_sum, s.value_sum_sq)),
        Aggregation::Mean => Summary::Mean(mean(s.mean_units, s.mean_sum, s.mean_sum_sq)),
        Aggregation::Ratio => {
            let (Some(r), Some(den)) = (&metric.ratio, metric.denominator_stream()) else {
                return Summary::Ratio(RatioSummary::default());
            };
            let (sum_x, sum_x2) = per_unit(&s, Some(r.numerator));
            let (sum_y, sum_y2) = per_unit(&agg.stream(variant, &den), Some(r.denominator));
            let sum_xy =
                agg.pair(variant, &metric.stream(), &den).product(Some(r.numerator), Some(r.denominator));
            Summary::Ratio(RatioSummary::new(units, sum_x, sum_x2, sum_y, sum_y2, sum_xy).unwrap_or_default())
        }
    }
}

/// What CUPED did to a comparison: the main fields of [`ComparisonResult`] are adjusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CupedReport {
    /// The pooled regression coefficient of the post-exposure value on the pre-period value.
    pub theta: f64,
    pub unadjusted_abs_diff: Option<f64>,
    pub unadjusted_rel_diff: Option<f64>,
    pub unadjusted_abs_std_error: Option<f64>,
    pub unadjusted_p_value: Option<f64>,
    /// 1 − adjusted / unadjusted variance of the difference.
    pub variance_reduction: Option<f64>,
}

fn compare(c: &Summary, t: &Summary, alpha: f64) -> Option<(Comparison, Option<CupedReport>)> {
    match (c, t) {
        (Summary::Proportion(c), Summary::Proportion(t)) => {
            Some((compare_proportions(*c, *t, alpha).ok()?, None))
        }
        (Summary::Mean(c), Summary::Mean(t)) => Some((compare_means(*c, *t, alpha).ok()?, None)),
        (Summary::Ratio(c), Summary::Ratio(t)) => Some((compare_ratios(*c, *t, alpha).ok()?, None)),
        (Summary::Cuped(c, _), Summary::Cuped(t, _)) => {
            let r = compare_cuped(*c, *t, alpha).ok()?;
            let u = r.unadjusted;
            let report = CupedReport {
                theta: r.theta,
                unadjusted_abs_diff: u.abs_diff,
                unadjusted_rel_diff: u.rel_diff,
                unadjusted_abs_std_error: u.abs_std_error(),
                unadjusted_p_value: u.p_value,
                variance_reduction: r.variance_reduction,
            };
            Some((r.adjusted, Some(report)))
        }
        _ => None,
    }
}

fn stats(variant: &str, s: &Summary) -> VariantStats {
    let (n, mean) = match s {
        Summary::Proportion(p) => (p.units(), p.rate()),
        Summary::Mean(m) => (m.n(), m.mean()),
        Summary::Ratio(r) => (r.n(), r.ratio()),
        Summary::Cuped(c, unadjusted) => (c.n(), *unadjusted),
    };
    VariantStats { variant: variant.into(), n, mean }
}

fn pair(i: Option<Interval>) -> Option<[f64; 2]> {
    i.map(|i| [i.lower, i.upper])
}

/// How a population's comparisons are read.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// Sequential primary metrics at look `look` with boundary `boundary`.
    Repeated { look: u32, boundary: f64 },
    /// Sequential primary metrics before the first look: nothing to read yet.
    BeforeFirstLook,
    /// Fixed-horizon analyses and segments.
    FixedHorizon,
}

/// Every metric of the experiment over one population. Guardrail metrics always get
/// always-valid intervals, tuned by `cs`.
fn metric_results(
    exp: &ExperimentDef,
    metrics: &[MetricDef],
    agg: &Aggregates,
    s: &Settings,
    reading: Reading,
    cs: Option<&ConfidenceSequence>,
) -> Vec<MetricResult> {
    let control = control_variant(exp);
    let roles = exp
        .primary_metrics
        .iter()
        .map(|k| (k, Role::Primary))
        .chain(exp.guardrail_metrics.iter().map(|k| (k, Role::Guardrail)));
    let level = 1.0 - s.alpha;
    let mut out = Vec::new();
    for (key, role) in roles {
        let Some(metric) = metrics.iter().find(|m| m.key == *key) else { continue };
        let summary = |variant: &str| summarize(metric, variant, agg, true);
        let control_summary = summary(control);
        let mut variants = vec![stats(control, &control_summary)];
        let mut comparisons = Vec::new();
        let threshold = metric.guardrail_threshold.unwrap_or(0.0);
        for v in exp.variants.iter().filter(|v| v.key != control) {
            let t = summary(&v.key);
            variants.push(stats(&v.key, &t));
            let (c, cuped) = compare(&control_summary, &t, s.alpha).unzip();
            let c = c.as_ref();
            let (abs, rel) = (c.and_then(|c| c.abs_diff), c.and_then(|c| c.rel_diff));
            let (abs_se, rel_se) = (c.and_then(Comparison::abs_std_error), c.and_then(|c| c.rel_std_error));
            let n_min = control_summary.n().min(t.n());
            let mut harmful = false;
            let interval = match (role, reading) {
                (Role::Guardrail, _) => cs.map(|cs| {
                    let n = control_summary.n() + t.n();
                    let within = |e: Option<f64>, se: Option<f64>| pair(cs.interval(e?, se?, n));
                    let rel_cs = within(rel, rel_se);
                    harmful = n_min >= s.min_units_per_variant
                        && rel_cs.is_some_and(|[lo, hi]| match metric.direction {
                            Direction::Increase => hi < -threshold,
                            Direction::Decrease => lo > threshold,
                        });
                    IntervalReport {
                        kind: IntervalKind::AlwaysValid,
                        level: 1.0 - cs.alpha(),
                        look: None,
                        critical_value: None,
                        abs: within(abs, abs_se),
                        rel: rel_cs,
                    }
                }),
                (Role::Primary, Reading::Repeated { look, boundary }) => Some(IntervalReport {
                    kind: IntervalKind::Repeated,
                    level,
                    look: Some(look),
                    critical_value: Some(boundary),
                    abs: pair(abs.zip(abs_se).and_then(|(e, se)| repeated_interval(e, se, boundary))),
                    rel: pair(rel.zip(rel_se).and_then(|(e, se)| repeated_interval(e, se, boundary))),
                }),
                (Role::Primary, Reading::BeforeFirstLook) => None,
                (Role::Primary, Reading::FixedHorizon) => c.map(|c| IntervalReport {
                    kind: IntervalKind::FixedHorizon,
                    level,
                    look: None,
                    critical_value: None,
                    abs: pair(c.abs_ci),
                    rel: pair(c.rel_ci),
                }),
            };
            comparisons.push(ComparisonResult {
                variant: v.key.clone(),
                abs_diff: abs,
                rel_diff: rel,
                abs_std_error: abs_se,
                rel_std_error: rel_se,
                statistic: c.and_then(|c| c.statistic),
                p_value: c.and_then(|c| c.p_value),
                p_value_holm: None,
                interval,
                crossed_at_look: None,
                harmful,
                cuped: cuped.flatten(),
            });
        }
        let guardrail = (role == Role::Guardrail).then(|| {
            let harmful_variants: Vec<String> =
                comparisons.iter().filter(|c| c.harmful).map(|c| c.variant.clone()).collect();
            GuardrailResult {
                threshold,
                method: "confidence sequence (normal mixture), checked every cycle".into(),
                harm_detected: !harmful_variants.is_empty(),
                harmful_variants,
            }
        });
        out.push(MetricResult {
            metric: metric.key.clone(),
            event: metric.event.clone(),
            aggregation: metric.aggregation,
            role,
            variants,
            comparisons,
            p_value_family: String::new(),
            guardrail,
        });
    }
    adjust_p_values(&mut out);
    out
}

/// Holm over each family: the primary metrics × treatments, and the guardrails × treatments.
fn adjust_p_values(metrics: &mut [MetricResult]) {
    for (role, name) in [(Role::Primary, "primary metrics"), (Role::Guardrail, "guardrail metrics")] {
        let raw: Vec<f64> = metrics
            .iter()
            .filter(|m| m.role == role)
            .flat_map(|m| m.comparisons.iter().map(|c| c.p_value.unwrap_or(1.0)))
            .collect();
        let family = format!("{name} × treatments ({})", raw.len());
        let Ok(adjusted) = holm_adjust(&raw) else { continue };
        let mut adjusted = adjusted.into_iter();
        for m in metrics.iter_mut().filter(|m| m.role == role) {
            m.p_value_family = family.clone();
            for c in &mut m.comparisons {
                let p = adjusted.next();
                c.p_value_holm = c.p_value.and(p);
            }
        }
    }
}

/// The state of an experiment's look schedule that carries from cycle to cycle.
#[derive(Debug)]
pub struct Looks {
    pub plan: Option<SequentialPlan>,
    /// Primary comparisons that crossed, by (metric, variant), with the look at which they
    /// first did: a crossing stands from then on, whatever later data show.
    pub crossed: BTreeMap<(String, String), u32>,
}

impl Looks {
    /// Rebuilds a schedule from recorded look fractions and the crossings recorded with them.
    pub fn from_fractions(fractions: &[f64], alpha: f64, crossed: BTreeMap<(String, String), u32>) -> Looks {
        let plan =
            if fractions.is_empty() { None } else { SequentialPlan::obrien_fleming(fractions, alpha).ok() };
        Looks { plan, crossed }
    }

    pub fn count(&self) -> usize {
        self.plan.as_ref().map_or(0, |p| p.looks().len())
    }

    fn last(&self) -> Option<(f64, f64)> {
        self.plan.as_ref().and_then(|p| p.looks().last()).map(|l| (l.information_fraction, l.boundary))
    }

    /// The experiment's decision: the first look any primary comparison crossed at.
    pub fn decided_at(&self) -> Option<u32> {
        self.crossed.values().copied().min()
    }
}

/// A cycle's outcome for one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: ExperimentResult,
    /// A new formal look was taken: (look number, fraction, boundary).
    pub new_look: Option<(u32, f64, f64)>,
    /// A guardrail found harm beyond its threshold: pause, with this reason.
    pub breach: Option<String>,
}

/// Analyzes one cycle. `looks` is extended when the cycle is a formal look.
#[allow(clippy::too_many_arguments)]
pub fn analyze(
    exp: &ExperimentDef,
    metrics: &[MetricDef],
    overall: &Aggregates,
    excluded_units: u64,
    segments: &[(String, String, Aggregates)],
    plan: Option<&Plan>,
    looks: &mut Looks,
    s: &Settings,
    now_ms: i64,
) -> Outcome {
    let mut warnings = Vec::new();
    let observed: Vec<u64> =
        exp.variants.iter().map(|v| overall.units.get(&v.key).copied().unwrap_or(0)).collect();
    let weights: Vec<f64> = exp.variants.iter().map(|v| f64::from(v.weight_bp)).collect();
    let srm = match srm_check(&observed, &weights) {
        Ok(r) => SrmReport { chi_square: r.chi_square, p_value: r.p_value, detected: r.mismatch },
        Err(_) => SrmReport { chi_square: None, p_value: None, detected: false },
    };
    if srm.detected {
        warnings.push(
            "sample ratio mismatch: the split differs from the configured weights; results may be biased"
                .into(),
        );
    }
    if excluded_units > 0 {
        warnings.push(format!("{excluded_units} units saw more than one variant and are excluded"));
    }

    let min_units = observed.iter().copied().min().unwrap_or(0);
    let fraction = plan.map_or(0.0, |p| (min_units as f64 / p.planned_units_per_variant as f64).min(1.0));
    let last = looks.last();
    let enough = plan.is_some() && min_units >= s.min_units_per_variant && fraction > 0.0;
    let take_look = enough
        && match (exp.analysis, last) {
            (AnalysisMethod::Sequential, None) => true,
            (AnalysisMethod::Sequential, Some((t, _))) => {
                fraction >= (t + s.min_look_step).min(1.0) && t < 1.0
            }
            // One look, at the planned sample: an O'Brien-Fleming plan of one look at t = 1 is
            // the fixed-horizon test (c = z₁₋α/₂).
            (AnalysisMethod::FixedHorizon, None) => fraction >= 1.0,
            (AnalysisMethod::FixedHorizon, Some(_)) => false,
        };
    let mut new_look = None;
    if take_look {
        let extended = match looks.plan.as_mut() {
            Some(p) => p.extend(fraction).map(|l| l.boundary).ok(),
            None => SequentialPlan::obrien_fleming(&[fraction], s.alpha).ok().map(|p| {
                let b = p.looks()[0].boundary;
                looks.plan = Some(p);
                b
            }),
        };
        if let Some(b) = extended {
            new_look = Some((looks.count() as u32, fraction, b));
        }
    }
    let (look, boundary) = match looks.last() {
        Some((_, b)) => (looks.count() as u32, Some(b)),
        None => (0, None),
    };
    let reading = match (exp.analysis, boundary) {
        (AnalysisMethod::FixedHorizon, _) => Reading::FixedHorizon,
        (AnalysisMethod::Sequential, Some(b)) => Reading::Repeated { look, boundary: b },
        (AnalysisMethod::Sequential, None) => Reading::BeforeFirstLook,
    };
    let planned_total = plan.map_or(s.default_planned_units, |p| p.planned_units_per_variant) as f64 * 2.0;
    let cs = ConfidenceSequence::tuned(s.alpha, planned_total.max(1.0)).ok();
    let mut metrics_out = metric_results(exp, metrics, overall, s, reading, cs.as_ref());

    // Decisions are made at formal looks only, by the rule the interval shows: a primary
    // comparison crosses when its interval at the look's boundary excludes 0.
    if let Some((k, _, b)) = new_look {
        for m in metrics_out.iter().filter(|m| m.role == Role::Primary) {
            for c in &m.comparisons {
                let crossed = c
                    .abs_diff
                    .zip(c.abs_std_error)
                    .and_then(|(d, se)| repeated_interval(d, se, b))
                    .is_some_and(|i| !i.contains(0.0));
                if crossed {
                    looks.crossed.entry((m.metric.clone(), c.variant.clone())).or_insert(k);
                }
            }
        }
    }
    for m in metrics_out.iter_mut().filter(|m| m.role == Role::Primary) {
        for c in &mut m.comparisons {
            c.crossed_at_look = looks.crossed.get(&(m.metric.clone(), c.variant.clone())).copied();
        }
    }
    if matches!(reading, Reading::BeforeFirstLook) && !exp.primary_metrics.is_empty() {
        warnings.push("no formal look yet: primary metrics show no interval until the first look".into());
    }
    if exp.analysis == AnalysisMethod::FixedHorizon && new_look.is_none() && look == 0 {
        warnings.push(
            "fixed-horizon analysis: nothing is decided before the planned sample; the intervals are valid only then"
                .into(),
        );
    }

    let breach =
        metrics_out.iter().find(|m| m.guardrail.as_ref().is_some_and(|g| g.harm_detected)).map(|m| {
            let g = m.guardrail.as_ref().expect("harmful guardrail");
            let detail: Vec<String> = m
                .comparisons
                .iter()
                .filter(|c| c.harmful)
                .filter_map(|c| c.rel_diff.map(|r| format!("{}: {:+.2}%", c.variant, r * 100.0)))
                .collect();
            format!(
                "guardrail {} is worse than its threshold of {:.2}% ({}), by an always-valid interval",
                m.metric,
                g.threshold * 100.0,
                detail.join(", ")
            )
        });

    let mut segment_results = Vec::new();
    for (attribute, value, agg) in segments {
        segment_results.push(SegmentResult {
            attribute: attribute.clone(),
            value: value.clone(),
            units: agg.total_units(),
            exploratory: true,
            // Segments inform; they never pause or decide (no confidence sequence: nothing is
            // harmful, and no guardrail verdict is given).
            metrics: metric_results(exp, metrics, agg, s, Reading::FixedHorizon, None)
                .into_iter()
                .map(|m| MetricResult { guardrail: None, ..m })
                .collect(),
        });
    }
    let segment_comparisons: usize =
        segment_results.iter().flat_map(|s| &s.metrics).map(|m| m.comparisons.len()).sum();
    if segment_comparisons > 0 {
        warnings.push(format!(
            "{segment_comparisons} segment comparisons: some will look significant by chance; treat segment results as hypotheses"
        ));
    }

    Outcome {
        result: ExperimentResult {
            experiment_id: exp.id.to_string(),
            experiment_key: exp.key.clone(),
            computed_at_ms: now_ms,
            holdout: false,
            analysis: exp.analysis,
            look,
            information_fraction: fraction,
            boundary,
            planned_units_per_variant: plan.map(|p| p.planned_units_per_variant),
            units: overall.units.clone(),
            excluded_units,
            srm,
            metrics: metrics_out,
            segments: segment_results,
            segment_comparisons,
            warnings,
            decided_at_look: looks.decided_at(),
            paused_by_guardrail: breach.clone(),
            coverage: None,
        },
        new_look,
        breach,
    }
}

/// The crossings recorded in a stored look's result: (metric, variant) → look. Results stored
/// before crossings were recorded per comparison mark them with `boundary_crossed` at the look.
pub fn recorded_crossings(look: u32, result: &serde_json::Value) -> BTreeMap<(String, String), u32> {
    let mut crossed = BTreeMap::new();
    let metrics = result.get("metrics").and_then(|m| m.as_array()).map_or(&[][..], |m| m.as_slice());
    for m in metrics.iter().filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("primary")) {
        let name = m.get("metric").and_then(|v| v.as_str()).unwrap_or_default();
        for c in m.get("comparisons").and_then(|c| c.as_array()).map_or(&[][..], |c| c.as_slice()) {
            let variant = c.get("variant").and_then(|v| v.as_str()).unwrap_or_default();
            let at = match c.get("crossed_at_look").and_then(|v| v.as_u64()) {
                Some(k) => Some(k as u32),
                None => (c.get("boundary_crossed").and_then(|v| v.as_bool()) == Some(true)).then_some(look),
            };
            if let Some(k) = at {
                crossed.insert((name.to_owned(), variant.to_owned()), k);
            }
        }
    }
    crossed
}

/// Keeps the `max` most populous values of an attribute and folds the rest into "other".
pub fn top_values(mut values: Vec<(String, Aggregates)>, max: usize) -> Vec<(String, Aggregates)> {
    values.sort_by(|a, b| b.1.total_units().cmp(&a.1.total_units()).then(a.0.cmp(&b.0)));
    if values.len() <= max {
        return values;
    }
    let rest = values.split_off(max);
    let mut other = Aggregates::default();
    for (_, a) in &rest {
        other.add(a);
    }
    values.push(("other".into(), other));
    values
}

#[cfg(test)]
mod tests;
