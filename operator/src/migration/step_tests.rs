//! Unit tests of the migration state machine: every transition, from plain values.

use suyun_crds::v1alpha1::{GovSystemStatus, Phase};

use super::facts::{Executor, Facts, Verdict, WaveView};
use super::jobs::JobState;
use super::step::*;
use super::waves::CutoverWindow;
use crate::approvals::GivenApproval;

const NOW: i64 = 1_800_000_000;

fn facts() -> Facts {
    Facts {
        now: NOW,
        generation: Some(1),
        verdict: Verdict::Placed { node: "nanjing".into(), planned_start: Some(NOW) },
        wave: Some(WaveView {
            name: "wave-1".into(),
            executor: Executor::Job,
            approval_required: false,
            max_attempts: 3,
            timeouts: [600; 5],
            admits: Ok(()),
        }),
        dependencies: Ok(()),
        slot_free: true,
        job: JobState::Missing,
        window: CutoverWindow::Open,
        approvals: Vec::new(),
        refused_approval: None,
        backoff_base: 10,
        paused: None,
        waiver: None,
    }
}

fn phase(o: &Outcome) -> Phase {
    o.status.phase.unwrap()
}

fn created_job(o: &Outcome) -> Option<(JobPhase, u32)> {
    o.actions.iter().find_map(|a| match a {
        Action::CreateJob { phase, attempt, .. } => Some((*phase, *attempt)),
        _ => None,
    })
}

/// Runs `step` repeatedly with the given Job outcome until the phase changes.
fn finish_job(status: &GovSystemStatus, f: &Facts, job: JobState) -> Outcome {
    step("sys", status, &Facts { job, ..f.clone() })
}

#[test]
fn a_placed_admitted_system_starts_and_creates_its_first_job() {
    let o = step("sys", &GovSystemStatus::default(), &facts());
    assert_eq!(phase(&o), Phase::Provisioning);
    assert!(o.started);
    assert_eq!(created_job(&o), Some((JobPhase::Provisioning, 0)));
    assert_eq!(o.status.job.as_deref(), Some("sys-provisioning-0"));
    assert_eq!(o.status.node.as_deref(), Some("nanjing"));
    assert!(o.status.started_at.is_some());
    assert_eq!(o.wake_at, Some(NOW + 600), "wakes at the Job's deadline");
}

#[test]
fn without_a_slot_a_system_stays_scheduled_and_says_why() {
    let o = step("sys", &GovSystemStatus::default(), &Facts { slot_free: false, ..facts() });
    assert_eq!(phase(&o), Phase::Scheduled);
    assert!(!o.started);
    assert!(o.status.message.unwrap().contains("free migration slot"));
}

#[test]
fn dependencies_and_paused_waves_hold_the_start() {
    let f = Facts { dependencies: Err("depends on JS-1, which is Replicating".into()), ..facts() };
    let o = step("sys", &GovSystemStatus::default(), &f);
    assert_eq!(phase(&o), Phase::Scheduled);
    assert_eq!(o.status.message.as_deref(), Some("depends on JS-1, which is Replicating"));

    let mut f = facts();
    f.wave.as_mut().unwrap().admits = Err("wave wave-1 is paused".into());
    let o = step("sys", &GovSystemStatus::default(), &f);
    assert_eq!(phase(&o), Phase::Scheduled);
    assert_eq!(o.status.message.as_deref(), Some("wave wave-1 is paused"));
}

#[test]
fn blocked_systems_carry_the_planner_reason_and_unblock_when_placed() {
    let f = Facts {
        verdict: Verdict::Blocked { reason: "InsufficientCapacity".into(), message: "needs 64 cpu; 12 free".into() },
        ..facts()
    };
    let blocked = step("sys", &GovSystemStatus::default(), &f);
    assert_eq!(phase(&blocked), Phase::Blocked);
    assert_eq!(blocked.status.reason.as_deref(), Some("InsufficientCapacity"));
    assert!(
        blocked
            .actions
            .iter()
            .any(|a| matches!(a, Action::Event { warning: true, reason, .. } if reason == "InsufficientCapacity"))
    );
    // The same verdict again: no new Event.
    let condition = |o: &Outcome, t: &str| {
        let c = o.status.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone())
    };
    assert_eq!(condition(&blocked, "Blocked"), ("True".into(), "InsufficientCapacity".into()));
    assert_eq!(condition(&blocked, "Scheduled").0, "False");
    let again = step("sys", &blocked.status, &f);
    assert!(again.actions.is_empty(), "{:?}", again.actions);
    assert_eq!(again.status, blocked.status, "nothing changed: nothing to write");
    // Capacity added: placed and started.
    let placed = step("sys", &blocked.status, &facts());
    assert_eq!(phase(&placed), Phase::Provisioning);
    assert_eq!(condition(&placed, "Blocked").0, "False");
    assert_eq!(condition(&placed, "Scheduled"), ("True".into(), "Placed".into()));
}

#[test]
fn a_job_walks_every_phase_to_completed() {
    let mut status = step("sys", &GovSystemStatus::default(), &facts()).status;
    let mut seen = vec![status.phase.unwrap()];
    for _ in 0..4 {
        let o = finish_job(&status, &facts(), JobState::Succeeded);
        status = o.status;
        seen.push(status.phase.unwrap());
    }
    assert_eq!(seen, [Phase::Provisioning, Phase::Replicating, Phase::CuttingOver, Phase::Verifying, Phase::Completed]);
    assert!(status.completed_at.is_some());
}

#[test]
fn a_failed_job_is_retried_with_backoff_then_fails_and_rolls_back() {
    let f = facts();
    let start = step("sys", &GovSystemStatus::default(), &f).status;
    // First failure: retry in 10 s.
    let o = finish_job(&start, &f, JobState::Failed("exit 1".into()));
    assert_eq!(phase(&o), Phase::Provisioning);
    assert_eq!(o.status.attempts, 1);
    assert_eq!(o.wake_at, Some(NOW + 10));
    // Before the backoff: nothing.
    let waiting = step("sys", &o.status, &Facts { now: NOW + 5, ..f.clone() });
    assert!(created_job(&waiting).is_none());
    // After it: attempt 1 gets its own Job.
    let retry = step("sys", &o.status, &Facts { now: NOW + 10, ..f.clone() });
    assert_eq!(created_job(&retry), Some((JobPhase::Provisioning, 1)));
    // Second failure: backoff doubles.
    let o2 = finish_job(&retry.status, &Facts { now: NOW + 20, ..f.clone() }, JobState::Failed("exit 1".into()));
    assert_eq!(o2.wake_at, Some(NOW + 20 + 20));
    let retry2 = step("sys", &o2.status, &Facts { now: NOW + 40, ..f.clone() });
    // Third failure: attempts used up → Failed, and the rollback Job starts.
    let failed = finish_job(&retry2.status, &Facts { now: NOW + 50, ..f.clone() }, JobState::Failed("exit 1".into()));
    assert_eq!(phase(&failed), Phase::Failed);
    assert_eq!(created_job(&failed), Some((JobPhase::Rollback, 0)));
    let rolled = finish_job(&failed.status, &f, JobState::Succeeded);
    assert_eq!(phase(&rolled), Phase::RolledBack);
    assert_eq!(rolled.status.node, None, "capacity is given back");
    // Terminal until the spec changes.
    assert!(step("sys", &rolled.status, &f).actions.is_empty());
    let again = step("sys", &rolled.status, &Facts { generation: Some(2), ..f });
    assert_eq!(phase(&again), Phase::Provisioning, "a spec change starts over");
}

#[test]
fn a_job_that_runs_past_its_timeout_counts_as_a_failure() {
    let start = step("sys", &GovSystemStatus::default(), &facts()).status;
    let before = finish_job(&start, &Facts { now: NOW + 599, ..facts() }, JobState::Running);
    assert_eq!(before.status.attempts, 0);
    let after = finish_job(&start, &Facts { now: NOW + 600, ..facts() }, JobState::Running);
    assert_eq!(after.status.attempts, 1);
    assert!(after.status.message.unwrap().contains("did not finish within 600 s"));
}

#[test]
fn each_phase_has_its_own_timeout() {
    // Provisioning may take 120 s in this wave, the other phases 600.
    let mut f = facts();
    if let Some(w) = f.wave.as_mut() {
        w.timeouts[0] = 120;
    }
    let start = step("sys", &GovSystemStatus::default(), &f).status;
    assert_eq!(start.phase, Some(Phase::Provisioning));
    let late = finish_job(&start, &Facts { now: NOW + 120, ..f.clone() }, JobState::Running);
    assert_eq!(late.status.attempts, 1);
    assert!(late.status.message.unwrap().contains("did not finish within 120 s"));
}

fn approval(id: &str, by: &str) -> GivenApproval {
    GivenApproval { by: by.into(), at: Some(NOW - 60), reason: Some("CHG-7".into()), id: id.into() }
}

fn consumed(o: &Outcome) -> Vec<String> {
    o.actions
        .iter()
        .filter_map(|a| match a {
            Action::ConsumeApproval { id } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn condition(o: &Outcome, type_: &str) -> (String, String) {
    let c = o.status.conditions.iter().find(|c| c.type_ == type_).expect("condition present");
    (c.status.clone(), c.reason.clone())
}

/// A system of an approval-gated wave, replicated and waiting in AwaitingCutover.
fn awaiting() -> (GovSystemStatus, Facts) {
    let mut f = facts();
    f.wave.as_mut().unwrap().approval_required = true;
    let mut status = step("sys", &GovSystemStatus::default(), &f).status;
    status = finish_job(&status, &f, JobState::Succeeded).status; // → Replicating
    let waiting = finish_job(&status, &f, JobState::Succeeded);
    assert_eq!(phase(&waiting), Phase::AwaitingCutover);
    assert_eq!(condition(&waiting, "CutoverApproved"), ("False".into(), "NotApproved".into()));
    (waiting.status, Facts { job: JobState::Missing, ..f })
}

#[test]
fn approval_gate_holds_the_cutover_until_approved() {
    let (waiting, f) = awaiting();
    let still = step("sys", &waiting, &f);
    assert_eq!(phase(&still), Phase::AwaitingCutover);
    let approved = step("sys", &still.status, &Facts { approvals: vec![approval("store:9", "ops@nanjing")], ..f });
    assert_eq!(phase(&approved), Phase::CuttingOver);
    assert_eq!(approved.status.approved_by.as_deref(), Some("ops@nanjing"));
    assert_eq!(approved.status.approval_reason.as_deref(), Some("CHG-7"));
    assert_eq!(approved.status.approved_at.as_ref().map(|t| t.0.as_second()), Some(NOW - 60));
    assert_eq!(created_job(&approved), Some((JobPhase::CuttingOver, 0)));
    assert_eq!(approved.status.consumed_approval.as_deref(), Some("store:9"), "the cutover uses it up");
    assert_eq!(consumed(&approved), ["store:9"], "and asks for it to be taken away");
    assert_eq!(condition(&approved, "CutoverApproved"), ("True".into(), "Used".into()));
}

#[test]
fn a_refused_or_revoked_approval_does_not_open_the_cutover() {
    let (waiting, f) = awaiting();
    let refused =
        step("sys", &waiting, &Facts { refused_approval: Some("scope 320100 does not cover".into()), ..f.clone() });
    assert_eq!(phase(&refused), Phase::AwaitingCutover);
    assert_eq!(condition(&refused, "CutoverApproved"), ("False".into(), "ApprovalRefused".into()));
    // Approved while the window is closed: shown, not used; revoked before the window opens.
    let closed = Facts { window: CutoverWindow::OpensAt(NOW + 3600), ..f.clone() };
    let approved = step("sys", &waiting, &Facts { approvals: vec![approval("annotation:li", "li")], ..closed.clone() });
    assert_eq!(phase(&approved), Phase::AwaitingCutover);
    assert_eq!(condition(&approved, "CutoverApproved"), ("True".into(), "Approved".into()));
    assert_eq!(approved.status.consumed_approval, None);
    assert!(consumed(&approved).is_empty());
    let revoked = step("sys", &approved.status, &Facts { now: NOW + 3600, ..f });
    assert_eq!(phase(&revoked), Phase::AwaitingCutover, "a revoked approval opens nothing");
    assert_eq!(revoked.status.approved_by, None);
}

#[test]
fn a_failed_cutover_needs_a_new_approval_and_the_used_one_never_counts_again() {
    let (waiting, f) = awaiting();
    let first = approval("annotation:li", "li");
    let cutting = step("sys", &waiting, &Facts { approvals: vec![first.clone()], ..f.clone() });
    assert_eq!(phase(&cutting), Phase::CuttingOver);
    // The annotation is still there (its removal failed): the Job fails.
    let with_first = Facts { approvals: vec![first.clone()], ..f.clone() };
    let failed = finish_job(&cutting.status, &with_first, JobState::Failed("exit 1".into()));
    assert_eq!(phase(&failed), Phase::AwaitingCutover);
    assert_eq!(failed.status.reason.as_deref(), Some("CutoverRetryNeedsApproval"));
    assert_eq!(failed.status.attempts, 1, "the failed attempt counts");
    assert_eq!(consumed(&failed), ["annotation:li"], "the used approval is still being taken away");
    // The used approval, still present, does not approve the retry.
    let stale = step("sys", &failed.status, &with_first);
    assert_eq!(phase(&stale), Phase::AwaitingCutover);
    assert_eq!(stale.status.reason.as_deref(), Some("CutoverRetryNeedsApproval"));
    // Once it is gone it is forgotten, and a new approval (even by the same person) counts.
    let gone = step("sys", &stale.status, &f);
    assert_eq!(gone.status.consumed_approval, None);
    let retry = step("sys", &gone.status, &with_first);
    assert_eq!(phase(&retry), Phase::CuttingOver);
    assert_eq!(created_job(&retry), Some((JobPhase::CuttingOver, 1)), "attempt 1, a Job of its own");
    // A store approval and the annotation: the used one is skipped, the other one counts.
    let both = Facts { approvals: vec![approval("store:5", "zhang"), first], ..f.clone() };
    let failed = finish_job(&cutting.status, &both, JobState::Failed("exit 1".into()));
    let next = step("sys", &failed.status, &both);
    assert_eq!(phase(&next), Phase::CuttingOver);
    assert_eq!(next.status.approved_by.as_deref(), Some("zhang"));
}

#[test]
fn the_cutover_waits_for_its_window() {
    let f = facts();
    let mut status = step("sys", &GovSystemStatus::default(), &f).status;
    status = finish_job(&status, &f, JobState::Succeeded).status; // → Replicating
    let closed = Facts { window: CutoverWindow::OpensAt(NOW + 3600), job: JobState::Succeeded, ..f.clone() };
    let waiting = step("sys", &status, &closed);
    assert_eq!(phase(&waiting), Phase::Replicating);
    assert_eq!(waiting.status.reason.as_deref(), Some("WaitingForCutoverWindow"));
    assert_eq!(waiting.wake_at, Some(NOW + 3600));
    assert!(created_job(&waiting).is_none());
    let open = step("sys", &waiting.status, &Facts { now: NOW + 3600, job: JobState::Missing, ..f });
    assert_eq!(phase(&open), Phase::CuttingOver);
}

#[test]
fn simulated_phases_advance_with_the_clock() {
    let mut f = facts();
    f.wave.as_mut().unwrap().executor = Executor::Simulated { durations: [2, 5, 1, 1] };
    let start = step("sys", &GovSystemStatus::default(), &f);
    assert_eq!(phase(&start), Phase::Provisioning);
    assert!(created_job(&start).is_none(), "no Jobs when simulated");
    assert_eq!(start.wake_at, Some(NOW + 2));
    let o = step("sys", &start.status, &Facts { now: NOW + 2, ..f.clone() });
    assert_eq!(phase(&o), Phase::Replicating);
    let o = step("sys", &o.status, &Facts { now: NOW + 7, ..f.clone() });
    assert_eq!(phase(&o), Phase::CuttingOver, "windows are not simulated");
    let o = step("sys", &o.status, &Facts { now: NOW + 8, ..f.clone() });
    let o = step("sys", &o.status, &Facts { now: NOW + 9, ..f });
    assert_eq!(phase(&o), Phase::Completed);
}

#[test]
fn retire_and_retain_are_never_moved() {
    let f = Facts { verdict: Verdict::NotMigrated { strategy: "Retain".into() }, ..facts() };
    let o = step("sys", &GovSystemStatus::default(), &f);
    assert_eq!(phase(&o), Phase::NotMigrated);
    assert!(o.status.message.as_deref().unwrap().contains("never migrated"));
    assert!(step("sys", &o.status, &f).actions.is_empty());
}

#[test]
fn long_job_names_fit_in_63_characters_and_stay_distinct() {
    let long = "a".repeat(60);
    let a = job_name(&long, JobPhase::Replicating, 2);
    let b = job_name(&format!("{long}b"), JobPhase::Replicating, 2);
    assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
    assert_ne!(a, b);
    assert_eq!(job_name("js-320100-0001", JobPhase::Rollback, 0), "js-320100-0001-rollback-0");
}

#[test]
fn a_small_drift_of_the_planned_start_does_not_rewrite_the_status() {
    let f = Facts { slot_free: false, ..facts() };
    let first = step("sys", &GovSystemStatus::default(), &f);
    let drifted =
        Facts { verdict: Verdict::Placed { node: "nanjing".into(), planned_start: Some(NOW + 600) }, ..f.clone() };
    let again = step("sys", &first.status, &drifted);
    assert_eq!(again.status, first.status, "10 minutes of drift: nothing to write");
    let moved = Facts { verdict: Verdict::Placed { node: "nanjing".into(), planned_start: Some(NOW + 7200) }, ..f };
    let later = step("sys", &first.status, &moved);
    assert_ne!(later.status.planned_start, first.status.planned_start, "2 hours later: rewritten");
}

#[test]
fn the_planned_start_tolerance_grows_with_the_time_until_the_start() {
    let hour = 3600;
    // Soon: 30 minutes.
    assert!(!planned_start_moved(Some(NOW + hour), Some(NOW + hour - 1700), NOW));
    assert!(planned_start_moved(Some(NOW + hour), Some(NOW + hour - 1900), NOW));
    // A day ahead: a tenth of the time until it (about 2.4 hours).
    assert!(!planned_start_moved(Some(NOW + 24 * hour), Some(NOW + 22 * hour), NOW));
    assert!(planned_start_moved(Some(NOW + 24 * hour), Some(NOW + 20 * hour), NOW));
    // Appearing or going always counts.
    assert!(planned_start_moved(None, Some(NOW), NOW));
    assert!(planned_start_moved(Some(NOW), None, NOW));
    assert!(!planned_start_moved(None, None, NOW));
}

#[test]
fn a_system_in_no_wave_is_placed_without_a_planned_start() {
    let f = Facts { wave: None, ..facts() };
    let o = step("sys", &GovSystemStatus::default(), &f);
    assert_eq!(phase(&o), Phase::Scheduled);
    assert_eq!(o.status.reason.as_deref(), Some("NoWave"));
    assert_eq!(o.status.node.as_deref(), Some("nanjing"));
    assert_eq!(o.status.planned_start, None);
    let in_wave = step("sys", &GovSystemStatus::default(), &Facts { slot_free: false, ..facts() });
    assert!(in_wave.status.planned_start.is_some(), "a system in a wave has one");
}

#[test]
fn a_migration_onto_an_unreachable_member_pauses_without_failing_and_resumes_with_a_fresh_clock() {
    let started = step("sys", &GovSystemStatus::default(), &facts()).status;
    let replicating = finish_job(&started, &facts(), JobState::Succeeded).status;
    assert_eq!(replicating.phase, Some(Phase::Replicating));
    let why = "the member cluster of nanjing cannot be reached".to_owned();
    // Long past the Job's deadline (600 s), with the Job unseen: paused, not failed.
    let paused = Facts { now: NOW + 5_000, paused: Some(why.clone()), ..facts() };
    let o = step("sys", &replicating, &paused);
    assert_eq!(phase(&o), Phase::Replicating);
    assert_eq!(
        (o.status.reason.as_deref(), o.status.message.as_deref()),
        (Some(MEMBER_UNREACHABLE), Some(why.as_str()))
    );
    assert_eq!(o.status.attempts, 0, "no attempt spent");
    assert!(o.actions.is_empty(), "no Job, no Event while paused: {:?}", o.actions);
    assert_eq!(step("sys", &o.status, &paused).status, o.status, "a longer outage writes nothing more");
    // Back at NOW + 6000: the phase's clock restarts, so the Job has its whole timeout again.
    let back = step("sys", &o.status, &Facts { now: NOW + 6_000, ..facts() });
    assert_eq!(phase(&back), Phase::Replicating);
    assert_eq!(back.status.reason.as_deref(), Some("Resumed"));
    assert_eq!(back.status.phase_started_at.as_ref().map(|t| t.0.as_second()), Some(NOW + 6_000));
    assert_eq!(back.wake_at, Some(NOW + 6_600));
    assert_eq!(back.status.attempts, 0);
    // An approved cutover waits too: no CuttingOver Job is created in an unreachable member.
    let awaiting = GovSystemStatus { phase: Some(Phase::AwaitingCutover), ..replicating.clone() };
    let o = step("sys", &awaiting, &Facts { paused: Some(why), ..facts() });
    assert_eq!(phase(&o), Phase::AwaitingCutover);
    assert_eq!(created_job(&o), None);
    // A system not started yet is the planner's business (it takes nothing new there).
    let o = step("sys", &GovSystemStatus::default(), &Facts { paused: Some("x".into()), ..facts() });
    assert_eq!(phase(&o), Phase::Provisioning);
}

#[test]
fn a_residency_waiver_is_journaled_once_and_its_withdrawal_too() {
    let waiver = suyun_crds::v1alpha1::ResidencyWaiver {
        granted_by: "江苏省大数据管理局 李明".into(),
        reason: "灾备副本 CHG-2026-1201".into(),
    };
    let f = Facts { waiver: Some(waiver.clone()), ..facts() };
    let first = step("sys", &GovSystemStatus::default(), &f);
    let recorded: Vec<_> = first.status.transitions.iter().filter(|t| t.reason == "ResidencyWaiverRecorded").collect();
    assert_eq!(recorded.len(), 1, "{:?}", first.status.transitions);
    assert_eq!(recorded[0].actor, waiver.granted_by);
    assert_eq!(recorded[0].note.as_deref(), Some(waiver.reason.as_str()));
    assert_eq!(recorded[0].from, recorded[0].to, "a waiver keeps the phase");
    assert_eq!(first.status.residency_waiver.as_ref(), Some(&waiver));
    // The next step records nothing new.
    let again = step("sys", &first.status, &f);
    assert_eq!(again.status.transitions, first.status.transitions);
    // Withdrawn: journaled, by the operator, naming whose waiver it was.
    let withdrawn = step("sys", &again.status, &facts());
    let last = withdrawn.status.transitions.last().unwrap();
    assert_eq!(last.reason, "ResidencyWaiverWithdrawn");
    assert!(last.note.as_deref().unwrap().contains("李明"), "{last:?}");
    assert_eq!(withdrawn.status.residency_waiver, None);
    let sequences: Vec<u64> = withdrawn.status.transitions.iter().map(|t| t.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "{sequences:?}");
}
