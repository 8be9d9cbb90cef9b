//! `POST /api/v1/systems/{systemId}/cutover-approval`: records an approval in etcd
//! (`approvals/<systemId>`), where the operator picks it up. Idempotent: a second approval
//! returns the first one (200) instead of creating another (201).

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use http::{StatusCode, header};
use schemars::JsonSchema;
use serde::Serialize;
use suyun_crds::readmodel::ApprovalRecord;

use super::staleness;
use crate::AppState;
use crate::auth::Identity;
use crate::problem::Problem;
use crate::response::ResponseMetadata;

/// Phases in which a cutover can no longer be approved.
const FINISHED: &[&str] = &["Completed", "NotMigrated"];

/// The body of an approval response.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestResult {
    /// Revision of the approval record; staleness.
    pub metadata: ResponseMetadata,
    /// The approval in force (the earlier one when the system was already approved).
    pub item: ApprovalRecord,
    /// Whether this request created it.
    pub created: bool,
}

pub(super) async fn approve(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(system_id): Path<String>,
) -> Result<Response, Problem> {
    staleness(&state)?;
    let system = {
        let index = state.index.read().expect("index lock");
        let system =
            index.system(&identity.scope, &system_id).ok_or_else(|| Problem::not_found("system", &system_id))?;
        if identity.read_only {
            return Err(Problem::forbidden(format!("{} may read but not approve cutovers", identity.name)));
        }
        if let Some(existing) = index.approvals.get(&system_id) {
            return Ok(answer(existing.record.clone(), existing.revision, false));
        }
        system.record.clone()
    };
    if !system.approval.required {
        return Err(Problem::conflict(format!("system {system_id} does not need a cutover approval")));
    }
    if FINISHED.contains(&system.phase.as_str()) {
        return Err(Problem::conflict(format!("system {system_id} is {}; there is nothing to approve", system.phase)));
    }
    let mut client = state
        .health
        .client()
        .ok_or_else(|| Problem::unavailable("the status store is unreachable; approvals cannot be recorded now"))?;
    let record = ApprovalRecord {
        system_id: system_id.clone(),
        region_code: system.region_code.clone(),
        approved_by: identity.name.clone(),
        scope: identity.scope.as_str().to_owned(),
        time: format!("{:.0}", jiff::Timestamp::now()),
        reason: None,
    };
    let key = state.keys.approval(&system_id);
    let value = serde_json::to_vec(&record).expect("approvals serialise");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), value, None)])
        .or_else([TxnOp::get(key, None)]);
    let response = tokio::time::timeout(Duration::from_secs(5), client.txn(txn))
        .await
        .map_err(|_| Problem::unavailable("the status store did not answer in time"))?
        .map_err(|e| Problem::unavailable(format!("the status store refused the approval: {e}")))?;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    if response.succeeded() {
        tracing::info!(system = %system_id, by = %identity.name, scope = %identity.scope.as_str(), "cutover approved");
        return Ok(answer(record, revision, true));
    }
    // Approved concurrently by someone else: return theirs.
    for op in response.op_responses() {
        if let TxnOpResponse::Get(get) = op
            && let Some(kv) = get.kvs().first()
            && let Ok(existing) = serde_json::from_slice::<ApprovalRecord>(kv.value())
        {
            return Ok(answer(existing, kv.mod_revision(), false));
        }
    }
    Err(Problem::unavailable("the approval could not be read back"))
}

fn answer(item: ApprovalRecord, revision: i64, created: bool) -> Response {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let body = ApprovalRequestResult { metadata: ResponseMetadata::new(revision, None), item, created };
    (status, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&body).expect("serialises"))
        .into_response()
}
