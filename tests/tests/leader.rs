//! Two operator replicas: one leads and reconciles, the other waits; when the leader dies
//! without releasing the Lease, the standby takes over within 15 s and carries on. A leader
//! fenced out of the status store steps down (releases the Lease) and campaigns again in the
//! same process.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, WAIT, cluster, eventually, install_crds};

async fn holder(client: &Client, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "default").get(lease).await.ok()?.spec?.holder_identity
}

#[tokio::test]
async fn the_standby_takes_over_within_15_seconds_when_the_leader_dies() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let lease = "suyun-ha-test";
    let args = ["--lease-name=suyun-ha-test", "--debounce-ms=100"];
    let mut a = OperatorProcess::start(cluster, "ha-replica-a", &args).unwrap();
    eventually(WAIT, || async {
        if holder(&client, lease).await.as_deref() == Some("ha-replica-a") {
            Ok(())
        } else {
            anyhow::bail!("a does not lead yet")
        }
    })
    .await
    .unwrap();
    let b = OperatorProcess::start(cluster, "ha-replica-b", &args).unwrap();

    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 100, 4)).await;
    apply::<Tenant>(&client, &fixtures::tenant("js-edu", "Provincial", "320000", "jiangsu", 10)).await;
    apply::<MigrationWave>(&client, &fixtures::wave("sim", "  executor: Simulated\n  timeCompression: 3600\n")).await;
    eventually(WAIT, || async {
        Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get("js-edu").await?)
    })
    .await
    .unwrap();
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0001", "sim", 2, "")).await;
    fixtures::wait_system(&client, "JS-320000-0001", "Completed", |s| {
        s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed)
    })
    .await;
    assert!(
        !b.log_text().contains("leading: starting controllers"),
        "the standby must not lead while a leads:\n{}",
        b.log_text()
    );

    // The leader crashes: no release, the Lease must expire.
    a.kill_hard();
    let killed = Instant::now();
    eventually(Duration::from_secs(20), || async {
        if holder(&client, lease).await.as_deref() == Some("ha-replica-b") {
            Ok(())
        } else {
            anyhow::bail!("b has not taken over")
        }
    })
    .await
    .unwrap();
    let takeover = killed.elapsed();
    assert!(takeover <= Duration::from_secs(15), "takeover took {takeover:?}");
    eprintln!("leader takeover after {takeover:?}");

    // The new leader carries on.
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0002", "sim", 2, "")).await;
    fixtures::wait_system(&client, "JS-320000-0002", "Completed", |s| {
        s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed)
    })
    .await;
    assert!(b.log_text().contains("leading: starting controllers"), "{}", b.log_text());
    drop(b);
    fixtures::clean(&client).await;
}

#[tokio::test]
async fn a_leader_fenced_out_of_the_status_store_steps_down_and_campaigns_again() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let prefix = suyun_tests::etcd::unique_prefix("fenced-operator");
    let store = [
        "--lease-name=suyun-fenced-test".to_owned(),
        "--debounce-ms=100".to_owned(),
        format!("--store-endpoints={}", cluster.etcd_endpoints),
        format!("--store-prefix={prefix}"),
    ];
    let args: Vec<&str> = store.iter().map(String::as_str).collect();
    let mut operator = OperatorProcess::start(cluster, "fenced-replica", &args).unwrap();
    eventually(WAIT, || async {
        if operator.log_text().contains("holding the status-store fence") {
            Ok(())
        } else {
            anyhow::bail!("no fence yet:\n{}", operator.log_text())
        }
    })
    .await
    .unwrap();

    // Someone else's hand on the store: the leader key goes (as when its etcd lease expired
    // behind a partition). The next publish is refused, and the replica must step down: stop
    // its controllers and release the Lease, so that a replica holding both takes over.
    let keys = suyun_store::readmodel::Keys::new(&prefix);
    let mut etcd = suyun_tests::etcd::connect(&cluster.etcd_endpoints).await.unwrap();
    etcd.delete(keys.leader(), None).await.unwrap();
    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 100, 4)).await;
    eventually(Duration::from_secs(60), || async {
        let log = operator.log_text();
        if log.contains("stepping down so that a standby takes over") {
            Ok(())
        } else {
            anyhow::bail!("not stepped down")
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
    assert!(operator.log_text().contains("fenced out of the status store"), "{}", operator.log_text());
    // It stands aside for one Lease duration (10 s) with the Lease released.
    eventually(Duration::from_secs(5), || async {
        match holder(&client, "suyun-fenced-test").await {
            Some(h) if !h.is_empty() => anyhow::bail!("the Lease is still held by {h}"),
            _ => Ok(()),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
    // Then, still the same process and alone, it leads again and wins the (vacant) fence.
    eventually(Duration::from_secs(60), || async {
        let log = operator.log_text();
        let fences = log.matches("holding the status-store fence").count();
        if fences >= 2 { Ok(()) } else { anyhow::bail!("fence won {fences} times") }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
    assert!(operator.running(), "the process must survive losing its fence:\n{}", operator.log_text());
    assert_eq!(holder(&client, "suyun-fenced-test").await.as_deref(), Some("fenced-replica"));
    drop(operator);
    fixtures::clean(&client).await;
    etcd.delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
}
