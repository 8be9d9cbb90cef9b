//! The migration loop: one planner run serves many events.
//!
//! ```text
//!  watches (GovSystem, MigrationWave, CloudNode, Tenant, Job) ──notify──┐
//!  next deadline (simulated phase end, retry, timeout, window) ──timer──┤ debounce
//!                                                                        ▼
//!   snapshot caches ─► plan (pure) ─► step every system (pure) ─► write changed statuses,
//!                                                                  create Jobs, Events,
//!                                                                  wave statuses, accounts
//! ```
//!
//! GovSystem and MigrationWave status have one writer, this loop, so transitions cannot race.
//! A status it wrote is used in place of the cached one until the cache catches up (the
//! overlay), so a quick next iteration never acts on a stale phase.

pub mod accounts;
pub mod facts;
pub mod fencing;
pub mod jobs;
pub mod step;
#[cfg(test)]
mod step_tests;
mod writes;

pub use writes::{is_conflict, status_patch};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use suyun_crds::v1alpha1::{GovSystem, GovSystemStatus, MANAGED_BY, MANAGED_BY_LABEL, MigrationWave, Tenant};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::identity;
use crate::metrics::{PublishOutcome, Reconciler};
use crate::plan_input::{self, Objects};
use step::{Facts, Outcome, Verdict};

/// The caches the loop reads.
#[derive(Clone)]
pub struct Caches {
    /// Every GovSystem.
    pub systems: Store<GovSystem>,
    /// Every MigrationWave.
    pub waves: Store<MigrationWave>,
    /// Every Tenant.
    pub tenants: Store<Tenant>,
    /// Jobs the operator created.
    pub jobs: Store<Job>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

/// Starts the watches behind [`Caches`]; every change wakes the loop through `notify`.
pub fn watch(client: &kube::Client, notify: Arc<Notify>) -> (Caches, Vec<tokio::task::JoinHandle<()>>) {
    fn spawn<K>(api: Api<K>, config: watcher::Config, notify: Arc<Notify>) -> (Store<K>, tokio::task::JoinHandle<()>)
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (store, writer) = reflector::store();
        // managedFields are a large share of each cached object and nothing here reads them.
        let stream = reflector::reflector(
            writer,
            watcher(api, config).default_backoff().modify(|o| o.managed_fields_mut().clear()),
        );
        let task = tokio::spawn(drive(stream, notify));
        (store, task)
    }
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (systems, a) = spawn(Api::<GovSystem>::all(client.clone()), watcher::Config::default(), notify.clone());
    let (waves, b) = spawn(Api::<MigrationWave>::all(client.clone()), watcher::Config::default(), notify.clone());
    let (tenants, c) = spawn(Api::<Tenant>::all(client.clone()), watcher::Config::default(), notify.clone());
    let (jobs, d) = spawn(Api::<Job>::all(client.clone()), managed, notify);
    (Caches { systems, waves, tenants, jobs }, vec![a, b, c, d])
}

async fn drive<K: std::fmt::Debug>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    notify: Arc<Notify>,
) {
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(_) => notify.notify_one(),
            Err(e) => warn!(error = %e, "watch failed; retrying with backoff"),
        }
    }
}

/// Waits until `store` holds its first complete list; `false` when its writer was dropped first.
///
/// `Store::wait_until_ready` alone is not enough: kube's readiness signal is a oneshot receiver
/// with a single waker slot, so of several tasks waiting on the same store only the one that
/// polled last is woken. The CloudNode store is also awaited by its controller, the Tenant
/// store by the Tenant controller: a loop waiting there was seen stalled for a whole leadership
/// term (the chaos run). Polling again every 100 ms costs nothing and cannot miss it.
async fn cache_ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(ready) = tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
            return ready.is_ok();
        }
    }
}

/// A status the loop wrote, used until the cache shows it.
struct Written {
    resource_version: Option<String>,
    status: GovSystemStatus,
}

/// Where the loop publishes the read-model and the journal (the status store), if configured.
#[allow(missing_debug_implementations)]
pub struct StoreSink {
    publisher: crate::store::Publisher,
    published: HashMap<String, crate::store::RecordKey>,
    reconciled: bool,
    /// What the journal appended since the metrics last took it.
    journaled: crate::store::JournalReport,
}

impl StoreSink {
    /// A sink writing through `publisher` (which holds the etcd fence).
    pub fn new(publisher: crate::store::Publisher) -> Self {
        Self { publisher, published: HashMap::new(), reconciled: false, journaled: Default::default() }
    }

    /// The publisher, for writes outside the read-model (approvals).
    fn publisher_mut(&mut self) -> &mut crate::store::Publisher {
        &mut self.publisher
    }

    fn record_key(record: &suyun_store::readmodel::Record) -> crate::store::RecordKey {
        use crate::store::RecordKey;
        use suyun_store::readmodel::Record;
        match record {
            Record::Node(n) => RecordKey::Node(n.name.clone()),
            Record::Tenant(t) => RecordKey::Tenant(t.name.clone()),
            Record::System(s) => RecordKey::System(s.system_id.clone()),
            Record::Wave(w) => RecordKey::Wave(w.name.clone()),
        }
    }

    /// Publishes `records` (the whole read-model) and brings the journal up to date with
    /// `sources` (every owned system). On the first call the store is reconciled against the
    /// records (stale keys deleted); afterwards only what changed is written and what
    /// disappeared is deleted. `Ok(true)` when committed, `Ok(false)` when it failed and is
    /// retried next iteration, `Err` only when this replica was fenced out.
    async fn publish(
        &mut self,
        records: Vec<suyun_store::readmodel::Record>,
        sources: &[crate::journal::Source<'_>],
        now: i64,
    ) -> Result<bool, ()> {
        use crate::store::Change;
        let keys = self.publisher.fence().keys().clone();
        let current: HashMap<String, crate::store::RecordKey> =
            records.iter().map(|r| (r.key(&keys), Self::record_key(r))).collect();
        let result = if self.reconciled {
            let gone: Vec<Change> = self
                .published
                .iter()
                .filter(|(k, _)| !current.contains_key(*k))
                .map(|(_, rk)| Change::Delete(rk.clone()))
                .collect();
            self.publisher.publish(records.into_iter().map(Change::Put).chain(gone)).await
        } else {
            self.publisher.reconcile(records).await
        };
        let journal_result = match &result {
            Ok(_) => self.sync_journal(sources, true, now).await,
            Err(_) => Ok(()),
        };
        let outcome = Self::outcome(result.map(|_| ()).and(journal_result));
        if outcome == Ok(true) {
            self.reconciled = true;
            self.published = current;
        }
        outcome
    }

    /// Publishes the records of systems whose status was just written, and journals their
    /// transitions, ahead of the iteration's full publish; only once the store was reconciled.
    async fn publish_systems(
        &mut self,
        records: Vec<suyun_store::readmodel::Record>,
        sources: &[crate::journal::Source<'_>],
        now: i64,
    ) -> Result<bool, ()> {
        let result = self.publisher.publish(records.into_iter().map(crate::store::Change::Put)).await;
        let journal_result = match &result {
            Ok(_) => self.sync_journal(sources, false, now).await,
            Err(_) => Ok(()),
        };
        Self::outcome(result.map(|_| ()).and(journal_result))
    }

    async fn sync_journal(
        &mut self,
        sources: &[crate::journal::Source<'_>],
        complete: bool,
        now: i64,
    ) -> Result<(), crate::store::StoreError> {
        let report = self.publisher.sync_journal(sources, complete, now).await?;
        self.journaled.appended += report.appended;
        self.journaled.missed += report.missed;
        Ok(())
    }

    fn outcome(result: Result<(), crate::store::StoreError>) -> Result<bool, ()> {
        match result {
            Ok(()) => Ok(true),
            Err(e @ crate::store::StoreError::Fenced { .. }) => {
                tracing::error!(error = %e, "fenced out of the status store: another replica leads");
                Err(())
            }
            Err(e) => {
                warn!(error = %e, "publishing to the status store failed; retrying next iteration");
                Ok(false)
            }
        }
    }
}

/// The status store as the loop uses it, once this replica holds the store's fence.
#[allow(missing_debug_implementations)]
pub struct StoreLink {
    /// Where the read-model and the journal are published.
    pub sink: StoreSink,
    /// The REST API's approvals.
    pub approvals: crate::store::ApprovalMirror,
}

/// The loop's memory between iterations.
pub struct MigrationLoop {
    ctx: Arc<Context>,
    caches: Caches,
    overlay: HashMap<String, Written>,
    /// The status store, while the fence is still being won.
    pending_store: Option<tokio::sync::oneshot::Receiver<StoreLink>>,
    store: Option<StoreSink>,
    approvals: Option<crate::store::ApprovalMirror>,
    lease: fencing::LeaseCheck,
    fenced: bool,
}

impl std::fmt::Debug for MigrationLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationLoop").field("overlay", &self.overlay.len()).finish_non_exhaustive()
    }
}

impl MigrationLoop {
    /// A loop over the given caches. When there is a status store, `store` delivers it once its
    /// fence is won: from then on the loop publishes the read-model and the journal there and
    /// reads the REST API's approvals from it; until then it migrates without either.
    pub fn new(ctx: Arc<Context>, caches: Caches, store: Option<tokio::sync::oneshot::Receiver<StoreLink>>) -> Self {
        let config = &ctx.config;
        let lease = fencing::LeaseCheck::new(
            Api::namespaced(ctx.client.clone(), &config.lease_namespace),
            &config.lease_name,
            &config.instance,
        );
        Self {
            ctx,
            caches,
            overlay: HashMap::new(),
            pending_store: store,
            store: None,
            approvals: None,
            lease,
            fenced: false,
        }
    }

    /// Takes the status store into use once its fence was won.
    fn attach_store(&mut self) {
        use tokio::sync::oneshot::error::TryRecvError;
        let Some(pending) = &mut self.pending_store else { return };
        match pending.try_recv() {
            Ok(StoreLink { mut sink, approvals }) => {
                let retention = i64::from(self.ctx.config.store.journal_retention_days) * 86_400;
                sink.publisher.set_retention(retention);
                self.store = Some(sink);
                self.approvals = Some(approvals);
                self.pending_store = None;
                info!("status store attached: publishing the read-model and the journal");
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Closed) => self.pending_store = None,
        }
    }

    /// Runs until `shutdown` resolves: waits for a change or the next deadline, debounces, runs
    /// one iteration.
    pub async fn run(mut self, notify: Arc<Notify>, shutdown: impl std::future::Future<Output = ()>) {
        futures::pin_mut!(shutdown);
        let waiting = std::time::Instant::now();
        let ready =
            |what: &'static str| debug!(cache = what, after_ms = waiting.elapsed().as_millis() as u64, "cache ready");
        for (what, store) in [
            ("GovSystem", cache_ready(&self.caches.systems).await),
            ("MigrationWave", cache_ready(&self.caches.waves).await),
        ] {
            if !store {
                warn!("cache closed before it was ready");
                return;
            }
            ready(what);
        }
        cache_ready(&self.caches.tenants).await;
        ready("Tenant");
        cache_ready(&self.caches.jobs).await;
        ready("Job");
        cache_ready(&self.ctx.cloud_nodes).await;
        ready("CloudNode");
        self.ctx.metrics.set_readiness(crate::metrics::Readiness::Leading);
        info!("migration loop started");
        let mut wake = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = notify.notified() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            // Debounce: let a burst of events land in the caches, then plan once.
            tokio::time::sleep(self.ctx.config.debounce()).await;
            let started = std::time::Instant::now();
            let it = self.iterate().await;
            if self.fenced {
                break;
            }
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            let delay = it.wake.map_or(30, |t| (t - now).clamp(1, 30));
            wake = tokio::time::Instant::now() + Duration::from_secs(delay as u64);
            debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                plan_ms = it.plan_ms,
                statuses = it.statuses,
                writes_ms = it.writes_ms,
                published_ms = it.published_ms,
                events = it.events,
                conflicts = it.conflicts,
                withheld = it.withheld,
                next_in_s = delay,
                "migration loop iteration"
            );
        }
        info!("migration loop stopped");
    }

    /// The effective status of a system and the resourceVersion it belongs to: what the loop
    /// last wrote, until the cache shows it.
    fn effective(&mut self, system: &GovSystem) -> (GovSystemStatus, Option<String>) {
        let cached = system.status.clone().unwrap_or_default();
        let uid = system.uid().unwrap_or_default();
        match self.overlay.get(&uid) {
            Some(w) if w.resource_version != system.resource_version() && w.status != cached => {
                (w.status.clone(), w.resource_version.clone())
            }
            Some(_) => {
                self.overlay.remove(&uid);
                (cached, system.resource_version())
            }
            None => (cached, system.resource_version()),
        }
    }

    /// One iteration; returns when to look again at the latest, and where the time went.
    /// Counted as one reconcile of the `migration` controller, failed when a Kubernetes write
    /// or the publish failed.
    ///
    /// Order matters for what city operators see: statuses are written, then the read-model is
    /// published at once, and only then are Events posted and wave statuses written, so that a
    /// phase change reaches the REST API one publish after its status write.
    pub async fn iterate(&mut self) -> Iteration {
        self.attach_store();
        let snapshot = std::time::Instant::now();
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let objects = Objects {
            cloud_nodes: self.ctx.cloud_nodes.state(),
            tenants: self.caches.tenants.state(),
            systems: self.caches.systems.state(),
            waves: self.caches.waves.state(),
        };
        let live: HashSet<String> = objects.systems.iter().filter_map(|s| s.uid()).collect();
        self.overlay.retain(|uid, _| live.contains(uid));
        let (statuses, versions): (Vec<GovSystemStatus>, Vec<Option<String>>) =
            objects.systems.iter().map(|s| self.effective(s)).unzip();
        let regions = crate::readmodel::regions(&objects.tenants);

        // Who owns each systemId, and which systems may not reach the planner (duplicates,
        // placement rules naming another city's systems): see `identity`. Only owners are
        // planned, published, journaled and approved.
        let screening = identity::screen(&objects.systems, |i| statuses[i].phase.unwrap_or_default(), &regions);
        let owned: Vec<bool> = objects.systems.iter().enumerate().map(|(i, s)| screening.owns(i, s)).collect();
        let plannable = Objects { systems: identity::plannable(&objects.systems, &screening), ..objects.clone() };
        let store_approvals = self.approvals.as_ref().map(|m| m.snapshot()).unwrap_or_default();
        let given = crate::approvals::gather(&objects.systems, &owned, &regions, &store_approvals);

        // An object that cannot be converted is left out of the plan; a system among them is
        // Blocked with the reason, the rest keeps moving.
        let (mut input, errors) = plan_input::plan_input_lenient(&plannable, now);
        let mut invalid: HashMap<String, String> = HashMap::new();
        for e in &errors {
            if e.kind == "GovSystem" {
                invalid.insert(e.name.clone(), format!("{}: {}", e.field, e.problem));
            } else {
                warn!(error = %e, "object left out of the plan");
            }
        }
        // The planner sees the effective phases and nodes.
        let by_id: HashMap<&str, &GovSystemStatus> = objects
            .systems
            .iter()
            .zip(&statuses)
            .zip(&owned)
            .filter(|(_, owns)| **owns)
            .map(|((s, st), _)| (s.spec.system_id.as_str(), st))
            .collect();
        for system in &mut input.systems {
            if let Some(status) = by_id.get(system.system_id.as_str()) {
                if let Some(p) = status.phase {
                    system.phase = plan_input::phase(p);
                }
                system.node = status.node.clone();
            }
        }
        let planning = std::time::Instant::now();
        // Planning thousands of systems takes a while: let the runtime move this worker's other
        // tasks elsewhere meanwhile.
        let plan = tokio::task::block_in_place(|| suyun_planner::plan(&input));
        let plan_elapsed = planning.elapsed();
        self.ctx.metrics.observe_plan(plan_elapsed, &plan);
        let verdicts = facts::verdicts(&plan);
        let model_nodes: HashMap<&str, &suyun_planner::model::Node> =
            input.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let node_windows: HashMap<String, Option<suyun_planner::windows::WeeklySet>> =
            objects.cloud_nodes.iter().map(|n| (n.name_any(), facts::weekly(&n.spec.maintenance_windows))).collect();

        // Wave membership and states.
        let wave_of: Vec<Option<String>> =
            objects.systems.iter().map(|s| plan_input::wave_of(s, &objects.waves).map(|w| w.name_any())).collect();
        let mut members: HashMap<String, Vec<&GovSystemStatus>> = HashMap::new();
        for (wave, status) in wave_of.iter().zip(&statuses) {
            if let Some(w) = wave {
                members.entry(w.clone()).or_default().push(status);
            }
        }
        let waves = facts::wave_states(&objects.waves, &members, now);
        let phases: HashMap<&str, facts::Dependency> = objects
            .systems
            .iter()
            .zip(&statuses)
            .zip(&owned)
            .filter(|(_, owns)| **owns)
            .map(|((s, st), _)| {
                let region = regions.get(&s.namespace().unwrap_or_default()).map_or("", String::as_str);
                (s.spec.system_id.as_str(), facts::Dependency { phase: st.phase.unwrap_or_default(), region })
            })
            .collect();

        // Concurrency in use, per node and per wave.
        let mut node_active: HashMap<String, u32> = HashMap::new();
        let mut wave_active: HashMap<String, u32> = waves.iter().map(|(n, w)| (n.clone(), w.active)).collect();
        for st in &statuses {
            if st.phase.unwrap_or_default().is_active() {
                *node_active.entry(st.node.clone().unwrap_or_default()).or_default() += 1;
            }
        }
        let node_limit: HashMap<String, u32> =
            objects.cloud_nodes.iter().map(|n| (n.name_any(), n.spec.max_concurrent_migrations)).collect();

        // Systems that may start are considered in planned-start order, then by priority.
        let mut order: Vec<usize> = (0..objects.systems.len()).collect();
        let key = |i: &usize| {
            let planned = match verdicts.get(objects.systems[*i].spec.system_id.as_str()) {
                Some(Verdict::Placed { planned_start, .. }) => planned_start.unwrap_or(i64::MAX),
                _ => i64::MAX,
            };
            (planned, std::cmp::Reverse(objects.systems[*i].spec.priority), objects.systems[*i].spec.system_id.clone())
        };
        order.sort_by_cached_key(key);

        let jobs: HashMap<(String, String), Arc<Job>> = self
            .caches
            .jobs
            .state()
            .into_iter()
            .map(|j| ((j.namespace().unwrap_or_default(), j.name_any()), j))
            .collect();
        let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
        let mut wake: Option<i64> = None;
        for i in order {
            let system = &objects.systems[i];
            let status = &statuses[i];
            let key = format!("{}/{}", system.namespace().unwrap_or_default(), system.name_any());
            let verdict = match (screening.refused.get(&i), invalid.get(&key)) {
                (Some(refusal), _) => {
                    Verdict::Blocked { reason: refusal.reason.into(), message: refusal.message.clone() }
                }
                (None, Some(problem)) => Verdict::Blocked { reason: "InvalidSpec".into(), message: problem.clone() },
                (None, None) => {
                    verdicts.get(system.spec.system_id.as_str()).cloned().unwrap_or_else(|| Verdict::Blocked {
                        reason: "NotPlanned".into(),
                        message: "the planner did not consider this system".into(),
                    })
                }
            };
            let node = match (&verdict, &status.node) {
                (_, Some(n)) if status.phase.unwrap_or_default().is_active() => Some(n.clone()),
                (Verdict::Placed { node, .. }, _) => Some(node.clone()),
                _ => status.node.clone(),
            };
            let wave_state = wave_of[i].as_ref().and_then(|w| waves.get(w));
            let wave_view = wave_state.map(|w| {
                facts::wave_view(w, &input.settings, system, node.as_deref().and_then(|n| model_nodes.get(n).copied()))
            });
            let slot_free = node
                .as_ref()
                .is_some_and(|n| node_active.get(n).copied().unwrap_or(0) < node_limit.get(n).copied().unwrap_or(0))
                && wave_state.is_some_and(|w| {
                    wave_active.get(&w.wave.name_any()).copied().unwrap_or(0) < w.wave.spec.max_concurrent
                });
            let job =
                status.job.as_ref().and_then(|name| jobs.get(&(system.namespace().unwrap_or_default(), name.clone())));
            let window = facts::cutover_window(
                node.as_ref().and_then(|n| node_windows.get(n)).and_then(Option::as_ref),
                wave_state.and_then(|w| w.windows.as_ref()),
                &input.settings,
                now,
            );
            let f = Facts {
                now,
                generation: system.metadata.generation,
                verdict,
                wave: wave_view,
                dependencies: facts::dependencies(
                    system,
                    regions.get(&system.namespace().unwrap_or_default()).map_or("", String::as_str),
                    &phases,
                ),
                slot_free,
                job: jobs::state(job.map(Arc::as_ref)),
                window,
                approvals: given.approvals.get(&i).cloned().unwrap_or_default(),
                refused_approval: given.refused.get(&i).cloned(),
                backoff_base: self.ctx.config.retry_backoff_seconds,
            };
            let outcome = step::step(&system.name_any(), status, &f);
            if outcome.started {
                if let Some(n) = &node {
                    *node_active.entry(n.clone()).or_default() += 1;
                }
                if let Some(w) = &wave_of[i] {
                    *wave_active.entry(w.clone()).or_default() += 1;
                }
            }
            if let Some(t) = outcome.wake_at {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
            outcomes.push((i, outcome));
        }

        // Each status written is published at once, while the others are still being written:
        // what city operators see follows Kubernetes by one etcd transaction, not by the
        // iteration's slowest write.
        let writing = std::time::Instant::now();
        let (progress, written_now) = futures::channel::mpsc::unbounded::<(usize, GovSystemStatus)>();
        let early_store = self.store.as_mut().filter(|s| s.reconciled);
        let progress = early_store.is_some().then_some(progress);
        let early = async {
            let mut fenced = false;
            let Some(store) = early_store else { return fenced };
            let mut batches = written_now.ready_chunks(256);
            while let Some(batch) = batches.next().await {
                if fenced {
                    continue;
                }
                let mut records = Vec::with_capacity(batch.len());
                let mut sources = Vec::with_capacity(batch.len());
                for (i, status) in batch.iter().filter(|(i, _)| owned[*i]) {
                    let s = &objects.systems[*i];
                    let region = regions.get(&s.namespace().unwrap_or_default()).cloned().unwrap_or_default();
                    let wave = wave_of[*i].clone();
                    let approval = crate::readmodel::approval_required(wave.as_ref(), &waves);
                    sources.push(journal_source(s, &regions, &status.transitions));
                    records.push(suyun_store::readmodel::Record::System(crate::readmodel::system(
                        s, status, region, wave, approval,
                    )));
                }
                // A failure is retried by the iteration's full publish (and the next ones).
                if store.publish_systems(records, &sources, now).await.is_err() {
                    fenced = true;
                }
            }
            fenced
        };
        let runners = waves_runner(&objects.waves, &wave_of);
        let apply = writes::apply(
            &self.ctx,
            &objects.systems,
            &statuses,
            &versions,
            &outcomes,
            &runners,
            &self.lease,
            progress,
        );
        let (applied, fenced_early) = futures::join!(apply, early);
        self.fenced |= fenced_early || self.lease.deposed();
        let writes_elapsed = writing.elapsed();
        let mut failures = applied.failures;
        let (applied_conflicts, applied_withheld) = (applied.conflicts, applied.withheld);
        if applied_withheld > 0 {
            warn!(withheld = applied_withheld, "writes withheld: this replica may no longer lead");
        }
        let written = applied.written;
        let status_count = written.len();
        for (i, _, status) in &written {
            self.ctx.metrics.observe_transition(wave_of[*i].as_deref(), &statuses[*i], status, now);
        }
        let mut effective = statuses;
        for (i, rv, status) in written {
            let uid = objects.systems[i].uid().unwrap_or_default();
            effective[i] = status.clone();
            self.overlay.insert(uid, Written { resource_version: rv, status });
        }
        let waves = facts::wave_states(
            &objects.waves,
            &{
                let mut m: HashMap<String, Vec<&GovSystemStatus>> = HashMap::new();
                for (w, st) in wave_of.iter().zip(&effective) {
                    if let Some(w) = w {
                        m.entry(w.clone()).or_default().push(st);
                    }
                }
                m
            },
            now,
        );
        let accounts =
            accounts::compute(objects.systems.iter().map(Arc::as_ref).zip(effective.iter()), &objects.tenants);
        let metrics = &self.ctx.metrics;
        metrics.observe_loop(&crate::metrics::state::LoopState {
            cloud_nodes: &objects.cloud_nodes,
            tenants: &objects.tenants,
            systems: &objects.systems,
            statuses: &effective,
            wave_of: &wave_of,
            waves: &waves,
            accounts: &accounts,
            plan: &plan,
        });
        // A deleted node's gauges leave even when no CloudNode is left to reconcile.
        metrics.retain_nodes(&objects.cloud_nodes.iter().map(|n| n.name_any()).collect());
        if let Some(store) = &mut self.store {
            let records = crate::readmodel::records(&objects, &owned, &effective, &wave_of, &accounts, &waves, &plan);
            let sources: Vec<_> = (0..objects.systems.len())
                .filter(|i| owned[*i])
                .map(|i| journal_source(&objects.systems[i], &regions, &effective[i].transitions))
                .collect();
            let published = store.publish(records, &sources, now).await;
            let journaled = std::mem::take(&mut store.journaled);
            metrics.observe_journal(journaled.appended, journaled.missed);
            let committed_at = k8s_openapi::jiff::Timestamp::now().as_second();
            match published {
                Ok(true) => {
                    metrics.observe_publish(PublishOutcome::Committed { lag: snapshot.elapsed() }, committed_at)
                }
                Ok(false) => {
                    failures += 1;
                    metrics.observe_publish(PublishOutcome::Failed, committed_at);
                }
                Err(()) => {
                    failures += 1;
                    metrics.observe_publish(PublishOutcome::Failed, committed_at);
                    self.fenced = true;
                }
            }
        }
        let published_ms = snapshot.elapsed().as_millis() as u64;
        let mut events = applied.events;
        self.take_used_approvals(&objects.systems, &outcomes, &effective).await;
        self.delete_refused_approvals(&given.to_delete).await;
        events.extend(given.refused.iter().map(|(i, why)| writes::PendingEvent {
            system: *i,
            warning: true,
            reason: "ApprovalRefused".into(),
            message: why.clone(),
        }));
        let event_count = events.len();
        writes::post_events(&self.ctx, &objects.systems, events).await;
        failures += writes::wave_statuses(&self.ctx, &waves, &plan, now, &self.lease).await;
        self.ctx.publish_accounts(accounts);
        self.ctx.metrics.observe_reconcile(Reconciler::Migration, snapshot.elapsed(), failures > 0);
        Iteration {
            wake,
            plan_ms: plan_elapsed.as_millis() as u64,
            statuses: status_count,
            writes_ms: writes_elapsed.as_millis() as u64,
            published_ms,
            events: event_count,
            conflicts: applied_conflicts,
            withheld: applied_withheld,
        }
    }

    /// Takes away the approvals that cutovers used, once the statuses saying so are written
    /// (`effective` holds what is written): a crash in between leaves the status, and the next
    /// iteration, here or on a new leader, finishes the job.
    async fn take_used_approvals(
        &mut self,
        systems: &[Arc<GovSystem>],
        outcomes: &[(usize, Outcome)],
        effective: &[GovSystemStatus],
    ) {
        for (i, outcome) in outcomes {
            for action in &outcome.actions {
                let step::Action::ConsumeApproval { id } = action else { continue };
                if effective[*i].consumed_approval.as_deref() != Some(id.as_str()) {
                    continue;
                }
                let publisher = self.store.as_mut().map(StoreSink::publisher_mut);
                if crate::approvals::consume(&self.ctx.client, publisher, &systems[*i], id).await.is_err() {
                    tracing::error!("fenced out of the status store: another replica leads");
                    self.fenced = true;
                    return;
                }
            }
        }
    }

    /// Deletes approvals the store holds for systems their approver may not approve.
    async fn delete_refused_approvals(&mut self, refused: &[(String, i64)]) {
        let Some(store) = self.store.as_mut() else { return };
        for (system_id, revision) in refused {
            match store.publisher_mut().delete_approval(system_id, *revision).await {
                Ok(()) => warn!(system = %system_id, revision, "refused approval deleted from the status store"),
                Err(e @ crate::store::StoreError::Fenced { .. }) => {
                    tracing::error!(error = %e, "fenced out of the status store: another replica leads");
                    self.fenced = true;
                    return;
                }
                Err(e) => warn!(system = %system_id, error = %e, "refused approval not deleted yet"),
            }
        }
    }
}

/// What one iteration did, for the loop's debug log.
#[derive(Debug)]
pub struct Iteration {
    /// When to look again at the latest (Unix seconds).
    pub wake: Option<i64>,
    /// Time the planner took.
    pub plan_ms: u64,
    /// GovSystem statuses written.
    pub statuses: usize,
    /// Time the Job creations and status writes took.
    pub writes_ms: u64,
    /// Time from the start of the iteration until the read-model was published (or, without a
    /// store, until it would have been).
    pub published_ms: u64,
    /// Events posted after the publish.
    pub events: usize,
    /// Status writes refused with 409 (the object changed since): computed again.
    pub conflicts: usize,
    /// Writes not attempted because this replica may no longer lead.
    pub withheld: usize,
}

/// The journal's view of a system: who it is and the transitions `transitions` records.
fn journal_source<'a>(
    system: &'a GovSystem,
    regions: &'a HashMap<String, String>,
    transitions: &'a [suyun_crds::v1alpha1::Transition],
) -> crate::journal::Source<'a> {
    crate::journal::Source {
        system_id: &system.spec.system_id,
        region_code: system.metadata.namespace.as_ref().and_then(|ns| regions.get(ns)).map_or("", String::as_str),
        uid: system.metadata.uid.as_deref().unwrap_or_default(),
        transitions,
    }
}

/// For each system, its wave's runner (the Job executor's template), if any.
fn waves_runner<'a>(
    waves: &'a [Arc<MigrationWave>],
    wave_of: &[Option<String>],
) -> Vec<Option<&'a suyun_crds::v1alpha1::Runner>> {
    let by_name: HashMap<String, &MigrationWave> = waves.iter().map(|w| (w.name_any(), w.as_ref())).collect();
    wave_of.iter().map(|w| w.as_ref().and_then(|w| by_name.get(w)).and_then(|w| w.spec.runner.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;
    use suyun_crds::v1alpha1::CloudNode;

    /// A store awaited by two tasks, as the CloudNode store is by its controller and by the
    /// loop: the one that started waiting first must see it ready too. (With a bare
    /// `wait_until_ready` in `cache_ready`, this test hangs until its timeout.)
    #[tokio::test]
    async fn a_store_awaited_by_two_tasks_wakes_the_first_waiter_too() {
        let mut writer: Writer<CloudNode> = Writer::default();
        let store = writer.as_reader();
        let first = tokio::spawn({
            let store = store.clone();
            async move { super::cache_ready(&store).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The second waiter polls after the first: it takes the single waker slot.
        let second = tokio::spawn({
            let store = store.clone();
            async move { store.wait_until_ready().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let waited = tokio::time::timeout(Duration::from_secs(5), async { (first.await, second.await) }).await;
        let (first, second) = waited.expect("both waiters see the store ready");
        assert!(first.unwrap() && second.unwrap());
    }
}
