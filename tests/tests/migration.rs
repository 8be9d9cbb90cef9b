//! The migration flow end to end against the real kube-apiserver: the operator binary places
//! systems, drives them through their phases with Jobs (the test plays the runner) or the
//! Simulated executor, retries, rolls back, waits for approvals, dependencies, capacity and
//! paused waves, and provisions tenants.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant, WavePhase};
use suyun_tests::fixtures::{self, JOB_RUNNER, JobRunner, Outcome, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, WAIT, cluster, eventually, install_crds};

async fn setup(name: &str, args: &[&str]) -> (Client, OperatorProcess) {
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let lease = format!("--lease-name={name}");
    let mut all = vec![lease.as_str(), "--debounce-ms=100", "--retry-backoff-seconds=1"];
    all.extend_from_slice(args);
    let operator = OperatorProcess::start(cluster, name, &all).unwrap();
    (client, operator)
}

async fn province(client: &Client, cities: &[(&str, &str)], cpu: u32, concurrent: u32) {
    apply::<CloudNode>(client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", cpu, concurrent)).await;
    for (name, code) in cities {
        apply::<CloudNode>(client, &fixtures::cloud_node(name, "City", code, cpu, concurrent)).await;
    }
}

/// Waits until the operator has provisioned the tenant's Namespace.
async fn tenant(client: &Client, name: &str, level: &str, code: &str, home: &str) {
    apply::<Tenant>(client, &fixtures::tenant(name, level, code, home, 1000)).await;
    let ns = Api::<Namespace>::all(client.clone());
    eventually(WAIT, || {
        let ns = ns.clone();
        async move { Ok(ns.get(name).await?) }
    })
    .await
    .unwrap();
}

fn phase(s: &GovSystem) -> Option<Phase> {
    s.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test]
async fn a_wave_of_210_systems_over_3_nodes_goes_through_every_phase_with_approvals() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let (client, mut operator) = setup("migration-big-wave", &[]).await;
    province(&client, &[("nanjing", "320100"), ("suzhou", "320500")], 4000, 25).await;
    let tenants = [
        ("js-edu", "Provincial", "320000", "jiangsu"),
        ("nanjing-data", "City", "320100", "nanjing"),
        ("suzhou-data", "City", "320500", "suzhou"),
    ];
    for (name, level, code, home) in tenants {
        tenant(&client, name, level, code, home).await;
    }
    // The runner refuses (and records) any cutover of a system the test has not approved.
    let approved: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let (ok, bad) = (approved.clone(), violations.clone());
    let runner = JobRunner::start(&client, Duration::from_millis(200), move |j| {
        if j.phase == "cuttingover" && !ok.lock().unwrap().contains(&j.system_id) {
            bad.lock().unwrap().push(j.system_id.clone());
        }
        Outcome::Succeed
    });
    apply::<MigrationWave>(
        &client,
        &fixtures::wave("big", &format!("  maxConcurrent: 60\n  approval: {{required: true}}\n{JOB_RUNNER}")),
    )
    .await;
    for (t, (ns, _, code, _)) in tenants.iter().enumerate() {
        for k in 0..70 {
            let id = format!("JS-{code}-{:04}", k + 1);
            apply::<GovSystem>(&client, &fixtures::system(ns, &id, "big", 1 + (k + t) as u32 % 4, "")).await;
        }
    }
    // Systems stop in AwaitingCutover; the cities approve them as they arrive.
    let systems = Api::<GovSystem>::all(client.clone());
    let done = eventually(Duration::from_secs(300), || {
        let (systems, client, approved) = (systems.clone(), client.clone(), approved.clone());
        async move {
            let all = systems.list(&ListParams::default()).await?.items;
            for s in all.iter().filter(|s| phase(s) == Some(Phase::AwaitingCutover)) {
                approved.lock().unwrap().insert(s.spec.system_id.clone());
                let approve = json!({"metadata": {"annotations": {"suyun.io/cutover-approved-by": "ops@test"}}});
                Api::<GovSystem>::namespaced(client.clone(), &s.namespace().unwrap())
                    .patch(&s.name_any(), &PatchParams::default(), &Patch::Merge(&approve))
                    .await?;
            }
            let completed = all.iter().filter(|s| phase(s) == Some(Phase::Completed)).count();
            anyhow::ensure!(completed == 210, "{completed}/210 Completed");
            Ok(all)
        }
    })
    .await
    .unwrap();
    assert!(violations.lock().unwrap().is_empty(), "cutovers without approval: {:?}", violations.lock().unwrap());
    assert_eq!(approved.lock().unwrap().len(), 210, "every system waited in AwaitingCutover for its approval");

    // Every system ran each Job phase exactly once, on its node, within the node's concurrency.
    let seen = runner.seen();
    let mut phases: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for j in &seen {
        phases.entry(j.system_id.clone()).or_default().insert(j.phase.clone());
    }
    assert_eq!(phases.len(), 210);
    for (id, p) in &phases {
        let want: BTreeSet<String> =
            ["provisioning", "replicating", "cuttingover", "verifying"].map(String::from).into();
        assert_eq!(p, &want, "{id}");
    }
    assert_eq!(seen.len(), 840, "one Job per phase per system, no duplicates");
    for (node, peak) in runner.peak_per_node.lock().unwrap().iter() {
        assert!(*peak <= 25, "{peak} Jobs at once on {node}, above maxConcurrentMigrations 25");
    }
    for s in &done {
        let st = s.status.as_ref().unwrap();
        assert_eq!(st.approved_by.as_deref(), Some("ops@test"));
        assert!(st.completed_at.is_some() && st.started_at.is_some());
        let home = match s.namespace().as_deref() {
            Some("js-edu") => "jiangsu",
            Some("nanjing-data") => "nanjing",
            _ => "suzhou",
        };
        assert_eq!(st.node.as_deref(), Some(home), "{}", s.spec.system_id);
    }
    // Accounts: each node holds its 70 completed systems.
    let nodes = Api::<CloudNode>::all(client.clone());
    eventually(WAIT, || {
        let nodes = nodes.clone();
        async move {
            for n in ["jiangsu", "nanjing", "suzhou"] {
                let st = nodes.get(n).await?.status.unwrap_or_default();
                anyhow::ensure!(st.systems_by_phase.get("Completed") == Some(&70), "{n}: {:?}", st.systems_by_phase);
                anyhow::ensure!(st.active_migrations == 0, "{n}: {} active", st.active_migrations);
            }
            Ok(())
        }
    })
    .await
    .unwrap();
    let wave = Api::<MigrationWave>::all(client.clone()).get("big").await.unwrap().status.unwrap();
    assert_eq!((wave.phase, wave.completed, wave.progress.as_deref()), (Some(WavePhase::Completed), 210, Some("100%")));
    assert!(operator.running(), "{}", operator.log_text());
    fixtures::clean(&client).await;
}

#[tokio::test]
async fn failures_are_retried_then_rolled_back_and_capacity_returns() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let (client, _operator) = setup("migration-failures", &[]).await;
    province(&client, &[], 100, 10).await;
    tenant(&client, "js-edu", "Provincial", "320000", "jiangsu").await;
    // JS-...-0001 fails its first provisioning attempt; JS-...-0002 fails replicating every time.
    let runner = JobRunner::start(&client, Duration::from_millis(100), |j| {
        match (j.system_id.as_str(), j.phase.as_str(), j.attempt) {
            ("JS-320000-0001", "provisioning", 0) => Outcome::Fail,
            ("JS-320000-0002", "replicating", _) => Outcome::Fail,
            _ => Outcome::Succeed,
        }
    });
    apply::<MigrationWave>(
        &client,
        &fixtures::wave("w", &format!("  maxAttempts: 2\n  failureBudget: 100\n{JOB_RUNNER}")),
    )
    .await;
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0001", "w", 10, "")).await;
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0002", "w", 30, "")).await;

    let ok =
        fixtures::wait_system(&client, "JS-320000-0001", "Completed", |s| phase(s) == Some(Phase::Completed)).await;
    assert!(ok.status.unwrap().completed_at.is_some());
    let rolled =
        fixtures::wait_system(&client, "JS-320000-0002", "RolledBack", |s| phase(s) == Some(Phase::RolledBack)).await;
    assert_eq!(rolled.status.as_ref().unwrap().node, None);
    let seen = runner.seen();
    let attempts = |id: &str, p: &str| seen.iter().filter(|j| j.system_id == id && j.phase == p).count();
    assert_eq!(attempts("JS-320000-0001", "provisioning"), 2, "one failure, one retry");
    assert_eq!(attempts("JS-320000-0002", "replicating"), 2, "maxAttempts 2");
    assert_eq!(attempts("JS-320000-0002", "rollback"), 1);
    // The rolled-back system gave its 30 cpu back: only the completed one's 10 remain.
    let nodes = Api::<CloudNode>::all(client.clone());
    eventually(WAIT, || {
        let nodes = nodes.clone();
        async move {
            let alloc = nodes.get("jiangsu").await?.status.and_then(|s| s.allocated).and_then(|a| a.cpu).map(|q| q.0);
            anyhow::ensure!(alloc.as_deref() == Some("10"), "allocated cpu {alloc:?}");
            Ok(())
        }
    })
    .await
    .unwrap();
    // Events tell the story.
    let events = Api::<Event>::namespaced(client.clone(), "js-edu").list(&ListParams::default()).await.unwrap().items;
    let reasons: BTreeSet<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
    for r in ["PhaseFailed", "RolledBack", "Completed", "Started", "Scheduled"] {
        assert!(reasons.contains(r), "no {r} Event in {reasons:?}");
    }
    fixtures::clean(&client).await;
}

#[tokio::test]
async fn dependencies_capacity_and_pauses_hold_systems_until_they_clear() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let (client, _operator) = setup("migration-holds", &[]).await;
    province(&client, &[], 20, 10).await;
    tenant(&client, "js-edu", "Provincial", "320000", "jiangsu").await;
    apply::<MigrationWave>(
        &client,
        &fixtures::wave("sim", "  executor: Simulated\n  timeCompression: 1800\n  paused: true\n"),
    )
    .await;
    // A chain C → B → A, and a system too big for the node.
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0001", "sim", 2, "")).await;
    apply::<GovSystem>(
        &client,
        &fixtures::system("js-edu", "JS-320000-0002", "sim", 2, "  dependsOn: [JS-320000-0001]\n"),
    )
    .await;
    apply::<GovSystem>(
        &client,
        &fixtures::system("js-edu", "JS-320000-0003", "sim", 2, "  dependsOn: [JS-320000-0002]\n"),
    )
    .await;
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0004", "sim", 64, "")).await;

    // Paused: scheduled, not started, and the message says so.
    let held =
        fixtures::wait_system(&client, "JS-320000-0001", "Scheduled", |s| phase(s) == Some(Phase::Scheduled)).await;
    assert!(held.status.unwrap().message.unwrap().contains("paused"));
    let big = fixtures::wait_system(&client, "JS-320000-0004", "Blocked", |s| phase(s) == Some(Phase::Blocked)).await;
    let st = big.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("InsufficientCapacity"));
    assert!(st.message.as_deref().unwrap().contains("64"), "{:?}", st.message);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api = Api::<GovSystem>::namespaced(client.clone(), "js-edu");
    assert_eq!(
        phase(&api.get("js-320000-0001").await.unwrap()),
        Some(Phase::Scheduled),
        "a paused wave starts nothing"
    );

    // Unpause; raise the node's capacity: everything completes, the chain in order.
    let unpause = json!({"spec": {"paused": false}});
    Api::<MigrationWave>::all(client.clone())
        .patch("sim", &PatchParams::default(), &Patch::Merge(&unpause))
        .await
        .unwrap();
    let bigger = json!({"spec": {"capacity": {"cpu": "200"}}});
    Api::<CloudNode>::all(client.clone())
        .patch("jiangsu", &PatchParams::default(), &Patch::Merge(&bigger))
        .await
        .unwrap();
    let done = fixtures::wait_all(&client, Phase::Completed, 4, Duration::from_secs(120)).await;
    let by_id: BTreeMap<String, &GovSystem> = done.iter().map(|s| (s.spec.system_id.clone(), s)).collect();
    let t = |id: &str,
             f: fn(
        &suyun_crds::v1alpha1::GovSystemStatus,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        f(by_id[id].status.as_ref().unwrap()).unwrap().0
    };
    assert!(t("JS-320000-0002", |s| s.started_at.clone()) >= t("JS-320000-0001", |s| s.completed_at.clone()));
    assert!(t("JS-320000-0003", |s| s.started_at.clone()) >= t("JS-320000-0002", |s| s.completed_at.clone()));
    fixtures::clean(&client).await;
}

#[tokio::test]
async fn tenants_get_their_namespace_quota_policy_and_binding_repaired_when_deleted() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let (client, _operator) = setup("migration-tenants", &[]).await;
    province(&client, &[], 100, 4).await;
    tenant(&client, "js-edu", "Provincial", "320000", "jiangsu").await;
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), "js-edu");
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), "js-edu");
    let binding = Api::<RoleBinding>::namespaced(client.clone(), "js-edu");
    let q = eventually(WAIT, || {
        let quota = quota.clone();
        async move { Ok(quota.get("suyun-quota").await?) }
    })
    .await
    .unwrap();
    assert_eq!(q.spec.unwrap().hard.unwrap()["requests.cpu"].0, "100k", "the tenant's cpu quota, in canonical form");
    assert_eq!(q.metadata.owner_references.unwrap()[0].kind, "Tenant");
    // The children are applied one after another: the binding may come a moment after the quota.
    let rb = eventually(WAIT, || {
        let binding = binding.clone();
        async move { Ok(binding.get("suyun-tenant-admin").await?) }
    })
    .await
    .unwrap();
    assert_eq!(rb.subjects.unwrap()[0].name, "js-edu-admins");
    // Deleted by hand: put back.
    policy.delete("suyun-default-deny", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, || {
        let policy = policy.clone();
        async move { Ok(policy.get("suyun-default-deny").await?) }
    })
    .await
    .unwrap();
    // Edited by hand: put back (the controller compares with its cache before it applies, and
    // the edit that triggers the reconcile is in that cache by then).
    quota
        .patch(
            "suyun-quota",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "hard": { "requests.cpu": "1" } } })),
        )
        .await
        .unwrap();
    eventually(WAIT, || {
        let quota = quota.clone();
        async move {
            let hard = quota.get("suyun-quota").await?.spec.unwrap_or_default().hard.unwrap_or_default();
            anyhow::ensure!(hard["requests.cpu"].0 == "100k", "requests.cpu is {:?}", hard["requests.cpu"]);
            Ok(())
        }
    })
    .await
    .unwrap();
    // A tenant whose home node does not exist is not Ready and says why.
    apply::<Tenant>(&client, &fixtures::tenant("lost", "City", "320100", "nowhere", 5)).await;
    let tenants = Api::<Tenant>::all(client.clone());
    eventually(WAIT, || {
        let tenants = tenants.clone();
        async move {
            let t = tenants.get("lost").await?;
            let c = t.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "Ready");
            match c {
                Some(c) if c.status == "False" && c.reason == "HomeNodeNotFound" && c.message.contains("nowhere") => {
                    Ok(())
                }
                other => anyhow::bail!("Ready is {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    fixtures::clean(&client).await;
}

#[tokio::test]
async fn deleting_a_system_mid_migration_deletes_its_jobs() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let (client, _operator) = setup("migration-delete", &[]).await;
    province(&client, &[], 100, 4).await;
    tenant(&client, "js-edu", "Provincial", "320000", "jiangsu").await;
    // No runner: the provisioning Job stays unfinished.
    apply::<MigrationWave>(&client, &fixtures::wave("w", JOB_RUNNER)).await;
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0001", "w", 4, "")).await;
    let jobs = Api::<Job>::namespaced(client.clone(), "js-edu");
    eventually(WAIT, || {
        let jobs = jobs.clone();
        async move { Ok(jobs.get("js-320000-0001-provisioning-0").await?) }
    })
    .await
    .unwrap();
    Api::<GovSystem>::namespaced(client.clone(), "js-edu")
        .delete("js-320000-0001", &DeleteParams::background())
        .await
        .unwrap();
    eventually(Duration::from_secs(60), || {
        let jobs = jobs.clone();
        async move {
            let left = jobs.list(&ListParams::default()).await?.items.len();
            anyhow::ensure!(left == 0, "{left} Jobs left");
            Ok(())
        }
    })
    .await
    .unwrap();
    // Its capacity is free again.
    let nodes = Api::<CloudNode>::all(client.clone());
    eventually(WAIT, || {
        let nodes = nodes.clone();
        async move {
            let alloc = nodes.get("jiangsu").await?.status.and_then(|s| s.allocated).and_then(|a| a.cpu).map(|q| q.0);
            anyhow::ensure!(alloc.as_deref() == Some("0"), "allocated cpu {alloc:?}");
            Ok(())
        }
    })
    .await
    .unwrap();
    fixtures::clean(&client).await;
}
