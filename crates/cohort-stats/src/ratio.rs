//! Ratio metrics: Σx / Σy per arm (revenue per order, clicks per session), where both the
//! numerator and the denominator are per-unit sums, so units, not events, are the independent
//! observations.
//!
//! R = Σx/Σy = x̄/ȳ, with the delta-method variance (e.g. Deng, Knoblich & Lu 2018, "Applying
//! the Delta Method in Metric Analytics", eq. 4)
//! Var(R) ≈ (1/n)·( s_x²/ȳ² − 2 x̄ s_xy/ȳ³ + x̄² s_y²/ȳ⁴ ), sample moments with n − 1.
//! Arms are compared with a z-test (the delta method is asymptotic, so the normal quantile):
//! abs = R_t − R_c with SE √(V_t + V_c); rel = R_t/R_c − 1 with SE
//! √(V_t/R_c² + R_t² V_c/R_c⁴). Pinned by `tests/data/stats-vectors-ratio-cuped.json`.

use crate::StatsError;
use crate::compare::{Comparison, Interval, Method, validate_alpha, z_two_sided};
use crate::dist::normal_two_sided_p;
use crate::summary::MeanSummary;

/// One arm's sufficient statistics of a ratio metric: n units with numerator xᵢ and
/// denominator yᵢ.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RatioSummary {
    n: u64,
    sum_x: f64,
    sum_x2: f64,
    sum_y: f64,
    sum_y2: f64,
    sum_xy: f64,
}

impl RatioSummary {
    /// # Errors
    /// [`StatsError::NotFinite`] for a sum that is not finite, and
    /// [`StatsError::NegativeSumOfSquares`] for a negative sum of squares.
    pub fn new(
        n: u64,
        sum_x: f64,
        sum_x2: f64,
        sum_y: f64,
        sum_y2: f64,
        sum_xy: f64,
    ) -> Result<Self, StatsError> {
        for (name, value) in
            [("sum_x", sum_x), ("sum_x2", sum_x2), ("sum_y", sum_y), ("sum_y2", sum_y2), ("sum_xy", sum_xy)]
        {
            if !value.is_finite() {
                return Err(StatsError::NotFinite { name, value });
            }
        }
        for sq in [sum_x2, sum_y2] {
            if sq < 0.0 {
                return Err(StatsError::NegativeSumOfSquares(sq));
            }
        }
        Ok(RatioSummary { n, sum_x, sum_x2, sum_y, sum_y2, sum_xy })
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    /// Σx/Σy; `None` when Σy is 0.
    pub fn ratio(&self) -> Option<f64> {
        (self.sum_y != 0.0 && self.n > 0).then(|| self.sum_x / self.sum_y)
    }

    /// The delta-method variance of [`RatioSummary::ratio`]; `None` below two units or when
    /// Σy is 0.
    pub fn variance(&self) -> Option<f64> {
        if self.n < 2 || self.sum_y == 0.0 {
            return None;
        }
        let n = self.n as f64;
        let (mx, my) = (self.sum_x / n, self.sum_y / n);
        // The variances as MeanSummary computes them (compensated against cancellation).
        let sxx = MeanSummary::new(self.n, self.sum_x, self.sum_x2).ok()?.variance()?;
        let syy = MeanSummary::new(self.n, self.sum_y, self.sum_y2).ok()?.variance()?;
        let sxy = (self.sum_xy - n * mx * my) / (n - 1.0);
        let r = mx / my;
        let v = (sxx - 2.0 * r * sxy + r * r * syy) / (my * my) / n;
        (v.is_finite()).then_some(v.max(0.0))
    }
}

/// Compares two arms of a ratio metric (treatment minus control).
///
/// # Errors
/// [`StatsError::InvalidAlpha`] when `alpha` is not in (0, 1).
pub fn compare_ratios(
    control: RatioSummary,
    treatment: RatioSummary,
    alpha: f64,
) -> Result<Comparison, StatsError> {
    validate_alpha(alpha)?;
    let mut out = Comparison::empty(Method::DeltaRatioZ, alpha);
    out.control = control.ratio();
    out.treatment = treatment.ratio();
    let (Some(rc), Some(rt)) = (out.control, out.treatment) else {
        return Ok(out);
    };
    let diff = rt - rc;
    out.abs_diff = Some(diff);
    if rc != 0.0 {
        out.rel_diff = Some(rt / rc - 1.0);
    }
    let (Some(vc), Some(vt)) = (control.variance(), treatment.variance()) else {
        return Ok(out);
    };
    let se = (vc + vt).sqrt();
    out.std_error = Some(se);
    let z = z_two_sided(alpha);
    if se > 0.0 && se.is_finite() {
        let statistic = diff / se;
        out.statistic = Some(statistic);
        out.set_p_value(Some(normal_two_sided_p(statistic)));
        out.abs_ci = Some(Interval::around(diff, z * se));
    }
    if let Some(rel) = out.rel_diff {
        let rc2 = rc * rc;
        let rel_se = (vt / rc2 + rt * rt * vc / (rc2 * rc2)).sqrt();
        if rel_se.is_finite() {
            out.rel_std_error = Some(rel_se);
            out.rel_ci = Some(Interval::around(rel, z * rel_se));
        }
    }
    Ok(out)
}
