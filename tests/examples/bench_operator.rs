//! Benchmark of the operator at scale (issue 4 §8), documented in `docs/benchmarks.md`
//! ("Operator at scale").
//!
//! ```sh
//! cargo build --release -p suyun-operator && cargo run --release -p suyun-tests --example bench_operator
//! ```
//!
//! Starts a fresh control plane of its own (`tests/cluster/up` with
//! `SUYUN_TEST_CLUSTER_DIR=target/bench-cluster`, so the integration tests' cluster is left
//! alone), turns `suyun_planner::synthetic::jiangsu(1)` into 14 CloudNodes, the Tenants and
//! 7,900 GovSystems (no MigrationWave: systems stay Scheduled with reason NoWave), and measures
//! in one run:
//!
//! 1. **T0**, the baseline: with no operator running, a plain kube client writes one status
//!    merge patch per system, 32 in flight (the operator's own concurrency). The statuses are
//!    then removed again with the same kind of patch (a second sample, T0').
//! 2. **T1**: from the start of the release `suyun-operator` binary until every system has a
//!    phase (Scheduled, Blocked or NotMigrated), seen through a watch; also the time to the first
//!    status and the operator's start-up (from its log: connected, leading, caches synced).
//! 3. The operator's peak RSS (`VmHWM` of `/proc/<pid>/status`) at that scale.
//! 4. Planner runs per minute while one GovSystem's spec changes every 100 ms for 60 s (the
//!    operator's `migration loop iteration` debug lines, with their `elapsed_ms`).
//!
//! Loopback only, bounded in requests and time; it deletes what it created and stops its
//! control plane at the end (`--keep-cluster` keeps it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, Phase, Tenant};
use suyun_tests::bench::{
    LogTail, Operator, Report, cpu_seconds, loadavg, median, memory_kib, patch_statuses, pid_of, secs_between, wait_for,
};
use suyun_tests::synthetic::{MANAGER, cloud_node, create_all, system, tenant};
use suyun_tests::{Cluster, install_crds};

#[derive(Debug, Parser)]
#[command(about = "Benchmark of the Suyun operator on the synthetic Jiangsu set (7,900 GovSystems)")]
struct Args {
    /// Seed of `suyun_planner::synthetic::jiangsu`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests in flight for the baseline and for creating objects (the operator uses 32).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Length of the steady-change window, seconds.
    #[arg(long, default_value_t = 60)]
    stream_seconds: u64,
    /// One GovSystem spec change every this many milliseconds during that window.
    #[arg(long, default_value_t = 100)]
    stream_interval_ms: u64,
    /// Give up waiting for the operator after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    #[command(flatten)]
    cluster: suyun_tests::bench::OwnCluster,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    suyun_tests::bench::built_operator()?;
    // A fresh control plane: stop whatever ran in that directory before (its data goes).
    args.cluster.clone().run("bench-cluster", |cluster| async move { run(&args, &cluster).await })
}

// ---------------------------------------------------------------------------------------------
// What the benchmark sees through its own watch of every GovSystem.

#[derive(Debug, Default)]
struct Seen {
    synced: bool,
    /// Per `namespace/name`: whether it has a decided phase (anything but none/Pending).
    decided: HashMap<String, bool>,
    decided_count: usize,
    baseline: HashSet<String>,
    /// Set just before the operator starts.
    armed: Option<Instant>,
    expected: usize,
    first_decided: Option<Instant>,
    all_decided: Option<Instant>,
    /// Watch events (added or modified) since the watch started.
    applies: u64,
}

fn decided_phase(s: &GovSystem) -> Option<Phase> {
    s.status.as_ref().and_then(|st| st.phase).filter(|p| *p != Phase::Pending)
}

impl Seen {
    fn apply(&mut self, s: &GovSystem) {
        let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
        let phase = decided_phase(s);
        let now = phase.is_some();
        let before = self.decided.insert(key.clone(), now).unwrap_or(false);
        match (before, now) {
            (false, true) => self.decided_count += 1,
            (true, false) => self.decided_count -= 1,
            _ => {}
        }
        if s.status.as_ref().and_then(|st| st.message.as_deref()) == Some("baseline") {
            self.baseline.insert(key);
        } else {
            self.baseline.remove(&key);
        }
        self.applies += 1;
        if self.armed.is_some() && self.decided_count > 0 && self.first_decided.is_none() {
            self.first_decided = Some(Instant::now());
        }
        if self.armed.is_some()
            && self.expected > 0
            && self.decided_count == self.expected
            && self.all_decided.is_none()
        {
            self.all_decided = Some(Instant::now());
        }
    }

    fn delete(&mut self, s: &GovSystem) {
        let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
        if self.decided.remove(&key) == Some(true) {
            self.decided_count -= 1;
        }
        self.baseline.remove(&key);
    }
}

fn spawn_watch(client: Client, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stream = watcher(Api::<GovSystem>::all(client), watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let mut seen = seen.lock().expect("not poisoned");
            match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => seen.apply(&s),
                Ok(watcher::Event::Delete(s)) => seen.delete(&s),
                Ok(watcher::Event::InitDone) => seen.synced = true,
                Ok(watcher::Event::Init) => {}
                Err(e) => eprintln!("[bench] watch error: {e}"),
            }
        }
    })
}

/// Counts the phases of every system from a list (once, for the report).
async fn phase_counts(client: &Client) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for s in Api::<GovSystem>::all(client.clone()).list(&ListParams::default()).await?.items {
        let st = s.status.unwrap_or_default();
        *counts.entry(st.phase.map_or("-".to_owned(), |p| p.as_str().to_owned())).or_default() += 1;
        if st.phase != Some(Phase::NotMigrated) {
            *reasons.entry(st.reason.unwrap_or_else(|| "-".into())).or_default() += 1;
        }
    }
    for (r, n) in reasons {
        counts.insert(format!("reason {r}"), n);
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------------------------
// The operator process and its log.

// ---------------------------------------------------------------------------------------------

#[allow(clippy::too_many_lines)]
async fn run(args: &Args, cluster: &Cluster) -> anyhow::Result<()> {
    let mut report = Report::default();
    report.add(format!("load average at start: {}", loadavg()));
    let client = cluster.client().await?;
    install_crds(&client).await?;
    let input = suyun_planner::synthetic::jiangsu(args.seed);
    let c = args.concurrency;

    // --- nodes and tenants; the operator provisions the tenants' Namespaces, then stops ---
    let nodes: Vec<CloudNode> = input.nodes.iter().map(cloud_node).collect::<anyhow::Result<_>>()?;
    let failed = create_all(|_: &CloudNode| Api::all(client.clone()), nodes, c).await;
    anyhow::ensure!(failed.is_empty(), "CloudNodes refused: {failed:?}");
    let tenants: Vec<Tenant> = input.tenants.iter().map(tenant).collect::<anyhow::Result<_>>()?;
    let failed = create_all(|_: &Tenant| Api::all(client.clone()), tenants, c).await;
    anyhow::ensure!(failed.is_empty(), "Tenants refused: {failed:?}");
    let started = Instant::now();
    suyun_tests::bench::provision_namespaces(
        cluster,
        &client,
        input.tenants.len(),
        Duration::from_secs(args.timeout_seconds),
    )
    .await?;
    report.add(format!(
        "{} CloudNodes, {} Tenants; Namespaces provisioned by the operator in {:.1} s",
        input.nodes.len(),
        input.tenants.len(),
        started.elapsed().as_secs_f64()
    ));

    // --- the systems ---
    let systems: Vec<GovSystem> = input.systems.iter().map(system).collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let failed = create_all(
        |s: &GovSystem| Api::namespaced(client.clone(), &s.namespace().unwrap_or_default()),
        systems.clone(),
        c,
    )
    .await;
    let created: Vec<(String, String)> = {
        let refused: HashSet<&str> = failed.iter().filter_map(|f| f.split(':').next()).collect();
        systems
            .iter()
            .filter(|s| !refused.contains(s.name_any().as_str()))
            .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
            .collect()
    };
    report.add(format!(
        "{} GovSystems created in {:.1} s ({c} in flight); {} refused{}",
        created.len(),
        started.elapsed().as_secs_f64(),
        failed.len(),
        failed.first().map(|f| format!(", e.g. {f}")).unwrap_or_default()
    ));
    let n = created.len();

    // --- our own watch, running through the baseline and the operator's run alike ---
    let seen = Arc::new(Mutex::new(Seen { expected: n, ..Seen::default() }));
    let watch = spawn_watch(cluster.client().await?, seen.clone());
    wait_for("the benchmark's watch to list every system", Duration::from_secs(120), || {
        let s = seen.lock().expect("not poisoned");
        s.synced && s.decided.len() == n
    })
    .await?;

    // --- baseline: one status merge patch per system, no operator ---
    let apiserver = pid_of(cluster, "kube-apiserver");
    let etcd = pid_of(cluster, "etcd-kube");
    let cpu = |pid: Option<u32>| pid.map_or(0.0, cpu_seconds);
    let (a0, e0) = (cpu(apiserver), cpu(etcd));
    let load = loadavg();
    let (t0, failed) = patch_statuses(&client, &created, &json!({ "status": { "message": "baseline" } }), c).await;
    let (a1, e1) = (cpu(apiserver), cpu(etcd));
    report.add(format!(
        "T0 baseline: {n} status merge patches ({c} in flight) in {:.2} s = {:.0}/s, {failed} failed; \
         kube-apiserver {:.1} CPU-s, etcd {:.1} CPU-s; load before {load}",
        t0.as_secs_f64(),
        n as f64 / t0.as_secs_f64(),
        a1 - a0,
        e1 - e0
    ));
    wait_for("the watch to see every baseline status", Duration::from_secs(60), || {
        seen.lock().expect("not poisoned").baseline.len() == n
    })
    .await?;
    let (t0b, failed) = patch_statuses(&client, &created, &json!({ "status": null }), c).await;
    report.add(format!(
        "T0' reset: {n} status merge patches removing the status in {:.2} s = {:.0}/s, {failed} failed",
        t0b.as_secs_f64(),
        n as f64 / t0b.as_secs_f64()
    ));
    wait_for("the watch to see every status removed", Duration::from_secs(60), || {
        let s = seen.lock().expect("not poisoned");
        s.baseline.is_empty() && s.decided_count == 0
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let listed = Api::<GovSystem>::all(client.clone()).list(&ListParams::default()).await?.items.len();
    report.add(format!(
        "a plain list of all {listed} GovSystems (one request) takes {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // --- the operator ---
    let load = loadavg();
    let (a0, e0) = (cpu(apiserver), cpu(etcd));
    let spawned_wall = jiff::Timestamp::now();
    let spawned = Instant::now();
    seen.lock().expect("not poisoned").armed = Some(spawned);
    let mut operator = Operator::start(cluster, "bench-operator", &[])?;
    let pid = operator.pid();
    let mut log = LogTail::open(&operator.log)?;
    let deadline = spawned + Duration::from_secs(args.timeout_seconds);
    loop {
        log.poll();
        if seen.lock().expect("not poisoned").all_decided.is_some() {
            break;
        }
        if !operator.running() {
            bail!("the operator exited:\n{}", std::fs::read_to_string(&operator.log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let s = seen.lock().expect("not poisoned");
            bail!("after {}s only {}/{n} systems have a phase", args.timeout_seconds, s.decided_count);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (hwm_t1, rss_t1) = memory_kib(pid);
    let op_cpu_t1 = cpu_seconds(pid);
    let (a1, e1) = (cpu(apiserver), cpu(etcd));
    let (first, all) = {
        let s = seen.lock().expect("not poisoned");
        (s.first_decided.unwrap_or(spawned), s.all_decided.unwrap_or(spawned))
    };
    let t1 = all - spawned;
    log.poll();
    let at = |message: &str| log.first(message).map(|l| secs_between(spawned_wall, l.at));
    let fmt = |v: Option<f64>| v.map_or("not seen".to_owned(), |s| format!("{s:.2} s"));
    report.add(format!("load before the operator started: {load}"));
    report.add(format!(
        "T1: every one of {n} systems has a phase {:.2} s after the operator started; T1/T0 = {:.2}× (T1/T0' = {:.2}×)",
        t1.as_secs_f64(),
        t1.as_secs_f64() / t0.as_secs_f64(),
        t1.as_secs_f64() / t0b.as_secs_f64()
    ));
    report.add(format!(
        "  start-up: connected {}, leading {}, caches synced (migration loop started) {}; first status seen {:.2} s; \
         first iteration logged {}",
        fmt(at("connected to the Kubernetes API")),
        fmt(at("leading: starting controllers")),
        fmt(at("migration loop started")),
        (first - spawned).as_secs_f64(),
        fmt(log.iterations().next().map(|l| secs_between(spawned_wall, l.at))),
    ));
    report.add(format!(
        "  status writes: {:.2} s from first to last seen = {:.0}/s; operator {:.1} CPU-s, kube-apiserver {:.1} CPU-s, \
         etcd {:.1} CPU-s until T1",
        (all - first).as_secs_f64(),
        n as f64 / (all - first).as_secs_f64().max(1e-3),
        op_cpu_t1,
        a1 - a0,
        e1 - e0
    ));
    report.add(format!(
        "  operator memory at T1: VmHWM {} KiB ({:.1} MiB), VmRSS {} KiB",
        hwm_t1,
        hwm_t1 as f64 / 1024.0,
        rss_t1
    ));

    // --- settle: wait for the first iteration to end, then for 5 quiet seconds (at most 30 s more) ---
    let settle_start = Instant::now();
    wait_for("the first migration loop iteration", Duration::from_secs(args.timeout_seconds), || {
        log.poll();
        log.iterations().next().is_some()
    })
    .await?;
    let mut last_count = usize::MAX;
    let mut quiet_since = Instant::now();
    let more = Instant::now();
    while more.elapsed() < Duration::from_secs(30) {
        log.poll();
        let count = log.iterations().count();
        if count != last_count {
            last_count = count;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_iterations: Vec<u64> = log.iterations().map(|l| l.fields["elapsed_ms"].as_u64().unwrap_or(0)).collect();
    report.add(format!(
        "  {:.1} s after T1: iterations so far: {} with elapsed_ms {:?}; VmHWM {} KiB",
        settle_start.elapsed().as_secs_f64(),
        settled_iterations.len(),
        settled_iterations,
        memory_kib(pid).0
    ));
    let counts = phase_counts(&client).await?;
    report.add(format!("  phases and reasons: {counts:?}"));

    // --- steady stream of spec changes ---
    let load = loadavg();
    let applies_before = seen.lock().expect("not poisoned").applies;
    let op_cpu_before = cpu_seconds(pid);
    let window_start = jiff::Timestamp::now();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(args.stream_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let max_changes = (args.stream_seconds * 1000 / args.stream_interval_ms.max(1)) as usize;
    let mut changes = 0usize;
    let mut skipped = 0usize;
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(8));
    let by_key: HashMap<String, u32> =
        input.systems.iter().map(|s| (format!("{}/{}", s.tenant, s.name), s.priority)).collect();
    let (a0, e0) = (cpu(apiserver), cpu(etcd));
    while started.elapsed() < Duration::from_secs(args.stream_seconds) && changes + skipped < max_changes {
        ticker.tick().await;
        // At most 8 changes in flight: a slow apiserver skips ticks rather than queueing them.
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        // Spread over the set; each system is changed once.
        let (ns, name) = created[(changes * 13) % n].clone();
        let old = by_key.get(&format!("{ns}/{name}")).copied().unwrap_or(500);
        let priority = if old < 1000 { old + 1 } else { old - 1 };
        let api = Api::<GovSystem>::namespaced(client.clone(), &ns);
        let failures = failures.clone();
        tokio::spawn(async move {
            let pp = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
            if api.patch(&name, &pp, &Patch::Merge(&json!({ "spec": { "priority": priority } }))).await.is_err() {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(permit);
        });
        changes += 1;
    }
    let _ = in_flight.acquire_many(8).await;
    let change_failures = failures.load(std::sync::atomic::Ordering::Relaxed);
    let (a1, e1) = (cpu(apiserver), cpu(etcd));
    let window_end = jiff::Timestamp::now();
    let window = secs_between(window_start, window_end);
    let (hwm_end, rss_end) = memory_kib(pid);
    let op_cpu_window = cpu_seconds(pid) - op_cpu_before;
    let applies = seen.lock().expect("not poisoned").applies - applies_before;
    // The iteration running when the window closed: wait (at most 120 s) for it to end.
    let ended_before = log.iterations().count();
    let last_ended = wait_for("the iteration running at the end of the window", Duration::from_secs(120), || {
        log.poll();
        log.iterations().count() > ended_before
    })
    .await;
    let after_t1: Vec<(f64, u64)> = log
        .iterations()
        .map(|l| (secs_between(window_start, l.at), l.fields["elapsed_ms"].as_u64().unwrap_or(0)))
        .collect();
    let in_window: Vec<u64> = log
        .iterations()
        .filter(|l| l.at >= window_start && l.at <= window_end)
        .map(|l| l.fields["elapsed_ms"].as_u64().unwrap_or(0))
        .collect();
    report.add(format!("steady changes: load before {load}"));
    report.add(format!(
        "  {changes} spec changes ({change_failures} failed) in {window:.1} s; {} planner runs = {:.1} runs/min; \
         iteration elapsed_ms median {:?}, min {:?}, max {:?}; operator {:.1} CPU-s in the window ({:.0} % of one core)",
        in_window.len(),
        in_window.len() as f64 * 60.0 / window,
        median(in_window.clone()),
        in_window.iter().min(),
        in_window.iter().max(),
        op_cpu_window,
        op_cpu_window / window * 100.0
    ));
    report.add(format!(
        "  {skipped} ticks skipped (8 changes in flight); kube-apiserver {:.1} CPU-s, etcd {:.1} CPU-s in the window",
        a1 - a0,
        e1 - e0
    ));
    report.add(format!(
        "  watch events in the window: {applies} ({} besides the spec changes: operator status writes)",
        applies.saturating_sub(changes as u64)
    ));
    if let Err(e) = last_ended {
        report.add(format!("  {e}"));
    }
    report.add(format!(
        "  every iteration so far as (end, seconds after the window opened; elapsed_ms): {:?}",
        after_t1.iter().map(|(t, e)| (format!("{t:.1}"), *e)).collect::<Vec<_>>()
    ));
    report.add(format!(
        "operator memory at the end: VmHWM {} KiB ({:.1} MiB), VmRSS {} KiB ({:.1} MiB)",
        hwm_end,
        hwm_end as f64 / 1024.0,
        rss_end,
        rss_end as f64 / 1024.0
    ));

    // --- stop the operator and read its log ---
    let clean = operator.terminate();
    log.poll();
    let mut by_level: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems: BTreeMap<String, usize> = BTreeMap::new();
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    for l in &log.lines {
        *by_level.entry(l.level.clone()).or_default() += 1;
        if l.level == "WARN" || l.level == "ERROR" {
            let error = l.fields["error"].as_str().unwrap_or_default();
            let short: String = error.chars().take(120).collect();
            *problems.entry(format!("{}: {} {short}", l.level, l.message)).or_default() += 1;
        }
        // "migration event" lines carry a `message` field of their own, which wins in the JSON.
        if l.fields.get("system").is_some() && l.fields.get("reason").is_some() {
            *events.entry(l.fields["reason"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
    }
    let throttled = log.lines.iter().filter(|l| l.fields.to_string().contains("429")).count();
    report.add(format!(
        "operator stopped cleanly: {clean}; log lines by level {by_level:?}; lines mentioning 429: {throttled}; \
         unparsed lines: {}",
        log.unparsed.len()
    ));
    report.add(format!("  warning events logged by reason: {events:?}"));
    for (problem, count) in problems.iter().take(10) {
        report.add(format!("  {count} × {problem}"));
    }
    for line in log.unparsed.iter().take(5) {
        report.add(format!("  unparsed: {line}"));
    }
    report.add(format!("load average at the end: {}; operator log: {}", loadavg(), operator.log.display()));
    watch.abort();

    // --- clean up: the systems (one collection delete per namespace), then the rest ---
    let started = Instant::now();
    let namespaces: HashSet<&str> = created.iter().map(|(ns, _)| ns.as_str()).collect();
    futures::stream::iter(namespaces)
        .map(|ns| {
            let api = Api::<GovSystem>::namespaced(client.clone(), ns);
            async move { api.delete_collection(&DeleteParams::default(), &ListParams::default()).await.map(|_| ()) }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    let lp = ListParams::default();
    let dp = DeleteParams::default();
    Api::<Tenant>::all(client.clone()).delete_collection(&dp, &lp).await?;
    Api::<CloudNode>::all(client.clone()).delete_collection(&dp, &lp).await?;
    report.add(format!("cleaned up in {:.1} s", started.elapsed().as_secs_f64()));

    println!("\n## bench_operator summary\n");
    for line in &report.lines {
        println!("{line}");
    }
    Ok(())
}
