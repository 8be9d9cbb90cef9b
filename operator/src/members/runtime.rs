//! The member clusters at run time: for every CloudNode with `spec.cluster`, one client, one
//! set of caches in the member (its Nodes, its Pods, the operator's Jobs) and one reachability
//! record, kept in step by [`supervise`] and read by the controllers through a [`Registry`].
//!
//! ```text
//!  CloudNodes, Secrets (operator namespace) ─► Members::sync ─► a client per member
//!  every member: GET /version every probe interval ─► Reachability ─► suyun_member_* metrics
//!                Node, Pod, Job reflectors ─────────► caches
//!                                                      │
//!  Registry ◄── published every tick ──────────────────┘
//!     ├─► CloudNode controller: capacity, ClusterReachable, status.cluster
//!     ├─► migration loop: member facts for the planner, Jobs, pauses
//!     └─► Tenant controller: children in the members
//! ```
//!
//! A single-cluster province (no `spec.cluster` anywhere) starts nothing here: not even the
//! Secret watch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use suyun_crds::v1alpha1::{CloudNode, MANAGED_BY, MANAGED_BY_LABEL};
use tokio::sync::Notify;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::health::Reachability;
use super::{Members, NoClient};
use crate::metrics::Metrics;

/// How long a probe may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The caches the operator keeps of one member cluster.
#[derive(Clone)]
pub struct MemberCaches {
    /// Every Node of the member (the CloudNode's `nodeSelector` is applied when counting).
    pub nodes: Store<Node>,
    /// Every Pod bound to a machine, for what each machine has free.
    pub pods: Store<Pod>,
    /// The Jobs the operator created there.
    pub jobs: Store<Job>,
    /// The tenants' children there (the operator's, by label).
    pub children: crate::tenant::Children,
}

/// What is known of one member cluster now.
#[derive(Clone, Default)]
pub struct MemberView {
    /// Its client; `None` when its kubeconfig could not be had ([`MemberView::no_client`]).
    pub client: Option<kube::Client>,
    /// Why there is no client.
    pub no_client: Option<NoClient>,
    /// Whether it answers.
    pub reach: Reachability,
    /// Its caches, once a client was built (kept while it is unreachable: the last known state).
    pub caches: Option<MemberCaches>,
}

impl std::fmt::Debug for MemberCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCaches")
            .field("nodes", &self.nodes.len())
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MemberView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberView")
            .field("no_client", &self.no_client)
            .field("reach", &self.reach)
            .finish_non_exhaustive()
    }
}

impl MemberView {
    /// Whether the member counts as reachable (see [`Reachability::reachable`]).
    pub fn reachable(&self) -> bool {
        self.client.is_some() && self.reach.reachable()
    }
}

/// The member clusters, by CloudNode name: what the controllers read. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    members: Arc<RwLock<BTreeMap<String, MemberView>>>,
    /// Turns `true` once the supervisor has probed every member once (at once when there is
    /// none): before that, "not reachable" only means "not asked yet".
    settled: tokio::sync::watch::Sender<bool>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { members: Arc::default(), settled: tokio::sync::watch::Sender::new(false) }
    }
}

impl Registry {
    /// The member behind CloudNode `node`, if it has one.
    pub fn get(&self, node: &str) -> Option<MemberView> {
        self.members.read().expect("registry lock is never poisoned").get(node).cloned()
    }

    /// Every member.
    pub fn all(&self) -> BTreeMap<String, MemberView> {
        self.members.read().expect("registry lock is never poisoned").clone()
    }

    /// Whether no CloudNode is backed by a member cluster (a single-cluster province).
    pub fn is_empty(&self) -> bool {
        self.members.read().expect("registry lock is never poisoned").is_empty()
    }

    fn replace(&self, members: BTreeMap<String, MemberView>) {
        *self.members.write().expect("registry lock is never poisoned") = members;
    }

    /// Waits until every member was probed once (see [`supervise`]), at most `limit`: the
    /// migration loop's first iteration waits for it, so that a restart does not take members
    /// it has not asked yet for unreachable ones (and move systems away from them). Whether it
    /// settled.
    pub async fn settled(&self, limit: Duration) -> bool {
        let mut rx = self.settled.subscribe();
        matches!(tokio::time::timeout(limit, rx.wait_for(|s| *s)).await, Ok(Ok(_)))
    }
}

/// Who is told when something about the members changed.
#[derive(Clone, Debug)]
pub struct Listeners {
    /// The migration loop (Jobs, Nodes, reachability).
    pub migration: Arc<Notify>,
    /// The controllers that show member state (the CloudNode controller: Nodes, Pods,
    /// reachability; the Tenant controller: reachability).
    pub controllers: Vec<futures::channel::mpsc::UnboundedSender<()>>,
}

impl Listeners {
    fn tell_controllers(&self) {
        for tx in &self.controllers {
            let _ = tx.unbounded_send(());
        }
    }
}

/// One member's client, caches and watch tasks, as the supervisor holds them.
struct Running {
    secret_version: String,
    caches: MemberCaches,
    _tasks: Vec<AbortOnDropHandle<()>>,
}

/// Starts the caches of a member with `client`; their changes reach `listeners`.
fn start_caches(client: &kube::Client, listeners: &Listeners) -> (MemberCaches, Vec<AbortOnDropHandle<()>>) {
    fn spawn<K: crate::migration::Cached>(
        api: Api<K>,
        config: watcher::Config,
        on_change: impl Fn() + Send + 'static,
    ) -> (Store<K>, AbortOnDropHandle<()>) {
        // The probe says whether the member is reachable; a failing watch retries quietly.
        let failed = |e: &watcher::Error| tracing::debug!(error = %e, "member watch failed; retrying with backoff");
        let (store, task) = crate::migration::spawn_cache(api, config, QuickBackoff::default(), on_change, failed);
        (store, AbortOnDropHandle::new(task))
    }
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (tell_loop, tell_both) = (listeners.clone(), listeners.clone());
    let both = move || {
        tell_both.migration.notify_one();
        tell_both.tell_controllers();
    };
    let controllers = listeners.clone();
    let (nodes, a) = spawn(Api::<Node>::all(client.clone()), watcher::Config::default(), both);
    // Pods move machines' free amounts, which the CloudNode status shows; the loop reads them
    // on its next iteration.
    let (pods, b) =
        spawn(Api::<Pod>::all(client.clone()), watcher::Config::default().fields("spec.nodeName!="), move || {
            controllers.tell_controllers()
        });
    let (jobs, c) = spawn(Api::<Job>::all(client.clone()), managed, move || tell_loop.migration.notify_one());
    // A child changed there (by hand, or by the operator): the Tenant controller looks again
    // and repairs what differs.
    let tenants = listeners.clone();
    let (children, mut tasks) = crate::tenant::Children::watch_in_member(client, move || tenants.tell_controllers());
    tasks.extend([a, b, c]);
    (MemberCaches { nodes, pods, jobs, children }, tasks)
}

/// The watches' backoff in a member: 250 ms doubling to 4 s. Much shorter than client-go's
/// (up to 30 s), so that a member's caches catch up within seconds of its return; the probe,
/// not the watches, decides whether it is reachable.
#[derive(Debug, Clone, Copy)]
struct QuickBackoff(Duration);

impl QuickBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(4);
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff(Self::FIRST)
    }
}

impl Iterator for QuickBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for QuickBackoff {
    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// Probes one member: its `gitVersion`, or why not.
async fn probe(client: kube::Client) -> (Duration, Result<String, String>) {
    let started = Instant::now();
    let result = match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    (started.elapsed(), result)
}

/// Settings of [`supervise`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespace of the kubeconfig Secrets (the operator's).
    pub namespace: String,
    /// Time between probes of each member.
    pub probe_interval: Duration,
}

/// Keeps the [`Registry`] in step with the CloudNodes and Secrets, probes every member and runs
/// its caches, until `shutdown`. Changes are checked every second (a rotated Secret is used
/// within about a second, without restart).
pub async fn supervise(
    client: kube::Client,
    cloud_nodes: Store<CloudNode>,
    registry: Registry,
    metrics: Arc<Metrics>,
    listeners: Listeners,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    futures::pin_mut!(shutdown);
    let mut members = Members::default();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut reach: HashMap<String, Reachability> = HashMap::new();
    let mut secrets: Option<(Store<Secret>, AbortOnDropHandle<()>)> = None;
    let mut next_probe = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let nodes = cloud_nodes.state();
        let wanted = nodes.iter().any(|n| n.spec.cluster.is_some());
        if !wanted && running.is_empty() && members.errors.is_empty() {
            if crate::migration::cache_ready_now(&cloud_nodes).await {
                registry.settled.send_replace(true);
            }
            continue;
        }
        if wanted && secrets.is_none() {
            let api = Api::<Secret>::namespaced(client.clone(), &settings.namespace);
            let failed =
                |e: &watcher::Error| warn!(error = %e, "kubeconfig Secret watch failed; retrying with backoff");
            let (store, task) =
                crate::migration::spawn_cache(api, watcher::Config::default(), QuickBackoff::default(), || {}, failed);
            let task = AbortOnDropHandle::new(task);
            info!(namespace = %settings.namespace, "member clusters configured: watching kubeconfig Secrets");
            secrets = Some((store, task));
        }
        let secret_list = match &secrets {
            Some((store, _)) if crate::migration::cache_ready_now(store).await => store.state(),
            // Not listed yet: a missing Secret now would be a false "not found".
            Some(_) => continue,
            None => Vec::new(),
        };
        let before = members.errors.clone();
        members.sync(&nodes, &secret_list).await;
        let mut changed = before != members.errors;
        running.retain(|name, r| {
            let keep = members.clients.get(name).is_some_and(|m| m.secret_version == r.secret_version);
            if !keep {
                info!(cloud_node = %name, "member client changed or gone: its caches restart");
                changed = true;
            }
            keep
        });
        for (name, member) in &members.clients {
            if !running.contains_key(name) {
                let (caches, tasks) = start_caches(&member.client, &listeners);
                info!(cloud_node = %name, "member cluster client ready: watching its Nodes, Pods and the operator's Jobs");
                running.insert(
                    name.clone(),
                    Running { secret_version: member.secret_version.clone(), caches, _tasks: tasks },
                );
                next_probe = Instant::now();
                changed = true;
            }
        }
        reach.retain(|name, _| members.clients.contains_key(name));
        if Instant::now() >= next_probe {
            next_probe = Instant::now() + settings.probe_interval;
            let region: HashMap<String, String> =
                nodes.iter().map(|n| (n.name_any(), n.spec.region_code.clone())).collect();
            let probes = members.clients.iter().map(|(name, m)| {
                let client = m.client.clone();
                async move { (name.clone(), probe(client).await) }
            });
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            for (name, (took, result)) in futures::future::join_all(probes).await {
                let r = reach.entry(name.clone()).or_default();
                let (was, version) = (r.reachable(), r.version.clone());
                let ok = result.is_ok();
                match result {
                    Ok(v) => r.succeeded(v, now),
                    Err(e) => r.failed(e),
                }
                if was != r.reachable() {
                    if r.reachable() {
                        info!(cloud_node = %name, version = r.version.as_deref().unwrap_or("?"), "member cluster reachable");
                    } else {
                        warn!(cloud_node = %name, failures = r.failures, error = r.last_error.as_deref().unwrap_or(""), "member cluster unreachable: no new placements there, its migrations pause");
                    }
                }
                changed |= was != r.reachable() || version != r.version;
                metrics.observe_member_probe(
                    &name,
                    region.get(&name).map_or("", String::as_str),
                    took,
                    ok,
                    r.reachable(),
                );
            }
        }
        for name in members.errors.keys() {
            let region = nodes.iter().find(|n| n.name_any() == *name).map(|n| n.spec.region_code.clone());
            metrics.set_member_up(name, region.as_deref().unwrap_or_default(), false);
        }
        let live: HashSet<String> = members.clients.keys().chain(members.errors.keys()).cloned().collect();
        metrics.retain_members(&live);
        let mut views = BTreeMap::new();
        for (name, member) in &members.clients {
            views.insert(
                name.clone(),
                MemberView {
                    client: Some(member.client.clone()),
                    no_client: None,
                    reach: reach.get(name).cloned().unwrap_or_default(),
                    caches: running.get(name).map(|r| r.caches.clone()),
                },
            );
        }
        for (name, why) in &members.errors {
            views.insert(name.clone(), MemberView { no_client: Some(why.clone()), ..Default::default() });
        }
        registry.replace(views);
        if Instant::now() < next_probe {
            // A probe round is done (none is due): every member was asked once.
            registry.settled.send_replace(true);
        }
        if changed {
            listeners.migration.notify_one();
            listeners.tell_controllers();
        }
    }
}
