//! Suyun's REST API for city operators: HTTPS (rustls, TLS 1.2/1.3), read from the etcd status
//! store the operator publishes, never from Kubernetes (it holds no Kubernetes credentials).
//!
//! ```text
//!  etcd (status store) ──prefix read @R, watch from R+1──► sync ──► Index (RwLock, in memory)
//!        ▲                                                              │
//!        │ approvals/<systemId> (txn, create-only)                      ▼
//!        └──────────────────────────── api::router ◄── auth (mTLS CN/OU │ bearer token hash)
//!                                          │                  ◄── server::serve (rustls)
//!                                          └─► metrics (separate plain-HTTP listener)
//! ```
//!
//! Structure as in atuin's server: [`router`] builds the application from an
//! [`AppState`], [`server::serve`] runs it on a listener until a shutdown future resolves, so
//! tests bind `127.0.0.1:0` and run the real server. [`run`] wires everything for the binary.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod index;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod ratelimit;
pub mod reload;
pub mod response;
pub mod server;
pub mod sync;
pub mod tls;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use suyun_store::readmodel::Keys;
use tokio::net::TcpListener;

pub use server::serve;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The read-model in memory.
    pub index: Arc<RwLock<Index>>,
    /// Whether the index is loaded and current.
    pub health: Arc<sync::Health>,
    /// Bearer tokens.
    pub tokens: Arc<auth::TokenStore>,
    /// Key layout (for approval writes); shared, as the state is cloned for every request.
    pub keys: Arc<Keys>,
    /// Request metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Browser origins allowed to send state-changing requests, normalised (none by default).
    pub allowed_origins: Arc<[String]>,
    /// Per-identity rate limits.
    pub limiter: Arc<ratelimit::RateLimiter>,
    /// The web console's settings.
    pub console: console::ConsoleSettings,
    /// The console sessions this replica opened for client certificates.
    pub console_sessions: Arc<console::session::CertificateSessions>,
}

use index::Index;

/// The whole HTTPS application: [`api::router`] with the OpenAPI document that
/// [`openapi::document`] renders from the same route table, rendered once here; and the web
/// console under `/console/` unless it is switched off.
pub fn router(state: AppState) -> axum::Router {
    let document = openapi::document().to_string();
    let api = api::router(state.clone(), api::OpenApiDocument(document.into()));
    if state.console.enabled { api.merge(console::router(state.clone()).with_state(state)) } else { api }
}

impl AppState {
    /// A state with an empty index, not yet loaded, and no rate limit.
    pub fn new(keys: Keys, tokens: auth::TokenStore) -> AppState {
        AppState {
            index: Arc::default(),
            health: Arc::default(),
            tokens: Arc::new(tokens),
            keys: Arc::new(keys),
            metrics: Arc::new(metrics::Metrics::new()),
            allowed_origins: Arc::default(),
            limiter: Arc::new(ratelimit::RateLimiter::new(ratelimit::RateLimit::OFF)),
            console: console::ConsoleSettings::default(),
            console_sessions: Arc::default(),
        }
    }

    /// The same state with the console configured by `settings`.
    pub fn with_console(mut self, settings: console::ConsoleSettings) -> AppState {
        self.console = settings;
        self
    }

    /// The same state, allowing state-changing requests from these browser origins.
    pub fn with_allowed_origins<'a>(mut self, origins: impl IntoIterator<Item = &'a str>) -> AppState {
        self.allowed_origins = origins.into_iter().map(api::writes::normalise_origin).collect();
        self
    }

    /// The same state with `limit` per identity.
    pub fn with_rate_limit(mut self, limit: ratelimit::RateLimit) -> AppState {
        self.limiter = Arc::new(ratelimit::RateLimiter::new(limit));
        self
    }

    /// Starts the list-and-watch task that keeps the index current (abort it to stop).
    pub fn spawn_sync(&self, etcd: config::EtcdConfig) -> tokio::task::JoinHandle<()> {
        tokio::spawn(sync::run(etcd, Keys::clone(&self.keys), self.index.clone(), self.health.clone()))
    }
}

/// Runs the apiserver as configured until `shutdown` resolves: the HTTPS listener, the
/// metrics listener, the store sync and the token and TLS reloaders.
pub async fn run(config: config::Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let tls = tls::ServerTls::load(config.tls_files())?;
    let tokens = match &config.token_file {
        Some(path) => auth::TokenStore::load(path)?,
        None => auth::TokenStore::empty(),
    };
    let state = AppState::new(Keys::new(&config.etcd.prefix), tokens)
        .with_allowed_origins(config.allowed_origins.iter().map(String::as_str))
        .with_rate_limit(config.rate_limit())
        .with_console(config.console());
    let sync = state.spawn_sync(config.etcd.clone());
    let reloader = state.tokens.spawn_reloader(Duration::from_millis(config.token_reload_ms.max(100)));
    let tls_reloader = tls.spawn_reloader(Duration::from_millis(config.tls_reload_ms.max(100)));

    let listener = TcpListener::bind(config.listen).await?;
    let metrics_listener = TcpListener::bind(config.metrics_listen).await?;
    tracing::info!(listen = %listener.local_addr()?, metrics = %metrics_listener.local_addr()?, "serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_server = tokio::spawn(
        axum::serve(metrics_listener, metrics::router(state.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let app = router(state);
    let https = tokio::spawn(serve(listener, tls, app, config.limits(), stopped(stop_rx)));
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    https.await??;
    metrics_server.await??;
    sync.abort();
    reloader.abort();
    tls_reloader.abort();
    Ok(())
}

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use suyun_store::readmodel::{Keys, NodeRecord, SystemRecord, TenantRecord, WaveRecord};

    use crate::AppState;
    use crate::auth::TokenStore;

    /// 苏州 (320500, with 昆山 320583) and 南京 (320100): a node, a tenant and a system each,
    /// and one wave with systems of both.
    pub(crate) fn state() -> AppState {
        let state = AppState::new(Keys::default(), TokenStore::empty());
        let keys = &state.keys;
        let mut index = state.index.write().unwrap();
        for (i, (city, region)) in [("sz", "320583"), ("nj", "320100")].into_iter().enumerate() {
            let revision = 10 * (i as i64 + 1);
            let node = NodeRecord { name: city.into(), region_code: region.into(), ..Default::default() };
            index.put(keys, &keys.node(city), &serde_json::to_vec(&node).unwrap(), revision);
            let tenant = TenantRecord { name: format!("{city}-gov"), region_code: region.into(), ..Default::default() };
            index.put(keys, &keys.tenant(&tenant.name), &serde_json::to_vec(&tenant).unwrap(), revision + 1);
            let system = SystemRecord {
                system_id: format!("S-{city}"),
                tenant: format!("{city}-gov"),
                region_code: region.into(),
                phase: suyun_store::Phase::Scheduled.as_str().into(),
                ..Default::default()
            };
            index.put(keys, &keys.system(&system.system_id), &serde_json::to_vec(&system).unwrap(), revision + 2);
        }
        let counts = ["320583", "320100"].map(|r| (r.to_owned(), BTreeMap::from([("Scheduled".to_owned(), 1)])));
        let wave = WaveRecord { name: "w".into(), counts_by_region: counts.into(), ..Default::default() };
        index.put(keys, &keys.wave("w"), &serde_json::to_vec(&wave).unwrap(), 30);
        drop(index);
        state.health.mark_current();
        state
    }
}
