//! items-api: the Items CRUD service that the service-demo pipeline ships.
//!
//! `main.rs` only reads configuration, sets up telemetry and calls [`serve`];
//! tests build the same [`app`] and spawn it on `127.0.0.1:0`.

pub mod config;
pub mod domain;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod routes;
pub mod shutdown;
pub mod store;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::routes::meta::VersionInfo;
use crate::shutdown::Readiness;
use crate::store::ItemStore;
use crate::telemetry::Metrics;

/// A request that takes longer than this is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything handlers share. Cheap to clone: all `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ItemStore>,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub version: Arc<VersionInfo>,
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
        }
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    use routes::{health, items, meta};
    let metrics = state.metrics.clone();
    Router::new()
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
        .with_state(state)
        // Layers run bottom-up on the way in: the request id is set first, so
        // the log line, the handler and the response all carry the same one.
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(error::problem_for_bare_errors))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(error::panic_to_problem))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            telemetry::observe,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains as
/// described in [`shutdown`], and returns once in-flight requests are done.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let readiness = state.readiness.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown::drain_after(shutdown, readiness, drain))
        .await
}
