//! The Cloud Controller v3 upstream: GET, PATCH (CC's merge, only the keys that change) and
//! DELETE with job following, for every resource type leasehold knows. Only reads are
//! retried; a write is sent once (a 401 with leasehold's own token is retried once with a
//! fresh token: CC refused it before doing anything).

mod auth;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::domain::metadata::MetadataPatch;
use crate::domain::resource::{ResourceKey, ResourceType};
use crate::upstream::{Caller, DeleteOutcome, Upstream, UpstreamError, UpstreamResource};

pub use auth::{Credentials, TokenSource};

/// Attempts for a read, with these pauses in between.
const READ_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];
/// A 429 on a read is retried when CC asks for at most this long a pause.
const MAX_HONOURED_RETRY_AFTER: Duration = Duration::from_secs(2);
/// First pause between polls of a delete job; it doubles up to `JOB_POLL_MAX`.
const JOB_POLL_START: Duration = Duration::from_millis(50);
const JOB_POLL_MAX: Duration = Duration::from_secs(1);

/// Settings of the Cloud Controller client.
pub struct Settings {
    /// CC's API URL, e.g. `https://api.example.org`.
    pub api_url: String,
    pub credentials: CredentialsConfig,
    pub connect_timeout: Duration,
    /// The longest one request may take.
    pub request_timeout: Duration,
    /// How long a DELETE follows CC's asynchronous job before answering 202.
    pub delete_wait: Duration,
}

/// Which credentials to use.
pub enum CredentialsConfig {
    ServiceAccount {
        client_id: String,
        client_secret: String,
    },
    Passthrough,
}

pub struct CloudController {
    http: reqwest::Client,
    api: String,
    credentials: Credentials,
    delete_wait: Duration,
}

impl CloudController {
    pub fn new(settings: Settings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("leasehold/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let api = settings.api_url.trim_end_matches('/').to_owned();
        let credentials = match settings.credentials {
            CredentialsConfig::ServiceAccount {
                client_id,
                client_secret,
            } => Credentials::ServiceAccount(Box::new(TokenSource::new(
                http.clone(),
                api.clone(),
                client_id,
                client_secret,
            ))),
            CredentialsConfig::Passthrough => Credentials::Passthrough,
        };
        Ok(Self {
            http,
            api,
            credentials,
            delete_wait: settings.delete_wait,
        })
    }

    fn url(&self, key: ResourceKey) -> String {
        format!("{}/v3/{}/{}", self.api, key.resource_type, key.guid)
    }

    /// One request with credentials; a 401 on leasehold's own token is retried once with a
    /// fresh token. `sent_is_unknown`: a write whose answer is lost has an unknown outcome.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        caller: &Caller,
        write: bool,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut retried = false;
        loop {
            let authorization = self.credentials.authorization(caller).await?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .header("accept", "application/json");
            if let Some(a) = &authorization {
                request = request.header("authorization", a);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let started = Instant::now();
            let sent = request.send().await;
            crate::metrics::upstream_call(
                crate::metrics::method_label(&method),
                call_outcome(&sent),
                started.elapsed().as_secs_f64(),
            );
            let response = sent.map_err(|e| transport_error(&e, write))?;
            if response.status() == StatusCode::UNAUTHORIZED
                && !retried
                && self.credentials.refused(authorization.as_deref()).await
            {
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// A GET, retried with backoff on transport errors, 5xx and short 429s.
    async fn get(&self, url: &str, caller: &Caller) -> Result<Value, UpstreamError> {
        let mut attempt = 0;
        loop {
            let result = match self.call(Method::GET, url, None, caller, false).await {
                Ok(response) => self.json_or_error(response).await,
                Err(e) => Err(e),
            };
            let pause = match &result {
                Err(UpstreamError::Unavailable(_) | UpstreamError::Timeout(_)) => {
                    READ_BACKOFF.get(attempt).copied()
                }
                Err(UpstreamError::RateLimited { retry_after }) => READ_BACKOFF
                    .get(attempt)
                    .map(|b| retry_after.unwrap_or(*b))
                    .filter(|p| *p <= MAX_HONOURED_RETRY_AFTER),
                _ => None,
            };
            match pause {
                Some(pause) => {
                    tracing::debug!(url, attempt, ?pause, "retrying a Cloud Controller read");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                None => return result,
            }
        }
    }

    /// The body of a 2xx answer, or the error CC's answer means.
    async fn json_or_error(&self, response: reqwest::Response) -> Result<Value, UpstreamError> {
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| UpstreamError::Protocol(format!("{status} body is not JSON: {e}")));
        }
        Err(self.status_error(response).await)
    }

    async fn status_error(&self, response: reqwest::Response) -> UpstreamError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let detail = cc_error_detail(response.text().await.unwrap_or_default(), status);
        match status {
            StatusCode::NOT_FOUND => UpstreamError::NotFound(detail),
            StatusCode::UNAUTHORIZED => UpstreamError::Unauthenticated(self.credentials.whose()),
            StatusCode::FORBIDDEN => UpstreamError::Forbidden(self.credentials.whose(), detail),
            StatusCode::UNPROCESSABLE_ENTITY => UpstreamError::Rejected(detail),
            StatusCode::TOO_MANY_REQUESTS => UpstreamError::RateLimited { retry_after },
            StatusCode::GATEWAY_TIMEOUT => UpstreamError::Timeout(format!("{status}: {detail}")),
            s => UpstreamError::Unavailable(format!("{s}: {detail}")),
        }
    }

    /// Follows a delete job until it completes, fails, or the wait runs out.
    async fn follow_job(&self, job: &str, caller: &Caller) -> Result<DeleteOutcome, UpstreamError> {
        let deadline = Instant::now() + self.delete_wait;
        let mut pause = JOB_POLL_START;
        loop {
            let body = self.get(job, caller).await?;
            match body.get("state").and_then(Value::as_str) {
                Some("COMPLETE") => return Ok(DeleteOutcome::Done),
                Some("FAILED") => {
                    let errors = body
                        .get("errors")
                        .map(|e| cc_error_detail(e.to_string(), StatusCode::OK))
                        .unwrap_or_default();
                    return Err(UpstreamError::JobFailed(errors));
                }
                Some(_) => {}
                None => return Err(UpstreamError::Protocol(format!("job {job} has no state"))),
            }
            if Instant::now() + pause > deadline {
                return Ok(DeleteOutcome::StillDeleting {
                    job: job.to_owned(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(JOB_POLL_MAX);
        }
    }

    /// Whether Cloud Controller serves DELETE for this type.
    fn deletable(resource_type: ResourceType) -> bool {
        !matches!(
            resource_type,
            ResourceType::Builds
                | ResourceType::Deployments
                | ResourceType::Processes
                | ResourceType::Revisions
                | ResourceType::Tasks
        )
    }
}

/// The outcome label of one request for the metrics: `ok`, `4xx`, `5xx`, `timeout`, `error`.
fn call_outcome(sent: &Result<reqwest::Response, reqwest::Error>) -> &'static str {
    match sent {
        Ok(response) if response.status().is_client_error() => "4xx",
        Ok(response) if response.status().is_server_error() => "5xx",
        Ok(_) => "ok",
        Err(error) if error.is_timeout() => "timeout",
        Err(_) => "error",
    }
}

/// Sorts a transport failure: a request that never reached CC (connect failure) is
/// unavailable; a write whose answer was lost has an unknown outcome.
pub(crate) fn transport_error(error: &reqwest::Error, write: bool) -> UpstreamError {
    let text = error_text(error);
    if error.is_connect() {
        UpstreamError::Unavailable(text)
    } else if write {
        UpstreamError::OutcomeUnknown(text)
    } else if error.is_timeout() {
        UpstreamError::Timeout(text)
    } else {
        UpstreamError::Unavailable(text)
    }
}

fn error_text(error: &reqwest::Error) -> String {
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// CC's `{"errors": [{"detail", "title", "code"}]}` as one line, or the raw text.
fn cc_error_detail(text: String, status: StatusCode) -> String {
    let errors = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| match v {
            Value::Object(mut o) => o.remove("errors"),
            array @ Value::Array(_) => Some(array),
            _ => None,
        });
    match errors {
        Some(Value::Array(errors)) if !errors.is_empty() => errors
            .iter()
            .map(|e| {
                let title = e.get("title").and_then(Value::as_str).unwrap_or("");
                let detail = e.get("detail").and_then(Value::as_str).unwrap_or("");
                format!("{title}: {detail}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ if text.is_empty() => status.to_string(),
        _ => text.chars().take(500).collect(),
    }
}

fn patch_body(patch: &MetadataPatch) -> Value {
    let entries = |e: &std::collections::BTreeMap<String, Option<String>>| {
        Value::Object(
            e.iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>(),
        )
    };
    json!({"metadata": {"labels": entries(&patch.labels), "annotations": entries(&patch.annotations)}})
}

#[async_trait]
impl Upstream for CloudController {
    async fn read(
        &self,
        key: ResourceKey,
        caller: &Caller,
    ) -> Result<UpstreamResource, UpstreamError> {
        UpstreamResource::from_body(self.get(&self.url(key), caller).await?)
    }

    async fn patch_metadata(
        &self,
        key: ResourceKey,
        patch: &MetadataPatch,
        caller: &Caller,
    ) -> Result<UpstreamResource, UpstreamError> {
        let url = self.url(key);
        let response = self
            .call(Method::PATCH, &url, Some(&patch_body(patch)), caller, true)
            .await?;
        match response.status() {
            // A metadata-only PATCH answers 200 with the resource; 202 (a broker call) is
            // followed by a read.
            StatusCode::OK => UpstreamResource::from_body(self.json_or_error(response).await?),
            StatusCode::ACCEPTED => self.read(key, caller).await,
            _ => Err(self.status_error(response).await),
        }
    }

    async fn delete(
        &self,
        key: ResourceKey,
        caller: &Caller,
    ) -> Result<DeleteOutcome, UpstreamError> {
        if !Self::deletable(key.resource_type) {
            return Err(UpstreamError::DeleteNotSupported(
                key.resource_type.as_str(),
            ));
        }
        let response = self
            .call(Method::DELETE, &self.url(key), None, caller, true)
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(DeleteOutcome::Done),
            StatusCode::ACCEPTED => {
                let job = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| UpstreamError::Protocol("202 without a job Location".into()))?;
                self.follow_job(&job, caller).await
            }
            _ => Err(self.status_error(response).await),
        }
    }

    async fn check_ready(&self) -> Result<(), UpstreamError> {
        let response = self
            .http
            .get(format!("{}/", self.api))
            .send()
            .await
            .map_err(|e| transport_error(&e, false))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(UpstreamError::Unavailable(format!(
                "root document answered {}",
                response.status()
            )))
        }
    }
}
