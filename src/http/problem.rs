//! The one error → HTTP mapping. Every 4xx/5xx leaves as RFC 9457
//! `application/problem+json` with a `/problems/<code>` type. Coordinator errors are mapped
//! by one exhaustive `match`, so a new variant cannot compile without a status decision;
//! 5xx bodies carry an error id that is logged with the source chain, never the internals.

use axum::http::header::{ALLOW, CONTENT_TYPE, ETAG, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::coordinator::CoordinatorError;
use crate::domain::etag::etag;
use crate::domain::lease::LeaseEnd;
use crate::domain::write_rule::Refusal;
use crate::store::StoreError;
use crate::upstream::{UpstreamError, Whose};

use super::wire::timestamp;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem about to be sent (boxed: it travels in every handler's `Err`).
#[derive(Debug)]
pub struct Problem(Box<Details>);

#[derive(Debug)]
struct Details {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    extensions: Map<String, Value>,
    headers: HeaderMap,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Details {
            status,
            code,
            title,
            detail: detail.into(),
            extensions: Map::new(),
            headers: HeaderMap::new(),
        }))
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub(crate) fn header(mut self, name: axum::http::HeaderName, value: String) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value) {
            self.0.headers.insert(name, value);
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &'static str {
        self.0.code
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    pub fn invalid_resource_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-resource-type",
            "Invalid resource type",
            detail,
        )
    }

    pub fn invalid_guid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-guid",
            "Invalid GUID",
            detail,
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(got: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("request bodies must be application/json, got '{got}'"),
        )
    }

    pub fn invalid_metadata(messages: Vec<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-metadata",
            "Invalid metadata",
            messages.join(", "),
        )
        .with("errors", messages)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// A 5xx whose cause is logged under a fresh error id, and only the id is sent.
    fn internal(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: &str,
        error: &dyn std::error::Error,
    ) -> Self {
        let error_id = uuid::Uuid::new_v4();
        // A 503 is a passing condition (the database restarting, a busy lock); a 500 is a defect.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(%error_id, error = %error_chain(error), "{detail}");
        } else {
            tracing::error!(%error_id, error = %error_chain(error), "{detail}");
        }
        Self::new(status, code, title, detail).with("error_id", error_id.to_string())
    }

    /// The problem for a status that some layer answered without a problem body.
    fn for_status(status: StatusCode, method: &str, path: &str) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::not_found(format!("nothing is served at {path}")),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "method-not-allowed",
                "Method not allowed",
                format!("{path} does not serve {method}; see the Allow header"),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::payload_too_large(super::MAX_BODY_BYTES),
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "the request did not complete in time; re-read before retrying",
            ),
            s if s.is_client_error() => Self::invalid_request(
                s.canonical_reason()
                    .unwrap_or("the request was refused")
                    .to_owned(),
            ),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal error",
                "the server failed to answer; the outcome is unknown: re-read before retrying",
            ),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let Details {
            status,
            code,
            title,
            detail,
            extensions,
            headers,
        } = *self.0;
        crate::metrics::problem(code);
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{code}")));
        body.insert("title".into(), json!(title));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(detail));
        body.extend(extensions);
        let mut response = (status, axum::Json(Value::Object(body))).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response.headers_mut().extend(headers);
        response
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        let unavailable = |detail: &str| {
            Self::internal(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail,
                &error,
            )
            .header(RETRY_AFTER, "1".into())
        };
        match &error {
            StoreError::NotReady => unavailable("the database schema is not ready yet"),
            StoreError::Unavailable(_) => unavailable(
                "the database is unavailable; the outcome is unknown: re-read before retrying",
            ),
            StoreError::Busy(_) => {
                unavailable("the resource is busy (lock or statement timeout); nothing was changed")
            }
            StoreError::Corrupt(_) | StoreError::Database(_) => Self::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal error",
                "the database failed; the outcome is unknown: re-read before retrying",
                &error,
            ),
        }
    }
}

impl From<CoordinatorError> for Problem {
    fn from(error: CoordinatorError) -> Self {
        match error {
            CoordinatorError::LeaseHeld {
                holder,
                expires_at,
                retry_after,
                waiting,
            } => {
                let detail = match (&holder, &expires_at, waiting) {
                    (Some(holder), Some(at), _) => {
                        format!("the lease is held by '{holder}' until {}", timestamp(at))
                    }
                    (_, _, Some(n)) => format!(
                        "the lease is free but {n} acquire(s) wait for it first; wait in line with wait_seconds"
                    ),
                    _ => "the lease is held".to_owned(),
                };
                let mut problem = Self::new(StatusCode::CONFLICT, "lease-held", "Lease held", detail)
                    .with("holder", holder)
                    .with("expires_at", expires_at.as_ref().map(timestamp))
                    .header(RETRY_AFTER, retry_after.to_string());
                if let Some(n) = waiting {
                    problem = problem.with("waiting", n);
                }
                problem
            }
            CoordinatorError::LockDelay { until, retry_after } => Self::new(
                StatusCode::CONFLICT,
                "lock-delay",
                "Lock-delay",
                format!(
                    "a lease of this resource expired or was revoked; nobody may acquire it before {}",
                    timestamp(&until)
                ),
            )
            .with("until", timestamp(&until))
            .header(RETRY_AFTER, retry_after.to_string()),
            CoordinatorError::NotLeaseHolder => Self::new(
                StatusCode::FORBIDDEN,
                "not-lease-holder",
                "Not the lease holder",
                "the lease was taken by another principal; only it (or an admin) may renew, release, revoke or write with its fencing token",
            ),
            CoordinatorError::NoActiveLease => Self::new(
                StatusCode::NOT_FOUND,
                "no-active-lease",
                "No active lease",
                "the resource has no active lease",
            ),
            CoordinatorError::LeaseNotFound => Self::not_found("no lease has this id"),
            CoordinatorError::LeaseEnded(how) => {
                let (code, title) = match how {
                    LeaseEnd::Expired => ("lease-expired", "Lease expired"),
                    LeaseEnd::Released => ("lease-released", "Lease released"),
                    LeaseEnd::Revoked => ("lease-revoked", "Lease revoked"),
                };
                Self::new(
                    StatusCode::GONE,
                    code,
                    title,
                    format!("the lease has ended: it was {}", how.as_str()),
                )
            }
            CoordinatorError::Refused(refusal) => refusal.into(),
            CoordinatorError::InvalidMetadata(messages) => Self::invalid_metadata(messages),
            CoordinatorError::Store(error) => error.into(),
            CoordinatorError::Upstream(error) => error.into(),
        }
    }
}

impl From<UpstreamError> for Problem {
    fn from(error: UpstreamError) -> Self {
        let detail = error.to_string();
        let unavailable = |status: StatusCode| {
            Self::new(
                status,
                "upstream-unavailable",
                "Upstream unavailable",
                detail.clone(),
            )
        };
        match error {
            UpstreamError::NotFound(_) => Self::not_found(detail),
            UpstreamError::DeleteNotSupported(resource_type) => Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("Cloud Controller has no DELETE for {resource_type}; nothing was changed"),
            )
            .header(ALLOW, "GET, HEAD".into()),
            UpstreamError::Unauthenticated(Whose::ServiceAccount) => {
                unavailable(StatusCode::BAD_GATEWAY)
            }
            UpstreamError::Unauthenticated(Whose::Caller) => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
                detail,
            )
            .header(WWW_AUTHENTICATE, "Bearer".into()),
            UpstreamError::Forbidden(_, _) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
            }
            UpstreamError::Rejected(messages) => {
                Self::invalid_metadata(vec![messages]).with("upstream", true)
            }
            UpstreamError::RateLimited { retry_after } => unavailable(StatusCode::BAD_GATEWAY)
                .header(
                    RETRY_AFTER,
                    retry_after.map_or(1, |d| d.as_secs().max(1)).to_string(),
                ),
            UpstreamError::Unavailable(_)
            | UpstreamError::Protocol(_)
            | UpstreamError::JobFailed(_) => unavailable(StatusCode::BAD_GATEWAY),
            UpstreamError::Timeout(_) => unavailable(StatusCode::GATEWAY_TIMEOUT),
            UpstreamError::OutcomeUnknown(_) => {
                unavailable(StatusCode::GATEWAY_TIMEOUT).with("outcome", "unknown")
            }
        }
    }
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Deleted => Self::new(
                StatusCode::GONE,
                "resource-deleted",
                "Resource deleted",
                "the resource was deleted through leasehold; its history stays readable",
            ),
            Refusal::Locked { holder, expires_at } => Self::new(
                StatusCode::LOCKED,
                "resource-locked",
                "Resource locked",
                format!(
                    "'{holder}' holds the lease until {}; send its Fencing-Token to write",
                    timestamp(&expires_at)
                ),
            )
            .with("holder", holder)
            .with("expires_at", timestamp(&expires_at)),
            Refusal::StaleToken { presented, current } => Self::new(
                StatusCode::CONFLICT,
                "stale-fencing-token",
                "Stale fencing token",
                match current {
                    Some(_) => format!("fencing token {presented} is not the active lease's"),
                    None => format!("fencing token {presented} belongs to a lease that has ended"),
                },
            )
            .with("fencing_token", presented.0)
            .with("current_fencing_token", current.map(|t| t.0)),
            Refusal::PreconditionFailed { version } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
                format!("If-Match does not match the current ETag {}", etag(version)),
            )
            .with("version", version)
            .header(ETAG, etag(version)),
            Refusal::ExpectationFailed { mismatches } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "expectation-failed",
                "Expectation failed",
                format!("{} expected value(s) do not hold", mismatches.len()),
            )
            .with(
                "mismatches",
                serde_json::to_value(mismatches).unwrap_or_default(),
            ),
            Refusal::PreconditionRequired => Self::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "Precondition required",
                "this server requires If-Match or Fencing-Token on every write",
            ),
        }
    }
}

/// Turns any error response some layer made without a problem body (axum's 404/405,
/// the body limit's 413, the timeout's 503, a caught panic's 500) into a problem, keeping
/// its headers (e.g. `Allow`).
pub async fn problem_fallback(request: Request<axum::body::Body>, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let allow = response.headers().get(ALLOW).cloned();
    let mut problem = Problem::for_status(status, &method, &path).into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(ALLOW, allow);
    }
    problem
}
