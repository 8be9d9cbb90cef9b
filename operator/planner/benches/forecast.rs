//! Criterion benchmarks of the forecast: one Jiangsu plan and one Jiangsu forecast with a
//! capacity search (four city nodes shrunk, deadline 40 hours out), in the same run; then the
//! ratio of their medians from alternating runs, and `plansRun`. The issue's target: the
//! forecast takes at most 200 plans' time. See docs/forecasting.md.
//!
//! ```text
//! cargo bench -p suyun-planner --bench forecast
//! ```

mod common {
    pub mod forecast_input;
}

use std::hint::black_box;
use std::time::Duration;

use common::forecast_input::{DEADLINE_MINUTES, bench_input, measure};
use criterion::{Criterion, criterion_group, criterion_main};

fn jiangsu(c: &mut Criterion) {
    let (input, request) = bench_input(1, DEADLINE_MINUTES);
    let mut group = c.benchmark_group("forecast");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("jiangsu_plan", |b| b.iter(|| suyun_planner::plan(black_box(&input))));
    group.bench_function("jiangsu_forecast_with_capacity_search", |b| {
        b.iter(|| suyun_planner::forecast::forecast(black_box(&input), black_box(&request)))
    });
    group.finish();

    let (plan_ms, forecast_ms, last) = measure(&input, &request, 9);
    let plans = last.as_ref().map_or(0, |f| f.plans_run);
    let search = last.as_ref().and_then(|f| f.capacity.as_ref()).map_or(0, |c| c.plans_run);
    println!(
        "forecast/ratio: plan {plan_ms:.2} ms, forecast {forecast_ms:.1} ms (medians of 9 alternating runs): \
         {:.1} plans' time (target ≤ 200); plansRun {plans} ({search} in the capacity search)",
        forecast_ms / plan_ms
    );
}

criterion_group!(benches, jiangsu);
criterion_main!(benches);
