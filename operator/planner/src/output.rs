//! The plan the planner returns: plain data, `camelCase` JSON, every list sorted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::explain::Reason;
use crate::model::{Phase, Quota, Resources, Strategy, Tier};

/// Which algorithm produced a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Algorithm {
    /// [`crate::plan`]: every constraint, placement and time schedule.
    Constrained,
    /// [`crate::first_fit`]: capacity-only first-fit, no time schedule.
    FirstFit,
}

/// A complete plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Algorithm that produced it.
    pub algorithm: Algorithm,
    /// The instant the plan starts from (Unix seconds).
    pub now: i64,
    /// Local time offset used for windows, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// Number of systems in the input.
    pub systems: usize,
    /// Systems with a node in this plan: newly placed, in flight or Completed.
    pub placed: usize,
    /// Systems already in flight, kept on their node.
    pub in_flight: usize,
    /// Systems already Completed, kept on their node.
    pub completed: usize,
    /// Retire/Retain systems: never placed, and not failures.
    pub not_migrated: Vec<NotMigrated>,
    /// Systems not placed or blocked, with the reason, sorted by systemId.
    pub unplaceable: Vec<Unplaceable>,
    /// Count of unplaceable systems per reason.
    pub reasons: BTreeMap<Reason, usize>,
    /// Per wave, in wave order.
    pub waves: Vec<WaveSummary>,
    /// Last planned completion − now, hours (0 when nothing is scheduled).
    pub makespan_hours: f64,
    /// A lower bound on any schedule's makespan for this placement, hours.
    pub lower_bound_hours: f64,
    /// Per node, sorted by name.
    pub nodes: Vec<NodeAccount>,
    /// Per tenant, sorted by name.
    pub tenants: Vec<TenantAccount>,
    /// Per city budget, sorted by name.
    pub cities: Vec<CityAccount>,
    /// Systems on a node their residency rules forbid: stranded (no waiver) or waived.
    pub residency: ResidencyReport,
    /// Per placed system, sorted by systemId.
    pub assignments: Vec<Assignment>,
    /// Input problems that blocked nothing by themselves (duplicates, unknown home nodes…).
    pub warnings: Vec<String>,
}

/// A system that is never placed because of its strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotMigrated {
    /// System id.
    pub system_id: String,
    /// Retire or Retain.
    pub strategy: Strategy,
}

/// A system the plan could not place or schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unplaceable {
    /// System id.
    pub system_id: String,
    /// Its tenant's name.
    pub tenant: String,
    /// Reason code (also the `Blocked` condition reason).
    pub reason: Reason,
    /// Explanation with numbers.
    pub message: String,
}

/// One wave's share of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveSummary {
    /// Wave name.
    pub name: String,
    /// Wave order.
    pub order: i32,
    /// Earliest start allowed (Unix seconds).
    pub not_before: Option<i64>,
    /// Systems in the wave (Retire/Retain excluded).
    pub systems: usize,
    /// Of those, systems with a node.
    pub placed: usize,
    /// Earliest planned start of its systems.
    pub start: Option<i64>,
    /// Latest planned completion of its systems.
    pub end: Option<i64>,
}

/// Utilization of each resource, percent of allocatable (0–100, one decimal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Utilization {
    /// CPU, percent.
    pub cpu: f64,
    /// Memory, percent.
    pub memory: f64,
    /// Storage, percent.
    pub storage: f64,
    /// GPU, percent.
    pub gpu: f64,
}

impl Utilization {
    /// `allocated / allocatable` per resource, in percent rounded to one decimal.
    pub fn of(allocated: &Resources, allocatable: &Resources) -> Utilization {
        let pct = |used: u64, total: u64| {
            if total == 0 {
                if used == 0 { 0.0 } else { 100.0 }
            } else {
                (used as f64 * 1000.0 / total as f64).round() / 10.0
            }
        };
        Utilization {
            cpu: pct(allocated.cpu, allocatable.cpu),
            memory: pct(allocated.memory, allocatable.memory),
            storage: pct(allocated.storage, allocatable.storage),
            gpu: pct(allocated.gpu, allocatable.gpu),
        }
    }
}

/// A node's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAccount {
    /// Node name.
    pub name: String,
    /// Region code.
    pub region_code: String,
    /// Display name.
    pub display_name: String,
    /// Provincial or City.
    pub tier: Tier,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Resources allocated to systems on it (pinned and newly placed).
    pub allocated: Resources,
    /// `allocated / allocatable`, percent.
    pub utilization: Utilization,
    /// Systems on it.
    pub systems: usize,
    /// Migrations scheduled on it (new and in flight).
    pub migrations: usize,
}

/// What a tenant uses, against its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// CPU, millicores.
    pub cpu: u64,
    /// Memory, bytes.
    pub memory: u64,
    /// Storage, bytes.
    pub storage: u64,
    /// Systems.
    pub systems: u64,
}

/// A tenant's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantAccount {
    /// Tenant name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Home node name.
    pub home_node: String,
    /// Quota.
    pub quota: Quota,
    /// Used by its systems with a node in this plan.
    pub used: TenantUsage,
    /// Name of its city's budget, when it has one.
    pub budget: Option<String>,
    /// Use beyond its quota, borrowed from the city's other departments.
    pub borrowed: Resources,
    /// Its share of what the city's departments borrow, lent out of its unused quota.
    pub lent: Resources,
}

/// One node share of a city budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareAccount {
    /// Node name.
    pub node: String,
    /// What the city's departments may use of it together.
    pub budget: Resources,
    /// What they use (pinned and newly placed systems).
    pub used: Resources,
    /// `used / budget`, percent.
    pub utilization: Utilization,
}

/// A city budget's account: each level's used, lent and borrowed amounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CityAccount {
    /// CityBudget name.
    pub name: String,
    /// City region code.
    pub region_code: String,
    /// Display name.
    pub display_name: String,
    /// Its departments (tenant names), sorted.
    pub tenants: Vec<String>,
    /// Per node share, by node name.
    pub nodes: Vec<ShareAccount>,
    /// What its departments borrow from each other in total (= what is lent).
    pub borrowed: Resources,
    /// What its departments could lend in this plan (their lending limits, out of the quota
    /// their own systems leave unused).
    pub lendable: Resources,
}

/// Placed systems whose node their classification's residency rules forbid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyReport {
    /// Without a waiver: already on the node (in flight or Completed, never moved by the
    /// planner) when a rule changed. Sorted by systemId.
    pub stranded: Vec<ResidencyFinding>,
    /// With a recorded waiver. Sorted by systemId.
    pub waived: Vec<ResidencyFinding>,
}

/// One system on a node a residency rule forbids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyFinding {
    /// System id.
    pub system_id: String,
    /// Its tenant.
    pub tenant: String,
    /// The node.
    pub node: String,
    /// Its phase (input).
    pub phase: Phase,
    /// The rule (`policy/rule`).
    pub rule: String,
    /// Who granted the waiver (waived systems only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
}

/// A closed time interval, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    /// Start.
    pub start: i64,
    /// End.
    pub end: i64,
}

/// Where and when one system moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// System id.
    pub system_id: String,
    /// Node name.
    pub node: String,
    /// Wave name.
    pub wave: Option<String>,
    /// Phase it is in now (input).
    pub phase: Phase,
    /// Start of its first remaining phase; `None` when Completed or not scheduled.
    pub planned_start: Option<i64>,
    /// End of Verifying; `None` when Completed or not scheduled.
    pub planned_completion: Option<i64>,
    /// Provisioning, when still ahead.
    pub provisioning: Option<Interval>,
    /// Replicating, when still ahead.
    pub replicating: Option<Interval>,
    /// CuttingOver, when still ahead; inside the node ∩ wave windows.
    pub cutting_over: Option<Interval>,
    /// Verifying, when still ahead.
    pub verifying: Option<Interval>,
}
