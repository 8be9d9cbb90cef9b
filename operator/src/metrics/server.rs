//! The metrics listener (plain HTTP, every replica): `GET /metrics` (text format 0.0.4),
//! `GET /healthz` (200 while the process runs) and `GET /readyz` (200 once the replica is a
//! standby, or a leader whose caches have synced; 503 before and while shutting down).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;
use tokio::net::TcpListener;

use super::Metrics;

/// What the replica is doing, as `/readyz` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Connecting to the Kubernetes API and starting the campaign (503).
    Starting = 0,
    /// Campaigning for the Lease while another replica leads (200).
    Standby = 1,
    /// Leading; the caches have not synced yet (503).
    Syncing = 2,
    /// Leading with synced caches (200).
    Leading = 3,
    /// Shutting down (503).
    Stopping = 4,
}

impl Readiness {
    pub(super) fn from_u8(v: u8) -> Readiness {
        match v {
            1 => Readiness::Standby,
            2 => Readiness::Syncing,
            3 => Readiness::Leading,
            4 => Readiness::Stopping,
            _ => Readiness::Starting,
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(self) -> bool {
        matches!(self, Readiness::Standby | Readiness::Leading)
    }

    /// The word `/readyz` answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::Standby => "standby",
            Readiness::Syncing => "syncing caches",
            Readiness::Leading => "leading",
            Readiness::Stopping => "stopping",
        }
    }
}

/// The metrics listener's router.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics)).with_graceful_shutdown(shutdown).await
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

async fn ready(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let readiness = metrics.readiness();
    let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, format!("{}\n", readiness.as_str()))
}
