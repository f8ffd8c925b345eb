//! Cohort's engine beside Unleash's yggdrasil, one criterion group per pair of equivalent
//! flags: `rollout_50`, `variants_2`, `constraints_5`, `all_100`. Single-threaded.
//!
//! What each side includes per iteration: the call a user of that engine makes per decision,
//! from an engine handle and a context already built. Neither engine makes its users rebuild
//! the context per call (both take it by reference, once per request), so contexts are
//! precomputed for 100,000 users and the benchmarks rotate through them. Both calls load the
//! compiled state from an `ArcSwap`, look the flag up by key and return an owned answer; no
//! metrics or exposures are recorded on either side.
//! - Cohort: `Client::bool_value` / `string_value` (a `String`) / `evaluate_all` (a `Vec` of
//!   owned evaluations).
//! - yggdrasil: `EngineState::is_enabled` / `get_variant` (an owned variant) / `resolve_all`
//!   (a `HashMap` of owned toggles).

use std::hint::black_box;

use cohort_peers::{CONSTRAINTS_5, Peers, ROLLOUT_50, USER_COUNT, VARIANTS_2};
use criterion::{Criterion, criterion_group, criterion_main};

/// Hands out the users in turn, so no one context stays hot in the caches and the branch
/// predictors.
struct Rotation<'a, T> {
    items: &'a [T],
    next: usize,
}

impl<'a, T> Rotation<'a, T> {
    fn new(items: &'a [T]) -> Self {
        Rotation { items, next: 0 }
    }

    fn next(&mut self) -> &'a T {
        let item = &self.items[self.next];
        self.next += 1;
        if self.next == self.items.len() {
            self.next = 0;
        }
        item
    }
}

fn benches(c: &mut Criterion) {
    let p = Peers::new(USER_COUNT);
    let no_external = None;

    let mut g = c.benchmark_group("rollout_50");
    let mut users = Rotation::new(&p.cohort_contexts);
    g.bench_function("cohort", |b| {
        b.iter(|| p.cohort.bool_value(black_box(ROLLOUT_50), users.next(), false))
    });
    let mut users = Rotation::new(&p.unleash_contexts);
    g.bench_function("yggdrasil", |b| {
        b.iter(|| p.unleash.is_enabled(black_box(ROLLOUT_50), users.next(), &no_external))
    });
    g.finish();

    let mut g = c.benchmark_group("variants_2");
    let mut users = Rotation::new(&p.cohort_contexts);
    g.bench_function("cohort", |b| b.iter(|| p.cohort.string_value(black_box(VARIANTS_2), users.next(), "")));
    let mut users = Rotation::new(&p.unleash_contexts);
    g.bench_function("yggdrasil", |b| {
        b.iter(|| p.unleash.get_variant(black_box(VARIANTS_2), users.next(), &no_external))
    });
    g.finish();

    let mut g = c.benchmark_group("constraints_5");
    let mut users = Rotation::new(&p.cohort_contexts);
    g.bench_function("cohort", |b| {
        b.iter(|| p.cohort.bool_value(black_box(CONSTRAINTS_5), users.next(), false))
    });
    let mut users = Rotation::new(&p.unleash_contexts);
    g.bench_function("yggdrasil", |b| {
        b.iter(|| p.unleash.is_enabled(black_box(CONSTRAINTS_5), users.next(), &no_external))
    });
    g.finish();

    let mut g = c.benchmark_group("all_100");
    let mut users = Rotation::new(&p.cohort_contexts);
    g.bench_function("cohort", |b| b.iter(|| p.cohort.evaluate_all(users.next())));
    let mut users = Rotation::new(&p.unleash_contexts);
    g.bench_function("yggdrasil", |b| b.iter(|| p.unleash.resolve_all(users.next(), &no_external)));
    g.finish();
}

criterion_group!(peers, benches);
criterion_main!(peers);
