//! CUPED (Deng, Xu, Kohavi & Walker 2013, "Improving the Sensitivity of Online Controlled
//! Experiments by Utilizing Pre-Experiment Data"): each unit's post-exposure value y is
//! adjusted by its value x of the same metric before its first exposure,
//! y − θ(x − x̄), which keeps the difference of means unbiased (x is independent of the
//! assignment) and removes the part of its variance that x explains.
//!
//! θ = s_xy / s_x² over both arms together (pooled, n − 1; 0 when s_x² is 0), x̄ over both arms.
//! An arm's adjusted mean is ȳ − θ(x̄_arm − x̄) and its per-unit variance
//! s_y² − 2θ s_xy + θ² s_x² (the arm's own moments). The arms are then compared by Welch's
//! test as plain means are (`compare::compare_means`), and the variance reduction reported is
//! 1 − (V_t + V_c)/(V_t,unadjusted + V_c,unadjusted). Pinned by
//! `tests/data/stats-vectors-ratio-cuped.json`.

use crate::StatsError;
use crate::compare::{Comparison, Method, validate_alpha, welch};
use crate::summary::MeanSummary;

/// One arm's sufficient statistics: n units with post-exposure value yᵢ and pre-exposure
/// covariate xᵢ (0 for a unit with no history).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CupedSummary {
    n: u64,
    sum_y: f64,
    sum_y2: f64,
    sum_x: f64,
    sum_x2: f64,
    sum_xy: f64,
}

/// A CUPED comparison: the adjusted test, the unadjusted one, and what the adjustment did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CupedComparison {
    /// The pooled θ.
    pub theta: f64,
    /// Welch's test on the adjusted means.
    pub adjusted: Comparison,
    /// Welch's test on y alone.
    pub unadjusted: Comparison,
    /// 1 − adjusted variance / unadjusted variance of the difference; `None` when either is
    /// undefined or the unadjusted one is 0.
    pub variance_reduction: Option<f64>,
}

impl CupedSummary {
    /// # Errors
    /// [`StatsError::NotFinite`] for a sum that is not finite, and
    /// [`StatsError::NegativeSumOfSquares`] for a negative sum of squares.
    pub fn new(
        n: u64,
        sum_y: f64,
        sum_y2: f64,
        sum_x: f64,
        sum_x2: f64,
        sum_xy: f64,
    ) -> Result<Self, StatsError> {
        for (name, value) in
            [("sum_y", sum_y), ("sum_y2", sum_y2), ("sum_x", sum_x), ("sum_x2", sum_x2), ("sum_xy", sum_xy)]
        {
            if !value.is_finite() {
                return Err(StatsError::NotFinite { name, value });
            }
        }
        for sq in [sum_y2, sum_x2] {
            if sq < 0.0 {
                return Err(StatsError::NegativeSumOfSquares(sq));
            }
        }
        Ok(CupedSummary { n, sum_y, sum_y2, sum_x, sum_x2, sum_xy })
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    /// (s_y², s_x², s_xy) with n − 1; `None` below two units.
    fn moments(&self) -> Option<(f64, f64, f64)> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let (my, mx) = (self.sum_y / n, self.sum_x / n);
        // The variances as MeanSummary computes them (compensated against cancellation).
        let syy = MeanSummary::new(self.n, self.sum_y, self.sum_y2).ok()?.variance()?;
        let sxx = MeanSummary::new(self.n, self.sum_x, self.sum_x2).ok()?.variance()?;
        let sxy = (self.sum_xy - n * mx * my) / (n - 1.0);
        Some((syy, sxx, sxy))
    }
}

/// Compares two arms with CUPED (treatment minus control).
///
/// # Errors
/// [`StatsError::InvalidAlpha`] when `alpha` is not in (0, 1).
pub fn compare_cuped(
    control: CupedSummary,
    treatment: CupedSummary,
    alpha: f64,
) -> Result<CupedComparison, StatsError> {
    validate_alpha(alpha)?;
    let n = control.n + treatment.n;
    let pooled = CupedSummary {
        n,
        sum_y: control.sum_y + treatment.sum_y,
        sum_y2: control.sum_y2 + treatment.sum_y2,
        sum_x: control.sum_x + treatment.sum_x,
        sum_x2: control.sum_x2 + treatment.sum_x2,
        sum_xy: control.sum_xy + treatment.sum_xy,
    };
    let theta = match pooled.moments() {
        Some((_, sxx, sxy)) if sxx > 0.0 => sxy / sxx,
        _ => 0.0,
    };
    let x_bar = if n > 0 { pooled.sum_x / n as f64 } else { 0.0 };
    let arm = |s: &CupedSummary, adjust: bool| {
        (s.n > 0).then(|| {
            let k = s.n as f64;
            let (my, mx) = (s.sum_y / k, s.sum_x / k);
            let var = s.moments().map(|(syy, sxx, sxy)| {
                if adjust { (syy - 2.0 * theta * sxy + theta * theta * sxx).max(0.0) } else { syy }
            });
            let mean = if adjust { my - theta * (mx - x_bar) } else { my };
            (mean, var, s.n)
        })
    };
    let adjusted = welch(arm(&control, true), arm(&treatment, true), alpha, Method::CupedWelchT);
    let unadjusted = welch(arm(&control, false), arm(&treatment, false), alpha, Method::WelchT);
    let variance_reduction = match (adjusted.std_error, unadjusted.std_error) {
        (Some(a), Some(u)) if u > 0.0 => Some(1.0 - (a * a) / (u * u)),
        _ => None,
    };
    Ok(CupedComparison { theta, adjusted, unadjusted, variance_reduction })
}
