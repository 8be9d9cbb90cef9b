//! What-if: plan a modified cloud and compare it, system by system, with the current plan.
//!
//! * `Add(node)`: the node is appended; a node with the same name is replaced.
//! * `Remove(name)`: the node is gone. Systems whose `node` was it — in flight and Completed
//!   ones included — are planned as if they had not started (`phase: Pending`, `node: None`):
//!   what ran there has to be migrated again. Tenants whose home it was, and `allowedNodes` or
//!   `preferredNode` naming it, are left as they are (the planner reports what no longer
//!   resolves).
//! * `Cordon(name)`: `cordoned: true`; the node keeps what it has and takes nothing new.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{WhatIf, last_completion};
use crate::explain::Reason;
use crate::model::{Phase, PlanInput};
use crate::output::{Assignment, Plan, Unplaceable};

/// A system that goes to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    /// System id.
    pub system_id: String,
    /// Node in the current plan.
    pub from: String,
    /// Node after the change.
    pub to: String,
}

/// A system whose planned completion changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shift {
    /// System id.
    pub system_id: String,
    /// Planned completion in the current plan.
    pub before: i64,
    /// Planned completion after the change.
    pub after: i64,
    /// `after − before`, seconds (positive: later).
    pub delay_seconds: i64,
}

/// A system placed now and not after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewlyUnplaceable {
    /// System id.
    pub system_id: String,
    /// Its node in the current plan.
    pub was_on: String,
    /// Reason code after the change.
    pub reason: Reason,
    /// Explanation after the change.
    pub message: String,
}

/// A system unplaced now and placed after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewlyPlaceable {
    /// System id.
    pub system_id: String,
    /// Its reason in the current plan.
    pub was: Reason,
    /// Node after the change.
    pub node: String,
}

/// The effect of one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatIfResult {
    /// The change.
    pub change: WhatIf,
    /// Makespan of the current plan, hours.
    pub makespan_hours_before: f64,
    /// Makespan after the change, hours.
    pub makespan_hours_after: f64,
    /// Last planned completion of the current plan.
    pub last_completion_before: Option<i64>,
    /// Last planned completion after the change.
    pub last_completion_after: Option<i64>,
    /// Systems placed in the current plan.
    pub placed_before: usize,
    /// Systems placed after the change.
    pub placed_after: usize,
    /// Systems on another node, by id.
    pub moved: Vec<Moved>,
    /// Systems completing later, by id.
    pub later: Vec<Shift>,
    /// Systems completing earlier, by id.
    pub earlier: Vec<Shift>,
    /// Systems placed before, not after, by id.
    pub unplaceable: Vec<NewlyUnplaceable>,
    /// Systems unplaced before, placed after, by id.
    pub placeable: Vec<NewlyPlaceable>,
    /// Problems with the change (e.g. it names no node).
    pub warnings: Vec<String>,
}

/// Applies `change` to a copy of `input`, plans it and compares with `current`.
pub(crate) fn evaluate(input: &PlanInput, current: &Plan, change: &WhatIf) -> WhatIfResult {
    let mut warnings = Vec::new();
    let modified = apply(input, change, &mut warnings);
    let after = crate::plan(&modified);
    compare(change.clone(), current, &after, warnings)
}

/// `input` with `change` applied (see the module documentation).
pub fn apply(input: &PlanInput, change: &WhatIf, warnings: &mut Vec<String>) -> PlanInput {
    let mut out = input.clone();
    match change {
        WhatIf::Add(node) => {
            if out.nodes.iter().any(|n| n.name == node.name) {
                warnings.push(format!("node {} exists; it is replaced", node.name));
                out.nodes.retain(|n| n.name != node.name);
            }
            out.nodes.push(node.clone());
        }
        WhatIf::Remove(name) => {
            let before = out.nodes.len();
            out.nodes.retain(|n| n.name != *name);
            if out.nodes.len() == before {
                warnings.push(format!("no node named {name}; nothing removed"));
            }
            for s in out.systems.iter_mut().filter(|s| s.node.as_deref() == Some(name.as_str())) {
                s.phase = Phase::Pending;
                s.node = None;
            }
        }
        WhatIf::Cordon(name) => {
            let mut found = false;
            for n in out.nodes.iter_mut().filter(|n| n.name == *name) {
                n.cordoned = true;
                found = true;
            }
            if !found {
                warnings.push(format!("no node named {name}; nothing cordoned"));
            }
        }
    }
    out
}

fn compare(change: WhatIf, before: &Plan, after: &Plan, warnings: Vec<String>) -> WhatIfResult {
    let was: BTreeMap<&str, &Assignment> = before.assignments.iter().map(|a| (a.system_id.as_str(), a)).collect();
    let now: BTreeMap<&str, &Assignment> = after.assignments.iter().map(|a| (a.system_id.as_str(), a)).collect();
    let refused_before: BTreeMap<&str, &Unplaceable> =
        before.unplaceable.iter().map(|u| (u.system_id.as_str(), u)).collect();
    let refused_after: BTreeMap<&str, &Unplaceable> =
        after.unplaceable.iter().map(|u| (u.system_id.as_str(), u)).collect();
    let mut result = WhatIfResult {
        change,
        makespan_hours_before: before.makespan_hours,
        makespan_hours_after: after.makespan_hours,
        last_completion_before: last_completion(before),
        last_completion_after: last_completion(after),
        placed_before: before.placed,
        placed_after: after.placed,
        moved: Vec::new(),
        later: Vec::new(),
        earlier: Vec::new(),
        unplaceable: Vec::new(),
        placeable: Vec::new(),
        warnings,
    };
    for (&id, a) in &was {
        match now.get(id) {
            Some(b) => {
                if a.node != b.node {
                    result.moved.push(Moved { system_id: id.to_owned(), from: a.node.clone(), to: b.node.clone() });
                }
                if let (Some(x), Some(y)) = (a.planned_completion, b.planned_completion) {
                    let shift =
                        Shift { system_id: id.to_owned(), before: x, after: y, delay_seconds: y.saturating_sub(x) };
                    if y > x {
                        result.later.push(shift);
                    } else if y < x {
                        result.earlier.push(shift);
                    }
                }
            }
            None => {
                let (reason, message) = refused_after.get(id).map_or_else(
                    || (Reason::UnknownNode, "not in the plan after the change".to_owned()),
                    |u| (u.reason, u.message.clone()),
                );
                result.unplaceable.push(NewlyUnplaceable {
                    system_id: id.to_owned(),
                    was_on: a.node.clone(),
                    reason,
                    message,
                });
            }
        }
    }
    for (&id, b) in &now {
        if was.contains_key(id) {
            continue;
        }
        if let Some(u) = refused_before.get(id) {
            result.placeable.push(NewlyPlaceable { system_id: id.to_owned(), was: u.reason, node: b.node.clone() });
        }
    }
    result
}
