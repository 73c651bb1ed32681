//! The request deadline: a request still unanswered this long after it
//! arrived (a client trickling its body, a stuck dependency) gets a 408
//! problem response instead of holding a connection and a task forever.
//!
//! Unlike `tower_http::timeout`, the timer is armed only when the handler does
//! not finish on its first poll. Arming a tokio timer costs more than it looks:
//! when the worker parked with no timer pending (the usual case for a server
//! whose handlers finish at once), registering one wakes the I/O driver with a
//! `write` to its eventfd, an extra system call per request. Most requests
//! here finish on their first poll and never touch the timer wheel; the rest
//! keep the same deadline, counted from when the request arrived.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::problem::problem_response;

/// Answers 408 to requests that take longer than `limit`.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer {
    limit: Duration,
}

impl RequestTimeoutLayer {
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`RequestTimeoutLayer`] wraps around the application.
#[derive(Clone, Debug)]
pub struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> Service<Request<B>> for RequestTimeout<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        TimeoutFuture {
            inner: self.inner.call(request),
            deadline: Instant::now() + self.limit,
            timer: None,
        }
    }
}

pin_project! {
    /// The response future of [`RequestTimeout`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        // Armed on the first poll that finds the handler still busy.
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<F, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The handler first: a response that is ready wins even at the deadline.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        if this.timer.is_none() {
            this.timer
                .set(Some(tokio::time::sleep_until(*this.deadline)));
        }
        let timer = this.timer.as_pin_mut().expect("armed above");
        match timer.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(problem_response(
                StatusCode::REQUEST_TIMEOUT,
                "the request took too long".to_owned(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use tower::ServiceExt;
    use tower::service_fn;

    use super::*;

    /// A handler that answers after `delay` (at once for zero).
    fn handler_taking(
        delay: Duration,
    ) -> impl Service<Request<Body>, Response = Response, Error = Infallible> + Clone {
        service_fn(move |_request: Request<Body>| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(Response::new(Body::from("done")))
        })
    }

    async fn status_after(delay: Duration, limit: Duration) -> (StatusCode, Duration) {
        let started = Instant::now();
        let response = RequestTimeoutLayer::new(limit)
            .layer(handler_taking(delay))
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        (response.status(), started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_handler_is_answered_as_it_is() {
        let (status, _) = status_after(Duration::ZERO, Duration::from_secs(30)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = status_after(Duration::from_secs(29), Duration::from_secs(30)).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_handler_gets_a_408_problem_at_the_deadline() {
        let (status, elapsed) =
            status_after(Duration::from_secs(60), Duration::from_secs(30)).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(elapsed, Duration::from_secs(30));
        let response = RequestTimeoutLayer::new(Duration::from_secs(1))
            .layer(handler_taking(Duration::from_secs(2)))
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            crate::problem::PROBLEM_CONTENT_TYPE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_arrival_not_from_the_first_poll() {
        let mut service = RequestTimeoutLayer::new(Duration::from_secs(30))
            .layer(handler_taking(Duration::from_secs(20)));
        let future = service.call(Request::new(Body::empty()));
        // Not polled for 15 s (a busy worker): 15 s are left, not 30.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let started = Instant::now();
        let response = future.await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(15));
    }
}
