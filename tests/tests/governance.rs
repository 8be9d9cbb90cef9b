//! Capacity governance against the real kube-apiserver and the real operator, one test per
//! part of it:
//!
//! - **budgets**: each level refuses by name and says by how much a system is short; a
//!   department borrows within its city and the owner's new system takes the quota back from
//!   the borrower's unstarted one; the CityBudget, Tenant and ResourceQuota show it;
//! - **residency**: Sensitive data stays in its city, a placement against the rule is refused
//!   naming it, a waiver lets it through and is journaled in the status store, and a policy
//!   change that would strand a Completed system is reported before (`suyunctl plan
//!   --from-cluster -f`) and after it is applied, the system staying where it is;
//! - **forecast**: `suyunctl forecast --from-cluster` reads the cluster as the manifests say and
//!   answers the three questions;
//! - the Zhejiang example applies and plans with exactly the refusals its README explains.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use suyun_crds::v1alpha1::{CityBudget, CloudNode, GovSystem, MigrationWave, Phase, ResidencyPolicy, Tenant};
use suyun_store::readmodel::{JournalEntry, Keys};
use suyun_tests::etcd::{connect, unique_prefix};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::{OperatorProcess, suyunctl};
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, repo_root};

fn node(name: &str, tier: &str, code: &str, cpu: u32) -> String {
    let parent = if tier == "City" { "  parent: jiangsu\n" } else { "" };
    format!(
        "apiVersion: suyun.io/v1alpha1\nkind: CloudNode\nmetadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  regionCode: \"{code}\"\n  displayName: {name}\n{parent}  capacity: {{cpu: \"{cpu}\", memory: 64Ti, storage: 4000Ti}}\n  securityLevel: 3\n  architectures: [x86_64]\n  maxConcurrentMigrations: 8\n  migrationBandwidthMbps: 10000\n"
    )
}

fn tenant(name: &str, level: &str, code: &str, home: &str, cpu: u32) -> String {
    format!(
        "apiVersion: suyun.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec:\n  displayName: {name}\n  level: {level}\n  regionCode: \"{code}\"\n  homeNode: {home}\n  quota: {{cpu: \"{cpu}\", memory: 64Ti, storage: 4000Ti, maxSystems: 100}}\n  securityLevel: 3\n"
    )
}

async fn namespace_ready(client: &Client, name: &str) {
    eventually(Duration::from_secs(60), || async {
        Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get(name).await?)
    })
    .await
    .unwrap_or_else(|e| panic!("Namespace {name}: {e}"));
}

async fn get_system(client: &Client, id: &str) -> Option<GovSystem> {
    let all = Api::<GovSystem>::all(client.clone()).list(&Default::default()).await.ok()?;
    all.items.into_iter().find(|s| s.spec.system_id == id)
}

/// Waits until system `id` is in `phase` (with `reason` when given), returning it.
async fn until(client: &Client, id: &str, phase: Phase, reason: Option<&str>) -> GovSystem {
    eventually(Duration::from_secs(60), || async {
        let s = get_system(client, id).await.ok_or_else(|| anyhow::anyhow!("{id} not found"))?;
        let st = s.status.clone().unwrap_or_default();
        anyhow::ensure!(
            st.phase == Some(phase) && (reason.is_none() || st.reason.as_deref() == reason),
            "{id}: {:?} {:?} {:?}",
            st.phase,
            st.reason,
            st.message
        );
        Ok(s)
    })
    .await
    .unwrap()
}

fn message(s: &GovSystem) -> String {
    s.status.as_ref().and_then(|st| st.message.clone()).unwrap_or_default()
}

fn start(name: &str, extra: &[&str]) -> OperatorProcess {
    let lease = format!("--lease-name={name}");
    let mut args = vec![lease.as_str(), "--debounce-ms=100", "--retry-backoff-seconds=1"];
    args.extend_from_slice(extra);
    OperatorProcess::start(cluster(), name, &args).unwrap()
}

/// `suyunctl` with the test cluster's kubeconfig; returns stdout, panicking with stderr.
fn suyunctl_run(args: &[&str]) -> String {
    let out = std::process::Command::new(suyunctl())
        .args(args)
        .env("KUBECONFIG", &cluster().kubeconfig)
        .current_dir(repo_root())
        .output()
        .expect("suyunctl runs");
    assert!(out.status.success(), "suyunctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn budgets_refuse_by_level_lend_within_the_city_and_show_it() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let client = cluster().client().await.unwrap();
    suyun_tests::install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let mut operator = start("budgets", &[]);

    apply::<CloudNode>(&client, &node("jiangsu", "Provincial", "320000", 1000)).await;
    apply::<CloudNode>(&client, &node("suzhou", "City", "320500", 100)).await;
    for (name, level, code, home, cpu) in [
        ("sz-a", "City", "320500", "suzhou", 10),
        ("sz-b", "City", "320500", "suzhou", 10),
        ("ks-c", "County", "320583", "suzhou", 100),
        ("js-p", "Provincial", "320000", "jiangsu", 10),
        ("js-q", "Provincial", "320000", "jiangsu", 100_000),
    ] {
        apply::<Tenant>(&client, &tenant(name, level, code, home, cpu)).await;
    }
    apply::<CityBudget>(
        &client,
        "apiVersion: suyun.io/v1alpha1\nkind: CityBudget\nmetadata: {name: budget-320500}\nspec:\n  regionCode: \"320500\"\n  displayName: 苏州市\n  nodes:\n    - {node: suzhou, cpu: \"40\", memory: 32Ti, storage: 2000Ti}\n    - {node: jiangsu, cpu: \"4\", memory: 32Ti, storage: 2000Ti}\n  lending:\n    lendPercent: 50\n    borrowPercent: 100\n    departments: [{tenant: ks-c, lendPercent: 0}]  # sz-a is the only lender\n",
    )
    .await;
    // A paused wave: systems are planned (Scheduled) and none starts, so every placement stays
    // open to re-planning.
    apply::<MigrationWave>(&client, &fixtures::wave("gov", "  executor: Simulated\n  paused: true\n")).await;
    for ns in ["sz-a", "sz-b", "ks-c", "js-p", "js-q"] {
        namespace_ready(&client, ns).await;
    }
    let spill = "  placement: {allowSpillover: true}\n";
    for (ns, id, cpu, extra) in [
        ("sz-b", "JS-320500-0001", 10, ""),
        ("sz-b", "JS-320500-0002", 4, ""),     // borrows 4 of sz-a's 5 lendable
        ("ks-c", "JS-320583-0001", 16, ""),    // 30 of the city's 40 on suzhou
        ("ks-c", "JS-320583-0002", 12, spill), // 10 left on suzhou, 4 on jiangsu: city level
        ("js-p", "JS-320000-0001", 12, ""),    // quota 10: department level
        ("js-q", "JS-320000-0002", 2000, ""),  // the node has 1000: province level
    ] {
        apply::<GovSystem>(&client, &fixtures::system(ns, id, "gov", cpu, extra)).await;
    }

    for id in ["JS-320500-0001", "JS-320500-0002", "JS-320583-0001"] {
        let s = until(&client, id, Phase::Scheduled, None).await;
        assert_eq!(s.status.unwrap().node.as_deref(), Some("suzhou"), "{id}");
    }
    let city = until(&client, "JS-320583-0002", Phase::Blocked, Some("CityBudgetExceeded")).await;
    assert!(
        message(&city).starts_with("city budget: needs 12 cpu on 320500 suzhou; 苏州市 has 10 cpu left of its 40 cpu budget there (short by 2 cpu)"),
        "{}",
        message(&city)
    );
    let department = until(&client, "JS-320000-0001", Phase::Blocked, Some("QuotaExceeded")).await;
    assert!(
        message(&department).starts_with(
            "department quota: needs 12 cpu; tenant js-p (js-p) has 10 cpu left of its 10 cpu quota (short by 2 cpu"
        ),
        "{}",
        message(&department)
    );
    let province = until(&client, "JS-320000-0002", Phase::Blocked, Some("InsufficientCapacity")).await;
    assert!(
        message(&province).starts_with(
            "province capacity: needs 2000 cpu; the most free is 1000 cpu (320000 jiangsu), short by 1000 cpu"
        ),
        "{}",
        message(&province)
    );

    // Status at each level: the city's budget, the departments' lending, the borrower's quota.
    let budgets = Api::<CityBudget>::all(client.clone());
    let status = eventually(Duration::from_secs(30), || async {
        let b = budgets.get("budget-320500").await?;
        let st = b.status.clone().unwrap_or_default();
        anyhow::ensure!(st.lent.as_ref().and_then(|l| l.cpu.as_ref()).is_some_and(|q| q.0 == "4"), "{st:?}");
        Ok(st)
    })
    .await
    .unwrap();
    let suzhou = status.nodes.iter().find(|n| n.node == "suzhou").unwrap();
    assert_eq!(suzhou.used.cpu.as_ref().unwrap().0, "30");
    assert_eq!(suzhou.utilization["cpu"], 75.0);
    assert_eq!(status.departments, Some(3));
    let department = |t: &str| status.tenants.iter().find(|d| d.tenant == t).unwrap().clone();
    assert_eq!(department("sz-b").borrowed.cpu.unwrap().0, "4");
    assert_eq!(department("sz-a").lent.cpu.unwrap().0, "4");
    let conditions: BTreeMap<&str, &str> =
        status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
    assert_eq!(conditions.get("Ready"), Some(&"True"), "{:?}", status.conditions);
    eventually(Duration::from_secs(30), || async {
        let t = Api::<Tenant>::all(client.clone()).get("sz-b").await?;
        let used = t.status.and_then(|s| s.used).unwrap_or_default();
        anyhow::ensure!(used.borrowed.as_ref().and_then(|b| b.cpu.as_ref()).is_some_and(|q| q.0 == "4"), "{used:?}");
        let quota = Api::<ResourceQuota>::namespaced(client.clone(), "sz-b").get("suyun-quota").await?;
        let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
        anyhow::ensure!(hard.get("requests.cpu").is_some_and(|q| q.0 == "14"), "quota + borrowed: {hard:?}");
        Ok(())
    })
    .await
    .unwrap();

    // The owner needs its quota for a system of its own: the borrower's unstarted system gives
    // the loan back and waits, saying why.
    apply::<GovSystem>(&client, &fixtures::system("sz-a", "JS-320500-0101", "gov", 8, "")).await;
    until(&client, "JS-320500-0101", Phase::Scheduled, None).await;
    let reclaimed = until(&client, "JS-320500-0002", Phase::Blocked, Some("QuotaExceeded")).await;
    assert!(message(&reclaimed).contains("苏州市's departments can lend it 2 cpu more now"), "{}", message(&reclaimed));
    until(&client, "JS-320500-0001", Phase::Scheduled, None).await;

    assert!(operator.running(), "operator exited:\n{}", operator.log_text());
    operator.terminate();
    fixtures::clean(&client).await;
}

async fn journal(etcd: &mut etcd_client::Client, keys: &Keys, id: &str) -> Vec<JournalEntry> {
    let prefix = keys.journal_of(id);
    let got = etcd.get(prefix.as_bytes(), Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    got.kvs().iter().map(|kv| serde_json::from_slice(kv.value()).unwrap()).collect()
}

#[tokio::test]
async fn residency_refuses_journals_waivers_and_reports_stranded_systems() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let client = cluster().client().await.unwrap();
    suyun_tests::install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let prefix = unique_prefix("residency");
    let endpoint = cluster().etcd_endpoints.clone();
    let keys = Keys::new(&prefix);
    let mut etcd = connect(&endpoint).await.unwrap();
    let store = [format!("--store-endpoints={endpoint}"), format!("--store-prefix={prefix}")];
    let store: Vec<&str> = store.iter().map(String::as_str).collect();
    let mut operator = start("residency", &store);

    apply::<CloudNode>(&client, &node("jiangsu", "Provincial", "320000", 1000)).await;
    apply::<CloudNode>(&client, &node("suzhou", "City", "320500", 8)).await;
    apply::<Tenant>(&client, &tenant("sz-r", "City", "320500", "suzhou", 10_000)).await;
    apply::<MigrationWave>(&client, &fixtures::wave("held", "  executor: Simulated\n  paused: true\n")).await;
    apply::<MigrationWave>(
        &client,
        &fixtures::wave("fast", "  executor: Simulated\n  timeCompression: 100000\n  maxConcurrent: 4\n"),
    )
    .await;
    namespace_ready(&client, "sz-r").await;
    let sensitive = |id: &str, cpu: u32, extra: &str| {
        fixtures::system("sz-r", id, "held", cpu, extra)
            .replace("classification: Internal", "classification: Sensitive")
    };
    // Too big for 苏州 and may spill over, but Sensitive: it waits at home.
    apply::<GovSystem>(&client, &sensitive("JS-320500-0201", 16, "  placement: {allowSpillover: true}\n")).await;
    // Only the provincial node is allowed: against the rule.
    let to_province = "  placement: {allowSpillover: true, allowedNodes: [jiangsu]}\n";
    apply::<GovSystem>(&client, &sensitive("JS-320500-0202", 2, to_province)).await;
    // Internal, on the provincial node, migrates to Completed.
    apply::<GovSystem>(&client, &fixtures::system("sz-r", "JS-320500-0203", "fast", 2, to_province)).await;

    let home = until(&client, "JS-320500-0201", Phase::Blocked, Some("InsufficientCapacity")).await;
    assert!(
        message(&home).contains(
            "spillover to 320000 jiangsu is refused by residency rule builtin/sensitive-stays-in-own-city (Sensitive data: only nodes of its own city (3205xx))"
        ),
        "{}",
        message(&home)
    );
    let refused = until(&client, "JS-320500-0202", Phase::Blocked, Some("ResidencyViolation")).await;
    assert_eq!(
        message(&refused),
        "Sensitive data of JS-320500-0202 may not live on 320000 jiangsu by rule builtin/sensitive-stays-in-own-city (only nodes of its own city (3205xx)); no residency waiver is recorded"
    );

    // A waiver lets it through, and the journal says who granted it and why.
    let waived = sensitive(
        "JS-320500-0202",
        2,
        &format!(
            "{to_province}  residencyWaiver: {{grantedBy: 江苏省大数据管理局 李明, reason: 灾备副本 CHG-2026-1201}}\n"
        ),
    );
    apply::<GovSystem>(&client, &waived).await;
    let placed = until(&client, "JS-320500-0202", Phase::Scheduled, None).await;
    assert_eq!(placed.status.unwrap().node.as_deref(), Some("jiangsu"));
    let mut entries = Vec::new();
    for _ in 0..60 {
        entries = journal(&mut etcd, &keys, "JS-320500-0202").await;
        if entries.iter().any(|e| e.reason == "ResidencyWaiverRecorded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let entry = entries.iter().find(|e| e.reason == "ResidencyWaiverRecorded").unwrap();
    assert_eq!(entry.actor, "江苏省大数据管理局 李明");
    assert_eq!(entry.note.as_deref(), Some("灾备副本 CHG-2026-1201"));
    assert_eq!(entry.from, entry.to, "a waiver does not change the phase");

    // A policy keeping Internal data in its city would strand the Completed system: suyunctl
    // says so before the change is applied, from the live cluster with the change laid over.
    let done = until(&client, "JS-320500-0203", Phase::Completed, None).await;
    assert_eq!(done.status.unwrap().node.as_deref(), Some("jiangsu"));
    let policy = "apiVersion: suyun.io/v1alpha1\nkind: ResidencyPolicy\nmetadata: {name: tighter}\nspec:\n  rules:\n    - {name: internal-in-city, classification: Internal, region: OwnCity}\n";
    let file = cluster().dir.join("residency-policy.yaml");
    std::fs::write(&file, policy).unwrap();
    let plan: serde_json::Value = serde_json::from_str(&suyunctl_run(&[
        "plan",
        "--from-cluster",
        "-f",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    let stranded: Vec<(&str, &str)> = plan["residency"]["stranded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["systemId"].as_str().unwrap(), f["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(stranded, vec![("JS-320500-0203", "tighter/internal-in-city")]);
    assert!(Api::<ResidencyPolicy>::all(client.clone()).get_opt("tighter").await.unwrap().is_none(), "nothing applied");

    // Applied: the policy reports it, and the system stays where it is.
    apply::<ResidencyPolicy>(&client, policy).await;
    let status = eventually(Duration::from_secs(30), || async {
        let p = Api::<ResidencyPolicy>::all(client.clone()).get("tighter").await?;
        let st = p.status.clone().unwrap_or_default();
        anyhow::ensure!(st.stranded_count == Some(1), "{st:?}");
        Ok(st)
    })
    .await
    .unwrap();
    assert_eq!(status.stranded[0].system_id, "JS-320500-0203");
    assert_eq!(status.stranded[0].namespace, "sz-r");
    assert_eq!(status.stranded[0].node, "jiangsu");
    assert_eq!(status.stranded[0].rule, "internal-in-city");
    let strands = status.conditions.iter().find(|c| c.type_ == "StrandsSystems").unwrap();
    assert_eq!((strands.status.as_str(), strands.reason.as_str()), ("True", "SystemsStranded"));
    let still = get_system(&client, "JS-320500-0203").await.unwrap().status.unwrap();
    assert_eq!((still.phase, still.node.as_deref()), (Some(Phase::Completed), Some("jiangsu")));

    assert!(operator.running(), "operator exited:\n{}", operator.log_text());
    operator.terminate();
    fixtures::clean(&client).await;
}

#[tokio::test]
async fn a_forecast_reads_the_cluster_as_the_manifests_say() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let client = cluster().client().await.unwrap();
    // The example applied with no operator running: no status yet, so the cluster holds
    // exactly what the manifests say.
    fixtures::apply_jiangsu_example(&client).await;
    let common = ["--now", "2026-12-01T00:00:00+08:00", "--growth", "25", "--deadline", "2026-12-31"];
    let what_if = ["--what-if", "cordon=suzhou", "--what-if", "remove=suqian", "--format", "json"];
    let args = |source: &[&'static str]| -> Vec<&str> {
        let mut a = vec!["forecast"];
        a.extend_from_slice(source);
        a.extend_from_slice(&common);
        a.extend_from_slice(&what_if);
        a
    };
    let live = suyunctl_run(&args(&["--from-cluster"]));
    let offline = suyunctl_run(&args(&["-f", "deploy/examples/jiangsu"]));
    assert_eq!(live, offline, "the forecast from the cluster differs from the one from the manifests");
    // The plan both read, budgets and residency waivers included, is the same too.
    let plan = |source: &[&str]| {
        let mut a = vec!["plan", "--now", "2026-12-01T00:00:00+08:00", "--format", "json"];
        a.extend_from_slice(source);
        suyunctl_run(&a)
    };
    let live_plan: serde_json::Value = serde_json::from_str(&plan(&["--from-cluster"])).unwrap();
    let offline_plan: serde_json::Value = serde_json::from_str(&plan(&["-f", "deploy/examples/jiangsu"])).unwrap();
    let differing: Vec<&String> = offline_plan
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| live_plan.get(k.as_str()) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(differing.is_empty(), "the plan from the cluster differs from the manifests' in {differing:?}");
    assert_eq!(live_plan["cities"].as_array().unwrap().len(), 13, "every city budget read");
    assert_eq!(live_plan["residency"]["waived"].as_array().unwrap().len(), 1, "the waiver read");
    let forecast: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(forecast["runOut"].as_array().unwrap().len(), 14, "every node");
    let capacity = &forecast["capacity"];
    assert!(capacity.is_object(), "a deadline asks for the capacity it needs: {capacity}");
    let what_if = forecast["whatIf"].as_array().unwrap();
    assert_eq!(what_if.len(), 2);
    let cordon = &what_if[0];
    let moved = cordon["moved"].as_array().unwrap();
    let unplaceable = cordon["unplaceable"].as_array().unwrap();
    assert!(!moved.is_empty() || !unplaceable.is_empty(), "cordoning 苏州 changes its systems: {cordon}");
    for m in moved {
        assert_eq!(m["from"], json!("suzhou"), "{m}");
    }
    // The table form names the same.
    let table = suyunctl_run(&["forecast", "--from-cluster", "--now", "2026-12-01T00:00:00+08:00", "--growth", "25"]);
    assert!(table.contains("Run-out"), "{table}");
    fixtures::clean(&client).await;
}

#[tokio::test]
async fn the_zhejiang_example_applies_and_plans_with_its_refusals_explained() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let client = cluster().client().await.unwrap();
    suyun_tests::install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let dir = repo_root().join("deploy/examples/zhejiang");
    for m in suyun_tests::manifests::read_dir(&dir).unwrap() {
        suyun_tests::manifests::apply(&client, &discovery, &m, false).await.expect("example applied");
    }
    // The plan offline, from the manifests: its refusals are the ones the README explains.
    let plan: serde_json::Value =
        serde_json::from_str(&suyunctl_run(&["plan", "-f", "deploy/examples/zhejiang", "--format", "json"])).unwrap();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let refused: BTreeMap<String, String> = plan["unplaceable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["systemId"].as_str().unwrap().to_owned(), u["reason"].as_str().unwrap().to_owned()))
        .collect();
    for reason in ["QuotaExceeded", "CityBudgetExceeded", "ResidencyViolation"] {
        assert!(refused.values().any(|r| r == reason), "no {reason} in {refused:?}");
    }
    for (id, reason) in &refused {
        assert!(
            readme.contains(id.as_str()) && readme.contains(reason.as_str()),
            "README does not explain {id} ({reason})"
        );
    }
    // The operator plans the applied example the same way.
    let mut operator = start("zhejiang", &[]);
    for (id, reason) in &refused {
        until(&client, id, Phase::Blocked, Some(reason.as_str())).await;
    }
    assert!(operator.running(), "operator exited:\n{}", operator.log_text());
    operator.terminate();
    fixtures::clean(&client).await;
}
