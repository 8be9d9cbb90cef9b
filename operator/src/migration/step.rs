//! The migration state machine of one GovSystem, pure: from the system's status and what the
//! loop knows now (the plan's verdict, its wave, its Job, the windows, free slots), the next
//! status and the actions to take. No client and no clock: `now` is an input.
//!
//! ```text
//! Pending ─plan─► Scheduled ─admitted─► Provisioning ─► Replicating ─┬─► CuttingOver ─► Verifying ─► Completed
//!    │                                      │               │        └─► AwaitingCutover (approval) ─┘
//!    └─► Blocked (reason) ◄──plan──┘        └── a Job fails: retry with backoff ── attempts used up ──► Failed
//!                                                                        Failed ─ rollback Job ─► RolledBack
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use suyun_crds::v1alpha1::{GovSystemStatus, Phase};

use super::facts::{Executor, Facts, Verdict, WaveView};
use super::jobs::JobState;
use super::waves::CutoverWindow;
use crate::approvals::GivenApproval;

/// A Job phase (the rollback is the fifth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobPhase {
    /// Create the target resources.
    Provisioning,
    /// Copy the data.
    Replicating,
    /// Switch traffic.
    CuttingOver,
    /// Check the result.
    Verifying,
    /// Undo a failed migration.
    Rollback,
}

impl JobPhase {
    /// Every Job phase, in order.
    pub const ALL: [JobPhase; 5] =
        [JobPhase::Provisioning, JobPhase::Replicating, JobPhase::CuttingOver, JobPhase::Verifying, JobPhase::Rollback];

    /// Lower-case name used in Job names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Provisioning => "provisioning",
            JobPhase::Replicating => "replicating",
            JobPhase::CuttingOver => "cuttingover",
            JobPhase::Verifying => "verifying",
            JobPhase::Rollback => "rollback",
        }
    }

    /// The `SUYUN_PHASE` value given to the runner.
    pub fn env_value(self) -> &'static str {
        match self {
            JobPhase::Provisioning => "Provisioning",
            JobPhase::Replicating => "Replicating",
            JobPhase::CuttingOver => "CuttingOver",
            JobPhase::Verifying => "Verifying",
            JobPhase::Rollback => "Rollback",
        }
    }

    fn of(phase: Phase) -> Option<JobPhase> {
        Some(match phase {
            Phase::Provisioning => JobPhase::Provisioning,
            Phase::Replicating => JobPhase::Replicating,
            Phase::CuttingOver => JobPhase::CuttingOver,
            Phase::Verifying => JobPhase::Verifying,
            Phase::Failed => JobPhase::Rollback,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        match self {
            JobPhase::Provisioning => 0,
            JobPhase::Replicating => 1,
            JobPhase::CuttingOver => 2,
            JobPhase::Verifying | JobPhase::Rollback => 3,
        }
    }
}

/// Something the loop must do besides writing the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the Job for `phase`, attempt `attempt` (0-based), named `name`.
    CreateJob {
        /// Phase the Job runs.
        phase: JobPhase,
        /// Attempt number.
        attempt: u32,
        /// Job name (also written to `status.job`).
        name: String,
    },
    /// The approval `id` was used by a cutover attempt: take it away (delete it from the status
    /// store, or remove the annotation) once the status that says so is written.
    ConsumeApproval {
        /// `annotation:<who>` or `store:<revision>`.
        id: String,
    },
    /// Publish an Event on the GovSystem.
    Event {
        /// Warning (true) or Normal.
        warning: bool,
        /// PascalCase reason.
        reason: String,
        /// Message with numbers.
        message: String,
    },
}

/// Result of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The status the system should have.
    pub status: GovSystemStatus,
    /// Actions to take.
    pub actions: Vec<Action>,
    /// When to look again at the latest, if nothing else happens (Unix seconds).
    pub wake_at: Option<i64>,
    /// Whether this step started a migration (took a concurrency slot).
    pub started: bool,
}

/// How far a new planned start may be from the one in status before status is rewritten
/// (seconds), at least: further ahead the tolerance is a tenth of the time until the start.
pub const PLANNED_START_TOLERANCE: i64 = 1800;

/// Whether a waiting system's planned start moved enough from `old` to `new` to be rewritten
/// at `now`: by more than 30 minutes, and by more than a tenth of the time until it. The
/// planner schedules from "now", so the planned starts of thousands of waiting systems drift on
/// every run; a start 10 hours away is shown to the hour, one 1 hour away to 30 minutes.
pub fn planned_start_moved(old: Option<i64>, new: Option<i64>, now: i64) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => (old - new).abs() > PLANNED_START_TOLERANCE.max((new.min(old) - now) / 10),
        (None, None) => false,
        _ => true,
    }
}

/// Reason of a system in flight whose node's member cluster cannot be reached: it pauses.
pub const MEMBER_UNREACHABLE: &str = "MemberUnreachable";
/// Reason of a system whose member cluster came back, until its phase says more.
const RESUMED: &str = "Resumed";

/// Reason of a Failed system whose rollback gave up.
const ROLLBACK_FAILED: &str = "RollbackFailed";
/// Reasons of a Replicating system whose data is copied and whose cutover waits for a window.
const WINDOW_WAITS: [&str; 2] = ["WaitingForCutoverWindow", "NoCutoverWindow"];

fn time(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn secs(t: &Option<Time>) -> Option<i64> {
    t.as_ref().map(|t| t.0.as_second())
}

/// Name of the Job for a phase attempt: `<system>-<phase>-<attempt>`, shortened with a hash
/// when the system name is long (Job names are at most 63 characters).
pub fn job_name(system: &str, phase: JobPhase, attempt: u32) -> String {
    let suffix = format!("-{}-{attempt}", phase.as_str());
    if system.len() + suffix.len() <= 63 {
        return format!("{system}{suffix}");
    }
    let hash = system.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let keep = 63 - suffix.len() - 9;
    format!("{}-{:08x}{suffix}", system[..keep].trim_end_matches('-'), hash as u32)
}

struct Stepper<'a> {
    name: &'a str,
    facts: &'a Facts,
    status: GovSystemStatus,
    actions: Vec<Action>,
    wake_at: Option<i64>,
    started: bool,
}

impl Stepper<'_> {
    fn wake(&mut self, at: i64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    fn event(&mut self, warning: bool, reason: &str, message: impl Into<String>) {
        self.actions.push(Action::Event { warning, reason: reason.into(), message: message.into() });
    }

    fn enter(&mut self, phase: Phase, reason: &str, message: impl Into<String>) {
        let message = message.into();
        let from = self.status.phase.unwrap_or_default();
        self.status.phase = Some(phase);
        self.status.phase_started_at = Some(time(self.facts.now));
        self.status.attempts = 0;
        self.status.retry_at = None;
        self.status.job = None;
        self.status.reason = Some(reason.into());
        self.status.message = Some(message.clone());
        let warning = matches!(phase, Phase::Failed | Phase::Blocked | Phase::RolledBack);
        self.event(warning, reason, format!("{} → {}: {message}", from.as_str(), phase.as_str()));
    }

    fn set_reason(&mut self, reason: &str, message: impl AsRef<str> + Into<String>) {
        // Compared first: a waiting system gets the same reason on every iteration.
        if self.status.reason.as_deref() != Some(reason) {
            self.status.reason = Some(reason.into());
        }
        if self.status.message.as_deref() != Some(message.as_ref()) {
            self.status.message = Some(message.into());
        }
    }

    fn wave(&self) -> Option<&WaveView> {
        self.facts.wave.as_ref()
    }

    /// Not started yet: follow the plan, and start when admitted.
    fn not_started(&mut self) {
        let phase = self.status.phase.unwrap_or_default();
        let facts = self.facts;
        match &facts.verdict {
            Verdict::NotMigrated { strategy } => {
                self.status.node = None;
                self.enter(Phase::NotMigrated, strategy, format!("strategy {strategy}: this system is never migrated"));
            }
            Verdict::Blocked { reason, message } => {
                self.status.node = None;
                self.status.planned_start = None;
                if phase != Phase::Blocked || self.status.reason.as_deref() != Some(reason.as_str()) {
                    self.enter(Phase::Blocked, reason, message.as_str());
                } else if self.status.message.as_ref() != Some(message) {
                    self.status.message = Some(message.clone());
                }
            }
            Verdict::Placed { node, planned_start } => {
                // (Compared first: this runs for every waiting system on every iteration.)
                if self.status.node.as_ref() != Some(node) {
                    self.status.node = Some(node.clone());
                }
                // A system in no wave has no schedule: the planner's start for it is a guess
                // that moves with every change elsewhere, not a plan anyone acts on.
                let planned_start = planned_start.filter(|_| self.wave().is_some());
                // Rewriting every drift would rewrite every waiting system's status each run.
                if planned_start_moved(secs(&self.status.planned_start), planned_start, self.facts.now) {
                    self.status.planned_start = planned_start.map(time);
                }
                if self.status.wave.as_ref() != self.wave().map(|w| &w.name) {
                    self.status.wave = self.wave().map(|w| w.name.clone());
                }
                if phase != Phase::Scheduled {
                    let when = planned_start.map(|t| format!(", planned start {}", time(t).0)).unwrap_or_default();
                    self.enter(Phase::Scheduled, "Scheduled", format!("placed on {node}{when}"));
                }
                self.admit();
            }
        }
    }

    fn admit(&mut self) {
        let facts = self.facts;
        let why_not: Result<(), &str> = match (facts.wave.as_ref(), &facts.dependencies) {
            (None, _) => Err("not selected by any MigrationWave"),
            (Some(w), _) if w.admits.is_err() => w.admits.as_ref().map(|_| ()).map_err(String::as_str),
            (_, Err(dep)) => Err(dep),
            _ if !facts.slot_free => Err("waiting for a free migration slot on the node or in the wave"),
            _ => Ok(()),
        };
        match why_not {
            Err(why) => {
                let reason = if self.wave().is_none() { "NoWave" } else { "Waiting" };
                self.set_reason(reason, why);
            }
            Ok(()) => {
                self.status.started_at = Some(time(self.facts.now));
                self.started = true;
                let node = self.status.node.clone().unwrap_or_default();
                self.enter(Phase::Provisioning, "Started", format!("migration onto {node} started"));
                self.run_phase();
            }
        }
    }

    /// An active phase: drive its Job or its simulated clock.
    fn run_phase(&mut self) {
        let phase = self.status.phase.unwrap_or_default();
        let Some(job_phase) = JobPhase::of(phase) else { return };
        let Some(wave) = self.wave().cloned() else {
            self.set_reason("NoWave", "its MigrationWave is gone; the current phase waits");
            return;
        };
        if self.status.phase_started_at.is_none() {
            // Written by an older version, or lost: the phase's clock starts now.
            self.status.phase_started_at = Some(time(self.facts.now));
        }
        let started = secs(&self.status.phase_started_at).unwrap_or(self.facts.now);
        match wave.executor {
            Executor::Simulated { durations } => {
                if job_phase == JobPhase::Rollback {
                    self.enter(Phase::RolledBack, "RolledBack", "simulated rollback");
                    return;
                }
                let done_at = started + durations[job_phase.index()].max(1);
                if self.facts.now >= done_at {
                    self.phase_succeeded(job_phase, &wave);
                } else {
                    self.wake(done_at);
                }
            }
            Executor::Job => self.run_job(job_phase, &wave, started),
        }
    }

    fn run_job(&mut self, job_phase: JobPhase, wave: &WaveView, started: i64) {
        if let Some(retry_at) = secs(&self.status.retry_at) {
            if self.facts.now < retry_at {
                self.wake(retry_at);
                return;
            }
            self.status.retry_at = None;
            self.status.job = None;
            self.status.phase_started_at = Some(time(self.facts.now));
        }
        let Some(job) = self.status.job.clone() else {
            let name = job_name(self.name, job_phase, self.status.attempts);
            self.actions.push(Action::CreateJob {
                phase: job_phase,
                attempt: self.status.attempts,
                name: name.clone(),
            });
            self.status.job = Some(name);
            self.status.phase_started_at = Some(time(self.facts.now));
            self.wake(self.facts.now + wave.timeout(job_phase));
            return;
        };
        match &self.facts.job {
            JobState::Succeeded => self.phase_succeeded(job_phase, wave),
            JobState::Failed(why) => self.attempt_failed(job_phase, wave, format!("Job {job} failed: {why}")),
            JobState::Running | JobState::Missing => {
                let deadline = started + wave.timeout(job_phase);
                if self.facts.now >= deadline {
                    let why = format!("Job {job} did not finish within {} s", wave.timeout(job_phase));
                    self.attempt_failed(job_phase, wave, why);
                } else {
                    self.wake(deadline);
                }
            }
        }
    }

    fn attempt_failed(&mut self, job_phase: JobPhase, wave: &WaveView, why: String) {
        self.status.attempts += 1;
        let attempts = self.status.attempts;
        if attempts < wave.max_attempts && job_phase == JobPhase::CuttingOver && wave.approval_required {
            // The approval was for the attempt that failed: the next one needs its own.
            let message = format!(
                "{why}; attempt {attempts} of {}: the next cutover attempt needs a new approval",
                wave.max_attempts
            );
            self.event(true, "PhaseFailed", message.clone());
            self.enter(Phase::AwaitingCutover, CUTOVER_RETRY, message);
            self.status.attempts = attempts;
            self.clear_approval();
        } else if attempts < wave.max_attempts {
            let backoff = (self.facts.backoff_base.max(1) << (attempts - 1).min(16)).min(300);
            let retry_at = self.facts.now + backoff;
            self.status.retry_at = Some(time(retry_at));
            self.wake(retry_at);
            let message = format!("{why}; attempt {attempts} of {}, retrying in {backoff} s", wave.max_attempts);
            self.set_reason("Retrying", message.clone());
            self.event(true, "PhaseFailed", message);
        } else if job_phase == JobPhase::Rollback {
            self.set_reason(
                ROLLBACK_FAILED,
                format!(
                    "{why}; rollback failed {attempts} times: manual intervention needed, then change the spec to retry"
                ),
            );
            self.status.retry_at = None;
            self.event(true, "RollbackFailed", self.status.message.clone().unwrap_or_default());
        } else {
            let phase = self.status.phase.unwrap_or_default();
            self.enter(
                Phase::Failed,
                "PhaseFailed",
                format!("{} failed {attempts} times: {why}; rolling back", phase.as_str()),
            );
            self.run_phase();
        }
    }

    fn phase_succeeded(&mut self, job_phase: JobPhase, wave: &WaveView) {
        match job_phase {
            JobPhase::Provisioning => {
                self.enter(Phase::Replicating, "Provisioned", "target resources ready; replicating data")
            }
            JobPhase::Replicating => {
                if wave.approval_required {
                    self.enter(
                        Phase::AwaitingCutover,
                        "AwaitingApproval",
                        "data replicated; cutover waits for an approval",
                    );
                    self.awaiting_cutover();
                    return;
                }
                // The Job is done; the cutover waits for a window in phase Replicating.
                self.status.job = None;
                self.try_cutover("data replicated", None);
                return;
            }
            JobPhase::CuttingOver => self.enter(Phase::Verifying, "CutOver", "traffic switched; verifying"),
            JobPhase::Verifying => {
                self.status.completed_at = Some(time(self.facts.now));
                self.enter(Phase::Completed, "Completed", "migration completed and verified");
                return;
            }
            JobPhase::Rollback => {
                self.status.node = None;
                self.enter(
                    Phase::RolledBack,
                    "RolledBack",
                    "the failed migration was rolled back; change the spec to retry",
                );
                return;
            }
        }
        self.run_phase();
    }

    /// Enter CuttingOver when the window allows (keeping `attempts` when given: failed
    /// cutover attempts so far); otherwise wait (and say so). Whether it entered.
    fn try_cutover(&mut self, done: &str, attempts: Option<u32>) -> bool {
        let simulated = matches!(self.wave().map(|w| w.executor), Some(Executor::Simulated { .. }));
        match self.facts.window {
            _ if simulated => {}
            CutoverWindow::Open => {}
            CutoverWindow::OpensAt(t) => {
                self.set_reason(
                    "WaitingForCutoverWindow",
                    format!("{done}; cutover waits for the window opening at {}", time(t).0),
                );
                self.wake(t);
                return false;
            }
            CutoverWindow::Never => {
                self.set_reason(
                    "NoCutoverWindow",
                    format!(
                        "{done}; the node's maintenance windows and the wave's windows never overlap for a cutover"
                    ),
                );
                return false;
            }
        }
        self.enter(Phase::CuttingOver, "CuttingOver", format!("{done}; switching traffic"));
        if let Some(attempts) = attempts {
            self.status.attempts = attempts;
        }
        self.run_phase();
        true
    }

    /// The approval a cutover may use now: the first in force that no attempt has used.
    fn usable_approval(&self) -> Option<GivenApproval> {
        let used = self.status.consumed_approval.as_deref();
        self.facts.approvals.iter().find(|a| Some(a.id.as_str()) != used).cloned()
    }

    fn clear_approval(&mut self) {
        self.status.approved_by = None;
        self.status.approved_at = None;
        self.status.approval_reason = None;
    }

    fn awaiting_cutover(&mut self) {
        match self.usable_approval() {
            Some(approval) => {
                self.status.approved_by = Some(approval.by.clone());
                self.status.approved_at = Some(time(approval.at.unwrap_or(self.facts.now)));
                self.status.approval_reason = approval.reason.clone();
                let attempts = self.status.attempts;
                if self.try_cutover(&format!("cutover approved by {}", approval.by), Some(attempts)) {
                    self.status.consumed_approval = Some(approval.id);
                }
            }
            None => {
                self.clear_approval();
                if self.status.reason.as_deref() != Some(CUTOVER_RETRY) {
                    self.set_reason(
                        "AwaitingApproval",
                        "data replicated; approve with the annotation suyun.io/cutover-approved-by or the REST API",
                    );
                }
            }
        }
    }
}

/// Reason of a system waiting for a new approval after a failed cutover attempt.
const CUTOVER_RETRY: &str = "CutoverRetryNeedsApproval";

/// The Scheduled and Blocked conditions of a status, with transition times kept from `current`
/// while a condition's status does not change.
fn conditions(
    current: &GovSystemStatus,
    status: &GovSystemStatus,
    facts: &Facts,
    approval: Option<&GivenApproval>,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    use suyun_crds::conditions::{DesiredCondition, merge_conditions};
    let phase = status.phase.unwrap_or_default();
    let reason = status.reason.clone().unwrap_or_else(|| phase.as_str().to_owned());
    let message = status.message.clone().unwrap_or_default();
    let placed = status.node.is_some() && !matches!(phase, Phase::Pending | Phase::Blocked | Phase::NotMigrated);
    let scheduled = if placed {
        let node = status.node.clone().unwrap_or_default();
        DesiredCondition::new("Scheduled", true, "Placed", format!("placed on {node}; phase {}", phase.as_str()))
    } else {
        DesiredCondition::new("Scheduled", false, reason.clone(), message.clone())
    };
    let blocked = if phase == Phase::Blocked {
        DesiredCondition::new("Blocked", true, reason, message)
    } else {
        DesiredCondition::new("Blocked", false, "NotBlocked", "no constraint holds the system back")
    };
    let mut desired = vec![scheduled, blocked];
    if facts.wave.as_ref().is_some_and(|w| w.approval_required) {
        desired.push(cutover_approved(status, facts, approval));
    }
    merge_conditions(&current.conditions, desired, facts.generation, &time(facts.now))
}

/// The `CutoverApproved` condition of a system whose wave requires approvals: whether an
/// approval is in force, was used by the running cutover, was refused, or is awaited.
fn cutover_approved(
    status: &GovSystemStatus,
    facts: &Facts,
    approval: Option<&GivenApproval>,
) -> suyun_crds::conditions::DesiredCondition {
    use suyun_crds::conditions::DesiredCondition;
    const TYPE: &str = "CutoverApproved";
    let phase = status.phase.unwrap_or_default();
    let given = |by: &str, at: Option<i64>, reason: Option<&str>| {
        let at = at.map(|t| format!(" at {}", time(t).0)).unwrap_or_default();
        let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        format!("{by}{at}{reason}")
    };
    if matches!(phase, Phase::CuttingOver | Phase::Verifying | Phase::Completed) && status.approved_by.is_some() {
        let by = status.approved_by.as_deref().unwrap_or_default();
        let at = secs(&status.approved_at);
        let message =
            format!("the cutover went ahead on the approval of {}", given(by, at, status.approval_reason.as_deref()));
        return DesiredCondition::new(TYPE, true, "Used", message);
    }
    if let Some(a) = approval {
        let message = format!("approved by {}", given(&a.by, a.at, a.reason.as_deref()));
        return DesiredCondition::new(TYPE, true, "Approved", message);
    }
    if let Some(why) = &facts.refused_approval {
        return DesiredCondition::new(TYPE, false, "ApprovalRefused", why.clone());
    }
    DesiredCondition::new(
        TYPE,
        false,
        "NotApproved",
        "the cutover waits for an approval: the annotation suyun.io/cutover-approved-by or POST \
         /api/v1/systems/{systemId}/cutover-approval",
    )
}

/// One step of the state machine for the system named `name`.
pub fn step(name: &str, current: &GovSystemStatus, facts: &Facts) -> Outcome {
    let mut s = Stepper { name, facts, status: current.clone(), actions: Vec::new(), wake_at: None, started: false };
    // A used approval is forgotten once it is gone from the object and the store.
    if let Some(used) = &s.status.consumed_approval
        && !facts.approvals.iter().any(|a| &a.id == used)
    {
        s.status.consumed_approval = None;
    }
    let phase = current.phase.unwrap_or_default();
    let spec_changed = current.observed_generation.is_some() && current.observed_generation != facts.generation;
    // In flight onto a member cluster that cannot be reached: nothing moves (no Job is created,
    // no timeout runs out, no attempt is spent) until it is back.
    let in_flight = phase.is_active() || phase == Phase::Failed;
    let paused = facts.paused.as_ref().filter(|_| in_flight && s.status.reason.as_deref() != Some(ROLLBACK_FAILED));
    if let Some(why) = paused {
        s.set_reason(MEMBER_UNREACHABLE, why.as_str());
        s.status.observed_generation = facts.generation;
        let approval = s.usable_approval();
        s.status.conditions = conditions(current, &s.status, facts, approval.as_ref());
        return Outcome { status: s.status, actions: s.actions, wake_at: None, started: false };
    }
    if s.status.reason.as_deref() == Some(MEMBER_UNREACHABLE) {
        // Back: the phase's clock starts again, so that the outage does not count against its
        // timeout.
        s.status.phase_started_at = Some(time(facts.now));
        s.set_reason(RESUMED, "the member cluster is reachable again; the phase goes on");
        s.event(false, RESUMED, "the member cluster is reachable again; the migration resumes");
    }
    match phase {
        // A changed spec gives a finished-but-unsuccessful or never-moved system a new start.
        Phase::RolledBack | Phase::NotMigrated if spec_changed => {
            s.status.node = None;
            s.status.started_at = None;
            s.clear_approval();
            s.enter(Phase::Pending, "SpecChanged", "the spec changed; planning again");
            s.not_started();
        }
        Phase::Failed if spec_changed && s.status.reason.as_deref() == Some(ROLLBACK_FAILED) => {
            s.status.node = None;
            s.enter(Phase::Pending, "SpecChanged", "the spec changed; planning again");
            s.not_started();
        }
        Phase::Pending | Phase::Scheduled | Phase::Blocked => s.not_started(),
        // Rollback gave up: nothing more to do until the spec changes.
        Phase::Failed if s.status.reason.as_deref() == Some(ROLLBACK_FAILED) => {}
        Phase::Provisioning | Phase::CuttingOver | Phase::Verifying | Phase::Failed => s.run_phase(),
        // Data replicated, the cutover waits for a window.
        Phase::Replicating if s.status.reason.as_deref().is_some_and(|r| WINDOW_WAITS.contains(&r)) => {
            s.try_cutover("data replicated", None);
        }
        Phase::Replicating => s.run_phase(),
        Phase::AwaitingCutover => s.awaiting_cutover(),
        Phase::Completed | Phase::RolledBack | Phase::NotMigrated => {}
    }
    if let Some(used) = &s.status.consumed_approval
        && facts.approvals.iter().any(|a| &a.id == used)
    {
        s.actions.push(Action::ConsumeApproval { id: used.clone() });
    }
    s.status.observed_generation = facts.generation;
    let approval = s.usable_approval();
    s.status.conditions = conditions(current, &s.status, facts, approval.as_ref());
    crate::journal::record(current, &mut s.status, facts.now);
    crate::journal::record_waiver(facts.waiver.as_ref(), current, &mut s.status, facts.now);
    Outcome { status: s.status, actions: s.actions, wake_at: s.wake_at, started: s.started }
}
