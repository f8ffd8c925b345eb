//! Unit tests for the comparisons: degenerate arms, identical arms, huge counts, bad alpha.

use super::*;

fn props(units: u64, conversions: u64) -> ProportionSummary {
    ProportionSummary::new(units, conversions).unwrap()
}

fn means(values: &[f64]) -> MeanSummary {
    MeanSummary::from_values(values).unwrap()
}

fn assert_no_nan(c: &Comparison) {
    let all = [
        c.control,
        c.treatment,
        c.abs_diff,
        c.rel_diff,
        c.std_error,
        c.statistic,
        c.df,
        c.p_value,
        c.rel_std_error,
        c.abs_ci.map(|i| i.lower),
        c.abs_ci.map(|i| i.upper),
        c.rel_ci.map(|i| i.lower),
        c.rel_ci.map(|i| i.upper),
    ];
    assert!(all.iter().flatten().all(|v| v.is_finite()), "{c:?}");
}

#[test]
fn empty_arms_leave_everything_undefined() {
    let c = compare_proportions(props(0, 0), props(0, 0), 0.05).unwrap();
    assert_eq!((c.control, c.abs_diff, c.p_value, c.abs_ci), (None, None, None, None));
    assert!(!c.significant);
    let c = compare_proportions(props(0, 0), props(100, 5), 0.05).unwrap();
    assert_eq!(c.treatment, Some(0.05));
    assert_eq!((c.control, c.abs_diff, c.wald), (None, None, None));
}

#[test]
fn identical_proportion_arms_give_p_one() {
    let c = compare_proportions(props(1000, 100), props(1000, 100), 0.05).unwrap();
    assert_eq!(c.abs_diff, Some(0.0));
    assert_eq!(c.rel_diff, Some(0.0));
    assert_eq!(c.statistic, Some(0.0));
    assert_eq!(c.p_value, Some(1.0));
    assert!(!c.significant);
    assert!(c.abs_ci.unwrap().contains(0.0));
}

#[test]
fn all_converted_everywhere_is_undefined_not_nan() {
    let c = compare_proportions(props(50, 50), props(70, 70), 0.05).unwrap();
    assert_eq!(c.std_error, Some(0.0));
    assert_eq!((c.statistic, c.p_value), (None, None));
    assert_eq!(c.rel_diff, Some(0.0));
    assert_no_nan(&c);
}

#[test]
fn proportions_with_counts_beyond_32_bits() {
    let c = compare_proportions(props(5_000_000_000, 500_000_000), props(5_000_000_000, 500_100_000), 0.05)
        .unwrap();
    assert!((c.abs_diff.unwrap() - 2e-5).abs() < 1e-18);
    assert!((c.rel_diff.unwrap() - 2e-4).abs() < 1e-17);
    assert!(c.significant);
    assert_no_nan(&c);
}

#[test]
fn proportions_at_u64_max_do_not_overflow() {
    let c = compare_proportions(props(u64::MAX, u64::MAX - 1), props(u64::MAX, 1), 0.05).unwrap();
    assert!(c.abs_diff.unwrap() < -0.99);
    assert_no_nan(&c);
}

#[test]
fn invalid_alpha_is_rejected() {
    for alpha in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(compare_proportions(props(10, 1), props(10, 2), alpha).is_err());
        assert!(compare_means(means(&[1.0, 2.0]), means(&[1.0, 3.0]), alpha).is_err());
    }
}

#[test]
fn means_need_two_observations_per_arm() {
    let c = compare_means(means(&[1.0]), means(&[2.0, 3.0]), 0.05).unwrap();
    assert_eq!(c.abs_diff, Some(1.5));
    assert_eq!((c.std_error, c.statistic, c.p_value, c.abs_ci), (None, None, None, None));
    let c = compare_means(means(&[]), means(&[2.0, 3.0]), 0.05).unwrap();
    assert_eq!((c.control, c.abs_diff), (None, None));
}

#[test]
fn identical_mean_arms_give_p_one() {
    let values = [1.0, 2.0, 4.0, 8.0];
    let c = compare_means(means(&values), means(&values), 0.05).unwrap();
    assert_eq!(c.statistic, Some(0.0));
    assert_eq!(c.p_value, Some(1.0));
    assert!((c.df.unwrap() - 6.0).abs() < 1e-12);
}

#[test]
fn constant_but_different_arms_are_undefined() {
    let c = compare_means(means(&[2.0; 5]), means(&[3.0; 5]), 0.05).unwrap();
    assert_eq!(c.std_error, Some(0.0));
    assert_eq!((c.statistic, c.df, c.p_value, c.rel_std_error), (None, None, None, None));
    assert_eq!(c.abs_diff, Some(1.0));
    assert_no_nan(&c);
}

#[test]
fn welch_matches_a_textbook_case_at_another_alpha() {
    // Welch, control n=5 var 24.5 mean 22, treatment n=4 var 18 mean 15 (reference w04);
    // 90% interval with t_{0.95, 6.9288} = 1.897510175 (mpmath).
    let control = MeanSummary::new(5, 110.0, 2518.0).unwrap();
    let treatment = MeanSummary::new(4, 60.0, 954.0).unwrap();
    let c = compare_means(control, treatment, 0.10).unwrap();
    assert!(c.significant, "p = {:?}", c.p_value);
    let ci = c.abs_ci.unwrap();
    let half = 0.5 * (ci.upper - ci.lower);
    assert!((half / c.std_error.unwrap() - 1.897_510_175).abs() < 1e-8, "{half}");
}

#[test]
fn huge_mean_summaries_stay_finite() {
    let control = MeanSummary::new(100_000_000_000, 2.5e11, 6.0e12).unwrap();
    let treatment = MeanSummary::new(100_000_000_000, 2.5001e11, 6.0e12).unwrap();
    let c = compare_means(control, treatment, 0.05).unwrap();
    assert!(c.df.unwrap() > 1e11);
    assert_no_nan(&c);
}

#[test]
fn the_alpha_005_shortcut_is_the_computed_quantile() {
    // The constant is the correctly rounded value; the computed one is within a few ulps.
    assert!((z_two_sided(0.05) - normal_isf(0.025)).abs() <= 1e-15);
    assert!((z_two_sided(0.01) - 2.575_829_303_548_901).abs() < 1e-14);
}
