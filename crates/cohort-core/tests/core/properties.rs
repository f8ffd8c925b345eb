//! Invariants of bucketing and assignment: uniform buckets, monotone traffic, exclusive layers,
//! independent experiments, deterministic decisions.

use cohort_core::hash::{BUCKETS, bucket};
use cohort_core::{Context, Decision, compile, evaluate};
use proptest::prelude::*;
use serde_json::json;

use crate::compile_json;

/// Pearson chi-square of observed counts against equal expected counts.
fn chi_square_uniform(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

#[test]
fn buckets_are_uniform() {
    // 100 bins of 100 buckets, 100k units: df = 99, and chi-square above 160 has p < 1e-5.
    for salt in ["exp-1", "checkout-layer", "6a1f0e3c-2b7d-4c59-9e8a-0d3c5b7a9f21", "a", "Z_9-z"] {
        let mut bins = vec![0u64; 100];
        for i in 0..100_000 {
            bins[(bucket(salt, &format!("user-{i}")) / 100) as usize] += 1;
        }
        let chi2 = chi_square_uniform(&bins);
        assert!(chi2 < 160.0, "salt {salt}: chi-square {chi2:.1} over 100 bins");
    }
}

#[test]
fn every_bucket_is_reachable_and_in_range() {
    let mut seen = vec![false; BUCKETS as usize];
    for i in 0..200_000 {
        let b = bucket("coverage", &i.to_string());
        assert!(b < BUCKETS);
        seen[b as usize] = true;
    }
    assert!(seen.iter().all(|s| *s), "some bucket was never hit by 200k units");
}

fn two_arm(id: &str, key: &str, salt: &str, traffic: u32) -> serde_json::Value {
    json!({
        "id": id, "key": key, "salt": salt, "status": "running", "traffic_bp": traffic,
        "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 5000}],
    })
}

#[test]
fn assignments_in_two_experiments_are_independent() {
    let config = compile_json(json!({"experiments": [
        two_arm("00000000-0000-4000-8000-000000000001", "first", "salt-one", 10_000),
        two_arm("00000000-0000-4000-8000-000000000002", "second", "salt-two", 10_000),
    ]}));
    let mut table = [[0u64; 2]; 2];
    let n = 40_000;
    for i in 0..n {
        let ctx = Context::new(format!("user-{i}"));
        let arm = |d: Decision<'_>| usize::from(d.variant == Some("b"));
        table[arm(evaluate(&config, &ctx, "first"))][arm(evaluate(&config, &ctx, "second"))] += 1;
    }
    // 2x2 contingency chi-square, df = 1: above 20 has p < 1e-5.
    let rows = [table[0][0] + table[0][1], table[1][0] + table[1][1]];
    let cols = [table[0][0] + table[1][0], table[0][1] + table[1][1]];
    let mut chi2 = 0.0;
    for r in 0..2 {
        for c in 0..2 {
            let expected = rows[r] as f64 * cols[c] as f64 / n as f64;
            chi2 += (table[r][c] as f64 - expected).powi(2) / expected;
        }
    }
    assert!(chi2 < 20.0, "assignments look dependent: {table:?}, chi-square {chi2:.1}");
}

#[test]
fn variant_shares_follow_weights() {
    let config = compile_json(json!({"experiments": [{
        "id": "00000000-0000-4000-8000-000000000003", "key": "e", "status": "running",
        "variants": [{"key": "a", "weight_bp": 1000}, {"key": "b", "weight_bp": 2000}, {"key": "c", "weight_bp": 7000}],
    }]}));
    let mut counts = [0u64; 3];
    let n = 100_000;
    for i in 0..n {
        match evaluate(&config, &Context::new(format!("u{i}")), "e").variant {
            Some("a") => counts[0] += 1,
            Some("b") => counts[1] += 1,
            Some("c") => counts[2] += 1,
            other => panic!("unexpected variant {other:?}"),
        }
    }
    let expected = [0.1, 0.2, 0.7].map(|w| w * n as f64);
    let chi2: f64 = counts.iter().zip(expected).map(|(&o, e)| (o as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 25.0, "{counts:?} against weights 10/20/70 %: chi-square {chi2:.1}");
}

fn unit() -> impl Strategy<Value = String> {
    "[A-Za-z0-9@._-]{1,64}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn raising_traffic_never_removes_an_enrolled_unit(
        unit in unit(), low in 0u32..=10_000, raise in 0u32..=10_000,
    ) {
        let high = (low + raise).min(10_000);
        let at = |traffic: u32| {
            let config = compile_json(json!({"experiments": [
                two_arm("00000000-0000-4000-8000-00000000000a", "e", "ramp", traffic)
            ]}));
            let d = evaluate(&config, &Context::new(unit.as_str()), "e");
            (d.enrolled, d.variant.map(str::to_owned))
        };
        let (before, variant_before) = at(low);
        let (after, variant_after) = at(high);
        if before {
            prop_assert!(after, "enrolled at {} bp but not at {} bp", low, high);
            prop_assert_eq!(variant_before, variant_after, "variant changed with traffic");
        }
    }

    #[test]
    fn no_unit_is_in_two_experiments_of_one_layer(
        units in proptest::collection::vec(unit(), 1..50),
        mut cuts in proptest::collection::vec(1u32..10_000, 1..6),
    ) {
        cuts.sort_unstable();
        cuts.dedup();
        let mut bounds = vec![0];
        bounds.extend(cuts);
        bounds.push(10_000);
        let experiments: Vec<_> = (0..bounds.len() - 1)
            .map(|i| two_arm(&format!("00000000-0000-4000-8000-{i:012}"), &format!("e{i}"), &format!("s{i}"), 10_000))
            .map(|mut e| { e.as_object_mut().unwrap().remove("traffic_bp"); e })
            .collect();
        let ranges: Vec<_> = bounds.windows(2).enumerate()
            .map(|(i, w)| json!({"experiment": format!("e{i}"), "range": [w[0], w[1]]}))
            .collect();
        let config = compile_json(json!({
            "experiments": experiments,
            "layers": [{"key": "l", "salt": "layer-salt", "experiments": ranges}],
        }));
        for u in &units {
            let ctx = Context::new(u.as_str());
            let enrolled = (0..bounds.len() - 1).filter(|i| evaluate(&config, &ctx, &format!("e{i}")).enrolled).count();
            // The ranges cover the whole layer, so every unit is in exactly one.
            prop_assert_eq!(enrolled, 1, "unit {} is in {} experiments", u, enrolled);
        }
    }

    #[test]
    fn the_same_input_always_gives_the_same_decision(
        unit in unit(), country in "[A-Z]{2}", age in 0u32..100,
    ) {
        let defs_json = json!({
            "flags": [{
                "key": "f", "type": "string", "salt": "fs",
                "variations": [{"key": "x", "value": "X"}, {"key": "y", "value": "Y"}, {"key": "z", "value": "Z"}],
                "off_variation": "x",
                "rules": [{"condition": {"op": "gte", "attribute": "age", "value": 50}, "serve": {"variation": "z"}}],
                "default": {"split": [{"variation": "x", "weight_bp": 5000}, {"variation": "y", "weight_bp": 5000}]},
            }],
            "experiments": [two_arm("00000000-0000-4000-8000-00000000000b", "e", "es", 7000)],
        });
        let first = compile_json(defs_json.clone());
        let second = compile(&serde_json::from_value(defs_json).unwrap()).unwrap();
        let ctx = Context::new(unit.as_str()).with("country", country.as_str()).with("age", i64::from(age));
        for key in ["f", "e"] {
            let (a, b, c) = (evaluate(&first, &ctx, key), evaluate(&first, &ctx, key), evaluate(&second, &ctx, key));
            prop_assert_eq!((a.variant, a.reason, a.enrolled), (b.variant, b.reason, b.enrolled));
            prop_assert_eq!((a.variant, a.reason, a.enrolled), (c.variant, c.reason, c.enrolled));
        }
    }
}
