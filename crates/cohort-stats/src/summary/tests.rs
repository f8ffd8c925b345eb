//! Unit tests for the per-variant summaries: validation, rates, and careful variances.

use super::*;

#[test]
fn proportion_summary_validates_counts() {
    assert_eq!(
        ProportionSummary::new(10, 11),
        Err(StatsError::ConversionsExceedUnits { units: 10, conversions: 11 })
    );
    let s = ProportionSummary::new(10, 10).unwrap();
    assert_eq!(s.rate(), Some(1.0));
    assert_eq!(ProportionSummary::new(0, 0).unwrap().rate(), None);
}

#[test]
fn proportion_summary_takes_counts_beyond_32_bits() {
    let s = ProportionSummary::new(6_000_000_000, 3_000_000_001).unwrap();
    assert_eq!(s.units(), 6_000_000_000);
    let (p, q) = s.rate_and_complement().unwrap();
    assert!((p + q - 1.0).abs() < 1e-15);
}

#[test]
fn mean_summary_rejects_impossible_inputs() {
    assert!(matches!(MeanSummary::new(3, f64::NAN, 1.0), Err(StatsError::NotFinite { name: "sum", .. })));
    assert!(matches!(
        MeanSummary::new(3, 1.0, f64::INFINITY),
        Err(StatsError::NotFinite { name: "sum_sq", .. })
    ));
    assert_eq!(MeanSummary::new(3, 1.0, -1.0), Err(StatsError::NegativeSumOfSquares(-1.0)));
}

#[test]
fn variance_needs_two_observations() {
    assert_eq!(MeanSummary::new(0, 0.0, 0.0).unwrap().mean(), None);
    let one = MeanSummary::new(1, 5.0, 25.0).unwrap();
    assert_eq!(one.mean(), Some(5.0));
    assert_eq!(one.variance(), None);
    let two = MeanSummary::from_values(&[1.0, 3.0]).unwrap();
    assert_eq!(two.variance(), Some(2.0));
}

#[test]
fn variance_of_constant_data_is_exactly_zero() {
    // Summing 0.1 a thousand times rounds, so Σx and Σx² disagree in the last bits.
    let s = MeanSummary::from_values(&[0.1; 1000]).unwrap();
    assert!(s.variance().unwrap() < 1e-15);
    let s = MeanSummary::new(12, 48.0, 192.0).unwrap();
    assert_eq!(s.variance(), Some(0.0));
}

#[test]
fn variance_survives_a_large_mean() {
    // Values 1e6 + {−1, 0, 1} repeated: variance 2/3·n/(n−1), under a mean² of 1e12.
    let values: Vec<f64> = (0..3000).map(|i| 1.0e6 + f64::from(i % 3) - 1.0).collect();
    let s = MeanSummary::from_values(&values).unwrap();
    let expected = 2000.0 / 2999.0;
    let got = s.variance().unwrap();
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
}

#[test]
fn merge_adds_disjoint_summaries() {
    let a = MeanSummary::from_values(&[1.0, 2.0]).unwrap();
    let b = MeanSummary::from_values(&[3.0, 4.0, 5.0]).unwrap();
    let all = MeanSummary::from_values(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    assert_eq!(a.merge(&b), all);
    assert_eq!(all.variance(), Some(2.5));
}
