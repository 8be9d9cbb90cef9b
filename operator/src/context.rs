//! What every reconcile shares: the client, the event recorder, the configuration and the
//! caches the controllers read from.

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use suyun_crds::v1alpha1::CloudNode;

use crate::config::Config;

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    /// Client to the Kubernetes API.
    pub client: Client,
    /// Publishes Events on the objects reconciled.
    pub recorder: Recorder,
    /// Operator settings.
    pub config: Config,
    /// Every CloudNode, kept current by the CloudNode controller's watch.
    pub cloud_nodes: Store<CloudNode>,
    /// Kubernetes Nodes labelled `suyun.io/cloud-node`.
    pub nodes: Store<Node>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Context {
    /// The event reporter of this replica.
    pub fn reporter(config: &Config) -> Reporter {
        Reporter { controller: "suyun-operator".into(), instance: Some(config.instance.clone()) }
    }
}
