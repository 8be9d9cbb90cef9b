//! Run-out dates: when the usage of a node's systems, growing, first exceeds its allocatable.
//!
//! From the current plan, a node's usage at time `t` is
//!
//! ```text
//! U(t) = B(t) · (1 + g)^((t − now) / 365 days)
//! ```
//!
//! where `B(t)` is the sum of the resources of the systems on the node that have started by
//! `t`: systems already on it (in flight or Completed) from now, every other placed system from
//! its planned start (the planner holds their capacity from placement, but what is *used* grows
//! as systems actually start). `B` is a step function, so between two starts the crossing of
//! the allocatable `A` is solved exactly: `t = now + year · ln(A / B) / ln(1 + g)`; at a start,
//! `U` may jump over `A` (the run-out is then that start, caused by that system).

use serde::{Deserialize, Serialize};

use super::{ResourceName, SystemIndex, YEAR_SECONDS};
use crate::model::Resources;
use crate::output::Plan;

/// Run-out dates of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRunOut {
    /// Node name.
    pub node: String,
    /// Region code.
    pub region_code: String,
    /// Display name.
    pub display_name: String,
    /// The node's allocatable.
    pub allocatable: Resources,
    /// The node's last planned completion (now when nothing is planned on it).
    pub migration_completes: i64,
    /// Per resource: cpu, memory, storage, and gpu when the node has or needs any. A resource
    /// with allocatable 0 and no demand is left out.
    pub resources: Vec<ResourceRunOut>,
}

/// When one resource of one node runs out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRunOut {
    /// Which resource.
    pub resource: ResourceName,
    /// Allocatable amount (millicores, bytes or GPUs).
    pub allocatable: u64,
    /// Used now: the systems already on the node (in flight or Completed).
    pub usage_now: u64,
    /// Used when the node's migrations complete (`migrationCompletes`), growth included.
    pub usage_at_completion: u64,
    /// The first second usage exceeds allocatable; `None`: never within the horizon.
    pub run_out: Option<i64>,
    /// The system whose start pushes usage over allocatable; `None` when growth does (or
    /// when the systems already on the node exceed it now).
    pub caused_by: Option<String>,
}

/// One system's contribution to a node's usage.
struct Start<'a> {
    at: i64,
    resources: Resources,
    system_id: &'a str,
    /// Already on the node (in flight or Completed).
    pinned: bool,
}

/// Run-out dates of every node of `plan`, growth `growth_percent` per year, up to `horizon_end`.
pub(crate) fn run_out(
    plan: &Plan,
    systems: &SystemIndex<'_>,
    growth_percent: f64,
    horizon_end: i64,
) -> Vec<NodeRunOut> {
    let now = plan.now;
    // Per year, ln(1 + g): the exponent's rate.
    let rate = (1.0 + growth_percent / 100.0).ln();
    let position: std::collections::BTreeMap<&str, usize> =
        plan.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut starts: Vec<Vec<Start<'_>>> = plan.nodes.iter().map(|_| Vec::new()).collect();
    let mut completes: Vec<i64> = vec![now; plan.nodes.len()];
    for a in &plan.assignments {
        let (Some(&n), Some(s)) = (position.get(a.node.as_str()), systems.get(&a.system_id)) else {
            continue;
        };
        let pinned = a.phase.is_pinned();
        let at = if pinned { now } else { a.planned_start.unwrap_or(now).max(now) };
        starts[n].push(Start { at, resources: s.resources, system_id: &a.system_id, pinned });
        if let Some(c) = a.planned_completion {
            completes[n] = completes[n].max(c);
        }
    }
    plan.nodes
        .iter()
        .zip(starts.iter_mut())
        .zip(&completes)
        .map(|((node, starts), &complete)| {
            // Starts in time order; at one instant the systems already on the node first, then by
            // systemId (the order in which a cause is named).
            starts.sort_by(|a, b| (a.at, !a.pinned, a.system_id).cmp(&(b.at, !b.pinned, b.system_id)));
            let resources = ResourceName::ALL
                .into_iter()
                .filter_map(|r| {
                    let allocatable = r.of(&node.allocatable);
                    let total: u64 = starts.iter().map(|s| r.of(&s.resources)).fold(0, u64::saturating_add);
                    if allocatable == 0 && total == 0 {
                        return None;
                    }
                    let pinned: u64 =
                        starts.iter().filter(|s| s.pinned).map(|s| r.of(&s.resources)).fold(0, u64::saturating_add);
                    let (run_out, caused_by) = first_excess(r, allocatable, starts, now, rate, horizon_end);
                    Some(ResourceRunOut {
                        resource: r,
                        allocatable,
                        usage_now: pinned,
                        usage_at_completion: (total as f64 * growth_factor(rate, complete.saturating_sub(now))).round()
                            as u64,
                        run_out,
                        caused_by,
                    })
                })
                .collect();
            NodeRunOut {
                node: node.name.clone(),
                region_code: node.region_code.clone(),
                display_name: node.display_name.clone(),
                allocatable: node.allocatable,
                migration_completes: complete,
                resources,
            }
        })
        .collect()
}

/// `(1 + g)^(seconds / year)` for `rate` = ln(1 + g).
fn growth_factor(rate: f64, seconds: i64) -> f64 {
    (rate * seconds as f64 / YEAR_SECONDS).exp()
}

/// The first second in `[now, horizon_end]` at which usage exceeds `allocatable`, and the
/// system whose start causes it (none when growth does).
fn first_excess(
    r: ResourceName,
    allocatable: u64,
    starts: &[Start<'_>],
    now: i64,
    rate: f64,
    horizon_end: i64,
) -> (Option<i64>, Option<String>) {
    let a = allocatable as f64;
    // Where the usage B · (1 + g)^τ reaches A while B stays constant (after `from`).
    let crossing = |base: f64, from: i64| -> Option<i64> {
        if base <= 0.0 || rate <= 0.0 {
            return None;
        }
        let t = now as f64 + YEAR_SECONDS * (a / base).ln() / rate;
        // Usage is at most A at `from` (checked by the caller), so t ≥ from up to rounding.
        let t = t.ceil().max(from as f64);
        (t.is_finite() && t < i64::MAX as f64).then_some(t as i64)
    };
    let mut base = 0.0f64;
    let mut from = now;
    let mut k = 0;
    while k < starts.len() && starts[k].at <= horizon_end {
        let at = starts[k].at;
        if at > from {
            if let Some(t) = crossing(base, from).filter(|t| *t < at) {
                return (Some(t), None);
            }
            from = at;
        }
        let factor = growth_factor(rate, at.saturating_sub(now));
        while k < starts.len() && starts[k].at == at {
            let s = &starts[k];
            base += r.of(&s.resources) as f64;
            if base * factor > a {
                // Systems already on the node exceed it by themselves: no single cause.
                return (Some(at), (!s.pinned).then(|| s.system_id.to_owned()));
            }
            k += 1;
        }
    }
    match crossing(base, from) {
        Some(t) if t <= horizon_end => (Some(t), None),
        _ => (None, None),
    }
}
