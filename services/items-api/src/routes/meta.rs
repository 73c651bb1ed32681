//! About the running service: version, metrics and its OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::AppState;

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Release version (`APP_VERSION`, or the crate version).
    pub version: String,
    /// Source commit the binary was built from.
    pub git_commit: String,
    /// The environment this instance runs in (`ENV_NAME`).
    pub env_name: String,
    /// `SERVICES_NAMESPACE`.
    pub services_namespace: String,
}

/// Which build runs here, and where.
#[utoipa::path(get, path = "/version", tag = "meta",
    responses((status = 200, description = "Build and environment", body = VersionInfo)))]
pub async fn version(State(state): State<AppState>) -> Json<VersionInfo> {
    Json(state.version.as_ref().clone())
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This document, generated from the handlers and types in the code.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "items-api",
        description = "Items CRUD service deployed by the service-demo GitOps pipeline"
    ),
    paths(
        crate::routes::health::healthz,
        crate::routes::health::readyz,
        crate::routes::items::list_items,
        crate::routes::items::create_item,
        crate::routes::items::get_item,
        crate::routes::items::update_item,
        crate::routes::items::delete_item,
        version,
        metrics,
        openapi,
    ),
    components(schemas(
        crate::domain::Item,
        crate::domain::ItemInput,
        crate::error::Problem,
        crate::domain::FieldError
    ))
)]
pub struct ApiDoc;
