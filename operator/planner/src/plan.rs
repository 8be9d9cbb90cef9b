//! The constrained planner's pipeline, and the assembly of a [`Plan`] from index-based
//! results (shared with the first-fit baseline).

use std::collections::BTreeMap;

use crate::dependencies::{self, Failure};
use crate::explain::Reason;
use crate::index::{Kind, NONE, Problem};
use crate::model::{PlanInput, Resources};
use crate::output::{
    Algorithm, Assignment, CityAccount, Interval, NodeAccount, NotMigrated, Plan, ResidencyFinding, ResidencyReport,
    ShareAccount, TenantAccount, TenantUsage, Unplaceable, Utilization, WaveSummary,
};
use crate::placement::{self, Placement};
use crate::schedule::{self, Durations, Times};
use crate::windows::WindowTable;

/// Plans `input` under every constraint: placement, then the time schedule.
pub fn plan(input: &PlanInput) -> Plan {
    let p = Problem::new(input);
    let mut failure: Vec<Option<Failure>> = vec![None; p.systems.len()];
    let order = dependencies::check(&p, &mut failure);
    let windows = WindowTable::new(&p);
    let placement = placement::place(&p, &windows, &mut failure);
    let schedule = schedule::schedule(&p, &placement, &windows, &failure, &order);
    let last = schedule.times.iter().flatten().map(|t| t.completion).max().unwrap_or(p.settings.now);
    assemble(&p, Algorithm::Constrained, &failure, &placement, &schedule.times, last, schedule.lower_bound)
}

fn hours(seconds: i64) -> f64 {
    (seconds.max(0) as f64 / 36.0).round() / 100.0
}

fn interval(x: Option<(i64, i64)>) -> Option<Interval> {
    x.map(|(start, end)| Interval { start, end })
}

/// Builds the output from per-system results. `last` and `lower_bound` are Unix seconds.
pub(crate) fn assemble(
    p: &Problem<'_>,
    algorithm: Algorithm,
    failure: &[Option<Failure>],
    placement: &Placement,
    times: &[Option<Times>],
    last: i64,
    lower_bound: i64,
) -> Plan {
    let now = p.settings.now;
    let d = Durations::of(p.settings);
    let mut not_migrated = Vec::new();
    let mut unplaceable = Vec::new();
    let mut assignments = Vec::with_capacity(p.systems.len());
    let mut node_systems = vec![0usize; p.nodes.len()];
    let mut node_migrations = vec![0usize; p.nodes.len()];
    let (mut in_flight, mut completed) = (0, 0);
    for (i, s) in p.systems.iter().enumerate() {
        if p.kind[i] == Kind::NotMigrated {
            not_migrated.push(NotMigrated { system_id: s.system_id.clone(), strategy: s.strategy });
            continue;
        }
        if let Some(f) = &failure[i] {
            unplaceable.push(Unplaceable {
                system_id: s.system_id.clone(),
                tenant: s.tenant.clone(),
                reason: f.reason,
                message: f.message.clone(),
            });
            continue;
        }
        let node = placement.node_of[i];
        if node == NONE {
            continue;
        }
        match p.kind[i] {
            Kind::InFlight => in_flight += 1,
            Kind::Completed => completed += 1,
            _ => {}
        }
        node_systems[node as usize] += 1;
        let t = times[i];
        if t.is_some() {
            node_migrations[node as usize] += 1;
        }
        assignments.push(Assignment {
            system_id: s.system_id.clone(),
            node: p.nodes[node as usize].name.clone(),
            wave: s.wave.clone(),
            phase: s.phase,
            planned_start: t.map(|t| t.start),
            planned_completion: t.map(|t| t.completion),
            provisioning: t.and_then(|t| interval(t.provisioning(&d))),
            replicating: t.and_then(|t| interval(t.replicating(&d))),
            cutting_over: t.and_then(|t| interval(t.cutting_over(&d))),
            verifying: t.and_then(|t| interval(t.verifying(&d))),
        });
    }
    for d in &p.duplicates {
        unplaceable.push(Unplaceable {
            system_id: d.system_id.clone(),
            tenant: d.tenant.clone(),
            reason: Reason::DuplicateSystemId,
            message: format!(
                "systemId {} is declared more than once; this copy (tenant {}, name {}) is ignored",
                d.system_id, d.tenant, d.name
            ),
        });
    }
    // Stable: duplicates sort after the kept system with the same id, by content.
    unplaceable.sort_by(|a, b| (&a.system_id, &a.message).cmp(&(&b.system_id, &b.message)));
    let mut reasons = BTreeMap::new();
    for u in &unplaceable {
        *reasons.entry(u.reason).or_insert(0) += 1;
    }

    Plan {
        algorithm,
        now,
        utc_offset_minutes: p.settings.utc_offset_minutes,
        systems: p.systems.len() + p.duplicates.len(),
        placed: assignments.len(),
        in_flight,
        completed,
        not_migrated,
        unplaceable,
        reasons,
        waves: wave_summaries(p, placement, times),
        makespan_hours: hours(last - now),
        lower_bound_hours: hours(lower_bound - now),
        nodes: node_accounts(p, placement, &node_systems, &node_migrations),
        tenants: tenant_accounts(p, placement),
        cities: city_accounts(p, placement),
        residency: residency_report(p, placement),
        assignments,
        warnings: p.warnings.clone(),
    }
}

fn wave_summaries(p: &Problem<'_>, placement: &Placement, times: &[Option<Times>]) -> Vec<WaveSummary> {
    let mut waves: Vec<WaveSummary> = p
        .waves
        .iter()
        .map(|w| WaveSummary {
            name: w.name.clone(),
            order: w.order,
            not_before: w.not_before,
            systems: 0,
            placed: 0,
            start: None,
            end: None,
        })
        .collect();
    for (i, t) in times.iter().enumerate() {
        let w = p.wave_of[i];
        if w == NONE || p.kind[i] == Kind::NotMigrated {
            continue;
        }
        let summary = &mut waves[w as usize];
        summary.systems += 1;
        if placement.node_of[i] != NONE {
            summary.placed += 1;
        }
        if let Some(t) = t {
            summary.start = Some(summary.start.map_or(t.start, |s| s.min(t.start)));
            summary.end = Some(summary.end.map_or(t.completion, |e| e.max(t.completion)));
        }
    }
    waves.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
    waves
}

fn node_accounts(p: &Problem<'_>, placement: &Placement, systems: &[usize], migrations: &[usize]) -> Vec<NodeAccount> {
    p.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeAccount {
            name: n.name.clone(),
            region_code: n.region_code.clone(),
            display_name: n.display_name.clone(),
            tier: n.tier,
            allocatable: n.allocatable,
            allocated: placement.allocated[i],
            utilization: Utilization::of(&placement.allocated[i], &n.allocatable),
            systems: systems[i],
            migrations: migrations[i],
        })
        .collect()
}

fn tenant_accounts(p: &Problem<'_>, placement: &Placement) -> Vec<TenantAccount> {
    let lent = placement::lent_shares(p, placement);
    p.tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let used: Resources = placement.tenant_used[i];
            let budget = p.budgets.get(p.tenant_budget[i] as usize);
            TenantAccount {
                budget: budget.map(|b| b.name.clone()),
                borrowed: if budget.is_some() {
                    placement::budgeted(used).minus(placement::quota_of(p, i))
                } else {
                    Resources::default()
                },
                lent: lent[i],
                name: t.name.clone(),
                display_name: t.display_name.clone(),
                home_node: t.home_node.clone(),
                quota: t.quota,
                used: TenantUsage {
                    cpu: used.cpu,
                    memory: used.memory,
                    storage: used.storage,
                    systems: placement.tenant_systems[i],
                },
            }
        })
        .collect()
}

fn city_accounts(p: &Problem<'_>, placement: &Placement) -> Vec<CityAccount> {
    p.budgets
        .iter()
        .enumerate()
        .map(|(b, budget)| {
            let mut nodes: Vec<ShareAccount> = p.budget_nodes[b]
                .iter()
                .zip(&placement.budget_used[b])
                .map(|((n, limit), used)| ShareAccount {
                    node: p.nodes[*n as usize].name.clone(),
                    budget: *limit,
                    used: *used,
                    utilization: Utilization::of(used, limit),
                })
                .collect();
            nodes.sort_by(|x, y| x.node.cmp(&y.node));
            CityAccount {
                name: budget.name.clone(),
                region_code: budget.region_code.clone(),
                display_name: budget.display_name.clone(),
                tenants: (0..p.tenants.len())
                    .filter(|t| p.tenant_budget[*t] == b as u32)
                    .map(|t| p.tenants[t].name.clone())
                    .collect(),
                nodes,
                borrowed: placement.city_borrowed[b],
                lendable: placement.city_pool[b],
            }
        })
        .collect()
}

/// Placed systems on a node their residency rules forbid: with a waiver, or stranded (pinned
/// there before a rule changed: placement never puts a system there without one).
fn residency_report(p: &Problem<'_>, placement: &Placement) -> ResidencyReport {
    let mut report = ResidencyReport::default();
    for (i, s) in p.systems.iter().enumerate() {
        let node = placement.node_of[i];
        let t = p.tenant_of[i];
        if node == NONE || t == NONE {
            continue;
        }
        let Some(rule) = p.residency.refusing(s.classification, p.tenant_region[t as usize], p.nodes[node as usize])
        else {
            continue;
        };
        let finding = ResidencyFinding {
            system_id: s.system_id.clone(),
            tenant: s.tenant.clone(),
            node: p.nodes[node as usize].name.clone(),
            phase: s.phase,
            rule: rule.name.clone(),
            granted_by: s.residency_waiver.as_ref().map(|w| w.granted_by.clone()),
        };
        if finding.granted_by.is_some() { report.waived.push(finding) } else { report.stranded.push(finding) }
    }
    report
}
