//! Errors as RFC 9457 problem details JSON documents, for the answers the kit
//! and its middleware give: a 404 for a path no route matches, axum's 405 or
//! any other bare error a layer answers ([`problem_for_bare_errors`]), a panic
//! ([`panic_to_problem`]), the request timeout's 408 and `/readyz`'s 503. So a
//! client never sees an empty or HTML error body.

use std::any::Any;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The RFC 9457 body. `type` is `about:blank`, so `title` is the status phrase.
/// (A service whose problems carry more, such as invalid fields, adds its own
/// members after these.)
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: String) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
        }
    }
}

/// A problem response for any status.
pub fn problem_response(status: StatusCode, detail: String) -> Response {
    let body =
        serde_json::to_vec(&Problem::new(status, detail)).expect("a Problem always serializes");
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

/// Gives an error response without a body type (axum's 405, or any other a
/// layer answers bare) a problem body, keeping its status and headers (such
/// as `Allow`).
/// Applied to every response with `tower::util::MapResponseLayer`.
pub fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("method not allowed here; allowed: {allowed}")
        }
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (mut parts, _) = response.into_parts();
    let problem = problem_response(status, detail);
    parts.headers.extend(problem.headers().clone());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, problem.into_body())
}

/// `CatchPanicLayer` handler: a panic in a handler is a logged 500, not a dropped connection.
pub fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    problem_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}

/// Fallback for paths no route matches.
pub async fn not_found(request: axum::extract::Request) -> Response {
    problem_response(
        StatusCode::NOT_FOUND,
        format!("no route for {}", request.uri().path()),
    )
}
