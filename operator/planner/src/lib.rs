//! Suyun planner: where each government system goes and when it moves.
//!
//! Pure and deterministic: no Kubernetes client, no async runtime, no I/O, no clock ("now"
//! is [`model::Settings::now`]). The same [`model::PlanInput`] gives byte-identical JSON
//! whatever the order of its lists, because the input is sorted canonically first.
//!
//! ```text
//!  PlanInput ──► index ──────► dependencies ─────► placement ─────────► schedule ──────► Plan
//!  (strings)     sort, dedup,  unknown refs,       pinned first, then   topological list   accounts,
//!                ids → dense   cycles (Tarjan),    sameNodeAs units by  scheduling: node   waves,
//!                indices       wave-order          priority: locality,  & wave slots,      reasons,
//!                              conflicts; block    security, arch,      bandwidth, cut-    makespan,
//!                              and propagate       windows, anti-aff.,  over windows,      lower
//!                                                  quota, capacity      wave order         bound
//! ```
//!
//! [`first_fit`] is a capacity-only baseline over the same input, for comparison;
//! [`synthetic`] builds deterministic Jiangsu-sized and national-sized inputs.
//! `docs/planner.md` describes the model, every constraint and the time model.

mod baseline;
mod dependencies;
pub mod explain;
pub mod forecast;
mod index;
pub mod model;
mod output;
mod placement;
mod plan;
mod residency;
mod schedule;
#[cfg(test)]
mod stage_timing;
pub mod synthetic;
mod table;
pub mod windows;

pub use baseline::first_fit;
pub use explain::Reason;
pub use output::{
    Algorithm, Assignment, CityAccount, Interval, NodeAccount, NotMigrated, Plan, ResidencyFinding, ResidencyReport,
    ShareAccount, TenantAccount, TenantUsage, Unplaceable, Utilization, WaveSummary,
};
pub use plan::plan;
pub use schedule::replication_seconds;
