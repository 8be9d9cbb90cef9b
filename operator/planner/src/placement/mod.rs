//! Placement: which node each system goes to.
//!
//! Pinned systems (in flight or Completed) are accounted first. `sameNodeAs` groups are
//! placed as one unit, units in priority order (highest first, then systemId). A unit tries
//! its candidate nodes in order — preferred (or previous) node, home node, then the provincial
//! node when spillover is allowed — and takes the first that passes every check. Systems
//! whose dependencies end up unplaced are released again, and the units that failed for lack of
//! capacity, quota or anti-affinity get further passes over the freed room.

mod budget;

pub(crate) use budget::{budgeted, lent_shares, quota_of};
mod refusals;

use crate::dependencies::{Failure, propagate};
use crate::explain::Reason;
use crate::index::{Kind, NONE, Problem};
use crate::model::{Architecture, ArchitectureRequirement, Resources, TenantLevel};
use crate::windows::WindowTable;

/// Result of placement.
#[derive(Debug)]
pub struct Placement {
    /// Per system: node index or [`NONE`].
    pub node_of: Vec<u32>,
    /// Per node: resources allocated (pinned and newly placed systems).
    pub allocated: Vec<Resources>,
    /// Per tenant: resources used.
    pub tenant_used: Vec<Resources>,
    /// Per tenant: systems counted against `maxSystems`.
    pub tenant_systems: Vec<u64>,
    /// Per city budget: used of each node share (parallel to `Problem::budget_nodes`).
    pub budget_used: Vec<Vec<Resources>>,
    /// Per city budget: what its departments borrow in total (use beyond their quotas).
    pub city_borrowed: Vec<Resources>,
    /// Per city budget: what its departments may lend in total.
    pub city_pool: Vec<Resources>,
    /// Per tenant: what it may lend.
    pub tenant_lendable: Vec<Resources>,
}

/// Stages of the per-node checks; a failure reports the furthest stage any node reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Residency,
    TakesNothing,
    Security,
    Architecture,
    Window,
    AntiAffinity,
    Machine,
    Passed,
}

struct Unit {
    members: std::ops::Range<usize>,
    leader: u32,
    priority: u32,
    forced: u32,
    split: bool,
}

/// Places every `New`, unblocked system; records a failure for those it cannot place.
pub fn place(p: &Problem<'_>, windows: &WindowTable, failure: &mut [Option<Failure>]) -> Placement {
    let mut state = Placement::empty(p);
    for (i, f) in failure.iter().enumerate() {
        if matches!(p.kind[i], Kind::Completed | Kind::InFlight) && f.is_none() {
            state.assign(p, i as u32, p.current_node[i]);
        }
    }
    state.open_lending(p, budget::waiting(p, failure));
    let (units, members) = build_units(p, failure);
    let mut placer = Placer { p, windows, scratch: Vec::new(), eligible: Vec::new() };
    let mut failed = Vec::new();
    for unit in &units {
        if let Err(f) = placer.try_unit(&mut state, unit, &members[unit.members.clone()]) {
            for &m in &members[unit.members.clone()] {
                failure[m as usize] = Some(f.clone());
                failed.push(m);
            }
        }
    }
    propagate(p, failure, failed, true, |s| state.release(p, s));
    // Only units with a refused member can be retried (a pass never refuses a placed unit).
    let retried: Vec<&Unit> =
        units.iter().filter(|u| members[u.members.clone()].iter().any(|m| failure[*m as usize].is_some())).collect();
    for _pass in 0..8 {
        let mut progress = false;
        for &unit in &retried {
            let group = &members[unit.members.clone()];
            let retry = group.iter().all(|m| failure[*m as usize].as_ref().is_some_and(|f| f.retryable));
            if !retry || !deps_placed(p, &state, group) {
                continue;
            }
            match placer.try_unit(&mut state, unit, group) {
                Ok(()) => {
                    progress = true;
                    for &m in group {
                        failure[m as usize] = None;
                    }
                }
                Err(f) => {
                    for &m in group {
                        failure[m as usize] = Some(f.clone());
                    }
                }
            }
        }
        if !progress {
            break;
        }
    }
    state
}

fn deps_placed(p: &Problem<'_>, state: &Placement, group: &[u32]) -> bool {
    group.iter().all(|&m| {
        p.deps
            .row(m as usize)
            .iter()
            .all(|&d| p.kind[d as usize] != Kind::New || state.node_of[d as usize] != NONE || group.contains(&d))
    })
}

impl Placement {
    /// Nothing placed yet.
    pub(crate) fn empty(p: &Problem<'_>) -> Placement {
        Placement {
            node_of: vec![NONE; p.systems.len()],
            allocated: vec![Resources::default(); p.nodes.len()],
            tenant_used: vec![Resources::default(); p.tenants.len()],
            tenant_systems: vec![0; p.tenants.len()],
            budget_used: p.budget_nodes.iter().map(|b| vec![Resources::default(); b.len()]).collect(),
            city_borrowed: vec![Resources::default(); p.budgets.len()],
            city_pool: vec![Resources::default(); p.budgets.len()],
            tenant_lendable: vec![Resources::default(); p.tenants.len()],
        }
    }

    pub(crate) fn assign(&mut self, p: &Problem<'_>, s: u32, node: u32) {
        let su = s as usize;
        let r = p.facts[su].resources;
        self.node_of[su] = node;
        self.allocated[node as usize] = self.allocated[node as usize].plus(r);
        let t = p.tenant_of[su];
        if t != NONE {
            self.account_tenant(p, t as usize, r, true);
            self.account_city(p, t as usize, node, r, true);
            self.tenant_systems[t as usize] += 1;
        }
    }

    fn release(&mut self, p: &Problem<'_>, s: u32) {
        let su = s as usize;
        let node = self.node_of[su];
        if node == NONE || p.kind[su] != Kind::New {
            return;
        }
        let r = p.facts[su].resources;
        self.node_of[su] = NONE;
        self.allocated[node as usize] = self.allocated[node as usize].minus(r);
        let t = p.tenant_of[su] as usize;
        self.account_tenant(p, t, r, false);
        self.account_city(p, t, node, r, false);
        self.tenant_systems[t] -= 1;
    }
}

/// Groups `New`, unblocked systems into `sameNodeAs` units, sorted by priority.
fn build_units(p: &Problem<'_>, failure: &[Option<Failure>]) -> (Vec<Unit>, Vec<u32>) {
    let n = p.systems.len();
    let mut seen = vec![false; n];
    let mut units = Vec::new();
    let mut members = Vec::with_capacity(n);
    let mut stack = Vec::new();
    for root in 0..n {
        if seen[root] || p.kind[root] != Kind::New || failure[root].is_some() {
            continue;
        }
        let start = members.len();
        let (mut forced, mut split) = (NONE, false);
        seen[root] = true;
        stack.push(root as u32);
        while let Some(v) = stack.pop() {
            let vu = v as usize;
            match p.kind[vu] {
                Kind::New => members.push(v),
                Kind::Completed | Kind::InFlight => {
                    let at = p.current_node[vu];
                    if forced != NONE && forced != at {
                        split = true;
                    }
                    forced = at;
                }
                Kind::NotMigrated => continue,
            }
            for &w in p.same_node.row(vu) {
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    stack.push(w);
                }
            }
        }
        members[start..].sort_unstable();
        let group = &members[start..];
        let priority = group.iter().map(|m| p.facts[*m as usize].priority).max().unwrap_or(0);
        let leader = group.iter().copied().find(|m| p.facts[*m as usize].priority == priority).unwrap_or(group[0]);
        units.push(Unit { members: start..members.len(), leader, priority, forced, split });
    }
    // Priority descending, then leader; leaders are distinct, so the order is total.
    let mut keys: Vec<u64> =
        units.iter().map(|u| u64::from(u32::MAX - u.priority) << 32 | u64::from(u.leader)).collect();
    keys.sort_unstable();
    let mut at = vec![NONE; n];
    for (k, u) in units.iter().enumerate() {
        at[u.leader as usize] = k as u32;
    }
    let mut slots: Vec<Option<Unit>> = units.into_iter().map(Some).collect();
    let units = keys.iter().filter_map(|key| slots[at[*key as u32 as usize] as usize].take()).collect();
    (units, members)
}

struct Placer<'p, 'a> {
    p: &'p Problem<'a>,
    windows: &'p WindowTable,
    scratch: Vec<u32>,
    eligible: Vec<u32>,
}

impl Placer<'_, '_> {
    /// Candidate nodes of one system, in the order they are tried.
    fn candidates(&self, s: usize, out: &mut Vec<u32>) {
        let p = self.p;
        out.clear();
        let t = p.tenants[p.tenant_of[s] as usize];
        let home = p.tenant_home[p.tenant_of[s] as usize];
        out.push(home);
        let spill = p.spill_target[home as usize];
        if t.level != TenantLevel::Provincial && p.facts[s].allow_spillover && spill != NONE && spill != home {
            out.push(spill);
        }
        let allowed = p.allowed.row(s);
        if !allowed.is_empty() || p.allowed_unknown[s] {
            out.retain(|n| allowed.contains(n));
        }
        let preferred = match p.preferred[s] {
            NONE => p.current_node[s],
            x => x,
        };
        if let Some(k) = out.iter().position(|n| *n == preferred) {
            out[..=k].rotate_right(1);
        }
    }

    fn try_unit(&mut self, state: &mut Placement, unit: &Unit, group: &[u32]) -> Result<(), Failure> {
        let p = self.p;
        let leader = unit.leader as usize;
        let mut candidates = std::mem::take(&mut self.eligible);
        self.candidates(leader, &mut candidates);
        for &m in group {
            if m != unit.leader {
                let mut other = std::mem::take(&mut self.scratch);
                self.candidates(m as usize, &mut other);
                candidates.retain(|n| other.contains(n));
                self.scratch = other;
            }
        }
        let result = self.choose(state, unit, group, &candidates);
        self.eligible = candidates;
        let node = result?;
        for &m in group {
            state.assign(p, m, node);
        }
        Ok(())
    }

    fn choose(&self, state: &Placement, unit: &Unit, group: &[u32], candidates: &[u32]) -> Result<u32, Failure> {
        let p = self.p;
        let leader = unit.leader as usize;
        let fail = |reason, message: String, retryable| Err(Failure { reason, message, retryable });
        if unit.split {
            return fail(
                Reason::SameNodeGroupUnplaceable,
                "its sameNodeAs group already runs on different nodes".to_owned(),
                false,
            );
        }
        for &m in group {
            if let Some(&w) = p.anti_affinity.row(m as usize).iter().find(|w| group.contains(w)) {
                return fail(
                    Reason::AntiAffinity,
                    format!(
                        "{} must not share a node with {}, but sameNodeAs puts them together",
                        p.systems[m as usize].system_id, p.systems[w as usize].system_id
                    ),
                    false,
                );
            }
        }
        if unit.forced != NONE && !candidates.contains(&unit.forced) {
            return fail(
                Reason::SameNodeGroupUnplaceable,
                format!("its sameNodeAs group runs on {}, which is not eligible for it", p.node_label(unit.forced)),
                false,
            );
        }
        let eligible = |n: &&u32| unit.forced == NONE || **n == unit.forced;
        if candidates.is_empty() {
            return fail(Reason::NoEligibleNode, self.no_candidate_message(leader, group), false);
        }
        let need = if group.len() == 1 {
            p.facts[leader].resources
        } else {
            group.iter().fold(Resources::default(), |acc, m| acc.plus(p.facts[*m as usize].resources))
        };
        let mut best = Stage::Residency;
        let mut quota_checked = false;
        // The first city-level refusal, and whether any node got past the city level.
        let mut city_refusal = None;
        let mut reached_capacity = false;
        for &node in candidates.iter().filter(eligible) {
            let stage = self.check(state, group, node);
            best = best.max(stage);
            if stage == Stage::Passed {
                if !quota_checked {
                    if let Some(message) = self.quota_failure(state, group) {
                        return fail(Reason::QuotaExceeded, message, true);
                    }
                    quota_checked = true;
                }
                if let Some(message) = self.budget_failure(state, group, node) {
                    city_refusal.get_or_insert(message);
                    continue;
                }
                reached_capacity = true;
                let free = p.nodes[node as usize].allocatable.minus(state.allocated[node as usize]);
                if need.fits_in(free) {
                    return Ok(node);
                }
            }
        }
        // Failure path: say why, for the nodes that got furthest.
        let spill = self.spill_note(leader);
        let at: Vec<u32> =
            candidates.iter().filter(eligible).copied().filter(|n| self.check(state, group, *n) == best).collect();
        if best < Stage::Passed {
            return Err(self.stage_failure(state, best, group, &at, &spill));
        }
        if let (Some(message), false) = (city_refusal, reached_capacity) {
            return fail(Reason::CityBudgetExceeded, format!("{message}{spill}"), true);
        }
        let at: Vec<u32> = at.into_iter().filter(|n| self.budget_failure(state, group, *n).is_none()).collect();
        fail(Reason::InsufficientCapacity, self.capacity_message(state, need, &at, &spill), true)
    }

    fn check(&self, state: &Placement, group: &[u32], node: u32) -> Stage {
        let p = self.p;
        let n = p.nodes[node as usize];
        if group.iter().any(|m| self.residency_refusal(*m as usize, node).is_some()) {
            return Stage::Residency;
        }
        let moves_data = group.iter().any(|m| p.facts[*m as usize].data_volume > 0);
        if n.cordoned
            || n.unreachable
            || n.max_concurrent_migrations == 0
            || (moves_data && n.migration_bandwidth_mbps == 0)
        {
            return Stage::TakesNothing;
        }
        if group.iter().any(|m| p.facts[*m as usize].security_level > n.security_level) {
            return Stage::Security;
        }
        if group.iter().any(|m| !offers(&n.architectures, p.facts[*m as usize].architecture)) {
            return Stage::Architecture;
        }
        if group.iter().any(|m| !self.windows.cutover_fits(node, p.wave_of[*m as usize])) {
            return Stage::Window;
        }
        let clash =
            group.iter().any(|m| p.anti_affinity.row(*m as usize).iter().any(|w| state.node_of[*w as usize] == node));
        if clash {
            return Stage::AntiAffinity;
        }
        let on_one_machine = |m: &u32| {
            let need = p.facts[*m as usize].resources;
            n.machines.is_empty() || n.machines.iter().any(|free| need.fits_on_machine(*free))
        };
        if !group.iter().all(on_one_machine) {
            return Stage::Machine;
        }
        Stage::Passed
    }
}

impl Placer<'_, '_> {
    /// The residency rule that keeps system `s` off `node`, unless a waiver is recorded.
    fn residency_refusal(&self, s: usize, node: u32) -> Option<&crate::model::ResidencyRule> {
        let p = self.p;
        let facts = &p.facts[s];
        if facts.waived {
            return None;
        }
        let t = p.tenant_of[s];
        let region = if t == NONE { "" } else { p.tenant_region[t as usize] };
        p.residency.refusing(facts.classification, region, p.nodes[node as usize])
    }
}

/// Whether a node offering `archs` can run a system needing `need`.
pub fn offers(archs: &[Architecture], need: ArchitectureRequirement) -> bool {
    match need {
        ArchitectureRequirement::Any => true,
        ArchitectureRequirement::X86_64 => archs.contains(&Architecture::X86_64),
        ArchitectureRequirement::Aarch64 => archs.contains(&Architecture::Aarch64),
    }
}
