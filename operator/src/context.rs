//! What every controller shares: the client, the event recorder, the configuration, the
//! metrics, the caches, and the capacity accounts the migration loop keeps.

use std::sync::{Arc, RwLock};

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use suyun_crds::v1alpha1::{CloudNode, Tenant};

use crate::accounts::Accounts;
use crate::backoff::ErrorBackoff;
use crate::config::Config;

/// Shared state of the controllers.
pub struct Context {
    /// Client to the Kubernetes API.
    pub client: Client,
    /// Publishes Events on the objects reconciled.
    pub recorder: Recorder,
    /// Operator settings.
    pub config: Config,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Every CloudNode.
    pub cloud_nodes: Store<CloudNode>,
    /// Kubernetes Nodes labelled `suyun.io/cloud-node`.
    pub nodes: Store<Node>,
    /// Every Tenant.
    pub tenants: Store<Tenant>,
    /// Capacity accounts by node and tenant, from the migration loop; `None` until its first
    /// iteration (a status built before would show nothing allocated, then be written again).
    pub accounts: RwLock<Option<Arc<Accounts>>>,
    /// Told when the accounts change (one receiver per controller that shows them).
    pub accounts_changed: Vec<mpsc::UnboundedSender<()>>,
    /// Consecutive reconcile failures per object, for the controllers' exponential backoff.
    pub error_backoff: ErrorBackoff,
    /// The member clusters behind CloudNodes with `spec.cluster` (empty in a single-cluster
    /// province).
    pub members: crate::members::Registry,
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

    /// The client of the cluster backing CloudNode `node`: its member cluster's when it has one
    /// (`None` while that member has no client: its kubeconfig is missing or refused), else the
    /// operator's own.
    pub fn client_for(&self, node: &str) -> Option<Client> {
        match self.members.get(node) {
            Some(member) => member.client,
            None => Some(self.client.clone()),
        }
    }

    /// The current accounts; `None` until the migration loop computed them.
    pub fn accounts(&self) -> Option<Arc<Accounts>> {
        self.accounts.read().expect("accounts lock is never poisoned").clone()
    }

    /// Replaces the accounts and tells the controllers that show them, when they changed.
    pub fn publish_accounts(&self, accounts: Accounts) {
        {
            let mut current = self.accounts.write().expect("accounts lock is never poisoned");
            if current.as_deref() == Some(&accounts) {
                return;
            }
            *current = Some(Arc::new(accounts));
        }
        for tx in &self.accounts_changed {
            let _ = tx.unbounded_send(());
        }
    }

    /// Server-side applies `status` to the cluster-scoped object `name` of kind `K`, on
    /// condition that it is still at `resource_version` (the version the status was computed
    /// from). `Ok(false)` when it changed since (409): the caller computes again from the
    /// change instead of writing over it — a deposed leader's late write is refused the same
    /// way.
    pub async fn apply_status<K>(
        &self,
        name: &str,
        resource_version: Option<&str>,
        status: &impl serde::Serialize,
    ) -> Result<bool, kube::Error>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api = kube::Api::<K>::all(self.client.clone());
        let mut patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        if let Some(rv) = resource_version {
            patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
        }
        let params = kube::api::PatchParams::apply(suyun_crds::FIELD_MANAGER).force();
        match api.patch_status(name, &params, &kube::api::Patch::Apply(&patch)).await {
            Ok(_) => Ok(true),
            Err(e) if crate::migration::is_conflict(&e) => {
                tracing::debug!(kind = %K::kind(&()), %name, "changed since its status was computed; computing again");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}
