//! Behaviour of the REST API on the synthetic Jiangsu set (7,900 systems): pagination and
//! filters, ETag/If-None-Match, gzip, the OpenAPI document against the real routes, problem
//! details for unknown paths, and request metrics on their own listener.

use std::collections::BTreeSet;
use std::io::Read;

use http::StatusCode;
use suyun_apiserver::api::ROUTES;
use suyun_operator::store::Change;
use suyun_store::readmodel::{Record, SystemRecord};
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::unique_prefix;
use suyun_tests::readmodel::records_from_plan;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn jiangsu() -> (Vec<Record>, suyun_operator::store::Publisher, TestServer) {
    let prefix = unique_prefix("api-jiangsu");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let mut input = suyun_planner::synthetic::jiangsu(7);
    // A budget for 苏州 so that every route has something to serve; its shares are too large
    // to change the plan.
    let share = |node: &str| suyun_planner::model::NodeShare {
        node: node.into(),
        limit: suyun_planner::model::Limit { cpu: u64::MAX / 4, memory: u64::MAX / 4, storage: u64::MAX / 4 },
    };
    input.budgets = vec![suyun_planner::model::CityBudget {
        name: "budget-320500".into(),
        region_code: "320500".into(),
        display_name: "苏州市".into(),
        nodes: vec![share("cn-320500"), share("cn-320000")],
        lending: Default::default(),
    }];
    let mut records = records_from_plan(&input);
    let plan = suyun_planner::plan(&input);
    records.extend(suyun_operator::readmodel::budgets(&plan, &[]).into_iter().map(Record::Budget));
    let publisher = publish(&endpoint, &prefix, "operator-a", records.clone()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    (records, publisher, server)
}

/// Which systems a query should select.
type Keep<'a> = Box<dyn Fn(&&SystemRecord) -> bool + 'a>;

fn suzhou_systems(records: &[Record]) -> Vec<&SystemRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::System(s) if s.region_code.starts_with("3205") => Some(s),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn pagination_filters_etags_gzip_openapi_and_metrics() {
    let (records, mut publisher, server) = jiangsu().await;
    let suzhou = server.with_certificate("suzhou-ops", &["320500"]);
    let expected = suzhou_systems(&records);
    assert!(expected.len() > 300, "苏州 has hundreds of systems");

    // Pagination: every system of the city exactly once, sorted by systemId, pages of 100.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &next {
            Some(token) => format!("/api/v1/systems?limit=100&continue={token}"),
            None => "/api/v1/systems?limit=100".to_owned(),
        };
        let body = suzhou.get(&path).await.unwrap().json();
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 100);
        seen.extend(items.iter().map(|s| s["systemId"].as_str().unwrap().to_owned()));
        pages += 1;
        match body["metadata"]["continue"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => break,
        }
    }
    let mut want: Vec<String> = expected.iter().map(|s| s.system_id.clone()).collect();
    want.sort();
    assert_eq!(seen, want, "each system once, in systemId order");
    assert_eq!(pages, want.len().div_ceil(100));
    assert_eq!(suzhou.get("/api/v1/systems?continue=garbage!").await.unwrap().status, StatusCode::BAD_REQUEST);
    assert_eq!(suzhou.get("/api/v1/systems?limit=0").await.unwrap().status, StatusCode::BAD_REQUEST);

    // Filters, each against the same question asked of the records.
    let sample = expected[3];
    let approvable = expected.iter().find(|s| s.approval.required && s.phase != "Completed").expect("one to approve");
    let tenant = &sample.tenant;
    let node = sample.node.clone().unwrap();
    let node_name = node.clone();
    let wave = sample.wave.clone().unwrap();
    let needle: String = sample.display_name.chars().skip(2).take(3).collect();
    let cases: Vec<(String, Keep<'_>)> = vec![
        ("phase=AwaitingCutover".into(), Box::new(|s| s.phase == "AwaitingCutover")),
        (format!("tenant={tenant}"), Box::new(move |s| &s.tenant == tenant)),
        (format!("node={node}"), Box::new(move |s| s.node.as_deref() == Some(node.as_str()))),
        (
            format!("wave={wave}&phase=Completed"),
            Box::new(move |s| s.wave.as_ref() == Some(&wave) && s.phase == "Completed"),
        ),
        (format!("q={}", percent(&needle)), Box::new(move |s| s.display_name.contains(&needle))),
        ("q=js-320500-000".into(), Box::new(|s| s.system_id.to_lowercase().contains("js-320500-000"))),
    ];
    for (query, keep) in &cases {
        let body = suzhou.get(&format!("/api/v1/systems?limit=1000&{query}")).await.unwrap().json();
        let got: BTreeSet<&str> =
            body["items"].as_array().unwrap().iter().map(|s| s["systemId"].as_str().unwrap()).collect();
        let want: BTreeSet<&str> = expected.iter().filter(|s| keep(s)).map(|s| s.system_id.as_str()).collect();
        assert!(!want.is_empty(), "{query} selects something");
        assert_eq!(got, want, "{query}");
    }

    // ETag and If-None-Match.
    let first = suzhou.get(&format!("/api/v1/nodes/{node_name}")).await.unwrap();
    let etag = first.header("etag").expect("an ETag");
    let again = suzhou.get_with(&format!("/api/v1/nodes/{node_name}"), &[("if-none-match", &etag)]).await.unwrap();
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    let list = suzhou.get("/api/v1/systems?phase=Replicating").await.unwrap();
    let list_etag = list.header("etag").unwrap();
    let same = suzhou.get_with("/api/v1/systems?phase=Replicating", &[("if-none-match", &list_etag)]).await.unwrap();
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    // A change of one of the city's systems changes both ETags.
    let mut changed = sample.clone();
    changed.phase = "Replicating".into();
    publisher.publish([Change::Put(Record::System(changed.clone()))]).await.unwrap();
    suyun_tests::eventually(std::time::Duration::from_secs(5), || async {
        let reply = suzhou.get_with("/api/v1/systems?phase=Replicating", &[("if-none-match", &list_etag)]).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "still {}", reply.status);
        anyhow::ensure!(reply.text().contains(&changed.system_id), "change not visible");
        Ok(())
    })
    .await
    .unwrap();

    // gzip: the same bytes, compressed.
    let plain = suzhou.get("/api/v1/systems?limit=500").await.unwrap();
    let zipped = suzhou.get_with("/api/v1/systems?limit=500", &[("accept-encoding", "gzip")]).await.unwrap();
    assert_eq!(zipped.header("content-encoding").as_deref(), Some("gzip"));
    assert!(zipped.body.len() * 4 < plain.body.len(), "{} vs {} bytes", zipped.body.len(), plain.body.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped.body[..]).read_to_end(&mut unzipped).unwrap();
    assert_eq!(unzipped, plain.body.to_vec());

    // The OpenAPI document lists exactly the routes, and each route is served.
    let province = server.with_certificate("ops", &["province"]);
    let document = server.anonymous().get("/openapi.json").await.unwrap().json();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    assert_eq!(documented, routed);
    for route in ROUTES {
        let name = match route.path {
            p if p.starts_with("/api/v1/nodes") => node_name.clone(),
            p if p.starts_with("/api/v1/tenants") => sample.tenant.clone(),
            _ => sample.wave.clone().unwrap(),
        };
        let system = match route.method {
            "POST" | "DELETE" => &approvable.system_id,
            _ => &sample.system_id,
        };
        let path = route.path.replace("{name}", &name).replace("{systemId}", system).replace("{regionCode}", "320500");
        // ROUTES lists the POST of an approval before its DELETE: approve, then revoke.
        let reply = match route.method {
            "POST" => province.post(&path).await.unwrap(),
            "DELETE" => province.delete(&path).await.unwrap(),
            _ => province.get(&path).await.unwrap(),
        };
        assert!(reply.status.is_success(), "{} {path}: {} {}", route.method, reply.status, reply.text());
        let operation = &document["paths"][route.path][route.method.to_lowercase()];
        assert!(operation["responses"][reply.status.as_str()].is_object(), "{path}: {} is documented", reply.status);
        for schema in document["components"]["schemas"].as_object().unwrap().keys() {
            assert!(!schema.is_empty());
        }
    }
    let reply = province.get("/api/v1/nothing-here").await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["type"], "https://suyun.io/problems/no-route");

    // Metrics on the separate listener, by route template and status.
    let metrics = scrape(server.metrics_addr).await;
    assert!(
        metrics.contains(r#"suyun_apiserver_requests_total{method="GET",route="/api/v1/nodes/{name}",status="304"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="/api/v1/systems",status="400"} 2"#), "{metrics}");
    assert!(metrics.contains("suyun_apiserver_request_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("suyun_apiserver_store_up 1"), "{metrics}");
    server.stop().await.unwrap();
}

fn percent(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}
