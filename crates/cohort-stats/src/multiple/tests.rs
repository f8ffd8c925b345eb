//! Unit tests for Holm and Bonferroni adjustments.

use super::*;

#[test]
fn holm_matches_a_hand_computation() {
    // Sorted 0.01, 0.02, 0.03, 0.04 → ×4, ×3, ×2, ×1 → 0.04, 0.06, 0.06, 0.06 after the running max.
    let adjusted = holm_adjust(&[0.03, 0.01, 0.04, 0.02]).unwrap();
    let expected = [0.06, 0.04, 0.06, 0.06];
    for (a, e) in adjusted.iter().zip(expected) {
        assert!((a - e).abs() < 1e-15, "{adjusted:?}");
    }
}

#[test]
fn holm_caps_at_one_and_handles_ties_and_empty_input() {
    assert_eq!(holm_adjust(&[0.5, 0.9]).unwrap(), vec![1.0, 1.0]);
    assert_eq!(holm_adjust(&[0.01, 0.01]).unwrap(), vec![0.02, 0.02]);
    assert_eq!(holm_adjust(&[]).unwrap(), Vec::<f64>::new());
    assert_eq!(holm_adjust(&[0.2]).unwrap(), vec![0.2]);
}

#[test]
fn invalid_p_values_are_rejected() {
    assert_eq!(holm_adjust(&[0.1, 1.5]), Err(StatsError::InvalidPValue { index: 1, value: 1.5 }));
    assert!(holm_adjust(&[f64::NAN]).is_err());
    assert!(bonferroni_adjust(&[-0.1]).is_err());
}

#[test]
fn bonferroni_multiplies_and_caps() {
    assert_eq!(bonferroni_adjust(&[0.01, 0.4]).unwrap(), vec![0.02, 0.8]);
    assert_eq!(bonferroni_adjust(&[0.6, 0.1]).unwrap(), vec![1.0, 0.2]);
}
