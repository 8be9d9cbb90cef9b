//! Builds the status read-model the REST API serves (`suyun_store::readmodel`) from what the
//! migration loop knows after an iteration, and the journal entries of the phase transitions it
//! wrote. Pure; `operator/src/store` writes them to etcd.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, GovSystemStatus, Tenant};
use suyun_planner::Plan;
use suyun_store::readmodel::{
    ApprovalState, ConditionSummary, NodeRecord, QuotaAmounts, Record, ResourceAmounts, SystemRecord, TenantRecord,
    Utilization, WaveRecord,
};

use crate::accounts::Accounts;
use suyun_crds::quantity::Milli;

use crate::capacity::Amounts;
use crate::migration::snapshot::Snapshot;
use crate::migration::waves::WaveState;

fn amounts(a: Amounts) -> ResourceAmounts {
    ResourceAmounts {
        cpu_millis: Milli(a.cpu).millis(),
        memory_bytes: Milli(a.memory).units_down(),
        storage_bytes: Milli(a.storage).units_down(),
        gpu: Milli(a.gpu).units_down(),
    }
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<String> {
    t.as_ref().map(|t| t.0.to_string())
}

fn summaries(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Vec<ConditionSummary> {
    conditions
        .iter()
        .map(|c| ConditionSummary {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect()
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn node(n: &CloudNode, accounts: &Accounts) -> NodeRecord {
    let status = n.status.clone().unwrap_or_default();
    let allocatable = status.allocatable.as_ref().and_then(|a| Amounts::from_amounts(a).ok()).unwrap_or_default();
    let account = accounts.nodes.get(&n.name_any()).cloned().unwrap_or_default();
    let (allocatable, allocated) = (amounts(allocatable), amounts(account.allocated));
    NodeRecord {
        name: n.name_any(),
        display_name: n.spec.display_name.clone(),
        tier: n.spec.tier.as_str().to_owned(),
        region_code: n.spec.region_code.clone(),
        allocatable,
        allocated,
        utilization: Utilization::of(allocated, allocatable),
        systems_by_phase: account.by_phase.iter().map(|(k, v)| (k.clone(), u64::from(*v))).collect(),
        active_migrations: account.active_migrations,
        ready: ready(&status.conditions),
        conditions: summaries(&status.conditions),
    }
}

fn tenant(t: &Tenant, accounts: &Accounts) -> TenantRecord {
    let q = &t.spec.quota;
    let milli =
        |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| suyun_crds::quantity::milli(q).unwrap_or(0);
    let quota = amounts(Amounts { cpu: milli(&q.cpu), memory: milli(&q.memory), storage: milli(&q.storage), gpu: 0 });
    let account = accounts.tenants.get(&t.name_any()).cloned().unwrap_or_default();
    let used = amounts(account.used);
    TenantRecord {
        name: t.name_any(),
        display_name: t.spec.display_name.clone(),
        level: t.spec.level.as_str().to_owned(),
        region_code: t.spec.region_code.clone(),
        home_node: t.spec.home_node.clone(),
        quota: QuotaAmounts {
            cpu_millis: quota.cpu_millis,
            memory_bytes: quota.memory_bytes,
            storage_bytes: quota.storage_bytes,
            systems: u64::from(q.max_systems),
        },
        used: QuotaAmounts {
            cpu_millis: used.cpu_millis,
            memory_bytes: used.memory_bytes,
            storage_bytes: used.storage_bytes,
            systems: u64::from(account.systems),
        },
        ready: ready(&t.status.clone().unwrap_or_default().conditions),
    }
}

/// The region code of each tenant, by name (a system's Namespace).
pub fn regions(tenants: &[std::sync::Arc<Tenant>]) -> HashMap<String, String> {
    tenants.iter().map(|t| (t.name_any(), t.spec.region_code.clone())).collect()
}

/// The record of one system with effective status `st`, in `region`, selected by `wave`.
pub fn system(
    s: &GovSystem,
    st: &GovSystemStatus,
    region: String,
    wave: Option<String>,
    approval_required: bool,
) -> SystemRecord {
    SystemRecord {
        system_id: s.spec.system_id.clone(),
        name: s.name_any(),
        tenant: s.namespace().unwrap_or_default(),
        display_name: s.spec.display_name.clone(),
        region_code: region,
        security_level: s.spec.security_level,
        phase: st.phase.unwrap_or_default().as_str().to_owned(),
        node: st.node.clone(),
        wave,
        planned_start: time(&st.planned_start),
        started_at: time(&st.started_at),
        completed_at: time(&st.completed_at),
        attempts: st.attempts,
        reason: st.reason.clone(),
        message: st.message.clone(),
        approval: ApprovalState {
            required: approval_required,
            approved_by: st.approved_by.clone(),
            approved_at: time(&st.approved_at),
        },
    }
}

/// Whether the cutover of a system in `wave` needs an approval.
pub fn approval_required(wave: Option<&String>, waves: &BTreeMap<String, WaveState>) -> bool {
    wave.and_then(|w| waves.get(w)).is_some_and(|w| w.wave.spec.approval.as_ref().is_some_and(|a| a.required))
}

/// Every record of the read-model. `statuses[i]` is the effective status of the snapshot's
/// system `i`; only systems that own their `systemId` (see `identity`) are published: a
/// duplicate never shadows the owner's record.
pub fn records(
    snapshot: &Snapshot,
    statuses: &[GovSystemStatus],
    accounts: &Accounts,
    waves: &BTreeMap<String, WaveState>,
    plan: &Plan,
) -> Vec<Record> {
    let objects = &snapshot.objects;
    let mut out =
        Vec::with_capacity(objects.systems.len() + objects.cloud_nodes.len() + objects.tenants.len() + waves.len());
    out.extend(objects.cloud_nodes.iter().map(|n| Record::Node(node(n, accounts))));
    out.extend(objects.tenants.iter().map(|t| Record::Tenant(tenant(t, accounts))));
    let mut counts: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>> = BTreeMap::new();
    for (i, status) in statuses.iter().enumerate().filter(|(i, _)| snapshot.owned[*i]) {
        let record = snapshot.system_record(i, status, waves);
        if let Some(w) = &record.wave {
            *counts
                .entry(w.clone())
                .or_default()
                .entry(record.region_code.clone())
                .or_default()
                .entry(record.phase.clone())
                .or_default() += 1;
        }
        out.push(Record::System(record));
    }
    let eta: BTreeMap<&str, i64> = plan.waves.iter().filter_map(|w| w.end.map(|e| (w.name.as_str(), e))).collect();
    for (name, w) in waves {
        out.push(Record::Wave(WaveRecord {
            name: name.clone(),
            order: i32::try_from(w.wave.spec.order).unwrap_or(i32::MAX),
            phase: w.phase.as_str().to_owned(),
            executor: w.wave.spec.executor.as_str().to_owned(),
            counts_by_region: counts.remove(name).unwrap_or_default(),
            eta: eta
                .get(name.as_str())
                .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(*t).ok())
                .map(|t| t.to_string()),
        }));
    }
    out
}
