//! Authentication at the edge: every `/v1` request (and `/metrics` when it is protected)
//! must carry a bearer token that the configured authenticator accepts, with the scope its
//! method needs (`leasehold.read` for reads, `leasehold.write` for everything else;
//! `leasehold.admin` implies both). The caller's identity travels on as an [`Authz`]
//! request extension. `/healthz`, `/readyz`, `/docs` and `/openapi.json` stay open.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{AuthError, Authz, READ, WRITE};

use super::AppState;
use super::problem::Problem;

/// The scope a request needs, or `None` for the open routes.
fn needed_scope(state: &AppState, method: &Method, path: &str) -> Option<&'static str> {
    if path.starts_with("/v1/") || path == "/v1" {
        Some(if matches!(*method, Method::GET | Method::HEAD) {
            READ
        } else {
            WRITE
        })
    } else if path == "/metrics" && !state.metrics_open {
        Some(READ)
    } else {
        None
    }
}

/// RFC 6750 §3: a quoted-string parameter value.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// Refuses resource types this instance does not serve (`LEASEHOLD_RESOURCE_TYPES`).
fn type_refused(state: &AppState, path: &str) -> Option<Response> {
    let allowed = state.resource_types.as_ref()?;
    let resource_type = path.strip_prefix("/v1/resources/")?.split('/').next()?;
    let parsed = resource_type.parse().ok()?;
    if allowed.contains(&parsed) {
        return None;
    }
    let served: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    Some(
        Problem::new(
            StatusCode::FORBIDDEN,
            "resource-type-not-allowed",
            "Resource type not allowed",
            format!(
                "this leasehold serves only {}; '{resource_type}' is not among them",
                served.join(", ")
            ),
        )
        .into_response(),
    )
}

pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(scope) = needed_scope(&state, request.method(), request.uri().path()) else {
        request.extensions_mut().insert(Authz::default());
        return next.run(request).await;
    };
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match state.auth.authenticate(header).await {
        Ok(principal) => principal,
        Err(AuthError::Missing) => {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
                AuthError::Missing.to_string(),
            )
            .header(WWW_AUTHENTICATE, "Bearer realm=\"leasehold\"".into())
            .into_response();
        }
        Err(AuthError::Invalid(reason)) => {
            tracing::info!(%reason, "refused a token");
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
                format!("invalid token: {reason}"),
            )
            .header(
                WWW_AUTHENTICATE,
                format!(
                    "Bearer realm=\"leasehold\", error=\"invalid_token\", error_description=\"{}\"",
                    quoted(&reason)
                ),
            )
            .into_response();
        }
        Err(error @ AuthError::Unavailable(_)) => {
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                error.to_string(),
            )
            .into_response();
        }
    };
    let authz = match &principal {
        None => Authz::default(),
        Some(p) if p.has(scope) => Authz::from(p),
        Some(p) => {
            return Problem::new(
                StatusCode::FORBIDDEN,
                "insufficient-scope",
                "Insufficient scope",
                format!("'{}' lacks the scope {scope}", p.name),
            )
            .with("scope", scope)
            .header(
                WWW_AUTHENTICATE,
                format!(
                    "Bearer realm=\"leasehold\", error=\"insufficient_scope\", scope=\"{scope}\""
                ),
            )
            .into_response();
        }
    };
    if let Some(refused) = type_refused(&state, request.uri().path()) {
        return refused;
    }
    request.extensions_mut().insert(authz);
    next.run(request).await
}
