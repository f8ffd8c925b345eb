//! Evaluations per second on one core through the public SDK API, for an experiment without
//! rules: the best of many short batches, which on a shared, noisy machine approximates the
//! uncontended rate better than a mean. Complements `benches/sdk.rs`.
//!
//! Run: `cargo run --release -p cohort-sdk --example throughput`.

#![allow(clippy::print_stdout)] // An example reports to its caller.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cohort_sdk::{Client, Context, Definitions};
use serde_json::json;

const BATCH: u32 = 200_000;
const BATCHES: u32 = 60;

/// The best nanoseconds per call of `f` over the batches.
fn best_ns(mut f: impl FnMut() -> bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..BATCHES {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(f());
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    best
}

fn main() {
    let mut defs: Definitions = serde_json::from_value(json!({
        "experiments": [{
            "id": "00000000-0000-4000-8000-000000000000", "key": "exp-0", "status": "running",
            "salt": "salt-0", "traffic_bp": 10000,
            "variants": [
                {"key": "control", "weight_bp": 5000, "control": true, "payload": {"color": "grey"}},
                {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green"}},
            ],
            "breakdown_attributes": ["country"],
        }],
    }))
    .expect("definitions parse");
    defs.version = 1;
    let ctx = Context::new("user-8d3c1f2a-4b5e").with("country", "NZ");
    let compiled = cohort_core::compile(&defs).expect("definitions compile");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let client = rt.block_on(async {
        Client::builder("throughput-key")
            .bootstrap(defs.clone())
            .event_endpoint("http://127.0.0.1:9")
            .connect_timeout(Duration::from_millis(100))
            .build()
            .await
            .expect("client builds")
    });

    let offline = Client::from_definitions(&defs).expect("definitions compile");
    let rows: [(&str, f64); 5] = [
        (
            "cohort-core evaluate (baseline)",
            best_ns(|| cohort_core::evaluate(&compiled, &ctx, "exp-0").enrolled),
        ),
        ("sdk guard evaluate, no events", best_ns(|| offline.config().evaluate("exp-0", &ctx).enrolled)),
        (
            "sdk guard, exposure not offered",
            best_ns(|| client.config().evaluate_without_exposure("exp-0", &ctx).enrolled),
        ),
        ("sdk guard evaluate + exposure", best_ns(|| client.config().evaluate("exp-0", &ctx).enrolled)),
        ("sdk experiment() owned", best_ns(|| client.experiment("exp-0", &ctx).enrolled)),
    ];
    for (name, ns) in rows {
        println!("{name:34} {ns:7.1} ns  {:5.2} M evaluations/s", 1e3 / ns);
    }
    assert_eq!(client.stats().exposures_recorded, 1);
    drop(client);
    drop(rt);
}
