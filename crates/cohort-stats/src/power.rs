//! Planning: sample size per arm for a target power, and the information fraction of a running experiment.

use crate::StatsError;
use crate::dist::normal_isf;

/// A minimum detectable effect on a conversion rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Treatment rate minus baseline rate (0.01 is one percentage point).
    Absolute(f64),
    /// (treatment − baseline) / baseline (0.05 is a 5% lift).
    Relative(f64),
}

fn quantiles(alpha: f64, power: f64) -> Result<(f64, f64), StatsError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidAlpha(alpha));
    }
    if !(power > 0.0 && power < 1.0) {
        return Err(StatsError::InvalidPower(power));
    }
    Ok((normal_isf(0.5 * alpha), normal_isf(1.0 - power)))
}

fn round_up(n: f64) -> u64 {
    // Saturates for absurd designs rather than wrapping.
    n.ceil() as u64
}

/// Units per arm for a two-sided two-proportion z-test at level `alpha` to detect
/// `effect` on `baseline` with probability `power` (equal arms, no continuity correction):
/// n = (z₁₋α/₂ √(2 p̄(1−p̄)) + z_power √(p₁(1−p₁) + p₂(1−p₂)))² / (p₂ − p₁)².
///
/// # Errors
///
/// [`StatsError::InvalidAlpha`], [`StatsError::InvalidPower`],
/// [`StatsError::OutOfRange`] for a baseline outside (0, 1), and
/// [`StatsError::InvalidEffect`] for a zero effect or one that leaves (0, 1).
pub fn sample_size_proportions(
    baseline: f64,
    effect: Effect,
    alpha: f64,
    power: f64,
) -> Result<u64, StatsError> {
    let (z_alpha, z_power) = quantiles(alpha, power)?;
    if !(baseline > 0.0 && baseline < 1.0) {
        return Err(StatsError::OutOfRange { name: "baseline", range: "(0, 1)", value: baseline });
    }
    let (treated, effect_value) = match effect {
        Effect::Absolute(d) => (baseline + d, d),
        Effect::Relative(r) => (baseline * (1.0 + r), r),
    };
    if !(treated > 0.0 && treated < 1.0) || treated == baseline || !effect_value.is_finite() {
        return Err(StatsError::InvalidEffect(effect_value));
    }
    let delta = treated - baseline;
    let mean = 0.5 * (baseline + treated);
    let null_sd = (2.0 * mean * (1.0 - mean)).sqrt();
    let alt_sd = (baseline * (1.0 - baseline) + treated * (1.0 - treated)).sqrt();
    let root = z_alpha * null_sd + z_power * alt_sd;
    Ok(round_up(root * root / (delta * delta)))
}

/// Units per arm for a two-sided two-sample test of means at level `alpha` to detect an
/// absolute difference `mde` with probability `power`, for a metric with standard
/// deviation `sd` in both arms: n = 2 (z₁₋α/₂ + z_power)² sd² / mde².
///
/// # Errors
///
/// [`StatsError::InvalidAlpha`], [`StatsError::InvalidPower`],
/// [`StatsError::OutOfRange`] for a non-positive or non-finite `sd`, and
/// [`StatsError::InvalidEffect`] for a zero or non-finite `mde`.
pub fn sample_size_means(sd: f64, mde: f64, alpha: f64, power: f64) -> Result<u64, StatsError> {
    let (z_alpha, z_power) = quantiles(alpha, power)?;
    if !(sd > 0.0 && sd.is_finite()) {
        return Err(StatsError::OutOfRange { name: "sd", range: "(0, inf)", value: sd });
    }
    if mde == 0.0 || !mde.is_finite() {
        return Err(StatsError::InvalidEffect(mde));
    }
    let z = z_alpha + z_power;
    Ok(round_up(2.0 * z * z * sd * sd / (mde * mde)))
}

/// The information fraction of an experiment with `current_n` of its `planned_n` units,
/// clamped to (0, 1]; `None` before the first unit or for a plan of 0 units.
pub fn information_fraction(current_n: u64, planned_n: u64) -> Option<f64> {
    (current_n > 0 && planned_n > 0).then(|| (current_n as f64 / planned_n as f64).min(1.0))
}

#[cfg(test)]
mod tests;
