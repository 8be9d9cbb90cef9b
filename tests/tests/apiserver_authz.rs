//! The authorisation matrix of the REST API, over real TLS against the real status store:
//! every endpoint × province scope, two city scopes (南京 320100 by certificate, 苏州 320500 by
//! token), no credentials, a certificate from a CA the server does not trust, and a
//! certificate without a scope — with the expected codes and no other city's data in any body.

use std::time::Duration;

use http::StatusCode;
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::unique_prefix;
use suyun_tests::https::Caller;
use suyun_tests::readmodel::sample;

const OK: u16 = 200;
const CREATED: u16 = 201;
const UNAUTHENTICATED: u16 = 401;
const FORBIDDEN: u16 = 403;
const NOT_FOUND: u16 = 404;

/// (method, path, province, 南京, 苏州, anonymous)
const MATRIX: &[(&str, &str, u16, u16, u16, u16)] = &[
    ("GET", "/api/v1/nodes", OK, OK, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/nodes/jiangsu", OK, NOT_FOUND, NOT_FOUND, UNAUTHENTICATED),
    ("GET", "/api/v1/nodes/nanjing", OK, OK, NOT_FOUND, UNAUTHENTICATED),
    ("GET", "/api/v1/nodes/suzhou", OK, NOT_FOUND, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/nodes?region=320500", OK, FORBIDDEN, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/tenants", OK, OK, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/tenants/js-edu", OK, NOT_FOUND, NOT_FOUND, UNAUTHENTICATED),
    ("GET", "/api/v1/tenants/nj-gov", OK, OK, NOT_FOUND, UNAUTHENTICATED),
    ("GET", "/api/v1/tenants/ks-gov", OK, NOT_FOUND, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/tenants?region=320100", OK, OK, FORBIDDEN, UNAUTHENTICATED),
    ("GET", "/api/v1/systems", OK, OK, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/systems?region=320583", OK, FORBIDDEN, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/systems?tenant=sz-gov", OK, OK, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/systems/JS-320000-0001", OK, NOT_FOUND, NOT_FOUND, UNAUTHENTICATED),
    ("GET", "/api/v1/systems/JS-320100-0001", OK, OK, NOT_FOUND, UNAUTHENTICATED),
    ("GET", "/api/v1/systems/JS-320583-0001", OK, NOT_FOUND, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/systems/JS-320100-0001/history", OK, OK, NOT_FOUND, UNAUTHENTICATED),
    ("GET", "/api/v1/systems/JS-320500-0001/history", OK, NOT_FOUND, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/waves", OK, OK, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/waves/wave-1", OK, OK, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/summary", OK, OK, OK, UNAUTHENTICATED),
    ("GET", "/api/v1/summary?region=320500", OK, FORBIDDEN, OK, UNAUTHENTICATED),
    ("POST", "/api/v1/systems/JS-320000-0002/cutover-approval", CREATED, NOT_FOUND, NOT_FOUND, UNAUTHENTICATED),
    ("POST", "/api/v1/systems/JS-320100-0002/cutover-approval", OK, CREATED, NOT_FOUND, UNAUTHENTICATED),
    ("POST", "/api/v1/systems/JS-320583-0002/cutover-approval", OK, NOT_FOUND, CREATED, UNAUTHENTICATED),
    ("GET", "/healthz", OK, OK, OK, OK),
    ("GET", "/readyz", OK, OK, OK, OK),
    ("GET", "/openapi.json", OK, OK, OK, OK),
];

/// What a body of each city must never contain.
const NANJING_MUST_NOT_SEE: &[&str] =
    &["320500", "320583", "320000", "苏州", "昆山", "江苏省教育厅", "sz-gov", "ks-gov"];
const SUZHOU_MUST_NOT_SEE: &[&str] = &["320100", "320000", "南京", "江苏省教育厅", "nj-gov", "js-edu"];

async fn call(caller: &Caller, method: &str, path: &str) -> suyun_tests::https::Reply {
    match method {
        "POST" => caller.post(path).await,
        _ => caller.get(path).await,
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

/// The part of a body that is not an echo of the caller's own request (a 404 names what was asked).
fn leaks(body: &str, path: &str, forbidden: &[&str]) -> Vec<String> {
    forbidden.iter().filter(|f| body.contains(*f) && !path.contains(*f)).map(|f| (*f).to_owned()).collect()
}

#[tokio::test]
async fn every_endpoint_for_every_kind_of_caller() {
    let prefix = unique_prefix("authz-matrix");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let _publisher = publish(&endpoint, &prefix, "operator-a", sample()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    server.write_tokens(&[("suzhou-secret-token", "suzhou-ops", "320500", false)]);
    let suzhou = server.with_token("suzhou-secret-token");
    suyun_tests::eventually(Duration::from_secs(5), || async {
        anyhow::ensure!(suzhou.get("/api/v1/nodes").await?.status == StatusCode::OK, "token not loaded yet");
        Ok(())
    })
    .await
    .unwrap();
    let province = server.with_certificate("province-ops", &["province"]);
    let nanjing = server.with_certificate("nanjing-ops", &["320100"]);
    let anonymous = server.anonymous();

    let mut failures = Vec::new();
    for (method, path, want_province, want_nanjing, want_suzhou, want_anonymous) in MATRIX {
        // Cities first, so that a city's approval is the one that creates (201).
        for (who, caller, want, forbidden) in [
            ("南京", &nanjing, want_nanjing, NANJING_MUST_NOT_SEE),
            ("苏州", &suzhou, want_suzhou, SUZHOU_MUST_NOT_SEE),
            ("province", &province, want_province, &[][..]),
            ("anonymous", &anonymous, want_anonymous, &[][..]),
        ] {
            let reply = call(caller, method, path).await;
            if reply.status.as_u16() != *want {
                failures.push(format!("{who} {method} {path}: got {} want {want}: {}", reply.status, reply.text()));
            }
            // The OpenAPI document is static and public (its examples name cities).
            let leaked = if *path == "/openapi.json" { vec![] } else { leaks(&reply.text(), path, forbidden) };
            if !leaked.is_empty() {
                failures.push(format!("{who} {method} {path}: body shows {leaked:?}: {}", reply.text()));
            }
            if reply.status.as_u16() >= 400 {
                assert_eq!(reply.header("content-type").as_deref(), Some("application/problem+json"), "{who} {path}");
                assert_eq!(reply.json()["status"], reply.status.as_u16(), "{who} {path}");
            }
            if reply.status == StatusCode::UNAUTHORIZED {
                assert!(reply.header("www-authenticate").is_some(), "401 says how to authenticate");
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));

    // What each scope sees in the lists.
    let count = |r: &suyun_tests::https::Reply| r.json()["items"].as_array().map(Vec::len).unwrap_or_default();
    for (caller, nodes, tenants, systems) in [(&province, 3, 4, 12), (&nanjing, 1, 1, 3), (&suzhou, 1, 2, 6)] {
        assert_eq!(count(&caller.get("/api/v1/nodes").await.unwrap()), nodes);
        assert_eq!(count(&caller.get("/api/v1/tenants").await.unwrap()), tenants);
        assert_eq!(count(&caller.get("/api/v1/systems").await.unwrap()), systems);
        let summary = caller.get("/api/v1/summary").await.unwrap().json();
        assert_eq!(summary["item"]["systems"], systems);
    }
    let wave = nanjing.get("/api/v1/waves/wave-1").await.unwrap().json();
    let regions: Vec<&String> = wave["item"]["countsByRegion"].as_object().unwrap().keys().collect();
    assert_eq!(regions, ["320100"], "a city sees only its own share of a wave");
    let node = suzhou.get("/api/v1/nodes/suzhou").await.unwrap().json();
    assert_eq!(node["item"]["displayName"], "苏州市", "display names keep their Chinese");

    // A system of another city is indistinguishable from one that does not exist.
    let other = nanjing.get("/api/v1/systems/JS-320500-0001").await.unwrap().json();
    let missing = nanjing.get("/api/v1/systems/JS-320500-9999").await.unwrap().json();
    assert_eq!((&other["type"], &other["title"]), (&missing["type"], &missing["title"]));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_credentials_are_refused() {
    let prefix = unique_prefix("authz-refused");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let _publisher = publish(&endpoint, &prefix, "operator-a", sample()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();

    // A certificate from a CA the server does not trust fails the TLS handshake: no response.
    let outsider = server.with_wrong_ca("intruder", &["province"]);
    assert!(outsider.get("/api/v1/nodes").await.is_err(), "a certificate from an untrusted CA gets no response");
    // A trusted certificate whose subject names no scope, or a bad scope, authenticates nobody.
    for units in [&[][..], &["nanjing"][..]] {
        let reply = server.with_certificate("no-scope", units).get("/api/v1/nodes").await.unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
        assert!(reply.json()["detail"].as_str().unwrap().contains("certificate"), "{}", reply.text());
    }
    // An unknown token.
    let reply = server.with_token("guess").get("/api/v1/nodes").await.unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A read-only identity may read but not approve.
    let viewer = server.with_certificate("suzhou-dashboard", &["320500", "read-only"]);
    assert_eq!(viewer.get("/api/v1/systems/JS-320500-0002").await.unwrap().status, StatusCode::OK);
    let reply = viewer.post("/api/v1/systems/JS-320500-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn token_file_changes_take_effect_without_a_restart() {
    let prefix = unique_prefix("authz-tokens");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let _publisher = publish(&endpoint, &prefix, "operator-a", sample()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let caller = server.with_token("rotating-token-1");
    assert_eq!(caller.get("/api/v1/nodes").await.unwrap().status, StatusCode::UNAUTHORIZED);

    server.write_tokens(&[("rotating-token-1", "nanjing-ops", "320100", false)]);
    let status = |caller: Caller| async move { anyhow::Ok(caller.get("/api/v1/systems").await?.status) };
    suyun_tests::eventually(Duration::from_secs(5), || async {
        anyhow::ensure!(status(caller.clone()).await? == StatusCode::OK, "not reloaded yet");
        Ok(())
    })
    .await
    .unwrap();
    let systems = caller.get("/api/v1/systems").await.unwrap().json();
    assert_eq!(systems["items"].as_array().unwrap().len(), 3, "the token's scope (南京) applies");

    // Rotation: the old token stops working, the new one works.
    server.write_tokens(&[("rotating-token-2", "nanjing-ops", "320100", false)]);
    suyun_tests::eventually(Duration::from_secs(5), || async {
        anyhow::ensure!(status(caller.clone()).await? == StatusCode::UNAUTHORIZED, "old token still accepted");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(server.with_token("rotating-token-2").get("/api/v1/nodes").await.unwrap().status, StatusCode::OK);

    // A broken file fails closed: its tokens stop working (tests/tests/apiserver_credentials.rs).
    std::fs::write(&server.token_file, "not a token line\n").unwrap();
    let rotated = server.with_token("rotating-token-2");
    suyun_tests::eventually(Duration::from_secs(5), || async {
        anyhow::ensure!(status(rotated.clone()).await? == StatusCode::UNAUTHORIZED, "broken file still grants");
        Ok(())
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}
