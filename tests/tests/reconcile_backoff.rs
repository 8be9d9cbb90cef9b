//! Reconcile errors back off exponentially, per object, against the real kube-apiserver and
//! the real operator binary: one Tenant that cannot be provisioned (its Namespace is held in
//! Terminating, so nothing can be created in it) is retried after 1, 2, 4, 8, 16 s…, shows the
//! refusal in its `Ready` condition, and other Tenants keep reconciling meanwhile.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use suyun_crds::v1alpha1::{CloudNode, Tenant};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, WAIT, cluster, eventually, fixtures, install_crds};

/// The `reconcile failed; retrying` lines of the operator's JSON log for one Tenant: when,
/// the delay it announced, and the failure count.
fn failures_of(log: &str, tenant: &str) -> Vec<(jiff::Timestamp, u64, u64)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["message"] == "reconcile failed; retrying" && e["kind"] == "Tenant" && e["name"] == tenant)
        .filter_map(|e| {
            Some((e["timestamp"].as_str()?.parse().ok()?, e["retry_in_ms"].as_u64()?, e["failures"].as_u64()?))
        })
        .collect()
}

/// Releases the Namespace held in Terminating when the test ends, even when it fails, so that
/// later tests' clean-up does not wait for it.
struct Release(&'static str);

impl Drop for Release {
    fn drop(&mut self) {
        cluster().kubectl(&["patch", "namespace", self.0, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    }
}

#[tokio::test]
async fn a_failing_tenant_backs_off_exponentially_while_others_reconcile() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let stuck = "backoff-stuck";
    let _release = Release(stuck);
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let mut operator = OperatorProcess::start(
        cluster,
        "reconcile-backoff",
        &["--lease-name=reconcile-backoff", "--log-format=json", "--debounce-ms=100"],
    )
    .unwrap();
    fixtures::apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 4000, 50)).await;
    fixtures::apply::<CloudNode>(&client, &fixtures::cloud_node("nanjing", "City", "320100", 4000, 50)).await;
    // A Namespace held in Terminating by a finalizer: nothing can be created in it, so the
    // Tenant of that name fails to reconcile until it is released. Its home node does not
    // exist, so no CloudNode change triggers it: only its own retries do.
    let namespaces = Api::<Namespace>::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": stuck, "finalizers": ["suyun.io/test-hold"]}})).unwrap();
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    namespaces.delete(stuck, &DeleteParams::default()).await.unwrap();
    let other = "backoff-other";
    fixtures::apply::<Tenant>(&client, &fixtures::tenant(other, "City", "320100", "nanjing", 10)).await;
    let tenants = Api::<Tenant>::all(client.clone());
    let ready_for = |name: &'static str, generation: i64| {
        let tenants = tenants.clone();
        async move {
            eventually(WAIT, || async {
                let t = tenants.get(name).await?;
                let s = t.status.context("no status")?;
                ensure!(s.observed_generation >= Some(generation), "generation {generation} not observed");
                ensure!(s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"), "not Ready: {s:?}");
                Ok(())
            })
            .await
        }
    };
    ready_for(other, 1).await.unwrap();

    fixtures::apply::<Tenant>(&client, &fixtures::tenant(stuck, "City", "320100", "no-such-node", 10)).await;
    // The refusal is shown on the Tenant.
    eventually(WAIT, || async {
        let t = tenants.get(stuck).await?;
        let c = t.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).context("no Ready")?;
        ensure!(c.status == "False" && c.message.contains("applying "), "Ready is {c:?}");
        Ok(())
    })
    .await
    .unwrap();
    // While it backs off, the other Tenant keeps reconciling: a spec change is observed at once.
    let started = std::time::Instant::now();
    for generation in 2..=4 {
        let patch = json!({"spec": {"quota": {"maxSystems": 10 + generation}}});
        tenants.patch(other, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        ready_for(other, generation).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the other Tenant waited {:?}", started.elapsed());

    // Six failures take 1 + 2 + 4 + 8 + 16 s at least.
    let seen = eventually(Duration::from_secs(60), || async {
        let seen = failures_of(&operator.log_text(), stuck);
        ensure!(seen.len() >= 6, "{} failures so far", seen.len());
        Ok(seen)
    })
    .await
    .unwrap();
    let delays: Vec<u64> = seen.iter().map(|(_, d, _)| *d).collect();
    assert_eq!(&delays[..6], &[1_000, 2_000, 4_000, 8_000, 16_000, 32_000], "announced delays: {delays:?}");
    assert_eq!(seen.iter().map(|(_, _, n)| *n).take(6).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    // The retries really are that far apart, whatever else triggers the Tenant meanwhile (its
    // own status write after the first failure, the accounts of a new Tenant).
    for pair in seen[..6].windows(2) {
        let gap = (pair[1].0 - pair[0].0).total(jiff::Unit::Millisecond).unwrap();
        let announced = pair[0].1 as f64;
        assert!(gap >= 0.9 * announced, "retry after {gap} ms, announced {announced} ms: {seen:?}");
        assert!(gap <= announced + 3_000.0, "retry after {gap} ms, announced {announced} ms: {seen:?}");
    }
    assert!(operator.running() && !operator.log_text().contains("panicked"), "the operator died");

    tenants.delete(stuck, &DeleteParams::default()).await.unwrap();
    assert!(operator.terminate(), "the operator did not stop cleanly");
}
