//! Criterion benchmarks: the constrained planner and the first-fit baseline on the synthetic
//! Jiangsu and national datasets, and the Jiangsu set with city budgets, lending and residency
//! (`synthetic::with_governance`), in the same run. See docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

fn jiangsu(c: &mut Criterion) {
    let input = suyun_planner::synthetic::jiangsu(1);
    let mut group = c.benchmark_group("jiangsu");
    group.sample_size(100);
    group.bench_function("plan", |b| b.iter(|| suyun_planner::plan(black_box(&input))));
    group.bench_function("first_fit", |b| b.iter(|| suyun_planner::first_fit(black_box(&input))));
    // The same set with 13 city budgets, lending and Sensitive systems: the cost of governance.
    let governed = suyun_planner::synthetic::with_governance(input.clone());
    group.bench_function("plan_governed", |b| b.iter(|| suyun_planner::plan(black_box(&governed))));
    group.finish();
}

fn national(c: &mut Criterion) {
    let input = suyun_planner::synthetic::national(1);
    let mut group = c.benchmark_group("national");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("plan", |b| b.iter(|| suyun_planner::plan(black_box(&input))));
    group.bench_function("first_fit", |b| b.iter(|| suyun_planner::first_fit(black_box(&input))));
    group.finish();
}

criterion_group!(benches, jiangsu, national);
criterion_main!(benches);
