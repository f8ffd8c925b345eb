//! The direct encoding against prost's encoding of the converted decision, byte for byte.

use cohort_core::conformance::suites;
use cohort_core::{Context, Definitions, compile, evaluate};
use prost::Message as _;
use serde_json::json;

use super::*;
use crate::evaluation::v1 as pb;

/// What the generated code would send: every decision converted, then encoded by prost.
fn converted(decisions: &[Decision<'_>], config_version: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    for d in decisions {
        prost::encoding::message::encode(1, &common::Decision::from(d), &mut buf);
    }
    if config_version != 0 {
        prost::encoding::uint64::encode(2, &config_version, &mut buf);
    }
    buf
}

fn direct(decisions: &[Decision<'_>], config_version: u64) -> pb::EvaluateResponse {
    let mut encoder = DecisionEncoder::with_capacity(decisions.len());
    decisions.iter().for_each(|d| encoder.push(d));
    pb::EvaluateResponse::encoded(encoder.finish(), config_version)
}

#[test]
fn every_conformance_decision_encodes_as_its_conversion_would() {
    let mut checked = 0;
    for suite in suites() {
        let config = compile(&suite.config).expect("the suite's config compiles");
        let decisions: Vec<Decision<'_>> =
            suite.cases.iter().map(|c| evaluate(&config, &c.context, &c.key)).collect();
        let response = direct(&decisions, 7);
        let bytes = response.encode_to_vec();
        assert_eq!(bytes, converted(&decisions, 7), "suite {}", suite.name);
        assert_eq!(bytes.len(), response.encoded_len());
        let decoded = pb::EvaluateResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.decisions.len(), decisions.len());
        assert_eq!(decoded.config_version, 7);
        checked += decisions.len();
    }
    assert!(checked > 50, "only {checked} decisions checked");
}

#[test]
fn every_value_type_and_optional_field_encodes_as_its_conversion_would() {
    let defs: Definitions = serde_json::from_value(json!({
        "flags": [
            {"key": "on", "type": "boolean", "salt": "a", "enabled": true,
             "variations": [{"key": "yes", "value": true}, {"key": "no", "value": false}],
             "off_variation": "no", "default": {"variation": "no"}},
            {"key": "name", "type": "string", "salt": "b", "enabled": true,
             "variations": [{"key": "v", "value": "ünïcode"}, {"key": "empty", "value": ""}],
             "off_variation": "empty",
             "rules": [{"id": "rule-nz", "condition": {"op": "in", "attribute": "country", "values": ["NZ"]},
                        "serve": {"variation": "empty"}}],
             "default": {"variation": "v"}},
            {"key": "limit", "type": "number", "salt": "c", "enabled": true,
             "variations": [{"key": "zero", "value": 0}, {"key": "big", "value": 1.5e300}],
             "off_variation": "zero", "default": {"variation": "big"}},
            {"key": "theme", "type": "json", "salt": "d", "enabled": false,
             "variations": [{"key": "dark", "value": {"bg": "#000", "n": [1, null]}}],
             "off_variation": "dark", "default": {"variation": "dark"}},
        ],
        "experiments": [{
            "id": "00000000-0000-4000-8000-000000000001", "key": "exp", "status": "running",
            "variants": [{"key": "a", "weight_bp": 5000, "payload": {"color": "grey"}},
                         {"key": "b", "weight_bp": 5000, "payload": null}],
        }],
    }))
    .unwrap();
    let config = compile(&defs).unwrap();
    for ctx in [Context::new("u-1").with("country", "NZ"), Context::new("u-2"), Context::anonymous()] {
        let decisions: Vec<Decision<'_>> = ["on", "name", "limit", "theme", "exp", "missing"]
            .iter()
            .map(|k| evaluate(&config, &ctx, k))
            .collect();
        assert_eq!(direct(&decisions, 0).encode_to_vec(), converted(&decisions, 0));
        assert_eq!(direct(&decisions, u64::MAX).encode_to_vec(), converted(&decisions, u64::MAX));
    }
}

#[test]
fn owned_and_encoded_decisions_go_out_together() {
    let mut response = pb::EvaluateResponse::encoded(EncodedDecisions::default(), 3);
    response.decisions.push(common::Decision { key: "k".into(), ..Default::default() });
    assert_eq!(response.len(), 1);
    let decoded = pb::EvaluateResponse::decode(response.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded.decisions[0].key, "k");
    assert_eq!(decoded.config_version, 3);
    assert!(pb::EvaluateResponse::default().is_empty());
}
