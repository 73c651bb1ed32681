//! The routes every service answers: Kubernetes' probes (liveness says the
//! process works, readiness says it should get traffic now), which build runs
//! where, and its metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Kit;
use crate::problem::problem_response;

/// `/healthz`, `/readyz`, `/version` and `/metrics`, answered from `kit`. A
/// service merges them with its own routes, then wraps the whole in
/// [`crate::middleware`].
pub fn routes(kit: Kit) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(kit)
}

/// What `/readyz` asks the service besides "not shutting down": whether what
/// it depends on (its database) can serve now. Asked on every probe (every
/// 2 s per replica), so it should answer within a second.
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// `Err(detail)`: not ready; `/readyz` answers 503 with this detail.
    async fn ready(&self) -> Result<(), String>;
}

/// For a service that depends on nothing: ready until shutdown begins.
pub struct AlwaysReady;

#[async_trait::async_trait]
impl ReadinessCheck for AlwaysReady {
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

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

/// Readiness: 503 while shutting down or while the service's readiness check fails.
// A service documents the 503 with its own problem schema (the kit's handlers
// name no schema the service's document does not own), and may say what its
// check asks in the summary.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready for traffic", body = HealthStatus)))]
pub async fn readyz(State(kit): State<Kit>) -> Response {
    if kit.readiness.is_draining() {
        return problem_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    }
    match kit.ready.ready().await {
        Ok(()) => (StatusCode::OK, Json(HealthStatus { status: "ok" })).into_response(),
        Err(detail) => problem_response(StatusCode::SERVICE_UNAVAILABLE, detail),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The service (its crate's name): which service answered.
    pub service: String,
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
pub async fn version(State(kit): State<Kit>) -> Json<VersionInfo> {
    Json(kit.version.as_ref().clone())
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(kit): State<Kit>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        kit.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use super::*;
    use crate::config::{Build, Env, ServiceConfig};

    /// A dependency that is down.
    struct DatabaseDown;

    #[async_trait::async_trait]
    impl ReadinessCheck for DatabaseDown {
        async fn ready(&self) -> Result<(), String> {
            Err("the database is unavailable, retry later".into())
        }
    }

    /// `routes` over TCP with `ready` as the service's check: its base URL and kit.
    async fn serve(ready: Arc<dyn ReadinessCheck>) -> (String, Kit) {
        let build = Build {
            service: "kit-test",
            default_port: 8080,
            version: "1.0.0",
            git_commit: Some("abc1234"),
        };
        let config = ServiceConfig::read(&Env(|_: &str| None), build).unwrap();
        let kit = Kit::new(&config, ready);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = routes(kit.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, kit)
    }

    #[tokio::test]
    async fn readiness_is_the_services_check_and_503_while_draining() {
        let (url, _) = serve(Arc::new(DatabaseDown)).await;
        let response = reqwest::get(format!("{url}/readyz")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()["content-type"],
            crate::problem::PROBLEM_CONTENT_TYPE
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            problem["detail"],
            "the database is unavailable, retry later"
        );
        let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
        assert_eq!(
            health.status(),
            StatusCode::OK,
            "liveness never asks the check"
        );

        let (url, kit) = serve(Arc::new(AlwaysReady)).await;
        let ready = reqwest::get(format!("{url}/readyz")).await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
        kit.readiness.start_draining();
        let draining = reqwest::get(format!("{url}/readyz")).await.unwrap();
        assert_eq!(draining.status(), StatusCode::SERVICE_UNAVAILABLE);
        let problem: serde_json::Value = draining.json().await.unwrap();
        assert_eq!(problem["detail"], "shutting down");
        let version: serde_json::Value = reqwest::get(format!("{url}/version"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (version["version"].as_str(), version["gitCommit"].as_str()),
            (Some("1.0.0"), Some("abc1234"))
        );
    }
}
