//! A leader paused past its lease (SIGSTOP) while a successor takes over changes nothing when
//! it wakes up (SIGCONT): not a GovSystem status in Kubernetes (its writes are conditional on
//! the resourceVersion they were computed from, and made only while the Lease names it), not
//! the status store (fenced by the leader key).
//!
//! The test watches every GovSystem status from the start. A stale write from the old leader
//! would put back an older status: the recorded transitions of a system would shrink, or a
//! transition number would come back with other contents. Afterwards every transition that
//! status shows is in the journal exactly once, and every chain verifies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use suyun_crds::v1alpha1::{GovSystem, Phase, Transition};
use suyun_store::readmodel::{Keys, LeaderRecord};
use suyun_tests::etcd::{journal_problems, unique_prefix};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds};

const SYSTEMS: usize = 150;
const LEASE: &str = "suyun-paused-leader-test";

async fn holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "default").get(LEASE).await.ok()?.spec?.holder_identity
}

async fn store_leader(etcd: &mut etcd_client::Client, keys: &Keys) -> Option<String> {
    let response = etcd.get(keys.leader(), None).await.ok()?;
    let kv = response.kvs().first()?;
    Some(serde_json::from_slice::<LeaderRecord>(kv.value()).ok()?.identity)
}

/// What the watch saw going wrong, and how many status updates it saw.
#[derive(Default)]
struct Seen {
    transitions: HashMap<String, Vec<Transition>>,
    updates: usize,
    violations: Vec<String>,
}

impl Seen {
    fn observe(&mut self, system: &GovSystem) {
        let id = system.spec.system_id.clone();
        let now = system.status.as_ref().map(|s| s.transitions.clone()).unwrap_or_default();
        self.updates += 1;
        if let Some(before) = self.transitions.get(&id) {
            let (last_before, last_now) =
                (before.last().map_or(0, |t| t.sequence), now.last().map_or(0, |t| t.sequence));
            if last_now < last_before {
                self.violations.push(format!("{id}: transitions went back from {last_before} to {last_now}"));
            }
            for t in &now {
                if let Some(old) = before.iter().find(|o| o.sequence == t.sequence)
                    && old != t
                {
                    self.violations.push(format!("{id}: transition {} rewritten: {old:?} → {t:?}", t.sequence));
                }
            }
        }
        if now.last().map_or(0, |t| t.sequence)
            >= self.transitions.get(&id).and_then(|t| t.last()).map_or(0, |t| t.sequence)
        {
            self.transitions.insert(id, now);
        }
    }
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_changes_nothing_when_it_wakes() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let prefix = unique_prefix("paused-leader");
    let keys = Keys::new(&prefix);
    let mut etcd = suyun_tests::etcd::connect(&cluster.etcd_endpoints).await.unwrap();
    let store = format!("--store-endpoints={}", cluster.etcd_endpoints);
    let store_prefix = format!("--store-prefix={prefix}");
    let args = [
        "--lease-name",
        LEASE,
        "--lease-duration-seconds=4",
        "--store-lease-ttl=4",
        "--debounce-ms=50",
        store.as_str(),
        store_prefix.as_str(),
    ];

    // Every status update, from the first.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = {
        let seen = seen.clone();
        let stream = watcher(Api::<GovSystem>::all(client.clone()), watcher::Config::default());
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = event {
                    seen.lock().unwrap().observe(&s);
                }
            }
        })
    };

    let a = OperatorProcess::start(cluster, "paused-replica-a", &args).unwrap();
    eventually(Duration::from_secs(30), || async {
        if holder(&client).await.as_deref() == Some("paused-replica-a") {
            Ok(())
        } else {
            anyhow::bail!("a does not lead yet")
        }
    })
    .await
    .unwrap();
    let b = OperatorProcess::start(cluster, "paused-replica-b", &args).unwrap();
    fixtures::simulated_migration(&client, "pause", SYSTEMS, 600).await;
    // Pause the leader while it is busy: many systems mid-migration.
    let systems = Api::<GovSystem>::all(client.clone());
    eventually(Duration::from_secs(60), || async {
        let moving = systems
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|s| s.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_active()))
            .count();
        if moving >= SYSTEMS / 3 { Ok(()) } else { anyhow::bail!("{moving} systems migrating") }
    })
    .await
    .unwrap();
    a.signal("STOP");
    let paused = Instant::now();

    // The successor takes over both leases and moves on.
    eventually(Duration::from_secs(30), || async {
        let k8s = holder(&client).await;
        let store = store_leader(&mut etcd.clone(), &keys).await;
        if k8s.as_deref() == Some("paused-replica-b") && store.as_deref() == Some("paused-replica-b") {
            Ok(())
        } else {
            anyhow::bail!("Lease held by {k8s:?}, store leader key by {store:?}")
        }
    })
    .await
    .unwrap();
    let updates_at_takeover = seen.lock().unwrap().updates;
    eventually(Duration::from_secs(30), || async {
        let updates = seen.lock().unwrap().updates;
        if updates >= updates_at_takeover + 20 {
            Ok(())
        } else {
            anyhow::bail!("successor wrote {} statuses", updates - updates_at_takeover)
        }
    })
    .await
    .unwrap();
    eprintln!("a paused for {:?} before waking", paused.elapsed());
    a.signal("CONT");

    // Everything completes, under the successor.
    fixtures::wait_all(&client, Phase::Completed, SYSTEMS, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    watch.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.violations.is_empty(), "stale writes after the old leader woke:\n{}", seen.violations.join("\n"));
    assert!(
        !b.log_text().contains("stale") && holder(&client).await.as_deref() == Some("paused-replica-b"),
        "the successor keeps the lead"
    );

    // The store: every transition status shows is journaled once, in order, and chains verify.
    let problems = journal_problems(&mut etcd, &keys, &systems.list(&ListParams::default()).await.unwrap().items).await;
    assert!(problems.is_empty(), "journal:\n{}", problems.join("\n"));
    let log = a.log_text();
    assert!(
        log.contains("names another replica") || log.contains("lost leadership") || log.contains("fenced out"),
        "the old leader noticed it was deposed:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    eprintln!("{} status updates watched, none stale", seen.updates);
}

/// The mechanism the loop's writes rely on, on the real apiserver: a status patch carrying the
/// resourceVersion it was computed from is refused with 409 once the object moved on, and the
/// same patch from the current version is accepted.
#[tokio::test]
async fn a_status_write_computed_from_an_old_version_is_refused_with_409() {
    use kube::api::{Patch, PatchParams};
    use suyun_crds::v1alpha1::GovSystemStatus;
    use suyun_operator::migration::{is_conflict, status_patch};

    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    let ns = "js-conflict";
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    let _ = namespaces
        .create(&Default::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap())
        .await;
    let system = apply::<GovSystem>(&client, &fixtures::system(ns, "JS-320000-9001", "none", 1, "")).await;
    let api = Api::<GovSystem>::namespaced(client.clone(), ns);
    let name = system.name_any();
    let read = api.get(&name).await.unwrap();
    let old = read.status.clone().unwrap_or_default();

    // Another writer moves the object on.
    let other = GovSystemStatus { phase: Some(Phase::Scheduled), ..Default::default() };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status_patch(&old, &other, None))).await.unwrap();

    // A write computed from what was read before is refused…
    let stale = GovSystemStatus { phase: Some(Phase::Blocked), ..Default::default() };
    let refused = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&status_patch(&old, &stale, read.resource_version().as_deref())),
        )
        .await
        .unwrap_err();
    assert!(is_conflict(&refused), "{refused}");
    let now = api.get(&name).await.unwrap();
    assert_eq!(now.status.as_ref().and_then(|s| s.phase), Some(Phase::Scheduled), "the stale write changed nothing");
    // …and computed again from the current version, accepted.
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&status_patch(
            &now.status.clone().unwrap_or_default(),
            &stale,
            now.resource_version().as_deref(),
        )),
    )
    .await
    .unwrap();
    let _ = namespaces.delete(ns, &Default::default()).await;
}
