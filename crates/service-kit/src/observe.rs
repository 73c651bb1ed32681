//! The outermost middleware: a request id for every request, and one log
//! line and one metrics sample once its response is known.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::metrics::{Metrics, RequestLabels, RouteLabel, method_label};

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
    method: &'static str,
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
