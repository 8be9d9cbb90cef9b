//! The migration loop's writes: GovSystem statuses (merge patches, many in flight), Jobs,
//! Events and MigrationWave statuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use suyun_crds::conditions::{DesiredCondition, merge_conditions};
use suyun_crds::v1alpha1::{GovSystem, GovSystemStatus, MigrationWave, MigrationWaveStatus, Runner, WavePhase};
use suyun_planner::Plan;
use tracing::{debug, info, warn};

use super::facts::WaveState;
use super::fencing::LeaseCheck;
use super::jobs;
use super::step::{Action, Outcome};
use crate::context::Context;

/// Status writes in flight at once.
const CONCURRENCY: usize = 32;

/// A merge patch that sets `status` to `new`, removing the fields `old` had and `new` lacks,
/// applied only if the object is still at `resource_version` (the version `new` was computed
/// from): otherwise the apiserver refuses it with 409 Conflict and the loop computes again from
/// what changed. This fences the writes of a deposed leader that has not noticed yet, and of
/// any computation from a stale cache.
pub fn status_patch<T: serde::Serialize>(old: &T, new: &T, resource_version: Option<&str>) -> Value {
    let old = serde_json::to_value(old).unwrap_or(Value::Null);
    let mut new = serde_json::to_value(new).unwrap_or(Value::Null);
    if let (Value::Object(old), Value::Object(new)) = (&old, &mut new) {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(Value::Null);
        }
    }
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
/// for [`post_events`]. Each status written is also sent to `progress` as soon as it is, so
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
            let job = jobs::build(system, runner, phase, attempt, &name, node.as_deref().unwrap_or_default());
            let api = Api::<Job>::namespaced(ctx.client.clone(), &system.namespace().unwrap_or_default());
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

/// An Event one of the written transitions asked for, posted by [`post_events`].
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

/// Posts the Events of the transitions written (after the read-model is published: Events
/// are for `kubectl describe`, and must not delay what city operators see).
pub async fn post_events(ctx: &Context, systems: &[Arc<GovSystem>], events: Vec<PendingEvent>) {
    futures::stream::iter(events)
        .for_each_concurrent(CONCURRENCY / 2, |e| async move {
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
            if let Err(err) = ctx.recorder.publish(&event, &system.object_ref(&())).await {
                warn!(system = %system.name_any(), error = %err, "could not publish Event");
            }
        })
        .await;
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
    let mut failures = 0;
    let now_time = Time(k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default());
    let eta: BTreeMap<&str, i64> = plan.waves.iter().filter_map(|w| w.end.map(|e| (w.name.as_str(), e))).collect();
    for (name, state) in waves {
        let wave = &state.wave;
        let previous = wave.status.clone().unwrap_or_default();
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
        let desired = MigrationWaveStatus {
            observed_generation: wave.metadata.generation,
            phase: Some(state.phase),
            systems: state.systems,
            completed: state.by_phase.get("Completed").copied().unwrap_or(0),
            failed: state.failed,
            systems_by_phase: state.by_phase.clone(),
            progress: Some(format!("{progress}%")),
            eta: eta.get(name.as_str()).and_then(|t| k8s_openapi::jiff::Timestamp::from_second(*t).ok()).map(Time),
            conditions: merge_conditions(
                &previous.conditions,
                vec![ready, budget],
                wave.metadata.generation,
                &now_time,
            ),
        };
        if desired == previous {
            continue;
        }
        if previous.phase != desired.phase {
            info!(wave = %name, from = ?previous.phase, to = ?desired.phase, "wave phase changed");
        }
        if !lease.leads().await {
            break;
        }
        let api = Api::<MigrationWave>::all(ctx.client.clone());
        let patch = status_patch(&previous, &desired, wave.metadata.resource_version.as_deref());
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => debug!(wave = %name, "wave changed since its status was computed"),
            Err(e) => {
                warn!(wave = %name, error = %e, "could not write wave status");
                failures += 1;
            }
        }
    }
    failures
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
        let fenced = status_patch(&old, &new, Some("42"));
        assert_eq!(fenced["metadata"]["resourceVersion"], json!("42"), "the write is conditional on the version");
    }
}
