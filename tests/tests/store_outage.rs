//! The status-store etcd goes down while systems migrate: the operator keeps migrating
//! (Kubernetes is the source of truth), and once the store is back every transition the
//! statuses show is in the journal exactly once, in order, with chains that verify — nothing
//! that happened during the outage is lost.

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use suyun_crds::v1alpha1::{GovSystem, Phase};
use suyun_store::readmodel::Keys;
use suyun_tests::etcd::{EtcdProcess, journal_problems, unique_prefix};
use suyun_tests::fixtures;
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds};

const SYSTEMS: usize = 24;

/// Waits until the store's journal holds every transition the systems' statuses show, once,
/// in order, chained (at most a minute).
async fn journal_complete(systems: &Api<GovSystem>, keys: &Keys, endpoint: &str) -> anyhow::Result<()> {
    let store = suyun_tests::etcd::connect(endpoint).await?;
    eventually(Duration::from_secs(60), || {
        let (systems, keys, mut store) = (systems.clone(), keys.clone(), store.clone());
        async move {
            let all = systems.list(&ListParams::default()).await?.items;
            let problems = journal_problems(&mut store, &keys, &all).await;
            if problems.is_empty() { Ok(()) } else { anyhow::bail!("{}", problems.join("\n")) }
        }
    })
    .await
}

#[tokio::test]
async fn transitions_made_while_the_store_is_down_reach_the_journal_once_it_is_back() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let mut etcd = EtcdProcess::start("store-outage").await.unwrap();
    let prefix = unique_prefix("store-outage");
    let keys = Keys::new(&prefix);
    let store = format!("--store-endpoints={}", etcd.endpoint());
    let store_prefix = format!("--store-prefix={prefix}");
    let args = [
        "--lease-name=suyun-store-outage-test",
        "--store-lease-ttl=4",
        "--debounce-ms=50",
        store.as_str(),
        store_prefix.as_str(),
    ];
    let mut operator = OperatorProcess::start(cluster, "store-outage", &args).unwrap();

    fixtures::simulated_migration(&client, "outage", SYSTEMS, 120).await;
    let systems = Api::<GovSystem>::all(client.clone());
    let phases = || async {
        systems.list(&ListParams::default()).await.map(|l| {
            l.items.iter().map(|s| s.status.as_ref().and_then(|s| s.phase).unwrap_or_default()).collect::<Vec<Phase>>()
        })
    };
    eventually(Duration::from_secs(60), || async {
        let moving = phases().await?.iter().filter(|p| p.is_active()).count();
        if moving >= 4 { Ok(()) } else { anyhow::bail!("{moving} migrating") }
    })
    .await
    .unwrap();

    // The store goes down; migrations go on in Kubernetes.
    etcd.kill();
    let down = Instant::now();
    let down_at = jiff::Timestamp::now();
    let completed_before = phases().await.unwrap().iter().filter(|p| **p == Phase::Completed).count();
    eventually(Duration::from_secs(120), || async {
        let completed = phases().await?.iter().filter(|p| **p == Phase::Completed).count();
        if completed >= completed_before + 4 && down.elapsed() >= Duration::from_secs(20) {
            Ok(())
        } else {
            anyhow::bail!("{completed} completed ({completed_before} before the outage)")
        }
    })
    .await
    .unwrap();
    eprintln!("store down for {:?}", down.elapsed());
    assert!(operator.running(), "the operator keeps running while the store is down:\n{}", operator.log_text());
    let back_at = jiff::Timestamp::now();
    etcd.restart().await.unwrap();
    let back = Instant::now();

    // Everything completes and the journal catches up by itself.
    fixtures::wait_all(&client, Phase::Completed, SYSTEMS, Duration::from_secs(180)).await;
    journal_complete(&systems, &keys, &etcd.endpoint()).await.unwrap();
    eprintln!("journal complete {:?} after the store came back", back.elapsed());
    // Transitions made while the store was down: these are what a publish-time journal lost.
    let during = systems
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|s| s.status.clone().unwrap_or_default().transitions)
        .filter(|t| t.time.0 > down_at && t.time.0 < back_at)
        .count();
    assert!(during >= 4, "only {during} transitions while the store was down");
    eprintln!("{during} transitions made while the store was down, all journaled");
    drop(operator);
}

/// A replica that becomes leader while the status store is down migrates under the Kubernetes
/// Lease alone, wins the store's fence in the background, and then journals everything that
/// happened meanwhile.
#[tokio::test]
async fn a_leader_elected_while_the_store_is_down_migrates_and_journals_once_it_is_back() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let mut etcd = EtcdProcess::start("store-down-at-start").await.unwrap();
    etcd.kill();
    let prefix = unique_prefix("store-down-at-start");
    let keys = Keys::new(&prefix);
    let store = format!("--store-endpoints={}", etcd.endpoint());
    let store_prefix = format!("--store-prefix={prefix}");
    let args = [
        "--lease-name=suyun-store-down-at-start-test",
        "--store-lease-ttl=4",
        "--debounce-ms=50",
        store.as_str(),
        store_prefix.as_str(),
    ];
    let operator = OperatorProcess::start(cluster, "store-down-at-start", &args).unwrap();
    const COUNT: usize = 8;
    fixtures::simulated_migration(&client, "down-at-start", COUNT, 600).await;

    let systems = Api::<GovSystem>::all(client.clone());
    eventually(Duration::from_secs(120), || async {
        let items = systems.list(&ListParams::default()).await?.items;
        let completed =
            items.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed)).count();
        if completed == COUNT { Ok(()) } else { anyhow::bail!("{completed} of {COUNT} completed") }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}: a leader without the store must migrate\n{}", operator.log_text()));
    let log = operator.log_text();
    assert!(log.contains("cannot win the status-store fence yet"), "{log}");
    assert!(!log.contains("holding the status-store fence"), "the store was down throughout:\n{log}");

    etcd.restart().await.unwrap();
    journal_complete(&systems, &keys, &etcd.endpoint())
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
    assert!(operator.log_text().contains("holding the status-store fence"));
}
