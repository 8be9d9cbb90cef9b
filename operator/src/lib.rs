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

pub mod accounts;
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
pub mod live;
pub mod manifests;
pub mod members;
pub mod metrics;
pub mod migration;
pub mod plan_input;
pub mod readmodel;
pub mod selector;
pub mod store;
pub mod telemetry;
pub mod tenant;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::channel::mpsc;
use futures::future::FusedFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::reflector;
use tokio::sync::{Notify, watch};

fn ctx_store_configured(config: &config::Config) -> bool {
    !config.store.endpoints.is_empty()
}

/// How long the controllers get to finish in-flight work when a leading term ends.
const DRAIN: Duration = Duration::from_secs(2);
/// Longest wait to give the status-store fence back (revoke its etcd lease).
const RESIGN: Duration = Duration::from_secs(1);
/// Longest wait for the metrics listener to close.
const LISTENER_CLOSE: Duration = Duration::from_millis(500);
/// After the first SIGTERM or SIGINT the process exits within this, whatever still hangs. The
/// bounded steps of a stop (drain, fence, Lease release, listener) add up to less.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);

/// The stop request: set by the first SIGTERM or SIGINT.
#[derive(Clone, Debug)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once a stop was requested.
    async fn requested(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Installs the SIGTERM and SIGINT handlers. The first signal requests a stop (the returned
/// channel turns `true`); a second one, or [`SHUTDOWN_DEADLINE`] passing after the first, ends
/// the process at once.
fn signals() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = first, "stopping (a second SIGTERM or SIGINT exits at once)");
        let _ = tx.send(true);
        let (second, code) = tokio::select! {
            _ = term.recv() => ("SIGTERM", 143),
            _ = int.recv() => ("SIGINT", 130),
            () = tokio::time::sleep(SHUTDOWN_DEADLINE) => {
                tracing::error!(deadline_s = SHUTDOWN_DEADLINE.as_secs(), "not stopped in time; exiting now");
                std::process::exit(1);
            }
        };
        tracing::warn!(signal = second, "second signal: exiting at once");
        std::process::exit(code);
    });
    Ok(rx)
}

/// Serves the metrics listener, connects to the cluster (in-cluster config or `KUBECONFIG`),
/// campaigns for leadership and, while leading, runs every controller. Losing leadership
/// (another replica took the Lease, the Lease could not be renewed in time, or this replica was
/// fenced out of the status store) stops the controllers and goes back to campaigning in the
/// same process. Returns on SIGTERM or SIGINT, within a few seconds whatever is unreachable
/// (Ok, after releasing the Lease); a second signal exits at once.
pub async fn run(config: config::Config) -> anyhow::Result<()> {
    let stop = Stop(signals()?);
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
    let outcome = operate(config, metrics.clone(), stop).await;
    metrics.set_readiness(metrics::Readiness::Stopping);
    metrics.set_leader(false);
    metrics.clear_state();
    let _ = stop_tx.send(true);
    match tokio::time::timeout(LISTENER_CLOSE, server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the metrics listener failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the metrics listener task failed"),
        _ => {}
    }
    tracing::info!("shut down");
    outcome
}

/// Connects to the Kubernetes API, retrying with backoff (1 s doubling to 30 s) while the
/// apiserver is unreachable; `None` when a stop was requested first.
async fn connect(stop: &Stop) -> anyhow::Result<Option<kube::Client>> {
    let client = kube::Client::try_default().await?;
    let mut delay = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(10), client.apiserver_version());
        let error = tokio::select! {
            () = stop.requested() => return Ok(None),
            result = attempt => match result {
                Ok(Ok(version)) => {
                    tracing::info!(server = %version.git_version, "connected to the Kubernetes API");
                    return Ok(Some(client));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            },
        };
        failures += 1;
        tracing::warn!(error, failures, retry_in_s = delay.as_secs(), "cannot reach the Kubernetes API; retrying");
        tokio::select! {
            () = stop.requested() => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Why a leading term ended.
enum TermEnd {
    /// SIGTERM or SIGINT.
    Stop,
    /// The Lease was taken by another replica or could not be renewed in time.
    LostLease,
    /// This replica must stand aside (fenced out of the status store, controllers stopped).
    StepDown(&'static str),
}

/// Everything but the metrics listener: see [`run`].
async fn operate(config: config::Config, metrics: Arc<metrics::Metrics>, stop: Stop) -> anyhow::Result<()> {
    let Some(client) = connect(&stop).await? else { return Ok(()) };
    tracing::info!(instance = %config.instance, "campaigning");
    let elector = leader::Elector::start(&config).await?;
    loop {
        metrics.set_readiness(metrics::Readiness::Standby);
        tracing::info!(lease = %config.lease_name, namespace = %config.lease_namespace, "waiting for leadership");
        tokio::select! {
            () = stop.requested() => {
                // A campaign cancelled mid-write may have taken the Lease: give it back.
                elector.release().await;
                return Ok(());
            }
            () = elector.acquire() => {}
        }
        tracing::info!("leading: starting controllers");
        metrics.set_leader(true);
        let end = lead(&client, &config, &metrics, &elector, &stop).await;
        metrics.set_leader(false);
        metrics.clear_state();
        match end {
            TermEnd::Stop => {
                elector.release().await;
                return Ok(());
            }
            TermEnd::LostLease => {
                tracing::warn!("lost leadership: controllers stopped; campaigning again");
            }
            TermEnd::StepDown(why) => {
                let aside = elector.duration();
                tracing::error!(
                    why,
                    aside_s = aside.as_secs(),
                    "stepping down so that a standby takes over: Lease released, campaigning again after standing aside"
                );
                elector.release().await;
                tokio::select! {
                    () = stop.requested() => return Ok(()),
                    () = tokio::time::sleep(aside) => {}
                }
            }
        }
    }
}

/// Wins the status-store fence: connects and campaigns, retrying with backoff (1 s doubling to
/// 10 s) while the store is unreachable or another replica still holds the fence.
async fn win_fence(config: &config::Config) -> (etcd_client::Client, store::Fence) {
    let keys = config.store.keys();
    let mut delay = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        let attempt = async {
            let etcd = config.store.connect().await?;
            let fence =
                store::Fence::campaign(etcd.clone(), keys.clone(), &config.instance, config.store.lease_ttl_seconds)
                    .await?;
            Ok::<_, store::StoreError>((etcd, fence))
        };
        match attempt.await {
            Ok(won) => return won,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(
                        error = %e,
                        "cannot win the status-store fence yet: migrating under the leader Lease meanwhile; \
                         the read-model and the journal catch up once the fence is won"
                    );
                } else {
                    tracing::warn!(error = %e, failures, retry_in_s = delay.as_secs(), "cannot win the status-store fence; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// One leading term: runs every controller until the Lease is lost, this replica must step
/// down, or a stop is requested; then stops them, each step bounded, and gives the status-store
/// fence back.
///
/// The status store's fence (when a store is configured) is won alongside, not first:
/// Kubernetes is the source of truth and its writes are fenced by the Lease and by
/// resourceVersions, so a replica that takes over while the store is down migrates at once,
/// and hands the store to the migration loop when the fence is won. Until then nothing is
/// published and no REST approval is read (the loop publishes and journals what happened
/// meanwhile from the objects' status).
async fn lead(
    client: &kube::Client,
    config: &config::Config,
    metrics: &Arc<metrics::Metrics>,
    elector: &leader::Elector,
    stop: &Stop,
) -> TermEnd {
    metrics.set_readiness(metrics::Readiness::Syncing);
    if !ctx_store_configured(config) {
        tracing::warn!("no --store-endpoints: the read-model is not published and REST approvals are not applied");
    }

    let (node_store, node_writer) = reflector::store();
    let node_changes = cloud_node::node_changes(Api::<Node>::all(client.clone()), node_writer);
    let (controller, cloud_nodes) = cloud_node::controller(client.clone());
    let notify = Arc::new(Notify::new());
    let (caches, watch_tasks) = migration::watch(client, notify.clone());
    let (nodes_tx, nodes_rx) = mpsc::unbounded();
    let (tenants_tx, tenants_rx) = mpsc::unbounded();
    let (member_nodes_tx, member_nodes_rx) = mpsc::unbounded();
    let (member_tenants_tx, member_tenants_rx) = mpsc::unbounded();
    let registry = members::Registry::default();
    let ctx = Arc::new(context::Context {
        recorder: Recorder::new(client.clone(), context::Context::reporter(config)),
        client: client.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        cloud_nodes,
        nodes: node_store,
        tenants: caches.tenants.clone(),
        accounts: RwLock::default(),
        accounts_changed: vec![nodes_tx, tenants_tx],
        error_backoff: backoff::ErrorBackoff::default(),
        members: registry.clone(),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }
    .shared();
    // The migration loop runs as a task of its own, so that its planning does not hold up the
    // other controllers. It stops by itself when another replica fenced this one out of the
    // status store: then this replica must stop leading too, or migrations would stall behind a
    // Lease it still holds.
    let (link_tx, link_rx) = tokio::sync::oneshot::channel();
    let store_link = ctx_store_configured(config).then_some(link_rx);
    let mut migration = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        migration::MigrationLoop::new(ctx.clone(), caches.clone(), store_link).run(notify.clone(), stopped.clone()),
    ))
    .fuse();
    let supervisor = members::runtime::supervise(
        client.clone(),
        ctx.cloud_nodes.clone(),
        registry,
        metrics.clone(),
        members::runtime::Listeners {
            migration: notify.clone(),
            controllers: vec![member_nodes_tx, member_tenants_tx],
        },
        members::runtime::Settings {
            namespace: config.lease_namespace.clone(),
            probe_interval: Duration::from_secs(config.member_probe_interval_seconds),
        },
        stopped.clone(),
    );
    let mut others = Box::pin(
        futures::future::join3(
            cloud_node::run(
                controller,
                ctx.clone(),
                node_changes,
                futures::stream::select(nodes_rx, member_nodes_rx),
                stopped.clone(),
            ),
            tenant::run(ctx.clone(), futures::stream::select(tenants_rx, member_tenants_rx), stopped.clone()),
            supervisor,
        )
        .fuse(),
    );
    let mut fence = std::pin::pin!(win_fence(config).fuse());
    if !ctx_store_configured(config) {
        fence.set(futures::future::Fuse::terminated());
    }
    let mut link_tx = Some(link_tx);
    let mut fence_lease = None;
    let mut approvals_task = None;
    let hold = elector.hold();
    tokio::pin!(hold);
    let end = loop {
        tokio::select! {
            () = stop.requested() => break TermEnd::Stop,
            () = &mut hold => break TermEnd::LostLease,
            ended = &mut migration => {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "the migration loop failed");
                }
                break TermEnd::StepDown(
                    "the migration loop stopped (fenced out of the status store by another replica, or its caches closed)"
                );
            }
            _ = &mut others => break TermEnd::StepDown("the controllers stopped unexpectedly"),
            (etcd, fence) = &mut fence => {
                tracing::info!(endpoints = ?config.store.endpoints, "holding the status-store fence");
                fence_lease = Some((fence.client(), fence.lease_id()));
                // REST approvals are read from the store by the loop, which the mirror wakes on
                // changes.
                let (approvals, task) = store::ApprovalMirror::start(etcd, config.store.keys(), notify.clone());
                approvals_task = Some(task);
                let sink = store::StoreSink::new(store::Publisher::new(fence, config.store.max_txn_ops));
                if let Some(tx) = link_tx.take() {
                    let _ = tx.send(store::StoreLink { sink, approvals });
                }
                notify.notify_one();
            }
        }
    };
    let _ = stop_tx.send(true);
    // Give the controllers a moment to finish in-flight work; a write hanging on an unreachable
    // apiserver or store is dropped.
    let drain = async {
        if !migration.is_terminated() {
            let _ = (&mut migration).await;
        }
        if !others.is_terminated() {
            (&mut others).await;
        }
    };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        tracing::warn!(drain_s = DRAIN.as_secs(), "controllers did not finish in time; dropped");
    }
    drop(migration);
    drop(others);
    for task in watch_tasks {
        task.abort();
    }
    if let Some(task) = approvals_task {
        task.abort();
    }
    // Give the fence back so that the next leader (maybe this replica again) need not wait for
    // its TTL.
    if let Some((mut etcd, lease_id)) = fence_lease {
        match tokio::time::timeout(RESIGN, etcd.lease_revoke(lease_id)).await {
            Ok(Ok(_)) => tracing::info!("status-store fence given back"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not give the status-store fence back; it expires by itself")
            }
            Err(_) => tracing::warn!("giving the status-store fence back timed out; it expires by itself"),
        }
    }
    tracing::info!("controllers stopped");
    end
}
