//! What the state machine ([`super::step`]) is told about one system: the planner's verdict,
//! its wave, its dependencies. The types and the functions that build them from the snapshot
//! and the plan live together here, so that `step` stays pure.

use std::collections::HashMap;

use kube::ResourceExt;
use suyun_crds::v1alpha1::{self as api, GovSystem, Phase};
use suyun_planner::model::{self, Settings};
use suyun_planner::{Plan, replication_seconds};

use super::jobs::JobState;
use super::step::JobPhase;
use super::waves::{CutoverWindow, WaveState};
use crate::approvals::GivenApproval;

/// What the planner says about the system.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Placed on `node`, expected to start at `planned_start` (Unix seconds).
    Placed {
        /// CloudNode name.
        node: String,
        /// Planned start.
        planned_start: Option<i64>,
    },
    /// Cannot be placed or scheduled now.
    Blocked {
        /// PascalCase reason (InsufficientCapacity, DependencyCycle, …).
        reason: String,
        /// Sentence with numbers.
        message: String,
    },
    /// Retire or Retain: never moved.
    NotMigrated {
        /// The strategy's name.
        strategy: String,
    },
}

/// How the system's wave executes phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// One Kubernetes Job per phase.
    Job,
    /// Phases advance after the given real durations (seconds, already time-compressed).
    Simulated {
        /// Provisioning, Replicating, CuttingOver, Verifying.
        durations: [i64; 4],
    },
}

/// The system's wave, as far as this system is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaveView {
    /// Wave name.
    pub name: String,
    /// Job or Simulated.
    pub executor: Executor,
    /// Cutover waits for an approval.
    pub approval_required: bool,
    /// Attempts per phase before Failed.
    pub max_attempts: u32,
    /// Time limit of each phase's Job, seconds (the runner's, or the phase's override), in
    /// [`JobPhase::ALL`] order.
    pub timeouts: [i64; 5],
    /// `Ok` when the wave may start new migrations, else why not (paused, budget, order…).
    pub admits: Result<(), String>,
}

impl WaveView {
    /// Time limit of `phase`'s Job, seconds.
    pub fn timeout(&self, phase: JobPhase) -> i64 {
        self.timeouts[JobPhase::ALL.iter().position(|p| *p == phase).unwrap_or(0)]
    }
}

/// Everything the state machine looks at besides the status.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Now, Unix seconds.
    pub now: i64,
    /// The object's `metadata.generation`.
    pub generation: Option<i64>,
    /// The planner's verdict (None: not in the plan, e.g. its tenant is unknown).
    pub verdict: Verdict,
    /// The wave that selects the system, if any.
    pub wave: Option<WaveView>,
    /// `Ok` when every dependency is Completed, else which is not.
    pub dependencies: Result<(), String>,
    /// Whether the node's and the wave's concurrency leave a slot for a new start.
    pub slot_free: bool,
    /// State of the current Job.
    pub job: JobState,
    /// Whether a cutover may start now.
    pub window: CutoverWindow,
    /// Approvals in force for the next cutover, first preferred: one from the status store
    /// (given over the REST API, in the approver's scope) and one from the annotation
    /// `suyun.io/cutover-approved-by`.
    pub approvals: Vec<GivenApproval>,
    /// Why an approval in the status store for this system was refused, if one was.
    pub refused_approval: Option<String>,
    /// First retry waits this long (seconds); each further one twice as long, up to 5 minutes.
    pub backoff_base: i64,
    /// Why the system's migration must pause now (its node's member cluster cannot be
    /// reached), if it must.
    pub paused: Option<String>,
    /// Its `spec.residencyWaiver`: a change is journaled.
    pub waiver: Option<suyun_crds::v1alpha1::ResidencyWaiver>,
}

/// The planner's verdict for every system, by systemId.
pub fn verdicts(plan: &Plan) -> HashMap<&str, Verdict> {
    let mut out = HashMap::with_capacity(plan.systems);
    for a in &plan.assignments {
        out.insert(a.system_id.as_str(), Verdict::Placed { node: a.node.clone(), planned_start: a.planned_start });
    }
    for u in &plan.unplaceable {
        out.insert(
            u.system_id.as_str(),
            Verdict::Blocked { reason: u.reason.as_str().to_owned(), message: u.message.clone() },
        );
    }
    for n in &plan.not_migrated {
        out.insert(n.system_id.as_str(), Verdict::NotMigrated { strategy: n.strategy.as_str().to_owned() });
    }
    out
}

/// The wave view one system's step needs.
pub fn wave_view(state: &WaveState, settings: &Settings, system: &GovSystem, node: Option<&model::Node>) -> WaveView {
    let spec = &state.wave.spec;
    let executor = match spec.executor {
        api::Executor::Job => Executor::Job,
        api::Executor::Simulated => {
            let compression = i64::from(spec.time_compression.unwrap_or(3600).max(1));
            let data = system
                .spec
                .data_volume
                .as_ref()
                .and_then(|q| suyun_crds::quantity::milli(q).ok())
                .map_or(0, |m| suyun_crds::quantity::Milli(m).units_down());
            let replication =
                node.map_or(0, |n| replication_seconds(data, n.migration_bandwidth_mbps, n.max_concurrent_migrations));
            let minutes = |m: u32| i64::from(m) * 60;
            let scaled = |secs: i64| (secs + compression - 1) / compression;
            Executor::Simulated {
                durations: [
                    scaled(minutes(settings.provisioning_minutes)),
                    scaled(replication),
                    scaled(minutes(settings.cutover_minutes)),
                    scaled(minutes(settings.verification_minutes)),
                ],
            }
        }
    };
    WaveView {
        name: state.wave.name_any(),
        executor,
        approval_required: spec.approval.as_ref().is_some_and(|a| a.required),
        max_attempts: spec.max_attempts.max(1),
        timeouts: JobPhase::ALL.map(|phase| {
            i64::from(spec.runner.as_ref().map_or(3600, |r| super::jobs::command_and_timeout(r, phase).1))
        }),
        admits: state.admits.clone(),
    }
}

/// What a dependent system may learn of the system it depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dependency<'a> {
    /// Its phase.
    pub phase: Phase,
    /// Its tenant's region code.
    pub region: &'a str,
}

/// `Ok` when every dependency of `system` (whose tenant is in region `home`) is Completed or
/// never migrated. A dependency in another jurisdiction is named without its phase: what
/// another city's system is doing is not this tenant's to read.
pub fn dependencies(system: &GovSystem, home: &str, phases: &HashMap<&str, Dependency<'_>>) -> Result<(), String> {
    for dep in &system.spec.depends_on {
        match phases.get(dep.as_str()) {
            Some(Dependency { phase: Phase::Completed | Phase::NotMigrated, .. }) => {}
            Some(d) if crate::identity::within_jurisdiction(home, d.region) => {
                return Err(format!("depends on {dep}, which is {}", d.phase.as_str()));
            }
            Some(_) => return Err(format!("depends on {dep}, which has not completed its migration yet")),
            None => return Err(format!("spec.dependsOn names {dep}, which does not exist")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(deps: &[&str]) -> GovSystem {
        let spec = serde_json::from_value(serde_json::json!({
            "systemId": "JS-320100-0009", "displayName": "x", "classification": "Internal", "securityLevel": 2,
            "resources": {"cpu": "1", "memory": "1Gi", "storage": "1Gi"}, "dependsOn": deps
        }))
        .unwrap();
        GovSystem::new("s", spec)
    }

    #[test]
    fn dependencies_wait_for_completed_or_never_migrated_systems() {
        let d = |phase, region| Dependency { phase, region };
        let phases = HashMap::from([
            ("A", d(Phase::Completed, "320500")),
            ("B", d(Phase::NotMigrated, "320100")),
            ("C", d(Phase::Replicating, "320583")),
            ("D", d(Phase::Replicating, "320100")),
        ]);
        let home = "320500";
        assert_eq!(dependencies(&system(&["A", "B"]), home, &phases), Ok(()));
        assert_eq!(dependencies(&system(&["A", "C"]), home, &phases), Err("depends on C, which is Replicating".into()));
        assert_eq!(
            dependencies(&system(&["D"]), home, &phases),
            Err("depends on D, which has not completed its migration yet".into()),
            "another city's phase is not revealed"
        );
        assert_eq!(
            dependencies(&system(&["Z"]), home, &phases),
            Err("spec.dependsOn names Z, which does not exist".into())
        );
    }
}
