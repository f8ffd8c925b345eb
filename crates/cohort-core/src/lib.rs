//! Cohort's pure evaluation engine: the model of an environment's flags and experiments, its
//! validation and compilation, deterministic bucketing, targeting, and evaluation.
//!
//! **No I/O, no clock, no randomness, no async.** Everything is a value in and a value out, so
//! the SDK, the evaluation service and the config service's validation share one behaviour.
//!
//! ```
//! use cohort_core::{Context, Definitions, compile, evaluate};
//!
//! let defs: Definitions = serde_json::from_str(r#"{
//!   "flags": [{
//!     "key": "new-checkout", "type": "boolean", "salt": "nc1",
//!     "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
//!     "off_variation": "off",
//!     "rules": [{"condition": {"op": "equals", "attribute": "country", "value": "NZ"},
//!                "serve": {"variation": "on"}}],
//!     "default": {"variation": "off"}
//!   }]
//! }"#).unwrap();
//! let config = compile(&defs).unwrap();
//! let ctx = Context::new("user-1").with("country", "NZ");
//! assert_eq!(evaluate(&config, &ctx, "new-checkout").bool_value(), Ok(true));
//! ```
//!
//! # Layout
//! - [`model`]: the definitions as written (serde types).
//! - [`compile()`]: validation with field paths, producing a [`CompiledConfig`].
//! - [`hash`]: MurmurHash3 and `bucket(salt, unit)`, spec version 1.
//! - [`evaluate()`] / [`evaluate_all()`] (and `_at` a time): decisions with OpenFeature-aligned
//!   reasons.
//! - `logic`: flagd's targeting language (JSONLogic and flagd's operators), compiled and
//!   evaluated.
//! - [`flagd`]: flagd's flag-definition files to and from definitions.
//! - [`Context`]: the targeting key and typed attributes.
//! - [`error`]: an error and its causes on one line.
//! - [`json`]: strict JSON parsing (duplicate keys are errors) for every JSON door.
//! - [`time`]: the one calendar (days to and from dates, `unix_ms`, RFC 3339), clock-free.
//! - `conformance` (feature `conformance`): the shared JSON conformance suite and its runner.

mod compile;
mod condition;
mod config;
mod context;
pub mod error;
mod eval;
pub mod flagd;
pub mod hash;
pub mod json;
mod logic;
pub mod model;
pub mod time;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use compile::{ConfigError, ConfigErrors, compile, flag_experiment, limits};
pub use config::{CompiledConfig, CompiledExperiment, CompiledFlag, CompiledHoldout};
pub use context::{AttrValue, Attributes, Context, TARGETING_KEY_ATTRIBUTE};
pub use eval::{
    Decision, DecisionKind, ErrorCode, HoldoutHit, Reason, evaluate, evaluate_all, evaluate_all_at,
    evaluate_at,
};
pub use logic::{MAX_LOGIC_DEPTH, MAX_LOGIC_NODES};
pub use model::Definitions;
