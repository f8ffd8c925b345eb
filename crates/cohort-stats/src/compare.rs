//! Two-variant comparisons: the pooled two-proportion z-test and Welch's t-test, with absolute and relative intervals.
//!
//! Conventions (`docs/spec/stats.md`): differences are treatment minus control and the
//! relative lift is (treatment − control) / control. Anything that does not exist for the
//! data at hand (a standard error of 0, a control estimate of 0, an empty arm) is `None`;
//! nothing here panics or lets a NaN out.

use crate::StatsError;
use crate::dist::{normal_isf, normal_two_sided_p, t_isf, t_two_sided_p};
use crate::summary::{MeanSummary, ProportionSummary};

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
}

impl Interval {
    /// `centre ± half_width`.
    pub(crate) fn around(centre: f64, half_width: f64) -> Self {
        Self { lower: centre - half_width, upper: centre + half_width }
    }

    /// Whether `x` lies in the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// Which test produced a [`Comparison`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Two-proportion z-test with the pooled standard error.
    PooledZ,
    /// Welch's unequal-variance t-test.
    WelchT,
    /// Ratio metrics: a z-test of Σx/Σy per arm with delta-method variances ([`crate::ratio`]).
    DeltaRatioZ,
    /// Welch's t-test on CUPED-adjusted means ([`crate::cuped`]).
    CupedWelchT,
}

/// The Wald z-test of a proportion difference with the unpooled standard error: the test
/// that matches the absolute interval, reported next to the primary pooled test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaldTest {
    /// Unpooled standard error √(p_c(1−p_c)/n_c + p_t(1−p_t)/n_t).
    pub std_error: f64,
    /// (p_t − p_c) / std_error; `None` when the standard error is 0.
    pub statistic: Option<f64>,
    /// Two-sided normal p-value; `None` when the statistic is.
    pub p_value: Option<f64>,
}

/// The comparison of a treatment with the control on one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// The test behind `statistic` and `p_value`.
    pub method: Method,
    /// Significance level the intervals and `significant` use.
    pub alpha: f64,
    /// Control estimate (conversion rate or mean); `None` for an empty arm.
    pub control: Option<f64>,
    /// Treatment estimate (conversion rate or mean); `None` for an empty arm.
    pub treatment: Option<f64>,
    /// Treatment minus control.
    pub abs_diff: Option<f64>,
    /// (treatment − control) / control; `None` when the control estimate is 0.
    pub rel_diff: Option<f64>,
    /// Standard error of the test statistic (pooled for proportions, Welch for means).
    pub std_error: Option<f64>,
    /// z (proportions) or t (means); `None` when the standard error is 0.
    pub statistic: Option<f64>,
    /// Welch–Satterthwaite degrees of freedom (means only).
    pub df: Option<f64>,
    /// Two-sided p-value of the test.
    pub p_value: Option<f64>,
    /// Interval for `abs_diff` at level 1 − alpha.
    pub abs_ci: Option<Interval>,
    /// Delta-method standard error of `rel_diff`.
    pub rel_std_error: Option<f64>,
    /// Interval for `rel_diff` at level 1 − alpha (delta method).
    pub rel_ci: Option<Interval>,
    /// The unpooled Wald test (proportions only): the test matching `abs_ci`.
    pub wald: Option<WaldTest>,
    /// `p_value < alpha`; false when the p-value is undefined.
    pub significant: bool,
}

impl Comparison {
    /// The standard error of `abs_diff` its interval uses: unpooled for proportions (the Wald
    /// test's), Welch's for means.
    pub fn abs_std_error(&self) -> Option<f64> {
        match self.method {
            Method::PooledZ => self.wald.map(|w| w.std_error),
            Method::WelchT | Method::DeltaRatioZ | Method::CupedWelchT => self.std_error,
        }
    }

    /// The statistic of `abs_diff` against its own standard error: the Wald z for proportions,
    /// Welch's t for means. Sequential decisions compare it with the look's boundary, so they
    /// agree exactly with whether the repeated interval excludes 0.
    pub fn abs_statistic(&self) -> Option<f64> {
        match self.method {
            Method::PooledZ => self.wald.and_then(|w| w.statistic),
            Method::WelchT | Method::DeltaRatioZ | Method::CupedWelchT => self.statistic,
        }
    }

    pub(crate) fn empty(method: Method, alpha: f64) -> Self {
        Self {
            method,
            alpha,
            control: None,
            treatment: None,
            abs_diff: None,
            rel_diff: None,
            std_error: None,
            statistic: None,
            df: None,
            p_value: None,
            abs_ci: None,
            rel_std_error: None,
            rel_ci: None,
            wald: None,
            significant: false,
        }
    }

    pub(crate) fn set_p_value(&mut self, p_value: Option<f64>) {
        self.p_value = p_value;
        self.significant = p_value.is_some_and(|p| p < self.alpha);
    }
}

/// z₀.₉₇₅, the quantile of the overwhelmingly common α = 0.05 (saves an erfc⁻¹ per comparison).
const Z_975: f64 = 1.959_963_984_540_054;

/// z₁₋α/₂.
pub(crate) fn z_two_sided(alpha: f64) -> f64 {
    if alpha == 0.05 { Z_975 } else { normal_isf(0.5 * alpha) }
}

pub(crate) fn validate_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 { Ok(()) } else { Err(StatsError::InvalidAlpha(alpha)) }
}

/// Compares conversion rates with the two-proportion z-test.
///
/// The p-value (and `significant`) come from the **pooled** standard error; the
/// absolute interval uses the **unpooled** standard error and z₁₋α/₂; the relative
/// interval uses the delta method,
/// Var(p_t/p_c) ≈ p_t(1−p_t)/(n_t p_c²) + p_t² p_c(1−p_c)/(n_c p_c⁴), with the same quantile.
///
/// # Errors
///
/// [`StatsError::InvalidAlpha`] when `alpha` is not in (0, 1).
pub fn compare_proportions(
    control: ProportionSummary,
    treatment: ProportionSummary,
    alpha: f64,
) -> Result<Comparison, StatsError> {
    validate_alpha(alpha)?;
    let mut out = Comparison::empty(Method::PooledZ, alpha);
    let rates = (control.rate_and_complement(), treatment.rate_and_complement());
    out.control = rates.0.map(|(p, _)| p);
    out.treatment = rates.1.map(|(p, _)| p);
    let (Some((pc, qc)), Some((pt, qt))) = rates else {
        return Ok(out);
    };
    let (xc, nc) = (u128::from(control.conversions()), u128::from(control.units()));
    let (xt, nt) = (u128::from(treatment.conversions()), u128::from(treatment.units()));

    // x_t/n_t − x_c/n_c over a common denominator, so the numerator is exact.
    let (treatment_side, control_side) = (xt * nc, xc * nt);
    let cross = if treatment_side >= control_side {
        (treatment_side - control_side) as f64
    } else {
        -((control_side - treatment_side) as f64)
    };
    let diff = cross / (nc * nt) as f64;
    out.abs_diff = Some(diff);
    if xc > 0 {
        out.rel_diff = Some(cross / control_side as f64);
    }

    let (nc, nt) = (nc as f64, nt as f64);
    let pooled_units = u128::from(control.units()) + u128::from(treatment.units());
    let pooled_conversions = xc + xt;
    let pooled = pooled_conversions as f64 / pooled_units as f64;
    let pooled_complement = (pooled_units - pooled_conversions) as f64 / pooled_units as f64;
    let se_pooled = (pooled * pooled_complement * (1.0 / nc + 1.0 / nt)).sqrt();
    out.std_error = Some(se_pooled);
    out.statistic = (se_pooled > 0.0).then(|| diff / se_pooled);
    out.set_p_value(out.statistic.map(normal_two_sided_p));

    let var_c = pc * qc / nc;
    let var_t = pt * qt / nt;
    let se_unpooled = (var_c + var_t).sqrt();
    let wald_z = (se_unpooled > 0.0).then(|| diff / se_unpooled);
    out.wald =
        Some(WaldTest { std_error: se_unpooled, statistic: wald_z, p_value: wald_z.map(normal_two_sided_p) });
    let z = z_two_sided(alpha);
    out.abs_ci = Some(Interval::around(diff, z * se_unpooled));

    if let Some(rel) = out.rel_diff {
        let rel_se = (var_t / (pc * pc) + pt * pt * var_c / (pc * pc * pc * pc)).sqrt();
        out.rel_std_error = Some(rel_se);
        out.rel_ci = Some(Interval::around(rel, z * rel_se));
    }
    Ok(out)
}

/// Compares means with Welch's unequal-variance t-test, from per-variant (n, Σx, Σx²).
///
/// Sample variances use n − 1; the degrees of freedom are the fractional
/// Welch–Satterthwaite value; p = 2·P(T > |t|). The absolute interval uses the t quantile
/// at that df, and the relative interval the delta method with the same quantile
/// (Var(m_t/m_c) ≈ s_t²/(n_t m_c²) + s_c² m_t²/(n_c m_c⁴)). With fewer than two
/// observations in an arm, or a standard error of 0, the test is undefined.
///
/// # Errors
///
/// [`StatsError::InvalidAlpha`] when `alpha` is not in (0, 1).
pub fn compare_means(
    control: MeanSummary,
    treatment: MeanSummary,
    alpha: f64,
) -> Result<Comparison, StatsError> {
    validate_alpha(alpha)?;
    let arm = |m: &MeanSummary| m.mean().map(|mean| (mean, m.variance(), m.n()));
    Ok(welch(arm(&control), arm(&treatment), alpha, Method::WelchT))
}

/// Welch's test from each arm's mean, per-unit sample variance (None below two units) and
/// size; `None` for an empty arm.
pub(crate) fn welch(
    control: Option<(f64, Option<f64>, u64)>,
    treatment: Option<(f64, Option<f64>, u64)>,
    alpha: f64,
    method: Method,
) -> Comparison {
    let mut out = Comparison::empty(method, alpha);
    out.control = control.map(|c| c.0);
    out.treatment = treatment.map(|t| t.0);
    let (Some((mc, var_c, nc)), Some((mt, var_t, nt))) = (control, treatment) else {
        return out;
    };
    let diff = mt - mc;
    out.abs_diff = Some(diff);
    if mc != 0.0 {
        out.rel_diff = Some(diff / mc);
    }
    let (Some(var_c), Some(var_t)) = (var_c, var_t) else {
        return out;
    };
    let (nc, nt) = (nc as f64, nt as f64);
    let a = var_c / nc;
    let b = var_t / nt;
    let se = (a + b).sqrt();
    out.std_error = Some(se);
    if se <= 0.0 || !se.is_finite() {
        return out;
    }
    let t = diff / se;
    // (a + b)² / (a²/(n_c − 1) + b²/(n_t − 1)), written with shares so nothing under- or overflows.
    let (share_c, share_t) = (a / (a + b), b / (a + b));
    let df = 1.0 / (share_c * share_c / (nc - 1.0) + share_t * share_t / (nt - 1.0));
    out.statistic = Some(t);
    out.df = Some(df);
    out.set_p_value(Some(t_two_sided_p(t, df)));
    let quantile = t_isf(0.5 * alpha, df);
    out.abs_ci = Some(Interval::around(diff, quantile * se));
    if let Some(rel) = out.rel_diff {
        let mc2 = mc * mc;
        let rel_se = (b / mc2 + a * mt * mt / (mc2 * mc2)).sqrt();
        out.rel_std_error = Some(rel_se);
        out.rel_ci = Some(Interval::around(rel, quantile * rel_se));
    }
    out
}

#[cfg(test)]
mod tests;
