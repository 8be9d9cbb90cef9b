//! Cutover approvals over REST.
//!
//! * `POST /api/v1/systems/{systemId}/cutover-approval` records an approval in etcd
//!   (`approvals/<systemId>`), where the operator picks it up. Idempotent: a second approval
//!   returns the first one (200) instead of creating another (201). The optional body
//!   `{"reason": "..."}` carries a ticket reference or a short text.
//! * `DELETE` on the same path revokes it before the cutover starts: it deletes the approval
//!   it read, in a transaction that compares that record's mod revision.
//!
//! Both are state-changing requests, guarded by [`super::writes`] (JSON content type, allowed
//! `Origin`) before they get here.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use http::{StatusCode, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use suyun_store::Phase;
use suyun_store::readmodel::{ApprovalRecord, SystemRecord, check_approval_reason};

use super::extract::{ApiBody, ApiPath};
use super::staleness;
use crate::AppState;
use crate::auth::Identity;
use crate::problem::Problem;
use crate::response::ResponseMetadata;

/// Phases in which a system waits for, or will wait for, a cutover: only these can be
/// approved (and only when its wave requires an approval).
pub const APPROVABLE: [Phase; 6] =
    [Phase::Pending, Phase::Scheduled, Phase::Blocked, Phase::Provisioning, Phase::Replicating, Phase::AwaitingCutover];

/// Phases in which the cutover has started: an approval can no longer be revoked.
pub const CUTOVER_STARTED: [Phase; 3] = [Phase::CuttingOver, Phase::Verifying, Phase::Completed];

/// How long a write to the status store may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The optional request body of an approval.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Why, or a ticket reference (at most 500 characters, no control characters).
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub reason: Option<String>,
}

/// The phase a record names, if it is one this server knows.
fn phase_of(system: &SystemRecord) -> Option<Phase> {
    Phase::ALL.into_iter().find(|p| p.as_str() == system.phase)
}

/// Logs an error of the status store and answers a generic 503 (etcd's text stays here).
fn store_error(what: &'static str, system_id: &str, error: impl std::fmt::Display) -> Problem {
    tracing::error!(system = %system_id, error = %error, "{what}: the status store refused");
    Problem::unavailable("the status store could not record this now; try again later")
}

/// A client of the status store for a write, or 503.
fn store_client(state: &AppState) -> Result<etcd_client::Client, Problem> {
    state.health.client().ok_or_else(|| Problem::unavailable("the status store is unreachable; try again later"))
}

/// The system as `identity` may change it: 404 outside its scope, 403 when read-only.
fn writable_system(state: &AppState, identity: &Identity, system_id: &str) -> Result<SystemRecord, Problem> {
    let index = state.index.read().map_err(|_| Problem::internal())?;
    let system = index.system(&identity.scope, system_id).ok_or_else(|| Problem::not_found("system", system_id))?;
    if identity.read_only {
        return Err(Problem::forbidden(format!("{} may read but not approve cutovers", identity.name)));
    }
    Ok(system.record.clone())
}

/// The request body: empty, `null` or `{"reason": "..."}`.
fn parse_request(body: &[u8]) -> Result<ApprovalRequest, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ApprovalRequest::default());
    }
    let request: Option<ApprovalRequest> = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("the body must be empty or {{\"reason\": \"...\"}}: {e}")))?;
    let mut request = request.unwrap_or_default();
    if let Some(reason) = &request.reason {
        check_approval_reason(reason).map_err(Problem::bad_request)?;
        if reason.trim().is_empty() {
            request.reason = None;
        }
    }
    Ok(request)
}

pub(super) async fn approve(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(system_id): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<Response, Problem> {
    let request = parse_request(&body)?;
    let (record, revision, created) = record_approval(&state, &identity, &system_id, request.reason).await?;
    Ok(answer(record, revision, created))
}

/// Records `identity`'s approval of `system_id`'s cutover (the API's and the console's
/// approvals both come here): the approval in force, its revision, and whether this call
/// created it. 404 outside the identity's scope, 403 when it is read-only, 409 when the
/// system needs no approval or is past its cutover, 503 when the store is unreachable.
pub async fn record_approval(
    state: &AppState,
    identity: &Identity,
    system_id: &str,
    reason: Option<String>,
) -> Result<(ApprovalRecord, i64, bool), Problem> {
    if let Some(reason) = &reason {
        check_approval_reason(reason).map_err(Problem::bad_request)?;
    }
    let reason = reason.filter(|r| !r.trim().is_empty());
    staleness(state)?;
    let system = writable_system(state, identity, system_id)?;
    if !system.approval.required {
        return Err(Problem::conflict(format!("system {system_id} does not need a cutover approval")));
    }
    match phase_of(&system) {
        Some(phase) if APPROVABLE.contains(&phase) => {}
        _ => {
            return Err(Problem::conflict(format!(
                "system {system_id} is {}; only a system before its cutover can be approved",
                system.phase
            )));
        }
    }
    let mut client = store_client(state)?;
    let record = ApprovalRecord {
        system_id: system_id.to_owned(),
        region_code: system.region_code.clone(),
        approved_by: identity.name.clone(),
        scope: identity.scope.as_str().to_owned(),
        time: format!("{:.0}", jiff::Timestamp::now()),
        reason,
    };
    let key = state.keys.approval(system_id);
    let value = serde_json::to_vec(&record).map_err(|_| Problem::internal())?;
    // Create only: an approval in force (even one the index has not seen yet) is returned.
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), value, None)])
        .or_else([TxnOp::get(key, None)]);
    let response = tokio::time::timeout(STORE_TIMEOUT, client.txn(txn))
        .await
        .map_err(|_| store_error("approval", system_id, "timed out"))?
        .map_err(|e| store_error("approval", system_id, e))?;
    if response.succeeded() {
        // The transaction's revision is the revision of the approval it wrote.
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        tracing::info!(system = %system_id, by = %identity.name, scope = %identity.scope.as_str(),
            reason = record.reason.as_deref().unwrap_or_default(), "cutover approved");
        return Ok((record, revision, true));
    }
    // Approved before (or concurrently by someone else): return that approval.
    for op in response.op_responses() {
        if let TxnOpResponse::Get(get) = op
            && let Some(kv) = get.kvs().first()
        {
            return match serde_json::from_slice::<ApprovalRecord>(kv.value()) {
                Ok(existing) => Ok((existing, kv.mod_revision(), false)),
                Err(e) => {
                    tracing::error!(system = %system_id, error = %e, "the approval in the store does not parse");
                    Err(Problem::conflict(format!(
                        "system {system_id} has an approval this server cannot read; revoke it and approve again"
                    )))
                }
            };
        }
    }
    Err(Problem::conflict(format!("the approval of {system_id} changed while it was being recorded; try again")))
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    identity: Identity,
    ApiPath(system_id): ApiPath<String>,
) -> Result<Response, Problem> {
    revoke_approval(&state, &identity, &system_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revokes the approval of `system_id`'s cutover as `identity` (the API's and the console's
/// revocations both come here), with the rules of [`record_approval`]; 404 also when there is
/// no approval, 409 when the cutover has started.
pub async fn revoke_approval(state: &AppState, identity: &Identity, system_id: &str) -> Result<(), Problem> {
    staleness(state)?;
    let system = writable_system(state, identity, system_id)?;
    if let Some(phase) = phase_of(&system).filter(|p| CUTOVER_STARTED.contains(p)) {
        return Err(Problem::conflict(format!(
            "system {system_id} is {}: its cutover has started, the approval can no longer be revoked",
            phase.as_str()
        )));
    }
    let mut client = store_client(state)?;
    let key = state.keys.approval(system_id);
    let read = tokio::time::timeout(STORE_TIMEOUT, client.get(key.clone(), None))
        .await
        .map_err(|_| store_error("revocation", system_id, "timed out"))?
        .map_err(|e| store_error("revocation", system_id, e))?;
    let Some(seen) = read.kvs().first().map(|kv| kv.mod_revision()) else {
        return Err(Problem::not_found("approval of system", system_id));
    };
    // Delete the approval that was read, not one written since.
    let txn = Txn::new()
        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, seen)])
        .and_then([TxnOp::delete(key, None)]);
    let response = tokio::time::timeout(STORE_TIMEOUT, client.txn(txn))
        .await
        .map_err(|_| store_error("revocation", system_id, "timed out"))?
        .map_err(|e| store_error("revocation", system_id, e))?;
    if !response.succeeded() {
        return Err(Problem::conflict(format!(
            "the approval of {system_id} changed while it was being revoked; read the history and try again"
        )));
    }
    tracing::info!(system = %system_id, by = %identity.name, scope = %identity.scope.as_str(), "cutover approval revoked");
    Ok(())
}

fn answer(item: ApprovalRecord, revision: i64, created: bool) -> Response {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let body = ApprovalRequestResult { metadata: ResponseMetadata::new(revision, None), item, created };
    match serde_json::to_vec(&body) {
        Ok(json) => (status, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(_) => Problem::internal().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse_request(b"").unwrap().reason, None);
        assert_eq!(parse_request(b" null ").unwrap().reason, None);
        assert_eq!(parse_request(br#"{"reason":"OPS-42"}"#).unwrap().reason.as_deref(), Some("OPS-42"));
        assert_eq!(parse_request(br#"{"reason":"  "}"#).unwrap().reason, None);
        for bad in [&br#"{"reason":7}"#[..], br#"{"why":"x"}"#, b"{", br#"{"reason":"a\nb"}"#, b"\xff"] {
            assert_eq!(parse_request(bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(501));
        assert_eq!(parse_request(long.as_bytes()).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn every_phase_is_either_approvable_or_not() {
        for phase in Phase::ALL {
            let approvable = APPROVABLE.contains(&phase);
            let final_or_running = matches!(
                phase,
                Phase::CuttingOver
                    | Phase::Verifying
                    | Phase::Completed
                    | Phase::Failed
                    | Phase::RolledBack
                    | Phase::NotMigrated
            );
            assert_ne!(approvable, final_or_running, "{phase:?}");
        }
        assert!(CUTOVER_STARTED.iter().all(|p| !APPROVABLE.contains(p)));
    }
}
