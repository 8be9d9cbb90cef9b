//! Turns the Kubernetes objects (CloudNodes, Tenants, GovSystems, MigrationWaves) into the
//! planner's input: integer units, tenants named by Namespace, waves chosen by label selector.
//! Pure; used by the operator and by `suyunctl plan -f`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use suyun_crds::quantity::{self, Milli, QuantityError};
use suyun_crds::v1alpha1::{
    self as api, CapacitySource, CityBudget, Classification, CloudNode, GovSystem, MigrationWave, ResidencyPolicy,
    ResidencyRegion, SystemArchitecture, Tenant, TenantLevel,
};
use suyun_planner::model;

use crate::capacity::{self, Amounts};
use crate::migration::waves::window;
use crate::selector;

/// The objects a plan is made from (shared with the operator's caches, hence `Arc`).
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Cloud nodes.
    pub cloud_nodes: Vec<Arc<CloudNode>>,
    /// Tenants.
    pub tenants: Vec<Arc<Tenant>>,
    /// Systems (each in its tenant's Namespace).
    pub systems: Vec<Arc<GovSystem>>,
    /// Waves.
    pub waves: Vec<Arc<MigrationWave>>,
    /// City budgets.
    pub city_budgets: Vec<Arc<CityBudget>>,
    /// Residency policies.
    pub residency_policies: Vec<Arc<ResidencyPolicy>>,
    /// What the member clusters say about the nodes they back, by CloudNode name (none in a
    /// single-cluster province, or offline).
    pub members: std::collections::HashMap<String, MemberFacts>,
}

impl Objects {
    /// Lays `other` over these objects: an object of `other` replaces the one of the same kind
    /// and name (and Namespace), the rest are added. `suyunctl --from-cluster -f change.yaml`
    /// plans the cluster as it would be once the change is applied.
    pub fn overlay(&mut self, other: Objects) {
        fn merge<K: kube::Resource>(mine: &mut Vec<Arc<K>>, theirs: Vec<Arc<K>>) {
            for object in theirs {
                let key = |o: &K| (o.meta().namespace.clone(), o.meta().name.clone());
                match mine.iter_mut().find(|m| key(m) == key(&object)) {
                    Some(slot) => *slot = object,
                    None => mine.push(object),
                }
            }
        }
        merge(&mut self.cloud_nodes, other.cloud_nodes);
        merge(&mut self.tenants, other.tenants);
        merge(&mut self.systems, other.systems);
        merge(&mut self.waves, other.waves);
        merge(&mut self.city_budgets, other.city_budgets);
        merge(&mut self.residency_policies, other.residency_policies);
        self.members.extend(other.members);
    }
}

/// What a member cluster says about the CloudNode it backs, beyond the CloudNode object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFacts {
    /// Its API server does not answer: the node takes nothing new until it does.
    pub unreachable: bool,
    /// What each Ready machine has free ([`capacity::machines_free`]); empty when the capacity
    /// is declared rather than read from the member's Nodes.
    pub machines: Vec<Amounts>,
}

/// A field of an object that cannot be turned into planner input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {field}: {problem}")]
pub struct InputError {
    /// Kind of the object.
    pub kind: &'static str,
    /// Name (`namespace/name` for GovSystems).
    pub name: String,
    /// Field path, e.g. `spec.capacity.cpu`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn err(kind: &'static str, name: impl Into<String>, field: impl Into<String>, problem: impl ToString) -> InputError {
    InputError { kind, name: name.into(), field: field.into(), problem: problem.to_string() }
}

fn unix(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

/// Effective allocatable of a CloudNode: computed from the declared capacity, or read from its
/// status when the capacity comes from Kubernetes Nodes (the CloudNode controller sums them).
pub fn node_allocatable(node: &CloudNode) -> Result<Amounts, InputError> {
    let name = node.name_any();
    match node.spec.capacity_from {
        CapacitySource::Declared => {
            let cap = node.spec.capacity.as_ref().ok_or_else(|| {
                err("CloudNode", &name, "spec.capacity", "required unless spec.capacityFrom is Nodes")
            })?;
            let cap = Amounts::from_resources(cap).map_err(|e| err("CloudNode", &name, "spec.capacity", e))?;
            let reserved = node
                .spec
                .reserved
                .as_ref()
                .map(Amounts::from_amounts)
                .transpose()
                .map_err(|e| err("CloudNode", &name, "spec.reserved", e))?
                .unwrap_or_default();
            Ok(capacity::allocatable(cap, reserved, &node.spec.overcommit))
        }
        CapacitySource::Nodes => node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Amounts::from_amounts)
            .transpose()
            .map_err(|e| err("CloudNode", &name, "status.allocatable", e))
            .map(Option::unwrap_or_default),
    }
}

fn resources(a: Amounts) -> model::Resources {
    model::Resources {
        cpu: Milli(a.cpu).millis(),
        memory: Milli(a.memory).units_down(),
        storage: Milli(a.storage).units_down(),
        gpu: Milli(a.gpu).units_down(),
    }
}

/// A CloudNode as the planner sees it, without member facts (`suyunctl forecast --what-if
/// add=FILE`).
pub fn planner_node(n: &CloudNode) -> Result<model::Node, InputError> {
    node(n, None)
}

fn node(n: &CloudNode, member: Option<&MemberFacts>) -> Result<model::Node, InputError> {
    let a = node_allocatable(n)?;
    Ok(model::Node {
        name: n.name_any(),
        tier: tier(n.spec.tier),
        region_code: n.spec.region_code.clone(),
        display_name: n.spec.display_name.clone(),
        parent: n.spec.parent.clone(),
        allocatable: resources(a),
        security_level: n.spec.security_level,
        architectures: n
            .spec
            .architectures
            .iter()
            .map(|a| match a {
                api::Architecture::X86_64 => model::Architecture::X86_64,
                api::Architecture::Aarch64 => model::Architecture::Aarch64,
            })
            .collect(),
        max_concurrent_migrations: n.spec.max_concurrent_migrations,
        migration_bandwidth_mbps: u64::from(n.spec.migration_bandwidth_mbps),
        maintenance_windows: n.spec.maintenance_windows.iter().map(window).collect(),
        cordoned: n.spec.cordoned,
        unreachable: member.is_some_and(|m| m.unreachable),
        machines: member.map(|m| m.machines.iter().copied().map(resources).collect()).unwrap_or_default(),
    })
}

fn tenant(t: &Tenant) -> Result<model::Tenant, InputError> {
    let name = t.name_any();
    let q = |field: &str, v: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        quantity::milli(v).map_err(|e| err("Tenant", &name, format!("spec.quota.{field}"), e))
    };
    Ok(model::Tenant {
        name: name.clone(),
        display_name: t.spec.display_name.clone(),
        level: tenant_level(t.spec.level),
        region_code: t.spec.region_code.clone(),
        home_node: t.spec.home_node.clone(),
        quota: model::Quota {
            cpu: Milli(q("cpu", &t.spec.quota.cpu)?).millis(),
            memory: Milli(q("memory", &t.spec.quota.memory)?).units_down(),
            storage: Milli(q("storage", &t.spec.quota.storage)?).units_down(),
            max_systems: u64::from(t.spec.quota.max_systems),
        },
        security_level: t.spec.security_level,
    })
}

/// The wave a system belongs to: among the waves whose selector matches its labels, the one
/// with the lowest order, then the first by name.
pub fn wave_of<'a>(system: &GovSystem, waves: &'a [Arc<MigrationWave>]) -> Option<&'a Arc<MigrationWave>> {
    waves
        .iter()
        .filter(|w| selector::matches(&w.spec.selector, system.labels()))
        .min_by(|a, b| (a.spec.order, a.name_any()).cmp(&(b.spec.order, b.name_any())))
}

/// The planner's view of a GovSystem phase (NotMigrated is decided by strategy, not phase).
pub fn phase(p: api::Phase) -> model::Phase {
    match p {
        api::Phase::Pending | api::Phase::NotMigrated => model::Phase::Pending,
        api::Phase::Scheduled => model::Phase::Scheduled,
        api::Phase::Provisioning => model::Phase::Provisioning,
        api::Phase::Replicating => model::Phase::Replicating,
        api::Phase::AwaitingCutover => model::Phase::AwaitingCutover,
        api::Phase::CuttingOver => model::Phase::CuttingOver,
        api::Phase::Verifying => model::Phase::Verifying,
        api::Phase::Completed => model::Phase::Completed,
        api::Phase::Failed => model::Phase::Failed,
        api::Phase::RolledBack => model::Phase::RolledBack,
        api::Phase::Blocked => model::Phase::Blocked,
    }
}

/// One system as the planner is to see it: the object, the status to plan from (the loop's
/// effective one, or the cached one offline) and the wave that selects it.
#[derive(Clone, Debug)]
pub struct PlannedSystem<'a> {
    /// The GovSystem.
    pub system: &'a GovSystem,
    /// Its phase and node come from here.
    pub status: &'a api::GovSystemStatus,
    /// Its wave ([`wave_of`]).
    pub wave: Option<String>,
}

fn system(planned: PlannedSystem<'_>) -> Result<model::System, InputError> {
    let PlannedSystem { system: s, status, wave } = planned;
    let namespace = s.namespace().unwrap_or_default();
    let id = format!("{namespace}/{}", s.name_any());
    let r = &s.spec.resources;
    let q = |field: &str, v: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        quantity::milli(v).map_err(|e: QuantityError| err("GovSystem", &id, format!("spec.{field}"), e))
    };
    Ok(model::System {
        system_id: s.spec.system_id.clone(),
        name: s.name_any(),
        tenant: namespace,
        display_name: s.spec.display_name.clone(),
        security_level: s.spec.security_level,
        classification: classification(s.spec.classification),
        residency_waiver: s
            .spec
            .residency_waiver
            .as_ref()
            .map(|w| model::Waiver { granted_by: w.granted_by.clone(), reason: w.reason.clone() }),
        architecture: match s.spec.architecture {
            SystemArchitecture::Any => model::ArchitectureRequirement::Any,
            SystemArchitecture::X86_64 => model::ArchitectureRequirement::X86_64,
            SystemArchitecture::Aarch64 => model::ArchitectureRequirement::Aarch64,
        },
        resources: model::Resources {
            cpu: Milli(q("resources.cpu", &r.cpu)?).millis(),
            memory: Milli(q("resources.memory", &r.memory)?).units_up(),
            storage: Milli(q("resources.storage", &r.storage)?).units_up(),
            gpu: match &r.gpu {
                Some(g) => Milli(q("resources.gpu", g)?).units_up(),
                None => 0,
            },
        },
        data_volume: match &s.spec.data_volume {
            Some(v) => Milli(q("dataVolume", v)?).units_up(),
            None => 0,
        },
        depends_on: s.spec.depends_on.clone(),
        same_node_as: s.spec.same_node_as.clone(),
        anti_affinity_with: s.spec.anti_affinity_with.clone(),
        placement: s
            .spec
            .placement
            .as_ref()
            .map(|p| model::Placement {
                preferred_node: p.preferred_node.clone(),
                allowed_nodes: p.allowed_nodes.clone(),
                allow_spillover: p.allow_spillover,
            })
            .unwrap_or_default(),
        priority: s.spec.priority,
        strategy: match s.spec.strategy {
            api::Strategy::Rehost => model::Strategy::Rehost,
            api::Strategy::Replatform => model::Strategy::Replatform,
            api::Strategy::Refactor => model::Strategy::Refactor,
            api::Strategy::Retire => model::Strategy::Retire,
            api::Strategy::Retain => model::Strategy::Retain,
        },
        wave,
        phase: status.phase.map(phase).unwrap_or_default(),
        node: status.node.clone(),
    })
}

/// The planner's tenant level.
pub fn tenant_level(level: TenantLevel) -> model::TenantLevel {
    match level {
        TenantLevel::Provincial => model::TenantLevel::Provincial,
        TenantLevel::City => model::TenantLevel::City,
        TenantLevel::County => model::TenantLevel::County,
    }
}

/// The planner's classification. Classified systems are refused at admission; should one get
/// through, it is planned as Sensitive, the strictest class the planner knows.
fn classification(c: Classification) -> model::Classification {
    match c {
        Classification::Public => model::Classification::Public,
        Classification::Internal => model::Classification::Internal,
        Classification::Sensitive | Classification::Classified => model::Classification::Sensitive,
    }
}

fn tier(t: api::Tier) -> model::Tier {
    match t {
        api::Tier::Provincial => model::Tier::Provincial,
        api::Tier::City => model::Tier::City,
    }
}

fn city_budget(b: &CityBudget) -> Result<model::CityBudget, InputError> {
    let name = b.name_any();
    let mut nodes = Vec::with_capacity(b.spec.nodes.len());
    for (k, share) in b.spec.nodes.iter().enumerate() {
        let q = |field: &str, v: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
            quantity::milli(v).map_err(|e| err("CityBudget", &name, format!("spec.nodes[{k}].{field}"), e))
        };
        nodes.push(model::NodeShare {
            node: share.node.clone(),
            limit: model::Limit {
                cpu: Milli(q("cpu", &share.cpu)?).millis(),
                memory: Milli(q("memory", &share.memory)?).units_down(),
                storage: Milli(q("storage", &share.storage)?).units_down(),
            },
        });
    }
    let lending = b
        .spec
        .lending
        .as_ref()
        .map(|l| model::Lending {
            lend_percent: l.lend_percent,
            borrow_percent: l.borrow_percent,
            departments: l
                .departments
                .iter()
                .map(|d| model::DepartmentLending {
                    tenant: d.tenant.clone(),
                    lend_percent: d.lend_percent,
                    borrow_percent: d.borrow_percent,
                })
                .collect(),
        })
        .unwrap_or_default();
    Ok(model::CityBudget {
        name,
        region_code: b.spec.region_code.clone(),
        display_name: b.spec.display_name.clone(),
        nodes,
        lending,
    })
}

/// The rules of every policy, named `policy/rule`.
fn residency_rules(policies: &[Arc<ResidencyPolicy>]) -> Vec<model::ResidencyRule> {
    policies
        .iter()
        .flat_map(|p| {
            let policy = p.name_any();
            p.spec.rules.iter().map(move |r| model::ResidencyRule {
                name: format!("{policy}/{}", r.name),
                classification: classification(r.classification),
                region: match r.region {
                    ResidencyRegion::OwnCity => model::RegionScope::OwnCity,
                    ResidencyRegion::OwnProvince => model::RegionScope::OwnProvince,
                    ResidencyRegion::Anywhere => model::RegionScope::Anywhere,
                },
                tiers: r.tiers.iter().copied().map(tier).collect(),
            })
        })
        .collect()
}

fn wave(w: &MigrationWave) -> model::Wave {
    model::Wave {
        name: w.name_any(),
        order: i32::try_from(w.spec.order).unwrap_or(i32::MAX),
        not_before: w.spec.not_before.as_ref().map(unix),
        windows: w.spec.windows.iter().map(window).collect(),
        // A paused wave is still planned as if it ran (its systems stay Scheduled, with planned
        // starts); the migration loop is what holds their starts while it is paused.
        max_concurrent: Some(w.spec.max_concurrent),
    }
}

fn collect_ok<T>(results: impl Iterator<Item = Result<T, InputError>>, errors: &mut Vec<InputError>) -> Vec<T> {
    results.filter_map(|r| r.map_err(|e| errors.push(e)).ok()).collect()
}

/// Builds the planner input at `now` (Unix seconds). Every field that cannot be converted is
/// reported; references between objects are left to the planner, which explains them.
pub fn plan_input(objects: &Objects, now: i64) -> Result<model::PlanInput, Vec<InputError>> {
    let (input, errors) = plan_input_lenient(objects, now);
    if errors.is_empty() { Ok(input) } else { Err(errors) }
}

/// Like [`plan_input`], but an object that cannot be converted is left out (and reported)
/// instead of failing the whole input: one bad object must not stop every migration.
pub fn plan_input_lenient(objects: &Objects, now: i64) -> (model::PlanInput, Vec<InputError>) {
    let none = api::GovSystemStatus::default();
    let systems = objects.systems.iter().map(|s| PlannedSystem {
        system: s,
        status: s.status.as_ref().unwrap_or(&none),
        wave: wave_of(s, &objects.waves).map(|w| w.name_any()),
    });
    input_of(objects, systems, now)
}

/// Like [`plan_input_lenient`], with the systems given as the planner is to see them (in
/// place of `objects.systems`): the migration loop plans from its effective statuses.
pub fn input_of<'a>(
    objects: &Objects,
    systems: impl IntoIterator<Item = PlannedSystem<'a>>,
    now: i64,
) -> (model::PlanInput, Vec<InputError>) {
    let mut errors = Vec::new();
    let nodes =
        collect_ok(objects.cloud_nodes.iter().map(|n| node(n, objects.members.get(&n.name_any()))), &mut errors);
    let tenants = collect_ok(objects.tenants.iter().map(|t| tenant(t)), &mut errors);
    let systems = collect_ok(systems.into_iter().map(system), &mut errors);
    let waves = objects.waves.iter().map(|w| wave(w)).collect();
    let budgets = collect_ok(objects.city_budgets.iter().map(|b| city_budget(b)), &mut errors);
    let input = model::PlanInput {
        settings: model::Settings { now, ..Default::default() },
        nodes,
        tenants,
        systems,
        waves,
        budgets,
        residency: residency_rules(&objects.residency_policies),
    };
    (input, errors)
}

/// References a platform engineer must fix before a plan means anything: a Tenant's home node
/// and a City node's parent must exist, and every GovSystem must live in a Tenant's Namespace.
/// (Unknown `dependsOn` ids are not here: the planner blocks those systems and says why.)
pub fn check_references(objects: &Objects) -> Vec<InputError> {
    let nodes: BTreeMap<String, &CloudNode> = objects.cloud_nodes.iter().map(|n| (n.name_any(), n.as_ref())).collect();
    let tenants: BTreeMap<String, &Tenant> = objects.tenants.iter().map(|t| (t.name_any(), t.as_ref())).collect();
    let mut errors = Vec::new();
    for n in &objects.cloud_nodes {
        if let Some(parent) = &n.spec.parent
            && !nodes.contains_key(parent)
        {
            errors.push(err("CloudNode", n.name_any(), "spec.parent", format!("no CloudNode named {parent:?}")));
        }
    }
    for t in &objects.tenants {
        if !nodes.contains_key(&t.spec.home_node) {
            errors.push(err(
                "Tenant",
                t.name_any(),
                "spec.homeNode",
                format!("no CloudNode named {:?}", t.spec.home_node),
            ));
        }
    }
    for s in &objects.systems {
        let ns = s.namespace().unwrap_or_default();
        let name = format!("{ns}/{}", s.name_any());
        if ns.is_empty() {
            errors.push(err(
                "GovSystem",
                name,
                "metadata.namespace",
                "required: a GovSystem lives in its Tenant's Namespace",
            ));
        } else if !tenants.contains_key(&ns) {
            errors.push(err(
                "GovSystem",
                name,
                "metadata.namespace",
                format!("no Tenant named {ns:?} (a system's Namespace names its Tenant)"),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn objects(yaml: &str) -> Objects {
        let mut o = Objects::default();
        crate::manifests::load_text(Path::new("t.yaml"), yaml, &mut o).unwrap();
        o
    }

    const BASE: &str = r#"
apiVersion: suyun.io/v1alpha1
kind: CloudNode
metadata: {name: jiangsu}
spec:
  tier: Provincial
  regionCode: "320000"
  displayName: 江苏省
  capacity: {cpu: "100", memory: 400Gi, storage: 10Ti}
  reserved: {cpu: "10", memory: 16Gi}
  overcommit: {cpu: 1.5}
  securityLevel: 3
---
apiVersion: suyun.io/v1alpha1
kind: Tenant
metadata: {name: js-edu}
spec:
  displayName: 江苏省教育厅
  level: Provincial
  regionCode: "320000"
  homeNode: jiangsu
  quota: {cpu: "50", memory: 100Gi, storage: 1Ti, maxSystems: 5}
  securityLevel: 2
---
apiVersion: suyun.io/v1alpha1
kind: GovSystem
metadata: {name: a, namespace: js-edu, labels: {suyun.io/wave: w1}}
spec:
  systemId: JS-320000-0001
  displayName: 系统
  classification: Internal
  securityLevel: 2
  resources: {cpu: 1500m, memory: "1.5Gi", storage: "1000"}
  dataVolume: 1Ti
---
apiVersion: suyun.io/v1alpha1
kind: MigrationWave
metadata: {name: w2}
spec: {selector: {matchLabels: {suyun.io/wave: w1}}, order: 2, executor: Simulated, paused: true}
---
apiVersion: suyun.io/v1alpha1
kind: MigrationWave
metadata: {name: w1}
spec: {selector: {}, order: 1, executor: Simulated, maxConcurrent: 7}
"#;

    #[test]
    fn converts_units_exactly() {
        let input = plan_input(&objects(BASE), 42).unwrap();
        let node = &input.nodes[0];
        assert_eq!(node.allocatable.cpu, 135_000, "(100 - 10) x 1.5 cores in millicores");
        assert_eq!(node.allocatable.memory, 384 << 30);
        let system = &input.systems[0];
        assert_eq!(system.tenant, "js-edu", "the Namespace names the tenant");
        assert_eq!(system.resources.cpu, 1_500);
        assert_eq!(system.resources.memory, 1536 << 20);
        assert_eq!(system.resources.storage, 1000);
        assert_eq!(system.data_volume, 1 << 40);
        assert_eq!(input.tenants[0].quota.max_systems, 5);
        assert_eq!(input.settings.now, 42);
    }

    #[test]
    fn a_system_joins_the_lowest_order_matching_wave_and_paused_waves_are_still_planned() {
        let input = plan_input(&objects(BASE), 0).unwrap();
        assert_eq!(input.systems[0].wave.as_deref(), Some("w1"));
        let w2 = input.waves.iter().find(|w| w.name == "w2").unwrap();
        assert_eq!(w2.max_concurrent, Some(20), "paused, but planned with its concurrency");
        assert_eq!(input.waves.iter().find(|w| w.name == "w1").unwrap().max_concurrent, Some(7));
    }

    #[test]
    fn broken_references_are_named() {
        let mut o = objects(BASE);
        Arc::make_mut(&mut o.tenants[0]).spec.home_node = "nowhere".into();
        Arc::make_mut(&mut o.systems[0]).metadata.namespace = Some("unknown-ns".into());
        let problems: Vec<String> = check_references(&o).iter().map(ToString::to_string).collect();
        assert!(
            problems.iter().any(|p| p.contains("Tenant \"js-edu\": spec.homeNode: no CloudNode named \"nowhere\"")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("metadata.namespace: no Tenant named \"unknown-ns\"")),
            "{problems:?}"
        );
    }
}
