//! Evaluation latency: one experiment without rules, a flag with five conditions, flagd flags
//! (a three-branch `if`, a `fractional` split), and `evaluate_all` over 100 flags and
//! experiments. Single-threaded, as the targets are stated.

use std::hint::black_box;

use cohort_core::{CompiledConfig, Context, Definitions, compile, evaluate, evaluate_all};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn compiled(defs: Value) -> CompiledConfig {
    let defs: Definitions = serde_json::from_value(defs).expect("bench definitions parse");
    compile(&defs).expect("bench definitions compile")
}

fn experiment(i: usize) -> Value {
    json!({
        "id": format!("00000000-0000-4000-8000-{i:012}"), "key": format!("exp-{i}"), "status": "running",
        "salt": format!("salt-{i}"), "traffic_bp": 8000,
        "variants": [
            {"key": "control", "weight_bp": 5000, "control": true, "payload": {"color": "grey"}},
            {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green"}},
        ],
    })
}

fn five_conditions() -> Value {
    json!({"op": "all", "conditions": [
        {"op": "in", "attribute": "country", "values": ["NZ", "AU", "US", "GB", "DE", "FR"]},
        {"op": "equals", "attribute": "plan", "value": "pro"},
        {"op": "gte", "attribute": "age", "value": 18},
        {"op": "semver_gte", "attribute": "app_version", "value": "2.4.0"},
        {"op": "ends_with", "attribute": "email", "value": "@example.com"},
    ]})
}

fn flag(i: usize, rules: Value) -> Value {
    json!({
        "key": format!("flag-{i}"), "type": "boolean", "salt": format!("fsalt-{i}"),
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "rules": rules,
        "default": {"split": [{"variation": "on", "weight_bp": 3000}, {"variation": "off", "weight_bp": 7000}]},
    })
}

fn context() -> Context {
    Context::new("user-8d3c1f2a-4b5e")
        .with("country", "NZ")
        .with("plan", "pro")
        .with("age", 34)
        .with("app_version", "2.7.1")
        .with("email", "someone@example.com")
}

fn benches(c: &mut Criterion) {
    let ctx = context();

    let one = compiled(json!({"experiments": [experiment(0)]}));
    c.bench_function("experiment_no_rules", |b| {
        b.iter(|| evaluate(black_box(&one), black_box(&ctx), black_box("exp-0")).variant)
    });

    let rules = json!([{"condition": five_conditions(), "serve": {"variation": "on"}}]);
    let targeted = compiled(json!({"flags": [flag(0, rules)]}));
    c.bench_function("flag_5_conditions", |b| {
        b.iter(|| evaluate(black_box(&targeted), black_box(&ctx), black_box("flag-0")).variant)
    });

    // flagd flags, imported from a flagd file as `cohortctl apply` does. The three-branch
    // `if` is decided by its third branch, so every operator runs.
    let flagd_file = json!({"flags": {
        "theme": {
            "state": "ENABLED",
            "variants": {"kiwi": "green", "beta": "purple", "staff": "grey", "classic": "blue"},
            "defaultVariant": "classic",
            "targeting": {"if": [
                {"in": [{"var": "country"}, ["AU", "GB", "US"]]}, "kiwi",
                {"in": ["beta", {"var": "plan"}]}, "beta",
                {"ends_with": [{"var": "email"}, "@example.com"]}, "staff",
                null
            ]}
        },
        "discount": {
            "state": "ENABLED",
            "variants": {"none": 0, "small": 5, "large": 15},
            "defaultVariant": "none",
            "targeting": {"fractional": [["none", 70], ["small", 20], ["large", 10]]}
        }
    }});
    let flagd_flags = cohort_core::flagd::import(&flagd_file).expect("bench flagd file imports");
    let flagd = compile(&Definitions { flags: flagd_flags, ..Definitions::default() }).expect("compiles");
    c.bench_function("flagd_if_3_branches", |b| {
        b.iter(|| evaluate(black_box(&flagd), black_box(&ctx), black_box("theme")).variant)
    });
    c.bench_function("flagd_fractional", |b| {
        b.iter(|| evaluate(black_box(&flagd), black_box(&ctx), black_box("discount")).variant)
    });

    // 50 flags (every other one with the five-condition rule) and 50 experiments.
    let flags: Vec<Value> = (0..50)
        .map(|i| {
            let rules = if i % 2 == 0 {
                json!([{"condition": five_conditions(), "serve": {"variation": "on"}}])
            } else {
                json!([])
            };
            flag(i, rules)
        })
        .collect();
    let experiments: Vec<Value> = (0..50).map(experiment).collect();
    let hundred = compiled(json!({"flags": flags, "experiments": experiments}));
    c.bench_function("evaluate_all_100", |b| {
        b.iter(|| evaluate_all(black_box(&hundred), black_box(&ctx)).len())
    });

    let flags: Vec<Value> = (0..500)
        .map(|i| flag(i, json!([{"condition": five_conditions(), "serve": {"variation": "on"}}])))
        .collect();
    let experiments: Vec<Value> = (0..500).map(experiment).collect();
    let defs: Definitions =
        serde_json::from_value(json!({"flags": flags, "experiments": experiments})).unwrap();
    c.bench_function("compile_1000", |b| b.iter(|| compile(black_box(&defs)).map(|c| c.len())));
}

criterion_group!(evaluation, benches);
criterion_main!(evaluation);
