//! Forecasts over the planner: "when do we run out, and what must we buy".
//!
//! Three answers, each computed from plans of [`crate::plan`] and nothing else (pure,
//! deterministic, no clock: "now" is the input's [`crate::model::Settings::now`]):
//!
//! 1. **Run-out dates** ([`runout`]): per node and resource, the first instant the usage of the
//!    systems on it, growing at [`ForecastRequest::growth_percent_per_year`], exceeds the
//!    node's allocatable, within [`ForecastRequest::horizon_days`].
//! 2. **Least extra capacity for a deadline** ([`capacity`]): per node, the least extra
//!    [`Resources`] (whole cores, GiB, GPUs) with which the planner places every system that
//!    hardware can place at all and completes every migration by
//!    [`ForecastRequest::deadline`]. A coordinate-wise minimum (see [`capacity`]).
//! 3. **What-if** ([`whatif`]): the plan after adding, removing or cordoning one node,
//!    compared system by system with the current plan.
//!
//! [`Forecast::render_table`] renders the answers for people; everything serializes with
//! serde in `camelCase`. `docs/forecasting.md` describes the method and its limits.
//!
//! # Growth model
//!
//! Continuous exponential growth at an effective annual rate: an amount `U` at now is
//! `U · (1 + g)^(Δt / 365 days)` later, for every system on a node, whenever it arrived (the
//! systems not yet migrated grow where they are and arrive bigger). A year is 365 days.

pub mod capacity;
pub mod runout;
mod table;
pub mod whatif;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::explain::{self, ResourceKind};
use crate::model::{Node, PlanInput, Resources, System};
use crate::output::Plan;

pub use capacity::{ArchitectureSplit, CapacityForecast, CapacityOutcome, NodeExtra};
pub use runout::{NodeRunOut, ResourceRunOut};
pub use whatif::{Moved, NewlyPlaceable, NewlyUnplaceable, Shift, WhatIfResult};

/// Seconds in the forecast's year (365 days).
pub const YEAR_SECONDS: f64 = 365.0 * 86_400.0;
/// Default horizon of the run-out search: five years.
pub const DEFAULT_HORIZON_DAYS: u32 = 1825;

/// What to forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ForecastRequest {
    /// Compound growth of the resources of every system, percent per year (e.g. 15.0).
    /// Values ≤ −100 or not finite are read as 0 (with a warning).
    pub growth_percent_per_year: f64,
    /// How far to look for a run-out date, days (default 1825 = 5 years).
    pub horizon_days: u32,
    /// Unix seconds: when set, find the least extra capacity with which every placeable
    /// system finishes migrating by then.
    pub deadline: Option<i64>,
    /// Changes, each evaluated separately against the current plan.
    pub what_if: Vec<WhatIf>,
}

impl Default for ForecastRequest {
    fn default() -> Self {
        Self { growth_percent_per_year: 0.0, horizon_days: DEFAULT_HORIZON_DAYS, deadline: None, what_if: Vec::new() }
    }
}

/// One hypothetical change to the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WhatIf {
    /// Add this node (a node with the same name is replaced).
    Add(Node),
    /// Remove the named node. Systems on it (whatever their phase) are planned as if not
    /// started: `phase: Pending`, `node: None`.
    Remove(String),
    /// Cordon the named node: it keeps what it has and takes nothing new.
    Cordon(String),
}

/// One of the four schedulable resources, as named in the forecast's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceName {
    /// CPU, millicores.
    Cpu,
    /// Memory, bytes.
    Memory,
    /// Storage, bytes.
    Storage,
    /// GPUs, count.
    Gpu,
}

impl ResourceName {
    /// All four, in reporting order.
    pub const ALL: [ResourceName; 4] =
        [ResourceName::Cpu, ResourceName::Memory, ResourceName::Storage, ResourceName::Gpu];

    /// The component of `r` this names.
    pub fn of(self, r: &Resources) -> u64 {
        self.kind().of(r)
    }

    /// Sets the component of `r` this names.
    pub fn set(self, r: &mut Resources, value: u64) {
        match self {
            ResourceName::Cpu => r.cpu = value,
            ResourceName::Memory => r.memory = value,
            ResourceName::Storage => r.storage = value,
            ResourceName::Gpu => r.gpu = value,
        }
    }

    /// The search granularity of the capacity forecast: one core (1000 millicores), 1 GiB of
    /// memory or storage, one GPU.
    pub fn granule(self) -> u64 {
        match self {
            ResourceName::Cpu => 1000,
            ResourceName::Memory | ResourceName::Storage => 1 << 30,
            ResourceName::Gpu => 1,
        }
    }

    /// The explanation module's kind, for formatting.
    pub fn kind(self) -> ResourceKind {
        match self {
            ResourceName::Cpu => ResourceKind::Cpu,
            ResourceName::Memory => ResourceKind::Memory,
            ResourceName::Storage => ResourceKind::Storage,
            ResourceName::Gpu => ResourceKind::Gpu,
        }
    }

    /// `value` of this resource, human-readable: `64 cpu`, `1.5 Ti memory`, `2 gpu`.
    pub fn format(self, value: u64) -> String {
        let mut r = Resources::default();
        self.set(&mut r, value);
        explain::amount(self.kind(), &r)
    }

    /// The lower-case name: `cpu`, `memory`, `storage`, `gpu`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
            ResourceName::Storage => "storage",
            ResourceName::Gpu => "gpu",
        }
    }
}

/// The current plan in a few numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Systems with a node (placed, in flight, completed).
    pub placed: usize,
    /// Systems the plan cannot place.
    pub unplaceable: usize,
    /// Last planned completion − now, hours.
    pub makespan_hours: f64,
    /// The plan's lower bound on the makespan, hours.
    pub lower_bound_hours: f64,
    /// Last planned completion (Unix seconds); `None` when nothing is scheduled.
    pub last_completion: Option<i64>,
}

impl PlanSummary {
    fn of(plan: &Plan) -> PlanSummary {
        PlanSummary {
            placed: plan.placed,
            unplaceable: plan.unplaceable.len(),
            makespan_hours: plan.makespan_hours,
            lower_bound_hours: plan.lower_bound_hours,
            last_completion: last_completion(plan),
        }
    }
}

/// The three answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forecast {
    /// The instant the forecast starts from (the input's `settings.now`).
    pub now: i64,
    /// Local time offset for dates, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// Growth used, percent per year (after validation).
    pub growth_percent_per_year: f64,
    /// Horizon of the run-out search, days.
    pub horizon_days: u32,
    /// End of the horizon (Unix seconds).
    pub horizon_end: i64,
    /// The current plan, summarized.
    pub current: PlanSummary,
    /// Run-out dates per node (sorted by name) and resource.
    pub run_out: Vec<NodeRunOut>,
    /// The least extra capacity for the deadline, when one was asked for.
    pub capacity: Option<CapacityForecast>,
    /// One result per requested change, in request order.
    pub what_if: Vec<WhatIfResult>,
    /// Plans computed for this forecast (current, capacity search, what-ifs).
    pub plans_run: usize,
    /// Problems with the request.
    pub warnings: Vec<String>,
}

/// Forecasts run-out dates, the least extra capacity for the deadline and what-if changes.
///
/// Never panics on input; deterministic; runs [`crate::plan`] once for the current plan, once
/// per what-if and as often as the capacity search needs (reported as `plansRun`).
pub fn forecast(input: &PlanInput, request: &ForecastRequest) -> Forecast {
    let mut warnings = Vec::new();
    let growth = request.growth_percent_per_year;
    let growth = if growth.is_finite() && growth > -100.0 {
        growth
    } else {
        warnings.push(format!("growthPercentPerYear {growth} is not a growth rate above −100 %; 0 is used"));
        0.0
    };
    let now = input.settings.now;
    let horizon_end = now.saturating_add(i64::from(request.horizon_days) * 86_400);
    let current = crate::plan(input);
    let systems = SystemIndex::new(input);
    let run_out = runout::run_out(&current, &systems, growth, horizon_end);
    let capacity = request.deadline.map(|deadline| capacity::least_extra(input, &current, &systems, deadline));
    let what_if: Vec<WhatIfResult> =
        request.what_if.iter().map(|change| whatif::evaluate(input, &current, change)).collect();
    let plans_run = 1 + what_if.len() + capacity.as_ref().map_or(0, |c| c.plans_run);
    Forecast {
        now,
        utc_offset_minutes: input.settings.utc_offset_minutes,
        growth_percent_per_year: growth,
        horizon_days: request.horizon_days,
        horizon_end,
        current: PlanSummary::of(&current),
        run_out,
        capacity,
        what_if,
        plans_run,
        warnings,
    }
}

/// Run-out dates only, from a plan already made of `input` (no planning): what the operator
/// computes after every plan for its metrics and the read-model. `growth_percent_per_year`
/// as in [`ForecastRequest`] (not finite or ≤ −100 reads as 0).
pub fn run_out_of(input: &PlanInput, plan: &Plan, growth_percent_per_year: f64, horizon_days: u32) -> Vec<NodeRunOut> {
    let growth = if growth_percent_per_year.is_finite() && growth_percent_per_year > -100.0 {
        growth_percent_per_year
    } else {
        0.0
    };
    let horizon_end = plan.now.saturating_add(i64::from(horizon_days) * 86_400);
    runout::run_out(plan, &SystemIndex::new(input), growth, horizon_end)
}

/// The input's systems by id. For a duplicated id, the copy the planner keeps (the first in
/// canonical order, i.e. the smallest by `Ord`).
#[derive(Debug)]
pub(crate) struct SystemIndex<'a> {
    by_id: BTreeMap<&'a str, &'a System>,
}

impl<'a> SystemIndex<'a> {
    pub(crate) fn new(input: &'a PlanInput) -> SystemIndex<'a> {
        let mut by_id: BTreeMap<&'a str, &'a System> = BTreeMap::new();
        for s in &input.systems {
            by_id
                .entry(s.system_id.as_str())
                .and_modify(|kept| {
                    if s < *kept {
                        *kept = s;
                    }
                })
                .or_insert(s);
        }
        SystemIndex { by_id }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&'a System> {
        self.by_id.get(id).copied()
    }
}

/// The last planned completion of a plan, if anything is scheduled.
pub(crate) fn last_completion(plan: &Plan) -> Option<i64> {
    plan.assignments.iter().filter_map(|a| a.planned_completion).max()
}

/// `regionCode displayName`, or `regionCode (name)` without a display name.
pub(crate) fn label(name: &str, region_code: &str, display_name: &str) -> String {
    if display_name.is_empty() { format!("{region_code} ({name})") } else { format!("{region_code} {display_name}") }
}
