//! Authentication and scope checks of `/v3/*` requests.
//!
//! This module owns CC's rules for the `Authorization` header (`bearer` in any case, CC's
//! `upcase.start_with?('BEARER')`), the 401s (`CF-NotAuthenticated` without a header,
//! `CF-InvalidAuthToken` for a bad token) and the scope check: GET/HEAD need a read scope,
//! other methods a write scope (CC's `roles.rb`), else 403 `CF-NotAuthorized`.

use crate::error::CcError;
use crate::state::{AppState, lock};
use crate::token::Grant;
use axum::http::{HeaderMap, Method, header};

const READ_SCOPES: &[&str] = &[
    "cloud_controller.read",
    "cloud_controller.admin",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
];
const WRITE_SCOPES: &[&str] = &["cloud_controller.write", "cloud_controller.admin"];

/// Checks the caller's token and scopes for `method`.
pub fn authorize(app: &AppState, headers: &HeaderMap, method: &Method) -> Result<Grant, CcError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(CcError::not_authenticated());
    };
    let value = value
        .to_str()
        .map_err(|_| CcError::invalid_auth_token())?
        .trim();
    let token = bearer_token(value).ok_or_else(CcError::invalid_auth_token)?;
    let grant = lock(&app.tokens)
        .check(token)
        .map_err(|_| CcError::invalid_auth_token())?;
    let needed = if method == Method::GET || method == Method::HEAD {
        READ_SCOPES
    } else {
        WRITE_SCOPES
    };
    if grant.scopes.iter().any(|s| needed.contains(&s.as_str())) {
        Ok(grant)
    } else {
        Err(CcError::not_authorized())
    }
}

/// The token after a case-insensitive `bearer` scheme.
fn bearer_token(value: &str) -> Option<&str> {
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = value.get(6..)?;
    if !token.starts_with(' ') {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("bearerabc"), None);
        assert_eq!(bearer_token("bearer "), None);
        assert_eq!(bearer_token("bear"), None);
    }
}
