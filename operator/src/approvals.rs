//! Applies cutover approvals recorded in the status store by the REST API: each approval
//! becomes the annotation `suyun.io/cutover-approved-by` on its GovSystem, which the migration
//! loop acts on (and journals with the approver as actor).

use std::sync::Arc;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use suyun_crds::readmodel::Keys;
use suyun_crds::v1alpha1::{CUTOVER_APPROVED_BY, GovSystem};
use tracing::{info, warn};

use crate::context::Context;

/// Watches approvals (from the first one stored) and annotates their systems, until aborted.
/// Does nothing without a status store.
pub async fn apply(ctx: Arc<Context>, systems: Store<GovSystem>, source: Option<(etcd_client::Client, Keys)>) {
    let Some((client, keys)) = source else { return };
    let mut approvals = Box::pin(crate::store::watch_approvals(client, keys, None));
    while let Some(approval) = approvals.next().await {
        let record = approval.record;
        // The cache may lag behind a system created a moment ago: look again for a while.
        let mut found = None;
        for _ in 0..50 {
            found = systems.state().into_iter().find(|s| s.spec.system_id == record.system_id);
            if found.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let Some(system) = found else {
            warn!(system = %record.system_id, "approval for a system that does not exist; ignored");
            continue;
        };
        if system.annotations().get(CUTOVER_APPROVED_BY).is_some() {
            continue;
        }
        let api = Api::<GovSystem>::namespaced(ctx.client.clone(), &system.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {CUTOVER_APPROVED_BY: record.approved_by}}});
        match api.patch(&system.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => info!(system = %record.system_id, by = %record.approved_by, "cutover approval applied"),
            Err(e) => warn!(system = %record.system_id, error = %e, "could not apply cutover approval"),
        }
    }
}
