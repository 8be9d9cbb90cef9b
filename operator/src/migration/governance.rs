//! Capacity governance in status: each CityBudget's used, lent and borrowed amounts (from the
//! plan, which enforces them), and each ResidencyPolicy's stranded systems. The desired
//! statuses are pure functions of the objects and the plan; the loop writes the ones that
//! changed (`writes::patch_statuses`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use suyun_crds::conditions::{DesiredCondition, merge_conditions};
use suyun_crds::v1alpha1::{
    CityBudget, CityBudgetStatus, CloudNode, DepartmentBudgetStatus, GovSystem, NodeBudgetStatus, ResidencyPolicy,
    ResidencyPolicyStatus, ResourceAmounts, StrandedSystem, Tenant,
};
use suyun_planner::Plan;
use suyun_planner::model::Resources;

use super::writes::StatusChange;

/// Stranded systems listed in a policy's status; `strandedCount` counts them all.
pub const STRANDED_LISTED: usize = 100;

/// cpu, memory and storage of planner amounts (millicores, bytes) as quantities.
pub fn amounts(r: Resources) -> ResourceAmounts {
    ResourceAmounts {
        cpu: Some(suyun_crds::quantity::format_cpu(i128::from(r.cpu))),
        memory: Some(suyun_crds::quantity::format_bytes(i128::from(r.memory) * 1000)),
        storage: Some(suyun_crds::quantity::format_bytes(i128::from(r.storage) * 1000)),
        gpu: None,
    }
}

/// Whether `tenant` is one of the departments of a budget for `region`: the planner's rule
/// ([`suyun_planner::model::CityBudget::covers`]).
pub fn is_department(tenant: &Tenant, region: &str) -> bool {
    let level = crate::plan_input::tenant_level(tenant.spec.level);
    suyun_planner::model::CityBudget::covers(region, level, &tenant.spec.region_code)
}

/// The status a CityBudget should show, from the plan's account of it (absent when another
/// budget for the same region is in force instead, or its quantities do not parse).
pub fn budget_status(
    budget: &CityBudget,
    budgets: &[Arc<CityBudget>],
    nodes: &[Arc<CloudNode>],
    tenants: &[Arc<Tenant>],
    plan: &Plan,
    pressure_percent: f64,
    now: &Time,
) -> CityBudgetStatus {
    let name = budget.name_any();
    let previous = budget.status.clone().unwrap_or_default();
    let account = plan.cities.iter().find(|c| c.name == name);
    let departments: Vec<&Tenant> =
        tenants.iter().map(AsRef::as_ref).filter(|t| is_department(t, &budget.spec.region_code)).collect();
    let ready = match account {
        None => {
            let winner = budgets
                .iter()
                .filter(|b| b.spec.region_code == budget.spec.region_code && b.name_any() != name)
                .map(|b| b.name_any())
                .min();
            match winner {
                Some(other) => DesiredCondition::new(
                    "Ready",
                    false,
                    "DuplicateBudget",
                    format!(
                        "CityBudget {other} already budgets region {}; this one is not in force",
                        budget.spec.region_code
                    ),
                ),
                None => {
                    DesiredCondition::new("Ready", false, "InvalidQuantity", "a quantity of the spec cannot be read")
                }
            }
        }
        Some(_) => {
            let known: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
            let mut missing: Vec<String> = budget
                .spec
                .nodes
                .iter()
                .filter(|s| !known.contains(&s.node))
                .map(|s| format!("node {} does not exist", s.node))
                .collect();
            let names: BTreeSet<String> = departments.iter().map(|t| t.name_any()).collect();
            missing.extend(
                budget
                    .spec
                    .lending
                    .iter()
                    .flat_map(|l| &l.departments)
                    .filter(|d| !names.contains(&d.tenant))
                    .map(|d| format!("lending names {}, which is not a department of the city", d.tenant)),
            );
            if missing.is_empty() {
                DesiredCondition::new("Ready", true, "InForce", "the planner enforces this budget")
            } else {
                DesiredCondition::new(
                    "Ready",
                    false,
                    "ReferenceNotFound",
                    format!("in force, but ignored in part: {}", missing.join("; ")),
                )
            }
        }
    };
    let mut shares = Vec::new();
    let mut pressed = Vec::new();
    for share in account.map(|a| a.nodes.as_slice()).unwrap_or_default() {
        let utilization: BTreeMap<String, f64> = [
            ("cpu", share.utilization.cpu),
            ("memory", share.utilization.memory),
            ("storage", share.utilization.storage),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (resource, percent) in &utilization {
            if *percent > pressure_percent {
                pressed.push(format!("{resource} on {} at {percent:.1} %", share.node));
            }
        }
        shares.push(NodeBudgetStatus {
            node: share.node.clone(),
            budget: amounts(share.budget),
            used: amounts(share.used),
            utilization,
        });
    }
    let pressure = if pressed.is_empty() {
        DesiredCondition::new(
            "BudgetPressure",
            false,
            "WithinThreshold",
            format!("every node's budget is used to at most {pressure_percent:.0} %"),
        )
    } else {
        DesiredCondition::new(
            "BudgetPressure",
            true,
            "AboveThreshold",
            format!("above {pressure_percent:.0} %: {}", pressed.join(", ")),
        )
    };
    let tenant_accounts: BTreeMap<&str, &suyun_planner::TenantAccount> =
        plan.tenants.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut lent = Resources::default();
    let mut members = Vec::new();
    for t in &departments {
        let Some(a) = tenant_accounts.get(t.name_any().as_str()) else { continue };
        lent = lent.plus(a.lent);
        let used = Resources { cpu: a.used.cpu, memory: a.used.memory, storage: a.used.storage, gpu: 0 };
        members.push(DepartmentBudgetStatus {
            tenant: a.name.clone(),
            used: amounts(used),
            lent: amounts(a.lent),
            borrowed: amounts(a.borrowed),
        });
    }
    members.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let generation = budget.metadata.generation;
    CityBudgetStatus {
        observed_generation: generation,
        departments: Some(departments.len() as u32),
        nodes: shares,
        lent: account.map(|_| amounts(lent)),
        lendable: account.map(|a| amounts(a.lendable.minus(a.borrowed))),
        tenants: members,
        conditions: merge_conditions(&previous.conditions, vec![ready, pressure], generation, now),
    }
}

/// The status a ResidencyPolicy should show: the systems its rules strand.
pub fn policy_status(
    policy: &ResidencyPolicy,
    systems: &[Arc<GovSystem>],
    plan: &Plan,
    now: &Time,
) -> ResidencyPolicyStatus {
    let prefix = format!("{}/", policy.name_any());
    let previous = policy.status.clone().unwrap_or_default();
    let namespace: BTreeMap<&str, &str> = systems
        .iter()
        .map(|s| (s.spec.system_id.as_str(), s.metadata.namespace.as_deref().unwrap_or_default()))
        .collect();
    let stranded: Vec<StrandedSystem> = plan
        .residency
        .stranded
        .iter()
        .filter_map(|f| {
            f.rule.strip_prefix(&prefix).map(|rule| StrandedSystem {
                system_id: f.system_id.clone(),
                namespace: namespace.get(f.system_id.as_str()).copied().unwrap_or_default().to_owned(),
                node: f.node.clone(),
                rule: rule.to_owned(),
            })
        })
        .collect();
    let count = stranded.len();
    let strands = if count == 0 {
        DesiredCondition::new("StrandsSystems", false, "NoneStranded", "no placed system is on a node its rules forbid")
    } else {
        let first: Vec<&str> = stranded.iter().take(5).map(|s| s.system_id.as_str()).collect();
        DesiredCondition::new(
            "StrandsSystems",
            true,
            "SystemsStranded",
            format!(
                "{count} system(s) already on a node a rule forbids (never moved by the planner; migrate them or record waivers): {}{}",
                first.join(", "),
                if count > first.len() { ", …" } else { "" }
            ),
        )
    };
    let ready = DesiredCondition::new("Ready", true, "InForce", "the planner enforces these rules");
    let generation = policy.metadata.generation;
    ResidencyPolicyStatus {
        observed_generation: generation,
        stranded: stranded.into_iter().take(STRANDED_LISTED).collect(),
        stranded_count: Some(count as u32),
        conditions: merge_conditions(&previous.conditions, vec![ready, strands], generation, now),
    }
}

/// The budgets and policies whose status changed, for `writes::patch_statuses`.
pub fn changes(
    objects: &crate::plan_input::Objects,
    plan: &Plan,
    pressure_percent: f64,
    now: &Time,
) -> (Vec<StatusChange<CityBudgetStatus>>, Vec<StatusChange<ResidencyPolicyStatus>>) {
    let budgets = objects
        .city_budgets
        .iter()
        .filter_map(|b| {
            let previous = b.status.clone().unwrap_or_default();
            let desired = budget_status(
                b,
                &objects.city_budgets,
                &objects.cloud_nodes,
                &objects.tenants,
                plan,
                pressure_percent,
                now,
            );
            (desired != previous).then(|| (b.name_any(), previous, desired, b.metadata.resource_version.clone()))
        })
        .collect();
    let policies = objects
        .residency_policies
        .iter()
        .filter_map(|p| {
            let previous = p.status.clone().unwrap_or_default();
            let desired = policy_status(p, &objects.systems, plan, now);
            (desired != previous).then(|| (p.name_any(), previous, desired, p.metadata.resource_version.clone()))
        })
        .collect();
    (budgets, policies)
}
