//! Tenant: a department or agency account on the cloud; the operator provisions a Namespace of
//! the same name with quota, limits, network isolation and access for its owners.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ResourceAmounts;

/// Desired state of a Tenant.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "suyun.io",
    version = "v1alpha1",
    kind = "Tenant",
    shortname = "gtenant",
    category = "suyun",
    status = "TenantStatus",
    doc = "A department or agency account (e.g. 江苏省教育厅) on the government cloud. Its systems live in the Namespace named after it.",
    printcolumn(name = "Display", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Level", type_ = "string", json_path = ".spec.level"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.regionCode"),
    printcolumn(name = "Home", type_ = "string", json_path = ".spec.homeNode"),
    printcolumn(name = "Systems", type_ = "integer", json_path = ".status.used.systems"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it becomes the tenant's Namespace name"),
    validation = kube::core::Rule::new("self.metadata.name != 'default' && !self.metadata.name.startsWith('kube-')").message("metadata.name: default and kube-* are the cluster's own Namespaces; a Tenant may not take one over"),
    validation = kube::core::Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS label (lowercase letters, digits and '-', no dots): it becomes the tenant's Namespace name"),
)]
#[x_kube(validation = kube::core::Rule::new("self.level != 'Provincial' || self.regionCode.endsWith('0000')").message("a Provincial tenant has a province-level code ending in 0000, e.g. 320000").field_path(".regionCode"))]
#[x_kube(validation = kube::core::Rule::new("self.level == 'Provincial' || !self.regionCode.endsWith('0000')").message("a City or County tenant has a city- or county-level code (not ending in 0000), e.g. 320100").field_path(".regionCode"))]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name of the department or agency, kept in Chinese, e.g. 江苏省教育厅.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// Administrative level: Provincial, City or County.
    pub level: TenantLevel,
    /// GB/T 2260 code of the tenant's region: six digits, e.g. 320000 for a provincial
    /// department, 320500 for a 苏州市 department.
    #[schemars(length(max = 6))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[1-9][0-9]{5}$')").message("regionCode must be a 6-digit GB/T 2260 administrative division code, e.g. 320100"))]
    pub region_code: String,
    /// Name of the CloudNode the tenant's systems are placed on: the provincial node for a
    /// Provincial tenant, the city node for a City or County tenant.
    #[schemars(length(min = 1, max = 63))]
    pub home_node: String,
    /// Resource quota of the tenant across all its systems.
    pub quota: TenantQuota,
    /// Users and groups who administer the tenant's Namespace (bound to the
    /// `suyun-tenant-admin` ClusterRole).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self.all(o, self.exists_one(p, p.kind == o.kind && p.name == o.name))").message("list each owner once"))]
    pub owners: Vec<Owner>,
    /// Highest 等保 (MLPS 2.0) level of the tenant's systems, 1 to 3.
    #[schemars(range(min = 1, max = 3))]
    pub security_level: u8,
}

/// Administrative level of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TenantLevel {
    /// A provincial department or agency (省直部门).
    Provincial,
    /// A city department (市级部门).
    City,
    /// A county or district department (县区部门), hosted on its city's node.
    County,
}

/// Quota of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuota {
    /// CPU cores, as a Kubernetes quantity.
    #[schemars(schema_with = "crate::schema::quantity")]
    pub cpu: Quantity,
    /// Memory, as a Kubernetes quantity (e.g. 512Gi).
    #[schemars(schema_with = "crate::schema::quantity")]
    pub memory: Quantity,
    /// Storage, as a Kubernetes quantity (e.g. 50Ti).
    #[schemars(schema_with = "crate::schema::quantity")]
    pub storage: Quantity,
    /// Largest number of systems the tenant may have placed (0 or more).
    #[schemars(range(min = 0, max = 100000))]
    pub max_systems: u32,
}

/// A user or group who administers a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// User or Group.
    pub kind: OwnerKind,
    /// User name or group name as the cluster's authenticator reports it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kind of an owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OwnerKind {
    /// A single user.
    User,
    /// A group of users.
    Group,
}

/// Observed state of a Tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Namespace provisioned for the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Quota used by the tenant's placed systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<TenantUsage>,
    /// Conditions: Ready, QuotaExceeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Quota used by a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// CPU used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Storage used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// Systems placed.
    #[serde(default)]
    pub systems: u32,
    /// Quota lent to the city's other departments (CityBudget lending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lent: Option<ResourceAmounts>,
    /// Quota borrowed from the city's other departments (CityBudget lending), on top of
    /// `spec.quota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowed: Option<ResourceAmounts>,
}

wire_names!(TenantLevel { Provincial, City, County });
