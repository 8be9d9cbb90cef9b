//! Capacity accounts kept by the migration loop and shown in CloudNode and Tenant status:
//! what each node and each tenant has allocated, by whom and in which phase. Pure.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use suyun_crds::v1alpha1::{GovSystem, GovSystemStatus, Phase, Tenant};

use crate::capacity::Amounts;

/// One node's account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAccount {
    /// Resources of the systems holding capacity on the node.
    pub allocated: Amounts,
    /// Systems holding capacity on the node.
    pub systems: u32,
    /// Systems on the node by phase.
    pub by_phase: BTreeMap<String, u32>,
    /// Migrations onto the node in progress.
    pub active_migrations: u32,
    /// Tenants whose home node this is.
    pub tenants: u32,
}

/// One tenant's account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantAccount {
    /// Resources of the tenant's systems holding capacity.
    pub used: Amounts,
    /// Number of those systems.
    pub systems: u32,
    /// Systems blocked on the tenant's quota.
    pub quota_blocked: u32,
    /// The nodes where its systems hold capacity or the plan places them: where its Namespace
    /// and the rest of its children must exist (a member-backed node's cluster included).
    pub nodes: BTreeSet<String>,
    /// Quota lent to and borrowed from its city's other departments, from the plan (cpu,
    /// memory, storage), when its city has a budget.
    pub lending: Option<Lending>,
}

/// A department's lending, from the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lending {
    /// Lent to the city's other departments.
    pub lent: suyun_planner::model::Resources,
    /// Borrowed from them.
    pub borrowed: suyun_planner::model::Resources,
}

/// Records each department's lending from the plan.
pub fn add_lending(accounts: &mut Accounts, plan: &suyun_planner::Plan) {
    for t in plan.tenants.iter().filter(|t| t.budget.is_some()) {
        if let Some(account) = accounts.tenants.get_mut(&t.name) {
            account.lending = Some(Lending { lent: t.lent, borrowed: t.borrowed });
        }
    }
}

/// Every account, by node and by tenant name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    /// By CloudNode name.
    pub nodes: BTreeMap<String, NodeAccount>,
    /// By Tenant name.
    pub tenants: BTreeMap<String, TenantAccount>,
}

/// The resources a system needs (zero for a field that does not parse; admission prevents
/// that).
pub fn requirement(system: &GovSystem) -> Amounts {
    Amounts::from_resources(&system.spec.resources).unwrap_or_default()
}

/// Computes the accounts from every system's effective status.
pub fn compute<'a>(
    systems: impl IntoIterator<Item = (&'a GovSystem, &'a GovSystemStatus)>,
    tenants: &[std::sync::Arc<Tenant>],
) -> Accounts {
    let mut accounts = Accounts::default();
    for t in tenants {
        accounts.nodes.entry(t.spec.home_node.clone()).or_default().tenants += 1;
        accounts.tenants.entry(t.name_any()).or_default();
    }
    for (system, status) in systems {
        let phase = status.phase.unwrap_or_default();
        let tenant = accounts.tenants.entry(system.namespace().unwrap_or_default()).or_default();
        if phase == Phase::Blocked && status.reason.as_deref() == Some("QuotaExceeded") {
            tenant.quota_blocked += 1;
        }
        let Some(node) = status.node.as_ref().filter(|_| phase.holds_capacity()) else { continue };
        let need = requirement(system);
        tenant.used = tenant.used.plus(need);
        tenant.systems += 1;
        tenant.nodes.insert(node.clone());
        let account = accounts.nodes.entry(node.clone()).or_default();
        account.allocated = account.allocated.plus(need);
        account.systems += 1;
        *account.by_phase.entry(phase.as_str().to_owned()).or_default() += 1;
        if phase.is_active() {
            account.active_migrations += 1;
        }
    }
    accounts
}

/// Adds the nodes the plan places systems on (`(systemId, node)`) to their tenants' nodes, so
/// that a tenant is provisioned in a member cluster before its first migration there starts.
/// `tenant_of` gives a systemId's tenant.
pub fn add_planned<'a>(
    accounts: &mut Accounts,
    placed: impl IntoIterator<Item = (&'a str, &'a str)>,
    tenant_of: impl Fn(&str) -> Option<&'a str>,
) {
    for (system, node) in placed {
        if let Some(account) = tenant_of(system).and_then(|t| accounts.tenants.get_mut(t)) {
            account.nodes.insert(node.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(ns: &str, cpu: &str) -> GovSystem {
        let spec = serde_json::from_value(serde_json::json!({
            "systemId": "JS-320100-0001", "displayName": "x", "classification": "Internal", "securityLevel": 2,
            "resources": {"cpu": cpu, "memory": "1Gi", "storage": "10Gi"}
        }))
        .unwrap();
        let mut s = GovSystem::new("s", spec);
        s.metadata.namespace = Some(ns.into());
        s
    }

    fn status(phase: Phase, node: Option<&str>) -> GovSystemStatus {
        GovSystemStatus { phase: Some(phase), node: node.map(Into::into), ..Default::default() }
    }

    #[test]
    fn only_phases_that_hold_capacity_count() {
        let systems = [system("a", "2"), system("a", "3"), system("b", "5"), system("b", "7")];
        let statuses = [
            status(Phase::Replicating, Some("nanjing")),
            status(Phase::Completed, Some("nanjing")),
            status(Phase::RolledBack, None),
            status(Phase::Scheduled, Some("suzhou")),
        ];
        let accounts = compute(systems.iter().zip(statuses.iter()), &[]);
        let nj = &accounts.nodes["nanjing"];
        assert_eq!(nj.allocated.cpu, 5_000);
        assert_eq!((nj.systems, nj.active_migrations), (2, 1));
        assert_eq!(nj.by_phase["Completed"], 1);
        assert_eq!(accounts.nodes["suzhou"].allocated.cpu, 7_000);
        assert_eq!(accounts.tenants["a"].used.cpu, 5_000);
        assert_eq!(accounts.tenants["b"].systems, 1, "the rolled-back system gave its capacity back");
        assert_eq!(accounts.tenants["a"].nodes, BTreeSet::from(["nanjing".to_owned()]));
        let mut accounts = accounts;
        add_planned(&mut accounts, [("JS-1", "wuxi"), ("JS-9", "xuzhou")], |id| (id == "JS-1").then_some("b"));
        let nodes: Vec<&str> = accounts.tenants["b"].nodes.iter().map(String::as_str).collect();
        assert_eq!(nodes, ["suzhou", "wuxi"], "planned placements count; a system of no known tenant does not");
    }
}
