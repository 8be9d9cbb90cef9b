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

fn node(name: &str, cluster: Option<serde_json::Value>) -> std::sync::Arc<suyun_crds::v1alpha1::CloudNode> {
    let mut spec = serde_json::json!({
        "tier": "City", "regionCode": "320500", "displayName": "苏州市", "parent": "jiangsu",
        "capacityFrom": "Nodes", "securityLevel": 3
    });
    if let Some(c) = cluster {
        spec["cluster"] = c;
    }
    std::sync::Arc::new(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "suyun.io/v1alpha1", "kind": "CloudNode", "metadata": { "name": name }, "spec": spec
        }))
        .unwrap(),
    )
}

fn secret(name: &str, version: &str, key: &str, value: &str) -> std::sync::Arc<k8s_openapi::api::core::v1::Secret> {
    let mut s = k8s_openapi::api::core::v1::Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.resource_version = Some(version.into());
    s.data = Some([(key.to_owned(), k8s_openapi::ByteString(value.as_bytes().to_vec()))].into());
    std::sync::Arc::new(s)
}

#[tokio::test]
async fn clients_follow_the_cloud_nodes_and_their_secrets() {
    use suyun_operator::members::{Members, NoClient};
    let yaml = std::fs::read_to_string(suyun_tests::member("suzhou").unwrap().kubeconfig).unwrap();
    let nodes = vec![
        node("suzhou", Some(serde_json::json!({}))),
        node("wuxi", Some(serde_json::json!({ "kubeconfigSecretRef": { "name": "wuxi-admin", "key": "config" } }))),
        node("changzhou", Some(serde_json::json!({}))),
        node("nantong", Some(serde_json::json!({}))),
        node("jiangsu", None),
    ];
    let insecure = yaml.replace("certificate-authority-data:", "insecure-skip-tls-verify: true\n    x:");
    let secrets = vec![
        secret("suzhou-kubeconfig", "1", "value", &yaml),
        secret("wuxi-admin", "7", "value", &yaml),
        secret("nantong-kubeconfig", "3", "value", &insecure),
    ];
    let mut members = Members::default();
    members.sync(&nodes, &secrets).await;
    assert_eq!(members.clients.keys().collect::<Vec<_>>(), ["suzhou"]);
    assert_eq!(members.errors["wuxi"], NoClient::KeyMissing { secret: "wuxi-admin".into(), key: "config".into() });
    assert_eq!(members.errors["changzhou"], NoClient::SecretMissing { secret: "changzhou-kubeconfig".into() });
    let NoClient::Refused { refused, .. } = &members.errors["nantong"] else { panic!("{:?}", members.errors) };
    assert_eq!(refused.field, "clusters[0].cluster.insecure-skip-tls-verify");
    assert!(!members.clients.contains_key("jiangsu") && !members.errors.contains_key("jiangsu"));
    members.clients["suzhou"].client.apiserver_version().await.unwrap();

    // The Secret is rotated: a client from the new version; the node loses spec.cluster: none.
    let rotated = vec![secret("suzhou-kubeconfig", "2", "value", &yaml)];
    members.sync(&nodes[..1], &rotated).await;
    assert_eq!(members.clients["suzhou"].secret_version, "2");
    members.sync(&[node("suzhou", None)], &rotated).await;
    assert!(members.clients.is_empty() && members.errors.is_empty());
}
