//! MigrationWave: a batch of GovSystems, chosen by labels, moved together within windows and
//! limits, by Kubernetes Jobs or by the Simulated executor.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Window;

/// Desired state of a MigrationWave.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "suyun.io",
    version = "v1alpha1",
    kind = "MigrationWave",
    shortname = "mwave",
    category = "suyun",
    status = "MigrationWaveStatus",
    doc = "A batch of GovSystems, selected by labels, migrated together within windows, concurrency and a failure budget.",
    printcolumn(name = "Order", type_ = "integer", json_path = ".spec.order"),
    printcolumn(name = "Executor", type_ = "string", json_path = ".spec.executor"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Systems", type_ = "integer", json_path = ".status.systems"),
    printcolumn(name = "Completed", type_ = "integer", json_path = ".status.completed"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "ETA", type_ = "string", json_path = ".status.eta"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("self.executor != 'Job' || has(self.runner)").message("spec.runner is required when spec.executor is Job (the default); set spec.executor: Simulated for a rehearsal without Jobs").field_path(".runner"))]
#[serde(rename_all = "camelCase")]
pub struct MigrationWaveSpec {
    /// Label selector over GovSystems (in every tenant Namespace) that belong to this wave.
    #[x_kube(validation = kube::core::Rule::new("!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? has(e.values) && size(e.values) > 0 : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))").message("selector.matchExpressions: the operator must be In or NotIn with values, or Exists or DoesNotExist without values"))]
    pub selector: LabelSelector,
    /// Waves run in ascending order: systems of a wave start only after every system of the
    /// waves with a lower order has started.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub order: u32,
    /// Nothing in the wave starts before this time, an RFC 3339 time with its offset, e.g.
    /// 2026-03-01T00:00:00+08:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::rfc3339_time")]
    pub not_before: Option<Time>,
    /// Weekly windows in which cutovers of this wave may happen (China Standard Time); none
    /// means any time. Node maintenance windows apply as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub windows: Vec<Window>,
    /// Largest number of the wave's systems migrating at the same time (at least 1).
    #[serde(default = "default_max_concurrent")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent: u32,
    /// Percentage of the wave's systems that may fail (0 to 100); when the failed share passes
    /// it, the wave pauses.
    #[serde(default = "default_failure_budget")]
    #[schemars(range(min = 0, max = 100))]
    pub failure_budget: u32,
    /// Cutover approval settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// A paused wave starts no new migration; those in progress finish their current phase.
    #[serde(default)]
    pub paused: bool,
    /// How each phase is run as a Kubernetes Job (required for the Job executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<Runner>,
    /// Job (a Kubernetes Job per phase, the default) or Simulated (phases advance after the time
    /// implied by data volume and bandwidth, divided by `timeCompression`).
    #[serde(default)]
    pub executor: Executor,
    /// For the Simulated executor: how many times faster than real time phases advance
    /// (default 3600: an hour of migration takes a second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub time_compression: Option<u32>,
    /// Attempts per phase before the system is marked Failed and rolled back (default 3).
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: u32,
}

fn default_max_concurrent() -> u32 {
    20
}

fn default_failure_budget() -> u32 {
    10
}

fn default_max_attempts() -> u32 {
    3
}

/// Cutover approval settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// When true, each system waits in AwaitingCutover until a city operator approves its
    /// cutover (annotation `suyun.io/cutover-approved-by`, or the REST API).
    #[serde(default)]
    pub required: bool,
}

/// Executor of a wave's phases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Executor {
    /// One Kubernetes Job per phase, built from `runner`.
    #[default]
    Job,
    /// No Jobs: phases advance after the time the data volume and bandwidth imply, compressed.
    Simulated,
}

/// Template of the Job that runs each phase. The Job receives `SUYUN_SYSTEM_ID`,
/// `SUYUN_PHASE`, `SUYUN_TARGET_NODE` and `SUYUN_TENANT` in its environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Runner {
    /// Container image of the migration runner.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Command (entrypoint and arguments) of the runner container (at most 64 items of at
    /// most 4096 characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Extra environment variables of the runner container (at most 128).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Time limit of each phase's Job, in seconds (default 3600).
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 604800))]
    pub timeout_seconds: u32,
    /// Per-phase overrides of command and timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseOverrides>,
}

fn default_timeout_seconds() -> u32 {
    3600
}

/// Per-phase overrides of the runner; an absent phase uses the runner's command and timeout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseOverrides {
    /// Override for Provisioning (create the target resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<PhaseOverride>,
    /// Override for Replicating (copy the data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicating: Option<PhaseOverride>,
    /// Override for CuttingOver (switch traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutting_over: Option<PhaseOverride>,
    /// Override for Verifying (check the migrated system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying: Option<PhaseOverride>,
    /// Override for the rollback Job of a failed migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<PhaseOverride>,
}

/// Override of the runner for one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseOverride {
    /// Command for this phase, replacing the runner's (at most 64 items of at most 4096
    /// characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Time limit for this phase, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub timeout_seconds: Option<u32>,
}

/// Phase of a wave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WavePhase {
    /// Not started yet (before notBefore, or waiting for earlier waves).
    #[default]
    Pending,
    /// Migrations in progress.
    Running,
    /// Paused by spec.paused or by the failure budget.
    Paused,
    /// Every system Completed (or not migrated by strategy).
    Completed,
    /// Finished with failures.
    Failed,
}

/// Observed state of a MigrationWave.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationWaveStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Phase of the wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WavePhase>,
    /// Number of systems selected.
    #[serde(default)]
    pub systems: u32,
    /// Number of systems Completed.
    #[serde(default)]
    pub completed: u32,
    /// Number of systems Failed or RolledBack.
    #[serde(default)]
    pub failed: u32,
    /// Systems by phase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub systems_by_phase: BTreeMap<String, u32>,
    /// Completed share, e.g. "42%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Planned completion of the wave's last system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Time>,
    /// Conditions: Ready, FailureBudgetExceeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

wire_names!(Executor { Job, Simulated });
wire_names!(WavePhase { Pending, Running, Paused, Completed, Failed });
