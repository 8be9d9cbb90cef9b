//! The input of the forecast benchmark, shared by `benches/forecast.rs` and
//! `examples/forecast_bench.rs` so that both measure the same thing.

use suyun_planner::forecast::{ForecastRequest, forecast};
use suyun_planner::model::PlanInput;

/// City nodes shrunk, and the percentage of their allocatable (cpu, memory, storage) they keep.
pub const SHRUNK: [(&str, u64); 4] = [("cn-320500", 70), ("cn-320100", 75), ("cn-320200", 80), ("cn-320600", 80)];
/// The deadline, minutes after now (the Jiangsu plan takes about 37 hours).
pub const DEADLINE_MINUTES: i64 = 40 * 60;

/// `synthetic::jiangsu(seed)` with four city nodes shrunk (so that systems spill over or stay
/// unplaced and the capacity search has something to find), and a request with growth 15 %
/// per year and a deadline `deadline_minutes` after now.
pub fn bench_input(seed: u64, deadline_minutes: i64) -> (PlanInput, ForecastRequest) {
    let mut input = suyun_planner::synthetic::jiangsu(seed);
    for n in &mut input.nodes {
        if let Some((_, keep)) = SHRUNK.iter().find(|(name, _)| *name == n.name) {
            let a = &mut n.allocatable;
            a.cpu = a.cpu * keep / 100;
            a.memory = a.memory * keep / 100;
            a.storage = a.storage * keep / 100;
        }
    }
    let request = ForecastRequest {
        growth_percent_per_year: 15.0,
        deadline: Some(input.settings.now + deadline_minutes * 60),
        ..ForecastRequest::default()
    };
    (input, request)
}

/// Times `rounds` plans and forecasts of the same input, alternating; returns the median plan
/// time, the median forecast time (milliseconds) and the last forecast.
pub fn measure(
    input: &PlanInput,
    request: &ForecastRequest,
    rounds: usize,
) -> (f64, f64, Option<suyun_planner::forecast::Forecast>) {
    use std::time::Instant;
    let (mut plan_ms, mut forecast_ms, mut last) = (Vec::new(), Vec::new(), None);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        drop(std::hint::black_box(suyun_planner::plan(input)));
        plan_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let f = std::hint::black_box(forecast(input, request));
        forecast_ms.push(started.elapsed().as_secs_f64() * 1e3);
        last = Some(f);
    }
    (median(plan_ms), median(forecast_ms), last)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
