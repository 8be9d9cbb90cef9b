//! CityBudget: how much of which cloud nodes a city's departments (its City and County tenants)
//! may use together, and how they lend unused quota to each other.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::common::ResourceAmounts;

/// Desired state of a CityBudget.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "suyun.io",
    version = "v1alpha1",
    kind = "CityBudget",
    shortname = "cbudget",
    category = "suyun",
    status = "CityBudgetStatus",
    doc = "A city's budget (市级预算): how much of which cloud nodes the city's departments (City and County tenants of its region) may use together, including its share of the provincial node, and how its departments lend unused quota to each other.",
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.regionCode"),
    printcolumn(name = "Display", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(
        name = "Departments",
        type_ = "integer",
        json_path = ".status.departments",
        description = "City and County tenants of the city"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CityBudgetSpec {
    /// GB/T 2260 code of the city (市): six digits ending in 00 but not 0000, e.g. 320100 for
    /// 南京市. The budget covers the city's departments: the City tenants whose regionCode is
    /// this code and the County tenants whose regionCode has the same first four digits (e.g.
    /// 320102 for 玄武区).
    #[schemars(length(max = 6))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[1-9][0-9]{3}00$') && !self.endsWith('0000')").message("regionCode must be a city-level code: 6 digits ending in 00 but not 0000, e.g. 320100"))]
    pub region_code: String,
    /// Human-readable name of the city, kept in Chinese, e.g. 南京市.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// The cloud nodes the city's departments may use, with how much of each they may use
    /// together: usually the city's own node and its share of the provincial node (for
    /// spillover). A department of the city may use only the nodes listed here; a city without
    /// a CityBudget is not limited at city level (only by its tenants' quotas and the nodes'
    /// capacity).
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y.node == x.node))").message("list each node once"))]
    pub nodes: Vec<NodeBudget>,
    /// How the city's departments lend unused quota to each other. Absent: no lending, each
    /// department keeps to its own Tenant quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lending: Option<Lending>,
}

/// How much of one cloud node a city's departments may use together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBudget {
    /// Name of the CloudNode, e.g. cn-320100 for the city's node or cn-320000 for the city's
    /// share of the provincial node.
    #[schemars(length(min = 1, max = 63))]
    pub node: String,
    /// CPU cores the city's departments may use on the node together, as a Kubernetes
    /// quantity (e.g. 2000).
    #[schemars(schema_with = "listed_quantity")]
    pub cpu: Quantity,
    /// Memory the city's departments may use on the node together, as a Kubernetes quantity
    /// (e.g. 8Ti).
    #[schemars(schema_with = "listed_quantity")]
    pub memory: Quantity,
    /// Storage the city's departments may use on the node together, as a Kubernetes quantity
    /// (e.g. 800Ti).
    #[schemars(schema_with = "listed_quantity")]
    pub storage: Quantity,
}

/// Lending of unused quota between a city's departments. It covers cpu, memory and storage;
/// `maxSystems` is never lent. A department lends only quota it does not use, to the city's
/// other departments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lending {
    /// Default share of each department's quota, in percent (0 to 100, default 0), that it may
    /// lend to the city's other departments while it does not use it.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub lend_percent: u32,
    /// Default share of its own quota, in percent (0 to 100, default 0), that a department may
    /// borrow on top of it from the city's other departments.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub borrow_percent: u32,
    /// Per-department overrides of `lendPercent` and `borrowPercent`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y.tenant == x.tenant))").message("list each tenant once"))]
    pub departments: Vec<DepartmentLending>,
}

/// A department's own lending shares, overriding the city's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentLending {
    /// Name of the Tenant (a City or County tenant of the city), e.g. nj-gaj.
    #[schemars(length(min = 1, max = 63))]
    pub tenant: String,
    /// Share of the department's quota, in percent (0 to 100), that it may lend; absent: the
    /// city's `lendPercent`. 0 keeps all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub lend_percent: Option<u32>,
    /// Share of its own quota, in percent (0 to 100), that the department may borrow on top;
    /// absent: the city's `borrowPercent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub borrow_percent: Option<u32>,
}

/// Observed state of a CityBudget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CityBudgetStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of the city's departments: its City and County tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departments: Option<u32>,
    /// Budget and use of each node listed in the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeBudgetStatus>,
    /// Quota lent between the city's departments in total (equal to the total borrowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lent: Option<ResourceAmounts>,
    /// Quota the city's departments could still borrow from each other: what is offered for
    /// lending and not yet borrowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lendable: Option<ResourceAmounts>,
    /// Use, lending and borrowing of each of the city's departments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<DepartmentBudgetStatus>,
    /// Conditions: Ready, BudgetPressure (use of a node's budget above the configured
    /// threshold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Budget and use of one node by a city's departments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBudgetStatus {
    /// Name of the CloudNode.
    pub node: String,
    /// The city's budget on the node (cpu, memory, storage), from the spec.
    #[serde(default)]
    #[schemars(schema_with = "listed_amounts")]
    pub budget: ResourceAmounts,
    /// Resources of the city's placed systems on the node.
    #[serde(default)]
    #[schemars(schema_with = "listed_amounts")]
    pub used: ResourceAmounts,
    /// Used as a percentage of the budget, per resource (cpu, memory, storage).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub utilization: BTreeMap<String, f64>,
}

/// Use, lending and borrowing of one department of a city.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentBudgetStatus {
    /// Name of the Tenant.
    pub tenant: String,
    /// Resources of the department's placed systems.
    #[serde(default)]
    #[schemars(schema_with = "listed_amounts")]
    pub used: ResourceAmounts,
    /// Quota of the department lent to the city's other departments.
    #[serde(default)]
    #[schemars(schema_with = "listed_amounts")]
    pub lent: ResourceAmounts,
    /// Quota the department borrowed from the city's other departments.
    #[serde(default)]
    #[schemars(schema_with = "listed_amounts")]
    pub borrowed: ResourceAmounts,
}

/// Longest quantity string accepted, as the shared quantity rule checks.
const QUANTITY_MAX_LENGTH: u32 = 32;

/// The shared quantity schema plus `maxLength`. The apiserver estimates the cost of a CEL rule
/// from the longest value it may see: without `maxLength` an int-or-string may be as long as a
/// whole request, and the quantity rule on three fields of up to 16 list entries exceeds the
/// CRD's cost budget (the apiserver refuses the CRD).
fn listed_quantity(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = crate::schema::quantity(generator);
    schema.insert("maxLength".into(), QUANTITY_MAX_LENGTH.into());
    schema
}

/// [`ResourceAmounts`] in a status list (one entry per node or department): int-or-string
/// quantities of bounded length, without the quantity rule, so that the CEL cost does not grow
/// with the number of entries. The operator writes these from amounts it computed itself.
fn listed_amounts(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <ResourceAmounts as JsonSchema>::json_schema(generator);
    if let Some(properties) = schema.get_mut("properties").and_then(serde_json::Value::as_object_mut) {
        for property in properties.values_mut().filter_map(serde_json::Value::as_object_mut) {
            property.remove("x-kubernetes-validations");
            property.insert("maxLength".into(), QUANTITY_MAX_LENGTH.into());
        }
    }
    schema
}
