//! The operator's side of the status store: it publishes the read-model
//! ([`suyun_crds::readmodel`]) and the transition journal to etcd, fenced by leadership, and
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

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions};
use suyun_crds::readmodel::{DEFAULT_PREFIX, Keys};

pub use approvals::{Approval, ApprovalMirror, watch_approvals};
pub use fence::Fence;
pub use publish::{Change, JournalReport, PublishReport, Publisher, RecordKey};

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

    /// Connects to etcd (TLS when a CA or client certificate is configured).
    pub async fn connect(&self) -> Result<Client, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(15))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if self.ca.is_some() || self.cert.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        Ok(Client::connect(&self.endpoints, Some(options)).await?)
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::Read { path: path.clone(), source })
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
    /// etcd could not be reached or refused the request; retry with backoff.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A TLS file could not be read; fix the configuration.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl StoreError {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Fenced { .. } => "fenced",
            StoreError::Etcd(_) => "etcd",
            StoreError::JournalMoved { .. } => "journal_moved",
            StoreError::Read { .. } => "config",
        }
    }
}

pub use suyun_crds::readmodel::prefix_end;

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
        if let Some(suyun_crds::readmodel::KeyRef::Journal(id, sequence)) =
            kv.key_str().ok().and_then(|k| keys.parse(k))
        {
            out.entry(id.to_owned()).or_default().push((sequence, kv.value().to_vec()));
        }
    }
    Ok(out)
}

/// Every key-value under `prefix` at one revision, read in pages of `page` keys (a single
/// response for 7,900 systems would pass gRPC's default 4 MiB message limit). Returns the
/// pairs and the revision they were read at.
pub async fn list_prefix(
    client: &mut Client,
    prefix: &str,
    page: i64,
    keys_only: bool,
) -> Result<(Vec<KeyValue>, i64), StoreError> {
    let end = prefix_end(prefix);
    let mut start = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut out = Vec::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(page).with_revision(revision);
        if keys_only {
            options = options.with_keys_only();
        }
        let mut response = client.get(start.clone(), Some(options)).await?;
        if revision == 0 {
            revision = response.header().map(|h| h.revision()).unwrap_or_default();
        }
        let more = response.more();
        let kvs = response.take_kvs();
        if let Some(last) = kvs.last() {
            start = last.key().to_vec();
            start.push(0);
        }
        out.extend(kvs);
        if !more {
            return Ok((out, revision));
        }
    }
}
