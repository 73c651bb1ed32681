//! Kubernetes probes: liveness says the process works, readiness says it
//! should get traffic now.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` when healthy.
    pub status: &'static str,
}

/// Liveness: answers as long as the process can serve HTTP. It never depends on
/// the store, so an outage elsewhere does not make Kubernetes restart every pod.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = HealthStatus)))]
pub async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus { status: "ok" })
}

/// Readiness: 503 while shutting down or while the store is unavailable.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready for traffic", body = HealthStatus),
        (status = 503, description = "Draining or store unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<HealthStatus>), ApiError> {
    if state.readiness.is_draining() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    state.store.ready().await?;
    Ok((StatusCode::OK, Json(HealthStatus { status: "ok" })))
}
