//! One experiment's analysis from its aggregates, with no I/O: per-variant summaries, the
//! comparisons against control, the sample-ratio check, the plan's information fraction,
//! whether this cycle is a formal look, the group-sequential decision and guardrail breaches.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cohort_core::model::{Aggregation, Direction, ExperimentDef, MetricDef};
use cohort_stats::{
    Comparison, Effect, MeanSummary, ProportionSummary, SequentialPlan, compare_means, compare_proportions,
    holm_adjust, sample_size_means, sample_size_proportions, srm_check,
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

/// What SQL reduced an experiment's events to, for one population (all units or a segment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    /// Units exposed to exactly one variant, by variant.
    pub units: BTreeMap<String, u64>,
    /// (variant, event) → sums.
    pub events: HashMap<(String, String), EventSums>,
}

impl Aggregates {
    pub fn add(&mut self, o: &Aggregates) {
        for (v, n) in &o.units {
            *self.units.entry(v.clone()).or_default() += n;
        }
        for (k, s) in &o.events {
            self.events.entry(k.clone()).or_default().add(s);
        }
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonResult {
    pub variant: String,
    pub abs_diff: Option<f64>,
    pub rel_diff: Option<f64>,
    /// Delta-method standard error of `rel_diff`.
    pub rel_std_error: Option<f64>,
    pub abs_ci: Option<[f64; 2]>,
    pub rel_ci: Option<[f64; 2]>,
    /// z (conversions) or t (continuous metrics).
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    /// Holm-adjusted over the treatments of this metric.
    pub p_value_holm: Option<f64>,
    /// Fixed-horizon significance at alpha (not valid under repeated looks; see `boundary_crossed`).
    pub significant: bool,
    /// Whether |statistic| reached the group-sequential boundary of the current look.
    pub boundary_crossed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailResult {
    /// The tolerated relative degradation.
    pub threshold: f64,
    /// How far, in standard errors, the change is beyond the threshold in the harmful direction.
    pub harm_statistic: Option<f64>,
    /// Crossed the boundary in the harmful direction at a formal look.
    pub breached: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub metric: String,
    pub event: String,
    pub aggregation: Aggregation,
    pub role: Role,
    pub variants: Vec<VariantStats>,
    pub comparisons: Vec<ComparisonResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<GuardrailResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentResult {
    pub attribute: String,
    pub value: String,
    pub units: u64,
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
    /// The formal look this result belongs to (0 before the first).
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
    /// A primary metric crossed its boundary at a look (this one or an earlier one).
    pub boundary_crossed: bool,
    /// The look at which it first did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at_look: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by_guardrail: Option<String>,
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
    let sums = agg.events.get(&(control.to_owned(), metric.event.clone())).copied().unwrap_or_default();
    let planned = match summarize(metric, control_units, &sums) {
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

pub fn control_variant(exp: &ExperimentDef) -> &str {
    exp.variants.iter().find(|v| v.control).or(exp.variants.first()).map_or("", |v| v.key.as_str())
}

enum Summary {
    Proportion(ProportionSummary),
    Mean(MeanSummary),
}

fn summarize(metric: &MetricDef, units: u64, s: &EventSums) -> Summary {
    let mean = |n: u64, sum: f64, sum_sq: f64| {
        MeanSummary::new(n, sum, sum_sq)
            .unwrap_or_else(|_| MeanSummary::new(0, 0.0, 0.0).expect("empty summary"))
    };
    match metric.aggregation {
        Aggregation::Conversion => Summary::Proportion(
            ProportionSummary::new(units, s.units_with_events.min(units))
                .unwrap_or_else(|_| ProportionSummary::new(0, 0).expect("empty summary")),
        ),
        Aggregation::Count => Summary::Mean(mean(units, s.count_sum, s.count_sum_sq)),
        Aggregation::Sum => Summary::Mean(mean(units, s.value_sum, s.value_sum_sq)),
        Aggregation::Mean => Summary::Mean(mean(s.mean_units, s.mean_sum, s.mean_sum_sq)),
    }
}

fn compare(c: &Summary, t: &Summary, alpha: f64) -> Option<Comparison> {
    match (c, t) {
        (Summary::Proportion(c), Summary::Proportion(t)) => compare_proportions(*c, *t, alpha).ok(),
        (Summary::Mean(c), Summary::Mean(t)) => compare_means(*c, *t, alpha).ok(),
        _ => None,
    }
}

fn stats(variant: &str, s: &Summary) -> VariantStats {
    match s {
        Summary::Proportion(p) => VariantStats { variant: variant.into(), n: p.units(), mean: p.rate() },
        Summary::Mean(m) => VariantStats { variant: variant.into(), n: m.n(), mean: m.mean() },
    }
}

/// Every metric of the experiment over one population; `boundary` is the current look's.
fn metric_results(
    exp: &ExperimentDef,
    metrics: &[MetricDef],
    agg: &Aggregates,
    s: &Settings,
    boundary: Option<f64>,
) -> Vec<MetricResult> {
    let control = control_variant(exp);
    let roles = exp
        .primary_metrics
        .iter()
        .map(|k| (k, Role::Primary))
        .chain(exp.guardrail_metrics.iter().map(|k| (k, Role::Guardrail)));
    let mut out = Vec::new();
    for (key, role) in roles {
        let Some(metric) = metrics.iter().find(|m| m.key == *key) else { continue };
        let summary = |variant: &str| {
            let units = agg.units.get(variant).copied().unwrap_or(0);
            let sums =
                agg.events.get(&(variant.to_owned(), metric.event.clone())).copied().unwrap_or_default();
            summarize(metric, units, &sums)
        };
        let control_summary = summary(control);
        let mut variants = vec![stats(control, &control_summary)];
        let mut comparisons = Vec::new();
        for v in exp.variants.iter().filter(|v| v.key != control) {
            let t = summary(&v.key);
            variants.push(stats(&v.key, &t));
            let c = compare(&control_summary, &t, s.alpha);
            let statistic = c.as_ref().and_then(|c| c.statistic);
            comparisons.push(ComparisonResult {
                variant: v.key.clone(),
                abs_diff: c.as_ref().and_then(|c| c.abs_diff),
                rel_diff: c.as_ref().and_then(|c| c.rel_diff),
                rel_std_error: c.as_ref().and_then(|c| c.rel_std_error),
                abs_ci: c.as_ref().and_then(|c| c.abs_ci).map(|i| [i.lower, i.upper]),
                rel_ci: c.as_ref().and_then(|c| c.rel_ci).map(|i| [i.lower, i.upper]),
                statistic,
                p_value: c.as_ref().and_then(|c| c.p_value),
                p_value_holm: None,
                significant: c.as_ref().is_some_and(|c| c.significant),
                boundary_crossed: matches!((statistic, boundary), (Some(z), Some(b)) if z.abs() >= b),
            });
        }
        let raw: Vec<f64> = comparisons.iter().map(|c| c.p_value.unwrap_or(1.0)).collect();
        if let Ok(adjusted) = holm_adjust(&raw) {
            for (c, p) in comparisons.iter_mut().zip(adjusted) {
                c.p_value_holm = c.p_value.map(|_| p);
            }
        }
        let guardrail = (role == Role::Guardrail).then(|| guardrail(metric, &comparisons, boundary));
        out.push(MetricResult {
            metric: metric.key.clone(),
            event: metric.event.clone(),
            aggregation: metric.aggregation,
            role,
            variants,
            comparisons,
            guardrail,
        });
    }
    out
}

/// The worst treatment's harm: its relative change beyond the tolerated degradation, in
/// standard errors, in the metric's bad direction; breached when it reaches the boundary.
fn guardrail(metric: &MetricDef, comparisons: &[ComparisonResult], boundary: Option<f64>) -> GuardrailResult {
    let threshold = metric.guardrail_threshold.unwrap_or(0.0);
    let harm = comparisons
        .iter()
        .filter_map(|c| {
            let (rel, se) = (c.rel_diff?, c.rel_std_error?);
            (se > 0.0).then(|| match metric.direction {
                Direction::Increase => -(rel + threshold) / se,
                Direction::Decrease => (rel - threshold) / se,
            })
        })
        .max_by(f64::total_cmp);
    let breached = matches!((harm, boundary), (Some(h), Some(b)) if h >= b);
    GuardrailResult { threshold, harm_statistic: harm, breached }
}

/// The state of an experiment's look schedule that carries from cycle to cycle.
#[derive(Debug)]
pub struct Looks {
    pub plan: Option<SequentialPlan>,
    /// The first look at which a primary metric crossed its boundary: the decision stands
    /// from then on, whatever later data show.
    pub decided_at: Option<u32>,
}

impl Looks {
    /// Rebuilds a schedule from recorded look fractions and the look that decided, if any.
    pub fn from_fractions(fractions: &[f64], alpha: f64, decided_at: Option<u32>) -> Looks {
        let plan =
            if fractions.is_empty() { None } else { SequentialPlan::obrien_fleming(fractions, alpha).ok() };
        Looks { plan, decided_at }
    }

    pub fn count(&self) -> usize {
        self.plan.as_ref().map_or(0, |p| p.looks().len())
    }

    fn last(&self) -> Option<(f64, f64)> {
        self.plan.as_ref().and_then(|p| p.looks().last()).map(|l| (l.information_fraction, l.boundary))
    }
}

/// A cycle's outcome for one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: ExperimentResult,
    /// A new formal look was taken: (look number, fraction, boundary).
    pub new_look: Option<(u32, f64, f64)>,
    /// A guardrail that crossed its boundary in the harmful direction: pause, with this reason.
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
    let take_look = plan.is_some()
        && min_units >= s.min_units_per_variant
        && fraction > 0.0
        && match last {
            None => true,
            Some((t, _)) => fraction >= (t + s.min_look_step).min(1.0) && t < 1.0,
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
    let (look, boundary) = match (new_look, looks.last()) {
        (Some((k, _, b)), _) => (k, Some(b)),
        (None, Some((_, b))) => (looks.count() as u32, Some(b)),
        (None, None) => (0, None),
    };
    // Decisions are made at formal looks only; between looks the numbers are informational.
    let decision_boundary = new_look.map(|(_, _, b)| b);
    let mut metrics_out = metric_results(exp, metrics, overall, s, decision_boundary);
    if decision_boundary.is_none() {
        for m in &mut metrics_out {
            for c in &mut m.comparisons {
                c.boundary_crossed = false;
            }
            if let Some(g) = &mut m.guardrail {
                g.breached = false;
            }
        }
    }
    let crossed_now = metrics_out
        .iter()
        .filter(|m| m.role == Role::Primary)
        .any(|m| m.comparisons.iter().any(|c| c.boundary_crossed));
    if crossed_now && looks.decided_at.is_none() {
        looks.decided_at = Some(look);
    }
    let boundary_crossed = looks.decided_at.is_some();
    let breach = metrics_out.iter().find(|m| m.guardrail.as_ref().is_some_and(|g| g.breached)).map(|m| {
        let g = m.guardrail.as_ref().expect("breached guardrail");
        let worst = m.comparisons.iter().filter_map(|c| c.rel_diff.map(|r| (c.variant.as_str(), r))).min_by(
            |a, b| match m.guardrail_direction(metrics) {
                Direction::Increase => a.1.total_cmp(&b.1),
                Direction::Decrease => b.1.total_cmp(&a.1),
            },
        );
        let detail = worst.map_or(String::new(), |(v, r)| format!(" ({v}: {:+.2}%)", r * 100.0));
        format!(
            "guardrail {} is worse than its threshold of {:.2}%{detail} at look {look}",
            m.metric,
            g.threshold * 100.0
        )
    });

    let mut segment_results = Vec::new();
    for (attribute, value, agg) in segments {
        segment_results.push(SegmentResult {
            attribute: attribute.clone(),
            value: value.clone(),
            units: agg.total_units(),
            metrics: metric_results(exp, metrics, agg, s, None),
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
            boundary_crossed,
            decided_at_look: looks.decided_at,
            paused_by_guardrail: breach.clone(),
        },
        new_look,
        breach,
    }
}

impl MetricResult {
    fn guardrail_direction(&self, metrics: &[MetricDef]) -> Direction {
        metrics.iter().find(|m| m.key == self.metric).map_or(Direction::Increase, |m| m.direction)
    }
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
