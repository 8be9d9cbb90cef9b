//! The web console for city operators (市级运维控制台) under `/console/`: pages rendered on the
//! server from the same index, with the same scopes, as the REST API.
//!
//! * **Who.** A client certificate (held on a USB key) is an identity by itself; otherwise a
//!   token login opens a session ([`session`]). A session is a cookie (`__Host-`, `Secure`,
//!   `HttpOnly`, `SameSite=Strict`) naming a record in the status store, so every replica
//!   knows it and logout ends it everywhere.
//! * **What.** Every page reads through the API's scope rules: a record outside the scope is
//!   "not found" exactly like a missing one. Approvals go through the API's own functions
//!   ([`crate::api::record_approval`]): the same 403 for a read-only identity, the same 409s.
//! * **Changes.** A form that changes something carries the session's CSRF token, comes from
//!   this origin (`Origin` checked), and is confirmed on a page of its own before it is sent.
//! * **Assets.** Two files (CSS and JavaScript), compiled into the binary; a strict
//!   Content-Security-Policy allows nothing else (no inline script or style, no `eval`).
//! * **Live.** `GET /console/events` is a server-sent event stream fed by the store watch: the
//!   page's script reloads the page's content when the scope's data changes, and shows since
//!   when the data is stale while the status store is unreachable.

mod assets;
mod i18n;
pub(crate) mod live;
mod pages;
pub mod session;
mod view;

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tower_http::compression::CompressionLayer;

pub use i18n::Lang;

use crate::AppState;
use crate::auth::Identity;
use crate::server::PeerCertificate;
use session::Session;

/// How the console is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Whether `/console/` is served at all.
    pub enabled: bool,
    /// How long a session lasts from its login.
    pub session_ttl: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> ConsoleSettings {
        ConsoleSettings { enabled: true, session_ttl: Duration::from_secs(8 * 3600) }
    }
}

/// Page size of the system list.
pub const PAGE_SIZE: usize = 50;

/// The Content-Security-Policy of every console response: its own script and style files
/// only, no inline script or style, no `eval`, no framing, forms only to itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Who is looking at a page, in which language.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The identity (from its certificate or its session's token).
    pub identity: Identity,
    /// Its session, which gives the CSRF token; `None` for a certificate whose session could
    /// not be opened (the status store unreachable): it can read, not change anything.
    pub session: Option<Session>,
    /// The language of the pages.
    pub lang: Lang,
    /// The page asked for (path and query): where the language switch comes back to.
    pub here: String,
}

/// The console's routes (under `/console`), with their middleware.
pub fn router(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/console/", get(pages::overview))
        .route("/console/systems", get(pages::systems))
        .route("/console/systems/{id}", get(pages::system))
        .route("/console/systems/{id}/approve", get(pages::confirm_approve).post(pages::approve))
        .route("/console/systems/{id}/revoke", get(pages::confirm_revoke).post(pages::revoke))
        .route("/console/waves", get(pages::waves))
        .route("/console/nodes", get(pages::nodes))
        .route("/console/tenants", get(pages::tenants))
        .route("/console/events", get(live::events))
        .route("/console/logout", axum::routing::post(pages::logout))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/lang", get(pages::switch_language))
        .route("/console/assets/{name}", get(assets::serve))
        .merge(protected)
        .route("/console/{*rest}", get(pages::no_page))
        .route_layer(middleware::from_fn_with_state(state, crate::metrics::track))
        .layer(middleware::from_fn(security_headers))
        .layer(CompressionLayer::new().gzip(true))
}

/// The headers every console response carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The language the request's cookie chose.
pub(crate) fn language(headers: &HeaderMap) -> Lang {
    Lang::from_cookie(cookie(headers, i18n::COOKIE))
}

/// The verified client certificate's identity, if the connection presented one.
fn certificate(request: &Request) -> Option<Identity> {
    match request.extensions().get::<PeerCertificate>().map(|c| c.0.as_ref()) {
        Some(Some(Ok(identity))) => Some(identity.clone()),
        _ => None,
    }
}

/// Whether a state-changing request comes from a page of this very origin: its `Origin`
/// header, when the browser sent one, must be `https://<the Host it was sent to>`.
pub(crate) fn same_origin(headers: &HeaderMap, uri: &http::Uri) -> bool {
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned));
    headers.get_all(header::ORIGIN).iter().all(|origin| {
        let origin = origin.to_str().unwrap_or_default();
        host.as_deref().is_some_and(|host| origin.eq_ignore_ascii_case(&format!("https://{host}")))
    })
}

/// Who is calling, for every page but the login: a client certificate, else a session. A GET
/// without either is sent to the login page; anything else is refused (401). A certificate
/// without a session of its own gets one on a page load (for its CSRF token). Writes must
/// come from this origin. The [`Viewer`] goes into the request.
async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let lang = language(request.headers());
    let certificate = certificate(&request);
    let found = session::find(&state, request.headers()).await;
    let resolved = found.and_then(|s| session::identity_of(&state, &s, certificate.as_ref()).map(|i| (i, s)));
    let mut set_cookie = None;
    let (identity, session) = match (resolved, certificate) {
        (Some((identity, session)), _) => (identity, Some(session)),
        (None, Some(cert)) => {
            // A certificate's first page (or its session ended): open one for its CSRF token.
            // The event stream does not open sessions (the page that opened it did).
            let opens = request.method() == Method::GET && request.uri().path() != "/console/events";
            let session = if opens {
                match state.console_sessions.get_or_open(&state, &cert, state.console.session_ttl).await {
                    Ok((session, cookie)) => {
                        set_cookie = Some(cookie);
                        Some(session)
                    }
                    Err(_) => None,
                }
            } else {
                None
            };
            (cert, session)
        }
        (None, None) => {
            if request.method() == Method::GET && request.uri().path() != "/console/events" {
                let response = Redirect::to("/console/login").into_response();
                if session::cookie_present(request.headers()) {
                    return pages::with_cookie(response, &session::removal());
                }
                return response;
            }
            return pages::refused(lang, StatusCode::UNAUTHORIZED, "log in first").into_response();
        }
    };
    if let Some(limited) = crate::ratelimit::over_limit(&state.limiter, &identity) {
        return limited;
    }
    if !request.method().is_safe() && !same_origin(request.headers(), request.uri()) {
        return pages::refused(lang, StatusCode::FORBIDDEN, "this form was not sent from this console").into_response();
    }
    let here = request.uri().path_and_query().map_or_else(|| "/console/".to_owned(), |p| p.as_str().to_owned());
    request.extensions_mut().insert(Viewer { identity, session, lang, here });
    let response = next.run(request).await;
    match set_cookie {
        Some(cookie) => pages::with_cookie(response, &cookie),
        None => response,
    }
}

#[cfg(test)]
mod tests;
