//! leasehold's HTTP API as the workloads use it. Every client task owns one
//! `reqwest::Client` holding at most one idle connection, and issues one request at a time,
//! so it reuses a single HTTP/1.1 keep-alive connection for the whole run.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

/// Long enough for `wait_seconds: 60` plus the server's own work.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// The label every metadata workload writes: a counter.
pub const COUNTER_LABEL: &str = "bench.example.com/n";

pub fn client() -> Client {
    Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// Why a request did not do what the workload wanted: the status, or `transport` /
/// `decode` when there was no usable answer.
#[derive(Debug, Clone)]
pub struct Failure(pub String);

impl Failure {
    fn status(status: StatusCode) -> Self {
        Failure(status.as_u16().to_string())
    }

    fn transport(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Failure("timeout".into())
        } else if e.is_decode() || e.is_body() {
            Failure("decode".into())
        } else {
            Failure("transport".into())
        }
    }

    pub fn is_transport(&self) -> bool {
        matches!(self.0.as_str(), "transport" | "timeout")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lease {
    pub id: String,
    pub fencing_token: u64,
    /// 201 (a new lease) rather than 200 (the holder's own lease, renewed).
    #[serde(skip)]
    pub granted: bool,
}

/// `{base}/v1/resources/routes/{guid}`
pub fn resource_url(base: &str, guid: &uuid::Uuid) -> String {
    format!("{}/v1/resources/routes/{guid}", base.trim_end_matches('/'))
}

/// Reads and drops a body, so the connection goes back to the pool.
async fn drain(response: reqwest::Response) {
    let _ = response.bytes().await;
}

/// POST …/lease; a grant (201) or a renewal (200) is a success.
pub async fn acquire(
    client: &Client,
    resource: &str,
    holder: &str,
    ttl_seconds: u64,
    wait_seconds: u64,
) -> Result<Lease, Failure> {
    let mut body = json!({"holder": holder, "ttl_seconds": ttl_seconds});
    if wait_seconds > 0 {
        body["wait_seconds"] = json!(wait_seconds);
    }
    let response = client
        .post(format!("{resource}/lease"))
        .json(&body)
        .send()
        .await
        .map_err(|e| Failure::transport(&e))?;
    let status = response.status();
    if status == StatusCode::CREATED || status == StatusCode::OK {
        let mut lease = response
            .json::<Lease>()
            .await
            .map_err(|e| Failure::transport(&e))?;
        lease.granted = status == StatusCode::CREATED;
        Ok(lease)
    } else {
        drain(response).await;
        Err(Failure::status(status))
    }
}

/// DELETE /v1/leases/{id}: 204.
pub async fn release(client: &Client, base: &str, lease_id: &str) -> Result<(), Failure> {
    let response = client
        .delete(format!(
            "{}/v1/leases/{lease_id}",
            base.trim_end_matches('/')
        ))
        .send()
        .await
        .map_err(|e| Failure::transport(&e))?;
    let status = response.status();
    drain(response).await;
    if status == StatusCode::NO_CONTENT {
        Ok(())
    } else {
        Err(Failure::status(status))
    }
}

/// What a PATCH sends as its precondition.
pub enum Precondition<'a> {
    Fence(u64),
    IfMatch(&'a str),
}

/// PATCH …/metadata setting the counter label; `Ok(new ETag)` on 200.
pub async fn patch_counter(
    client: &Client,
    resource: &str,
    value: u64,
    precondition: Precondition<'_>,
) -> Result<String, Failure> {
    let mut request = client
        .patch(format!("{resource}/metadata"))
        .json(&json!({"metadata": {"labels": {COUNTER_LABEL: value.to_string()}}}));
    request = match precondition {
        Precondition::Fence(token) => request.header("Fencing-Token", token.to_string()),
        Precondition::IfMatch(etag) => request.header("If-Match", etag),
    };
    let response = request.send().await.map_err(|e| Failure::transport(&e))?;
    let status = response.status();
    let etag = etag_of(&response);
    drain(response).await;
    if status == StatusCode::OK {
        Ok(etag.unwrap_or_default())
    } else {
        Err(Failure::status(status))
    }
}

fn etag_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// GET the resource: its `ETag` and the counter label (0 when absent).
pub async fn read_counter(client: &Client, resource: &str) -> Result<(String, u64), Failure> {
    let response = client
        .get(resource)
        .send()
        .await
        .map_err(|e| Failure::transport(&e))?;
    let status = response.status();
    if status != StatusCode::OK {
        drain(response).await;
        return Err(Failure::status(status));
    }
    let etag = etag_of(&response).ok_or_else(|| Failure("no-etag".into()))?;
    let body: Value = response.json().await.map_err(|e| Failure::transport(&e))?;
    let counter = body["metadata"]["labels"][COUNTER_LABEL]
        .as_str()
        .map_or(Ok(0), str::parse)
        .map_err(|_| Failure("decode".into()))?;
    Ok((etag, counter))
}
