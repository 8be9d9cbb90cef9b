//! Objects for the migration tests, and the migration runner the tests play: there is no
//! kubelet and no Job controller in the test control plane, so [`JobRunner`] watches the
//! operator's Jobs and patches their status the way a finished runner Pod would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::{CityBudget, CloudNode, GovSystem, MigrationWave, Phase, ResidencyPolicy, Tenant};

use crate::{WAIT, eventually};

/// Server-side applies a YAML object of a Suyun kind (or any kind `K`).
pub async fn apply<K>(client: &Client, yaml: &str) -> K
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad fixture: {e}\n{yaml}"));
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match object.meta().namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let applied = api
        .patch(&object.name_any(), &PatchParams::apply("suyun-tests").force(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying {}: {e}", object.name_any()));
    applied.try_parse::<K>().expect("the apiserver returns the kind it was sent")
}

/// A CloudNode with declared capacity.
pub fn cloud_node(name: &str, tier: &str, code: &str, cpu: u32, max_concurrent: u32) -> String {
    let parent = if tier == "City" { "  parent: jiangsu\n" } else { "" };
    format!(
        "apiVersion: suyun.io/v1alpha1\nkind: CloudNode\nmetadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  regionCode: \"{code}\"\n  displayName: {name}\n{parent}  capacity: {{cpu: \"{cpu}\", memory: 4Ti, storage: 400Ti}}\n  securityLevel: 3\n  architectures: [x86_64, aarch64]\n  maxConcurrentMigrations: {max_concurrent}\n  migrationBandwidthMbps: 10000\n"
    )
}

/// A Tenant (its Namespace is created by the operator).
pub fn tenant(name: &str, level: &str, code: &str, home: &str, max_systems: u32) -> String {
    format!(
        "apiVersion: suyun.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec:\n  displayName: {name}\n  level: {level}\n  regionCode: \"{code}\"\n  homeNode: {home}\n  quota: {{cpu: \"100000\", memory: 1000Ti, storage: 100000Ti, maxSystems: {max_systems}}}\n  owners: [{{kind: Group, name: {name}-admins}}]\n  securityLevel: 3\n"
    )
}

/// A GovSystem in `namespace`, labelled for `wave`, with extra spec lines.
pub fn system(namespace: &str, id: &str, wave: &str, cpu: u32, extra: &str) -> String {
    let name = id.to_lowercase();
    format!(
        "apiVersion: suyun.io/v1alpha1\nkind: GovSystem\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{suyun.io/wave: {wave}}}}}\nspec:\n  systemId: {id}\n  displayName: 测试系统 {id}\n  classification: Internal\n  securityLevel: 2\n  resources: {{cpu: \"{cpu}\", memory: 8Gi, storage: 100Gi}}\n  dataVolume: 10Gi\n{extra}"
    )
}

/// A MigrationWave selecting `suyun.io/wave=<name>`, with extra spec lines.
pub fn wave(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: suyun.io/v1alpha1\nkind: MigrationWave\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{suyun.io/wave: {name}}}}}\n{extra}"
    )
}

/// A Simulated migration of `systems` one-CPU systems on the provincial node `jiangsu`: Tenant
/// `js-<wave>` (waits for its Namespace), MigrationWave `<wave>` with `timeCompression` and room
/// for all of them at once, and GovSystems `JS-320000-0001`… in it.
pub async fn simulated_migration(client: &Client, wave: &str, systems: usize, time_compression: u32) {
    let tenant = format!("js-{wave}");
    apply::<CloudNode>(client, &cloud_node("jiangsu", "Provincial", "320000", 100_000, systems as u32)).await;
    apply::<Tenant>(client, &self::tenant(&tenant, "Provincial", "320000", "jiangsu", 1000)).await;
    let spec = format!("  executor: Simulated\n  timeCompression: {time_compression}\n  maxConcurrent: {systems}\n");
    apply::<MigrationWave>(client, &self::wave(wave, &spec)).await;
    eventually(Duration::from_secs(30), || async { Ok(Api::<Namespace>::all(client.clone()).get(&tenant).await?) })
        .await
        .expect("the tenant's Namespace is created");
    for i in 1..=systems {
        apply::<GovSystem>(client, &system(&tenant, &format!("JS-320000-{i:04}"), wave, 1, "")).await;
    }
}

/// The runner part of a Job wave's spec.
pub const JOB_RUNNER: &str = "  executor: Job\n  runner: {image: registry.example.gov.cn/suyun/runner:1, command: [/runner], timeoutSeconds: 600}\n";

/// Installs the CRDs, removes every Suyun object and applies `deploy/examples/jiangsu/` (14
/// CloudNodes, the Tenants, 13 CityBudgets, 60 GovSystems, 2 waves).
pub async fn apply_jiangsu_example(client: &Client) {
    crate::install_crds(client).await.expect("CRDs installed");
    clean(client).await;
    let discovery = kube::Discovery::new(client.clone()).run().await.expect("API discovery");
    for m in crate::manifests::read_dir(&crate::repo_root().join("deploy/examples/jiangsu")).expect("examples read") {
        crate::manifests::apply(client, &discovery, &m, false).await.expect("example applied");
    }
}

/// Deletes every Suyun object and the tenants' Namespaces, and waits until they are gone.
pub async fn clean(client: &Client) {
    let lp = ListParams::default();
    let dp = DeleteParams::background();
    let _ = Api::<MigrationWave>::all(client.clone()).delete_collection(&dp, &lp).await;
    let _ = Api::<CityBudget>::all(client.clone()).delete_collection(&dp, &lp).await;
    let _ = Api::<ResidencyPolicy>::all(client.clone()).delete_collection(&dp, &lp).await;
    // Namespaced kinds have no cluster-wide delete-collection: one per Namespace.
    if let Ok(systems) = Api::<GovSystem>::all(client.clone()).list(&lp).await {
        let namespaces: BTreeSet<String> = systems.items.iter().filter_map(|s| s.namespace()).collect();
        for ns in namespaces {
            let _ = Api::<GovSystem>::namespaced(client.clone(), &ns).delete_collection(&dp, &lp).await;
        }
    }
    let _ = Api::<Tenant>::all(client.clone()).delete_collection(&dp, &lp).await;
    let _ = Api::<CloudNode>::all(client.clone()).delete_collection(&dp, &lp).await;
    let namespaces = Api::<Namespace>::all(client.clone());
    eventually(Duration::from_secs(120), || {
        let (client, namespaces) = (client.clone(), namespaces.clone());
        async move {
            let systems = Api::<GovSystem>::all(client.clone()).list(&ListParams::default()).await?.items.len();
            let tenants = Api::<Tenant>::all(client.clone()).list(&ListParams::default()).await?.items.len();
            let nodes = Api::<CloudNode>::all(client.clone()).list(&ListParams::default()).await?.items.len();
            let owned =
                namespaces.list(&ListParams::default().labels("app.kubernetes.io/managed-by=suyun-operator")).await?;
            for ns in owned.items.iter().filter(|n| n.metadata.deletion_timestamp.is_none()) {
                let _ = namespaces.delete(&ns.name_any(), &DeleteParams::background()).await;
            }
            if systems + tenants + nodes + owned.items.len() == 0 {
                Ok(())
            } else {
                bail!("left: {systems} systems, {tenants} tenants, {nodes} nodes, {} namespaces", owned.items.len())
            }
        }
    })
    .await
    .unwrap();
}

/// Waits until every listed system is in `phase`.
pub async fn wait_all(client: &Client, phase: Phase, count: usize, timeout: Duration) -> Vec<GovSystem> {
    let api = Api::<GovSystem>::all(client.clone());
    eventually(timeout, || {
        let api = api.clone();
        async move {
            let all = api.list(&ListParams::default()).await?.items;
            let mut by_phase: BTreeMap<String, usize> = BTreeMap::new();
            for s in &all {
                *by_phase.entry(format!("{:?}", s.status.as_ref().and_then(|s| s.phase))).or_default() += 1;
            }
            let done = all.iter().filter(|s| s.status.as_ref().and_then(|s| s.phase) == Some(phase)).count();
            if done == count { Ok(all) } else { bail!("{done}/{count} {phase:?}; by phase {by_phase:?}") }
        }
    })
    .await
    .unwrap()
}

/// Waits until one system (by systemId) satisfies `check`.
pub async fn wait_system(client: &Client, id: &str, what: &str, check: impl Fn(&GovSystem) -> bool) -> GovSystem {
    let api = Api::<GovSystem>::all(client.clone());
    eventually(WAIT, || {
        let api = api.clone();
        let check = &check;
        async move {
            let all = api.list(&ListParams::default()).await?.items;
            let s = all.into_iter().find(|s| s.spec.system_id == id);
            match s {
                Some(s) if check(&s) => Ok(s),
                Some(s) => bail!("{id} not {what} yet: {:?}", s.status),
                None => bail!("{id} not found"),
            }
        }
    })
    .await
    .unwrap()
}

/// What the runner does with a Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Mark it succeeded.
    Succeed,
    /// Mark it failed.
    Fail,
}

/// A Job the runner saw.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeenJob {
    /// systemId label.
    pub system_id: String,
    /// Phase label.
    pub phase: String,
    /// Attempt label.
    pub attempt: u32,
    /// SUYUN_TARGET_NODE.
    pub node: String,
}

/// Plays the migration runner: finishes each Job the operator creates as `decide` says.
pub struct JobRunner {
    /// Every Job seen, in order.
    pub seen: Arc<Mutex<Vec<SeenJob>>>,
    /// Largest number of unfinished Jobs per node at any time.
    pub peak_per_node: Arc<Mutex<BTreeMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for JobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner").finish_non_exhaustive()
    }
}

impl JobRunner {
    /// Starts the runner; `decide` is called once per Job and `delay` passes before finishing.
    pub fn start(
        client: &Client,
        delay: Duration,
        decide: impl Fn(&SeenJob) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        let seen: Arc<Mutex<Vec<SeenJob>>> = Arc::default();
        let peak: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let running: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let api = Api::<Job>::all(client.clone());
        let (seen2, peak2, decide) = (seen.clone(), peak.clone(), Arc::new(decide));
        let task = tokio::spawn(async move {
            let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=suyun-operator");
            let mut stream = watcher(api.clone(), config).default_backoff().applied_objects().boxed();
            let mut handled = BTreeSet::new();
            while let Some(Ok(job)) = stream.next().await {
                let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
                let finished =
                    job.status.as_ref().is_some_and(|s| s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0) > 0);
                if finished || !handled.insert(key.clone()) {
                    continue;
                }
                let labels = job.labels();
                let env = job
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .map(|p| p.containers[0].env.clone().unwrap_or_default())
                    .unwrap_or_default();
                let node = env
                    .iter()
                    .find(|e| e.name == "SUYUN_TARGET_NODE")
                    .and_then(|e| e.value.clone())
                    .unwrap_or_default();
                let info = SeenJob {
                    system_id: labels.get("suyun.io/system-id").cloned().unwrap_or_default(),
                    phase: labels.get("suyun.io/phase").cloned().unwrap_or_default(),
                    attempt: labels.get("suyun.io/attempt").and_then(|a| a.parse().ok()).unwrap_or(0),
                    node: node.clone(),
                };
                seen2.lock().unwrap().push(info.clone());
                {
                    let mut running = running.lock().unwrap();
                    let set = running.entry(node.clone()).or_default();
                    set.insert(key.clone());
                    let mut peak = peak2.lock().unwrap();
                    let p = peak.entry(node.clone()).or_default();
                    *p = (*p).max(set.len());
                }
                let outcome = decide(&info);
                let (api, running) = (
                    Api::<Job>::namespaced(api.clone().into_client(), &job.namespace().unwrap_or_default()),
                    running.clone(),
                );
                let name = job.name_any();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // Leave the running set before the operator can see the result.
                    running.lock().unwrap().entry(node).or_default().remove(&key);
                    let status = match outcome {
                        Outcome::Succeed => json!({"status": {"succeeded": 1}}),
                        Outcome::Fail => json!({"status": {"failed": 1}}),
                    };
                    let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                });
            }
        });
        Self { seen, peak_per_node: peak, task }
    }

    /// The Jobs seen so far.
    pub fn seen(&self) -> Vec<SeenJob> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}
