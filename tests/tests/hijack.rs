//! A hostile tenant against the real operator, status store and REST API: an owner of a 南京
//! tenant names a 苏州 system's `systemId` in a GovSystem of its own, ties another 苏州 system
//! to its own through `sameNodeAs`, and an approval with 南京's scope for the 苏州 system is
//! forged straight into the store. None of it may change anything about 苏州's systems, what
//! 苏州 reads, or what 南京 can read.

use std::time::Duration;

use http::StatusCode;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use suyun_crds::v1alpha1::{CUTOVER_APPROVED_BY, CloudNode, GovSystem, MigrationWave, Phase, Tenant};
use suyun_store::readmodel::{ApprovalRecord, JournalEntry, Keys, SystemRecord};
use suyun_tests::apiserver::TestServer;
use suyun_tests::etcd::{connect, unique_prefix};
use suyun_tests::fixtures::{self, apply};
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds};

const ORIGINAL: &str = "JS-320500-0001";
const NEIGHBOUR: &str = "JS-320500-0002";

fn condition<'a>(
    s: &'a GovSystem,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

async fn get(client: &kube::Client, ns: &str, name: &str) -> GovSystem {
    Api::<GovSystem>::namespaced(client.clone(), ns).get(name).await.unwrap()
}

#[tokio::test]
async fn another_city_can_neither_take_nor_touch_nor_read_a_system() {
    let _guard = CLUSTER_SCOPED.lock().await;
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    fixtures::clean(&client).await;
    let prefix = unique_prefix("hijack");
    let endpoint = cluster.etcd_endpoints.clone();
    let (store_endpoints, store_prefix) = (format!("--store-endpoints={endpoint}"), format!("--store-prefix={prefix}"));
    let _operator = OperatorProcess::start(
        cluster,
        "hijack",
        &["--lease-name=suyun-hijack", "--debounce-ms=100", &store_endpoints, &store_prefix],
    )
    .unwrap();
    let server = TestServer::start(&endpoint, &prefix, 500).await.unwrap();
    let keys = Keys::new(&prefix);
    let mut etcd = connect(&endpoint).await.unwrap();

    apply::<CloudNode>(&client, &fixtures::cloud_node("jiangsu", "Provincial", "320000", 400, 8)).await;
    apply::<CloudNode>(&client, &fixtures::cloud_node("suzhou", "City", "320500", 400, 8)).await;
    apply::<CloudNode>(&client, &fixtures::cloud_node("nanjing", "City", "320100", 400, 8)).await;
    apply::<Tenant>(&client, &fixtures::tenant("suzhou-gongan", "City", "320500", "suzhou", 10)).await;
    apply::<Tenant>(&client, &fixtures::tenant("nanjing-data", "City", "320100", "nanjing", 10)).await;
    apply::<MigrationWave>(
        &client,
        &fixtures::wave("w", "  executor: Simulated\n  timeCompression: 3600\n  approval: {required: true}\n"),
    )
    .await;
    for ns in ["suzhou-gongan", "nanjing-data"] {
        eventually(Duration::from_secs(30), || async {
            Ok(Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get(ns).await?)
        })
        .await
        .unwrap();
    }
    apply::<GovSystem>(&client, &fixtures::system("suzhou-gongan", ORIGINAL, "w", 4, "")).await;
    apply::<GovSystem>(&client, &fixtures::system("suzhou-gongan", NEIGHBOUR, "w", 4, "")).await;
    let suzhou = server.with_certificate("li.na", &["320500"]);
    let nanjing = server.with_certificate("zhang.wei", &["320100"]);
    for id in [ORIGINAL, NEIGHBOUR] {
        eventually(Duration::from_secs(60), || async {
            let reply = suzhou.get(&format!("/api/v1/systems/{id}")).await?;
            anyhow::ensure!(reply.status == StatusCode::OK, "{} {}", reply.status, reply.text());
            let phase = reply.json()["item"]["phase"].clone();
            anyhow::ensure!(phase == "AwaitingCutover", "{id}: phase {phase}");
            Ok(())
        })
        .await
        .unwrap();
    }
    let original_before = get(&client, "suzhou-gongan", &ORIGINAL.to_lowercase()).await;
    let neighbour_before = get(&client, "suzhou-gongan", &NEIGHBOUR.to_lowercase()).await;

    // 南京's owner claims 苏州's id, and ties 苏州's other system to a 南京 system.
    apply::<GovSystem>(
        &client,
        &fixtures::system("nanjing-data", ORIGINAL, "w", 4, "")
            .replace(&format!("name: {}", ORIGINAL.to_lowercase()), "name: hijack"),
    )
    .await;
    apply::<GovSystem>(
        &client,
        &fixtures::system("nanjing-data", "JS-320100-0001", "w", 4, &format!("  sameNodeAs: [{NEIGHBOUR}]\n")),
    )
    .await;

    // The duplicate is Blocked and says who owns the id; the tie is Blocked and names the field.
    let hijack = eventually(Duration::from_secs(30), || async {
        let s = get(&client, "nanjing-data", "hijack").await;
        let blocked = condition(&s, "Blocked").filter(|c| c.status == "True").cloned();
        match blocked {
            Some(c) if c.reason == "DuplicateSystemId" => Ok(c),
            other => anyhow::bail!("duplicate not refused yet: {other:?}"),
        }
    })
    .await
    .unwrap();
    assert!(hijack.message.contains(&format!("suzhou-gongan/{}", ORIGINAL.to_lowercase())), "{}", hijack.message);
    let tie = eventually(Duration::from_secs(30), || async {
        let s = get(&client, "nanjing-data", "js-320100-0001").await;
        let blocked = condition(&s, "Blocked").filter(|c| c.status == "True").cloned();
        match blocked {
            Some(c) if c.reason == "ForeignPlacementReference" => Ok(c),
            other => anyhow::bail!("foreign sameNodeAs not refused yet: {other:?}"),
        }
    })
    .await
    .unwrap();
    assert!(tie.message.starts_with(&format!("spec.sameNodeAs[0]: {NEIGHBOUR}")), "{}", tie.message);

    // A forged approval in 南京's scope for 苏州's system, straight into the store.
    let forged = ApprovalRecord {
        system_id: ORIGINAL.into(),
        region_code: "320500".into(),
        approved_by: "mallory".into(),
        scope: "320100".into(),
        time: "2026-11-29T00:00:00Z".into(),
        reason: None,
    };
    etcd.put(keys.approval(ORIGINAL), serde_json::to_vec(&forged).unwrap(), None).await.unwrap();

    // Give the operator several iterations, then nothing of 苏州's may have changed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (before, name) in [(&original_before, ORIGINAL), (&neighbour_before, NEIGHBOUR)] {
        let now = get(&client, "suzhou-gongan", &name.to_lowercase()).await;
        assert_eq!(now.status.as_ref().and_then(|s| s.phase), Some(Phase::AwaitingCutover), "{name}");
        assert_eq!(now.status, before.status, "{name}: a foreign object changed the status");
        assert!(now.annotations().get(CUTOVER_APPROVED_BY).is_none(), "{name}: the forged approval was applied");
    }
    let dup = get(&client, "nanjing-data", "hijack").await;
    assert!(dup.annotations().get(CUTOVER_APPROVED_BY).is_none(), "an approval reached the duplicate");

    // The store holds 苏州's record and journal only.
    let record = etcd.get(keys.system(ORIGINAL), None).await.unwrap();
    let record: SystemRecord = serde_json::from_slice(record.kvs()[0].value()).unwrap();
    assert_eq!((record.tenant.as_str(), record.region_code.as_str()), ("suzhou-gongan", "320500"));
    let journal =
        etcd.get(keys.journal_of(ORIGINAL), Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert!(!journal.kvs().is_empty());
    for kv in journal.kvs() {
        let entry: JournalEntry = serde_json::from_slice(kv.value()).unwrap();
        assert_eq!(entry.region_code, "320500", "a foreign transition in 苏州's journal: {entry:?}");
    }

    // 苏州 reads its own system; 南京 reads and approves nothing of it.
    let reply = suzhou.get(&format!("/api/v1/systems/{ORIGINAL}")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["item"]["tenant"], "suzhou-gongan", "{}", reply.text());
    for path in [format!("/api/v1/systems/{ORIGINAL}"), format!("/api/v1/systems/{ORIGINAL}/history")] {
        assert_eq!(nanjing.get(&path).await.unwrap().status, StatusCode::NOT_FOUND, "{path}");
    }
    let listed = nanjing.get("/api/v1/systems?limit=1000").await.unwrap().json();
    let ids: Vec<_> = listed["items"].as_array().unwrap().iter().map(|s| s["systemId"].clone()).collect();
    assert!(!ids.contains(&serde_json::json!(ORIGINAL)), "南京 lists 苏州's id: {ids:?}");
    assert_eq!(
        nanjing.post(&format!("/api/v1/systems/{ORIGINAL}/cutover-approval")).await.unwrap().status,
        StatusCode::NOT_FOUND
    );

    // The forged record gone, 苏州 approves through the API and only its own system moves on.
    etcd.delete(keys.approval(ORIGINAL), None).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        let reply = suzhou.post(&format!("/api/v1/systems/{ORIGINAL}/cutover-approval")).await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "{} {}", reply.status, reply.text());
        Ok(())
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(60), || async {
        let s = get(&client, "suzhou-gongan", &ORIGINAL.to_lowercase()).await;
        let phase = s.status.as_ref().and_then(|s| s.phase);
        anyhow::ensure!(phase == Some(Phase::Completed), "original: {phase:?}");
        Ok(())
    })
    .await
    .unwrap();
    let dup = get(&client, "nanjing-data", "hijack").await;
    assert_eq!(dup.status.as_ref().and_then(|s| s.phase), Some(Phase::Blocked));
    assert!(dup.annotations().get(CUTOVER_APPROVED_BY).is_none());
    let systems = Api::<GovSystem>::all(client.clone()).list(&ListParams::default()).await.unwrap();
    assert_eq!(systems.items.len(), 4);

    // 苏州 retires its system: the id passes to the next claimant, 南京's, which reads none of
    // 苏州's history under it.
    Api::<GovSystem>::namespaced(client.clone(), "suzhou-gongan")
        .delete(&ORIGINAL.to_lowercase(), &Default::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(60), || async {
        let reply = nanjing.get(&format!("/api/v1/systems/{ORIGINAL}")).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{} {}", reply.status, reply.text());
        anyhow::ensure!(reply.json()["item"]["tenant"] == "nanjing-data", "{}", reply.text());
        Ok(())
    })
    .await
    .unwrap();
    let history = nanjing.get(&format!("/api/v1/systems/{ORIGINAL}/history")).await.unwrap();
    assert_eq!(history.status, StatusCode::OK, "{}", history.text());
    let history = history.json();
    for entry in history["item"]["entries"].as_array().unwrap() {
        assert_eq!(entry["regionCode"], "320100", "南京 reads 苏州's history: {history}");
    }
    assert!(history["item"]["approval"].is_null(), "南京 reads 苏州's approval: {history}");
    server.stop().await.unwrap();
    fixtures::clean(&client).await;
}
