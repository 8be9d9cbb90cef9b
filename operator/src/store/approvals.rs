//! Reading cutover approvals: the apiserver writes `approvals/<systemId>`, the operator
//! applies them to the GovSystem.
//!
//! The stream lists what exists and then watches from the revision after that list, so no
//! approval is missed between the two; after a lost connection it resumes from the revision
//! after the last one it yielded (or lists again when etcd has compacted past it, which may
//! repeat an approval: applying one is idempotent).

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use futures::Stream;
use suyun_crds::readmodel::{ApprovalRecord, KeyRef, Keys};
use tokio::sync::mpsc;

use super::list_prefix;

/// One approval as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approval.
    pub record: ApprovalRecord,
    /// The etcd revision it was written at; pass it to [`watch_approvals`] to resume after it.
    pub revision: i64,
}

/// Every approval under `keys`: with `after_revision = None`, the existing ones first and then
/// each new one as it is written; with `Some(r)`, those written after revision `r`. Retries
/// by itself when etcd is away; ends only when dropped.
pub fn watch_approvals(client: Client, keys: Keys, after_revision: Option<i64>) -> impl Stream<Item = Approval> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(run(client, keys, after_revision, tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) })
}

async fn run(mut client: Client, keys: Keys, after_revision: Option<i64>, tx: mpsc::Sender<Approval>) {
    let prefix = keys.collection("approvals");
    let mut resume = after_revision;
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = async {
            let after = match resume {
                Some(revision) => revision,
                None => {
                    let (kvs, revision) = list_prefix(&mut client, &prefix, 1000, false).await?;
                    for kv in kvs {
                        if let Some(approval) = decode(&keys, kv.key(), kv.value(), kv.mod_revision()) {
                            tx.send(approval).await.map_err(|_| Closed)?;
                        }
                    }
                    resume = Some(revision);
                    revision
                }
            };
            let options = WatchOptions::new().with_prefix().with_start_revision(after + 1);
            let mut stream = client.watch(prefix.clone(), Some(options)).await?;
            while let Some(response) = stream.message().await? {
                if response.compact_revision() > 0 || response.canceled() {
                    tracing::warn!(compacted = response.compact_revision(), "approval watch cancelled; listing again");
                    resume = None;
                    return Ok(());
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    resume = Some(kv.mod_revision());
                    if event.event_type() == EventType::Put
                        && let Some(approval) = decode(&keys, kv.key(), kv.value(), kv.mod_revision())
                    {
                        tx.send(approval).await.map_err(|_| Closed)?;
                    }
                }
            }
            Ok::<(), WatchError>(())
        }
        .await;
        match result {
            Err(WatchError::Closed) => return,
            Err(WatchError::Store(e)) => {
                tracing::warn!(error = %e, "approval watch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Ok(()) => backoff = Duration::from_millis(200),
        }
    }
}

struct Closed;

enum WatchError {
    Closed,
    Store(super::StoreError),
}

impl From<Closed> for WatchError {
    fn from(_: Closed) -> WatchError {
        WatchError::Closed
    }
}

impl From<super::StoreError> for WatchError {
    fn from(e: super::StoreError) -> WatchError {
        WatchError::Store(e)
    }
}

impl From<etcd_client::Error> for WatchError {
    fn from(e: etcd_client::Error) -> WatchError {
        WatchError::Store(e.into())
    }
}

fn decode(keys: &Keys, key: &[u8], value: &[u8], revision: i64) -> Option<Approval> {
    let key = std::str::from_utf8(key).ok()?;
    let Some(KeyRef::Approval(_)) = keys.parse(key) else { return None };
    match serde_json::from_slice::<ApprovalRecord>(value) {
        Ok(record) => Some(Approval { record, revision }),
        Err(e) => {
            tracing::warn!(%key, error = %e, "ignoring an approval that does not parse");
            None
        }
    }
}
