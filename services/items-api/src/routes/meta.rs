//! The OpenAPI document: the items routes and service-kit's probes, version
//! and metrics.

use axum::Json;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

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
        service_kit::routes::healthz,
        service_kit::routes::readyz,
        crate::routes::items::list_items,
        crate::routes::items::create_item,
        crate::routes::items::get_item,
        crate::routes::items::update_item,
        crate::routes::items::delete_item,
        service_kit::routes::version,
        service_kit::routes::metrics,
        openapi,
    ),
    components(schemas(
        crate::domain::Item,
        crate::domain::ItemInput,
        crate::error::Problem,
        crate::domain::FieldError
    )),
    modifiers(&ReadinessAsksTheStore, &ErrorsEveryOperationMayAnswer)
)]
pub struct ApiDoc;

/// service-kit's `/readyz` asks items-api's store: what its 503 means here.
struct ReadinessAsksTheStore;

impl Modify for ReadinessAsksTheStore {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(operation) = openapi
            .paths
            .paths
            .get_mut("/readyz")
            .and_then(|item| item.get.as_mut())
        else {
            return;
        };
        operation.summary =
            Some("Readiness: 503 while shutting down or while the store is unavailable.".into());
        add_problem(operation, "503", "Draining or store unavailable");
    }
}

/// The error statuses that do not come from one handler's own checks, added
/// to every operation they can happen to, so the document lists every status
/// the server answers (the fuzzer in `tests/contract.rs` holds it to that):
///
/// - 408: the request timeout, any request (a slow client, a stuck store);
/// - 500: a panic, caught and answered by the middleware, any request;
/// - 503: the store is unavailable (PostgreSQL down), every item operation;
/// - 507: the in-memory store is full, creates and updates (an update may
///   make an item bigger).
struct ErrorsEveryOperationMayAnswer;

impl Modify for ErrorsEveryOperationMayAnswer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let store = path.starts_with(crate::routes::items::ITEMS_PATH);
            let PathItem {
                get,
                put,
                post,
                delete,
                ..
            } = item;
            for (operation, writes) in [(get, false), (put, true), (post, true), (delete, false)] {
                let Some(operation) = operation else { continue };
                add_problem(
                    operation,
                    "408",
                    "The request took longer than the request timeout (REQUEST_TIMEOUT_SECONDS, default 20 s)",
                );
                add_problem(
                    operation,
                    "500",
                    "An unexpected error (a bug); the server goes on serving",
                );
                if store {
                    add_problem(operation, "503", "The store is unavailable; retry later");
                }
                if store && writes {
                    add_problem(
                        operation,
                        "507",
                        "The in-memory store is full; delete items to make room (retrying alone will not help)",
                    );
                }
            }
        }
    }
}

/// Documents `status` as a problem+json answer of `operation`, unless the
/// operation already says more about it.
fn add_problem(operation: &mut Operation, status: &str, description: &str) {
    let problem = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(crate::error::PROBLEM_CONTENT_TYPE, problem)
                .build()
                .into()
        });
}
