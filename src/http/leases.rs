//! Lease routes: acquire, read, renew, release, and the operator listing.

use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::time::Duration;

use crate::auth::Authz;
use crate::coordinator::{AcquireRequest, Acquired};
use crate::domain::lease::{Holder, LeaseId, MAX_HOLDER_CHARS, MAX_LOCK_DELAY, MAX_WAIT, Ttl};
use crate::domain::resource::parse_guid;
use crate::store::{LeaseQuery, StateFilter};
use crate::upstream::Caller;

use super::AppState;
use super::extract::{self, JsonBytes};
use super::problem::Problem;
use super::wire::{AcquireIn, LeaseListOut, LeaseOut, ProblemOut, RenewIn};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(acquire, active_lease))
        .routes(routes!(list_leases))
        .routes(routes!(get_lease, release))
        .routes(routes!(renew))
        .routes(routes!(revoke))
}

fn ttl(seconds: Option<u64>) -> Result<Option<Ttl>, Problem> {
    seconds
        .map(Ttl::from_seconds)
        .transpose()
        .map_err(Problem::invalid_request)
}

/// The caller of a lease operation (no upstream call needs its credentials).
fn as_caller(authz: Authz) -> Caller {
    Caller {
        authorization: None,
        authz,
    }
}

/// A whole number of seconds within 0..=`max`.
fn seconds_within(name: &str, value: Option<u64>, max: Duration) -> Result<u64, Problem> {
    match value.unwrap_or(0) {
        v if v <= max.as_secs() => Ok(v),
        v => Err(Problem::invalid_request(format!(
            "{name} must be between 0 and {}, got {v}",
            max.as_secs()
        ))),
    }
}

/// Acquire the lease on a resource.
///
/// Grants a new lease (201, with a new fencing token), or renews it when the same holder
/// already holds it (200, same lease). Held by another holder: 409 `lease-held` with
/// `Retry-After` — after waiting up to `wait_seconds`, first come, first served across all
/// instances. After a lease with `lock_delay_seconds` expired or was revoked: 409
/// `lock-delay` until the delay is over.
#[utoipa::path(
    post,
    path = "/v1/resources/{type}/{guid}/lease",
    tag = "leases",
    params(
        ("type" = String, Path, description = "CF v3 resource collection, e.g. `routes`"),
        ("guid" = String, Path, description = "The resource's GUID"),
    ),
    request_body = AcquireIn,
    responses(
        (status = 201, description = "Granted", body = LeaseOut, headers(("Location" = String))),
        (status = 200, description = "Already held by this holder: renewed", body = LeaseOut),
        (status = 400, description = "Invalid request", body = ProblemOut, content_type = "application/problem+json"),
        (status = 409, description = "`lease-held`: held by another holder (or free with others waiting); `lock-delay`", body = ProblemOut, content_type = "application/problem+json", headers(("Retry-After" = u64))),
        (status = 410, description = "`resource-deleted`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn acquire(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path((resource_type, guid)): Path<(String, String)>,
    body: JsonBytes,
) -> Result<Response, Problem> {
    let key = extract::resource_key(&resource_type, &guid)?;
    let input: AcquireIn = body.parse()?;
    let request = AcquireRequest {
        holder: Holder::parse(input.holder).map_err(Problem::invalid_request)?,
        ttl: ttl(input.ttl_seconds)?,
        wait: Duration::from_secs(seconds_within(
            "wait_seconds",
            input.wait_seconds,
            MAX_WAIT,
        )?),
        lock_delay_seconds: seconds_within(
            "lock_delay_seconds",
            input.lock_delay_seconds,
            MAX_LOCK_DELAY,
        )? as u32,
        principal: authz.principal,
    };
    match state.coordinator.acquire(key, request).await? {
        Acquired::Granted(lease) => {
            let location = format!("/v1/leases/{}", lease.id);
            let now = lease.acquired_at;
            let mut response =
                (StatusCode::CREATED, Json(LeaseOut::at(lease, now))).into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, location);
            }
            Ok(response)
        }
        Acquired::Renewed(lease) => {
            let now = lease.renewed_at;
            Ok((StatusCode::OK, Json(LeaseOut::at(lease, now))).into_response())
        }
    }
}

/// The resource's active lease.
#[utoipa::path(
    get,
    path = "/v1/resources/{type}/{guid}/lease",
    tag = "leases",
    params(
        ("type" = String, Path, description = "CF v3 resource collection"),
        ("guid" = String, Path, description = "The resource's GUID"),
    ),
    responses(
        (status = 200, body = LeaseOut),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 404, description = "`no-active-lease`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 410, description = "`resource-deleted`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn active_lease(
    State(state): State<AppState>,
    Path((resource_type, guid)): Path<(String, String)>,
) -> Result<Json<LeaseOut>, Problem> {
    let key = extract::resource_key(&resource_type, &guid)?;
    let (lease, now) = state.coordinator.active_lease(key).await?;
    Ok(Json(LeaseOut::at(lease, now)))
}

/// Any lease, active or ended.
#[utoipa::path(
    get,
    path = "/v1/leases/{id}",
    tag = "leases",
    params(("id" = String, Path, description = "The lease id")),
    responses(
        (status = 200, body = LeaseOut),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn get_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LeaseOut>, Problem> {
    let id = extract::lease_id(&id)?;
    let (lease, now) = state.coordinator.lease(id).await?;
    Ok(Json(LeaseOut::at(lease, now)))
}

/// Renew an active lease.
///
/// Extends it to now + `ttl_seconds` (default: the lease's own TTL). The fencing token stays.
#[utoipa::path(
    post,
    path = "/v1/leases/{id}/renew",
    tag = "leases",
    params(("id" = String, Path, description = "The lease id")),
    request_body(content = Option<RenewIn>, description = "Optional"),
    responses(
        (status = 200, body = LeaseOut),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 410, description = "`lease-expired`, `lease-released` or `lease-revoked`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn renew(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path(id): Path<String>,
    body: JsonBytes,
) -> Result<Json<LeaseOut>, Problem> {
    let id = extract::lease_id(&id)?;
    let input: RenewIn = body.parse_or_default()?;
    let ttl = ttl(input.ttl_seconds)?;
    let lease = state.coordinator.renew(id, ttl, &as_caller(authz)).await?;
    let now = lease.renewed_at;
    Ok(Json(LeaseOut::at(lease, now)))
}

/// Revoke a lease (operators).
///
/// Ends it at once as `revoked`; its lock-delay (if any) starts. The holder's next write
/// with its fencing token gets 409 `stale-fencing-token`.
#[utoipa::path(
    post,
    path = "/v1/leases/{id}/revoke",
    tag = "leases",
    params(("id" = String, Path, description = "The lease id")),
    responses(
        (status = 200, description = "Revoked", body = LeaseOut),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 410, description = "`lease-expired`, `lease-released` or `lease-revoked`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path(id): Path<String>,
    body: JsonBytes,
) -> Result<Json<LeaseOut>, Problem> {
    let id = extract::lease_id(&id)?;
    body.none()?;
    let lease = state.coordinator.revoke(id, &as_caller(authz)).await?;
    let now = lease.ended.map_or(lease.renewed_at, |(_, at)| at);
    Ok(Json(LeaseOut::at(lease, now)))
}

/// Release a lease.
#[utoipa::path(
    delete,
    path = "/v1/leases/{id}",
    tag = "leases",
    params(("id" = String, Path, description = "The lease id")),
    responses(
        (status = 204, description = "Released"),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = ProblemOut, content_type = "application/problem+json"),
        (status = 410, description = "`lease-expired`, `lease-released` or `lease-revoked`", body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn release(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path(id): Path<String>,
    body: JsonBytes,
) -> Result<StatusCode, Problem> {
    let id = extract::lease_id(&id)?;
    body.none()?;
    state.coordinator.release(id, &as_caller(authz)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filters of the operator listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeaseListQuery {
    /// Only leases on resources of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    resource_type: Option<String>,
    /// Only leases on this resource GUID.
    guid: Option<String>,
    /// Only leases of this holder.
    holder: Option<String>,
    /// `active` (default), `ended` or `all`.
    state: Option<String>,
    /// Page size, 1..=1000 (default 100).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Default and maximum page sizes of the listings.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

pub fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(Problem::invalid_request(format!(
            "limit must be between 1 and {MAX_PAGE}, got {n}"
        ))),
    }
}

fn encode_lease_cursor(at: chrono::DateTime<chrono::Utc>, id: LeaseId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", at.timestamp_micros(), id))
}

fn decode_lease_cursor(cursor: &str) -> Result<(chrono::DateTime<chrono::Utc>, LeaseId), Problem> {
    let bad = || Problem::invalid_request("cursor is not one this server handed out");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, id) = raw.split_once(':').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((at, LeaseId::parse(id).ok_or_else(bad)?))
}

/// List leases (operators).
///
/// Newest first by `acquired_at`, with keyset pagination through `cursor`.
#[utoipa::path(
    get,
    path = "/v1/leases",
    tag = "leases",
    params(LeaseListQuery),
    responses(
        (status = 200, body = LeaseListOut),
        (status = 400, body = ProblemOut, content_type = "application/problem+json"),
    )
)]
async fn list_leases(
    State(state): State<AppState>,
    Extension(authz): Extension<Authz>,
    uri: Uri,
) -> Result<Json<LeaseListOut>, Problem> {
    let q: LeaseListQuery = extract::query(&uri)?;
    let resource_type = q
        .resource_type
        .as_deref()
        .map(|t| {
            t.parse()
                .map_err(|e: crate::domain::resource::UnknownResourceType| {
                    Problem::invalid_resource_type(e.to_string())
                })
        })
        .transpose()?;
    let guid = q
        .guid
        .as_deref()
        .map(|g| parse_guid(g).map_err(|e| Problem::invalid_guid(e.to_string())))
        .transpose()?;
    if let Some(holder) = &q.holder {
        let n = holder.chars().count();
        if n == 0 || n > MAX_HOLDER_CHARS || holder.contains('\0') {
            return Err(Problem::invalid_request(format!(
                "holder must be 1 to {MAX_HOLDER_CHARS} characters long, without NUL"
            )));
        }
    }
    let state_filter = match q.state.as_deref() {
        None | Some("active") => StateFilter::Active,
        Some("ended") => StateFilter::Ended,
        Some("all") => StateFilter::All,
        Some(other) => {
            return Err(Problem::invalid_request(format!(
                "state must be active, ended or all, got '{other}'"
            )));
        }
    };
    let query = LeaseQuery {
        resource_type,
        guid,
        holder: q.holder,
        principal: None,
        state: state_filter,
        limit: page_limit(q.limit)?,
        after: q.cursor.as_deref().map(decode_lease_cursor).transpose()?,
    };
    let page = state
        .coordinator
        .list_leases(&query, &as_caller(authz))
        .await?;
    let next_cursor = page
        .has_more
        .then(|| {
            page.items
                .last()
                .map(|l| encode_lease_cursor(l.acquired_at, l.id))
        })
        .flatten();
    let now = page.now;
    Ok(Json(LeaseListOut {
        items: page
            .items
            .into_iter()
            .map(|l| LeaseOut::at(l, now))
            .collect(),
        next_cursor,
    }))
}
