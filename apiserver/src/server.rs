//! HTTPS: rustls (TLS 1.3 and 1.2 only, ring provider) in front of the axum router, with the
//! client certificate of each connection turned into an identity once, at the handshake.
//!
//! What one client can hold is bounded ([`Limits`]):
//!
//! * **connections**: at most `max_connections` at once. Further connections are not accepted
//!   until one closes: they wait in the kernel's listen backlog (and time out on the client's
//!   side) instead of costing a task, a TLS handshake and memory here.
//! * **TLS handshake**: completed within `handshake_timeout`, or the connection is closed.
//! * **request head** (HTTP/1.1): received within `header_read_timeout` of the connection's
//!   start or of the previous response (so it is also HTTP/1.1's keep-alive limit), or the
//!   connection is closed without an answer. This ends slowloris clients.
//! * **idle** (HTTP/1.1 and HTTP/2): a connection with no request in flight for
//!   `idle_timeout` is closed.
//! * **TLS settings**: when they change (a renewed certificate, a new CA bundle or CRL), open
//!   connections are closed gracefully, so a revoked client does not keep its connection.
//! * **request**: the body is read and the answer produced within `request_timeout`, else
//!   408 (body not received in time) or 503 (answer not ready in time).
//! * **body**: at most `max_body_bytes`, else 413; bodies are read whole before a handler runs.
//!
//! Every refusal with an answer is `application/problem+json`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as HttpBody, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::{Identity, identity_from_certificate};
use crate::problem::Problem;
pub use crate::tls::{ServerTls, certificates, tls_config};

/// The client certificate of the connection a request came on: `None` without one,
/// `Some(Err(why))` when its chain verified but its subject names no usable identity. Shared
/// by every request of the connection (each gets a reference, not a copy).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<Option<Result<Identity, String>>>);

/// How much one client may hold of the server; see the module documentation. The defaults
/// are the command line's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to receive an HTTP/1.1 request head (also the HTTP/1.1 keep-alive limit).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Time to read a request's body and answer it.
    pub request_timeout: Duration,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// How long open requests may go on after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then lets open requests
/// finish (at most `limits.shutdown_grace`). Each connection uses the TLS settings current
/// when it was accepted.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let app = app.layer(middleware::from_fn_with_state(limits, request_limits));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let shared = Arc::new(Shared {
        app,
        limits,
        http1: builder.clone().http1_only(),
        http2: builder.clone().http2_only(),
        auto: builder,
    });
    let max_connections = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let (closing_tx, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot?,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // Subscribed before the settings are read: a change after this point closes the
        // connection.
        let tls_changes = tls.changes();
        let acceptor = TlsAcceptor::from(tls.current());
        let shared = shared.clone();
        let closing = closing_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_one(tcp, peer, acceptor, &shared, closing, tls_changes).await;
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection gives its slot back within the grace period (see `serve_one`).
    let all = slots.acquire_many(max_connections);
    if tokio::time::timeout(limits.shutdown_grace + Duration::from_secs(1), all).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing");
    }
    Ok(())
}

/// One connection from its TLS handshake to its end. It is closed gracefully when it has been
/// idle for `idle_timeout`, when the TLS settings change (`tls_changes`) or when the server
/// shuts down, and dropped if it has not closed a grace period after that.
async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: &Shared,
    mut closing: watch::Receiver<bool>,
    mut tls_changes: watch::Receiver<u64>,
) {
    let limits = shared.limits;
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake refused"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    let connection = tls.get_ref().1;
    let builder = match connection.alpn_protocol() {
        Some(b"h2") => &shared.http2,
        Some(b"http/1.1") => &shared.http1,
        _ => &shared.auto,
    };
    let certificate = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| identity_from_certificate(leaf.as_ref()));
    let certificate = PeerCertificate(Arc::new(certificate));
    let activity = Arc::new(Activity::new());
    let requests = activity.clone();
    let app = shared.app.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(certificate.clone());
        request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        let in_flight = InFlight::start(&requests);
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    });
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut deadline: Option<Instant> = None;
    loop {
        let idle_check = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closing.wait_for(|c| *c), if deadline.is_none() => {
                connection.as_mut().graceful_shutdown();
                deadline = Some(Instant::now() + limits.shutdown_grace);
            }
            _ = tls_changes.changed(), if deadline.is_none() => {
                tracing::debug!(%peer, "closing a connection accepted under previous TLS settings");
                connection.as_mut().graceful_shutdown();
                deadline = Some(Instant::now() + limits.request_timeout);
            }
            () = tokio::time::sleep_until(idle_check), if deadline.is_none() => {
                if activity.idle_deadline(limits.idle_timeout) <= Instant::now() {
                    tracing::debug!(%peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    deadline = Some(Instant::now() + limits.request_timeout);
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                tracing::debug!(%peer, "connection did not close in time; dropping it");
                return;
            }
        }
    }
}

/// What every connection shares: the application, the limits, and the HTTP builders (with
/// ALPN the protocol is known and auto-detection, which would wait for the first bytes without
/// a deadline, is skipped).
#[derive(Debug)]
struct Shared {
    app: Router,
    limits: Limits,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

/// Requests in flight on one connection, and since when it has had none.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity { in_flight: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) }
    }

    /// When the connection will have been idle for `timeout` (later than now while a request is
    /// in flight; checked again then).
    fn idle_deadline(&self, timeout: Duration) -> Instant {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Instant::now() + timeout;
        }
        *self.idle_since.lock().expect("activity lock") + timeout
    }
}

/// One request in flight; the connection is idle again when the last one is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().expect("activity lock") = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The body-size limit and the request timeout, around the whole application.
async fn request_limits(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body_bytes as u64) {
        return Problem::payload_too_large(limits.max_body_bytes).into_response();
    }
    let deadline = Instant::now() + limits.request_timeout;
    let (parts, body) = request.into_parts();
    // Most requests (every GET) have no body: nothing to read, and no timer to set for it.
    if HttpBody::is_end_stream(&body) {
        return answer_by(deadline, limits, next.run(Request::from_parts(parts, body))).await;
    }
    let body = match tokio::time::timeout_at(deadline, Limited::new(body, limits.max_body_bytes).collect()).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Problem::payload_too_large(limits.max_body_bytes).into_response();
        }
        Ok(Err(e)) => return Problem::bad_request(format!("reading the request body: {e}")).into_response(),
        Err(_) => {
            return Problem::request_timeout(format!(
                "the request body was not received within {} ms",
                limits.request_timeout.as_millis()
            ))
            .into_response();
        }
    };
    answer_by(deadline, limits, next.run(Request::from_parts(parts, Body::from(body)))).await
}

/// The answer, or 503 when it is not ready by `deadline`.
async fn answer_by(deadline: Instant, limits: Limits, answer: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(response) => response,
        Err(_) => Problem::server_timeout(format!("no answer within {} ms", limits.request_timeout.as_millis()))
            .into_response(),
    }
}
