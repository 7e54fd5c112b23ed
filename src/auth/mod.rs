//! Authentication and the scopes it grants. Three modes (`LEASEHOLD_AUTH`): `none` (only on
//! loopback, or with `--insecure-no-auth`), `uaa` (UAA-issued RS256 JWTs verified against
//! UAA's published keys) and `tokens` (static bearer tokens from a file, stored as SHA-256
//! hashes, reloaded on SIGHUP). A request's principal is what leases are bound to.

pub mod tokens;
pub mod uaa;

use std::collections::BTreeSet;

/// Read anything: GETs.
pub const READ: &str = "leasehold.read";
/// Take, renew, release leases and write resources.
pub const WRITE: &str = "leasehold.write";
/// Revoke others' leases and list every lease; implies read and write.
pub const ADMIN: &str = "leasehold.admin";

/// Who is calling, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The UAA `user_id` or `client_id`, or a static token's principal.
    pub name: String,
    pub scopes: BTreeSet<String>,
}

impl Principal {
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.contains(ADMIN) || self.scopes.contains(scope)
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.contains(ADMIN)
    }
}

/// The caller of a request as the coordinator sees it: nobody known without
/// authentication, else the principal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authz {
    pub principal: Option<String>,
    pub admin: bool,
}

impl Authz {
    /// Whether this caller may act on a lease taken by `owner` (its principal).
    pub fn may_act_for(&self, owner: Option<&str>) -> bool {
        match (owner, self.principal.as_deref()) {
            (None, _) => true,
            (Some(_), _) if self.admin => true,
            (Some(owner), Some(me)) => owner == me,
            (Some(_), None) => false,
        }
    }
}

impl From<&Principal> for Authz {
    fn from(p: &Principal) -> Self {
        Self {
            principal: Some(p.name.clone()),
            admin: p.is_admin(),
        }
    }
}

/// Why a request was not authenticated: 401 with RFC 6750's `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (RFC 6750: no error code).
    #[error("this request needs an `Authorization: Bearer <token>` header")]
    Missing,
    /// The token is malformed, badly signed, expired, not yet valid, for another issuer or
    /// audience, or unknown: `error="invalid_token"`.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The keys to check it could not be fetched: 503, not the caller's fault.
    #[error("cannot verify tokens right now: {0}")]
    Unavailable(String),
}

/// How requests are authenticated.
pub enum Authenticator {
    None,
    Uaa(uaa::UaaVerifier),
    Tokens(tokens::TokenFile),
}

impl Authenticator {
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Uaa(_) => "uaa",
            Self::Tokens(_) => "tokens",
        }
    }

    /// The principal behind an `Authorization` header; `Ok(None)` without authentication.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Option<Principal>, AuthError> {
        let token = || -> Result<&str, AuthError> {
            let header = header.ok_or(AuthError::Missing)?.trim();
            let (scheme, token) = header.split_once(' ').ok_or(AuthError::Missing)?;
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(AuthError::Missing);
            }
            Ok(token.trim())
        };
        match self {
            Self::None => Ok(None),
            Self::Uaa(verifier) => verifier.verify(token()?).await.map(Some),
            Self::Tokens(file) => file.verify(token()?).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_or_an_admin_may_act_on_a_bound_lease() {
        let me = Authz {
            principal: Some("a".into()),
            admin: false,
        };
        let admin = Authz {
            principal: Some("root".into()),
            admin: true,
        };
        assert!(me.may_act_for(Some("a")));
        assert!(!me.may_act_for(Some("b")));
        assert!(admin.may_act_for(Some("b")));
        assert!(
            me.may_act_for(None),
            "leases taken without authentication are unbound"
        );
        assert!(!Authz::default().may_act_for(Some("a")));
    }

    #[test]
    fn admin_implies_read_and_write() {
        let p = Principal {
            name: "x".into(),
            scopes: [ADMIN.to_string()].into(),
        };
        assert!(p.has(READ) && p.has(WRITE) && p.is_admin());
        let r = Principal {
            name: "y".into(),
            scopes: [READ.to_string()].into(),
        };
        assert!(r.has(READ) && !r.has(WRITE));
    }
}
