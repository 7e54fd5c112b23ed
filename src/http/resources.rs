//! Resource routes: read (with ETag), metadata PATCH and conditional DELETE under the write
//! rule, and history.

use axum::extract::{Path, State};
use axum::http::header::ETAG;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authz;
use crate::coordinator::{Deleted, Resource};
use crate::domain::etag::etag;
use crate::domain::metadata::{MetadataPatch, PatchError};

use super::AppState;
use super::extract::{self, JsonBytes};
use super::leases::page_limit;
use super::problem::Problem;
use super::wire::{
    DeleteIn, DeletingOut, HistoryEntryOut, HistoryListOut, MetadataPatchIn, ProblemOut,
    ResourceOut,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_resource, delete_resource))
        .routes(routes!(patch_metadata))
        .routes(routes!(history))
}

/// The resource with its `ETag` header.
fn with_etag(status: StatusCode, resource: Resource) -> Response {
    let tag = etag(resource.state.version);
    let mut response = (status, Json(ResourceOut::from(resource))).into_response();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(ETAG, tag);
    }
    response
}

/// Read a resource.
///
/// Its version (also the strong `ETag`), metadata, active lease and last fencing token.
/// `If-None-Match` with the current ETag answers 304.
#[utoipa::path(
    get,
    path = "/v1/resources/{type}/{guid}",
    tag = "resources",
    params(
        ("type" = String, Path, description = "CF v3 resource collection, e.g. `routes`"),
        ("guid" = String, Path, description = "The resource's GUID"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) the client has"),
    ),
    responses(
        (status = 200, body = ResourceOut, headers(("ETag" = String))),
        (status = 304, description = "Not modified", headers(("ETag" = String))),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 410, description = "`resource-deleted`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn get_resource(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path((resource_type, guid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let key = extract::resource_key(&resource_type, &guid)?;
    let if_none_match = extract::if_none_match(&headers)?;
    let resource = state
        .coordinator
        .resource(key, &extract::caller(&headers, authz.clone()))
        .await?;
    if if_none_match
        .is_some_and(|tags| tags.matches_weakly(resource.state.version, resource.state.version > 0))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(tag) = HeaderValue::from_str(&etag(resource.state.version)) {
            response.headers_mut().insert(ETAG, tag);
        }
        return Ok(response);
    }
    Ok(with_etag(StatusCode::OK, resource))
}

/// Change a resource's labels and annotations.
///
/// Cloud Controller's merge semantics (null removes a key) and validation, under the write
/// rule: `Fencing-Token` when a lease is active, optional `If-Match` and `expect`.
#[utoipa::path(
    patch,
    path = "/v1/resources/{type}/{guid}/metadata",
    tag = "resources",
    params(
        ("type" = String, Path, description = "CF v3 resource collection"),
        ("guid" = String, Path, description = "The resource's GUID"),
        ("If-Match" = Option<String>, Header, description = "The ETag the change is based on, or `*`"),
        ("Fencing-Token" = Option<u64>, Header, description = "The active lease's fencing token"),
    ),
    request_body = MetadataPatchIn,
    responses(
        (status = 200, description = "Applied (or nothing to change)", body = ResourceOut, headers(("ETag" = String))),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 409, description = "`stale-fencing-token`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 410, description = "`resource-deleted`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed` (with the current `ETag`) or `expectation-failed`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 413, body = ProblemOut, content_type = "application/problem+json"),
        (status = 415, body = ProblemOut, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-metadata`, in Cloud Controller's words", body = ProblemOut, content_type = "application/problem+json"),
        (status = 423, description = "`resource-locked`: a lease is active and no token was sent", body = ProblemOut, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 503, body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn patch_metadata(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path((resource_type, guid)): Path<(String, String)>,
    headers: HeaderMap,
    body: JsonBytes,
) -> Result<Response, Problem> {
    let key = extract::resource_key(&resource_type, &guid)?;
    let input: MetadataPatchIn = body.parse()?;
    let pre = extract::preconditions(&headers, input.expect)?;
    let patch = MetadataPatch::parse(&input.metadata).map_err(|e| match e {
        PatchError::NotAString { kind, key } => Problem::invalid_request(format!(
            "metadata.{}.{key}: values must be strings or null",
            kind.as_str()
        )),
        PatchError::ContainsNul { kind, key } => Problem::invalid_request(format!(
            "metadata.{}.{key}: keys and values must not contain NUL characters",
            kind.as_str()
        )),
        PatchError::Invalid(messages) => Problem::invalid_metadata(messages),
    })?;
    let resource = state
        .coordinator
        .patch_metadata(key, &patch, &pre, &extract::caller(&headers, authz.clone()))
        .await?;
    Ok(with_etag(StatusCode::OK, resource))
}

/// Delete a resource, conditionally.
///
/// The same write rule and headers as the metadata PATCH, optional body `{"expect"}`.
/// Afterwards the resource answers 410 `resource-deleted`; its history stays readable.
#[utoipa::path(
    delete,
    path = "/v1/resources/{type}/{guid}",
    tag = "resources",
    params(
        ("type" = String, Path, description = "CF v3 resource collection"),
        ("guid" = String, Path, description = "The resource's GUID"),
        ("If-Match" = Option<String>, Header, description = "The ETag the delete is based on, or `*`"),
        ("Fencing-Token" = Option<u64>, Header, description = "The active lease's fencing token"),
    ),
    request_body(content = Option<DeleteIn>, description = "Optional"),
    responses(
        (status = 204, description = "Deleted"),
        (status = 202, description = "Cloud Controller's delete job was still running when leasehold stopped waiting; the resource is tombstoned", body = DeletingOut),
        (status = 405, description = "`method-not-allowed`: Cloud Controller cannot delete this type", body = ProblemOut, content_type = "application/problem+json"),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 409, description = "`stale-fencing-token`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 410, description = "`resource-deleted`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed` or `expectation-failed`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 423, description = "`resource-locked`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn delete_resource(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path((resource_type, guid)): Path<(String, String)>,
    headers: HeaderMap,
    body: JsonBytes,
) -> Result<Response, Problem> {
    let key = extract::resource_key(&resource_type, &guid)?;
    let input: DeleteIn = body.parse_or_default()?;
    let pre = extract::preconditions(&headers, input.expect)?;
    match state
        .coordinator
        .delete_resource(key, &pre, &extract::caller(&headers, authz.clone()))
        .await?
    {
        Deleted::Done => Ok(StatusCode::NO_CONTENT.into_response()),
        Deleted::StillDeleting { job } => Ok((
            StatusCode::ACCEPTED,
            Json(DeletingOut {
                state: "deleting",
                job,
            }),
        )
            .into_response()),
    }
}

/// Paging of the history listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Page size, 1..=1000 (default 100).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn decode_history_cursor(cursor: &str) -> Result<u64, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.strip_prefix("seq:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| Problem::invalid_request("cursor is not one this server handed out"))
}

/// A resource's history, newest first.
#[utoipa::path(
    get,
    path = "/v1/resources/{type}/{guid}/history",
    tag = "resources",
    params(
        ("type" = String, Path, description = "CF v3 resource collection"),
        ("guid" = String, Path, description = "The resource's GUID"),
        HistoryQuery,
    ),
    responses(
        (status = 200, body = HistoryListOut),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn history(
    State(state): State<AppState>,
    Path((resource_type, guid)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<HistoryListOut>, Problem> {
    let key = extract::resource_key(&resource_type, &guid)?;
    let q: HistoryQuery = extract::query(&uri)?;
    let limit = page_limit(q.limit)?;
    let before = q.cursor.as_deref().map(decode_history_cursor).transpose()?;
    let entries = state.coordinator.history(key, before, limit + 1).await?;
    let has_more = entries.len() > limit as usize;
    let items: Vec<HistoryEntryOut> = entries
        .into_iter()
        .take(limit as usize)
        .map(Into::into)
        .collect();
    let next_cursor = has_more
        .then(|| {
            items
                .last()
                .map(|e| URL_SAFE_NO_PAD.encode(format!("seq:{}", e.seq)))
        })
        .flatten();
    Ok(Json(HistoryListOut { items, next_cursor }))
}
