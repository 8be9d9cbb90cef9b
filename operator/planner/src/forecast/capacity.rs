//! The least extra capacity with which every placeable system migrates by a deadline.
//!
//! * **Placeable** systems are those the planner places when every node's capacity is
//!   unlimited (allocatable set to a huge value, `machines` cleared). The others are refused
//!   for reasons no hardware fixes (quota, security level, architecture, dependencies, …) and
//!   are counted by reason.
//! * **Feasible** extra capacity: planning with `allocatable + extra` on every node places
//!   every placeable system and every planned completion is at or before the deadline. On a
//!   node whose `machines` are known, the extra is one more machine of that size.
//! * **Upper bound**: with unlimited capacity, each node's allocated amount minus its
//!   allocatable (saturating), rounded up to the granule (one core, 1 GiB of memory or storage,
//!   one GPU); on a node with machines, at least the largest system that fits no machine. It is
//!   checked by planning once. (If it were not feasible — placement is greedy, and a unit that
//!   is released later held room meanwhile — the bound is raised by everything the unlimited
//!   plan refuses, which makes every step of placement identical to the unlimited one.) When
//!   even unlimited capacity completes after the deadline, capacity alone cannot meet it and
//!   nothing is searched.
//! * **Search**: coordinate by coordinate (node by name, then cpu, memory, storage, gpu), over
//!   every coordinate whose bound is above 0, the least value that stays feasible with the
//!   others fixed: first down from the current value (the usage of the last feasible plan is
//!   tried first: any capacity between it and the current value gives the same plan; then steps
//!   of 1, 2, 4, … granules), then by bisection between the last infeasible and the last
//!   feasible value. Plans are memoized by extra vector.
//! * **Verification**: feasibility is not perfectly monotone (greedy placement, list
//!   scheduling), so a final pass checks, for every coordinate above 0, that one granule less
//!   is infeasible; when it is feasible, that coordinate is searched down again, and passes
//!   repeat until one changes nothing. The result is a **coordinate-wise minimum** (no single
//!   coordinate can drop one granule), not a global one: buying less on one node and more on
//!   another may be cheaper.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ResourceName, SystemIndex, label, last_completion};
use crate::explain::Reason;
use crate::model::{ArchitectureRequirement, PlanInput, Resources};
use crate::output::Plan;

/// Allocatable of a node in the "unlimited" plan: far above any demand, far below overflow.
const UNLIMITED: u64 = 1 << 60;
/// Verification passes at most (each pass that changes something lowers the total extra, so
/// this only bounds the time of pathological inputs).
const MAX_PASSES: usize = 16;

/// What the capacity search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CapacityOutcome {
    /// The current capacity already places every placeable system by the deadline.
    AlreadyMet,
    /// Extra capacity (in `nodes`) meets the deadline.
    ExtraCapacity,
    /// Even unlimited capacity completes after the deadline: slots, bandwidth or windows
    /// limit the migration, not capacity.
    CapacityCannotMeetDeadline,
    /// No feasible extra capacity was found (should not happen; see the message).
    NotFound,
}

/// Extra capacity split by the architecture it must have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchitectureSplit {
    /// Must be aarch64 (信创): at most the extra, at most what the admitted aarch64 systems need.
    #[serde(rename = "aarch64")]
    pub aarch64: Resources,
    /// Must be x86_64: at most the rest of the extra, at most what admitted x86_64 systems need.
    #[serde(rename = "x86_64")]
    pub x86_64: Resources,
    /// The rest: either architecture.
    #[serde(rename = "either")]
    pub either: Resources,
}

impl ArchitectureSplit {
    fn plus(self, other: ArchitectureSplit) -> ArchitectureSplit {
        ArchitectureSplit {
            aarch64: self.aarch64.plus(other.aarch64),
            x86_64: self.x86_64.plus(other.x86_64),
            either: self.either.plus(other.either),
        }
    }
}

/// The extra capacity of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeExtra {
    /// Node name.
    pub node: String,
    /// Region code.
    pub region_code: String,
    /// Display name.
    pub display_name: String,
    /// Extra allocatable to buy.
    pub extra: Resources,
    /// Allocatable with the extra.
    pub capacity_after: Resources,
    /// The node's machines are known: the extra is one more machine of that size.
    pub as_machine: bool,
    /// Systems unplaced in the current plan and placed on this node with the extra, by id.
    pub admitted: Vec<String>,
    /// The extra by architecture, from what the admitted systems need.
    pub by_architecture: ArchitectureSplit,
    /// Last planned completion on this node with the extra.
    pub last_completion: Option<i64>,
}

/// The least extra capacity for the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityForecast {
    /// The deadline (Unix seconds).
    pub deadline: i64,
    /// What was found.
    pub outcome: CapacityOutcome,
    /// One sentence saying it.
    pub message: String,
    /// Systems placed with unlimited capacity (including those already in flight or done).
    pub placeable: usize,
    /// Systems refused even with unlimited capacity, by reason: no hardware places them.
    pub not_placeable: BTreeMap<Reason, usize>,
    /// Last planned completion with unlimited capacity.
    pub unlimited_last_completion: Option<i64>,
    /// Makespan with unlimited capacity, hours.
    pub unlimited_makespan_hours: f64,
    /// The unlimited plan's lower bound on the makespan, hours (slots, bandwidth, chains).
    pub lower_bound_hours: f64,
    /// Nodes that need extra capacity, by name.
    pub nodes: Vec<NodeExtra>,
    /// Σ of the extra over the province.
    pub total_extra: Resources,
    /// Σ of the per-node architecture splits.
    pub total_by_architecture: ArchitectureSplit,
    /// Systems unplaced in the current plan and placed with the extra (on any node).
    pub admitted: usize,
    /// Last planned completion with the extra.
    pub last_completion: Option<i64>,
    /// Makespan with the extra, hours.
    pub makespan_hours: f64,
    /// Plans run for this answer (the unlimited plan, the bound, the search, the verification).
    pub plans_run: usize,
    /// The final verification pass found no coordinate that can drop one granule.
    pub coordinate_wise_minimum: bool,
}

/// One (node, resource) the search moves.
#[derive(Debug, Clone, Copy)]
struct Coord {
    /// Index into the current plan's `nodes`.
    node: usize,
    resource: ResourceName,
}

/// A memoized probe.
#[derive(Debug, Clone)]
struct Probe {
    feasible: bool,
    /// Per node of the current plan: what the probe's plan allocated.
    allocated: Vec<Resources>,
}

/// The modifiable input and the memo of plans by extra vector.
struct Search<'a> {
    work: PlanInput,
    /// Per node of `work`: its index among the current plan's nodes (by name), if any.
    slot: Vec<Option<usize>>,
    /// Per node of `work`: its allocatable and machines as given.
    base: Vec<(Resources, Vec<Resources>)>,
    /// Per node of the current plan: allocatable (as in the plan).
    allocatable: Vec<Resources>,
    coords: Vec<Coord>,
    placeable: Vec<&'a str>,
    deadline: i64,
    memo: BTreeMap<Vec<u64>, Probe>,
    plans_run: usize,
    /// The last feasible plan run and its extra vector.
    last: Option<(Vec<u64>, Plan)>,
}

impl Search<'_> {
    /// Extra per node of the current plan, from a vector over `coords`.
    fn extra(&self, e: &[u64]) -> Vec<Resources> {
        let mut extra = vec![Resources::default(); self.allocatable.len()];
        for (c, &v) in self.coords.iter().zip(e) {
            c.resource.set(&mut extra[c.node], v.saturating_mul(c.resource.granule()));
        }
        extra
    }

    fn probe(&mut self, e: &[u64]) -> Probe {
        if let Some(p) = self.memo.get(e) {
            return p.clone();
        }
        let extra = self.extra(e);
        for (k, node) in self.work.nodes.iter_mut().enumerate() {
            let (allocatable, machines) = &self.base[k];
            let add = self.slot[k].map_or(Resources::default(), |j| extra[j]);
            node.allocatable = allocatable.plus(add);
            node.machines.clone_from(machines);
            if !machines.is_empty() && add != Resources::default() {
                node.machines.push(add);
            }
        }
        let plan = crate::plan(&self.work);
        self.plans_run += 1;
        let probe = Probe {
            feasible: feasible(&plan, &self.placeable, self.deadline),
            allocated: plan.nodes.iter().map(|n| n.allocated).collect(),
        };
        self.memo.insert(e.to_vec(), probe.clone());
        if probe.feasible {
            self.last = Some((e.to_vec(), plan));
        }
        probe
    }

    /// Lowers coordinate `k` of the feasible `e` to the least feasible value, the others fixed.
    fn minimize(&mut self, e: &mut [u64], k: usize) {
        let c = self.coords[k];
        let mut hi = e[k];
        // The largest value known infeasible; `None`: not even 0 is known infeasible.
        let mut lo: Option<u64> = None;
        // What the last feasible plan used, in granules: any value from there up to `hi` gives
        // that same plan, so it is tried first.
        let first = self.probe(e);
        let mut estimate = Some(self.used(&first, c));
        let mut step = 1u64;
        let (mut lowered, mut tried_zero) = (false, false);
        loop {
            let floor = lo.map_or(0, |l| l + 1);
            if hi <= floor {
                break;
            }
            let (x, galloping) = match estimate.take().map(|x| x.max(floor)) {
                Some(x) if x < hi => (x, false),
                // Once less than the last plan used is known to work, 0 is worth one plan:
                // many coordinates (a node whose systems can spill over) need nothing.
                _ if lo.is_none() && lowered && !tried_zero => {
                    tried_zero = true;
                    (0, false)
                }
                _ if lo.is_none() => {
                    // Down from `hi` in steps of 1, 2, 4, … granules.
                    let x = hi.saturating_sub(step).max(floor);
                    step = step.saturating_mul(2);
                    (x, true)
                }
                _ => (floor + (hi - floor) / 2, false),
            };
            let mut trial = e.to_vec();
            trial[k] = x;
            let p = self.probe(&trial);
            if p.feasible {
                hi = x;
                e[k] = x;
                lowered |= galloping;
                estimate = Some(self.used(&p, c));
            } else {
                lo = Some(x);
            }
        }
    }

    /// What a feasible probe used of coordinate `c` beyond the allocatable, in granules.
    fn used(&self, p: &Probe, c: Coord) -> u64 {
        let allocated = p.allocated.get(c.node).map_or(0, |r| c.resource.of(r));
        allocated.saturating_sub(c.resource.of(&self.allocatable[c.node])).div_ceil(c.resource.granule())
    }
}

/// Whether `plan` places every placeable system (sorted ids) and completes all by `deadline`.
fn feasible(plan: &Plan, placeable: &[&str], deadline: i64) -> bool {
    if plan.assignments.iter().any(|a| a.planned_completion.is_some_and(|c| c > deadline)) {
        return false;
    }
    // Both lists are sorted by systemId: one merge walk.
    let mut assigned = plan.assignments.iter().map(|a| a.system_id.as_str()).peekable();
    placeable.iter().all(|id| {
        while assigned.next_if(|a| a < id).is_some() {}
        assigned.next_if(|a| a == id).is_some()
    })
}

/// The least extra capacity with which every placeable system completes by `deadline`.
pub(crate) fn least_extra(
    input: &PlanInput,
    current: &Plan,
    systems: &SystemIndex<'_>,
    deadline: i64,
) -> CapacityForecast {
    let slot_of: BTreeMap<&str, usize> = current.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut work = input.clone();
    let slot: Vec<Option<usize>> = work.nodes.iter().map(|n| slot_of.get(n.name.as_str()).copied()).collect();
    let base: Vec<(Resources, Vec<Resources>)> =
        work.nodes.iter_mut().map(|n| (n.allocatable, std::mem::take(&mut n.machines))).collect();
    for n in &mut work.nodes {
        n.allocatable = Resources { cpu: UNLIMITED, memory: UNLIMITED, storage: UNLIMITED, gpu: UNLIMITED };
    }
    let unlimited = crate::plan(&work);
    let unlimited_last = last_completion(&unlimited);
    let placeable: Vec<&str> = unlimited.assignments.iter().map(|a| a.system_id.as_str()).collect();
    let mut out = CapacityForecast {
        deadline,
        outcome: CapacityOutcome::NotFound,
        message: String::new(),
        placeable: placeable.len(),
        not_placeable: unlimited.reasons.clone(),
        unlimited_last_completion: unlimited_last,
        unlimited_makespan_hours: unlimited.makespan_hours,
        lower_bound_hours: unlimited.lower_bound_hours,
        nodes: Vec::new(),
        total_extra: Resources::default(),
        total_by_architecture: ArchitectureSplit::default(),
        admitted: 0,
        last_completion: last_completion(current),
        makespan_hours: current.makespan_hours,
        plans_run: 1,
        coordinate_wise_minimum: false,
    };
    if unlimited_last.is_some_and(|t| t > deadline) {
        out.outcome = CapacityOutcome::CapacityCannotMeetDeadline;
        out.message = format!(
            "capacity alone cannot meet the deadline: migration slots, bandwidth or windows limit it \
             (with unlimited capacity the last migration completes {:.2} h after now, {:.2} h after the \
             deadline; lower bound {:.2} h)",
            unlimited.makespan_hours,
            unlimited_last.unwrap_or(deadline).saturating_sub(deadline) as f64 / 3600.0,
            unlimited.lower_bound_hours
        );
        return out;
    }
    if feasible(current, &placeable, deadline) {
        out.outcome = CapacityOutcome::AlreadyMet;
        out.coordinate_wise_minimum = true;
        out.message = "the current capacity places every placeable system by the deadline".to_owned();
        return out;
    }

    // Which nodes can use capacity at all: those that take new systems.
    let takes_new: Vec<bool> = current
        .nodes
        .iter()
        .map(|n| {
            input
                .nodes
                .iter()
                .any(|m| m.name == n.name && !m.cordoned && !m.unreachable && m.max_concurrent_migrations > 0)
        })
        .collect();
    let has_machines: Vec<bool> =
        current.nodes.iter().map(|n| input.nodes.iter().any(|m| m.name == n.name && !m.machines.is_empty())).collect();
    let allocatable: Vec<Resources> = current.nodes.iter().map(|n| n.allocatable).collect();
    // The largest request, per node with machines, that fits none of its machines.
    let mut largest = vec![Resources::default(); current.nodes.len()];
    for a in unlimited.assignments.iter().filter(|a| !a.phase.is_pinned()) {
        let (Some(&j), Some(s)) = (slot_of.get(a.node.as_str()), systems.get(&a.system_id)) else { continue };
        let fits = input
            .nodes
            .iter()
            .filter(|m| m.name == a.node)
            .any(|m| m.machines.iter().any(|free| s.resources.fits_on_machine(*free)));
        if has_machines[j] && !fits {
            let l = &mut largest[j];
            *l = Resources {
                cpu: l.cpu.max(s.resources.cpu),
                memory: l.memory.max(s.resources.memory),
                storage: 0,
                gpu: l.gpu.max(s.resources.gpu),
            };
        }
    }
    let bound = |slack: Resources| -> Vec<Resources> {
        unlimited
            .nodes
            .iter()
            .enumerate()
            .map(|(j, n)| {
                let mut b = Resources::default();
                if j < allocatable.len() && takes_new[j] {
                    let need = n.allocated.minus(allocatable[j]).plus(slack);
                    for r in ResourceName::ALL {
                        let v = r.of(&need).max(r.of(&largest[j]));
                        r.set(&mut b, v.div_ceil(r.granule()));
                    }
                }
                b
            })
            .collect()
    };
    // Everything the unlimited plan refuses: room such a system may hold before it is released.
    let refused: Resources = unlimited
        .unplaceable
        .iter()
        .filter_map(|u| systems.get(&u.system_id))
        .fold(Resources::default(), |acc, s| acc.plus(s.resources));

    let mut search = Search {
        work,
        slot,
        base,
        allocatable: allocatable.clone(),
        coords: Vec::new(),
        placeable,
        deadline,
        memo: BTreeMap::new(),
        plans_run: 1,
        last: None,
    };
    let mut upper = None;
    for slack in [Resources::default(), refused] {
        let b = bound(slack);
        search.coords = (0..b.len())
            .flat_map(|j| ResourceName::ALL.into_iter().map(move |r| Coord { node: j, resource: r }))
            .filter(|c| c.resource.of(&b[c.node]) > 0)
            .collect();
        search.memo.clear();
        let e: Vec<u64> = search.coords.iter().map(|c| c.resource.of(&b[c.node])).collect();
        if search.probe(&e).feasible {
            upper = Some(e);
            break;
        }
    }
    let Some(mut e) = upper else {
        out.plans_run = search.plans_run;
        out.message = "no feasible extra capacity found: even the upper bound (what unlimited capacity allocates, \
                       plus everything it refuses) misses the deadline or leaves a placeable system unplaced"
            .to_owned();
        return out;
    };
    for k in 0..search.coords.len() {
        search.minimize(&mut e, k);
    }
    let mut minimal = false;
    for _pass in 0..MAX_PASSES {
        let mut changed = false;
        for k in 0..search.coords.len() {
            if e[k] == 0 {
                continue;
            }
            let mut trial = e.clone();
            trial[k] -= 1;
            if search.probe(&trial).feasible {
                e = trial;
                search.minimize(&mut e, k);
                changed = true;
            }
        }
        if !changed {
            minimal = true;
            break;
        }
    }
    // The plan of the result: normally the last feasible one run; else (a memo hit) run again.
    let plan = match search.last.take() {
        Some((v, plan)) if v == e => Some(plan),
        _ => {
            search.memo.remove(&e);
            search.probe(&e);
            search.last.take().filter(|(v, _)| *v == e).map(|(_, plan)| plan)
        }
    };
    out.plans_run = search.plans_run;
    let Some(plan) = plan else {
        out.message =
            "no feasible extra capacity found: the search's result is not feasible when planned again".to_owned();
        return out;
    };
    let extra = search.extra(&e);
    out.coordinate_wise_minimum = minimal;
    out.outcome = CapacityOutcome::ExtraCapacity;
    out.last_completion = last_completion(&plan);
    out.makespan_hours = plan.makespan_hours;
    report(&mut out, current, &plan, systems, &extra, &has_machines);
    out
}

/// Fills the per-node part of `out` from the forecast plan.
fn report(
    out: &mut CapacityForecast,
    current: &Plan,
    plan: &Plan,
    systems: &SystemIndex<'_>,
    extra: &[Resources],
    has_machines: &[bool],
) {
    let unplaced: std::collections::BTreeSet<&str> = current.unplaceable.iter().map(|u| u.system_id.as_str()).collect();
    let slot_of: BTreeMap<&str, usize> = current.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut admitted: Vec<Vec<String>> = vec![Vec::new(); current.nodes.len()];
    let mut need_aarch64 = vec![Resources::default(); current.nodes.len()];
    let mut need_x86 = vec![Resources::default(); current.nodes.len()];
    let mut last: Vec<Option<i64>> = vec![None; current.nodes.len()];
    for a in &plan.assignments {
        let Some(&j) = slot_of.get(a.node.as_str()) else { continue };
        if let Some(c) = a.planned_completion {
            last[j] = Some(last[j].map_or(c, |l| l.max(c)));
        }
        if !unplaced.contains(a.system_id.as_str()) {
            continue;
        }
        out.admitted += 1;
        admitted[j].push(a.system_id.clone());
        if let Some(s) = systems.get(&a.system_id) {
            match s.architecture {
                ArchitectureRequirement::Aarch64 => need_aarch64[j] = need_aarch64[j].plus(s.resources),
                ArchitectureRequirement::X86_64 => need_x86[j] = need_x86[j].plus(s.resources),
                ArchitectureRequirement::Any => {}
            }
        }
    }
    for (j, n) in current.nodes.iter().enumerate() {
        if extra[j] == Resources::default() {
            continue;
        }
        let aarch64 = min(extra[j], need_aarch64[j]);
        let x86_64 = min(extra[j].minus(aarch64), need_x86[j]);
        let split = ArchitectureSplit { aarch64, x86_64, either: extra[j].minus(aarch64).minus(x86_64) };
        out.total_extra = out.total_extra.plus(extra[j]);
        out.total_by_architecture = out.total_by_architecture.plus(split);
        out.nodes.push(NodeExtra {
            node: n.name.clone(),
            region_code: n.region_code.clone(),
            display_name: n.display_name.clone(),
            extra: extra[j],
            capacity_after: n.allocatable.plus(extra[j]),
            as_machine: has_machines[j],
            admitted: std::mem::take(&mut admitted[j]),
            by_architecture: split,
            last_completion: last[j],
        });
    }
    let total = out.total_extra;
    let list: Vec<String> = out.nodes.iter().map(|n| label(&n.node, &n.region_code, &n.display_name)).collect();
    out.message = format!(
        "{} more on {} node(s) ({}) places every placeable system by the deadline",
        ResourceName::ALL
            .into_iter()
            .filter(|r| r.of(&total) > 0)
            .map(|r| r.format(r.of(&total)))
            .collect::<Vec<_>>()
            .join(", "),
        out.nodes.len(),
        list.join(", ")
    );
}

fn min(a: Resources, b: Resources) -> Resources {
    Resources {
        cpu: a.cpu.min(b.cpu),
        memory: a.memory.min(b.memory),
        storage: a.storage.min(b.storage),
        gpu: a.gpu.min(b.gpu),
    }
}
