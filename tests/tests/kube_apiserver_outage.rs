//! The kube-apiserver down for 60 s under a leading operator with migrations in flight: the
//! operator process never exits (it stops leading when it cannot renew its Lease, keeps
//! campaigning, and leads again when the apiserver is back), and every migration resumes where
//! it was: no system starts again (`startedAt` kept, `attempts` 0, same node), no phase moves
//! backwards in the snapshots the test takes, and every system completes.
//!
//! The test stops a component, so it runs on a control plane of its own
//! (`target/outage-kube-apiserver`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{eventually, install_crds, repo_root, with_own_cluster};

const SYSTEMS: usize = 12;
const OUTAGE: Duration = Duration::from_secs(60);

/// Position of a phase on the way to Completed (waiting phases first).
fn rank(phase: Option<Phase>) -> u8 {
    match phase {
        None | Some(Phase::Pending | Phase::Blocked) => 0,
        Some(Phase::Scheduled) => 1,
        Some(Phase::Provisioning) => 2,
        Some(Phase::Replicating) => 3,
        Some(Phase::AwaitingCutover) => 4,
        Some(Phase::CuttingOver) => 5,
        Some(Phase::Verifying) => 6,
        Some(Phase::Completed) => 7,
        // Off the happy path: the test fails on any of these.
        Some(_) => 100,
    }
}

/// What the test saw of one system.
#[derive(Debug, Default, Clone)]
struct Seen {
    phases: Vec<Option<Phase>>,
    started_at: Option<String>,
    node: Option<String>,
}

#[test]
fn the_operator_survives_a_60_second_kube_apiserver_outage_and_resumes_every_migration() {
    let dir = repo_root().join("target/outage-kube-apiserver");
    with_own_cluster(&dir, false, |cluster| async move {
        let client = cluster.client().await?;
        install_crds(&client).await?;
        apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 1000, 4)).await;
        apply::<Tenant>(&client, &fixtures::tenant("js-edu", "Provincial", "320000", "jiangsu", 100)).await;
        // 120 simulated minutes of fixed phases / 240 ≈ 31 s per system.
        apply::<MigrationWave>(&client, &fixtures::wave("w", "  executor: Simulated\n  timeCompression: 240\n")).await;
        let store = [
            "--lease-name=suyun-outage".to_owned(),
            "--debounce-ms=100".to_owned(),
            format!("--store-endpoints={}", cluster.etcd_endpoints),
            "--store-prefix=/suyun-outage".to_owned(),
        ];
        let mut operator =
            OperatorProcess::start(&cluster, "outage", &store.iter().map(String::as_str).collect::<Vec<_>>())?;
        let pid = operator.pid();
        eventually(Duration::from_secs(30), || async {
            Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get("js-edu").await?)
        })
        .await?;
        for n in 1..=SYSTEMS {
            apply::<GovSystem>(&client, &fixtures::system("js-edu", &format!("JS-320000-{n:04}"), "w", 2, "")).await;
        }

        // Snapshots every 250 ms (they fail while the apiserver is down).
        let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
        let snapshots = {
            let (seen, api) = (seen.clone(), Api::<GovSystem>::all(client.clone()));
            tokio::spawn(async move {
                loop {
                    if let Ok(list) = api.list(&ListParams::default()).await {
                        let mut seen = seen.lock().unwrap();
                        for s in list.items {
                            let status = s.status.clone().unwrap_or_default();
                            let entry = seen.entry(s.spec.system_id.clone()).or_default();
                            if entry.phases.last() != Some(&status.phase) {
                                entry.phases.push(status.phase);
                            }
                            if let Some(at) = status.started_at.as_ref().map(|t| t.0.to_string()) {
                                entry.started_at.get_or_insert(at);
                            }
                            if status.phase.is_some_and(|p| p.is_active()) {
                                entry.node.get_or_insert_with(|| status.node.clone().unwrap_or_default());
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };

        // Migrations in flight: four started, at least one past provisioning.
        let api = Api::<GovSystem>::all(client.clone());
        eventually(Duration::from_secs(90), || async {
            let all = api.list(&ListParams::default()).await?.items;
            let active = all.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_active()));
            let past = all.iter().filter(|s| rank(s.status.as_ref().and_then(|s| s.phase)) >= 3).count();
            anyhow::ensure!(active.count() >= 4 && past >= 1, "not enough in flight");
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log_text()))?;
        let before: BTreeMap<String, GovSystem> =
            api.list(&ListParams::default()).await?.items.into_iter().map(|s| (s.spec.system_id.clone(), s)).collect();
        let started_before: Vec<&String> = before
            .iter()
            .filter(|(_, s)| s.status.as_ref().is_some_and(|st| st.started_at.is_some()))
            .map(|(id, _)| id)
            .collect();

        // The outage.
        cluster.component("stop", "kube-apiserver")?;
        let down = Instant::now();
        while down.elapsed() < OUTAGE {
            assert!(operator.running(), "the operator exited during the outage:\n{}", operator.log_text());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let log = operator.log_text();
        assert!(
            log.contains("could not renew the leader Lease in time: no longer leading"),
            "a leader that cannot renew its Lease must stop leading:\n{log}"
        );
        cluster.component("start", "kube-apiserver")?;
        let back = Instant::now();

        // Every system completes, with the same process leading again.
        let done = eventually(Duration::from_secs(240), || async {
            let all = api.list(&ListParams::default()).await?.items;
            let completed = all.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed));
            let n = completed.count();
            anyhow::ensure!(n == SYSTEMS, "{n}/{SYSTEMS} Completed");
            Ok(all)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log_text()))?;
        eprintln!("all {SYSTEMS} systems Completed {:?} after the apiserver came back", back.elapsed());
        snapshots.abort();
        assert!(operator.running(), "the operator exited:\n{}", operator.log_text());
        assert_eq!(operator.pid(), pid);
        let log = operator.log_text();
        assert!(log.matches("leading: starting controllers").count() >= 2, "led again after the outage:\n{log}");

        let seen = seen.lock().unwrap().clone();
        for s in &done {
            let id = &s.spec.system_id;
            let status = s.status.clone().unwrap_or_default();
            assert_eq!(status.attempts, 0, "{id}: attempts {}", status.attempts);
            let ranks: Vec<u8> = seen[id].phases.iter().map(|p| rank(*p)).collect();
            assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{id}: phases went backwards: {:?}", seen[id].phases);
            assert!(ranks.iter().all(|r| *r < 100), "{id}: off the happy path: {:?}", seen[id].phases);
            let final_start = status.started_at.as_ref().map(|t| t.0.to_string());
            assert_eq!(final_start, seen[id].started_at, "{id}: startedAt changed (its migration restarted)");
            assert_eq!(status.node, seen[id].node, "{id}: moved to another node");
            if started_before.contains(&id) {
                let then = before[id].status.as_ref().and_then(|s| s.started_at.as_ref()).map(|t| t.0.to_string());
                assert_eq!(final_start, then, "{id}: started before the outage, restarted after it");
            }
        }
        eprintln!(
            "{} systems were in flight or done before the outage: {:?}",
            started_before.len(),
            before.values().map(|s| (s.name_any(), s.status.as_ref().and_then(|s| s.phase))).collect::<Vec<_>>()
        );
        assert!(operator.terminate(), "a clean stop after the outage:\n{}", operator.log_text());
        Ok(())
    })
    .unwrap();
}
