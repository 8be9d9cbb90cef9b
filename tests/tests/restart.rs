//! A restart with nothing changed writes nothing to Kubernetes: the new leader finds every
//! Tenant's children, every status and every wave as it would write them, and leaves them be.
//! Counted by the kube-apiserver itself (`apiserver_request_total` of write verbs on the kinds the
//! operator writes; Leases excepted: holding one is how a replica leads).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, Phase, Tenant};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds};

/// The resources the operator writes, besides its Lease.
const WRITTEN: [&str; 11] = [
    "govsystems",
    "migrationwaves",
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

/// Write requests the kube-apiserver has served so far, by `verb resource/subresource`.
async fn writes(client: &Client) -> BTreeMap<String, u64> {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.expect("the kube-apiserver's metrics");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            Some(&line[start..start + line[start..].find('"')?])
        };
        let (Some(verb), Some(resource), Some(sub)) = (label("verb"), label("resource"), label("subresource")) else {
            continue;
        };
        if !matches!(verb, "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION")
            || !WRITTEN.contains(&resource)
        {
            continue;
        }
        let count: u64 = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        *out.entry(format!("{verb} {resource}/{sub}")).or_default() += count;
    }
    out
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, d)| *d > 0).collect()
}

/// Waits until no write reaches the kube-apiserver for `quiet`.
async fn settle(client: &Client, quiet: Duration) -> BTreeMap<String, u64> {
    let mut last = writes(client).await;
    let mut since = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = writes(client).await;
        if now != last {
            last = now;
            since = std::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(std::time::Instant::now() < deadline, "writes never settled: {last:?}");
    }
}

fn start(name: &str) -> OperatorProcess {
    let args = ["--lease-name=suyun-restart", "--debounce-ms=100", "--lease-duration-seconds=6"];
    OperatorProcess::start(cluster(), name, &args).unwrap()
}

#[tokio::test]
async fn a_restart_with_nothing_changed_writes_nothing_to_kubernetes() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let client = cluster().client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;

    // Every kind of state the operator writes: tenants with their children, node statuses, a
    // completed wave, and systems waiting in no wave.
    let mut first = start("restart-a");
    fixtures::simulated_migration(&client, "restart", 6, 100_000).await;
    apply::<Tenant>(&client, &fixtures::tenant("js-idle", "Provincial", "320000", "jiangsu", 100)).await;
    for i in 1..=4 {
        apply::<GovSystem>(&client, &fixtures::system("js-idle", &format!("JS-320000-{:04}", 100 + i), "none", 1, ""))
            .await;
    }
    fixtures::wait_all(&client, Phase::Completed, 6, Duration::from_secs(120)).await;
    eventually(Duration::from_secs(60), || async {
        let nodes = kube::Api::<CloudNode>::all(client.clone()).list(&Default::default()).await?;
        let systems = kube::Api::<GovSystem>::all(client.clone()).list(&Default::default()).await?;
        let scheduled =
            systems.items.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Scheduled));
        anyhow::ensure!(nodes.items.iter().all(|n| n.status.is_some()), "node statuses not written yet");
        anyhow::ensure!(scheduled.count() == 4, "the systems in no wave are not Scheduled yet");
        Ok(())
    })
    .await
    .unwrap();
    settle(&client, Duration::from_secs(5)).await;
    assert!(first.terminate(), "the first operator stops cleanly\n{}", first.log_text());

    let before = settle(&client, Duration::from_secs(2)).await;
    let waves = kube::Api::<suyun_crds::v1alpha1::MigrationWave>::all(client.clone());
    let wave_before = serde_json::to_string(&waves.get("restart").await.unwrap().status).unwrap();
    let second = start("restart-b");
    eventually(Duration::from_secs(90), || async {
        let log = second.log_text();
        anyhow::ensure!(log.matches("migration loop iteration").count() >= 2, "no second iteration yet");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", second.log_text()));
    // The Tenant and CloudNode controllers reconcile every object at start; give them time.
    let after = settle(&client, Duration::from_secs(5)).await;
    let written = delta(&before, &after);
    let wave_after = serde_json::to_string(&waves.get("restart").await.unwrap().status).unwrap();
    assert!(
        written.is_empty(),
        "the restarted operator wrote to Kubernetes although nothing changed: {written:?}\n\
         wave status before {wave_before}\nafter {wave_after}\n{}",
        second.log_text()
    );
}
