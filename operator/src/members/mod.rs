//! Member clusters: a CloudNode may be backed by a city backbone node's own Kubernetes
//! cluster (`spec.cluster`), reached with a kubeconfig from a Secret in the operator's
//! namespace: [`kubeconfig`] reads and checks it, [`Members::sync`] keeps one client per member
//! in step with the CloudNodes and Secrets, [`runtime`] probes the members, caches what the
//! controllers read from them and publishes it in a [`Registry`], [`health`] says whether a
//! member is reachable.

pub mod health;
pub mod kubeconfig;
pub mod runtime;

pub use runtime::{MemberView, Registry};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Secret};
use kube::ResourceExt;
use suyun_crds::v1alpha1::{CapacitySource, CloudNode};

use crate::plan_input::MemberFacts;

pub use kubeconfig::KubeconfigRefused;

/// A member cluster's client, and the Secret version it was built from.
#[derive(Clone)]
pub struct Member {
    /// The Secret's `resourceVersion` the client was built from: a rotated Secret (another
    /// version) builds a new client, with no restart.
    pub secret_version: String,
    /// The client.
    pub client: kube::Client,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Member").field("secret_version", &self.secret_version).finish_non_exhaustive()
    }
}

/// Why a CloudNode's member cluster has no client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoClient {
    /// The Secret is not there.
    #[error("Secret {secret} not found in the operator's namespace")]
    SecretMissing {
        /// Its name.
        secret: String,
    },
    /// The Secret has no such key.
    #[error("Secret {secret} has no key {key}")]
    KeyMissing {
        /// Its name.
        secret: String,
        /// The key.
        key: String,
    },
    /// The kubeconfig was refused.
    #[error("Secret {secret}, key {key}: {refused}")]
    Refused {
        /// Its name.
        secret: String,
        /// The key.
        key: String,
        /// Why.
        refused: KubeconfigRefused,
    },
}

/// The clients of the member clusters, by CloudNode name.
#[derive(Debug, Default, Clone)]
pub struct Members {
    /// Members with a client.
    pub clients: HashMap<String, Member>,
    /// Members without one, and why.
    pub errors: HashMap<String, NoClient>,
}

impl Members {
    /// Brings the clients in step with `nodes` and the Secrets of the operator's namespace:
    /// a client for every node with `spec.cluster`, built again when its Secret changed;
    /// nodes without `spec.cluster` (or gone) have none.
    pub async fn sync(&mut self, nodes: &[std::sync::Arc<CloudNode>], secrets: &[std::sync::Arc<Secret>]) {
        let by_name: HashMap<String, &Secret> = secrets.iter().map(|s| (s.name_any(), s.as_ref())).collect();
        let mut clients = HashMap::new();
        let mut errors = HashMap::new();
        for node in nodes {
            let Some(cluster) = &node.spec.cluster else { continue };
            let name = node.name_any();
            let (secret, key) = cluster.kubeconfig_secret(&name);
            let Some(found) = by_name.get(&secret) else {
                errors.insert(name, NoClient::SecretMissing { secret });
                continue;
            };
            let version = found.resource_version().unwrap_or_default();
            if let Some(member) = self.clients.get(&name).filter(|m| m.secret_version == version) {
                clients.insert(name, member.clone());
                continue;
            }
            let Some(bytes) = found.data.as_ref().and_then(|d| d.get(&key)) else {
                errors.insert(name, NoClient::KeyMissing { secret, key });
                continue;
            };
            let yaml = String::from_utf8_lossy(&bytes.0);
            match kubeconfig::client(&yaml).await {
                Ok(client) => drop(clients.insert(name, Member { secret_version: version, client })),
                Err(refused) => drop(errors.insert(name, NoClient::Refused { secret, key, refused })),
            }
        }
        self.clients = clients;
        self.errors = errors;
    }
}

/// The member Nodes that count for a CloudNode: those carrying every label of its
/// `spec.cluster.nodeSelector` (all of them when it is empty).
pub fn selected<'a>(nodes: &'a [Arc<Node>], selector: &BTreeMap<String, String>) -> Vec<&'a Node> {
    nodes.iter().filter(|n| selector.iter().all(|(k, v)| n.labels().get(k) == Some(v))).map(Arc::as_ref).collect()
}

/// What the member clusters say about the CloudNodes they back, for the planner: whether each
/// is reachable, and what each machine has free when the capacity comes from its Nodes.
pub fn facts(cloud_nodes: &[Arc<CloudNode>], registry: &Registry) -> HashMap<String, MemberFacts> {
    if registry.is_empty() {
        return HashMap::new();
    }
    let mut out = HashMap::new();
    for node in cloud_nodes {
        let Some(cluster) = &node.spec.cluster else { continue };
        let name = node.name_any();
        let view = registry.get(&name).unwrap_or_default();
        let machines = match (&view.caches, node.spec.capacity_from) {
            (Some(caches), CapacitySource::Nodes) => {
                let nodes = caches.nodes.state();
                crate::capacity::machines_free(
                    selected(&nodes, &cluster.node_selector),
                    &caches.pods.state(),
                    &node.spec.overcommit,
                )
                .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        out.insert(name, MemberFacts { unreachable: !view.reachable(), machines });
    }
    out
}
