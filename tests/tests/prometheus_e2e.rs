//! End to end with a real Prometheus: two operator replicas (a leader and a standby) run the
//! Jiangsu example's Simulated migration while Prometheus scrapes both every second; what
//! Prometheus stores agrees with the cluster as read through kube — node accounts, systems,
//! leadership, completed migrations, wave progress — before and after the leader crashes and
//! the standby takes over.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, ListParams};
use suyun_crds::v1alpha1::{GovSystem, MigrationWave, Phase, WavePhase};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::prometheus::{Prometheus, http_get};
use suyun_tests::{CLUSTER_SCOPED, WAIT, cluster, eventually, fixtures};

fn phase(s: &GovSystem) -> Phase {
    s.status.as_ref().and_then(|s| s.phase).unwrap_or_default()
}

/// CPU requests (cores) of the systems holding capacity, by node, as the apiserver shows them.
fn cpu_by_node(systems: &[GovSystem]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in systems.iter().filter(|s| phase(s).holds_capacity()) {
        let Some(node) = s.status.as_ref().and_then(|st| st.node.clone()) else { continue };
        let milli = suyun_crds::quantity::milli(&s.spec.resources.cpu).unwrap();
        *out.entry(node).or_insert(0.0) += milli as f64 / 1000.0;
    }
    out
}

#[tokio::test]
async fn prometheus_sees_the_jiangsu_migration_as_the_cluster_does() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    fixtures::apply_jiangsu_example(&client).await;
    let args = ["--lease-name=suyun-prometheus-e2e", "--debounce-ms=200"];
    let mut leader = OperatorProcess::start(cluster, "prometheus-e2e-a", &args).unwrap();
    eventually(WAIT, || async {
        let (_, body) = http_get(leader.metrics_addr, "/readyz").await?;
        anyhow::ensure!(body.trim() == "leading", "replica a: {body}");
        Ok(())
    })
    .await
    .unwrap();
    let standby = OperatorProcess::start(cluster, "prometheus-e2e-b", &args).unwrap();
    let prometheus = Prometheus::start(cluster, &[leader.metrics_addr, standby.metrics_addr]).await.unwrap();
    let log = || format!("Prometheus log: {}", prometheus.log.display());

    // Both replicas scraped; exactly one leads.
    eventually(Duration::from_secs(60), || async {
        anyhow::ensure!(prometheus.value("sum(up)").await? == 2.0, "not both targets up");
        anyhow::ensure!(prometheus.value("count(suyun_leader)").await? == 2.0, "suyun_leader not from both");
        anyhow::ensure!(prometheus.value("sum(suyun_leader)").await? == 1.0, "not exactly one leader");
        anyhow::ensure!(prometheus.value("count(suyun_node_ready == 1)").await? == 14.0, "not 14 Ready nodes");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; {}", log()));

    // The completed counter rises while the migration runs.
    let systems = Api::<GovSystem>::all(client.clone());
    let completed = "sum(suyun_migrations_completed_total)";
    let first = eventually(Duration::from_secs(120), || async {
        let v = prometheus.value(completed).await?;
        anyhow::ensure!(v >= 1.0, "{completed} = {v}");
        Ok(v)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; {}", log()));
    eventually(Duration::from_secs(120), || async {
        let v = prometheus.value(completed).await?;
        anyhow::ensure!(v > first, "{completed} still {v}");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; {}", log()));

    // Node accounts and system counts agree with the GovSystems the apiserver holds.
    eventually(Duration::from_secs(60), || async {
        let all = systems.list(&ListParams::default()).await?.items;
        let want = cpu_by_node(&all);
        let got = prometheus.query("suyun_node_allocated{resource=\"cpu\"}").await?;
        anyhow::ensure!(got.len() == 14, "{} nodes in suyun_node_allocated", got.len());
        for (labels, value) in &got {
            let node = labels.get("node").cloned().unwrap_or_default();
            let expected = want.get(&node).copied().unwrap_or(0.0);
            anyhow::ensure!((value - expected).abs() < 1e-6, "{node}: Prometheus {value} cores, GovSystems {expected}");
        }
        let total = prometheus.value("sum(suyun_systems)").await?;
        anyhow::ensure!(total == all.len() as f64, "sum(suyun_systems) {total}, GovSystems {}", all.len());
        let by_phase = prometheus.query("sum by (phase) (suyun_systems)").await?;
        for (labels, value) in by_phase {
            let p = labels.get("phase").cloned().unwrap_or_default();
            let n = all.iter().filter(|s| phase(s).as_str() == p).count();
            anyhow::ensure!(value == n as f64, "{p}: Prometheus {value}, GovSystems {n}");
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; {}", log()));

    // wave-1 runs to the end by itself: its counter equals its Completed systems, progress 1.
    let waves = Api::<MigrationWave>::all(client.clone());
    eventually(Duration::from_secs(180), || async {
        let w = waves.get("wave-1").await?.status.unwrap_or_default();
        anyhow::ensure!(w.phase == Some(WavePhase::Completed), "wave-1 {:?} {:?}", w.phase, w.progress);
        Ok(())
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(60), || async {
        let all = systems.list(&ListParams::default().labels("suyun.io/wave=wave-1")).await?.items;
        let done = all.iter().filter(|s| phase(s) == Phase::Completed).count();
        let counted = prometheus.value("suyun_migrations_completed_total{wave=\"wave-1\"}").await?;
        anyhow::ensure!(counted == done as f64, "counter {counted}, Completed GovSystems {done}");
        let progress = prometheus.value("suyun_wave_progress_ratio{wave=\"wave-1\"}").await?;
        anyhow::ensure!(progress == 1.0, "wave-1 progress {progress}");
        let active = prometheus.value("suyun_wave_active{wave=\"wave-1\"}").await?;
        anyhow::ensure!(active == 0.0, "a finished wave is not active: {active}");
        let members = prometheus.value("sum(suyun_wave_systems{wave=\"wave-1\"})").await?;
        anyhow::ensure!(members == all.len() as f64, "wave-1 members {members}, GovSystems {}", all.len());
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; {}", log()));
    // Only the leader reports state.
    let from_standby =
        prometheus.query(&format!("suyun_systems{{instance=\"{}\"}}", standby.metrics_addr)).await.unwrap();
    assert!(from_standby.is_empty(), "the standby exports state: {from_standby:?}");

    // The leader crashes: the standby takes over and reports the same state from its own caches.
    leader.kill_hard();
    let b = standby.metrics_addr;
    eventually(Duration::from_secs(60), || async {
        anyhow::ensure!(prometheus.value(&format!("suyun_leader{{instance=\"{b}\"}}")).await? == 1.0, "b not leading");
        anyhow::ensure!(prometheus.value("sum(suyun_leader)").await? == 1.0, "not exactly one leader");
        let all = systems.list(&ListParams::default()).await?.items;
        let total = prometheus.value(&format!("sum(suyun_systems{{instance=\"{b}\"}})")).await?;
        anyhow::ensure!(total == all.len() as f64, "b: sum(suyun_systems) {total}, GovSystems {}", all.len());
        let want = cpu_by_node(&all);
        let got = prometheus.query(&format!("suyun_node_allocated{{instance=\"{b}\",resource=\"cpu\"}}")).await?;
        anyhow::ensure!(got.len() == 14, "b: {} nodes in suyun_node_allocated", got.len());
        for (labels, value) in &got {
            let node = labels.get("node").cloned().unwrap_or_default();
            let expected = want.get(&node).copied().unwrap_or(0.0);
            anyhow::ensure!((value - expected).abs() < 1e-6, "b, {node}: {value} cores, GovSystems {expected}");
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; {}", log()));

    drop(prometheus);
    drop(standby);
    drop(leader);
    fixtures::clean(&client).await;
}
