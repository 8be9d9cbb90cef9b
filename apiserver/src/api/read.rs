//! Read endpoints: nodes, tenants, systems (filtered, paged), system history, waves, city
//! budgets.
//!
//! Nodes, tenants, systems, waves and budgets are served by one generic list ([`list`],
//! [`list_own`]) and one generic get ([`get`]) over a [`Collection`]; what of a record a scope
//! may see is decided by [`Collection::view`] alone, so every record these handlers serve (the
//! system list's pages included) has passed it: a record outside the scope is answered as
//! missing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use suyun_store::readmodel::{
    ApprovalRecord, BudgetRecord, JournalEntry, NodeRecord, SystemRecord, TenantRecord, WaveRecord,
};

use super::extract::{ApiPath, ApiQuery};
use super::{effective_scope, read_index, staleness};
use crate::AppState;
use crate::auth::{Identity, Scope};
use crate::index::{Index, RegionRevisions, Shared};
use crate::problem::{Problem, quoted};
use crate::response::{EtagHasher, ResponseMetadata, item_body, list_body, respond};

/// One record as a scope sees it.
#[derive(Debug)]
pub(super) struct View<'a> {
    /// The record's name (its key in the collection).
    name: &'a str,
    /// The etcd revision of what the scope sees.
    revision: i64,
    /// The JSON served.
    json: Cow<'a, [u8]>,
    /// Whether this is part of the record only (a wave's counts of the scope's regions): its
    /// revision then does not follow every field, so its bytes go into its ETag.
    projected: bool,
}

impl<'a> View<'a> {
    /// The whole record, as stored.
    fn whole<T>(entry: &'a Shared<T>, name: &'a str) -> View<'a> {
        View { name, revision: entry.revision, json: Cow::Borrowed(&entry.json), projected: false }
    }

    /// What besides its revision tells this view from another: nothing for a whole record.
    fn shape(&self) -> &[u8] {
        if self.projected { &self.json } else { b"" }
    }
}

/// A collection of the index served by the generic read handlers.
pub(super) trait Collection: Sized + Send + Sync + 'static {
    /// What a 404 calls one record.
    const KIND: &'static str;
    /// The records by name.
    fn records(index: &Index) -> &BTreeMap<String, Shared<Self>>;
    /// When the collection last changed, by region.
    fn regions(index: &Index) -> &RegionRevisions;
    /// The authorisation of reads: what of `entry` `scope` may see, `None` when nothing.
    fn view<'a>(index: &'a Index, entry: &'a Shared<Self>, scope: &Scope) -> Result<Option<View<'a>>, Problem>;
}

/// The rule of records that belong to one region: seen whole when the scope covers the
/// region, else not at all.
fn regional<'a, T>(entry: &'a Shared<T>, name: &'a str, region: &str, scope: &Scope) -> Option<View<'a>> {
    scope.covers(region).then(|| View::whole(entry, name))
}

/// A collection of records that belong to one region each: its kind, its map and region
/// revisions in the index, and the fields of its name and region.
macro_rules! regional_collection {
    ($record:ty, $kind:literal, $records:ident, $regions:ident, $name:ident) => {
        impl Collection for $record {
            const KIND: &'static str = $kind;
            fn records(index: &Index) -> &BTreeMap<String, Shared<Self>> {
                &index.$records
            }
            fn regions(index: &Index) -> &RegionRevisions {
                &index.$regions
            }
            fn view<'a>(_: &'a Index, entry: &'a Shared<Self>, scope: &Scope) -> Result<Option<View<'a>>, Problem> {
                Ok(regional(entry, &entry.record.$name, &entry.record.region_code, scope))
            }
        }
    };
}

regional_collection!(NodeRecord, "node", nodes, node_regions, name);
regional_collection!(TenantRecord, "tenant", tenants, tenant_regions, name);
regional_collection!(SystemRecord, "system", systems, system_regions, system_id);
// A city's budget belongs to the city's own code: the city sees it, its counties do not.
regional_collection!(BudgetRecord, "budget", budgets, budget_regions, region_code);

/// Waves span the province: a region sees a wave only with systems of its own in it, and
/// then only its own counts; the province sees it whole.
impl Collection for WaveRecord {
    const KIND: &'static str = "wave";
    fn records(index: &Index) -> &BTreeMap<String, Shared<Self>> {
        &index.waves
    }
    fn regions(index: &Index) -> &RegionRevisions {
        &index.wave_regions
    }
    fn view<'a>(index: &'a Index, entry: &'a Shared<Self>, scope: &Scope) -> Result<Option<View<'a>>, Problem> {
        let Some(view) = wave_view(&entry.record, scope) else { return Ok(None) };
        let name = &entry.record.name;
        // Another city's counts are not in the view, and their changes do not move its revision.
        let revision = index.wave_revision(name, scope);
        let json = serde_json::to_vec(&view).map_err(|_| Problem::internal())?;
        Ok(Some(View { name, revision, json: Cow::Owned(json), projected: true }))
    }
}

/// The ETag of a list: the scope, the revision reported and each item's revision, name and
/// shape.
fn list_etag(scope: &Scope, revision: i64, items: &[View<'_>]) -> String {
    let mut hasher = EtagHasher::default();
    hasher.write(scope.as_str().as_bytes()).number(revision);
    for item in items {
        hasher.number(item.revision).write(item.name.as_bytes()).write(item.shape()).write(b"/");
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

/// `GET /api/v1/{collection}?region=`: every record the scope (the caller's, or the region
/// asked for inside it) sees.
pub(super) async fn list<C: Collection>(
    State(state): State<AppState>,
    identity: Identity,
    ApiQuery(query): ApiQuery<RegionQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let scope = effective_scope(&identity, query.region.as_deref())?;
    list_in::<C>(&state, &scope, &headers)
}

/// `GET /api/v1/{collection}`: every record the caller's own scope sees (no `?region=`).
pub(super) async fn list_own<C: Collection>(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    list_in::<C>(&state, &identity.scope, &headers)
}

fn list_in<C: Collection>(state: &AppState, scope: &Scope, headers: &HeaderMap) -> Result<Response, Problem> {
    let stale = staleness(state)?;
    let index = read_index(state)?;
    let mut views = Vec::new();
    for entry in C::records(&index).values() {
        views.extend(C::view(&index, entry, scope)?);
    }
    let revision = views.iter().map(|v| v.revision).fold(C::regions(&index).in_scope(scope), i64::max);
    let etag = list_etag(scope, revision, &views);
    Ok(respond(headers, etag, stale, || {
        list_body(&ResponseMetadata::new(revision, stale), views.iter().map(|v| &*v.json))
    }))
}

/// `GET /api/v1/{collection}/{name}`: the record as the caller's scope sees it; 404 when it
/// does not exist or the scope sees none of it.
pub(super) async fn get<C: Collection>(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let stale = staleness(&state)?;
    let index = read_index(&state)?;
    let view = match C::records(&index).get(&name) {
        Some(entry) => C::view(&index, entry, &identity.scope)?,
        None => None,
    };
    let view = view.ok_or_else(|| Problem::not_found(C::KIND, &name))?;
    let etag = EtagHasher::default().number(view.revision).write(view.shape()).etag();
    Ok(respond(&headers, etag, stale, || item_body(&ResponseMetadata::new(view.revision, stale), &view.json)))
}

/// Whether `system` passes the filters of `query` (`needle`: its `q`, lower-cased): the one
/// rule of the API's system list and the console's.
pub fn system_matches(system: &SystemRecord, query: &SystemQuery, needle: Option<&str>) -> bool {
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
            _ => return Err(Problem::bad_request(format!("limit must be 1–{MAX_LIMIT}, not {}", quoted(text)))),
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
    let (page, next) =
        index.systems_page(&scope, after.as_deref(), limit, |s| system_matches(s, &query, needle.as_deref()));
    let mut views = Vec::with_capacity(page.len());
    for entry in page {
        views.extend(SystemRecord::view(&index, entry, &scope)?);
    }
    let continue_ = next.map(|id| URL_SAFE_NO_PAD.encode(format!("s:{id}")));
    // The revision of every system in the scope (not only this page): a change or deletion
    // of one of the caller's systems moves it, another city's never does.
    let revision = SystemRecord::regions(&index).in_scope(&scope);
    let mut etag = EtagHasher::default();
    etag.write(continue_.as_deref().unwrap_or_default().as_bytes()).write(b"/");
    etag.write(list_etag(&scope, revision, &views).as_bytes());
    Ok(respond(&headers, etag.etag(), stale, || {
        let metadata = ResponseMetadata { continue_, ..ResponseMetadata::new(revision, stale) };
        list_body(&metadata, views.iter().map(|v| &*v.json))
    }))
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::auth::Method;
    use crate::server::PeerCertificate;

    async fn get(state: &AppState, scope: &str, uri: &str, etag: Option<&str>) -> (StatusCode, HeaderMap, Value) {
        let identity = Identity {
            name: "ops".into(),
            scope: Scope::parse(scope).unwrap(),
            read_only: false,
            method: Method::Certificate,
        };
        let mut request = Request::get(uri).body(Body::empty()).unwrap();
        if let Some(etag) = etag {
            request.headers_mut().insert(header::IF_NONE_MATCH, etag.parse().unwrap());
        }
        request.extensions_mut().insert(PeerCertificate(std::sync::Arc::new(Some(Ok(identity)))));
        let response = crate::router(state.clone()).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn names(list: &Value, field: &str) -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|i| i[field].as_str().unwrap().to_owned()).collect()
    }

    #[tokio::test]
    async fn a_scope_reads_its_own_records_only() {
        let state = crate::fixtures::state();
        for (collection, field, own, other) in [
            ("nodes", "name", "sz", "nj"),
            ("tenants", "name", "sz-gov", "nj-gov"),
            ("systems", "systemId", "S-sz", "S-nj"),
        ] {
            let (status, _, list) = get(&state, "320500", &format!("/api/v1/{collection}"), None).await;
            assert_eq!((status, names(&list, field)), (StatusCode::OK, vec![own.to_owned()]), "{collection}");
            let (_, _, all) = get(&state, "province", &format!("/api/v1/{collection}"), None).await;
            assert_eq!(names(&all, field).len(), 2, "{collection}");
            let (status, headers, item) = get(&state, "320500", &format!("/api/v1/{collection}/{own}"), None).await;
            assert_eq!((status, item["item"][field].as_str()), (StatusCode::OK, Some(own)), "{collection}");
            let etag = headers[header::ETAG].to_str().unwrap();
            let path = format!("/api/v1/{collection}/{own}");
            assert_eq!(get(&state, "320500", &path, Some(etag)).await.0, StatusCode::NOT_MODIFIED);
            // Another city's record is answered as missing, exactly like one that does not exist.
            let (status, headers, problem) =
                get(&state, "320500", &format!("/api/v1/{collection}/{other}"), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{collection}");
            assert_eq!(headers[header::CONTENT_TYPE], crate::problem::PROBLEM_JSON);
            let (_, _, missing) = get(&state, "320500", &format!("/api/v1/{collection}/nothing"), None).await;
            assert_eq!(problem["type"], missing["type"]);
            assert_eq!(problem["detail"], missing["detail"].as_str().unwrap().replace("nothing", other));
        }
        // `?region=` narrows inside the scope and is refused outside it.
        let (status, _, list) = get(&state, "320500", "/api/v1/nodes?region=320583", None).await;
        assert_eq!((status, names(&list, "name")), (StatusCode::OK, vec!["sz".to_owned()]));
        assert_eq!(get(&state, "320500", "/api/v1/tenants?region=320100", None).await.0, StatusCode::FORBIDDEN);
        let (_, _, list) = get(&state, "province", "/api/v1/tenants?region=320100", None).await;
        assert_eq!(names(&list, "name"), ["nj-gov"]);
    }

    #[tokio::test]
    async fn a_wave_shows_each_city_its_own_counts() {
        let state = crate::fixtures::state();
        let (status, _, wave) = get(&state, "320500", "/api/v1/waves/w", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(wave["item"]["countsByRegion"], json!({ "320583": { "Scheduled": 1 } }));
        let (_, headers, list) = get(&state, "320500", "/api/v1/waves", None).await;
        assert_eq!(list["items"][0]["countsByRegion"], json!({ "320583": { "Scheduled": 1 } }));
        let etag = headers[header::ETAG].to_str().unwrap();
        assert_eq!(get(&state, "320500", "/api/v1/waves", Some(etag)).await.0, StatusCode::NOT_MODIFIED);
        let (_, _, whole) = get(&state, "province", "/api/v1/waves/w", None).await;
        assert_eq!(whole["item"]["countsByRegion"].as_object().unwrap().len(), 2);
        // A city with no systems in the wave does not see it.
        assert_eq!(get(&state, "320200", "/api/v1/waves/w", None).await.0, StatusCode::NOT_FOUND);
        let (_, _, none) = get(&state, "320200", "/api/v1/waves", None).await;
        assert_eq!(none["items"], json!([]));
    }

    /// A budget of `city` (`region`) on its own node and the provincial one, with one
    /// department; figures that differ per city.
    fn budget(city: &str, region: &str, display: &str, scale: u64) -> BudgetRecord {
        use suyun_store::readmodel::{BudgetAmounts, BudgetDepartment, BudgetNode, BudgetUtilization};
        let amounts =
            |cpu: u64| BudgetAmounts { cpu_millis: cpu * scale, memory_bytes: cpu << 30, storage_bytes: cpu << 40 };
        BudgetRecord {
            name: format!("{city}-budget"),
            region_code: region.into(),
            display_name: display.into(),
            nodes: vec![BudgetNode {
                node: city.into(),
                node_display_name: Some(display.into()),
                budget: amounts(400_000),
                used: amounts(100_000),
                utilization: BudgetUtilization { cpu: 25.0, memory: 25.0, storage: 25.0 },
            }],
            borrowed: amounts(2_000),
            lendable: amounts(8_000),
            departments: vec![BudgetDepartment {
                tenant: format!("{city}-gov"),
                display_name: format!("{display}大数据管理局"),
                used: amounts(100_000),
                lent: amounts(0),
                borrowed: amounts(2_000),
            }],
        }
    }

    fn put_budget(state: &AppState, record: &BudgetRecord, revision: i64) {
        let keys = &state.keys;
        let key = keys.budget(&record.region_code);
        state.index.write().unwrap().put(keys, &key, &serde_json::to_vec(record).unwrap(), revision);
    }

    /// The fixtures with 南京市's budget (320100) and 苏州市's (320500).
    fn with_budgets() -> AppState {
        let state = crate::fixtures::state();
        put_budget(&state, &budget("nj", "320100", "南京市", 1), 40);
        put_budget(&state, &budget("sz", "320500", "苏州市", 2), 41);
        state
    }

    #[tokio::test]
    async fn a_city_sees_its_own_budget_only() {
        let state = with_budgets();
        let nanjing = serde_json::to_value(budget("nj", "320100", "南京市", 1)).unwrap();
        let suzhou = serde_json::to_value(budget("sz", "320500", "苏州市", 2)).unwrap();
        // The list: 南京 its own, 苏州 its own, the province both.
        let (status, _, list) = get(&state, "320100", "/api/v1/budgets", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"], json!([nanjing]), "南京 sees its budget, with its figures, and not 苏州's");
        let (_, _, list) = get(&state, "320500", "/api/v1/budgets", None).await;
        assert_eq!(list["items"], json!([suzhou]));
        let (_, _, all) = get(&state, "province", "/api/v1/budgets", None).await;
        assert_eq!(all["items"], json!([nanjing, suzhou]));
        let (_, _, one) = get(&state, "province", "/api/v1/budgets?region=320500", None).await;
        assert_eq!(one["items"], json!([suzhou]));
        assert_eq!(get(&state, "320100", "/api/v1/budgets?region=320500", None).await.0, StatusCode::FORBIDDEN);
        // A county sees the records of its own code only, not its city's budget.
        let (_, _, county) = get(&state, "320583", "/api/v1/budgets", None).await;
        assert_eq!(county["items"], json!([]));

        // One budget: its own, 200 with the figures and an ETag; the province sees any.
        let (status, headers, item) = get(&state, "320100", "/api/v1/budgets/320100", None).await;
        assert_eq!((status, &item["item"]), (StatusCode::OK, &nanjing));
        assert_eq!(item["metadata"]["revision"], 40);
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(get(&state, "320100", "/api/v1/budgets/320100", Some(&etag)).await.0, StatusCode::NOT_MODIFIED);
        assert_eq!(get(&state, "province", "/api/v1/budgets/320500", None).await.2["item"], suzhou);

        // Another city's budget is answered exactly as a missing one: status, headers, body.
        let (foreign_status, foreign_headers, foreign) = get(&state, "320100", "/api/v1/budgets/320500", None).await;
        let (missing_status, missing_headers, missing) = get(&state, "320100", "/api/v1/budgets/320900", None).await;
        assert_eq!((foreign_status, missing_status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
        assert_eq!(foreign_headers[header::CONTENT_TYPE], crate::problem::PROBLEM_JSON);
        assert_eq!(foreign_headers[header::CONTENT_TYPE], missing_headers[header::CONTENT_TYPE]);
        assert!(!foreign_headers.contains_key(header::ETAG) && !missing_headers.contains_key(header::ETAG));
        assert_eq!(foreign["detail"], "budget \"320500\" not found");
        let mut renamed = missing.clone();
        renamed["detail"] = json!(missing["detail"].as_str().unwrap().replace("320900", "320500"));
        assert_eq!(foreign, renamed);
        assert_eq!(get(&state, "320583", "/api/v1/budgets/320500", None).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn another_citys_budget_changes_nothing_a_city_sees() {
        let state = with_budgets();
        let (_, headers, list) = get(&state, "320100", "/api/v1/budgets", None).await;
        let list_etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(list["metadata"]["revision"], 40);
        let (_, headers, summary) = get(&state, "320100", "/api/v1/summary", None).await;
        let summary_etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(summary["item"]["budgets"].as_array().unwrap().len(), 1);
        assert_eq!(summary["item"]["budgets"][0]["regionCode"], "320100");
        assert_eq!(summary["item"]["budgets"][0]["departments"], 1);
        assert_eq!(summary["item"]["budgets"][0]["lendable"]["cpuMillis"], 8_000);

        // 苏州's budget changes, then goes: 南京's answers stay 304.
        put_budget(&state, &budget("sz", "320500", "苏州市", 3), 50);
        let keys = state.keys.clone();
        state.index.write().unwrap().delete(&keys, &keys.budget("320500"), 51);
        assert_eq!(get(&state, "320100", "/api/v1/budgets", Some(&list_etag)).await.0, StatusCode::NOT_MODIFIED);
        assert_eq!(get(&state, "320100", "/api/v1/summary", Some(&summary_etag)).await.0, StatusCode::NOT_MODIFIED);
        // 南京's own changes: a new answer.
        put_budget(&state, &budget("nj", "320100", "南京市", 5), 52);
        let (status, _, list) = get(&state, "320100", "/api/v1/budgets", Some(&list_etag)).await;
        assert_eq!((status, &list["metadata"]["revision"]), (StatusCode::OK, &json!(52)));
        assert_eq!(list["items"][0]["borrowed"]["cpuMillis"], 10_000);
        assert_eq!(get(&state, "320100", "/api/v1/summary", Some(&summary_etag)).await.0, StatusCode::OK);
        let (_, _, all) = get(&state, "province", "/api/v1/summary", None).await;
        assert_eq!(all["item"]["budgets"].as_array().unwrap().len(), 1, "苏州's is gone");
    }

    #[tokio::test]
    async fn admission_authenticates_then_limits_then_guards_writes() {
        let limited =
            crate::fixtures::state().with_rate_limit(crate::ratelimit::RateLimit { per_second: 0.01, burst: 1 });
        assert_eq!(get(&limited, "320500", "/api/v1/nodes", None).await.0, StatusCode::OK);
        let (status, headers, problem) = get(&limited, "320500", "/api/v1/nodes", None).await;
        assert_eq!((status, problem["status"].as_u64()), (StatusCode::TOO_MANY_REQUESTS, Some(429)));
        assert!(headers.contains_key(header::RETRY_AFTER));
        // Public routes are not limited.
        assert_eq!(get(&limited, "320500", "/readyz", None).await.0, StatusCode::OK);

        let app = crate::router(crate::fixtures::state());
        let anonymous = Request::get("/api/v1/nodes").body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        // A write without a JSON content type is refused before its handler runs.
        let identity =
            Identity { name: "ops".into(), scope: Scope::Province, read_only: false, method: Method::Certificate };
        let mut write = Request::post("/api/v1/systems/S-sz/cutover-approval").body(Body::empty()).unwrap();
        write.extensions_mut().insert(PeerCertificate(std::sync::Arc::new(Some(Ok(identity)))));
        assert_eq!(app.oneshot(write).await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
