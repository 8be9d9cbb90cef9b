//! The state gauges' label sets and values, computed from what the CloudNode controller and the
//! migration loop hold. Pure: no registry, no client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use suyun_crds::v1alpha1::{CloudNode, CloudNodeStatus, GovSystem, GovSystemStatus, Phase, Tenant, Tier, WavePhase};
use suyun_planner::ResidencyFinding;
use suyun_planner::explain::Reason;
use suyun_planner::model::{ResidencyRule, Resources};

use crate::accounts::Accounts;
use crate::capacity::Amounts;
use crate::migration::waves::WaveState;

/// One sample: label values in the family's order, and the value.
pub type Sample = (Vec<String>, f64);

/// What one migration-loop iteration knows, for the systems, waves and tenants gauges.
#[derive(Debug)]
pub struct LoopState<'a> {
    /// Every CloudNode (for the region of a system's node).
    pub cloud_nodes: &'a [Arc<CloudNode>],
    /// Every Tenant.
    pub tenants: &'a [Arc<Tenant>],
    /// Every GovSystem.
    pub systems: &'a [Arc<GovSystem>],
    /// The effective status of each system, in the order of `systems`.
    pub statuses: &'a [GovSystemStatus],
    /// The wave of each system, in the order of `systems`.
    pub wave_of: &'a [Option<String>],
    /// The state of every wave, by name.
    pub waves: &'a BTreeMap<String, WaveState>,
    /// The capacity accounts the loop computed.
    pub accounts: &'a Accounts,
    /// The plan of this iteration.
    pub plan: &'a suyun_planner::Plan,
    /// Each node's run-out dates, from the plan.
    pub run_out: &'a [suyun_planner::forecast::NodeRunOut],
}

/// The samples of every family [`LoopState`] feeds.
#[derive(Debug, Default)]
pub struct LoopSamples {
    /// `suyun_systems{node,region_code,phase}`.
    pub systems: Vec<Sample>,
    /// `suyun_wave_systems{wave,phase}`.
    pub wave_systems: Vec<Sample>,
    /// `suyun_systems_blocked{reason}`.
    pub blocked: Vec<Sample>,
    /// `suyun_tenant_quota{tenant,region_code,resource,unit}`.
    pub tenant_quota: Vec<Sample>,
    /// `suyun_tenant_usage{tenant,region_code,resource,unit}`.
    pub tenant_usage: Vec<Sample>,
    /// `suyun_wave_progress_ratio{wave}`.
    pub wave_progress: Vec<Sample>,
    /// `suyun_wave_eta_timestamp_seconds{wave}`.
    pub wave_eta: Vec<Sample>,
    /// `suyun_wave_active{wave}`.
    pub wave_active: Vec<Sample>,
    /// `suyun_wave_failure_budget_ratio{wave}`.
    pub wave_failure_budget: Vec<Sample>,
    /// `suyun_wave_last_transition_timestamp_seconds{wave}`.
    pub wave_last_transition: Vec<Sample>,
    /// `suyun_city_budget{city,region_code,node,resource,unit}`.
    pub city_budget: Vec<Sample>,
    /// `suyun_city_budget_used{city,region_code,node,resource,unit}`.
    pub city_budget_used: Vec<Sample>,
    /// `suyun_city_budget_utilization_ratio{city,region_code,node,resource}`.
    pub city_budget_utilization: Vec<Sample>,
    /// `suyun_city_lending{city,region_code,resource,unit,kind}`.
    pub city_lending: Vec<Sample>,
    /// `suyun_tenant_borrowed{tenant,region_code,resource,unit}`.
    pub tenant_borrowed: Vec<Sample>,
    /// `suyun_tenant_lent{tenant,region_code,resource,unit}`.
    pub tenant_lent: Vec<Sample>,
    /// `suyun_residency_stranded_systems{rule}`.
    pub residency_stranded: Vec<Sample>,
    /// `suyun_residency_waived_systems{rule}`.
    pub residency_waived: Vec<Sample>,
    /// `suyun_node_run_out_timestamp_seconds{node,region_code,resource}`.
    pub node_run_out: Vec<Sample>,
    /// Names of every wave.
    pub waves: Vec<String>,
}

/// The samples of one node's families.
#[derive(Debug)]
pub struct NodeSamples {
    /// `suyun_node_capacity`.
    pub capacity: Vec<Sample>,
    /// `suyun_node_allocatable`.
    pub allocatable: Vec<Sample>,
    /// `suyun_node_allocated`.
    pub allocated: Vec<Sample>,
    /// `suyun_node_utilization_ratio`.
    pub utilization: Vec<Sample>,
    /// `suyun_node_ready`.
    pub ready: Sample,
}

/// The `tier` label: the CRD's tier in lower case.
pub fn tier(t: Tier) -> &'static str {
    match t {
        Tier::Provincial => "provincial",
        Tier::City => "city",
    }
}

/// (resource, unit, value in base units) of the accounted resources; GPUs are not exported.
fn resources(a: Amounts) -> [(&'static str, &'static str, f64); 3] {
    use suyun_crds::quantity::Milli;
    [
        ("cpu", "core", Milli(a.cpu).units()),
        ("memory", "byte", Milli(a.memory).units()),
        ("storage", "byte", Milli(a.storage).units()),
    ]
}

/// A planner amount (cpu millicores, memory and storage bytes) as [`Amounts`], for [`resources`].
fn planned(r: &Resources) -> Amounts {
    let milli = |bytes: u64| i128::from(bytes) * 1000;
    Amounts { cpu: i128::from(r.cpu), memory: milli(r.memory), storage: milli(r.storage), gpu: milli(r.gpu) }
}

/// allocated / allocatable, 0 when nothing is allocatable.
pub fn ratio(allocated: i128, allocatable: i128) -> f64 {
    if allocatable <= 0 { 0.0 } else { allocated as f64 / allocatable as f64 }
}

/// used / budget of a city's node share: 0 for a zero budget nothing uses, 1 (all of it) for
/// a zero budget something uses, as the planner's utilisation says; above 1 when running
/// systems exceed a lowered budget.
pub fn budget_ratio(used: u64, budget: u64) -> f64 {
    match (used, budget) {
        (0, 0) => 0.0,
        (_, 0) => 1.0,
        _ => ratio(i128::from(used), i128::from(budget)),
    }
}

/// Residency findings counted by rule; the built-in rule is always listed (0 when none), so
/// that an alert on it sees 0 rather than nothing.
pub fn per_rule(findings: &[ResidencyFinding]) -> Vec<Sample> {
    let mut by_rule: BTreeMap<&str, u32> = BTreeMap::from([(ResidencyRule::BUILTIN, 0)]);
    for f in findings {
        *by_rule.entry(f.rule.as_str()).or_default() += 1;
    }
    by_rule.into_iter().map(|(rule, n)| (vec![rule.to_owned()], f64::from(n))).collect()
}

fn strings<const N: usize>(values: [&str; N]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// The samples of a node's families, from the status its controller built.
pub fn node(node: &CloudNode, status: &CloudNodeStatus) -> NodeSamples {
    let name = node.name_any();
    let (region, tier) = (node.spec.region_code.as_str(), tier(node.spec.tier));
    let amounts = |a: &Option<suyun_crds::v1alpha1::ResourceAmounts>| {
        a.as_ref().and_then(|a| Amounts::from_amounts(a).ok()).unwrap_or_default()
    };
    let (capacity, allocatable, allocated) =
        (amounts(&status.capacity), amounts(&status.allocatable), amounts(&status.allocated));
    let series = |a: Amounts| -> Vec<Sample> {
        resources(a).into_iter().map(|(r, unit, v)| (strings([&name, region, tier, r, unit]), v)).collect()
    };
    let ready =
        status.conditions.iter().any(|c| c.type_ == suyun_crds::v1alpha1::condition_types::READY && c.status == "True");
    NodeSamples {
        capacity: series(capacity),
        allocatable: series(allocatable),
        allocated: series(allocated),
        utilization: [
            ("cpu", allocated.cpu, allocatable.cpu),
            ("memory", allocated.memory, allocatable.memory),
            ("storage", allocated.storage, allocatable.storage),
        ]
        .into_iter()
        .map(|(r, used, total)| (strings([&name, region, tier, r]), ratio(used, total)))
        .collect(),
        ready: (strings([&name, region, tier]), if ready { 1.0 } else { 0.0 }),
    }
}

/// Blocked reasons the operator itself gives: a spec the planner could not read, a system the
/// planner did not consider.
const OPERATOR_REASONS: [&str; 2] = ["InvalidSpec", "NotPlanned"];
/// The `reason` of a Blocked reason outside the known codes.
const OTHER: &str = "Other";

/// The bounded `reason` label of a Blocked condition's reason.
pub fn blocked_reason(reason: &str) -> &'static str {
    Reason::ALL.iter().map(|r| r.as_str()).chain(OPERATOR_REASONS).find(|known| *known == reason).unwrap_or(OTHER)
}

/// Every value of the blocked `reason` label.
pub fn blocked_reasons() -> impl Iterator<Item = &'static str> {
    Reason::ALL.iter().map(|r| r.as_str()).chain(OPERATOR_REASONS).chain([OTHER])
}

/// `suyun_planner_unplaceable_systems{reason}`: every reason, 0 when none.
pub fn unplaceable(reasons: &BTreeMap<Reason, usize>) -> Vec<Sample> {
    Reason::ALL.iter().map(|r| (vec![r.as_str().to_owned()], reasons.get(r).copied().unwrap_or(0) as f64)).collect()
}

/// The reason of a True Blocked condition.
fn blocked(status: &GovSystemStatus) -> Option<&str> {
    status.conditions.iter().find(|c| c.type_ == "Blocked" && c.status == "True").map(|c| c.reason.as_str())
}

/// Every family the migration loop feeds. Phases are listed for every node and wave (zero
/// included), so that an alert on a phase sees 0 rather than nothing.
pub fn of_loop(input: &LoopState<'_>) -> LoopSamples {
    let mut out = LoopSamples::default();
    let region: HashMap<String, &str> =
        input.cloud_nodes.iter().map(|n| (n.name_any(), n.spec.region_code.as_str())).collect();

    // Systems by node and phase; every CloudNode and the "no node" row get every phase.
    let mut by_node: BTreeMap<String, BTreeMap<Phase, u32>> =
        region.keys().map(|n| (n.clone(), BTreeMap::new())).collect();
    by_node.insert(String::new(), BTreeMap::new());
    let mut blocked_by: BTreeMap<&'static str, u32> = BTreeMap::new();
    for status in input.statuses {
        let node = status.node.clone().unwrap_or_default();
        *by_node.entry(node).or_default().entry(status.phase.unwrap_or_default()).or_default() += 1;
        if let Some(reason) = blocked(status) {
            *blocked_by.entry(blocked_reason(reason)).or_default() += 1;
        }
    }
    for (node, phases) in &by_node {
        let code = region.get(node).copied().unwrap_or_default();
        for phase in Phase::ALL {
            let n = phases.get(&phase).copied().unwrap_or(0);
            out.systems.push((strings([node, code, phase.as_str()]), f64::from(n)));
        }
    }
    out.blocked =
        blocked_reasons().map(|r| (vec![r.to_owned()], f64::from(blocked_by.get(r).copied().unwrap_or(0)))).collect();

    // Tenants: quota from the spec, usage from the accounts.
    for t in input.tenants {
        let name = t.name_any();
        let q = &t.spec.quota;
        let milli =
            |v: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| suyun_crds::quantity::milli(v).unwrap_or(0);
        let quota = Amounts { cpu: milli(&q.cpu), memory: milli(&q.memory), storage: milli(&q.storage), gpu: 0 };
        let used = input.accounts.tenants.get(&name).map(|a| a.used).unwrap_or_default();
        let code = t.spec.region_code.as_str();
        for (amounts, family) in [(quota, &mut out.tenant_quota), (used, &mut out.tenant_usage)] {
            family.extend(resources(amounts).into_iter().map(|(r, unit, v)| (strings([&name, code, r, unit]), v)));
        }
    }

    // City budgets, from the plan: each node share and the lending between departments.
    for city in &input.plan.cities {
        let (name, code) = (city.name.as_str(), city.region_code.as_str());
        for share in &city.nodes {
            let node = share.node.as_str();
            for (amounts, family) in [(&share.budget, &mut out.city_budget), (&share.used, &mut out.city_budget_used)] {
                family.extend(
                    resources(planned(amounts))
                        .into_iter()
                        .map(|(r, unit, v)| (strings([name, code, node, r, unit]), v)),
                );
            }
            let (used, budget) = (&share.used, &share.budget);
            out.city_budget_utilization.extend(
                [
                    ("cpu", used.cpu, budget.cpu),
                    ("memory", used.memory, budget.memory),
                    ("storage", used.storage, budget.storage),
                ]
                .into_iter()
                .map(|(r, used, budget)| (strings([name, code, node, r]), budget_ratio(used, budget))),
            );
        }
        // `lendable`: still offered and not borrowed, as the CityBudget status and the REST API
        // show it.
        let offered = city.lendable.minus(city.borrowed);
        for (kind, amounts) in [("borrowed", &city.borrowed), ("lendable", &offered)] {
            out.city_lending.extend(
                resources(planned(amounts)).into_iter().map(|(r, unit, v)| (strings([name, code, r, unit, kind]), v)),
            );
        }
    }
    // Departments' lending: only tenants in a budget; region_code as in suyun_tenant_quota (the
    // Tenant's), else the city's.
    let tenant_region: HashMap<String, &str> =
        input.tenants.iter().map(|t| (t.name_any(), t.spec.region_code.as_str())).collect();
    let city_region: HashMap<&str, &str> =
        input.plan.cities.iter().map(|c| (c.name.as_str(), c.region_code.as_str())).collect();
    for t in &input.plan.tenants {
        let Some(budget) = &t.budget else { continue };
        let code = tenant_region.get(&t.name).or_else(|| city_region.get(budget.as_str())).copied().unwrap_or_default();
        for (amounts, family) in [(&t.borrowed, &mut out.tenant_borrowed), (&t.lent, &mut out.tenant_lent)] {
            family.extend(
                resources(planned(amounts)).into_iter().map(|(r, unit, v)| (strings([&t.name, code, r, unit]), v)),
            );
        }
    }
    out.node_run_out = input
        .run_out
        .iter()
        .flat_map(|n| {
            n.resources.iter().filter_map(move |r| {
                r.run_out.map(|t| (strings([&n.node, &n.region_code, r.resource.as_str()]), t as f64))
            })
        })
        .collect();
    out.residency_stranded = per_rule(&input.plan.residency.stranded);
    out.residency_waived = per_rule(&input.plan.residency.waived);

    // Waves.
    let eta: HashMap<&str, i64> = input.plan.waves.iter().filter_map(|w| w.end.map(|e| (w.name.as_str(), e))).collect();
    let mut last_transition: HashMap<&str, i64> = HashMap::new();
    for (wave, status) in input.wave_of.iter().zip(input.statuses) {
        if let (Some(w), Some(t)) = (wave, &status.phase_started_at) {
            let at = last_transition.entry(w.as_str()).or_insert(i64::MIN);
            *at = (*at).max(t.0.as_second());
        }
    }
    for (name, w) in input.waves {
        let label = vec![name.clone()];
        for phase in Phase::ALL {
            let n = w.by_phase.get(phase.as_str()).copied().unwrap_or(0);
            out.wave_systems.push((strings([name, phase.as_str()]), f64::from(n)));
        }
        let done = [Phase::Completed, Phase::NotMigrated]
            .iter()
            .map(|p| w.by_phase.get(p.as_str()).copied().unwrap_or(0))
            .sum::<u32>();
        out.wave_progress.push((label.clone(), ratio(i128::from(done), i128::from(w.systems))));
        if let Some(t) = eta.get(name.as_str()) {
            out.wave_eta.push((label.clone(), *t as f64));
        }
        out.wave_active.push((label.clone(), if w.phase == WavePhase::Running { 1.0 } else { 0.0 }));
        out.wave_failure_budget.push((label.clone(), f64::from(w.wave.spec.failure_budget) / 100.0));
        if let Some(t) = last_transition.get(name.as_str()) {
            out.wave_last_transition.push((label, *t as f64));
        }
        out.waves.push(name.clone());
    }
    out
}
