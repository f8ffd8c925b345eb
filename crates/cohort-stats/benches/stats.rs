//! Criterion benchmarks for the per-comparison hot paths and boundary planning.

use cohort_stats::{
    MeanSummary, ProportionSummary, SequentialPlan, compare_means, compare_proportions, srm_check,
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn comparisons(c: &mut Criterion) {
    let control = ProportionSummary::new(50_000, 1_000).expect("valid summary");
    let treatment = ProportionSummary::new(50_000, 1_150).expect("valid summary");
    c.bench_function("compare_proportions", |b| {
        b.iter(|| compare_proportions(black_box(control), black_box(treatment), black_box(0.05)))
    });

    let control = MeanSummary::new(5_000, 462_707.0, 109_055_267.0).expect("valid summary");
    let treatment = MeanSummary::new(5_000, 482_842.0, 128_613_766.0).expect("valid summary");
    c.bench_function("compare_means", |b| {
        b.iter(|| compare_means(black_box(control), black_box(treatment), black_box(0.05)))
    });

    let small_control = MeanSummary::new(12, 110.0, 1_100.0).expect("valid summary");
    let small_treatment = MeanSummary::new(9, 95.0, 1_090.0).expect("valid summary");
    c.bench_function("compare_means_small_n", |b| {
        b.iter(|| compare_means(black_box(small_control), black_box(small_treatment), black_box(0.05)))
    });

    let observed = [33_500_u64, 33_200, 33_300];
    let weights = [1.0, 1.0, 1.0];
    c.bench_function("srm_check_3_arms", |b| b.iter(|| srm_check(black_box(&observed), black_box(&weights))));
}

fn boundaries(c: &mut Criterion) {
    let fractions: Vec<f64> = (1..=10).map(|k| f64::from(k) / 10.0).collect();
    c.bench_function("obf_boundaries_10_looks", |b| {
        b.iter(|| SequentialPlan::obrien_fleming(black_box(&fractions), black_box(0.05)))
    });
    let nine_looks = SequentialPlan::obrien_fleming(&fractions[..9], 0.05).expect("valid schedule");
    c.bench_function("obf_extend_to_look_10", |b| {
        b.iter(|| {
            let mut plan = nine_looks.clone();
            plan.extend(black_box(1.0)).map(|look| look.boundary)
        })
    });
}

criterion_group!(benches, comparisons, boundaries);
criterion_main!(benches);
