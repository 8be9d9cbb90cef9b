//! Fencing against the real status-store etcd: one leader at a time, and a deposed leader's
//! writes are refused.

use std::time::Duration;

use suyun_operator::store::{Change, Fence, Publisher, StoreConfig, StoreError};
use suyun_store::readmodel::{Record, SystemRecord};
use suyun_tests::etcd::unique_prefix;

fn config(prefix: &str) -> StoreConfig {
    StoreConfig::new(vec![suyun_tests::cluster().etcd_endpoints.clone()], prefix)
}

fn system(phase: &str) -> Change {
    Change::Put(Record::System(SystemRecord {
        system_id: "JS-320500-0001".into(),
        tenant: "sz-gov".into(),
        region_code: "320500".into(),
        phase: phase.into(),
        ..Default::default()
    }))
}

#[tokio::test]
async fn only_one_of_two_candidates_wins_and_the_other_takes_over_when_the_lease_is_revoked() {
    let prefix = unique_prefix("fence-takeover");
    let config = config(&prefix);
    let a = Fence::campaign(config.connect().await.unwrap(), config.keys(), "operator-a", 5).await.unwrap();

    // B campaigns concurrently and must not win while A holds the key.
    let b_client = config.connect().await.unwrap();
    let keys = config.keys();
    let b = tokio::spawn(async move { Fence::campaign(b_client, keys, "operator-b", 5).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!b.is_finished(), "B must wait while A leads");
    assert!(
        Fence::try_acquire(config.connect().await.unwrap(), config.keys(), "operator-c", 5).await.unwrap().is_err(),
        "a third candidate does not win either"
    );

    let mut a = Publisher::new(a, 128);
    a.publish([system("Scheduled")]).await.expect("the leader writes");

    // Someone revokes A's lease (as etcd does when it expires): B takes over at once.
    let mut admin = config.connect().await.unwrap();
    admin.lease_revoke(a.fence().lease_id()).await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), b).await.expect("B takes over").unwrap().unwrap();
    assert_eq!(b.identity(), "operator-b");
    tokio::time::timeout(Duration::from_secs(10), a.fence().lost()).await.expect("A notices it lost the lease");

    // A's writes are refused with a clear error; B's go through.
    let error = a.publish([system("Completed")]).await.unwrap_err();
    assert!(matches!(error, StoreError::Fenced { .. }), "{error}");
    assert!(error.to_string().contains("operator-a no longer holds the leader key"), "{error}");
    let mut b = Publisher::new(b, 128);
    b.publish([system("Provisioning")]).await.unwrap();
    let stored = admin.get(config.keys().system("JS-320500-0001"), None).await.unwrap();
    let stored: SystemRecord = serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert_eq!(stored.phase, "Provisioning", "the deposed leader's write did not land");
}

#[tokio::test]
async fn a_successor_with_the_same_identity_still_fences_out_the_old_process() {
    let prefix = unique_prefix("fence-same-identity");
    let config = config(&prefix);
    let old = Fence::campaign(config.connect().await.unwrap(), config.keys(), "operator-0", 5).await.unwrap();
    let mut old = Publisher::new(old, 128);
    // The old process's key disappears (e.g. its lease expired during a long pause) and a
    // restarted pod with the same name wins.
    let mut admin = config.connect().await.unwrap();
    admin.lease_revoke(old.fence().lease_id()).await.unwrap();
    let new = Fence::campaign(config.connect().await.unwrap(), config.keys(), "operator-0", 5).await.unwrap();
    assert_ne!(new.create_revision(), old.fence().create_revision());
    let error = old.publish([system("Completed")]).await.unwrap_err();
    assert!(matches!(error, StoreError::Fenced { .. }), "{error}");
    Publisher::new(new, 128).publish([system("Scheduled")]).await.unwrap();
}

#[tokio::test]
async fn resigning_hands_over_without_waiting_for_the_ttl() {
    let prefix = unique_prefix("fence-resign");
    let config = config(&prefix);
    let a = Fence::campaign(config.connect().await.unwrap(), config.keys(), "operator-a", 30).await.unwrap();
    let b_client = config.connect().await.unwrap();
    let keys = config.keys();
    let b = tokio::spawn(async move { Fence::campaign(b_client, keys, "operator-b", 30).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.resign().await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), b).await.expect("B wins well before the 30 s TTL").unwrap();
    assert_eq!(b.unwrap().identity(), "operator-b");
}
