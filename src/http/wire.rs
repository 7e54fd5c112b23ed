//! Wire types: what goes over HTTP, separate from domain and row types and converted by
//! `From`. Inputs (`…In`) deny unknown fields; outputs (`…Out`) print timestamps as RFC 3339
//! UTC with milliseconds. The outputs of the API also deserialise (timestamps from any RFC
//! 3339), so the operator CLI reads the server's answers into these very types.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

use crate::coordinator::Resource;
use crate::domain::etag::Version;
use crate::domain::lease::{Lease, LeaseState};
use crate::domain::metadata::{Expectations, Metadata, MetadataLimits, Mismatch};
use crate::domain::resource::{ResourceKey, ResourceType};
use crate::store::HistoryEntry;

/// Serialises a timestamp as RFC 3339 UTC with milliseconds, e.g. `2026-11-26T14:36:54.123Z`.
pub fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ser_ts<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(at))
}

fn ser_opt_ts<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&timestamp(at)),
        None => s.serialize_none(),
    }
}

/// Body of `POST /v1/resources/{type}/{guid}/lease`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireIn {
    /// Who takes the lease: 1 to 128 characters, unique per client process.
    #[schema(example = "orders-svc/instance-3")]
    pub holder: String,
    /// Time to live, 1..=3600 seconds (default 30).
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_seconds: Option<u64>,
    /// How long to wait for a held lease, 0..=60 (default 0: answer at once). Waiters are
    /// served first come, first served across all instances.
    #[schema(minimum = 0, maximum = 60)]
    pub wait_seconds: Option<u64>,
    /// After this lease expires or is revoked (never after a release), nobody may acquire
    /// the resource for this long, 0..=60 (default 0).
    #[schema(minimum = 0, maximum = 60)]
    pub lock_delay_seconds: Option<u64>,
}

/// Body of `POST /v1/leases/{id}/renew` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewIn {
    /// New time to live from now, 1..=3600 seconds (default: the lease's own).
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_seconds: Option<u64>,
}

/// Body of `PATCH /v1/resources/{type}/{guid}/metadata`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataPatchIn {
    /// `{"labels": {key: value or null}, "annotations": {...}}` with Cloud Controller's merge
    /// semantics (null removes the key) and validation.
    #[schema(value_type = MetadataPatchDoc)]
    pub metadata: Value,
    /// Per key, the value it must have now (null: absent), else 412 `expectation-failed`.
    #[serde(default, deserialize_with = "object")]
    pub expect: Option<Expectations>,
}

/// Optional body of `DELETE /v1/resources/{type}/{guid}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteIn {
    #[serde(default, deserialize_with = "object")]
    pub expect: Option<Expectations>,
}

/// Deserialises an optional struct only from a JSON object (serde would also take an array).
fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match Option::<Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(v @ Value::Object(_)) => T::deserialize(v).map(Some).map_err(D::Error::custom),
        Some(other) => Err(D::Error::custom(format!("expected an object, got {other}"))),
    }
}

/// The `metadata` member of a PATCH (documentation only; parsed by CC's rules).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MetadataPatchDoc {
    labels: Option<std::collections::BTreeMap<String, Option<String>>>,
    annotations: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// A resource named in a lease.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceRefOut {
    #[serde(rename = "type")]
    pub resource_type: ResourceType,
    pub guid: uuid::Uuid,
}

impl From<ResourceKey> for ResourceRefOut {
    fn from(key: ResourceKey) -> Self {
        Self {
            resource_type: key.resource_type,
            guid: key.guid,
        }
    }
}

/// A lease, active or ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaseOut {
    pub id: uuid::Uuid,
    pub resource: ResourceRefOut,
    pub holder: String,
    /// The authenticated principal that took the lease (absent without authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Strictly increases with every grant on the resource; send it as `Fencing-Token`.
    pub fencing_token: u64,
    pub state: LeaseState,
    pub ttl_seconds: u32,
    pub lock_delay_seconds: u32,
    #[serde(serialize_with = "ser_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub acquired_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub renewed_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<DateTime<Utc>>,
}

impl LeaseOut {
    /// The lease as it stands at the database's `now`.
    pub fn at(lease: Lease, now: DateTime<Utc>) -> Self {
        let ended = lease.ended_at(now);
        Self {
            id: lease.id.0,
            resource: lease.resource.into(),
            holder: lease.holder,
            principal: lease.principal,
            fencing_token: lease.fencing_token.0,
            state: ended.map_or(LeaseState::Active, |(how, _)| how.state()),
            ttl_seconds: lease.ttl_seconds,
            lock_delay_seconds: lease.lock_delay_seconds,
            acquired_at: lease.acquired_at,
            renewed_at: lease.renewed_at,
            expires_at: lease.expires_at,
            ended_at: ended.map(|(_, at)| at),
        }
    }
}

/// A resource's metadata.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MetadataOut {
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl From<Metadata> for MetadataOut {
    fn from(m: Metadata) -> Self {
        Self {
            labels: m.labels,
            annotations: m.annotations,
        }
    }
}

/// A resource: its version (the ETag), metadata, active lease and last fencing token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceOut {
    #[serde(rename = "type")]
    pub resource_type: ResourceType,
    pub guid: uuid::Uuid,
    pub version: Version,
    pub metadata: MetadataOut,
    pub lease: Option<LeaseOut>,
    /// The last fencing token issued for the resource, 0 if none.
    pub fence: u64,
    /// Cloud Controller's body of the resource (null with the local upstream).
    #[schema(value_type = Option<Object>)]
    pub upstream: Option<Value>,
}

impl From<Resource> for ResourceOut {
    fn from(r: Resource) -> Self {
        let s = r.state;
        Self {
            resource_type: s.key.resource_type,
            guid: s.key.guid,
            version: s.version,
            metadata: s.metadata.into(),
            lease: s.lease.map(|l| LeaseOut::at(l, s.now)),
            fence: s.fence,
            upstream: r.upstream,
        }
    }
}

/// `202` of a delete whose Cloud Controller job was still running.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletingOut {
    /// `deleting`.
    pub state: &'static str,
    /// Cloud Controller's job URL.
    pub job: String,
}

/// One history entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntryOut {
    pub seq: u64,
    #[serde(serialize_with = "ser_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// `lease-granted`, `lease-renewed`, `lease-released`, `lease-expired`, `lease-revoked`,
    /// `metadata-changed`, `drift` or `deleted`.
    #[schema(example = "metadata-changed")]
    pub event: String,
    pub actor: Option<String>,
    pub lease_id: Option<uuid::Uuid>,
    pub fencing_token: Option<u64>,
    /// The resource's version after the event.
    pub version: Version,
    /// For `metadata-changed`: `{"labels": {key: {"from", "to"}}, "annotations": {...}}`.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

impl From<HistoryEntry> for HistoryEntryOut {
    fn from(e: HistoryEntry) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            event: e.event.as_str().to_owned(),
            actor: e.actor,
            lease_id: e.lease_id.map(|id| id.0),
            fencing_token: e.fencing_token.map(|t| t.0),
            version: e.version,
            detail: e.detail,
        }
    }
}

/// A page of leases.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaseListOut {
    pub items: Vec<LeaseOut>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of history, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryListOut {
    pub items: Vec<HistoryEntryOut>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InfoOut {
    pub version: &'static str,
    /// `local` or `cloud-controller`.
    pub upstream: &'static str,
    /// `postgres` or `sqlite`.
    pub store: &'static str,
    /// How callers authenticate: `none`, `uaa` or `tokens`.
    pub auth: &'static str,
    pub limits: LimitsOut,
}

/// The limits in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsOut {
    pub metadata: MetadataLimits,
    pub ttl_seconds: RangeOut,
    pub wait_seconds: RangeOut,
    pub lock_delay_seconds: RangeOut,
    pub max_body_bytes: usize,
    pub require_preconditions: bool,
}

/// An inclusive range with its default.
#[derive(Debug, Serialize, ToSchema)]
pub struct RangeOut {
    pub min: u64,
    pub max: u64,
    pub default: u64,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyOut {
    pub status: &'static str,
    pub database: &'static str,
    /// `ok` with the cloud-controller upstream; absent with the local one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'static str>,
}

/// An RFC 9457 problem (`application/problem+json`). Problems carry extension members named
/// in their descriptions, e.g. `holder` and `expires_at` for `lease-held`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProblemOut {
    /// `/problems/<code>`, e.g. `/problems/stale-fencing-token`.
    #[schema(rename = "type", example = "/problems/stale-fencing-token")]
    problem_type: String,
    title: String,
    status: u16,
    detail: String,
    /// `expectation-failed`: the unmet expectations.
    mismatches: Option<Vec<Mismatch>>,
    /// `invalid-metadata`: every message, in Cloud Controller's words.
    errors: Option<Vec<String>>,
}
