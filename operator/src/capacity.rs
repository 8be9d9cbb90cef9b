//! Capacity arithmetic of a CloudNode, pure: effective allocatable = (capacity − reserved) ×
//! overcommit, per resource, in exact thousandths (see [`suyun_crds::quantity`]); and the
//! capacity of a `capacityFrom: Nodes` node as the sum of its Ready Kubernetes Nodes.

use k8s_openapi::api::core::v1::{Node, Pod};
use suyun_crds::quantity::{self, QuantityError};
use suyun_crds::v1alpha1::{Overcommit, ResourceAmounts, Resources};

/// Amounts of each accounted resource in thousandths of its unit (millicores, millibytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amounts {
    /// CPU, millicores.
    pub cpu: i128,
    /// Memory, thousandths of a byte.
    pub memory: i128,
    /// Storage, thousandths of a byte.
    pub storage: i128,
    /// GPUs, thousandths of a device.
    pub gpu: i128,
}

impl Amounts {
    /// Parses declared resources.
    pub fn from_resources(r: &Resources) -> Result<Self, AmountError> {
        Ok(Self {
            cpu: parse("cpu", Some(&r.cpu))?,
            memory: parse("memory", Some(&r.memory))?,
            storage: parse("storage", Some(&r.storage))?,
            gpu: parse("gpu", r.gpu.as_ref())?,
        })
    }

    /// Parses optional amounts; absent fields are zero.
    pub fn from_amounts(r: &ResourceAmounts) -> Result<Self, AmountError> {
        Ok(Self {
            cpu: parse("cpu", r.cpu.as_ref())?,
            memory: parse("memory", r.memory.as_ref())?,
            storage: parse("storage", r.storage.as_ref())?,
            gpu: parse("gpu", r.gpu.as_ref())?,
        })
    }

    /// Renders the amounts as quantities in their natural units (cores, binary bytes).
    pub fn to_resource_amounts(self) -> ResourceAmounts {
        ResourceAmounts {
            cpu: Some(quantity::format_cpu(self.cpu)),
            memory: Some(quantity::format_bytes(self.memory)),
            storage: Some(quantity::format_bytes(self.storage)),
            gpu: (self.gpu != 0).then(|| quantity::format_count(self.gpu)),
        }
    }

    /// Per-resource sum.
    pub fn plus(self, o: Self) -> Self {
        Self {
            cpu: self.cpu + o.cpu,
            memory: self.memory + o.memory,
            storage: self.storage + o.storage,
            gpu: self.gpu + o.gpu,
        }
    }
}

/// A resource amount that does not parse, with the resource it is for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{resource}: {source}")]
pub struct AmountError {
    /// `cpu`, `memory`, `storage` or `gpu`: the field under the object's resources.
    pub resource: &'static str,
    /// Why it does not parse.
    #[source]
    pub source: QuantityError,
}

fn parse(
    resource: &'static str,
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Result<i128, AmountError> {
    quantity::milli_or_zero(q).map_err(|source| AmountError { resource, source })
}

/// Effective allocatable: (capacity − reserved) × overcommit, per resource, never negative.
/// The ratio is applied in thousandths and rounded down, so the result is exact and does not
/// depend on floating-point rounding of large numbers. GPUs are never overcommitted.
pub fn allocatable(capacity: Amounts, reserved: Amounts, overcommit: &Overcommit) -> Amounts {
    let scaled = |cap: i128, res: i128, ratio: f64| {
        // Admission keeps ratios within 1 to 16; a manifest read without admission (`suyunctl
        // plan -f`) may hold anything: NaN or a ratio below zero is no capacity, a huge one is
        // capped rather than overflowing.
        let ratio_milli = if ratio > 0.0 { (ratio.min(1e9) * 1000.0).round() as i128 } else { 0 };
        (cap - res).max(0).saturating_mul(ratio_milli) / 1000
    };
    Amounts {
        cpu: scaled(capacity.cpu, reserved.cpu, overcommit.cpu),
        memory: scaled(capacity.memory, reserved.memory, overcommit.memory),
        storage: scaled(capacity.storage, reserved.storage, overcommit.storage),
        gpu: (capacity.gpu - reserved.gpu).max(0),
    }
}

/// Allocated as a percentage of allocatable, rounded to one decimal; 0 when nothing is
/// allocatable and nothing allocated, 100 when something is allocated on nothing.
pub fn utilization_percent(allocated: i128, allocatable: i128) -> f64 {
    if allocatable <= 0 {
        return if allocated > 0 { 100.0 } else { 0.0 };
    }
    let tenths = (allocated * 1000 + allocatable / 2) / allocatable;
    tenths as f64 / 10.0
}

/// Resource names of a Kubernetes Node's allocatable that count towards each Suyun resource.
const NODE_STORAGE: &str = "ephemeral-storage";
const NODE_GPU: &str = "nvidia.com/gpu";

/// Whether a Node reports the condition Ready=True.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A Node's allocatable (cpu, memory, ephemeral storage, GPUs); an amount that cannot be parsed
/// is an error naming the Node.
fn node_allocatable(node: &Node) -> Result<Amounts, NodeCapacityError> {
    let Some(alloc) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else { return Ok(Amounts::default()) };
    let get = |key: &str| {
        alloc.get(key).map_or(Ok(0), quantity::milli).map_err(|source| NodeCapacityError {
            node: node.metadata.name.clone().unwrap_or_default(),
            resource: key.to_owned(),
            source,
        })
    };
    Ok(Amounts { cpu: get("cpu")?, memory: get("memory")?, storage: get(NODE_STORAGE)?, gpu: get(NODE_GPU)? })
}

/// Sum of the allocatable of the Ready nodes, with the number of Ready nodes counted. A Node
/// whose allocatable cannot be parsed is an error naming the Node.
pub fn sum_ready_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Result<(Amounts, u32), NodeCapacityError> {
    let mut total = Amounts::default();
    let mut ready = 0;
    for node in nodes.into_iter().filter(|n| node_is_ready(n)) {
        ready += 1;
        total = total.plus(node_allocatable(node)?);
    }
    Ok((total, ready))
}

/// What a Pod requests: the sum of its containers' requests (cpu, memory, GPUs). Requests the
/// API server accepted always parse; one that does not counts as nothing.
fn pod_requests(pod: &Pod) -> Amounts {
    let mut total = Amounts::default();
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    for requests in containers.filter_map(|c| c.resources.as_ref()?.requests.as_ref()) {
        let get = |key: &str| requests.get(key).and_then(|q| quantity::milli(q).ok()).unwrap_or(0);
        total = total.plus(Amounts { cpu: get("cpu"), memory: get("memory"), storage: 0, gpu: get(NODE_GPU) });
    }
    total
}

/// What each Ready machine has free: its allocatable, times the overcommit, less what the Pods
/// bound to it and not finished request. Storage is not a machine's and is left at 0.
pub fn machines_free<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    pods: &[std::sync::Arc<Pod>],
    overcommit: &Overcommit,
) -> Result<Vec<Amounts>, NodeCapacityError> {
    let mut requested: std::collections::HashMap<&str, Amounts> = std::collections::HashMap::new();
    for pod in pods {
        let finished =
            pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
        let Some(machine) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { continue };
        if !finished {
            let entry = requested.entry(machine).or_default();
            *entry = entry.plus(pod_requests(pod));
        }
    }
    let mut free = Vec::new();
    for node in nodes.into_iter().filter(|n| node_is_ready(n)) {
        let alloc = allocatable(node_allocatable(node)?, Amounts::default(), overcommit);
        let used = requested.get(node.metadata.name.as_deref().unwrap_or_default()).copied().unwrap_or_default();
        free.push(Amounts {
            cpu: (alloc.cpu - used.cpu).max(0),
            memory: (alloc.memory - used.memory).max(0),
            storage: 0,
            gpu: (alloc.gpu - used.gpu).max(0),
        });
    }
    Ok(free)
}

/// Per resource, the most free on any one machine (each resource's maximum may be on another
/// machine: this is what an operator reads, the planner checks whole machines).
pub fn largest_free(machines: &[Amounts]) -> Amounts {
    machines.iter().fold(Amounts::default(), |m, a| Amounts {
        cpu: m.cpu.max(a.cpu),
        memory: m.memory.max(a.memory),
        storage: 0,
        gpu: m.gpu.max(a.gpu),
    })
}

/// A Node's allocatable that is not a quantity.
#[derive(Debug, thiserror::Error)]
#[error("Node {node}: allocatable {resource}: {source}")]
pub struct NodeCapacityError {
    /// Name of the Node.
    pub node: String,
    /// Resource key in the Node's allocatable.
    pub resource: String,
    /// What is wrong with the value.
    pub source: QuantityError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    fn resources(cpu: &str, memory: &str, storage: &str) -> Resources {
        Resources { cpu: q(cpu), memory: q(memory), storage: q(storage), gpu: None }
    }

    #[test]
    fn reserved_is_subtracted_before_overcommit() {
        let cap = Amounts::from_resources(&resources("100", "512Gi", "10Ti")).unwrap();
        let reserved = Amounts::from_amounts(&ResourceAmounts {
            cpu: Some(q("10")),
            memory: Some(q("64Gi")),
            ..Default::default()
        })
        .unwrap();
        let alloc = allocatable(cap, reserved, &Overcommit { cpu: 2.0, memory: 1.0, storage: 1.5 });
        let out = alloc.to_resource_amounts();
        assert_eq!(out.cpu, Some(q("180")), "(100 - 10) x 2");
        assert_eq!(out.memory, Some(q("448Gi")), "512Gi - 64Gi, no overcommit");
        assert_eq!(out.storage, Some(q("15Ti")), "10Ti x 1.5");
        assert_eq!(out.gpu, None);
    }

    #[test]
    fn fractional_ratios_and_millicores_are_exact() {
        let cap = Amounts::from_resources(&resources("7500m", "3Gi", "1Gi")).unwrap();
        let alloc = allocatable(cap, Amounts::default(), &Overcommit { cpu: 1.25, memory: 1.0, storage: 1.0 });
        assert_eq!(alloc.cpu, 9_375, "7.5 cores x 1.25 = 9.375 cores");
        assert_eq!(quantity::format_cpu(alloc.cpu).0, "9375m");
    }

    #[test]
    fn reserved_above_capacity_gives_zero_not_negative() {
        let cap = Amounts { cpu: 1_000, ..Default::default() };
        let reserved = Amounts { cpu: 5_000, ..Default::default() };
        assert_eq!(allocatable(cap, reserved, &Overcommit::default()).cpu, 0);
    }

    #[test]
    fn utilization_rounds_to_tenths_and_handles_empty_nodes() {
        assert_eq!(utilization_percent(1, 3), 33.3);
        assert_eq!(utilization_percent(2, 3), 66.7);
        assert_eq!(utilization_percent(0, 0), 0.0);
        assert_eq!(utilization_percent(5, 0), 100.0);
        assert_eq!(utilization_percent(170, 200), 85.0);
    }

    fn node(name: &str, ready: &str, cpu: &str, memory: &str) -> Node {
        Node {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([
                    ("cpu".to_owned(), q(cpu)),
                    ("memory".to_owned(), q(memory)),
                    ("ephemeral-storage".to_owned(), q("100Gi")),
                ])),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_nodes_count() {
        let nodes = [node("a", "True", "16", "64Gi"), node("b", "False", "16", "64Gi"), node("c", "True", "8", "32Gi")];
        let (sum, ready) = sum_ready_nodes(&nodes).unwrap();
        assert_eq!(ready, 2);
        assert_eq!(sum.to_resource_amounts().cpu, Some(q("24")));
        assert_eq!(sum.to_resource_amounts().memory, Some(q("96Gi")));
        assert_eq!(sum.to_resource_amounts().storage, Some(q("200Gi")));
    }

    #[test]
    fn a_malformed_node_quantity_names_the_node() {
        let err = sum_ready_nodes(&[node("bad-node", "True", "lots", "1Gi")]).unwrap_err();
        assert!(err.to_string().contains("bad-node"), "{err}");
        assert!(err.to_string().contains("cpu"), "{err}");
    }

    fn pod(machine: &str, cpu: &str, memory: &str, phase: &str) -> std::sync::Arc<Pod> {
        use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, ResourceRequirements};
        std::sync::Arc::new(Pod {
            spec: Some(PodSpec {
                node_name: Some(machine.into()),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([("cpu".to_owned(), q(cpu)), ("memory".to_owned(), q(memory))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
            ..Default::default()
        })
    }

    #[test]
    fn each_ready_machine_has_its_allocatable_less_its_running_pods_free() {
        let nodes =
            [node("a", "True", "16", "64Gi"), node("b", "False", "64", "256Gi"), node("c", "True", "8", "32Gi")];
        let pods = [
            pod("a", "10", "8Gi", "Running"),
            pod("a", "1", "1Gi", "Pending"),
            pod("a", "4", "4Gi", "Succeeded"),
            pod("c", "2", "30Gi", "Running"),
        ];
        let free = machines_free(&nodes, &pods, &Overcommit { cpu: 2.0, memory: 1.0, storage: 1.0 }).unwrap();
        let cores = |a: &Amounts| a.cpu / 1000;
        assert_eq!(free.iter().map(cores).collect::<Vec<_>>(), [21, 14], "a: 16×2 − 11; c: 8×2 − 2; b is not Ready");
        assert_eq!(free[1].memory, 2 * (1 << 30) * 1000);
        let largest = largest_free(&free);
        assert_eq!((cores(&largest), largest.memory / 1000 / (1 << 30)), (21, 55), "per resource: a's cpu, a's memory");
    }
}
