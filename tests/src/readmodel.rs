//! Read-model data for tests and benchmarks: a small two-city sample, and the synthetic
//! Jiangsu set (`suyun_planner::synthetic::jiangsu`) turned into records.

use std::collections::{BTreeMap, HashMap};

use suyun_planner::model::{PlanInput, Resources};
use suyun_store::readmodel::{
    ApprovalState, NodeRecord, QuotaAmounts, Record, ResourceAmounts, SystemRecord, TenantRecord, Utilization,
    WaveRecord,
};

/// Phases the synthetic records cycle through, so that filters have something to find.
pub const PHASES: &[&str] = &["Scheduled", "Provisioning", "Replicating", "AwaitingCutover", "Completed", "Pending"];

fn amounts(r: Resources) -> ResourceAmounts {
    ResourceAmounts { cpu_millis: r.cpu, memory_bytes: r.memory, storage_bytes: r.storage, gpu: r.gpu }
}

/// Records for every node, tenant, system and wave of a planner input. Systems are placed on
/// their tenant's home node and given a phase from [`PHASES`] by position; systems of the first
/// wave require a cutover approval.
pub fn records_from_plan(input: &PlanInput) -> Vec<Record> {
    let tenants: HashMap<&str, &suyun_planner::model::Tenant> =
        input.tenants.iter().map(|t| (t.name.as_str(), t)).collect();
    let first_wave = input.waves.iter().min_by_key(|w| w.order).map(|w| w.name.clone());
    let mut allocated: HashMap<&str, Resources> = HashMap::new();
    let mut by_phase: HashMap<&str, BTreeMap<String, u64>> = HashMap::new();
    let mut waves: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>> = BTreeMap::new();
    let mut records = Vec::new();
    for (i, system) in input.systems.iter().enumerate() {
        let tenant = tenants.get(system.tenant.as_str());
        let region = tenant.map(|t| t.region_code.clone()).unwrap_or_default();
        let node = tenant.map(|t| t.home_node.as_str()).unwrap_or_default();
        let phase = PHASES[i % PHASES.len()];
        let total = allocated.entry(node).or_default();
        *total = total.plus(system.resources);
        *by_phase.entry(node).or_default().entry(phase.to_owned()).or_default() += 1;
        if let Some(wave) = &system.wave {
            *waves
                .entry(wave.clone())
                .or_default()
                .entry(region.clone())
                .or_default()
                .entry(phase.to_owned())
                .or_default() += 1;
        }
        records.push(Record::System(SystemRecord {
            system_id: system.system_id.clone(),
            name: system.name.clone(),
            tenant: system.tenant.clone(),
            display_name: system.display_name.clone(),
            region_code: region,
            security_level: system.security_level,
            phase: phase.to_owned(),
            node: Some(node.to_owned()),
            wave: system.wave.clone(),
            planned_start: Some("2025-03-03T08:00:00+08:00".to_owned()),
            attempts: 0,
            approval: ApprovalState {
                required: system.wave.is_some() && system.wave == first_wave,
                ..Default::default()
            },
            ..Default::default()
        }));
    }
    for node in &input.nodes {
        let used = allocated.get(node.name.as_str()).copied().unwrap_or_default();
        records.push(Record::Node(NodeRecord {
            name: node.name.clone(),
            display_name: node.display_name.clone(),
            tier: format!("{:?}", node.tier),
            region_code: node.region_code.clone(),
            allocatable: amounts(node.allocatable),
            allocated: amounts(used),
            utilization: Utilization::of(amounts(used), amounts(node.allocatable)),
            systems_by_phase: by_phase.remove(node.name.as_str()).unwrap_or_default(),
            active_migrations: 0,
            ready: true,
            conditions: vec![suyun_store::readmodel::ConditionSummary {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Accounted".into(),
                message: String::new(),
            }],
            run_out: None,
        }));
    }
    for tenant in &input.tenants {
        records.push(Record::Tenant(TenantRecord {
            name: tenant.name.clone(),
            display_name: tenant.display_name.clone(),
            level: format!("{:?}", tenant.level),
            region_code: tenant.region_code.clone(),
            home_node: tenant.home_node.clone(),
            quota: QuotaAmounts {
                cpu_millis: tenant.quota.cpu,
                memory_bytes: tenant.quota.memory,
                storage_bytes: tenant.quota.storage,
                systems: tenant.quota.max_systems,
            },
            used: QuotaAmounts::default(),
            ready: true,
        }));
    }
    for wave in &input.waves {
        records.push(Record::Wave(WaveRecord {
            name: wave.name.clone(),
            order: wave.order,
            phase: "Running".into(),
            executor: "Simulated".into(),
            counts_by_region: waves.remove(&wave.name).unwrap_or_default(),
            eta: Some("2025-06-30T18:00:00+08:00".into()),
        }));
    }
    records
}

/// A small province: the provincial node and two cities (南京 320100, 苏州 320500 with its
/// county 昆山 320583), one tenant each (two in 苏州), three systems per tenant, one wave.
pub fn sample() -> Vec<Record> {
    let mut records = Vec::new();
    let nodes = [
        ("jiangsu", "江苏省", "Provincial", "320000"),
        ("nanjing", "南京市", "City", "320100"),
        ("suzhou", "苏州市", "City", "320500"),
    ];
    for (name, display, tier, region) in nodes {
        records.push(Record::Node(NodeRecord {
            name: name.into(),
            display_name: display.into(),
            tier: tier.into(),
            region_code: region.into(),
            allocatable: ResourceAmounts {
                cpu_millis: 64_000,
                memory_bytes: 256 << 30,
                storage_bytes: 8 << 40,
                gpu: 0,
            },
            ready: true,
            ..Default::default()
        }));
    }
    let tenants = [
        ("js-edu", "江苏省教育厅", "Provincial", "320000", "jiangsu", "JS-320000"),
        ("nj-gov", "南京市政务服务管理办公室", "City", "320100", "nanjing", "JS-320100"),
        ("sz-gov", "苏州市大数据管理局", "City", "320500", "suzhou", "JS-320500"),
        ("ks-gov", "昆山市政务办", "County", "320583", "suzhou", "JS-320583"),
    ];
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (tenant, display, level, region, node, id_prefix) in tenants {
        records.push(Record::Tenant(TenantRecord {
            name: tenant.into(),
            display_name: display.into(),
            level: level.into(),
            region_code: region.into(),
            home_node: node.into(),
            ready: true,
            ..Default::default()
        }));
        for (i, phase) in ["Scheduled", "AwaitingCutover", "Completed"].iter().enumerate() {
            *counts.entry(region.into()).or_default().entry((*phase).into()).or_default() += 1;
            records.push(Record::System(SystemRecord {
                system_id: format!("{id_prefix}-{:04}", i + 1),
                name: format!("{}-{:04}", tenant, i + 1),
                tenant: tenant.into(),
                display_name: format!("{display}业务系统{}", i + 1),
                region_code: region.into(),
                security_level: 2,
                phase: (*phase).into(),
                node: Some(node.into()),
                wave: Some("wave-1".into()),
                approval: ApprovalState { required: true, ..Default::default() },
                ..Default::default()
            }));
        }
    }
    records.push(Record::Wave(WaveRecord {
        name: "wave-1".into(),
        order: 1,
        phase: "Running".into(),
        executor: "Simulated".into(),
        counts_by_region: counts,
        eta: Some("2025-04-01T18:00:00+08:00".into()),
    }));
    records
}
