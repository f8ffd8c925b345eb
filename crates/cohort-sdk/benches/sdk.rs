//! SDK evaluation latency through the public API, single-threaded: an experiment without
//! rules (the ≤ 200 ns target) on the zero-copy guard with and without exposure recording,
//! the owned `experiment()` path, a boolean flag's `bool_value`, and cohort-core's raw
//! `evaluate` as the baseline.

use std::hint::black_box;
use std::time::Duration;

use cohort_sdk::{Client, Context, Definitions};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn experiment(i: usize) -> Value {
    json!({
        "id": format!("00000000-0000-4000-8000-{i:012}"), "key": format!("exp-{i}"), "status": "running",
        "salt": format!("salt-{i}"), "traffic_bp": 10000,
        "variants": [
            {"key": "control", "weight_bp": 5000, "control": true, "payload": {"color": "grey"}},
            {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green"}},
        ],
        "breakdown_attributes": ["country"],
    })
}

fn flag(i: usize) -> Value {
    json!({
        "key": format!("flag-{i}"), "type": "boolean", "salt": format!("fsalt-{i}"),
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off",
        "default": {"split": [{"variation": "on", "weight_bp": 3000}, {"variation": "off", "weight_bp": 7000}]},
    })
}

fn definitions() -> Definitions {
    let mut defs: Definitions =
        serde_json::from_value(json!({"flags": [flag(0)], "experiments": [experiment(0)]})).unwrap();
    defs.version = 1;
    defs
}

fn benches(c: &mut Criterion) {
    let ctx = Context::new("user-8d3c1f2a-4b5e").with("country", "NZ").with("plan", "pro");
    let defs = definitions();

    // Baseline: cohort-core alone.
    let compiled = cohort_core::compile(&defs).unwrap();
    c.bench_function("core_experiment_no_rules", |b| {
        b.iter(|| cohort_core::evaluate(black_box(&compiled), black_box(&ctx), black_box("exp-0")).variant)
    });

    // An offline client: no events.
    let offline = Client::from_definitions(&defs).unwrap();
    c.bench_function("sdk_guard_experiment_no_events", |b| {
        b.iter(|| offline.config().evaluate(black_box("exp-0"), black_box(&ctx)).variant.is_some())
    });

    // A client with event delivery: each evaluation offers an exposure (a dedup hit after the
    // first). The event service address is unreachable, which evaluation never notices.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = rt.block_on(async {
        Client::builder("bench-key")
            .bootstrap(defs.clone())
            .event_endpoint("http://127.0.0.1:9")
            .connect_timeout(Duration::from_millis(100))
            .build()
            .await
            .unwrap()
    });
    assert!(client.experiment("exp-0", &ctx).enrolled, "the bench unit must be enrolled");

    c.bench_function("sdk_guard_experiment_with_exposure", |b| {
        b.iter(|| client.config().evaluate(black_box("exp-0"), black_box(&ctx)).variant.is_some())
    });
    c.bench_function("sdk_with_config_experiment_with_exposure", |b| {
        b.iter(|| {
            client.with_config(|cfg| cfg.evaluate(black_box("exp-0"), black_box(&ctx)).variant.is_some())
        })
    });
    c.bench_function("sdk_experiment_owned", |b| {
        b.iter(|| client.experiment(black_box("exp-0"), black_box(&ctx)).enrolled)
    });
    c.bench_function("sdk_bool_value_flag", |b| {
        b.iter(|| client.bool_value(black_box("flag-0"), black_box(&ctx), false))
    });
    c.bench_function("sdk_bool_value_missing_key", |b| {
        b.iter(|| client.bool_value(black_box("nope"), black_box(&ctx), false))
    });
    assert_eq!(client.stats().exposures_recorded, 1, "dedup must hold the hot path to one exposure");
    drop(client);
    drop(rt);
}

criterion_group!(sdk, benches);
criterion_main!(sdk);
