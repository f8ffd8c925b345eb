//! cohort-core's integration tests: golden bucketing vectors, the conformance suite,
//! property tests of the bucketing invariants, flagd targeting against a reference
//! interpreter, and agreement with a reference
//! MurmurHash3. One binary, many modules.

mod conformance;
mod logic;
mod properties;
mod reference;
mod vectors;

use cohort_core::{CompiledConfig, Definitions, compile};

/// Compiles definitions written as JSON, panicking with every error when they are invalid.
pub(crate) fn compile_json(json: serde_json::Value) -> CompiledConfig {
    let defs: Definitions = serde_json::from_value(json).expect("definitions parse");
    compile(&defs).unwrap_or_else(|e| panic!("definitions compile: {e}"))
}
