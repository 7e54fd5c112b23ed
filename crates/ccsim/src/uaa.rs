//! The UAA token endpoint, `POST /uaa/oauth/token`.
//!
//! This module owns the client-credentials grant as UAA answers it: the client authenticates
//! with HTTP Basic (or `client_id`/`client_secret` form fields), a bad client is 401
//! `{"error":"unauthorized","error_description":"Bad credentials"}` (client authentication runs
//! before the grant is looked at), a missing grant is 400 `invalid_request`, another grant 400
//! `unsupported_grant_type`; success is `{"access_token","token_type":"bearer","expires_in",
//! "scope","jti"}` with the client's authorities as scopes. Tokens come from `token`.

use crate::query::decode_pairs;
use crate::state::{AppState, lock};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use std::sync::Arc;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"UAA/client\", error=\"unauthorized\""),
        );
    }
    response
}

/// `client_id:client_secret` from an HTTP Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// `POST /uaa/oauth/token`.
pub async fn token(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = decode_pairs(&String::from_utf8_lossy(&body));
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let credentials = basic_credentials(&headers)
        .or_else(|| Some((field("client_id")?, field("client_secret")?)));
    let client = credentials.and_then(|(id, secret)| {
        app.config
            .clients
            .iter()
            .find(|c| c.id == id && c.secret == secret)
    });
    let Some(client) = client else {
        return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials");
    };
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        None | Some("") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant type",
            );
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant type: {other}"),
            );
        }
    }
    let issued = lock(&app.tokens).issue(&client.id, &client.scopes);
    let mut response = Json(json!({
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
        "jti": issued.jti,
    }))
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /uaa/token_keys`: the public keys that verify issued tokens (UAA's JWKS shape).
pub async fn token_keys(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(lock(&app.tokens).token_keys())
}
