//! Resident memory of an SDK environment of 1,000 entries (500 flags with a five-condition
//! rule and a split, 500 experiments with targeting and payloads): the RSS growth (VmRSS in
//! /proc/self/status) from loading it as the stream does (parse the snapshot JSON, compile,
//! keep both the definitions and the compiled config), from a second version swapped in, and
//! of a whole client built by the builder with events queued.
//!
//! Run: `cargo run --release -p cohort-sdk --example memory`.

#![allow(clippy::print_stdout)] // An example reports to its caller.

use cohort_sdk::{Client, Context, Definitions};
use serde_json::{Value, json};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn conditions(i: usize) -> Value {
    json!({"op": "all", "conditions": [
        {"op": "in", "attribute": "country", "values": ["NZ", "AU", "US", "GB", "DE", "FR"]},
        {"op": "equals", "attribute": "plan", "value": format!("plan-{}", i % 7)},
        {"op": "gte", "attribute": "age", "value": 18},
        {"op": "semver_gte", "attribute": "app_version", "value": "2.4.0"},
        {"op": "ends_with", "attribute": "email", "value": "@example.com"},
    ]})
}

/// The snapshot text, built entry by entry so that no large JSON tree is allocated and freed
/// before measuring (freed heap would be reused and hide the growth).
fn environment(version: u64) -> String {
    let mut text = format!("{{\"version\": {version}, \"flags\": [");
    for i in 0..500 {
        if i > 0 {
            text.push(',');
        }
        let flag = json!({
            "key": format!("flag-{i:04}"), "type": "boolean", "salt": format!("fsalt-{i}"),
            "description": format!("Flag number {i}, guarding a feature rollout"),
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "off_variation": "off",
            "rules": [{"id": format!("r{i}"), "condition": conditions(i), "serve": {"variation": "on"}}],
            "default": {"split": [{"variation": "on", "weight_bp": 3000}, {"variation": "off", "weight_bp": 7000}]},
        });
        text.push_str(&flag.to_string());
    }
    text.push_str("], \"experiments\": [");
    for i in 0..500 {
        if i > 0 {
            text.push(',');
        }
        let experiment = json!({
            "id": format!("00000000-0000-4000-8000-{i:012}"), "key": format!("exp-{i:04}"),
            "status": "running", "traffic_bp": 8000,
            "description": format!("Experiment number {i}, testing a checkout change"),
            "targeting": {"op": "in", "attribute": "country", "values": ["NZ", "AU", "US"]},
            "variants": [
                {"key": "control", "weight_bp": 5000, "control": true, "payload": {"color": "grey", "size": 12}},
                {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green", "size": 14}},
            ],
            "breakdown_attributes": ["country", "plan"],
        });
        text.push_str(&experiment.to_string());
    }
    text.push_str("]}");
    text
}

fn main() {
    // The snapshot text arrives from the network; it is not part of the SDK's resident set.
    let text_v1 = environment(1);
    let text_v2 = environment(2);
    println!("snapshot JSON: {} KiB per version", text_v1.len() / 1024);
    let mib = |kib: u64| kib as f64 / 1024.0;
    // Everything stays alive until the end, so each step's growth is its own.
    let start = rss_kib();

    // 1. One version as the stream holds it: the definitions (kept to apply deltas to) and
    //    the compiled config.
    let defs: Definitions = serde_json::from_str(&text_v1).expect("definitions parse");
    let client = Client::from_definitions(&defs).expect("definitions compile");
    let ctx = Context::new("user-1").with("country", "NZ").with("plan", "plan-3");
    assert_eq!(client.evaluate_all(&ctx).len(), 1000);
    let one = rss_kib();
    println!(
        "1,000 entries, one version (definitions + compiled config): {:.1} MiB",
        mib(one.saturating_sub(start))
    );

    // 2. A second version alive at once, as during a swap.
    let defs2: Definitions = serde_json::from_str(&text_v2).expect("definitions parse");
    let client2 = Client::from_definitions(&defs2).expect("definitions compile");
    let two = rss_kib();
    println!("a second version alive during a swap: +{:.1} MiB", mib(two.saturating_sub(one)));

    // 3. The machinery of a built client: tokio runtime (2 workers), gRPC channel, event
    //    queue with 10,000 exposures waiting, the dedup window (65,536 slots).
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let built = rt.block_on(async {
        Client::builder("memory-key")
            .bootstrap(defs2.clone())
            .event_endpoint("http://127.0.0.1:9")
            .build()
            .await
            .expect("client builds")
    });
    for i in 0..10_000 {
        built.experiment("exp-0001", &Context::new(format!("user-{i}")).with("country", "NZ"));
    }
    let three = rss_kib();
    println!(
        "a built client (runtime, channel, 10,000 queued exposures, dedup window, its own config): +{:.1} MiB",
        mib(three.saturating_sub(two))
    );
    println!("total: {:.1} MiB", mib(three.saturating_sub(start)));
    drop((client, defs, client2, defs2, built));
    drop(rt);
}
