//! Always-valid intervals: asymptotic confidence sequences, for quantities watched after every
//! batch of data with no schedule of looks (guardrails).
//!
//! An estimate θ̂ₙ of θ from n units with standard error σ̂ₙ (variance Vₙ = σ̂ₙ², so the
//! per-unit variance is s² = n·Vₙ) gets the interval θ̂ₙ ± wₙ with
//!
//! wₙ = √( Vₙ · 2(nρ² + 1)/(nρ²) · ln(√(nρ² + 1) / α) ),
//!
//! the normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon (2021, "Time-uniform,
//! nonparametric, nonasymptotic confidence sequences", eq. (14)) applied to the sample mean
//! as in Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2021, "Time-uniform central limit
//! theory and asymptotic confidence sequences", Theorem 2.2): with probability about 1 − α
//! the intervals of *every* n cover θ at once, so checking after every cycle costs no error.
//! The mixing parameter ρ is fixed in advance; ρ² = (−2 ln α + ln(1 − 2 ln α)) / n* makes the
//! sequence tightest around n* units (their eq. (2.5)), the convention GrowthBook also uses.

use crate::StatsError;
use crate::compare::Interval;

/// A confidence sequence at level 1 − α, tuned for a sample size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceSequence {
    alpha: f64,
    rho_sq: f64,
}

impl ConfidenceSequence {
    /// The sequence at level 1 − `alpha` that is tightest around `n_star` units (the planned
    /// sample of the comparison, both arms).
    pub fn tuned(alpha: f64, n_star: f64) -> Result<Self, StatsError> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(StatsError::InvalidAlpha(alpha));
        }
        if !(n_star.is_finite() && n_star >= 1.0) {
            return Err(StatsError::OutOfRange { name: "n_star", range: "[1, ∞)", value: n_star });
        }
        let l = -2.0 * alpha.ln();
        Ok(ConfidenceSequence { alpha, rho_sq: (l + (1.0 + l).ln()) / n_star })
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// ρ², the mixture's parameter.
    pub fn rho_sq(&self) -> f64 {
        self.rho_sq
    }

    /// wₙ for an estimate with standard error `std_error` from `n` units; `None` without data
    /// (n = 0) or a usable standard error.
    pub fn half_width(&self, std_error: f64, n: u64) -> Option<f64> {
        if n == 0 || !(std_error.is_finite() && std_error >= 0.0) {
            return None;
        }
        let a = n as f64 * self.rho_sq;
        let w = (std_error * std_error * 2.0 * (a + 1.0) / a * (((a + 1.0).sqrt()) / self.alpha).ln()).sqrt();
        w.is_finite().then_some(w)
    }

    /// θ̂ ± wₙ.
    pub fn interval(&self, estimate: f64, std_error: f64, n: u64) -> Option<Interval> {
        if !estimate.is_finite() {
            return None;
        }
        self.half_width(std_error, n).map(|w| Interval { lower: estimate - w, upper: estimate + w })
    }
}

/// The repeated confidence interval of a group-sequential look with z boundary `boundary`:
/// `estimate ± boundary · std_error` (Jennison & Turnbull 2000, ch. 9). Intervals of every look
/// cover the true value together with probability 1 − α, which is what makes them safe to
/// read at each look; the test rejects 0 at a look exactly when its interval excludes 0.
pub fn repeated_interval(estimate: f64, std_error: f64, boundary: f64) -> Option<Interval> {
    let w = boundary * std_error;
    (estimate.is_finite() && w.is_finite() && w >= 0.0)
        .then_some(Interval { lower: estimate - w, upper: estimate + w })
}

#[cfg(test)]
mod tests;
