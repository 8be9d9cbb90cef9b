//! `GET /api/v1/summary`: systems by phase, capacity by node, city budgets and progress of
//! waves, for the caller's scope.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use schemars::JsonSchema;
use serde::Serialize;
use suyun_store::Phase;
use suyun_store::readmodel::{BudgetAmounts, BudgetNode, ResourceAmounts, Utilization};

use super::extract::ApiQuery;
use super::read::RegionQuery;
use super::{effective_scope, read_index, staleness};
use crate::AppState;
use crate::auth::{Identity, Scope};
use crate::index::Index;
use crate::response::{EtagHasher, ResponseMetadata, item_body, respond};

/// The state of the migration in one scope.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `province` or the region code summarised.
    pub scope: String,
    /// Systems in scope.
    pub systems: u64,
    /// Systems in scope by phase.
    pub systems_by_phase: BTreeMap<String, u64>,
    /// Share of the systems in scope that are `Completed`, percent.
    pub completed_percent: f64,
    /// Capacity of each node in scope.
    pub nodes: Vec<NodeCapacity>,
    /// The city budgets in scope (a city's own; every city's for the province), by region
    /// code.
    pub budgets: Vec<BudgetSummary>,
    /// Waves with systems in scope.
    pub waves: Vec<WaveProgress>,
    /// Latest ETA of the unfinished waves with systems in scope (RFC 3339).
    pub eta: Option<String>,
}

/// Capacity of one node.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCapacity {
    /// Node name.
    pub name: String,
    /// Human name.
    pub display_name: String,
    /// Region code.
    pub region_code: String,
    /// Effective allocatable.
    pub allocatable: ResourceAmounts,
    /// Allocated to systems.
    pub allocated: ResourceAmounts,
    /// Allocated share, percent.
    pub utilization: Utilization,
    /// Whether the node is Ready.
    pub ready: bool,
}

/// A city budget at a glance: its use of each node and the lending between its departments
/// (the whole record is `GET /api/v1/budgets/{regionCode}`).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSummary {
    /// CityBudget name.
    pub name: String,
    /// City region code.
    pub region_code: String,
    /// Human name of the city.
    pub display_name: String,
    /// Budget, use and utilization of each node.
    pub nodes: Vec<BudgetNode>,
    /// Borrowed between the city's departments in total.
    pub borrowed: BudgetAmounts,
    /// Still offered for lending and not borrowed.
    pub lendable: BudgetAmounts,
    /// Number of the city's departments.
    pub departments: u64,
}

/// A wave's progress within the scope.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveProgress {
    /// Wave name.
    pub name: String,
    /// Wave phase.
    pub phase: String,
    /// Systems of the wave in scope.
    pub systems: u64,
    /// Of which `Completed`.
    pub completed: u64,
    /// Wave ETA (RFC 3339).
    pub eta: Option<String>,
}

pub(super) async fn summary(
    State(state): State<AppState>,
    identity: Identity,
    ApiQuery(query): ApiQuery<RegionQuery>,
    headers: HeaderMap,
) -> Result<Response, crate::problem::Problem> {
    let scope = effective_scope(&identity, query.region.as_deref())?;
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    // Everything the summary is made of, as the scope sees it: its systems, nodes and budgets
    // (deletions included), its share of the waves and their common fields.
    let revision = [
        index.system_regions.in_scope(&scope),
        index.node_regions.in_scope(&scope),
        index.budget_regions.in_scope(&scope),
        index.waves_revision(&scope),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let etag = EtagHasher::default().number(revision).write(scope.as_str().as_bytes()).etag();
    Ok(respond(&headers, etag, stale, || {
        let json = serde_json::to_vec(&summarize(&index, &scope)).unwrap_or_default();
        item_body(&ResponseMetadata::new(revision, stale), &json)
    }))
}

/// The summary of `scope`: what `GET /api/v1/summary` serves and the console's overview shows.
pub fn summarize(index: &Index, scope: &Scope) -> Summary {
    let mut summary = Summary { scope: scope.as_str().to_owned(), ..Summary::default() };
    for system in index.systems_in(scope) {
        summary.systems += 1;
        *summary.systems_by_phase.entry(system.record.phase.clone()).or_default() += 1;
    }
    let completed = summary.systems_by_phase.get(Phase::Completed.as_str()).copied().unwrap_or(0);
    if summary.systems > 0 {
        summary.completed_percent = (completed as f64 * 1000.0 / summary.systems as f64).round() / 10.0;
    }
    summary.nodes = index
        .nodes
        .values()
        .filter(|n| scope.covers(&n.record.region_code))
        .map(|n| NodeCapacity {
            name: n.record.name.clone(),
            display_name: n.record.display_name.clone(),
            region_code: n.record.region_code.clone(),
            allocatable: n.record.allocatable,
            allocated: n.record.allocated,
            utilization: n.record.utilization,
            ready: n.record.ready,
        })
        .collect();
    summary.budgets = index
        .budgets
        .values()
        .filter(|b| scope.covers(&b.record.region_code))
        .map(|b| BudgetSummary {
            name: b.record.name.clone(),
            region_code: b.record.region_code.clone(),
            display_name: b.record.display_name.clone(),
            nodes: b.record.nodes.clone(),
            borrowed: b.record.borrowed,
            lendable: b.record.lendable,
            departments: b.record.departments.len() as u64,
        })
        .collect();
    for wave in index.waves.values().map(|w| &w.record) {
        let counts = wave.counts_by_region.iter().filter(|(region, _)| scope.covers(region)).flat_map(|(_, c)| c);
        let (mut systems, mut completed) = (0, 0);
        for (phase, n) in counts {
            // Counts come from the store: a malformed wave must not overflow (and panic).
            systems = u64::saturating_add(systems, *n);
            if phase == Phase::Completed.as_str() {
                completed = u64::saturating_add(completed, *n);
            }
        }
        if systems == 0 {
            continue;
        }
        // A finished wave's phase has the name of a finished system's.
        if wave.phase != Phase::Completed.as_str() && wave.eta > summary.eta {
            summary.eta = wave.eta.clone();
        }
        summary.waves.push(WaveProgress {
            name: wave.name.clone(),
            phase: wave.phase.clone(),
            systems,
            completed,
            eta: wave.eta.clone(),
        });
    }
    summary
}
