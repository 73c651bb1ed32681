//! items-api: the Items CRUD service that the service-demo pipeline ships.
//!
//! `main.rs` only reads configuration, sets up logging and calls [`serve`];
//! tests call the same [`serve`] on `127.0.0.1:0`.

pub mod config;
pub mod domain;
pub mod error;
pub mod extract;
pub mod routes;
pub mod store;

// What every service serves and how lives in the workspace's service-kit; its
// modules keep their paths here.
pub use service_kit::{healthcheck, logging, metrics, observe, server, shutdown, timeout};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use service_kit::{Kit, ReadinessCheck};

use crate::config::Config;
use crate::error::ApiError;
use crate::server::ServerLimits;
use crate::store::ItemStore;

/// A request that takes longer than this is answered 408 (the default of
/// `REQUEST_TIMEOUT_SECONDS`; see [`service_kit::REQUEST_TIMEOUT`]).
pub use service_kit::REQUEST_TIMEOUT;

/// Everything handlers share. Cheap to clone: all `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ItemStore>,
    /// The probes, version and metrics every service has; `/readyz` asks the store.
    pub kit: Kit,
    /// How long a request may take before it is answered 408.
    pub request_timeout: Duration,
}

impl AppState {
    pub fn new(config: &Config, store: Arc<dyn ItemStore>) -> Self {
        let ready = Arc::new(StoreReadiness(store.clone()));
        Self {
            store,
            kit: Kit::new(&config.service, ready),
            request_timeout: config.request_timeout,
        }
    }
}

/// service-kit's handlers read the kit out of items-api's state, so an items
/// route may use one (`get(service_kit::routes::version)`).
impl FromRef<AppState> for Kit {
    fn from_ref(state: &AppState) -> Kit {
        state.kit.clone()
    }
}

/// `/readyz` is 503 while the store is unavailable.
struct StoreReadiness(Arc<dyn ItemStore>);

#[async_trait::async_trait]
impl ReadinessCheck for StoreReadiness {
    async fn ready(&self) -> Result<(), String> {
        self.0
            .ready()
            .await
            .map_err(|error| ApiError::from(error).to_string())
    }
}

/// The whole HTTP application: service-kit's routes and middleware around
/// the items routes.
pub fn app(state: AppState) -> Router {
    use routes::{items, meta};
    let kit = state.kit.clone();
    let request_timeout = state.request_timeout;
    let routes = Router::new()
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
        .fallback(service_kit::problem::not_found)
        .with_state(state)
        .merge(service_kit::routes(kit.clone()));
    service_kit::middleware(
        routes,
        kit.metrics,
        request_timeout,
        extract::MAX_BODY_BYTES,
    )
}

/// Serves [`app`] on `listener` until `signal` resolves, then drains (see
/// [`service_kit::serve`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ServerLimits,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let readiness = state.kit.readiness.clone();
    service_kit::serve(listener, app(state), readiness, limits, signal).await
}
