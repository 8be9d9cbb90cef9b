//! Benchmark of the migration loop (issue 13 §3), documented in `docs/benchmarks.md`
//! ("Migration loop").
//!
//! ```sh
//! cargo build --release -p suyun-operator && cargo run --release -p suyun-tests --example bench_loop
//! # another build of the operator, measured by the same benchmark:
//! SUYUN_BENCH_OPERATOR=/path/to/suyun-operator cargo run --release -p suyun-tests --example bench_loop
//! ```
//!
//! On a control plane of its own (`target/bench-loop-cluster`), the synthetic Jiangsu set
//! (14 CloudNodes, 372 Tenants, 7,900 GovSystems), three measurements, each a ratio to a
//! baseline taken right before it, repeated `--reps` times (interleaved) and reported with the
//! median ratio:
//!
//! 1. **To Scheduled**: the operator started on systems without status, until a watch saw every
//!    system with a phase; baseline: one status merge patch per system from a plain client, 32 in
//!    flight.
//! 2. **Cold start**: the operator started again with nothing changed, until its first
//!    iteration is logged (the read-model is published in it), and every write request the
//!    kube-apiserver served meanwhile; baseline: one plain LIST of every kind the operator caches.
//! 3. **An iteration with `--transitions` phase changes**: that many Scheduled systems without
//!    dependencies join a Simulated wave compressed to one-second phases, so each iteration moves
//!    all of them at once; baseline: the same number of status patches (each a system's whole
//!    status, its message changed) sent at once by a plain client.
//!
//! Loopback only, bounded in requests and time; it stops its control plane at the end
//! (`--keep-cluster` keeps it).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Node, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_tests::bench::{self, LogTail, Operator, Report, loadavg, median, patch_statuses, secs_between, wait_for};
use suyun_tests::synthetic::MANAGER;
use suyun_tests::{Cluster, install_crds};

#[derive(Debug, Parser)]
#[command(about = "Benchmark of the Suyun migration loop on the synthetic Jiangsu set")]
struct Args {
    /// Seed of `suyun_planner::synthetic::jiangsu`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Repetitions of each measurement.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Phase changes per iteration in the third measurement.
    #[arg(long, default_value_t = 40)]
    transitions: usize,
    /// Requests in flight for the baselines and for creating objects (the operator uses 32).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Give up waiting for the operator after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    #[command(flatten)]
    cluster: suyun_tests::bench::OwnCluster,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    suyun_tests::bench::built_operator()?;
    args.cluster.clone().run("bench-loop-cluster", |cluster| async move { run(&args, &cluster).await })
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-6)
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Systems with a phase (anything but none and Pending), by listing (outside any timing: a list
/// of 7,900 costs the apiserver most of a second).
async fn decided(client: &Client) -> anyhow::Result<usize> {
    let all = Api::<GovSystem>::all(client.clone()).list(&ListParams::default()).await?.items;
    Ok(all.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p != Phase::Pending)).count())
}

/// One plain LIST of every kind the operator caches.
async fn list_everything(client: &Client) -> anyhow::Result<Duration> {
    let lp = ListParams::default();
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=suyun-operator");
    let started = Instant::now();
    Api::<GovSystem>::all(client.clone()).list(&lp).await?;
    Api::<MigrationWave>::all(client.clone()).list(&lp).await?;
    Api::<Tenant>::all(client.clone()).list(&lp).await?;
    Api::<CloudNode>::all(client.clone()).list(&lp).await?;
    Api::<Node>::all(client.clone()).list(&lp).await?;
    Api::<Job>::all(client.clone()).list(&managed).await?;
    Api::<Namespace>::all(client.clone()).list(&managed).await?;
    Api::<ResourceQuota>::all(client.clone()).list(&managed).await?;
    Api::<LimitRange>::all(client.clone()).list(&managed).await?;
    Api::<NetworkPolicy>::all(client.clone()).list(&managed).await?;
    Api::<RoleBinding>::all(client.clone()).list(&managed).await?;
    Ok(started.elapsed())
}

/// Starts the operator (with the status store when `store`) and waits until its first migration
/// loop iteration is logged (its read-model published, with the store); returns it, its log,
/// and the seconds from its start to that line.
async fn start_operator(cluster: &Cluster, store: bool, timeout: Duration) -> anyhow::Result<(Operator, LogTail, f64)> {
    let endpoints = format!("--store-endpoints={}", cluster.etcd_endpoints);
    let args: &[&str] = if store { &[&endpoints, "--store-prefix=/bench-loop"] } else { &[] };
    let spawned = jiff::Timestamp::now();
    let mut operator = Operator::start(cluster, "bench-loop", args)?;
    let mut log = LogTail::open(&operator.log)?;
    let deadline = Instant::now() + timeout;
    loop {
        log.poll();
        let first = log.iterations().next().map(|line| secs_between(spawned, line.at));
        if let Some(at) = first {
            return Ok((operator, log, at));
        }
        anyhow::ensure!(operator.running(), "the operator exited:\n{}", std::fs::read_to_string(&operator.log)?);
        anyhow::ensure!(Instant::now() < deadline, "no iteration after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[allow(clippy::too_many_lines)]
async fn run(args: &Args, cluster: &Cluster) -> anyhow::Result<()> {
    let mut report = Report::default();
    report.add(format!("operator: {}; load average at start: {}", bench::operator_binary().display(), loadavg()));
    let client = cluster.client().await?;
    install_crds(&client).await?;
    let input = suyun_planner::synthetic::jiangsu(args.seed);
    let c = args.concurrency;
    let timeout = Duration::from_secs(args.timeout_seconds);

    // --- the province: nodes, tenants (Namespaces provisioned by the operator), systems ---
    let created = bench::create_province(cluster, &client, &input, c, timeout).await?;
    let n = created.len();
    report.add(format!("{} CloudNodes, {} Tenants, {n} GovSystems", input.nodes.len(), input.tenants.len()));

    // --- 1. to Scheduled, against one status merge patch per system ---
    let mut ratios = Vec::new();
    for rep in 1..=args.reps {
        let load = loadavg();
        let (t0, failed) = patch_statuses(&client, &created, &json!({ "status": { "message": "baseline" } }), c).await;
        anyhow::ensure!(failed == 0, "{failed} baseline patches failed");
        patch_statuses(&client, &created, &json!({ "status": null }), c).await;
        bench::settle(&client, Duration::from_secs(2), timeout).await?;
        // Until the iterations wrote as many statuses as there are systems (each gets its phase
        // in one write; checked by a list afterwards).
        let spawned = jiff::Timestamp::now();
        let (mut operator, mut log, _) = start_operator(cluster, false, timeout).await?;
        let mut written = 0;
        wait_for("a status for every system", timeout, || {
            log.poll();
            written = log.iterations().map(|l| l.fields["statuses"].as_u64().unwrap_or(0) as usize).sum::<usize>();
            written >= n
        })
        .await?;
        let last = log.iterations().last().map(|l| l.at).unwrap_or(spawned);
        let t1 = Duration::from_secs_f64(secs_between(spawned, last));
        let have = decided(&client).await?;
        anyhow::ensure!(have == n, "{written} statuses written but {have}/{n} systems have a phase");
        let r = ratio(t1, t0);
        report.add(format!(
            "to Scheduled, rep {rep}: operator {:.2} s, baseline {n} patches {:.2} s, ratio {r:.2}× (load {load})",
            t1.as_secs_f64(),
            t0.as_secs_f64()
        ));
        ratios.push(r);
        if rep < args.reps {
            operator.terminate();
            bench::settle(&client, Duration::from_secs(2), timeout).await?;
            patch_statuses(&client, &created, &json!({ "status": null }), c).await;
        } else {
            // Leave it running until it is done writing, for the cold starts.
            bench::settle(&client, Duration::from_secs(5), timeout).await?;
            operator.terminate();
        }
    }
    report.add(format!("to Scheduled: median ratio {:.2}× (target ≤ 1.2×)", median_f(ratios)));

    // --- 2. cold start with nothing changed, against one LIST of every cached kind ---
    // A first start with the status store publishes everything there; the measured ones follow.
    let (mut operator, _, _) = start_operator(cluster, true, timeout).await?;
    bench::settle(&client, Duration::from_secs(5), timeout).await?;
    operator.terminate();
    let mut ratios = Vec::new();
    for rep in 1..=args.reps {
        bench::settle(&client, Duration::from_secs(2), timeout).await?;
        let load = loadavg();
        let listed = list_everything(&client).await?;
        let before = bench::write_requests(&client).await?;
        let (mut operator, _log, first) = start_operator(cluster, true, timeout).await?;
        let after = bench::settle(&client, Duration::from_secs(5), timeout).await?;
        operator.terminate();
        let written = bench::grown(&before, &after);
        let r = first / listed.as_secs_f64();
        report.add(format!(
            "cold start, rep {rep}: first iteration {first:.2} s after start, plain LISTs {:.2} s, ratio {r:.2}×; \
             writes {written:?} (load {load})",
            listed.as_secs_f64()
        ));
        ratios.push(r);
    }
    report.add(format!("cold start: median ratio {:.2}× (target ≤ 2×, and no writes)", median_f(ratios)));

    // --- 3. iterations with `transitions` phase changes, against as many patches at once ---
    let (mut operator, mut log, _) = start_operator(cluster, true, timeout).await?;
    bench::settle(&client, Duration::from_secs(5), timeout).await?;
    let api = Api::<GovSystem>::all(client.clone());
    let mut by_node: std::collections::BTreeMap<String, Vec<GovSystem>> = std::collections::BTreeMap::new();
    let candidates: Vec<GovSystem> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| s.spec.depends_on.is_empty() && s.spec.same_node_as.is_empty())
        .filter(|s| s.status.as_ref().is_some_and(|st| st.phase == Some(Phase::Scheduled) && st.node.is_some()))
        .collect();
    for s in candidates {
        let node = s.status.as_ref().and_then(|st| st.node.clone()).unwrap_or_default();
        by_node.entry(node).or_default().push(s);
    }
    // Round-robin over the nodes, so that no node's concurrency holds a start back.
    let mut free = Vec::new();
    while by_node.values().any(|v| !v.is_empty()) {
        for systems in by_node.values_mut() {
            free.extend(systems.pop());
        }
    }
    let k = args.transitions;
    anyhow::ensure!(free.len() >= 2 * k * args.reps, "only {} free Scheduled systems", free.len());
    let mut ratios = Vec::new();
    for rep in 1..=args.reps {
        let chunk = &free[(rep - 1) * 2 * k..rep * 2 * k];
        let (movers, others) = chunk.split_at(k);
        // Baseline: each of `others` gets its whole status back with another message, all at once.
        let load = loadavg();
        let started = Instant::now();
        let results =
            futures::future::join_all(others.iter().map(|s| {
                let api = Api::<GovSystem>::namespaced(client.clone(), &s.namespace().unwrap_or_default());
                let mut status = serde_json::to_value(&s.status).unwrap_or_default();
                status["message"] = json!(format!("baseline {rep}"));
                let name = s.name_any();
                async move {
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await
                }
            }))
            .await;
        let baseline = started.elapsed();
        anyhow::ensure!(results.iter().all(Result::is_ok), "baseline patches failed");
        bench::settle(&client, Duration::from_secs(3), timeout).await?;

        // The movers join a wave of their own, one-second phases.
        let label = format!("rep-{rep}");
        let pp = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        for s in movers {
            let api = Api::<GovSystem>::namespaced(client.clone(), &s.namespace().unwrap_or_default());
            api.patch(
                &s.name_any(),
                &pp,
                &Patch::Merge(json!({ "metadata": { "labels": { "suyun.io/bench": label } } })),
            )
            .await?;
        }
        bench::settle(&client, Duration::from_secs(2), timeout).await?;
        log.poll();
        let seen_before = log.iterations().count();
        let wave = json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "MigrationWave",
            "metadata": { "name": format!("bench-{label}") },
            "spec": { "order": 100 + rep, "selector": { "matchLabels": { "suyun.io/bench": label } },
                      "executor": "Simulated", "timeCompression": 1_000_000, "maxConcurrent": k }
        });
        Api::<MigrationWave>::all(client.clone())
            .patch(&format!("bench-{label}"), &PatchParams::apply(MANAGER), &Patch::Apply(wave))
            .await?;
        let names: HashSet<String> = movers.iter().map(ResourceExt::name_any).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let done = api
                .list(&ListParams::default().labels(&format!("suyun.io/bench={label}")))
                .await?
                .items
                .iter()
                .filter(|s| names.contains(&s.name_any()))
                .filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed))
                .count();
            if done == k {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline && operator.running(), "only {done}/{k} completed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        log.poll();
        let moving: Vec<_> = log
            .iterations()
            .skip(seen_before)
            .filter(|l| l.fields["statuses"].as_u64().is_some_and(|s| s >= k as u64))
            .collect();
        let stage = |field: &str| median(moving.iter().map(|l| l.fields[field].as_u64().unwrap_or(0)).collect());
        let full: Vec<u64> = moving.iter().map(|l| l.fields["elapsed_ms"].as_u64().unwrap_or(0)).collect();
        let Some(iteration) = median(full.clone()) else {
            bail!("no iteration moved all {k} systems at once (rep {rep})");
        };
        let stages = ["snapshot_ms", "plan_ms", "writes_ms", "report_ms", "published_ms"]
            .map(|f| format!("{f} {}", stage(f).unwrap_or(0)))
            .join(", ");
        report.add(format!("{k} transitions, rep {rep}: stage medians {stages}"));
        let r = iteration as f64 / (baseline.as_secs_f64() * 1000.0);
        report.add(format!(
            "{k} transitions, rep {rep}: iterations moving all {k} took {full:?} ms (median {iteration}); \
             {k} status patches at once {:.0} ms; ratio {r:.2}× (load {load})",
            baseline.as_secs_f64() * 1000.0
        ));
        ratios.push(r);
    }
    report.add(format!("{k} transitions: median ratio {:.2}× (target ≤ 1.5×)", median_f(ratios)));
    operator.terminate();
    report.add(format!("load average at the end: {}", loadavg()));

    println!("\n## bench_loop summary\n");
    for line in &report.lines {
        println!("{line}");
    }
    Ok(())
}
