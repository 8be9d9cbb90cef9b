//! The whole chain with every real component: the operator publishes to the status-store etcd,
//! the REST apiserver serves it to a city over mTLS, the city approves a cutover through the
//! API, the approval goes back through etcd to the operator, the system leaves
//! AwaitingCutover and completes, and the history shows who approved.

use std::time::{Duration, Instant};

use http::StatusCode;
use kube::ResourceExt;
use suyun_crds::v1alpha1::{CUTOVER_APPROVED_BY, CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_tests::apiserver::TestServer;
use suyun_tests::etcd::unique_prefix;
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds};

#[tokio::test]
async fn a_city_approves_a_cutover_through_the_rest_api_and_the_system_completes() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let prefix = unique_prefix("e2e");
    let endpoint = cluster.etcd_endpoints.clone();
    let store_endpoints = format!("--store-endpoints={endpoint}");
    let store_prefix = format!("--store-prefix={prefix}");
    let _operator = OperatorProcess::start(
        cluster,
        "e2e-api",
        &["--lease-name=suyun-e2e-api", "--debounce-ms=100", &store_endpoints, &store_prefix],
    )
    .unwrap();
    let server = TestServer::start(&endpoint, &prefix, 500).await.unwrap();

    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 400, 4)).await;
    apply::<CloudNode>(&client, &fixtures::cloud_node("nanjing", "City", "320100", 400, 4)).await;
    apply::<Tenant>(&client, &fixtures::tenant("nanjing-data", "City", "320100", "nanjing", 10)).await;
    apply::<MigrationWave>(
        &client,
        &fixtures::wave("w", "  executor: Simulated\n  timeCompression: 3600\n  approval: {required: true}\n"),
    )
    .await;
    eventually(Duration::from_secs(30), || async {
        Ok(kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get("nanjing-data").await?)
    })
    .await
    .unwrap();
    apply::<GovSystem>(&client, &fixtures::system("nanjing-data", "JS-320100-0001", "w", 4, "")).await;

    // 南京 sees its system waiting for approval through the API; 苏州 does not see it at all.
    let nanjing = server.with_certificate("zhang.wei", &["320100"]);
    let suzhou = server.with_certificate("li.na", &["320500"]);
    eventually(Duration::from_secs(60), || async {
        let reply = nanjing.get("/api/v1/systems/JS-320100-0001").await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{} {}", reply.status, reply.text());
        let phase = reply.json()["item"]["phase"].clone();
        anyhow::ensure!(phase == "AwaitingCutover", "phase {phase}");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(suzhou.get("/api/v1/systems/JS-320100-0001").await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(
        suzhou.post("/api/v1/systems/JS-320100-0001/cutover-approval").await.unwrap().status,
        StatusCode::NOT_FOUND
    );

    // 南京 approves; the operator applies it and the system completes.
    let approved_at = Instant::now();
    let reply = nanjing
        .send(
            http::Method::POST,
            "/api/v1/systems/JS-320100-0001/cutover-approval",
            &[("content-type", "application/json")],
            br#"{"reason": "CHG-2026-1129"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let done = fixtures::wait_system(&client, "JS-320100-0001", "Completed", |s| {
        s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed)
    })
    .await;
    eprintln!("approval to Completed in {:?}", approved_at.elapsed());
    let name = done.name_any();
    assert!(done.annotations().get(CUTOVER_APPROVED_BY).is_none(), "REST approvals are not copied onto the object");
    let status = done.status.unwrap();
    assert_eq!(status.approved_by.as_deref(), Some("zhang.wei"));
    assert_eq!(status.approval_reason.as_deref(), Some("CHG-2026-1129"));
    // The cutover used the approval up: it is gone from the store.
    let keys = suyun_store::readmodel::Keys::new(&prefix);
    let etcd = suyun_tests::etcd::connect(&endpoint).await.unwrap();
    eventually(Duration::from_secs(10), || {
        let (mut etcd, key) = (etcd.clone(), keys.approval("JS-320100-0001"));
        async move {
            let left = etcd.get(key, None).await?.kvs().len();
            anyhow::ensure!(left == 0, "the used approval is still in the store");
            Ok(())
        }
    })
    .await
    .unwrap();

    // The API shows the completion and the history names the approver.
    eventually(Duration::from_secs(10), || async {
        let history = nanjing.get("/api/v1/systems/JS-320100-0001/history").await?.json();
        let entries = history["item"]["entries"].as_array().cloned().unwrap_or_default();
        let cutover = entries.iter().find(|e| e["from"] == "AwaitingCutover" && e["to"] == "CuttingOver");
        anyhow::ensure!(cutover.is_some_and(|e| e["actor"] == "zhang.wei"), "history: {history}");
        anyhow::ensure!(cutover.is_some_and(|e| e["approvalReason"] == "CHG-2026-1129"), "history: {history}");
        anyhow::ensure!(cutover.is_some_and(|e| e["approvedAt"].is_string()), "history: {history}");
        anyhow::ensure!(entries.last().is_some_and(|e| e["to"] == "Completed"), "history: {history}");
        anyhow::ensure!(history["item"]["approval"].is_null(), "the used approval is still pending: {history}");
        Ok(())
    })
    .await
    .unwrap();
    let node = nanjing.get("/api/v1/nodes/nanjing").await.unwrap();
    assert_eq!(node.status, StatusCode::OK);
    assert_eq!(node.json()["item"]["systemsByPhase"]["Completed"], 1, "{}", node.text());

    // The system is deleted: its record leaves the store (the loop publishes only what changed
    // and must still notice what is gone); its closed history stays.
    kube::Api::<GovSystem>::namespaced(client.clone(), "nanjing-data")
        .delete(&name, &Default::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(30), || async {
        let record = nanjing.get("/api/v1/systems/JS-320100-0001").await?;
        anyhow::ensure!(record.status == StatusCode::NOT_FOUND, "still served: {}", record.text());
        let history = nanjing.get("/api/v1/systems/JS-320100-0001/history").await?;
        anyhow::ensure!(history.status == StatusCode::OK, "{}", history.text());
        Ok(())
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
    fixtures::clean(&client).await;
}
