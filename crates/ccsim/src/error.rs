//! CC's v3 error responses and ccsim's own error type.
//!
//! This module owns the `{"errors":[{"detail","title","code"}]}` body (CC's `V3ErrorHasher`),
//! one constructor per CC error ccsim emits (codes and titles from CC's `errors/v2.yml`), and
//! [`Error`], what the library's fallible functions return.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A CC v3 API error: HTTP status plus one entry of the `errors` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CcError {
    /// HTTP status.
    pub status: StatusCode,
    /// e.g. `CF-ResourceNotFound` (`UnknownError` has no `CF-` prefix, as in CC).
    pub title: &'static str,
    /// CC's numeric code, e.g. 10010.
    pub code: u32,
    /// Human-readable detail.
    pub detail: String,
}

impl CcError {
    fn new(status: StatusCode, title: &'static str, code: u32, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            code,
            detail: detail.into(),
        }
    }

    /// 404 `CF-NotFound` 10000 `Unknown request` (CC's router: no such route).
    pub fn unknown_request() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "CF-NotFound",
            10000,
            "Unknown request",
        )
    }

    /// 404 `CF-ResourceNotFound` 10010 with a detail such as `Route not found`.
    pub fn resource_not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "CF-ResourceNotFound", 10010, detail)
    }

    /// 401 `CF-NotAuthenticated` 10002 (no `Authorization` header).
    pub fn not_authenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "CF-NotAuthenticated",
            10002,
            "Authentication error",
        )
    }

    /// 401 `CF-InvalidAuthToken` 1000 (unknown, expired or malformed token).
    pub fn invalid_auth_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "CF-InvalidAuthToken",
            1000,
            "Invalid Auth Token",
        )
    }

    /// 403 `CF-NotAuthorized` 10003 (missing scope).
    pub fn not_authorized() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "CF-NotAuthorized",
            10003,
            "You are not authorized to perform the requested action",
        )
    }

    /// 400 `CF-MessageParseError` 1001 (body is not a JSON object).
    pub fn message_parse_error() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "CF-MessageParseError",
            1001,
            "Request invalid due to parse error: invalid request body",
        )
    }

    /// 422 `CF-UnprocessableEntity` 10008; `messages` are joined with `", "` as CC's
    /// `ApiError#message` does with an Array.
    pub fn unprocessable(messages: &[String]) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CF-UnprocessableEntity",
            10008,
            messages.join(", "),
        )
    }

    /// 422 `CF-LabelLimitExceeded` 390020.
    pub fn label_limit_exceeded(detail: String) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CF-LabelLimitExceeded",
            390020,
            detail,
        )
    }

    /// 422 `CF-AnnotationLimitExceeded` 390023.
    pub fn annotation_limit_exceeded(detail: String) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CF-AnnotationLimitExceeded",
            390023,
            detail,
        )
    }

    /// 400 `CF-BadQueryParameter` 10005 `The query parameter is invalid: <messages>`.
    pub fn bad_query_parameter(messages: &[String]) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "CF-BadQueryParameter",
            10005,
            format!("The query parameter is invalid: {}", messages.join(", ")),
        )
    }

    /// 500 `UnknownError` 10001 (CC's catch-all; note: no `CF-` prefix).
    pub fn unknown_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UnknownError",
            10001,
            "An unknown error occurred.",
        )
    }

    /// 503 `CF-ServiceUnavailable` 10015 (CC's database-down answer).
    pub fn service_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "CF-ServiceUnavailable",
            10015,
            "Database connection failure",
        )
    }

    /// 429 `CF-RateLimitExceeded` 10013 (headers are added by the caller).
    pub fn rate_limit_exceeded() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "CF-RateLimitExceeded",
            10013,
            "Rate Limit Exceeded",
        )
    }

    /// A ccsim-specific error of the admin API (same body shape, code 0).
    pub fn admin(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = match status {
            StatusCode::NOT_FOUND => "CCSim-NotFound",
            StatusCode::CONFLICT => "CCSim-Conflict",
            _ => "CCSim-BadRequest",
        };
        Self::new(status, title, 0, detail)
    }

    /// The single `errors` entry, in CC's key order (`detail`, `title`, `code`).
    pub fn entry(&self) -> Value {
        json!({"detail": self.detail, "title": self.title, "code": self.code})
    }

    /// The full error body.
    pub fn body(&self) -> Value {
        json!({ "errors": [self.entry()] })
    }
}

impl IntoResponse for CcError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// What the library's fallible functions return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or serving the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The seed file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    SeedRead {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The seed file or an entry in it is invalid.
    #[error("invalid seed: {0}")]
    Seed(String),
    /// A client specification (`id:secret:scope1,scope2`) is invalid.
    #[error("invalid client {0:?}: expected id:secret:scope1,scope2")]
    Client(String),
    /// An admin call answered with an error status.
    #[error("admin call answered {status}: {body}")]
    Admin {
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: Value,
    },
}
