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
use suyun_tests::{CLUSTER_SCOPED, bench, cluster, eventually, install_crds};

async fn settle(client: &Client, quiet: Duration) -> BTreeMap<String, u64> {
    bench::settle(client, quiet, Duration::from_secs(120)).await.expect("writes settle")
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
    // The counter sees writes at all (the first operator made many): an empty count would let
    // the assertion below pass whatever the restart did.
    assert!(before.keys().any(|k| k.starts_with("APPLY resourcequotas/")), "no quota applies counted: {before:?}");
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
    let written = bench::grown(&before, &after);
    let wave_after = serde_json::to_string(&waves.get("restart").await.unwrap().status).unwrap();
    assert!(
        written.is_empty(),
        "the restarted operator wrote to Kubernetes although nothing changed: {written:?}\n\
         wave status before {wave_before}\nafter {wave_after}\n{}",
        second.log_text()
    );
}
