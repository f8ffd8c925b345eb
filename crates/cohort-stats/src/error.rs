//! The crate's error type: every way an input to cohort-stats can be rejected.

/// Why a statistics input was rejected.
///
/// Degenerate but valid data (no users yet, zero variance, a control rate of 0)
/// is not an error: the affected quantities come back as `None`.
/// Errors are reserved for inputs that cannot describe an experiment at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// A proportion summary with more conversions than units.
    #[error("conversions ({conversions}) exceed units ({units})")]
    ConversionsExceedUnits {
        /// Units (users) in the arm.
        units: u64,
        /// Conversions reported for the arm.
        conversions: u64,
    },
    /// A number that must be finite was NaN or infinite.
    #[error("{name} must be finite, got {value}")]
    NotFinite {
        /// Which input.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A sum of squares below zero.
    #[error("sum of squares must be non-negative, got {0}")]
    NegativeSumOfSquares(f64),
    /// A significance level outside (0, 1).
    #[error("alpha must be in (0, 1), got {0}")]
    InvalidAlpha(f64),
    /// A power outside (0, 1).
    #[error("power must be in (0, 1), got {0}")]
    InvalidPower(f64),
    /// A probability (rate, p-value) outside its allowed range.
    #[error("{name} must be in {range}, got {value}")]
    OutOfRange {
        /// Which input.
        name: &'static str,
        /// The allowed range, written as an interval.
        range: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A p-value list entry that is not a probability.
    #[error("p-value {index} must be in [0, 1], got {value}")]
    InvalidPValue {
        /// Position in the input slice.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// An SRM check whose observed counts and weights differ in length.
    #[error("observed counts ({observed}) and weights ({weights}) differ in length")]
    LengthMismatch {
        /// Number of observed counts.
        observed: usize,
        /// Number of weights.
        weights: usize,
    },
    /// An SRM check with fewer than two arms.
    #[error("an srm check needs at least 2 arms, got {0}")]
    TooFewArms(usize),
    /// A traffic weight that is not a positive finite number.
    #[error("weight {index} must be positive and finite, got {value}")]
    InvalidWeight {
        /// Position in the weights slice.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A group-sequential design with no looks.
    #[error("a look schedule needs at least one information fraction")]
    EmptySchedule,
    /// An information fraction outside (0, 1].
    #[error("information fraction at look {look} must be in (0, 1], got {value}")]
    FractionOutOfRange {
        /// Zero-based look index.
        look: usize,
        /// The offending value.
        value: f64,
    },
    /// Information fractions that do not strictly increase.
    #[error("information fractions must strictly increase: look {look} has {value} after {previous}")]
    FractionsNotIncreasing {
        /// Zero-based look index of the offending fraction.
        look: usize,
        /// The fraction at the previous look.
        previous: f64,
        /// The offending value.
        value: f64,
    },
    /// A minimum detectable effect that is zero, or moves a rate outside (0, 1).
    #[error("minimum detectable effect {0} is zero or moves the rate outside (0, 1)")]
    InvalidEffect(f64),
}
