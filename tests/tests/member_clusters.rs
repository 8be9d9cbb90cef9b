//! Member clusters end to end (issue 14), against real control planes: the management cluster
//! of `tests/cluster/up` and two member clusters (`suzhou`, `wuxi`), each its own
//! kube-apiserver and etcd. The operator reaches each member with a kubeconfig from a Secret in
//! its namespace and:
//!
//! - counts a member's Ready Nodes matching `nodeSelector` as the CloudNode's capacity (Nodes
//!   added, made NotReady, relabelled, removed), reports the most free on one machine, and
//!   refuses a system no single machine can hold (NoMachineFits) though the sum could;
//! - shows `ClusterReachable` (NoCredentials naming the Secret until it exists);
//! - provisions a tenant's children in the member of its home node (not in the other), repairs
//!   one deleted there, and deletes a Namespace no longer needed there, but not while it still
//!   runs a Pod;
//! - runs every Job of a migration in the member of the target node (none in the other member,
//!   none in the management cluster);
//! - pauses a migration while the member's kube-apiserver is stopped for 60 s, and resumes it
//!   afterwards: one Job per phase, attempt 0 only, nothing Failed, suyun_member_up 0 meanwhile.
//!
//! There is no kubelet and no Job controller in the members: the test plays the runner (marks
//! each Job of the operator's Complete), holding one phase back to pin a migration mid-flight.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Node, Pod, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, CloudNodeStatus, GovSystem, MigrationWave, Phase, Tenant};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, WAIT, cluster, eventually, install_crds, member};

/// The operator's namespace in this test: the kubeconfig Secrets live there.
const NAMESPACE: &str = "suyun-members";
const MANAGED: &str = "app.kubernetes.io/managed-by=suyun-operator";

fn city_node(name: &str, display: &str, code: &str, cluster: serde_json::Value) -> String {
    let cluster = serde_json::to_string(&cluster).unwrap();
    format!(
        "apiVersion: suyun.io/v1alpha1\nkind: CloudNode\nmetadata: {{name: {name}}}\nspec:\n  tier: City\n  regionCode: \"{code}\"\n  displayName: {display}\n  parent: jiangsu\n  capacityFrom: Nodes\n  securityLevel: 3\n  architectures: [x86_64]\n  maxConcurrentMigrations: 4\n  migrationBandwidthMbps: 10000\n  cluster: {cluster}\n"
    )
}

async fn put_secret(client: &Client, name: &str, key: &str, value: &str) {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
                        "stringData": {key: value}});
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .patch(name, &PatchParams::apply("suyun-tests").force(), &Patch::Apply(&secret))
        .await
        .unwrap();
}

/// Creates (or updates) a member Node with `cpu` cores, Ready or not, with `labels`.
async fn put_node(member: &Client, name: &str, cpu: u32, ready: bool, labels: serde_json::Value) {
    let nodes = Api::<Node>::all(member.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}});
    nodes.patch(name, &PatchParams::apply("suyun-tests").force(), &Patch::Apply(&node)).await.unwrap();
    let amounts = json!({"cpu": cpu.to_string(), "memory": "256Gi", "ephemeral-storage": "1Ti"});
    let status = json!({"status": {"allocatable": amounts, "capacity": amounts,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "Test",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

/// Removes what an earlier run left in a member: its Nodes, Pods in `default`, the operator's
/// Namespaces.
async fn reset_member(member: &Client) {
    let nodes = Api::<Node>::all(member.clone());
    for n in nodes.list(&ListParams::default()).await.unwrap() {
        let _ = nodes.delete(&n.name_any(), &DeleteParams::default()).await;
    }
    let pods = Api::<Pod>::namespaced(member.clone(), "default");
    let _ = pods.delete_collection(&DeleteParams::default().grace_period(0), &ListParams::default()).await;
    let namespaces = Api::<Namespace>::all(member.clone());
    eventually(Duration::from_secs(120), || async {
        let owned = namespaces.list(&ListParams::default().labels(MANAGED)).await?;
        for ns in &owned.items {
            // No kubelet: a Pod bound to a machine ends only when deleted at once, and until it
            // does its Namespace cannot go.
            let pods = Api::<Pod>::namespaced(member.clone(), &ns.name_any());
            let _ = pods.delete_collection(&DeleteParams::default().grace_period(0), &ListParams::default()).await;
            if ns.metadata.deletion_timestamp.is_none() {
                let _ = namespaces.delete(&ns.name_any(), &DeleteParams::background()).await;
            }
        }
        anyhow::ensure!(owned.items.is_empty(), "{} Namespaces left", owned.items.len());
        Ok(())
    })
    .await
    .unwrap();
}

async fn status(client: &Client, name: &str) -> anyhow::Result<CloudNodeStatus> {
    Ok(Api::<CloudNode>::all(client.clone()).get(name).await?.status.unwrap_or_default())
}

fn condition(s: &CloudNodeStatus, t: &str) -> Option<(String, String, String)> {
    s.conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until CloudNode `name` shows `cpu` allocatable cores from `ready` Ready Nodes.
async fn wait_capacity(client: &Client, name: &str, cpu: &str, ready: u32) -> CloudNodeStatus {
    eventually(WAIT, || async {
        let s = status(client, name).await?;
        let seen = (s.allocatable.as_ref().and_then(|a| a.cpu.clone()).map(|q| q.0), s.ready_nodes);
        anyhow::ensure!(seen == (Some(cpu.to_owned()), Some(ready)), "{name}: {seen:?}, want ({cpu}, {ready})");
        Ok(s)
    })
    .await
    .unwrap()
}

fn largest_free_cpu(s: &CloudNodeStatus) -> Option<String> {
    s.largest_free_on_one_machine.as_ref().and_then(|a| a.cpu.clone()).map(|q| q.0)
}

/// Plays the runner in one cluster: every 300 ms, marks the operator's unfinished Jobs
/// Complete, except those `held` (by `systemId/phase`); records every Job seen. Keeps going
/// through an outage of that cluster (a failed list is tried again).
struct Runner {
    seen: Arc<Mutex<BTreeSet<(String, String)>>>,
    held: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Runner {
    fn start(client: Client) -> Runner {
        let seen: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
        let held: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let (s, h) = (seen.clone(), held.clone());
        let task = tokio::spawn(async move {
            let jobs = Api::<Job>::all(client.clone());
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let Ok(list) = jobs.list(&ListParams::default().labels(MANAGED)).await else { continue };
                for job in list {
                    let ns = job.namespace().unwrap_or_default();
                    s.lock().unwrap().insert((ns.clone(), job.name_any()));
                    let labels = job.labels();
                    let key = format!(
                        "{}/{}",
                        labels.get("suyun.io/system-id").cloned().unwrap_or_default(),
                        labels.get("suyun.io/phase").cloned().unwrap_or_default()
                    );
                    let done = job.status.as_ref().is_some_and(|st| st.succeeded.unwrap_or(0) > 0);
                    if done || h.lock().unwrap().contains(&key) {
                        continue;
                    }
                    let api = Api::<Job>::namespaced(client.clone(), &ns);
                    let _ = api
                        .patch_status(
                            &job.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"status": {"succeeded": 1}})),
                        )
                        .await;
                }
            }
        });
        Runner { seen, held, task }
    }

    fn seen(&self) -> BTreeSet<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn system(client: &Client, id: &str) -> anyhow::Result<GovSystem> {
    Ok(Api::<GovSystem>::namespaced(client.clone(), "sz-gov").get(&id.to_lowercase()).await?)
}

async fn scrape_member_up(operator: &OperatorProcess, node: &str) -> Option<String> {
    let (_, text) = suyun_tests::prometheus::http_get(operator.metrics_addr, "/metrics").await.ok()?;
    let prefix = format!("suyun_member_up{{node=\"{node}\"");
    text.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.rsplit(' ').next()).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_clusters_carry_capacity_tenants_and_jobs_and_a_member_outage_pauses_migrations() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let suzhou = member("suzhou").unwrap();
    let wuxi = member("wuxi").unwrap();
    let (sz, wx) = (suzhou.client().await.unwrap(), wuxi.client().await.unwrap());
    futures::join!(reset_member(&sz), reset_member(&wx));
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    Api::<Namespace>::all(client.clone())
        .patch(NAMESPACE, &PatchParams::apply("suyun-tests"), &Patch::Apply(&namespace))
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), NAMESPACE);
    let _ = secrets.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    put_secret(&client, "suzhou-kubeconfig", "value", &std::fs::read_to_string(&suzhou.kubeconfig).unwrap()).await;

    // Member Nodes: two 16-core machines of the gov pool in 苏州, one 64-core outside it; one
    // 8-core machine in 无锡.
    let gov = json!({"suyun.io/pool": "gov"});
    put_node(&sz, "sz-1", 16, true, gov.clone()).await;
    put_node(&sz, "sz-2", 16, true, gov.clone()).await;
    put_node(&sz, "sz-3", 64, true, json!({})).await;
    put_node(&wx, "wx-1", 8, true, json!({})).await;

    let mut operator = OperatorProcess::start(
        cluster,
        "members",
        &[
            "--lease-name=members",
            &format!("--lease-namespace={NAMESPACE}"),
            "--debounce-ms=100",
            "--member-probe-interval-seconds=1",
            "--retry-backoff-seconds=1",
        ],
    )
    .unwrap();
    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 1000, 4)).await;
    apply::<CloudNode>(
        &client,
        &city_node("suzhou", "苏州市", "320500", json!({"nodeSelector": {"suyun.io/pool": "gov"}})),
    )
    .await;
    apply::<CloudNode>(
        &client,
        &city_node("wuxi", "无锡市", "320200", json!({"kubeconfigSecretRef": {"name": "wuxi-admin", "key": "config"}})),
    )
    .await;

    // Capacity from the member's Ready gov Nodes, and its version.
    let s = wait_capacity(&client, "suzhou", "32", 2).await;
    assert_eq!(largest_free_cpu(&s).as_deref(), Some("16"));
    let reachable = condition(&s, "ClusterReachable").unwrap();
    assert_eq!((reachable.0.as_str(), reachable.1.as_str()), ("True", "Reachable"), "{reachable:?}");
    let member_status = s.cluster.clone().unwrap();
    assert!(member_status.reachable && !member_status.capacity_stale, "{member_status:?}");
    assert!(member_status.kubernetes_version.as_deref().is_some_and(|v| v.starts_with("v1.")), "{member_status:?}");
    assert!(member_status.last_seen.is_some());
    // 无锡 has no Secret yet: the condition names the one it needs.
    let no_credentials = eventually(WAIT, || async {
        let c = condition(&status(&client, "wuxi").await?, "ClusterReachable");
        anyhow::ensure!(c.as_ref().is_some_and(|c| c.1 == "NoCredentials"), "{c:?}");
        Ok(c.unwrap())
    })
    .await
    .unwrap();
    assert!(no_credentials.2.contains("wuxi-admin"), "{no_credentials:?}");
    assert_eq!(scrape_member_up(&operator, "wuxi").await.as_deref(), Some("0"), "no credentials: not up");
    // 无锡 is reached as a city would join it (docs/multi-cluster.md): deploy/member installed
    // there, and a ServiceAccount token bound to nothing but the member ClusterRole, from
    // deploy/member/kubeconfig-secret.
    suyun_tests::helm::install_member_rbac(&wuxi).unwrap();
    let secret = suyun_tests::helm::member_kubeconfig_secret(&wuxi, "wuxi", &[]).unwrap();
    let token_kubeconfig = String::from_utf8(secret.data.unwrap()["value"].0.clone()).unwrap();
    assert!(token_kubeconfig.contains("token:") && !token_kubeconfig.contains("client-key-data"));
    put_secret(&client, "wuxi-admin", "config", &token_kubeconfig).await;
    wait_capacity(&client, "wuxi", "8", 1).await;

    // Added, NotReady, relabelled, removed.
    put_node(&sz, "sz-4", 8, true, gov.clone()).await;
    wait_capacity(&client, "suzhou", "40", 3).await;
    put_node(&sz, "sz-2", 16, false, gov.clone()).await;
    wait_capacity(&client, "suzhou", "24", 2).await;
    put_node(&sz, "sz-3", 64, true, gov.clone()).await;
    let s = wait_capacity(&client, "suzhou", "88", 3).await;
    assert_eq!(largest_free_cpu(&s).as_deref(), Some("64"));
    Api::<Node>::all(sz.clone()).delete("sz-4", &DeleteParams::default()).await.unwrap();
    wait_capacity(&client, "suzhou", "80", 2).await;
    // A Pod bound to sz-3 takes 60 of its 64 cores: the most free on one machine is sz-1's 16.
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big-tenant-app", "namespace": "default"},
        "spec": {"nodeName": "sz-3", "containers": [{"name": "app", "image": "registry.example.gov.cn/app:1",
                 "resources": {"requests": {"cpu": "60", "memory": "1Gi"}}}]}}))
    .unwrap();
    Api::<Pod>::namespaced(sz.clone(), "default").create(&PostParams::default(), &pod).await.unwrap();
    eventually(WAIT, || async {
        let free = largest_free_cpu(&status(&client, "suzhou").await?);
        anyhow::ensure!(free.as_deref() == Some("16"), "largest free {free:?}");
        Ok(())
    })
    .await
    .unwrap();

    // A tenant at home in 苏州: its children in the 苏州 member, none in 无锡.
    apply::<Tenant>(&client, &fixtures::tenant("sz-gov", "City", "320500", "suzhou", 100)).await;
    eventually(WAIT, || async {
        let ns = Api::<Namespace>::all(sz.clone()).get("sz-gov").await?;
        anyhow::ensure!(ns.owner_references().is_empty(), "an owner reference to a Tenant the member does not hold");
        anyhow::ensure!(ns.labels().get("app.kubernetes.io/managed-by").is_some_and(|v| v == "suyun-operator"));
        let lp = ListParams::default().labels(MANAGED);
        let counts = (
            Api::<ResourceQuota>::namespaced(sz.clone(), "sz-gov").list(&lp).await?.items.len(),
            Api::<LimitRange>::namespaced(sz.clone(), "sz-gov").list(&lp).await?.items.len(),
            Api::<NetworkPolicy>::namespaced(sz.clone(), "sz-gov").list(&lp).await?.items.len(),
            Api::<RoleBinding>::namespaced(sz.clone(), "sz-gov").list(&lp).await?.items.len(),
        );
        anyhow::ensure!(counts == (1, 1, 1, 1), "children in the member: {counts:?}");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
    // Repaired there when deleted there.
    let quotas = Api::<ResourceQuota>::namespaced(sz.clone(), "sz-gov");
    let quota = quotas.list(&ListParams::default().labels(MANAGED)).await.unwrap().items.remove(0);
    quotas.delete(&quota.name_any(), &DeleteParams::default()).await.unwrap();
    eventually(WAIT, || async {
        let again = quotas.get(&quota.name_any()).await?;
        anyhow::ensure!(again.uid() != quota.uid(), "not recreated yet");
        Ok(())
    })
    .await
    .unwrap();

    // A migration wave: the Jobs run in the 苏州 member. SZ-2's Replicating Job is held, so that
    // it is mid-flight when the member goes away; SZ-BIG fits the sum but no machine.
    let sz_runner = Runner::start(sz.clone());
    let wx_runner = Runner::start(wx.clone());
    sz_runner.held.lock().unwrap().insert("SZ-320500-0002/replicating".into());
    apply::<MigrationWave>(&client, &fixtures::wave("w", &format!("{}  maxConcurrent: 10\n", fixtures::JOB_RUNNER)))
        .await;
    for (id, cpu) in [("SZ-320500-0001", 2), ("SZ-320500-0002", 2), ("SZ-320500-0003", 40)] {
        apply::<GovSystem>(&client, &fixtures::system("sz-gov", id, "w", cpu, "")).await;
    }
    // And one system of a tenant at home in 无锡, moved with the member-role token there.
    apply::<Tenant>(&client, &fixtures::tenant("wx-gov", "City", "320200", "wuxi", 10)).await;
    eventually(WAIT, || async { Ok(Api::<Namespace>::all(wx.clone()).get("wx-gov").await?) }).await.unwrap();
    apply::<GovSystem>(&client, &fixtures::system("wx-gov", "WX-320200-0001", "w", 2, "")).await;
    let big = fixtures::wait_system(&client, "SZ-320500-0003", "Blocked on NoMachineFits", |s| {
        s.status.as_ref().is_some_and(|st| st.reason.as_deref() == Some("NoMachineFits"))
    })
    .await;
    let message = big.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("needs 40 cpu, 8 Gi memory on one machine"), "{message}");
    assert!(message.contains("the most free on one of the 2 machines of 320500 苏州市 is 16 cpu"), "{message}");
    for id in ["SZ-320500-0001", "WX-320200-0001"] {
        fixtures::wait_system(&client, id, "Completed", |s| {
            s.status.as_ref().is_some_and(|st| st.phase == Some(Phase::Completed))
        })
        .await;
    }
    eventually(WAIT, || async {
        let s = system(&client, "SZ-320500-0002").await?;
        let phase = s.status.as_ref().and_then(|st| st.phase);
        anyhow::ensure!(phase == Some(Phase::Replicating), "SZ-320500-0002 is {phase:?}");
        anyhow::ensure!(sz_runner.seen().iter().any(|(_, n)| n == "sz-320500-0002-replicating-0"), "no Job yet");
        Ok(())
    })
    .await
    .unwrap();

    // The 苏州 member's kube-apiserver stops for 60 s, mid-wave.
    suzhou.component("stop", "kube-apiserver").unwrap();
    let outage = std::time::Instant::now();
    let down = eventually(WAIT, || async {
        let s = status(&client, "suzhou").await?;
        let c = condition(&s, "ClusterReachable");
        anyhow::ensure!(c.as_ref().is_some_and(|c| c.1 == "Unreachable"), "{c:?}");
        Ok(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));
    let cluster_status = down.cluster.clone().unwrap();
    assert!(!cluster_status.reachable && cluster_status.capacity_stale, "{cluster_status:?}");
    assert_eq!(condition(&down, "Ready").map(|c| c.1).as_deref(), Some("MemberUnreachable"));
    assert_eq!(down.allocatable.and_then(|a| a.cpu).map(|q| q.0).as_deref(), Some("80"), "last known capacity kept");
    let paused = fixtures::wait_system(&client, "SZ-320500-0002", "paused", |s| {
        s.status.as_ref().is_some_and(|st| st.reason.as_deref() == Some("MemberUnreachable"))
    })
    .await;
    assert_eq!(paused.status.as_ref().and_then(|s| s.phase), Some(Phase::Replicating));
    assert_eq!(scrape_member_up(&operator, "suzhou").await.as_deref(), Some("0"));
    assert_eq!(scrape_member_up(&operator, "wuxi").await.as_deref(), Some("1"));

    // Meanwhile in 无锡: a tenant at home there gets its Namespace; moved home to 江苏, the
    // Namespace is no longer needed in 无锡 but is kept while a Pod runs in it, then deleted.
    apply::<Tenant>(&client, &fixtures::tenant("wx-tmp", "City", "320200", "wuxi", 10)).await;
    let wx_namespaces = Api::<Namespace>::all(wx.clone());
    eventually(WAIT, || async { Ok(wx_namespaces.get("wx-tmp").await?) }).await.unwrap();
    let app: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "still-running", "namespace": "wx-tmp"},
        "spec": {"nodeName": "wx-1", "containers": [{"name": "app", "image": "registry.example.gov.cn/app:1"}]}}))
    .unwrap();
    let wx_pods = Api::<Pod>::namespaced(wx.clone(), "wx-tmp");
    eventually(WAIT, || async { Ok(wx_pods.create(&PostParams::default(), &app).await?) }).await.unwrap();
    apply::<Tenant>(&client, &fixtures::tenant("wx-tmp", "Provincial", "320000", "jiangsu", 10)).await;
    // Two sweeps (every 30 s) pass with the Pod running: the Namespace stays.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let kept = wx_namespaces.get("wx-tmp").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none(), "a Namespace with a running Pod was deleted");
    assert!(operator.log_text().contains("still running something: kept"), "{}", operator.log_text());
    wx_pods.delete("still-running", &DeleteParams::default().grace_period(0)).await.unwrap();

    // Still paused, nothing failed, after 60 s: the member comes back.
    let left = Duration::from_secs(60).saturating_sub(outage.elapsed());
    tokio::time::sleep(left).await;
    let still = system(&client, "SZ-320500-0002").await.unwrap().status.unwrap();
    assert_eq!((still.phase, still.reason.as_deref()), (Some(Phase::Replicating), Some("MemberUnreachable")));
    suzhou.component("start", "kube-apiserver").unwrap();
    sz_runner.held.lock().unwrap().clear();
    let done = fixtures::wait_system(&client, "SZ-320500-0002", "Completed after the outage", |s| {
        s.status.as_ref().is_some_and(|st| st.phase == Some(Phase::Completed))
    })
    .await
    .status
    .unwrap();
    assert_eq!(done.attempts, 0, "no attempt spent on the outage");
    let phases: Vec<Phase> = done.transitions.iter().map(|t| t.to).collect();
    assert!(!phases.contains(&Phase::Failed) && !phases.contains(&Phase::RolledBack), "{phases:?}");
    assert_eq!(scrape_member_up(&operator, "suzhou").await.as_deref(), Some("1"));

    // Every Job ran in the member of its system's node, once per phase and attempt 0; none here.
    let jobs = |runner: &Runner| -> BTreeSet<String> {
        runner.seen().into_iter().map(|(ns, name)| format!("{ns}/{name}")).collect()
    };
    let expected = |ns: &str, systems: &[&str]| -> BTreeSet<String> {
        systems
            .iter()
            .flat_map(|s| {
                ["provisioning", "replicating", "cuttingover", "verifying"].map(|p| format!("{ns}/{s}-{p}-0"))
            })
            .collect()
    };
    assert_eq!(jobs(&sz_runner), expected("sz-gov", &["sz-320500-0001", "sz-320500-0002"]));
    assert_eq!(jobs(&wx_runner), expected("wx-gov", &["wx-320200-0001"]));
    let here = Api::<Job>::all(client.clone()).list(&ListParams::default().labels(MANAGED)).await.unwrap();
    assert!(
        here.items.is_empty(),
        "Jobs in the management cluster: {:?}",
        here.items.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );

    // The 无锡 Namespace goes once nothing runs in it.
    eventually(Duration::from_secs(70), || async {
        match wx_namespaces.get_opt("wx-tmp").await? {
            Some(ns) if ns.metadata.deletion_timestamp.is_none() => anyhow::bail!("still there"),
            _ => Ok(()),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.log_text()));

    // Rotating 无锡's credentials: a new token in the same Secret is taken into use without a
    // restart, and the member stays reachable.
    let rotated = suyun_tests::helm::member_kubeconfig_secret(&wuxi, "wuxi", &[]).unwrap();
    let rotated = String::from_utf8(rotated.data.unwrap()["value"].0.clone()).unwrap();
    assert_ne!(rotated, token_kubeconfig, "a new token");
    put_secret(&client, "wuxi-admin", "config", &rotated).await;
    eventually(WAIT, || async {
        let log = operator.log_text();
        anyhow::ensure!(
            log.lines().any(|l| l.contains("member client changed or gone") && l.contains("wuxi")),
            "no new client for wuxi yet"
        );
        let c = condition(&status(&client, "wuxi").await?, "ClusterReachable");
        anyhow::ensure!(c.as_ref().is_some_and(|c| c.0 == "True"), "{c:?}");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(scrape_member_up(&operator, "wuxi").await.as_deref(), Some("1"));

    assert!(operator.terminate(), "operator did not exit cleanly:\n{}", operator.log_text());
    fixtures::clean(&client).await;
    futures::join!(reset_member(&sz), reset_member(&wx));
}
