//! Logs and metrics: the tracing subscriber, the Prometheus registry, and the
//! middleware that writes one log line and one metrics sample per request.

use std::borrow::Cow;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

/// Labels of both metrics. One value per request is built and borrowed by
/// both families (they clone it only the first time a label set is seen).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Cow<'static, str>,
    route: String,
    status: u16,
}

/// The service's Prometheus metrics. One per app, not a global, so tests can
/// run many apps in one process and read each one's numbers.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests handled, by route template, method and status",
            requests.clone(),
        );
        // 0.25 ms to ~4 s in doubling steps.
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.00025, 2.0, 15))) as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request received to response headers, by route template, method and status",
            latency.clone(),
        );
        Self {
            registry,
            requests,
            latency,
        }
    }
}

impl Metrics {
    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn observe(&self, labels: &RequestLabels, seconds: f64) {
        self.requests.get_or_create(labels).inc();
        self.latency.get_or_create(labels).observe(seconds);
    }
}

/// The standard methods without allocating; others (rare) are copied.
fn method_label(method: &axum::http::Method) -> Cow<'static, str> {
    use axum::http::Method;
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
    ];
    const NAMES: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
    match known.iter().position(|m| m == method) {
        Some(i) => Cow::Borrowed(NAMES[i]),
        None => Cow::Owned(method.as_str().to_owned()),
    }
}

/// Middleware: one log line and one metrics sample per request.
///
/// The route label is the matched template (`/api/v1/items/{id}`), never the
/// raw path, so metric cardinality stays bounded; unmatched paths share one label.
pub async fn observe(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Set by SetRequestIdLayer, which runs before this middleware.
    let request_id = request.headers().get("x-request-id").cloned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics.observe(&labels, elapsed.as_secs_f64());
    tracing::info!(
        target: "http",
        method = %labels.method,
        route = %labels.route,
        status = labels.status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
        "request"
    );
    response
}
