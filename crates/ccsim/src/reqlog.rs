//! The request log and the middleware every non-admin request passes through.
//!
//! This module owns the log read with `GET /admin/requests` (method, path, query, status,
//! request body as JSON, or as a string when it is not JSON, or null when empty) and the
//! [`observe`] middleware: it records every request outside `/admin`, hands `/v3` and `/uaa`
//! requests to `faults::apply`, and fills in the status when the response is ready. A PATCH
//! whose connection was dropped on purpose keeps `"status": null` and gets `"dropped": true`.

use crate::error::CcError;
use crate::faults;
use crate::state::{AppState, lock};
use crate::store::timestamp;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// Largest request body ccsim accepts (bytes).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The sequence number of a request's log entry, in the request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct LogSeq(pub u64);

/// Recorded requests.
#[derive(Debug, Default)]
pub struct RequestLog {
    next_seq: u64,
    entries: Vec<Value>,
}

impl RequestLog {
    /// Records a request (status pending); returns its sequence number.
    pub fn push(&mut self, method: &str, path: &str, query: Option<&str>, body: Value) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.entries.push(json!({
            "seq": seq,
            "at": timestamp(chrono::Utc::now()),
            "method": method,
            "path": path,
            "query": query,
            "status": null,
            "body": body,
        }));
        seq
    }

    fn entry(&mut self, seq: u64) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .rev()
            .find(|e| e.get("seq").and_then(Value::as_u64) == Some(seq))
    }

    /// Sets the status of a recorded request.
    pub fn set_status(&mut self, seq: u64, status: u16) {
        if let Some(e) = self.entry(seq) {
            e["status"] = json!(status);
        }
    }

    /// Marks a request whose connection ccsim closed without answering.
    pub fn mark_dropped(&mut self, seq: u64) {
        if let Some(e) = self.entry(seq) {
            e["dropped"] = json!(true);
        }
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<Value> {
        self.entries.clone()
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn is_under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Records non-admin requests and applies the faults to `/v3` and `/uaa` requests.
pub async fn observe(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if is_under(&path, "/admin") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return CcError::admin(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            .into_response();
    };
    let logged_body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let seq = lock(&app.log).push(parts.method.as_str(), &path, parts.uri.query(), logged_body);
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(LogSeq(seq));
    let response = if is_under(&path, "/v3") || is_under(&path, "/uaa") {
        faults::apply(&app, request, next).await
    } else {
        next.run(request).await
    };
    lock(&app.log).set_status(seq, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(is_under("/v3", "/v3"));
        assert!(is_under("/v3/routes", "/v3"));
        assert!(!is_under("/v30", "/v3"));
        assert!(!is_under("/", "/v3"));
    }

    #[test]
    fn the_log_records_status_and_drops() {
        let mut log = RequestLog::default();
        let a = log.push("GET", "/v3/routes", Some("page=1"), Value::Null);
        let b = log.push("PATCH", "/v3/routes/x", None, json!({"metadata": {}}));
        log.set_status(a, 200);
        log.mark_dropped(b);
        let e = log.entries();
        assert_eq!(e[0]["status"], 200);
        assert_eq!(e[0]["query"], "page=1");
        assert_eq!(e[1]["status"], Value::Null);
        assert_eq!(e[1]["dropped"], true);
        log.clear();
        assert!(log.entries().is_empty());
    }
}
