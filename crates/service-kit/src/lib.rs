//! service-kit: what every service of this workspace serves and how, so a
//! service's own crate holds only its own routes.
//!
//! - [`routes`]: `/healthz`, `/readyz` (with the service's [`ReadinessCheck`]),
//!   `/version` and `/metrics` (Prometheus text);
//! - [`middleware`]: a request id, one log line and one metrics sample per
//!   request ([`observe`]), a panic answered 500, the request deadline
//!   ([`timeout`]), problem+json for bare errors ([`problem`]), a body limit;
//! - [`config`]: the variables every service reads (`PORT`, `ENV_NAME`…),
//!   checked once at start; [`logging`];
//! - [`serve`]: the connection loop with its limits and the graceful shutdown
//!   of [`shutdown`]; [`healthcheck`]: the probe for images without curl.
//!
//! A service builds a [`Kit`] from its [`config::ServiceConfig`], merges
//! [`routes`] with its own, wraps them in [`middleware`] and calls [`serve`].

pub mod config;
pub mod healthcheck;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod problem;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod timeout;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::catch_panic::CatchPanicLayer;

pub use crate::config::ServiceConfig;
use crate::metrics::Metrics;
use crate::observe::ObserveLayer;
pub use crate::routes::{AlwaysReady, ReadinessCheck, VersionInfo, routes};
pub use crate::server::serve;
use crate::shutdown::Readiness;
use crate::timeout::RequestTimeoutLayer;

/// A request that takes longer than this is answered 408 (the default of
/// `REQUEST_TIMEOUT_SECONDS`). With the 5 s drain it stays under Kubernetes'
/// default 30 s grace period: a request accepted at the end of the drain
/// still finishes before the kubelet's SIGKILL.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest request body [`middleware`] lets a handler read, by default.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the kit's routes and middleware share. Cheap to clone: all `Arc`s.
#[derive(Clone)]
pub struct Kit {
    /// Set when shutdown begins: `/readyz` answers 503 from then on.
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub version: Arc<VersionInfo>,
    /// What else `/readyz` asks (a database, a queue): the service's own check.
    pub ready: Arc<dyn ReadinessCheck>,
}

impl Kit {
    pub fn new(config: &ServiceConfig, ready: Arc<dyn ReadinessCheck>) -> Self {
        Self {
            readiness: Readiness::default(),
            metrics: Arc::new(Metrics::default()),
            version: Arc::new(config.version_info()),
            ready,
        }
    }
}

/// The layers around every route, outermost first. The request id, log line
/// and metrics come first, so they see the final response whatever produced
/// it (a handler, the timeout, a panic).
///
/// They are applied as one `ServiceBuilder` stack: each `Router::layer` call
/// wraps every route in another boxed service, and the router clones a
/// route's whole box chain for every request (five separate calls cost about
/// 15 extra allocations per request). Every layer is a concrete tower service,
/// so nothing else is boxed or cloned per request.
pub fn middleware(
    routes: Router,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    max_body_bytes: usize,
) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(ObserveLayer::new(metrics))
            .layer(CatchPanicLayer::custom(problem::panic_to_problem))
            .layer(RequestTimeoutLayer::new(request_timeout))
            .layer(MapResponseLayer::new(problem::problem_for_bare_errors))
            .layer(DefaultBodyLimit::max(max_body_bytes)),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::get;
    use tokio::net::TcpListener;

    use super::*;

    /// No route of a service should panic, so this one is made up: a panic is
    /// a 500 problem that keeps its request id and is counted, and the server
    /// goes on serving.
    #[tokio::test]
    async fn a_panicking_handler_is_a_counted_500_problem() {
        let metrics = Arc::new(Metrics::default());
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let routes = Router::new().route("/boom", get(boom));
        let app = middleware(routes, metrics.clone(), REQUEST_TIMEOUT, MAX_BODY_BYTES);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/boom", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let client = reqwest::Client::new();
        for _ in 0..2 {
            let response = client
                .get(&url)
                .header("x-request-id", "boom-1")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                response.headers()["content-type"],
                problem::PROBLEM_CONTENT_TYPE
            );
            assert_eq!(response.headers()["x-request-id"], "boom-1");
            let problem: serde_json::Value = response.json().await.unwrap();
            assert_eq!(problem["detail"], "internal error");
        }
        let text = metrics.render();
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/boom",status="500"} 2"#),
            "{text}"
        );
    }
}
