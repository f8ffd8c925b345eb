//! Pure statistics for Cohort experiments: comparisons, SRM checks, group-sequential boundaries and planning.
//!
//! Everything here takes values and returns values: no I/O, no clock, no randomness,
//! no async runtime. The analysis service aggregates per-variant sufficient statistics
//! in SQL ([`ProportionSummary`], [`MeanSummary`]) and calls in here.
//!
//! Conventions follow `docs/spec/stats.md`, pinned by the reference cases in
//! `tests/data/stats-vectors.json`: differences are treatment minus control, p-values
//! come from survival functions (accurate far into the tails), and a quantity that does
//! not exist for the data (a standard error of 0, a control estimate of 0, too few
//! observations) is `None` rather than NaN or a panic.
//!
//! # Layout
//!
//! - [`summary`]: per-variant counts and (n, Σx, Σx²) summaries.
//! - [`compare`]: pooled two-proportion z-test and Welch t-test with absolute and relative intervals.
//! - [`srm`]: sample-ratio-mismatch chi-square check.
//! - [`sequential`]: Lan-DeMets O'Brien-Fleming group-sequential boundaries.
//! - [`ratio`]: ratio metrics (Σx/Σy per arm) with delta-method variances.
//! - [`cuped`]: CUPED variance reduction with a pre-exposure covariate.
//! - [`confseq`]: always-valid confidence sequences and repeated confidence intervals.
//! - [`power`]: sample sizes and information fractions.
//! - [`multiple`]: Holm and Bonferroni adjustments.
//! - `dist` (private): normal, t and chi-square tails and quantiles.
//! - `error`: [`StatsError`].

pub mod compare;
pub mod confseq;
pub mod cuped;
mod dist;
mod error;
pub mod multiple;
pub mod power;
pub mod ratio;
pub mod sequential;
pub mod srm;
pub mod summary;

pub use compare::{Comparison, Interval, Method, WaldTest, compare_means, compare_proportions};
pub use confseq::{ConfidenceSequence, repeated_interval};
pub use cuped::{CupedComparison, CupedSummary, compare_cuped};
pub use error::StatsError;
pub use multiple::{bonferroni_adjust, holm_adjust};
pub use power::{Effect, information_fraction, sample_size_means, sample_size_proportions};
pub use ratio::{RatioSummary, compare_ratios};
pub use sequential::{Look, SequentialPlan, obf_alpha_spent, obf_boundaries, obf_boundary_crossed};
pub use srm::{SRM_P_THRESHOLD, SrmResult, srm_check};
pub use summary::{MeanSummary, ProportionSummary};
