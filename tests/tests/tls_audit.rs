//! The apiserver's TLS as an independent scanner sees it: sslyze (pinned, installed from PyPI by
//! `tests/cluster/sslyze`; it brings its own OpenSSL builds, so it can still offer SSL 2/3 and
//! TLS 1.0/1.1) against the real server in-process, its JSON report checked property by
//! property:
//!
//! * only TLS 1.2 and 1.3 are accepted (SSL 2.0/3.0, TLS 1.0/1.1 refused);
//! * no CBC suite and no suite without forward secrecy (RSA key exchange) in TLS 1.2;
//! * the chain served is the configured server certificate alone (no anchor, valid order), for
//!   `localhost`/`127.0.0.1`, and it validates against the server's CA;
//! * client certificates are requested but optional (callers with a token connect without one);
//!   a certificate of the configured client CA is accepted and one of another CA is refused in
//!   the handshake (docs/api.md).

use std::path::{Path, PathBuf};

use serde_json::Value;
use suyun_tests::apiserver::TestServer;
use suyun_tests::etcd::unique_prefix;
use suyun_tests::repo_root;
use suyun_tests::tls::write;

/// Runs sslyze on `server` with `args` (scan commands, client certificate) and returns the one
/// server result of its JSON report.
async fn sslyze(server: &TestServer, dir: &Path, name: &str, args: &[&str]) -> Value {
    let out = dir.join(format!("{name}.json"));
    let target = format!("localhost:{}{{127.0.0.1}}", server.addr.port());
    let output = tokio::process::Command::new(repo_root().join("tests/cluster/sslyze"))
        .arg(format!("--json_out={}", out.display()))
        .args(args)
        .arg(&target)
        .output()
        .await
        .expect("running tests/cluster/sslyze");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(
        &std::fs::read(&out).unwrap_or_else(|e| panic!("sslyze wrote no report ({e}); it said:\n{log}")),
    )
    .expect("sslyze's JSON report");
    let results = report["server_scan_results"].as_array().expect("server_scan_results");
    assert_eq!(results.len(), 1, "one server scanned: {log}");
    results[0].clone()
}

/// The named scan's result, failing when the scan itself did not complete.
fn scan<'a>(result: &'a Value, command: &str) -> &'a Value {
    let scan = &result["scan_result"][command];
    assert_eq!(scan["status"], "COMPLETED", "sslyze scan {command}: {scan}");
    &scan["result"]
}

fn accepted_suites(result: &Value, command: &str) -> Vec<String> {
    scan(result, command)["accepted_cipher_suites"]
        .as_array()
        .expect("accepted_cipher_suites")
        .iter()
        .map(|s| s["cipher_suite"]["name"].as_str().expect("suite name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_finds_only_modern_forward_secret_tls_and_the_documented_certificates() {
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let server = TestServer::start(&endpoint, &unique_prefix("tls-audit"), 1000).await.unwrap();
    let dir: PathBuf = repo_root().join("target/tls-audit").join(std::process::id().to_string());
    let ca_file = write(&dir, "server-ca.pem", &server.ca.pem.cert);
    let trusted = server.ca.client("suzhou-ops", &["320500"]);
    let untrusted = server.wrong_ca.client("suzhou-ops", &["320500"]);
    let (trusted_cert, trusted_key) =
        (write(&dir, "trusted.pem", &trusted.cert), write(&dir, "trusted.key", &trusted.key));
    let (untrusted_cert, untrusted_key) =
        (write(&dir, "untrusted.pem", &untrusted.cert), write(&dir, "untrusted.key", &untrusted.key));
    let path = |p: &PathBuf| p.display().to_string();

    let full_scan = [
        "--sslv2",
        "--sslv3",
        "--tlsv1",
        "--tlsv1_1",
        "--tlsv1_2",
        "--tlsv1_3",
        "--certinfo",
        &format!("--certinfo_ca_file={}", path(&ca_file)),
    ];
    // With a client certificate, TLS 1.2 handshakes: in TLS 1.3 the client has finished its side
    // before the server checks the certificate, so a refusal only shows on the first read.
    let trusted_args = ["--tlsv1_2", "--cert", &path(&trusted_cert), "--key", &path(&trusted_key)];
    let untrusted_args = ["--tlsv1_2", "--cert", &path(&untrusted_cert), "--key", &path(&untrusted_key)];
    let (anonymous, with_trusted, with_untrusted) = tokio::join!(
        sslyze(&server, &dir, "anonymous", &full_scan),
        sslyze(&server, &dir, "trusted", &trusted_args),
        sslyze(&server, &dir, "untrusted", &untrusted_args),
    );

    // Client authentication: requested, optional; the configured CA's certificates only.
    assert_eq!(anonymous["connectivity_status"], "COMPLETED", "{}", anonymous["connectivity_error_trace"]);
    assert_eq!(anonymous["connectivity_result"]["client_auth_requirement"], "OPTIONAL");
    assert_eq!(with_trusted["connectivity_status"], "COMPLETED", "{}", with_trusted["connectivity_error_trace"]);
    let trusted_suites = accepted_suites(&with_trusted, "tls_1_2_cipher_suites");
    assert!(!trusted_suites.is_empty(), "a certificate of the client CA is accepted");
    // Another CA's certificate: every handshake ends in the server's `unknown_ca` alert (sslyze
    // files that under the scan's error, as it never expects a server to refuse them all).
    let refused = &with_untrusted["scan_result"]["tls_1_2_cipher_suites"];
    assert_eq!(refused["status"], "ERROR", "a certificate of another CA must be refused: {refused}");
    let trace = refused["error_trace"].as_str().unwrap_or_default();
    assert!(trace.contains("alert unknown ca"), "refused for its CA in the handshake: {trace}");

    // Protocol versions.
    for old in ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"] {
        assert_eq!(accepted_suites(&anonymous, old), Vec::<String>::new(), "{old} must be refused");
        assert_eq!(scan(&anonymous, old)["is_tls_version_supported"], false, "{old}");
    }
    let tls12 = accepted_suites(&anonymous, "tls_1_2_cipher_suites");
    let tls13 = accepted_suites(&anonymous, "tls_1_3_cipher_suites");
    assert!(!tls12.is_empty() && !tls13.is_empty(), "TLS 1.2 {tls12:?} and 1.3 {tls13:?} must both be offered");

    // TLS 1.2 suites: ephemeral (EC)DH key exchange and AEAD only. (Every TLS 1.3 suite is.)
    for suite in &tls12 {
        assert!(
            suite.starts_with("TLS_ECDHE_") || suite.starts_with("TLS_DHE_"),
            "{suite}: no forward secrecy (static RSA key exchange)"
        );
        assert!(!suite.contains("_CBC_"), "{suite}: CBC mode");
        assert!(suite.contains("_GCM_") || suite.contains("_CHACHA20_POLY1305"), "{suite}: not an AEAD suite");
    }
    for result in scan(&anonymous, "tls_1_2_cipher_suites")["accepted_cipher_suites"].as_array().unwrap() {
        let kind = result["ephemeral_key"]["type_name"].as_str().unwrap_or("none");
        assert!(kind == "ECDH" || kind == "DH", "{}: ephemeral key {kind}", result["cipher_suite"]["name"]);
    }

    // The certificate chain as served.
    let certificates = scan(&anonymous, "certificate_info");
    let deployments = certificates["certificate_deployments"].as_array().expect("certificate_deployments");
    assert_eq!(deployments.len(), 1, "one certificate configured");
    let deployment = &deployments[0];
    let chain = deployment["received_certificate_chain"].as_array().expect("received_certificate_chain");
    assert_eq!(chain.len(), 1, "the server sends its certificate, without the CA: {chain:?}");
    assert_eq!(deployment["received_chain_has_valid_order"], true);
    assert_eq!(deployment["received_chain_contains_anchor_certificate"], false, "{deployment}");
    let leaf = &chain[0];
    let names: Vec<&str> = leaf["subject_alternative_name"]["dns_names"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(names.contains(&"localhost"), "subject alternative names: {}", leaf["subject_alternative_name"]);
    assert!(
        leaf["issuer"]["rfc4514_string"].as_str().unwrap_or_default().contains("suyun-test-client-ca"),
        "issued by the server's CA: {}",
        leaf["issuer"]
    );
    let supplied = deployment["path_validation_results"]
        .as_array()
        .expect("path_validation_results")
        .iter()
        .find(|r| r["trust_store"]["name"] == "Supplied CA file")
        .expect("a validation against the supplied CA file");
    assert_eq!(supplied["was_validation_successful"], true, "validation against the server's CA: {supplied}");

    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
