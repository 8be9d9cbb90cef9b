//! Time per pipeline stage on the synthetic Jiangsu set (docs/benchmarks.md, Planner). The
//! test checks that the stages run one by one give the very plan `plan` gives, so that their
//! times add up to what `plan` does; `SUYUN_STAGE_RUNS` repeats them and prints the minimum over
//! the runs, the figure least disturbed by other load:
//!
//! ```sh
//! SUYUN_STAGE_RUNS=300 cargo test --release -p suyun-planner --lib stage_timing -- --nocapture
//! ```

use std::time::Instant;

use crate::dependencies::{self, Failure};
use crate::index::Problem;
use crate::output::Algorithm;
use crate::windows::WindowTable;
use crate::{placement, schedule};

/// The stages of `plan`, one by one; `t[1..=5]` get the time each one ended.
fn stages(input: &crate::model::PlanInput, t: &mut [Instant]) -> crate::Plan {
    let p = Problem::new(input);
    t[1] = Instant::now();
    let mut failure: Vec<Option<Failure>> = vec![None; p.systems.len()];
    let order = dependencies::check(&p, &mut failure);
    t[2] = Instant::now();
    let windows = WindowTable::new(&p);
    let placed = placement::place(&p, &windows, &mut failure);
    t[3] = Instant::now();
    let times = schedule::schedule(&p, &placed, &windows, &failure, &order);
    t[4] = Instant::now();
    let last = times.times.iter().flatten().map(|t| t.completion).max().unwrap_or(p.settings.now);
    let plan =
        crate::plan::assemble(&p, Algorithm::Constrained, &failure, &placed, &times.times, last, times.lower_bound);
    t[5] = Instant::now();
    plan
}

#[test]
fn stage_timing() {
    let input = crate::synthetic::jiangsu(1);
    let json = |plan: &crate::Plan| serde_json::to_string(plan).expect("a plan serialises");
    let staged = stages(&input, &mut [Instant::now(); 9]);
    assert!(json(&staged) == json(&crate::plan(&input)), "the stages run one by one plan differently from `plan`");
    let runs: u32 = std::env::var("SUYUN_STAGE_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
    // The same set with city budgets, lending and Sensitive systems: what governance costs.
    let governed = crate::synthetic::with_governance(input.clone());
    let names = ["index", "check", "place", "schedule", "assemble", "drop", "first_fit", "plan", "governed"];
    let mut best = [f64::MAX; 9];
    let mut total = [0f64; 9];
    for _ in 0..runs {
        let mut t = [Instant::now(); 10];
        let plan = stages(&input, &mut t);
        drop(plan);
        t[6] = Instant::now();
        drop(std::hint::black_box(crate::first_fit(&input)));
        t[7] = Instant::now();
        drop(std::hint::black_box(crate::plan(&input)));
        t[8] = Instant::now();
        drop(std::hint::black_box(crate::plan(&governed)));
        t[9] = Instant::now();
        for k in 0..9 {
            let ms = (t[k + 1] - t[k]).as_secs_f64() * 1e3;
            best[k] = best[k].min(ms);
            total[k] += ms;
        }
    }
    for k in 0..9 {
        eprintln!("{:10} min {:.3} ms  mean {:.3} ms", names[k], best[k], total[k] / f64::from(runs));
    }
}
