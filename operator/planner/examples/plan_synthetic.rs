//! Plans a synthetic dataset and prints a summary; also the process to measure for peak RSS.
//!
//! ```text
//! cargo run --release -p suyun-planner --example plan_synthetic -- jiangsu [SEED] [table|json|summary] [first-fit]
//! /usr/bin/time -v target/release/examples/plan_synthetic national 1 summary
//! ```

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dataset = args.first().map_or("jiangsu", String::as_str);
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let format = args.get(2).map_or("summary", String::as_str);
    let baseline = args.iter().any(|a| a == "first-fit");

    let started = Instant::now();
    let input = match dataset {
        "national" => suyun_planner::synthetic::national(seed),
        _ => suyun_planner::synthetic::jiangsu(seed),
    };
    let generated = started.elapsed();
    let started = Instant::now();
    let plan = if baseline { suyun_planner::first_fit(&input) } else { suyun_planner::plan(&input) };
    let planned = started.elapsed();
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default()),
        "table" => print!("{}", plan.render_table()),
        _ => {}
    }
    eprintln!(
        "{dataset} seed {seed}: {} nodes, {} tenants, {} systems, {} dependency edges; \
         generated in {:.1} ms, planned in {:.1} ms",
        input.nodes.len(),
        input.tenants.len(),
        input.systems.len(),
        input.systems.iter().map(|s| s.depends_on.len()).sum::<usize>(),
        generated.as_secs_f64() * 1e3,
        planned.as_secs_f64() * 1e3
    );
    eprintln!(
        "placed {} of {}, unplaceable {}, not migrated {}; makespan {:.2} h, lower bound {:.2} h ({:+.1} %)",
        plan.placed,
        plan.systems,
        plan.unplaceable.len(),
        plan.not_migrated.len(),
        plan.makespan_hours,
        plan.lower_bound_hours,
        (plan.makespan_hours / plan.lower_bound_hours.max(1e-9) - 1.0) * 100.0
    );
    let reasons: Vec<String> = plan.reasons.iter().map(|(r, c)| format!("{r} {c}")).collect();
    eprintln!("reasons: {}", reasons.join(", "));
}
