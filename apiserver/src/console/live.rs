//! `GET /console/events`: server-sent events that tell an open page when the data of its
//! viewer's scope changed, and whether the data is stale.
//!
//! Each event is `event: state` with `{"revision": N, "staleSince": "…" | null}`. `revision`
//! follows the scope's own records only (nodes, tenants, systems, its share of the waves and
//! its approvals), so another city's activity neither wakes the page nor shows in it. The
//! stream sends the current state at once, then whenever it changes (at most twice a second)
//! and every 15 s; it ends after 40 s, below the server's idle timeout, and the browser's
//! `EventSource` reconnects by itself (`retry: 1000`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
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

/// What one event says: the scope's change number, and since when the data is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Said {
    revision: i64,
    stale_since: Option<String>,
}

impl Said {
    fn now(state: &AppState, scope: &Scope) -> Said {
        let revision = state.index.read().map(|index| scope_revision(&index, scope)).unwrap_or(0);
        Said { revision, stale_since: state.health.stale_seconds().map(view::seconds_ago) }
    }

    /// Whether `self` tells the page something `before` did not.
    fn news(&self, before: &Said) -> bool {
        self.revision != before.revision || self.stale_since.is_some() != before.stale_since.is_some()
    }

    fn event(&self) -> Event {
        Event::default()
            .event("state")
            .retry(Duration::from_secs(1))
            .data(json!({ "revision": self.revision, "staleSince": self.stale_since }).to_string())
    }
}

/// `GET /console/events`.
///
/// A change anywhere in the store wakes every stream, but a stream sends only what changed for
/// its own scope, plus a heartbeat on a fixed schedule: when events come does not tell one city
/// when another city's records changed.
pub async fn events(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let scope = viewer.identity.scope.clone();
    let mut changes = state.health.subscribe();
    changes.borrow_and_update();
    let start = Instant::now();
    let end = start + LIFETIME;
    let first = Said::now(&state, &scope);
    let opening = first.event();
    let followers = futures::stream::unfold(
        (state, changes, first, start + HEARTBEAT),
        move |(state, mut changes, mut said, mut beat)| {
            let scope = scope.clone();
            async move {
                loop {
                    let wake = beat.min(end);
                    tokio::select! {
                        _ = changes.changed() => tokio::time::sleep(COALESCE).await,
                        () = tokio::time::sleep_until(wake) => {}
                    }
                    let now = Instant::now();
                    if now >= end {
                        return None;
                    }
                    changes.borrow_and_update();
                    let current = Said::now(&state, &scope);
                    let heartbeat = now >= beat;
                    if current.news(&said) || heartbeat {
                        if heartbeat {
                            beat += HEARTBEAT;
                        }
                        let event = current.event();
                        said = current;
                        return Some((Ok(event), (state, changes, said, beat)));
                    }
                }
            }
        },
    );
    let stream = futures::stream::once(async move { Ok(opening) }).chain(followers);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
