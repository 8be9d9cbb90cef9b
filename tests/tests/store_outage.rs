//! The status-store etcd goes down while systems migrate: the operator keeps migrating
//! (Kubernetes is the source of truth), and once the store is back every transition the
//! statuses show is in the journal exactly once, in order, with chains that verify — nothing
//! that happened during the outage is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use suyun_crds::readmodel::{JournalEntry, Keys};
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_tests::etcd::{EtcdProcess, unique_prefix};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds};

const SYSTEMS: usize = 24;

/// What the journal lacks or holds twice, for every system: empty when complete.
async fn journal_problems(etcd: &mut etcd_client::Client, keys: &Keys, systems: &[GovSystem]) -> Vec<String> {
    let journals = match suyun_operator::store::read_journals(etcd, keys, None).await {
        Ok(j) => j,
        Err(e) => return vec![format!("reading the journals: {e}")],
    };
    let mut problems = Vec::new();
    for system in systems {
        let id = &system.spec.system_id;
        let chain = journals.get(id).cloned().unwrap_or_default();
        if let Err(e) = suyun_operator::journal::verify_chain(&chain) {
            problems.push(format!("{id}: {e}"));
        }
        let uid = system.uid().unwrap_or_default();
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, bytes) in &chain {
            let e: JournalEntry = serde_json::from_slice(bytes).unwrap();
            if e.uid == uid {
                *count.entry(e.transition).or_default() += 1;
            }
        }
        for t in &system.status.clone().unwrap_or_default().transitions {
            if count.get(&t.sequence) != Some(&1) {
                problems.push(format!("{id}: transition {} journaled {:?} times", t.sequence, count.get(&t.sequence)));
            }
        }
    }
    problems
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

    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 10_000, SYSTEMS as u32)).await;
    apply::<Tenant>(&client, &fixtures::tenant("js-outage", "Provincial", "320000", "jiangsu", 1000)).await;
    apply::<MigrationWave>(
        &client,
        &fixtures::wave(
            "outage",
            &format!("  executor: Simulated\n  timeCompression: 120\n  maxConcurrent: {SYSTEMS}\n"),
        ),
    )
    .await;
    eventually(Duration::from_secs(30), || async {
        Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get("js-outage").await?)
    })
    .await
    .unwrap();
    for i in 1..=SYSTEMS {
        apply::<GovSystem>(&client, &fixtures::system("js-outage", &format!("JS-320000-{i:04}"), "outage", 1, ""))
            .await;
    }
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
    let store = suyun_tests::etcd::connect(&etcd.endpoint()).await.unwrap();
    eventually(Duration::from_secs(60), || {
        let (systems, keys, store) = (systems.clone(), keys.clone(), store.clone());
        async move {
            let all = systems.list(&ListParams::default()).await?.items;
            let problems = journal_problems(&mut store.clone(), &keys, &all).await;
            if problems.is_empty() { Ok(()) } else { anyhow::bail!("{}", problems.join("\n")) }
        }
    })
    .await
    .unwrap();
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
