//! The API suite against the in-memory store (the embedded default), and what
//! only that store has: a capacity.

mod common {
    pub mod api_suite;
}

use std::sync::Arc;

use common::api_suite::{Backend, TestApp, TestStore, assert_problem};
use items_api::store::{Capacity, MemoryStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Memory;

impl Backend for Memory {
    fn unavailable() -> Option<String> {
        None
    }

    async fn store() -> TestStore {
        TestStore {
            store: Arc::new(MemoryStore::new()),
            guard: Box::new(()),
        }
    }
}

api_suite!(Memory);

/// A store with room for three items, by count.
struct Tiny;

impl Backend for Tiny {
    fn unavailable() -> Option<String> {
        None
    }

    async fn store() -> TestStore {
        TestStore {
            store: Arc::new(MemoryStore::with_capacity(Capacity {
                items: 3,
                bytes: usize::MAX,
            })),
            guard: Box::new(()),
        }
    }
}

/// Full is a 507 problem that says what to do, changes nothing, and passes
/// once an item is deleted.
#[tokio::test]
async fn a_full_memory_store_is_a_507_problem_until_an_item_is_deleted() {
    let app = TestApp::spawn::<Tiny>().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(app.create_ok(&format!("item {n}")).await["id"].clone());
    }
    let full = assert_problem(
        app.create(json!({ "name": "one too many" })).await,
        StatusCode::INSUFFICIENT_STORAGE,
    )
    .await;
    assert!(
        full["detail"].as_str().unwrap().contains("delete items"),
        "{full}"
    );
    let (items, _) = app.list_all("/api/v1/items").await;
    assert_eq!(items.len(), 3);
    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/items/{}", ids[0].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    app.create_ok("room again").await;
}

/// The document is generated from the code; the snapshot shows every change to
/// the API's contract in review (the store does not change it).
#[tokio::test]
async fn openapi_document_matches_snapshot() {
    let app = TestApp::spawn::<Memory>().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    insta::assert_json_snapshot!("openapi", doc);
}
