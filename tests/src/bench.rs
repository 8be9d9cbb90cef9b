//! What the benchmarks under `tests/examples/` share: the release operator started with a JSON
//! log, that log read as it grows, process figures from `/proc`, the kube-apiserver's count of
//! write requests, and a report printed at the end.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;
use suyun_crds::v1alpha1::GovSystem;

use crate::Cluster;

/// Where a benchmark's control plane of its own lives (flattened into each benchmark's
/// arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct OwnCluster {
    /// Directory of the benchmark's own control plane (default: `target/<the benchmark's>`).
    #[arg(long)]
    pub cluster_dir: Option<PathBuf>,
    /// Leave the control plane running at the end.
    #[arg(long)]
    pub keep_cluster: bool,
}

impl OwnCluster {
    /// The directory: `--cluster-dir`, else `target/<default>` of the repository.
    pub fn dir(&self, default: &str) -> PathBuf {
        self.cluster_dir.clone().unwrap_or_else(|| crate::repo_root().join("target").join(default))
    }

    /// Runs `bench` on a fresh control plane in [`OwnCluster::dir`] (see
    /// [`crate::with_own_cluster`]).
    pub fn run<F, Fut>(&self, default: &str, bench: F) -> anyhow::Result<()>
    where
        F: FnOnce(Cluster) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        crate::with_own_cluster(&self.dir(default), self.keep_cluster, bench)
    }
}

/// The operator binary a benchmark runs: `SUYUN_BENCH_OPERATOR` when set (to measure another
/// build, e.g. the one before a change, in the same run of the benchmark), else the release
/// build of this tree.
pub fn operator_binary() -> PathBuf {
    std::env::var_os("SUYUN_BENCH_OPERATOR").map_or_else(crate::operator::binary, PathBuf::from)
}

/// [`operator_binary`], which must have been built.
pub fn built_operator() -> anyhow::Result<PathBuf> {
    let operator = operator_binary();
    anyhow::ensure!(
        operator.exists(),
        "{} not built; run `cargo build --release -p suyun-operator`",
        operator.display()
    );
    Ok(operator)
}

/// Runs a warm-up operator (`crate::operator::OperatorProcess`) until it has provisioned the
/// Namespaces of `tenants` Tenants, then stops it: GovSystems live in those Namespaces.
pub async fn provision_namespaces(
    cluster: &Cluster,
    client: &Client,
    tenants: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut warmup = crate::operator::OperatorProcess::start(cluster, "bench-warmup", &["--lease-name=bench-warmup"])?;
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    let managed = kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=suyun-operator");
    let deadline = Instant::now() + timeout;
    loop {
        let have = namespaces.list(&managed).await?.items.len();
        if have >= tenants {
            warmup.terminate();
            return Ok(());
        }
        anyhow::ensure!(warmup.running(), "the warm-up operator exited:\n{}", warmup.log_text());
        anyhow::ensure!(Instant::now() < deadline, "only {have}/{tenants} tenant Namespaces provisioned");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The resources the operator writes, besides its Lease.
pub const OPERATOR_WRITES: [&str; 13] = [
    "govsystems",
    "migrationwaves",
    "citybudgets",
    "residencypolicies",
    "cloudnodes",
    "tenants",
    "namespaces",
    "resourcequotas",
    "limitranges",
    "networkpolicies",
    "rolebindings",
    "jobs",
    "events",
];

/// Write requests the kube-apiserver has served so far on the [`OPERATOR_WRITES`] resources,
/// by `verb resource/subresource` (its `apiserver_request_total`; a write that changed nothing
/// counts too).
pub async fn write_requests(client: &Client) -> anyhow::Result<BTreeMap<String, u64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut out = BTreeMap::new();
    for sample in crate::prometheus::parse(&text)?.iter().filter(|s| s.name == "apiserver_request_total") {
        let (verb, resource) = (sample.label("verb"), sample.label("resource"));
        if matches!(verb, "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION")
            && OPERATOR_WRITES.contains(&resource)
        {
            *out.entry(format!("{verb} {resource}/{}", sample.label("subresource"))).or_default() +=
                sample.value as u64;
        }
    }
    Ok(out)
}

/// What grew from `before` to `after` (see [`write_requests`]).
pub fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, d)| *d > 0)
        .collect()
}

/// Waits until no write request reaches the kube-apiserver for `quiet` (at most `timeout`);
/// returns the counts then.
pub async fn settle(client: &Client, quiet: Duration, timeout: Duration) -> anyhow::Result<BTreeMap<String, u64>> {
    let deadline = Instant::now() + timeout;
    let mut last = write_requests(client).await?;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = write_requests(client).await?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(now);
        }
        anyhow::ensure!(Instant::now() < deadline, "writes did not settle within {timeout:?}: {last:?}");
    }
}

/// The operator process of a benchmark, its log in JSON.
#[derive(Debug)]
pub struct Operator {
    child: Child,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Operator {
    /// Starts [`operator_binary`] against `cluster` with `--lease-name=<name>` and `args`.
    pub fn start(cluster: &Cluster, name: &str, args: &[&str]) -> anyhow::Result<Self> {
        let logs = cluster.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(operator_binary())
            .args([&format!("--lease-name={name}"), "--log-format=json", "--metrics-listen=127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,suyun_operator::migration=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting suyun-operator")?;
        Ok(Self { child, log })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then up to 15 s for a clean exit; whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        for _ in 0..150 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.running() {
            self.terminate();
        }
    }
}

/// `VmHWM` and `VmRSS` of a process, KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds (user + system) a process has used; assumes the usual 100 clock ticks a second.
pub fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of stat; `after` starts at field 3.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The process id of a control-plane component of `cluster` (`kube-apiserver`, `etcd-kube`).
pub fn pid_of(cluster: &Cluster, name: &str) -> Option<u32> {
    std::fs::read_to_string(cluster.dir.join(format!("{name}.pid"))).ok()?.trim().parse().ok()
}

/// The load averages, as `/proc/loadavg` gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of the operator's JSON log.
#[derive(Debug, Clone)]
pub struct Line {
    /// When.
    pub at: jiff::Timestamp,
    /// INFO, DEBUG, …
    pub level: String,
    /// The message.
    pub message: String,
    /// Every field (the message included).
    pub fields: Value,
}

/// Reads the operator's log as it grows.
#[derive(Debug)]
pub struct LogTail {
    reader: std::io::BufReader<std::fs::File>,
    partial: String,
    /// Lines read so far.
    pub lines: Vec<Line>,
    /// Lines that were not JSON.
    pub unparsed: Vec<String>,
}

impl LogTail {
    /// Reads `path` from its start.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path)?;
        Ok(Self { reader: std::io::BufReader::new(file), partial: String::new(), lines: Vec::new(), unparsed: vec![] })
    }

    /// Reads what was written since.
    pub fn poll(&mut self) {
        loop {
            let mut buf = String::new();
            match self.reader.read_line(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // A line still being written is kept until its end arrives.
                    self.partial.push_str(&buf);
                    if !self.partial.ends_with('\n') {
                        break;
                    }
                    let text = std::mem::take(&mut self.partial);
                    self.parse(text.trim_end());
                }
            }
        }
    }

    fn parse(&mut self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            if !text.is_empty() {
                self.unparsed.push(text.to_owned());
            }
            return;
        };
        let fields = if v.get("fields").is_some() { v["fields"].clone() } else { v.clone() };
        let at = v["timestamp"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let Some(at) = at else {
            self.unparsed.push(text.to_owned());
            return;
        };
        self.lines.push(Line {
            at,
            level: v["level"].as_str().unwrap_or_default().to_owned(),
            message: fields["message"].as_str().unwrap_or_default().to_owned(),
            fields,
        });
    }

    /// The first line with `message`.
    pub fn first(&self, message: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.message == message)
    }

    /// The migration loop's iteration lines.
    pub fn iterations(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.message == "migration loop iteration")
    }
}

/// Seconds from `a` to `b`.
pub fn secs_between(a: jiff::Timestamp, b: jiff::Timestamp) -> f64 {
    (b.as_nanosecond() - a.as_nanosecond()) as f64 / 1e9
}

/// The median (the upper one of an even count).
pub fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

#[derive(Debug, Default)]
pub struct Report {
    /// Every line added.
    pub lines: Vec<String>,
}

impl Report {
    /// Adds a line, printed at once too.
    pub fn add(&mut self, line: impl Into<String>) {
        let line = line.into();
        eprintln!("[bench] {line}");
        self.lines.push(line);
    }
}

/// Sends `patch` as a status merge patch to every `(namespace, name)`, `concurrency` in
/// flight; how long it took and how many failed.
pub async fn patch_statuses(
    client: &Client,
    systems: &[(String, String)],
    patch: &Value,
    concurrency: usize,
) -> (Duration, usize) {
    let started = Instant::now();
    let failures = futures::stream::iter(systems)
        .map(|(ns, name)| {
            let api = Api::<GovSystem>::namespaced(client.clone(), ns);
            async move { api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await.is_err() }
        })
        .buffer_unordered(concurrency)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    (started.elapsed(), failures)
}

/// Polls `done` every 100 ms until it holds, at most `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Creates the synthetic province `input` on `cluster`: its CloudNodes, its Tenants (their
/// Namespaces provisioned by a warm-up operator, [`provision_namespaces`]) and its GovSystems,
/// `concurrency` requests in flight. Returns the systems created, as (Namespace, name); a
/// system the apiserver refuses is left out.
pub async fn create_province(
    cluster: &Cluster,
    client: &Client,
    input: &suyun_planner::model::PlanInput,
    concurrency: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    use crate::synthetic::{cloud_node, create_all, system, tenant};
    use kube::ResourceExt as _;
    use suyun_crds::v1alpha1::{CloudNode, Tenant};
    let c = concurrency;
    let nodes: Vec<CloudNode> = input.nodes.iter().map(cloud_node).collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(create_all(|_: &CloudNode| Api::all(client.clone()), nodes, c).await.is_empty());
    let tenants: Vec<Tenant> = input.tenants.iter().map(tenant).collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(create_all(|_: &Tenant| Api::all(client.clone()), tenants, c).await.is_empty());
    provision_namespaces(cluster, client, input.tenants.len(), timeout).await?;
    let systems: Vec<GovSystem> = input.systems.iter().map(system).collect::<anyhow::Result<_>>()?;
    let failed = create_all(
        |s: &GovSystem| Api::namespaced(client.clone(), &s.namespace().unwrap_or_default()),
        systems.clone(),
        c,
    )
    .await;
    let refused: std::collections::HashSet<&str> = failed.iter().filter_map(|f| f.split(':').next()).collect();
    Ok(systems
        .iter()
        .filter(|s| !refused.contains(s.name_any().as_str()))
        .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
        .collect())
}
