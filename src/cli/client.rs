//! The HTTP client of the CLI: builds URLs under `--url` (path segments percent-encoded),
//! sends one request, and turns the answer into JSON or a [`CliError`] — a problem+json
//! answer into its title, status and detail, a connection failure into the URL that failed.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{Map, Value};

/// Longest wait for a TCP connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one whole answer (above the server's default 30 s request timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

/// Why a CLI command failed (all exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--url` is not a usable base URL.
    #[error("--url {url:?} is not an http(s) URL: {reason}")]
    BadUrl { url: String, reason: String },
    /// The server could not be reached: refused, DNS, TLS, timeout.
    #[error("cannot reach leasehold at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with a problem (or another non-2xx answer).
    #[error("{title} ({status}): {detail}")]
    Problem {
        title: String,
        status: u16,
        detail: String,
    },
    /// `probe`: the path answered, but not 2xx.
    #[error("{url} answered {status}")]
    Unhealthy { url: String, status: u16 },
    /// The answer is not what the API promises.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// A 2xx answer: its JSON body and `ETag`, if any.
#[derive(Debug)]
pub struct Answer {
    pub body: Value,
    pub etag: Option<String>,
}

/// A leasehold server at a base URL.
pub struct Api {
    http: reqwest::Client,
    base: Url,
}

impl Api {
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, CliError> {
        let bad = |reason: String| CliError::BadUrl {
            url: base.to_owned(),
            reason,
        };
        let parsed = Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(bad("expected e.g. http://127.0.0.1:8080".into()));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let value = format!("bearer {token}").parse().map_err(|_| {
                CliError::Unexpected("the token is not a valid header value".into())
            })?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("leasehold-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Unexpected(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, base: parsed })
    }

    /// The base URL plus path segments (each percent-encoded) and query pairs.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// The base URL plus a path given as text, e.g. `/readyz` (for `probe`).
    pub fn url_for_path(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}/{}", path.trim_start_matches('/')));
        url
    }

    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Answer, CliError> {
        self.send(Method::GET, self.url(segments, query)).await
    }

    pub async fn post(&self, segments: &[&str]) -> Result<Answer, CliError> {
        self.send(Method::POST, self.url(segments, &[])).await
    }

    /// Only the status of a GET (for `probe`), with a short time limit.
    pub async fn status_of(&self, url: Url, limit: Duration) -> Result<u16, CliError> {
        self.http
            .get(url.clone())
            .timeout(limit)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| unreachable(&url, &e))
    }

    async fn send(&self, method: Method, url: Url) -> Result<Answer, CliError> {
        let response = self
            .http
            .request(method, url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| unreachable(&url, &e))?;
        if !status.is_success() {
            return Err(problem(status, &text));
        }
        let body = serde_json::from_str(&text).map_err(|e| {
            CliError::Unexpected(format!("{url} answered {status} with no JSON: {e}"))
        })?;
        Ok(Answer { body, etag })
    }

    /// A listing, one page or (with `all`) every page following `next_cursor`. One page is
    /// the server's body as sent; several are the first page's body with every page's
    /// `items` and the last page's `next_cursor` (null).
    pub async fn pages(
        &self,
        segments: &[&str],
        mut query: Vec<(&str, String)>,
        all: bool,
    ) -> Result<Value, CliError> {
        let mut merged: Option<Map<String, Value>> = None;
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            if let Some(c) = &cursor {
                query.retain(|(k, _)| *k != "cursor");
                query.push(("cursor", c.clone()));
            }
            let Value::Object(mut page) = self.get(segments, &query).await?.body else {
                return Err(CliError::Unexpected(
                    "a listing that is not an object".into(),
                ));
            };
            match page.get_mut("items").map(Value::take) {
                Some(Value::Array(page_items)) => items.extend(page_items),
                _ => return Err(CliError::Unexpected("a listing without items".into())),
            }
            let next = page.get("next_cursor").cloned().unwrap_or(Value::Null);
            let merged = merged.get_or_insert(page);
            match next.as_str() {
                Some(next) if all => {
                    if cursor.as_deref() == Some(next) {
                        return Err(CliError::Unexpected(format!(
                            "the server handed out cursor {next} twice"
                        )));
                    }
                    cursor = Some(next.to_owned());
                }
                _ => {
                    merged.insert("items".into(), Value::Array(items));
                    merged.insert("next_cursor".into(), next);
                    return Ok(Value::Object(std::mem::take(merged)));
                }
            }
        }
    }
}

/// A transport failure, naming the URL once and the root cause (not reqwest's wrapper).
fn unreachable(url: &Url, error: &reqwest::Error) -> CliError {
    let reason = if error.is_timeout() {
        "no answer in time".to_owned()
    } else {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        causes.last().cloned().unwrap_or_else(|| error.to_string())
    };
    CliError::Unreachable {
        url: url.to_string(),
        reason,
    }
}

/// A non-2xx answer: its problem+json members, or the status and the body's text.
fn problem(status: reqwest::StatusCode, text: &str) -> CliError {
    let body = serde_json::from_str::<Value>(text).ok();
    let member = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    CliError::Problem {
        title: member("title")
            .or_else(|| status.canonical_reason().map(str::to_owned))
            .unwrap_or_else(|| "Error".into()),
        status: status.as_u16(),
        detail: member("detail")
            .or_else(|| Some(text.trim().chars().take(500).collect::<String>()))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "the answer has no problem details".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_appended_under_the_base_path_and_percent_encoded() {
        let api = Api::new("http://example.org/lh/", None).expect("a base URL");
        let url = api.url(&["v1", "leases", "a/b c"], &[("holder", "x&y".into())]);
        assert_eq!(
            url.as_str(),
            "http://example.org/lh/v1/leases/a%2Fb%20c?holder=x%26y"
        );
        assert_eq!(
            api.url_for_path("/readyz").as_str(),
            "http://example.org/lh/readyz"
        );
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        assert!(matches!(
            Api::new("mailto:ops@example.org", None),
            Err(CliError::BadUrl { .. })
        ));
        assert!(matches!(
            Api::new("127.0.0.1:8080", None),
            Err(CliError::BadUrl { .. })
        ));
    }

    #[test]
    fn a_problem_prints_title_status_and_detail() {
        let error = problem(
            reqwest::StatusCode::NOT_FOUND,
            r#"{"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "no lease has this id"}"#,
        );
        assert_eq!(error.to_string(), "Not found (404): no lease has this id");
        let error = problem(reqwest::StatusCode::BAD_GATEWAY, "upstream down\n");
        assert_eq!(error.to_string(), "Bad Gateway (502): upstream down");
    }
}
