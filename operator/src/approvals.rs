//! Cutover approvals: what approves a system's next cutover, and taking an approval away once a
//! cutover has used it.
//!
//! Two sources, one meaning:
//! * the annotation `suyun.io/cutover-approved-by` (with kubectl; an optional
//!   `suyun.io/cutover-approval-reason`), revoked by removing it;
//! * a record `approvals/<systemId>` in the status store, written by the REST API for a city
//!   operator (with an optional reason), revoked by deleting it (`DELETE` on the API). The
//!   migration loop reads them from an [`ApprovalMirror`](crate::store::ApprovalMirror); nothing
//!   is copied onto the object, so a revocation cannot be undone by a stale copy, and an approval
//!   that arrives before its system is in the cache simply waits there.
//!
//! A store approval counts only for the GovSystem that owns the `systemId`
//! ([`crate::identity`]) and only when the approver's scope covers that system's tenant: the
//! store is not trusted to have checked. A refused one is deleted and said in the system's
//! `CutoverApproved` condition and an Event. A cutover uses an approval up
//! (`status.consumedApproval`); the loop then deletes it from the store or removes the
//! annotation, so a retried or later cutover needs a new one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use suyun_crds::v1alpha1::{CUTOVER_APPROVAL_REASON, CUTOVER_APPROVED_BY, GovSystem};
use suyun_store::readmodel::region_in_scope;
use tracing::{info, warn};

use crate::store::Approval;

/// Id prefix of an approval from the annotation.
const ANNOTATION: &str = "annotation:";
/// Id prefix of an approval from the status store.
const STORE: &str = "store:";

/// The approvals in force, per system.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Approvals of each system (index into the systems), store first.
    pub approvals: HashMap<usize, Vec<GivenApproval>>,
    /// Systems with a refused store approval, and why.
    pub refused: HashMap<usize, String>,
    /// Refused store approvals to delete: systemId and the revision refused.
    pub to_delete: Vec<(String, i64)>,
}

/// Whether an approver of scope `scope` (`province` or a region code) may approve a system of
/// `region`.
pub fn scope_covers(scope: &str, region: &str) -> bool {
    scope == "province" || region_in_scope(region, scope)
}

/// An approval of a system's next cutover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GivenApproval {
    /// Who approved.
    pub by: String,
    /// When (Unix seconds), if known.
    pub at: Option<i64>,
    /// The reason or ticket reference given with it.
    pub reason: Option<String>,
    /// What a cutover uses up: `annotation:<who>` or `store:<etcd revision>`.
    pub id: String,
}

/// The approvals of every system that owns its id (`owned[i]`), from the store (`store`, by
/// systemId) and the annotations. `regions` maps a tenant (Namespace) to its region code.
pub fn gather(
    systems: &[Arc<GovSystem>],
    owned: &[bool],
    regions: &HashMap<String, String>,
    store: &BTreeMap<String, Approval>,
) -> Gathered {
    let mut out = Gathered::default();
    for (i, s) in systems.iter().enumerate().filter(|(i, _)| owned[*i]) {
        let mut given = Vec::new();
        if let Some(approval) = store.get(&s.spec.system_id) {
            let record = &approval.record;
            let namespace = s.namespace().unwrap_or_default();
            let region = regions.get(&namespace).map_or("", String::as_str);
            if scope_covers(&record.scope, region) {
                given.push(GivenApproval {
                    by: record.approved_by.clone(),
                    at: record.time.parse::<k8s_openapi::jiff::Timestamp>().ok().map(|t| t.as_second()),
                    reason: record.reason.clone(),
                    id: format!("{STORE}{}", approval.revision),
                });
            } else {
                out.refused.insert(
                    i,
                    format!(
                        "an approval by {} (scope {}) was refused: that scope does not cover region {region:?} of \
                         this system",
                        record.approved_by, record.scope
                    ),
                );
                out.to_delete.push((s.spec.system_id.clone(), approval.revision));
            }
        }
        if let Some(by) = s.annotations().get(CUTOVER_APPROVED_BY).filter(|v| !v.trim().is_empty()) {
            given.push(GivenApproval {
                by: by.clone(),
                at: None,
                reason: s.annotations().get(CUTOVER_APPROVAL_REASON).cloned(),
                id: format!("{ANNOTATION}{by}"),
            });
        }
        if !given.is_empty() {
            out.approvals.insert(i, given);
        }
    }
    out
}

/// Takes away the approval `id` that a cutover of `system` used: deletes it from the status
/// store (if it is still that revision) or removes the annotation (if it still names the same
/// approver). `Err` only when this replica was fenced out of the store.
pub async fn consume(
    client: &kube::Client,
    store: Option<&mut crate::store::Publisher>,
    system: &GovSystem,
    id: &str,
) -> Result<(), crate::store::StoreError> {
    let system_id = &system.spec.system_id;
    if let Some(revision) = id.strip_prefix(STORE).and_then(|r| r.parse::<i64>().ok()) {
        let Some(store) = store else { return Ok(()) };
        return match store.delete_approval(system_id, revision).await {
            Ok(()) => {
                info!(system = %system_id, revision, "cutover approval used; deleted from the status store");
                Ok(())
            }
            Err(e @ crate::store::StoreError::Fenced { .. }) => Err(e),
            Err(e) => {
                warn!(system = %system_id, error = %e, "used approval not deleted yet; retrying next iteration");
                Ok(())
            }
        };
    }
    let Some(by) = id.strip_prefix(ANNOTATION) else { return Ok(()) };
    // Remove only the approval that was used: a JSON patch that first tests the value.
    let path = |name: &str| format!("/metadata/annotations/{}", name.replace('~', "~0").replace('/', "~1"));
    let mut ops = vec![
        serde_json::json!({"op": "test", "path": path(CUTOVER_APPROVED_BY), "value": by}),
        serde_json::json!({"op": "remove", "path": path(CUTOVER_APPROVED_BY)}),
    ];
    if system.annotations().contains_key(CUTOVER_APPROVAL_REASON) {
        ops.push(serde_json::json!({"op": "remove", "path": path(CUTOVER_APPROVAL_REASON)}));
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops)).expect("a JSON patch");
    let api = Api::<GovSystem>::namespaced(client.clone(), &system.namespace().unwrap_or_default());
    match api.patch(&system.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await {
        Ok(_) => info!(system = %system_id, by, "cutover approval used; annotation removed"),
        Err(e) => warn!(system = %system_id, error = %e, "used approval annotation not removed yet; retrying"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyun_store::readmodel::ApprovalRecord;

    fn system(ns: &str, id: &str, annotation: Option<&str>) -> Arc<GovSystem> {
        let spec = serde_json::from_value(serde_json::json!({
            "systemId": id, "displayName": "x", "classification": "Internal", "securityLevel": 2,
            "resources": {"cpu": "1", "memory": "1Gi", "storage": "1Gi"}
        }))
        .unwrap();
        let mut s = GovSystem::new(&id.to_lowercase(), spec);
        s.metadata.namespace = Some(ns.into());
        if let Some(by) = annotation {
            s.metadata.annotations = Some([(CUTOVER_APPROVED_BY.to_owned(), by.to_owned())].into());
        }
        Arc::new(s)
    }

    fn stored(id: &str, by: &str, scope: &str, revision: i64) -> (String, Approval) {
        let record = ApprovalRecord {
            system_id: id.into(),
            region_code: "320500".into(),
            approved_by: by.into(),
            scope: scope.into(),
            time: "2026-11-29T08:00:00Z".into(),
            reason: Some("CHG-42".into()),
        };
        (id.to_owned(), Approval { record, revision })
    }

    #[test]
    fn store_approvals_count_only_in_the_approvers_scope_and_only_for_the_owner() {
        let systems = vec![
            system("suzhou", "JS-320500-0001", None),
            system("suzhou", "JS-320500-0002", Some("ops@province")),
            system("nanjing", "JS-320500-0002", None),
        ];
        let owned = [true, true, false];
        let regions: HashMap<String, String> =
            [("suzhou".to_owned(), "320500".to_owned()), ("nanjing".to_owned(), "320100".to_owned())].into();
        let store: BTreeMap<_, _> =
            [stored("JS-320500-0001", "mallory", "320100", 7), stored("JS-320500-0002", "li.na", "320500", 9)].into();
        let g = gather(&systems, &owned, &regions, &store);
        assert!(!g.approvals.contains_key(&0), "another city's approval does not count");
        assert!(g.refused[&0].contains("mallory"), "{}", g.refused[&0]);
        assert_eq!(g.to_delete, vec![("JS-320500-0001".to_owned(), 7)]);
        let ids: Vec<_> = g.approvals[&1].iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["store:9", "annotation:ops@province"]);
        assert_eq!(g.approvals[&1][0].reason.as_deref(), Some("CHG-42"));
        assert!(g.approvals[&1][0].at.is_some());
        assert!(!g.approvals.contains_key(&2), "a duplicate gets nothing");
        assert!(scope_covers("province", "320583"));
        assert!(scope_covers("320500", "320583"));
        assert!(!scope_covers("320583", "320500"));
    }
}
