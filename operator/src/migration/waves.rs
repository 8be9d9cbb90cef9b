//! The waves as the loop sees them this iteration (admission, budget, phase), and the
//! maintenance and cutover windows: one conversion from the CRD's windows to the planner's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use suyun_crds::v1alpha1::{self as api, GovSystemStatus, MigrationWave, Phase, WavePhase};
use suyun_planner::model::{self, Settings};
use suyun_planner::windows::WeeklySet;

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

/// The planner's form of one CRD window.
pub fn window(w: &api::Window) -> model::Window {
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

/// Whether a cutover may start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutoverWindow {
    /// Inside the node's maintenance windows and the wave's windows.
    Open,
    /// Closed; opens at this instant (Unix seconds).
    OpensAt(i64),
    /// The windows never overlap long enough.
    Never,
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

/// The effective statuses of each wave's systems (`wave_of[i]` is system `i`'s wave).
pub fn members<'a>(
    wave_of: &[Option<String>],
    statuses: &'a [GovSystemStatus],
) -> HashMap<String, Vec<&'a GovSystemStatus>> {
    let mut members: HashMap<String, Vec<&GovSystemStatus>> = HashMap::new();
    for (wave, status) in wave_of.iter().zip(statuses) {
        if let Some(w) = wave {
            members.entry(w.clone()).or_default().push(status);
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

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
