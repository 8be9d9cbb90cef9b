//! The migration loop: one planner run serves many events.
//!
//! ```text
//!  watches (GovSystem, MigrationWave, CloudNode, Tenant, Job) ──notify──┐
//!  next deadline (simulated phase end, retry, timeout, window) ──timer──┤ debounce
//!                                                                        ▼
//!  1 snapshot   caches + overlay ─► effective statuses, owners, waves, approvals  (snapshot.rs)
//!  2 decide     plan (pure) ─► verdicts, slots, step every system (pure)          (decide.rs)
//!  3 apply      create Jobs, write changed statuses (concurrent, conditional),    (writes.rs)
//!               each published to the status store as soon as it is written       (report.rs)
//!  4 report     read-model + journal, metrics, accounts, wave statuses;           (report.rs)
//!               Events queued for a task of their own                             (writes.rs)
//! ```
//!
//! GovSystem and MigrationWave status have one writer, this loop, so transitions cannot race.
//! A status it wrote is used in place of the cached one until the cache catches up (the
//! overlay, [`snapshot::Overlay`]), so a quick next iteration never acts on a stale phase.

mod caches;
pub mod decide;
pub mod facts;
pub mod fencing;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod governance;
pub mod jobs;
mod report;
pub mod snapshot;
pub mod step;
#[cfg(test)]
mod step_tests;
pub mod waves;
mod writes;

pub use caches::{Caches, watch};
pub use writes::{is_conflict, status_patch};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use suyun_crds::v1alpha1::{CityBudget, GovSystem, GovSystemStatus, MigrationWave, ResidencyPolicy};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::metrics::Reconciler;
use crate::plan_input::Objects;
use crate::store::{StoreLink, StoreSink};
pub(crate) use caches::{Cached, cache_ready, cache_ready_now, spawn_cache};
use snapshot::{Overlay, Snapshot};
use step::Outcome;

/// Longest wait at the start for every member cluster to be probed once.
const MEMBERS_SETTLE: Duration = Duration::from_secs(15);

/// The loop's memory between iterations.
pub struct MigrationLoop {
    ctx: Arc<Context>,
    caches: Caches,
    overlay: Overlay,
    /// The status store, while the fence is still being won.
    pending_store: Option<tokio::sync::oneshot::Receiver<StoreLink>>,
    store: Option<StoreSink>,
    approvals: Option<crate::store::ApprovalMirror>,
    lease: fencing::LeaseCheck,
    events: writes::EventQueue,
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
        let events = writes::EventQueue::start(ctx.recorder.clone());
        Self {
            ctx,
            caches,
            overlay: Overlay::default(),
            pending_store: store,
            store: None,
            approvals: None,
            lease,
            events,
            fenced: false,
        }
    }

    /// Takes the status store into use once its fence was won.
    fn attach_store(&mut self) {
        use tokio::sync::oneshot::error::TryRecvError;
        let Some(pending) = &mut self.pending_store else { return };
        match pending.try_recv() {
            Ok(StoreLink { mut sink, approvals }) => {
                sink.set_retention(i64::from(self.ctx.config.store.journal_retention_days) * 86_400);
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
        cache_ready(&self.caches.city_budgets).await;
        ready("CityBudget");
        cache_ready(&self.caches.residency_policies).await;
        ready("ResidencyPolicy");
        cache_ready(&self.ctx.cloud_nodes).await;
        ready("CloudNode");
        // (A single-cluster province has nothing to wait for.)
        if self.ctx.cloud_nodes.state().iter().any(|n| n.spec.cluster.is_some()) {
            if !self.ctx.members.settled(MEMBERS_SETTLE).await {
                warn!(waited_s = MEMBERS_SETTLE.as_secs(), "member clusters not all probed yet: starting without");
            }
            ready("member clusters");
        }
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
                snapshot_ms = it.snapshot_ms,
                plan_ms = it.plan_ms,
                statuses = it.statuses,
                writes_ms = it.writes_ms,
                report_ms = it.report_ms,
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

    /// One iteration, stage by stage (see the module docs); returns when to look again at the
    /// latest, and where the time went. Counted as one reconcile of the `migration`
    /// controller, failed when a Kubernetes write or the publish failed.
    ///
    /// Order matters for what city operators see: each status is published as soon as it is
    /// written, the whole read-model right after the writes, and only then are approvals
    /// cleaned up and wave statuses written; Events never wait.
    pub async fn iterate(&mut self) -> Iteration {
        self.attach_store();
        let metrics = self.ctx.metrics.clone();
        let timer = metrics.time_reconcile(Reconciler::Migration);
        let started = std::time::Instant::now();

        // 1. Snapshot.
        let objects = Objects {
            cloud_nodes: self.ctx.cloud_nodes.state(),
            tenants: self.caches.tenants.state(),
            systems: self.caches.systems.state(),
            waves: self.caches.waves.state(),
            city_budgets: self.caches.city_budgets.state(),
            residency_policies: self.caches.residency_policies.state(),
            members: crate::members::facts(&self.ctx.cloud_nodes.state(), &self.ctx.members),
        };
        let store_approvals = self.approvals.as_ref().map(|m| m.snapshot()).unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let jobs = snapshot::ClusterJobs {
            own: self.caches.jobs.state(),
            members: self
                .ctx
                .members
                .all()
                .into_iter()
                .filter_map(|(node, m)| Some((node, m.caches?.jobs.state())))
                .collect(),
        };
        let mut snapshot = Snapshot::take(objects, jobs, &mut self.overlay, &store_approvals, now);

        // 2. Decide. Planning thousands of systems takes a while: let the runtime move this
        // worker's other tasks elsewhere meanwhile.
        let (input, invalid) = snapshot.plan_input();
        let snapshot_elapsed = started.elapsed();
        let planning = std::time::Instant::now();
        let plan = tokio::task::block_in_place(|| suyun_planner::plan(&input));
        let plan_elapsed = planning.elapsed();
        let config = &self.ctx.config;
        let run_out = suyun_planner::forecast::run_out_of(
            &input,
            &plan,
            config.forecast_growth_percent,
            config.forecast_horizon_days,
        );
        self.ctx.metrics.observe_plan(plan_elapsed, &plan);
        let decision = decide::decide(&snapshot, &input, &plan, &invalid, self.ctx.config.retry_backoff_seconds);

        // 3. Apply, publishing each status as it is written.
        let writing = std::time::Instant::now();
        let (progress, written_now) = futures::channel::mpsc::unbounded();
        let early_store = self.store.as_mut().filter(|s| s.is_reconciled());
        let progress = early_store.is_some().then_some(progress);
        let early = async {
            match early_store {
                Some(store) => report::publish_as_written(store, &snapshot, &decision.waves, written_now).await,
                None => false,
            }
        };
        let runners = waves_runner(&snapshot.objects.waves, &snapshot.wave_of);
        let apply = writes::apply(
            &self.ctx,
            &snapshot.objects.systems,
            &snapshot.statuses,
            &snapshot.versions,
            &decision.outcomes,
            &runners,
            &self.lease,
            progress,
        );
        let (applied, fenced_early) = futures::join!(apply, early);
        self.fenced |= fenced_early || self.lease.deposed();
        let writes_elapsed = writing.elapsed();
        if applied.withheld > 0 {
            warn!(withheld = applied.withheld, "writes withheld: this replica may no longer lead");
        }
        snapshot.written(applied.written.iter().cloned(), &mut self.overlay, |wave, before, after| {
            metrics.observe_transition(wave, before, after, now);
        });
        let effective = &snapshot.statuses;

        // 4. Report.
        let reporting = std::time::Instant::now();
        let reported =
            report::publish(&self.ctx, self.store.as_mut(), &snapshot, effective, &plan, &run_out, started).await;
        self.fenced |= reported.fenced;
        let report_elapsed = reporting.elapsed();
        let published_ms = started.elapsed().as_millis() as u64;
        let mut failures = applied.failures + usize::from(reported.failed);
        self.take_used_approvals(&snapshot.objects.systems, &decision.outcomes, effective).await;
        self.delete_refused_approvals(&snapshot.approvals.to_delete).await;
        let mut events = applied.events;
        events.extend(snapshot.approvals.refused.iter().map(|(i, why)| writes::PendingEvent {
            system: *i,
            warning: true,
            reason: "ApprovalRefused".into(),
            message: why.clone(),
        }));
        let event_count = events.len();
        self.events.post(&snapshot.objects.systems, events);
        failures += writes::wave_statuses(&self.ctx, &reported.waves, &plan, now, &self.lease).await;
        let now_time = Time(k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default());
        let (budgets, policies) =
            governance::changes(&snapshot.objects, &plan, self.ctx.config.capacity_pressure_threshold, &now_time);
        failures += writes::patch_statuses(Api::<CityBudget>::all(self.ctx.client.clone()), budgets, &self.lease).await;
        failures +=
            writes::patch_statuses(Api::<ResidencyPolicy>::all(self.ctx.client.clone()), policies, &self.lease).await;
        self.ctx.publish_accounts(reported.accounts);
        timer.observe(failures > 0);
        Iteration {
            wake: decision.wake,
            snapshot_ms: snapshot_elapsed.as_millis() as u64,
            plan_ms: plan_elapsed.as_millis() as u64,
            statuses: applied.written.len(),
            writes_ms: writes_elapsed.as_millis() as u64,
            report_ms: report_elapsed.as_millis() as u64,
            published_ms,
            events: event_count,
            conflicts: applied.conflicts,
            withheld: applied.withheld,
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
                let publisher = self.store.as_mut().map(crate::store::StoreSink::publisher_mut);
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
    /// Time the snapshot and the planner's input took.
    pub snapshot_ms: u64,
    /// Time the planner took.
    pub plan_ms: u64,
    /// GovSystem statuses written.
    pub statuses: usize,
    /// Time the Job creations and status writes took.
    pub writes_ms: u64,
    /// Time the report stage's full publish (read-model, journal, metrics, accounts) took.
    pub report_ms: u64,
    /// Time from the start of the iteration until the read-model was published (or, without a
    /// store, until it would have been).
    pub published_ms: u64,
    /// Events queued after the publish.
    pub events: usize,
    /// Status writes refused with 409 (the object changed since): computed again.
    pub conflicts: usize,
    /// Writes not attempted because this replica may no longer lead.
    pub withheld: usize,
}

/// For each system, its wave's runner (the Job executor's template), if any.
fn waves_runner<'a>(
    waves: &'a [Arc<MigrationWave>],
    wave_of: &[Option<String>],
) -> Vec<Option<&'a suyun_crds::v1alpha1::Runner>> {
    let by_name: HashMap<String, &MigrationWave> = waves.iter().map(|w| (w.name_any(), w.as_ref())).collect();
    wave_of.iter().map(|w| w.as_ref().and_then(|w| by_name.get(w)).and_then(|w| w.spec.runner.as_ref())).collect()
}
