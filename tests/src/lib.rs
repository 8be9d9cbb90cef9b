//! Test support: the real control plane started by `tests/cluster/up`, clients for it, the
//! operator as a child process, manifests from `deploy/examples/`, a headless browser for the
//! web console (`browser`), and polling helpers.
//!
//! Every test that needs the cluster calls [`cluster()`]; the first call starts it (building
//! the binaries on a fresh machine) if `tests/cluster/up` has not been run. Nothing is skipped
//! when the cluster cannot start: the test fails and says why.

pub mod apiserver;
pub mod bench;
pub mod browser;
pub mod chaos;
pub mod etcd;
pub mod fixtures;
pub mod helm;
pub mod https;
pub mod manifests;
pub mod operator;
pub mod prometheus;
pub mod readmodel;
pub mod synthetic;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Paths and endpoints of the running test control plane.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Status-store etcd endpoints.
    pub etcd_endpoints: String,
    /// Directory with the cluster's logs and state.
    pub dir: PathBuf,
    /// `PATH` with the matching kubectl first.
    pub path: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// How long tests wait for the operator to react to one change.
pub const WAIT: Duration = Duration::from_secs(30);

/// The running test control plane, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| start_cluster().unwrap_or_else(|e| panic!("test control plane unavailable: {e:#}")))
}

fn start_cluster() -> anyhow::Result<Cluster> {
    start_cluster_in(None)
}

/// Starts (or finds running) a test control plane in `dir` (default `target/test-cluster`) with
/// `tests/cluster/up` and reads its env file.
pub fn start_cluster_in(dir: Option<&Path>) -> anyhow::Result<Cluster> {
    let dir_env = dir.map(|d| ("SUYUN_TEST_CLUSTER_DIR", d.as_os_str()));
    up_and_read_env("tests/cluster/up", &[], dir_env)
}

/// Runs `script` (a `tests/cluster` script printing its env file last) and reads the control
/// plane it started from that file. A member's has no status-store etcd (`etcd_endpoints` empty).
fn up_and_read_env(script: &str, args: &[&str], env: Option<(&str, &std::ffi::OsStr)>) -> anyhow::Result<Cluster> {
    let script = repo_root().join(script);
    let mut command = std::process::Command::new("bash");
    command.arg(&script).args(args);
    if let Some((key, value)) = env {
        command.env(key, value);
    }
    let output = command.output().with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} {args:?} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let env_file = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim().lines().last().unwrap_or_default());
    let text = std::fs::read_to_string(&env_file).with_context(|| format!("reading {}", env_file.display()))?;
    let value = |key: &str| -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(&format!("export {key}="))).map(|v| v.trim_matches('\'').to_owned())
    };
    let required = |key: &str| value(key).with_context(|| format!("{key} missing from {}", env_file.display()));
    let bin_path = required("PATH")?.replace(":\"$PATH\"", "");
    Ok(Cluster {
        kubeconfig: required("KUBECONFIG")?.into(),
        etcd_endpoints: value("ETCD_ENDPOINTS").unwrap_or_default(),
        dir: required("SUYUN_TEST_CLUSTER_DIR")?.into(),
        path: format!("{}:{}", bin_path.trim_matches('\''), std::env::var("PATH").unwrap_or_default()),
    })
}

/// Starts the member control plane `name` (a city backbone node's own cluster, with
/// `tests/cluster/member up NAME`), or finds it running: members are shared by every test that
/// names them, and stopped by `tests/run-all` at the end. Its `etcd_endpoints` is empty (no
/// status store in a member); `client` and `component` work as for the management cluster.
pub fn member(name: &str) -> anyhow::Result<Cluster> {
    up_and_read_env("tests/cluster/member", &["up", name], None)
}

/// Stops the control plane in `dir` with `tests/cluster/down` (its data goes with it).
pub fn stop_cluster_in(dir: &Path) -> anyhow::Result<()> {
    let down = repo_root().join("tests/cluster/down");
    let status = std::process::Command::new("bash")
        .arg(&down)
        .env("SUYUN_TEST_CLUSTER_DIR", dir)
        .status()
        .with_context(|| format!("running {}", down.display()))?;
    anyhow::ensure!(status.success(), "{} failed", down.display());
    Ok(())
}

/// Runs `bench` on a fresh control plane of its own in `dir` (stopping whatever ran there
/// before), on a multi-threaded runtime, and stops the control plane afterwards unless `keep`.
pub fn with_own_cluster<F, Fut>(dir: &Path, keep: bool, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(Cluster) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    stop_cluster_in(dir)?;
    let cluster = start_cluster_in(Some(dir))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(bench(cluster));
    drop(runtime);
    if keep {
        eprintln!("control plane kept; environment in {}/env", dir.display());
    } else if let Err(e) = stop_cluster_in(dir) {
        eprintln!("stopping the control plane failed: {e:#}");
    }
    result
}

impl Cluster {
    /// A client with admin rights.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// Stops, kills, starts, pauses or resumes one of its components (`etcd-kube`, `etcd-store`,
    /// `kube-apiserver`, `kube-controller-manager`) with `tests/cluster/component`, on the same
    /// ports and data; `start` returns once the component serves again.
    pub fn component(&self, action: &str, name: &str) -> anyhow::Result<()> {
        let script = repo_root().join("tests/cluster/component");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .args([action, name])
            .env("SUYUN_TEST_CLUSTER_DIR", &self.dir)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        anyhow::ensure!(output.status.success(), "{action} {name} failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(())
    }

    /// Runs the matching kubectl with the admin kubeconfig and returns (success, stdout+stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", &self.path)
            .output()
            .expect("kubectl runs");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }
}

/// Installs (server-side applies) the generated CRDs and waits until they are Established.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for (_, crd) in suyun_crds::crds() {
        let name = crd.metadata.name.clone().expect("generated CRDs are named");
        api.patch(&name, &PatchParams::apply("suyun-tests").force(), &Patch::Apply(&crd)).await?;
    }
    for (_, crd) in suyun_crds::crds() {
        let name = crd.metadata.name.clone().expect("generated CRDs are named");
        eventually(Duration::from_secs(30), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established { Ok(()) } else { bail!("CRD {name} not Established yet") }
            }
        })
        .await?;
    }
    Ok(())
}

/// Polls `check` every 200 ms until it succeeds or `timeout` passes; the error says what was
/// last seen.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Serialises tests that touch cluster-scoped Suyun objects (a province has one Provincial
/// node, so two tests creating CloudNodes at once would see each other's).
pub static CLUSTER_SCOPED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
