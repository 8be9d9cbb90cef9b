//! Credentials change without a restart, over real TLS against the real server: the server
//! certificate is renewed, a client CA is added, one city operator's certificate is revoked by
//! a CRL, and the token file disappears or breaks (its tokens stop working: it fails closed).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use suyun_tests::apiserver::{ServerOptions, TestServer};
use suyun_tests::https::{Caller, Connection, tls_connect};

async fn start(name: &str, options: ServerOptions) -> (TestServer, suyun_operator::store::Publisher) {
    TestServer::with_sample(name, options).await.unwrap()
}

async fn status(caller: &Caller) -> anyhow::Result<StatusCode> {
    Ok(caller.get("/api/v1/nodes").await?.status)
}

/// Waits until `caller` gets `want` (`None`: refused at the handshake, no response).
async fn until(caller: &Caller, want: Option<StatusCode>, what: &str) {
    suyun_tests::eventually(Duration::from_secs(5), || async {
        let got = status(caller).await.ok();
        anyhow::ensure!(got == want, "{what}: got {got:?}, want {want:?}");
        Ok(())
    })
    .await
    .unwrap();
}

/// The certificate the server presents to a new connection (DER).
async fn served_certificate(server: &TestServer) -> Vec<u8> {
    let stream = tls_connect(server.addr, server.anonymous().tls).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    suyun_apiserver::server::certificates(pem.as_bytes()).unwrap()[0].as_ref().to_vec()
}

#[tokio::test]
async fn a_renewed_server_certificate_is_served_to_new_connections() {
    let (server, _publisher) = start("tls-server-cert", ServerOptions::default()).await;
    let first = served_certificate(&server).await;
    assert_eq!(first, der(&std::fs::read_to_string(&server.tls_files.cert).unwrap()));

    let renewed = server.ca.server();
    server.write_file("tls.key", &renewed.key);
    server.write_file("tls.crt", &renewed.cert);
    suyun_tests::eventually(Duration::from_secs(5), || async {
        anyhow::ensure!(served_certificate(&server).await == der(&renewed.cert), "old certificate still served");
        Ok(())
    })
    .await
    .unwrap();
    let province = server.with_certificate("province-ops", &["province"]);
    assert_eq!(status(&province).await.unwrap(), StatusCode::OK);

    // A broken renewal (a key that is not the certificate's) is refused; the last good pair stays.
    server.write_file("tls.key", &server.ca.server().key);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_certificate(&server).await, der(&renewed.cert));
    assert_eq!(status(&province).await.unwrap(), StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_added_client_ca_is_trusted_without_a_restart() {
    let (server, _publisher) = start("tls-client-ca", ServerOptions::default()).await;
    let outsider = server.with_wrong_ca("wuxi-ops", &["320200"]);
    assert!(status(&outsider).await.is_err(), "a certificate of an untrusted CA is refused at the handshake");

    server.write_file("client-ca.crt", &format!("{}{}", server.ca.pem.cert, server.wrong_ca.pem.cert));
    until(&outsider, Some(StatusCode::OK), "a certificate of the added CA").await;
    let nanjing = server.with_certificate("nanjing-ops", &["320100"]);
    assert_eq!(status(&nanjing).await.unwrap(), StatusCode::OK, "the first CA is still trusted");

    // And removed again.
    server.write_file("client-ca.crt", &server.ca.pem.cert);
    until(&outsider, None, "a certificate of the removed CA").await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_revoked_operator_certificate_is_refused_and_the_rest_of_its_ca_is_not() {
    let options = ServerOptions { client_crl: true, ..ServerOptions::default() };
    let (server, _publisher) = start("tls-crl", options).await;
    let leaving_pem = server.ca.client("nanjing-ops-li", &["320100"]);
    let staying_pem = server.ca.client("nanjing-ops-wang", &["320100"]);
    let (leaving, staying) = (server.with_client_pem(&leaving_pem), server.with_client_pem(&staying_pem));
    assert_eq!(status(&leaving).await.unwrap(), StatusCode::OK);
    assert_eq!(status(&staying).await.unwrap(), StatusCode::OK);
    // A keep-alive connection opened before the revocation.
    let mut kept_open = Connection::open(server.addr, leaving.tls.clone()).await.unwrap();
    assert_eq!(kept_open.send(Method::GET, "/api/v1/nodes", &[], Bytes::new()).await.unwrap().status, StatusCode::OK);

    server.write_file("client.crl", &server.ca.crl(&[&leaving_pem]));
    until(&leaving, None, "the revoked certificate").await;
    assert_eq!(status(&staying).await.unwrap(), StatusCode::OK, "another certificate of the same CA still works");
    // The connection it already had is closed as well: the revocation does not wait for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        kept_open.send(Method::GET, "/api/v1/nodes", &[], Bytes::new()).await.is_err(),
        "a revoked certificate's open connection still serves"
    );

    // A CRL that does not parse is refused; the revocation in force stays.
    server.write_file("client.crl", "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(status(&leaving).await.is_err(), "a broken CRL must not lift the revocation");
    assert_eq!(status(&staying).await.unwrap(), StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_token_file_fails_closed() {
    let (server, _publisher) = start("tokens-fail-closed", ServerOptions::default()).await;
    server.write_tokens(&[("nanjing-token", "nanjing-ops", "320100", false)]);
    let caller = server.with_token("nanjing-token");
    until(&caller, Some(StatusCode::OK), "a listed token").await;

    std::fs::remove_file(&server.token_file).unwrap();
    until(&caller, Some(StatusCode::UNAUTHORIZED), "a token of a deleted file").await;

    server.write_tokens(&[("nanjing-token", "nanjing-ops", "320100", false)]);
    until(&caller, Some(StatusCode::OK), "a token of the restored file").await;

    server.write_file("tokens", "this is not a token file\n");
    until(&caller, Some(StatusCode::UNAUTHORIZED), "a token of a malformed file").await;

    // Certificates do not depend on the token file.
    let nanjing = server.with_certificate("nanjing-ops", &["320100"]);
    assert_eq!(status(&nanjing).await.unwrap(), StatusCode::OK);
    server.stop().await.unwrap();
}
