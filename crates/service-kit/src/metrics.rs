//! The Prometheus registry: requests counted and timed by method, route
//! template and status. Every label has a bounded set of values, so a client
//! cannot grow the registry (README, items-api: bounds).

use std::hash::{Hash, Hasher};

use axum::extract::MatchedPath;
use axum::http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of both metrics. One value per request is built and borrowed by
/// both families (they clone it only the first time a label set is seen).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) method: &'static str,
    pub(crate) route: RouteLabel,
    pub(crate) status: u16,
}

/// The matched route template (`/api/v1/items/{id}`), never the raw path, so
/// metric cardinality stays bounded; unmatched paths share one value,
/// `unmatched`. It
/// holds axum's `MatchedPath` (a shared string) so labelling a request
/// copies no text.
#[derive(Debug, Clone)]
pub(crate) struct RouteLabel(pub(crate) Option<MatchedPath>);

impl RouteLabel {
    pub(crate) fn as_str(&self) -> &str {
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

    pub(crate) fn observe(&self, labels: &RequestLabels, seconds: f64) {
        self.requests.get_or_create(labels).inc();
        self.latency.get_or_create(labels).observe(seconds);
    }
}

/// The method's label: the standard methods by name, every other method
/// `_OTHER` (as OpenTelemetry's HTTP conventions do). A client chooses the
/// method, so copying it would let it add label sets without bound.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_number_of_unknown_methods_is_one_label_set() {
        let metrics = Metrics::default();
        for n in 0..1000 {
            let method = Method::from_bytes(format!("M{n}").as_bytes()).unwrap();
            let labels = RequestLabels {
                method: method_label(&method),
                route: RouteLabel(None),
                status: 405,
            };
            metrics.observe(&labels, 0.001);
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"http_requests_total{method="_OTHER",route="unmatched",status="405"} 1000"#
            ),
            "{text}"
        );
        assert!(!text.contains("M999"), "{text}");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
