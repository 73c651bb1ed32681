//! The API suite against the in-memory store (the embedded default).

use items_api::store::{ItemStore, MemoryStore};

async fn test_store() -> (
    std::sync::Arc<dyn ItemStore>,
    Box<dyn std::any::Any + Send + Sync>,
) {
    (std::sync::Arc::new(MemoryStore::new()), Box::new(()))
}

include!("common/api_suite.rs");

/// The document is generated from the code; the snapshot shows every change to
/// the API's contract in review (the store does not change it).
#[tokio::test]
async fn openapi_document_matches_snapshot() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    insta::assert_json_snapshot!("openapi", doc);
}
