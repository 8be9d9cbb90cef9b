//! Reading cutover approvals: the apiserver writes `approvals/<systemId>`; the operator keeps a
//! mirror of them ([`ApprovalMirror`]) that the migration loop reads as approvals in force, and
//! deletes one once a cutover has used it (or when it is refused).
//!
//! The stream lists what exists and then watches from the revision after that list, so no
//! approval is missed between the two; after a lost connection it resumes from the revision
//! after the last one it yielded (or lists again when etcd has compacted past it, which may
//! repeat an approval: applying one is idempotent).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use futures::{Stream, StreamExt};
use suyun_store::readmodel::{ApprovalRecord, KeyRef, Keys};
use tokio::sync::{Notify, mpsc};

use super::list_prefix;

/// One approval as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approval.
    pub record: ApprovalRecord,
    /// The etcd revision it was written at; pass it to [`watch_approvals`] to resume after it.
    pub revision: i64,
}

/// What the approval watch saw.
#[derive(Debug)]
enum Change {
    /// Every approval, after a (re)list: replaces whatever was known.
    Listed(Vec<Approval>),
    /// One approval written.
    Put(Approval),
    /// The approval of this system deleted (revoked, consumed or refused).
    Deleted(String),
}

/// Every approval under `keys`: with `after_revision = None`, the existing ones first and then
/// each new one as it is written; with `Some(r)`, those written after revision `r`. Retries
/// by itself when etcd is away; ends only when dropped.
pub fn watch_approvals(client: Client, keys: Keys, after_revision: Option<i64>) -> impl Stream<Item = Approval> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(run(client, keys, after_revision, tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).flat_map(|change| {
        futures::stream::iter(match change {
            Change::Listed(approvals) => approvals,
            Change::Put(approval) => vec![approval],
            Change::Deleted(_) => Vec::new(),
        })
    })
}

/// The approvals in the store as last seen, by `systemId`, kept current by a watch.
#[derive(Debug, Clone, Default)]
pub struct ApprovalMirror(Arc<RwLock<BTreeMap<String, Approval>>>);

impl ApprovalMirror {
    /// Mirrors the approvals under `keys` until the returned task is aborted; `changed` is
    /// notified on every change.
    pub fn start(client: Client, keys: Keys, changed: Arc<Notify>) -> (ApprovalMirror, tokio::task::JoinHandle<()>) {
        let mirror = ApprovalMirror::default();
        let (tx, mut rx) = mpsc::channel(256);
        let watch = tokio::spawn(run(client, keys, None, tx));
        let map = mirror.0.clone();
        let task = tokio::spawn(async move {
            let _watch = AbortOnDrop(watch);
            while let Some(change) = rx.recv().await {
                {
                    let mut map = map.write().expect("approval mirror lock");
                    match change {
                        Change::Listed(approvals) => {
                            *map = approvals.into_iter().map(|a| (a.record.system_id.clone(), a)).collect();
                        }
                        Change::Put(a) => drop(map.insert(a.record.system_id.clone(), a)),
                        Change::Deleted(id) => drop(map.remove(&id)),
                    }
                }
                changed.notify_one();
            }
        });
        (mirror, task)
    }

    /// The approvals now.
    pub fn snapshot(&self) -> BTreeMap<String, Approval> {
        self.0.read().expect("approval mirror lock").clone()
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run(mut client: Client, keys: Keys, after_revision: Option<i64>, tx: mpsc::Sender<Change>) {
    let prefix = keys.collection("approvals");
    let mut resume = after_revision;
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = async {
            let after = match resume {
                Some(revision) => revision,
                None => {
                    let (kvs, revision) = list_prefix(&mut client, &prefix, 1000, false).await?;
                    let approvals =
                        kvs.iter().filter_map(|kv| decode(&keys, kv.key(), kv.value(), kv.mod_revision())).collect();
                    tx.send(Change::Listed(approvals)).await.map_err(|_| Closed)?;
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
                    let change = match event.event_type() {
                        EventType::Put => decode(&keys, kv.key(), kv.value(), kv.mod_revision()).map(Change::Put),
                        EventType::Delete => std::str::from_utf8(kv.key()).ok().and_then(|k| match keys.parse(k) {
                            Some(KeyRef::Approval(id)) => Some(Change::Deleted(id.to_owned())),
                            _ => None,
                        }),
                    };
                    if let Some(change) = change {
                        tx.send(change).await.map_err(|_| Closed)?;
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
