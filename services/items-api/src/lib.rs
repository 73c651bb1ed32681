//! items-api: the Items CRUD service that the service-demo pipeline ships.
//!
//! `main.rs` only reads configuration, sets up logging and calls [`serve`];
//! tests call the same [`serve`] on `127.0.0.1:0`.

pub mod config;
pub mod domain;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod timeout;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::observe::ObserveLayer;
use crate::routes::meta::VersionInfo;
use crate::shutdown::Readiness;
use crate::store::ItemStore;
use crate::timeout::RequestTimeoutLayer;

/// A request that takes longer than this is answered 408 (the default of
/// `REQUEST_TIMEOUT_SECONDS`). With the 5 s drain it stays under Kubernetes'
/// default 30 s grace period: a request accepted at the end of the drain
/// still finishes before the kubelet's SIGKILL.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything handlers share. Cheap to clone: all `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ItemStore>,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub version: Arc<VersionInfo>,
    /// How long a request may take before it is answered 408.
    pub request_timeout: Duration,
}

impl AppState {
    pub fn new(config: &Config, store: Arc<dyn ItemStore>) -> Self {
        Self {
            store,
            readiness: Readiness::default(),
            metrics: Arc::new(Metrics::default()),
            version: Arc::new(VersionInfo {
                version: config.app_version.clone(),
                git_commit: config.git_commit.clone(),
                env_name: config.env_name.clone(),
                services_namespace: config.services_namespace.clone(),
            }),
            request_timeout: config.request_timeout,
        }
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    use routes::{health, items, meta};
    let metrics = state.metrics.clone();
    let request_timeout = state.request_timeout;
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/version", get(meta::version))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi))
        .route(
            items::ITEMS_PATH,
            get(items::list_items).post(items::create_item),
        )
        .route(
            "/api/v1/items/{id}",
            get(items::get_item)
                .put(items::update_item)
                .delete(items::delete_item),
        )
        .fallback(error::not_found)
        .with_state(state);
    with_middleware(routes, metrics, request_timeout)
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
fn with_middleware(routes: Router, metrics: Arc<Metrics>, request_timeout: Duration) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(ObserveLayer::new(metrics))
            .layer(CatchPanicLayer::custom(error::panic_to_problem))
            .layer(RequestTimeoutLayer::new(request_timeout))
            .layer(MapResponseLayer::new(error::problem_for_bare_errors))
            .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES)),
    )
}

pub use server::serve;

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use tokio::net::TcpListener;

    use super::*;

    /// No route of the service panics, so this one is made up: a panic is a
    /// 500 problem that keeps its request id and is counted, and the server
    /// goes on serving.
    #[tokio::test]
    async fn a_panicking_handler_is_a_counted_500_problem() {
        let metrics = Arc::new(Metrics::default());
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let routes = Router::new().route("/boom", get(boom));
        let app = with_middleware(routes, metrics.clone(), REQUEST_TIMEOUT);
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
                error::PROBLEM_CONTENT_TYPE
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
