//! The Helm chart (`charts/suyun`) and the kustomize deploy (`deploy/kustomize`) as the tests
//! see them: rendered by the pinned `helm` and by kubectl's built-in kustomize (both built by
//! `tests/cluster/build`), split into objects, and sent to the test kube-apiserver with
//! `kubectl apply --dry-run=server`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, bail};
use serde::Deserialize as _;
use serde_yaml::Value;

use crate::{Cluster, repo_root};

/// `charts/suyun`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/suyun")
}

/// `deploy/kustomize`.
pub fn kustomize_dir() -> PathBuf {
    repo_root().join("deploy/kustomize")
}

static TOOLS: OnceLock<Result<String, String>> = OnceLock::new();

/// `PATH` with the directory of the pinned helm and kubectl first, built by
/// `tests/cluster/build` on first use (no cluster is started for this).
pub fn tools_path() -> String {
    let built = TOOLS.get_or_init(|| {
        let build = repo_root().join("tests/cluster/build");
        let output =
            Command::new("bash").arg(&build).output().map_err(|e| format!("running {}: {e}", build.display()))?;
        if !output.status.success() {
            return Err(format!("{} failed:\n{}", build.display(), String::from_utf8_lossy(&output.stderr)));
        }
        let bin = String::from_utf8_lossy(&output.stdout).trim().lines().last().unwrap_or_default().to_owned();
        Ok(format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()))
    });
    match built {
        Ok(path) => path.clone(),
        Err(e) => panic!("helm and kubectl unavailable: {e}"),
    }
}

/// What a command printed and whether it succeeded.
#[derive(Debug)]
pub struct Output {
    /// Exit status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Both streams, for failure messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `program` with `args` (and `stdin`, if any) with the pinned tools on `PATH`. Helm keeps
/// its configuration and cache under `target/helm-home`, never in the user's home.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>, kubeconfig: Option<&Path>) -> Output {
    let home = repo_root().join("target/helm-home");
    let mut command = Command::new(program);
    command
        .args(args)
        .env("PATH", tools_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match kubeconfig {
        Some(k) => command.env("KUBECONFIG", k),
        None => command.env_remove("KUBECONFIG"),
    };
    let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {program}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).unwrap_or_else(|e| panic!("writing to {program}: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {program}: {e}"));
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs helm.
pub fn helm(args: &[&str]) -> Output {
    run("helm", args, None, None)
}

/// The values files of the chart's two documented configurations: defaults and production.
pub fn value_sets() -> Vec<(&'static str, Vec<PathBuf>)> {
    vec![("default", vec![]), ("production", vec![chart_dir().join("values-production.yaml")])]
}

/// `helm template` of the chart as release `suyun` in `namespace` with `values` files and
/// `--set` arguments; `Err` carries helm's message.
pub fn template(namespace: &str, values: &[PathBuf], set: &[&str]) -> anyhow::Result<String> {
    let chart = chart_dir();
    let mut args: Vec<String> =
        vec!["template".into(), "suyun".into(), chart.display().to_string(), "--namespace".into(), namespace.into()];
    for v in values {
        args.push("--values".into());
        args.push(v.display().to_string());
    }
    for s in set {
        args.push("--set".into());
        args.push((*s).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&args);
    if !out.success {
        bail!("helm template failed:\n{}", out.stderr);
    }
    Ok(out.stdout)
}

/// `kubectl kustomize` of one directory under `deploy/kustomize`.
pub fn kustomize(dir: &str) -> anyhow::Result<String> {
    let path = kustomize_dir().join(dir);
    let out = run("kubectl", &["kustomize", &path.display().to_string()], None, None);
    if !out.success {
        bail!("kubectl kustomize {} failed:\n{}", path.display(), out.stderr);
    }
    Ok(out.stdout)
}

/// The objects of a multi-document YAML stream (empty documents dropped).
pub fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc).context("parsing rendered YAML")?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Serialises objects back into one YAML stream.
pub fn to_stream(objects: &[&Value]) -> String {
    objects.iter().map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("YAML values serialise"))).collect()
}

/// `kind` of an object.
pub fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

/// `metadata.name` of an object.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The single object of `kind` whose name ends with `suffix`.
pub fn find<'a>(objects: &'a [Value], kind_name: &str, suffix: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| kind(o) == kind_name && name(o).ends_with(suffix)).collect();
    assert_eq!(found.len(), 1, "expected one {kind_name} named *{suffix}, found {}", found.len());
    found[0]
}

/// Sends `yaml` to the test kube-apiserver with `kubectl apply --dry-run=server`: admission,
/// schema validation and RBAC escalation checks run, nothing is stored.
pub fn dry_run(cluster: &Cluster, yaml: &str) -> Output {
    run(
        "kubectl",
        &["apply", "--dry-run=server", "--server-side", "--field-manager=suyun-tests", "-f", "-"],
        Some(yaml),
        Some(&cluster.kubeconfig),
    )
}

/// Runs kubectl against the test cluster with the admin kubeconfig.
pub fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> Output {
    run("kubectl", args, stdin, Some(&cluster.kubeconfig))
}

/// Installs the chart's CRDs (`charts/suyun/crds/`) and waits until they are Established.
pub fn install_chart_crds(cluster: &Cluster) {
    let crds = chart_dir().join("crds");
    let crds = crds.display().to_string();
    let out = kubectl(
        cluster,
        &["apply", "--server-side", "--force-conflicts", "--field-manager=suyun-tests", "-f", &crds],
        None,
    );
    assert!(out.success, "installing the chart's CRDs: {}", out.text());
    let out = kubectl(cluster, &["wait", "--for=condition=Established", "--timeout=60s", "-f", &crds], None);
    assert!(out.success, "waiting for the chart's CRDs: {}", out.text());
}

/// Creates (or keeps) `namespace`, labelled to enforce and warn on the Pod Security Standard
/// `restricted`: objects applied to it that would run Pods outside that standard are refused
/// or draw a warning.
pub fn restricted_namespace(cluster: &Cluster, namespace: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/warn: restricted\n    pod-security.kubernetes.io/audit: restricted\n"
    );
    let out = kubectl(cluster, &["apply", "--server-side", "--field-manager=suyun-tests", "-f", "-"], Some(&yaml));
    assert!(out.success, "creating namespace {namespace}: {}", out.text());
}

/// API groups the test kube-apiserver does not serve (prometheus-operator, cert-manager): their
/// objects are checked by the chart tests themselves instead of by a dry run.
pub const FOREIGN_GROUPS: &[&str] = &["monitoring.coreos.com/", "cert-manager.io/"];

/// Splits objects into those the test apiserver can check and those of [`FOREIGN_GROUPS`].
pub fn split_foreign(objects: &[Value]) -> (Vec<&Value>, Vec<&Value>) {
    objects.iter().partition(|o| {
        let api_version = o["apiVersion"].as_str().unwrap_or_default();
        !FOREIGN_GROUPS.iter().any(|g| api_version.starts_with(g))
    })
}

/// Applies `deploy/member` (the member cluster's namespace, ServiceAccount and RBAC) to `member`
/// with its admin kubeconfig.
pub fn install_member_rbac(member: &Cluster) -> Result<(), String> {
    let dir = repo_root().join("deploy/member").display().to_string();
    let out = run(
        "kubectl",
        &["apply", "--server-side", "--field-manager=suyun-tests", "-k", &dir],
        None,
        Some(&member.kubeconfig),
    );
    if out.success { Ok(()) } else { Err(out.text()) }
}

/// Runs `deploy/member/kubeconfig-secret --node NODE` against `member` (its admin kubeconfig
/// mints the token) with `args`, and returns the Secret it prints; its stderr when it refuses.
pub fn member_kubeconfig_secret(
    member: &Cluster,
    node: &str,
    args: &[&str],
) -> Result<k8s_openapi::api::core::v1::Secret, String> {
    let script = repo_root().join("deploy/member/kubeconfig-secret").display().to_string();
    let kubeconfig = member.kubeconfig.display().to_string();
    let mut argv = vec![script.as_str(), "--node", node, "--kubeconfig", &kubeconfig];
    argv.extend_from_slice(args);
    let out = run("bash", &argv, None, None);
    if !out.success {
        return Err(out.stderr);
    }
    serde_yaml::from_str(&out.stdout).map_err(|e| format!("not a Secret: {e}"))
}
