//! The transition journal in the real status-store etcd: entries are created, never
//! overwritten; a commit whose reply was lost is neither repeated nor overwritten; a new leader
//! continues the chain; a deleted system's journal is closed, kept, and compacted only after
//! the retention; an edited entry is found by the verifier.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use suyun_crds::v1alpha1::{Phase, Transition};
use suyun_operator::journal::{self, Source, verify_chain};
use suyun_operator::store::{Fence, Publisher, StoreConfig, StoreError, read_journals};
use suyun_store::readmodel::{DELETED, JournalEntry, Record, SystemRecord};
use suyun_tests::etcd::unique_prefix;

async fn leader(prefix: &str, identity: &str) -> (StoreConfig, Publisher) {
    let config = StoreConfig::new(vec![suyun_tests::cluster().etcd_endpoints.clone()], prefix);
    let fence = Fence::campaign(config.connect().await.unwrap(), config.keys(), identity, 10).await.unwrap();
    let mut publisher = Publisher::new(fence, config.max_txn_ops);
    publisher.reconcile(vec![system("S-1"), system("S-2")]).await.unwrap();
    (config, publisher)
}

fn system(id: &str) -> Record {
    Record::System(SystemRecord { system_id: id.into(), region_code: "320500".into(), ..Default::default() })
}

/// The transitions of a migration so far: Pending → … → the `n`th phase.
fn transitions(n: usize) -> Vec<Transition> {
    let phases = [
        Phase::Pending,
        Phase::Scheduled,
        Phase::Provisioning,
        Phase::Replicating,
        Phase::CuttingOver,
        Phase::Verifying,
        Phase::Completed,
    ];
    (1..=n)
        .map(|i| Transition {
            sequence: i as u64,
            from: phases[i - 1],
            to: phases[i],
            reason: "PhaseCompleted".into(),
            time: Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + i as i64).unwrap()),
            actor: "suyun-operator".into(),
            approved_at: None,
            approval_reason: None,
            note: None,
        })
        .collect()
}

fn source<'a>(id: &'a str, uid: &'a str, t: &'a [Transition]) -> Source<'a> {
    Source { system_id: id, region_code: "320500", uid, transitions: t }
}

async fn stored(config: &StoreConfig, id: &str) -> Vec<(u64, Vec<u8>)> {
    let mut client = config.connect().await.unwrap();
    read_journals(&mut client, &config.keys(), Some(id)).await.unwrap().remove(id).unwrap_or_default()
}

fn entries(chain: &[(u64, Vec<u8>)]) -> Vec<JournalEntry> {
    chain.iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
}

const NOW: i64 = 1_800_001_000;

#[tokio::test]
async fn transitions_are_appended_once_and_a_new_leader_continues_the_chain() {
    let prefix = unique_prefix("journal-leaders");
    let (config, mut a) = leader(&prefix, "operator-a").await;
    let t = transitions(4);
    let report =
        a.sync_journal(&[source("S-1", "u1", &t[..2]), source("S-2", "u2", &t[..1])], true, NOW).await.unwrap();
    assert_eq!(report.appended, 3);
    // The same statuses again: nothing new.
    assert_eq!(
        a.sync_journal(&[source("S-1", "u1", &t[..2]), source("S-2", "u2", &t[..1])], true, NOW)
            .await
            .unwrap()
            .appended,
        0
    );
    a.into_fence().resign().await.unwrap();

    let (_, mut b) = leader(&prefix, "operator-b").await;
    let report = b.sync_journal(&[source("S-1", "u1", &t), source("S-2", "u2", &t[..1])], true, NOW).await.unwrap();
    assert_eq!(report.appended, 2, "the new leader appends transitions 3 and 4 of S-1 only");
    let chain = stored(&config, "S-1").await;
    assert_eq!(chain.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(entries(&chain).iter().map(|e| e.transition).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(verify_chain(&chain).unwrap().entries, 4);
}

#[tokio::test]
async fn a_burst_of_transitions_larger_than_a_transaction_is_journaled_in_several() {
    let prefix = unique_prefix("journal-burst");
    let (config, mut publisher) = leader(&prefix, "operator-a").await;
    let t = transitions(2);
    let ids: Vec<String> = (0..300).map(|i| format!("B-{i:03}")).collect();
    let uids: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let sources: Vec<Source<'_>> = ids.iter().zip(&uids).map(|(id, uid)| source(id, uid, &t)).collect();
    let report = publisher.sync_journal(&sources, true, NOW).await.unwrap();
    assert_eq!(report.appended, 600);
    let mut client = config.connect().await.unwrap();
    let journals = read_journals(&mut client, &config.keys(), None).await.unwrap();
    assert_eq!(journals.len(), 300);
    assert!(journals.values().all(|chain| verify_chain(chain).is_ok_and(|s| s.entries == 2)));
}

#[tokio::test]
async fn an_entry_already_in_the_store_is_never_overwritten_nor_written_twice() {
    let prefix = unique_prefix("journal-create-only");
    let (config, mut publisher) = leader(&prefix, "operator-a").await;
    let t = transitions(3);
    publisher.sync_journal(&[source("S-1", "u1", &t[..2])], true, NOW).await.unwrap();

    // A commit whose reply was lost: entry 3 (transition 3) is in the store, exactly as this
    // publisher would have written it, but the publisher does not know.
    let chain = stored(&config, "S-1").await;
    let last: JournalEntry = serde_json::from_slice(&chain[1].1).unwrap();
    let head = journal::Head::of(&last, &chain[1].1);
    let (linked, _) = journal::link(Some(&head), journal::pending(Some(&head), &source("S-1", "u1", &t), NOW));
    let (entry, bytes) = &linked[0];
    let key = config.keys().journal("S-1", entry.sequence);
    let mut client = config.connect().await.unwrap();
    client.put(key.clone(), bytes.clone(), None).await.unwrap();
    let revision = client.get(key.clone(), None).await.unwrap().kvs()[0].mod_revision();

    let refused = publisher.sync_journal(&[source("S-1", "u1", &t)], true, NOW).await.unwrap_err();
    assert!(matches!(refused, StoreError::JournalMoved { .. }), "{refused}");
    assert_eq!(
        client.get(key.clone(), None).await.unwrap().kvs()[0].mod_revision(),
        revision,
        "the existing entry was not overwritten"
    );
    // Read again: transition 3 is journaled already, nothing is appended twice.
    let report = publisher.sync_journal(&[source("S-1", "u1", &t)], true, NOW).await.unwrap();
    assert_eq!(report.appended, 0);
    let chain = stored(&config, "S-1").await;
    assert_eq!(entries(&chain).iter().map(|e| e.transition).collect::<Vec<_>>(), [1, 2, 3]);
    verify_chain(&chain).unwrap();

    // Something else at the next key (written behind the publisher's back): it stays, and the
    // next transition goes after it, not over it.
    let squatter = config.keys().journal("S-1", 4);
    client.put(squatter.clone(), b"{}".to_vec(), None).await.unwrap();
    let t5 = transitions(4);
    assert!(publisher.sync_journal(&[source("S-1", "u1", &t5)], true, NOW).await.is_err());
    assert_eq!(client.get(squatter, None).await.unwrap().kvs()[0].value(), b"{}");
}

#[tokio::test]
async fn a_deleted_systems_journal_is_closed_kept_and_compacted_after_the_retention() {
    let prefix = unique_prefix("journal-retention");
    let (config, mut publisher) = leader(&prefix, "operator-a").await;
    let t = transitions(2);
    publisher.sync_journal(&[source("S-1", "u1", &t), source("S-2", "u2", &t)], true, NOW).await.unwrap();

    // S-2 is deleted: its journal is closed, not removed.
    let report = publisher.sync_journal(&[source("S-1", "u1", &t)], true, NOW).await.unwrap();
    assert_eq!((report.appended, report.closed, report.compacted), (1, 1, 0));
    let chain = stored(&config, "S-2").await;
    let last = entries(&chain).pop().unwrap();
    assert_eq!((last.from.as_str(), last.to.as_str(), last.uid.as_str()), ("Provisioning", DELETED, "u2"));
    assert!(verify_chain(&chain).unwrap().closed);

    // A new leader 179 days later keeps it; one 181 days later compacts it, and only it.
    publisher.into_fence().resign().await.unwrap();
    let day = 86_400;
    let (_, mut later) = leader(&prefix, "operator-b").await;
    let report = later.sync_journal(&[source("S-1", "u1", &t)], true, NOW + 179 * day).await.unwrap();
    assert_eq!(report.compacted, 0);
    later.into_fence().resign().await.unwrap();
    let (_, mut much_later) = leader(&prefix, "operator-c").await;
    let report = much_later.sync_journal(&[source("S-1", "u1", &t)], true, NOW + 181 * day).await.unwrap();
    assert_eq!(report.compacted, 1);
    assert!(stored(&config, "S-2").await.is_empty());
    assert_eq!(stored(&config, "S-1").await.len(), 2, "an open journal is never compacted");

    // A system created again under the same systemId starts a journal of its own object.
    let report =
        much_later.sync_journal(&[source("S-1", "u1", &t), source("S-2", "u3", &t[..1])], true, NOW).await.unwrap();
    assert_eq!(report.appended, 1);
    assert_eq!(entries(&stored(&config, "S-2").await)[0].uid, "u3");
}

#[tokio::test]
async fn an_edited_entry_in_the_store_is_found_by_suyunctl_journal_verify() {
    let prefix = unique_prefix("journal-verify");
    let (config, mut publisher) = leader(&prefix, "operator-a").await;
    let t = transitions(4);
    publisher.sync_journal(&[source("S-1", "u1", &t), source("S-2", "u2", &t)], true, NOW).await.unwrap();
    let verify = || {
        let out = std::process::Command::new(suyun_tests::operator::suyunctl())
            .args(["journal", "verify", "--store-endpoints", &config.endpoints[0], "--store-prefix", &prefix])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = verify();
    assert!(ok, "{text}");
    assert!(text.contains("2 journals, 8 entries verified, 0 broken"), "{text}");

    // Someone with write access to etcd changes who approved a step.
    let key = config.keys().journal("S-2", 2);
    let mut client = config.connect().await.unwrap();
    let mut entry: JournalEntry =
        serde_json::from_slice(client.get(key.clone(), None).await.unwrap().kvs()[0].value()).unwrap();
    entry.actor = "ops@elsewhere".into();
    client.put(key, serde_json::to_vec(&entry).unwrap(), None).await.unwrap();
    let (ok, text) = verify();
    assert!(!ok, "{text}");
    assert!(text.contains("BROKEN S-2: entry 3 does not chain"), "{text}");
}

#[tokio::test]
async fn a_deleted_systems_history_is_still_served_to_its_city_and_to_nobody_else() {
    use suyun_operator::store::{Change, RecordKey};
    let prefix = unique_prefix("journal-history");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let (_, mut publisher) = leader(&prefix, "operator-a").await;
    let t = transitions(3);
    publisher.sync_journal(&[source("S-1", "u1", &t), source("S-2", "u2", &t)], true, NOW).await.unwrap();
    let server = suyun_tests::apiserver::TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let nanjing = server.with_certificate("li.lei", &["320100"]);

    // S-2 is deleted: its record goes, its journal is closed and stays.
    publisher.publish([Change::Delete(RecordKey::System("S-2".into()))]).await.unwrap();
    publisher.sync_journal(&[source("S-1", "u1", &t)], true, NOW).await.unwrap();
    suyun_tests::eventually(std::time::Duration::from_secs(10), || async {
        let record = suzhou.get("/api/v1/systems/S-2").await?;
        anyhow::ensure!(record.status == http::StatusCode::NOT_FOUND, "the record is still served");
        let history = suzhou.get("/api/v1/systems/S-2/history").await?;
        anyhow::ensure!(history.status == http::StatusCode::OK, "{}", history.text());
        let entries = history.json()["item"]["entries"].as_array().cloned().unwrap_or_default();
        let to: Vec<String> = entries.iter().map(|e| e["to"].as_str().unwrap_or_default().to_owned()).collect();
        anyhow::ensure!(to == ["Scheduled", "Provisioning", "Replicating", DELETED], "entries: {to:?}");
        Ok(())
    })
    .await
    .unwrap();
    let other_city = nanjing.get("/api/v1/systems/S-2/history").await.unwrap();
    assert_eq!(other_city.status, http::StatusCode::NOT_FOUND, "{}", other_city.text());
}
