//! Chaos at the Jiangsu scale (issue 12 §3): a Simulated migration of the synthetic Jiangsu set
//! (or a dependency-closed part of it) with two operator replicas, the REST API and a city
//! approval flow, while the leader is killed and paused and the control plane's components are
//! restarted; an independent checker then says whether anything was lost or done twice.
//!
//! Shared by the reduced test (`tests/tests/chaos.rs`, a few hundred systems, part of
//! `cargo test --workspace`) and the full run (`tests/examples/chaos.rs`, 7,900 systems).
//!
//! What runs, all on loopback, in a control plane of its own (components are restarted):
//!
//! - **Replicas**: two `suyun-operator` processes publishing to the status-store etcd, with
//!   short leases; a replica that exits (killed, or stepping down) is started again at once
//!   under a new name, as a Deployment replaces a Pod.
//! - **Approval driver**: one bearer token per city (scope = its region code) and one for the
//!   province; each lists its systems in `AwaitingCutover` through the REST API and approves
//!   each once (a unique reason per approval); a 503 (status store down) is retried later.
//! - **Fault injector** (seeded RNG, seed printed): the leader (the Kubernetes Lease holder)
//!   killed with SIGKILL, the leader paused with SIGSTOP until a successor holds the Lease
//!   (then SIGCONT), kube-apiserver restarted, the Kubernetes etcd restarted, the status-store
//!   etcd down for at least 30 s (during which the API must answer stale-marked reads and 503
//!   to approvals). Faults come in random order with random gaps; migrations are slowed
//!   (`slow_compression`) while faults are injected and sped up (`fast_compression`) after the
//!   last one, so every fault hits a migration in progress.
//! - **Checker**, reading only the cluster (a watch of every GovSystem: every state the
//!   apiserver delivered, plus periodic full lists), the status store and the journal: never
//!   the operator's memory or logs. See [`Violations`] for what it asserts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use http::StatusCode;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sha2::Digest as _;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_planner::model::{self, PlanInput};
use suyun_planner::synthetic::rng::Rng;
use suyun_store::readmodel::{KeyRef, Keys, prefix_end};

use crate::Cluster;
use crate::apiserver::TestServer;
use crate::https::Caller;
use crate::operator::OperatorProcess;
use crate::synthetic::{MANAGER, cloud_node, create_all, system, tenant};

/// Name of the leader-election Lease of the replicas.
pub const LEASE: &str = "suyun-chaos";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Systems of the Jiangsu set to migrate (a dependency-closed part of it, plus the systems
    /// built not to fit); 7,900 or more means all of them.
    pub systems: usize,
    /// Seed of the synthetic data set.
    pub data_seed: u64,
    /// Seed of the fault schedule (printed, so a run can be repeated).
    pub seed: u64,
    /// Leader kills (SIGKILL).
    pub kills: usize,
    /// Leader pauses (SIGSTOP past the Lease).
    pub pauses: usize,
    /// How long the status-store etcd stays down (at least 30 s for the issue).
    pub store_outage: Duration,
    /// Random wait before each fault, between these two.
    pub gap: (Duration, Duration),
    /// `--lease-duration-seconds` and `--store-lease-ttl` of the replicas.
    pub lease_seconds: u64,
    /// `maxConcurrentMigrations` of every node (the synthetic set has 4).
    pub node_concurrency: Option<u32>,
    /// `--debounce-ms` of the replicas.
    pub debounce_ms: u64,
    /// `timeCompression` while faults are injected.
    pub slow_compression: u32,
    /// `timeCompression` after the last fault.
    pub fast_compression: u32,
    /// How often the snapshotter lists every GovSystem.
    pub snapshot_every: Duration,
    /// The whole run fails after this long.
    pub timeout: Duration,
    /// Directory of the control plane of its own.
    pub cluster_dir: PathBuf,
    /// Leave the control plane running at the end.
    pub keep_cluster: bool,
}

impl Options {
    /// The reduced run of `cargo test` (a few hundred systems, every fault).
    pub fn reduced() -> Options {
        Options {
            systems: 300,
            data_seed: 1,
            seed: seed_from_env(),
            kills: 20,
            pauses: 2,
            store_outage: Duration::from_secs(30),
            gap: (Duration::from_millis(500), Duration::from_millis(4000)),
            lease_seconds: 6,
            node_concurrency: Some(20),
            debounce_ms: 1000,
            slow_compression: 600,
            fast_compression: 100_000,
            snapshot_every: Duration::from_secs(3),
            timeout: Duration::from_secs(600),
            cluster_dir: crate::repo_root().join("target/chaos-cluster"),
            keep_cluster: false,
        }
    }
}

/// `SUYUN_CHAOS_SEED`, or one from the clock.
pub fn seed_from_env() -> u64 {
    std::env::var("SUYUN_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

// ---------------------------------------------------------------------------------------------
// The data set and what each system must end as.

/// The systems to migrate and what the planner says of each.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Nodes, tenants, systems and waves.
    pub input: PlanInput,
    /// Expected final phase per systemId: `Completed` for every system the planner places,
    /// `Blocked` for those it cannot place, `NotMigrated` for Retire/Retain.
    pub expected: BTreeMap<String, Phase>,
    /// The wave whose cutovers need an approval.
    pub approval_wave: String,
}

/// The synthetic Jiangsu set, reduced to about `systems` systems closed under `dependsOn` and
/// `sameNodeAs` (references to systems left out are dropped from `antiAffinityWith`) plus the
/// systems built not to fit; waves without windows or `notBefore` (the run must not depend on
/// the time of day); expectations from `suyun_planner::plan` on exactly that input.
pub fn dataset(systems: usize, data_seed: u64, node_concurrency: Option<u32>) -> Dataset {
    let mut input = suyun_planner::synthetic::jiangsu(data_seed);
    if systems < input.systems.len() {
        let index: HashMap<String, usize> =
            input.systems.iter().enumerate().map(|(i, s)| (s.system_id.clone(), i)).collect();
        let misfits = suyun_planner::synthetic::JIANGSU_SYSTEMS.min(input.systems.len());
        let mut keep: BTreeSet<usize> = (misfits.saturating_sub(7)..input.systems.len()).collect();
        // Spread over tenants and nodes: every k-th system, with what it needs.
        let stride = (input.systems.len() / systems.max(1)).max(1);
        let mut i = 0;
        while keep.len() < systems + 7 && i < input.systems.len() {
            let mut pending = vec![i];
            while let Some(j) = pending.pop() {
                if keep.insert(j) {
                    let s = &input.systems[j];
                    pending.extend(s.depends_on.iter().chain(&s.same_node_as).filter_map(|id| index.get(id).copied()));
                }
            }
            i += stride;
        }
        let kept: HashSet<String> = keep.iter().map(|i| input.systems[*i].system_id.clone()).collect();
        input.systems = keep.iter().map(|i| input.systems[*i].clone()).collect();
        for s in &mut input.systems {
            s.anti_affinity_with.retain(|id| kept.contains(id));
        }
    }
    for w in &mut input.waves {
        w.windows.clear();
        w.not_before = None;
    }
    if let Some(n) = node_concurrency {
        for node in &mut input.nodes {
            node.max_concurrent_migrations = n;
        }
    }
    let plan = suyun_planner::plan(&input);
    let blocked: HashSet<&str> = plan.unplaceable.iter().map(|u| u.system_id.as_str()).collect();
    let retired: HashSet<&str> = plan.not_migrated.iter().map(|n| n.system_id.as_str()).collect();
    let expected = input
        .systems
        .iter()
        .map(|s| {
            let id = s.system_id.as_str();
            let phase = if retired.contains(id) {
                Phase::NotMigrated
            } else if blocked.contains(id) {
                Phase::Blocked
            } else {
                Phase::Completed
            };
            (s.system_id.clone(), phase)
        })
        .collect();
    let approval_wave =
        input.waves.iter().find(|w| w.name.ends_with("-services")).map(|w| w.name.clone()).unwrap_or_default();
    Dataset { input, expected, approval_wave }
}

fn wave_object(w: &model::Wave, approval: bool, compression: u32) -> anyhow::Result<MigrationWave> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "suyun.io/v1alpha1",
        "kind": "MigrationWave",
        "metadata": { "name": w.name },
        "spec": {
            "selector": { "matchLabels": { "suyun.io/wave": w.name } },
            "order": w.order.max(0),
            "maxConcurrent": w.max_concurrent.unwrap_or(10_000).clamp(1, 10_000),
            "failureBudget": 100,
            "executor": "Simulated",
            "timeCompression": compression,
            "maxAttempts": 3,
            "approval": { "required": approval },
        }
    }))?)
}

// ---------------------------------------------------------------------------------------------
// Resources and what a system looks like to the checker.

type Amounts = [u64; 4];

fn amounts(r: &model::Resources) -> Amounts {
    [r.cpu, r.memory, r.storage, r.gpu]
}

const RESOURCE_NAMES: [&str; 4] = ["cpu (millicores)", "memory (bytes)", "storage (bytes)", "gpu"];

/// One phase transition as a status shows it (`status.transitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenTransition {
    /// Per-object sequence.
    pub sequence: u64,
    /// Phase before.
    pub from: String,
    /// Phase after.
    pub to: String,
    /// Who.
    pub actor: String,
    /// Approval reason of an approved cutover.
    pub approval_reason: Option<String>,
}

/// What the checker keeps of one GovSystem state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Obs {
    /// Object uid.
    pub uid: String,
    /// `spec.systemId`.
    pub system_id: String,
    /// Wave label.
    pub wave: Option<String>,
    /// `status.phase`.
    pub phase: Option<Phase>,
    /// `status.node`.
    pub node: Option<String>,
    /// `status.startedAt`.
    pub started_at: Option<String>,
    /// `status.approvedBy`.
    pub approved_by: Option<String>,
    /// `status.approvalReason`.
    pub approval_reason: Option<String>,
    /// `status.transitions`.
    pub transitions: Vec<SeenTransition>,
}

fn obs_of(o: &DynamicObject) -> Obs {
    let status = &o.data["status"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Obs {
        uid: o.uid().unwrap_or_default(),
        system_id: o.data["spec"]["systemId"].as_str().unwrap_or_default().to_owned(),
        wave: o.labels().get("suyun.io/wave").cloned(),
        phase: serde_json::from_value(status["phase"].clone()).ok(),
        node: text(&status["node"]),
        started_at: text(&status["startedAt"]),
        approved_by: text(&status["approvedBy"]),
        approval_reason: text(&status["approvalReason"]),
        transitions: status["transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| SeenTransition {
                sequence: t["sequence"].as_u64().unwrap_or(0),
                from: t["from"].as_str().unwrap_or_default().to_owned(),
                to: t["to"].as_str().unwrap_or_default().to_owned(),
                actor: t["actor"].as_str().unwrap_or_default().to_owned(),
                approval_reason: text(&t["approvalReason"]),
            })
            .collect(),
    }
}

fn rank(p: Phase) -> u8 {
    match p {
        Phase::Pending | Phase::Scheduled | Phase::Blocked | Phase::NotMigrated => 0,
        Phase::Provisioning => 2,
        Phase::Replicating => 3,
        Phase::AwaitingCutover => 4,
        Phase::CuttingOver => 5,
        Phase::Verifying => 6,
        Phase::Completed => 7,
        Phase::Failed => 8,
        Phase::RolledBack => 9,
    }
}

/// Everything the checker found wrong, by invariant.
#[derive(Debug, Default, Clone)]
pub struct Violations {
    /// A node above its allocatable in some observed state.
    pub capacity: Vec<String>,
    /// A system's node or start changed after its migration started, a phase moved backwards,
    /// a migration started twice.
    pub placement: Vec<String>,
    /// A system not in its expected final phase.
    pub terminal: Vec<String>,
    /// Journal: missing, duplicated, out of order, broken chain, not matching the status.
    pub journal: Vec<String>,
    /// Approvals: lost, applied twice, a cutover without one.
    pub approvals: Vec<String>,
    /// Faults and outages: a fault that did not happen as meant, a replica that did not step
    /// down, the API not stale or not refusing approvals while the store was down.
    pub faults: Vec<String>,
}

impl Violations {
    fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("capacity", &self.capacity),
            ("placement", &self.placement),
            ("terminal", &self.terminal),
            ("journal", &self.journal),
            ("approvals", &self.approvals),
            ("faults", &self.faults),
        ]
        .into_iter()
        .flat_map(|(k, v)| v.iter().map(move |m| (k, m)))
    }

    /// How many in all.
    pub fn count(&self) -> usize {
        self.all().count()
    }
}

fn push_capped(list: &mut Vec<String>, message: String) {
    if list.len() < 200 {
        list.push(message);
    }
}

/// Checks one system's move from `old` to `new` (two states in the order the cluster had
/// them); `where_` names the source (watch, snapshot).
fn check_step(old: &Obs, new: &Obs, approval_wave: &str, v: &mut Violations, where_: &str) {
    let id = &new.system_id;
    if old.uid != new.uid {
        return;
    }
    if old.started_at.is_some() {
        if new.started_at != old.started_at {
            push_capped(
                &mut v.placement,
                format!("{where_}: {id}: startedAt changed {:?} → {:?}", old.started_at, new.started_at),
            );
        }
        if new.node != old.node {
            push_capped(
                &mut v.placement,
                format!("{where_}: {id}: node changed after its migration started: {:?} → {:?}", old.node, new.node),
            );
        }
    }
    if let (Some(a), Some(b)) = (old.phase, new.phase)
        && a != b
    {
        let backwards = match a {
            Phase::Completed | Phase::NotMigrated => true,
            p if p.is_active() => {
                rank(b) < rank(a) && !(a == Phase::CuttingOver && b == Phase::AwaitingCutover) && b != Phase::Failed
            }
            _ => false,
        };
        if backwards {
            push_capped(&mut v.placement, format!("{where_}: {id}: phase moved backwards {a:?} → {b:?}"));
        }
    }
    for t in &new.transitions {
        if let Some(before) = old.transitions.iter().find(|o| o.sequence == t.sequence)
            && before != t
        {
            push_capped(
                &mut v.journal,
                format!("{where_}: {id}: status transition {} rewritten: {before:?} → {t:?}", t.sequence),
            );
        }
    }
    check_state(new, approval_wave, v, where_);
}

/// Checks one state by itself.
fn check_state(s: &Obs, approval_wave: &str, v: &mut Violations, where_: &str) {
    let cut = matches!(s.phase, Some(Phase::CuttingOver | Phase::Verifying | Phase::Completed));
    if cut && s.wave.as_deref() == Some(approval_wave) && s.approved_by.is_none() {
        push_capped(
            &mut v.approvals,
            format!("{where_}: {}: {:?} without an approval in wave {approval_wave}", s.system_id, s.phase),
        );
    }
}

/// Per-node use of every state in `systems` (systems whose phase holds capacity).
fn node_use(systems: &HashMap<String, Obs>, demand: &HashMap<String, Amounts>) -> HashMap<String, Amounts> {
    let mut used: HashMap<String, Amounts> = HashMap::new();
    for s in systems.values() {
        if let Some((node, r)) = contribution(s, demand) {
            let u = used.entry(node).or_default();
            for k in 0..4 {
                u[k] += r[k];
            }
        }
    }
    used
}

fn contribution(s: &Obs, demand: &HashMap<String, Amounts>) -> Option<(String, Amounts)> {
    let phase = s.phase?;
    if !phase.holds_capacity() {
        return None;
    }
    Some((s.node.clone()?, demand.get(&s.system_id).copied().unwrap_or_default()))
}

fn check_capacity(
    node: &str,
    used: &Amounts,
    allocatable: &HashMap<String, Amounts>,
    v: &mut Violations,
    where_: &str,
) {
    let Some(limit) = allocatable.get(node) else {
        push_capped(&mut v.capacity, format!("{where_}: systems placed on unknown node {node}"));
        return;
    };
    for k in 0..4 {
        if used[k] > limit[k] {
            push_capped(
                &mut v.capacity,
                format!(
                    "{where_}: node {node} above its allocatable: {} {} > {}",
                    RESOURCE_NAMES[k], used[k], limit[k]
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The watch: every state of every GovSystem the apiserver delivers, checked as it comes.

#[derive(Debug, Default)]
struct Watched {
    systems: HashMap<String, Obs>,
    used: HashMap<String, Amounts>,
    synced: bool,
    relists: usize,
    events: u64,
    /// When a phase change was seen, with the phase it went to.
    changes: Vec<Instant>,
    /// Every phase each system was seen in, in order (consecutive repeats folded).
    phases: HashMap<String, Vec<Phase>>,
    /// Every status transition any state showed, per system, by sequence.
    transitions: HashMap<String, BTreeMap<u64, SeenTransition>>,
    /// Systems whose phase entered Provisioning more than once.
    started: HashMap<String, u32>,
}

struct Shared {
    watched: Mutex<Watched>,
    violations: Mutex<Violations>,
    demand: HashMap<String, Amounts>,
    allocatable: HashMap<String, Amounts>,
    expected: BTreeMap<String, Phase>,
    approval_wave: String,
    started: Instant,
    snapshots: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn violations(&self) -> std::sync::MutexGuard<'_, Violations> {
        self.violations.lock().expect("not poisoned")
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().expect("not poisoned")
    }

    /// Systems not yet in their expected final phase.
    fn remaining(&self) -> usize {
        let w = self.watched();
        self.expected.iter().filter(|(id, want)| w.systems.get(*id).and_then(|s| s.phase) != Some(**want)).count()
    }

    /// The first phase change seen after `t`.
    fn first_change_after(&self, t: Instant) -> Option<Instant> {
        let w = self.watched();
        let i = w.changes.partition_point(|c| *c <= t);
        w.changes.get(i).copied()
    }

    fn changes_between(&self, a: Instant, b: Instant) -> usize {
        let w = self.watched();
        w.changes.partition_point(|c| *c <= b) - w.changes.partition_point(|c| *c <= a)
    }

    fn apply(&self, new: Obs, w: &mut Watched, v: &mut Violations) {
        let key = new.system_id.clone();
        let old = w.systems.get(&key).cloned();
        if let Some(old) = &old {
            check_step(old, &new, &self.approval_wave, v, "watch");
            if let Some((node, r)) = contribution(old, &self.demand) {
                let u = w.used.entry(node).or_default();
                for k in 0..4 {
                    u[k] = u[k].saturating_sub(r[k]);
                }
            }
        } else {
            check_state(&new, &self.approval_wave, v, "watch");
        }
        if let Some((node, r)) = contribution(&new, &self.demand) {
            let u = w.used.entry(node.clone()).or_default();
            for k in 0..4 {
                u[k] += r[k];
            }
            let u = *u;
            if w.synced {
                check_capacity(&node, &u, &self.allocatable, v, "watch");
            }
        }
        self.record(old.as_ref(), &new, w, v);
        w.systems.insert(key, new);
    }

    fn record(&self, old: Option<&Obs>, new: &Obs, w: &mut Watched, v: &mut Violations) {
        if let Some(p) = new.phase {
            let seen = w.phases.entry(new.system_id.clone()).or_default();
            if seen.last() != Some(&p) {
                seen.push(p);
                if old.is_some() {
                    w.changes.push(Instant::now());
                }
                if p == Phase::Provisioning && !seen[..seen.len() - 1].contains(&Phase::RolledBack) {
                    let n = w.started.entry(new.system_id.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        push_capped(&mut v.placement, format!("watch: {}: migration started {n} times", new.system_id));
                    }
                }
            }
        }
        let all = w.transitions.entry(new.system_id.clone()).or_default();
        for t in &new.transitions {
            all.entry(t.sequence).or_insert_with(|| t.clone());
        }
    }
}

fn spawn_watch(client: Client, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::erase::<GovSystem>(&()));
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<HashMap<String, Obs>> = None;
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let mut w = shared.watched();
            let mut v = shared.violations();
            w.events += 1;
            match event {
                watcher::Event::Init => relist = Some(HashMap::new()),
                watcher::Event::InitApply(o) => {
                    let s = obs_of(&o);
                    relist.get_or_insert_with(HashMap::new).insert(s.system_id.clone(), s);
                }
                watcher::Event::InitDone => {
                    // A relist is one consistent state: check each system against what was
                    // seen before it, then every node at once.
                    let fresh = relist.take().unwrap_or_default();
                    for s in fresh.values() {
                        match w.systems.get(&s.system_id).cloned() {
                            Some(old) => check_step(&old, s, &shared.approval_wave, &mut v, "watch relist"),
                            None => check_state(s, &shared.approval_wave, &mut v, "watch relist"),
                        }
                        let old = w.systems.get(&s.system_id).cloned();
                        shared.record(old.as_ref(), s, &mut w, &mut v);
                    }
                    w.systems = fresh;
                    w.used = node_use(&w.systems, &shared.demand);
                    for (node, u) in &w.used {
                        check_capacity(node, u, &shared.allocatable, &mut v, "watch relist");
                    }
                    w.synced = true;
                    w.relists += 1;
                }
                watcher::Event::Apply(o) => shared.apply(obs_of(&o), &mut w, &mut v),
                watcher::Event::Delete(o) => {
                    push_capped(&mut v.placement, format!("watch: {} deleted during the run", obs_of(&o).system_id));
                }
            }
        }
    })
}

/// Lists every GovSystem every `every` and checks the list as one state (capacity of every
/// node, and each system against the previous list).
fn spawn_snapshots(client: Client, shared: Arc<Shared>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::erase::<GovSystem>(&()));
        let mut previous: HashMap<String, Obs> = HashMap::new();
        let mut taken = 0;
        loop {
            tokio::time::sleep(every).await;
            let Ok(list) = api.list(&ListParams::default()).await else { continue };
            let now: HashMap<String, Obs> = list.items.iter().map(obs_of).map(|s| (s.system_id.clone(), s)).collect();
            let mut v = shared.violations();
            for (uid, s) in &now {
                match previous.get(uid) {
                    Some(old) => check_step(old, s, &shared.approval_wave, &mut v, "snapshot"),
                    None => check_state(s, &shared.approval_wave, &mut v, "snapshot"),
                }
            }
            for (node, u) in node_use(&now, &shared.demand) {
                check_capacity(&node, &u, &shared.allocatable, &mut v, "snapshot");
            }
            previous = now;
            taken += 1;
            shared.snapshots.store(taken, std::sync::atomic::Ordering::Relaxed);
            if taken % 10 == 0 {
                let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
                for s in previous.values() {
                    *phases.entry(s.phase.map_or("-", Phase::as_str)).or_default() += 1;
                }
                eprintln!("[chaos] {taken} snapshots; {} systems not final; {phases:?}", shared.remaining());
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Replicas: two operators, each replaced at once when it exits.

#[derive(Debug)]
struct Slot {
    prefix: &'static str,
    generation: u32,
    name: String,
    process: Option<OperatorProcess>,
    paused: bool,
    started: Instant,
}

/// The operator replicas and their supervisor's record.
#[derive(Debug)]
pub struct Replicas {
    cluster: Cluster,
    args: Vec<String>,
    slots: Vec<Slot>,
    /// (name, exit status, when) of every exit.
    pub exits: Vec<(String, String, Instant)>,
}

impl Replicas {
    fn new(cluster: &Cluster, args: Vec<String>) -> anyhow::Result<Replicas> {
        let mut r = Replicas { cluster: cluster.clone(), args, slots: Vec::new(), exits: Vec::new() };
        for prefix in ["chaos-a", "chaos-b"] {
            r.slots.push(Slot {
                prefix,
                generation: 0,
                name: String::new(),
                process: None,
                paused: false,
                started: Instant::now(),
            });
            let i = r.slots.len() - 1;
            r.start(i)?;
        }
        Ok(r)
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let slot = &mut self.slots[i];
        slot.generation += 1;
        slot.name = format!("{}-{}", slot.prefix, slot.generation);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        slot.process = Some(OperatorProcess::start(&self.cluster, &slot.name, &args)?);
        slot.paused = false;
        slot.started = Instant::now();
        Ok(())
    }

    /// Replaces every replica that exited (at most once a second per replica, as a kubelet
    /// would back off a crash loop).
    fn supervise(&mut self) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if let Some(status) = slot.process.as_mut().and_then(OperatorProcess::exit_status) {
                self.exits.push((slot.name.clone(), status.to_string(), Instant::now()));
                slot.process = None;
            }
            let slot = &self.slots[i];
            if slot.process.is_none()
                && slot.started.elapsed() >= Duration::from_secs(1)
                && let Err(e) = self.start(i)
            {
                eprintln!("[chaos] restarting a replica failed: {e:#}");
            }
        }
    }

    fn slot_of(&mut self, name: &str) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.name == name && s.process.is_some())
    }

    fn is_live(&mut self, name: &str) -> bool {
        self.slot_of(name).is_some_and(|s| !s.paused && s.process.as_mut().is_some_and(OperatorProcess::running))
    }

    fn signal(&mut self, name: &str, signal: &str) -> anyhow::Result<()> {
        let slot = self.slot_of(name).with_context(|| format!("no replica {name}"))?;
        slot.process.as_ref().expect("slot_of returns running slots").signal(signal);
        match signal {
            "STOP" => slot.paused = true,
            "CONT" => slot.paused = false,
            _ => {}
        }
        Ok(())
    }

    /// Replicas started so far (first starts included).
    pub fn starts(&self) -> u32 {
        self.slots.iter().map(|s| s.generation).sum()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(p) = &slot.process
                && slot.paused
            {
                p.signal("CONT");
            }
        }
    }
}

type SharedReplicas = Arc<Mutex<Replicas>>;

fn spawn_supervisor(replicas: SharedReplicas) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            replicas.lock().expect("not poisoned").supervise();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "default")
        .get(LEASE)
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Waits until a live (running, not paused) replica holds the Lease, other than `not`.
async fn wait_leader(
    client: &Client,
    replicas: &SharedReplicas,
    not: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(h) = holder(client).await
            && Some(h.as_str()) != not
            && replicas.lock().expect("not poisoned").is_live(&h)
        {
            return Ok(h);
        }
        if Instant::now() > deadline {
            bail!(
                "no live replica {} holds the Lease after {timeout:?}",
                not.map(|n| format!("but {n}")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The approval driver: city operators approving through the REST API.

/// One approval request and its answer.
#[derive(Debug, Clone)]
pub struct ApprovalPost {
    /// System.
    pub system_id: String,
    /// Approver identity.
    pub by: String,
    /// Reason sent (unique per request).
    pub reason: String,
    /// HTTP status (0 when the request failed before an answer).
    pub status: u16,
}

#[derive(Debug, Default)]
struct Driver {
    posts: Vec<ApprovalPost>,
    approved: HashSet<String>,
    unavailable: usize,
}

/// The identity and scope that approve a system of `region`: its city's operator, or the
/// province's for a provincial tenant.
fn approver_of(region: &str) -> (String, String) {
    if region.ends_with("0000") {
        ("province-ops".into(), "province".into())
    } else {
        let city = format!("{}00", &region[..4]);
        (format!("city-ops-{city}"), city)
    }
}

fn spawn_approvals(callers: Vec<(String, Caller, String)>, driver: Arc<Mutex<Driver>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for (by, caller, query) in &callers {
                let mut waiting = Vec::new();
                let mut path = format!("/api/v1/systems?phase=AwaitingCutover&limit=1000{query}");
                loop {
                    let Ok(reply) = caller.get(&path).await else { break };
                    if reply.status != StatusCode::OK {
                        break;
                    }
                    let body = reply.json();
                    for s in body["items"].as_array().into_iter().flatten() {
                        if let Some(id) = s["systemId"].as_str() {
                            waiting.push(id.to_owned());
                        }
                    }
                    match body["metadata"]["continue"].as_str() {
                        Some(c) if !c.is_empty() => {
                            path = format!("/api/v1/systems?phase=AwaitingCutover&limit=1000{query}&continue={c}");
                        }
                        _ => break,
                    }
                }
                for id in waiting {
                    if driver.lock().expect("not poisoned").approved.contains(&id) {
                        continue;
                    }
                    let n = driver.lock().expect("not poisoned").posts.iter().filter(|p| p.system_id == id).count();
                    let reason = format!("CHG-{id}-{}", n + 1);
                    let body = serde_json::to_vec(&json!({ "reason": reason })).expect("JSON");
                    let path = format!("/api/v1/systems/{id}/cutover-approval");
                    let reply =
                        caller.send(http::Method::POST, &path, &[("content-type", "application/json")], body).await;
                    let status = reply.as_ref().map_or(0, |r| r.status.as_u16());
                    let mut d = driver.lock().expect("not poisoned");
                    d.posts.push(ApprovalPost { system_id: id.clone(), by: by.clone(), reason, status });
                    match status {
                        200 | 201 => drop(d.approved.insert(id)),
                        503 => d.unavailable += 1,
                        _ => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of the leader.
    Kill,
    /// SIGSTOP of the leader until a successor leads, then SIGCONT.
    Pause,
    /// kube-apiserver killed (SIGKILL) and started again.
    KubeApiserver,
    /// The Kubernetes etcd killed (SIGKILL) and started again.
    EtcdKube,
    /// The status-store etcd down for the configured outage.
    EtcdStore,
}

/// What happened with one fault.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// Which.
    pub fault: Fault,
    /// When, from the start of the run.
    pub at: Duration,
    /// The leader hit (kill, pause).
    pub victim: Option<String>,
    /// Who led next.
    pub successor: Option<String>,
    /// Fault → a different live replica holds the Lease.
    pub new_leader: Option<Duration>,
    /// How long the component was down (outages).
    pub down: Option<Duration>,
    /// Fault (kill, pause) or the component's return (outages) → the first phase change after
    /// a leader was back.
    pub recovered: Option<Duration>,
    /// Systems not yet final when the fault was injected.
    pub in_flight: usize,
    /// Anything else worth saying.
    pub note: String,
    /// When a paused leader was resumed.
    pub resumed: Option<Instant>,
    /// SIGCONT → the resumed leader no longer leads (`suyun_leader 0` on its metrics endpoint,
    /// as a monitoring stack would see it, or it exited).
    pub stepped_down: Option<Duration>,
}

/// How long a resumed leader may take to notice it was deposed and stop leading.
const STEP_DOWN_LIMIT: Duration = Duration::from_secs(30);

struct Faults<'a> {
    cluster: &'a Cluster,
    client: Client,
    replicas: SharedReplicas,
    shared: Arc<Shared>,
    province: Caller,
    options: &'a Options,
}

impl Faults<'_> {
    async fn component(&self, action: &str, name: &str) -> anyhow::Result<()> {
        let cluster = self.cluster.clone();
        let (action, name) = (action.to_owned(), name.to_owned());
        tokio::task::spawn_blocking(move || cluster.component(&action, &name)).await?
    }

    fn record(&self, fault: Fault, t0: Instant) -> FaultRecord {
        FaultRecord {
            fault,
            at: t0 - self.shared.started,
            victim: None,
            successor: None,
            new_leader: None,
            down: None,
            recovered: None,
            in_flight: self.shared.remaining(),
            note: String::new(),
            resumed: None,
            stepped_down: None,
        }
    }

    /// Waits for a live leader and then for the first phase change after it led.
    async fn recovery(&self, from: Instant, timeout: Duration) -> (Option<String>, Option<Duration>) {
        let Ok(leader) = wait_leader(&self.client, &self.replicas, None, timeout).await else { return (None, None) };
        let led = Instant::now();
        let deadline = from + timeout;
        while Instant::now() < deadline {
            if let Some(t) = self.shared.first_change_after(led) {
                return (Some(leader), Some(t - from));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (Some(leader), None)
    }

    async fn kill(&self) -> anyhow::Result<FaultRecord> {
        let leader = wait_leader(&self.client, &self.replicas, None, Duration::from_secs(120)).await?;
        let t0 = Instant::now();
        let mut r = self.record(Fault::Kill, t0);
        self.replicas.lock().expect("not poisoned").signal(&leader, "KILL")?;
        r.victim = Some(leader.clone());
        let next = wait_leader(&self.client, &self.replicas, Some(&leader), Duration::from_secs(120)).await?;
        r.new_leader = Some(t0.elapsed());
        r.successor = Some(next);
        // `recovered` (the first phase change after the new leader took over, whoever made
        // it) is filled in at the end: the next fault does not wait for it.
        Ok(r)
    }

    async fn pause(&self) -> anyhow::Result<FaultRecord> {
        let leader = wait_leader(&self.client, &self.replicas, None, Duration::from_secs(120)).await?;
        let t0 = Instant::now();
        let mut r = self.record(Fault::Pause, t0);
        self.replicas.lock().expect("not poisoned").signal(&leader, "STOP")?;
        r.victim = Some(leader.clone());
        let next = wait_leader(&self.client, &self.replicas, Some(&leader), Duration::from_secs(120)).await;
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                let _ = self.replicas.lock().expect("not poisoned").signal(&leader, "CONT");
                return Err(e);
            }
        };
        r.new_leader = Some(t0.elapsed());
        r.successor = Some(next);
        // Let the successor work a little while the old leader sleeps, then wake it.
        let (_, recovered) = self.recovery(t0, Duration::from_secs(60)).await;
        r.recovered = recovered;
        let lease = Duration::from_secs(self.options.lease_seconds);
        tokio::time::sleep(lease.saturating_sub(t0.elapsed())).await;
        let metrics = {
            let mut replicas = self.replicas.lock().expect("not poisoned");
            let metrics = replicas.slot_of(&leader).and_then(|s| s.process.as_ref()).map(|p| p.metrics_addr);
            replicas.signal(&leader, "CONT")?;
            metrics
        };
        // A leader that lost its Lease must step down rather than act alongside the new one
        // (that it wrote nothing meanwhile is the checker's business).
        let resumed = Instant::now();
        r.resumed = Some(resumed);
        while resumed.elapsed() < STEP_DOWN_LIMIT {
            let exited = !self.replicas.lock().expect("not poisoned").is_live(&leader);
            // A scrape that fails proves nothing: only `suyun_leader 0` or an exit counts.
            let standby = match metrics {
                Some(addr) => crate::prometheus::http_get(addr, "/metrics")
                    .await
                    .is_ok_and(|(_, body)| body.lines().any(|l| l.trim() == "suyun_leader 0")),
                None => false,
            };
            if exited || standby {
                r.stepped_down = Some(resumed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(r)
    }

    async fn restart(&self, fault: Fault, name: &str, rng: &mut Rng) -> anyhow::Result<FaultRecord> {
        let t0 = Instant::now();
        let mut r = self.record(fault, t0);
        self.component("kill", name).await?;
        tokio::time::sleep(rng.between(Duration::from_secs(1), Duration::from_secs(3))).await;
        self.component("start", name).await?;
        let back = Instant::now();
        r.down = Some(back - t0);
        let (leader, recovered) = self.recovery(back, Duration::from_secs(180)).await;
        r.successor = leader;
        r.recovered = recovered;
        Ok(r)
    }

    /// A system of the approval wave that the API shows before its cutover (so an approval
    /// of it would be accepted), waited for up to two minutes.
    async fn approvable(&self) -> Option<String> {
        let probe = format!("/api/v1/systems?wave={}&limit=1000", self.shared.approval_wave);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(reply) = self.province.get(&probe).await
                && reply.status == StatusCode::OK
            {
                let found = reply.json()["items"].as_array().into_iter().flatten().find_map(|s| {
                    let phase = s["phase"].as_str().unwrap_or_default();
                    ["Scheduled", "Provisioning", "Replicating", "AwaitingCutover"]
                        .contains(&phase)
                        .then(|| s["systemId"].as_str().unwrap_or_default().to_owned())
                });
                if found.is_some() {
                    return found;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    async fn store_outage(&self) -> anyhow::Result<FaultRecord> {
        let candidate = self.approvable().await;
        let t0 = Instant::now();
        let mut r = self.record(Fault::EtcdStore, t0);
        self.component("stop", "etcd-store").await?;
        // While the store is down the API serves the last state marked stale and refuses
        // approvals with 503.
        let stale = crate::eventually(Duration::from_secs(20), || async {
            let ready = self.province.get("/readyz").await?;
            anyhow::ensure!(ready.status == StatusCode::SERVICE_UNAVAILABLE, "/readyz {}", ready.status);
            let reply = self.province.get("/api/v1/systems?limit=1").await?;
            anyhow::ensure!(reply.status == StatusCode::OK, "list {}", reply.status);
            anyhow::ensure!(reply.header("suyun-stale").is_some(), "no Suyun-Stale header");
            anyhow::ensure!(reply.json()["metadata"]["stale"] == true, "metadata.stale is not true");
            Ok(())
        })
        .await;
        if let Err(e) = stale {
            push_capped(
                &mut self.shared.violations().faults,
                format!("status store down: the API is not stale-marked: {e:#}"),
            );
        }
        // An approval of a system the (stale) API shows before its cutover: 503.
        match candidate {
            Some(id) => {
                let reply = self.province.post(&format!("/api/v1/systems/{id}/cutover-approval")).await?;
                if reply.status == StatusCode::SERVICE_UNAVAILABLE {
                    r.note = format!("approval of {id} during the outage: 503; ");
                } else {
                    push_capped(
                        &mut self.shared.violations().faults,
                        format!("approval of {id} while the status store was down: {} {}", reply.status, reply.text()),
                    );
                }
            }
            None => push_capped(
                &mut self.shared.violations().faults,
                "status store down: no system of the approval wave before its cutover to probe 503 with".into(),
            ),
        }
        tokio::time::sleep(self.options.store_outage.saturating_sub(t0.elapsed())).await;
        let before = self.shared.changes_between(t0, Instant::now());
        let completed_in_cluster = {
            let w = self.shared.watched();
            w.systems.values().filter(|s| s.phase == Some(Phase::Completed)).count()
        };
        self.component("start", "etcd-store").await?;
        let back = Instant::now();
        r.down = Some(back - t0);
        r.note.push_str(&format!("{before} phase changes in Kubernetes while the store was down; "));
        // Recovered: the API is fresh again and shows at least what Kubernetes had completed.
        let caught_up = crate::eventually(Duration::from_secs(180), || async {
            let ready = self.province.get("/readyz").await?;
            anyhow::ensure!(ready.status == StatusCode::OK, "/readyz {}", ready.status);
            let n = api_count(&self.province, "&phase=Completed").await?;
            anyhow::ensure!(
                n >= completed_in_cluster,
                "the API shows {n} Completed, Kubernetes had {completed_in_cluster}"
            );
            Ok(())
        })
        .await;
        match caught_up {
            Ok(()) => {
                r.recovered = Some(back.elapsed());
                r.note.push_str("API caught up");
            }
            Err(e) => push_capped(&mut self.shared.violations().faults, format!("after the store outage: {e:#}")),
        }
        r.successor = holder(&self.client).await;
        Ok(r)
    }
}

/// Systems the API lists to the province with `filter` (all pages).
async fn api_count(caller: &Caller, filter: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut path = format!("/api/v1/systems?limit=1000{filter}");
    loop {
        let reply = caller.get(&path).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{path}: {}", reply.status);
        let body = reply.json();
        n += body["items"].as_array().map_or(0, Vec::len);
        match body["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => path = format!("/api/v1/systems?limit=1000{filter}&continue={c}"),
            _ => return Ok(n),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The store, read back.

async fn read_prefix(etcd: &mut etcd_client::Client, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let end = prefix_end(prefix);
    let mut start = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut out = Vec::new();
    loop {
        let mut options = etcd_client::GetOptions::new().with_range(end.clone()).with_limit(1000);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let reply = etcd.get(start.clone(), Some(options)).await?;
        if revision == 0 {
            revision = reply.header().map_or(0, |h| h.revision());
        }
        for kv in reply.kvs() {
            out.push((kv.key_str()?.to_owned(), kv.value().to_vec()));
        }
        match reply.kvs().last() {
            Some(last) if reply.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// One system's journal: (sequence from the key, stored bytes, parsed), in key order.
type Journal = Vec<(u64, Vec<u8>, Value)>;

async fn read_journals(etcd: &mut etcd_client::Client, keys: &Keys) -> anyhow::Result<BTreeMap<String, Journal>> {
    let mut out: BTreeMap<String, Journal> = BTreeMap::new();
    for (key, bytes) in read_prefix(etcd, &keys.collection("journal")).await? {
        let Some(KeyRef::Journal(id, n)) = keys.parse(&key) else { continue };
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        out.entry(id.to_owned()).or_default().push((n, bytes, value));
    }
    Ok(out)
}

/// What the checker asserts of the journal of one system, against its final state, every
/// state the watch saw and the approvals the driver was given.
fn check_journal(
    id: &str,
    journal: &Journal,
    last: &Obs,
    watched_phases: &[Phase],
    watched_transitions: &BTreeMap<u64, SeenTransition>,
    v: &mut Violations,
) {
    let mut list = |m: String| push_capped(&mut v.journal, format!("{id}: {m}"));
    let final_phase = last.phase.map(Phase::as_str).unwrap_or("Pending");
    if journal.is_empty() {
        if final_phase != "Pending" {
            list(format!("no journal, though the system is {final_phase}"));
        }
        return;
    }
    let mut prev_bytes: Option<&[u8]> = None;
    let mut prev_to: Option<&str> = None;
    let mut prev_transition = 0;
    let mut by_transition: HashMap<u64, usize> = HashMap::new();
    for (i, (n, bytes, e)) in journal.iter().enumerate() {
        if *n != i as u64 + 1 {
            list(format!("journal keys not contiguous: entry {} has sequence {n}", i + 1));
        }
        if e["sequence"].as_u64() != Some(*n) {
            list(format!("entry {n} says sequence {}", e["sequence"]));
        }
        let (from, to) = (e["from"].as_str().unwrap_or_default(), e["to"].as_str().unwrap_or_default());
        if let Some(p) = prev_to
            && p != from
        {
            list(format!("entry {n} goes {from} → {to} but the one before ended in {p}: a transition is missing"));
        }
        prev_to = Some(to);
        // The chain: each entry names the SHA-256 of the previous entry's stored bytes.
        let want = prev_bytes.map(|b| hex::encode(sha2::Sha256::digest(b))).unwrap_or_default();
        if e["prev"].as_str() != Some(want.as_str()) {
            list(format!("entry {n}: prev {} is not the hash of the entry before ({want:?})", e["prev"]));
        }
        prev_bytes = Some(bytes);
        if e["uid"].as_str() != Some(last.uid.as_str()) {
            list(format!("entry {n}: uid {} is not the object's {}", e["uid"], last.uid));
        }
        let missed = e["missed"].as_u64().unwrap_or(0);
        if missed > 0 {
            list(format!("entry {n}: {missed} transitions missed before it (lost)"));
        }
        let t = e["transition"].as_u64().unwrap_or(0);
        if t != prev_transition + 1 + missed {
            list(format!("entry {n}: transition {t} after {prev_transition} (missed {missed})"));
        }
        prev_transition = t;
        *by_transition.entry(t).or_default() += 1;
    }
    if prev_to != Some(final_phase) {
        list(format!("journal ends in {prev_to:?}, the system is {final_phase}"));
    }
    // Every transition a status showed, in the journal exactly once and the same.
    let mut shown: BTreeMap<u64, &SeenTransition> = watched_transitions.iter().map(|(k, t)| (*k, t)).collect();
    for t in &last.transitions {
        shown.insert(t.sequence, t);
    }
    for (seq, t) in &shown {
        match by_transition.get(seq) {
            Some(1) => {
                let e = journal.iter().find(|(_, _, e)| e["transition"].as_u64() == Some(*seq)).map(|(_, _, e)| e);
                if let Some(e) = e
                    && (e["from"] != t.from.as_str() || e["to"] != t.to.as_str() || e["actor"] != t.actor.as_str())
                {
                    list(format!(
                        "transition {seq} is {} → {} by {} in the journal, {t:?} in status",
                        e["from"], e["to"], e["actor"]
                    ));
                }
            }
            Some(k) => list(format!("transition {seq} journaled {k} times")),
            None => list(format!("transition {seq} ({} → {}) shown in status is not in the journal", t.from, t.to)),
        }
    }
    // Every phase the watch saw, in the journal's order.
    let journal_phases: Vec<&str> = std::iter::once(journal[0].2["from"].as_str().unwrap_or_default())
        .chain(journal.iter().map(|(_, _, e)| e["to"].as_str().unwrap_or_default()))
        .collect();
    let mut at = 0;
    for p in watched_phases {
        match journal_phases[at..].iter().position(|j| *j == p.as_str()) {
            Some(k) => at += k,
            None => {
                list(format!("phase {p:?} seen in the cluster is not in the journal (in order): {journal_phases:?}"));
                break;
            }
        }
    }
    for phase in ["Provisioning", "CuttingOver", "Completed"] {
        let n = journal.iter().filter(|(_, _, e)| e["to"] == phase).count();
        if n > 1 {
            list(format!("entered {phase} {n} times (migrated twice)"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

/// What a run measured and found.
#[derive(Debug, Default)]
pub struct Report {
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Systems migrated, by expected final phase.
    pub expected: BTreeMap<String, usize>,
    /// Every fault, in order.
    pub faults: Vec<FaultRecord>,
    /// Replicas started (first two included).
    pub replica_starts: u32,
    /// Replica exits seen by the supervisor: (name, status).
    pub exits: Vec<(String, String)>,
    /// Approval requests: total, 201/200, 503.
    pub approvals: (usize, usize, usize),
    /// States delivered by the watch, relists, snapshots taken.
    pub observed: (u64, usize, usize),
    /// Journal entries read back.
    pub journal_entries: usize,
    /// Setup (objects created), faults, and total.
    pub durations: (Duration, Duration, Duration),
    /// What the checker found.
    pub violations: Violations,
}

fn stats(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    format!("min {}, median {}, max {} (n = {})", s(v[0]), s(v[v.len() / 2]), s(v[v.len() - 1]), v.len())
}

impl Report {
    /// The figures, one per line.
    pub fn summary(&self) -> String {
        let of = |f: Fault| self.faults.iter().filter(move |r| r.fault == f);
        let mut out = vec![
            format!("seed {} (SUYUN_CHAOS_SEED={} repeats the fault schedule)", self.seed, self.seed),
            format!("systems by expected final phase: {:?}", self.expected),
            format!(
                "duration: setup {:.0} s, faults {:.0} s, total {:.0} s",
                self.durations.0.as_secs_f64(),
                self.durations.1.as_secs_f64(),
                self.durations.2.as_secs_f64()
            ),
            format!(
                "leader kills survived: {}; time to a new leader: {}",
                of(Fault::Kill).filter(|r| r.new_leader.is_some()).count(),
                stats(of(Fault::Kill).filter_map(|r| r.new_leader).collect())
            ),
            format!(
                "  kill → first phase change by the new leader: {}",
                stats(of(Fault::Kill).filter_map(|r| r.recovered).collect())
            ),
            format!(
                "leader pauses: {}; time to a new leader: {}",
                of(Fault::Pause).count(),
                stats(of(Fault::Pause).filter_map(|r| r.new_leader).collect())
            ),
        ];
        for r in self.faults.iter().filter(|r| !matches!(r.fault, Fault::Kill)) {
            out.push(format!(
                "  {:?} at {:.0} s: down {}, new leader {}, recovered {} after {}; {} systems in flight; {}",
                r.fault,
                r.at.as_secs_f64(),
                r.down.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                r.new_leader.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                r.recovered.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                if matches!(r.fault, Fault::Pause) { "the pause" } else { "the component's return" },
                r.in_flight,
                r.note
            ));
        }
        out.push(format!(
            "replicas started: {} ({} exits: {})",
            self.replica_starts,
            self.exits.len(),
            summarize_exits(&self.exits)
        ));
        out.push(format!(
            "approvals posted: {} ({} recorded, {} answered 503)",
            self.approvals.0, self.approvals.1, self.approvals.2
        ));
        out.push(format!(
            "observed: {} watch events, {} relists, {} snapshots; {} journal entries read back",
            self.observed.0, self.observed.1, self.observed.2, self.journal_entries
        ));
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for (kind, _) in self.violations.all() {
            *by_kind.entry(kind).or_default() += 1;
        }
        out.push(format!("violations: {} {by_kind:?}", self.violations.count()));
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for (kind, m) in self.violations.all() {
            let n = shown.entry(kind).or_default();
            *n += 1;
            if *n <= 12 {
                out.push(format!("  [{kind}] {m}"));
            }
        }
        out.join("\n")
    }
}

fn summarize_exits(exits: &[(String, String)]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, status) in exits {
        *by.entry(status.as_str()).or_default() += 1;
    }
    format!("{by:?}")
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Runs the chaos test on a control plane of its own in `options.cluster_dir`; the report says
/// what was measured and found (an `Err` only when the run could not be carried out).
pub fn run(options: &Options) -> anyhow::Result<Report> {
    let dir = options.cluster_dir.clone();
    let operator = crate::operator::binary();
    anyhow::ensure!(operator.exists(), "{} not built", operator.display());
    let mut report = None;
    let slot = &mut report;
    crate::with_own_cluster(&dir, options.keep_cluster, |cluster| async move {
        *slot = Some(run_in(options, cluster).await?);
        Ok(())
    })?;
    report.context("the run ended without a report")
}

#[allow(clippy::too_many_lines)]
async fn run_in(options: &Options, cluster: Cluster) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report { seed: options.seed, ..Report::default() };
    eprintln!("[chaos] seed {} (set SUYUN_CHAOS_SEED to repeat)", options.seed);
    let mut rng = Rng::new(options.seed, 1);
    let data = dataset(options.systems, options.data_seed, options.node_concurrency);
    for phase in data.expected.values() {
        *report.expected.entry(phase.as_str().to_owned()).or_default() += 1;
    }
    let in_approval_wave =
        data.input.systems.iter().filter(|s| s.wave.as_deref() == Some(data.approval_wave.as_str())).count();
    eprintln!(
        "[chaos] {} systems ({in_approval_wave} in the approval wave {}), expected {:?}",
        data.input.systems.len(),
        data.approval_wave,
        report.expected
    );
    anyhow::ensure!(in_approval_wave > 0, "no system in the approval wave");

    let client = cluster.client().await?;
    crate::install_crds(&client).await?;
    let nodes: Vec<CloudNode> = data.input.nodes.iter().map(cloud_node).collect::<anyhow::Result<_>>()?;
    let failed = create_all(|_: &CloudNode| Api::all(client.clone()), nodes, 16).await;
    anyhow::ensure!(failed.is_empty(), "CloudNodes refused: {failed:?}");
    let tenants: Vec<Tenant> = data.input.tenants.iter().map(tenant).collect::<anyhow::Result<_>>()?;
    let failed = create_all(|_: &Tenant| Api::all(client.clone()), tenants, 16).await;
    anyhow::ensure!(failed.is_empty(), "Tenants refused: {failed:?}");

    // The replicas, publishing to the status store.
    let prefix = crate::etcd::unique_prefix("chaos");
    let keys = Keys::new(&prefix);
    let lease = options.lease_seconds.to_string();
    let args = vec![
        format!("--lease-name={LEASE}"),
        format!("--lease-duration-seconds={lease}"),
        format!("--store-endpoints={}", cluster.etcd_endpoints),
        format!("--store-prefix={prefix}"),
        format!("--store-lease-ttl={lease}"),
        format!("--debounce-ms={}", options.debounce_ms),
        "--log-format=json".into(),
    ];
    let replicas: SharedReplicas = Arc::new(Mutex::new(Replicas::new(&cluster, args)?));
    let supervisor = spawn_supervisor(replicas.clone());
    let namespaces = Api::<Namespace>::all(client.clone());
    crate::eventually(Duration::from_secs(300), || async {
        let have = namespaces
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=suyun-operator"))
            .await?
            .items
            .len();
        anyhow::ensure!(have >= data.input.tenants.len(), "{have}/{} tenant Namespaces", data.input.tenants.len());
        Ok(())
    })
    .await?;

    // The checker's watch and snapshots start before any system exists.
    let shared = Arc::new(Shared {
        watched: Mutex::default(),
        violations: Mutex::default(),
        demand: data.input.systems.iter().map(|s| (s.system_id.clone(), amounts(&s.resources))).collect(),
        allocatable: data.input.nodes.iter().map(|n| (n.name.clone(), amounts(&n.allocatable))).collect(),
        expected: data.expected.clone(),
        approval_wave: data.approval_wave.clone(),
        started,
        snapshots: std::sync::atomic::AtomicUsize::new(0),
    });
    let watch = spawn_watch(client.clone(), shared.clone());
    let snapshots = spawn_snapshots(client.clone(), shared.clone(), options.snapshot_every);

    // The REST API with a token per city and one for the province, and the approval driver.
    let server = TestServer::start(&cluster.etcd_endpoints, &prefix, 500).await?;
    let mut regions: BTreeSet<String> = BTreeSet::new();
    for t in &data.input.tenants {
        regions.insert(approver_of(&t.region_code).1);
    }
    let tokens: Vec<(String, String, String)> = regions
        .iter()
        .map(|scope| {
            let (by, _) = approver_of(if scope == "province" { "320000" } else { scope });
            (format!("token-{by}"), by, scope.clone())
        })
        .collect();
    server.write_tokens(
        &tokens.iter().map(|(t, by, scope)| (t.as_str(), by.as_str(), scope.as_str(), false)).collect::<Vec<_>>(),
    );
    let province = server.with_token("token-province-ops");
    crate::eventually(Duration::from_secs(10), || async {
        let reply = province.get("/api/v1/systems?limit=1").await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.status);
        Ok(())
    })
    .await?;
    let callers: Vec<(String, Caller, String)> = tokens
        .iter()
        .map(|(token, by, scope)| {
            let query = if scope == "province" { "&region=320000".to_owned() } else { String::new() };
            (by.clone(), server.with_token(token), query)
        })
        .collect();
    let driver = Arc::new(Mutex::new(Driver::default()));
    let approvals = spawn_approvals(callers, driver.clone());

    // Waves (slow), then the systems.
    let waves = Api::<MigrationWave>::all(client.clone());
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    for w in &data.input.waves {
        waves.create(&pp, &wave_object(w, w.name == data.approval_wave, options.slow_compression)?).await?;
    }
    let systems: Vec<GovSystem> = data.input.systems.iter().map(system).collect::<anyhow::Result<_>>()?;
    let failed =
        create_all(|s: &GovSystem| Api::namespaced(client.clone(), &s.namespace().unwrap_or_default()), systems, 32)
            .await;
    anyhow::ensure!(failed.is_empty(), "{} GovSystems refused, e.g. {:?}", failed.len(), failed.first());
    crate::eventually(Duration::from_secs(600), || async {
        let w = shared.watched();
        let moving = w.systems.values().filter(|s| s.phase.is_some_and(Phase::is_active)).count();
        anyhow::ensure!(moving > 0, "no migration started yet");
        Ok(())
    })
    .await?;
    report.durations.0 = started.elapsed();
    eprintln!("[chaos] migrating after {:.0} s; injecting faults", started.elapsed().as_secs_f64());

    // The fault schedule: random order; the store outage in the first half, while the
    // approval wave still has systems before their cutover.
    let mut schedule: Vec<Fault> = std::iter::repeat_n(Fault::Kill, options.kills)
        .chain(std::iter::repeat_n(Fault::Pause, options.pauses))
        .chain([Fault::KubeApiserver, Fault::EtcdKube, Fault::EtcdStore])
        .collect();
    rng.shuffle(&mut schedule);
    if let Some(i) = schedule.iter().position(|f| *f == Fault::EtcdStore)
        && i >= schedule.len() / 2
    {
        let j = rng.below(schedule.len() / 2);
        schedule.swap(i, j);
    }
    let faults = Faults {
        cluster: &cluster,
        client: client.clone(),
        replicas: replicas.clone(),
        shared: shared.clone(),
        province: province.clone(),
        options,
    };
    let faults_started = Instant::now();
    let deadline = started + options.timeout;
    let mut outcome: anyhow::Result<()> = Ok(());
    for (k, fault) in schedule.iter().enumerate() {
        if Instant::now() > deadline {
            outcome = Err(anyhow::anyhow!("timed out after {} of {} faults", k, schedule.len()));
            break;
        }
        tokio::time::sleep(rng.between(options.gap.0, options.gap.1)).await;
        let result = match fault {
            Fault::Kill => faults.kill().await,
            Fault::Pause => faults.pause().await,
            Fault::KubeApiserver => faults.restart(*fault, "kube-apiserver", &mut rng).await,
            Fault::EtcdKube => faults.restart(*fault, "etcd-kube", &mut rng).await,
            Fault::EtcdStore => faults.store_outage().await,
        };
        match result {
            Ok(r) => {
                eprintln!(
                    "[chaos] fault {}/{}: {:?} at {:.1} s, victim {:?}, new leader after {:?}, recovered after {:?}, down {:?}, {} in flight {}",
                    k + 1,
                    schedule.len(),
                    r.fault,
                    r.at.as_secs_f64(),
                    r.victim,
                    r.new_leader,
                    r.recovered,
                    r.down,
                    r.in_flight,
                    r.note
                );
                if r.in_flight == 0 {
                    push_capped(
                        &mut shared.violations().faults,
                        format!("{:?} injected after every system was final: slow the migration down", r.fault),
                    );
                }
                report.faults.push(r);
            }
            Err(e) => {
                outcome = Err(e.context(format!("fault {} ({fault:?})", k + 1)));
                break;
            }
        }
    }
    report.durations.1 = faults_started.elapsed();

    // Finish quickly, then check.
    if outcome.is_ok() {
        for w in &data.input.waves {
            let patch = json!({ "spec": { "timeCompression": options.fast_compression } });
            waves.patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let done = crate::eventually(left, || async {
            let n = shared.remaining();
            anyhow::ensure!(n == 0, "{n} systems not in their expected final phase");
            Ok(())
        })
        .await;
        if let Err(e) = done {
            eprintln!("[chaos] {e:#}");
        }
    }
    // The store must catch up with the cluster: every system's record and journal end in its
    // phase, and no approval is left.
    let mut etcd = crate::etcd::connect(&cluster.etcd_endpoints).await?;
    let final_systems: HashMap<String, Obs> = {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<GovSystem>(&()));
        api.list(&ListParams::default()).await?.items.iter().map(obs_of).map(|s| (s.system_id.clone(), s)).collect()
    };
    let settle = crate::eventually(Duration::from_secs(60), || {
        let (mut etcd, keys, final_systems) = (etcd.clone(), keys.clone(), &final_systems);
        async move {
            let records = read_prefix(&mut etcd, &keys.collection("systems")).await?;
            let mut behind = 0;
            for (_, bytes) in &records {
                let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
                let id = v["systemId"].as_str().unwrap_or_default();
                if final_systems.get(id).and_then(|s| s.phase).map(Phase::as_str) != v["phase"].as_str() {
                    behind += 1;
                }
            }
            anyhow::ensure!(
                records.len() == final_systems.len() && behind == 0,
                "store: {} records for {} systems, {behind} behind",
                records.len(),
                final_systems.len()
            );
            let journals = read_journals(&mut etcd, &keys).await?;
            let unfinished = final_systems
                .values()
                .filter(|s| {
                    let last = journals.get(&s.system_id).and_then(|j| j.last()).map(|(_, _, e)| e["to"].clone());
                    s.phase.is_some_and(|p| p != Phase::Pending)
                        && last.as_ref().and_then(Value::as_str) != s.phase.map(Phase::as_str)
                })
                .count();
            anyhow::ensure!(unfinished == 0, "{unfinished} journals do not end in their system's phase yet");
            Ok(())
        }
    })
    .await;
    if let Err(e) = settle {
        push_capped(&mut shared.violations().journal, format!("the store did not catch up with the cluster: {e:#}"));
    }
    // A resumed leader must have stepped down (measured when it was resumed).
    for r in report.faults.iter_mut().filter(|r| r.fault == Fault::Pause && r.resumed.is_some()) {
        let victim = r.victim.clone().unwrap_or_default();
        match r.stepped_down {
            Some(after) => {
                r.note = format!("the resumed leader stepped down {:.1} s after SIGCONT", after.as_secs_f64())
            }
            None => push_capped(
                &mut shared.violations().faults,
                format!(
                    "{victim} still led {} s after SIGCONT, though {} led meanwhile",
                    STEP_DOWN_LIMIT.as_secs(),
                    r.successor.as_deref().unwrap_or("?")
                ),
            ),
        }
    }
    for r in report.faults.iter_mut().filter(|r| r.fault == Fault::Kill) {
        let t0 = shared.started + r.at;
        if let Some(led) = r.new_leader {
            r.recovered = shared.first_change_after(t0 + led).map(|t| t - t0);
        }
    }
    approvals.abort();
    watch.abort();
    snapshots.abort();

    // --- the final checks ---
    let mut v = shared.violations().clone();
    let watched = std::mem::take(&mut *shared.watched());
    for (id, want) in &data.expected {
        let got = final_systems.get(id).and_then(|s| s.phase);
        if got != Some(*want) {
            let s = final_systems.get(id);
            push_capped(
                &mut v.terminal,
                format!("{id}: expected {want:?}, is {got:?} (node {:?})", s.and_then(|s| s.node.clone())),
            );
        }
    }
    for (node, u) in node_use(&final_systems, &shared.demand) {
        check_capacity(&node, &u, &shared.allocatable, &mut v, "final");
    }
    let journals = read_journals(&mut etcd, &keys).await?;
    report.journal_entries = journals.values().map(Vec::len).sum();
    let empty = BTreeMap::new();
    for (id, s) in &final_systems {
        let journal = journals.get(id).cloned().unwrap_or_default();
        // The operator's own verifier must agree (what `suyunctl journal verify` runs).
        let stored: Vec<(u64, Vec<u8>)> = journal.iter().map(|(n, b, _)| (*n, b.clone())).collect();
        match suyun_operator::journal::verify_chain(&stored) {
            Ok(summary) if summary.missed > 0 => {
                push_capped(&mut v.journal, format!("{id}: verify_chain: {} transitions missed", summary.missed));
            }
            Ok(_) => {}
            Err(e) => push_capped(&mut v.journal, format!("{id}: verify_chain: {e}")),
        }
        let phases = watched.phases.get(id).cloned().unwrap_or_default();
        check_journal(id, &journal, s, &phases, watched.transitions.get(id).unwrap_or(&empty), &mut v);
    }
    for id in journals.keys().filter(|id| !final_systems.contains_key(*id)) {
        push_capped(&mut v.journal, format!("a journal for {id}, which does not exist"));
    }
    // Approvals: each one recorded is used by exactly one cutover, by its approver; none left.
    let d = std::mem::take(&mut *driver.lock().expect("not poisoned"));
    let granted: HashMap<&str, &ApprovalPost> =
        d.posts.iter().filter(|p| p.status == 201).map(|p| (p.reason.as_str(), p)).collect();
    let mut used: HashMap<String, usize> = HashMap::new();
    for (id, journal) in &journals {
        let in_wave = final_systems.get(id).and_then(|s| s.wave.as_deref()) == Some(data.approval_wave.as_str());
        for (n, _, e) in journal {
            if e["to"] != "CuttingOver" || !in_wave {
                continue;
            }
            if e["from"] != "AwaitingCutover" {
                push_capped(
                    &mut v.approvals,
                    format!("{id}: cutover from {} without waiting for an approval (entry {n})", e["from"]),
                );
            }
            let reason = e["approvalReason"].as_str().unwrap_or_default();
            match granted.get(reason) {
                Some(p) if p.system_id == *id && e["actor"] == p.by.as_str() => {
                    *used.entry(reason.to_owned()).or_default() += 1
                }
                Some(p) => {
                    push_capped(&mut v.approvals, format!("{id}: cutover (entry {n}) used {p:?}, actor {}", e["actor"]))
                }
                None => push_capped(
                    &mut v.approvals,
                    format!("{id}: cutover (entry {n}) names an approval never recorded: {e}"),
                ),
            }
        }
    }
    for (reason, p) in &granted {
        match used.get(*reason) {
            Some(1) => {}
            Some(k) => push_capped(&mut v.approvals, format!("approval {reason} of {} applied {k} times", p.system_id)),
            None => push_capped(
                &mut v.approvals,
                format!("approval {reason} of {} (by {}) never applied: lost", p.system_id, p.by),
            ),
        }
    }
    let left = read_prefix(&mut etcd, &keys.collection("approvals")).await?;
    for (key, _) in &left {
        push_capped(&mut v.approvals, format!("approval left in the store after the run: {key}"));
    }
    for (id, s) in &final_systems {
        if s.wave.as_deref() == Some(data.approval_wave.as_str()) && s.phase == Some(Phase::Completed) {
            let mine = d.posts.iter().filter(|p| p.system_id == *id && p.status == 201).count();
            if mine != 1 {
                push_capped(&mut v.approvals, format!("{id} Completed with {mine} approvals recorded for it"));
            }
        }
    }
    if d.unavailable == 0 && !report.faults.iter().any(|f| f.fault == Fault::EtcdStore && f.note.contains("503")) {
        push_capped(&mut v.faults, "no approval was answered 503 while the status store was down".into());
    }
    report.approvals = (d.posts.len(), d.posts.iter().filter(|p| matches!(p.status, 200 | 201)).count(), d.unavailable);
    report.observed = (watched.events, watched.relists, shared.snapshots.load(std::sync::atomic::Ordering::Relaxed));
    supervisor.abort();
    {
        let r = replicas.lock().expect("not poisoned");
        report.replica_starts = r.starts();
        report.exits = r.exits.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
    }
    if let Err(e) = outcome {
        push_capped(&mut v.faults, format!("the run did not complete: {e:#}"));
    }
    report.durations.2 = started.elapsed();
    report.violations = v;
    drop(server);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(phase: Phase, node: &str, started: Option<&str>) -> Obs {
        Obs {
            uid: "u1".into(),
            system_id: "JS-320100-0001".into(),
            wave: Some("w".into()),
            phase: Some(phase),
            node: Some(node.into()),
            started_at: started.map(str::to_owned),
            ..Obs::default()
        }
    }

    #[test]
    fn capacity_above_allocatable_is_a_violation() {
        let allocatable = HashMap::from([("n".to_owned(), [1000, 10, 10, 0])]);
        let mut v = Violations::default();
        check_capacity("n", &[1000, 10, 10, 0], &allocatable, &mut v, "t");
        assert_eq!(v.count(), 0);
        check_capacity("n", &[1001, 10, 10, 0], &allocatable, &mut v, "t");
        assert_eq!(v.capacity.len(), 1, "{v:?}");
    }

    #[test]
    fn a_started_migration_keeps_its_node_and_start_and_never_goes_back() {
        let mut v = Violations::default();
        let a = obs(Phase::Provisioning, "n1", Some("t1"));
        check_step(&a, &obs(Phase::Replicating, "n1", Some("t1")), "x", &mut v, "t");
        assert_eq!(v.count(), 0, "{v:?}");
        check_step(&a, &obs(Phase::Replicating, "n2", Some("t1")), "x", &mut v, "t");
        check_step(&a, &obs(Phase::Replicating, "n1", Some("t2")), "x", &mut v, "t");
        check_step(&a, &obs(Phase::Scheduled, "n1", Some("t1")), "x", &mut v, "t");
        assert_eq!(v.placement.len(), 3, "{v:?}");
        let mut cut = obs(Phase::CuttingOver, "n1", Some("t1"));
        cut.wave = Some("x".into());
        check_state(&cut, "x", &mut v, "t");
        assert_eq!(v.approvals.len(), 1, "a cutover without approvedBy in the approval wave: {v:?}");
    }

    fn journal(phases: &[&str]) -> Journal {
        let mut out: Journal = Vec::new();
        for (i, w) in phases.windows(2).enumerate() {
            let prev = out.last().map(|(_, b, _)| hex::encode(sha2::Sha256::digest(b))).unwrap_or_default();
            let n = i as u64 + 1;
            let entry = json!({
                "systemId": "JS-320100-0001", "regionCode": "320100", "sequence": n, "from": w[0], "to": w[1],
                "reason": "", "time": "2026-11-30T00:00:00Z", "actor": "suyun-operator", "uid": "u1",
                "transition": n, "prev": prev,
            });
            out.push((n, serde_json::to_vec(&entry).unwrap(), entry));
        }
        out
    }

    #[test]
    fn the_journal_check_finds_gaps_edits_and_missing_phases() {
        let phases = ["Pending", "Scheduled", "Provisioning", "Replicating"];
        let last = obs(Phase::Replicating, "n1", Some("t1"));
        let seen = [Phase::Scheduled, Phase::Provisioning, Phase::Replicating];
        let mut v = Violations::default();
        check_journal("x", &journal(&phases), &last, &seen, &BTreeMap::new(), &mut v);
        assert_eq!(v.count(), 0, "{v:?}");
        // An entry edited after the fact: the next one's prev no longer matches.
        let mut edited = journal(&phases);
        edited[1].1 = br#"{"edited":true}"#.to_vec();
        check_journal("x", &edited, &last, &seen, &BTreeMap::new(), &mut v);
        assert!(v.journal.iter().any(|m| m.contains("prev")), "{v:?}");
        // An entry removed: a gap in the keys and a phase the cluster showed is missing.
        let mut v = Violations::default();
        let mut gap = journal(&phases);
        gap.remove(1);
        check_journal("x", &gap, &last, &seen, &BTreeMap::new(), &mut v);
        assert!(v.journal.iter().any(|m| m.contains("not contiguous")), "{v:?}");
        assert!(v.journal.iter().any(|m| m.contains("a transition is missing")), "{v:?}");
        // A transition a status showed that the journal lacks.
        let mut v = Violations::default();
        let shown = BTreeMap::from([(
            4,
            SeenTransition {
                sequence: 4,
                from: "Replicating".into(),
                to: "CuttingOver".into(),
                actor: "suyun-operator".into(),
                approval_reason: None,
            },
        )]);
        check_journal("x", &journal(&phases), &last, &seen, &shown, &mut v);
        assert!(v.journal.iter().any(|m| m.contains("not in the journal")), "{v:?}");
    }
}
