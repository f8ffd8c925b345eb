//! The shared conformance suite, run against cohort-core's own `evaluate`.

use cohort_core::conformance::{self, Outcome};
use cohort_core::{compile, evaluate};

#[test]
fn every_conformance_case_passes() {
    let suites = conformance::suites();
    assert!(suites.len() >= 4);
    let mut cases = 0;
    let mut failures = Vec::new();
    for suite in &suites {
        let config = compile(&suite.config).unwrap_or_else(|e| panic!("suite {}: {e}", suite.name));
        cases += suite.cases.len();
        failures.extend(conformance::run(suite, |ctx, key| Outcome::from(&evaluate(&config, ctx, key))));
    }
    assert!(cases > 100, "only {cases} cases");
    let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "{} of {cases} cases failed:\n{}", report.len(), report.join("\n"));
}
