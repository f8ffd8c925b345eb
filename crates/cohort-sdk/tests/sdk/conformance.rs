//! The shared conformance suite through the SDK's public API, offline (no network): owned
//! evaluation, the zero-copy guard, and the typed getters must all agree with the suite.

use cohort_core::conformance::{self, Outcome};
use cohort_sdk::{Client, DecisionKind, Reason, State};
use serde_json::Value;

#[test]
fn every_conformance_case_passes_through_the_sdk() {
    let suites = conformance::suites();
    assert!(suites.len() >= 4);
    let mut cases = 0;
    let mut failures = Vec::new();
    for suite in &suites {
        let client =
            Client::from_definitions(&suite.config).unwrap_or_else(|e| panic!("suite {}: {e}", suite.name));
        assert_eq!(client.state(), State::Ready);
        cases += suite.cases.len();
        // Owned evaluation.
        failures.extend(conformance::run(suite, |ctx, key| {
            let e = client.evaluate(key, ctx);
            Outcome {
                variant: e.variant,
                value: e.value.unwrap_or(Value::Null),
                reason: e.reason,
                error_code: e.error,
                enrolled: e.enrolled,
            }
        }));
        // Zero-copy guard.
        failures.extend(conformance::run(suite, |ctx, key| {
            client.with_config(|cfg| Outcome::from(&cfg.evaluate(key, ctx)))
        }));
        // Typed getters and details agree with the decision: the value when there is one of
        // that type, otherwise the caller's default.
        for case in &suite.cases {
            let expected = &case.expected;
            let d = client.json_details(&case.key, &case.context, Value::String("DEFAULT".into()));
            let want = if expected.error_code.is_some() || expected.value.is_null() {
                Value::String("DEFAULT".into())
            } else {
                expected.value.clone()
            };
            assert_eq!(d.value, want, "{} / {}: json_details", suite.name, case.name);
            assert_eq!(d.error, expected.error_code, "{} / {}", suite.name, case.name);
            if expected.error_code.is_none() {
                assert_eq!(d.reason, expected.reason, "{} / {}", suite.name, case.name);
            } else {
                assert_eq!(d.reason, Reason::Error);
            }
            if let Some(b) = expected.value.as_bool().filter(|_| expected.error_code.is_none()) {
                assert_eq!(
                    client.bool_value(&case.key, &case.context, !b),
                    b,
                    "{} / {}",
                    suite.name,
                    case.name
                );
            }
            let a = client.experiment(&case.key, &case.context);
            if client.evaluate(&case.key, &case.context).kind == Some(DecisionKind::Experiment) {
                assert_eq!(a.enrolled, expected.enrolled, "{} / {}", suite.name, case.name);
                assert_eq!(a.variant, expected.variant, "{} / {}", suite.name, case.name);
            }
        }
    }
    assert!(cases > 100, "only {cases} cases");
    let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "{} of {} checks failed:\n{}", report.len(), 2 * cases, report.join("\n"));
}

#[test]
fn evaluate_all_covers_every_key() {
    for suite in conformance::suites() {
        let client = Client::from_definitions(&suite.config).unwrap();
        let ctx = cohort_sdk::Context::new("someone");
        let all = client.evaluate_all(&ctx);
        assert_eq!(all.len(), suite.config.flags.len() + suite.config.experiments.len());
        for e in all {
            assert_eq!(e, client.evaluate(&e.key, &ctx), "{}", e.key);
        }
    }
}

#[test]
fn the_client_is_shareable_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Client>();
    let client = Client::from_definitions(&conformance::suites()[0].config).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                let ctx = cohort_sdk::Context::new(format!("user-{i}"));
                (0..1000)
                    .filter(|_| {
                        client.evaluate_all(&ctx).iter().all(|e| e.config_version == client.version())
                    })
                    .count()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1000);
    }
}
