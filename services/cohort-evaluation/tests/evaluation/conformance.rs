//! The shared conformance suite through the running service: each suite's config is written
//! into a fresh environment through the config API, then every case goes through gRPC
//! `Evaluate` and must decide exactly as cohort-core does.

use cohort_core::conformance::{self, Outcome};
use cohort_core::model::ExperimentStatus;
use cohort_core::{ErrorCode, Reason};
use cohort_proto::common::v1 as common;
use cohort_proto::config::v1 as cpb;
use cohort_proto::convert::decision_value;
use cohort_proto::evaluation::v1 as pb;
use tonic::Code;

use crate::{Stack, authed};

/// Writes `suite`'s definitions into environment `env` as the config API requires: segments,
/// metrics and flags; experiments as drafts; layers (which name experiments); holdouts (which
/// name layers); then each experiment moved to its status.
pub(crate) async fn write_suite(stack: &Stack, env: &str, defs: &cohort_core::Definitions) {
    for s in &defs.segments {
        stack.create(env, cpb::EntityKind::Segment, json(s)).await;
    }
    for m in &defs.metrics {
        stack.create(env, cpb::EntityKind::Metric, json(m)).await;
    }
    for f in &defs.flags {
        stack.create(env, cpb::EntityKind::Flag, json(f)).await;
    }
    let mut revisions = Vec::new();
    for e in &defs.experiments {
        let mut draft = serde_json::to_value(e).unwrap();
        draft["status"] = "draft".into();
        let (revision, _) = stack.create(env, cpb::EntityKind::Experiment, draft.to_string()).await;
        revisions.push(revision);
    }
    for l in &defs.layers {
        stack.create(env, cpb::EntityKind::Layer, json(l)).await;
    }
    for h in &defs.holdouts {
        stack.create(env, cpb::EntityKind::Holdout, json(h)).await;
    }
    use cpb::ExperimentAction as A;
    for (e, revision) in defs.experiments.iter().zip(revisions) {
        let actions: &[A] = match e.status {
            ExperimentStatus::Draft => &[],
            ExperimentStatus::Running => &[A::Start],
            ExperimentStatus::Paused => &[A::Start, A::Pause],
            ExperimentStatus::Completed => &[A::Start, A::Complete],
        };
        let mut revision = revision;
        for action in actions {
            revision = stack.transition(env, &e.key, *action, revision).await.0;
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

/// The wire carries numbers as doubles: `10` comes back as `10.0`. Whole numbers are made
/// integers again so they compare equal to the suite's JSON.
fn integral(v: serde_json::Value) -> serde_json::Value {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).into(),
        _ => v,
    }
}

fn outcome(d: &common::Decision) -> Outcome {
    let reason = common::Reason::try_from(d.reason).expect("known reason");
    let code = common::ErrorCode::try_from(d.error_code).expect("known error code");
    Outcome {
        variant: (!d.variant.is_empty()).then(|| d.variant.clone()),
        value: integral(decision_value(d).expect("decodable value")),
        reason: Reason::try_from(reason).expect("specified reason"),
        error_code: Option::<ErrorCode>::from(code),
        enrolled: d.enrolled,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_case_passes_through_the_service() {
    let stack = Stack::start().await;
    let mut client = stack.client().await;
    let mut cases = 0;
    let mut rejected_contexts = 0;
    let mut failures = Vec::new();
    for (i, suite) in conformance::suites().iter().enumerate() {
        let env = format!("conformance-{i}");
        let key = stack.environment(&env).await;
        write_suite(&stack, &env, &suite.config).await;
        cases += suite.cases.len();
        let mut results = Vec::new();
        for case in &suite.cases {
            let request = pb::EvaluateRequest {
                context: Some(common::EvaluationContext::from(&case.context)),
                keys: vec![case.key.clone()],
            };
            results.push(client.evaluate(authed(&key, request)).await);
        }
        let mut results = results.into_iter();
        failures.extend(conformance::run(suite, |_, key| match results.next().unwrap() {
            Ok(r) => {
                let r = r.into_inner();
                assert!(r.config_version > 0);
                assert_eq!(r.decisions.len(), 1);
                assert_eq!(r.decisions[0].key, key);
                outcome(&r.decisions[0])
            }
            // The wire conversion refuses a context the engine would call invalid: the
            // request fails instead of carrying an INVALID_CONTEXT decision.
            Err(status) if status.code() == Code::InvalidArgument => {
                assert!(status.message().contains("context.targeting_key"), "{status:?}");
                rejected_contexts += 1;
                Outcome {
                    variant: None,
                    value: serde_json::Value::Null,
                    reason: Reason::Error,
                    error_code: Some(ErrorCode::InvalidContext),
                    enrolled: false,
                }
            }
            Err(status) => panic!("{} / {key}: {status:?}", suite.name),
        }));
    }
    assert!(cases > 100, "only {cases} cases");
    let expected_invalid = conformance::suites()
        .iter()
        .flat_map(|s| s.cases.iter())
        .filter(|c| c.expected.error_code == Some(ErrorCode::InvalidContext))
        .count();
    assert_eq!(rejected_contexts, expected_invalid);
    let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "{} of {cases} cases failed:\n{}", report.len(), report.join("\n"));
    stack.stop().await;
}
