//! The Suyun operator: the only writer to Kubernetes.
//!
//! ```text
//!                    ┌──────────── leader Lease (one replica acts) ────────────┐
//!  CloudNode, Node ──► CloudNode controller ──► CloudNode.status (capacity, accounts)
//!  Tenant + children ► Tenant controller ────► Namespace, ResourceQuota, LimitRange,
//!                                              NetworkPolicy, RoleBinding, Tenant.status
//!  GovSystem, Wave, ─► migration loop ──plan──► GovSystem.status, Jobs, Events,
//!  Job, CloudNode       (debounced)            MigrationWave.status, accounts
//! ```
//!
//! Every replica, leader or standby, serves `/metrics`, `/healthz` and `/readyz` on its own
//! plain-HTTP listener ([`metrics`]).
//!
//! Each controller follows the same pipeline: dereference what it needs from the caches,
//! validate and build the desired state with pure functions, then apply it. Invalid specs
//! become conditions and Events and wait for a change; API failures retry with a per-object
//! exponential backoff ([`backoff`]: 1 s doubling to 5 min).

pub mod approvals;
pub mod backoff;
pub mod capacity;
pub mod cloud_node;
pub mod config;
pub mod context;
pub mod error;
pub mod identity;
pub mod journal;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod migration;
pub mod plan_input;
pub mod readmodel;
pub mod selector;
pub mod store;
pub mod telemetry;
pub mod tenant;

use std::sync::{Arc, RwLock};

use futures::FutureExt;
use futures::channel::mpsc;
use futures::future::FusedFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::reflector;
use tokio::sync::Notify;

fn ctx_store_configured(config: &config::Config) -> bool {
    !config.store.endpoints.is_empty()
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Serves the metrics listener, connects to the cluster (in-cluster config or `KUBECONFIG`),
/// campaigns for leadership and, while leading, runs every controller. Returns on SIGTERM or
/// Ctrl-C (Ok, after releasing the Lease) or when leadership is lost (Err: the process exits and
/// is restarted as a standby).
pub async fn run(config: config::Config) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::new(ctx_store_configured(&config)));
    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics listener {}: {e}", config.metrics_listen))?;
    tracing::info!(listen = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(metrics::serve(listener, metrics.clone(), async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }));
    let outcome = operate(config, metrics.clone()).await;
    metrics.set_readiness(metrics::Readiness::Stopping);
    metrics.set_leader(false);
    metrics.clear_state();
    let _ = stop_tx.send(true);
    match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the metrics listener failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the metrics listener task failed"),
        _ => {}
    }
    outcome
}

/// Everything but the metrics listener: see [`run`].
async fn operate(config: config::Config, metrics: Arc<metrics::Metrics>) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let version = client.apiserver_version().await?;
    tracing::info!(server = %version.git_version, instance = %config.instance, "connected to the Kubernetes API");

    let terminated = termination().shared();
    let mut leadership = leader::Leadership::campaign(client.clone(), &config).await?;
    metrics.set_readiness(metrics::Readiness::Standby);
    tracing::info!(lease = %config.lease_name, namespace = %config.lease_namespace, "waiting for leadership");
    tokio::select! {
        () = terminated.clone() => {
            leadership.release().await;
            return Ok(());
        }
        acquired = leadership.acquired() => if !acquired {
            anyhow::bail!("leader election ended before this replica could lead");
        }
    }
    tracing::info!("leading: starting controllers");
    // Leadership is held from here until this function returns: losing it ends the process
    // (`run` then sets the gauge back to 0).
    metrics.set_leader(true);
    metrics.set_readiness(metrics::Readiness::Syncing);

    // The status store: win its fence too, so that a deposed leader cannot write to it.
    let (store, approval_source) = if ctx_store_configured(&config) {
        let etcd = config.store.connect().await?;
        let fence = tokio::select! {
            () = terminated.clone() => {
                leadership.release().await;
                return Ok(());
            }
            fence = store::Fence::campaign(etcd.clone(), config.store.keys(), &config.instance, config.store.lease_ttl_seconds) => fence?,
        };
        tracing::info!(endpoints = ?config.store.endpoints, "holding the status-store fence");
        let publisher = store::Publisher::new(fence, config.store.max_txn_ops);
        (Some(migration::StoreSink::new(publisher)), Some((etcd, config.store.keys())))
    } else {
        tracing::warn!("no --store-endpoints: the read-model is not published and REST approvals are not applied");
        (None, None)
    };

    let (node_store, node_writer) = reflector::store();
    let node_changes = cloud_node::node_changes(Api::<Node>::all(client.clone()), node_writer);
    let (controller, cloud_nodes) = cloud_node::controller(client.clone());
    let notify = Arc::new(Notify::new());
    let (caches, watch_tasks) = migration::watch(&client, notify.clone());
    let (nodes_tx, nodes_rx) = mpsc::unbounded();
    let (tenants_tx, tenants_rx) = mpsc::unbounded();
    let ctx = Arc::new(context::Context {
        recorder: Recorder::new(client.clone(), context::Context::reporter(&config)),
        client,
        config,
        metrics,
        cloud_nodes,
        nodes: node_store,
        tenants: caches.tenants.clone(),
        accounts: RwLock::default(),
        accounts_changed: vec![nodes_tx, tenants_tx],
        error_backoff: backoff::ErrorBackoff::default(),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }
    .shared();
    // The migration loop stops by itself when another replica fenced this one out of the
    // status store: then this replica must stop leading too, or migrations would stall behind
    // a Lease it still holds.
    // REST approvals are read from the store by the loop, which the mirror wakes on changes.
    let (approvals, approvals_task) = match approval_source {
        Some((etcd, keys)) => {
            let (mirror, task) = store::ApprovalMirror::start(etcd, keys, notify.clone());
            (Some(mirror), Some(task))
        }
        None => (None, None),
    };
    let migration =
        migration::MigrationLoop::new(ctx.clone(), caches.clone(), store, approvals).run(notify, stop.clone()).fuse();
    let others = futures::future::join(
        cloud_node::run(controller, ctx.clone(), node_changes, nodes_rx, stop.clone()),
        tenant::run(ctx.clone(), tenants_rx, stop.clone()),
    )
    .fuse();
    futures::pin_mut!(migration, others);
    let outcome = tokio::select! {
        () = terminated => Ok(()),
        () = leadership.lost() => Err(anyhow::anyhow!("lost leadership; exiting so that a standby takes over")),
        () = &mut migration => Err(anyhow::anyhow!(
            "the migration loop stopped (fenced out of the status store by another replica, or its caches closed); \
             exiting so that a standby takes over"
        )),
        _ = &mut others => Err(anyhow::anyhow!("the controllers stopped unexpectedly")),
    };
    let _ = stop_tx.send(true);
    // Give the controllers a moment to finish in-flight work.
    let drain = async {
        if !migration.is_terminated() {
            (&mut migration).await;
        }
        if !others.is_terminated() {
            (&mut others).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    for task in watch_tasks {
        task.abort();
    }
    if let Some(task) = approvals_task {
        task.abort();
    }
    leadership.release().await;
    tracing::info!("shut down");
    outcome
}
