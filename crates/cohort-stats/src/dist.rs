//! Tails and quantiles of the normal, Student t and chi-square distributions, accurate far into the tails.
//!
//! Every p-value in the crate comes from a survival function computed directly
//! (erfc, a regularised incomplete beta or gamma function), never as `1 - cdf`,
//! so p-values keep their relative precision down to the underflow limit.
//!
//! statrs supplies erfc⁻¹ (polished here by a Newton step) and the upper
//! incomplete gamma function. Two pieces are not taken from statrs, after checking
//! them against 50-digit references:
//!
//! - erfc comes from `libm` (the fdlibm algorithm, within 1 ulp): statrs 0.19's erfc
//!   is off by 2e-11 to 1e-10 relative across its whole range, which is most of the
//!   1e-9 tolerance the reference p-values allow.
//! - The Student t tail is computed here rather than with `statrs::StudentsT::sf`:
//!   statrs's incomplete beta stops after 140 continued-fraction terms and forms its
//!   prefactor from a difference of ln Γ values, which loses many digits at the degrees
//!   of freedom of large experiments (10⁷ to 10⁸).

use statrs::function::erf::erfc_inv;
use statrs::function::gamma::checked_gamma_ur;
use std::f64::consts::{PI, SQRT_2};

/// 2/√π.
const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// The complementary error function, accurate to 1 ulp (fdlibm, via `libm`).
pub(crate) fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

/// The inverse of [`erfc`] for y in (0, 2): statrs's approximation plus one Newton step.
pub(crate) fn erfc_inverse(y: f64) -> f64 {
    let x = erfc_inv(y);
    if !x.is_finite() {
        return x;
    }
    let slope = -TWO_OVER_SQRT_PI * (-x * x).exp();
    if slope == 0.0 {
        return x;
    }
    x - (erfc(x) - y) / slope
}

/// From this many degrees of freedom on, the t tail uses Hill's normalising transformation.
/// Below it, the incomplete-beta continued fraction is used; both are accurate to about
/// 1e-11 relative in the region where they are used (checked against 40-digit references).
const HILL_MIN_DF: f64 = 1.0e4;

/// Continued-fraction terms after which the incomplete beta gives up (it needs about 50).
const MAX_CF_TERMS: u32 = 10_000;

/// From this many degrees of freedom on, and for z ≤ [`CORNISH_FISHER_MAX_Z`], the
/// four-term Cornish–Fisher expansion is the t quantile to better than 1e-13 relative.
const CORNISH_FISHER_MIN_DF: f64 = 1.0e3;
/// See [`CORNISH_FISHER_MIN_DF`] (z = 4.5 is a two-sided level of 7e-6).
const CORNISH_FISHER_MAX_Z: f64 = 4.5;
/// Relative width of the bracket at which the t quantile's search stops (its target, the
/// t tail, is itself accurate to about 1e-11).
const QUANTILE_TOLERANCE: f64 = 1e-12;
/// A Halley step this small (relative) is the quantile's last: the error after it is of
/// the order of its cube.
const HALLEY_FINAL_STEP: f64 = 1e-6;

/// ln √π.
const LN_SQRT_PI: f64 = 0.572_364_942_924_700_1;

/// Upper tail P(Z > z) of the standard normal distribution.
pub(crate) fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

/// Two-sided tail P(|Z| ≥ |z|) of the standard normal distribution.
pub(crate) fn normal_two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / SQRT_2)
}

/// Upper quantile of the standard normal: the z with P(Z > z) = q, for q in (0, 1).
pub(crate) fn normal_isf(q: f64) -> f64 {
    SQRT_2 * erfc_inverse(2.0 * q)
}

/// Density of the standard normal distribution.
pub(crate) fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

/// ln(Γ(a + ½) / Γ(a)) for a > 0, without the cancellation of subtracting two large ln Γ values.
pub(crate) fn ln_gamma_ratio_half(a: f64) -> f64 {
    // Below 10, shift a up with Γ(a + 1) = a Γ(a): the ratio at a is the ratio at a + n less
    // ln Π (a + k + ½) / (a + k), one logarithm instead of two ln Γ evaluations.
    let mut shifted = a;
    let mut product = 1.0;
    while shifted < 10.0 {
        product *= (shifted + 0.5) / shifted;
        shifted += 1.0;
    }
    // Asymptotic series: ½ ln a + Σ (B_n(½) − B_n) / (n (n − 1) a^(n−1)) over even n.
    let r = 1.0 / shifted;
    let r2 = r * r;
    let series = 0.5 * shifted.ln()
        + r * (-1.0 / 8.0
            + r2 * (1.0 / 192.0 + r2 * (-1.0 / 640.0 + r2 * (17.0 / 14_336.0 + r2 * (-31.0 / 18_432.0)))));
    series - product.ln()
}

/// Upper tail P(T > t) of Student's t distribution with `df` > 0 (possibly fractional) degrees of freedom.
pub(crate) fn t_sf(t: f64, df: f64) -> f64 {
    t_sf_with(t, df, || ln_gamma_ratio_half(0.5 * df))
}

/// [`t_sf`] given ln(Γ((df + 1)/2) / Γ(df/2)), which is only computed when the tail needs it.
fn t_sf_with(t: f64, df: f64, ln_gamma_ratio: impl FnOnce() -> f64) -> f64 {
    if t < 0.0 {
        return 1.0 - t_sf_with(-t, df, ln_gamma_ratio);
    }
    if t == 0.0 {
        return 0.5;
    }
    if t.is_infinite() {
        return 0.0;
    }
    if df >= HILL_MIN_DF {
        return normal_sf(hill_normal_deviate(t, df));
    }
    // P(T > t) = ½ I_x(df/2, ½) with x = df / (df + t²); both x and 1 − x are formed without cancellation.
    let t2 = t * t;
    let ln_x = -(t2 / df).ln_1p();
    let ln_y = -(df / t2).ln_1p();
    let x = df / (df + t2);
    let y = t2 / (df + t2);
    let a = 0.5 * df;
    let ln_beta = LN_SQRT_PI - ln_gamma_ratio();
    0.5 * inc_beta(a, 0.5, x, y, ln_x, ln_y, ln_beta)
}

/// Two-sided p-value 2·P(T > |t|).
pub(crate) fn t_two_sided_p(t: f64, df: f64) -> f64 {
    (2.0 * t_sf(t.abs(), df)).min(1.0)
}

/// Density of Student's t distribution.
#[cfg(test)]
pub(crate) fn t_pdf(t: f64, df: f64) -> f64 {
    t_pdf_with(t, df, ln_gamma_ratio_half(0.5 * df))
}

/// [`t_pdf`] given ln(Γ((df + 1)/2) / Γ(df/2)).
fn t_pdf_with(t: f64, df: f64, ln_gamma_ratio: f64) -> f64 {
    let ln_norm = ln_gamma_ratio - 0.5 * (df * PI).ln();
    (ln_norm - 0.5 * (df + 1.0) * (t * t / df).ln_1p()).exp()
}

/// Hill's (1970, CACM algorithm 395) transformation of a t deviate into a standard normal
/// deviate with the same upper tail, accurate to ~1e-13 relative for df ≥ 10⁴.
fn hill_normal_deviate(t: f64, df: f64) -> f64 {
    let a = df - 0.5;
    let b = 48.0 * a * a;
    let y = a * (t * t / df).ln_1p();
    let poly = (((-0.4 * y - 3.3) * y - 24.0) * y - 85.5) / (0.8 * y * y + 100.0 + b);
    ((poly + y + 3.0) / b + 1.0) * y.sqrt()
}

/// Regularised incomplete beta I_x(a, b), given x, y = 1 − x, ln x, ln y and ln B(a, b).
///
/// Uses the continued fraction (modified Lentz) on whichever of I_x(a, b) and
/// 1 − I_{1−x}(b, a) converges fast, so a small result keeps its relative precision.
fn inc_beta(a: f64, b: f64, x: f64, y: f64, ln_x: f64, ln_y: f64, ln_beta: f64) -> f64 {
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - inc_beta(b, a, y, x, ln_y, ln_x, ln_beta);
    }
    let prefactor = (a * ln_x + b * ln_y - ln_beta).exp() / a;
    prefactor * beta_continued_fraction(a, b, x)
}

/// The continued fraction of I_x(a, b), 1 / (1 + d₁/(1 + d₂/(1 + …))) with Numerical Recipes'
/// coefficients d_k (their `betacf`), evaluated by the forward recurrence for its
/// convergents A_k / B_k.
///
/// Each coefficient is a ratio p_k / q_k; scaling the k-th convergent's numerator and
/// denominator by q₁⋯q_k turns the recurrence into
/// Â_k = q_k·Â_{k−1} + p_k·q_{k−1}·Â_{k−2}, which needs no division. Lentz's method needs six
/// per term, and this loop is most of the cost of a Welch test at small degrees of freedom.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const HUGE: f64 = 1e150;
    const RESCALE: f64 = 1e-150;
    let qab = a + b;
    // Convergents k − 1 and k, scaled; k = 1 holds the first coefficient −(a + b)·x / (a + 1).
    let (mut a_prev, mut b_prev) = (1.0, 1.0);
    let q1 = a + 1.0;
    let (mut a_cur, mut b_cur) = (q1 - qab * x, q1);
    let mut q_prev = q1;
    let mut value = a_cur / b_cur;
    for m in 1..=MAX_CF_TERMS {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        // d_2m = m(b − m)x / ((a + 2m − 1)(a + 2m)), then d_2m+1 = −(a + m)(a + b + m)x / ((a + 2m)(a + 2m + 1)).
        for (p, q) in [
            (m * (b - m) * x, (a + m2 - 1.0) * (a + m2)),
            (-(a + m) * (qab + m) * x, (a + m2) * (a + m2 + 1.0)),
        ] {
            let pq = p * q_prev;
            (a_prev, a_cur) = (a_cur, q * a_cur + pq * a_prev);
            (b_prev, b_cur) = (b_cur, q * b_cur + pq * b_prev);
            q_prev = q;
        }
        if b_cur.abs() > HUGE {
            a_prev *= RESCALE;
            a_cur *= RESCALE;
            b_prev *= RESCALE;
            b_cur *= RESCALE;
        }
        let next = a_cur / b_cur;
        let converged = next.is_finite() && (next - value).abs() <= 1e-16 * next.abs();
        value = next;
        if converged {
            break;
        }
    }
    // `value` is 1 + d₁/(1 + …); the fraction is its reciprocal.
    1.0 / value
}

/// Upper quantile of Student's t: the t with P(T > t) = q, for q in (0, 1) and df > 0.
pub(crate) fn t_isf(q: f64, df: f64) -> f64 {
    if q > 0.5 {
        return -t_isf(1.0 - q, df);
    }
    if q == 0.5 {
        return 0.0;
    }
    let z = normal_isf(q);
    if df >= CORNISH_FISHER_MIN_DF && z <= CORNISH_FISHER_MAX_Z {
        return cornish_fisher_t(z, df);
    }
    // The t quantile lies between the normal quantile and the quantile of the
    // dominating power tail K·t^(−df) ≥ P(T > t), K = c·df^((df−1)/2).
    let ln_gamma_ratio = ln_gamma_ratio_half(0.5 * df);
    let ln_k = ln_gamma_ratio - 0.5 * (df * PI).ln() + 0.5 * (df - 1.0) * df.ln();
    let mut lo = z;
    let mut hi = ((ln_k - q.ln()) / df).exp().max(z);
    let mut t = if df >= 4.0 { cornish_fisher_t(z, df).clamp(lo, hi) } else { hi };
    let ln_q = q.ln();
    // Safeguarded Halley on g(t) = ln P(T > t) − ln q, bisecting whenever a step leaves the
    // bracket. Halley converges cubically, so once a step is below 1e-6 relative the point it
    // lands on is accurate far beyond the tail's own 1e-11, and no further tail is evaluated
    // just to confirm it.
    for _ in 0..100 {
        let sf = t_sf_with(t, df, || ln_gamma_ratio);
        if sf > q {
            lo = t;
        } else {
            hi = t;
        }
        let g = sf.ln() - ln_q;
        // g' = −h with h the hazard pdf/sf; g'' = h·(df + 1)·t/(df + t²) − h².
        let h = t_pdf_with(t, df, ln_gamma_ratio) / sf;
        let g2 = h * (df + 1.0) * t / (df + t * t) - h * h;
        let step = -2.0 * g * -h / (2.0 * h * h - g * g2);
        let next = t + step;
        if next > lo && next < hi {
            if step.abs() <= HALLEY_FINAL_STEP * t {
                return next;
            }
            t = next;
        } else {
            t = 0.5 * (lo + hi);
        }
        if hi - lo <= QUANTILE_TOLERANCE * hi {
            return t;
        }
    }
    t
}

/// Cornish–Fisher expansion of the t quantile in the normal quantile z (Abramowitz & Stegun 26.7.5).
fn cornish_fisher_t(z: f64, df: f64) -> f64 {
    let z2 = z * z;
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92_160.0;
    let r = 1.0 / df;
    z + r * (g1 + r * (g2 + r * (g3 + r * g4)))
}

/// Upper tail P(X > x) of the chi-square distribution with `df` > 0 degrees of freedom.
pub(crate) fn chi2_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    checked_gamma_ur(0.5 * df, 0.5 * x).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests;
