//! Every error the API returns is an RFC 9457 problem details JSON document.
//!
//! Handlers return [`ApiError`]; errors produced outside handlers (axum's 405,
//! a panic, the request timeout, an unknown path) get the same shape from
//! service-kit's middleware ([`service_kit::problem`]), so a client never sees
//! an empty or HTML error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::store::StoreError;

pub use service_kit::problem::PROBLEM_CONTENT_TYPE;

// service-kit's `service_kit::problem::Problem`, with the invalid fields.
/// The RFC 9457 body. `type` is `about:blank`, so `title` is the status phrase.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The invalid fields, for 422 responses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => Self::NotFound(format!("no item with id {id}")),
            StoreError::VersionMismatch { id, current } => Self::PreconditionFailed(format!(
                "item {id} changed since you read it: it is now at version {current} (ETag \"{current}\"); \
                 GET it again and retry with that If-Match"
            )),
            StoreError::Full(why) => Self::InsufficientStorage(format!(
                "{why}; nothing was written: delete items to make room (a retry alone will not help)"
            )),
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "store unavailable");
                Self::Unavailable("storage is unavailable, retry later".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = self.to_string();
        let errors = match self {
            Self::Validation(errors) => errors,
            _ => Vec::new(),
        };
        problem_response(status, detail, errors)
    }
}

/// Builds a problem response for any status.
pub fn problem_response(status: StatusCode, detail: String, errors: Vec<FieldError>) -> Response {
    let problem = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let body = serde_json::to_vec(&problem).expect("a Problem always serializes");
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
