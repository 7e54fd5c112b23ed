//! Access tokens: issuing and checking, as UAA does it — RS256-signed JWTs.
//!
//! This module owns the token format. Tokens carry `jti`, `sub`/`client_id`/`cid`, `scope`,
//! `aud` (the scopes' resource names, as UAA derives them), `iss` (`{base}/uaa/oauth/token`),
//! `iat` and `exp`, signed with one of two test keys (`keys/`); the public halves are served
//! at `/uaa/token_keys`. `rotate_key` switches to the other key and stops publishing the old
//! one. `expire_all` invalidates every token issued so far (by `jti`).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    /// The bearer token (a JWT).
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
    /// Not a token of ours: bad signature or format, unknown key, or invalidated.
    Unknown,
    /// Past its expiry.
    Expired,
}

/// A UAA access token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    jti: String,
    sub: String,
    client_id: String,
    cid: String,
    azp: String,
    grant_type: String,
    scope: Vec<String>,
    aud: Vec<String>,
    iss: String,
    iat: u64,
    exp: u64,
    zid: String,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

fn key(pem: &str, jwk: &str) -> Key {
    // The keys are compiled in and known good; a broken one is a build defect.
    let jwk: Value = serde_json::from_str(jwk).expect("a valid JWK");
    let n = jwk["n"].as_str().expect("n");
    let e = jwk["e"].as_str().expect("e");
    Key {
        kid: jwk["kid"].as_str().expect("kid").to_owned(),
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("a valid RSA key"),
        decoding: DecodingKey::from_rsa_components(n, e).expect("valid RSA components"),
        jwk,
    }
}

/// The signing keys and the tokens issued so far.
pub struct TokenStore {
    ttl: Duration,
    issuer: String,
    keys: [Key; 2],
    active: usize,
    valid: HashSet<String>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("issuer", &self.issuer)
            .field("active_kid", &self.keys[self.active].kid)
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// UAA's audience: the resource part of every scope (`cloud_controller.read` → `cloud_controller`).
fn audience(scopes: &[String]) -> Vec<String> {
    let mut aud: Vec<String> = Vec::new();
    for scope in scopes {
        let resource = scope.split('.').next().unwrap_or(scope).to_owned();
        if !aud.contains(&resource) {
            aud.push(resource);
        }
    }
    aud
}

impl TokenStore {
    /// A store issuing tokens that live `ttl`, naming `issuer` as their `iss`.
    pub fn new(ttl: Duration, issuer: String) -> Self {
        Self {
            ttl,
            issuer,
            keys: [
                key(
                    include_str!("../keys/uaa-key-1.pem"),
                    include_str!("../keys/uaa-key-1.jwk.json"),
                ),
                key(
                    include_str!("../keys/uaa-key-2.pem"),
                    include_str!("../keys/uaa-key-2.jwk.json"),
                ),
            ],
            active: 0,
            valid: HashSet::new(),
        }
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Issues a token for a client with the given scopes.
    pub fn issue(&mut self, client_id: &str, scopes: &[String]) -> IssuedToken {
        let now = unix_now();
        let jti = Uuid::new_v4().simple().to_string();
        let claims = Claims {
            jti: jti.clone(),
            sub: client_id.to_owned(),
            client_id: client_id.to_owned(),
            cid: client_id.to_owned(),
            azp: client_id.to_owned(),
            grant_type: "client_credentials".to_owned(),
            scope: scopes.to_vec(),
            aud: audience(scopes),
            iss: self.issuer.clone(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            zid: "uaa".to_owned(),
        };
        let key = &self.keys[self.active];
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        // Signing with a compiled-in valid key cannot fail.
        let access_token =
            jsonwebtoken::encode(&header, &claims, &key.encoding).expect("sign a token");
        self.valid.insert(jti.clone());
        IssuedToken {
            access_token,
            expires_in: self.ttl.as_secs(),
            scope: scopes.join(" "),
            jti,
        }
    }

    /// Checks a bearer token (without the scheme): signature by the active key, `exp`, and
    /// not invalidated.
    pub fn check(&self, token: &str) -> Result<Grant, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Unknown)?;
        let key = &self.keys[self.active];
        if header.kid.as_deref() != Some(key.kid.as_str()) {
            return Err(TokenError::Unknown);
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Unknown,
            },
        )?;
        if !self.valid.contains(&data.claims.jti) {
            return Err(TokenError::Unknown);
        }
        Ok(Grant {
            client_id: data.claims.client_id,
            scopes: data.claims.scope,
        })
    }

    /// Invalidates every token issued so far (tokens issued later are valid).
    pub fn expire_all(&mut self) {
        self.valid.clear();
    }

    /// Signs with the other key from now on and publishes only it.
    pub fn rotate_key(&mut self) {
        self.active = 1 - self.active;
    }

    /// `GET /uaa/token_keys`: the published verification keys.
    pub fn token_keys(&self) -> Value {
        serde_json::json!({ "keys": [self.keys[self.active].jwk.clone()] })
    }

    /// Signs arbitrary claims with the active key (tests forge tokens with it).
    pub fn sign(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.keys[self.active].encoding).expect("sign")
    }

    /// The active key's id.
    pub fn active_kid(&self) -> &str {
        &self.keys[self.active].kid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_are_rs256_jwts_that_check_until_invalidated_or_rotated_away() {
        let mut store =
            TokenStore::new(Duration::from_secs(60), "http://sim/uaa/oauth/token".into());
        let scopes = vec![
            "cloud_controller.read".to_string(),
            "leasehold.write".to_string(),
        ];
        let t = store.issue("c", &scopes);
        assert_eq!(t.scope, "cloud_controller.read leasehold.write");
        let header = jsonwebtoken::decode_header(&t.access_token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("ccsim-key-1"));
        assert_eq!(
            store.check(&t.access_token),
            Ok(Grant {
                client_id: "c".into(),
                scopes
            })
        );
        assert_eq!(store.check("nope"), Err(TokenError::Unknown));
        store.rotate_key();
        assert_eq!(store.check(&t.access_token), Err(TokenError::Unknown));
        assert_eq!(store.token_keys()["keys"][0]["kid"], "ccsim-key-2");
        let fresh = store.issue("c", &[]);
        assert!(store.check(&fresh.access_token).is_ok());
        store.expire_all();
        assert_eq!(store.check(&fresh.access_token), Err(TokenError::Unknown));
    }

    #[test]
    fn the_audience_is_the_resource_part_of_each_scope() {
        let scopes = [
            "cloud_controller.read",
            "cloud_controller.write",
            "leasehold.admin",
        ]
        .map(String::from);
        assert_eq!(audience(&scopes), ["cloud_controller", "leasehold"]);
    }
}
