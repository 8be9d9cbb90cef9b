//! Read endpoints: nodes, tenants, systems (filtered, paged), system history, waves.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use suyun_store::readmodel::{ApprovalRecord, JournalEntry, SystemRecord, WaveRecord};

use super::extract::{ApiPath, ApiQuery};
use super::{effective_scope, read_index, staleness};
use crate::AppState;
use crate::auth::{Identity, Scope};
use crate::index::Shared;
use crate::problem::Problem;
use crate::response::{EtagHasher, ResponseMetadata, item_body, list_body, respond, revision_etag};

/// The ETag of a list: the scope, the revision reported and each item's revision and name.
fn list_etag<'a>(scope: &Scope, revision: i64, items: impl IntoIterator<Item = (i64, &'a [u8])>) -> String {
    let mut hasher = EtagHasher::default();
    hasher.write(scope.as_str().as_bytes()).number(revision);
    for (item_revision, name) in items {
        hasher.number(item_revision).write(name).write(b"/");
    }
    hasher.etag()
}

/// Default page size of the system list.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size of the system list.
pub const MAX_LIMIT: usize = 1000;

/// `?region=`: narrow a list to one region inside the caller's scope.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RegionQuery {
    pub(super) region: Option<String>,
}

/// Filters and paging of `GET /api/v1/systems`.
#[derive(Debug, Default, Deserialize)]
pub struct SystemQuery {
    /// Only systems placed on this node.
    pub node: Option<String>,
    /// Only systems of this tenant.
    pub tenant: Option<String>,
    /// Only systems in this phase.
    pub phase: Option<String>,
    /// Only systems of this wave.
    pub wave: Option<String>,
    /// Text search: a case-insensitive substring of `systemId`, `name` or `displayName`.
    pub q: Option<String>,
    /// Only systems of this region (inside the caller's scope).
    pub region: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<String>,
    /// The `metadata.continue` of the previous page.
    #[serde(rename = "continue")]
    pub continue_: Option<String>,
}

/// A system's journal and approval (`GET /api/v1/systems/{systemId}/history`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemHistory {
    /// The system.
    pub system_id: String,
    /// The cutover approval, when one was given.
    pub approval: Option<ApprovalRecord>,
    /// Phase transitions, oldest first.
    pub entries: Vec<JournalEntry>,
}

pub(super) async fn list_nodes(
    State(state): State<AppState>,
    identity: Identity,
    ApiQuery(query): ApiQuery<RegionQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let scope = effective_scope(&identity, query.region.as_deref())?;
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let nodes: Vec<_> = index.nodes.values().filter(|n| scope.covers(&n.record.region_code)).collect();
    let revision = index.node_regions.in_scope(&scope);
    let etag = list_etag(&scope, revision, nodes.iter().map(|n| (n.revision, n.record.name.as_bytes())));
    Ok(respond(&headers, etag, stale, || {
        list_body(&ResponseMetadata::new(revision, stale), nodes.iter().map(|n| &n.json[..]))
    }))
}

pub(super) async fn get_node(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let node = index
        .nodes
        .get(&name)
        .filter(|n| identity.scope.covers(&n.record.region_code))
        .ok_or_else(|| Problem::not_found("node", &name))?;
    Ok(single(&headers, node.revision, stale, &node.json))
}

pub(super) async fn list_tenants(
    State(state): State<AppState>,
    identity: Identity,
    ApiQuery(query): ApiQuery<RegionQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let scope = effective_scope(&identity, query.region.as_deref())?;
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let tenants: Vec<_> = index.tenants.values().filter(|t| scope.covers(&t.record.region_code)).collect();
    let revision = index.tenant_regions.in_scope(&scope);
    let etag = list_etag(&scope, revision, tenants.iter().map(|t| (t.revision, t.record.name.as_bytes())));
    Ok(respond(&headers, etag, stale, || {
        list_body(&ResponseMetadata::new(revision, stale), tenants.iter().map(|t| &t.json[..]))
    }))
}

pub(super) async fn get_tenant(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let tenant = index
        .tenants
        .get(&name)
        .filter(|t| identity.scope.covers(&t.record.region_code))
        .ok_or_else(|| Problem::not_found("tenant", &name))?;
    Ok(single(&headers, tenant.revision, stale, &tenant.json))
}

fn single(headers: &HeaderMap, revision: i64, stale: Option<u64>, json: &[u8]) -> Response {
    respond(headers, revision_etag(revision, ""), stale, || item_body(&ResponseMetadata::new(revision, stale), json))
}

fn matches(system: &SystemRecord, query: &SystemQuery, needle: Option<&str>) -> bool {
    let eq = |wanted: &Option<String>, actual: Option<&str>| wanted.as_deref().is_none_or(|w| Some(w) == actual);
    eq(&query.node, system.node.as_deref())
        && eq(&query.tenant, Some(&system.tenant))
        && eq(&query.phase, Some(&system.phase))
        && eq(&query.wave, system.wave.as_deref())
        && needle.is_none_or(|needle| {
            [&system.system_id, &system.name, &system.display_name].iter().any(|f| f.to_lowercase().contains(needle))
        })
}

pub(super) async fn list_systems(
    State(state): State<AppState>,
    identity: Identity,
    ApiQuery(query): ApiQuery<SystemQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let scope = effective_scope(&identity, query.region.as_deref())?;
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(Problem::bad_request(format!("limit must be 1–{MAX_LIMIT}, not {text:?}"))),
        },
    };
    let after = match query.continue_.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => Some(
            URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("s:").map(str::to_owned))
                .ok_or_else(|| Problem::bad_request("continue is not a token this API issued"))?,
        ),
    };
    let needle = query.q.as_deref().filter(|q| !q.is_empty()).map(str::to_lowercase);
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let (page, next) = index.systems_page(&scope, after.as_deref(), limit, |s| matches(s, &query, needle.as_deref()));
    let continue_ = next.map(|id| URL_SAFE_NO_PAD.encode(format!("s:{id}")));
    // The revision of every system in the scope (not only this page): a change or deletion
    // of one of the caller's systems moves it, another city's never does.
    let revision = index.system_regions.in_scope(&scope);
    let mut etag = EtagHasher::default();
    etag.write(continue_.as_deref().unwrap_or_default().as_bytes()).write(b"/");
    etag.write(
        list_etag(&scope, revision, page.iter().map(|s| (s.revision, s.record.system_id.as_bytes()))).as_bytes(),
    );
    Ok(respond(&headers, etag.etag(), stale, || {
        let metadata = ResponseMetadata { continue_, ..ResponseMetadata::new(revision, stale) };
        list_body(&metadata, page.iter().map(|s| &s.json[..]))
    }))
}

pub(super) async fn get_system(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(system_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let system = index.system(&identity.scope, &system_id).ok_or_else(|| Problem::not_found("system", &system_id))?;
    Ok(single(&headers, system.revision, stale, &system.json))
}

pub(super) async fn system_history(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(system_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let system = index.system(&identity.scope, &system_id);
    // A systemId can pass to another tenant (its first owner deleted, a later claimant takes
    // it over): what an earlier owner in another scope left is not the caller's to read.
    let approval = index.approvals.get(&system_id).filter(|a| identity.scope.covers(&a.record.region_code));
    let entries: Vec<&Shared<JournalEntry>> = index
        .journal
        .get(&system_id)
        .map(|j| j.values().filter(|e| identity.scope.covers(&e.record.region_code)).collect())
        .unwrap_or_default();
    // The journal outlives the system (kept for the retention after its deletion): a deleted
    // system's history is still there for whoever may read its entries.
    if system.is_none() && entries.is_empty() {
        return Err(Problem::not_found("system", &system_id));
    }
    // Everything here is this system's own: its record, approval (or the revocation of one)
    // and journal.
    let revision = [
        system.map_or(0, |s| s.revision),
        approval.map_or(0, |a| a.revision),
        index.approval_deletions.get(&system_id).copied().unwrap_or(0),
    ]
    .into_iter()
    .chain(entries.iter().map(|e| e.revision))
    .max()
    .unwrap_or(0);
    let mut hasher = EtagHasher::default();
    hasher.number(revision).number(approval.map_or(0, |a| a.revision));
    for e in &entries {
        hasher.number(e.revision);
    }
    Ok(respond(&headers, hasher.etag(), stale, || {
        let history = SystemHistory {
            system_id: system_id.clone(),
            approval: approval.map(|a| a.record.clone()),
            entries: entries.iter().map(|e| e.record.clone()).collect(),
        };
        let json = serde_json::to_vec(&history).unwrap_or_default();
        item_body(&ResponseMetadata::new(revision, stale), &json)
    }))
}

/// The wave as `scope` may see it: only the counts of its regions; `None` when it has none.
fn wave_view(wave: &WaveRecord, scope: &Scope) -> Option<WaveRecord> {
    if *scope == Scope::Province {
        return Some(wave.clone());
    }
    let counts: BTreeMap<String, BTreeMap<String, u64>> = wave
        .counts_by_region
        .iter()
        .filter(|(region, _)| scope.covers(region))
        .map(|(r, c)| (r.clone(), c.clone()))
        .collect();
    if counts.values().all(|c| c.values().all(|n| *n == 0)) {
        return None;
    }
    Some(WaveRecord { counts_by_region: counts, ..wave.clone() })
}

pub(super) async fn list_waves(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let scope = &identity.scope;
    let mut revision = index.wave_regions.in_scope(scope);
    let mut items = Vec::new();
    let mut hasher = EtagHasher::default();
    hasher.write(scope.as_str().as_bytes());
    for wave in index.waves.values() {
        let Some(view) = wave_view(&wave.record, scope) else { continue };
        revision = revision.max(index.wave_revision(&wave.record.name, scope));
        let json = serde_json::to_vec(&view).map_err(|_| Problem::internal())?;
        hasher.write(&json).write(b"/");
        items.push(json);
    }
    hasher.number(revision);
    Ok(respond(&headers, hasher.etag(), stale, || {
        list_body(&ResponseMetadata::new(revision, stale), items.iter().map(Vec::as_slice))
    }))
}

pub(super) async fn get_wave(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let entry = index.waves.get(&name).ok_or_else(|| Problem::not_found("wave", &name))?;
    let view = wave_view(&entry.record, &identity.scope).ok_or_else(|| Problem::not_found("wave", &name))?;
    // Another city's counts are not in the view, and their changes do not move its revision.
    let revision = index.wave_revision(&name, &identity.scope);
    let json = serde_json::to_vec(&view).map_err(|_| Problem::internal())?;
    let etag = EtagHasher::default().number(revision).write(&json).etag();
    Ok(respond(&headers, etag, stale, || item_body(&ResponseMetadata::new(revision, stale), &json)))
}
