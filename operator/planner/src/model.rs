//! The planner's input model: plain data, integer units, `camelCase` JSON.
//!
//! Units: cpu in millicores, memory/storage/data volume in bytes, gpu as a count, bandwidth in
//! Mbps (10⁶ bit/s), times as Unix seconds. Weekly windows are read in the plan-level
//! [`Settings::utc_offset_minutes`] (China Standard Time by default).
//!
//! Every type derives `Ord` so that the planner can sort its input canonically, which is what
//! makes the output independent of input order, duplicates included.

use serde::{Deserialize, Serialize};

/// Everything the planner needs: the cloud, the accounts, the systems and the waves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanInput {
    /// Clock, time zone and fixed phase durations.
    #[serde(default)]
    pub settings: Settings,
    /// Cloud nodes (one provincial primary plus city nodes).
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// Tenant accounts (departments and agencies).
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// Systems to move, with their current state.
    #[serde(default)]
    pub systems: Vec<System>,
    /// Migration waves.
    #[serde(default)]
    pub waves: Vec<Wave>,
    /// City budgets: how much of which nodes a city's departments may use together, and how
    /// they lend unused quota to each other. A city without one is not limited at city level.
    #[serde(default)]
    pub budgets: Vec<CityBudget>,
    /// Residency rules: where data of each classification may live. A classification no rule
    /// names keeps the built-in default ([`ResidencyRule::builtin`]).
    #[serde(default)]
    pub residency: Vec<ResidencyRule>,
}

/// Planner settings. "Now" is an input: the planner never reads a clock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// The instant the plan starts from (Unix seconds); nothing is scheduled before it.
    pub now: i64,
    /// Offset of local time from UTC in minutes, used to read weekly windows (480 = UTC+8).
    pub utc_offset_minutes: i32,
    /// Fixed duration of the Provisioning phase, minutes (default 30).
    pub provisioning_minutes: u32,
    /// Fixed duration of the CuttingOver phase, minutes (default 60); it must fit in a window.
    pub cutover_minutes: u32,
    /// Fixed duration of the Verifying phase, minutes (default 30).
    pub verification_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            now: 0,
            utc_offset_minutes: 480,
            provisioning_minutes: 30,
            cutover_minutes: 60,
            verification_minutes: 30,
        }
    }
}

/// An amount of each schedulable resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu: u64,
    /// Memory in bytes.
    pub memory: u64,
    /// Storage in bytes.
    pub storage: u64,
    /// Number of GPUs.
    pub gpu: u64,
}

impl Resources {
    /// Component-wise sum, saturating.
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu: self.cpu.saturating_add(other.cpu),
            memory: self.memory.saturating_add(other.memory),
            storage: self.storage.saturating_add(other.storage),
            gpu: self.gpu.saturating_add(other.gpu),
        }
    }

    /// Component-wise difference, saturating at zero.
    pub fn minus(self, other: Resources) -> Resources {
        Resources {
            cpu: self.cpu.saturating_sub(other.cpu),
            memory: self.memory.saturating_sub(other.memory),
            storage: self.storage.saturating_sub(other.storage),
            gpu: self.gpu.saturating_sub(other.gpu),
        }
    }

    /// Whether every component of `self` is at most the same component of `limit`.
    pub fn fits_in(self, limit: Resources) -> bool {
        self.cpu <= limit.cpu && self.memory <= limit.memory && self.storage <= limit.storage && self.gpu <= limit.gpu
    }

    /// Whether these amounts fit on one machine with `free` free: cpu, memory and gpu (storage
    /// is not a machine's).
    pub fn fits_on_machine(self, free: Resources) -> bool {
        self.cpu <= free.cpu && self.memory <= free.memory && self.gpu <= free.gpu
    }
}

/// A weekly recurring time window in local time ([`Settings::utc_offset_minutes`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Days the window opens on: 0 = Monday … 6 = Sunday. Empty means every day.
    #[serde(default)]
    pub days: Vec<u8>,
    /// Opening time, minutes after local midnight (0–1439).
    pub start_minute: u32,
    /// Length in minutes; may run past midnight into the next day.
    pub duration_minutes: u32,
}

/// Tier of a cloud node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// The provincial primary node (省级主节点).
    Provincial,
    /// A city backbone node (市级主干节点).
    City,
}

/// A CPU architecture a node offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// x86-64.
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit ARM (信创 hardware).
    #[serde(rename = "aarch64")]
    Aarch64,
}

/// The architecture a system needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ArchitectureRequirement {
    /// Runs anywhere.
    #[default]
    Any,
    /// Needs x86-64.
    #[serde(rename = "x86_64")]
    X86_64,
    /// Needs aarch64 (信创).
    #[serde(rename = "aarch64")]
    Aarch64,
}

/// One cloud node of the province.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Unique name (the CloudNode object name).
    pub name: String,
    /// Provincial primary or city backbone.
    pub tier: Tier,
    /// GB/T 2260 administrative division code, e.g. `320500`.
    pub region_code: String,
    /// Human name, e.g. `苏州市`.
    #[serde(default)]
    pub display_name: String,
    /// The provincial node a city node spills over to; when absent, the provincial node
    /// whose region code shares the first two digits.
    #[serde(default)]
    pub parent: Option<String>,
    /// Allocatable resources, already (capacity − reserved) × overcommit.
    #[serde(default)]
    pub allocatable: Resources,
    /// Highest 等保 level the node is certified for (1–3).
    #[serde(default = "default_security_level")]
    pub security_level: u8,
    /// Architectures the node offers.
    #[serde(default = "default_architectures")]
    pub architectures: Vec<Architecture>,
    /// Migrations the node runs at once; 0 means it takes no new system.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_migrations: u32,
    /// Replication bandwidth into the node, Mbps, shared by its concurrent migrations.
    #[serde(default = "default_bandwidth")]
    pub migration_bandwidth_mbps: u64,
    /// Windows in which cutovers may happen; empty means any time.
    #[serde(default)]
    pub maintenance_windows: Vec<Window>,
    /// A cordoned node keeps what it has and takes nothing new.
    #[serde(default)]
    pub cordoned: bool,
    /// The node's member cluster cannot be reached: like a cordon, it keeps what it has and
    /// takes nothing new until it is back.
    #[serde(default)]
    pub unreachable: bool,
    /// What each of the node's machines has free (cpu, memory and gpu; storage is not
    /// per-machine). A system is placed only where one machine can hold its request: a sum
    /// over machines hides fragmentation. Empty: not known (declared capacity), not checked.
    #[serde(default)]
    pub machines: Vec<Resources>,
}

fn default_security_level() -> u8 {
    3
}
fn default_architectures() -> Vec<Architecture> {
    vec![Architecture::X86_64]
}
fn default_concurrency() -> u32 {
    8
}
fn default_bandwidth() -> u64 {
    1000
}

/// Administrative level of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TenantLevel {
    /// A provincial department: its systems go to the provincial node.
    Provincial,
    /// A city department: its systems go to its city node.
    City,
    /// A county department: its systems go to its city node.
    County,
}

/// A tenant's quota. Every limit is enforced together with node capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Quota {
    /// CPU, millicores.
    pub cpu: u64,
    /// Memory, bytes.
    pub memory: u64,
    /// Storage, bytes.
    pub storage: u64,
    /// Number of systems (Retire/Retain systems do not count).
    pub max_systems: u64,
}

/// A department or agency account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Unique name (also the namespace of its systems).
    pub name: String,
    /// Human name, e.g. `江苏省教育厅`.
    #[serde(default)]
    pub display_name: String,
    /// Provincial, City or County.
    pub level: TenantLevel,
    /// Region code of the tenant.
    #[serde(default)]
    pub region_code: String,
    /// Name of the node its systems belong on.
    pub home_node: String,
    /// Quota.
    #[serde(default)]
    pub quota: Quota,
    /// Highest 等保 level the tenant is cleared for (informational for the planner).
    #[serde(default = "default_security_level")]
    pub security_level: u8,
}

/// Where a system may go.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Placement {
    /// Tried first when it is otherwise eligible.
    pub preferred_node: Option<String>,
    /// When not empty, the system goes only to these nodes (on top of locality).
    pub allowed_nodes: Vec<String>,
    /// A city/county system may spill over to the provincial node when its home cannot take it.
    pub allow_spillover: bool,
}

/// How a system is moved (the 5 R's used here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Lift and shift.
    #[default]
    Rehost,
    /// Move with light changes.
    Replatform,
    /// Rebuild for the cloud.
    Refactor,
    /// Switched off: never placed.
    Retire,
    /// Stays where it is: never placed.
    Retain,
}

impl Strategy {
    /// The strategy's name as serialized (`Retire`), which is also the reason the operator
    /// writes for a system that is never migrated.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rehost => "Rehost",
            Strategy::Replatform => "Replatform",
            Strategy::Refactor => "Refactor",
            Strategy::Retire => "Retire",
            Strategy::Retain => "Retain",
        }
    }

    /// Whether systems with this strategy are moved at all.
    pub fn migrates(self) -> bool {
        !matches!(self, Strategy::Retire | Strategy::Retain)
    }
}

/// The phase of a GovSystem (DESIGN §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Not yet planned.
    #[default]
    Pending,
    /// Planned onto a node, not started.
    Scheduled,
    /// Target environment being built.
    Provisioning,
    /// Data being copied.
    Replicating,
    /// Waiting for a cutover approval.
    AwaitingCutover,
    /// Traffic being switched.
    CuttingOver,
    /// Checks after the switch.
    Verifying,
    /// Done.
    Completed,
    /// A phase failed; it will be retried.
    Failed,
    /// Reverted after a failed cutover; it will be retried.
    RolledBack,
    /// A constraint could not be met.
    Blocked,
}

impl Phase {
    /// Whether a system in this phase is already on its node and keeps it (incremental
    /// planning): every active phase, Failed and RolledBack (retried in place), Completed.
    pub fn is_pinned(self) -> bool {
        !matches!(self, Phase::Pending | Phase::Scheduled | Phase::Blocked)
    }
}

/// How sensitive a system's data is (Classified data is never on this cloud).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Classification {
    /// Public information.
    Public,
    /// Internal working information.
    #[default]
    Internal,
    /// Sensitive (敏感) information.
    Sensitive,
}

impl Classification {
    /// The name as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "Public",
            Classification::Internal => "Internal",
            Classification::Sensitive => "Sensitive",
        }
    }
}

/// A recorded exception to the residency rules for one system.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiver {
    /// Who granted it.
    pub granted_by: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// One legacy system to move.
///
/// `system_id` is the first field so that the derived order sorts by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct System {
    /// Unique id, e.g. `JS-320500-0042`.
    pub system_id: String,
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Name of the owning tenant.
    pub tenant: String,
    /// Human name.
    #[serde(default)]
    pub display_name: String,
    /// 等保 level (1–3).
    #[serde(default = "default_system_level")]
    pub security_level: u8,
    /// Data classification: decides where its data may live ([`ResidencyRule`]).
    #[serde(default)]
    pub classification: Classification,
    /// A recorded exception: the residency rules do not restrict this system.
    #[serde(default)]
    pub residency_waiver: Option<Waiver>,
    /// Architecture needed.
    #[serde(default)]
    pub architecture: ArchitectureRequirement,
    /// Resources needed on the target node.
    #[serde(default)]
    pub resources: Resources,
    /// Bytes to replicate.
    #[serde(default)]
    pub data_volume: u64,
    /// Systems that must be Completed before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Systems that must share this one's node (transitively).
    #[serde(default)]
    pub same_node_as: Vec<String>,
    /// Systems that must not share this one's node.
    #[serde(default)]
    pub anti_affinity_with: Vec<String>,
    /// Placement restrictions and preferences.
    #[serde(default)]
    pub placement: Placement,
    /// 0–1000; higher is placed (and scheduled) first.
    #[serde(default)]
    pub priority: u32,
    /// Migration strategy; Retire and Retain are never placed.
    #[serde(default)]
    pub strategy: Strategy,
    /// Name of the wave it moves with, if any.
    #[serde(default)]
    pub wave: Option<String>,
    /// Current phase.
    #[serde(default)]
    pub phase: Phase,
    /// Current node: kept when the phase is pinned, tried first otherwise.
    #[serde(default)]
    pub node: Option<String>,
}

fn default_system_level() -> u8 {
    2
}

/// A batch of systems moved together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// Unique name.
    pub name: String,
    /// Waves of higher order start after every system of lower-order waves has started.
    #[serde(default)]
    pub order: i32,
    /// No system of the wave starts before this instant (Unix seconds).
    #[serde(default)]
    pub not_before: Option<i64>,
    /// Windows in which the wave's cutovers may happen; empty means any time.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// Systems of the wave migrating at once; `None` is unlimited, 0 pauses the wave.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// Amounts a budget limits: cpu, memory and storage (GPUs and system counts are not budgeted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Limit {
    /// CPU, millicores.
    pub cpu: u64,
    /// Memory, bytes.
    pub memory: u64,
    /// Storage, bytes.
    pub storage: u64,
}

impl Limit {
    /// As [`Resources`], no GPU.
    pub fn resources(self) -> Resources {
        Resources { cpu: self.cpu, memory: self.memory, storage: self.storage, gpu: 0 }
    }
}

/// A city's share of one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeShare {
    /// Node name.
    pub node: String,
    /// What the city's departments may use of it together.
    #[serde(flatten)]
    pub limit: Limit,
}

/// Lending limits of one department, overriding the city's defaults.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentLending {
    /// Tenant name.
    pub tenant: String,
    /// Share of its quota it may lend, percent.
    #[serde(default)]
    pub lend_percent: Option<u32>,
    /// Share of its own quota it may borrow on top, percent.
    #[serde(default)]
    pub borrow_percent: Option<u32>,
}

/// How a city's departments lend unused quota to each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lending {
    /// Share of each department's quota it may lend, percent (0–100).
    pub lend_percent: u32,
    /// Share of its own quota each department may borrow on top, percent (0–100).
    pub borrow_percent: u32,
    /// Per-department overrides.
    pub departments: Vec<DepartmentLending>,
}

/// A city's budget: the nodes its departments may use, how much of each together, and lending.
///
/// Its departments are the City tenants of its region code and the County tenants whose code
/// shares its first four digits ([`CityBudget::covers`]). They may use only the nodes listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CityBudget {
    /// Unique name (the CityBudget object name).
    pub name: String,
    /// City-level region code, e.g. `320100`.
    pub region_code: String,
    /// Human name, e.g. `南京市`.
    #[serde(default)]
    pub display_name: String,
    /// The nodes its departments may use, and how much of each.
    #[serde(default)]
    pub nodes: Vec<NodeShare>,
    /// Lending between its departments.
    #[serde(default)]
    pub lending: Lending,
}

impl CityBudget {
    /// Whether a tenant of `level` and `region_code` is one of the departments of a budget for
    /// `city_code`: a City tenant of that code, or a County tenant sharing its first four
    /// digits; never a Provincial tenant.
    pub fn covers(city_code: &str, level: TenantLevel, region_code: &str) -> bool {
        match level {
            TenantLevel::Provincial => false,
            TenantLevel::City => region_code == city_code,
            TenantLevel::County => region_code.len() == 6 && region_code.get(..4) == city_code.get(..4),
        }
    }
}

/// How far from its tenant's region data may live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RegionScope {
    /// Nodes whose region code shares the first four digits with the tenant's: a city or
    /// county department's city node, a provincial department's provincial node.
    #[default]
    OwnCity,
    /// Nodes whose region code shares the first two digits with the tenant's.
    OwnProvince,
    /// Any node.
    Anywhere,
}

impl RegionScope {
    /// The name as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionScope::OwnCity => "OwnCity",
            RegionScope::OwnProvince => "OwnProvince",
            RegionScope::Anywhere => "Anywhere",
        }
    }
}

/// Where data of one classification may live.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyRule {
    /// Qualified name, `policy/rule`, used in refusals.
    pub name: String,
    /// The classification it governs.
    pub classification: Classification,
    /// How far from the tenant's region.
    #[serde(default)]
    pub region: RegionScope,
    /// Node tiers allowed; empty = any.
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

impl ResidencyRule {
    /// Name of the built-in rule.
    pub const BUILTIN: &'static str = "builtin/sensitive-stays-in-own-city";

    /// The built-in default, in force while no rule names Sensitive: Sensitive data stays on
    /// a node of its own city.
    pub fn builtin() -> ResidencyRule {
        ResidencyRule {
            name: Self::BUILTIN.to_owned(),
            classification: Classification::Sensitive,
            region: RegionScope::OwnCity,
            tiers: Vec::new(),
        }
    }
}
