//! `/api/v1/items`: the CRUD resource.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Item, ItemInput};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::store::Cursor;

pub const ITEMS_PATH: &str = "/api/v1/items";
/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Lists items in creation order, one page at a time. The next page, when
/// there is one, is in the `Link` header (`rel="next"`).
#[utoipa::path(get, path = "/api/v1/items", tag = "items",
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 1000,
            description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, nullable = false, pattern = r"^[0-9a-fA-F]{32}$",
            description = "Opaque cursor from a previous page's Link header (an item id without hyphens)"),
    ),
    responses(
        (status = 200, description = "A page of items", body = [Item],
            headers(("link" = String, description = "`<…>; rel=\"next\"` when more items exist"))),
        (status = 400, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_items(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (limit, cursor) = parse_list_query(query.as_deref().unwrap_or(""))?;
    let page = state.store.list(cursor, limit).await?;
    let mut headers = HeaderMap::new();
    if let Some(Cursor(after)) = page.next {
        let link = format!(
            "<{ITEMS_PATH}?limit={limit}&cursor={}>; rel=\"next\"",
            after.simple()
        );
        headers.insert(
            header::LINK,
            HeaderValue::from_str(&link).expect("ASCII link"),
        );
    }
    Ok((headers, json_body(page.json)).into_response())
}

/// A JSON body that is already rendered.
fn json_body(json: Bytes) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
}

/// One item's JSON with its `ETag`: the version, which `If-Match` sends back.
fn item_response(item: Item) -> impl IntoResponse {
    ([(header::ETAG, etag(item.version))], Json(item))
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("ASCII")
}

/// The version `If-Match` asks for: `None` without the header or with `*`
/// (any current version). ETags are strong (`"3"`); a weak one never matches
/// (RFC 9110 §13.1.1), so it is refused with the reason.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("").trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "If-Match {value:?} is not an ETag of this API: send the ETag header of the item's last GET, e.g. \"3\""
            ))
        })
}

fn parse_list_query(query: &str) -> Result<(usize, Option<Cursor>), ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "query parameter `limit` must be a whole number from 1 to {MAX_LIMIT}, got {value:?}"
                        ))
                    })?;
            }
            "cursor" => {
                let id = Uuid::try_parse(&value).map_err(|_| {
                    ApiError::BadRequest(
                        "query parameter `cursor` is not a cursor from this API; use the Link header of the previous page".into(),
                    )
                })?;
                cursor = Some(Cursor(id));
            }
            // Unknown parameters are ignored, as most HTTP APIs do.
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// Creates an item; its URL is in `Location`.
#[utoipa::path(post, path = "/api/v1/items", tag = "items",
    request_body(content = ItemInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Item, headers(("location" = String))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_item(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<ItemInput>,
) -> Result<Response, ApiError> {
    let new = input.validate().map_err(ApiError::Validation)?;
    let item = state.store.create(new).await?;
    let location = format!("{ITEMS_PATH}/{}", item.id);
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            HeaderValue::from_str(&location).expect("ASCII path"),
        )],
        item_response(item),
    )
        .into_response())
}

/// Gets one item.
#[utoipa::path(get, path = "/api/v1/items/{id}", tag = "items",
    params(("id" = Uuid, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = Item,
            headers(("etag" = String, description = "The item's version, for `If-Match` on PUT and DELETE"))),
        (status = 404, description = "No such item, or the id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(item_response(state.store.get(parse_id(&id)?).await?))
}

/// Replaces an item's name and description; with `If-Match`, only if nobody
/// changed it since that ETag was read.
#[utoipa::path(put, path = "/api/v1/items/{id}", tag = "items",
    params(("id" = Uuid, Path, description = "Item id"),
        ("if-match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|"[0-9]{1,19}")$"#,
            description = "ETag of the version this write replaces (`\"3\"`), or `*`")),
    request_body(content = ItemInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated item", body = Item),
        (status = 400, description = "Malformed JSON, or If-Match is not an ETag of this API", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The item changed since the If-Match ETag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ItemInput>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let new = input.validate().map_err(ApiError::Validation)?;
    Ok(item_response(state.store.update(id, new, expected).await?))
}

/// Deletes an item; with `If-Match`, only if nobody changed it since.
#[utoipa::path(delete, path = "/api/v1/items/{id}", tag = "items",
    params(("id" = Uuid, Path, description = "Item id"),
        ("if-match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|"[0-9]{1,19}")$"#,
            description = "ETag of the version this delete removes (`\"3\"`), or `*`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "If-Match is not an ETag of this API", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The item changed since the If-Match ETag", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state.store.delete(id, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An id that is not a UUID names no item, so it is a 404 like any unknown id
/// (the reference API answers the same way), with a detail that says why.
fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw)
        .map_err(|_| ApiError::NotFound(format!("no item with id {raw:?}: item ids are UUIDs")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_defaults_and_bounds() {
        assert_eq!(parse_list_query("").unwrap(), (DEFAULT_LIMIT, None));
        assert_eq!(parse_list_query("limit=1000").unwrap().0, 1000);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=ten",
            "cursor=nope",
        ] {
            assert!(parse_list_query(bad).is_err(), "{bad} accepted");
        }
    }
}
