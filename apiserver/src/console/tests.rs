//! The console in-process, over the fixture index (苏州 320583 and 南京 320100), without a
//! status store: pages, scopes, refusals and headers. The browser tests (tests/tests/
//! console.rs) drive the same pages in Chromium against the real store and operator.

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::auth::{Method, Scope};
use crate::server::PeerCertificate;

fn identity(scope: &str, read_only: bool) -> Identity {
    Identity { name: "ops".into(), scope: Scope::parse(scope).unwrap(), read_only, method: Method::Certificate }
}

async fn call(
    state: &AppState,
    who: Option<Identity>,
    request: Request<Body>,
) -> (StatusCode, http::HeaderMap, String) {
    let mut request = request;
    request.extensions_mut().insert(PeerCertificate(std::sync::Arc::new(who.map(Ok))));
    let response = crate::router(state.clone()).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

async fn get(state: &AppState, who: Option<Identity>, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    call(state, who, Request::get(uri).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn without_credentials_every_page_leads_to_the_login() {
    let state = crate::fixtures::state();
    for page in ["/console/", "/console/systems", "/console/systems/S-sz", "/console/nodes"] {
        let (status, headers, _) = get(&state, None, page).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(headers[header::LOCATION], "/console/login", "{page}");
    }
    let (status, _, body) = get(&state, None, "/console/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"name="token""#), "{body}");
    let post = Request::post("/console/systems/S-sz/approve").body(Body::empty()).unwrap();
    assert_eq!(call(&state, None, post).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_city_sees_only_its_own_and_another_citys_system_is_not_found() {
    let state = crate::fixtures::state();
    let suzhou = identity("320500", false);
    let (status, _, body) = get(&state, Some(suzhou.clone()), "/console/systems").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("S-sz") && !body.contains("S-nj"), "{body}");
    for page in ["/console/", "/console/nodes", "/console/tenants", "/console/waves"] {
        let (status, _, body) = get(&state, Some(suzhou.clone()), page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(!body.contains("nj"), "{page} shows 南京's records: {body}");
    }
    // Another city's system and a missing one: the same page, but for the id.
    let (status, _, other) = get(&state, Some(suzhou.clone()), "/console/systems/S-nj").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, missing) = get(&state, Some(suzhou.clone()), "/console/systems/S-xx").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(other.replace("S-nj", "S-xx"), missing);
    for path in ["/console/systems/S-nj/approve", "/console/systems/S-nj/revoke"] {
        assert_eq!(get(&state, Some(suzhou.clone()), path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    // The province sees both.
    let (_, _, body) = get(&state, Some(identity("province", false)), "/console/systems").await;
    assert!(body.contains("S-sz") && body.contains("S-nj"), "{body}");
}

#[tokio::test]
async fn pages_carry_a_strict_policy_and_no_inline_script_or_style() {
    let state = crate::fixtures::state();
    let who = Some(identity("province", false));
    for page in [
        "/console/",
        "/console/systems",
        "/console/systems/S-sz",
        "/console/waves",
        "/console/nodes",
        "/console/tenants",
        "/console/login",
        "/console/nowhere",
    ] {
        let (_, headers, body) = get(&state, who.clone(), page).await;
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY, "{page}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{page}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{page}");
        assert!(!body.contains("<script>") && !body.contains(" style=") && !body.contains("<style"), "{page}: {body}");
        assert!(!body.contains("http://") && !body.contains("https://"), "{page} links outside: {body}");
    }
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'") && !CONTENT_SECURITY_POLICY.contains("unsafe"));
}

#[tokio::test]
async fn a_read_only_identity_gets_no_approve_button_and_its_forms_are_refused() {
    let state = crate::fixtures::state();
    {
        let mut index = state.index.write().unwrap();
        let keys = state.keys.clone();
        let mut system = index.systems["S-sz"].record.clone();
        system.phase = "AwaitingCutover".into();
        system.approval.required = true;
        index.put(&keys, &keys.system("S-sz"), &serde_json::to_vec(&system).unwrap(), 99);
    }
    let (_, _, body) = get(&state, Some(identity("320500", false)), "/console/systems/S-sz").await;
    assert!(body.contains(r#"id="approve""#), "a writer sees the approve button: {body}");
    let reader = Some(identity("320500", true));
    let (_, _, body) = get(&state, reader.clone(), "/console/systems/S-sz").await;
    assert!(!body.contains(r#"id="approve""#), "a read-only identity sees an approve button: {body}");
    assert_eq!(get(&state, reader.clone(), "/console/systems/S-sz/approve").await.0, StatusCode::FORBIDDEN);
    // A forged POST: no session, no CSRF token.
    let forged = || {
        Request::post("/console/systems/S-sz/approve")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=guess&reason=x"))
            .unwrap()
    };
    assert_eq!(call(&state, reader, forged()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&state, Some(identity("320500", false)), forged()).await.0, StatusCode::FORBIDDEN);
    // From another origin: refused before the form is read.
    let mut cross = forged();
    cross.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    let (status, _, body) = call(&state, Some(identity("320500", false)), cross).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("not sent from this console"), "{body}");
}

#[tokio::test]
async fn the_system_list_filters_sorts_and_pages_from_its_address() {
    let state = crate::fixtures::state();
    {
        let mut index = state.index.write().unwrap();
        let keys = state.keys.clone();
        for i in 0..120 {
            let system = suyun_store::readmodel::SystemRecord {
                system_id: format!("JS-320500-{i:04}"),
                display_name: format!("系统{:04}", 119 - i),
                tenant: "sz-gov".into(),
                region_code: "320500".into(),
                phase: if i % 2 == 0 { "Completed" } else { "Blocked" }.into(),
                ..Default::default()
            };
            index.put(&keys, &keys.system(&system.system_id), &serde_json::to_vec(&system).unwrap(), 100 + i);
        }
    }
    let who = Some(identity("320500", false));
    let (_, _, body) = get(&state, who.clone(), "/console/systems?phase=Blocked").await;
    assert!(body.contains("第 1 / 2 页，共 60 个系统"), "{body}");
    assert!(body.contains("JS-320500-0001") && !body.contains("JS-320500-0000<"), "{body}");
    assert!(body.contains(r#"href="/console/systems?phase=Blocked&#38;page=2""#), "{body}");
    let (_, _, body) = get(&state, who.clone(), "/console/systems?phase=Blocked&page=2&sort=name").await;
    assert!(body.contains("第 2 / 2 页"), "{body}");
    // By name, 系统0000 is JS-320500-0119 (Blocked): on page 1, not 2.
    assert!(!body.contains("JS-320500-0119"), "{body}");
    let (_, _, body) = get(&state, who.clone(), "/console/systems?q=%E7%B3%BB%E7%BB%9F0003").await;
    assert!(body.contains("JS-320500-0116") && body.contains("共 1 个系统"), "{body}");
    // A page past the end shows the last one; the overview counts the blocked reasons.
    let (_, _, body) = get(&state, who.clone(), "/console/systems?page=99").await;
    assert!(body.contains("第 3 / 3 页"), "{body}");
    let (_, _, body) = get(&state, who, "/console/").await;
    assert!(body.contains("<code>Unknown</code></td><td class=\"num\">60</td>"), "{body}");
}

#[tokio::test]
async fn english_is_one_click_away_and_comes_back_to_the_same_page() {
    let state = crate::fixtures::state();
    let who = Some(identity("320500", false));
    let (_, _, body) = get(&state, who.clone(), "/console/systems?phase=Blocked").await;
    assert!(body.contains(r#"<html lang="zh-CN">"#));
    assert!(body.contains("/console/lang?to=en&amp;back=/console/systems%3Fphase%3DBlocked"), "{body}");
    let (status, headers, _) =
        get(&state, who.clone(), "/console/lang?to=en&back=%2Fconsole%2Fsystems%3Fphase%3DBlocked").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/console/systems?phase=Blocked");
    assert!(headers[header::SET_COOKIE].to_str().unwrap().starts_with("suyun-lang=en;"));
    for back in ["https://evil.example/", "/console//evil.example", "/console/%0Aset-cookie:x", "/console/%E5%8D%97"] {
        let (status, headers, _) = get(&state, who.clone(), &format!("/console/lang?to=en&back={back}")).await;
        assert_eq!(
            (status, &headers[header::LOCATION]),
            (StatusCode::SEE_OTHER, &"/console/".parse::<http::HeaderValue>().unwrap()),
            "{back}"
        );
    }
    // A login without a form, or from another site, is refused (not a 500).
    let empty = Request::post("/console/login").body(Body::empty()).unwrap();
    assert_eq!(call(&state, None, empty).await.0, StatusCode::BAD_REQUEST);
    let cross = Request::post("/console/login")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("token=x"))
        .unwrap();
    assert_eq!(call(&state, None, cross).await.0, StatusCode::FORBIDDEN);
    let request = Request::get("/console/systems").header(header::COOKIE, "suyun-lang=en").body(Body::empty()).unwrap();
    let (_, _, body) = call(&state, who, request).await;
    assert!(body.contains(r#"<html lang="en">"#) && body.contains("Systems"), "{body}");
}

#[tokio::test]
async fn the_console_can_be_switched_off() {
    let state = crate::fixtures::state().with_console(ConsoleSettings { enabled: false, ..ConsoleSettings::default() });
    let (status, headers, _) = get(&state, Some(identity("province", false)), "/console/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/problem+json"));
}

#[test]
fn the_live_change_number_follows_the_scopes_own_records_only() {
    let state = crate::fixtures::state();
    let keys = state.keys.clone();
    let suzhou = Scope::parse("320500").unwrap();
    let before = live::scope_revision(&state.index.read().unwrap(), &suzhou);
    let put = |id: &str, region: &str, revision: i64| {
        let system = suyun_store::readmodel::SystemRecord {
            system_id: id.into(),
            tenant: "t".into(),
            region_code: region.into(),
            phase: "Completed".into(),
            ..Default::default()
        };
        state.index.write().unwrap().put(&keys, &keys.system(id), &serde_json::to_vec(&system).unwrap(), revision);
    };
    put("S-nj", "320100", 500);
    let approval = suyun_store::readmodel::ApprovalRecord {
        system_id: "S-nj".into(),
        region_code: "320100".into(),
        ..Default::default()
    };
    state.index.write().unwrap().put(&keys, &keys.approval("S-nj"), &serde_json::to_vec(&approval).unwrap(), 501);
    assert_eq!(live::scope_revision(&state.index.read().unwrap(), &suzhou), before, "南京's change moved 苏州's");
    put("S-sz", "320583", 502);
    assert_eq!(live::scope_revision(&state.index.read().unwrap(), &suzhou), 502);
    assert_eq!(live::scope_revision(&state.index.read().unwrap(), &Scope::Province), 502);
}

#[tokio::test]
async fn a_retried_cutover_can_be_approved_again() {
    let state = crate::fixtures::state();
    let put = |reason: &str, status: &str| {
        let keys = state.keys.clone();
        let mut index = state.index.write().unwrap();
        let mut system = index.systems["S-sz"].record.clone();
        system.phase = "AwaitingCutover".into();
        system.approval.required = true;
        // The approval the failed attempt used up is still named in the status.
        system.approval.approved_by = Some("li".into());
        system.conditions = vec![suyun_store::readmodel::ConditionSummary {
            type_: "CutoverApproved".into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
        }];
        index.put(&keys, &keys.system("S-sz"), &serde_json::to_vec(&system).unwrap(), 200);
    };
    let who = Some(identity("320500", false));
    put("NotApproved", "False");
    let (_, _, body) = get(&state, who.clone(), "/console/systems/S-sz").await;
    assert!(body.contains(r#"id="approve""#), "the retry cannot be approved: {body}");
    let (_, _, body) = get(&state, who.clone(), "/console/").await;
    assert!(body.contains(r#"<p class="big" id="awaiting-count">1</p>"#), "{body}");
    put("Approved", "True");
    let (_, _, body) = get(&state, who.clone(), "/console/systems/S-sz").await;
    assert!(!body.contains(r#"id="approve""#), "an approval in force, and the button is offered again: {body}");
    let (_, _, body) = get(&state, who, "/console/").await;
    assert!(body.contains(r#"<p class="big" id="awaiting-count">0</p>"#), "{body}");
}
