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

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, Uri, header};
use tower_http::compression::CompressionLayer;

pub use approval::{APPROVABLE, ApprovalRequest, ApprovalRequestResult, CUTOVER_STARTED};
pub use read::{MAX_LIMIT, SystemHistory, SystemQuery};
pub use summary::{NodeCapacity, Summary, WaveProgress};

use crate::AppState;
use crate::auth::{Identity, Scope};
use crate::metrics;
use crate::problem::{PROBLEM_JSON, Problem};
use crate::server::PeerCertificate;

/// One route: method, path template (axum syntax) and OpenAPI operation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Path template, e.g. `/api/v1/nodes/{name}`.
    pub path: &'static str,
    /// OpenAPI operation id.
    pub operation: &'static str,
}

const fn route(method: &'static str, path: &'static str, operation: &'static str) -> Route {
    Route { method, path, operation }
}

/// Every route the server has (the OpenAPI document is checked against it).
pub const ROUTES: &[Route] = &[
    route("GET", "/api/v1/nodes", "listNodes"),
    route("GET", "/api/v1/nodes/{name}", "getNode"),
    route("GET", "/api/v1/tenants", "listTenants"),
    route("GET", "/api/v1/tenants/{name}", "getTenant"),
    route("GET", "/api/v1/systems", "listSystems"),
    route("GET", "/api/v1/systems/{systemId}", "getSystem"),
    route("GET", "/api/v1/systems/{systemId}/history", "getSystemHistory"),
    route("POST", "/api/v1/systems/{systemId}/cutover-approval", "approveCutover"),
    route("DELETE", "/api/v1/systems/{systemId}/cutover-approval", "revokeCutoverApproval"),
    route("GET", "/api/v1/waves", "listWaves"),
    route("GET", "/api/v1/waves/{name}", "getWave"),
    route("GET", "/api/v1/summary", "getSummary"),
    route("GET", "/healthz", "healthz"),
    route("GET", "/readyz", "readyz"),
    route("GET", "/openapi.json", "openapi"),
];

/// The whole HTTPS application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/nodes", get(read::list_nodes))
        .route("/api/v1/nodes/{name}", get(read::get_node))
        .route("/api/v1/tenants", get(read::list_tenants))
        .route("/api/v1/tenants/{name}", get(read::get_tenant))
        .route("/api/v1/systems", get(read::list_systems))
        .route("/api/v1/systems/{systemId}", get(read::get_system))
        .route("/api/v1/systems/{systemId}/history", get(read::system_history))
        .route("/api/v1/systems/{systemId}/cutover-approval", post(approval::approve).delete(approval::revoke))
        .route("/api/v1/waves", get(read::list_waves))
        .route("/api/v1/waves/{name}", get(read::get_wave))
        .route("/api/v1/summary", get(summary::summary))
        .route_layer(middleware::from_fn_with_state(state.clone(), writes::guard))
        // Layers run bottom-up: authentication, then the per-identity rate limit.
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::ratelimit::limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
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
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
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

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document().to_string()).into_response()
}

/// Resolves the caller: a verified client certificate first, else a bearer token.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Result<Response, Problem> {
    let certificate = request.extensions().get::<PeerCertificate>().and_then(|c| c.0.clone());
    let identity = match certificate {
        Some(Ok(identity)) => identity,
        certificate => {
            let bearer = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim);
            match (bearer, certificate) {
                (Some(token), _) => {
                    state.tokens.lookup(token).ok_or_else(|| Problem::unauthenticated("unknown bearer token"))?
                }
                (None, Some(Err(why))) => return Err(Problem::unauthenticated(format!("client certificate: {why}"))),
                (None, _) => {
                    return Err(Problem::unauthenticated("present a client certificate or a bearer token"));
                }
            }
        }
    };
    request.extensions_mut().insert(identity);
    Ok(next.run(request).await)
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
