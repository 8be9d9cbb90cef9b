//! Cutover approvals end to end on the store side: REST POST → etcd `approvals/<systemId>` →
//! the operator's `watch_approvals()` stream, idempotent, and visible in the history.
//! (Applying it to the GovSystem is the operator's part.)

use std::time::Duration;

use futures::StreamExt;
use http::StatusCode;
use suyun_operator::store::watch_approvals;
use suyun_store::readmodel::{ApprovalRecord, Keys};
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::{connect, unique_prefix};
use suyun_tests::readmodel::sample;

#[tokio::test]
async fn an_approval_posted_by_a_city_reaches_the_operator_once() {
    let prefix = unique_prefix("approval-flow");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let _publisher = publish(&endpoint, &prefix, "operator-a", sample()).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let keys = Keys::new(&prefix);
    let mut approvals = Box::pin(watch_approvals(connect(&endpoint).await.unwrap(), keys.clone(), None));

    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    let reply = suzhou.post("/api/v1/systems/JS-320500-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["created"], true);
    assert_eq!(body["item"]["approvedBy"], "zhang.wei");
    assert_eq!(body["item"]["scope"], "320500");

    // It is in etcd, with identity, scope and time.
    let mut client = connect(&endpoint).await.unwrap();
    let stored = client.get(keys.approval("JS-320500-0002"), None).await.unwrap();
    let stored: ApprovalRecord = serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert_eq!((stored.approved_by.as_str(), stored.region_code.as_str()), ("zhang.wei", "320500"));
    assert!(stored.time.parse::<jiff::Timestamp>().is_ok(), "RFC 3339 time: {}", stored.time);

    // The operator's stream delivers it.
    let approval = tokio::time::timeout(Duration::from_secs(10), approvals.next()).await.unwrap().unwrap();
    assert_eq!(approval.record, stored);

    // Approving again (even by someone else in scope) returns the first approval: idempotent.
    let li_na = server.with_certificate("li.na", &["320500"]);
    let again = li_na.post("/api/v1/systems/JS-320500-0002/cutover-approval").await.unwrap();
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.json()["item"]["approvedBy"], "zhang.wei");
    assert_eq!(again.json()["created"], false);

    // The history shows it (once the watch has brought it into the index).
    suyun_tests::eventually(Duration::from_secs(5), || async {
        let history = suzhou.get("/api/v1/systems/JS-320500-0002/history").await?.json();
        anyhow::ensure!(history["item"]["approval"]["approvedBy"] == "zhang.wei", "not in the history yet: {history}");
        Ok(())
    })
    .await
    .unwrap();

    // A second approval of another system arrives next, and nothing else did in between.
    let province = server.with_certificate("ops", &["province"]);
    let reply = province.post("/api/v1/systems/JS-320100-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED);
    let next = tokio::time::timeout(Duration::from_secs(10), approvals.next()).await.unwrap().unwrap();
    assert_eq!(next.record.system_id, "JS-320100-0002");
    assert_eq!(next.record.scope, "province");
    assert!(next.revision > approval.revision);

    // A new watcher lists what exists; one resuming after a revision gets only what followed.
    let listed: Vec<_> = watch_approvals(connect(&endpoint).await.unwrap(), keys.clone(), None).take(2).collect().await;
    let ids: Vec<&str> = listed.iter().map(|a| a.record.system_id.as_str()).collect();
    assert_eq!(ids, ["JS-320100-0002", "JS-320500-0002"]);
    let mut resumed =
        Box::pin(watch_approvals(connect(&endpoint).await.unwrap(), keys.clone(), Some(approval.revision)));
    let first = tokio::time::timeout(Duration::from_secs(10), resumed.next()).await.unwrap().unwrap();
    assert_eq!(first.record.system_id, "JS-320100-0002");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn approvals_that_make_no_sense_are_refused() {
    let prefix = unique_prefix("approval-refused");
    let endpoint = suyun_tests::cluster().etcd_endpoints.clone();
    let mut records = sample();
    for record in &mut records {
        if let suyun_store::readmodel::Record::System(s) = record
            && s.system_id == "JS-320500-0001"
        {
            s.approval.required = false;
        }
    }
    let _publisher = publish(&endpoint, &prefix, "operator-a", records).await.unwrap();
    let server = TestServer::start(&endpoint, &prefix, 1000).await.unwrap();
    let suzhou = server.with_certificate("zhang.wei", &["320500"]);
    for (path, want) in [
        ("/api/v1/systems/JS-320500-0001/cutover-approval", StatusCode::CONFLICT), // no approval needed
        ("/api/v1/systems/JS-320500-0003/cutover-approval", StatusCode::CONFLICT), // Completed
        ("/api/v1/systems/JS-320100-0002/cutover-approval", StatusCode::NOT_FOUND), // 南京's
        ("/api/v1/systems/JS-320500-9999/cutover-approval", StatusCode::NOT_FOUND), // no such system
    ] {
        let reply = suzhou.post(path).await.unwrap();
        assert_eq!(reply.status, want, "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type").as_deref(), Some("application/problem+json"));
    }
    let reply = suzhou.get("/api/v1/systems/JS-320500-0001/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let mut client = connect(&endpoint).await.unwrap();
    let stored =
        client.get(Keys::new(&prefix).collection("approvals"), Some(etcd_client::GetOptions::new().with_prefix()));
    assert_eq!(stored.await.unwrap().kvs().len(), 0, "nothing was written");
    server.stop().await.unwrap();
}
