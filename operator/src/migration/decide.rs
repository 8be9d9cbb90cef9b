//! Stage 2 of an iteration, decide: pure. From the snapshot and the plan, the next status of
//! every system and the actions to take, and when to look again. Systems that may start are
//! considered in planned-start order, then by priority, and each start takes a slot of its
//! node's and its wave's concurrency, so the slots of one iteration are never over-booked.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use suyun_planner::Plan;
use suyun_planner::model::{self, PlanInput};
use suyun_planner::windows::WeeklySet;

use super::facts::{self, Dependency, Facts, Verdict};
use super::jobs;
use super::snapshot::Snapshot;
use super::step::{self, Outcome};
use super::waves::{self, WaveState};

/// What the loop is to do this iteration.
#[derive(Debug)]
pub struct Decision {
    /// For each system stepped (index into the snapshot's systems), its outcome.
    pub outcomes: Vec<(usize, Outcome)>,
    /// When to look again at the latest (Unix seconds), if any system asked.
    pub wake: Option<i64>,
    /// Every wave's state before this iteration's writes.
    pub waves: BTreeMap<String, WaveState>,
}

/// Decides every system's next step. `invalid` holds the systems whose spec could not be
/// converted for the planner (by `namespace/name`, see [`Snapshot::plan_input`]);
/// `backoff_base` is the first retry's wait in seconds.
pub fn decide(
    snapshot: &Snapshot,
    input: &PlanInput,
    plan: &Plan,
    invalid: &HashMap<String, String>,
    backoff_base: i64,
) -> Decision {
    let systems = &snapshot.objects.systems;
    let verdicts = facts::verdicts(plan);
    let waves = snapshot.wave_states(&snapshot.statuses);
    let model_nodes: HashMap<&str, &model::Node> = input.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let node_windows: HashMap<String, Option<WeeklySet>> = snapshot
        .objects
        .cloud_nodes
        .iter()
        .map(|n| (n.name_any(), waves::weekly(&n.spec.maintenance_windows)))
        .collect();
    let node_limit: HashMap<String, u32> =
        snapshot.objects.cloud_nodes.iter().map(|n| (n.name_any(), n.spec.max_concurrent_migrations)).collect();
    let dependencies: HashMap<&str, Dependency> = (0..systems.len())
        .filter(|i| snapshot.owned[*i])
        .map(|i| {
            let phase = snapshot.statuses[i].phase.unwrap_or_default();
            (systems[i].spec.system_id.as_str(), Dependency { phase, region: snapshot.region(i) })
        })
        .collect();

    // Concurrency in use, per node and per wave.
    let mut node_active: HashMap<String, u32> = HashMap::new();
    for status in snapshot.statuses.iter().filter(|s| s.phase.unwrap_or_default().is_active()) {
        *node_active.entry(status.node.clone().unwrap_or_default()).or_default() += 1;
    }
    let mut wave_active: HashMap<String, u32> = waves.iter().map(|(n, w)| (n.clone(), w.active)).collect();

    let verdict_of = |i: usize| {
        let system = &systems[i];
        // (Checked first: there is rarely an invalid spec, and the key is built per system.)
        let problem = if invalid.is_empty() {
            None
        } else {
            invalid.get(&format!("{}/{}", system.namespace().unwrap_or_default(), system.name_any()))
        };
        match (snapshot.screening.refused.get(&i), problem) {
            (Some(refusal), _) => Verdict::Blocked { reason: refusal.reason.into(), message: refusal.message.clone() },
            (None, Some(problem)) => Verdict::Blocked { reason: "InvalidSpec".into(), message: problem.clone() },
            (None, None) => verdicts.get(system.spec.system_id.as_str()).cloned().unwrap_or_else(|| Verdict::Blocked {
                reason: "NotPlanned".into(),
                message: "the planner did not consider this system".into(),
            }),
        }
    };

    let mut outcomes = Vec::with_capacity(systems.len());
    let mut wake: Option<i64> = None;
    for i in start_order(snapshot, &verdicts) {
        let system = &systems[i];
        let status = &snapshot.statuses[i];
        let verdict = verdict_of(i);
        // A system in flight keeps its node; otherwise the plan's.
        let node = match (&verdict, &status.node) {
            (_, Some(n)) if status.phase.unwrap_or_default().is_active() => Some(n.clone()),
            (Verdict::Placed { node, .. }, _) => Some(node.clone()),
            _ => status.node.clone(),
        };
        let wave = snapshot.wave_of[i].as_ref().and_then(|w| waves.get(w));
        let slot_free = node
            .as_ref()
            .is_some_and(|n| node_active.get(n).copied().unwrap_or(0) < node_limit.get(n).copied().unwrap_or(0))
            && wave.is_some_and(|w| {
                wave_active.get(&w.wave.name_any()).copied().unwrap_or(0) < w.wave.spec.max_concurrent
            });
        let facts = Facts {
            now: snapshot.now,
            generation: system.metadata.generation,
            verdict,
            wave: wave.map(|w| {
                facts::wave_view(w, &input.settings, system, node.as_deref().and_then(|n| model_nodes.get(n).copied()))
            }),
            dependencies: facts::dependencies(system, snapshot.region(i), &dependencies),
            slot_free,
            job: jobs::state(snapshot.job(i)),
            window: waves::cutover_window(
                node.as_ref().and_then(|n| node_windows.get(n)).and_then(Option::as_ref),
                wave.and_then(|w| w.windows.as_ref()),
                &input.settings,
                snapshot.now,
            ),
            approvals: snapshot.approvals.approvals.get(&i).cloned().unwrap_or_default(),
            refused_approval: snapshot.approvals.refused.get(&i).cloned(),
            backoff_base,
            paused: snapshot.paused(i),
            waiver: system.spec.residency_waiver.clone(),
        };
        let outcome = step::step(&system.name_any(), status, &facts);
        if outcome.started {
            if let Some(n) = &node {
                *node_active.entry(n.clone()).or_default() += 1;
            }
            if let Some(w) = &snapshot.wave_of[i] {
                *wave_active.entry(w.clone()).or_default() += 1;
            }
        }
        if let Some(t) = outcome.wake_at {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
        outcomes.push((i, outcome));
    }
    Decision { outcomes, wake, waves }
}

/// Every system's index, in the order starts are granted: planned start, then priority
/// (highest first), then `systemId`.
fn start_order(snapshot: &Snapshot, verdicts: &HashMap<&str, Verdict>) -> Vec<usize> {
    let systems = &snapshot.objects.systems;
    let mut order: Vec<usize> = (0..systems.len()).collect();
    order.sort_by_cached_key(|i| {
        let spec = &systems[*i].spec;
        let planned = match verdicts.get(spec.system_id.as_str()) {
            Some(Verdict::Placed { planned_start, .. }) => planned_start.unwrap_or(i64::MAX),
            _ => i64::MAX,
        };
        (planned, std::cmp::Reverse(spec.priority), spec.system_id.clone())
    });
    order
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use suyun_crds::v1alpha1::{GovSystem, Phase};

    use super::*;
    use crate::migration::snapshot::Overlay;
    use crate::plan_input::Objects;

    use crate::migration::fixtures::{NOW, node, system, tenant, wave};

    fn decide_for(objects: Objects) -> (Snapshot, Decision) {
        let jobs = Vec::new();
        let snapshot = Snapshot::take(objects, jobs, &mut Overlay::default(), &BTreeMap::new(), NOW);
        let (input, invalid) = snapshot.plan_input();
        let plan = suyun_planner::plan(&input);
        let decision = decide(&snapshot, &input, &plan, &invalid, 10);
        (snapshot, decision)
    }

    fn started(snapshot: &Snapshot, decision: &Decision) -> Vec<String> {
        let mut out: Vec<String> = decision
            .outcomes
            .iter()
            .filter(|(_, o)| o.started)
            .map(|(i, _)| snapshot.objects.systems[*i].spec.system_id.clone())
            .collect();
        out.sort();
        out
    }

    /// `objects` with each system's status set to its outcome in `decision`.
    fn advanced(objects: &Objects, snapshot: &Snapshot, decision: &Decision) -> Objects {
        let mut next = objects.clone();
        next.systems = decision
            .outcomes
            .iter()
            .map(|(i, o)| {
                let mut s = GovSystem::clone(&snapshot.objects.systems[*i]);
                s.status = Some(o.status.clone());
                Arc::new(s)
            })
            .collect();
        next
    }

    fn objects(node_limit: u32, wave_limit: u32) -> Objects {
        Objects {
            cloud_nodes: vec![node(node_limit)],
            tenants: vec![tenant()],
            systems: (1..=5).map(|n| system(n, if n == 5 { 900 } else { 100 }, &[])).collect(),
            waves: vec![wave(wave_limit)],
            ..Default::default()
        }
    }

    #[test]
    fn starts_never_exceed_the_node_or_the_wave_concurrency_and_go_by_priority() {
        for (node_limit, wave_limit, expected) in [(2, 10, 2), (10, 3, 3), (10, 10, 5)] {
            let pending = objects(node_limit, wave_limit);
            let (snapshot, decision) = decide_for(pending.clone());
            let first = started(&snapshot, &decision);
            assert_eq!(first.len(), expected, "node {node_limit}, wave {wave_limit}: {first:?}");
            assert!(first.contains(&"JS-320100-0005".to_owned()), "the highest priority goes first: {first:?}");
            // The next iteration counts the migrations in flight: no slot is free until one ends.
            let (snapshot, decision) = decide_for(advanced(&pending, &snapshot, &decision));
            let more = started(&snapshot, &decision);
            assert!(more.is_empty(), "node {node_limit}, wave {wave_limit}: {more:?} started on top");
        }
    }

    #[test]
    fn a_dependent_waits_until_its_dependency_completed() {
        let mut pending = objects(10, 10);
        pending.systems = vec![system(1, 100, &[]), system(2, 100, &["JS-320100-0001"])];
        let (snapshot, decision) = decide_for(pending);
        assert_eq!(started(&snapshot, &decision), ["JS-320100-0001"]);
        let (_, waiting) = decision.outcomes.iter().find(|(i, _)| *i == 1).unwrap();
        assert!(waiting.status.message.as_deref().unwrap_or_default().contains("depends on JS-320100-0001"));
    }

    #[test]
    fn a_duplicate_id_and_an_unconvertible_spec_are_blocked_with_their_reason_and_the_rest_moves() {
        let mut bad = GovSystem::clone(&system(2, 100, &[]));
        bad.spec.resources.cpu = k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into());
        let mut duplicate = GovSystem::clone(&system(1, 100, &[]));
        duplicate.metadata.name = Some("copy".into());
        duplicate.metadata.uid = Some("uid-copy".into());
        duplicate.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(NOW).unwrap(),
        ));
        let mut objects = objects(5, 5);
        objects.systems = vec![system(1, 100, &[]), Arc::new(bad), Arc::new(duplicate)];
        let (snapshot, decision) = decide_for(objects);
        let outcome = |name: &str| {
            let (_, o) =
                decision.outcomes.iter().find(|(i, _)| snapshot.objects.systems[*i].name_any() == name).unwrap();
            o.status.clone()
        };
        assert_eq!(started(&snapshot, &decision), ["JS-320100-0001"], "the owner moves");
        assert_eq!(outcome("s2").phase, Some(Phase::Blocked));
        assert_eq!(outcome("s2").reason.as_deref(), Some("InvalidSpec"));
        assert!(outcome("s2").message.unwrap_or_default().contains("spec.resources.cpu"));
        assert_eq!(outcome("copy").phase, Some(Phase::Blocked));
        assert_eq!(outcome("copy").reason.as_deref(), Some(crate::identity::DUPLICATE_SYSTEM_ID));
    }

    #[test]
    fn the_next_wake_up_is_the_earliest_any_system_asked_for() {
        let (_, decision) = decide_for(objects(2, 10));
        let asked: Vec<i64> = decision.outcomes.iter().filter_map(|(_, o)| o.wake_at).collect();
        assert!(!asked.is_empty(), "started simulated phases ask to be woken when they end");
        assert_eq!(decision.wake, asked.iter().copied().min());
    }
}
