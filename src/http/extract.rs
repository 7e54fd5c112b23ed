//! Request parsing: body, path, headers and query, each failure a clear problem. The body
//! extractor only checks size (413) and media type (415); everything else is parsed in the
//! handler, so the contract's order — 413, 415, 400, 422 — holds.

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Uri};
use serde::de::DeserializeOwned;

use crate::domain::etag::EntityTags;
use crate::domain::lease::{FencingToken, LeaseId};
use crate::domain::metadata::Expectations;
use crate::domain::resource::{ResourceKey, parse_guid};
use crate::domain::write_rule::Preconditions;
use crate::upstream::Caller;

use super::MAX_BODY_BYTES;
use super::problem::Problem;

/// A request body within the size limit, and JSON when it is not empty.
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::payload_too_large(MAX_BODY_BYTES)
            } else {
                Problem::invalid_request(format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ))
            }
        })?;
        if !bytes.is_empty() {
            match content_type.as_deref() {
                Some(ct) if is_json(ct) => {}
                other => return Err(Problem::unsupported_media_type(other.unwrap_or("none"))),
            }
        }
        Ok(Self(bytes))
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl JsonBytes {
    /// Parses a required JSON body.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if self.0.is_empty() {
            return Err(Problem::invalid_request("a JSON request body is required"));
        }
        let parsed: T = serde_json::from_slice(&self.0)
            .map_err(|e| Problem::invalid_request(format!("invalid JSON body: {e}")))?;
        // Every body is an object (serde would also build a struct from an array).
        let first = self.0.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(Problem::invalid_request("the JSON body must be an object"));
        }
        Ok(parsed)
    }

    /// For requests that take no body: a JSON body is refused with 400 (a non-JSON one
    /// was refused with 415 already).
    pub fn none(&self) -> Result<(), Problem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Problem::invalid_request("this request takes no body"))
        }
    }

    /// Parses an optional JSON body: empty means the default.
    pub fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, Problem> {
        if self.0.is_empty() {
            return Ok(T::default());
        }
        self.parse()
    }
}

/// Parses `{type}` and `{guid}` path segments.
pub fn resource_key(resource_type: &str, guid: &str) -> Result<ResourceKey, Problem> {
    let resource_type =
        resource_type
            .parse()
            .map_err(|e: crate::domain::resource::UnknownResourceType| {
                Problem::invalid_resource_type(e.to_string())
            })?;
    let guid = parse_guid(guid).map_err(|e| Problem::invalid_guid(e.to_string()))?;
    Ok(ResourceKey {
        resource_type,
        guid,
    })
}

/// Parses a lease id path segment.
pub fn lease_id(id: &str) -> Result<LeaseId, Problem> {
    LeaseId::parse(id)
        .ok_or_else(|| Problem::invalid_request(format!("'{id}' is not a lease id (a UUID)")))
}

/// Parses the query string into `T` (whose fields deny unknown names).
pub fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, Problem> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| Problem::invalid_request(format!("invalid query string: {}", e.body_text())))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<String>, Problem> {
    let values: Vec<&'a [u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
    if values.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::with_capacity(values.len());
    for v in values {
        parts.push(
            std::str::from_utf8(v)
                .map_err(|_| Problem::invalid_request(format!("{name} is not valid text")))?,
        );
    }
    Ok(Some(parts.join(",")))
}

/// Who the request is for, as far as the upstream needs it (its `Authorization` header).
pub fn caller(headers: &HeaderMap, authz: crate::auth::Authz) -> Caller {
    Caller {
        authz,
        authorization: headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// `If-None-Match`, when sent.
pub fn if_none_match(headers: &HeaderMap) -> Result<Option<EntityTags>, Problem> {
    entity_tags(headers, "if-none-match")
}

fn entity_tags(headers: &HeaderMap, name: &str) -> Result<Option<EntityTags>, Problem> {
    header_text(headers, name)?
        .map(|h| {
            EntityTags::parse(&h)
                .map_err(|e| Problem::invalid_request(format!("malformed {name}: {e}")))
        })
        .transpose()
}

/// `Fencing-Token`: a positive integer.
fn fencing_token(headers: &HeaderMap) -> Result<Option<FencingToken>, Problem> {
    let Some(text) = header_text(headers, "fencing-token")? else {
        return Ok(None);
    };
    let bad = || {
        Problem::invalid_request(format!(
            "Fencing-Token must be a positive integer, got '{text}'"
        ))
    };
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<i64>() {
        Ok(n) if n > 0 => Ok(Some(FencingToken(n as u64))),
        _ => Err(bad()),
    }
}

/// The write preconditions of API.md §2: `Fencing-Token` and `If-Match` headers, `expect`.
pub fn preconditions(
    headers: &HeaderMap,
    expect: Option<Expectations>,
) -> Result<Preconditions, Problem> {
    Ok(Preconditions {
        fencing_token: fencing_token(headers)?,
        if_match: entity_tags(headers, "if-match")?,
        expect,
    })
}
