//! Unit tests for the SRM check: degenerate inputs, validation, and weight formats.

use super::*;

#[test]
fn balanced_traffic_is_not_flagged() {
    let r = srm_check(&[5000, 5000], &[0.5, 0.5]).unwrap();
    assert_eq!(r.chi_square, Some(0.0));
    assert_eq!(r.p_value, Some(1.0));
    assert!(!r.mismatch);
    assert_eq!(r.df, 1);
}

#[test]
fn no_observations_is_undefined_and_not_flagged() {
    let r = srm_check(&[0, 0, 0], &[1.0, 1.0, 1.0]).unwrap();
    assert_eq!((r.chi_square, r.p_value, r.mismatch, r.df), (None, None, false, 2));
    assert_eq!(r.expected, vec![0.0, 0.0, 0.0]);
}

#[test]
fn basis_points_and_fractions_agree() {
    let a = srm_check(&[5100, 4900], &[5000.0, 5000.0]).unwrap();
    let b = srm_check(&[5100, 4900], &[0.5, 0.5]).unwrap();
    assert_eq!(a.chi_square, b.chi_square);
    assert_eq!(a.p_value, b.p_value);
}

#[test]
fn gross_imbalance_is_flagged_with_a_tiny_p_value() {
    // χ² = 160 on 1 df: p ≈ 1.1e-36, far below the threshold but still representable.
    let r = srm_check(&[52_000, 48_000], &[1.0, 1.0]).unwrap();
    assert!(r.mismatch);
    let p = r.p_value.unwrap();
    assert!(p > 1e-37 && p < 1e-35, "{p}");
    // χ² = 4000: p underflows to 0, which is still flagged.
    let r = srm_check(&[60_000, 40_000], &[1.0, 1.0]).unwrap();
    assert_eq!((r.p_value, r.mismatch), (Some(0.0), true));
}

#[test]
fn counts_beyond_32_bits() {
    let r = srm_check(&[3_000_000_000, 3_001_000_000], &[1.0, 1.0]).unwrap();
    assert!(r.mismatch);
    assert!((r.expected[0] - 3_000_500_000.0).abs() < 1e-3);
    assert!((r.chi_square.unwrap() - 2.0 * 2.5e11 / 3_000_500_000.0).abs() < 1e-9);
}

#[test]
fn invalid_inputs_are_rejected() {
    assert_eq!(srm_check(&[1, 2], &[1.0]), Err(StatsError::LengthMismatch { observed: 2, weights: 1 }));
    assert_eq!(srm_check(&[1], &[1.0]), Err(StatsError::TooFewArms(1)));
    assert_eq!(srm_check(&[1, 2], &[1.0, 0.0]), Err(StatsError::InvalidWeight { index: 1, value: 0.0 }));
    assert!(srm_check(&[1, 2], &[f64::NAN, 1.0]).is_err());
    assert!(srm_check(&[1, 2], &[f64::INFINITY, 1.0]).is_err());
}
