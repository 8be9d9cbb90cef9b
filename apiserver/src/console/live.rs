//! `GET /console/events`: server-sent events that tell an open page when the data of its
//! viewer's scope changed, and whether the data is stale.
//!
//! Each event is `event: state` with `{"revision": N, "staleSince": "…" | null}`. `revision`
//! follows the scope's own records only (nodes, tenants, systems, its share of the waves and
//! its approvals), so another city's activity neither wakes the page nor shows in it. The
//! stream sends the current state at once, then on every change (at most twice a second) and
//! every 15 s; it ends after 40 s, below the server's idle timeout, and the browser's
//! `EventSource` reconnects by itself (`retry: 1000`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use tokio::time::Instant;

use super::Viewer;
use super::view;
use crate::AppState;
use crate::auth::Scope;
use crate::index::Index;

/// How long one stream lasts before the browser reconnects.
const LIFETIME: Duration = Duration::from_secs(40);
/// Largest gap between two events.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Least gap between two events (changes in between are sent together).
const COALESCE: Duration = Duration::from_millis(500);

/// The latest change of anything `scope` sees.
pub fn scope_revision(index: &Index, scope: &Scope) -> i64 {
    let approvals =
        index.approvals.values().filter(|a| scope.covers(&a.record.region_code)).map(|a| a.revision).chain(
            index.approval_deletions.iter().filter(|(id, _)| index.system(scope, id).is_some()).map(|(_, r)| *r),
        );
    [
        index.node_regions.in_scope(scope),
        index.tenant_regions.in_scope(scope),
        index.system_regions.in_scope(scope),
        index.waves_revision(scope),
    ]
    .into_iter()
    .chain(approvals)
    .max()
    .unwrap_or(0)
}

fn current(state: &AppState, scope: &Scope) -> Event {
    let revision = state.index.read().map(|index| scope_revision(&index, scope)).unwrap_or(0);
    let stale_since = state.health.stale_seconds().map(view::seconds_ago);
    Event::default()
        .event("state")
        .retry(Duration::from_secs(1))
        .data(json!({ "revision": revision, "staleSince": stale_since }).to_string())
}

/// `GET /console/events`.
pub async fn events(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let scope = viewer.identity.scope.clone();
    let changes = state.health.subscribe();
    let end = Instant::now() + LIFETIME;
    let stream = futures::stream::unfold((state, changes, true), move |(state, mut changes, first)| {
        let scope = scope.clone();
        async move {
            if !first {
                let now = Instant::now();
                if now >= end {
                    return None;
                }
                let wait = HEARTBEAT.min(end - now);
                tokio::select! {
                    _ = changes.changed() => tokio::time::sleep(COALESCE).await,
                    () = tokio::time::sleep(wait) => {}
                }
                if Instant::now() >= end {
                    return None;
                }
            }
            changes.borrow_and_update();
            let event = current(&state, &scope);
            Some((Ok(event), (state, changes, false)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
