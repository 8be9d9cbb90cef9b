//! ResidencyPolicy: where data of each classification may live (数据驻留), as rules over the
//! region and tier of the CloudNode a GovSystem is placed on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cloud_node::Tier;
use super::gov_system::Classification;

/// Desired state of a ResidencyPolicy.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "suyun.io",
    version = "v1alpha1",
    kind = "ResidencyPolicy",
    plural = "residencypolicies",
    shortname = "respol",
    category = "suyun",
    status = "ResidencyPolicyStatus",
    doc = "Where data of each classification may live (数据驻留). Rules of every ResidencyPolicy apply together; a classification that no rule names keeps the built-in default (Sensitive data stays on a node of its own city; Public and Internal data are not restricted beyond locality).",
    printcolumn(
        name = "Stranded",
        type_ = "integer",
        json_path = ".status.strandedCount",
        description = "Systems on a node a rule of this policy now forbids, without a waiver"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyPolicySpec {
    /// The policy's rules. A system may be placed only on a node that every rule naming its
    /// classification allows (rules of all ResidencyPolicies together), unless it carries
    /// `spec.residencyWaiver`.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y.name == x.name))").message("rules: give each rule a name of its own within the policy (a name is used twice)"))]
    pub rules: Vec<ResidencyRule>,
}

/// Where data of one classification may live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyRule {
    /// Name of the rule, unique within the policy: a DNS label (lowercase letters, digits and
    /// '-'), e.g. sensitive-stays-in-city. Status and Events name the rule by it.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("rules[].name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. sensitive-stays-in-city"))]
    pub name: String,
    /// Data classification the rule applies to (a GovSystem's `spec.classification`): Public,
    /// Internal or Sensitive. Classified (涉密) data is never on this cloud, so no rule names
    /// it.
    #[x_kube(validation = kube::core::Rule::new("self != 'Classified'").message("rules[].classification: Classified (涉密) data is never on this cloud, so no rule can place it; allowed: Public, Internal, Sensitive"))]
    pub classification: Classification,
    /// Which nodes may hold the data, by their region code compared with that of the system's
    /// tenant. OwnCity: the same first four digits (a county or city department's city node, a
    /// provincial department's provincial node). OwnProvince: the same first two digits (any
    /// node of the province). Anywhere: any node.
    pub region: ResidencyRegion,
    /// CloudNode tiers (Provincial, City) allowed to hold the data; empty: any tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("list each tier once"))]
    pub tiers: Vec<Tier>,
}

/// Which nodes' regions may hold a system's data, compared with the GB/T 2260 code of the
/// system's tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ResidencyRegion {
    /// Nodes whose region code has the same first four digits as the tenant's: a county or
    /// city department's city node, a provincial department's provincial node.
    OwnCity,
    /// Nodes whose region code has the same first two digits as the tenant's: any node of the
    /// province.
    OwnProvince,
    /// Any node.
    Anywhere,
}

/// Observed state of a ResidencyPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyPolicyStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Systems already on a node that a rule of this policy now forbids, without a residency
    /// waiver (at most 100 are listed; `strandedCount` counts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stranded: Vec<StrandedSystem>,
    /// Number of stranded systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stranded_count: Option<u32>,
    /// Conditions: Ready, StrandsSystems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A system on a node that a rule of the policy forbids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrandedSystem {
    /// The system's `spec.systemId`.
    pub system_id: String,
    /// Namespace of the GovSystem (its tenant).
    pub namespace: String,
    /// CloudNode the system is on.
    pub node: String,
    /// Name of the rule that forbids it there.
    pub rule: String,
}

wire_names!(ResidencyRegion { OwnCity, OwnProvince, Anywhere });
