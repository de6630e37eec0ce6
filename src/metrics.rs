//! Prometheus metrics (OpenMetrics text at `GET /metrics`).
//!
//! One [`Metrics`] handle in `AppState`; each metric is recorded next to the
//! code it measures. Label values are bounded: routes are templates, never
//! raw paths.
//!
//! Locking: the registry is only read (encoded) after start; the metric
//! families lock internally for the instant a label set is looked up.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The metrics of one server; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    /// The gateway seed's `http_requests_total{method,endpoint,status}`.
    http_requests: Family<HttpLabels, Counter>,
    /// The gateway seed's `http_request_duration_seconds{method,endpoint}`.
    http_duration: Family<HttpRouteLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRouteLabels {
    method: String,
    endpoint: String,
}

/// Latency buckets from 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpRouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration until the response head, by method and route template",
            http_duration.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            http_requests,
            http_duration,
        }))
    }

    /// Records one answered HTTP request. `endpoint` is the route template
    /// (`/api/v1/events/stream/{stream_id}`), or `unmatched`.
    pub fn http_request(&self, method: &str, endpoint: &str, status: u16, elapsed: Duration) {
        let inner = &self.0;
        inner
            .http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
        inner
            .http_duration
            .get_or_create(&HttpRouteLabels {
                method: method.to_owned(),
                endpoint: endpoint.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
