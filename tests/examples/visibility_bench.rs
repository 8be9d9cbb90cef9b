//! Benchmark: how soon a phase change in Kubernetes is visible through the REST API (issue 5
//! §6, target p99 ≤ 1 s), documented in `docs/benchmarks.md` ("Phase change to API").
//!
//! ```sh
//! cargo build --release -p suyun-operator && cargo run --release -p suyun-tests --example visibility_bench
//! ```
//!
//! Starts a control plane of its own (`target/bench-cluster`), creates the synthetic Jiangsu set
//! (14 CloudNodes, the Tenants, 7,900 GovSystems), runs the release operator publishing to the
//! status-store etcd, and the REST API (the `suyun-apiserver` library, in this process) on the
//! same prefix. Once every system has a phase, it labels `--systems` dependency-free systems into
//! one Simulated MigrationWave and, while they migrate, records:
//!
//! - each phase change as a watch of the GovSystems delivers it (time `k`), and
//! - the first response of `GET /api/v1/systems?wave=…` (polled every `--poll-ms` over one
//!   keep-alive HTTPS connection, province certificate) that shows that phase or a later one
//!   (time `a`); the latency of the change is `a − k`.
//!
//! The baseline, measured at the same time: a second API instance on a prefix of its own, where
//! this process writes a record's phase straight to etcd every 250 ms and polls the same way; its
//! latency (put acknowledged → visible) is the floor of the method: etcd watch, the index and the
//! poll interval, without the operator.
//!
//! Loopback only, bounded in time; deletes what it created and stops its control plane at the end
//! (`--keep-cluster` keeps it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Tenant};
use suyun_store::readmodel::{Record, SystemRecord};
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::unique_prefix;
use suyun_tests::https::Caller;
use suyun_tests::operator::OperatorProcess;
use suyun_tests::synthetic::{MANAGER, cloud_node, create_all, system, tenant};
use suyun_tests::{Cluster, install_crds};

const WAVE: &str = "visibility";

#[derive(Debug, Parser)]
#[command(about = "Latency from a GovSystem phase change in Kubernetes to the REST API, at the Jiangsu scale")]
struct Args {
    /// Seed of `suyun_planner::synthetic::jiangsu`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Systems put into the measured wave.
    #[arg(long, default_value_t = 200)]
    systems: usize,
    /// The wave's `maxConcurrent`.
    #[arg(long, default_value_t = 40)]
    max_concurrent: u32,
    /// The wave's `timeCompression` (Simulated phases of minutes last seconds).
    #[arg(long, default_value_t = 3600)]
    time_compression: u32,
    /// API poll interval, milliseconds.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Length of the measurement, seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    #[command(flatten)]
    cluster: suyun_tests::bench::OwnCluster,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.cluster.clone().run("bench-cluster", |cluster| async move { run(&args, &cluster).await })
}

/// Phase changes and first sightings, per system, in order.
#[derive(Debug, Default)]
struct Timeline {
    /// (phase, when the watch delivered it).
    k8s: HashMap<String, Vec<(String, Instant)>>,
    /// (phase, when a poll first showed it).
    api: HashMap<String, Vec<(String, Instant)>>,
}

impl Timeline {
    fn record(map: &mut HashMap<String, Vec<(String, Instant)>>, id: &str, phase: &str, at: Instant) {
        let seen = map.entry(id.to_owned()).or_default();
        if seen.last().is_none_or(|(last, _)| last != phase) {
            seen.push((phase.to_owned(), at));
        }
    }

    /// Latency of every Kubernetes phase change between `from` and `until`: the first API
    /// sighting, after the system's previous change, of that phase or of one of the phases
    /// that followed it (up to the first repeat of one of them or of the previous phase: a
    /// phase may come round again after a retry),
    /// minus the change's time; `None` when the API never showed it. A sighting just before
    /// the watch delivered the change counts as zero.
    fn latencies(&self, from: Instant, until: Instant) -> Vec<Option<Duration>> {
        let mut out = Vec::new();
        for (id, changes) in &self.k8s {
            let sightings = self.api.get(id).map(Vec::as_slice).unwrap_or_default();
            for (i, (_, at)) in changes.iter().enumerate() {
                if *at < from || *at > until {
                    continue;
                }
                let before = i.checked_sub(1).map(|j| changes[j].0.as_str());
                let mut later: Vec<&str> = Vec::new();
                for (phase, _) in &changes[i..] {
                    if later.contains(&phase.as_str()) || before == Some(phase.as_str()) {
                        break;
                    }
                    later.push(phase);
                }
                let previous = i.checked_sub(1).map(|j| changes[j].1);
                let seen = sightings
                    .iter()
                    .find(|(p, t)| previous.is_none_or(|prev| *t > prev) && later.contains(&p.as_str()));
                out.push(seen.map(|(_, t)| t.saturating_duration_since(*at)));
            }
        }
        out
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, samples: &[Option<Duration>]) -> String {
    let mut seen: Vec<Duration> = samples.iter().flatten().copied().collect();
    seen.sort();
    let missed = samples.len() - seen.len();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{name}: {} changes, {missed} never seen; p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        ms(percentile(&seen, 50.0)),
        ms(percentile(&seen, 90.0)),
        ms(percentile(&seen, 99.0)),
        ms(seen.last().copied().unwrap_or_default()),
    )
}

/// Polls `path` every `every` until `stop`, recording each system's phase changes as seen.
fn spawn_poller(
    caller: Caller,
    path: String,
    every: Duration,
    timeline: Arc<Mutex<Timeline>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<(u64, Duration)>> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut polls, mut busy) = (0_u64, Duration::ZERO);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            ticker.tick().await;
            let started = Instant::now();
            let reply = caller.get(&path).await?;
            let at = Instant::now();
            anyhow::ensure!(reply.status.is_success(), "{path}: {} {}", reply.status, reply.text());
            polls += 1;
            busy += at - started;
            let body = reply.json();
            let mut timeline = timeline.lock().expect("not poisoned");
            for item in body["items"].as_array().into_iter().flatten() {
                if let (Some(id), Some(phase)) = (item["systemId"].as_str(), item["phase"].as_str()) {
                    Timeline::record(&mut timeline.api, id, phase, at);
                }
            }
        }
        Ok((polls, busy))
    })
}

async fn run(args: &Args, cluster: &Cluster) -> anyhow::Result<()> {
    let client = cluster.client().await?;
    install_crds(&client).await?;
    let mut input = suyun_planner::synthetic::jiangsu(args.seed);
    // The measured systems: dependency-free ones, in their own wave; every other system keeps
    // no wave (Scheduled, NoWave) and only loads the loop.
    let mut picked = 0;
    for s in &mut input.systems {
        let free = s.depends_on.is_empty() && s.same_node_as.is_empty() && s.anti_affinity_with.is_empty();
        s.wave = (free && picked < args.systems).then(|| {
            picked += 1;
            WAVE.to_owned()
        });
    }
    anyhow::ensure!(picked == args.systems, "only {picked} dependency-free systems");

    let nodes: Vec<CloudNode> = input.nodes.iter().map(cloud_node).collect::<anyhow::Result<_>>()?;
    let failed = create_all(|_: &CloudNode| Api::all(client.clone()), nodes, 32).await;
    anyhow::ensure!(failed.is_empty(), "CloudNodes refused: {failed:?}");
    let tenants: Vec<Tenant> = input.tenants.iter().map(tenant).collect::<anyhow::Result<_>>()?;
    let failed = create_all(|_: &Tenant| Api::all(client.clone()), tenants, 32).await;
    anyhow::ensure!(failed.is_empty(), "Tenants refused: {failed:?}");

    let prefix = unique_prefix("visibility");
    let endpoints = cluster.etcd_endpoints.clone();
    let mut operator = OperatorProcess::start(
        cluster,
        "bench-visibility",
        &[
            "--lease-name=bench-visibility",
            "--log-format=json",
            &format!("--store-endpoints={endpoints}"),
            &format!("--store-prefix={prefix}"),
        ],
    )?;
    eprintln!("[bench] operator started; its log: {}", operator.log.display());
    let namespaces = Api::<Namespace>::all(client.clone());
    let wanted = input.tenants.len();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let have = namespaces
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=suyun-operator"))
            .await?
            .items
            .len();
        if have >= wanted {
            break;
        }
        anyhow::ensure!(operator.running(), "the operator exited:\n{}", operator.log_text());
        anyhow::ensure!(Instant::now() < deadline, "only {have}/{wanted} tenant Namespaces provisioned");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let systems: Vec<GovSystem> = input.systems.iter().map(system).collect::<anyhow::Result<_>>()?;
    let n = systems.len();
    let failed =
        create_all(|s: &GovSystem| Api::namespaced(client.clone(), &s.namespace().unwrap_or_default()), systems, 32)
            .await;
    anyhow::ensure!(failed.is_empty(), "{} GovSystems refused, e.g. {:?}", failed.len(), failed.first());
    eprintln!("[bench] {} CloudNodes, {wanted} Tenants, {n} GovSystems created", input.nodes.len());

    // Our watch: every phase change of the measured systems.
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let phased = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watch = {
        let (timeline, phased) = (timeline.clone(), phased.clone());
        let api = Api::<GovSystem>::all(client.clone());
        tokio::spawn(async move {
            let mut with_phase = std::collections::HashSet::new();
            let stream = watcher(api, watcher::Config::default()).default_backoff().applied_objects();
            futures::pin_mut!(stream);
            while let Some(Ok(s)) = stream.next().await {
                let at = Instant::now();
                let Some(phase) = s.status.as_ref().and_then(|st| st.phase) else { continue };
                if with_phase.insert(s.spec.system_id.clone()) {
                    phased.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if s.labels().get("suyun.io/wave").map(String::as_str) == Some(WAVE) {
                    let mut timeline = timeline.lock().expect("not poisoned");
                    Timeline::record(&mut timeline.k8s, &s.spec.system_id, phase.as_str(), at);
                }
            }
        })
    };
    let started = Instant::now();
    while phased.load(std::sync::atomic::Ordering::Relaxed) < n {
        anyhow::ensure!(operator.running(), "the operator exited:\n{}", operator.log_text());
        if started.elapsed() > Duration::from_secs(900) {
            bail!("only {}/{n} systems have a phase after 900 s", phased.load(std::sync::atomic::Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("[bench] every system has a phase after {:.1} s", started.elapsed().as_secs_f64());

    // The API on the operator's prefix, and the baseline API on a prefix of our own.
    let server = TestServer::start(&endpoints, &prefix, 1000).await?;
    let base_prefix = unique_prefix("visibility-baseline");
    let probe = SystemRecord {
        system_id: "JS-BASELINE-0001".into(),
        tenant: "baseline".into(),
        region_code: "320000".into(),
        phase: "Scheduled".into(),
        wave: Some(WAVE.into()),
        ..Default::default()
    };
    let _base_publisher = publish(&endpoints, &base_prefix, "baseline", vec![Record::System(probe.clone())]).await?;
    let base_server = TestServer::start(&endpoints, &base_prefix, 1000).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let every = Duration::from_millis(args.poll_ms);
    let path = format!("/api/v1/systems?wave={WAVE}&limit=1000");
    let poller = spawn_poller(
        server.with_certificate("bench", &["province"]),
        path.clone(),
        every,
        timeline.clone(),
        stop.clone(),
    );
    let base_timeline = Arc::new(Mutex::new(Timeline::default()));
    let base_poller = spawn_poller(
        base_server.with_certificate("bench", &["province"]),
        path,
        every,
        base_timeline.clone(),
        stop.clone(),
    );
    let writer = {
        let (endpoints, key, stop, base_timeline) = (
            endpoints.clone(),
            suyun_store::readmodel::Keys::new(&base_prefix).system(&probe.system_id),
            stop.clone(),
            base_timeline.clone(),
        );
        tokio::spawn(async move {
            let mut etcd = suyun_tests::etcd::connect(&endpoints).await?;
            let phases = ["Provisioning", "Replicating", "CuttingOver", "Verifying", "Completed", "Scheduled"];
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let record = SystemRecord { phase: phases[i % phases.len()].into(), ..probe.clone() };
                etcd.put(key.clone(), Record::System(record.clone()).to_json(), None).await?;
                let at = Instant::now();
                Timeline::record(
                    &mut base_timeline.lock().expect("not poisoned").k8s,
                    &probe.system_id,
                    &record.phase,
                    at,
                );
                i += 1;
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Start the wave and measure.
    let measuring = Instant::now();
    let wave: MigrationWave = serde_json::from_value(json!({
        "apiVersion": "suyun.io/v1alpha1",
        "kind": "MigrationWave",
        "metadata": { "name": WAVE },
        "spec": {
            "selector": { "matchLabels": { "suyun.io/wave": WAVE } },
            "order": 1,
            "maxConcurrent": args.max_concurrent,
            "failureBudget": 100,
            "executor": "Simulated",
            "timeCompression": args.time_compression,
            "maxAttempts": 3,
        }
    }))?;
    Api::<MigrationWave>::all(client.clone())
        .create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &wave)
        .await?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    // Changes of the last 5 s are left out: the polls stop now, so they could not be seen.
    let until = Instant::now() - Duration::from_secs(5);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (polls, busy) = poller.await??;
    let (base_polls, base_busy) = base_poller.await??;
    writer.await??;
    let measured = timeline.lock().expect("not poisoned").latencies(measuring, until);
    let base = base_timeline.lock().expect("not poisoned").latencies(measuring, until);
    let completed = timeline
        .lock()
        .expect("not poisoned")
        .k8s
        .values()
        .filter(|changes| changes.last().is_some_and(|(p, _)| p == "Completed"))
        .count();

    println!("\n## visibility_bench summary\n");
    println!("- load average at the end: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    println!(
        "- {n} GovSystems; wave `{WAVE}` of {} systems (maxConcurrent {}, Simulated ×{}), {completed} Completed within {} s",
        args.systems, args.max_concurrent, args.time_compression, args.seconds
    );
    println!(
        "- API polled every {} ms: {polls} polls, mean response {:.1} ms; baseline {base_polls} polls, mean {:.1} ms",
        args.poll_ms,
        busy.as_secs_f64() * 1000.0 / polls.max(1) as f64,
        base_busy.as_secs_f64() * 1000.0 / base_polls.max(1) as f64
    );
    println!("- {}", summary("Kubernetes phase change → visible through the API", &measured));
    println!("- {}", summary("baseline: etcd put → visible through the API", &base));

    // The control plane (and everything in it) goes with `tests/cluster/down` in main().
    drop(base_server);
    drop(server);
    let clean = operator.terminate();
    watch.abort();
    anyhow::ensure!(clean, "the operator did not exit cleanly on SIGTERM");
    Ok(())
}
