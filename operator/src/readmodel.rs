//! Builds the status read-model the REST API serves (`suyun_store::readmodel`) from what the
//! migration loop knows after an iteration, and the journal entries of the phase transitions it
//! wrote. Pure; `operator/src/store` writes them to etcd.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use suyun_crds::v1alpha1::{CloudNode, GovSystem, GovSystemStatus, Tenant};
use suyun_planner::Plan;
use suyun_planner::model::Resources;
use suyun_store::readmodel::{
    ApprovalState, BudgetAmounts, BudgetDepartment, BudgetNode, BudgetRecord, BudgetUtilization, ConditionSummary,
    NodeRecord, QuotaAmounts, Record, ResourceAmounts, RunOut, SystemRecord, TenantRecord, Utilization, WaveRecord,
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

/// The operator's run-out forecast of every node ([`suyun_planner::forecast::run_out_of`]) and
/// the settings it was made with.
#[derive(Debug, Clone, Copy)]
pub struct RunOuts<'a> {
    /// Per node.
    pub nodes: &'a [suyun_planner::forecast::NodeRunOut],
    /// `--forecast-growth-percent`.
    pub growth_percent: f64,
    /// `--forecast-horizon-days`.
    pub horizon_days: u32,
}

impl RunOuts<'_> {
    /// The record of one node's run-out dates; `None` when the plan does not know the node.
    fn of(&self, node: &str) -> Option<RunOut> {
        use suyun_planner::forecast::ResourceName;
        let n = self.nodes.iter().find(|n| n.node == node)?;
        let at = |name: ResourceName| {
            n.resources
                .iter()
                .find(|r| r.resource == name)
                .and_then(|r| r.run_out)
                .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t).ok())
                .map(|t| t.to_string())
        };
        Some(RunOut {
            growth_percent_per_year: self.growth_percent,
            horizon_days: self.horizon_days,
            cpu: at(ResourceName::Cpu),
            memory: at(ResourceName::Memory),
            storage: at(ResourceName::Storage),
        })
    }
}

fn node(n: &CloudNode, accounts: &Accounts, run_outs: &RunOuts<'_>) -> NodeRecord {
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
        run_out: run_outs.of(&n.name_any()),
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

/// cpu, memory and storage of planner amounts (millicores, bytes): a budget does not cover GPUs.
fn budget_amounts(r: Resources) -> BudgetAmounts {
    BudgetAmounts { cpu_millis: r.cpu, memory_bytes: r.memory, storage_bytes: r.storage }
}

/// The record of each city budget the plan enforces (`plan.cities`), with its departments'
/// accounts (`plan.tenants`) and the display names of its nodes; one per city region code
/// (the planner enforces one budget per city; should two share a code, the first is kept).
/// `lendable` is what is still offered: the plan's lendable minus what is borrowed, never
/// below zero, as the CityBudget's status shows it.
pub fn budgets(plan: &Plan, nodes: &[Arc<CloudNode>]) -> Vec<BudgetRecord> {
    let node_names: HashMap<String, &str> =
        nodes.iter().map(|n| (n.name_any(), n.spec.display_name.as_str())).collect();
    let tenants: HashMap<&str, &suyun_planner::TenantAccount> =
        plan.tenants.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut out: BTreeMap<&str, BudgetRecord> = BTreeMap::new();
    for city in &plan.cities {
        if out.contains_key(city.region_code.as_str()) {
            continue;
        }
        let mut shares: Vec<BudgetNode> = city
            .nodes
            .iter()
            .map(|share| BudgetNode {
                node: share.node.clone(),
                node_display_name: node_names.get(&share.node).map(|name| (*name).to_owned()),
                budget: budget_amounts(share.budget),
                used: budget_amounts(share.used),
                utilization: BudgetUtilization {
                    cpu: share.utilization.cpu,
                    memory: share.utilization.memory,
                    storage: share.utilization.storage,
                },
            })
            .collect();
        shares.sort_by(|a, b| a.node.cmp(&b.node));
        let mut departments: Vec<BudgetDepartment> = city
            .tenants
            .iter()
            .filter_map(|name| tenants.get(name.as_str()))
            .map(|t| BudgetDepartment {
                tenant: t.name.clone(),
                display_name: t.display_name.clone(),
                used: BudgetAmounts {
                    cpu_millis: t.used.cpu,
                    memory_bytes: t.used.memory,
                    storage_bytes: t.used.storage,
                },
                lent: budget_amounts(t.lent),
                borrowed: budget_amounts(t.borrowed),
            })
            .collect();
        departments.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        out.insert(
            &city.region_code,
            BudgetRecord {
                name: city.name.clone(),
                region_code: city.region_code.clone(),
                display_name: city.display_name.clone(),
                nodes: shares,
                borrowed: budget_amounts(city.borrowed),
                lendable: budget_amounts(city.lendable.minus(city.borrowed)),
                departments,
            },
        );
    }
    out.into_values().collect()
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
        conditions: summaries(&st.conditions),
    }
}

/// Whether the cutover of a system in `wave` needs an approval.
pub fn approval_required(wave: Option<&String>, waves: &BTreeMap<String, WaveState>) -> bool {
    wave.and_then(|w| waves.get(w)).is_some_and(|w| w.wave.spec.approval.as_ref().is_some_and(|a| a.required))
}

/// What a published system record was built from. A record whose inputs are the same
/// (the same cached object, an equal status, region, wave and approval rule) is neither built
/// nor serialized again: at Jiangsu scale an iteration changes tens of 7,900 records.
#[derive(Debug, Clone)]
pub struct SystemInputs {
    object: Arc<GovSystem>,
    status: GovSystemStatus,
    region: String,
    wave: Option<String>,
    approval_required: bool,
}

impl SystemInputs {
    fn same(
        &self,
        object: &Arc<GovSystem>,
        status: &GovSystemStatus,
        region: &str,
        wave: Option<&String>,
        approval_required: bool,
    ) -> bool {
        // An object the cache did not replace is the same allocation: no deep comparison.
        Arc::ptr_eq(&self.object, object)
            && self.approval_required == approval_required
            && self.region == region
            && self.wave.as_ref() == wave
            && self.status == *status
    }
}

/// The inputs of every system record in the store, by `systemId` (kept by the store sink,
/// updated only once a publish committed).
pub type PublishedSystems = HashMap<String, SystemInputs>;

/// The read-model's records that differ from what `published` says was built: every node,
/// tenant, wave and city budget record (a few hundred), and the records of the systems whose
/// inputs changed, with those inputs. `statuses[i]` is the effective status of the snapshot's system
/// `i`; only systems that own their `systemId` (see `identity`) are published: a duplicate
/// never shadows the owner's record. With an empty `published` these are all the records.
pub fn records(
    snapshot: &Snapshot,
    statuses: &[GovSystemStatus],
    accounts: &Accounts,
    waves: &BTreeMap<String, WaveState>,
    plan: &Plan,
    run_outs: &RunOuts<'_>,
    published: &PublishedSystems,
) -> (Vec<Record>, Vec<(String, SystemInputs)>) {
    let objects = &snapshot.objects;
    let mut out =
        Vec::with_capacity(objects.cloud_nodes.len() + objects.tenants.len() + waves.len() + plan.cities.len());
    out.extend(objects.cloud_nodes.iter().map(|n| Record::Node(node(n, accounts, run_outs))));
    out.extend(objects.tenants.iter().map(|t| Record::Tenant(tenant(t, accounts))));
    out.extend(budgets(plan, &objects.cloud_nodes).into_iter().map(Record::Budget));
    let mut built = Vec::new();
    let mut counts: BTreeMap<&str, BTreeMap<&str, BTreeMap<&'static str, u64>>> = BTreeMap::new();
    for (i, status) in statuses.iter().enumerate().filter(|(i, _)| snapshot.owned[*i]) {
        let (object, region, wave) = (&objects.systems[i], snapshot.region(i), snapshot.wave_of[i].as_ref());
        if let Some(w) = wave {
            let phase = status.phase.unwrap_or_default().as_str();
            *counts.entry(w).or_default().entry(region).or_default().entry(phase).or_default() += 1;
        }
        let approval = approval_required(wave, waves);
        let system_id = &object.spec.system_id;
        if published.get(system_id).is_some_and(|p| p.same(object, status, region, wave, approval)) {
            continue;
        }
        out.push(Record::System(system(object, status, region.to_owned(), wave.cloned(), approval)));
        built.push((
            system_id.clone(),
            SystemInputs {
                object: object.clone(),
                status: status.clone(),
                region: region.to_owned(),
                wave: wave.cloned(),
                approval_required: approval,
            },
        ));
    }
    let eta: BTreeMap<&str, i64> = plan.waves.iter().filter_map(|w| w.end.map(|e| (w.name.as_str(), e))).collect();
    for (name, w) in waves {
        let counts_by_region = counts
            .remove(name.as_str())
            .unwrap_or_default()
            .into_iter()
            .map(|(region, phases)| {
                (region.to_owned(), phases.into_iter().map(|(phase, n)| (phase.to_owned(), n)).collect())
            })
            .collect();
        out.push(Record::Wave(WaveRecord {
            name: name.clone(),
            order: i32::try_from(w.wave.spec.order).unwrap_or(i32::MAX),
            phase: w.phase.as_str().to_owned(),
            executor: w.wave.spec.executor.as_str().to_owned(),
            counts_by_region,
            eta: eta
                .get(name.as_str())
                .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(*t).ok())
                .map(|t| t.to_string()),
        }));
    }
    (out, built)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use suyun_crds::v1alpha1::Phase;

    use super::*;
    use crate::migration::fixtures::{NOW, node, system, tenant, wave};
    use crate::migration::snapshot::{Overlay, Snapshot};
    use crate::plan_input::Objects;

    fn snapshot(systems: Vec<Arc<GovSystem>>) -> Snapshot {
        let objects = Objects {
            cloud_nodes: vec![node(2)],
            tenants: vec![tenant()],
            systems,
            waves: vec![wave(2)],
            ..Default::default()
        };
        Snapshot::take(objects, Vec::new(), &mut Overlay::default(), &BTreeMap::new(), NOW)
    }

    fn budget() -> Arc<suyun_crds::v1alpha1::CityBudget> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "suyun.io/v1alpha1", "kind": "CityBudget", "metadata": {"name": "nanjing-budget"},
                "spec": {"regionCode": "320100", "displayName": "南京市",
                         "nodes": [{"node": "nanjing", "cpu": "400", "memory": "4Ti", "storage": "40Ti"},
                                   {"node": "gone", "cpu": "1", "memory": "1Gi", "storage": "1Gi"}],
                         "lending": {"lendPercent": 20, "borrowPercent": 10}}
            }))
            .unwrap(),
        )
    }

    fn with_phase(s: &Arc<GovSystem>, phase: Phase) -> Arc<GovSystem> {
        let mut s = GovSystem::clone(s);
        s.status = Some(GovSystemStatus { phase: Some(phase), node: Some("nanjing".into()), ..Default::default() });
        Arc::new(s)
    }

    fn build(snapshot: &Snapshot, published: &PublishedSystems) -> (Vec<Record>, Vec<(String, SystemInputs)>) {
        let waves = snapshot.wave_states(&snapshot.statuses);
        let accounts = crate::accounts::compute(
            snapshot.objects.systems.iter().map(AsRef::as_ref).zip(&snapshot.statuses),
            &snapshot.objects.tenants,
        );
        let input = snapshot.plan_input().0;
        let plan = suyun_planner::plan(&input);
        let run_out = suyun_planner::forecast::run_out_of(&input, &plan, 10.0, 730);
        let run_outs = RunOuts { nodes: &run_out, growth_percent: 10.0, horizon_days: 730 };
        records(snapshot, &snapshot.statuses, &accounts, &waves, &plan, &run_outs, published)
    }

    /// 南京's forecast: cpu runs out at 1,830,000,000 (2027-12-28T13:20:00Z), the other
    /// resources not within the horizon. Shared with the metrics tests.
    pub(crate) fn nanjing_run_out() -> Vec<suyun_planner::forecast::NodeRunOut> {
        use suyun_planner::forecast::{NodeRunOut, ResourceName, ResourceRunOut};
        let resource = |resource, run_out| ResourceRunOut {
            resource,
            allocatable: 100,
            usage_now: 10,
            usage_at_completion: 90,
            run_out,
            caused_by: None,
        };
        vec![NodeRunOut {
            node: "nanjing".into(),
            region_code: "320100".into(),
            display_name: "南京市".into(),
            allocatable: Default::default(),
            migration_completes: 0,
            resources: vec![resource(ResourceName::Cpu, Some(1_830_000_000)), resource(ResourceName::Memory, None)],
        }]
    }

    #[test]
    fn a_node_record_carries_its_forecast_run_out() {
        let forecast = nanjing_run_out();
        let run_outs = RunOuts { nodes: &forecast, growth_percent: 12.5, horizon_days: 365 };
        let got = run_outs.of("nanjing").expect("the node is forecast");
        assert_eq!(got.growth_percent_per_year, 12.5);
        assert_eq!(got.horizon_days, 365);
        assert_eq!(got.cpu.as_deref(), Some("2027-12-28T13:20:00Z"));
        assert_eq!((got.memory, got.storage), (None, None), "not within the horizon, or not forecast");
        assert_eq!(run_outs.of("suzhou"), None);
    }

    fn systems(records: &[Record]) -> Vec<&SystemRecord> {
        records.iter().filter_map(|r| if let Record::System(s) = r { Some(s) } else { None }).collect()
    }

    fn wave_counts(records: &[Record]) -> BTreeMap<String, BTreeMap<String, u64>> {
        records
            .iter()
            .find_map(|r| if let Record::Wave(w) = r { Some(w.counts_by_region.clone()) } else { None })
            .unwrap()
    }

    #[test]
    fn only_systems_whose_inputs_changed_are_built_again() {
        let objects: Vec<_> = (1..=4).map(|n| with_phase(&system(n, 100, &[]), Phase::Scheduled)).collect();
        let first = snapshot(objects.clone());
        let (all, built) = build(&first, &PublishedSystems::new());
        assert_eq!(systems(&all).len(), 4, "nothing published yet: every record");
        assert_eq!(all.len(), 4 + 3, "and the node, the tenant and the wave");
        let published: PublishedSystems = built.into_iter().collect();

        // Nothing changed: the same cached objects and statuses build no system record.
        let (again, built) = build(&snapshot(objects.clone()), &published);
        assert!(systems(&again).is_empty() && built.is_empty(), "{again:?}");
        assert_eq!(again.len(), 3, "the node, tenant and wave records are always built");

        // One status changed: that system's record, equal to a full build's, and the wave's
        // counts over every system, not only the rebuilt one.
        let mut changed = objects.clone();
        changed[2] = with_phase(&objects[2], Phase::Provisioning);
        let next = snapshot(changed);
        let (some, built) = build(&next, &published);
        let (full, _) = build(&next, &PublishedSystems::new());
        assert_eq!(built.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["JS-320100-0003"]);
        let rebuilt = systems(&some);
        assert_eq!(rebuilt.len(), 1);
        assert_eq!(rebuilt[0].phase, "Provisioning");
        assert!(systems(&full).contains(&rebuilt[0]));
        assert_eq!(wave_counts(&some), wave_counts(&full));
        assert_eq!(wave_counts(&some)["320100"]["Scheduled"], 3);
    }

    #[test]
    fn a_city_budget_is_published_with_the_plans_figures() {
        let systems: Vec<_> = (1..=3).map(|n| with_phase(&system(n, 100, &[]), Phase::Scheduled)).collect();
        let objects = Objects {
            cloud_nodes: vec![node(2)],
            tenants: vec![tenant()],
            systems,
            waves: vec![wave(2)],
            city_budgets: vec![budget()],
            ..Default::default()
        };
        let snapshot = Snapshot::take(objects, Vec::new(), &mut Overlay::default(), &BTreeMap::new(), NOW);
        let plan = suyun_planner::plan(&snapshot.plan_input().0);
        let city = plan.cities.iter().find(|c| c.region_code == "320100").expect("the budget is in force");
        let (all, _) = build(&snapshot, &PublishedSystems::new());
        let records: Vec<&BudgetRecord> =
            all.iter().filter_map(|r| if let Record::Budget(b) = r { Some(b) } else { None }).collect();
        assert_eq!(records.len(), 1, "{all:?}");
        let record = records[0];
        assert_eq!(
            Record::Budget(record.clone()).key(&suyun_store::readmodel::Keys::default()),
            "/suyun/v1/budgets/320100"
        );
        assert_eq!((record.name.as_str(), record.display_name.as_str()), ("nanjing-budget", "南京市"));
        let nanjing = record.nodes.iter().find(|n| n.node == "nanjing").unwrap();
        let share = city.nodes.iter().find(|n| n.node == "nanjing").unwrap();
        assert_eq!(nanjing.node_display_name.as_deref(), Some("南京"));
        assert_eq!(
            nanjing.budget,
            BudgetAmounts { cpu_millis: 400_000, memory_bytes: 4 << 40, storage_bytes: 40 << 40 }
        );
        assert_eq!(nanjing.budget, budget_amounts(share.budget));
        assert_eq!(nanjing.used, budget_amounts(share.used));
        assert_eq!(nanjing.used.cpu_millis, 3000, "three systems of one core each");
        assert_eq!(nanjing.utilization.cpu, share.utilization.cpu);
        assert_eq!(record.nodes.len(), city.nodes.len(), "a share of each node the plan accounts");
        let unnamed = budgets(&plan, &[]);
        assert_eq!(unnamed[0].nodes[0].node_display_name, None, "a node not in the cache has no display name");
        assert_eq!(record.borrowed, budget_amounts(city.borrowed));
        assert_eq!(record.lendable, budget_amounts(city.lendable.minus(city.borrowed)));
        assert_eq!(record.departments.len(), 1);
        let department = &record.departments[0];
        let account = plan.tenants.iter().find(|t| t.name == "nj-data").unwrap();
        assert_eq!((department.tenant.as_str(), department.display_name.as_str()), ("nj-data", "南京市大数据局"));
        assert_eq!(department.used.cpu_millis, account.used.cpu);
        assert_eq!(department.lent, budget_amounts(account.lent));
        assert_eq!(department.borrowed, budget_amounts(account.borrowed));
    }
}
