//! Leadership in the status store: the leader key, held with an etcd lease kept alive in the
//! background, and the comparison that guards every write.
//!
//! The key's value names the holder ([`LeaderRecord`]); a write compares both the value and
//! the key's create revision, so a successor that happens to reuse the same identity (a
//! restarted pod with the same name) still fences out the old process.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use suyun_store::readmodel::{Keys, LeaderRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StoreError;

/// This process's hold on the leader key. Dropping it stops the keepalive (the lease then
/// expires after its TTL); [`Fence::resign`] releases the key at once.
pub struct Fence {
    client: Client,
    keys: Keys,
    identity: String,
    value: Vec<u8>,
    create_revision: i64,
    lease_id: i64,
    lost: watch::Receiver<bool>,
    keepalive: JoinHandle<()>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("identity", &self.identity)
            .field("leader_key", &self.keys.leader())
            .field("create_revision", &self.create_revision)
            .field("lease_id", &self.lease_id)
            .finish()
    }
}

impl Fence {
    /// Campaigns for the leader key until this process holds it. Waiting candidates watch the
    /// key and try again as soon as it is deleted (resignation or lease expiry).
    pub async fn campaign(client: Client, keys: Keys, identity: &str, ttl_seconds: i64) -> Result<Fence, StoreError> {
        loop {
            match Fence::try_acquire(client.clone(), keys.clone(), identity, ttl_seconds).await? {
                Ok(fence) => return Ok(fence),
                Err(revision) => wait_for_vacancy(client.clone(), &keys, revision, ttl_seconds).await?,
            }
        }
    }

    /// One attempt: `Ok(fence)` when this process now holds the key, `Err(revision)` (the
    /// store's revision when it looked) when another process does.
    pub async fn try_acquire(
        mut client: Client,
        keys: Keys,
        identity: &str,
        ttl_seconds: i64,
    ) -> Result<Result<Fence, i64>, StoreError> {
        let lease_id = client.lease_grant(ttl_seconds, None).await?.id();
        let record = LeaderRecord { identity: identity.to_owned(), since: jiff::Timestamp::now().to_string() };
        let value = serde_json::to_vec(&record).expect("a leader record serialises");
        let key = keys.leader();
        let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(lease_id)),
        )]);
        let response = client.txn(txn).await?;
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        if !response.succeeded() {
            client.lease_revoke(lease_id).await?;
            return Ok(Err(revision));
        }
        let (lost_tx, lost) = watch::channel(false);
        let keepalive = tokio::spawn(keep_alive(client.clone(), lease_id, ttl_seconds, lost_tx));
        tracing::info!(%identity, %key, lease_id, revision, "holding the status-store leader key");
        Ok(Ok(Fence {
            client,
            keys,
            identity: identity.to_owned(),
            value,
            create_revision: revision,
            lease_id,
            lost,
            keepalive,
        }))
    }

    /// The guard of every write: the leader key still has this process's value and the create
    /// revision it had when this process won.
    pub fn compares(&self) -> Vec<Compare> {
        let key = self.keys.leader();
        vec![
            Compare::value(key.clone(), CompareOp::Equal, self.value.clone()),
            Compare::create_revision(key, CompareOp::Equal, self.create_revision),
        ]
    }

    /// The error every refused write reports.
    pub fn fenced_error(&self) -> StoreError {
        StoreError::Fenced { identity: self.identity.clone(), key: self.keys.leader() }
    }

    /// A client on the same connection.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// This process's identity, as written in the leader key.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The lease the leader key is attached to.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// The create revision of the leader key this process wrote.
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }

    /// Whether the lease is known to be gone (expired, revoked, or not renewed in time).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is known to be gone: the operator should stop leading.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // An error means the keepalive task ended, which it does only after losing the lease.
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Releases the key now (revokes the lease) so that a successor need not wait for the TTL.
    pub async fn resign(mut self) -> Result<(), StoreError> {
        self.keepalive.abort();
        self.client.lease_revoke(self.lease_id).await?;
        Ok(())
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Renews the lease every third of its TTL; reports loss when etcd says it is gone or when no
/// renewal succeeded for a whole TTL.
async fn keep_alive(mut client: Client, lease_id: i64, ttl_seconds: i64, lost: watch::Sender<bool>) {
    let ttl = Duration::from_secs(ttl_seconds.max(1) as u64);
    let mut valid_until = tokio::time::Instant::now() + ttl;
    let mut interval = tokio::time::interval(ttl / 3);
    let mut stream = None;
    loop {
        interval.tick().await;
        if tokio::time::Instant::now() >= valid_until {
            break;
        }
        if stream.is_none() {
            stream = client.lease_keep_alive(lease_id).await.ok();
        }
        let Some((keeper, responses)) = stream.as_mut() else { continue };
        let renewed = async {
            keeper.keep_alive().await?;
            responses.message().await
        };
        // A renewal counts from when it was asked for, not from when the answer came.
        let asked = tokio::time::Instant::now();
        match tokio::time::timeout(ttl / 3, renewed).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {
                valid_until = asked + Duration::from_secs(response.ttl() as u64);
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease_id, "status-store lease expired or was revoked");
                break;
            }
            other => {
                tracing::warn!(lease_id, ?other, "renewing the status-store lease failed; retrying");
                stream = None;
            }
        }
    }
    let _ = lost.send(true);
}

/// Waits until the leader key is deleted after `revision`, or at most one TTL (then the caller
/// simply tries again).
async fn wait_for_vacancy(mut client: Client, keys: &Keys, revision: i64, ttl_seconds: i64) -> Result<(), StoreError> {
    let options = WatchOptions::new().with_start_revision(revision + 1);
    let mut stream = client.watch(keys.leader(), Some(options)).await?;
    let vacated = async {
        while let Some(response) = stream.message().await? {
            if response.events().iter().any(|e| e.event_type() == EventType::Delete) {
                return Ok::<_, etcd_client::Error>(());
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(ttl_seconds.max(1) as u64), vacated).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(_) => Ok(()),
    }
}
