//! What the per-key rate limit adds to every keyed request: one check of a key within its
//! allowance, among many tracked keys. `cargo bench -p cohort-runtime --bench throttle`.

use std::hint::black_box;

use cohort_runtime::KeyRateLimit;
use criterion::{Criterion, criterion_group, criterion_main};

fn check(c: &mut Criterion) {
    let limit = KeyRateLimit::new(u32::MAX, u32::MAX).expect("a limit");
    let keys: Vec<String> = (0..1_000).map(|i| format!("cohort_sdk_{i:064x}")).collect();
    for key in &keys {
        limit.check(key).expect("within the allowance");
    }
    let mut i = 0;
    c.bench_function("key_rate_limit_check", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(limit.check(black_box(&keys[i]))).expect("within the allowance");
        })
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
