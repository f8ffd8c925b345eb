//! Unit tests for sample sizes and information fractions.

use super::*;

#[test]
fn proportions_sample_size_matches_the_textbook_formula() {
    // 10% → 11% at α = 0.05, power 0.8: the usual answer is 14,751 per arm.
    let n = sample_size_proportions(0.10, Effect::Absolute(0.01), 0.05, 0.8).unwrap();
    assert_eq!(n, 14_751);
    let relative = sample_size_proportions(0.10, Effect::Relative(0.10), 0.05, 0.8).unwrap();
    assert!(relative.abs_diff(n) <= 1, "{relative} vs {n}");
}

#[test]
fn means_sample_size_matches_the_textbook_formula() {
    // 2 (1.959964 + 0.841621)² σ²/δ² with σ = δ: 15.698 → 16.
    assert_eq!(sample_size_means(1.0, 1.0, 0.05, 0.8).unwrap(), 16);
    assert_eq!(sample_size_means(10.0, 1.0, 0.05, 0.8).unwrap(), 1_570);
}

#[test]
fn sample_size_grows_with_power_and_shrinks_with_effect() {
    let base = sample_size_proportions(0.2, Effect::Absolute(0.02), 0.05, 0.8).unwrap();
    let more_power = sample_size_proportions(0.2, Effect::Absolute(0.02), 0.05, 0.9).unwrap();
    let bigger_effect = sample_size_proportions(0.2, Effect::Absolute(0.04), 0.05, 0.8).unwrap();
    assert!(more_power > base && bigger_effect < base);
}

#[test]
fn bad_plans_are_rejected() {
    assert!(matches!(
        sample_size_proportions(0.0, Effect::Absolute(0.01), 0.05, 0.8),
        Err(StatsError::OutOfRange { name: "baseline", .. })
    ));
    assert_eq!(
        sample_size_proportions(0.95, Effect::Absolute(0.1), 0.05, 0.8),
        Err(StatsError::InvalidEffect(0.1))
    );
    assert_eq!(
        sample_size_proportions(0.5, Effect::Relative(0.0), 0.05, 0.8),
        Err(StatsError::InvalidEffect(0.0))
    );
    assert_eq!(sample_size_means(1.0, 1.0, 1.5, 0.8), Err(StatsError::InvalidAlpha(1.5)));
    assert_eq!(sample_size_means(1.0, 1.0, 0.05, 1.0), Err(StatsError::InvalidPower(1.0)));
    assert!(sample_size_means(0.0, 1.0, 0.05, 0.8).is_err());
    assert!(sample_size_means(1.0, 0.0, 0.05, 0.8).is_err());
}

#[test]
fn information_fraction_is_clamped() {
    assert_eq!(information_fraction(0, 100), None);
    assert_eq!(information_fraction(10, 0), None);
    assert_eq!(information_fraction(25, 100), Some(0.25));
    assert_eq!(information_fraction(150, 100), Some(1.0));
    assert_eq!(information_fraction(5_000_000_000, 10_000_000_000), Some(0.5));
}
