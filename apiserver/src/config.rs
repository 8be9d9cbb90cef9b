//! Command-line and environment configuration (`--flag` or `SUYUN_APISERVER_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use suyun_store::etcd::Target;
use suyun_store::readmodel::DEFAULT_PREFIX;

use crate::ratelimit::RateLimit;
use crate::server::Limits;
use crate::tls::TlsFiles;

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
    /// PEM certificate revocation list(s) of client certificates (one `X509 CRL` block per
    /// client CA that revokes any); re-read on change. Needs `--client-ca`.
    #[arg(long, env = "SUYUN_APISERVER_CLIENT_CRL", requires = "client_ca")]
    pub client_crl: Option<PathBuf>,
    /// How often the server certificate, key, client CA and CRL files are checked for changes,
    /// milliseconds; new connections use the new files.
    #[arg(long, env = "SUYUN_APISERVER_TLS_RELOAD_MS", default_value_t = 2000)]
    pub tls_reload_ms: u64,
    /// Most connections open at once; further clients wait in the listen backlog.
    #[arg(long, env = "SUYUN_APISERVER_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Time to complete a TLS handshake, milliseconds.
    #[arg(long, env = "SUYUN_APISERVER_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_handshake_timeout_ms: u64,
    /// Time to receive an HTTP/1.1 request head, from the connection's start or the previous
    /// response (so also the HTTP/1.1 keep-alive limit), milliseconds.
    #[arg(long, env = "SUYUN_APISERVER_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Time a connection may stay open with no request in flight, milliseconds.
    #[arg(long, env = "SUYUN_APISERVER_IDLE_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,
    /// Time to receive a request's body and answer it, milliseconds (408 or 503 after).
    #[arg(long, env = "SUYUN_APISERVER_REQUEST_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Largest request body, bytes (413 above).
    #[arg(long, env = "SUYUN_APISERVER_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,
    /// Sustained requests per second of each authenticated identity (429 above); 0: no limit.
    #[arg(long, env = "SUYUN_APISERVER_RATE_LIMIT_RPS", default_value_t = 20.0)]
    pub rate_limit_rps: f64,
    /// Requests an identity may send at once before the rate limit applies.
    #[arg(long, env = "SUYUN_APISERVER_RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,
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
    /// Serve the web console under `/console/` (`--console=false` switches it off).
    #[arg(long, env = "SUYUN_APISERVER_CONSOLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub console: bool,
    /// How long a console session lasts after its login, minutes.
    #[arg(long, env = "SUYUN_APISERVER_CONSOLE_SESSION_MINUTES", default_value_t = 480,
          value_parser = clap::value_parser!(u64).range(1..=10_080))]
    pub console_session_minutes: u64,
}

impl Config {
    /// The connection and request limits.
    pub fn limits(&self) -> Limits {
        let ms = Duration::from_millis;
        Limits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            handshake_timeout: ms(self.tls_handshake_timeout_ms),
            header_read_timeout: ms(self.header_read_timeout_ms),
            idle_timeout: ms(self.idle_timeout_ms),
            request_timeout: ms(self.request_timeout_ms),
            max_body_bytes: self.max_body_bytes,
            ..Limits::default()
        }
    }

    /// The per-identity rate limit.
    pub fn rate_limit(&self) -> RateLimit {
        RateLimit { per_second: self.rate_limit_rps.max(0.0), burst: self.rate_limit_burst }
    }

    /// The console's settings.
    pub fn console(&self) -> crate::console::ConsoleSettings {
        crate::console::ConsoleSettings {
            enabled: self.console,
            session_ttl: Duration::from_secs(self.console_session_minutes * 60),
        }
    }

    /// The TLS files.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            client_ca: self.client_ca.clone(),
            client_crl: self.client_crl.clone(),
        }
    }
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

    /// Where the etcd is, with the TLS files.
    pub fn target(&self) -> Target {
        Target {
            endpoints: self.endpoints.clone(),
            ca: self.ca.clone(),
            identity: self.cert.clone().zip(self.key.clone()),
        }
    }
}
