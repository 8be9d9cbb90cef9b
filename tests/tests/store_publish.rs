//! The operator's publisher against the real status-store etcd: batching within etcd's
//! transaction limit, skipping unchanged records, reconciling away stale keys. The journal has
//! tests of its own (`journal.rs`).

use suyun_operator::store::{Change, Fence, Publisher, RecordKey, StoreConfig, list_prefix};
use suyun_store::readmodel::{ApprovalRecord, Keys, Record, SystemRecord};
use suyun_tests::etcd::unique_prefix;
use suyun_tests::readmodel::records_from_plan;

async fn leader(prefix: &str, identity: &str) -> (StoreConfig, Publisher) {
    let config = StoreConfig::new(vec![suyun_tests::cluster().etcd_endpoints.clone()], prefix);
    let fence = Fence::campaign(config.connect().await.unwrap(), config.keys(), identity, 10).await.unwrap();
    let publisher = Publisher::new(fence, config.max_txn_ops);
    (config, publisher)
}

async fn count(config: &StoreConfig, collection: &str) -> usize {
    let mut client = config.connect().await.unwrap();
    list_prefix(&mut client, &config.keys().collection(collection), 1000, true).await.unwrap().0.len()
}

#[tokio::test]
async fn jiangsu_is_published_in_62_transactions_and_unchanged_records_are_skipped() {
    let prefix = unique_prefix("publish-batch");
    let (config, mut publisher) = leader(&prefix, "operator-a").await;
    let records = records_from_plan(&suyun_planner::synthetic::jiangsu(1));
    let systems: Vec<Record> = records.iter().filter(|r| matches!(r, Record::System(_))).cloned().collect();
    assert_eq!(systems.len(), 7_900);

    let report = publisher.publish(systems.iter().cloned().map(Change::from)).await.unwrap();
    assert_eq!(report.puts, 7_900);
    assert_eq!(report.txns, 62, "7,900 puts at 128 per transaction");
    assert_eq!(count(&config, "systems").await, 7_900);

    // The same records again: nothing to write.
    let report = publisher.publish(systems.iter().cloned().map(Change::from)).await.unwrap();
    assert_eq!((report.txns, report.puts, report.unchanged), (0, 0, 7_900));

    // Three phase changes among the 7,900: one transaction of three puts.
    let mut changed = systems.clone();
    for record in changed.iter_mut().take(3) {
        if let Record::System(system) = record {
            system.phase = "Completed".into();
        }
    }
    let report = publisher.publish(changed.into_iter().map(Change::from)).await.unwrap();
    assert_eq!((report.txns, report.puts, report.unchanged), (1, 3, 7_897));
    let mut client = config.connect().await.unwrap();
    let Record::System(first) = &systems[0] else { unreachable!() };
    let stored = client.get(config.keys().system(&first.system_id), None).await.unwrap();
    let stored: SystemRecord = serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert_eq!(stored.phase, "Completed");
    assert_eq!(stored.display_name, first.display_name, "Chinese display names are kept");
}

fn system(id: &str) -> Record {
    Record::System(SystemRecord {
        system_id: id.into(),
        tenant: "sz-gov".into(),
        region_code: "320500".into(),
        phase: "Scheduled".into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn reconcile_makes_the_store_equal_to_the_snapshot() {
    let prefix = unique_prefix("publish-reconcile");
    let (config, mut publisher) = leader(&prefix, "operator-a").await;
    let keys: Keys = config.keys();
    let snapshot: Vec<Record> = (1..=5).map(|i| system(&format!("S-{i}"))).collect();
    let report = publisher.reconcile(snapshot.clone()).await.unwrap();
    assert_eq!((report.puts, report.deletes), (5, 0));
    let mut client = config.connect().await.unwrap();
    let approval = ApprovalRecord { system_id: "S-5".into(), region_code: "320500".into(), ..Default::default() };
    client.put(keys.approval("S-5"), serde_json::to_vec(&approval).unwrap(), None).await.unwrap();
    // Something written behind the publisher's back, and a system that no longer exists.
    client.put(keys.system("S-9"), serde_json::to_vec(&SystemRecord::default()).unwrap(), None).await.unwrap();

    // A new leader starts: S-5 was deleted from the cluster meanwhile, S-2 changed.
    drop(publisher);
    let (_, mut publisher) = leader(&prefix, "operator-b").await;
    let mut snapshot: Vec<Record> = snapshot.into_iter().filter(|r| r.key(&keys) != keys.system("S-5")).collect();
    if let Record::System(s) = &mut snapshot[1] {
        s.phase = "Provisioning".into();
    }
    let report = publisher.reconcile(snapshot).await.unwrap();
    assert_eq!(report.unchanged, 3, "S-1, S-3, S-4 were already right");
    assert_eq!(report.puts, 1, "S-2 changed");
    // S-5, S-9 and S-5's approval.
    assert_eq!(report.deletes, 3);
    assert_eq!(count(&config, "systems").await, 4);
    assert_eq!(count(&config, "approvals").await, 0);

    publisher.publish([Change::Delete(RecordKey::System("S-1".into()))]).await.unwrap();
    assert_eq!(count(&config, "systems").await, 3);
}
