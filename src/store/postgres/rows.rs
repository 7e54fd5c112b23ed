//! Row ↔ domain conversions for the PostgreSQL store. A row that breaks an invariant the
//! schema cannot express (an unknown resource type, a negative counter) is `Corrupt`.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::domain::lease::{FencingToken, Lease, LeaseEnd, LeaseId};
use crate::domain::metadata::{Entries, Metadata};
use crate::domain::resource::ResourceKey;
use crate::store::{Event, HistoryEntry, StoreError};

use super::db_error;

/// The lease columns, in the order `lease_from_row` reads them.
pub const LEASE_COLUMNS: &str = "l.id, l.resource_type, l.resource_guid, l.holder, l.principal, l.fencing_token, \
     l.ttl_seconds, l.lock_delay_seconds, l.acquired_at, l.renewed_at, l.expires_at, l.ended_at, \
     l.end_reason";

pub fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {value}")))
}

pub fn signed(value: u64) -> i64 {
    // Counters start at 0 and grow by one per event; i64::MAX is out of reach.
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn key_from_parts(resource_type: &str, guid: Uuid) -> Result<ResourceKey, StoreError> {
    let resource_type = resource_type
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown resource type '{resource_type}'")))?;
    Ok(ResourceKey {
        resource_type,
        guid,
    })
}

/// Reads a lease from `LEASE_COLUMNS`; `None` when the (outer-joined) id is NULL.
pub fn lease_from_row(row: &PgRow) -> Result<Option<Lease>, StoreError> {
    let Some(id): Option<Uuid> = row.try_get("id").map_err(db_error)? else {
        return Ok(None);
    };
    let resource_type: String = row.try_get("resource_type").map_err(db_error)?;
    let guid: Uuid = row.try_get("resource_guid").map_err(db_error)?;
    let token: i64 = row.try_get("fencing_token").map_err(db_error)?;
    let ttl: i32 = row.try_get("ttl_seconds").map_err(db_error)?;
    let lock_delay: i32 = row.try_get("lock_delay_seconds").map_err(db_error)?;
    let ended_at: Option<DateTime<Utc>> = row.try_get("ended_at").map_err(db_error)?;
    let end_reason: Option<String> = row.try_get("end_reason").map_err(db_error)?;
    let ended = match (ended_at, end_reason.as_deref()) {
        (None, None) => None,
        (Some(at), Some(reason)) => Some((
            LeaseEnd::parse(reason)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown end reason '{reason}'")))?,
            at,
        )),
        _ => return Err(StoreError::Corrupt(format!("lease {id} half ended"))),
    };
    Ok(Some(Lease {
        id: LeaseId(id),
        resource: key_from_parts(&resource_type, guid)?,
        holder: row.try_get("holder").map_err(db_error)?,
        principal: row.try_get("principal").map_err(db_error)?,
        fencing_token: FencingToken(unsigned(token, "fencing_token")?),
        ttl_seconds: u32::try_from(ttl)
            .map_err(|_| StoreError::Corrupt(format!("ttl_seconds is {ttl}")))?,
        lock_delay_seconds: u32::try_from(lock_delay)
            .map_err(|_| StoreError::Corrupt(format!("lock_delay_seconds is {lock_delay}")))?,
        acquired_at: row.try_get("acquired_at").map_err(db_error)?,
        renewed_at: row.try_get("renewed_at").map_err(db_error)?,
        expires_at: row.try_get("expires_at").map_err(db_error)?,
        ended,
    }))
}

fn entries(value: serde_json::Value, what: &str) -> Result<Entries, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Reads `labels` and `annotations` (NULL when the resource row does not exist).
pub fn metadata_from_row(row: &PgRow) -> Result<Metadata, StoreError> {
    let labels: Option<serde_json::Value> = row.try_get("labels").map_err(db_error)?;
    let annotations: Option<serde_json::Value> = row.try_get("annotations").map_err(db_error)?;
    Ok(Metadata {
        labels: labels
            .map(|v| entries(v, "labels"))
            .transpose()?
            .unwrap_or_default(),
        annotations: annotations
            .map(|v| entries(v, "annotations"))
            .transpose()?
            .unwrap_or_default(),
    })
}

pub fn metadata_json(metadata: &Metadata) -> (serde_json::Value, serde_json::Value) {
    // A map of strings always serialises.
    let json = |e: &Entries| serde_json::to_value(e).unwrap_or_default();
    (json(&metadata.labels), json(&metadata.annotations))
}

pub fn history_from_row(row: &PgRow) -> Result<HistoryEntry, StoreError> {
    let event: String = row.try_get("event").map_err(db_error)?;
    let token: Option<i64> = row.try_get("fencing_token").map_err(db_error)?;
    let lease_id: Option<Uuid> = row.try_get("lease_id").map_err(db_error)?;
    Ok(HistoryEntry {
        seq: unsigned(row.try_get("seq").map_err(db_error)?, "seq")?,
        at: row.try_get("at").map_err(db_error)?,
        event: Event::parse(&event)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown event '{event}'")))?,
        actor: row.try_get("actor").map_err(db_error)?,
        lease_id: lease_id.map(LeaseId),
        fencing_token: token
            .map(|t| unsigned(t, "fencing_token").map(FencingToken))
            .transpose()?,
        version: unsigned(row.try_get("version").map_err(db_error)?, "version")?,
        detail: row.try_get("detail").map_err(db_error)?,
    })
}
