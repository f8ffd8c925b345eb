//! Values computed in Python (float64) from the formula in the module documentation.

use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn half_widths_match_the_normal_mixture_boundary() {
    let cs = ConfidenceSequence::tuned(0.05, 10_000.0).unwrap();
    assert!(close(cs.rho_sq(), 0.000_793_615_460_173_756_5), "{}", cs.rho_sq());
    for (n, se, w) in [
        (10_000, 0.01, 0.030_352_089_903_762_532),
        (100, 0.2, 1.816_875_887_462_116_3),
        (250_000, 0.002, 0.006_736_077_427_194_346),
    ] {
        let got = cs.half_width(se, n).unwrap();
        assert!(close(got, w), "n={n}: {got} vs {w}");
    }
}

#[test]
fn always_valid_intervals_are_wider_than_fixed_horizon_ones_and_tightest_near_n_star() {
    let cs = ConfidenceSequence::tuned(0.05, 10_000.0).unwrap();
    let ratio = |n: u64| cs.half_width(1.0, n).unwrap();
    assert!(ratio(10_000) > 1.96);
    assert!(ratio(10_000) < ratio(2_500) && ratio(10_000) < ratio(40_000));
    let strict = ConfidenceSequence::tuned(0.01, 10_000.0).unwrap();
    assert!(strict.half_width(1.0, 10_000).unwrap() > ratio(10_000));
}

#[test]
fn nothing_is_made_up_for_missing_data() {
    let cs = ConfidenceSequence::tuned(0.05, 100.0).unwrap();
    assert_eq!(cs.half_width(0.1, 0), None);
    assert_eq!(cs.half_width(f64::NAN, 10), None);
    assert_eq!(cs.interval(f64::INFINITY, 0.1, 10), None);
    assert_eq!(cs.half_width(0.0, 10), Some(0.0));
    assert!(ConfidenceSequence::tuned(0.0, 100.0).is_err());
    assert!(ConfidenceSequence::tuned(0.05, 0.5).is_err());
}

#[test]
fn a_repeated_interval_is_the_estimate_plus_minus_the_boundary_in_standard_errors() {
    let i = repeated_interval(0.02, 0.005, 3.0).unwrap();
    assert!(close(i.lower, 0.005) && close(i.upper, 0.035), "{i:?}");
    assert_eq!(repeated_interval(0.02, 0.005, f64::INFINITY), None);
}
