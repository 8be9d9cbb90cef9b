//! Member clusters (issue 14, in progress): a member's kubeconfig, as `tests/cluster/member`
//! writes it, gives the operator a working client, and the member's certificate is verified.

use suyun_operator::members::kubeconfig;

#[tokio::test]
async fn a_members_kubeconfig_gives_a_client_that_verifies_the_members_certificate() {
    let suzhou = suyun_tests::member("suzhou").unwrap();
    let yaml = std::fs::read_to_string(&suzhou.kubeconfig).unwrap();
    let client = kubeconfig::client(&yaml).await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert!(version.git_version.starts_with("v1."), "{version:?}");

    // The same credentials with another cluster's CA: the TLS handshake must fail.
    let management = std::fs::read_to_string(&suyun_tests::cluster().kubeconfig).unwrap();
    let other_ca = |yaml: &str| {
        let line = yaml.lines().find(|l| l.trim_start().starts_with("certificate-authority-data:")).unwrap();
        line.to_owned()
    };
    let forged = yaml.replace(&other_ca(&yaml), &other_ca(&management));
    assert_ne!(forged, yaml, "the two clusters have their own CAs");
    let client = kubeconfig::client(&forged).await.unwrap();
    let refused = client.apiserver_version().await;
    assert!(refused.is_err(), "a member with an unknown certificate was trusted: {refused:?}");
}
