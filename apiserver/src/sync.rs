//! Keeps the index equal to etcd: a paged prefix read at one revision, then a watch from the
//! revision after it, applied in order (no gaps, no duplicates). When etcd goes away the index
//! keeps its last state and [`Health`] says since when it is stale; the loop lists and
//! watches again by itself once etcd is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use suyun_store::etcd::{self, Timeouts};
use suyun_store::readmodel::Keys;

use crate::config::EtcdConfig;
use crate::index::Index;

/// Whether the index is loaded and current.
pub struct Health {
    loaded: AtomicBool,
    connected: AtomicBool,
    last_contact: Mutex<Instant>,
    client: Mutex<Option<Client>>,
    /// Counts changes of the index or of its staleness (for live pages to follow).
    changes: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("loaded", &self.loaded()).field("stale_seconds", &self.stale_seconds()).finish()
    }
}

impl Default for Health {
    fn default() -> Self {
        Health {
            loaded: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            last_contact: Mutex::new(Instant::now()),
            client: Mutex::new(None),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Health {
    /// Whether a first full read has completed (before it there is nothing to serve).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Marks the index loaded and current (for tests that fill an index by hand).
    #[cfg(test)]
    pub(crate) fn mark_current(&self) {
        self.loaded.store(true, Ordering::Release);
        self.set_connected(true);
    }

    /// `None` while the watch is current; otherwise the whole seconds since etcd was last heard.
    pub fn stale_seconds(&self) -> Option<u64> {
        if self.connected.load(Ordering::Acquire) {
            None
        } else {
            Some(self.last_contact.lock().expect("health lock").elapsed().as_secs())
        }
    }

    /// The etcd client of the current connection, for writes (approvals).
    pub fn client(&self) -> Option<Client> {
        if self.connected.load(Ordering::Acquire) { self.client.lock().expect("health lock").clone() } else { None }
    }

    /// A receiver told of every change of the index or of its staleness.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tells the subscribers that the index or its staleness changed.
    pub(crate) fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn contact(&self) {
        *self.last_contact.lock().expect("health lock") = Instant::now();
    }

    fn set_connected(&self, connected: bool) {
        if connected {
            self.contact();
        }
        if self.connected.swap(connected, Ordering::AcqRel) != connected {
            self.notify();
        }
    }
}

/// Connects to etcd with the configured endpoints and TLS.
pub async fn connect(config: &EtcdConfig) -> anyhow::Result<Client> {
    let timeouts = Timeouts {
        connect: Duration::from_secs(3),
        request: Duration::from_secs(10),
        keep_alive: (Duration::from_secs(5), Duration::from_secs(3)),
    };
    Ok(config.target().connect(timeouts).await?)
}

/// Runs the list-and-watch loop until aborted.
pub async fn run(config: EtcdConfig, keys: Keys, index: Arc<RwLock<Index>>, health: Arc<Health>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match list_and_watch(&config, &keys, &index, &health).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                if health.connected.load(Ordering::Acquire) {
                    tracing::warn!(error = %e, "lost the status store; serving the last state, marked stale");
                }
                health.set_connected(false);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.probe_interval() * 4);
            }
        }
    }
}

/// One connection's life: a full read, then the watch until it fails. `Ok` means the watch
/// was cancelled (compaction) and a new full read is due.
async fn list_and_watch(
    config: &EtcdConfig,
    keys: &Keys,
    index: &RwLock<Index>,
    health: &Health,
) -> anyhow::Result<()> {
    let mut client = connect(config).await?;
    let fresh = load(&mut client, keys).await?;
    let revision = fresh.revision;
    *index.write().expect("index lock") = fresh;
    *health.client.lock().expect("health lock") = Some(client.clone());
    health.loaded.store(true, Ordering::Release);
    health.set_connected(true);
    health.notify();
    tracing::info!(revision, "status store loaded");

    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1).with_progress_notify();
    let mut stream = client.watch(keys.prefix(), Some(options)).await?;
    let mut probe = tokio::time::interval(config.probe_interval());
    loop {
        tokio::select! {
            message = stream.message() => {
                let Some(response) = message? else { anyhow::bail!("etcd closed the watch") };
                if response.canceled() || response.compact_revision() > 0 {
                    tracing::warn!(compacted = response.compact_revision(), "watch cancelled; reading the store again");
                    return Ok(());
                }
                apply(index, keys, &response);
                health.set_connected(true);
                if !response.events().is_empty() {
                    health.notify();
                }
            }
            _ = probe.tick() => {
                // A watch on a dead connection can stay silent: ask etcd directly.
                let check = client.get(keys.leader(), Some(GetOptions::new().with_keys_only()));
                let answer = tokio::time::timeout(config.probe_interval(), check).await;
                answer.map_err(|_| anyhow::anyhow!("etcd probe timed out"))??;
                health.set_connected(true);
            }
        }
    }
}

fn apply(index: &RwLock<Index>, keys: &Keys, response: &etcd_client::WatchResponse) {
    let events = response.events();
    let mut index = index.write().expect("index lock");
    for event in events {
        let Some(kv) = event.kv() else { continue };
        if kv.mod_revision() <= index.revision {
            continue; // already applied (a duplicate after a reconnect)
        }
        let Ok(key) = kv.key_str() else { continue };
        match event.event_type() {
            EventType::Put => index.put_kv(keys, key, kv.value(), kv.mod_revision(), kv.create_revision()),
            EventType::Delete => index.delete(keys, key, kv.mod_revision()),
        }
    }
    if let Some(last) = events.last().and_then(|e| e.kv()) {
        index.revision = index.revision.max(last.mod_revision());
    }
}

/// A full, paged read of the prefix at one revision.
pub async fn load(client: &mut Client, keys: &Keys) -> anyhow::Result<Index> {
    let mut index = Index::default();
    index.revision = etcd::for_each_page(client, keys.prefix(), 2000, false, |kvs| {
        for kv in kvs {
            if let Ok(key) = kv.key_str() {
                index.put_kv(keys, key, kv.value(), kv.mod_revision(), kv.create_revision());
            }
        }
    })
    .await?;
    Ok(index)
}
