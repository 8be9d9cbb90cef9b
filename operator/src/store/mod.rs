//! The operator's side of the status store: it publishes the read-model
//! ([`suyun_store::readmodel`]) and the transition journal to etcd, fenced by leadership, and
//! reads the cutover approvals the apiserver writes.
//!
//! ```text
//!   StoreConfig::connect() ─► Client
//!        │
//!        ├─► Fence::campaign(client, keys, identity, ttl) ── leader key + lease + keepalive
//!        │        │
//!        │        └─► Publisher::new(fence, max_txn_ops)
//!        │               ├─ reconcile(snapshot)      start-up: store := snapshot, stale keys deleted
//!        │               ├─ publish(changes)         batched, fenced txns; unchanged records skipped
//!        │               └─ sync_journal(sources)    journal/<systemId>/<sequence>, create-only, chained
//!        │
//!        └─► watch_approvals(client, keys, from)     approvals/<systemId>, no gaps
//! ```
//!
//! Every write is one etcd transaction whose guard compares the leader key's value and create
//! revision with the ones this process wrote when it won: once another process holds the key,
//! every write of the old leader fails with [`StoreError::Fenced`].

mod approvals;
mod fence;
mod publish;
mod sink;

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::Client;
use suyun_store::etcd::{EtcdError, Target, Timeouts};
use suyun_store::readmodel::{DEFAULT_PREFIX, Keys};

pub use approvals::{Approval, ApprovalMirror, watch_approvals};
pub use fence::Fence;
pub use publish::{Change, JournalReport, PublishReport, Publisher, RecordKey};
pub use sink::{StoreLink, StoreSink};

/// Connection settings of the status-store etcd; flattened into the operator's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreConfig {
    /// etcd endpoints of the status store, comma-separated (`http://` or `https://`).
    #[arg(long = "store-endpoints", env = "SUYUN_STORE_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// PEM file of the CA that signed the etcd server certificates (for `https://` endpoints).
    #[arg(long = "store-ca", env = "SUYUN_STORE_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate presented to etcd.
    #[arg(long = "store-cert", env = "SUYUN_STORE_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long = "store-key", env = "SUYUN_STORE_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Key prefix of the read-model (versioned layout).
    #[arg(long = "store-prefix", env = "SUYUN_STORE_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Time to live of the leader lease, seconds: how long a dead leader blocks a successor.
    #[arg(long = "store-lease-ttl", env = "SUYUN_STORE_LEASE_TTL", default_value_t = 10)]
    pub lease_ttl_seconds: i64,
    /// Operations per etcd transaction (etcd's `--max-txn-ops`, 128 by default).
    #[arg(long = "store-max-txn-ops", env = "SUYUN_STORE_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Days a deleted system's journal is kept before it is compacted (China's Cybersecurity
    /// Law asks for six months of logs: at least 180).
    #[arg(long = "journal-retention-days", env = "SUYUN_JOURNAL_RETENTION_DAYS", default_value_t = 180,
          value_parser = clap::value_parser!(u32).range(180..))]
    pub journal_retention_days: u32,
}

impl StoreConfig {
    /// Settings for plain-HTTP `endpoints` under `prefix`, with the defaults otherwise.
    pub fn new(endpoints: Vec<String>, prefix: &str) -> StoreConfig {
        StoreConfig {
            endpoints,
            ca: None,
            cert: None,
            key: None,
            prefix: prefix.to_owned(),
            lease_ttl_seconds: 10,
            max_txn_ops: 128,
            journal_retention_days: 180,
        }
    }

    /// The key layout under the configured prefix.
    pub fn keys(&self) -> Keys {
        Keys::new(&self.prefix)
    }

    /// Where the etcd is, with the TLS files.
    pub fn target(&self) -> Target {
        Target {
            endpoints: self.endpoints.clone(),
            ca: self.ca.clone(),
            identity: self.cert.clone().zip(self.key.clone()),
        }
    }

    /// Connects to etcd (TLS when a CA or client certificate is configured).
    pub async fn connect(&self) -> Result<Client, StoreError> {
        let timeouts = Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(15),
            keep_alive: (Duration::from_secs(10), Duration::from_secs(5)),
        };
        Ok(self.target().connect(timeouts).await?)
    }
}

/// What went wrong talking to the status store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the leader key: this one must stop writing (and stop leading).
    #[error("write refused: {identity} no longer holds the leader key {key} (deposed or lease expired)")]
    Fenced {
        /// This process's identity.
        identity: String,
        /// The leader key.
        key: String,
    },
    /// A journal key this publisher meant to create exists: what the store holds was read
    /// again, and the append is retried.
    #[error("the journal of {system_id} moved on since it was read; reading it again")]
    JournalMoved {
        /// The first system of the refused transaction.
        system_id: String,
    },
    /// etcd could not be reached or refused the request (retry with backoff), or a TLS file
    /// could not be read (fix the configuration).
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

impl From<etcd_client::Error> for StoreError {
    fn from(e: etcd_client::Error) -> StoreError {
        StoreError::Etcd(e.into())
    }
}

impl StoreError {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Fenced { .. } => "fenced",
            StoreError::Etcd(EtcdError::Etcd(_)) => "etcd",
            StoreError::JournalMoved { .. } => "journal_moved",
            StoreError::Etcd(EtcdError::Read { .. }) => "config",
        }
    }
}

pub use suyun_store::etcd::list_prefix;
pub use suyun_store::readmodel::prefix_end;

/// Every journal in the store (or only `system_id`'s), as (sequence from the key, stored
/// bytes) per system in key order: what [`crate::journal::verify_chain`] checks.
pub async fn read_journals(
    client: &mut Client,
    keys: &Keys,
    system_id: Option<&str>,
) -> Result<std::collections::BTreeMap<String, Vec<(u64, Vec<u8>)>>, StoreError> {
    let prefix = match system_id {
        Some(id) => keys.journal_of(id),
        None => keys.collection("journal"),
    };
    let (kvs, _) = list_prefix(client, &prefix, 500, false).await?;
    let mut out: std::collections::BTreeMap<String, Vec<(u64, Vec<u8>)>> = std::collections::BTreeMap::new();
    for kv in kvs {
        if let Some(suyun_store::readmodel::KeyRef::Journal(id, sequence)) =
            kv.key_str().ok().and_then(|k| keys.parse(k))
        {
            out.entry(id.to_owned()).or_default().push((sequence, kv.value().to_vec()));
        }
    }
    Ok(out)
}
