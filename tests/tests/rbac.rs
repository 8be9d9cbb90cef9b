//! The chart's RBAC is enough, and nothing more is used: the real operator runs with the token
//! of the chart's ServiceAccount, bound to exactly the chart's ClusterRole and leader-election
//! Role (rendered by helm, applied to the test cluster, the token minted with the TokenRequest
//! API), and migrates systems end to end: Tenants provisioned (Namespace, ResourceQuota,
//! LimitRange, NetworkPolicy, a RoleBinding to `suyun-tenant-admin`), Jobs per phase, a cutover
//! approved through the REST API and applied by the operator, statuses, Events and the Lease.
//! Any verb the operator lacks shows up as a `forbidden` in its log or a step that never
//! happens; the test then takes one verb away and sees exactly that.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant, WavePhase};
use suyun_tests::apiserver::TestServer;
use suyun_tests::etcd::unique_prefix;
use suyun_tests::fixtures::{self, JOB_RUNNER, JobRunner, Outcome, apply};
use suyun_tests::helm::{self, documents, find, kind, name};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, Cluster, WAIT, cluster, eventually};

/// The release namespace of this test (the operator's ServiceAccount and Lease live there).
const NAMESPACE: &str = "suyun-rbac";

/// Renders the chart's ServiceAccount and RBAC for a release in [`NAMESPACE`] and applies them.
fn install_chart_rbac(cluster: &Cluster) -> Vec<serde_yaml::Value> {
    let yaml = helm::template(NAMESPACE, &[], &[]).unwrap();
    let objects: Vec<serde_yaml::Value> = documents(&yaml)
        .unwrap()
        .into_iter()
        .filter(|o| {
            matches!(kind(o), "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
                || (kind(o) == "ServiceAccount" && name(o) == "suyun-operator")
        })
        .collect();
    let refs: Vec<&serde_yaml::Value> = objects.iter().collect();
    let namespace = helm::kubectl(cluster, &["create", "namespace", NAMESPACE], None);
    assert!(namespace.success || namespace.stderr.contains("AlreadyExists"), "{}", namespace.text());
    let out = helm::kubectl(
        cluster,
        &["apply", "--server-side", "--force-conflicts", "--field-manager=suyun-tests", "-f", "-"],
        Some(&helm::to_stream(&refs)),
    );
    assert!(out.success, "applying the chart's RBAC: {}", out.text());
    objects
}

/// A kubeconfig for the operator's ServiceAccount: the test cluster's server and CA, and a
/// token from the TokenRequest API.
fn service_account_kubeconfig(cluster: &Cluster) -> PathBuf {
    let token = helm::kubectl(cluster, &["create", "token", "suyun-operator", "-n", NAMESPACE, "--duration=1h"], None);
    assert!(token.success, "kubectl create token: {}", token.text());
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&cluster.kubeconfig).unwrap()).unwrap();
    let server = admin["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let ca = admin["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "suyun-test", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "suyun-operator", "user": {"token": token.stdout.trim()}}],
        "contexts": [{"name": "suyun-operator", "context": {"cluster": "suyun-test", "user": "suyun-operator"}}],
        "current-context": "suyun-operator",
    });
    let path = cluster.dir.join("rbac-operator.kubeconfig");
    std::fs::write(&path, serde_json::to_string_pretty(&kubeconfig).unwrap()).unwrap();
    path
}

/// `kubectl auth can-i` as the ServiceAccount.
fn can_i(kubeconfig: &std::path::Path, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = helm::run("kubectl", &all, None, Some(kubeconfig));
    out.stdout.trim() == "yes"
}

/// Lines of the operator's log that report a refusal by the API server.
fn refusals(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            // kube's errors carry the reason and the code: `reason: "Forbidden", code: 403`.
            l.to_lowercase().contains("forbidden") || l.contains("code: 403") || l.contains(" 403 ")
        })
        .map(str::to_owned)
        .collect()
}

async fn children_of(client: &Client, tenant: &str) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone()).get(tenant).await?;
    Api::<ResourceQuota>::namespaced(client.clone(), tenant).get("suyun-quota").await?;
    Api::<LimitRange>::namespaced(client.clone(), tenant).get("suyun-limits").await?;
    Api::<NetworkPolicy>::namespaced(client.clone(), tenant).get("suyun-default-deny").await?;
    let binding = Api::<RoleBinding>::namespaced(client.clone(), tenant).get("suyun-tenant-admin").await?;
    anyhow::ensure!(binding.role_ref.name == "suyun-tenant-admin" && binding.role_ref.kind == "ClusterRole");
    Ok(())
}

#[tokio::test]
async fn the_operator_migrates_end_to_end_with_exactly_the_charts_rbac() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let started = std::time::Instant::now();
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    helm::install_chart_crds(cluster);
    fixtures::clean(&client).await;
    // A namespace left terminating by an earlier run takes no new objects: let it go first.
    let namespaces = Api::<Namespace>::all(client.clone());
    eventually(Duration::from_secs(120), || async {
        match namespaces.get_opt(NAMESPACE).await? {
            Some(ns) if ns.metadata.deletion_timestamp.is_some() => anyhow::bail!("{NAMESPACE} is terminating"),
            _ => Ok(()),
        }
    })
    .await
    .unwrap();
    eprintln!("{:?} clean", started.elapsed());
    let rbac = install_chart_rbac(cluster);
    let lease_role = find(&rbac, "Role", "suyun-operator-leader-election");
    let lease_name = lease_role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|r| r["resourceNames"][0].as_str())
        .expect("the Role names the Lease")
        .to_owned();
    let kubeconfig = service_account_kubeconfig(cluster);

    // The token is the ServiceAccount's, with the chart's rights and no more.
    assert!(can_i(&kubeconfig, &["create", "jobs.batch", "-n", "anywhere"]));
    assert!(can_i(&kubeconfig, &["bind", "clusterroles.rbac.authorization.k8s.io/suyun-tenant-admin"]));
    assert!(can_i(&kubeconfig, &["patch", &format!("leases.coordination.k8s.io/{lease_name}"), "-n", NAMESPACE]));
    assert!(!can_i(&kubeconfig, &["list", "secrets", "--all-namespaces"]));
    assert!(!can_i(&kubeconfig, &["patch", "leases.coordination.k8s.io/other", "-n", NAMESPACE]));
    assert!(!can_i(&kubeconfig, &["bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin"]));
    assert!(!can_i(&kubeconfig, &["delete", "namespaces"]));

    eprintln!("{:?} chart RBAC applied, token minted and checked", started.elapsed());
    let prefix = unique_prefix("rbac");
    let endpoint = cluster.etcd_endpoints.clone();
    let args = [
        format!("--lease-name={lease_name}"),
        format!("--lease-namespace={NAMESPACE}"),
        "--debounce-ms=100".to_owned(),
        "--retry-backoff-seconds=1".to_owned(),
        format!("--store-endpoints={endpoint}"),
        format!("--store-prefix={prefix}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut operator = OperatorProcess::start_with_kubeconfig(cluster, "rbac-operator", &args, &kubeconfig).unwrap();
    let server = TestServer::start(&endpoint, &prefix, 500).await.unwrap();
    eprintln!("{:?} operator and REST API started", started.elapsed());

    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 400, 4)).await;
    apply::<CloudNode>(&client, &fixtures::cloud_node("nanjing", "City", "320100", 400, 4)).await;
    for (tenant, level, code, home) in
        [("js-edu", "Provincial", "320000", "jiangsu"), ("nanjing-data", "City", "320100", "nanjing")]
    {
        apply::<Tenant>(&client, &fixtures::tenant(tenant, level, code, home, 10)).await;
        eventually(WAIT, || children_of(&client, tenant)).await.unwrap_or_else(|e| {
            panic!("{tenant}'s children: {e:#}\noperator log:\n{}", operator.log_text());
        });
    }
    eprintln!("{:?} tenants provisioned", started.elapsed());
    let _runner = JobRunner::start(&client, Duration::from_millis(100), |_| Outcome::Succeed);
    apply::<MigrationWave>(&client, &fixtures::wave("rbac", &format!("  approval: {{required: true}}\n{JOB_RUNNER}")))
        .await;
    let systems =
        [("js-edu", "JS-320000-0001"), ("nanjing-data", "JS-320100-0001"), ("nanjing-data", "JS-320100-0002")];
    for (namespace, id) in systems {
        apply::<GovSystem>(&client, &fixtures::system(namespace, id, "rbac", 2, "")).await;
    }

    // Each city approves its own systems through the REST API; the operator reads the approvals
    // from the status store.
    let province = server.with_certificate("ops.province", &["province"]);
    let nanjing = server.with_certificate("zhang.wei", &["320100"]);
    let all = Api::<GovSystem>::all(client.clone());
    eventually(Duration::from_secs(120), || {
        let (all, province, nanjing) = (all.clone(), &province, &nanjing);
        async move {
            let listed = all.list(&ListParams::default()).await?.items;
            for s in &listed {
                let waiting = s.status.as_ref().and_then(|st| st.phase) == Some(Phase::AwaitingCutover);
                if waiting {
                    let caller = if s.spec.system_id.starts_with("JS-320100") { nanjing } else { province };
                    let path = format!("/api/v1/systems/{}/cutover-approval", s.spec.system_id);
                    let reply = caller.post(&path).await?;
                    anyhow::ensure!(
                        reply.status == StatusCode::CREATED || reply.status == StatusCode::OK,
                        "{path}: {} {}",
                        reply.status,
                        reply.text()
                    );
                }
            }
            let done = listed.iter().filter(|s| s.status.as_ref().and_then(|st| st.phase) == Some(Phase::Completed));
            anyhow::ensure!(
                done.count() == systems.len(),
                "phases: {:?}",
                listed.iter().map(|s| s.status.as_ref().and_then(|st| st.phase)).collect::<Vec<_>>()
            );
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\noperator log:\n{}", operator.log_text()));

    eprintln!("{:?} systems completed", started.elapsed());
    for s in all.list(&ListParams::default()).await.unwrap() {
        let by = s.status.as_ref().and_then(|st| st.approved_by.clone());
        let want = if s.spec.system_id.starts_with("JS-320100") { "zhang.wei" } else { "ops.province" };
        assert_eq!(by.as_deref(), Some(want), "{}: the operator used the REST approval", s.spec.system_id);
    }
    // Statuses of every kind, Events, and the Lease.
    let wave = Api::<MigrationWave>::all(client.clone()).get("rbac").await.unwrap();
    eventually(WAIT, || async {
        let wave = Api::<MigrationWave>::all(client.clone()).get("rbac").await?;
        anyhow::ensure!(wave.status.and_then(|s| s.phase) == Some(WavePhase::Completed), "wave not Completed");
        let tenant = Api::<Tenant>::all(client.clone()).get("nanjing-data").await?;
        let ready =
            tenant.status.unwrap_or_default().conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        anyhow::ensure!(ready, "tenant not Ready");
        let node = Api::<CloudNode>::all(client.clone()).get("nanjing").await?.status.unwrap_or_default();
        anyhow::ensure!(node.systems_by_phase.get("Completed") == Some(&2), "nanjing: {:?}", node.systems_by_phase);
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#} (wave: {:?})", wave.status));
    let events = Api::<Event>::namespaced(client.clone(), "nanjing-data").list(&ListParams::default()).await.unwrap();
    assert!(
        events.items.iter().any(|e| e.reporting_controller.as_deref() == Some("suyun-operator")),
        "the operator published Events on the systems"
    );
    let lease = Api::<Lease>::namespaced(client.clone(), NAMESPACE).get(&lease_name).await.unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("rbac-operator"));
    assert!(operator.running(), "{}", operator.log_text());
    let refused = refusals(&operator.log_text());
    assert!(refused.is_empty(), "the API server refused the operator:\n{}", refused.join("\n"));

    eprintln!("{:?} statuses, Events and Lease checked", started.elapsed());
    // Take `bind` away: the next Tenant's RoleBinding is refused, and the log says so.
    let roles = Api::<ClusterRole>::all(client.clone());
    let mut role = roles.get("suyun-operator").await.unwrap();
    let rules = role.rules.take().unwrap_or_default();
    let kept: Vec<_> = rules.into_iter().filter(|r| !r.verbs.iter().any(|v| v == "bind")).collect();
    roles.patch("suyun-operator", &PatchParams::default(), &Patch::Merge(&json!({"rules": kept}))).await.unwrap();
    apply::<Tenant>(&client, &fixtures::tenant("suzhou-data", "City", "320500", "jiangsu", 10)).await;
    eventually(WAIT, || async {
        let refused = refusals(&operator.log_text());
        anyhow::ensure!(refused.iter().any(|l| l.contains("suyun-tenant-admin")), "no refusal logged yet");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\noperator log:\n{}", operator.log_text()));
    let binding = Api::<RoleBinding>::namespaced(client.clone(), "suzhou-data").get_opt("suyun-tenant-admin").await;
    assert!(matches!(binding, Ok(None)), "no RoleBinding without `bind`: {binding:?}");

    eprintln!("{:?} refusal seen", started.elapsed());
    drop(operator);
    server.stop().await.unwrap();
    fixtures::clean(&client).await;
    for (what, object) in [
        ("clusterrole", "suyun-operator"),
        ("clusterrole", "suyun-tenant-admin"),
        ("clusterrolebinding", "suyun-operator"),
        ("namespace", NAMESPACE),
    ] {
        let out = helm::kubectl(cluster, &["delete", what, object, "--ignore-not-found", "--wait=false"], None);
        assert!(out.success, "{}", out.text());
    }
}
