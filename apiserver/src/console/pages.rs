//! The console's pages: one handler and one template each.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde::{Deserialize, Serialize};
use suyun_store::Phase;
use suyun_store::readmodel::SystemRecord;

use super::i18n::{self, Lang, Texts};
use super::view::{self, Bar, SystemRow};
use super::{PAGE_SIZE, Viewer, assets, session};
use crate::AppState;
use crate::api::{APPROVABLE, CUTOVER_STARTED, SystemQuery, record_approval, revoke_approval, summarize};
use crate::auth::{Identity, Method, Scope};
use crate::index::Index;
use crate::problem::Problem;

/// What every page's frame shows: title, navigation, who is signed in, the stale banner.
#[derive(Debug)]
pub struct Chrome {
    /// The texts of the page's language.
    pub t: &'static Texts,
    /// The page's title.
    pub title: String,
    /// The section of the navigation to mark as current (`overview`, `systems`, …).
    pub section: &'static str,
    /// The signed-in identity, `None` on the login and error pages before one.
    pub user: Option<UserView>,
    /// The session's CSRF token for the logout form; empty without a session.
    pub csrf: String,
    /// Since when the data is stale (China Standard Time), or `None` when current.
    pub stale_since: Option<String>,
    /// The assets' version (`?v=`).
    pub assets: &'static str,
    /// The other language: its code and name.
    pub other_lang: (&'static str, &'static str),
    /// Where the language switch comes back to.
    pub back: String,
}

/// The signed-in identity as the header shows it.
#[derive(Debug)]
pub struct UserView {
    /// Certificate CN or token identity.
    pub name: String,
    /// Its scope, named.
    pub scope: String,
    /// Whether it may only read.
    pub read_only: bool,
    /// Whether it holds a session it can end (a certificate session ends with the browser).
    pub can_log_out: bool,
}

fn chrome(
    state: Option<&AppState>,
    lang: Lang,
    viewer: Option<&Viewer>,
    title: String,
    section: &'static str,
) -> Chrome {
    let t = lang.texts();
    let other = lang.other();
    Chrome {
        t,
        title,
        section,
        user: viewer.map(|v| UserView {
            name: v.identity.name.clone(),
            scope: i18n::region(lang, v.identity.scope.as_str()),
            read_only: v.identity.read_only,
            can_log_out: v.identity.method == Method::Token && v.session.is_some(),
        }),
        csrf: viewer.and_then(|v| v.session.as_ref()).map(|s| s.csrf()).unwrap_or_default(),
        stale_since: state.and_then(|s| s.health.stale_seconds()).map(view::seconds_ago),
        assets: assets::version(),
        other_lang: (other.code(), other.texts().language_name),
        back: viewer.map_or_else(|| "/console/".to_owned(), |v| v.here.clone()),
    }
}

impl Viewer {
    fn chrome(&self, state: &AppState, title: impl Into<String>, section: &'static str) -> Chrome {
        chrome(Some(state), self.lang, Some(self), title.into(), section)
    }

    fn t(&self) -> &'static Texts {
        self.lang.texts()
    }

    fn scope(&self) -> &Scope {
        &self.identity.scope
    }
}

/// A rendered page with `status`.
fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// An error page.
#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    page: Chrome,
    heading: String,
    detail: String,
}

/// The error page of a refused request, before anyone is known.
pub fn refused(lang: Lang, status: StatusCode, detail: &str) -> Response {
    let t = lang.texts();
    let page = ErrorPage {
        page: chrome(None, lang, None, t.error.into(), ""),
        heading: t.error.into(),
        detail: detail.into(),
    };
    render(status, &page)
}

impl Viewer {
    /// The error page of `problem`, for this viewer.
    fn problem(&self, state: &AppState, problem: Problem) -> Response {
        let heading = if problem.status == StatusCode::NOT_FOUND { self.t().not_found } else { self.t().error };
        let page = ErrorPage { page: self.chrome(state, heading, ""), heading: heading.into(), detail: problem.detail };
        render(problem.status, &page)
    }

    /// The "not found" page of a `kind` named `name`: the same for a record that does not
    /// exist and one outside the viewer's scope.
    fn not_found(&self, state: &AppState, kind: &str, name: &str) -> Response {
        let t = self.t();
        let page = ErrorPage {
            page: self.chrome(state, t.not_found, ""),
            heading: t.not_found.into(),
            detail: (t.not_found_detail)(kind, name),
        };
        render(StatusCode::NOT_FOUND, &page)
    }
}

/// `GET /console/{anything else}`.
pub async fn no_page(headers: HeaderMap, uri: Uri) -> Response {
    let lang = super::language(&headers);
    let t = lang.texts();
    let page = ErrorPage {
        page: chrome(None, lang, None, t.not_found.into(), ""),
        heading: t.not_found.into(),
        detail: (t.not_found_detail)(t.kind_page, uri.path()),
    };
    render(StatusCode::NOT_FOUND, &page)
}

// ---------------------------------------------------------------------------------------------
// Login, logout, language

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    page: Chrome,
    failed: bool,
}

/// `GET /console/login`.
pub async fn login_form(headers: HeaderMap) -> Response {
    let lang = super::language(&headers);
    render(
        StatusCode::OK,
        &LoginPage { page: chrome(None, lang, None, lang.texts().login_title.into(), ""), failed: false },
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /console/login`: a token that the token file lists opens a session.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let lang = super::language(&headers);
    if !super::same_origin(&headers, &uri) {
        return refused(lang, StatusCode::FORBIDDEN, "this form was not sent from this console");
    }
    // Guessing tokens costs the guesser the rate limit of its address.
    let peer = peer.map_or_else(|| "an unknown address".to_owned(), |Extension(ConnectInfo(p))| p.ip().to_string());
    let caller =
        Identity { name: format!("login from {peer}"), scope: Scope::Province, read_only: true, method: Method::Token };
    if let Some(limited) = crate::ratelimit::over_limit(&state.limiter, &caller) {
        return limited;
    }
    let Ok(Form(form)) = form else { return refused(lang, StatusCode::BAD_REQUEST, "the login form is incomplete") };
    let token = form.token.trim();
    let Some(identity) = state.tokens.lookup(token) else {
        tracing::info!(%peer, "console login with an unknown token");
        let page = LoginPage { page: chrome(None, lang, None, lang.texts().login_title.into(), ""), failed: true };
        return render(StatusCode::UNAUTHORIZED, &page);
    };
    match session::open(&state, &identity, Some(token), state.console.session_ttl).await {
        Ok((_, cookie)) => with_cookie(Redirect::to("/console/").into_response(), &cookie),
        Err(problem) => refused(lang, problem.status, &problem.detail),
    }
}

/// `response` with `Set-Cookie: cookie` added.
pub(super) fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /console/logout`: ends the session everywhere.
pub async fn logout(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Some(session) = checked_session(&viewer, form.ok().map(|f| f.0.csrf)) else {
        return viewer
            .problem(&state, Problem::forbidden("the form's CSRF token is missing or wrong; reload the page"));
    };
    match session::close(&state, &session).await {
        Ok(cookie) => with_cookie(Redirect::to("/console/login").into_response(), &cookie),
        Err(problem) => viewer.problem(&state, problem),
    }
}

/// The viewer's session when `csrf` is its CSRF token.
fn checked_session(viewer: &Viewer, csrf: Option<String>) -> Option<session::Session> {
    let session = viewer.session.as_ref()?;
    session::csrf_matches(session, csrf.as_deref()?).then(|| session.clone())
}

#[derive(Debug, Deserialize)]
pub struct LanguageQuery {
    to: Option<String>,
    back: Option<String>,
}

/// `GET /console/lang?to=en&back=/console/...`: keeps the language in a cookie and goes back.
pub async fn switch_language(query: Result<Query<LanguageQuery>, QueryRejection>) -> Response {
    let query = query.map(|q| q.0).unwrap_or(LanguageQuery { to: None, back: None });
    let lang = Lang::from_cookie(query.to.as_deref());
    // Only back to a page of the console (no open redirect), and only printable ASCII (a
    // `Location` header cannot carry anything else).
    let back = query
        .back
        .filter(|b| b.starts_with("/console/") && !b.contains("//") && !b.contains('\\'))
        .filter(|b| b.bytes().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "/console/".to_owned());
    let cookie = format!("{}={}; Path=/console; Secure; SameSite=Strict; Max-Age=31536000", i18n::COOKIE, lang.code());
    with_cookie(Redirect::to(&back).into_response(), &cookie)
}

// ---------------------------------------------------------------------------------------------
// Overview

struct NodeView {
    name: String,
    display_name: String,
    region: String,
    ready: bool,
    bars: Vec<Bar>,
}

struct WaveView {
    name: String,
    phase: String,
    bar: Bar,
    eta: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    page: Chrome,
    nodes: Vec<NodeView>,
    waves: Vec<WaveView>,
    phases: Vec<(String, String, u64)>,
    blocked: Vec<(String, u64, String)>,
    awaiting: u64,
    systems: u64,
    completed_percent: String,
    eta: String,
}

/// Whether an approval of `system`'s cutover is in force: one waiting in the store, or one the
/// operator has taken (its `CutoverApproved` condition `True`/`Approved`). `approval.approvedBy`
/// alone does not say it: after a failed cutover it still names the approval that was used up,
/// and the retry needs a new one.
fn approval_in_force(index: &Index, system: &SystemRecord) -> bool {
    index.approvals.contains_key(&system.system_id)
        || system
            .conditions
            .iter()
            .any(|c| c.type_ == "CutoverApproved" && c.status == "True" && c.reason == "Approved")
}

/// Whether `system` waits for an approval: its wave needs one, it is at its cutover, and no
/// approval is in force.
fn awaits_approval(index: &Index, system: &SystemRecord) -> bool {
    system.approval.required && system.phase == Phase::AwaitingCutover.as_str() && !approval_in_force(index, system)
}

/// `GET /console/`.
pub async fn overview(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    let Ok(index) = state.index.read() else { return viewer.problem(&state, Problem::internal()) };
    let (t, lang) = (viewer.t(), viewer.lang);
    let summary = summarize(&index, viewer.scope());
    let nodes = index
        .nodes
        .values()
        .filter(|n| viewer.scope().covers(&n.record.region_code))
        .map(|n| NodeView {
            name: n.record.name.clone(),
            display_name: n.record.display_name.clone(),
            region: i18n::region(lang, &n.record.region_code),
            ready: n.record.ready,
            bars: view::bars(t, &n.record.allocated, &n.record.allocatable),
        })
        .collect();
    let waves = summary
        .waves
        .iter()
        .map(|w| WaveView {
            name: w.name.clone(),
            phase: i18n::wave_phase(lang, &w.phase),
            bar: view::progress(t.completed, w.completed, w.systems),
            eta: view::time(w.eta.as_deref()),
        })
        .collect();
    let phases = Phase::ALL
        .iter()
        .filter_map(|p| {
            summary.systems_by_phase.get(p.as_str()).map(|n| (p.as_str().to_owned(), i18n::phase(lang, p.as_str()), *n))
        })
        .collect();
    let mut blocked: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut awaiting = 0;
    for system in index.systems_in(viewer.scope()) {
        let record = &system.record;
        if record.phase == Phase::Blocked.as_str() {
            let reason = record.reason.clone().unwrap_or_else(|| "Unknown".to_owned());
            let entry = blocked.entry(reason).or_insert_with(|| (0, record.message.clone().unwrap_or_default()));
            entry.0 += 1;
        }
        if awaits_approval(&index, record) {
            awaiting += 1;
        }
    }
    let mut blocked: Vec<(String, u64, String)> = blocked.into_iter().map(|(r, (n, m))| (r, n, m)).collect();
    blocked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let page = OverviewPage {
        page: viewer.chrome(&state, t.nav_overview, "overview"),
        nodes,
        waves,
        phases,
        blocked,
        awaiting,
        systems: summary.systems,
        completed_percent: format!("{:.1}", summary.completed_percent),
        eta: view::time(summary.eta.as_deref()),
    };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------------------------------------
// Systems

/// The filters, sort and page of the system list: all in the URL, so a view can be
/// bookmarked and shared.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SystemsQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tenant: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    wave: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sort: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    page: String,
}

impl SystemsQuery {
    /// The list's URL with this query and page `page`.
    fn url(&self, page: usize) -> String {
        let query = SystemsQuery { page: if page > 1 { page.to_string() } else { String::new() }, ..self.clone() };
        match serde_urlencoded::to_string(&query) {
            Ok(q) if !q.is_empty() => format!("/console/systems?{q}"),
            _ => "/console/systems".to_owned(),
        }
    }

    /// The API's filter of the same choice (one matching rule for the API and the console).
    fn filter(&self) -> SystemQuery {
        let some = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        SystemQuery {
            node: some(&self.node),
            tenant: some(&self.tenant),
            phase: some(&self.phase),
            wave: some(&self.wave),
            q: some(&self.q),
            ..SystemQuery::default()
        }
    }
}

struct Choice {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "console/systems.html")]
struct SystemsPage {
    page: Chrome,
    query: SystemsQuery,
    phases: Vec<Choice>,
    /// `None` when there are too many to list: the filter is then a text field.
    tenants: Option<Vec<Choice>>,
    waves: Vec<Choice>,
    nodes: Vec<Choice>,
    sorts: Vec<Choice>,
    rows: Vec<SystemRow>,
    paging: String,
    prev: Option<String>,
    next: Option<String>,
}

/// Most tenants the tenant filter lists as choices.
const MAX_CHOICES: usize = 60;

fn phase_rank(phase: &str) -> usize {
    Phase::ALL.iter().position(|p| p.as_str() == phase).unwrap_or(Phase::ALL.len())
}

/// The systems of the viewer's scope that `query` selects, in its order: its page, how many
/// there are in all, and the number of pages.
pub fn select<'a>(
    index: &'a Index,
    scope: &'a Scope,
    query: &SystemsQuery,
) -> (Vec<&'a SystemRecord>, usize, usize, usize) {
    let filter = query.filter();
    let needle = filter.q.as_deref().map(str::to_lowercase);
    let (page, _) =
        index.systems_page(scope, None, usize::MAX, |s| crate::api::system_matches(s, &filter, needle.as_deref()));
    let mut selected: Vec<&SystemRecord> = page.into_iter().map(|s| &s.record).collect();
    match query.sort.as_str() {
        "name" => {
            selected.sort_by(|a, b| a.display_name.cmp(&b.display_name).then_with(|| a.system_id.cmp(&b.system_id)))
        }
        "phase" => selected.sort_by_key(|s| phase_rank(&s.phase)),
        "start" => selected.sort_by(|a, b| {
            (a.planned_start.is_none(), &a.planned_start).cmp(&(b.planned_start.is_none(), &b.planned_start))
        }),
        _ => {} // by systemId: the index's order
    }
    let total = selected.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.parse::<usize>().unwrap_or(1).clamp(1, pages);
    let rows = selected.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    (rows, total, page, pages)
}

/// `GET /console/systems?q=&phase=&tenant=&wave=&node=&sort=&page=`.
pub async fn systems(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    query: Result<Query<SystemsQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return viewer.problem(&state, Problem::bad_request("the filters of this address cannot be read"));
    };
    let Ok(index) = state.index.read() else { return viewer.problem(&state, Problem::internal()) };
    let (t, lang, scope) = (viewer.t(), viewer.lang, viewer.scope());
    let (rows, total, page, pages) = select(&index, scope, &query);
    let rows = rows.into_iter().map(|s| SystemRow::of(lang, s)).collect();
    let any = || Choice { value: String::new(), label: t.any.to_owned() };
    let phases = std::iter::once(any())
        .chain(Phase::ALL.iter().map(|p| Choice { value: p.as_str().into(), label: i18n::phase(lang, p.as_str()) }))
        .collect();
    // A city has a few dozen tenants, the province hundreds: beyond `MAX_CHOICES` the tenant
    // filter is a text field (a list that long is neither usable nor cheap to send).
    let in_scope = index.tenants.values().filter(|e| scope.covers(&e.record.region_code));
    let tenants = (in_scope.clone().count() <= MAX_CHOICES).then(|| {
        std::iter::once(any())
            .chain(in_scope.map(|e| Choice {
                value: e.record.name.clone(),
                label: format!("{} ({})", e.record.display_name, e.record.name),
            }))
            .collect()
    });
    let waves = std::iter::once(any())
        .chain(index.waves_in(scope).map(|w| Choice { value: w.record.name.clone(), label: w.record.name.clone() }))
        .collect();
    let nodes = std::iter::once(any())
        .chain(index.nodes.values().filter(|e| scope.covers(&e.record.region_code)).map(|e| Choice {
            value: e.record.name.clone(),
            label: format!("{} ({})", e.record.display_name, e.record.name),
        }))
        .collect();
    let sorts = [("", t.sort_id), ("name", t.sort_name), ("phase", t.sort_phase), ("start", t.sort_start)]
        .into_iter()
        .map(|(value, label)| Choice { value: value.into(), label: label.into() })
        .collect();
    let page_view = SystemsPage {
        page: viewer.chrome(&state, t.nav_systems, "systems"),
        paging: (t.paging)(page, pages, total),
        prev: (page > 1).then(|| query.url(page - 1)),
        next: (page < pages).then(|| query.url(page + 1)),
        query,
        phases,
        tenants,
        waves,
        nodes,
        sorts,
        rows,
    };
    render(StatusCode::OK, &page_view)
}

// ---------------------------------------------------------------------------------------------
// One system

struct EntryView {
    time: String,
    from: String,
    to: String,
    reason: String,
    actor: String,
    approval_reason: String,
}

struct ApprovalView {
    required: bool,
    /// `who, when` of the approval in force or applied.
    approved: Option<String>,
    /// Its reason.
    reason: String,
    /// Waiting in the store for the cutover (can still be revoked).
    pending: bool,
    can_approve: bool,
    can_revoke: bool,
}

#[derive(Template)]
#[template(path = "console/system.html")]
struct SystemPage {
    page: Chrome,
    s: SystemRow,
    region: String,
    security_level: u8,
    attempts: u32,
    started: String,
    finished: String,
    reason: String,
    message: String,
    blocked: bool,
    conditions: Vec<(String, String, String, String)>,
    history: Vec<EntryView>,
    approval: ApprovalView,
    done: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub struct SystemQueryParams {
    done: Option<String>,
}

/// `GET /console/systems/{id}`.
pub async fn system(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Query(params): Query<SystemQueryParams>,
) -> Response {
    let Ok(index) = state.index.read() else { return viewer.problem(&state, Problem::internal()) };
    let (t, lang, scope) = (viewer.t(), viewer.lang, viewer.scope());
    let Some(entry) = index.system(scope, &id) else { return viewer.not_found(&state, t.kind_system, &id) };
    let s = &entry.record;
    let pending = index.approvals.get(&id).filter(|a| scope.covers(&a.record.region_code));
    let phase = Phase::ALL.into_iter().find(|p| p.as_str() == s.phase);
    let writer = !viewer.identity.read_only;
    let approved = match (pending, &s.approval.approved_by) {
        (Some(a), _) => Some(format!("{}, {}", a.record.approved_by, view::time(Some(&a.record.time)))),
        (None, Some(by)) => Some(format!("{by}, {}", view::time(s.approval.approved_at.as_deref()))),
        (None, None) => None,
    };
    let approval = ApprovalView {
        required: s.approval.required,
        reason: pending.and_then(|a| a.record.reason.clone()).unwrap_or_default(),
        pending: pending.is_some(),
        can_approve: writer
            && s.approval.required
            && !approval_in_force(&index, s)
            && phase.is_some_and(|p| APPROVABLE.contains(&p)),
        can_revoke: writer && pending.is_some() && phase.is_some_and(|p| !CUTOVER_STARTED.contains(&p)),
        approved,
    };
    let history = index
        .journal
        .get(&id)
        .map(|entries| {
            entries
                .values()
                .filter(|e| scope.covers(&e.record.region_code))
                .map(|e| EntryView {
                    time: view::time(Some(&e.record.time)),
                    from: i18n::phase(lang, &e.record.from),
                    to: i18n::phase(lang, &e.record.to),
                    reason: e.record.reason.clone(),
                    actor: e.record.actor.clone(),
                    approval_reason: e.record.approval_reason.clone().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let done = match params.done.as_deref() {
        Some("approved") => Some(t.done_approved),
        Some("already") => Some(t.done_already),
        Some("revoked") => Some(t.done_revoked),
        _ => None,
    };
    let page = SystemPage {
        page: viewer.chrome(&state, format!("{} · {}", s.system_id, s.display_name), "systems"),
        s: SystemRow::of(lang, s),
        region: i18n::region(lang, &s.region_code),
        security_level: s.security_level,
        attempts: s.attempts,
        started: view::time(s.started_at.as_deref()),
        finished: view::time(s.completed_at.as_deref()),
        reason: s.reason.clone().unwrap_or_default(),
        message: s.message.clone().unwrap_or_default(),
        blocked: s.phase == Phase::Blocked.as_str(),
        conditions: s
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()))
            .collect(),
        history,
        approval,
        done,
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
struct ConfirmPage {
    page: Chrome,
    id: String,
    name: String,
    approve: bool,
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// The confirmation page of an approval (`approve`) or revocation: the system must be the
/// viewer's, and the viewer allowed to change it (the same refusals as the API's).
fn confirm(state: &AppState, viewer: &Viewer, id: &str, approve: bool, reason: String) -> Response {
    let t = viewer.t();
    let name = match state.index.read() {
        Ok(index) => match index.system(viewer.scope(), id) {
            Some(s) => s.record.display_name.clone(),
            None => return viewer.not_found(state, t.kind_system, id),
        },
        Err(_) => return viewer.problem(state, Problem::internal()),
    };
    if viewer.identity.read_only {
        return viewer
            .problem(state, Problem::forbidden(format!("{} may read but not approve cutovers", viewer.identity.name)));
    }
    let title = if approve { t.approve } else { t.revoke };
    let page = ConfirmPage { page: viewer.chrome(state, title, "systems"), id: id.to_owned(), name, approve, reason };
    render(StatusCode::OK, &page)
}

/// `GET /console/systems/{id}/approve?reason=`: asks for confirmation.
pub async fn confirm_approve(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    query: Result<Query<ApproveForm>, QueryRejection>,
) -> Response {
    let reason = query.map(|q| q.0.reason).unwrap_or_default();
    confirm(&state, &viewer, &id, true, reason)
}

/// `GET /console/systems/{id}/revoke`: asks for confirmation.
pub async fn confirm_revoke(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    confirm(&state, &viewer, &id, false, String::new())
}

/// `POST /console/systems/{id}/approve` (confirmed, with the CSRF token): records the approval
/// as the API does, then shows the system with the result.
pub async fn approve(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    form: Result<Form<ApproveForm>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if checked_session(&viewer, Some(form.csrf)).is_none() {
        return viewer
            .problem(&state, Problem::forbidden("the form's CSRF token is missing or wrong; reload the page"));
    }
    let reason = Some(form.reason).filter(|r| !r.trim().is_empty());
    match record_approval(&state, &viewer.identity, &id, reason).await {
        Ok((_, _, created)) => {
            let done = if created { "approved" } else { "already" };
            Redirect::to(&format!("/console/systems/{}?done={done}", urlencoded(&id))).into_response()
        }
        Err(problem) => viewer.problem(&state, problem),
    }
}

/// `POST /console/systems/{id}/revoke` (confirmed, with the CSRF token).
pub async fn revoke(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if checked_session(&viewer, form.ok().map(|f| f.0.csrf)).is_none() {
        return viewer
            .problem(&state, Problem::forbidden("the form's CSRF token is missing or wrong; reload the page"));
    }
    match revoke_approval(&state, &viewer.identity, &id).await {
        Ok(()) => Redirect::to(&format!("/console/systems/{}?done=revoked", urlencoded(&id))).into_response(),
        Err(problem) => viewer.problem(&state, problem),
    }
}

fn urlencoded(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).map(|s| s.trim_start_matches('=').to_owned()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Waves, nodes, tenants

struct WaveRow {
    name: String,
    phase: String,
    executor: String,
    bar: Bar,
    eta: String,
    phases: Vec<(String, u64)>,
}

#[derive(Template)]
#[template(path = "console/waves.html")]
struct WavesPage {
    page: Chrome,
    waves: Vec<WaveRow>,
}

/// `GET /console/waves`: the waves with systems in scope, with the scope's counts only.
pub async fn waves(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    let Ok(index) = state.index.read() else { return viewer.problem(&state, Problem::internal()) };
    let (t, lang, scope) = (viewer.t(), viewer.lang, viewer.scope());
    let waves = index
        .waves_in(scope)
        .map(|w| &w.record)
        .map(|w| {
            let mut by_phase: BTreeMap<usize, (String, u64)> = BTreeMap::new();
            for (_, counts) in w.counts_by_region.iter().filter(|(r, _)| scope.covers(r)) {
                for (phase, n) in counts {
                    let entry = by_phase.entry(phase_rank(phase)).or_insert_with(|| (i18n::phase(lang, phase), 0));
                    entry.1 = entry.1.saturating_add(*n);
                }
            }
            let total = by_phase.values().map(|(_, n)| *n).fold(0u64, u64::saturating_add);
            let done = by_phase.get(&phase_rank(Phase::Completed.as_str())).map_or(0, |(_, n)| *n);
            WaveRow {
                name: w.name.clone(),
                phase: i18n::wave_phase(lang, &w.phase),
                executor: w.executor.clone(),
                bar: view::progress(t.completed, done, total),
                eta: view::time(w.eta.as_deref()),
                phases: by_phase.into_values().filter(|(_, n)| *n > 0).collect(),
            }
        })
        .collect();
    render(StatusCode::OK, &WavesPage { page: viewer.chrome(&state, t.nav_waves, "waves"), waves })
}

struct NodeRow {
    name: String,
    display_name: String,
    tier: String,
    region: String,
    ready: bool,
    active: u32,
    bars: Vec<Bar>,
    problems: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/nodes.html")]
struct NodesPage {
    page: Chrome,
    nodes: Vec<NodeRow>,
}

/// `GET /console/nodes`.
pub async fn nodes(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    let Ok(index) = state.index.read() else { return viewer.problem(&state, Problem::internal()) };
    let (t, lang, scope) = (viewer.t(), viewer.lang, viewer.scope());
    let nodes = index
        .nodes
        .values()
        .map(|e| &e.record)
        .filter(|n| scope.covers(&n.region_code))
        .map(|n| NodeRow {
            name: n.name.clone(),
            display_name: n.display_name.clone(),
            tier: n.tier.clone(),
            region: i18n::region(lang, &n.region_code),
            ready: n.ready,
            active: n.active_migrations,
            bars: view::bars(t, &n.allocated, &n.allocatable),
            // Conditions that say something is wrong: not Ready, or a pressure that holds.
            problems: n
                .conditions
                .iter()
                .filter(|c| (c.type_ == "Ready") != (c.status == "True"))
                .map(|c| (c.type_.clone(), c.message.clone()))
                .collect(),
        })
        .collect();
    render(StatusCode::OK, &NodesPage { page: viewer.chrome(&state, t.nav_nodes, "nodes"), nodes })
}

struct TenantRow {
    name: String,
    display_name: String,
    level: String,
    region: String,
    home_node: String,
    ready: bool,
    bars: Vec<Bar>,
}

#[derive(Template)]
#[template(path = "console/tenants.html")]
struct TenantsPage {
    page: Chrome,
    tenants: Vec<TenantRow>,
}

/// `GET /console/tenants`.
pub async fn tenants(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    let Ok(index) = state.index.read() else { return viewer.problem(&state, Problem::internal()) };
    let (t, lang, scope) = (viewer.t(), viewer.lang, viewer.scope());
    let tenants = index
        .tenants
        .values()
        .map(|e| &e.record)
        .filter(|x| scope.covers(&x.region_code))
        .map(|x| {
            let (used, quota) = (&x.used, &x.quota);
            let as_amounts = |q: &suyun_store::readmodel::QuotaAmounts| suyun_store::readmodel::ResourceAmounts {
                cpu_millis: q.cpu_millis,
                memory_bytes: q.memory_bytes,
                storage_bytes: q.storage_bytes,
                gpu: 0,
            };
            let mut bars = view::bars(t, &as_amounts(used), &as_amounts(quota));
            bars.push(view::progress(t.systems, used.systems, quota.systems));
            TenantRow {
                name: x.name.clone(),
                display_name: x.display_name.clone(),
                level: x.level.clone(),
                region: i18n::region(lang, &x.region_code),
                home_node: x.home_node.clone(),
                ready: x.ready,
                bars,
            }
        })
        .collect();
    render(StatusCode::OK, &TenantsPage { page: viewer.chrome(&state, t.nav_tenants, "tenants"), tenants })
}
