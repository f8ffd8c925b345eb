//! Per-variant sufficient statistics: conversion counts and (n, Σx, Σx²) for continuous metrics.
//!
//! These are what the analysis service aggregates in SQL; every test in the crate
//! works from them alone.

use crate::StatsError;

/// Units (users) and how many of them converted, for one variant of a conversion metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProportionSummary {
    units: u64,
    conversions: u64,
}

impl ProportionSummary {
    /// A summary of `conversions` out of `units`.
    ///
    /// # Errors
    ///
    /// [`StatsError::ConversionsExceedUnits`] when `conversions > units`.
    pub fn new(units: u64, conversions: u64) -> Result<Self, StatsError> {
        if conversions > units {
            return Err(StatsError::ConversionsExceedUnits { units, conversions });
        }
        Ok(Self { units, conversions })
    }

    /// Units (users) in the variant.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// Units that converted.
    pub fn conversions(&self) -> u64 {
        self.conversions
    }

    /// The conversion rate, or `None` with no units.
    pub fn rate(&self) -> Option<f64> {
        (self.units > 0).then(|| self.conversions as f64 / self.units as f64)
    }

    /// The conversion rate and its complement, each from integer counts so that
    /// neither loses precision near 0 or 1; `None` with no units.
    pub(crate) fn rate_and_complement(&self) -> Option<(f64, f64)> {
        let n = self.units as f64;
        (self.units > 0).then(|| (self.conversions as f64 / n, (self.units - self.conversions) as f64 / n))
    }
}

/// Count, sum and sum of squares of a continuous metric, for one variant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeanSummary {
    n: u64,
    sum: f64,
    sum_sq: f64,
}

impl MeanSummary {
    /// A summary of `n` observations with sum `sum` and sum of squares `sum_sq`.
    ///
    /// # Errors
    ///
    /// [`StatsError::NotFinite`] for a NaN or infinite sum, and
    /// [`StatsError::NegativeSumOfSquares`] for `sum_sq < 0`.
    pub fn new(n: u64, sum: f64, sum_sq: f64) -> Result<Self, StatsError> {
        if !sum.is_finite() {
            return Err(StatsError::NotFinite { name: "sum", value: sum });
        }
        if !sum_sq.is_finite() {
            return Err(StatsError::NotFinite { name: "sum_sq", value: sum_sq });
        }
        if sum_sq < 0.0 {
            return Err(StatsError::NegativeSumOfSquares(sum_sq));
        }
        Ok(Self { n, sum, sum_sq })
    }

    /// The summary of a slice of observations.
    ///
    /// # Errors
    ///
    /// [`StatsError::NotFinite`] when an observation (and so the sum) is not finite.
    pub fn from_values(values: &[f64]) -> Result<Self, StatsError> {
        let (sum, sum_sq) = values.iter().fold((0.0, 0.0), |(s, ss), &v| (s + v, ss + v * v));
        Self::new(values.len() as u64, sum, sum_sq)
    }

    /// The summary of two disjoint sets of observations together.
    #[must_use]
    pub fn merge(&self, other: &Self) -> Self {
        Self { n: self.n + other.n, sum: self.sum + other.sum, sum_sq: self.sum_sq + other.sum_sq }
    }

    /// Number of observations.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Sum of the squared observations.
    pub fn sum_sq(&self) -> f64 {
        self.sum_sq
    }

    /// The sample mean, or `None` with no observations.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The sample variance with the n − 1 denominator, or `None` with fewer than two observations.
    ///
    /// Computes Σx² − (Σx)²/n with the product (Σx)·mean and the rounding error of the
    /// mean itself corrected by fused multiply-adds, so the cancellation between two
    /// large, nearly equal terms loses almost nothing; rounding below zero is clamped to 0.
    pub fn variance(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        // sum * mean = product + product_err exactly.
        let product = self.sum * mean;
        let product_err = self.sum.mul_add(mean, -product);
        // sum − mean·n, the remainder of the rounded division (exact when n is exact).
        let remainder = (-mean).mul_add(n, self.sum);
        let centred = (self.sum_sq - product) - product_err - self.sum * (remainder / n);
        Some(centred.max(0.0) / (n - 1.0))
    }
}

#[cfg(test)]
mod tests;
