//! The Cloud Controller endpoints: `/`, `/v3`, and `/v3/{type}[/{guid}]`, `/v3/jobs/{guid}`.
//!
//! This module owns the order of CC's checks per endpoint (router 404, then authentication and
//! scope, then body or query validation, then existence; spaces check existence before the
//! body), the list endpoint (pagination, `guids`, `order_by`, `label_selector`), the
//! metadata-only PATCH (with the `drop_after_patch` fault), DELETE with CC's codes per type,
//! and the job resource.

use crate::auth::authorize;
use crate::error::CcError;
use crate::metadata;
use crate::query::{decode_pairs, to_query};
use crate::reqlog::{BODY_LIMIT, LogSeq};
use crate::selector::{self, Requirement};
use crate::server::ConnKill;
use crate::state::{AppState, lock};
use crate::store::timestamp;
use crate::types::{self, DeleteKind, ResourceType, TYPES};
use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// CC's API version reported by the root document.
pub const CC_VERSION: &str = "3.228.0";

type Shared = State<Arc<AppState>>;

/// Any URL CC has no route for.
pub async fn unknown_request() -> CcError {
    CcError::unknown_request()
}

/// `GET /`: CC's root document (no authentication).
pub async fn root(State(app): Shared) -> Json<Value> {
    let base = &app.base_url;
    Json(json!({
        "links": {
            "self": {"href": base},
            "cloud_controller_v3": {"href": format!("{base}/v3"), "meta": {"version": CC_VERSION}},
            "login": {"href": format!("{base}/uaa")},
            "uaa": {"href": format!("{base}/uaa")},
        }
    }))
}

/// `GET /v3`: links to the collections ccsim serves (no authentication).
pub async fn v3_root(State(app): Shared) -> Json<Value> {
    let base = &app.base_url;
    let mut links = Map::new();
    links.insert("self".into(), json!({"href": format!("{base}/v3")}));
    for ty in TYPES {
        links.insert(
            ty.plural.into(),
            json!({"href": format!("{base}/v3/{}", ty.plural)}),
        );
    }
    Json(json!({ "links": links }))
}

fn resource_type(name: &str) -> Result<&'static ResourceType, CcError> {
    types::lookup(name).ok_or_else(CcError::unknown_request)
}

/// `GET /v3/{type}/{guid}`.
pub async fn get_resource(
    State(app): Shared,
    Path((ty, guid)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, CcError> {
    let ty = resource_type(&ty)?;
    authorize(&app, &headers, &method)?;
    let mut store = app.store();
    if app.config.auto_create {
        store.auto_create(ty, &guid, &app.base_url);
    }
    store
        .get(ty, &guid)
        .cloned()
        .map(Json)
        .ok_or_else(|| CcError::resource_not_found(ty.not_found_detail()))
}

/// `PATCH /v3/{type}/{guid}`: CC's metadata-only update.
pub async fn patch_resource(
    State(app): Shared,
    Path((ty, guid)): Path<(String, String)>,
    request: Request,
) -> Response {
    match patch(&app, &ty, &guid, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn patch(
    app: &AppState,
    ty: &str,
    guid: &str,
    request: Request,
) -> Result<Response, CcError> {
    let ty = resource_type(ty)?;
    authorize(app, request.headers(), request.method())?;
    let kill = request.extensions().get::<ConnKill>().cloned();
    let seq = request.extensions().get::<LogSeq>().copied();
    let bytes = to_bytes(request.into_body(), BODY_LIMIT)
        .await
        .map_err(|_| CcError::message_parse_error())?;
    let body = metadata::parse_body(&bytes)?;
    let updated = {
        let mut store = app.store();
        if app.config.auto_create {
            store.auto_create(ty, guid, &app.base_url);
        }
        let not_found = || CcError::resource_not_found(ty.not_found_detail());
        if ty.not_found_before_validation && !store.contains(ty, guid) {
            return Err(not_found());
        }
        metadata::validate_body(&body)?;
        let mut updated = store.get(ty, guid).cloned().ok_or_else(not_found)?;
        metadata::apply(&mut updated, body.get("metadata"), app.limits())?;
        if ty.bumps_updated_at
            && let Some(map) = updated.as_object_mut()
        {
            map.insert(
                "updated_at".into(),
                Value::String(timestamp(chrono::Utc::now())),
            );
        }
        store.put(ty, updated.clone());
        updated
    };
    if let Some(kill) = kill
        && lock(&app.faults).take_drop_after_patch()
    {
        if let Some(LogSeq(seq)) = seq {
            lock(&app.log).mark_dropped(seq);
        }
        tracing::info!(%guid, "drop_after_patch: closing the connection without a response");
        kill.0.notify_one();
        // The connection task drops this future together with the connection.
        std::future::pending::<()>().await;
    }
    Ok(Json(updated).into_response())
}

/// `DELETE /v3/{type}/{guid}` with CC's code for the type.
pub async fn delete_resource(
    State(app): Shared,
    Path((ty, guid)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, CcError> {
    let ty = resource_type(&ty)?;
    if ty.delete == DeleteKind::NoDelete {
        return Err(CcError::unknown_request());
    }
    authorize(&app, &headers, &method)?;
    let mut store = app.store();
    if app.config.auto_create {
        store.auto_create(ty, &guid, &app.base_url);
    }
    let body = store
        .get(ty, &guid)
        .cloned()
        .ok_or_else(|| CcError::resource_not_found(ty.not_found_detail()))?;
    match ty.deletes_async(&body) {
        Some(true) => {
            let fail = lock(&app.faults).take_fail_job();
            let job = store.start_delete_job(
                ty,
                &guid,
                ty.delete_operation(&body),
                app.config.job_delay,
                fail,
            );
            let location = format!("{}/v3/jobs/{job}", app.base_url);
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)]).into_response())
        }
        Some(false) => {
            store.remove(ty, &guid);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(CcError::unknown_request()),
    }
}

/// `GET /v3/jobs/{guid}`.
pub async fn get_job(
    State(app): Shared,
    Path(guid): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, CcError> {
    authorize(&app, &headers, &method)?;
    let store = app.store();
    let job = store
        .job(&guid)
        .ok_or_else(|| CcError::resource_not_found("Job not found"))?;
    Ok(Json(store.job_body(job, &app.base_url)))
}

/// Parsed list query.
struct ListQuery {
    page: usize,
    per_page: usize,
    order_by: Option<(bool, String)>,
    guids: Option<Vec<String>>,
    label_selector: Option<(String, Vec<Option<Requirement>>)>,
}

/// Ruby's `String#to_i`: leading whitespace, optional sign, digits; anything else is 0.
fn ruby_to_i(s: &str) -> i64 {
    let s = s.trim_start();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let value = digits[..end]
        .parse::<i64>()
        .unwrap_or(if end > 0 { i64::MAX } else { 0 });
    if negative { -value } else { value }
}

/// Validates a list query as CC's `ListMessage` (+ `MetadataListMessage` except for routes).
fn parse_list_query(ty: &ResourceType, raw: Option<&str>) -> Result<ListQuery, CcError> {
    let pairs = decode_pairs(raw.unwrap_or(""));
    // Rack keeps the last value of a repeated key.
    let param = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut errors = Vec::new();
    let mut page = 1;
    if let Some(p) = param("page") {
        match usize::try_from(ruby_to_i(p)) {
            Ok(n) if n > 0 => page = n,
            _ => errors.push("Page must be a positive integer".to_string()),
        }
    }
    let mut per_page = 50;
    if let Some(p) = param("per_page") {
        let n = ruby_to_i(p);
        if n <= 0 {
            errors.push("Per page must be a positive integer".to_string());
        } else if n > 5000 {
            errors.push("Per page must be between 1 and 5000".to_string());
        } else {
            per_page = usize::try_from(n).unwrap_or(50);
        }
    }
    let mut order_by = None;
    if let Some(o) = param("order_by").filter(|o| !o.trim().is_empty()) {
        let (descending, column) = match o.strip_prefix('-') {
            Some(c) => (true, c),
            None => (false, o.strip_prefix('+').unwrap_or(o)),
        };
        if column == "created_at" || column == "updated_at" {
            order_by = Some((descending, column.to_string()));
        } else {
            errors.push("Order by can only be: 'created_at', 'updated_at'".to_string());
        }
    }
    let guids = param("guids").map(|g| {
        g.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    let label_selector = param("label_selector").map(|s| (s.to_string(), selector::parse(s)));
    if let Some((_, requirements)) = &label_selector
        && ty.plural != "routes"
    {
        errors.extend(selector::validate(requirements));
    }
    if !errors.is_empty() {
        return Err(CcError::bad_query_parameter(&errors));
    }
    Ok(ListQuery {
        page,
        per_page,
        order_by,
        guids,
        label_selector,
    })
}

/// `GET /v3/{type}`: CC's paginated list with `guids`, `order_by` and `label_selector`.
///
/// `/v3/routes` reproduces CC's `RoutesListMessage`, which skips label_selector validation:
/// an empty selector applies no filter, invalid keys or values just match (or not), and an
/// unparseable requirement answers what CC's `LabelSelectorQueryGenerator` would raise on a
/// `nil` requirement: 500 `UnknownError`.
pub async fn list(
    State(app): Shared,
    Path(ty): Path<String>,
    RawQuery(raw): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, CcError> {
    let ty = resource_type(&ty)?;
    authorize(&app, &headers, &method)?;
    let query = parse_list_query(ty, raw.as_deref())?;
    let requirements: Vec<Requirement> = match &query.label_selector {
        Some((_, parsed)) => {
            if parsed.iter().any(Option::is_none) {
                return Err(CcError::unknown_error());
            }
            parsed.iter().flatten().cloned().collect()
        }
        None => Vec::new(),
    };
    let store = app.store();
    let empty = Map::new();
    let mut selected: Vec<&Value> = store
        .list(ty)
        .into_iter()
        .filter(|r| {
            query.guids.as_ref().is_none_or(|guids| {
                r.get("guid")
                    .and_then(Value::as_str)
                    .is_some_and(|g| guids.iter().any(|x| x == g))
            })
        })
        .filter(|r| {
            let labels = r
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            selector::matches(&requirements, labels)
        })
        .collect();
    if let Some((descending, column)) = &query.order_by {
        let key = |r: &&Value| {
            r.get(column.as_str())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        selected.sort_by_key(key);
        if *descending {
            selected.reverse();
        }
    }

    let total = selected.len();
    let total_pages = total.div_ceil(query.per_page).max(1);
    let resources: Vec<Value> = selected
        .into_iter()
        .skip((query.page - 1).saturating_mul(query.per_page))
        .take(query.per_page)
        .cloned()
        .collect();

    let mut params: Vec<(&str, String)> = vec![("per_page", query.per_page.to_string())];
    if let Some((descending, column)) = &query.order_by {
        let sign = if *descending { "-" } else { "" };
        params.push(("order_by", format!("{sign}{column}")));
    }
    if let Some(guids) = &query.guids {
        params.push(("guids", guids.join(",")));
    }
    if let Some((raw_selector, _)) = &query.label_selector {
        params.push(("label_selector", raw_selector.clone()));
    }
    let href = |page: usize| {
        let mut p = params.clone();
        p.push(("page", page.to_string()));
        json!({"href": format!("{}/v3/{}?{}", app.base_url, ty.plural, to_query(&p))})
    };
    let next = (query.page < total_pages).then(|| href(query.page + 1));
    let previous = (query.page > 1).then(|| href(query.page - 1));
    Ok(Json(json!({
        "pagination": {
            "total_results": total,
            "total_pages": total_pages,
            "first": href(1),
            "last": href(total_pages),
            "next": next,
            "previous": previous,
        },
        "resources": resources,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_to_i_reads_a_leading_integer() {
        assert_eq!(ruby_to_i("12abc"), 12);
        assert_eq!(ruby_to_i(" -3"), -3);
        assert_eq!(ruby_to_i("abc"), 0);
        assert_eq!(ruby_to_i(""), 0);
        assert_eq!(ruby_to_i("99999999999999999999999"), i64::MAX);
    }

    #[test]
    fn list_queries_are_validated_with_ccs_messages() {
        let apps = types::lookup("apps").expect("type");
        let routes = types::lookup("routes").expect("type");
        let err = |ty, q| parse_list_query(ty, Some(q)).err().map(|e| e.detail);
        assert_eq!(
            err(apps, "page=0&per_page=5001"),
            Some("The query parameter is invalid: Page must be a positive integer, Per page must be between 1 and 5000".to_string())
        );
        assert_eq!(
            err(apps, "label_selector="),
            Some("The query parameter is invalid: Missing label_selector value".to_string())
        );
        assert_eq!(err(routes, "label_selector="), None);
        assert_eq!(err(routes, "label_selector=!"), None);
        assert_eq!(
            err(apps, "order_by=name"),
            Some(
                "The query parameter is invalid: Order by can only be: 'created_at', 'updated_at'"
                    .to_string()
            )
        );
    }
}
