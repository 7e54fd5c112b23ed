//! Credentials for Cloud Controller: either leasehold's own service account — a UAA client
//! whose token (client_credentials grant) is cached and refreshed before it expires — or the
//! caller's own token passed through. The UAA URL is discovered from CC's root document.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell};

use crate::upstream::{Caller, UpstreamError, Whose};

/// A token is refreshed this long before UAA says it expires (or at half its life if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// How leasehold authenticates to Cloud Controller.
pub enum Credentials {
    ServiceAccount(Box<TokenSource>),
    /// Forward the caller's `Authorization` header; CC's roles decide.
    Passthrough,
}

impl Credentials {
    /// Whose credentials a refusal is about.
    pub fn whose(&self) -> Whose {
        match self {
            Self::ServiceAccount(_) => Whose::ServiceAccount,
            Self::Passthrough => Whose::Caller,
        }
    }

    /// The `Authorization` header value for a call made for `caller`.
    pub async fn authorization(&self, caller: &Caller) -> Result<Option<String>, UpstreamError> {
        match self {
            Self::ServiceAccount(source) => Ok(Some(format!("bearer {}", source.token().await?))),
            Self::Passthrough => Ok(caller.authorization.clone()),
        }
    }

    /// Forgets a token CC refused, so the next call fetches a fresh one. Returns whether a
    /// retry can help (only a service account can get a new token).
    pub async fn refused(&self, authorization: Option<&str>) -> bool {
        match self {
            Self::ServiceAccount(source) => {
                source.forget(authorization).await;
                true
            }
            Self::Passthrough => false,
        }
    }
}

struct Cached {
    authorization: String,
    token: String,
    refresh_at: Instant,
}

/// Client-credentials tokens from UAA, cached.
pub struct TokenSource {
    http: reqwest::Client,
    api: String,
    client_id: String,
    client_secret: String,
    uaa: OnceCell<String>,
    cached: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn new(
        http: reqwest::Client,
        api: String,
        client_id: String,
        client_secret: String,
    ) -> Self {
        Self {
            http,
            api,
            client_id,
            client_secret,
            uaa: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a fresh one when it is close to expiry.
    pub async fn token(&self) -> Result<String, UpstreamError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn forget(&self, authorization: Option<&str>) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().map(|c| c.authorization.as_str()) == authorization {
            *cached = None;
        }
    }

    async fn uaa_url(&self) -> Result<&String, UpstreamError> {
        self.uaa
            .get_or_try_init(|| async {
                let root: serde_json::Value = self
                    .http
                    .get(format!("{}/", self.api))
                    .send()
                    .await
                    .map_err(|e| super::transport_error(&e, false))?
                    .error_for_status()
                    .map_err(|e| UpstreamError::Unavailable(format!("root document: {e}")))?
                    .json()
                    .await
                    .map_err(|e| UpstreamError::Protocol(format!("root document: {e}")))?;
                root.pointer("/links/uaa/href")
                    .or_else(|| root.pointer("/links/login/href"))
                    .and_then(|v| v.as_str())
                    .map(|s| s.trim_end_matches('/').to_owned())
                    .ok_or_else(|| {
                        UpstreamError::Protocol("root document has no links.uaa.href".into())
                    })
            })
            .await
    }

    async fn fetch(&self) -> Result<Cached, UpstreamError> {
        let uaa = self.uaa_url().await?;
        let response = self
            .http
            .post(format!("{uaa}/oauth/token"))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("accept", "application/json")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| super::transport_error(&e, false))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(UpstreamError::Unauthenticated(Whose::ServiceAccount));
        }
        if !status.is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "UAA answered {status} to the token request"
            )));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| UpstreamError::Protocol(format!("UAA token response: {e}")))?;
        let life = Duration::from_secs(token.expires_in.unwrap_or(300));
        let margin = REFRESH_MARGIN.min(life / 2);
        Ok(Cached {
            authorization: format!("bearer {}", token.access_token),
            token: token.access_token,
            refresh_at: Instant::now() + life - margin,
        })
    }
}
