//! The API suite against a real PostgreSQL (a server of its own per test), and
//! what only a database has: migrations, and an outage in the middle of traffic.

mod common {
    pub mod postgres;
}

use common::postgres::PgServer;
use items_api::config::DatabaseConfig;
use items_api::store::{ItemStore, MemoryStore, PostgresStore, migrate};

fn database(server: &PgServer) -> DatabaseConfig {
    let url = server.url();
    Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))
        .unwrap()
        .database
        .unwrap()
}

/// A migrated database on a fresh server; off CI without PostgreSQL, the
/// in-memory store (the skip is said loudly by `PgServer::start`).
async fn test_store() -> (
    std::sync::Arc<dyn ItemStore>,
    Box<dyn std::any::Any + Send + Sync>,
) {
    let Some(server) = PgServer::start() else {
        return (std::sync::Arc::new(MemoryStore::new()), Box::new(()));
    };
    let config = database(&server);
    migrate(&config).await.unwrap();
    (
        std::sync::Arc::new(PostgresStore::new(&config).unwrap()),
        Box::new(server),
    )
}

include!("common/api_suite.rs");

#[tokio::test]
async fn migrations_apply_once_and_rerun_as_a_no_op() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let config = database(&server);
    assert_eq!(migrate(&config).await.unwrap(), ["0001_create_items"]);
    assert!(migrate(&config).await.unwrap().is_empty());
    // Concurrent runs (two hook Jobs) serialize on the advisory lock.
    let (a, b) = tokio::join!(migrate(&config), migrate(&config));
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_503_while_down_and_loses_nothing() {
    let Some(mut server) = PgServer::start() else {
        return;
    };
    let config = database(&server);
    migrate(&config).await.unwrap();
    let app_config = Config::from_lookup(|_| None).unwrap();
    let state = AppState::new(&app_config, Arc::new(PostgresStore::new(&config).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let created: Value = client
        .post(format!("{base}/api/v1/items"))
        .json(&json!({ "name": "survives" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/items/{}", created["id"].as_str().unwrap());

    server.stop();
    // Reads and readiness fail fast with 503; liveness does not depend on the database.
    let down = get(&path).await.unwrap();
    assert_problem(down, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        get("/readyz").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);

    server.start_again();
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    let back: Value = get(&path).await.unwrap().json().await.unwrap();
    assert_eq!(back, created);
}
