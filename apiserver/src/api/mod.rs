//! The REST API under `/api/v1`: routes, authentication, and what every handler shares.
//!
//! Authorisation follows one rule set: a record is visible when the caller's scope covers its
//! region code; anything else is answered as if it did not exist (404). Asking explicitly for
//! another region (`?region=`) or approving with a read-only identity is refused (403).

mod approval;
pub mod extract;
mod read;
mod summary;
pub mod writes;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{StatusCode, Uri, header};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};
use suyun_store::readmodel::{BudgetRecord, NodeRecord, SystemRecord, TenantRecord, WaveRecord};
use tower_http::compression::CompressionLayer;

pub use approval::{
    APPROVABLE, ApprovalRequest, ApprovalRequestResult, CUTOVER_STARTED, record_approval, revoke_approval,
};
pub use read::{MAX_LIMIT, SystemHistory, SystemQuery, system_matches};
pub use summary::{BudgetSummary, NodeCapacity, Summary, WaveProgress, summarize};

use crate::AppState;
use crate::auth::{Identity, Scope};
use crate::metrics;
use crate::problem::{PROBLEM_JSON, Problem};
use crate::response::{ItemResponse, ListResponse};
use crate::server::PeerCertificate;

/// A JSON schema, generated into the document's shared definitions (`$ref`s when named).
pub type Schema = fn(&mut SchemaGenerator) -> Value;

/// The schema of `T` (a [`Schema`] for a route entry).
fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (health, readiness, the document); not rate limited.
    Public,
    /// An authenticated identity, rate limited; reads are filtered by its scope.
    Authenticated,
}

/// The body of one documented answer.
#[derive(Debug, Clone, Copy)]
pub enum Content {
    /// No body.
    None,
    /// `application/json` with this schema.
    Json(Schema),
    /// `text/plain`.
    Text,
    /// `application/problem+json` (RFC 7807).
    Problem,
}

/// One answer a route documents besides those every route of its kind shares (which
/// [`crate::openapi`] adds from [`Route::access`] and [`Route::writes`]).
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Status code, e.g. `"200"`.
    pub status: &'static str,
    /// What it means.
    pub description: &'static str,
    /// Its body.
    pub content: Content,
}

const fn answer(status: &'static str, description: &'static str, content: Content) -> Answer {
    Answer { status, description, content }
}

/// A query parameter a route accepts.
#[derive(Debug, Clone, Copy)]
pub struct QueryParameter {
    /// Name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The values the handler accepts (so that a request valid by the document is not refused).
    pub schema: fn() -> Value,
}

/// The request body a route accepts.
#[derive(Debug, Clone, Copy)]
pub struct RequestBody {
    /// Whether a body must be sent.
    pub required: bool,
    /// What it carries.
    pub description: &'static str,
    /// Its `application/json` schema.
    pub schema: Schema,
}

/// One route: what the router serves and what the OpenAPI document says of it. [`router`]
/// and [`crate::openapi::document`] are both built from [`ROUTES`] and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Path template, e.g. `/api/v1/nodes/{name}`.
    pub path: &'static str,
    /// OpenAPI operation id.
    pub operation: &'static str,
    /// The handler, for `method` only.
    pub handler: fn() -> MethodRouter<AppState>,
    /// Who may call it.
    pub access: Access,
    /// Query parameters (path parameters come from `path`).
    pub query: &'static [QueryParameter],
    /// The request body, for a write that takes one.
    pub body: Option<RequestBody>,
    /// Its own answers: the successes, and the problems only it has.
    pub answers: &'static [Answer],
}

impl Route {
    /// Whether it changes something (any method but `GET`): such requests are guarded by
    /// [`writes`] (JSON content type, allowed origin) and take a body.
    pub fn writes(&self) -> bool {
        self.method != "GET"
    }
}

const fn read(
    path: &'static str,
    operation: &'static str,
    handler: fn() -> MethodRouter<AppState>,
    query: &'static [QueryParameter],
    answers: &'static [Answer],
) -> Route {
    Route { method: "GET", path, operation, handler, access: Access::Authenticated, query, body: None, answers }
}

const fn public(
    path: &'static str,
    operation: &'static str,
    handler: fn() -> MethodRouter<AppState>,
    answers: &'static [Answer],
) -> Route {
    Route { method: "GET", path, operation, handler, access: Access::Public, query: &[], body: None, answers }
}

/// `200 OK` with a JSON body of this schema.
macro_rules! ok {
    ($t:ty) => {
        &[answer("200", "OK", Content::Json(schema::<$t>))]
    };
}

const REGION: QueryParameter = QueryParameter {
    name: "region",
    description: "Only this region (inside your scope, else 403)",
    schema: || json!({ "type": "string", "pattern": "^(province|[0-9]{6})?$" }),
};

const fn text(name: &'static str, description: &'static str) -> QueryParameter {
    QueryParameter { name, description, schema: || json!({ "type": "string" }) }
}

/// The filters and paging of `GET /api/v1/systems` ([`SystemQuery`]).
const SYSTEM_QUERY: &[QueryParameter] = &[
    text("node", "Only systems placed on this node"),
    text("tenant", "Only systems of this tenant"),
    text("phase", "Only systems in this phase"),
    text("wave", "Only systems of this wave"),
    text("q", "Case-insensitive substring of systemId, name or displayName"),
    REGION,
    QueryParameter {
        name: "limit",
        description: "Page size, 1–1000 (default 100)",
        schema: || json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT }),
    },
    text("continue", "metadata.continue of the previous page"),
];

/// Every route the server has, in the order the OpenAPI document and the tests take them
/// (the `POST` of an approval before its `DELETE`).
pub const ROUTES: &[Route] = &[
    read("/api/v1/nodes", "listNodes", || get(read::list::<NodeRecord>), &[REGION], ok!(ListResponse<NodeRecord>)),
    read("/api/v1/nodes/{name}", "getNode", || get(read::get::<NodeRecord>), &[], ok!(ItemResponse<NodeRecord>)),
    read(
        "/api/v1/tenants",
        "listTenants",
        || get(read::list::<TenantRecord>),
        &[REGION],
        ok!(ListResponse<TenantRecord>),
    ),
    read(
        "/api/v1/tenants/{name}",
        "getTenant",
        || get(read::get::<TenantRecord>),
        &[],
        ok!(ItemResponse<TenantRecord>),
    ),
    read("/api/v1/systems", "listSystems", || get(read::list_systems), SYSTEM_QUERY, ok!(ListResponse<SystemRecord>)),
    read(
        "/api/v1/systems/{systemId}",
        "getSystem",
        || get(read::get::<SystemRecord>),
        &[],
        ok!(ItemResponse<SystemRecord>),
    ),
    read(
        "/api/v1/systems/{systemId}/history",
        "getSystemHistory",
        || get(read::system_history),
        &[],
        ok!(ItemResponse<SystemHistory>),
    ),
    Route {
        method: "POST",
        path: "/api/v1/systems/{systemId}/cutover-approval",
        operation: "approveCutover",
        handler: || post(approval::approve),
        access: Access::Authenticated,
        query: &[],
        body: Some(RequestBody {
            required: false,
            description: "Optional: a reason or ticket reference. Send `Content-Type: application/json` \
                          even with an empty body.",
            schema: schema::<ApprovalRequest>,
        }),
        answers: &[
            answer("200", "Approved before: the approval in force", Content::Json(schema::<ApprovalRequestResult>)),
            answer("201", "Approval recorded", Content::Json(schema::<ApprovalRequestResult>)),
            answer(
                "409",
                "The system needs no approval, or its cutover has started or it is finished",
                Content::Problem,
            ),
        ],
    },
    Route {
        method: "DELETE",
        path: "/api/v1/systems/{systemId}/cutover-approval",
        operation: "revokeCutoverApproval",
        handler: || delete(approval::revoke),
        access: Access::Authenticated,
        query: &[],
        body: None,
        answers: &[
            answer("204", "Approval revoked", Content::None),
            answer("409", "The cutover has started, or the approval changed while it was revoked", Content::Problem),
        ],
    },
    read("/api/v1/waves", "listWaves", || get(read::list_own::<WaveRecord>), &[], ok!(ListResponse<WaveRecord>)),
    read("/api/v1/waves/{name}", "getWave", || get(read::get::<WaveRecord>), &[], ok!(ItemResponse<WaveRecord>)),
    read(
        "/api/v1/budgets",
        "listBudgets",
        || get(read::list::<BudgetRecord>),
        &[REGION],
        ok!(ListResponse<BudgetRecord>),
    ),
    read(
        "/api/v1/budgets/{regionCode}",
        "getBudget",
        || get(read::get::<BudgetRecord>),
        &[],
        ok!(ItemResponse<BudgetRecord>),
    ),
    read("/api/v1/summary", "getSummary", || get(summary::summary), &[REGION], ok!(ItemResponse<Summary>)),
    public("/healthz", "healthz", || get(|| async { "ok" }), &[answer("200", "OK", Content::Text)]),
    public(
        "/readyz",
        "readyz",
        || get(readyz),
        &[
            answer("200", "OK", Content::Text),
            answer("503", "Degraded: status store unreachable or not read yet", Content::Problem),
        ],
    ),
    public(
        "/openapi.json",
        "openapi",
        || get(openapi),
        &[answer("200", "OK", Content::Json(|_| json!({ "type": "string" })))],
    ),
];

/// The OpenAPI document as served by `GET /openapi.json` (rendered from [`ROUTES`] by
/// [`crate::openapi`]; [`crate::router`] passes it in).
#[derive(Debug, Clone)]
pub struct OpenApiDocument(pub Bytes);

/// The whole HTTPS application: every route of [`ROUTES`], with `document` at
/// `/openapi.json`. Authenticated routes run authentication, then the per-identity rate
/// limit, then the guard of writes; every matched route is counted in the metrics.
pub fn router(state: AppState, document: OpenApiDocument) -> Router {
    let (mut api, mut public) = (Router::new(), Router::new());
    for route in ROUTES {
        let handler = (route.handler)();
        match route.access {
            Access::Authenticated => api = api.route(route.path, handler),
            Access::Public => public = public.route(route.path, handler),
        }
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .merge(api)
        .merge(public.layer(Extension(document)))
        .route_layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .fallback(no_route)
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(middleware::from_fn(errors_as_problems))
        .layer(CompressionLayer::new().gzip(true))
        .with_state(state)
}

async fn no_route(State(state): State<AppState>, uri: Uri) -> Problem {
    state.metrics.observe("", "", StatusCode::NOT_FOUND.as_u16(), 0.0);
    Problem::no_route(uri.path())
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.health.loaded() {
        return Problem::unavailable("not ready: the status store has not been read yet").into_response();
    }
    match state.health.stale_seconds() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(s) => {
            Problem::unavailable(format!("degraded: status store unreachable for {s} s; serving the last state"))
                .into_response()
        }
    }
}

/// The last line behind the extractors: an error response that is not a problem yet (one a
/// layer made by itself) becomes one, with its status and headers (`Allow`, `Retry-After`, …)
/// kept and its body, which may carry internal text, replaced.
async fn errors_as_problems(request: Request, next: Next) -> Response {
    // Kept for the log line of a replaced error; cloning a `Uri` counts a reference.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return response;
    }
    let path = uri.path();
    tracing::warn!(%method, %path, %status, "an error response was not a problem; replaced by one");
    let (mut parts, _) = response.into_parts();
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::CONTENT_ENCODING] {
        parts.headers.remove(name);
    }
    let detail = if status.is_server_error() {
        "the request could not be handled; the server logged why"
    } else {
        status.canonical_reason().unwrap_or("the request was refused")
    };
    let mut problem = Problem::from_status(status, detail).into_response();
    problem.headers_mut().extend(parts.headers);
    problem
}

async fn openapi(Extension(document): Extension<OpenApiDocument>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document.0).into_response()
}

/// What every authenticated route checks before its handler, in one middleware (a layer
/// costs a boxed future and a clone of the state per request): who is calling (401), whether
/// that identity is over its rate limit (429), and for a write the guard of [`writes`] (415,
/// 403). The identity goes into the request for the handler.
async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let identity = match authenticate(&state, &request) {
        Ok(identity) => identity,
        Err(problem) => return problem.into_response(),
    };
    if let Some(limited) = crate::ratelimit::over_limit(&state.limiter, &identity) {
        return limited;
    }
    if let Err(problem) = writes::check(request.headers(), request.method(), &state.allowed_origins) {
        return problem.into_response();
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// Resolves the caller: a verified client certificate first, else a bearer token.
fn authenticate(state: &AppState, request: &Request) -> Result<Identity, Problem> {
    let certificate = request.extensions().get::<PeerCertificate>().and_then(|c| c.0.as_ref().as_ref());
    match certificate {
        Some(Ok(identity)) => Ok(identity.clone()),
        certificate => {
            let bearer = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim);
            match (bearer, certificate) {
                (Some(token), _) => {
                    state.tokens.lookup(token).ok_or_else(|| Problem::unauthenticated("unknown bearer token"))
                }
                (None, Some(Err(why))) => Err(Problem::unauthenticated(format!("client certificate: {why}"))),
                (None, _) => Err(Problem::unauthenticated("present a client certificate or a bearer token")),
            }
        }
    }
}

/// The scope a request reads: the caller's, narrowed by `?region=` (which must lie inside it).
fn effective_scope(identity: &Identity, region: Option<&str>) -> Result<Scope, Problem> {
    let Some(region) = region.filter(|r| !r.is_empty()) else { return Ok(identity.scope.clone()) };
    let asked = Scope::parse(region).map_err(Problem::bad_request)?;
    match (&identity.scope, &asked) {
        (Scope::Province, _) => Ok(asked),
        (Scope::Region(own), Scope::Region(code)) if suyun_store::readmodel::region_in_scope(code, own) => Ok(asked),
        _ => Err(Problem::forbidden(format!("region {region} is outside your scope {}", identity.scope.as_str()))),
    }
}

/// The index for reading; a poisoned lock (a panic while it was written) is a logged 500.
fn read_index(state: &AppState) -> Result<std::sync::RwLockReadGuard<'_, crate::index::Index>, Problem> {
    state.index.read().map_err(|_| {
        tracing::error!("the index lock is poisoned");
        Problem::internal()
    })
}

/// The staleness to report, or 503 before the first read of the store.
fn staleness(state: &AppState) -> Result<Option<u64>, Problem> {
    if !state.health.loaded() {
        return Err(Problem::unavailable("the status store has not been read yet"));
    }
    Ok(state.health.stale_seconds())
}
