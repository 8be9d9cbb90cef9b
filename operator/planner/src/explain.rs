//! Reason codes and the human-readable quantities used in explanations.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Resources;

/// Why a system is not placed or not scheduled. Serialized as its name, e.g.
/// `"InsufficientCapacity"`, which is also the `Blocked` condition reason the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// No eligible node has enough free allocatable resources.
    InsufficientCapacity,
    /// The tenant's quota (cpu, memory, storage or maxSystems) would be exceeded.
    QuotaExceeded,
    /// The system's 等保 level is above every eligible node's certified level.
    SecurityLevelMismatch,
    /// No eligible node offers the architecture the system needs.
    ArchitectureMismatch,
    /// Locality, `allowedNodes`, cordons or a node that takes no migrations leave no node.
    NoEligibleNode,
    /// Every eligible node already holds a system it must not share a node with.
    AntiAffinity,
    /// Its `sameNodeAs` group cannot be placed together on one node.
    SameNodeGroupUnplaceable,
    /// No node window (∩ wave window) is long enough for the cutover.
    NoCutoverWindow,
    /// It is part of a dependency cycle.
    DependencyCycle,
    /// It depends on systems that do not exist.
    UnknownDependency,
    /// A system it depends on is blocked or unplaceable.
    DependencyNotReady,
    /// It depends on a system that can only move in a later wave.
    WaveOrderConflict,
    /// Its tenant does not exist.
    UnknownTenant,
    /// It is pinned to (or its tenant's home is) a node that does not exist.
    UnknownNode,
    /// Its wave does not exist.
    UnknownWave,
    /// Its wave has `maxConcurrent: 0`.
    WavePaused,
    /// Another system has the same systemId.
    DuplicateSystemId,
    /// Every eligible node has room in total, but no single machine of it can hold the request.
    NoMachineFits,
    /// Its city's budget (its share of every eligible node) would be exceeded.
    CityBudgetExceeded,
    /// The residency rules of its data classification allow none of its eligible nodes, and no
    /// waiver is recorded.
    ResidencyViolation,
}

impl Reason {
    /// Every reason, in declaration order (the metrics' bounded `reason` label values).
    pub const ALL: [Reason; 20] = [
        Reason::InsufficientCapacity,
        Reason::QuotaExceeded,
        Reason::SecurityLevelMismatch,
        Reason::ArchitectureMismatch,
        Reason::NoEligibleNode,
        Reason::AntiAffinity,
        Reason::SameNodeGroupUnplaceable,
        Reason::NoCutoverWindow,
        Reason::DependencyCycle,
        Reason::UnknownDependency,
        Reason::DependencyNotReady,
        Reason::WaveOrderConflict,
        Reason::UnknownTenant,
        Reason::UnknownNode,
        Reason::UnknownWave,
        Reason::WavePaused,
        Reason::DuplicateSystemId,
        Reason::NoMachineFits,
        Reason::CityBudgetExceeded,
        Reason::ResidencyViolation,
    ];

    /// Position of the reason in [`Reason::ALL`]. The match has no wildcard arm, so a reason
    /// added here fails to compile until it is given a position (and listed in `ALL`).
    pub fn position(self) -> usize {
        match self {
            Reason::InsufficientCapacity => 0,
            Reason::QuotaExceeded => 1,
            Reason::SecurityLevelMismatch => 2,
            Reason::ArchitectureMismatch => 3,
            Reason::NoEligibleNode => 4,
            Reason::AntiAffinity => 5,
            Reason::SameNodeGroupUnplaceable => 6,
            Reason::NoCutoverWindow => 7,
            Reason::DependencyCycle => 8,
            Reason::UnknownDependency => 9,
            Reason::DependencyNotReady => 10,
            Reason::WaveOrderConflict => 11,
            Reason::UnknownTenant => 12,
            Reason::UnknownNode => 13,
            Reason::UnknownWave => 14,
            Reason::WavePaused => 15,
            Reason::DuplicateSystemId => 16,
            Reason::NoMachineFits => 17,
            Reason::CityBudgetExceeded => 18,
            Reason::ResidencyViolation => 19,
        }
    }

    /// The reason's name as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InsufficientCapacity => "InsufficientCapacity",
            Reason::QuotaExceeded => "QuotaExceeded",
            Reason::SecurityLevelMismatch => "SecurityLevelMismatch",
            Reason::ArchitectureMismatch => "ArchitectureMismatch",
            Reason::NoEligibleNode => "NoEligibleNode",
            Reason::AntiAffinity => "AntiAffinity",
            Reason::SameNodeGroupUnplaceable => "SameNodeGroupUnplaceable",
            Reason::NoCutoverWindow => "NoCutoverWindow",
            Reason::DependencyCycle => "DependencyCycle",
            Reason::UnknownDependency => "UnknownDependency",
            Reason::DependencyNotReady => "DependencyNotReady",
            Reason::WaveOrderConflict => "WaveOrderConflict",
            Reason::UnknownTenant => "UnknownTenant",
            Reason::UnknownNode => "UnknownNode",
            Reason::UnknownWave => "UnknownWave",
            Reason::WavePaused => "WavePaused",
            Reason::DuplicateSystemId => "DuplicateSystemId",
            Reason::NoMachineFits => "NoMachineFits",
            Reason::CityBudgetExceeded => "CityBudgetExceeded",
            Reason::ResidencyViolation => "ResidencyViolation",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const GI: u64 = 1 << 30;
const TI: u64 = 1 << 40;

/// Formats millicores as cores: `64 cpu`, `1.5 cpu`, `250m cpu`.
pub fn cpu(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) {
        format!("{} cpu", millicores / 1000)
    } else if millicores >= 1000 {
        format!("{} cpu", trim(millicores as f64 / 1000.0))
    } else {
        format!("{millicores}m cpu")
    }
}

/// Formats bytes in Ti when at least 1 Ti, else in Gi (Mi below 1 Gi).
pub fn bytes(value: u64) -> String {
    if value >= TI {
        format!("{} Ti", trim(value as f64 / TI as f64))
    } else if value >= GI || value == 0 {
        format!("{} Gi", trim(value as f64 / GI as f64))
    } else {
        format!("{} Mi", trim(value as f64 / (1u64 << 20) as f64))
    }
}

/// Formats one named resource of `r`: `cpu`, `memory`, `storage` or `gpu`.
pub fn amount(kind: ResourceKind, r: &Resources) -> String {
    match kind {
        ResourceKind::Cpu => cpu(r.cpu),
        ResourceKind::Memory => format!("{} memory", bytes(r.memory)),
        ResourceKind::Storage => format!("{} storage", bytes(r.storage)),
        ResourceKind::Gpu => format!("{} gpu", r.gpu),
    }
}

/// The four schedulable resources, in reporting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// CPU.
    Cpu,
    /// Memory.
    Memory,
    /// Storage.
    Storage,
    /// GPU.
    Gpu,
}

impl ResourceKind {
    /// All kinds, in reporting order.
    pub const ALL: [ResourceKind; 4] =
        [ResourceKind::Cpu, ResourceKind::Memory, ResourceKind::Storage, ResourceKind::Gpu];

    /// The component of `r` this kind names.
    pub fn of(self, r: &Resources) -> u64 {
        match self {
            ResourceKind::Cpu => r.cpu,
            ResourceKind::Memory => r.memory,
            ResourceKind::Storage => r.storage,
            ResourceKind::Gpu => r.gpu,
        }
    }
}

/// Formats with at most one decimal, dropping a trailing `.0`.
fn trim(value: f64) -> String {
    let s = format!("{value:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// Formats a duration in seconds as hours and minutes: `2h05m`, `45m`.
pub fn duration(seconds: i64) -> String {
    let minutes = (seconds + 59) / 60;
    if minutes >= 60 { format!("{}h{:02}m", minutes / 60, minutes % 60) } else { format!("{minutes}m") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_like_a_person_wrote_them() {
        assert_eq!(cpu(64_000), "64 cpu");
        assert_eq!(cpu(1_500), "1.5 cpu");
        assert_eq!(cpu(250), "250m cpu");
        assert_eq!(bytes(16 * GI), "16 Gi");
        assert_eq!(bytes(3 * TI / 2), "1.5 Ti");
        assert_eq!(bytes(512 << 20), "512 Mi");
        assert_eq!(duration(3600 + 300), "1h05m");
        assert_eq!(duration(45 * 60), "45m");
        assert_eq!(Reason::DependencyCycle.to_string(), "DependencyCycle");
    }

    /// `as_str` is what the operator writes into statuses: it must be the serialized name.
    #[test]
    fn names_written_into_statuses_are_the_serialized_names() {
        use crate::model::Strategy;
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str(), "{r:?}");
            assert_eq!(r.position(), i, "{r:?}");
        }
        for s in [Strategy::Rehost, Strategy::Replatform, Strategy::Refactor, Strategy::Retire, Strategy::Retain] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str(), "{s:?}");
        }
    }
}
