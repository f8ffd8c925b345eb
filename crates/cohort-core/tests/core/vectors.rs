//! The golden vectors of the bucketing spec: every one must pass.

use cohort_core::hash::{SPEC_VERSION, bucket};
use cohort_core::{Context, evaluate};
use serde::Deserialize;
use serde_json::json;

use crate::compile_json;

const VECTORS: &str = include_str!("../data/bucketing-vectors.json");

#[derive(Deserialize)]
struct Vectors {
    spec_version: u32,
    buckets: Vec<BucketCase>,
    experiments: Vec<ExperimentCase>,
    layers: Vec<LayerCase>,
}

#[derive(Deserialize)]
struct BucketCase {
    salt: String,
    unit: String,
    bucket: u32,
}

#[derive(Deserialize)]
struct ExperimentCase {
    id: String,
    salt: String,
    traffic_bp: u32,
    variants: Vec<serde_json::Value>,
    cases: Vec<ExperimentUnit>,
}

#[derive(Deserialize)]
struct ExperimentUnit {
    unit: String,
    allocation_bucket: u32,
    variant_bucket: Option<u32>,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct LayerCase {
    salt: String,
    experiments: Vec<LayerExperiment>,
    cases: Vec<LayerUnit>,
}

#[derive(Deserialize)]
struct LayerExperiment {
    key: String,
    range: [u32; 2],
}

#[derive(Deserialize)]
struct LayerUnit {
    unit: String,
    layer_bucket: u32,
    experiment: Option<String>,
}

fn vectors() -> Vectors {
    let v: Vectors = serde_json::from_str(VECTORS).expect("vectors parse");
    assert_eq!(v.spec_version, SPEC_VERSION, "vectors are for another spec version");
    v
}

#[test]
fn bucket_vectors() {
    let v = vectors();
    assert!(!v.buckets.is_empty());
    for c in &v.buckets {
        assert_eq!(bucket(&c.salt, &c.unit), c.bucket, "bucket({:?}, {:?})", c.salt, c.unit);
    }
}

#[test]
fn experiment_vectors() {
    let v = vectors();
    let mut checked = 0;
    for e in &v.experiments {
        let config = compile_json(json!({
            "experiments": [{
                "id": e.id, "key": "exp", "salt": e.salt, "status": "running",
                "traffic_bp": e.traffic_bp, "variants": e.variants,
            }]
        }));
        for c in &e.cases {
            assert_eq!(bucket(&e.id, &c.unit), c.allocation_bucket, "{} allocation of {}", e.id, c.unit);
            if let Some(vb) = c.variant_bucket {
                assert_eq!(bucket(&e.salt, &c.unit), vb, "{} variant bucket of {}", e.id, c.unit);
            }
            let d = evaluate(&config, &Context::new(c.unit.as_str()), "exp");
            assert_eq!(d.variant, c.variant.as_deref(), "{} variant of {}", e.id, c.unit);
            assert_eq!(d.enrolled, c.variant.is_some(), "{} enrollment of {}", e.id, c.unit);
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn layer_vectors() {
    let v = vectors();
    for layer in &v.layers {
        let experiments: Vec<_> = layer
            .experiments
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({
                    "id": format!("00000000-0000-4000-8000-{i:012}"), "key": e.key, "status": "running",
                    "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 5000}],
                })
            })
            .collect();
        let ranges: Vec<_> =
            layer.experiments.iter().map(|e| json!({"experiment": e.key, "range": e.range})).collect();
        let config = compile_json(json!({
            "experiments": experiments,
            "layers": [{"key": "layer", "salt": layer.salt, "experiments": ranges}],
        }));
        for c in &layer.cases {
            assert_eq!(bucket(&layer.salt, &c.unit), c.layer_bucket, "layer bucket of {}", c.unit);
            let ctx = Context::new(c.unit.as_str());
            let enrolled: Vec<&str> = layer
                .experiments
                .iter()
                .filter(|e| evaluate(&config, &ctx, &e.key).enrolled)
                .map(|e| e.key.as_str())
                .collect();
            let expected: Vec<&str> = c.experiment.iter().map(String::as_str).collect();
            assert_eq!(enrolled, expected, "experiments of {} in layer {}", c.unit, layer.salt);
        }
    }
}
