//! Upstreams: where a resource's metadata of record lives when it is not leasehold's own
//! store. With the `local` upstream there is none (the store holds the metadata); with
//! `cloud-controller`, the resource lives in a CF Cloud Controller and every read and write
//! of its metadata goes there, inside the resource's critical section.

pub mod cloud_controller;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::metadata::{Metadata, MetadataPatch};
use crate::domain::resource::ResourceKey;

/// Who an upstream call is made for: in pass-through mode the caller's own credentials go
/// upstream, so Cloud Controller's roles decide.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The caller's `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// Who the caller is to leasehold (nobody known without authentication).
    pub authz: crate::auth::Authz,
}

/// A resource as the upstream has it.
#[derive(Debug, Clone)]
pub struct UpstreamResource {
    /// The upstream's whole body of the resource.
    pub body: Value,
    pub metadata: Metadata,
    /// A canonical digest of `body`: equal digests mean an unchanged resource.
    pub digest: String,
}

impl UpstreamResource {
    /// Reads the metadata out of a CC-shaped body and digests it.
    pub fn from_body(body: Value) -> Result<Self, UpstreamError> {
        let metadata = body
            .get("metadata")
            .map(|m| {
                let entries = |kind: &str| -> Result<_, UpstreamError> {
                    match m.get(kind) {
                        None | Some(Value::Null) => Ok(Default::default()),
                        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                            UpstreamError::Protocol(format!(
                                "metadata.{kind} is not a map of strings: {e}"
                            ))
                        }),
                    }
                };
                Ok::<_, UpstreamError>(Metadata {
                    labels: entries("labels")?,
                    annotations: entries("annotations")?,
                })
            })
            .transpose()?
            .unwrap_or_default();
        let digest = digest(&body);
        Ok(Self {
            body,
            metadata,
            digest,
        })
    }
}

/// SHA-256 of the body's canonical JSON (object keys sorted at every level), hex.
pub fn digest(body: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    let hash = Sha256::digest(canonical.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// How an upstream delete ended within leasehold's wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The resource is gone (a synchronous delete, or its job completed).
    Done,
    /// The upstream accepted the delete but its job was still running when the wait ran out.
    StillDeleting { job: String },
}

/// Whose credentials an upstream refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    /// leasehold's own service account (client credentials).
    ServiceAccount,
    /// The caller's token, passed through.
    Caller,
}

impl Whose {
    pub fn describe(self) -> &'static str {
        match self {
            Self::ServiceAccount => "leasehold's Cloud Controller credentials (CF_CLIENT_ID)",
            Self::Caller => "the caller's token (passed through)",
        }
    }
}

/// Upstream failures, each with its HTTP outcome.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// 404 `not-found`: the upstream has no such resource (or hides it from these credentials).
    #[error("Cloud Controller has no such resource: {0}")]
    NotFound(String),
    /// 405 `method-not-allowed`: the resource type cannot be deleted upstream.
    #[error("Cloud Controller cannot delete {0}")]
    DeleteNotSupported(&'static str),
    /// 502 `upstream-unavailable`: the credentials were refused (401).
    #[error("Cloud Controller refused {} (401)", .0.describe())]
    Unauthenticated(Whose),
    /// 403 `forbidden`: the credentials may not do this (403).
    #[error("Cloud Controller does not allow {whose} to do this (403): {detail}", whose = .0.describe(), detail = .1)]
    Forbidden(Whose, String),
    /// 422 `invalid-metadata`: the upstream refused the change as invalid.
    #[error("Cloud Controller refused the change: {0}")]
    Rejected(String),
    /// 502 `upstream-unavailable` with `Retry-After`: the upstream rate-limits leasehold.
    #[error("Cloud Controller is rate-limiting requests (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// 502 `upstream-unavailable`: refused connection, 5xx, or an answer leasehold cannot use.
    #[error("Cloud Controller is unavailable: {0}")]
    Unavailable(String),
    /// 504 `upstream-unavailable`: no answer in time.
    #[error("Cloud Controller did not answer in time: {0}")]
    Timeout(String),
    /// 504 `upstream-unavailable`: a write was sent but its answer was lost; it may or may not
    /// have been applied. The next operation on the resource re-reads it.
    #[error("the outcome of the Cloud Controller write is unknown: {0}")]
    OutcomeUnknown(String),
    /// 502 `upstream-unavailable`: the upstream's answer does not have the expected shape.
    #[error("Cloud Controller answered something unexpected: {0}")]
    Protocol(String),
    /// 502 `upstream-unavailable`: an asynchronous delete job failed.
    #[error("Cloud Controller's delete job failed: {0}")]
    JobFailed(String),
}

impl UpstreamError {
    /// Whether the upstream may have applied a write despite this error.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::OutcomeUnknown(_) | Self::Unavailable(_) | Self::Timeout(_)
        )
    }
}

/// A store of record for resources' metadata outside leasehold.
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// Reads the resource (retrying where safe).
    async fn read(
        &self,
        key: ResourceKey,
        caller: &Caller,
    ) -> Result<UpstreamResource, UpstreamError>;

    /// Applies a metadata merge (only the keys that change) and returns the resource after it.
    async fn patch_metadata(
        &self,
        key: ResourceKey,
        patch: &MetadataPatch,
        caller: &Caller,
    ) -> Result<UpstreamResource, UpstreamError>;

    /// Deletes the resource, following an asynchronous job for a bounded time.
    async fn delete(
        &self,
        key: ResourceKey,
        caller: &Caller,
    ) -> Result<DeleteOutcome, UpstreamError>;

    /// Ok when the upstream answers (for `/readyz`).
    async fn check_ready(&self) -> Result<(), UpstreamError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_ignores_key_order_but_not_values() {
        let a = json!({"guid": "g", "metadata": {"labels": {"a": "1", "b": "2"}}, "list": [1, 2]});
        let b = json!({"list": [1, 2], "metadata": {"labels": {"b": "2", "a": "1"}}, "guid": "g"});
        assert_eq!(digest(&a), digest(&b));
        let c = json!({"guid": "g", "metadata": {"labels": {"a": "1", "b": "3"}}, "list": [1, 2]});
        assert_ne!(digest(&a), digest(&c));
        assert_ne!(digest(&json!([1, 2])), digest(&json!([2, 1])));
    }

    #[test]
    fn metadata_is_read_from_a_cc_body() {
        let r = UpstreamResource::from_body(json!({
            "guid": "g", "metadata": {"labels": {"a": "1"}, "annotations": {"n": "long"}}
        }))
        .unwrap();
        assert_eq!(r.metadata.labels["a"], "1");
        assert_eq!(r.metadata.annotations["n"], "long");
        assert!(UpstreamResource::from_body(json!({"metadata": {"labels": {"a": 1}}})).is_err());
    }
}
