//! The pure analysis: planted effects, A/A, SRM, guardrails, looks and segments.

use cohort_core::model::{Aggregation, Direction, ExperimentDef, MetricDef};
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
            description: String::new(),
        },
        MetricDef {
            key: "latency".into(),
            event: "page_load".into(),
            aggregation: Aggregation::Mean,
            direction: Direction::Decrease,
            guardrail_threshold: Some(0.05),
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
    let mut looks = Looks::from_fractions(&[], 0.05, None);
    let out = run(&exp, &aggregates([8000, 8000], [800, 960]), &mut looks);
    assert_eq!(out.new_look.map(|l| l.0), Some(1));
    let c = &out.result.metrics[0].comparisons[0];
    assert!(c.abs_diff.unwrap() > 0.0 && c.boundary_crossed, "{c:?}");
    let [lo, hi] = c.abs_ci.unwrap();
    assert!(lo < 0.02 && 0.02 < hi, "CI [{lo}, {hi}] covers the planted +2 points");
    assert!(out.result.boundary_crossed);
    assert!(!out.result.srm.detected);
}

#[test]
fn no_difference_crosses_nothing() {
    let exp = experiment(false);
    let mut looks = Looks::from_fractions(&[], 0.05, None);
    let out = run(&exp, &aggregates([8000, 8000], [800, 810]), &mut looks);
    assert!(!out.result.boundary_crossed);
}

#[test]
fn looks_need_enough_new_information() {
    let exp = experiment(false);
    let mut looks = Looks::from_fractions(&[], 0.05, None);
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
    let mut looks = Looks::from_fractions(&[], 0.05, None);
    let out = run(&exp, &aggregates([5000, 4500], [500, 450]), &mut looks);
    assert!(out.result.srm.detected);
    assert!(out.result.warnings.iter().any(|w| w.starts_with("sample ratio mismatch")));
}

#[test]
fn a_harmful_guardrail_is_breached_at_a_look() {
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
    let mut looks = Looks::from_fractions(&[], 0.05, None);
    let out = run(&exp, &agg, &mut looks);
    let g = out.result.metrics.iter().find(|m| m.metric == "latency").unwrap().guardrail.clone().unwrap();
    assert!(g.breached, "{g:?}");
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
    let mut looks = Looks::from_fractions(&[], 0.05, None);
    let first = run(&exp, &aggregates([8000, 8000], [800, 1000]), &mut looks);
    assert!(first.result.boundary_crossed);
    assert_eq!(first.result.decided_at_look, Some(1));
    // Between looks nothing is re-decided, but the decision is still reported.
    let between = run(&exp, &aggregates([8100, 8100], [810, 1010]), &mut looks);
    assert_eq!(
        (between.new_look, between.result.boundary_crossed, between.result.decided_at_look),
        (None, true, Some(1))
    );
}
