//! UAA-issued JWTs: RS256 only (never `none`, never an HMAC key made from a public key),
//! checked against the keys UAA publishes at `{uaa}/token_keys`, cached by `kid` and fetched
//! again when a token names a `kid` not in the cache (at most every `REFETCH_EVERY`, so a
//! flood of made-up kids cannot flood UAA). A fetch replaces the whole set: a key UAA no
//! longer publishes is no longer accepted. `iss`, `aud`, `exp` and `nbf` are checked with
//! a small leeway. The principal is `user_id` for user tokens, else `client_id`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::{AuthError, Principal};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(5);
/// Unknown kids trigger a fetch of UAA's keys at most this often.
const REFETCH_EVERY: Duration = Duration::from_millis(500);
/// Keys are fetched again after this long even when every kid is known, so a key UAA
/// stopped publishing stops being accepted.
const KEYS_MAX_AGE: Duration = Duration::from_secs(300);

pub struct UaaVerifier {
    http: reqwest::Client,
    keys_url: String,
    issuer: String,
    audience: String,
    keys: RwLock<Keys>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    client_id: Option<String>,
    user_id: Option<String>,
    #[serde(default)]
    scope: Vec<String>,
}

impl UaaVerifier {
    /// Verifies tokens issued by the UAA at `uaa_url` for `audience`; `issuer` defaults to
    /// UAA's own (`{uaa}/oauth/token`).
    pub fn new(
        http: reqwest::Client,
        uaa_url: &str,
        issuer: Option<String>,
        audience: String,
    ) -> Self {
        let uaa = uaa_url.trim_end_matches('/');
        Self {
            http,
            keys_url: format!("{uaa}/token_keys"),
            issuer: issuer.unwrap_or_else(|| format!("{uaa}/oauth/token")),
            audience,
            keys: RwLock::new(Keys::default()),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("not a JWT: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted; UAA signs with RS256",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY.as_secs();
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let name = claims
            .user_id
            .or(claims.client_id)
            .ok_or_else(|| AuthError::Invalid("the token names no user_id or client_id".into()))?;
        Ok(Principal {
            name,
            scopes: claims.scope.into_iter().collect::<BTreeSet<_>>(),
        })
    }

    /// The key for `kid`, fetching UAA's keys when it is unknown (rate-limited).
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let fresh = |keys: &Keys| {
            keys.fetched_at
                .is_some_and(|at| at.elapsed() < KEYS_MAX_AGE)
        };
        {
            let keys = self.keys.read().await;
            if let Some(key) = keys.by_kid.get(kid).filter(|_| fresh(&keys)) {
                return Ok(key.clone());
            }
        }
        let mut keys = self.keys.write().await;
        if let Some(key) = keys.by_kid.get(kid).filter(|_| fresh(&keys)) {
            return Ok(key.clone());
        }
        let recently = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() < REFETCH_EVERY);
        if !recently {
            keys.by_kid = self.fetch().await?;
            keys.fetched_at = Some(Instant::now());
        }
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Invalid(format!("no key '{kid}' among UAA's token keys")))
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, AuthError> {
        let unavailable =
            |e: &dyn std::fmt::Display| AuthError::Unavailable(format!("{}: {e}", self.keys_url));
        let jwks: Jwks = self
            .http
            .get(&self.keys_url)
            .send()
            .await
            .map_err(|e| unavailable(&e))?
            .error_for_status()
            .map_err(|e| unavailable(&e))?
            .json()
            .await
            .map_err(|e| unavailable(&e))?;
        let mut by_kid = HashMap::new();
        for jwk in jwks.keys {
            // Only RSA signing keys; anything else (an HMAC secret, say) is ignored.
            if jwk.kty.as_deref() != Some("RSA") || jwk.alg.as_deref().is_some_and(|a| a != "RS256")
            {
                continue;
            }
            let (Some(n), Some(e)) = (jwk.n, jwk.e) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_rsa_components(&n, &e) {
                by_kid.insert(jwk.kid.unwrap_or_default(), key);
            }
        }
        tracing::info!(keys = by_kid.len(), url = %self.keys_url, "fetched UAA's token keys");
        Ok(by_kid)
    }
}
