//! Prometheus metrics, served on their own plain-HTTP listener: requests by route, method and
//! status, their latency, and the state of the status store.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::AppState;

/// The apiserver's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    store_up: IntGauge,
    stale_seconds: IntGauge,
    revision: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("suyun_apiserver_requests_total", "HTTP requests by route template, method and status code"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("suyun_apiserver_request_duration_seconds", "Time to produce a response, by route")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            &["route", "method"],
        )
        .expect("valid metric");
        let store_up = IntGauge::new("suyun_apiserver_store_up", "1 while the etcd watch is current, 0 while stale")
            .expect("valid metric");
        let stale_seconds =
            IntGauge::new("suyun_apiserver_store_stale_seconds", "Seconds since etcd was last heard, 0 when current")
                .expect("valid metric");
        let revision =
            IntGauge::new("suyun_apiserver_store_revision", "etcd revision the index reflects").expect("valid metric");
        let metrics = Metrics { registry, requests, duration, store_up, stale_seconds, revision };
        for collector in metrics.collectors() {
            metrics.registry.register(collector).expect("metric names are unique");
        }
        metrics
    }

    /// Every collector, in registration order.
    fn collectors(&self) -> [Box<dyn Collector>; 5] {
        [
            Box::new(self.requests.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.store_up.clone()),
            Box::new(self.stale_seconds.clone()),
            Box::new(self.revision.clone()),
        ]
    }

    /// Counts one response.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let code = StatusCode::from_u16(status).ok();
        let code_text;
        let status = match &code {
            Some(code) => code.as_str(),
            None => {
                code_text = status.to_string();
                &code_text
            }
        };
        self.requests.with_label_values(&[route, method, status]).inc();
        self.duration.with_label_values(&[route, method]).observe(seconds);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The name of every metric family the apiserver exports, as written in the text exposition:
/// a histogram contributes its `_bucket`, `_sum` and `_count` series. Derived from the
/// collectors themselves, so dashboards and alert rules can be checked against it.
pub fn exported_metric_names() -> Vec<String> {
    let metrics = Metrics::new();
    let mut names = Vec::new();
    for collector in metrics.collectors() {
        let types: Vec<MetricType> = collector.collect().iter().map(|family| family.get_field_type()).collect();
        for (desc, kind) in collector.desc().into_iter().zip(types) {
            let suffixes: &[&str] = match kind {
                MetricType::HISTOGRAM => &["_bucket", "_sum", "_count"],
                MetricType::SUMMARY => &["", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{}{suffix}", desc.fq_name)));
        }
    }
    names.sort();
    names
}

/// Middleware (route layer) that times and counts every matched request.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A clone of the matched path is a reference count, not a copy.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("", MatchedPath::as_str);
    state.metrics.observe(route, method.as_str(), response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// The metrics listener's router: `GET /metrics`.
pub fn router(state: AppState) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(state)
}

async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let stale = state.health.stale_seconds();
    state.metrics.store_up.set(i64::from(stale.is_none()));
    state.metrics.stale_seconds.set(stale.unwrap_or(0) as i64);
    state.metrics.revision.set(state.index.read().expect("index lock").revision);
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
