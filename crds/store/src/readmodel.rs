//! The status read-model: records the operator publishes to the status-store etcd and the
//! REST apiserver serves to city operators.
//!
//! # Key layout
//!
//! Every key lives under one versioned prefix, `/suyun/v1/` by default ([`DEFAULT_PREFIX`];
//! configurable, so several provinces or test runs can share one etcd). Values are JSON
//! (`camelCase`) of the types below.
//!
//! ```text
//! <prefix>nodes/<name>                          NodeRecord        written by the operator
//! <prefix>tenants/<name>                        TenantRecord      written by the operator
//! <prefix>systems/<systemId>                    SystemRecord      written by the operator
//! <prefix>waves/<name>                          WaveRecord        written by the operator
//! <prefix>budgets/<regionCode>                  BudgetRecord      written by the operator
//! <prefix>journal/<systemId>/<sequence:020>     JournalEntry      appended by the operator
//! <prefix>approvals/<systemId>                  ApprovalRecord    written by the apiserver
//! <prefix>leader                                LeaderRecord      the operator's fence key
//! ```
//!
//! * Every operator write is one etcd transaction guarded by the leader key (its value and its
//!   create revision), so a deposed leader's writes are refused.
//! * Journal sequences are zero-padded to 20 digits so that etcd's byte order is their order;
//!   entries are never rewritten.
//! * Every record names the region code (GB/T 2260) that scopes it: a city operator sees a
//!   record when its region is the city's code or, for a city code (`xxxx00`), one of the
//!   city's counties (same first four digits). See [`region_in_scope`].
//! * System ids and object names never contain `/` (Kubernetes names and the `systemId`
//!   pattern forbid it), so a key splits unambiguously.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default key prefix (version 1 of the layout).
pub const DEFAULT_PREFIX: &str = "/suyun/v1/";

/// Width of a journal sequence number in its key.
pub const SEQUENCE_WIDTH: usize = 20;

/// Whether `code` is a GB/T 2260 region code: exactly six ASCII digits.
pub fn is_region_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `region` is visible to the region-code scope `scope`: the same code, or, when
/// `scope` is a city (`xxxx00`, not a province `xx0000`), one of that city's counties.
///
/// Both must be region codes ([`is_region_code`]): a record whose region is anything else
/// (it came from the store, so it may be malformed) is in no region scope. The comparison is
/// on bytes, so no input can make it panic.
pub fn region_in_scope(region: &str, scope: &str) -> bool {
    if !is_region_code(region) || !is_region_code(scope) {
        return false;
    }
    if region == scope {
        return true;
    }
    let (region, scope) = (region.as_bytes(), scope.as_bytes());
    let is_city = scope[4..] == *b"00" && scope[2..] != *b"0000";
    is_city && region[..4] == scope[..4]
}

/// Amounts of each resource in integer units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceAmounts {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Storage in bytes.
    pub storage_bytes: u64,
    /// GPUs.
    pub gpu: u64,
}

/// Share of each resource in use, in percent (0–100, may pass 100 when overcommitted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Utilization {
    /// CPU, percent of allocatable.
    pub cpu: f64,
    /// Memory, percent of allocatable.
    pub memory: f64,
    /// Storage, percent of allocatable.
    pub storage: f64,
    /// GPUs, percent of allocatable (0 when the node has none).
    pub gpu: f64,
}

impl Utilization {
    /// Percent of `allocatable` that `allocated` uses, per resource (0 where nothing is
    /// allocatable), rounded to one decimal.
    pub fn of(allocated: ResourceAmounts, allocatable: ResourceAmounts) -> Utilization {
        fn pct(used: u64, total: u64) -> f64 {
            if total == 0 { 0.0 } else { (used as f64 * 1000.0 / total as f64).round() / 10.0 }
        }
        Utilization {
            cpu: pct(allocated.cpu_millis, allocatable.cpu_millis),
            memory: pct(allocated.memory_bytes, allocatable.memory_bytes),
            storage: pct(allocated.storage_bytes, allocatable.storage_bytes),
            gpu: pct(allocated.gpu, allocatable.gpu),
        }
    }
}

/// One status condition, summarised (no generation or transition time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionSummary {
    /// Condition type, e.g. `Ready`, `CapacityPressure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// PascalCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

/// A cloud node (`nodes/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// CloudNode name.
    pub name: String,
    /// Human name, e.g. `苏州市`.
    #[serde(default)]
    pub display_name: String,
    /// `Provincial` or `City`.
    pub tier: String,
    /// GB/T 2260 region code; scopes the record.
    pub region_code: String,
    /// Effective allocatable: (capacity − reserved) × overcommit.
    #[serde(default)]
    pub allocatable: ResourceAmounts,
    /// Sum of the resources of the systems placed on the node.
    #[serde(default)]
    pub allocated: ResourceAmounts,
    /// `allocated` as a share of `allocatable`.
    #[serde(default)]
    pub utilization: Utilization,
    /// Number of systems placed on the node, by phase.
    #[serde(default)]
    pub systems_by_phase: BTreeMap<String, u64>,
    /// Migrations running on the node now.
    #[serde(default)]
    pub active_migrations: u32,
    /// Whether the node's `Ready` condition is `True`.
    #[serde(default)]
    pub ready: bool,
    /// The node's conditions.
    #[serde(default)]
    pub conditions: Vec<ConditionSummary>,
    /// When the node's use of each resource is forecast to exceed its allocatable, at the
    /// planned migration pace and the operator's growth rate; absent before the first plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_out: Option<RunOut>,
}

/// A node's forecast run-out dates (the operator's, after every plan; `suyunctl forecast`
/// answers the same for any growth rate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunOut {
    /// Growth of what the systems use once migrated, percent per year (compounded).
    pub growth_percent_per_year: f64,
    /// How far ahead the dates were searched, days.
    pub horizon_days: u32,
    /// When cpu runs out (RFC 3339); absent: not within the horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// When memory runs out (RFC 3339); absent: not within the horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// When storage runs out (RFC 3339); absent: not within the horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

/// Quota amounts of a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct QuotaAmounts {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Storage in bytes.
    pub storage_bytes: u64,
    /// Number of systems.
    pub systems: u64,
}

/// A tenant: a department or agency account (`tenants/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantRecord {
    /// Tenant name (also its namespace).
    pub name: String,
    /// Human name, e.g. `江苏省教育厅`.
    #[serde(default)]
    pub display_name: String,
    /// `Provincial`, `City` or `County`.
    pub level: String,
    /// GB/T 2260 region code; scopes the record and the tenant's systems.
    pub region_code: String,
    /// Node its systems belong on.
    pub home_node: String,
    /// Quota.
    #[serde(default)]
    pub quota: QuotaAmounts,
    /// Quota used by the systems placed.
    #[serde(default)]
    pub used: QuotaAmounts,
    /// Whether the tenant's `Ready` condition is `True`.
    #[serde(default)]
    pub ready: bool,
}

/// Cutover approval state of a system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalState {
    /// Whether the system's wave requires an approval before cutover.
    #[serde(default)]
    pub required: bool,
    /// Identity that approved, once approved.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// When it was approved (RFC 3339).
    #[serde(default)]
    pub approved_at: Option<String>,
}

/// A government system being moved (`systems/<systemId>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemRecord {
    /// Unique id, e.g. `JS-320500-0042`.
    pub system_id: String,
    /// GovSystem object name.
    #[serde(default)]
    pub name: String,
    /// Tenant (= namespace) that owns it.
    pub tenant: String,
    /// Human name.
    #[serde(default)]
    pub display_name: String,
    /// Region code of its tenant; scopes the record.
    pub region_code: String,
    /// 等保 level (1–3).
    #[serde(default)]
    pub security_level: u8,
    /// Migration phase, e.g. `Scheduled`, `AwaitingCutover`, `Completed`.
    pub phase: String,
    /// Target node.
    #[serde(default)]
    pub node: Option<String>,
    /// Wave it moves with.
    #[serde(default)]
    pub wave: Option<String>,
    /// Planned start (RFC 3339).
    #[serde(default)]
    pub planned_start: Option<String>,
    /// When the migration started (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it completed (RFC 3339).
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Attempts of the current phase.
    #[serde(default)]
    pub attempts: u32,
    /// PascalCase reason of the last condition change (e.g. `InsufficientCapacity`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// Cutover approval state.
    #[serde(default)]
    pub approval: ApprovalState,
    /// Status conditions (`Scheduled`, `CutoverApproved`, …), summarised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionSummary>,
}

/// A migration wave (`waves/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveRecord {
    /// Wave name.
    pub name: String,
    /// Lower orders start first.
    #[serde(default)]
    pub order: i32,
    /// `Pending`, `Running`, `Paused`, `Completed` or `Failed`.
    pub phase: String,
    /// `Job` or `Simulated`.
    #[serde(default)]
    pub executor: String,
    /// Systems of the wave by region code, then by phase: the apiserver shows each city its
    /// own share only.
    #[serde(default)]
    pub counts_by_region: BTreeMap<String, BTreeMap<String, u64>>,
    /// Estimated completion of the whole wave (RFC 3339).
    #[serde(default)]
    pub eta: Option<String>,
}

/// Amounts of the resources a city budget covers (no GPUs), in integer units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BudgetAmounts {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Storage in bytes.
    pub storage_bytes: u64,
}

/// Share of each budgeted resource in use, in percent of the budget (one decimal; may pass
/// 100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BudgetUtilization {
    /// CPU, percent of the budget.
    pub cpu: f64,
    /// Memory, percent of the budget.
    pub memory: f64,
    /// Storage, percent of the budget.
    pub storage: f64,
}

/// A city's budget on one cloud node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetNode {
    /// CloudNode name.
    pub node: String,
    /// The node's human name, e.g. `南京市`, when the node exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_display_name: Option<String>,
    /// What the city's departments may use of the node together.
    #[serde(default)]
    pub budget: BudgetAmounts,
    /// What their placed systems use of it.
    #[serde(default)]
    pub used: BudgetAmounts,
    /// `used` as a share of `budget`.
    #[serde(default)]
    pub utilization: BudgetUtilization,
}

/// One department (tenant) of a city budget: its use, and what it lends and borrows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetDepartment {
    /// Tenant name.
    pub tenant: String,
    /// Human name, e.g. `南京市公安局`.
    #[serde(default)]
    pub display_name: String,
    /// What its placed systems use.
    #[serde(default)]
    pub used: BudgetAmounts,
    /// Of its unused quota, what the city's other departments borrow.
    #[serde(default)]
    pub lent: BudgetAmounts,
    /// Its use beyond its own quota, borrowed from the city's other departments.
    #[serde(default)]
    pub borrowed: BudgetAmounts,
}

/// A city's budget (`budgets/<regionCode>`): what the city's departments may use of which
/// nodes together, what they use, and what they lend each other. One per city, keyed by the
/// city's region code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetRecord {
    /// CityBudget name.
    pub name: String,
    /// GB/T 2260 code of the city (`xxxx00`); scopes the record and names its key.
    pub region_code: String,
    /// Human name of the city, e.g. `南京市`.
    #[serde(default)]
    pub display_name: String,
    /// The city's budget on each node, by node name.
    #[serde(default)]
    pub nodes: Vec<BudgetNode>,
    /// What the city's departments borrow from each other in total (equal to what they lend).
    #[serde(default)]
    pub borrowed: BudgetAmounts,
    /// What the departments could still borrow from each other: what is offered for lending
    /// and not yet borrowed (offered − `borrowed`, never below zero).
    #[serde(default)]
    pub lendable: BudgetAmounts,
    /// The city's departments (its City and County tenants), by tenant name.
    #[serde(default)]
    pub departments: Vec<BudgetDepartment>,
}

/// One phase transition of a system (`journal/<systemId>/<sequence>`), append-only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// The system.
    pub system_id: String,
    /// Region code of the system; scopes the entry.
    pub region_code: String,
    /// Position in the system's journal (assigned by the publisher, from 1).
    #[serde(default)]
    pub sequence: u64,
    /// Phase before.
    pub from: String,
    /// Phase after.
    pub to: String,
    /// PascalCase reason.
    #[serde(default)]
    pub reason: String,
    /// When (RFC 3339).
    pub time: String,
    /// Who caused it: `suyun-operator`, or the identity that approved a cutover.
    pub actor: String,
    /// For a cutover that was approved: when the approval was given (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    /// For a cutover that was approved: the reason or ticket reference given with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_reason: Option<String>,
    /// For an entry that records something other than a phase change (`from` = `to`): what it
    /// says, e.g. a residency waiver's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Uid of the GovSystem object whose transition this is (a `systemId` outlives an object
    /// that is deleted and created again).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The transition's position among that object's transitions (`status.transitions`).
    #[serde(default)]
    pub transition: u64,
    /// Transitions of the object that were lost before this one (more than the status keeps
    /// happened while the status store was unreachable); 0 normally.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed: u64,
    /// Hex SHA-256 of the previous entry's stored bytes; empty for the first entry. An entry
    /// edited or removed breaks the chain.
    #[serde(default)]
    pub prev: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `to` of the entry that closes the journal of a deleted system.
pub const DELETED: &str = "Deleted";

/// A cutover approval (`approvals/<systemId>`), written by the apiserver, applied by the
/// operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// The system approved.
    pub system_id: String,
    /// Region code of the system.
    pub region_code: String,
    /// Identity that approved (certificate CN or token identity).
    pub approved_by: String,
    /// Scope of that identity: `province` or a region code.
    pub scope: String,
    /// When (RFC 3339).
    pub time: String,
    /// Why, or a ticket reference, as the approver gave it (at most
    /// [`APPROVAL_REASON_MAX_CHARS`] characters, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest approval reason, in characters.
pub const APPROVAL_REASON_MAX_CHARS: usize = 500;

/// Checks an approval reason: at most [`APPROVAL_REASON_MAX_CHARS`] characters and no control
/// characters (no line breaks either: it is one line in the journal and in logs).
pub fn check_approval_reason(reason: &str) -> Result<(), String> {
    let chars = reason.chars().count();
    if chars > APPROVAL_REASON_MAX_CHARS {
        return Err(format!("reason has {chars} characters; at most {APPROVAL_REASON_MAX_CHARS} are allowed"));
    }
    if reason.chars().any(char::is_control) {
        return Err("reason must not contain control characters (line breaks, tabs, escapes)".to_owned());
    }
    Ok(())
}

/// A console session (`console-sessions/<sha256 of the session id>`), written by the apiserver
/// at login and deleted at logout; an etcd lease ends it at `expires` in any case. The session id
/// itself is only in the browser's cookie: the store holds its hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// Identity that logged in (for logs and display; authority comes from the credential).
    pub identity: String,
    /// Scope of that identity when the session began.
    pub scope: String,
    /// SHA-256 (hex) of the bearer token the session was opened with: the session lasts only
    /// while the token file still lists it. `None` for a client-certificate session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// When it began (RFC 3339).
    pub created: String,
    /// When it ends at the latest (RFC 3339).
    pub expires: String,
}

/// Value of the leader key: who holds the operator's write fence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRecord {
    /// Identity of the leader (pod name or host and process id).
    pub identity: String,
    /// When it became leader (RFC 3339).
    pub since: String,
}

/// What a key under the prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// `nodes/<name>`
    Node(&'a str),
    /// `tenants/<name>`
    Tenant(&'a str),
    /// `systems/<systemId>`
    System(&'a str),
    /// `waves/<name>`
    Wave(&'a str),
    /// `budgets/<regionCode>`
    Budget(&'a str),
    /// `journal/<systemId>/<sequence>`
    Journal(&'a str, u64),
    /// `approvals/<systemId>`
    Approval(&'a str),
    /// `console-sessions/<sha256 of the session id, hex>`
    Session(&'a str),
    /// `leader`
    Leader,
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key layout under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    /// The layout under `prefix`; a missing trailing `/` is added.
    pub fn new(prefix: &str) -> Keys {
        let prefix = if prefix.ends_with('/') { prefix.to_owned() } else { format!("{prefix}/") };
        Keys { prefix }
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>nodes/<name>`
    pub fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.prefix)
    }

    /// `<prefix>tenants/<name>`
    pub fn tenant(&self, name: &str) -> String {
        format!("{}tenants/{name}", self.prefix)
    }

    /// `<prefix>systems/<systemId>`
    pub fn system(&self, system_id: &str) -> String {
        format!("{}systems/{system_id}", self.prefix)
    }

    /// `<prefix>waves/<name>`
    pub fn wave(&self, name: &str) -> String {
        format!("{}waves/{name}", self.prefix)
    }

    /// `<prefix>budgets/<regionCode>`: a city's budget.
    pub fn budget(&self, region_code: &str) -> String {
        format!("{}budgets/{region_code}", self.prefix)
    }

    /// `<prefix>journal/<systemId>/<sequence, 20 digits>`
    pub fn journal(&self, system_id: &str, sequence: u64) -> String {
        format!("{}journal/{system_id}/{sequence:0width$}", self.prefix, width = SEQUENCE_WIDTH)
    }

    /// `<prefix>journal/<systemId>/`: every journal entry of one system.
    pub fn journal_of(&self, system_id: &str) -> String {
        format!("{}journal/{system_id}/", self.prefix)
    }

    /// `<prefix>approvals/<systemId>`
    pub fn approval(&self, system_id: &str) -> String {
        format!("{}approvals/{system_id}", self.prefix)
    }

    /// `<prefix>console-sessions/<id hash>`: a console session, kept by the apiserver.
    pub fn session(&self, id_hash: &str) -> String {
        format!("{}console-sessions/{id_hash}", self.prefix)
    }

    /// `<prefix>leader`
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// The prefix of one collection: `nodes`, `tenants`, `systems`, `waves`, `budgets`,
    /// `journal` or `approvals` (with the trailing `/`).
    pub fn collection(&self, collection: &str) -> String {
        format!("{}{collection}/", self.prefix)
    }

    /// What `key` names, or `None` for a key outside the layout.
    pub fn parse<'a>(&self, key: &'a str) -> Option<KeyRef<'a>> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if rest == "leader" {
            return Some(KeyRef::Leader);
        }
        let (collection, name) = rest.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        match collection {
            "nodes" if !name.contains('/') => Some(KeyRef::Node(name)),
            "tenants" if !name.contains('/') => Some(KeyRef::Tenant(name)),
            "systems" if !name.contains('/') => Some(KeyRef::System(name)),
            "waves" if !name.contains('/') => Some(KeyRef::Wave(name)),
            "budgets" if !name.contains('/') => Some(KeyRef::Budget(name)),
            "approvals" if !name.contains('/') => Some(KeyRef::Approval(name)),
            "console-sessions" if !name.contains('/') => Some(KeyRef::Session(name)),
            "journal" => {
                let (system_id, sequence) = name.split_once('/')?;
                Some(KeyRef::Journal(system_id, sequence.parse().ok()?))
            }
            _ => None,
        }
    }
}

/// One record of the read-model, as the publisher takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A cloud node.
    Node(NodeRecord),
    /// A tenant.
    Tenant(TenantRecord),
    /// A system.
    System(SystemRecord),
    /// A wave.
    Wave(WaveRecord),
    /// A city's budget.
    Budget(BudgetRecord),
}

impl Record {
    /// The key the record is stored under.
    pub fn key(&self, keys: &Keys) -> String {
        match self {
            Record::Node(r) => keys.node(&r.name),
            Record::Tenant(r) => keys.tenant(&r.name),
            Record::System(r) => keys.system(&r.system_id),
            Record::Wave(r) => keys.wave(&r.name),
            Record::Budget(r) => keys.budget(&r.region_code),
        }
    }

    /// The stored value (JSON).
    pub fn to_json(&self) -> Vec<u8> {
        let bytes = match self {
            Record::Node(r) => serde_json::to_vec(r),
            Record::Tenant(r) => serde_json::to_vec(r),
            Record::System(r) => serde_json::to_vec(r),
            Record::Wave(r) => serde_json::to_vec(r),
            Record::Budget(r) => serde_json::to_vec(r),
        };
        bytes.expect("read-model records always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("ab\u{7f}"), b"ab\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn keys_round_trip() {
        let keys = Keys::new("/suyun/test");
        assert_eq!(keys.prefix(), "/suyun/test/");
        assert_eq!(keys.parse(&keys.node("suzhou")), Some(KeyRef::Node("suzhou")));
        assert_eq!(keys.parse(&keys.system("JS-320500-0042")), Some(KeyRef::System("JS-320500-0042")));
        assert_eq!(keys.journal("JS-1", 7), "/suyun/test/journal/JS-1/00000000000000000007");
        assert_eq!(keys.parse(&keys.journal("JS-1", 7)), Some(KeyRef::Journal("JS-1", 7)));
        assert_eq!(keys.parse(&keys.leader()), Some(KeyRef::Leader));
        assert_eq!(keys.budget("320100"), "/suyun/test/budgets/320100");
        assert_eq!(keys.parse(&keys.budget("320100")), Some(KeyRef::Budget("320100")));
        assert_eq!(keys.parse("/suyun/test/budgets/3201/00"), None);
        assert_eq!(keys.parse("/suyun/test/nodes/"), None);
        assert_eq!(keys.parse("/suyun/other/nodes/a"), None);
        assert_eq!(keys.parse("/suyun/test/systems/a/b"), None);
    }

    #[test]
    fn journal_keys_sort_by_sequence() {
        let keys = Keys::default();
        assert!(keys.journal("S", 9) < keys.journal("S", 10));
    }

    #[test]
    fn scope_covers_the_city_and_its_counties_only() {
        assert!(region_in_scope("320500", "320500"));
        assert!(region_in_scope("320583", "320500"));
        assert!(!region_in_scope("320100", "320500"));
        assert!(!region_in_scope("320000", "320500"));
        assert!(region_in_scope("320583", "320583"));
        assert!(!region_in_scope("320500", "320583"));
        assert!(!region_in_scope("320500", "320000"));
    }

    #[test]
    fn malformed_region_codes_are_in_no_scope_and_never_panic() {
        // "32é500" is 7 bytes, "3é500" 6 bytes with a character across bytes 1–2, "320é0"
        // 6 bytes with one across bytes 3–4 (slicing at 4 panicked), "32050é" 7 bytes.
        for region in ["3é500", "320é0", "32é500", "32050é", "", "3205", "3205001", "32 500", "\u{0}20500"] {
            for scope in ["320500", "320583", "320000", region] {
                assert!(!region_in_scope(region, scope), "{region:?} in {scope:?}");
                assert!(!region_in_scope(scope, region), "{scope:?} in {region:?}");
            }
        }
        assert!(!region_in_scope("320é0", "320500"));
        assert!(!region_in_scope("320583", "320é0"));
        assert!(!region_in_scope("abcdef", "abcdef"));
    }

    #[test]
    fn approval_reasons_are_short_single_lines() {
        assert!(check_approval_reason("ticket OPS-1234: 苏州 cutover window agreed").is_ok());
        assert!(check_approval_reason(&"批".repeat(APPROVAL_REASON_MAX_CHARS)).is_ok());
        assert!(check_approval_reason(&"批".repeat(APPROVAL_REASON_MAX_CHARS + 1)).is_err());
        assert!(check_approval_reason("line\nbreak").is_err());
        assert!(check_approval_reason("escape\u{1b}[31m").is_err());
        let record = ApprovalRecord { system_id: "S".into(), ..Default::default() };
        assert!(!String::from_utf8(serde_json::to_vec(&record).unwrap()).unwrap().contains("reason"));
        let old: ApprovalRecord = serde_json::from_str(
            r#"{"systemId":"S","regionCode":"320500","approvedBy":"a","scope":"320500","time":"t"}"#,
        )
        .unwrap();
        assert_eq!(old.reason, None);
    }

    #[test]
    fn records_keep_chinese_and_camel_case() {
        let node = NodeRecord { name: "suzhou".into(), display_name: "苏州市".into(), ..Default::default() };
        let json = String::from_utf8(Record::Node(node).to_json()).unwrap();
        assert!(json.contains("\"displayName\":\"苏州市\""), "{json}");
        assert!(json.contains("\"systemsByPhase\""), "{json}");
        let budget = BudgetRecord {
            name: "nanjing".into(),
            region_code: "320100".into(),
            display_name: "南京市".into(),
            nodes: vec![BudgetNode { node: "cn-320100".into(), ..Default::default() }],
            ..Default::default()
        };
        let record = Record::Budget(budget);
        assert_eq!(record.key(&Keys::default()), "/suyun/v1/budgets/320100");
        let json = String::from_utf8(record.to_json()).unwrap();
        assert!(json.contains("\"displayName\":\"南京市\""), "{json}");
        assert!(json.contains("\"lendable\":{\"cpuMillis\":0"), "{json}");
        assert!(!json.contains("nodeDisplayName"), "absent when unknown: {json}");
    }
}
