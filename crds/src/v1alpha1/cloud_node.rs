//! CloudNode: one cloud node of the province — the provincial primary node or a city backbone
//! node — with its capacity, certification and migration limits.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Architecture, ResourceAmounts, Resources, Window};

/// Label that ties a Kubernetes `Node` to the CloudNode whose capacity it contributes to when
/// the CloudNode sets `capacityFrom: Nodes`.
pub const CLOUD_NODE_LABEL: &str = "suyun.io/cloud-node";

/// Desired state of a CloudNode.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "suyun.io",
    version = "v1alpha1",
    kind = "CloudNode",
    shortname = "cnode",
    category = "suyun",
    status = "CloudNodeStatus",
    doc = "A cloud node of the provincial government cloud: the provincial primary node (省级主节点) or a city backbone node (市级主干节点).",
    printcolumn(name = "Display", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.regionCode"),
    printcolumn(name = "CPU", type_ = "string", json_path = ".status.allocated.cpu", description = "CPU allocated to placed systems"),
    printcolumn(name = "CPU-Allocatable", type_ = "string", json_path = ".status.allocatable.cpu", description = "Effective allocatable CPU: (capacity - reserved) x overcommit"),
    printcolumn(name = "Memory%", type_ = "number", json_path = ".status.utilization.memory", description = "Memory allocated, percent of allocatable"),
    printcolumn(name = "Systems", type_ = "integer", json_path = ".status.systems"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters"),
)]
#[x_kube(validation = kube::core::Rule::new("self.tier != 'City' || (has(self.parent) && self.parent != '')").message("a City node must name its Provincial parent node").field_path(".parent"))]
#[x_kube(validation = kube::core::Rule::new("self.tier != 'Provincial' || !has(self.parent)").message("a Provincial node has no parent; remove spec.parent").field_path(".parent"))]
#[x_kube(validation = kube::core::Rule::new("self.tier != 'Provincial' || self.regionCode.endsWith('0000')").message("a Provincial node has a province-level code ending in 0000, e.g. 320000").field_path(".regionCode"))]
#[x_kube(validation = kube::core::Rule::new("self.tier != 'City' || (!self.regionCode.endsWith('0000') && self.regionCode.endsWith('00'))").message("a City node has a city-level code ending in 00 (not 0000), e.g. 320100").field_path(".regionCode"))]
#[x_kube(validation = kube::core::Rule::new("self.capacityFrom == 'Nodes' || has(self.capacity)").message("spec.capacity is required unless spec.capacityFrom is Nodes").field_path(".capacity"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.reserved) || !has(self.reserved.cpu) || !has(self.capacity) || quantity(string(self.reserved.cpu)).compareTo(quantity(string(self.capacity.cpu))) <= 0").message("spec.reserved.cpu must not exceed spec.capacity.cpu").field_path(".reserved.cpu"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.reserved) || !has(self.reserved.memory) || !has(self.capacity) || quantity(string(self.reserved.memory)).compareTo(quantity(string(self.capacity.memory))) <= 0").message("spec.reserved.memory must not exceed spec.capacity.memory").field_path(".reserved.memory"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.reserved) || !has(self.reserved.storage) || !has(self.capacity) || quantity(string(self.reserved.storage)).compareTo(quantity(string(self.capacity.storage))) <= 0").message("spec.reserved.storage must not exceed spec.capacity.storage").field_path(".reserved.storage"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.reserved) || !has(self.reserved.gpu) || !has(self.capacity) || (has(self.capacity.gpu) && quantity(string(self.reserved.gpu)).compareTo(quantity(string(self.capacity.gpu))) <= 0)").message("spec.reserved.gpu must not exceed spec.capacity.gpu").field_path(".reserved.gpu"))]
#[serde(rename_all = "camelCase")]
pub struct CloudNodeSpec {
    /// Provincial for the provincial primary node (one per province), City for a city backbone
    /// node.
    pub tier: Tier,
    /// GB/T 2260 administrative division code of the node's region: six digits, e.g. 320000
    /// for the province, 320100 for 南京市.
    #[schemars(length(max = 6))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[1-9][0-9]{5}$')").message("regionCode must be a 6-digit GB/T 2260 administrative division code, e.g. 320100"))]
    pub region_code: String,
    /// Human-readable name, kept in Chinese, e.g. 南京市.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// Name of the Provincial CloudNode this City node belongs to. Required for City nodes and
    /// forbidden for the Provincial node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub parent: Option<String>,
    /// Declared capacity (cpu, memory, storage, optional gpu). Required unless `capacityFrom`
    /// is Nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Resources>,
    /// Where the capacity comes from: Declared (the `capacity` field, the default) or Nodes (the
    /// sum of the allocatable of Ready Kubernetes Nodes labelled `suyun.io/cloud-node=<name>`).
    #[serde(default)]
    pub capacity_from: CapacitySource,
    /// Headroom kept free on the node, per resource; must not exceed the capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<ResourceAmounts>,
    /// Overcommit ratio per resource, applied after the reservation: allocatable =
    /// (capacity - reserved) x ratio. Defaults: cpu 1.0, memory 1.0, storage 1.0.
    #[serde(default)]
    pub overcommit: Overcommit,
    /// Highest 等保 (MLPS 2.0) level the node is certified for, 1 to 3.
    #[schemars(range(min = 1, max = 3))]
    pub security_level: u8,
    /// CPU architectures the node offers (x86_64, aarch64 for 信创 hardware).
    #[serde(default = "default_architectures")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("list each architecture once"))]
    pub architectures: Vec<Architecture>,
    /// How many systems may migrate onto this node at the same time (at least 1).
    #[serde(default = "default_max_concurrent_migrations")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_migrations: u32,
    /// Bandwidth available for replicating data onto this node, in megabits per second, shared
    /// by its concurrent migrations.
    #[serde(default = "default_migration_bandwidth_mbps")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub migration_bandwidth_mbps: u32,
    /// Weekly windows in which cutovers onto this node may happen; none means any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub maintenance_windows: Vec<Window>,
    /// A cordoned node keeps what it has but takes no new systems.
    #[serde(default)]
    pub cordoned: bool,
    /// The member cluster that backs this node: the city backbone node's own Kubernetes
    /// cluster, managed from here. Absent: the operator's own cluster backs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<MemberCluster>,
}

/// How to reach the member cluster behind a CloudNode, and which of its Nodes count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberCluster {
    /// The Secret, in the operator's namespace, holding a kubeconfig for the member. Default:
    /// Secret `<CloudNode name>-kubeconfig`, key `value` (Cluster API's convention, so a cluster
    /// it provisioned is referenced as it is). The server's certificate is always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
    /// Labels a member Node must carry to count towards the capacity; none: every Ready Node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub node_selector: BTreeMap<String, String>,
}

/// A key of a Secret in the operator's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data (default `value`).
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "value".to_owned()
}

impl MemberCluster {
    /// The Secret and key holding the member's kubeconfig, for the CloudNode `node`.
    pub fn kubeconfig_secret(&self, node: &str) -> (String, String) {
        match &self.kubeconfig_secret_ref {
            Some(r) => (r.name.clone(), r.key.clone()),
            None => (format!("{node}-kubeconfig"), default_kubeconfig_key()),
        }
    }
}

fn default_architectures() -> Vec<Architecture> {
    vec![Architecture::X86_64]
}

fn default_max_concurrent_migrations() -> u32 {
    4
}

fn default_migration_bandwidth_mbps() -> u32 {
    1000
}

/// Tier of a cloud node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Tier {
    /// The provincial primary node (省级主节点).
    Provincial,
    /// A city backbone node (市级主干节点).
    City,
}

/// Source of a node's capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CapacitySource {
    /// The declared `spec.capacity`.
    #[default]
    Declared,
    /// The sum of the allocatable of Ready Kubernetes Nodes labelled
    /// `suyun.io/cloud-node=<name>`.
    Nodes,
}

/// Overcommit ratios per resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overcommit {
    /// CPU overcommit ratio, 1.0 to 16.0 (default 1.0).
    #[serde(default = "one")]
    #[schemars(range(min = 1.0, max = 16.0))]
    pub cpu: f64,
    /// Memory overcommit ratio, 1.0 to 4.0 (default 1.0: memory is not overcommitted unless
    /// asked).
    #[serde(default = "one")]
    #[schemars(range(min = 1.0, max = 4.0))]
    pub memory: f64,
    /// Storage overcommit ratio (thin provisioning), 1.0 to 4.0 (default 1.0).
    #[serde(default = "one")]
    #[schemars(range(min = 1.0, max = 4.0))]
    pub storage: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Overcommit {
    fn default() -> Self {
        Self { cpu: 1.0, memory: 1.0, storage: 1.0 }
    }
}

/// Observed state of a CloudNode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudNodeStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the capacity below came from (Declared or Nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_source: Option<CapacitySource>,
    /// Number of Ready Kubernetes Nodes counted, when the capacity comes from Nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes: Option<u32>,
    /// Raw capacity before reservation and overcommit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<ResourceAmounts>,
    /// Effective allocatable: (capacity - reserved) x overcommit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<ResourceAmounts>,
    /// Resources allocated to the systems placed on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<ResourceAmounts>,
    /// Allocated as a percentage of allocatable, per resource (cpu, memory, storage, gpu).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub utilization: BTreeMap<String, f64>,
    /// Number of systems placed on this node (every phase but Pending, Blocked and RolledBack).
    #[serde(default)]
    pub systems: u32,
    /// Systems placed on this node, by phase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub systems_by_phase: BTreeMap<String, u32>,
    /// Number of Tenants whose home node this is.
    #[serde(default)]
    pub tenants: u32,
    /// Migrations onto this node in progress now.
    #[serde(default)]
    pub active_migrations: u32,
    /// Per resource (cpu, memory, gpu), the most any single Ready machine has free: its
    /// allocatable times the overcommit, less the requests of the Pods bound to it. Shown when the
    /// capacity comes from a member cluster's Nodes; a system that fits on no single machine
    /// is refused (NoMachineFits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_free_on_one_machine: Option<ResourceAmounts>,
    /// The member cluster behind this node (`spec.cluster`), as last heard from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<MemberClusterStatus>,
    /// Conditions: Ready, CapacityPressure, ClusterReachable (member-backed nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What the operator last heard from a CloudNode's member cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterStatus {
    /// Whether the member's API server answers (see the ClusterReachable condition for why not).
    pub reachable: bool,
    /// The member's Kubernetes version (`gitVersion`), from the last successful probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// When the member last answered. Refreshed at most once a minute while it keeps
    /// answering (the `suyun_member_up` metric is the live signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// The capacity figures are the last known ones: the member cannot be reached now.
    #[serde(default)]
    pub capacity_stale: bool,
}

wire_names!(Tier { Provincial, City });
