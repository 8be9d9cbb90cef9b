//! Times Jiangsu plans and Jiangsu forecasts with a capacity search, alternating, and prints
//! the medians, their ratio (the issue's target: a forecast takes at most 200 plans' time)
//! and `plansRun`.
//!
//! ```text
//! cargo run --release -p suyun-planner --example forecast_bench -- [SEED] [ROUNDS] [table|json|-] [DEADLINE_MINUTES]
//! ```
//!
//! The input is `benches/common/forecast_input.rs`: `synthetic::jiangsu(SEED)` (default 1)
//! with four city nodes shrunk and a deadline 40 hours out; ROUNDS defaults to 9.

#[path = "../benches/common/forecast_input.rs"]
mod forecast_input;

use forecast_input::{DEADLINE_MINUTES, bench_input, measure};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(9);
    let format = args.get(2).map_or("-", String::as_str);
    let deadline = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(DEADLINE_MINUTES);
    let (input, request) = bench_input(seed, deadline);
    let (plan_ms, forecast_ms, last) = measure(&input, &request, rounds);
    let Some(f) = last else { return };
    match format {
        "table" => print!("{}", f.render_table()),
        "json" => println!("{}", serde_json::to_string_pretty(&f).unwrap_or_default()),
        _ => {}
    }
    let search = f.capacity.as_ref().map_or(0, |c| c.plans_run);
    eprintln!(
        "jiangsu seed {seed}, {rounds} rounds (medians): plan {plan_ms:.2} ms, forecast {forecast_ms:.1} ms, \
         ratio {:.1} plans' time (target ≤ 200); plansRun {} ({search} in the capacity search); outcome {:?}",
        forecast_ms / plan_ms,
        f.plans_run,
        f.capacity.as_ref().map(|c| c.outcome)
    );
}
