//! CloudNode controller: dereference (the node, its siblings, its Kubernetes Nodes) → validate
//! and build the status (pure, in [`status`]) → apply the status with server-side apply.
//!
//! Triggers: the CloudNode itself; a sibling's spec change or deletion (a parent may appear or
//! vanish, a second Provincial node may come or go) and any labelled Kubernetes Node changing
//! (including a label that moves from one CloudNode to another) re-check every CloudNode.

pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use suyun_crds::v1alpha1::{CLOUD_NODE_LABEL, CloudNode, CloudNodeStatus, condition_types};
use tracing::{info, instrument, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Reconciler;

/// Runs the CloudNode controller until shutdown.
pub async fn run(
    controller: Controller<CloudNode>,
    ctx: Arc<Context>,
    node_changes: impl Stream<Item = ()> + Send + 'static,
    accounts_changed: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let sibling_changes = spec_changes(Api::<CloudNode>::all(ctx.client.clone()));
    controller
        .with_config(kube::runtime::controller::Config::default().debounce(Duration::from_millis(500)))
        .reconcile_all_on(sibling_changes)
        .reconcile_all_on(node_changes)
        .reconcile_all_on(accounts_changed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, crate::backoff::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "CloudNode reconcile failed");
            }
        })
        .await;
}

/// A stream that yields once per CloudNode spec change or deletion (status writes do not
/// count), so that siblings re-validate.
fn spec_changes(api: Api<CloudNode>) -> impl Stream<Item = ()> + Send + 'static {
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    watcher(api, watcher::Config::default()).default_backoff().filter_map(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                generations.insert(n.name_any(), n.metadata.generation) != Some(n.metadata.generation)
            }
            Ok(watcher::Event::Delete(n)) => generations.remove(&n.name_any()).is_some(),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => false,
            Err(e) => {
                warn!(error = %e, "CloudNode sibling watch failed; retrying with backoff");
                false
            }
        };
        futures::future::ready(changed.then_some(()))
    })
}

/// Watches Kubernetes Nodes labelled `suyun.io/cloud-node` into `writer` and yields once per
/// change. Every CloudNode is then reconciled from the caches: a province has a handful of
/// CloudNodes, so this is cheap, and it covers a label that moves from one CloudNode to another
/// (the old one loses the capacity) without tracking label history.
pub fn node_changes(api: Api<Node>, writer: reflector::store::Writer<Node>) -> impl Stream<Item = ()> + Send + 'static {
    let config = watcher::Config::default().labels(CLOUD_NODE_LABEL);
    reflector::reflector(writer, watcher(api, config)).default_backoff().filter_map(|event| {
        futures::future::ready(match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => Some(()),
            Ok(_) => None,
            Err(e) => {
                warn!(error = %e, "Node watch failed; retrying with backoff");
                None
            }
        })
    })
}

/// The Kubernetes Nodes labelled for `name`.
fn nodes_of<'a>(nodes: &'a [Arc<Node>], name: &str) -> Vec<&'a Node> {
    nodes.iter().filter(|n| n.labels().get(CLOUD_NODE_LABEL).is_some_and(|l| l == name)).map(|n| n.as_ref()).collect()
}

/// Reconciles one CloudNode and counts it in the reconcile metrics; a CloudNode backing off
/// after failures waits for its delay (see [`crate::backoff`]).
async fn reconcile(node: Arc<CloudNode>, ctx: Arc<Context>) -> Result<Action> {
    let work = reconcile_node(node.clone(), &ctx);
    crate::backoff::reconcile_with_backoff(node.clone(), &ctx, Reconciler::CloudNode, work).await
}

#[instrument(skip_all, fields(cloud_node = %node.name_any()))]
async fn reconcile_node(node: Arc<CloudNode>, ctx: &Context) -> Result<Action> {
    let name = node.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    // dereference
    let siblings = ctx.cloud_nodes.state();
    let k8s_nodes = ctx.nodes.state();
    // Until the migration loop computed the accounts, a status would show nothing allocated:
    // wait for them (their arrival reconciles every CloudNode).
    let Some(accounts) = ctx.accounts() else { return Ok(Action::await_change()) };
    // A member-backed node counts its member's Nodes; the others, this cluster's labelled ones.
    let view = node.spec.cluster.as_ref().map(|_| ctx.members.get(&name).unwrap_or_default());
    let caches = view.as_ref().and_then(|v| v.caches.as_ref());
    let member_nodes = caches.map(|c| c.nodes.state()).unwrap_or_default();
    let member_pods = caches.map(|c| c.pods.state()).unwrap_or_default();
    let nodes_listed = match caches {
        Some(c) => {
            crate::migration::cache_ready_now(&c.nodes).await && crate::migration::cache_ready_now(&c.pods).await
        }
        None => false,
    };
    let nodes = match &node.spec.cluster {
        Some(cluster) => crate::members::selected(&member_nodes, &cluster.node_selector),
        None => nodes_of(&k8s_nodes, &name),
    };
    let observed = status::Observed {
        cloud_nodes: &siblings,
        nodes,
        account: accounts.nodes.get(&name).cloned().unwrap_or_default(),
        pressure_threshold: ctx.config.capacity_pressure_threshold,
        member: view.as_ref().map(|v| status::MemberObserved {
            reach: &v.reach,
            no_client: v.no_client.as_ref(),
            pods: &member_pods,
            nodes_listed,
        }),
    };
    // validate + build
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let desired = status::build(&node, &observed, &now);
    // The node gauges show the status as built; nodes that are gone leave the scrape.
    ctx.metrics.observe_node(&node, &desired);
    ctx.metrics.retain_nodes(&siblings.iter().map(|n| n.name_any()).collect());
    // apply + update_status
    let previous = node.status.clone().unwrap_or_default();
    if desired != previous {
        if !ctx.apply_status::<CloudNode>(&name, node.metadata.resource_version.as_deref(), &desired).await? {
            return Ok(Action::requeue(CHANGED_MEANWHILE));
        }
        publish_transition(ctx, &node, &previous, &desired).await;
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// How soon an object whose status write was refused because it changed meanwhile is looked at
/// again (its watch event is usually there first).
pub(crate) const CHANGED_MEANWHILE: Duration = Duration::from_secs(1);

/// Publishes an Event when the Ready condition changes status or reason.
async fn publish_transition(ctx: &Context, node: &CloudNode, previous: &CloudNodeStatus, desired: &CloudNodeStatus) {
    let find = |s: &CloudNodeStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == condition_types::READY)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (Some(now), before) = (find(desired), find(previous)) else { return };
    if before.as_ref().map(|b| (&b.0, &b.1)) == Some((&now.0, &now.1)) {
        return;
    }
    let ready = now.0 == "True";
    info!(ready, reason = %now.1, message = %now.2, "CloudNode readiness changed");
    let event = Event {
        type_: if ready { EventType::Normal } else { EventType::Warning },
        reason: now.1,
        note: Some(now.2),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &node.object_ref(&())).await {
        warn!(error = %e, "could not publish Event");
    }
}

/// Creates the controller (so its store can be shared before it runs).
pub fn controller(client: kube::Client) -> (Controller<CloudNode>, Store<CloudNode>) {
    let controller = Controller::new(Api::<CloudNode>::all(client), watcher::Config::default());
    let store = controller.store();
    (controller, store)
}
