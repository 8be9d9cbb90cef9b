//! An etcd outage, with an etcd process of the test's own: the API keeps serving the last
//! state marked stale (header and field), `/readyz` says degraded, writes are refused, and
//! after etcd returns the server recovers by itself with every change and nothing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use suyun_operator::store::{Change, RecordKey};
use suyun_store::readmodel::{Record, SystemRecord};
use suyun_tests::apiserver::{TestServer, publish};
use suyun_tests::etcd::{EtcdProcess, unique_prefix};
use suyun_tests::https::Caller;
use suyun_tests::readmodel::sample;

async fn phases(caller: &Caller) -> anyhow::Result<BTreeMap<String, String>> {
    let reply = caller.get("/api/v1/systems?limit=1000").await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.text());
    Ok(reply.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["systemId"].as_str().unwrap().to_owned(), s["phase"].as_str().unwrap().to_owned()))
        .collect())
}

fn system(id: &str, region: &str, phase: &str) -> Change {
    Change::Put(Record::System(SystemRecord {
        system_id: id.into(),
        tenant: "sz-gov".into(),
        region_code: region.into(),
        phase: phase.into(),
        ..Default::default()
    }))
}

#[tokio::test]
async fn serves_stale_during_an_outage_and_recovers_without_gaps() {
    let mut etcd = EtcdProcess::start("outage").await.unwrap();
    let prefix = unique_prefix("outage");
    let mut publisher = publish(&etcd.endpoint(), &prefix, "operator-a", sample()).await.unwrap();
    let server = TestServer::start(&etcd.endpoint(), &prefix, 200).await.unwrap();
    let province = server.with_certificate("ops", &["province"]);
    let before = phases(&province).await.unwrap();
    assert_eq!(before.len(), 12);
    let reply = province.get("/api/v1/nodes/suzhou").await.unwrap();
    assert!(reply.header("suyun-stale").is_none());
    assert_eq!(reply.json()["metadata"]["stale"], false);
    assert_eq!(province.get("/readyz").await.unwrap().status, StatusCode::OK);

    etcd.kill();
    suyun_tests::eventually(Duration::from_secs(10), || async {
        let reply = province.get("/readyz").await?;
        anyhow::ensure!(reply.status == StatusCode::SERVICE_UNAVAILABLE, "still ready: {}", reply.text());
        anyhow::ensure!(reply.text().contains("degraded"), "{}", reply.text());
        Ok(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = province.get("/api/v1/nodes/suzhou").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "the last state is still served");
    let stale: u64 = reply.header("suyun-stale").expect("stale header").parse().unwrap();
    assert!(stale >= 1, "seconds since etcd was last heard: {stale}");
    assert_eq!(reply.json()["metadata"]["stale"], true);
    assert_eq!(reply.json()["metadata"]["staleSeconds"], stale);
    assert_eq!(reply.json()["item"]["displayName"], "苏州市");
    assert_eq!(phases(&province).await.unwrap(), before, "lists are served from the last state too");
    let reply = province.post("/api/v1/systems/JS-320500-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "approvals cannot be recorded: {}", reply.text());

    // etcd returns; the operator publishes changes; the server catches up by itself.
    etcd.restart().await.unwrap();
    let changes = vec![
        system("JS-320500-0001", "320500", "Provisioning"),
        system("JS-320500-0004", "320500", "Scheduled"),
        Change::Delete(RecordKey::System("JS-320100-0003".into())),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Err(e) = publisher.publish(changes.clone()).await {
        assert!(tokio::time::Instant::now() < deadline, "the publisher did not reconnect: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then a burst of single-record writes, each its own revision.
    for i in 0..50 {
        publisher.publish([system("JS-320500-0001", "320500", &format!("Step{i:02}"))]).await.unwrap();
    }
    let mut expected = before.clone();
    expected.insert("JS-320500-0001".into(), "Step49".into());
    expected.insert("JS-320500-0004".into(), "Scheduled".into());
    expected.remove("JS-320100-0003");
    suyun_tests::eventually(Duration::from_secs(15), || async {
        let reply = province.get("/readyz").await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "not recovered: {}", reply.text());
        let now = phases(&province).await?;
        anyhow::ensure!(now == expected, "index differs from the store: {now:?}");
        Ok(())
    })
    .await
    .unwrap();
    let reply = province.get("/api/v1/nodes/suzhou").await.unwrap();
    assert!(reply.header("suyun-stale").is_none(), "no longer stale");
    assert_eq!(reply.json()["metadata"]["stale"], false);
    // The index is at the store's revision: nothing missing, nothing applied twice.
    let mut client = suyun_tests::etcd::connect(&etcd.endpoint()).await.unwrap();
    let revision = client.get("x", None).await.unwrap().header().unwrap().revision();
    assert_eq!(server.state.index.read().unwrap().revision, revision);
    let reply = province.post("/api/v1/systems/JS-320500-0002/cutover-approval").await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "writes work again: {}", reply.text());
    server.stop().await.unwrap();
}
