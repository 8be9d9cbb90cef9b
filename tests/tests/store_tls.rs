//! The status store over TLS with client certificates required (etcd `--client-cert-auth`):
//! the operator's publisher and the apiserver reach it with the CA and a client certificate
//! configured (`--store-ca/--store-cert/--store-key`, `--etcd-ca/--etcd-cert/--etcd-key`), and
//! cannot without the certificate or when trusting another CA.

use std::time::Duration;

use http::StatusCode;
use suyun_apiserver::config::EtcdConfig;
use suyun_operator::store::{Fence, Publisher, StoreConfig};
use suyun_store::readmodel::Record;
use suyun_tests::apiserver::TestServer;
use suyun_tests::etcd::{EtcdProcess, unique_prefix};
use suyun_tests::readmodel::sample;
use suyun_tests::tls::{TestCa, write};

/// Whether `config` can read from etcd within 20 s.
async fn reachable(config: &StoreConfig) -> bool {
    let attempt = async {
        let mut client = config.connect().await?;
        client.status().await?;
        anyhow::Ok(())
    };
    matches!(tokio::time::timeout(Duration::from_secs(20), attempt).await, Ok(Ok(())))
}

#[tokio::test]
async fn publisher_and_apiserver_use_a_tls_etcd_with_client_certificates() {
    let ca = TestCa::new("suyun-test-etcd-ca");
    let etcd = EtcdProcess::start_tls("store-tls", &ca).await.unwrap();
    let tls = etcd.tls().expect("a TLS etcd").clone();
    assert!(etcd.endpoint().starts_with("https://"));
    let prefix = unique_prefix("store-tls");

    // The operator's side, configured as its flags would configure it.
    let mut store = StoreConfig::new(vec![etcd.endpoint()], &prefix);
    store.ca = Some(tls.ca.clone());
    store.cert = Some(tls.client_cert.clone());
    store.key = Some(tls.client_key.clone());
    let fence = Fence::campaign(store.connect().await.unwrap(), store.keys(), "operator-tls", 10).await.unwrap();
    let mut publisher = Publisher::new(fence, store.max_txn_ops);
    let records = sample();
    let report = publisher.reconcile(records.clone()).await.unwrap();
    assert!(report.puts >= records.len(), "every record written: {report:?}");

    // The apiserver's side, over the same TLS settings.
    let mut etcd_config = EtcdConfig::new(vec![etcd.endpoint()], &prefix);
    etcd_config.ca = Some(tls.ca.clone());
    etcd_config.cert = Some(tls.client_cert.clone());
    etcd_config.key = Some(tls.client_key.clone());
    etcd_config.probe_ms = 200;
    let server = TestServer::start_with_store(etcd_config).await.unwrap();
    let province = server.with_certificate("ops-province", &["province"]);
    let system = records
        .iter()
        .find_map(|r| match r {
            Record::System(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    let reply = province.get(&format!("/api/v1/systems/{}", system.system_id)).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["item"]["displayName"], system.display_name.as_str());
    let ready = province.get("/readyz").await.unwrap();
    assert_eq!(ready.status, StatusCode::OK, "store current over TLS: {}", ready.text());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_client_certificate_or_trusting_another_ca_etcd_is_unreachable() {
    let ca = TestCa::new("suyun-test-etcd-ca");
    let etcd = EtcdProcess::start_tls("store-tls-refused", &ca).await.unwrap();
    let tls = etcd.tls().expect("a TLS etcd").clone();
    let prefix = unique_prefix("store-tls-refused");

    let mut complete = StoreConfig::new(vec![etcd.endpoint()], &prefix);
    complete.ca = Some(tls.ca.clone());
    complete.cert = Some(tls.client_cert.clone());
    complete.key = Some(tls.client_key.clone());
    assert!(reachable(&complete).await, "the control: CA and client certificate reach etcd");

    let mut no_client_cert = complete.clone();
    no_client_cert.cert = None;
    no_client_cert.key = None;
    assert!(!reachable(&no_client_cert).await, "etcd requires a client certificate");

    let other = TestCa::new("someone-else");
    let dir = tls.ca.parent().expect("PKI directory").join("other");
    let mut other_ca = complete.clone();
    other_ca.ca = Some(write(&dir, "ca.pem", &other.pem.cert));
    assert!(!reachable(&other_ca).await, "the server certificate is not trusted under another CA");

    let mut untrusted_client = complete.clone();
    let stranger = other.client("stranger", &[]);
    untrusted_client.cert = Some(write(&dir, "client.pem", &stranger.cert));
    untrusted_client.key = Some(write(&dir, "client-key.pem", &stranger.key));
    assert!(!reachable(&untrusted_client).await, "a client certificate of another CA is refused");
}
