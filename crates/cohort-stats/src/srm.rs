//! Sample-ratio-mismatch (SRM) detection: Pearson's chi-square goodness-of-fit test of assignment counts.

use crate::StatsError;
use crate::dist::chi2_sf;

/// p-value below which an assignment imbalance is flagged as a sample ratio mismatch.
pub const SRM_P_THRESHOLD: f64 = 0.001;

/// The outcome of an SRM check.
#[derive(Debug, Clone, PartialEq)]
pub struct SrmResult {
    /// Expected count per arm, total·wᵢ/Σw.
    pub expected: Vec<f64>,
    /// Pearson's Σ(oᵢ − eᵢ)²/eᵢ; `None` when no unit was observed.
    pub chi_square: Option<f64>,
    /// Degrees of freedom, arms − 1.
    pub df: u32,
    /// P(χ²_df > chi_square); `None` when no unit was observed.
    pub p_value: Option<f64>,
    /// Whether `p_value < SRM_P_THRESHOLD`; never set without data.
    pub mismatch: bool,
}

/// Tests observed assignment counts against the configured traffic weights.
///
/// Weights need not sum to 1 (they are normalised), so fractions, percentages and
/// basis points all work. With no observations at all the statistic and p-value are
/// `None` and no mismatch is flagged.
///
/// # Errors
///
/// [`StatsError::LengthMismatch`] when the slices differ in length,
/// [`StatsError::TooFewArms`] for fewer than two arms, and
/// [`StatsError::InvalidWeight`] for a weight that is not positive and finite.
pub fn srm_check(observed: &[u64], weights: &[f64]) -> Result<SrmResult, StatsError> {
    if observed.len() != weights.len() {
        return Err(StatsError::LengthMismatch { observed: observed.len(), weights: weights.len() });
    }
    if observed.len() < 2 {
        return Err(StatsError::TooFewArms(observed.len()));
    }
    if let Some((index, &value)) = weights.iter().enumerate().find(|(_, w)| !(w.is_finite() && **w > 0.0)) {
        return Err(StatsError::InvalidWeight { index, value });
    }
    let df = u32::try_from(observed.len() - 1).unwrap_or(u32::MAX);
    let total = observed.iter().map(|&o| u128::from(o)).sum::<u128>() as f64;
    let weight_sum: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| total * w / weight_sum).collect();
    if total == 0.0 {
        return Ok(SrmResult { expected, chi_square: None, df, p_value: None, mismatch: false });
    }
    let chi_square: f64 = observed
        .iter()
        .zip(&expected)
        .map(|(&o, &e)| {
            let d = o as f64 - e;
            d * d / e
        })
        .sum();
    let p_value = chi2_sf(chi_square, f64::from(df));
    Ok(SrmResult {
        expected,
        chi_square: Some(chi_square),
        df,
        p_value: Some(p_value),
        mismatch: p_value < SRM_P_THRESHOLD,
    })
}

#[cfg(test)]
mod tests;
