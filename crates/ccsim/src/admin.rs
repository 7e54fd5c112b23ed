//! The admin API under `/admin` (no authentication, no faults, not logged).
//!
//! This module owns seeding and out-of-band edits of resources (`POST /admin/resources`,
//! `GET`/`PUT`/`DELETE /admin/resources/{type}/{guid}`), the request log endpoints
//! (`GET`/`DELETE /admin/requests`), the fault endpoints (`GET`/`PUT`/`DELETE /admin/faults`;
//! `PUT` replaces the whole configuration and carries out the one-shot actions
//! `expire_tokens` and `refuse_connections_ms`), and loading a seed file.

use crate::error::{CcError, Error};
use crate::faults::Faults;
use crate::state::{AppState, Control, lock};
use crate::store::{build_resource, merge_over, timestamp};
use crate::types::{self, ResourceType};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

type Shared = State<Arc<AppState>>;

fn bad_request(detail: impl Into<String>) -> CcError {
    CcError::admin(StatusCode::BAD_REQUEST, detail)
}

fn admin_type(name: &str) -> Result<&'static ResourceType, CcError> {
    types::lookup(name).ok_or_else(|| bad_request(format!("unknown resource type '{name}'")))
}

fn parse_json(bytes: &[u8]) -> Result<Value, CcError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("invalid JSON: {e}")))
}

/// Creates a resource from a seed entry's type and body; 409 if the guid exists.
pub fn create(app: &AppState, ty: &str, body: &Value) -> Result<Value, CcError> {
    let ty = admin_type(ty)?;
    let resource =
        build_resource(ty, body, &app.base_url, chrono::Utc::now()).map_err(bad_request)?;
    let guid = resource
        .get("guid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut store = app.store();
    if store.contains(ty, guid) {
        return Err(CcError::admin(
            StatusCode::CONFLICT,
            format!("{} {guid} already exists", ty.plural),
        ));
    }
    store.put(ty, resource.clone());
    Ok(resource)
}

/// Creates every `{"type", "body"}` entry of a seed array.
pub fn seed(app: &AppState, entries: &Value) -> Result<usize, Error> {
    let entries = entries
        .as_array()
        .ok_or_else(|| Error::Seed("the seed must be a JSON array".to_string()))?;
    for (i, entry) in entries.iter().enumerate() {
        let ty = entry
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Seed(format!("entry {i}: missing string \"type\"")))?;
        let body = entry.get("body").unwrap_or(&Value::Null);
        create(app, ty, body).map_err(|e| Error::Seed(format!("entry {i}: {}", e.detail)))?;
    }
    Ok(entries.len())
}

/// Loads a seed file (a JSON array of `{"type", "body"}`).
pub fn seed_file(app: &AppState, path: &std::path::Path) -> Result<usize, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::SeedRead {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| Error::Seed(format!("{}: {e}", path.display())))?;
    seed(app, &value)
}

/// `POST /admin/resources` `{"type", "body"}` → 201 with the created body.
pub async fn post_resource(State(app): Shared, body: Bytes) -> Result<Response, CcError> {
    let request = parse_json(&body)?;
    let ty = request
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("missing string \"type\""))?;
    let created = create(&app, ty, request.get("body").unwrap_or(&Value::Null))?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /admin/resources/{type}/{guid}`: the stored body, whatever CC's rules.
pub async fn get_resource(
    State(app): Shared,
    Path((ty, guid)): Path<(String, String)>,
) -> Result<Json<Value>, CcError> {
    let ty = admin_type(&ty)?;
    app.store()
        .get(ty, &guid)
        .cloned()
        .map(Json)
        .ok_or_else(|| CcError::admin(StatusCode::NOT_FOUND, ty.not_found_detail()))
}

/// `PUT /admin/resources/{type}/{guid}[?replace=true]`: an out-of-band change (e.g. `cf`).
///
/// The body is deep-merged over the stored one (`null` deletes a label or annotation; other
/// `null`s are stored), or with `replace=true` it replaces it (CC's defaults are filled in and
/// `created_at` is kept). `updated_at` becomes now unless the body sets it. A missing
/// resource is created (201).
pub async fn put_resource(
    State(app): Shared,
    Path((ty, guid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, CcError> {
    let ty = admin_type(&ty)?;
    let mut patch = parse_json(&body)?;
    if patch.is_null() {
        patch = json!({});
    }
    let Some(patch_map) = patch.as_object_mut() else {
        return Err(bad_request("body must be a JSON object"));
    };
    patch_map.insert("guid".into(), Value::String(guid.clone()));
    let replace = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p == "replace=true"));
    let now = chrono::Utc::now();
    let mut store = app.store();
    let existing = store.get(ty, &guid).cloned();
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let updated = match existing {
        Some(mut current) if !replace => {
            merge_over(&mut current, &patch);
            if patch.get("updated_at").is_none()
                && let Some(map) = current.as_object_mut()
            {
                map.insert("updated_at".into(), Value::String(timestamp(now)));
            }
            current
        }
        existing => {
            let mut fresh = build_resource(ty, &patch, &app.base_url, now).map_err(bad_request)?;
            if let (Some(old), Some(map)) = (existing, fresh.as_object_mut())
                && patch.get("created_at").is_none()
                && let Some(created_at) = old.get("created_at")
            {
                map.insert("created_at".into(), created_at.clone());
            }
            fresh
        }
    };
    store.put(ty, updated.clone());
    Ok((status, Json(updated)).into_response())
}

/// `DELETE /admin/resources/{type}/{guid}`: 204, or 404 if missing.
pub async fn delete_resource(
    State(app): Shared,
    Path((ty, guid)): Path<(String, String)>,
) -> Result<StatusCode, CcError> {
    let ty = admin_type(&ty)?;
    app.store()
        .remove(ty, &guid)
        .map(|_| StatusCode::NO_CONTENT)
        .ok_or_else(|| CcError::admin(StatusCode::NOT_FOUND, ty.not_found_detail()))
}

/// `GET /admin/requests`.
pub async fn get_requests(State(app): Shared) -> Json<Value> {
    Json(Value::Array(lock(&app.log).entries()))
}

/// `DELETE /admin/requests`.
pub async fn delete_requests(State(app): Shared) -> StatusCode {
    lock(&app.log).clear();
    StatusCode::NO_CONTENT
}

/// `GET /admin/faults`: what is left of the configuration.
pub async fn get_faults(State(app): Shared) -> Json<Faults> {
    Json(lock(&app.faults).clone())
}

/// `PUT /admin/faults`: replaces the configuration (counters restart).
pub async fn put_faults(State(app): Shared, body: Bytes) -> Result<Json<Faults>, CcError> {
    let value = parse_json(&body)?;
    let value = if value.is_null() { json!({}) } else { value };
    let mut faults: Faults =
        serde_json::from_value(value).map_err(|e| bad_request(format!("invalid faults: {e}")))?;
    faults.validate().map_err(bad_request)?;
    if std::mem::take(&mut faults.expire_tokens) {
        lock(&app.tokens).expire_all();
    }
    let refuse = std::mem::take(&mut faults.refuse_connections_ms);
    *lock(&app.faults) = faults.clone();
    if refuse > 0 {
        // The accept loop closes the listener once this response's connection is done with it.
        let _ = app
            .control
            .send(Control::Refuse(Duration::from_millis(refuse)));
    }
    Ok(Json(faults))
}

/// `DELETE /admin/faults`: no faults.
pub async fn delete_faults(State(app): Shared) -> StatusCode {
    *lock(&app.faults) = Faults::default();
    StatusCode::NO_CONTENT
}

/// `POST /admin/uaa/rotate-key`: sign with the other key from now on and publish only it
/// (tokens signed with the old key stop verifying).
pub async fn rotate_key(State(app): Shared) -> Json<Value> {
    let mut tokens = lock(&app.tokens);
    tokens.rotate_key();
    Json(json!({ "kid": tokens.active_kid() }))
}

/// `POST /admin/uaa/sign` `{"claims": {...}, "kid"?: "..."}`: a JWT signed RS256 with the
/// active key, with the given claims as they are — for tests that forge expired,
/// not-yet-valid, wrong-issuer or wrong-audience tokens. `iss` defaults to this UAA's.
pub async fn sign(State(app): Shared, body: Bytes) -> Result<Json<Value>, CcError> {
    let value = parse_json(&body)?;
    let mut claims = value
        .get("claims")
        .cloned()
        .filter(Value::is_object)
        .ok_or_else(|| bad_request("claims must be an object".to_string()))?;
    let tokens = lock(&app.tokens);
    if claims.get("iss").is_none() {
        claims["iss"] = json!(tokens.issuer());
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(
        value
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or(tokens.active_kid())
            .to_owned(),
    );
    Ok(Json(json!({ "token": tokens.sign(header, &claims) })))
}
