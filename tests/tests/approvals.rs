//! Cutover approvals against the real operator and status store: an approval is used up by the
//! cutover it approves (a retried cutover needs a new one, and the used one never counts
//! again), a revoked approval stays revoked for a new leader, and what happened is said in the
//! `CutoverApproved` condition and the journal. Approvals are written into the store exactly as
//! the REST API writes them (`approvals/<systemId>`), so this test needs no apiserver.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CUTOVER_APPROVED_BY, CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_store::readmodel::{ApprovalRecord, JournalEntry, Keys};
use suyun_tests::etcd::{connect, unique_prefix};
use suyun_tests::fixtures::{self, JOB_RUNNER, JobRunner, Outcome, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually};

const RETRIED: &str = "JS-320500-0101";
const REVOKED: &str = "JS-320500-0102";
const NS: &str = "suzhou-approvals";

fn approval(id: &str, by: &str, reason: &str) -> Vec<u8> {
    serde_json::to_vec(&ApprovalRecord {
        system_id: id.into(),
        region_code: "320500".into(),
        approved_by: by.into(),
        scope: "320500".into(),
        time: "2026-11-29T08:00:00Z".into(),
        reason: Some(reason.into()),
    })
    .unwrap()
}

async fn system(client: &Client, id: &str) -> GovSystem {
    Api::<GovSystem>::namespaced(client.clone(), NS).get(&id.to_lowercase()).await.unwrap()
}

fn approved(s: &GovSystem) -> Option<(String, String)> {
    let c = s.status.as_ref()?.conditions.iter().find(|c| c.type_ == "CutoverApproved")?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Waits until `check` holds for system `id`, showing its status otherwise.
async fn until(client: &Client, id: &str, what: &str, check: impl Fn(&GovSystem) -> bool) -> GovSystem {
    eventually(Duration::from_secs(60), || async {
        let s = system(client, id).await;
        anyhow::ensure!(check(&s), "{id} not {what}: {:?} {:?}", s.status.as_ref().and_then(|s| s.phase), approved(&s));
        Ok(s)
    })
    .await
    .unwrap()
}

fn phase(s: &GovSystem) -> Option<Phase> {
    s.status.as_ref().and_then(|s| s.phase)
}

fn start(name: &str, store: &[&str]) -> OperatorProcess {
    let lease = format!("--lease-name={name}");
    let mut args = vec![lease.as_str(), "--debounce-ms=100", "--retry-backoff-seconds=1"];
    args.extend_from_slice(store);
    OperatorProcess::start(cluster(), name, &args).unwrap()
}

#[tokio::test]
async fn an_approval_is_used_up_by_its_cutover_and_a_revocation_outlives_the_leader() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let client = cluster().client().await.unwrap();
    suyun_tests::install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let prefix = unique_prefix("approvals");
    let endpoint = cluster().etcd_endpoints.clone();
    let keys = Keys::new(&prefix);
    let mut etcd = connect(&endpoint).await.unwrap();
    let store = [format!("--store-endpoints={endpoint}"), format!("--store-prefix={prefix}")];
    let store: Vec<&str> = store.iter().map(String::as_str).collect();
    let mut operator = start("approvals-a", &store);

    // The first cutover attempt of RETRIED fails; everything else succeeds.
    let runner = JobRunner::start(&client, Duration::from_millis(200), |job| {
        if job.system_id == RETRIED && job.phase == "cuttingover" && job.attempt == 0 {
            Outcome::Fail
        } else {
            Outcome::Succeed
        }
    });
    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 100, 4)).await;
    apply::<CloudNode>(&client, &fixtures::cloud_node("suzhou", "City", "320500", 100, 4)).await;
    apply::<Tenant>(&client, &fixtures::tenant(NS, "City", "320500", "suzhou", 10)).await;
    eventually(Duration::from_secs(30), || async {
        Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get(NS).await?)
    })
    .await
    .unwrap();
    let gated = format!("  approval: {{required: true}}\n  maxAttempts: 3\n{JOB_RUNNER}");
    apply::<MigrationWave>(&client, &fixtures::wave("w", &gated)).await;
    apply::<MigrationWave>(&client, &fixtures::wave("held", &format!("  paused: true\n{gated}"))).await;
    apply::<GovSystem>(&client, &fixtures::system(NS, RETRIED, "w", 2, "")).await;
    apply::<GovSystem>(&client, &fixtures::system(NS, REVOKED, "held", 2, "")).await;

    // RETRIED waits; a store approval opens its cutover and is used up.
    until(&client, RETRIED, "awaiting", |s| phase(s) == Some(Phase::AwaitingCutover)).await;
    etcd.put(keys.approval(RETRIED), approval(RETRIED, "li.na", "CHG-1"), None).await.unwrap();
    // The first attempt fails: back to AwaitingCutover, needing a new approval.
    let retry = until(&client, RETRIED, "waiting for a new approval", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.phase == Some(Phase::AwaitingCutover) && st.reason.as_deref() == Some("CutoverRetryNeedsApproval")
        })
    })
    .await;
    assert_eq!(retry.status.as_ref().unwrap().attempts, 1);
    eventually(Duration::from_secs(10), || {
        let (mut etcd, key) = (etcd.clone(), keys.approval(RETRIED));
        async move {
            anyhow::ensure!(etcd.get(key, None).await?.kvs().is_empty(), "the used approval is still in the store");
            Ok(())
        }
    })
    .await
    .unwrap();
    // Nothing approves the retry by itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = system(&client, RETRIED).await;
    assert_eq!(phase(&still), Some(Phase::AwaitingCutover), "a used approval approved a retry");
    assert_eq!(approved(&still), Some(("False".into(), "NotApproved".into())));
    // A new approval (by annotation this time) lets attempt 1 run, and is used up too.
    let annotate = json!({"metadata": {"annotations": {CUTOVER_APPROVED_BY: "ops.province"}}});
    Api::<GovSystem>::namespaced(client.clone(), NS)
        .patch(&RETRIED.to_lowercase(), &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    let done = until(&client, RETRIED, "Completed", |s| phase(s) == Some(Phase::Completed)).await;
    assert_eq!(done.status.as_ref().unwrap().approved_by.as_deref(), Some("ops.province"));
    assert_eq!(approved(&done), Some(("True".into(), "Used".into())));
    until(&client, RETRIED, "rid of the used annotation", |s| !s.annotations().contains_key(CUTOVER_APPROVED_BY)).await;
    let cutovers: Vec<_> =
        runner.seen().into_iter().filter(|j| j.system_id == RETRIED && j.phase == "cuttingover").collect();
    assert_eq!(cutovers.iter().map(|j| j.attempt).collect::<Vec<_>>(), [0, 1], "one cutover Job per approval");
    // The journal names each approver with the reason, in order.
    let journal = eventually(Duration::from_secs(10), || {
        let (mut etcd, prefix) = (etcd.clone(), keys.journal_of(RETRIED));
        async move {
            let kvs = etcd.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())).await?;
            let entries: Vec<JournalEntry> =
                kvs.kvs().iter().map(|kv| serde_json::from_slice(kv.value()).unwrap()).collect();
            anyhow::ensure!(entries.last().is_some_and(|e| e.to == "Completed"), "journal: {entries:?}");
            Ok(entries)
        }
    })
    .await
    .unwrap();
    let approvers: Vec<_> = journal
        .iter()
        .filter(|e| e.to == "CuttingOver")
        .map(|e| (e.actor.as_str(), e.approval_reason.as_deref()))
        .collect();
    assert_eq!(approvers, [("li.na", Some("CHG-1")), ("ops.province", None)], "{journal:?}");

    // REVOKED: approved while its wave is paused, then revoked in the store.
    etcd.put(keys.approval(REVOKED), approval(REVOKED, "li.na", "CHG-2"), None).await.unwrap();
    until(&client, REVOKED, "approved", |s| approved(s) == Some(("True".into(), "Approved".into()))).await;
    etcd.delete(keys.approval(REVOKED), None).await.unwrap();
    until(&client, REVOKED, "revoked", |s| approved(s) == Some(("False".into(), "NotApproved".into()))).await;
    // A new leader does not bring it back; the wave resumes and the system waits.
    assert!(operator.terminate(), "the operator stops on SIGTERM");
    let _operator = start("approvals-b", &store);
    let resume = json!({"spec": {"paused": false}});
    Api::<MigrationWave>::all(client.clone())
        .patch("held", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    until(&client, REVOKED, "awaiting", |s| phase(s) == Some(Phase::AwaitingCutover)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = system(&client, REVOKED).await;
    assert_eq!(phase(&waiting), Some(Phase::AwaitingCutover), "a revoked approval was used");
    assert_eq!(approved(&waiting), Some(("False".into(), "NotApproved".into())));
    assert!(!runner.seen().iter().any(|j| j.system_id == REVOKED && j.phase == "cuttingover"));
    fixtures::clean(&client).await;
}
