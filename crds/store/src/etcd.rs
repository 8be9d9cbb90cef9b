//! Reaching the status-store etcd: one connection recipe (endpoints, TLS from PEM files,
//! timeouts) and one paged prefix read, for the operator and the apiserver alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use etcd_client::Client;
use etcd_client::{Certificate, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions};

use crate::readmodel::prefix_end;

/// Where the etcd is and how to prove who we are: built from each binary's own flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Endpoints (`http://` or `https://`).
    pub endpoints: Vec<String>,
    /// PEM CA of the etcd server certificates.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and its private key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// How long to wait for a connection and for a request, and how to keep an idle one alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One request.
    pub request: Duration,
    /// HTTP/2 keep-alive ping interval and how long to wait for its answer.
    pub keep_alive: (Duration, Duration),
}

/// What can go wrong reaching etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
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

impl Target {
    /// TLS options when a CA or a client certificate is configured, `None` for plain HTTP.
    pub fn tls(&self) -> Result<Option<TlsOptions>, EtcdError> {
        if self.ca.is_none() && self.identity.is_none() {
            return Ok(None);
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(tls))
    }

    /// Connects (TLS when configured).
    pub async fn connect(&self, timeouts: Timeouts) -> Result<Client, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeouts.connect)
            .with_timeout(timeouts.request)
            .with_keep_alive(timeouts.keep_alive.0, timeouts.keep_alive.1);
        if let Some(tls) = self.tls()? {
            options = options.with_tls(tls);
        }
        Ok(Client::connect(&self.endpoints, Some(options)).await?)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::Read { path: path.to_owned(), source })
}

/// Reads every key-value under `prefix` at one revision, in pages of `page` keys (a single
/// response for 7,900 systems would pass gRPC's default 4 MiB message limit), handing each page
/// to `each` as it arrives. Returns the revision the pages were read at.
pub async fn for_each_page(
    client: &mut Client,
    prefix: &str,
    page: i64,
    keys_only: bool,
    mut each: impl FnMut(Vec<KeyValue>),
) -> Result<i64, etcd_client::Error> {
    let end = prefix_end(prefix);
    let mut start = prefix.as_bytes().to_vec();
    let mut revision = 0;
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
        each(kvs);
        if !more {
            return Ok(revision);
        }
    }
}

/// [`for_each_page`], collected: the pairs and the revision they were read at.
pub async fn list_prefix(
    client: &mut Client,
    prefix: &str,
    page: i64,
    keys_only: bool,
) -> Result<(Vec<KeyValue>, i64), etcd_client::Error> {
    let mut out = Vec::new();
    let revision = for_each_page(client, prefix, page, keys_only, |kvs| out.extend(kvs)).await?;
    Ok((out, revision))
}
