//! The migration loop's writes: GovSystem statuses (merge patches, many in flight), Jobs,
//! Events and MigrationWave statuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use suyun_crds::conditions::{DesiredCondition, merge_conditions};
use suyun_crds::v1alpha1::{GovSystem, GovSystemStatus, MigrationWave, MigrationWaveStatus, Phase, Runner, WavePhase};
use suyun_planner::Plan;
use tracing::{debug, info, warn};

use super::fencing::LeaseCheck;
use super::jobs;
use super::step::{Action, Outcome};
use super::waves::WaveState;
use crate::context::Context;

/// Status writes in flight at once.
const CONCURRENCY: usize = 32;

/// A merge patch that sets `status` to `new`, removing the fields `old` had and `new` lacks (at
/// every depth: a merge patch merges maps, so a count by phase that went away must be sent as
/// `null` or it stays), applied only if the object is still at `resource_version` (the version `new` was computed
/// from): otherwise the apiserver refuses it with 409 Conflict and the loop computes again from
/// what changed. This fences the writes of a deposed leader that has not noticed yet, and of
/// any computation from a stale cache.
pub fn status_patch<T: serde::Serialize>(old: &T, new: &T, resource_version: Option<&str>) -> Value {
    fn remove_gone(old: &Value, new: &mut Value) {
        if let (Value::Object(old), Value::Object(new)) = (old, new) {
            for (key, was) in old {
                match new.get_mut(key) {
                    Some(now) => remove_gone(was, now),
                    None => {
                        new.insert(key.clone(), Value::Null);
                    }
                }
            }
        }
    }
    let old = serde_json::to_value(old).unwrap_or(Value::Null);
    let mut new = serde_json::to_value(new).unwrap_or(Value::Null);
    remove_gone(&old, &mut new);
    match resource_version {
        Some(rv) => json!({ "metadata": { "resourceVersion": rv }, "status": new }),
        None => json!({ "status": new }),
    }
}

/// Whether an error is the apiserver's 409 Conflict (the object changed since it was read).
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(e) if e.code == 409)
}

/// What [`apply`] wrote.
#[derive(Debug, Default)]
pub struct Applied {
    /// For each status written: the system's index, its new resourceVersion and the status.
    pub written: Vec<(usize, Option<String>, GovSystemStatus)>,
    /// Jobs that could not be created and statuses that could not be written (conflicts
    /// excepted).
    pub failures: usize,
    /// Statuses refused because the object changed since they were computed (409): computed
    /// again next iteration.
    pub conflicts: usize,
    /// Writes not attempted because this replica may no longer lead.
    pub withheld: usize,
    /// The Events of the transitions written, not yet posted.
    pub events: Vec<PendingEvent>,
}

/// Writes every changed status and creates the Jobs the steps asked for; returns their Events
/// for [`EventQueue::post`]. Each status written is also sent to `progress` as soon as it is, so
/// that it can be published while the other writes are still in flight.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    ctx: &Context,
    systems: &[Arc<GovSystem>],
    before: &[GovSystemStatus],
    versions: &[Option<String>],
    outcomes: &[(usize, Outcome)],
    runners: &[Option<&Runner>],
    lease: &LeaseCheck,
    progress: Option<futures::channel::mpsc::UnboundedSender<(usize, GovSystemStatus)>>,
) -> Applied {
    let withheld = std::sync::atomic::AtomicUsize::new(0);
    let withhold = || async {
        let stop = !lease.leads().await;
        if stop {
            withheld.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        stop
    };
    // Jobs first: a status that names a Job is written only once the Job exists. (The work
    // lists are collected first: streams over borrowing iterator adapters are not provably
    // `Send`, and the loop runs as a task of its own.)
    let creates: Vec<_> = outcomes
        .iter()
        .flat_map(|(i, o)| {
            o.actions.iter().filter_map(move |a| match a {
                Action::CreateJob { phase, attempt, name } => {
                    Some((*i, *phase, *attempt, name.clone(), o.status.node.clone()))
                }
                _ => None,
            })
        })
        .collect();
    let job_results = futures::stream::iter(creates)
        .map(|(i, phase, attempt, name, node)| async move {
            let system = &systems[i];
            if withhold().await {
                return (i, false);
            }
            let Some(runner) = runners[i] else {
                warn!(system = %system.name_any(), "Job executor without a runner");
                return (i, false);
            };
            let node = node.as_deref().unwrap_or_default();
            let mut job = jobs::build(system, runner, phase, attempt, &name, node);
            // The Job runs in the cluster of its target node: the member's when it has one.
            let Some(client) = ctx.client_for(node) else {
                warn!(system = %system.name_any(), job = %name, node, "no client for the node's member cluster: Job not created");
                return (i, false);
            };
            if ctx.members.get(node).is_some() {
                // Its owner, the GovSystem, lives in this cluster: the member's garbage
                // collector would take a reference to it for a missing owner.
                job.metadata.owner_references = None;
            }
            let api = Api::<Job>::namespaced(client, &system.namespace().unwrap_or_default());
            match api
                .create(
                    &PostParams { field_manager: Some(suyun_crds::FIELD_MANAGER.into()), ..Default::default() },
                    &job,
                )
                .await
            {
                Ok(_) => (i, true),
                Err(kube::Error::Api(e)) if e.code == 409 => (i, true),
                Err(e) => {
                    warn!(system = %system.name_any(), job = %name, error = %e, "could not create Job");
                    (i, false)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let failed_jobs: std::collections::HashSet<usize> =
        job_results.into_iter().filter(|(_, ok)| !ok).map(|(i, _)| i).collect();

    let writes: Vec<usize> = (0..outcomes.len())
        .filter(|k| {
            let (i, o) = &outcomes[*k];
            o.status != before[*i] && !failed_jobs.contains(i)
        })
        .collect();
    let to_write = writes.len();
    let written = futures::stream::iter(writes)
        .map(|k| async move {
            let (i, o) = &outcomes[k];
            let system = &systems[*i];
            if withhold().await {
                return Err(false);
            }
            let api = Api::<GovSystem>::namespaced(ctx.client.clone(), &system.namespace().unwrap_or_default());
            let patch = status_patch(&before[*i], &o.status, versions[*i].as_deref());
            match api.patch_status(&system.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(obj) => Ok((*i, obj.resource_version(), o.status.clone())),
                Err(e) if is_conflict(&e) => {
                    debug!(system = %system.name_any(), "status changed since it was computed; computing again");
                    Err(true)
                }
                Err(e) => {
                    warn!(system = %system.name_any(), error = %e, "could not write status");
                    Err(false)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .inspect(|r| {
            if let (Ok((i, _, status)), Some(tx)) = (r, &progress) {
                let _ = tx.unbounded_send((*i, status.clone()));
            }
        })
        .collect::<Vec<_>>()
        .await;
    drop(progress);
    let conflicts = written.iter().filter(|r| matches!(r, Err(true))).count();
    let written: Vec<_> = written.into_iter().filter_map(Result::ok).collect();

    let wrote: std::collections::HashSet<usize> = written.iter().map(|(i, _, _)| *i).collect();
    let events = outcomes
        .iter()
        .filter(|(i, _)| wrote.contains(i))
        .flat_map(|(i, o)| {
            o.actions.iter().filter_map(move |a| match a {
                Action::Event { warning, reason, message } => Some(PendingEvent {
                    system: *i,
                    warning: *warning,
                    reason: reason.clone(),
                    message: message.clone(),
                }),
                _ => None,
            })
        })
        .collect();
    let withheld = withheld.into_inner();
    let failures = (failed_jobs.len() + to_write - written.len()).saturating_sub(conflicts + withheld);
    Applied { written, failures, conflicts, withheld, events }
}

/// An Event one of the written transitions asked for, posted by [`EventQueue::post`].
#[derive(Debug)]
pub struct PendingEvent {
    /// Index of the system.
    pub system: usize,
    /// Warning rather than Normal.
    pub warning: bool,
    /// Reason (CamelCase).
    pub reason: String,
    /// Message.
    pub message: String,
}

/// Events waiting to be posted, at most.
const EVENT_QUEUE: usize = 4096;

/// Posts Events off the loop's critical path: the loop queues them and goes on, a task of its
/// own posts them (a few at a time) through kube's recorder, which folds a repeated Event into
/// a series the way Kubernetes does. Events are for `kubectl describe`; the journal is the
/// record. A queue full (the apiserver far behind) drops the newest and says so; dropping the
/// queue stops its task.
pub struct EventQueue {
    tx: futures::channel::mpsc::Sender<(ObjectReference, Event)>,
    _worker: tokio_util::task::AbortOnDropHandle<()>,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue").finish_non_exhaustive()
    }
}

impl EventQueue {
    /// Starts the posting task.
    pub fn start(recorder: Recorder) -> EventQueue {
        let (tx, rx) = futures::channel::mpsc::channel::<(ObjectReference, Event)>(EVENT_QUEUE);
        let worker = tokio::spawn(rx.for_each_concurrent(CONCURRENCY / 4, move |(reference, event)| {
            let recorder = recorder.clone();
            async move {
                if let Err(err) = recorder.publish(&event, &reference).await {
                    warn!(object = ?reference.name, error = %err, "could not publish Event");
                }
            }
        }));
        EventQueue { tx, _worker: tokio_util::task::AbortOnDropHandle::new(worker) }
    }

    /// Queues the Events of the transitions written (and of refused approvals).
    pub fn post(&mut self, systems: &[Arc<GovSystem>], events: Vec<PendingEvent>) {
        let mut dropped = 0;
        for e in events {
            let system = &systems[e.system];
            if e.warning {
                info!(system = %system.spec.system_id, reason = %e.reason, message = %e.message, "migration event");
            }
            let event = Event {
                type_: if e.warning { EventType::Warning } else { EventType::Normal },
                reason: e.reason,
                note: Some(e.message.chars().take(1000).collect()),
                action: "Migrate".into(),
                secondary: None,
            };
            if self.tx.try_send((system.object_ref(&()), event)).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            warn!(dropped, "Event queue full: Events dropped (the journal still records every transition)");
        }
    }
}

/// Writes each wave's status when it changed: counts, progress, ETA from the plan, phase and
/// conditions. Returns how many writes failed.
pub async fn wave_statuses(
    ctx: &Context,
    waves: &BTreeMap<String, WaveState>,
    plan: &Plan,
    now: i64,
    lease: &LeaseCheck,
) -> usize {
    let now_time = Time(k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default());
    let eta: BTreeMap<&str, i64> = plan.waves.iter().filter_map(|w| w.end.map(|e| (w.name.as_str(), e))).collect();
    let changed: Vec<StatusChange<MigrationWaveStatus>> = waves
        .iter()
        .filter_map(|(name, state)| {
            let wave = &state.wave;
            let previous = wave.status.clone().unwrap_or_default();
            let desired = desired_wave_status(state, &previous, eta.get(name.as_str()).copied(), &now_time);
            if desired == previous {
                return None;
            }
            if previous.phase != desired.phase {
                info!(wave = %name, from = ?previous.phase, to = ?desired.phase, "wave phase changed");
            }
            Some((name.clone(), previous, desired, wave.metadata.resource_version.clone()))
        })
        .collect();
    patch_statuses(Api::<MigrationWave>::all(ctx.client.clone()), changed, lease).await
}

/// A cluster-scoped object's status to write: name, status as read, status desired, and the
/// `resourceVersion` it was computed from.
pub type StatusChange<S> = (String, S, S, Option<String>);

/// Writes the changed statuses of cluster-scoped objects the loop alone writes (waves,
/// budgets, residency policies), 32 in flight, each conditional on its `resourceVersion` (a
/// 409 is computed again next iteration), and only while this replica leads. Returns the
/// number that failed.
pub async fn patch_statuses<K, S>(api: Api<K>, changed: Vec<StatusChange<S>>, lease: &LeaseCheck) -> usize
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    if changed.is_empty() || !lease.leads().await {
        return 0;
    }
    let kind = K::kind(&());
    futures::stream::iter(changed)
        .map(|(name, previous, desired, version)| {
            let (api, kind) = (api.clone(), kind.clone());
            async move {
                let patch = status_patch(&previous, &desired, version.as_deref());
                match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => 0,
                    Err(e) if is_conflict(&e) => {
                        debug!(%kind, %name, "object changed since its status was computed");
                        0
                    }
                    Err(e) => {
                        warn!(%kind, %name, error = %e, "could not write status");
                        1
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |failures, f| async move { failures + f })
        .await
}

/// A wave's status: counts, progress, ETA from the plan, phase and conditions.
fn desired_wave_status(
    state: &WaveState,
    previous: &MigrationWaveStatus,
    eta: Option<i64>,
    now: &Time,
) -> MigrationWaveStatus {
    let wave = &state.wave;
    let progress = (state.completed * 100).checked_div(state.systems).unwrap_or(0);
    let budget = DesiredCondition::new(
        "FailureBudgetExceeded",
        state.over_budget(),
        if state.over_budget() { "AboveBudget" } else { "WithinBudget" },
        format!("{} of {} systems failed; budget {}%", state.failed, state.systems, wave.spec.failure_budget),
    );
    let ready = match &state.admits {
        Ok(()) => DesiredCondition::new("Ready", true, "Admitting", "the wave starts migrations as slots free up"),
        Err(why) => DesiredCondition::new("Ready", false, reason_of(state.phase), why.clone()),
    };
    MigrationWaveStatus {
        observed_generation: wave.metadata.generation,
        phase: Some(state.phase),
        systems: state.systems,
        completed: state.by_phase.get(Phase::Completed.as_str()).copied().unwrap_or(0),
        failed: state.failed,
        systems_by_phase: state.by_phase.clone(),
        progress: Some(format!("{progress}%")),
        eta: stable_eta(state, previous.eta.as_ref(), eta, now.0.as_second()),
        conditions: merge_conditions(&previous.conditions, vec![ready, budget], wave.metadata.generation, now),
    }
}

/// The ETA to show: the plan's, but the one shown is kept while the plan moves it by no more
/// than a waiting system's planned start may move unwritten (the planner schedules from now,
/// so an ETA drifts with the clock), and once every system finished. Without this every wave's
/// status would be written on every iteration, and again by every new leader.
fn stable_eta(state: &WaveState, shown: Option<&Time>, planned: Option<i64>, now: i64) -> Option<Time> {
    let finished = state.systems > 0 && state.completed == state.systems;
    match shown {
        Some(shown) if finished || !super::step::planned_start_moved(Some(shown.0.as_second()), planned, now) => {
            Some(shown.clone())
        }
        _ => planned.and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t).ok()).map(Time),
    }
}

fn reason_of(phase: WavePhase) -> &'static str {
    match phase {
        WavePhase::Paused => "Paused",
        WavePhase::Completed => "Completed",
        WavePhase::Failed => "Failed",
        WavePhase::Pending | WavePhase::Running => "Waiting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_removes_fields_that_went_away() {
        let old = GovSystemStatus { job: Some("j".into()), attempts: 2, ..Default::default() };
        let new = GovSystemStatus { attempts: 0, ..Default::default() };
        let patch = status_patch(&old, &new, None);
        assert_eq!(patch["status"]["job"], Value::Null);
        assert!(patch["status"].as_object().unwrap().contains_key("job"));
        assert_eq!(patch["status"]["attempts"], json!(0));
        assert!(patch.get("metadata").is_none());
        let was = MigrationWaveStatus {
            systems_by_phase: BTreeMap::from([("Provisioning".into(), 6), ("Completed".into(), 0)]),
            ..Default::default()
        };
        let now =
            MigrationWaveStatus { systems_by_phase: BTreeMap::from([("Completed".into(), 6)]), ..Default::default() };
        let patch = status_patch(&was, &now, None);
        assert_eq!(patch["status"]["systemsByPhase"], json!({"Provisioning": null, "Completed": 6}), "a count gone");
        let fenced = status_patch(&old, &new, Some("42"));
        assert_eq!(fenced["metadata"]["resourceVersion"], json!("42"), "the write is conditional on the version");
    }
}
