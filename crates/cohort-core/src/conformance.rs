//! The shared conformance suite: JSON cases `{config, cases: [{context, key, expected}]}` and
//! one runner, used by cohort-core, the SDK and the evaluation service alike, so every
//! consumer is held to the same decisions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Context, Decision, Definitions, ErrorCode, Reason};

/// The suite files, embedded so consumers need no path to this crate's sources.
const FILES: &[(&str, &str)] = &[
    ("flags", include_str!("../conformance/flags.json")),
    ("operators", include_str!("../conformance/operators.json")),
    ("experiments", include_str!("../conformance/experiments.json")),
    ("segments", include_str!("../conformance/segments.json")),
    ("holdouts", include_str!("../conformance/holdouts.json")),
    ("flagd", include_str!("../conformance/flagd.json")),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Definitions,
    /// A flagd flag-definition file, imported into `config` as `cohortctl apply` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagd: Option<Value>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case checks, shown when it fails.
    pub name: String,
    pub context: Context,
    pub key: String,
    pub expected: Outcome,
}

/// What a decision must look like. Every field is compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    #[serde(default)]
    pub variant: Option<String>,
    /// The flag value or experiment payload; `null` when there is none.
    #[serde(default)]
    pub value: Value,
    pub reason: Reason,
    #[serde(default)]
    pub error_code: Option<ErrorCode>,
    #[serde(default)]
    pub enrolled: bool,
}

impl From<&Decision<'_>> for Outcome {
    fn from(d: &Decision<'_>) -> Self {
        Outcome {
            variant: d.variant.map(str::to_owned),
            value: d.value.cloned().unwrap_or(Value::Null),
            reason: d.reason,
            error_code: d.error,
            enrolled: d.enrolled,
        }
    }
}

/// A case whose outcome differed from the expected one.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub suite: String,
    pub case: String,
    pub expected: Outcome,
    pub actual: Outcome,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}: expected {:?}, got {:?}", self.suite, self.case, self.expected, self.actual)
    }
}

/// Every built-in suite, parsed. Panics only if an embedded file is malformed (a build bug).
pub fn suites() -> Vec<Suite> {
    FILES
        .iter()
        .map(|(name, text)| {
            let mut suite: Suite = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("conformance suite {name} is malformed: {e}"));
            if suite.name.is_empty() {
                suite.name = (*name).to_owned();
            }
            if let Some(file) = &suite.flagd {
                let flags = crate::flagd::import(file)
                    .unwrap_or_else(|e| panic!("conformance suite {name} has a malformed flagd file: {e:?}"));
                suite.config.flags.extend(flags);
            }
            suite
        })
        .collect()
}

/// Runs every case of `suite` through `eval` and returns the mismatches.
pub fn run(suite: &Suite, mut eval: impl FnMut(&Context, &str) -> Outcome) -> Vec<Mismatch> {
    suite
        .cases
        .iter()
        .filter_map(|case| {
            let actual = eval(&case.context, &case.key);
            (actual != case.expected).then(|| Mismatch {
                suite: suite.name.clone(),
                case: case.name.clone(),
                expected: case.expected.clone(),
                actual,
            })
        })
        .collect()
}
