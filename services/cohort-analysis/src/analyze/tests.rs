//! The pure analysis: planted effects, A/A, SRM, guardrails, looks and segments.

use std::collections::BTreeMap;

use cohort_core::model::{Aggregation, AnalysisMethod, Direction, ExperimentDef, MetricDef};
use serde_json::json;

use super::*;

fn experiment(guardrail: bool) -> ExperimentDef {
    serde_json::from_value(json!({
        "id": "00000000-0000-4000-8000-000000000001", "key": "checkout", "status": "running",
        "variants": [{"key": "control", "weight_bp": 5000, "control": true}, {"key": "treatment", "weight_bp": 5000}],
        "primary_metrics": ["purchase"],
        "guardrail_metrics": if guardrail { json!(["latency"]) } else { json!([]) },
        "planned_units_per_variant": 10000,
    }))
    .unwrap()
}

fn metrics() -> Vec<MetricDef> {
    vec![
        MetricDef {
            key: "purchase".into(),
            event: "purchase".into(),
            aggregation: Aggregation::Conversion,
            direction: Direction::Increase,
            guardrail_threshold: None,
            window_seconds: None,
            ratio: None,
            cuped: None,
            description: String::new(),
        },
        MetricDef {
            key: "latency".into(),
            event: "page_load".into(),
            aggregation: Aggregation::Mean,
            direction: Direction::Decrease,
            guardrail_threshold: Some(0.05),
            window_seconds: None,
            ratio: None,
            cuped: None,
            description: String::new(),
        },
    ]
}

fn aggregates(units: [u64; 2], conversions: [u64; 2]) -> Aggregates {
    let mut a = Aggregates::default();
    for (i, v) in ["control", "treatment"].into_iter().enumerate() {
        a.units.insert(v.into(), units[i]);
        let c = conversions[i] as f64;
        a.events.insert(
            (v.into(), "purchase".into()),
            EventSums {
                units_with_events: conversions[i],
                count_sum: c,
                count_sum_sq: c,
                value_sum: 0.0,
                value_sum_sq: 0.0,
                mean_units: 0,
                mean_sum: 0.0,
                mean_sum_sq: 0.0,
            },
        );
    }
    a
}

fn run(exp: &ExperimentDef, agg: &Aggregates, looks: &mut Looks) -> Outcome {
    let plan = make_plan(exp, &metrics(), agg, &Settings::default());
    analyze(exp, &metrics(), agg, 0, &[], plan.as_ref(), looks, &Settings::default(), 0)
}

#[test]
fn a_planted_effect_is_detected_with_the_right_sign() {
    let exp = experiment(false);
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let out = run(&exp, &aggregates([8000, 8000], [800, 960]), &mut looks);
    assert_eq!(out.new_look.map(|l| l.0), Some(1));
    let c = &out.result.metrics[0].comparisons[0];
    assert!(c.abs_diff.unwrap() > 0.0 && c.crossed_at_look == Some(1), "{c:?}");
    let interval = c.interval.as_ref().unwrap();
    assert_eq!((interval.kind, interval.look), (IntervalKind::Repeated, Some(1)));
    let [lo, hi] = interval.abs.unwrap();
    assert!(0.0 < lo && lo < 0.02 && 0.02 < hi, "repeated interval [{lo}, {hi}] covers +2 points, not 0");
    // The repeated interval is the estimate ± the look's boundary in standard errors.
    let b = out.result.boundary.unwrap();
    assert!((hi - lo - 2.0 * b * c.abs_std_error.unwrap()).abs() < 1e-12);
    assert_eq!(out.result.decided_at_look, Some(1));
    assert!(!out.result.srm.detected);
}

#[test]
fn no_difference_crosses_nothing() {
    let exp = experiment(false);
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let out = run(&exp, &aggregates([8000, 8000], [800, 810]), &mut looks);
    assert_eq!(out.result.decided_at_look, None);
    assert_eq!(out.result.metrics[0].comparisons[0].crossed_at_look, None);
}

#[test]
fn looks_need_enough_new_information() {
    let exp = experiment(false);
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    assert!(
        run(&exp, &aggregates([50, 50], [5, 5]), &mut looks).new_look.is_none(),
        "below the minimum units"
    );
    let first = run(&exp, &aggregates([1000, 1000], [100, 100]), &mut looks);
    assert_eq!(first.new_look.map(|l| l.0), Some(1));
    let same = run(&exp, &aggregates([1100, 1100], [110, 110]), &mut looks);
    assert_eq!((same.new_look, same.result.look), (None, 1), "0.01 more information is no new look");
    let second = run(&exp, &aggregates([1300, 1300], [130, 130]), &mut looks);
    assert_eq!(second.new_look.map(|l| l.0), Some(2));
    // Later looks have lower boundaries (O'Brien-Fleming spends little alpha early).
    assert!(second.new_look.unwrap().2 < first.new_look.unwrap().2);
}

#[test]
fn a_skewed_split_raises_srm() {
    let exp = experiment(false);
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let out = run(&exp, &aggregates([5000, 4500], [500, 450]), &mut looks);
    assert!(out.result.srm.detected);
    assert!(out.result.warnings.iter().any(|w| w.starts_with("sample ratio mismatch")));
}

#[test]
fn a_harmful_guardrail_is_found_and_pauses() {
    let exp = experiment(true);
    let mut agg = aggregates([8000, 8000], [800, 800]);
    // Page load: control mean 1.0 s, treatment 1.3 s (30 % worse; tolerated 5 %), sd 0.2.
    for (v, mean) in [("control", 1.0f64), ("treatment", 1.3)] {
        let n = 8000.0;
        let var = 0.04;
        agg.events.insert(
            (v.into(), "page_load".into()),
            EventSums {
                mean_units: 8000,
                mean_sum: mean * n,
                mean_sum_sq: (var * (n - 1.0)) + n * mean * mean,
                ..EventSums::default()
            },
        );
    }
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let out = run(&exp, &agg, &mut looks);
    let m = out.result.metrics.iter().find(|m| m.metric == "latency").unwrap();
    let g = m.guardrail.clone().unwrap();
    assert!(g.harm_detected && g.harmful_variants == ["treatment"], "{g:?}");
    let c = &m.comparisons[0];
    assert_eq!(c.interval.as_ref().unwrap().kind, IntervalKind::AlwaysValid);
    assert_eq!(c.crossed_at_look, None, "guardrail comparisons do not decide efficacy");
    let reason = out.breach.expect("a breach pauses");
    assert!(reason.starts_with("guardrail latency is worse than its threshold of 5.00%"), "{reason}");
}

#[test]
fn plans_come_from_the_baseline_and_effect() {
    let mut exp = experiment(false);
    exp.planned_units_per_variant = None;
    exp.minimum_detectable_effect = Some(0.2);
    let plan =
        make_plan(&exp, &metrics(), &aggregates([1000, 1000], [100, 100]), &Settings::default()).unwrap();
    // Two-proportion test, 10 % → 12 %, alpha 0.05, power 0.8: about 3,840 per arm.
    assert!((3500..4200).contains(&plan.planned_units_per_variant), "{plan:?}");
    assert!(make_plan(&exp, &metrics(), &aggregates([10, 10], [1, 1]), &Settings::default()).is_none());
}

#[test]
fn small_segments_fold_into_other() {
    let values = (0..5).map(|i| (format!("v{i}"), aggregates([100 * (i + 1), 100], [1, 1]))).collect();
    let top = top_values(values, 2);
    let names: Vec<&str> = top.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["v4", "v3", "other"]);
    assert_eq!(top[2].1.units["control"], 100 + 200 + 300);
}

#[test]
fn a_decision_stands_after_the_look_that_made_it() {
    let mut exp = experiment(false);
    exp.planned_units_per_variant = Some(20_000);
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let first = run(&exp, &aggregates([8000, 8000], [800, 1000]), &mut looks);
    assert_eq!(first.result.decided_at_look, Some(1));
    // Between looks nothing is re-decided, and the decision is reported the same way by the
    // experiment and by its comparison.
    let between = run(&exp, &aggregates([8100, 8100], [810, 1010]), &mut looks);
    assert_eq!((between.new_look, between.result.decided_at_look), (None, Some(1)));
    assert_eq!(between.result.metrics[0].comparisons[0].crossed_at_look, Some(1));
    // Later data that no longer cross leave the decision standing.
    let later = run(&exp, &aggregates([12000, 12000], [1200, 1230]), &mut looks);
    assert_eq!(later.new_look.map(|l| l.0), Some(2));
    assert_eq!(later.result.metrics[0].comparisons[0].crossed_at_look, Some(1));
    // A restart rebuilds the crossings from the stored look.
    let stored = serde_json::to_value(&later.result).unwrap();
    let rebuilt = recorded_crossings(2, &stored);
    assert_eq!(rebuilt, BTreeMap::from([(("purchase".to_owned(), "treatment".to_owned()), 1)]));
    // Results stored before crossings were recorded per comparison still count.
    let old = json!({"metrics": [{"metric": "purchase", "role": "primary",
        "comparisons": [{"variant": "treatment", "boundary_crossed": true}]}]});
    assert_eq!(recorded_crossings(3, &old).into_values().collect::<Vec<_>>(), [3]);
}

#[test]
fn peeking_is_not_shown_as_significance() {
    // 1,000 per arm of a planned 10,000: the nominal p-value is below 0.05, but the first look's
    // O'Brien-Fleming boundary is far out, so nothing is decided and the interval covers 0.
    let exp = experiment(false);
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let out = run(&exp, &aggregates([1000, 1000], [100, 130]), &mut looks);
    let c = &out.result.metrics[0].comparisons[0];
    assert!(c.p_value.unwrap() < 0.05, "{c:?}");
    assert_eq!(c.crossed_at_look, None);
    let [lo, hi] = c.interval.as_ref().unwrap().abs.unwrap();
    assert!(lo < 0.0 && 0.0 < hi, "[{lo}, {hi}]");
    assert_eq!(out.result.decided_at_look, None);
}

#[test]
fn a_fixed_horizon_analysis_decides_only_at_the_planned_sample() {
    let mut exp = experiment(false);
    exp.analysis = AnalysisMethod::FixedHorizon;
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    // Half-way, a large effect: no look, no decision, a fixed-horizon interval and a warning.
    let early = run(&exp, &aggregates([5000, 5000], [500, 650]), &mut looks);
    assert_eq!((early.new_look, early.result.decided_at_look), (None, None));
    let c = &early.result.metrics[0].comparisons[0];
    assert_eq!(c.interval.as_ref().unwrap().kind, IntervalKind::FixedHorizon);
    assert!(early.result.warnings.iter().any(|w| w.starts_with("fixed-horizon analysis")));
    // At the planned sample: one look at z₀.₉₇₅, and it decides.
    let done = run(&exp, &aggregates([10000, 10000], [1000, 1100]), &mut looks);
    let (k, t, b) = done.new_look.unwrap();
    assert_eq!((k, t), (1, 1.0));
    assert!((b - 1.959_963_984_540_054).abs() < 1e-6, "{b}");
    assert_eq!(done.result.decided_at_look, Some(1));
    // And never looks again.
    let after = run(&exp, &aggregates([12000, 12000], [1200, 1200]), &mut looks);
    assert_eq!((after.new_look, after.result.decided_at_look), (None, Some(1)));
}

#[test]
fn guardrails_are_watched_every_cycle_past_the_planned_sample() {
    let exp = experiment(true);
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let latency = |agg: &mut Aggregates, n: u64, means: [f64; 2]| {
        for (v, mean) in [("control", means[0]), ("treatment", means[1])] {
            let n = n as f64;
            agg.events.insert(
                (v.into(), "page_load".into()),
                EventSums {
                    mean_units: n as u64,
                    mean_sum: mean * n,
                    mean_sum_sq: 0.04 * (n - 1.0) + n * mean * mean,
                    ..EventSums::default()
                },
            );
        }
    };
    // The last formal look was at the planned sample (fraction 1.0); no look follows it.
    let mut at_plan = aggregates([10000, 10000], [1000, 1000]);
    latency(&mut at_plan, 10000, [1.0, 1.0]);
    let first = run(&exp, &at_plan, &mut looks);
    assert!(first.new_look.is_some() && first.breach.is_none());
    // At three times the plan, the treatment slows down by 20 %: found the same cycle.
    let mut later = aggregates([30000, 30000], [3000, 3000]);
    latency(&mut later, 30000, [1.0, 1.2]);
    let out = run(&exp, &later, &mut looks);
    assert_eq!(out.new_look, None, "no formal look past fraction 1.0");
    assert!(out.breach.is_some(), "the guardrail still watches: {:?}", out.result.metrics[1]);
}

#[test]
fn p_values_are_adjusted_over_every_primary_metric_and_treatment() {
    let mut exp = experiment(false);
    exp.primary_metrics.push("latency".into());
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let out = run(&exp, &aggregates([8000, 8000], [800, 900]), &mut looks);
    let families: Vec<&str> = out.result.metrics.iter().map(|m| m.p_value_family.as_str()).collect();
    assert_eq!(families, ["primary metrics × treatments (2)"; 2]);
    let c = &out.result.metrics[0].comparisons[0];
    assert!(c.p_value_holm.unwrap() >= c.p_value.unwrap());
}

/// Sums of per-unit values (x, y) for one variant's units, as the store reduces them: x in
/// stream `a`, y in stream `b` (counts and values alike), their products under `a`×`b`.
fn unit_sums(agg: &mut Aggregates, variant: &str, a: &str, b: &str, units: &[(f64, f64)]) {
    agg.units.insert(variant.into(), units.len() as u64);
    let mut sums = |stream: &str, pick: &dyn Fn(&(f64, f64)) -> f64| {
        let e = agg.events.entry((variant.into(), stream.into())).or_default();
        for u in units {
            let v = pick(u);
            e.units_with_events += u64::from(v != 0.0);
            (e.count_sum, e.count_sum_sq) = (e.count_sum + v, e.count_sum_sq + v * v);
            (e.value_sum, e.value_sum_sq) = (e.value_sum + v, e.value_sum_sq + v * v);
        }
    };
    sums(a, &|u| u.0);
    sums(b, &|u| u.1);
    let p = agg.pairs.entry((variant.into(), pair_key(a, b))).or_default();
    for (x, y) in units {
        p.units += u64::from(*x != 0.0 && *y != 0.0);
        p.count_count += x * y;
        p.count_value += x * y;
        p.value_count += x * y;
        p.value_value += x * y;
    }
}

fn metric_experiment(metric: &str) -> ExperimentDef {
    serde_json::from_value(json!({
        "id": "00000000-0000-4000-8000-000000000002", "key": "m", "status": "running",
        "variants": [{"key": "control", "weight_bp": 5000, "control": true}, {"key": "treatment", "weight_bp": 5000}],
        "primary_metrics": [metric], "planned_units_per_variant": 1000,
    }))
    .unwrap()
}

/// Deterministic per-unit pairs: y follows x, and the treatment adds `lift` to y.
fn units(n: usize, lift: f64, seed: u64) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            let x = ((i as u64 * 7919 + seed) % 13) as f64;
            (x, 2.0 + 0.8 * x + ((i as u64 * 104_729 + seed) % 5) as f64 + lift)
        })
        .collect()
}

#[test]
fn a_ratio_metric_compares_sums_of_numerators_over_denominators() {
    let metric: MetricDef = serde_json::from_value(json!({"key": "rpo", "event": "revenue",
        "aggregation": "ratio", "ratio": {"denominator_event": "orders", "numerator": "sum", "denominator": "count"}}))
    .unwrap();
    let mut agg = Aggregates::default();
    // (numerator, denominator) per unit.
    let swap = |v: Vec<(f64, f64)>| v.into_iter().map(|(x, y)| (y, x + 1.0)).collect::<Vec<_>>();
    let (c, t) = (swap(units(400, 0.0, 1)), swap(units(400, 1.0, 2)));
    unit_sums(&mut agg, "control", "revenue", "orders", &c);
    unit_sums(&mut agg, "treatment", "revenue", "orders", &t);
    let exp = metric_experiment("rpo");
    let out = analyze(
        &exp,
        &[metric],
        &agg,
        0,
        &[],
        None,
        &mut Looks::from_fractions(&[], 0.05, BTreeMap::new()),
        &Settings::default(),
        0,
    );
    let m = &out.result.metrics[0];
    let summary = |u: &[(f64, f64)]| {
        let s = |f: &dyn Fn(&(f64, f64)) -> f64| u.iter().map(f).sum::<f64>();
        RatioSummary::new(
            u.len() as u64,
            s(&|p| p.0),
            s(&|p| p.0 * p.0),
            s(&|p| p.1),
            s(&|p| p.1 * p.1),
            s(&|p| p.0 * p.1),
        )
        .unwrap()
    };
    let want = compare_ratios(summary(&c), summary(&t), 0.05).unwrap();
    let got = &m.comparisons[0];
    assert_eq!(
        (got.abs_diff, got.abs_std_error, got.p_value),
        (want.abs_diff, want.abs_std_error(), want.p_value)
    );
    assert_eq!(m.variants[0].mean, summary(&c).ratio());
    assert!(got.cuped.is_none());
}

#[test]
fn a_cuped_metric_reports_the_adjusted_and_unadjusted_estimates() {
    let metric: MetricDef = serde_json::from_value(json!({"key": "rev", "event": "order",
        "aggregation": "sum", "cuped": {"pre_period_seconds": 86400}}))
    .unwrap();
    let (pre, post) = (metric.pre_period_stream().unwrap(), metric.stream());
    let mut agg = Aggregates::default();
    let (c, t) = (units(500, 0.0, 3), units(500, 0.5, 4));
    unit_sums(&mut agg, "control", &pre, &post, &c);
    unit_sums(&mut agg, "treatment", &pre, &post, &t);
    let exp = metric_experiment("rev");
    let mut looks = Looks::from_fractions(&[], 0.05, BTreeMap::new());
    let plan = make_plan(&exp, std::slice::from_ref(&metric), &agg, &Settings::default());
    let out = analyze(&exp, &[metric], &agg, 0, &[], plan.as_ref(), &mut looks, &Settings::default(), 0);
    let summary = |u: &[(f64, f64)]| {
        let s = |f: &dyn Fn(&(f64, f64)) -> f64| u.iter().map(f).sum::<f64>();
        CupedSummary::new(
            u.len() as u64,
            s(&|p| p.1),
            s(&|p| p.1 * p.1),
            s(&|p| p.0),
            s(&|p| p.0 * p.0),
            s(&|p| p.0 * p.1),
        )
        .unwrap()
    };
    let want = compare_cuped(summary(&c), summary(&t), 0.05).unwrap();
    let got = &out.result.metrics[0].comparisons[0];
    assert_eq!((got.abs_diff, got.abs_std_error), (want.adjusted.abs_diff, want.adjusted.abs_std_error()));
    let report = got.cuped.as_ref().expect("a CUPED report");
    assert_eq!(report.theta, want.theta);
    assert_eq!(report.unadjusted_abs_diff, want.unadjusted.abs_diff);
    assert!(report.variance_reduction.is_some_and(|r| r > 0.5), "{report:?}");
    // The look reads the adjusted estimate: its repeated interval is built on the adjusted SE.
    let interval = got.interval.as_ref().expect("a look was taken");
    let b = interval.critical_value.unwrap();
    let [lo, hi] = interval.abs.unwrap();
    assert!((hi - lo - 2.0 * b * want.adjusted.abs_std_error().unwrap()).abs() < 1e-12);
    // The unadjusted mean is what the variant shows.
    let mean = c.iter().map(|u| u.1).sum::<f64>() / c.len() as f64;
    assert!((out.result.metrics[0].variants[0].mean.unwrap() - mean).abs() < 1e-12);
}
