//! The real apiserver, in-process on `127.0.0.1:0`, with a fresh PKI and token file, for
//! tests and benchmarks; and callers with each kind of credential.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use suyun_apiserver::AppState;
use suyun_apiserver::auth::{TokenStore, token_hash};
use suyun_apiserver::config::EtcdConfig;
use suyun_apiserver::ratelimit::RateLimit;
use suyun_apiserver::server::Limits;
use suyun_apiserver::tls::{ServerTls, TlsFiles};
use suyun_operator::store::{Fence, Publisher, StoreConfig};
use suyun_store::readmodel::{Keys, Record};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::https::{Caller, client_config};
use crate::tls::{Pem, TestCa, write};

/// Publishes `records` under `prefix` as a leader named `identity` would; returns the
/// publisher (still holding the leader key).
pub async fn publish(endpoint: &str, prefix: &str, identity: &str, records: Vec<Record>) -> anyhow::Result<Publisher> {
    let config = StoreConfig::new(vec![endpoint.to_owned()], prefix);
    let fence = Fence::campaign(config.connect().await?, config.keys(), identity, 10).await?;
    let mut publisher = Publisher::new(fence, config.max_txn_ops);
    publisher.reconcile(records).await?;
    Ok(publisher)
}

/// How a [`TestServer`] is configured beyond its store.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connection and request limits.
    pub limits: Limits,
    /// Per-identity rate limit (off by default: tests and benchmarks send fast).
    pub rate_limit: RateLimit,
    /// Whether a client CRL file is configured (it starts as an empty CRL of the trusted CA).
    pub client_crl: bool,
    /// How often the TLS files and the token file are checked for changes.
    pub reload_interval: Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            limits: Limits::default(),
            rate_limit: RateLimit::OFF,
            client_crl: false,
            reload_interval: Duration::from_millis(100),
        }
    }
}

/// A running apiserver and everything needed to call it.
#[derive(Debug)]
pub struct TestServer {
    /// HTTPS address.
    pub addr: SocketAddr,
    /// Metrics address (plain HTTP).
    pub metrics_addr: SocketAddr,
    /// The server's state (index, health).
    pub state: AppState,
    /// The CA clients and the server trust.
    pub ca: TestCa,
    /// A CA nobody trusts.
    pub wrong_ca: TestCa,
    /// The token file (rewrite it to test reloading).
    pub token_file: PathBuf,
    /// The server certificate, key, client CA and CRL files (rewrite them to test reloading).
    pub tls_files: TlsFiles,
    /// The TLS settings the server accepts connections with.
    pub tls: Arc<ServerTls>,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<anyhow::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server reading `prefix` from `endpoint`, with an empty token file reloaded every
    /// 100 ms and the store probed every `probe_ms`; waits until the first read is done.
    pub async fn start(endpoint: &str, prefix: &str, probe_ms: u64) -> anyhow::Result<TestServer> {
        let mut etcd = EtcdConfig::new(vec![endpoint.to_owned()], prefix);
        etcd.probe_ms = probe_ms;
        Self::start_with_store(etcd).await
    }

    /// Starts a server reading the status store as `etcd` says (endpoints, TLS, prefix, probe
    /// interval), with an empty token file; waits until the first read is done.
    pub async fn start_with_store(etcd: EtcdConfig) -> anyhow::Result<TestServer> {
        Self::start_with(etcd, ServerOptions::default()).await
    }

    /// Like [`TestServer::start_with_store`], with the server's state set up by `configure`
    /// (e.g. `AppState::with_allowed_origins`).
    pub async fn start_configured(
        etcd: EtcdConfig,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> anyhow::Result<TestServer> {
        Self::start_full(etcd, ServerOptions::default(), configure).await
    }

    /// A server configured by `options` over the sample read-model (`readmodel::sample`),
    /// published under a fresh prefix named after `name` in the test cluster's status store;
    /// with the publisher, which holds the leader key.
    pub async fn with_sample(name: &str, options: ServerOptions) -> anyhow::Result<(TestServer, Publisher)> {
        let prefix = crate::etcd::unique_prefix(name);
        let endpoint = crate::cluster().etcd_endpoints.clone();
        let publisher = publish(&endpoint, &prefix, "operator-a", crate::readmodel::sample()).await?;
        let mut etcd = EtcdConfig::new(vec![endpoint], &prefix);
        etcd.probe_ms = 1000;
        Ok((TestServer::start_with(etcd, options).await?, publisher))
    }

    /// Starts a server as [`TestServer::start_with_store`] does, configured by `options`.
    pub async fn start_with(etcd: EtcdConfig, options: ServerOptions) -> anyhow::Result<TestServer> {
        Self::start_full(etcd, options, |state| state).await
    }

    async fn start_full(
        etcd: EtcdConfig,
        options: ServerOptions,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> anyhow::Result<TestServer> {
        let prefix = etcd.prefix.clone();
        let dir = crate::repo_root().join("target/test-pki").join(prefix.trim_matches('/').replace('/', "_"));
        let ca = TestCa::new("suyun-test-client-ca");
        let wrong_ca = TestCa::new("someone-else");
        let server_pem = ca.server();
        let token_file = write(&dir, "tokens", "# no tokens yet\n");
        let tls_files = TlsFiles {
            cert: write(&dir, "tls.crt", &server_pem.cert),
            key: write(&dir, "tls.key", &server_pem.key),
            client_ca: Some(write(&dir, "client-ca.crt", &ca.pem.cert)),
            client_crl: options.client_crl.then(|| write(&dir, "client.crl", &ca.crl(&[]))),
        };
        let tls = ServerTls::load(tls_files.clone())?;
        let state = configure(
            AppState::new(Keys::new(&prefix), TokenStore::load(&token_file)?).with_rate_limit(options.rate_limit),
        );
        let tasks = vec![
            state.spawn_sync(etcd),
            state.tokens.spawn_reloader(options.reload_interval),
            tls.spawn_reloader(options.reload_interval),
        ];

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let metrics_app = suyun_apiserver::metrics::router(state.clone());
        let mut tasks = tasks;
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(metrics_listener, metrics_app).await;
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = suyun_apiserver::router(state.clone());
        let serving = tokio::spawn(suyun_apiserver::serve(listener, tls.clone(), app, options.limits, async {
            let _ = stopped.await;
        }));
        let health = state.health.clone();
        crate::eventually(Duration::from_secs(20), || {
            let health = health.clone();
            async move { if health.loaded() { Ok(()) } else { anyhow::bail!("index not loaded") } }
        })
        .await?;
        Ok(TestServer {
            addr,
            metrics_addr,
            state,
            ca,
            wrong_ca,
            token_file,
            tls_files,
            tls,
            dir,
            stop: Some(stop),
            serving: Some(serving),
            tasks,
        })
    }

    /// A caller presenting a client certificate of the trusted CA with `CN=cn` and `units` as OUs.
    pub fn with_certificate(&self, cn: &str, units: &[&str]) -> Caller {
        let pem = self.ca.client(cn, units);
        let tls = client_config(&self.ca.pem.cert, Some((&pem.cert, &pem.key))).expect("client TLS");
        Caller { addr: self.addr, tls, token: None }
    }

    /// A caller presenting the client certificate `pem` (of any CA).
    pub fn with_client_pem(&self, pem: &Pem) -> Caller {
        let tls = client_config(&self.ca.pem.cert, Some((&pem.cert, &pem.key))).expect("client TLS");
        Caller { addr: self.addr, tls, token: None }
    }

    /// A caller presenting a certificate from a CA the server does not trust.
    pub fn with_wrong_ca(&self, cn: &str, units: &[&str]) -> Caller {
        let pem = self.wrong_ca.client(cn, units);
        let tls = client_config(&self.ca.pem.cert, Some((&pem.cert, &pem.key))).expect("client TLS");
        Caller { addr: self.addr, tls, token: None }
    }

    /// A caller with a bearer token (and no certificate).
    pub fn with_token(&self, token: &str) -> Caller {
        Caller {
            addr: self.addr,
            tls: client_config(&self.ca.pem.cert, None).expect("client TLS"),
            token: Some(token.into()),
        }
    }

    /// A caller with no credentials at all.
    pub fn anonymous(&self) -> Caller {
        Caller { addr: self.addr, tls: client_config(&self.ca.pem.cert, None).expect("client TLS"), token: None }
    }

    /// Rewrites the token file: `(token, identity, scope, read_only)` per entry.
    pub fn write_tokens(&self, tokens: &[(&str, &str, &str, bool)]) {
        let mut text = String::from("# sha256(token) identity scope [read-only]\n");
        for (token, identity, scope, read_only) in tokens {
            text.push_str(&format!(
                "{} {identity} {scope}{}\n",
                token_hash(token),
                if *read_only { " read-only" } else { "" }
            ));
        }
        write(&self.dir, "tokens", &text);
    }

    /// Writes `contents` to `name` in the server's file directory (next to its certificates).
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        write(&self.dir, name, contents)
    }

    /// Stops the server (graceful shutdown) and its tasks.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            tokio::time::timeout(Duration::from_secs(15), serving).await???;
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.tasks.iter().for_each(JoinHandle::abort);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
