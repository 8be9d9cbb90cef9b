//! Command-line and environment configuration (`--flag` or `SUYUN_APISERVER_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};
use suyun_crds::readmodel::DEFAULT_PREFIX;

/// Everything the apiserver is configured with.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "suyun-apiserver", version, about = "Suyun REST API for city operators (HTTPS, read from etcd)")]
pub struct Config {
    /// HTTPS listen address.
    #[arg(long, env = "SUYUN_APISERVER_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP listen address of the Prometheus metrics.
    #[arg(long, env = "SUYUN_APISERVER_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// PEM server certificate chain.
    #[arg(long, env = "SUYUN_APISERVER_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key of the server certificate.
    #[arg(long, env = "SUYUN_APISERVER_TLS_KEY")]
    pub tls_key: PathBuf,
    /// PEM CA(s) that sign client certificates; without it only bearer tokens authenticate.
    #[arg(long, env = "SUYUN_APISERVER_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Token file: `<sha256 hex> <identity> <scope> [read-only]` per line; re-read on change.
    #[arg(long, env = "SUYUN_APISERVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// How often the token file is checked for changes, milliseconds.
    #[arg(long, env = "SUYUN_APISERVER_TOKEN_RELOAD_MS", default_value_t = 2000)]
    pub token_reload_ms: u64,
    /// The status store.
    #[command(flatten)]
    pub etcd: EtcdConfig,
    /// Log as JSON lines (production) instead of text.
    #[arg(long, env = "SUYUN_APISERVER_LOG_JSON")]
    pub log_json: bool,
    /// Browser origins (`https://host[:port]`, comma-separated) allowed to send state-changing
    /// requests; a request with any other `Origin` header is refused. Default: none.
    #[arg(long, env = "SUYUN_APISERVER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

/// Where the status store is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdConfig {
    /// etcd endpoints, comma-separated (`http://` or `https://`).
    #[arg(long = "etcd-endpoints", env = "ETCD_ENDPOINTS", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// PEM CA of the etcd server certificates.
    #[arg(long = "etcd-ca", env = "SUYUN_APISERVER_ETCD_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for etcd.
    #[arg(long = "etcd-cert", env = "SUYUN_APISERVER_ETCD_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the etcd client certificate.
    #[arg(long = "etcd-key", env = "SUYUN_APISERVER_ETCD_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Key prefix of the read-model.
    #[arg(long = "etcd-prefix", env = "SUYUN_APISERVER_ETCD_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// How often the connection to etcd is checked, milliseconds: a dead etcd is noticed
    /// (and responses marked stale) within about this long.
    #[arg(long = "etcd-probe-ms", env = "SUYUN_APISERVER_ETCD_PROBE_MS", default_value_t = 1000)]
    pub probe_ms: u64,
}

impl EtcdConfig {
    /// Plain-HTTP endpoints under `prefix`, defaults otherwise.
    pub fn new(endpoints: Vec<String>, prefix: &str) -> EtcdConfig {
        EtcdConfig { endpoints, ca: None, cert: None, key: None, prefix: prefix.to_owned(), probe_ms: 1000 }
    }

    /// The probe interval.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_ms.max(50))
    }

    /// TLS options when a CA or client certificate is configured.
    pub fn tls(&self) -> anyhow::Result<Option<TlsOptions>> {
        if self.ca.is_none() && self.cert.is_none() {
            return Ok(None);
        }
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()));
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(tls))
    }
}
