//! Multiple-comparison adjustments for experiments with several treatments.

use crate::StatsError;

/// Holm's step-down adjusted p-values, in the order of the input.
///
/// With p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted value of p₍ᵢ₎ is
/// maxⱼ≤ᵢ min(1, (m − j + 1)·p₍ⱼ₎): never below the raw value, monotone in it, and capped at 1.
/// Rejecting where the adjusted value is below α controls the family-wise error rate at α.
///
/// # Errors
///
/// [`StatsError::InvalidPValue`] when an entry is NaN or outside [0, 1].
pub fn holm_adjust(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    validate(p_values)?;
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running_max: f64 = 0.0;
    for (rank, &index) in order.iter().enumerate() {
        let scaled = ((m - rank) as f64 * p_values[index]).min(1.0);
        running_max = running_max.max(scaled);
        adjusted[index] = running_max;
    }
    Ok(adjusted)
}

/// Bonferroni-adjusted p-values min(1, m·p), in the order of the input.
///
/// # Errors
///
/// [`StatsError::InvalidPValue`] when an entry is NaN or outside [0, 1].
pub fn bonferroni_adjust(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    validate(p_values)?;
    let m = p_values.len() as f64;
    Ok(p_values.iter().map(|&p| (m * p).min(1.0)).collect())
}

fn validate(p_values: &[f64]) -> Result<(), StatsError> {
    match p_values.iter().enumerate().find(|(_, p)| !(0.0..=1.0).contains(*p)) {
        Some((index, &value)) => Err(StatsError::InvalidPValue { index, value }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
