//! GovSystem: one legacy government system to move onto the cloud. It lives in its tenant's
//! Namespace (which bears the Tenant's name); that is how a system names its tenant.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Resources;

/// Annotation a platform engineer sets on a GovSystem (with kubectl) to approve its next cutover;
/// the value names who approved. Removing it before the cutover starts revokes the approval; a
/// cutover uses it up (the operator then removes it). Approvals given through the REST API live
/// in the status store instead and are revoked there.
pub const CUTOVER_APPROVED_BY: &str = "suyun.io/cutover-approved-by";
/// Optional annotation beside [`CUTOVER_APPROVED_BY`]: why, or the change ticket it belongs to.
pub const CUTOVER_APPROVAL_REASON: &str = "suyun.io/cutover-approval-reason";
/// Label on every object the operator creates for a system (its Jobs): the systemId.
pub const SYSTEM_ID_LABEL: &str = "suyun.io/system-id";
/// Label on a migration Job: the phase it runs.
pub const PHASE_LABEL: &str = "suyun.io/phase";
/// Label on every object the operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "suyun-operator";

/// Desired state of a GovSystem.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "suyun.io",
    version = "v1alpha1",
    kind = "GovSystem",
    namespaced,
    shortname = "gsys",
    category = "suyun",
    status = "GovSystemStatus",
    doc = "A non-classified (非涉密) government system to migrate onto the cloud, in its tenant's Namespace.",
    printcolumn(name = "SystemID", type_ = "string", json_path = ".spec.systemId"),
    printcolumn(name = "Display", type_ = "string", json_path = ".spec.displayName", priority = 1),
    printcolumn(name = "Level", type_ = "integer", json_path = ".spec.securityLevel", priority = 1),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Wave", type_ = "string", json_path = ".status.wave"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.dependsOn) || !(self.systemId in self.dependsOn)").message("a system may not depend on itself").field_path(".dependsOn"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.sameNodeAs) || !(self.systemId in self.sameNodeAs)").message("list other systems, not the system itself").field_path(".sameNodeAs"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.antiAffinityWith) || !(self.systemId in self.antiAffinityWith)").message("a system cannot be kept apart from itself").field_path(".antiAffinityWith"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.sameNodeAs) || !has(self.antiAffinityWith) || self.sameNodeAs.all(s, !(s in self.antiAffinityWith))").message("a system cannot be both in sameNodeAs and in antiAffinityWith").field_path(".antiAffinityWith"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.placement) || !has(self.placement.preferredNode) || !has(self.placement.allowedNodes) || self.placement.preferredNode in self.placement.allowedNodes").message("spec.placement.preferredNode must be one of spec.placement.allowedNodes").field_path(".placement.preferredNode"))]
#[serde(rename_all = "camelCase")]
pub struct GovSystemSpec {
    /// Province-wide unique identifier: two-letter province prefix, region code, sequence, e.g.
    /// JS-320500-0042. Immutable.
    #[schemars(length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Z]{2}-[0-9]{6}-[0-9]{4,6}$')").message("systemId must look like JS-320500-0042: a two-letter province prefix, the 6-digit region code and a 4- to 6-digit sequence"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("systemId is immutable"))]
    pub system_id: String,
    /// Human-readable name, kept in Chinese, e.g. 苏州市公积金管理系统.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// Data classification: Public, Internal or Sensitive. Classified (涉密) systems may not be
    /// placed on the government cloud and are refused at admission.
    ///
    /// The classification decides where the system's data may live (data residency, see
    /// ResidencyPolicy): the system is placed only on a node that every ResidencyPolicy rule
    /// naming its classification allows; a classification that no rule names keeps the
    /// built-in default (Sensitive data stays on a node of its own city, Public and Internal
    /// data only follow locality). `residencyWaiver` records an exception.
    #[x_kube(validation = kube::core::Rule::new("self != 'Classified'").message("classification: Classified (涉密) systems may not be placed on the government cloud; allowed: Public, Internal, Sensitive"))]
    pub classification: Classification,
    /// A recorded exception to the residency policy: the system may be placed where its
    /// classification's rules would refuse it. Names who granted it and why; the operator
    /// records it in the system's journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency_waiver: Option<ResidencyWaiver>,
    /// 等保 (MLPS 2.0) level of the system, 1 to 3. Level 4 systems are not hosted on this
    /// cloud.
    #[schemars(range(min = 1))]
    #[x_kube(validation = kube::core::Rule::new("self <= 3").message("securityLevel: 等保 level 4 and above may not be hosted on the government cloud; allowed: 1, 2, 3"))]
    pub security_level: u8,
    /// CPU architecture the system runs on: Any, x86_64, or aarch64 (信创 only).
    #[serde(default)]
    pub architecture: SystemArchitecture,
    /// Resources the system needs once migrated.
    pub resources: Resources,
    /// Bytes of data to replicate during the migration, as a quantity (e.g. 500Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::quantity")]
    pub data_volume: Option<Quantity>,
    /// systemIds that must be Completed before this system starts migrating.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 32)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("list each systemId once"))]
    pub depends_on: Vec<String>,
    /// systemIds that must be placed on the same node as this system (placed together or not at
    /// all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 32)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("list each systemId once"))]
    pub same_node_as: Vec<String>,
    /// systemIds that must not be placed on the same node as this system.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 32)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("list each systemId once"))]
    pub anti_affinity_with: Vec<String>,
    /// Where the system may go, within its locality: a city or county tenant's systems go to its
    /// home node, a provincial tenant's to the provincial node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Higher priority systems are placed and moved first, 0 to 1000 (default 500).
    #[serde(default = "default_priority")]
    #[schemars(range(min = 0, max = 1000))]
    pub priority: u32,
    /// Migration strategy (the 6R model): Rehost, Replatform, Refactor, Retire or Retain.
    /// Retire and Retain systems are never moved.
    #[serde(default)]
    pub strategy: Strategy,
}

fn default_priority() -> u32 {
    500
}

/// Data classification of a system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Classification {
    /// Public information.
    Public,
    /// Internal working information.
    Internal,
    /// Sensitive (but not classified) information.
    Sensitive,
    /// Classified (涉密): never allowed on the government cloud; refused at admission.
    Classified,
}

/// A recorded exception to the residency policy for one system.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyWaiver {
    /// Who granted the waiver: a person or office, e.g. 江苏省大数据管理中心 张三.
    #[schemars(length(min = 1, max = 128))]
    pub granted_by: String,
    /// Why the waiver was granted, or the approval document or change ticket it rests on.
    #[schemars(length(min = 1, max = 512))]
    pub reason: String,
}

/// CPU architecture a system requires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SystemArchitecture {
    /// Runs on any architecture.
    #[default]
    Any,
    /// Needs x86_64.
    #[serde(rename = "x86_64")]
    X86_64,
    /// Needs aarch64 (信创).
    #[serde(rename = "aarch64")]
    Aarch64,
}

/// Placement preferences and limits of a system.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// CloudNode tried first, if allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub preferred_node: Option<String>,
    /// CloudNodes the system may go to. This narrows the locality rule, it never widens it: a
    /// city or county tenant's systems go to its home node (and to the provincial node when
    /// `allowSpillover` is set), a provincial tenant's to the provincial node. Empty means no
    /// further restriction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("list each node once"))]
    pub allowed_nodes: Vec<String>,
    /// Allow placement on the provincial node when the home city node is full.
    #[serde(default)]
    pub allow_spillover: bool,
}

/// Migration strategy (the 6R model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Strategy {
    /// Lift and shift onto cloud VMs/containers.
    #[default]
    Rehost,
    /// Move with light changes (managed database, containers).
    Replatform,
    /// Rebuild for the cloud.
    Refactor,
    /// Switch off; never moved.
    Retire,
    /// Keep where it is; never moved.
    Retain,
}

impl Strategy {
    /// Whether a system with this strategy is migrated at all.
    pub fn moves(self) -> bool {
        !matches!(self, Strategy::Retire | Strategy::Retain)
    }
}

pub use suyun_store::Phase;

/// Observed state of a GovSystem.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GovSystemStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current phase of the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// CloudNode the system is placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// MigrationWave the system belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// When the planner expects the migration to start (only for a system in a MigrationWave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<Time>,
    /// When the migration started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the migration completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// When the current phase (or its current attempt) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started_at: Option<Time>,
    /// Failed attempts of the current phase so far.
    #[serde(default)]
    pub attempts: u32,
    /// After a failed attempt: when the next attempt may start (exponential backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// Name of the Job running the current phase (Job executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Who approved the cutover, when the wave requires approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When that approval was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// The reason or ticket reference given with that approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_reason: Option<String>,
    /// The approval a cutover attempt has used (`annotation:<who>` or `store:<revision>`),
    /// until it is gone from the object and the status store: it never approves another
    /// attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_approval: Option<String>,
    /// Short machine-readable reason of the current state (e.g. InsufficientCapacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation of the current state, with numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions: Scheduled, Blocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last phase transitions of this object, oldest first (at most
    /// `TRANSITIONS_KEPT`). Written with the phase change itself, so that the journal in the
    /// status store can be completed from here after an outage of the store or a failover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// The residency waiver recorded in the system's journal: `spec.residencyWaiver` as the
    /// operator last journaled it (a change or withdrawal is journaled and copied here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency_waiver: Option<ResidencyWaiver>,
}

/// How many transitions a GovSystem's status keeps: a migration without retries makes about
/// ten, so an outage of the status store during a whole migration loses none.
pub const TRANSITIONS_KEPT: usize = 16;

/// One phase transition of a GovSystem, as recorded in its status and then journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Position among this object's transitions, from 1; never reused.
    pub sequence: u64,
    /// Phase before.
    pub from: Phase,
    /// Phase after.
    pub to: Phase,
    /// Reason of the new state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When.
    pub time: Time,
    /// Who caused it: `suyun-operator`, or the identity that approved a cutover.
    pub actor: String,
    /// For a cutover that was approved: when the approval was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// For a cutover that was approved: the reason or ticket reference given with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_reason: Option<String>,
    /// For an entry that records something other than a phase change (`from` = `to`): what it
    /// says, e.g. the reason of a residency waiver recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
