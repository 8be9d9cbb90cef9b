//! The REST API against hostile callers and a hostile store, at the request level:
//!
//! * every error of every route is `application/problem+json`, whatever is malformed (path,
//!   query, method, body, credentials);
//! * no internal error text (etcd's) reaches a client;
//! * malformed records in the store never panic a handler, and valid ones keep being served;
//! * nothing a city sees (ETags, `metadata.revision`) moves when another city's records do;
//! * state-changing requests need a JSON content type and an allowed `Origin`; approvals carry
//!   an optional reason, follow the phase rules, and can be revoked before the cutover.

use std::time::Duration;

use etcd_client::GetOptions;
use http::{Method, StatusCode};
use suyun_apiserver::api::ROUTES;
use suyun_apiserver::config::EtcdConfig;
use suyun_operator::store::{Change, Publisher, RecordKey};
use suyun_store::readmodel::{ApprovalRecord, Keys, Record, SystemRecord, WaveRecord};
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::{EtcdProcess, connect, unique_prefix};
use suyun_tests::https::{Caller, Reply};
use suyun_tests::readmodel::sample;

const PROBLEM_JSON: &str = "application/problem+json";

/// Asserts that an error reply is a problem whose `status` is the reply's.
fn assert_problem(what: &str, reply: &Reply) {
    if !(reply.status.is_client_error() || reply.status.is_server_error()) {
        return;
    }
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some(PROBLEM_JSON),
        "{what}: {} with body {:?}",
        reply.status,
        reply.text()
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{what}: problem body is not JSON ({e}): {:?}", reply.text()));
    assert_eq!(body["status"], reply.status.as_u16(), "{what}: {body}");
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("https://suyun.io/problems/")), "{what}: {body}");
}

async fn request(caller: &Caller, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let what = format!("{method} {}", abbreviate(path));
    caller
        .send(method, path, headers, body.to_owned())
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer (a handler panicked?): {e:#}"))
}

fn abbreviate(path: &str) -> String {
    if path.len() > 120 {
        format!("{}…({} bytes)", path.chars().take(120).collect::<String>(), path.len())
    } else {
        path.to_owned()
    }
}

/// Waits until the server's index has applied everything written under `prefix` so far: writes
/// a marker key of a shape the index ignores and waits for the watch to bring its revision
/// (the etcd is shared with other tests, so its own revision says nothing about this prefix).
async fn caught_up(server: &TestServer, endpoint: &str, prefix: &str) {
    let mut client = connect(endpoint).await.unwrap();
    let put = client.put(format!("{prefix}test-sync-marker"), "", None).await.unwrap();
    let revision = put.header().unwrap().revision();
    let index = server.state.index.clone();
    suyun_tests::eventually(Duration::from_secs(10), || {
        let index = index.clone();
        async move {
            let at = index.read().unwrap().revision;
            anyhow::ensure!(at >= revision, "index at {at}, marker at {revision}");
            Ok(())
        }
    })
    .await
    .unwrap();
}

async fn approvals_in_store(endpoint: &str, prefix: &str) -> Vec<ApprovalRecord> {
    let mut client = connect(endpoint).await.unwrap();
    let stored =
        client.get(Keys::new(prefix).collection("approvals"), Some(GetOptions::new().with_prefix())).await.unwrap();
    stored.kvs().iter().map(|kv| serde_json::from_slice(kv.value()).unwrap()).collect()
}

#[tokio::test]
async fn every_error_of_every_route_is_a_problem() {
    let prefix = unique_prefix("hostile-problems");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let _publisher = publish(&endpoint, &prefix, "operator-a", sample()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let anonymous = server.anonymous();
    let json = [("content-type", "application/json")];

    // Known regressions first: each was a text/plain 400 from axum's extractors.
    for path in [
        "/api/v1/nodes?region=320500&region=320583",
        "/api/v1/systems?region=320500&region=320583",
        "/api/v1/summary?region=320500&region=320583",
        "/api/v1/nodes/%FF",
        "/api/v1/systems/%FF/history",
    ] {
        let reply = request(&suzhou, Method::GET, path, &[], "").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.text());
        assert_problem(path, &reply);
    }
    let reply = request(&suzhou, Method::POST, "/api/v1/systems/%FF/cutover-approval", &json, "").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_problem("POST %FF", &reply);
    let reply = request(&suzhou, Method::POST, "/api/v1/systems/JS-320500-0002/cutover-approval", &json, "{").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_problem("bad JSON body", &reply);
    let reply = request(&suzhou, Method::GET, "/readyz", &[], "").await;
    assert_eq!(reply.status, StatusCode::OK);

    // Then every route with every kind of malformed input, as a city and without credentials.
    let long = "x".repeat(5000);
    let names = ["%FF", "%C3%28", "%00", "..%2F..%2Fetc", "a%2Fb", "%E2%80%AE", long.as_str(), "JS-320100-0001"];
    let queries = [
        "",
        "?region=320500&region=320500",
        "?region=%FF",
        "?region=abc",
        "?region=320100",
        "?region=32%C3%A9500",
        "?limit=-1",
        "?limit=99999999999999999999999",
        "?limit=1&limit=2",
        "?continue=%FF%FE",
        "?continue=czpKUy0zMjA1MDAtMDAwMQ",
        "?q=%FF",
        "?phase[]=x",
        "?%FF=1",
        "?region",
    ];
    let bodies = ["", "{", "[]", "{\"reason\":5}", "{\"why\":\"x\"}", "\u{0}\u{1}"];
    let methods = [Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::PATCH];
    let mut checked = 0;
    for route in ROUTES {
        // A name that exists in 苏州's scope (a Completed system: nothing gets approved).
        let valid = match route.path {
            p if p.starts_with("/api/v1/nodes") => "suzhou",
            p if p.starts_with("/api/v1/tenants") => "sz-gov",
            p if p.starts_with("/api/v1/waves") => "wave-1",
            _ => "JS-320500-0003",
        };
        let at = |name: &str| route.path.replace("{name}", name).replace("{systemId}", name);
        let mut targets: Vec<String> = queries.iter().map(|q| format!("{}{q}", at(valid))).collect();
        if route.path.contains('{') {
            targets.extend(names.iter().map(|name| at(name)));
        }
        for target in &targets {
            for method in &methods {
                for caller in [&suzhou, &anonymous] {
                    let reply = request(caller, method.clone(), target, &json, "").await;
                    let what = format!("{method} {}", abbreviate(target));
                    assert!(!reply.status.is_server_error(), "{what}: {} {}", reply.status, reply.text());
                    assert_problem(&what, &reply);
                    checked += 1;
                }
            }
        }
        for method in &methods[1..] {
            for body in bodies {
                for headers in [&json[..], &[("content-type", "text/plain")][..], &[][..]] {
                    let reply = request(&suzhou, method.clone(), &at(valid), headers, body).await;
                    let what = format!("{method} {} {headers:?} {body:?}", at(valid));
                    assert!(!reply.status.is_server_error(), "{what}: {} {}", reply.status, reply.text());
                    assert_problem(&what, &reply);
                    checked += 1;
                }
            }
        }
    }
    // Paths no route serves.
    for path in
        ["/api/v1/%FF", "/api/v2/nodes", "/%FF%FE", "/api/v1/nodes/a/b/c", "/api/v1/systems/x/cutover-approval/y"]
    {
        for method in &methods {
            let reply = request(&suzhou, method.clone(), path, &json, "").await;
            assert!(reply.status.is_client_error(), "{method} {path}: {}", reply.status);
            assert_problem(path, &reply);
            checked += 1;
        }
    }
    assert!(checked > 3000, "{checked} requests checked");
    assert!(approvals_in_store(&endpoint, &prefix).await.is_empty(), "nothing malformed was approved");
    server.stop().await.unwrap();
}

/// etcd's own error text (here: an etcd whose authentication was switched on under the
/// server's feet) is logged, never sent: the client gets a generic 503.
#[tokio::test]
async fn store_errors_do_not_reach_clients() {
    let etcd = EtcdProcess::start("hostile-store-errors").await.unwrap();
    let prefix = unique_prefix("hostile-store-errors");
    let _publisher = publish(&etcd.endpoint(), &prefix, "operator-a", sample()).await.unwrap();
    // A slow probe: the server still believes the store is healthy when it writes.
    let mut config = EtcdConfig::new(vec![etcd.endpoint()], &prefix);
    config.probe_ms = 600_000;
    let server = TestServer::start_with_store(config).await.unwrap();
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let mut admin = connect(&etcd.endpoint()).await.unwrap();
    let _ = admin.role_add("root").await;
    admin.user_add("root", "root-password", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    for (method, what) in [(Method::POST, "approve"), (Method::DELETE, "revoke")] {
        let path = "/api/v1/systems/JS-320500-0002/cutover-approval";
        let reply = request(&suzhou, method, path, &[("content-type", "application/json")], "").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", reply.text());
        assert_problem(what, &reply);
        let detail = reply.json()["detail"].as_str().unwrap().to_owned();
        for internal in ["etcdserver", "user name", "grpc", "status:", "transport", "permission", "token"] {
            assert!(!detail.to_lowercase().contains(internal), "{what}: internal text {internal:?} in {detail:?}");
        }
        assert_eq!(detail, "the status store could not record this now; try again later", "{what}");
    }
    drop(server);
}

/// Puts malformed values and keys under the prefix, as a compromised or buggy writer could.
async fn put_malformed(endpoint: &str, prefix: &str) {
    let mut client = connect(endpoint).await.unwrap();
    let big = u64::MAX.to_string();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let wave = format!(
        r#"{{"name":"wave-bad","phase":"Running","countsByRegion":{{"320é0":{{"Completed":1}},"32é500":{{"Scheduled":2}},"320500":{{"Completed":{big}}},"320583":{{"Completed":{big},"Scheduled":{big}}},"":{{}}}}}}"#
    );
    let puts: Vec<(Vec<u8>, Vec<u8>)> = vec![
        // Multi-byte characters in region codes: 6 bytes with a character across bytes 3–4.
        ("nodes/bad-region".into(), r#"{"name":"bad-region","tier":"City","regionCode":"320é0"}"#.into()),
        (
            "systems/JS-BAD-0001".into(),
            r#"{"systemId":"JS-BAD-0001","tenant":"sz-gov","regionCode":"320é0","phase":"Scheduled"}"#.into(),
        ),
        (
            "tenants/bad-tenant".into(),
            r#"{"name":"bad-tenant","level":"City","regionCode":"32é500","homeNode":"suzhou"}"#.into(),
        ),
        ("waves/wave-bad".into(), wave.into_bytes()),
        // Bad UTF-8, wrong types, missing fields, huge numbers, deep nesting.
        ("systems/JS-320500-0801".into(), b"\xff\xfe{not json".to_vec()),
        (
            "systems/JS-320500-0802".into(),
            [
                &br#"{"systemId":"JS-320500-0802","tenant":"sz-gov","regionCode":"320500","phase":"Scheduled","displayName":""#[..],
                b"\xff\xfe",
                br#""}"#,
            ]
            .concat(),
        ),
        (
            "systems/JS-320500-0803".into(),
            r#"{"systemId":"JS-320500-0803","tenant":"sz-gov","regionCode":320500,"phase":7}"#.into(),
        ),
        ("systems/JS-320500-0804".into(), r#"{"systemId":"JS-320500-0804"}"#.into()),
        (
            "systems/JS-320500-0805".into(),
            r#"{"systemId":"JS-320500-0805","tenant":"sz-gov","regionCode":"320500","phase":"Scheduled","securityLevel":300,"attempts":1e999}"#
                .into(),
        ),
        (
            "nodes/huge".into(),
            format!(r#"{{"name":"huge","tier":"City","regionCode":"320500","allocatable":{{"cpuMillis":{big}0}}}}"#)
                .into_bytes(),
        ),
        (
            "nodes/max".into(),
            format!(
                r#"{{"name":"max","tier":"City","regionCode":"320500","allocatable":{{"cpuMillis":{big}}},"allocated":{{"cpuMillis":{big}}},"activeMigrations":4294967295}}"#
            )
            .into_bytes(),
        ),
        ("tenants/deep".into(), deep.into_bytes()),
        ("waves/null".into(), b"null".to_vec()),
        // A record under another object's key: 苏州's key, 南京's record.
        (
            "systems/JS-320500-0806".into(),
            r#"{"systemId":"JS-320100-0001","tenant":"nj-gov","regionCode":"320100","phase":"Scheduled"}"#.into(),
        ),
        // Approvals and journal entries that do not parse or have odd keys.
        ("approvals/JS-320500-0001".into(), b"garbage".to_vec()),
        ("journal/JS-320500-0001/notanumber".into(), b"{}".to_vec()),
        ("journal/JS-320500-0001/99999999999999999999999".into(), b"{}".to_vec()),
        ("journal/JS-320500-0001/00000000000000000007".into(), br#"{"systemId":"JS-320500-0001"}"#.to_vec()),
        (
            "journal/JS-320500-0001/00000000000000000008".into(),
            r#"{"systemId":"JS-320500-0001","regionCode":"320é0","from":"a","to":"b","time":"t","actor":"x","sequence":18446744073709551615}"#
                .into(),
        ),
        // Keys of odd shapes.
        ("systems/".into(), b"{}".to_vec()),
        ("systems/a/b".into(), b"{}".to_vec()),
        ("approvals/".into(), b"{}".to_vec()),
        ("journal/".into(), b"{}".to_vec()),
        ("unknown/x".into(), b"{}".to_vec()),
        (b"nodes/\xff\xfe".to_vec(), b"{}".to_vec()),
    ];
    for (key, value) in puts {
        let mut full = prefix.as_bytes().to_vec();
        full.extend_from_slice(&key);
        client.put(full, value, None).await.unwrap();
    }
}

#[tokio::test]
async fn malformed_records_never_break_a_handler() {
    let prefix = unique_prefix("hostile-records");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let _publisher = publish(&endpoint, &prefix, "operator-a", sample()).await.unwrap();
    // Some are in the store before the server reads it, some arrive through the watch.
    put_malformed(&endpoint, &prefix).await;
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    put_malformed(&endpoint, &prefix).await;
    caught_up(&server, &endpoint, &prefix).await;
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let history = suzhou.get("/api/v1/systems/JS-320500-0001/history").await.unwrap();
    assert_eq!(history.status, StatusCode::OK);
    assert!(history.json()["item"]["approval"].is_null(), "an approval that does not parse is not shown");

    let callers = [
        ("province", server.with_certificate("ops", &["province"])),
        ("苏州", server.with_certificate("zhang.wei", &["320500"])),
        ("南京", server.with_certificate("li.na", &["320100"])),
        ("昆山", server.with_certificate("wang.fang", &["320583"])),
    ];
    let ids = [
        "JS-320500-0001",
        "JS-BAD-0001",
        "JS-320500-0801",
        "JS-320500-0802",
        "JS-320500-0803",
        "JS-320500-0805",
        "JS-320500-0806",
    ];
    let names = ["suzhou", "bad-region", "huge", "max", "deep", "bad-tenant", "wave-1", "wave-bad", "null"];
    for (who, caller) in &callers {
        for route in ROUTES {
            let targets: Vec<String> = if route.path.contains("{systemId}") {
                ids.iter().map(|id| route.path.replace("{systemId}", id)).collect()
            } else if route.path.contains("{name}") {
                names.iter().map(|n| route.path.replace("{name}", n)).collect()
            } else {
                vec![
                    route.path.to_owned(),
                    format!("{}?region=320500", route.path),
                    format!("{}?region=320583", route.path),
                ]
            };
            for target in targets {
                let method = Method::from_bytes(route.method.as_bytes()).unwrap();
                let reply = request(caller, method, &target, &[("content-type", "application/json")], "").await;
                let what = format!("{who}: {} {target}", route.method);
                // No 5xx at all: writes work (the store is up); reads never fail on bad data.
                assert!(!reply.status.is_server_error(), "{what}: {} {}", reply.status, reply.text());
                assert_problem(&what, &reply);
            }
        }
    }

    // The valid records are still served, and the malformed ones are not.
    let systems = suzhou.get("/api/v1/systems").await.unwrap().json();
    let ids: Vec<&str> = systems["items"].as_array().unwrap().iter().map(|s| s["systemId"].as_str().unwrap()).collect();
    assert!(ids.contains(&"JS-320500-0001") && ids.contains(&"JS-320583-0003"), "{ids:?}");
    for bad in ["JS-BAD-0001", "JS-320500-0801", "JS-320500-0803", "JS-320500-0806", "JS-320100-0001"] {
        assert!(!ids.contains(&bad), "{bad} is not served: {ids:?}");
    }
    let reply = suzhou.get("/api/v1/systems/JS-320500-0806").await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "a record under another object's key is not served");
    let nodes = suzhou.get("/api/v1/nodes").await.unwrap().json();
    let nodes: Vec<&str> = nodes["items"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert!(nodes.contains(&"suzhou") && !nodes.contains(&"bad-region"), "{nodes:?}");
    let summary = suzhou.get("/api/v1/summary").await.unwrap();
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.text());
    let wave = summary.json()["item"]["waves"].as_array().unwrap().iter().find(|w| w["name"] == "wave-bad").cloned();
    assert_eq!(wave.unwrap()["systems"], u64::MAX, "huge counts saturate");
    assert_eq!(suzhou.get("/readyz").await.unwrap().status, StatusCode::OK);
    server.stop().await.unwrap();
}

/// The endpoints of 苏州 and what identifies each answer: (ETag, metadata.revision).
async fn views(caller: &Caller) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for path in [
        "/api/v1/nodes",
        "/api/v1/nodes/suzhou",
        "/api/v1/tenants",
        "/api/v1/tenants/sz-gov",
        "/api/v1/systems",
        "/api/v1/systems?phase=Scheduled",
        "/api/v1/systems/JS-320500-0001",
        "/api/v1/systems/JS-320500-0001/history",
        "/api/v1/waves",
        "/api/v1/waves/wave-1",
        "/api/v1/summary",
    ] {
        let reply = caller.get(path).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let revision = reply.json()["metadata"]["revision"].as_i64().unwrap();
        assert!(revision > 0, "{path}: a revision");
        out.push((path.to_owned(), reply.header("etag").unwrap(), revision));
    }
    out
}

fn system_of(records: &[Record], id: &str) -> SystemRecord {
    records
        .iter()
        .find_map(|r| match r {
            Record::System(s) if s.system_id == id => Some(s.clone()),
            _ => None,
        })
        .unwrap()
}

fn wave_of(records: &[Record]) -> WaveRecord {
    records
        .iter()
        .find_map(|r| match r {
            Record::Wave(w) => Some(w.clone()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn another_citys_activity_does_not_show_in_etags_or_revisions() {
    let prefix = unique_prefix("hostile-etags");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let records = sample();
    let mut publisher: Publisher = publish(&endpoint, &prefix, "operator-a", records.clone()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let nanjing = server.with_certificate("li.na", &["320100"]);
    let before = views(&suzhou).await;

    // 南京's records change: a system, its node, its tenant, its share of the wave, a
    // deletion, an approval and its revocation.
    let mut system = system_of(&records, "JS-320100-0001");
    system.phase = "Provisioning".into();
    let mut wave = wave_of(&records);
    wave.counts_by_region.get_mut("320100").unwrap().insert("Provisioning".into(), 1);
    let node = records.iter().find(|r| matches!(r, Record::Node(n) if n.name == "nanjing")).unwrap().clone();
    let Record::Node(mut node) = node else { unreachable!() };
    node.active_migrations = 3;
    let tenant = records.iter().find(|r| matches!(r, Record::Tenant(t) if t.name == "nj-gov")).unwrap().clone();
    let Record::Tenant(mut tenant) = tenant else { unreachable!() };
    tenant.ready = false;
    publisher
        .publish([
            Change::Put(Record::System(system)),
            Change::Put(Record::Wave(wave.clone())),
            Change::Put(Record::Node(node)),
            Change::Put(Record::Tenant(tenant)),
            Change::Delete(RecordKey::System("JS-320100-0003".into())),
        ])
        .await
        .unwrap();
    let reply = nanjing.post("/api/v1/systems/JS-320100-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let reply = nanjing.delete("/api/v1/systems/JS-320100-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    caught_up(&server, &endpoint, &prefix).await;

    let after = views(&suzhou).await;
    assert_eq!(after, before, "苏州's ETags and revisions did not move");
    for (path, etag, _) in &before {
        let reply = suzhou.get_with(path, &[("if-none-match", etag)]).await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{path}");
    }

    // 苏州's own changes move what they touch, and only forward.
    let mut mine = system_of(&records, "JS-320500-0001");
    mine.phase = "Provisioning".into();
    wave.counts_by_region.get_mut("320500").unwrap().insert("Provisioning".into(), 1);
    publisher.publish([Change::Put(Record::System(mine)), Change::Put(Record::Wave(wave))]).await.unwrap();
    caught_up(&server, &endpoint, &prefix).await;
    let changed = views(&suzhou).await;
    let moved = |path: &str| {
        let (_, etag, revision) = before.iter().find(|(p, _, _)| p == path).unwrap();
        let (_, etag2, revision2) = changed.iter().find(|(p, _, _)| p == path).unwrap();
        assert!(revision2 >= revision, "{path}: the revision does not go back");
        etag != etag2 && revision != revision2
    };
    for path in [
        "/api/v1/systems",
        "/api/v1/systems/JS-320500-0001",
        "/api/v1/systems/JS-320500-0001/history",
        "/api/v1/waves",
        "/api/v1/waves/wave-1",
        "/api/v1/summary",
    ] {
        assert!(moved(path), "{path} follows 苏州's change");
    }
    for path in ["/api/v1/nodes", "/api/v1/nodes/suzhou", "/api/v1/tenants", "/api/v1/tenants/sz-gov"] {
        assert!(!moved(path), "{path} is not touched by it");
    }

    // A deletion in 苏州 moves the list's ETag and revision; an approval moves the history's.
    let list = changed.iter().find(|(p, _, _)| p == "/api/v1/systems").unwrap().clone();
    publisher.publish([Change::Delete(RecordKey::System("JS-320583-0003".into()))]).await.unwrap();
    caught_up(&server, &endpoint, &prefix).await;
    let reply = suzhou.get("/api/v1/systems").await.unwrap();
    assert_ne!(reply.header("etag").unwrap(), list.1);
    assert!(reply.json()["metadata"]["revision"].as_i64().unwrap() > list.2, "a deletion moves the revision");
    let history = changed.iter().find(|(p, _, _)| p.ends_with("/history")).unwrap().clone();
    let reply = suzhou.post("/api/v1/systems/JS-320500-0001/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    caught_up(&server, &endpoint, &prefix).await;
    let reply = suzhou.get_with(&history.0, &[("if-none-match", &history.1)]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn cross_site_and_non_json_writes_are_refused() {
    let prefix = unique_prefix("hostile-csrf");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let _publisher = publish(&endpoint, &prefix, "operator-a", sample()).await.unwrap();
    let config = EtcdConfig::new(vec![endpoint.clone()], &prefix);
    let server =
        TestServer::start_configured(config, |state| state.with_allowed_origins(["https://ops.suyun.example"]))
            .await
            .unwrap();
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let path = "/api/v1/systems/JS-320500-0002/cutover-approval";
    let reason = r#"{"reason":"OPS-1234: window agreed with 苏州市大数据管理局"}"#;
    for (method, headers, body, want) in [
        // What a cross-site form or fetch without preflight can send.
        (Method::POST, &[("content-type", "text/plain"), ("origin", "https://evil.example")][..], reason, 403),
        (Method::POST, &[("content-type", "text/plain")][..], reason, 415),
        (Method::POST, &[("content-type", "application/x-www-form-urlencoded")][..], "reason=x", 415),
        (Method::POST, &[("content-type", "multipart/form-data; boundary=x")][..], "", 415),
        (Method::POST, &[][..], "", 415),
        (Method::DELETE, &[("content-type", "text/plain")][..], "", 415),
        // JSON from a page of an origin not allowed, or an opaque one.
        (Method::POST, &[("content-type", "application/json"), ("origin", "https://evil.example")][..], reason, 403),
        (Method::POST, &[("content-type", "application/json"), ("origin", "null")][..], reason, 403),
        (Method::DELETE, &[("content-type", "application/json"), ("origin", "https://evil.example")][..], "", 403),
        // Bodies that are not an approval request.
        (Method::POST, &[("content-type", "application/json")][..], r#"{"reason":5}"#, 400),
        (Method::POST, &[("content-type", "application/json")][..], r#"{"reasons":"x"}"#, 400),
        (Method::POST, &[("content-type", "application/json")][..], r#"{"reason":"line\nbreak"}"#, 400),
        (Method::POST, &[("content-type", "application/json")][..], r#"{"reason":"\u001b[2J"}"#, 400),
    ] {
        let reply = request(&suzhou, method.clone(), path, headers, body).await;
        assert_eq!(reply.status.as_u16(), want, "{method} {headers:?} {body}: {}", reply.text());
        assert_problem(&format!("{method} {headers:?}"), &reply);
    }
    let long = format!(r#"{{"reason":"{}"}}"#, "批".repeat(501));
    let reply = request(&suzhou, Method::POST, path, &[("content-type", "application/json")], &long).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(approvals_in_store(&endpoint, &prefix).await.is_empty(), "nothing was written");

    // The allowed origin, with JSON and a reason: approved, and the reason is in etcd.
    let headers = [("content-type", "application/json; charset=utf-8"), ("origin", "https://ops.suyun.example")];
    let reply = request(&suzhou, Method::POST, path, &headers, reason).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(reply.json()["item"]["reason"], "OPS-1234: window agreed with 苏州市大数据管理局");
    let stored = approvals_in_store(&endpoint, &prefix).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].reason.as_deref(), Some("OPS-1234: window agreed with 苏州市大数据管理局"));
    assert_eq!(stored[0].approved_by, "zhang.wei");
    // Without a body (and without an Origin, as a CLI sends it): no reason.
    let reply = suzhou.post("/api/v1/systems/JS-320583-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert!(reply.json()["item"].get("reason").is_none(), "{}", reply.text());
    server.stop().await.unwrap();
}

fn with_phases(phases: &[(&str, &str)]) -> Vec<Record> {
    let mut records = sample();
    for record in &mut records {
        if let Record::System(s) = record
            && let Some((_, phase)) = phases.iter().find(|(id, _)| *id == s.system_id)
        {
            s.phase = (*phase).into();
        }
    }
    records
}

#[tokio::test]
async fn approvals_follow_the_phase_and_can_be_revoked_before_the_cutover() {
    let prefix = unique_prefix("hostile-approvals");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let records = with_phases(&[
        ("JS-320500-0001", "Scheduled"),
        ("JS-320500-0002", "AwaitingCutover"),
        ("JS-320500-0003", "Completed"),
        ("JS-320583-0001", "RolledBack"),
        ("JS-320583-0002", "CuttingOver"),
        ("JS-320583-0003", "Failed"),
        ("JS-320100-0001", "Verifying"),
        ("JS-320100-0002", "NotMigrated"),
        ("JS-320100-0003", "Blocked"),
    ]);
    let mut publisher = publish(&endpoint, &prefix, "operator-a", records.clone()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let keys = Keys::new(&prefix);
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let viewer = server.with_certificate("viewer", &["320500", "read-only"]);
    let nanjing = server.with_certificate("li.na", &["320100"]);
    let province = server.with_certificate("ops", &["province"]);
    let approval_path = |id: &str| format!("/api/v1/systems/{id}/cutover-approval");

    // Only a system before its cutover can be approved.
    for (caller, id, want) in [
        (&suzhou, "JS-320500-0003", StatusCode::CONFLICT),   // Completed
        (&suzhou, "JS-320583-0001", StatusCode::CONFLICT),   // RolledBack
        (&suzhou, "JS-320583-0002", StatusCode::CONFLICT),   // CuttingOver
        (&suzhou, "JS-320583-0003", StatusCode::CONFLICT),   // Failed
        (&province, "JS-320100-0001", StatusCode::CONFLICT), // Verifying
        (&province, "JS-320100-0002", StatusCode::CONFLICT), // NotMigrated
        (&viewer, "JS-320500-0002", StatusCode::FORBIDDEN),
        (&nanjing, "JS-320500-0002", StatusCode::NOT_FOUND),
    ] {
        let reply = caller.post(&approval_path(id)).await.unwrap();
        assert_eq!(reply.status, want, "approve {id}: {}", reply.text());
        assert_problem(id, &reply);
    }
    assert!(approvals_in_store(&endpoint, &prefix).await.is_empty());
    for (caller, id) in [(&province, "JS-320100-0003"), (&suzhou, "JS-320500-0001"), (&suzhou, "JS-320500-0002")] {
        let reply = caller.post(&approval_path(id)).await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED, "approve {id}: {}", reply.text());
    }

    // Revocation: not by another city (404), not read-only (403), then by the city (204).
    let client = connect(&endpoint).await.unwrap();
    let stored = |id: &str| {
        let (key, mut client) = (keys.approval(id), client.clone());
        async move { client.get(key, None).await.unwrap().kvs().len() }
    };
    let path = approval_path("JS-320500-0002");
    assert_eq!(nanjing.delete(&path).await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(viewer.delete(&path).await.unwrap().status, StatusCode::FORBIDDEN);
    assert_eq!(stored("JS-320500-0002").await, 1, "still approved");
    let reply = suzhou.delete(&path).await.unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    assert!(reply.body.is_empty());
    assert_eq!(stored("JS-320500-0002").await, 0, "the approval is gone from etcd");
    let reply = suzhou.delete(&path).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "no approval left: {}", reply.text());
    assert_problem("second revoke", &reply);
    // A new approval after a revocation is a new one.
    let reply = suzhou.post(&path).await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(reply.json()["created"], true);

    // Once the cutover has started, the approval stays.
    let mut started = system_of(&records, "JS-320500-0001");
    started.phase = "CuttingOver".into();
    publisher.publish([Change::Put(Record::System(started))]).await.unwrap();
    caught_up(&server, &endpoint, &prefix).await;
    let reply = suzhou.delete(&approval_path("JS-320500-0001")).await.unwrap();
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
    assert_problem("revoke after the cutover started", &reply);
    assert_eq!(stored("JS-320500-0001").await, 1, "still approved");
    // The province may revoke any city's, before its cutover.
    let reply = province.delete(&approval_path("JS-320100-0003")).await.unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    server.stop().await.unwrap();
}
