//! The operator's CloudNode controller against the real kube-apiserver: status for the 14
//! Jiangsu nodes, capacity that follows Kubernetes Nodes, and invalid references reported as
//! conditions while the operator keeps running.

use std::time::Duration;

use anyhow::{bail, ensure};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use kube::{Client, ResourceExt};
use serde_json::json;
use suyun_crds::v1alpha1::CloudNode;
use suyun_tests::operator::OperatorProcess;
use suyun_tests::{CLUSTER_SCOPED, cluster, eventually, install_crds, manifests, repo_root};

const WAIT: Duration = Duration::from_secs(30);

async fn clean_slate(client: &Client) {
    install_crds(client).await.unwrap();
    let api = Api::<CloudNode>::all(client.clone());
    api.delete_collection(&DeleteParams::default(), &ListParams::default()).await.unwrap();
    let nodes = Api::<Node>::all(client.clone());
    nodes
        .delete_collection(&DeleteParams::default(), &ListParams::default().labels("suyun.io/cloud-node"))
        .await
        .unwrap();
    eventually(WAIT, || {
        let api = api.clone();
        async move {
            let left = api.list(&ListParams::default()).await?.items.len();
            if left == 0 { Ok(()) } else { bail!("{left} CloudNodes still there") }
        }
    })
    .await
    .unwrap();
}

fn ready(node: &CloudNode) -> Option<(String, String, String)> {
    let c = node.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn apply_cloud_node(client: &Client, yaml: &str) -> CloudNode {
    let node: CloudNode = serde_yaml::from_str(yaml).unwrap();
    Api::<CloudNode>::all(client.clone())
        .patch(&node.name_any(), &PatchParams::apply("suyun-tests").force(), &Patch::Apply(&node))
        .await
        .unwrap()
}

/// Waits until `name` reports Ready with the given status and reason; returns the node.
async fn wait_ready(client: &Client, name: &str, status: &str, reason: &str) -> CloudNode {
    let api = Api::<CloudNode>::all(client.clone());
    eventually(WAIT, || {
        let api = api.clone();
        async move {
            let node = api.get(name).await?;
            let seen = ready(&node);
            ensure!(
                node.status.as_ref().and_then(|s| s.observed_generation) == node.metadata.generation,
                "status not observed yet"
            );
            match &seen {
                Some((s, r, _)) if s == status && r == reason => Ok(node),
                _ => bail!("{name}: Ready is {seen:?}, want {status}/{reason}"),
            }
        }
    })
    .await
    .unwrap()
}

const PROVINCE: &str = r#"
apiVersion: suyun.io/v1alpha1
kind: CloudNode
metadata: {name: jiangsu}
spec:
  tier: Provincial
  regionCode: "320000"
  displayName: 江苏省
  capacity: {cpu: "100", memory: 400Gi, storage: 10Ti}
  securityLevel: 3
"#;

#[tokio::test]
async fn operator_fills_status_for_all_14_jiangsu_nodes() {
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    let _guard = CLUSTER_SCOPED.lock().await;
    clean_slate(&client).await;

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let examples = manifests::read_dir(&repo_root().join("deploy/examples/jiangsu")).unwrap();
    for m in examples.iter().filter(|m| m.object.types.as_ref().is_some_and(|t| t.kind == "CloudNode")) {
        manifests::apply(&client, &discovery, m, false).await.unwrap();
    }
    let mut operator = OperatorProcess::start(cluster, "cloud-node-jiangsu", &[]).unwrap();

    let api = Api::<CloudNode>::all(client.clone());
    let nodes = eventually(WAIT, || {
        let api = api.clone();
        async move {
            let nodes = api.list(&ListParams::default()).await?.items;
            let ready = nodes.iter().filter(|n| ready(n).is_some_and(|(s, _, _)| s == "True")).count();
            if nodes.len() == 14 && ready == 14 {
                Ok(nodes)
            } else {
                bail!("{ready} of {} CloudNodes Ready", nodes.len())
            }
        }
    })
    .await
    .unwrap();
    let allocatable = |name: &str| {
        let n = nodes.iter().find(|n| n.name_any() == name).unwrap();
        let a = n.status.as_ref().unwrap().allocatable.clone().unwrap();
        (a.cpu.unwrap().0, a.memory.unwrap().0, a.storage.unwrap().0)
    };
    // 江苏省: (8000 - 400) cpu x 2.0; (32Ti - 256Gi) memory x 1.0; 4Pi - 10Ti storage.
    assert_eq!(allocatable("jiangsu"), ("15200".into(), "32512Gi".into(), "4086Ti".into()));
    // 宿迁市: (400 - 20) cpu x 1.5; 1536Gi - 64Gi.
    assert_eq!(allocatable("suqian"), ("570".into(), "1472Gi".into(), "110Ti".into()));
    for n in &nodes {
        let status = n.status.as_ref().unwrap();
        assert_eq!(status.observed_generation, n.metadata.generation, "{}", n.name_any());
        assert!(
            status.conditions.iter().any(|c| c.type_ == "CapacityPressure" && c.status == "False"),
            "{}",
            n.name_any()
        );
    }
    // The table platform engineers look at.
    let (ok, table) = cluster.kubectl(&["get", "cnode"]);
    assert!(ok && table.contains("南京市") && table.contains("15200"), "{table}");

    assert!(operator.terminate(), "operator did not exit cleanly on SIGTERM:\n{}", operator.log_text());
    clean_slate(&client).await;
}

fn node_object(name: &str, cloud_node: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"suyun.io/cloud-node": cloud_node}},
    }))
    .unwrap()
}

async fn set_node_status(nodes: &Api<Node>, name: &str, ready: bool, cpu: &str) {
    let status = json!({"status": {
        "allocatable": {"cpu": cpu, "memory": "64Gi", "ephemeral-storage": "1Ti"},
        "capacity": {"cpu": cpu, "memory": "64Gi", "ephemeral-storage": "1Ti"},
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "Test",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

async fn wait_allocatable_cpu(client: &Client, name: &str, cpu: &str, ready_nodes: u32) {
    let api = Api::<CloudNode>::all(client.clone());
    eventually(WAIT, || {
        let api = api.clone();
        async move {
            let s = api.get(name).await?.status.unwrap_or_default();
            let seen = (s.allocatable.and_then(|a| a.cpu).map(|q| q.0), s.ready_nodes);
            if seen == (Some(cpu.to_owned()), Some(ready_nodes)) {
                Ok(())
            } else {
                bail!("{name}: {seen:?}, want {cpu} from {ready_nodes} nodes")
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn capacity_from_nodes_follows_nodes_added_unready_removed_and_relabelled() {
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    let _guard = CLUSTER_SCOPED.lock().await;
    clean_slate(&client).await;
    apply_cloud_node(&client, PROVINCE).await;
    for (name, code) in [("nanjing", "320100"), ("suzhou", "320500")] {
        apply_cloud_node(
            &client,
            &format!(
                r#"
apiVersion: suyun.io/v1alpha1
kind: CloudNode
metadata: {{name: {name}}}
spec:
  tier: City
  regionCode: "{code}"
  displayName: test
  parent: jiangsu
  capacityFrom: Nodes
  reserved: {{cpu: "4"}}
  overcommit: {{cpu: 2.0}}
  securityLevel: 2
"#
            ),
        )
        .await;
    }
    let _operator = OperatorProcess::start(cluster, "cloud-node-capacity", &[]).unwrap();
    let not_ready = wait_ready(&client, "nanjing", "False", "NoAllocatableCapacity").await;
    assert!(ready(&not_ready).unwrap().2.contains("no Ready Kubernetes Node"), "{:?}", ready(&not_ready));

    let nodes = Api::<Node>::all(client.clone());
    for name in ["nj-1", "nj-2", "nj-3"] {
        nodes.create(&PostParams::default(), &node_object(name, "nanjing")).await.unwrap();
        set_node_status(&nodes, name, true, "16").await;
    }
    // (3 x 16 - 4) x 2
    wait_allocatable_cpu(&client, "nanjing", "88", 3).await;
    wait_ready(&client, "nanjing", "True", "Reconciled").await;

    set_node_status(&nodes, "nj-2", false, "16").await;
    wait_allocatable_cpu(&client, "nanjing", "56", 2).await; // (32 - 4) x 2

    nodes.delete("nj-3", &DeleteParams::default()).await.unwrap();
    wait_allocatable_cpu(&client, "nanjing", "24", 1).await; // (16 - 4) x 2

    // The label moves: nanjing loses the Node, suzhou gains it.
    let relabel = json!({"metadata": {"labels": {"suyun.io/cloud-node": "suzhou"}}});
    nodes.patch("nj-1", &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    wait_allocatable_cpu(&client, "suzhou", "24", 1).await;
    wait_allocatable_cpu(&client, "nanjing", "0", 0).await;
    wait_ready(&client, "nanjing", "False", "NoAllocatableCapacity").await;

    // The label goes away entirely.
    let unlabel = json!({"metadata": {"labels": {"suyun.io/cloud-node": null}}});
    nodes.patch("nj-1", &PatchParams::default(), &Patch::Merge(&unlabel)).await.unwrap();
    wait_allocatable_cpu(&client, "suzhou", "0", 0).await;

    for name in ["nj-1", "nj-2"] {
        nodes.delete(name, &DeleteParams::default()).await.unwrap();
    }
    clean_slate(&client).await;
}

#[tokio::test]
async fn invalid_references_are_conditions_and_events_and_clear_when_fixed() {
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    let _guard = CLUSTER_SCOPED.lock().await;
    clean_slate(&client).await;
    let orphan = r#"
apiVersion: suyun.io/v1alpha1
kind: CloudNode
metadata: {name: xuzhou}
spec:
  tier: City
  regionCode: "320300"
  displayName: 徐州市
  parent: jiangsu
  capacity: {cpu: "64", memory: 256Gi, storage: 20Ti}
  securityLevel: 2
"#;
    let created = apply_cloud_node(&client, orphan).await;
    let mut operator = OperatorProcess::start(cluster, "cloud-node-invalid", &[]).unwrap();

    let node = wait_ready(&client, "xuzhou", "False", "ParentNotFound").await;
    assert!(ready(&node).unwrap().2.contains("\"jiangsu\", which does not exist"), "{:?}", ready(&node));
    // A Warning Event says the same.
    let events = Api::<Event>::namespaced(client.clone(), "default");
    eventually(WAIT, || {
        let events = events.clone();
        let uid = created.uid().unwrap();
        async move {
            let list = events.list(&ListParams::default().fields(&format!("involvedObject.uid={uid}"))).await?;
            ensure!(
                list.items
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("ParentNotFound") && e.type_.as_deref() == Some("Warning")),
                "no ParentNotFound Event yet"
            );
            Ok(())
        }
    })
    .await
    .unwrap();

    // The operator keeps working: the parent arrives and the orphan becomes Ready by itself.
    apply_cloud_node(&client, PROVINCE).await;
    wait_ready(&client, "jiangsu", "True", "Reconciled").await;
    wait_ready(&client, "xuzhou", "True", "Reconciled").await;

    // A second Provincial node is refused; the first keeps its place.
    apply_cloud_node(&client, &PROVINCE.replace("name: jiangsu", "name: jiangsu-bis")).await;
    let dup = wait_ready(&client, "jiangsu-bis", "False", "DuplicateProvincialNode").await;
    assert!(ready(&dup).unwrap().2.contains("\"jiangsu\""), "{:?}", ready(&dup));
    wait_ready(&client, "jiangsu", "True", "Reconciled").await;

    // Deleting the parent makes the child invalid again.
    Api::<CloudNode>::all(client.clone()).delete("jiangsu", &DeleteParams::default()).await.unwrap();
    wait_ready(&client, "xuzhou", "False", "ParentNotFound").await;

    assert!(operator.running(), "operator died:\n{}", operator.log_text());
    assert!(!operator.log_text().contains("panicked"), "{}", operator.log_text());
    clean_slate(&client).await;
}
