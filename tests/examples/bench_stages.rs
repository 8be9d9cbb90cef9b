//! Where one migration-loop iteration spends its CPU at Jiangsu scale, stage by stage, in
//! process (no cluster): the snapshot, the planner's input, the plan, the decide stage and the
//! report stage's pure parts. Documented in `docs/benchmarks.md` ("Migration loop").
//!
//! ```sh
//! cargo run --release -p suyun-tests --example bench_stages -- --runs 30
//! ```
//!
//! The synthetic Jiangsu set (`suyun_planner::synthetic::jiangsu`) as the operator's caches
//! would hold it after the first iteration: every system with the status that iteration
//! wrote, and one wave of `--moving` systems. Each stage runs `--runs` times; the median and
//! the minimum are printed. The allocator is the operator's (mimalloc), as in
//! `suyun-operator`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use suyun_crds::v1alpha1::{GovSystem, MigrationWave};
use suyun_operator::metrics::{Metrics, state::LoopState};
use suyun_operator::migration::decide;
use suyun_operator::migration::snapshot::{Overlay, Snapshot};
use suyun_operator::plan_input::Objects;
use suyun_operator::readmodel::{self, PublishedSystems};
use suyun_tests::synthetic::{cloud_node, system, tenant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "CPU time of the migration loop's stages at Jiangsu scale, in process")]
struct Args {
    /// Seed of `suyun_planner::synthetic::jiangsu`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs of each stage.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Systems in the wave (they change phase every iteration in `bench_loop`).
    #[arg(long, default_value_t = 40)]
    moving: usize,
    /// Run only the stages whose name contains this (for a profiler).
    #[arg(long, default_value = "")]
    only: String,
}

/// The stages timed so far, each `runs` times (those whose name contains `only`).
struct Stages {
    runs: usize,
    only: String,
    rows: Vec<(&'static str, Duration, Duration)>,
}

impl Stages {
    /// Times `f`: the median and the minimum of the runs.
    fn time<T>(&mut self, name: &'static str, mut f: impl FnMut() -> T) {
        if !name.contains(self.only.as_str()) {
            return;
        }
        let mut took: Vec<Duration> = (0..self.runs.max(1))
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f());
                started.elapsed()
            })
            .collect();
        took.sort();
        self.rows.push((name, took[took.len() / 2], took[0]));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let input = suyun_planner::synthetic::jiangsu(args.seed);
    let wave: MigrationWave = serde_json::from_value(json!({
        "apiVersion": "suyun.io/v1alpha1", "kind": "MigrationWave", "metadata": { "name": "bench" },
        "spec": { "order": 1, "selector": { "matchLabels": { "suyun.io/bench": "moving" } },
                  "executor": "Simulated", "maxConcurrent": args.moving }
    }))?;
    let mut systems: Vec<GovSystem> = input.systems.iter().map(system).collect::<anyhow::Result<_>>()?;
    for (n, s) in systems.iter_mut().enumerate() {
        s.metadata.uid = Some(format!("uid-{n}"));
        s.metadata.resource_version = Some("1".into());
        if n < args.moving {
            s.metadata.labels.get_or_insert_default().insert("suyun.io/bench".into(), "moving".into());
        }
    }
    let mut objects = Objects {
        cloud_nodes: input.nodes.iter().map(|n| cloud_node(n).map(Arc::new)).collect::<anyhow::Result<_>>()?,
        tenants: input.tenants.iter().map(|t| tenant(t).map(Arc::new)).collect::<anyhow::Result<_>>()?,
        systems: systems.into_iter().map(Arc::new).collect(),
        waves: vec![Arc::new(wave)],
        ..Default::default()
    };
    let now = jiff::Timestamp::now().as_second();

    // The first iteration's statuses, as the caches would show them afterwards.
    let first = Snapshot::take(objects.clone(), Vec::new(), &mut Overlay::default(), &BTreeMap::new(), now);
    let (plan_input, invalid) = first.plan_input();
    let plan = suyun_planner::plan(&plan_input);
    let decision = decide::decide(&first, &plan_input, &plan, &invalid, 10);
    let mut statuses = vec![None; objects.systems.len()];
    for (i, outcome) in &decision.outcomes {
        statuses[*i] = Some(outcome.status.clone());
    }
    objects.systems = objects
        .systems
        .iter()
        .zip(statuses)
        .map(|(s, status)| {
            let mut s = GovSystem::clone(s);
            s.status = status;
            Arc::new(s)
        })
        .collect();
    let phases = objects.systems.iter().fold(BTreeMap::<&str, usize>::new(), |mut m, s| {
        *m.entry(s.status.as_ref().and_then(|st| st.phase).unwrap_or_default().as_str()).or_default() += 1;
        m
    });
    println!(
        "{} nodes, {} tenants, {} systems {phases:?}, {} moving; {} runs per stage (median / min)",
        objects.cloud_nodes.len(),
        objects.tenants.len(),
        objects.systems.len(),
        args.moving,
        args.runs
    );

    let mut stages = Stages { runs: args.runs, only: args.only.clone(), rows: Vec::new() };
    let take = || Snapshot::take(objects.clone(), Vec::new(), &mut Overlay::default(), &BTreeMap::new(), now);
    let snapshot = take();
    let (plan_input, invalid) = snapshot.plan_input();
    let plan = suyun_planner::plan(&plan_input);
    let run_out = suyun_planner::forecast::run_out_of(&plan_input, &plan, 10.0, 730);
    let run_outs = readmodel::RunOuts { nodes: &run_out, growth_percent: 10.0, horizon_days: 730 };
    let metrics = Metrics::new(true);
    let waves = snapshot.wave_states(&snapshot.statuses);
    let accounts = suyun_operator::accounts::compute(
        snapshot.objects.systems.iter().map(AsRef::as_ref).zip(&snapshot.statuses),
        &snapshot.objects.tenants,
    );
    let (_, built) = readmodel::records(
        &snapshot,
        &snapshot.statuses,
        &accounts,
        &waves,
        &plan,
        &run_outs,
        &PublishedSystems::new(),
    );
    let published: PublishedSystems = built.into_iter().collect();
    let owned = || (0..snapshot.objects.systems.len()).filter(|i| snapshot.owned[*i]);

    stages.time("snapshot: Snapshot::take", take);
    stages.time("snapshot: plan_input", || snapshot.plan_input());
    stages.time("plan", || suyun_planner::plan(&plan_input));
    stages.time("plan: run-out forecast", || suyun_planner::forecast::run_out_of(&plan_input, &plan, 10.0, 730));
    stages.time("decide", || decide::decide(&snapshot, &plan_input, &plan, &invalid, 10));
    stages.time("report: wave_states", || snapshot.wave_states(&snapshot.statuses));
    stages.time("report: accounts", || {
        suyun_operator::accounts::compute(
            snapshot.objects.systems.iter().map(AsRef::as_ref).zip(&snapshot.statuses),
            &snapshot.objects.tenants,
        )
    });
    stages.time("report: metrics", || {
        metrics.observe_loop(&LoopState {
            cloud_nodes: &snapshot.objects.cloud_nodes,
            tenants: &snapshot.objects.tenants,
            systems: &snapshot.objects.systems,
            statuses: &snapshot.statuses,
            wave_of: &snapshot.wave_of,
            waves: &waves,
            accounts: &accounts,
            plan: &plan,
            run_out: &run_out,
        })
    });
    stages.time("report: records, nothing published", || {
        readmodel::records(&snapshot, &snapshot.statuses, &accounts, &waves, &plan, &run_outs, &PublishedSystems::new())
    });
    stages.time("report: records, all published", || {
        readmodel::records(&snapshot, &snapshot.statuses, &accounts, &waves, &plan, &run_outs, &published)
    });
    stages.time("report: journal sources", || {
        let present: std::collections::HashSet<&str> =
            owned().map(|i| snapshot.objects.systems[i].spec.system_id.as_str()).collect();
        let sources: Vec<_> = owned().map(|i| snapshot.journal_source(i, &snapshot.statuses[i])).collect();
        (present, sources.len())
    });
    let total: Duration = stages.rows.iter().map(|(_, median, _)| *median).sum();
    for (name, median, min) in &stages.rows {
        println!("{name:<38} {:>8.2} ms  {:>8.2} ms", ms(*median), ms(*min));
    }
    println!("{:<38} {:>8.2} ms", "sum of medians", ms(total));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
