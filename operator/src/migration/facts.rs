//! What the migration loop knows about waves and systems at one instant, gathered once per
//! iteration from the caches and the plan, so that [`super::step`] stays pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use suyun_crds::v1alpha1::{self as api, GovSystem, GovSystemStatus, MigrationWave, Phase, WavePhase};
use suyun_planner::model::{self, Settings};
use suyun_planner::windows::WeeklySet;
use suyun_planner::{Plan, replication_seconds};

use super::step::{CutoverWindow, Executor, JobPhase, Verdict, WaveView};

/// The planner's verdict for every system, by systemId.
pub fn verdicts(plan: &Plan) -> HashMap<&str, Verdict> {
    let mut out = HashMap::with_capacity(plan.systems);
    for a in &plan.assignments {
        out.insert(a.system_id.as_str(), Verdict::Placed { node: a.node.clone(), planned_start: a.planned_start });
    }
    for u in &plan.unplaceable {
        out.insert(
            u.system_id.as_str(),
            Verdict::Blocked { reason: format!("{:?}", u.reason), message: u.message.clone() },
        );
    }
    for n in &plan.not_migrated {
        out.insert(n.system_id.as_str(), Verdict::NotMigrated { strategy: format!("{:?}", n.strategy) });
    }
    out
}

/// A wave's state this iteration.
#[derive(Clone, Debug)]
pub struct WaveState {
    /// The wave.
    pub wave: Arc<MigrationWave>,
    /// Systems selected.
    pub systems: u32,
    /// Systems by phase.
    pub by_phase: BTreeMap<String, u32>,
    /// Migrations in progress.
    pub active: u32,
    /// Completed, Failed or RolledBack, NotMigrated.
    pub completed: u32,
    /// Failed or RolledBack.
    pub failed: u32,
    /// `Ok` when the wave may start new migrations, else why not.
    pub admits: Result<(), String>,
    /// The wave's phase.
    pub phase: WavePhase,
    /// Cutover windows of the wave.
    pub windows: Option<WeeklySet>,
}

impl WaveState {
    /// Whether the failed share passed the wave's budget.
    pub fn over_budget(&self) -> bool {
        self.systems > 0
            && u64::from(self.failed) * 100 > u64::from(self.wave.spec.failure_budget) * u64::from(self.systems)
    }
}

fn window(w: &api::Window) -> model::Window {
    model::Window {
        days: w.days.iter().map(|d| d.index()).collect(),
        start_minute: w.start_minute().unwrap_or(0),
        duration_minutes: w.duration_minutes,
    }
}

/// Weekly window set of a list of CRD windows (None: no restriction).
pub fn weekly(windows: &[api::Window]) -> Option<WeeklySet> {
    WeeklySet::from_windows(&windows.iter().map(window).collect::<Vec<_>>())
}

/// The state of every wave, from the effective status of the systems each selects
/// (`members[wave]` = statuses).
pub fn wave_states(
    waves: &[Arc<MigrationWave>],
    members: &HashMap<String, Vec<&GovSystemStatus>>,
    now: i64,
) -> BTreeMap<String, WaveState> {
    let mut states: BTreeMap<String, WaveState> = BTreeMap::new();
    for w in waves {
        let name = w.name_any();
        let statuses = members.get(&name).map(Vec::as_slice).unwrap_or_default();
        let mut s = WaveState {
            wave: w.clone(),
            systems: statuses.len() as u32,
            by_phase: BTreeMap::new(),
            active: 0,
            completed: 0,
            failed: 0,
            admits: Ok(()),
            phase: WavePhase::Pending,
            windows: weekly(&w.spec.windows),
        };
        for st in statuses {
            let phase = st.phase.unwrap_or_default();
            *s.by_phase.entry(phase.as_str().to_owned()).or_default() += 1;
            if phase.is_active() || (phase == Phase::Failed && st.reason.as_deref() != Some("RollbackFailed")) {
                s.active += 1;
            }
            if matches!(phase, Phase::Failed | Phase::RolledBack) {
                s.failed += 1;
            }
            if phase.is_terminal() || phase == Phase::Failed {
                s.completed += 1;
            }
        }
        states.insert(name, s);
    }
    // Admission: paused, failure budget, notBefore, then wave order — a wave starts only when
    // every system of every lower-order wave has started (or cannot: Blocked, NotMigrated).
    let not_started = |st: &&GovSystemStatus| matches!(st.phase.unwrap_or_default(), Phase::Pending | Phase::Scheduled);
    let names: Vec<String> = states.keys().cloned().collect();
    for name in &names {
        let order = states[name].wave.spec.order;
        let blocker = names.iter().find(|other| {
            let o = &states[*other];
            o.wave.spec.order < order && members.get(*other).is_some_and(|m| m.iter().any(not_started))
        });
        let s = states.get_mut(name).expect("name from keys");
        let not_before = s.wave.spec.not_before.as_ref().map(|t| t.0.as_second());
        s.admits = if s.wave.spec.paused {
            Err(format!("wave {name} is paused"))
        } else if s.over_budget() {
            Err(format!(
                "wave {name} is paused: {} of {} systems failed, above its failure budget of {}%",
                s.failed, s.systems, s.wave.spec.failure_budget
            ))
        } else if not_before.is_some_and(|t| t > now) {
            let at = s.wave.spec.not_before.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
            Err(format!("wave {name} starts not before {at}"))
        } else if let Some(b) = blocker {
            Err(format!("wave {name} (order {order}) waits until every system of wave {b} has started"))
        } else {
            Ok(())
        };
        s.phase = if s.systems > 0 && s.completed == s.systems {
            if s.failed > 0 { WavePhase::Failed } else { WavePhase::Completed }
        } else if s.wave.spec.paused || s.over_budget() {
            WavePhase::Paused
        } else if s.admits.is_ok() || s.active > 0 {
            WavePhase::Running
        } else {
            WavePhase::Pending
        };
    }
    states
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
                .map_or(0, |m| u64::try_from(m.max(0) / 1000).unwrap_or(u64::MAX));
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

/// Whether a cutover onto `node` in `wave` may start at `now`.
pub fn cutover_window(
    node_windows: Option<&WeeklySet>,
    wave_windows: Option<&WeeklySet>,
    settings: &Settings,
    now: i64,
) -> CutoverWindow {
    let Some(set) = WeeklySet::intersect(node_windows, wave_windows) else { return CutoverWindow::Open };
    let duration = i64::from(settings.cutover_minutes) * 60;
    match set.next_fit(now, duration, i64::from(settings.utc_offset_minutes) * 60) {
        Some(t) if t <= now => CutoverWindow::Open,
        Some(t) => CutoverWindow::OpensAt(t),
        None => CutoverWindow::Never,
    }
}

/// `Ok` when every dependency of `system` is Completed (or never migrated: a Retain system
/// stays where it runs, a Retired one goes away — as the planner sees it), else the first that
/// is not.
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

    fn wave(name: &str, order: u32, budget: u32) -> Arc<MigrationWave> {
        let spec = serde_json::from_value(serde_json::json!({
            "selector": {}, "order": order, "failureBudget": budget, "executor": "Simulated"
        }))
        .unwrap();
        Arc::new(MigrationWave::new(name, spec))
    }

    fn status(phase: Phase) -> GovSystemStatus {
        GovSystemStatus { phase: Some(phase), ..Default::default() }
    }

    #[test]
    fn a_wave_over_its_failure_budget_pauses_and_later_waves_wait_for_earlier_ones() {
        let statuses: Vec<GovSystemStatus> = [Phase::RolledBack, Phase::Failed]
            .into_iter()
            .chain(std::iter::repeat_n(Phase::Replicating, 8))
            .map(status)
            .collect();
        let later = [status(Phase::Scheduled)];
        let members = HashMap::from([
            ("first".to_owned(), statuses.iter().collect::<Vec<_>>()),
            ("second".to_owned(), later.iter().collect::<Vec<_>>()),
        ]);
        // 2 of 10 failed: above a 10 % budget, within a 20 % one.
        let states = wave_states(&[wave("first", 1, 10), wave("second", 2, 10)], &members, 0);
        assert!(states["first"].over_budget());
        assert_eq!(states["first"].phase, WavePhase::Paused);
        assert!(states["first"].admits.as_ref().unwrap_err().contains("above its failure budget of 10%"));
        let states = wave_states(&[wave("first", 1, 20), wave("second", 2, 10)], &members, 0);
        assert!(states["first"].admits.is_ok());
        assert_eq!(states["first"].phase, WavePhase::Running);
        // Every system of "first" has started, so "second" may start.
        assert!(states["second"].admits.is_ok(), "{:?}", states["second"].admits);
        // One system of "first" not started yet: "second" waits.
        let mut waiting = statuses.clone();
        waiting[9] = status(Phase::Scheduled);
        let members = HashMap::from([
            ("first".to_owned(), waiting.iter().collect::<Vec<_>>()),
            ("second".to_owned(), later.iter().collect::<Vec<_>>()),
        ]);
        let states = wave_states(&[wave("first", 1, 20), wave("second", 2, 10)], &members, 0);
        assert!(
            states["second"]
                .admits
                .as_ref()
                .unwrap_err()
                .contains("waits until every system of wave first has started")
        );
    }

    #[test]
    fn a_cutover_waits_for_the_intersection_of_node_and_wave_windows() {
        let settings = Settings { now: 0, ..Default::default() };
        // Saturday 22:00 for 8 h (China Standard Time) on the node; the wave any time.
        let node =
            weekly(&[api::Window { days: vec![api::Weekday::Sat], start: "22:00".into(), duration_minutes: 480 }]);
        // 2026-11-28 is a Saturday; 14:00 UTC = 22:00 CST.
        let sat_2130_cst = 1_795_872_600; // 2026-11-28T13:30:00Z
        let opens = 1_795_874_400; // 2026-11-28T14:00:00Z
        assert_eq!(cutover_window(node.as_ref(), None, &settings, sat_2130_cst), CutoverWindow::OpensAt(opens));
        assert_eq!(cutover_window(node.as_ref(), None, &settings, opens + 60), CutoverWindow::Open);
        assert_eq!(cutover_window(None, None, &settings, sat_2130_cst), CutoverWindow::Open);
        let disjoint =
            weekly(&[api::Window { days: vec![api::Weekday::Mon], start: "09:00".into(), duration_minutes: 60 }]);
        assert_eq!(cutover_window(node.as_ref(), disjoint.as_ref(), &settings, sat_2130_cst), CutoverWindow::Never);
    }
}
