//! Row ↔ domain conversions for the SQLite store, and the column representations the SQLite
//! migrations document: UUIDs as lower-case hyphenated TEXT, timestamps as INTEGER
//! microseconds since the Unix epoch (UTC), JSON as TEXT. A row that breaks an invariant the
//! schema cannot express (an unknown resource type, a malformed UUID) is `Corrupt`.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
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

/// A timestamp as stored: microseconds since the Unix epoch.
pub fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored timestamp.
pub fn time(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {micros} µs")))
}

/// A UUID as stored: lower-case, hyphenated.
pub fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub fn uuid(text: &str, what: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not a UUID: '{text}'")))
}

pub fn key_from_parts(resource_type: &str, guid: &str) -> Result<ResourceKey, StoreError> {
    let resource_type = resource_type
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown resource type '{resource_type}'")))?;
    Ok(ResourceKey {
        resource_type,
        guid: uuid(guid, "resource_guid")?,
    })
}

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(db_error)
}

/// A timestamp column, NULL allowed.
pub fn opt_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<i64>>(row, column)?.map(time).transpose()
}

/// Reads a lease from `LEASE_COLUMNS`; `None` when the (outer-joined) id is NULL.
pub fn lease_from_row(row: &SqliteRow) -> Result<Option<Lease>, StoreError> {
    let Some(id) = get::<Option<String>>(row, "id")? else {
        return Ok(None);
    };
    let id = uuid(&id, "lease id")?;
    let resource_type: String = get(row, "resource_type")?;
    let guid: String = get(row, "resource_guid")?;
    let token: i64 = get(row, "fencing_token")?;
    let ttl: i64 = get(row, "ttl_seconds")?;
    let lock_delay: i64 = get(row, "lock_delay_seconds")?;
    let ended_at = opt_time(row, "ended_at")?;
    let end_reason: Option<String> = get(row, "end_reason")?;
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
        resource: key_from_parts(&resource_type, &guid)?,
        holder: get(row, "holder")?,
        principal: get(row, "principal")?,
        fencing_token: FencingToken(unsigned(token, "fencing_token")?),
        ttl_seconds: u32::try_from(ttl)
            .map_err(|_| StoreError::Corrupt(format!("ttl_seconds is {ttl}")))?,
        lock_delay_seconds: u32::try_from(lock_delay)
            .map_err(|_| StoreError::Corrupt(format!("lock_delay_seconds is {lock_delay}")))?,
        acquired_at: time(get(row, "acquired_at")?)?,
        renewed_at: time(get(row, "renewed_at")?)?,
        expires_at: time(get(row, "expires_at")?)?,
        ended,
    }))
}

fn entries(text: &str, what: &str) -> Result<Entries, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Reads `labels` and `annotations` (NULL when the resource row does not exist).
pub fn metadata_from_row(row: &SqliteRow) -> Result<Metadata, StoreError> {
    let labels: Option<String> = get(row, "labels")?;
    let annotations: Option<String> = get(row, "annotations")?;
    Ok(Metadata {
        labels: labels
            .map(|v| entries(&v, "labels"))
            .transpose()?
            .unwrap_or_default(),
        annotations: annotations
            .map(|v| entries(&v, "annotations"))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// `labels` and `annotations` as stored (JSON objects as text).
pub fn metadata_json(metadata: &Metadata) -> (String, String) {
    // A map of strings always serialises.
    let json = |e: &Entries| serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned());
    (json(&metadata.labels), json(&metadata.annotations))
}

pub fn history_from_row(row: &SqliteRow) -> Result<HistoryEntry, StoreError> {
    let event: String = get(row, "event")?;
    let token: Option<i64> = get(row, "fencing_token")?;
    let lease_id: Option<String> = get(row, "lease_id")?;
    let detail: Option<String> = get(row, "detail")?;
    Ok(HistoryEntry {
        seq: unsigned(get(row, "seq")?, "seq")?,
        at: time(get(row, "at")?)?,
        event: Event::parse(&event)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown event '{event}'")))?,
        actor: get(row, "actor")?,
        lease_id: lease_id
            .map(|id| uuid(&id, "history lease_id").map(LeaseId))
            .transpose()?,
        fencing_token: token
            .map(|t| unsigned(t, "fencing_token").map(FencingToken))
            .transpose()?,
        version: unsigned(get(row, "version")?, "version")?,
        detail: detail
            .map(|d| {
                serde_json::from_str(&d)
                    .map_err(|e| StoreError::Corrupt(format!("history detail: {e}")))
            })
            .transpose()?,
    })
}
