//! Logs and metrics: the tracing subscriber, the Prometheus registry, and the
//! middleware that writes one log line and one metrics sample per request.

use std::borrow::Cow;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response};
use pin_project_lite::pin_project;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tower::{Layer, Service};
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
    route: RouteLabel,
    status: u16,
}

/// The matched route template (`/api/v1/items/{id}`), never the raw path, so
/// metric cardinality stays bounded; unmatched paths share one value. It
/// holds axum's `MatchedPath` (a shared string) so labelling a request
/// copies no text.
#[derive(Debug, Clone)]
struct RouteLabel(Option<MatchedPath>);

impl RouteLabel {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl Hash for RouteLabel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
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
fn method_label(method: &Method) -> Cow<'static, str> {
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

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's `x-request-id`, or a new UUID v4 when there is none.
fn request_id(headers: &axum::http::HeaderMap) -> HeaderValue {
    if let Some(given) = headers.get(&X_REQUEST_ID) {
        return given.clone();
    }
    // Hyphenated on the stack, then one copy into the header value.
    let mut text = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

/// The outermost layer: gives every request an id (the caller's
/// `x-request-id` or a new one) that the response carries back, and records
/// one log line and one metrics sample once the response is known.
///
/// A hand-written service rather than `axum::middleware::from_fn`: that one
/// boxes a future and clones the inner service on every request, which was a
/// measurable share of a small request's cost (README, Benchmarks).
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`ObserveLayer`] wraps around the application.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, ResBody> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let seen = Seen {
            started: Instant::now(),
            method: method_label(request.method()),
            // Set by the router before the route's layers run.
            route: RouteLabel(request.extensions().get::<MatchedPath>().cloned()),
            request_id: request_id(request.headers()),
            metrics: self.metrics.clone(),
        };
        ObserveFuture {
            inner: self.inner.call(request),
            seen: Some(seen),
        }
    }
}

/// What [`Observe`] noted about a request before handing it on.
struct Seen {
    started: Instant,
    method: Cow<'static, str>,
    route: RouteLabel,
    request_id: HeaderValue,
    metrics: Arc<Metrics>,
}

pin_project! {
    /// The response future of [`Observe`].
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        // Taken when the response is ready.
        seen: Option<Seen>,
    }
}

impl<F, E, ResBody> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            other => return other,
        };
        let seen = this.seen.take().expect("polled after completion");
        let elapsed = seen.started.elapsed();
        let labels = RequestLabels {
            method: seen.method,
            route: seen.route,
            status: response.status().as_u16(),
        };
        seen.metrics.observe(&labels, elapsed.as_secs_f64());
        tracing::info!(
            target: "http",
            method = %labels.method,
            route = labels.route.as_str(),
            status = labels.status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = seen.request_id.to_str().unwrap_or("-"),
            "request"
        );
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), seen.request_id);
        Poll::Ready(Ok(response))
    }
}
