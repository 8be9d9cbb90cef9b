//! An independent client against the apiserver's own OpenAPI document: schemathesis (pinned,
//! installed from PyPI by `tests/cluster/schemathesis`) reads `/openapi.json` from the running
//! server and sends generated requests to every operation — the approval `POST` included — with
//! a 苏州 bearer token, over TLS verified against the server's CA, while the server holds the
//! synthetic Jiangsu read-model (7,900 systems). It must find no 5xx, and no status code,
//! content type, header or body that the document does not declare.
//!
//! Bounded for the test suite: `SCHEMATHESIS_MAX_EXAMPLES` generated cases per operation and
//! phase (50 by default: several hundred in all, under a minute); `SCHEMATHESIS_MAX_SECONDS=N`
//! instead repeats the fuzzing and stateful phases until N seconds are spent (the longer runs in
//! docs/reliability.md). The test fails when schemathesis reports a failure or an error, when it
//! did not test every operation, and when it ran no test case. `SCHEMATHESIS_CHECKS=all` adds
//! schemathesis' other checks (e.g. that invalid input is refused, that auth is not ignored).

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::unique_prefix;
use suyun_tests::readmodel::records_from_plan;
use suyun_tests::repo_root;
use suyun_tests::tls::write;

/// The checks run: a server error, and every way a response can disagree with the document.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_document() {
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let prefix = unique_prefix("schemathesis");
    let records = records_from_plan(&suyun_planner::synthetic::jiangsu(7));
    let _publisher = publish(&endpoint, &prefix, "operator-a", records).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    server.write_tokens(&[("suzhou-schemathesis-token", "suzhou-ops", "320500", false)]);
    let suzhou = server.with_token("suzhou-schemathesis-token");
    suyun_tests::eventually(Duration::from_secs(5), || async {
        anyhow::ensure!(suzhou.get("/api/v1/nodes").await?.status == StatusCode::OK, "token not loaded yet");
        Ok(())
    })
    .await
    .unwrap();

    let dir: PathBuf = repo_root().join("target/schemathesis").join(std::process::id().to_string());
    let ca_file = write(&dir, "server-ca.pem", &server.ca.pem.cert);
    let report = dir.join("report.json");
    let max_examples = env_number("SCHEMATHESIS_MAX_EXAMPLES", 50);
    let max_seconds = std::env::var("SCHEMATHESIS_MAX_SECONDS").ok();
    let mut command = tokio::process::Command::new(repo_root().join("tests/cluster/schemathesis"));
    command
        .arg("run")
        .arg(format!("https://127.0.0.1:{}/openapi.json", server.addr.port()))
        .args(["--tls-verify", &ca_file.display().to_string()])
        .args(["--header", "Authorization: Bearer suzhou-schemathesis-token"])
        .args(["--checks", &std::env::var("SCHEMATHESIS_CHECKS").unwrap_or_else(|_| CHECKS.to_owned())])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--workers", "2", "--no-color", "--generation-database", "none"])
        .args(["--report", "json", "--report-json-path", &report.display().to_string()])
        .current_dir(&dir)
        .kill_on_drop(true);
    if let Some(seconds) = &max_seconds {
        command.args(["--max-time", seconds]);
    }
    let run = command.output();
    // A bound in case it hangs (it takes about a minute at the default size).
    let limit = Duration::from_secs(max_seconds.as_deref().and_then(|s| s.parse().ok()).unwrap_or(300) + 120);
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish in {limit:?}"))
        .expect("running tests/cluster/schemathesis");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    std::fs::write(dir.join("output.txt"), &log).expect("writing schemathesis' output");
    println!("{log}");
    let report: Value = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("schemathesis wrote no report ({e}); it said:\n{log}")),
    )
    .expect("schemathesis's JSON report");

    // The seed reproduces the run (`--seed`); it is too large for a JSON number to keep exact.
    let seed = log.lines().find_map(|l| l.strip_prefix("Seed: ")).unwrap_or("?").to_owned();
    let generated = report["test_cases"]["generated"].as_u64().unwrap_or_default();
    let tested = report["operations"]["tested"].as_u64().unwrap_or_default();
    let total = report["operations"]["total"].as_u64().unwrap_or_default();
    assert!(generated > 0, "schemathesis ran no test case:\n{log}");
    // Every route but `/openapi.json`, which schemathesis reads the document from.
    let routes = suyun_apiserver::api::ROUTES.iter().filter(|r| r.path != "/openapi.json").count() as u64;
    assert_eq!(total, routes, "operations in the document:\n{log}");
    assert_eq!(tested, total, "every operation tested:\n{log}");
    assert_eq!(report["failures"], serde_json::json!([]), "failures (seed {seed}):\n{log}");
    assert_eq!(report["errors"], serde_json::json!([]), "errors (seed {seed}):\n{log}");
    assert!(output.status.success(), "schemathesis exited with {}:\n{log}", output.status);
    println!("schemathesis: {generated} test cases over {tested} operations, no failure (seed {seed})");

    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
