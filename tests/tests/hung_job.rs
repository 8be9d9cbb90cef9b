//! A hung Job executor Pod: the test control plane has no Job controller and no kubelet, so a Job
//! the operator creates never runs, as if its Pod hung. The phase's deadline (the runner's
//! `timeoutSeconds`) moves the system to a retry with a new Job (its own deterministic name and
//! `SUYUN_ATTEMPT`), then, when `maxAttempts` are used up, to `Failed` with a rollback Job; the
//! test plays the Job controller for the rollback Job (marks it Complete through the status
//! subresource) and the system ends `RolledBack` with its capacity returned.
//!
//! `migration.rs` covers Jobs that *fail*; this covers Jobs that never finish.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, WAIT, cluster, eventually, install_crds};

const TIMEOUT_SECONDS: u64 = 4;

fn env(job: &Job, name: &str) -> Option<String> {
    let container = &job.spec.as_ref()?.template.spec.as_ref()?.containers[0];
    container.env.iter().flatten().find(|e| e.name == name)?.value.clone()
}

async fn jobs(client: &Client) -> anyhow::Result<Vec<Job>> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=suyun-operator");
    let mut jobs = Api::<Job>::namespaced(client.clone(), "js-edu").list(&lp).await?.items;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(jobs)
}

async fn system(client: &Client) -> anyhow::Result<GovSystem> {
    Ok(Api::<GovSystem>::namespaced(client.clone(), "js-edu").get("js-320000-0001").await?)
}

#[tokio::test]
async fn a_hung_job_times_out_is_retried_then_rolled_back() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let operator = OperatorProcess::start(
        cluster,
        "hung-job",
        &["--lease-name=hung-job", "--debounce-ms=100", "--retry-backoff-seconds=1"],
    )
    .unwrap();
    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 100, 4)).await;
    apply::<Tenant>(&client, &fixtures::tenant("js-edu", "Provincial", "320000", "jiangsu", 10)).await;
    eventually(WAIT, || async {
        Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get("js-edu").await?)
    })
    .await
    .unwrap();
    let runner = format!(
        "  executor: Job\n  maxAttempts: 2\n  failureBudget: 100\n  runner: {{image: registry.example.gov.cn/suyun/runner:1, command: [/runner], timeoutSeconds: {TIMEOUT_SECONDS}}}\n"
    );
    apply::<MigrationWave>(&client, &fixtures::wave("w", &runner)).await;
    apply::<GovSystem>(&client, &fixtures::system("js-edu", "JS-320000-0001", "w", 30, "")).await;

    // Attempt 1 hangs until its deadline; the retry is a new Job; attempt 2 hangs too.
    let first = eventually(WAIT, || async {
        let jobs = jobs(&client).await?;
        anyhow::ensure!(!jobs.is_empty(), "no Job yet");
        Ok(jobs[0].clone())
    })
    .await
    .unwrap();
    let created = Instant::now();
    let retried = fixtures::wait_system(&client, "JS-320000-0001", "retrying", |s| {
        s.status.as_ref().is_some_and(|st| st.attempts == 1)
    })
    .await;
    let waited = created.elapsed();
    let message = retried.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
    assert!(message.contains(&format!("did not finish within {TIMEOUT_SECONDS} s")), "{message}");
    assert!(waited <= Duration::from_secs(TIMEOUT_SECONDS + 5), "the deadline passed {waited:?} after the Job");
    let failed = eventually(Duration::from_secs(60), || async {
        let s = system(&client).await?;
        let phase = s.status.as_ref().and_then(|s| s.phase);
        anyhow::ensure!(phase == Some(Phase::Failed), "phase {phase:?}: {:?}", s.status);
        Ok(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
    let message = failed.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
    assert!(message.contains("failed 2 times") && message.contains("rolling back"), "{message}");
    let nodes = Api::<CloudNode>::all(client.clone());
    let allocated_cpu = || async {
        let status = nodes.get("jiangsu").await?.status;
        Ok::<_, anyhow::Error>(status.and_then(|s| s.allocated).and_then(|a| a.cpu).map(|q| q.0))
    };
    eventually(WAIT, || async {
        let alloc = allocated_cpu().await?;
        anyhow::ensure!(alloc.as_deref() == Some("30"), "allocated cpu {alloc:?} while rolling back");
        Ok(())
    })
    .await
    .unwrap();

    // Three Jobs: two provisioning attempts with distinct deterministic names, then a rollback.
    let rollback = eventually(WAIT, || async {
        let jobs = jobs(&client).await?;
        let rollback = jobs.iter().find(|j| j.labels().get("suyun.io/phase").map(String::as_str) == Some("rollback"));
        rollback.cloned().ok_or_else(|| anyhow::anyhow!("no rollback Job among {}", jobs.len()))
    })
    .await
    .unwrap();
    let all = jobs(&client).await.unwrap();
    let provisioning: Vec<&Job> =
        all.iter().filter(|j| j.labels().get("suyun.io/phase").map(String::as_str) == Some("provisioning")).collect();
    let names: Vec<String> = provisioning.iter().map(|j| j.name_any()).collect();
    assert_eq!(names, ["js-320000-0001-provisioning-0", "js-320000-0001-provisioning-1"], "one Job per attempt");
    assert_eq!(first.name_any(), names[0]);
    let attempts: Vec<Option<String>> = provisioning.iter().map(|j| env(j, "SUYUN_ATTEMPT")).collect();
    assert_eq!(attempts, [Some("0".to_owned()), Some("1".to_owned())]);
    for job in &provisioning {
        let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        assert_eq!(deadline, Some(TIMEOUT_SECONDS as i64), "{}: activeDeadlineSeconds", job.name_any());
    }
    assert_eq!(all.len(), 3, "{:?}", all.iter().map(|j| j.name_any()).collect::<Vec<_>>());

    // The test plays the Job controller: the rollback Job completes.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let complete = json!({"status": {
        "startTime": now, "completionTime": now, "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastTransitionTime": now},
        ],
    }});
    Api::<Job>::namespaced(client.clone(), "js-edu")
        .patch_status(&rollback.name_any(), &PatchParams::default(), &Patch::Merge(&complete))
        .await
        .unwrap();
    let rolled = fixtures::wait_system(&client, "JS-320000-0001", "RolledBack", |s| {
        s.status.as_ref().and_then(|s| s.phase) == Some(Phase::RolledBack)
    })
    .await;
    assert_eq!(rolled.status.as_ref().and_then(|s| s.node.clone()), None);
    // Its 30 cpu are given back.
    eventually(WAIT, || async {
        let alloc = allocated_cpu().await?;
        anyhow::ensure!(alloc.as_deref().is_none_or(|a| a == "0"), "allocated cpu {alloc:?}");
        Ok(())
    })
    .await
    .unwrap();
    drop(operator);
    fixtures::clean(&client).await;
}
