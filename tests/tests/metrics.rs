//! The operator's metrics on a real scrape: the operator binary runs the Jiangsu example (14
//! nodes, 24 tenants, 60 systems, Simulated waves) and publishes to the status store; a scrape
//! taken during the migration passes `promtool check metrics` with no lint and shows the state;
//! a standby replica serves its own listener with `suyun_leader 0` and no state.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use suyun_crds::v1alpha1::{GovSystem, Phase, Tenant};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::prometheus::{Sample, http_get, parse};
use suyun_tests::{CLUSTER_SCOPED, WAIT, cluster, eventually, fixtures};

/// Runs `promtool check metrics` on `text`: (success, everything it printed).
fn promtool(text: &str) -> (bool, String) {
    let binary = std::env::var("SUYUN_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&binary)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {binary} (install it with tests/cluster/prereqs): {e}"));
    child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn family<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> =
        family(samples, name).into_iter().filter(|s| labels.iter().all(|(k, v)| s.label(k) == *v)).collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

async fn scrape(operator: &OperatorProcess) -> String {
    let (status, body) = http_get(operator.metrics_addr, "/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_scrape_during_the_jiangsu_migration_passes_promtool_and_shows_the_state() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    fixtures::apply_jiangsu_example(&client).await;
    let prefix = suyun_tests::etcd::unique_prefix("metrics");
    let store = [format!("--store-endpoints={}", cluster.etcd_endpoints), format!("--store-prefix={prefix}")];
    let args = ["--lease-name=suyun-metrics-test", "--debounce-ms=200", store[0].as_str(), store[1].as_str()];
    let leader = OperatorProcess::start(cluster, "metrics-leader", &args).unwrap();

    // The listener answers before and after leadership; ready once the caches synced.
    eventually(WAIT, || async {
        let (status, body) = http_get(leader.metrics_addr, "/readyz").await?;
        anyhow::ensure!(status == StatusCode::OK && body.trim() == "leading", "/readyz: {status} {body}");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(http_get(leader.metrics_addr, "/healthz").await.unwrap().0, StatusCode::OK);

    // Mid-migration: some wave-1 systems completed, and the metrics caught up with them.
    let systems = Api::<GovSystem>::all(client.clone());
    let text = eventually(Duration::from_secs(120), || async {
        let all = systems.list(&ListParams::default()).await?.items;
        let completed =
            all.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed)).count();
        anyhow::ensure!(completed >= 3, "{completed} systems Completed");
        let text = scrape(&leader).await;
        let samples = parse(&text)?;
        let counted: f64 = family(&samples, "suyun_migrations_completed_total").iter().map(|s| s.value).sum();
        anyhow::ensure!(counted >= 1.0, "suyun_migrations_completed_total is {counted}");
        anyhow::ensure!(family(&samples, "suyun_node_ready").len() == 14, "not every node reconciled yet");
        Ok(text)
    })
    .await
    .unwrap();

    let (ok, lint) = promtool(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics: {lint}\n{text}");

    let samples = parse(&text).unwrap();
    // Every family is listed by exported_metric_names, and no label names a system.
    let exported: BTreeSet<String> = suyun_operator::metrics::exported_metric_names().into_iter().collect();
    for s in &samples {
        assert!(exported.contains(&s.name), "{} is scraped but not in exported_metric_names()", s.name);
        assert!(!s.labels.keys().any(|k| k.to_lowercase().contains("system")), "{s:?}");
    }
    // Nodes: 14, Ready, one provincial; capacity ≥ allocated, ratios in range.
    let ready = family(&samples, "suyun_node_ready");
    assert_eq!(ready.len(), 14);
    assert!(ready.iter().all(|s| s.value == 1.0), "{ready:?}");
    let tiers: BTreeMap<&str, usize> = ready.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.label("tier")).or_default() += 1;
        m
    });
    assert_eq!(tiers, BTreeMap::from([("city", 13), ("provincial", 1)]));
    assert_eq!(value(&samples, "suyun_node_ready", &[("node", "jiangsu")]), 1.0);
    assert_eq!(family(&samples, "suyun_node_allocatable").len(), 14 * 3);
    for s in family(&samples, "suyun_node_allocatable") {
        let unit = if s.label("resource") == "cpu" { "core" } else { "byte" };
        assert_eq!(s.label("unit"), unit, "{s:?}");
        assert!(s.value > 0.0, "{s:?}");
    }
    // (8000 - 400) cores x overcommit 2.
    let cpu = [("node", "jiangsu"), ("resource", "cpu")];
    assert_eq!(value(&samples, "suyun_node_allocatable", &cpu), 15_200.0);
    assert_eq!(value(&samples, "suyun_node_capacity", &cpu), 8_000.0);
    for s in family(&samples, "suyun_node_utilization_ratio") {
        assert!((0.0..=1.0).contains(&s.value), "{s:?}");
    }
    // Systems: every GovSystem once; waves and tenants as in the cluster.
    let all = systems.list(&ListParams::default()).await.unwrap().items;
    let total: f64 = family(&samples, "suyun_systems").iter().map(|s| s.value).sum();
    assert_eq!(total, all.len() as f64);
    for wave in ["wave-1", "wave-2"] {
        let members = all.iter().filter(|s| s.labels().get("suyun.io/wave").map(String::as_str) == Some(wave)).count();
        let counted: f64 =
            family(&samples, "suyun_wave_systems").iter().filter(|s| s.label("wave") == wave).map(|s| s.value).sum();
        assert_eq!(counted, members as f64, "{wave}");
    }
    assert_eq!(value(&samples, "suyun_wave_failure_budget_ratio", &[("wave", "wave-1")]), 0.1);
    assert_eq!(value(&samples, "suyun_wave_failure_budget_ratio", &[("wave", "wave-2")]), 0.05);
    let progress = value(&samples, "suyun_wave_progress_ratio", &[("wave", "wave-1")]);
    assert!(progress > 0.0 && progress <= 1.0, "wave-1 progress {progress}");
    assert!(value(&samples, "suyun_wave_last_transition_timestamp_seconds", &[("wave", "wave-1")]) > 1.7e9);
    let tenants = Api::<Tenant>::all(client.clone()).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(family(&samples, "suyun_tenant_quota").len(), tenants.len() * 3);
    assert_eq!(family(&samples, "suyun_tenant_usage").len(), tenants.len() * 3);
    // The loop, the planner, the controllers, leadership, the store, the process.
    assert_eq!(value(&samples, "suyun_leader", &[]), 1.0);
    assert!(value(&samples, "suyun_planner_runs_total", &[]) >= 1.0);
    assert!(value(&samples, "suyun_planner_run_duration_seconds_count", &[]) >= 1.0);
    for controller in ["cloudnode", "tenant", "migration"] {
        assert!(value(&samples, "suyun_reconcile_total", &[("controller", controller)]) >= 1.0, "{controller}");
    }
    assert!(value(&samples, "suyun_phase_duration_seconds_count", &[("phase", "Verifying")]) >= 1.0);
    let now = k8s_openapi::jiff::Timestamp::now().as_second() as f64;
    let published = value(&samples, "suyun_store_last_publish_timestamp_seconds", &[]);
    assert!((now - published).abs() < 120.0, "last publish {published}, now {now}");
    assert!(value(&samples, "suyun_store_publish_lag_seconds", &[]) >= 0.0);
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 0.0);

    // A standby: its own listener, ready, not leading, no state.
    let standby = OperatorProcess::start(cluster, "metrics-standby", &args).unwrap();
    eventually(WAIT, || async {
        let (status, body) = http_get(standby.metrics_addr, "/readyz").await?;
        anyhow::ensure!(status == StatusCode::OK && body.trim() == "standby", "/readyz: {status} {body}");
        Ok(())
    })
    .await
    .unwrap();
    let text = scrape(&standby).await;
    let (ok, lint) = promtool(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics (standby): {lint}\n{text}");
    let samples = parse(&text).unwrap();
    assert_eq!(value(&samples, "suyun_leader", &[]), 0.0);
    let state: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name.starts_with("suyun_node_") || s.name.starts_with("suyun_wave_") || s.name == "suyun_systems")
        .collect();
    assert!(state.is_empty(), "a standby exports no state: {state:?}");

    drop(standby);
    drop(leader);
    fixtures::clean(&client).await;
    let mut etcd = suyun_tests::etcd::connect(&cluster.etcd_endpoints).await.unwrap();
    etcd.delete(prefix.as_str(), Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
}
