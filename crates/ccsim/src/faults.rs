//! Deterministic fault injection.
//!
//! This module owns the fault configuration set with `PUT /admin/faults` (and reset with
//! `DELETE`), the per-request decision for `/v3/*` and `/uaa/*` requests (latency, then
//! `rate_limit_next`, then `fail_next`, then `fail_every`), and the faulty responses (CC's
//! bodies for 500/503 and 429, a plain-text body for 502/504 as a router in front of CC would
//! send). The connection-level faults (`drop_after_patch`, `refuse_connections_ms`) are
//! counted here and carried out by `v3` and `server`; `expire_tokens` by `token`;
//! `fail_next_jobs` by `store`.

use crate::error::CcError;
use crate::state::{AppState, lock};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `{"count", "status"}`: the next `count` requests answer `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailNext {
    /// How many requests are left to fail.
    pub count: u64,
    /// 500, 502, 503 or 504.
    pub status: u16,
}

/// `{"n", "status"}`: every n-th request answers `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailEvery {
    /// The period (>= 1): requests n, 2n, 3n, ... (counted since the faults were set) fail.
    pub n: u64,
    /// 500, 502, 503 or 504.
    pub status: u16,
}

/// `{"count", "retry_after", "limit"?}`: the next `count` requests answer 429.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitNext {
    /// How many requests are left to refuse.
    pub count: u64,
    /// `Retry-After` in seconds (default 1).
    #[serde(default = "one")]
    pub retry_after: u64,
    /// `X-RateLimit-Limit` (default 20000).
    #[serde(default = "default_limit")]
    pub limit: u64,
}

fn one() -> u64 {
    1
}

fn default_limit() -> u64 {
    20000
}

/// The fault configuration (`PUT /admin/faults` body; `GET` shows what is left of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every `/v3` and `/uaa` response.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fail the next requests.
    #[serde(default)]
    pub fail_next: Option<FailNext>,
    /// Fail every n-th request.
    #[serde(default)]
    pub fail_every: Option<FailEvery>,
    /// Answer 429 to the next requests.
    #[serde(default)]
    pub rate_limit_next: Option<RateLimitNext>,
    /// The next N successful metadata PATCHes are applied, then their connection is closed
    /// without a response.
    #[serde(default)]
    pub drop_after_patch: u64,
    /// Close the listening socket for this long (an action, carried out when set; shows 0).
    #[serde(default)]
    pub refuse_connections_ms: u64,
    /// Invalidate every token issued so far (an action, carried out when set; shows false).
    #[serde(default)]
    pub expire_tokens: bool,
    /// The next N delete jobs end `FAILED` and keep their resource.
    #[serde(default)]
    pub fail_next_jobs: u64,
    /// `/v3` and `/uaa` requests seen since the faults were set (read-only).
    #[serde(default, skip_deserializing)]
    pub requests_seen: u64,
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Serve it.
    Proceed,
    /// Answer this status.
    Fail(u16),
    /// Answer 429.
    RateLimit {
        /// `Retry-After` seconds.
        retry_after: u64,
        /// `X-RateLimit-Limit`.
        limit: u64,
    },
}

impl Faults {
    /// Checks a configuration sent to `PUT /admin/faults`.
    pub fn validate(&self) -> Result<(), String> {
        let status_ok = |s: u16| matches!(s, 500 | 502 | 503 | 504);
        if let Some(f) = &self.fail_next
            && !status_ok(f.status)
        {
            return Err(format!(
                "fail_next.status must be 500, 502, 503 or 504, not {}",
                f.status
            ));
        }
        if let Some(f) = &self.fail_every {
            if !status_ok(f.status) {
                return Err(format!(
                    "fail_every.status must be 500, 502, 503 or 504, not {}",
                    f.status
                ));
            }
            if f.n == 0 {
                return Err("fail_every.n must be at least 1".to_string());
            }
        }
        Ok(())
    }

    /// Counts one `/v3` or `/uaa` request and decides its fate.
    pub fn on_request(&mut self) -> (Duration, Outcome) {
        self.requests_seen += 1;
        let latency = Duration::from_millis(self.latency_ms);
        if let Some(r) = self.rate_limit_next.as_mut().filter(|r| r.count > 0) {
            r.count -= 1;
            return (
                latency,
                Outcome::RateLimit {
                    retry_after: r.retry_after,
                    limit: r.limit,
                },
            );
        }
        if let Some(f) = self.fail_next.as_mut().filter(|f| f.count > 0) {
            f.count -= 1;
            return (latency, Outcome::Fail(f.status));
        }
        if let Some(f) = &self.fail_every
            && f.n > 0
            && self.requests_seen.is_multiple_of(f.n)
        {
            return (latency, Outcome::Fail(f.status));
        }
        (latency, Outcome::Proceed)
    }

    /// Takes one `drop_after_patch` if any is left.
    pub fn take_drop_after_patch(&mut self) -> bool {
        let take = self.drop_after_patch > 0;
        if take {
            self.drop_after_patch -= 1;
        }
        take
    }

    /// Takes one `fail_next_jobs` if any is left.
    pub fn take_fail_job(&mut self) -> bool {
        let take = self.fail_next_jobs > 0;
        if take {
            self.fail_next_jobs -= 1;
        }
        take
    }
}

/// Applies the request-level faults to a `/v3` or `/uaa` request, then serves it.
pub async fn apply(app: &AppState, request: Request, next: Next) -> Response {
    let (latency, outcome) = lock(&app.faults).on_request();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match outcome {
        Outcome::Proceed => next.run(request).await,
        Outcome::Fail(status) => failure(status),
        Outcome::RateLimit { retry_after, limit } => rate_limited(retry_after, limit),
    }
}

/// The response of an injected failure.
fn failure(status: u16) -> Response {
    match status {
        500 => CcError::unknown_error().into_response(),
        503 => CcError::service_unavailable().into_response(),
        other => {
            let status = StatusCode::from_u16(other).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            );
            (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text,
            )
                .into_response()
        }
    }
}

/// CC's 429 (`BaseRateLimiter#too_many_requests!`) with its headers.
fn rate_limited(retry_after: u64, limit: u64) -> Response {
    let reset = chrono::Utc::now().timestamp().max(0).unsigned_abs() + retry_after;
    let mut response = CcError::rate_limit_exceeded().into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("retry-after", retry_after),
        ("x-ratelimit-limit", limit),
        ("x-ratelimit-reset", reset),
        ("x-ratelimit-remaining", 0),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_faults_apply_in_order_and_count_down() {
        let mut f: Faults = serde_json::from_value(serde_json::json!({
            "rate_limit_next": {"count": 1, "retry_after": 7},
            "fail_next": {"count": 1, "status": 503},
            "fail_every": {"n": 4, "status": 500},
        }))
        .expect("faults");
        assert!(f.validate().is_ok());
        let outcomes: Vec<Outcome> = (0..9).map(|_| f.on_request().1).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::RateLimit {
                    retry_after: 7,
                    limit: 20000
                },
                Outcome::Fail(503),
                Outcome::Proceed,
                Outcome::Fail(500),
                Outcome::Proceed,
                Outcome::Proceed,
                Outcome::Proceed,
                Outcome::Fail(500),
                Outcome::Proceed,
            ]
        );
    }

    #[test]
    fn invalid_fault_configurations_are_refused() {
        let bad = |v: serde_json::Value| {
            serde_json::from_value::<Faults>(v)
                .map_err(|e| e.to_string())
                .and_then(|f| f.validate())
                .is_err()
        };
        assert!(bad(
            serde_json::json!({"fail_next": {"count": 1, "status": 404}})
        ));
        assert!(bad(
            serde_json::json!({"fail_every": {"n": 0, "status": 500}})
        ));
        assert!(bad(serde_json::json!({"nonsense": 1})));
        assert!(!bad(serde_json::json!({"latency_ms": 5})));
    }
}
