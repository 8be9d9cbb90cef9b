//! Benchmark of member clusters (issue 14), documented in `docs/benchmarks.md` ("Member
//! clusters").
//!
//! ```sh
//! cargo build --release -p suyun-operator && cargo run --release -p suyun-tests --example bench_members
//! ```
//!
//! On a control plane of its own (`target/bench-members-cluster`), the synthetic Jiangsu set
//! (14 CloudNodes, 372 Tenants, 7,900 GovSystems). The operator runs twice, measured the same
//! way each time; the second run is reported as a ratio to the first, in the same benchmark:
//!
//! 1. **Single cluster** (the baseline): the 14 CloudNodes with their declared capacity.
//! 2. **13 member clusters**: each City CloudNode backed by a member control plane of its own
//!    (`tests/cluster/member bench-<node>`: its own etcd and kube-apiserver on loopback), its
//!    capacity from `--machines` Ready Nodes there that add up to the declared capacity, its
//!    tenants' children and Jobs there; the provincial node stays in the management cluster.
//!
//! Each measured run is an operator started on systems that already have their status (a
//! first, unmeasured start wrote them), so that both hold the same state. Per run, once the
//! operator has settled (every member reachable, no write for 5 s): its resident memory (VmRSS, and VmHWM, the peak so far), and the median
//! `elapsed_ms` of `--iterations` migration-loop iterations, each set off by a label change on
//! one GovSystem. Loopback only and bounded; it stops the members and its control plane at the
//! end (`--keep-cluster` keeps the control plane).

use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, Phase};
use suyun_planner::model::Tier;
use suyun_tests::bench::{self, LogTail, Operator, Report, loadavg, median, memory_kib, wait_for};
use suyun_tests::{Cluster, install_crds};

#[derive(Debug, Parser)]
#[command(about = "Benchmark of Suyun with 13 member clusters against a single cluster")]
struct Args {
    /// Seed of `suyun_planner::synthetic::jiangsu`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Iterations measured per run.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Machines (Nodes) per member cluster.
    #[arg(long, default_value_t = 4)]
    machines: u64,
    /// Requests in flight when creating objects.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Give up waiting for the operator after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,
    #[command(flatten)]
    cluster: suyun_tests::bench::OwnCluster,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    suyun_tests::bench::built_operator()?;
    args.cluster.clone().run("bench-members-cluster", |cluster| async move { run(&args, &cluster).await })
}

/// The members started, stopped when dropped (`tests/cluster/member down`).
struct Members(Vec<String>);

impl Drop for Members {
    fn drop(&mut self) {
        let script = suyun_tests::repo_root().join("tests/cluster/member");
        for name in &self.0 {
            let _ = std::process::Command::new("bash").arg(&script).args(["down", name]).output();
        }
    }
}

/// What one run measured.
struct Measured {
    iteration_ms: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// Waits until the operator settled, then sets off `iterations` iterations one after the other
/// (a label change on one GovSystem each) and reads its memory.
async fn measure(
    client: &Client,
    operator: &Operator,
    log: &mut LogTail,
    iterations: usize,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    bench::settle(client, Duration::from_secs(5), timeout).await?;
    let systems = Api::<GovSystem>::all(client.clone()).list(&ListParams::default().limit(1)).await?;
    let touched = systems.items.first().ok_or_else(|| anyhow::anyhow!("no GovSystem"))?;
    let api = Api::<GovSystem>::namespaced(client.clone(), &touched.namespace().unwrap_or_default());
    let mut elapsed = Vec::new();
    for i in 0..iterations {
        log.poll();
        let before = log.iterations().count();
        let patch = json!({"metadata": {"labels": {"suyun.io/bench-touch": i.to_string()}}});
        api.patch(&touched.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        wait_for("the iteration the change sets off", timeout, || {
            log.poll();
            log.iterations().count() > before
        })
        .await?;
        let line = log.iterations().last().expect("an iteration");
        elapsed.push(line.fields["elapsed_ms"].as_u64().unwrap_or(0));
    }
    let (hwm_kib, rss_kib) = memory_kib(operator.pid());
    Ok(Measured { iteration_ms: median(elapsed).unwrap_or(0), rss_kib, hwm_kib })
}

/// Starts the operator and waits until its iterations wrote a status for every one of `n`
/// systems (the first run) or its first iteration (the second).
async fn start_operator(
    cluster: &Cluster,
    name: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<(Operator, LogTail)> {
    let mut operator = Operator::start(cluster, name, &["--member-probe-interval-seconds=5"])?;
    let mut log = LogTail::open(&operator.log)?;
    let deadline = Instant::now() + timeout;
    loop {
        log.poll();
        let written: usize = log.iterations().map(|l| l.fields["statuses"].as_u64().unwrap_or(0) as usize).sum();
        if written >= n && log.iterations().next().is_some() {
            return Ok((operator, log));
        }
        anyhow::ensure!(operator.running(), "the operator exited:\n{}", std::fs::read_to_string(&operator.log)?);
        anyhow::ensure!(Instant::now() < deadline, "{written}/{n} statuses after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
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

    let n = bench::create_province(cluster, &client, &input, c, timeout).await?.len();
    report.add(format!("{} CloudNodes, {} Tenants, {n} GovSystems", input.nodes.len(), input.tenants.len()));

    // --- 1. single cluster ---
    // A first start writes every system's first status; the measured one starts again with
    // nothing to write, as the member run does, so that both hold the same kind of state.
    let (mut first, _) = start_operator(cluster, "bench-first", n, timeout).await?;
    bench::settle(&client, Duration::from_secs(5), timeout).await?;
    first.terminate();
    let (mut operator, mut log) = start_operator(cluster, "bench-single", 0, timeout).await?;
    let single = measure(&client, &operator, &mut log, args.iterations, timeout).await?;
    operator.terminate();
    report.add(format!(
        "single cluster: iteration median {} ms, RSS {} MiB (peak {} MiB)",
        single.iteration_ms,
        single.rss_kib / 1024,
        single.hwm_kib / 1024
    ));

    // --- 2. 13 member clusters ---
    let cities: Vec<&suyun_planner::model::Node> = input.nodes.iter().filter(|n| n.tier == Tier::City).collect();
    let started = Instant::now();
    let mut members = Members(Vec::new());
    let mut member_clusters = Vec::new();
    for node in &cities {
        let name = format!("bench-{}", node.name);
        members.0.push(name.clone());
        let member = tokio::task::spawn_blocking(move || suyun_tests::member(&name)).await??;
        member_clusters.push(member);
    }
    report.add(format!("{} member control planes started in {:.0} s", cities.len(), started.elapsed().as_secs_f64()));
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");
    let cloud_nodes = Api::<CloudNode>::all(client.clone());
    for (node, member) in cities.iter().zip(&member_clusters) {
        let kubeconfig = std::fs::read_to_string(&member.kubeconfig)?;
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{}-kubeconfig", node.name), "namespace": "default"},
            "stringData": {"value": kubeconfig}});
        let name = format!("{}-kubeconfig", node.name);
        secrets.patch(&name, &PatchParams::apply("suyun-bench").force(), &Patch::Apply(&secret)).await?;
        // Machines adding up to the declared capacity.
        let member_client = member.client().await?;
        let machines = Api::<Node>::all(member_client);
        let each = |v: u64| v / args.machines;
        let amounts = json!({"cpu": format!("{}m", each(node.allocatable.cpu)),
                             "memory": each(node.allocatable.memory).to_string(),
                             "ephemeral-storage": each(node.allocatable.storage).to_string()});
        for m in 0..args.machines {
            let machine = format!("{}-{m}", node.name);
            let object = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": machine}});
            machines.patch(&machine, &PatchParams::apply("suyun-bench").force(), &Patch::Apply(&object)).await?;
            let status = json!({"status": {"allocatable": amounts, "capacity": amounts,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Bench",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
            machines.patch_status(&machine, &PatchParams::default(), &Patch::Merge(&status)).await?;
        }
        let patch = json!({"spec": {"capacityFrom": "Nodes", "cluster": {}}});
        cloud_nodes.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    let (mut operator, mut log) = start_operator(cluster, "bench-members", 0, timeout).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let all = cloud_nodes.list(&ListParams::default()).await?;
        let ready = all
            .items
            .iter()
            .filter(|n| n.spec.cluster.is_some())
            .filter(|n| {
                n.status.as_ref().is_some_and(|s| {
                    s.cluster.as_ref().is_some_and(|c| c.reachable) && s.ready_nodes == Some(args.machines as u32)
                })
            })
            .count();
        if ready == cities.len() {
            break;
        }
        anyhow::ensure!(operator.running(), "the operator exited:\n{}", std::fs::read_to_string(&operator.log)?);
        anyhow::ensure!(Instant::now() < deadline, "{ready}/{} members reachable with their machines", cities.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let with_members = measure(&client, &operator, &mut log, args.iterations, timeout).await?;
    let blocked = Api::<GovSystem>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.phase == Some(Phase::Blocked) && st.reason.as_deref() == Some("NoMachineFits"))
        })
        .count();
    operator.terminate();
    report.add(format!(
        "13 member clusters: iteration median {} ms, RSS {} MiB (peak {} MiB); {blocked} systems NoMachineFits on {} machines per member",
        with_members.iteration_ms,
        with_members.rss_kib / 1024,
        with_members.hwm_kib / 1024,
        args.machines
    ));
    let ratio = |a: u64, b: u64| a as f64 / (b as f64).max(1.0);
    report.add(format!(
        "ratios members/single: iteration {:.2}×, RSS {:.2}×, peak RSS {:.2}× (load {})",
        ratio(with_members.iteration_ms, single.iteration_ms),
        ratio(with_members.rss_kib, single.rss_kib),
        ratio(with_members.hwm_kib, single.hwm_kib),
        loadavg()
    ));
    drop(members);
    Ok(())
}
