//! The three levels of budget a placement must fit: the department's quota (with what it may
//! borrow within its city), the city's share of the node, and the node's capacity (the
//! province's). Refusals name the level and by how much the unit is short.
//!
//! Lending follows Kueue's cohorts, shaped for a province: a city's departments form the
//! cohort; each may lend up to `lendPercent` of its quota and borrow up to `borrowPercent` of
//! its own. What a department can lend is fixed when placement starts from what it needs
//! itself — its placed systems plus every system of its own still waiting for placement — so
//! an owner's system that is not yet migrating always comes before a loan: the planner simply
//! stops re-planning the borrower's unstarted system onto lent quota. A system already
//! migrating or Completed is pinned and keeps what it holds; its loan is repaid only as the
//! borrower's needs shrink.

use super::{Placement, Placer};
use crate::explain::{self, ResourceKind};
use crate::index::{Kind, NONE, Problem};
use crate::model::Resources;

/// The amounts a budget limits (cpu, memory, storage).
pub(crate) const BUDGETED: [ResourceKind; 3] = [ResourceKind::Cpu, ResourceKind::Memory, ResourceKind::Storage];

/// Without GPUs: quotas and budgets do not limit them.
pub(crate) fn budgeted(r: Resources) -> Resources {
    Resources { gpu: 0, ..r }
}

/// A tenant's quota as [`Resources`] (no GPU).
pub(crate) fn quota_of(p: &Problem<'_>, t: usize) -> Resources {
    let q = p.tenants[t].quota;
    Resources { cpu: q.cpu, memory: q.memory, storage: q.storage, gpu: 0 }
}

/// Component-wise minimum.
pub(crate) fn min(a: Resources, b: Resources) -> Resources {
    Resources { cpu: a.cpu.min(b.cpu), memory: a.memory.min(b.memory), storage: a.storage.min(b.storage), gpu: 0 }
}

/// "short by 4 cpu, 8 Gi memory": what `need` lacks of `left`, for every budgeted resource.
fn short(need: Resources, left: Resources) -> String {
    let gap = budgeted(need).minus(left);
    let parts: Vec<String> = BUDGETED.iter().filter(|k| k.of(&gap) > 0).map(|k| explain::amount(*k, &gap)).collect();
    format!("short by {}", parts.join(", "))
}

fn amounts(r: Resources) -> String {
    let parts: Vec<String> = BUDGETED.iter().filter(|k| k.of(&r) > 0).map(|k| explain::amount(*k, &r)).collect();
    if parts.is_empty() { "nothing".to_owned() } else { parts.join(", ") }
}

impl Placement {
    /// Fixes what each department may lend, once the pinned systems are accounted: up to its
    /// lending limit, out of the quota its own placed and waiting systems leave unused.
    pub(super) fn open_lending(&mut self, p: &Problem<'_>, waiting: impl Iterator<Item = u32>) {
        let mut demand: Vec<Resources> = self.tenant_used.iter().map(|r| budgeted(*r)).collect();
        for s in waiting {
            let t = p.tenant_of[s as usize];
            if t != NONE {
                demand[t as usize] = demand[t as usize].plus(budgeted(p.facts[s as usize].resources));
            }
        }
        for (t, need) in demand.iter().enumerate() {
            let b = p.tenant_budget[t];
            if b == NONE {
                continue;
            }
            let unused = quota_of(p, t).minus(*need);
            let lendable = min(p.tenant_lend[t], unused);
            self.tenant_lendable[t] = lendable;
            self.city_pool[b as usize] = self.city_pool[b as usize].plus(lendable);
        }
    }

    /// Moves tenant `t`'s usage by `delta` (added or taken away), keeping its city's borrowed
    /// total in step.
    pub(super) fn account_tenant(&mut self, p: &Problem<'_>, t: usize, delta: Resources, add: bool) {
        let b = p.tenant_budget[t];
        if b == NONE {
            self.tenant_used[t] = if add { self.tenant_used[t].plus(delta) } else { self.tenant_used[t].minus(delta) };
            return;
        }
        let q = quota_of(p, t);
        let before = budgeted(self.tenant_used[t]).minus(q);
        self.tenant_used[t] = if add { self.tenant_used[t].plus(delta) } else { self.tenant_used[t].minus(delta) };
        let after = budgeted(self.tenant_used[t]).minus(q);
        let city = &mut self.city_borrowed[b as usize];
        *city = city.minus(before).plus(after);
    }

    /// Moves the city-level usage of tenant `t` on `node` by `delta`.
    pub(super) fn account_city(&mut self, p: &Problem<'_>, t: usize, node: u32, delta: Resources, add: bool) {
        let b = p.tenant_budget[t];
        if b == NONE {
            return;
        }
        if let Some(k) = p.budget_nodes[b as usize].iter().position(|(n, _)| *n == node) {
            let used = &mut self.budget_used[b as usize][k];
            *used = if add { used.plus(budgeted(delta)) } else { used.minus(budgeted(delta)) };
        }
    }
}

impl Placer<'_, '_> {
    /// Department level: whether each tenant of the group can take its members, within its
    /// quota or by borrowing within its city. The refusal names the tenant and the shortfall.
    pub(super) fn quota_failure(&self, state: &Placement, group: &[u32]) -> Option<String> {
        let p = self.p;
        // What this group would borrow from each city, so that two tenants of one city in one
        // group cannot both take the last of its pool.
        let mut drawn: Vec<(u32, Resources)> = Vec::new();
        for (k, &first) in group.iter().enumerate() {
            let t = p.tenant_of[first as usize];
            if group[..k].iter().any(|m| p.tenant_of[*m as usize] == t) {
                continue;
            }
            let mut need = Resources::default();
            let mut count = 0u64;
            for &m in &group[k..] {
                if p.tenant_of[m as usize] == t {
                    need = need.plus(p.facts[m as usize].resources);
                    count += 1;
                }
            }
            let tu = t as usize;
            let tenant = p.tenants[tu];
            // Formatted only on a refusal: this runs for every unit placed.
            let who = || format!("tenant {} ({})", tenant.name, tenant.display_name);
            let systems = state.tenant_systems[tu];
            if systems + count > tenant.quota.max_systems {
                return Some(format!(
                    "department quota: {} already has {systems} of its {} systems (systems are never lent)",
                    who(),
                    tenant.quota.max_systems
                ));
            }
            let quota = quota_of(p, tu);
            let used = budgeted(state.tenant_used[tu]);
            let after = used.plus(budgeted(need));
            if after.fits_in(quota) {
                continue;
            }
            let left = quota.minus(used);
            let first_short = BUDGETED.into_iter().find(|k| k.of(&after) > k.of(&quota)).unwrap_or(ResourceKind::Cpu);
            let head = format!(
                "department quota: needs {}; {} has {} left of its {} quota",
                explain::amount(first_short, &need),
                who(),
                explain::amount(first_short, &left),
                explain::amount(first_short, &quota)
            );
            let b = p.tenant_budget[tu];
            let limit = p.tenant_borrow[tu];
            if b == NONE || limit == Resources::default() {
                return Some(format!("{head} ({}; it may not borrow)", short(need, left)));
            }
            let over = after.minus(quota);
            if !over.fits_in(limit) {
                return Some(format!(
                    "{head} and may borrow at most {} ({})",
                    amounts(limit),
                    short(need, left.plus(limit))
                ));
            }
            let borrowed_before = used.minus(quota);
            let more = over.minus(borrowed_before);
            let city = p.budgets[b as usize];
            let already = drawn.iter().find(|(c, _)| *c == b).map_or(Resources::default(), |(_, r)| *r);
            let pool_left = state.city_pool[b as usize].minus(state.city_borrowed[b as usize]).minus(already);
            if !more.fits_in(pool_left) {
                let lacking: Vec<String> = BUDGETED
                    .iter()
                    .filter(|k| k.of(&more) > k.of(&pool_left))
                    .map(|k| explain::amount(*k, &pool_left))
                    .collect();
                return Some(format!(
                    "{head}; {}'s departments can lend it {} more now ({})",
                    city.display_name,
                    lacking.join(", "),
                    short(need, left.plus(pool_left))
                ));
            }
            match drawn.iter_mut().find(|(c, _)| *c == b) {
                Some((_, r)) => *r = r.plus(more),
                None => drawn.push((b, more)),
            }
        }
        None
    }

    /// City level: whether the group fits its cities' shares of `node`.
    pub(super) fn budget_failure(&self, state: &Placement, group: &[u32], node: u32) -> Option<String> {
        let p = self.p;
        for (k, &first) in group.iter().enumerate() {
            let b = p.tenant_budget[p.tenant_of[first as usize] as usize];
            if b == NONE || group[..k].iter().any(|m| p.tenant_budget[p.tenant_of[*m as usize] as usize] == b) {
                continue;
            }
            let need = group[k..]
                .iter()
                .filter(|m| p.tenant_budget[p.tenant_of[**m as usize] as usize] == b)
                .fold(Resources::default(), |acc, m| acc.plus(budgeted(p.facts[*m as usize].resources)));
            let city = p.budgets[b as usize];
            let Some(slot) = p.budget_nodes[b as usize].iter().position(|(n, _)| *n == node) else {
                return Some(format!(
                    "city budget: {} (CityBudget {}) has no share of {}",
                    city.display_name,
                    city.name,
                    p.node_label(node)
                ));
            };
            let limit = p.budget_nodes[b as usize][slot].1;
            let left = limit.minus(state.budget_used[b as usize][slot]);
            if !need.fits_in(left) {
                let kind = BUDGETED.into_iter().find(|k| k.of(&need) > k.of(&left)).unwrap_or(ResourceKind::Cpu);
                return Some(format!(
                    "city budget: needs {} on {}; {} has {} left of its {} budget there ({})",
                    explain::amount(kind, &need),
                    p.node_label(node),
                    city.display_name,
                    explain::amount(kind, &left),
                    explain::amount(kind, &limit),
                    short(need, left)
                ));
            }
        }
        None
    }
}

/// The systems placement will try, for [`Placement::open_lending`].
pub(super) fn waiting<'x>(
    p: &'x Problem<'_>,
    failure: &'x [Option<crate::dependencies::Failure>],
) -> impl Iterator<Item = u32> + 'x {
    (0..p.systems.len() as u32).filter(move |s| p.kind[*s as usize] == Kind::New && failure[*s as usize].is_none())
}

/// Each tenant's share of what its city borrows: the borrowed total (at most what could be
/// lent) split among the lenders in proportion to what each could lend, rounded down, the
/// remainder going to the first lenders by name.
pub(crate) fn lent_shares(p: &Problem<'_>, state: &Placement) -> Vec<Resources> {
    let mut lent = vec![Resources::default(); p.tenants.len()];
    for b in 0..p.budgets.len() {
        let lenders: Vec<usize> = (0..p.tenants.len()).filter(|t| p.tenant_budget[*t] == b as u32).collect();
        for kind in BUDGETED {
            let pool = kind.of(&state.city_pool[b]);
            let total = kind.of(&state.city_borrowed[b]).min(pool);
            if total == 0 {
                continue;
            }
            let mut given = 0;
            let mut shares: Vec<u64> = lenders
                .iter()
                .map(|t| {
                    let share =
                        (u128::from(total) * u128::from(kind.of(&state.tenant_lendable[*t])) / u128::from(pool)) as u64;
                    given += share;
                    share
                })
                .collect();
            for (k, t) in lenders.iter().enumerate() {
                let room = kind.of(&state.tenant_lendable[*t]) - shares[k];
                let extra = room.min(total - given);
                shares[k] += extra;
                given += extra;
            }
            for (k, t) in lenders.iter().enumerate() {
                set(&mut lent[*t], kind, shares[k]);
            }
        }
    }
    lent
}

fn set(r: &mut Resources, kind: ResourceKind, value: u64) {
    match kind {
        ResourceKind::Cpu => r.cpu = value,
        ResourceKind::Memory => r.memory = value,
        ResourceKind::Storage => r.storage = value,
        ResourceKind::Gpu => r.gpu = value,
    }
}
