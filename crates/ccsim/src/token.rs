//! Access tokens: issuing and checking.
//!
//! This module owns everything about the token format. Tokens are opaque random strings
//! (a v4 UUID without dashes) remembered with their client, scopes and expiry. Everything else
//! goes through [`TokenStore::issue`], [`TokenStore::check`] and [`TokenStore::expire_all`], so
//! RS256-signed JWTs (with `aud`, `iss`, `exp` checks as CC does) can replace this module later
//! without touching the callers.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What a valid token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// The token's scopes.
    pub scopes: Vec<String>,
}

/// A freshly issued token, as UAA's token endpoint describes it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The bearer token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Space-separated scopes.
    pub scope: String,
    /// Token id.
    pub jti: String,
}

/// Why a token was refused (both answer CC's `CF-InvalidAuthToken`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Never issued, or invalidated by `expire_tokens`.
    Unknown,
    /// Past its expiry.
    Expired,
}

#[derive(Debug)]
struct Entry {
    grant: Grant,
    expires_at: Instant,
}

/// The tokens issued so far.
#[derive(Debug)]
pub struct TokenStore {
    ttl: Duration,
    tokens: HashMap<String, Entry>,
}

impl TokenStore {
    /// A store issuing tokens that live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tokens: HashMap::new(),
        }
    }

    /// Issues a token for a client with the given scopes.
    pub fn issue(&mut self, client_id: &str, scopes: &[String]) -> IssuedToken {
        let now = Instant::now();
        self.tokens.retain(|_, e| e.expires_at > now);
        let access_token = Uuid::new_v4().simple().to_string();
        let jti = Uuid::new_v4().simple().to_string();
        self.tokens.insert(
            access_token.clone(),
            Entry {
                grant: Grant {
                    client_id: client_id.to_string(),
                    scopes: scopes.to_vec(),
                },
                expires_at: now + self.ttl,
            },
        );
        IssuedToken {
            access_token,
            expires_in: self.ttl.as_secs(),
            scope: scopes.join(" "),
            jti,
        }
    }

    /// Checks a bearer token (without the scheme).
    pub fn check(&self, token: &str) -> Result<Grant, TokenError> {
        let entry = self.tokens.get(token).ok_or(TokenError::Unknown)?;
        if entry.expires_at <= Instant::now() {
            return Err(TokenError::Expired);
        }
        Ok(entry.grant.clone())
    }

    /// Invalidates every token issued so far (tokens issued later are valid).
    pub fn expire_all(&mut self) {
        self.tokens.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_check_until_expired_or_invalidated() {
        let mut store = TokenStore::new(Duration::from_secs(60));
        let scopes = vec!["a.read".to_string(), "a.write".to_string()];
        let t = store.issue("c", &scopes);
        assert_eq!(t.scope, "a.read a.write");
        assert_eq!(t.access_token.len(), 32);
        assert_eq!(
            store.check(&t.access_token),
            Ok(Grant {
                client_id: "c".into(),
                scopes
            })
        );
        assert_eq!(store.check("nope"), Err(TokenError::Unknown));
        store.expire_all();
        assert_eq!(store.check(&t.access_token), Err(TokenError::Unknown));

        let mut short = TokenStore::new(Duration::ZERO);
        let t = short.issue("c", &[]);
        assert_eq!(short.check(&t.access_token), Err(TokenError::Expired));
    }
}
