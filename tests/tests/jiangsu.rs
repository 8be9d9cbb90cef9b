//! The Jiangsu example end to end: 14 nodes, 24 tenants, 60 systems, two Simulated waves. The
//! operator provisions the tenants, plans everything, runs wave-1 by itself, holds wave-2's
//! cutovers until the cities approve, then finishes it.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, WavePhase};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, fixtures};

async fn wave_phase(api: &Api<MigrationWave>, name: &str, want: WavePhase, timeout: Duration) {
    eventually(timeout, || async {
        let w = api.get(name).await?.status.unwrap_or_default();
        anyhow::ensure!(w.phase == Some(want), "{name}: {:?} {:?} {:?}", w.phase, w.progress, w.systems_by_phase);
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_jiangsu_example_migrates_by_itself_with_approvals_for_wave_2() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    fixtures::apply_jiangsu_example(&client).await;
    let _operator =
        OperatorProcess::start(cluster, "jiangsu-example", &["--lease-name=suyun-jiangsu-test", "--debounce-ms=200"])
            .unwrap();
    let waves = Api::<MigrationWave>::all(client.clone());
    wave_phase(&waves, "wave-1", WavePhase::Completed, Duration::from_secs(180)).await;

    // wave-2 waits for approvals: approve each system as it arrives.
    let systems = Api::<GovSystem>::all(client.clone());
    eventually(Duration::from_secs(180), || async {
        let all = systems.list(&ListParams::default().labels("suyun.io/wave=wave-2")).await?.items;
        let mut pending = 0;
        for s in &all {
            let phase = s.status.as_ref().and_then(|s| s.phase);
            if phase == Some(Phase::AwaitingCutover) {
                let approve = json!({"metadata": {"annotations": {"suyun.io/cutover-approved-by": "ops@jiangsu"}}});
                Api::<GovSystem>::namespaced(client.clone(), &s.namespace().unwrap())
                    .patch(&s.name_any(), &PatchParams::default(), &Patch::Merge(&approve))
                    .await?;
            }
            if !matches!(phase, Some(Phase::Completed | Phase::NotMigrated)) {
                pending += 1;
            }
        }
        anyhow::ensure!(pending == 0, "{pending} wave-2 systems not finished");
        Ok(())
    })
    .await
    .unwrap();
    wave_phase(&waves, "wave-2", WavePhase::Completed, Duration::from_secs(60)).await;

    let all = systems.list(&ListParams::default()).await.unwrap().items;
    let completed = all.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed)).count();
    let not_migrated =
        all.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(Phase::NotMigrated)).count();
    assert_eq!((completed, not_migrated), (58, 2));
    // Every node's account adds up to its completed systems (the CloudNode controller shows the
    // accounts a moment after the loop computes them).
    let nodes = Api::<CloudNode>::all(client.clone());
    eventually(Duration::from_secs(30), || async {
        let items = nodes.list(&ListParams::default()).await?.items;
        let total: u32 = items
            .iter()
            .map(|n| n.status.as_ref().and_then(|s| s.systems_by_phase.get("Completed").copied()).unwrap_or(0))
            .sum();
        anyhow::ensure!(total == 58, "node accounts show {total} Completed systems");
        Ok(())
    })
    .await
    .unwrap();
    fixtures::clean(&client).await;
}
