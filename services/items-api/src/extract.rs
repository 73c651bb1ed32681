//! Request extractors whose rejections are problem details with the right status.
//!
//! axum's own `Json` answers 415/400/422 in plain text and names at most one
//! field; this one checks the media type, the size and the syntax itself and
//! hands field-level validation to the domain.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body deserialized into `T`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // `Bytes` honours the router's DefaultBodyLimit; its rejection for an
        // oversized body carries 413, anything else is a broken request.
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!(
                        "request body is larger than {MAX_BODY_BYTES} bytes"
                    ))
                } else {
                    ApiError::BadRequest(format!("could not read the request body: {rejection}"))
                }
            })?;
        // serde would happily read a struct from an array, positionally; the
        // API's bodies are objects, so anything else is a well-formed but
        // wrong document (422) or not JSON at all (400).
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                    Ok(_) => ApiError::Validation(vec![crate::domain::FieldError::new(
                        "body",
                        "must be a JSON object",
                    )]),
                    Err(err) => ApiError::BadRequest(format!("malformed JSON: {err}")),
                },
            );
        }
        let deserializer = &mut serde_json::Deserializer::from_slice(&body);
        match serde_path_to_error::deserialize(deserializer) {
            Ok(value) => Ok(Self(value)),
            Err(err) => Err(classify(err)),
        }
    }
}

/// Syntax errors are 400; a well-formed document of the wrong shape is 422 and
/// names the field, e.g. `name: invalid type: integer, expected a string`.
fn classify(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        Category::Data => ApiError::Validation(vec![crate::domain::FieldError::new(
            path,
            strip_position(&inner.to_string()),
        )]),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("malformed JSON: {inner}"))
        }
    }
}

/// serde_json appends " at line L column C", which is noise for a data error.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// `application/json` or any `application/*+json`, with optional parameters.
fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        let accepts = |v: &'static str| is_json(Some(&header::HeaderValue::from_static(v)));
        assert!(accepts("application/json"));
        assert!(accepts("Application/JSON; charset=utf-8"));
        assert!(accepts("application/merge-patch+json"));
        assert!(!accepts("text/plain"));
        assert!(!accepts("application/jsonx"));
        assert!(!is_json(None));
    }
}
