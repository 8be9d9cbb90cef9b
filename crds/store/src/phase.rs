//! The phase of a system's migration.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Phase of a system's migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Not yet planned.
    #[default]
    Pending,
    /// Placed on a node and given a time slot.
    Scheduled,
    /// Target resources being created.
    Provisioning,
    /// Data being replicated.
    Replicating,
    /// Waiting for a cutover approval.
    AwaitingCutover,
    /// Traffic being switched over.
    CuttingOver,
    /// Checking the migrated system.
    Verifying,
    /// Migrated.
    Completed,
    /// A phase failed beyond its retries.
    Failed,
    /// The migration was undone.
    RolledBack,
    /// A constraint cannot be met; the reason says which.
    Blocked,
    /// Retire or Retain: never moved.
    NotMigrated,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 12] = [
        Phase::Pending,
        Phase::Scheduled,
        Phase::Provisioning,
        Phase::Replicating,
        Phase::AwaitingCutover,
        Phase::CuttingOver,
        Phase::Verifying,
        Phase::Completed,
        Phase::Failed,
        Phase::RolledBack,
        Phase::Blocked,
        Phase::NotMigrated,
    ];

    /// The phase's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Scheduled => "Scheduled",
            Phase::Provisioning => "Provisioning",
            Phase::Replicating => "Replicating",
            Phase::AwaitingCutover => "AwaitingCutover",
            Phase::CuttingOver => "CuttingOver",
            Phase::Verifying => "Verifying",
            Phase::Completed => "Completed",
            Phase::Failed => "Failed",
            Phase::RolledBack => "RolledBack",
            Phase::Blocked => "Blocked",
            Phase::NotMigrated => "NotMigrated",
        }
    }

    /// Whether a migration is in progress (resources held and a runner at work).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Phase::Provisioning | Phase::Replicating | Phase::AwaitingCutover | Phase::CuttingOver | Phase::Verifying
        )
    }

    /// Whether the phase is final until the spec changes.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::RolledBack | Phase::NotMigrated)
    }

    /// Whether a system in this phase holds capacity on its node.
    pub fn holds_capacity(self) -> bool {
        self.is_active() || matches!(self, Phase::Scheduled | Phase::Completed | Phase::Failed)
    }
}
