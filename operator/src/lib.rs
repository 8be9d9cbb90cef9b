//! The Suyun operator: the only writer to Kubernetes.
//!
//! ```text
//!            watch                                   server-side apply (status)
//!  CloudNode ─────┐                                ┌──────────► CloudNode.status
//!  Node (labelled)┼─► triggers ─► reconcile(obj) ──┤
//!  sibling specs ─┘               │ dereference     └──────────► Events
//!                                 │ validate + build (pure)
//! ```
//!
//! Each controller follows the same pipeline: dereference what it needs from the caches,
//! validate and build the desired state with pure functions, then apply it. Invalid specs
//! become conditions and Events and wait for a change; API failures retry with backoff.

pub mod capacity;
pub mod cloud_node;
pub mod config;
pub mod context;
pub mod error;
pub mod manifests;
pub mod plan_input;
pub mod selector;
pub mod telemetry;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::reflector;

/// Connects to the cluster (in-cluster config or `KUBECONFIG`) and runs every controller until
/// SIGTERM or Ctrl-C.
pub async fn run(config: config::Config) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let version = client.apiserver_version().await?;
    tracing::info!(server = %version.git_version, "connected to the Kubernetes API");

    let (node_store, node_writer) = reflector::store();
    let node_changes = cloud_node::node_changes(Api::<Node>::all(client.clone()), node_writer);
    let (controller, cloud_nodes) = cloud_node::controller(client.clone());
    let ctx = Arc::new(context::Context {
        recorder: Recorder::new(client.clone(), context::Context::reporter(&config)),
        client,
        config,
        cloud_nodes,
        nodes: node_store,
    });
    cloud_node::run(controller, ctx, node_changes).await;
    tracing::info!("shut down");
    Ok(())
}
