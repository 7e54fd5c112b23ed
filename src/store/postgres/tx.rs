//! A resource's critical section on PostgreSQL: a transaction holding the `resources` row
//! lock. Because the lock is held, the row's counters are known in memory; each operation
//! writes its change, the counters and its history entry in one statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Postgres, Row, Transaction};

use crate::domain::lease::{Holder, Lease, LeaseEnd, LeaseId};
use crate::domain::resource::ResourceKey;
use crate::store::{
    Actor, Event, NewEntry, QueueHead, ResourceState, ResourceTx, StoreError, Waiter,
};

use super::db_error;
use super::rows::{
    LEASE_COLUMNS, lease_from_row, metadata_from_row, metadata_json, signed, unsigned,
};

pub struct PgResourceTx {
    tx: Transaction<'static, Postgres>,
    state: ResourceState,
    history_seq: u64,
}

/// Writes the resource row from the in-memory state; `$1, $2` name the resource.
const SAVE: &str = "UPDATE resources SET version = $3, fence = $4, history_seq = $5, labels = $6, \
       annotations = $7, deleted_at = CASE WHEN $8 THEN COALESCE(deleted_at, $9) END, \
       upstream_digest = $10, upstream_uncertain = $11, lock_delay_until = $12 \
     WHERE resource_type = $1 AND resource_guid = $2";

/// `SAVE` plus one history entry (`$13..$18`), in one statement.
const RECORD: &str = "WITH r AS ( \
       UPDATE resources SET version = $3, fence = $4, history_seq = $5, labels = $6, \
         annotations = $7, deleted_at = CASE WHEN $8 THEN COALESCE(deleted_at, $9) END, \
         upstream_digest = $10, upstream_uncertain = $11, lock_delay_until = $12 \
       WHERE resource_type = $1 AND resource_guid = $2 RETURNING 1) \
     INSERT INTO history (resource_type, resource_guid, seq, at, event, actor, lease_id, \
       fencing_token, version, detail) \
     SELECT $1, $2, $5, $13, $14, $15, $16, $17, $3, $18 FROM r";

/// Tells every instance listening that something changed for a resource's waiters;
/// PostgreSQL delivers it when (and only if) the transaction commits.
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

impl PgResourceTx {
    /// Locks the resource's row (creating it when new), reads the clock after the lock is
    /// held, and records the expiry of an open lease whose time ran out.
    pub async fn lock(
        mut tx: Transaction<'static, Postgres>,
        key: ResourceKey,
    ) -> Result<Self, StoreError> {
        // ON CONFLICT DO UPDATE locks the row and RETURNING sees its newest version;
        // clock_timestamp() is read after the lock is granted.
        let row = sqlx::query(
            "INSERT INTO resources (resource_type, resource_guid) VALUES ($1, $2) \
             ON CONFLICT (resource_type, resource_guid) DO UPDATE SET history_seq = resources.history_seq \
             RETURNING version, fence, labels, annotations, deleted_at, history_seq, \
               upstream_digest, upstream_uncertain, lock_delay_until, clock_timestamp() AS now",
        )
        .bind(key.resource_type.as_str())
        .bind(key.guid)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let deleted_at: Option<DateTime<Utc>> = row.try_get("deleted_at").map_err(db_error)?;
        let state = ResourceState {
            key,
            version: unsigned(row.try_get("version").map_err(db_error)?, "version")?,
            fence: unsigned(row.try_get("fence").map_err(db_error)?, "fence")?,
            metadata: metadata_from_row(&row)?,
            deleted: deleted_at.is_some(),
            lease: None,
            now: row.try_get("now").map_err(db_error)?,
            upstream_digest: row.try_get("upstream_digest").map_err(db_error)?,
            upstream_uncertain: row.try_get("upstream_uncertain").map_err(db_error)?,
            lock_delay_until: row.try_get("lock_delay_until").map_err(db_error)?,
        };
        let history_seq = unsigned(row.try_get("history_seq").map_err(db_error)?, "history_seq")?;
        // A separate statement: in READ COMMITTED it takes a fresh snapshot, taken after the
        // lock above was granted, so it sees every lease committed before.
        let sql = format!(
            "SELECT {LEASE_COLUMNS} FROM leases l \
             WHERE l.resource_type = $1 AND l.resource_guid = $2 AND l.ended_at IS NULL"
        );
        let open = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.resource_type.as_str())
            .bind(key.guid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let open = match open {
            Some(row) => lease_from_row(&row)?,
            None => None,
        };
        let mut this = Self {
            tx,
            state,
            history_seq,
        };
        match open {
            Some(lease) if lease.expires_at <= this.state.now => {
                this.close_lease(&lease, LeaseEnd::Expired, lease.expires_at)
                    .await?;
            }
            open => this.state.lease = open,
        }
        Ok(this)
    }

    fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    async fn notify(&mut self) -> Result<(), StoreError> {
        let payload = self.state.key.to_string();
        sqlx::query(NOTIFY)
            .bind(super::EVENTS_CHANNEL)
            .bind(payload)
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Writes the in-memory state, and appends `entry` when given, in one statement.
    async fn save_state(&mut self, entry: Option<NewEntry<'_>>) -> Result<(), StoreError> {
        if entry.is_some() {
            self.history_seq += 1;
        }
        let key = self.state.key;
        let (labels, annotations) = metadata_json(&self.state.metadata);
        let query = sqlx::query(if entry.is_some() { RECORD } else { SAVE })
            .bind(key.resource_type.as_str())
            .bind(key.guid)
            .bind(signed(self.state.version))
            .bind(signed(self.state.fence))
            .bind(signed(self.history_seq))
            .bind(labels)
            .bind(annotations)
            .bind(self.state.deleted)
            .bind(self.state.now)
            .bind(self.state.upstream_digest.as_deref())
            .bind(self.state.upstream_uncertain)
            .bind(self.state.lock_delay_until);
        let query = match entry {
            None => query,
            Some(entry) => query
                .bind(entry.at)
                .bind(entry.event.as_str())
                .bind(entry.actor)
                .bind(entry.lease.map(|(id, _)| id.0))
                .bind(entry.lease.map(|(_, token)| signed(token.0)))
                .bind(entry.detail),
        };
        query.execute(&mut *self.tx).await.map_err(db_error)?;
        Ok(())
    }

    async fn close_lease(
        &mut self,
        lease: &Lease,
        how: LeaseEnd,
        at: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        // Ends the lease and announces it (delivered at commit) in one round trip.
        let ended = sqlx::query(
            "WITH ended AS (UPDATE leases SET ended_at = $2, end_reason = $3 \
               WHERE id = $1 AND ended_at IS NULL RETURNING 1) \
             SELECT pg_notify($4, $5) FROM ended",
        )
        .bind(lease.id.0)
        .bind(at)
        .bind(how.as_str())
        .bind(super::EVENTS_CHANNEL)
        .bind(self.state.key.to_string())
        .fetch_all(self.conn())
        .await
        .map_err(db_error)?;
        if ended.len() != 1 {
            return Err(StoreError::Corrupt(format!(
                "lease {} was not open inside its resource's lock",
                lease.id
            )));
        }
        if how != LeaseEnd::Released && lease.lock_delay_seconds > 0 {
            let until = at + chrono::Duration::seconds(i64::from(lease.lock_delay_seconds));
            self.state.lock_delay_until = self.state.lock_delay_until.max(Some(until));
        }
        crate::metrics::lease_event(how.as_str());
        self.save_state(Some(NewEntry {
            event: Event::lease_ended(how),
            at,
            actor: Some(lease.actor()),
            lease: Some((lease.id, lease.fencing_token)),
            detail: None,
        }))
        .await?;
        self.state.lease = None;
        Ok(Lease {
            ended: Some((how, at)),
            ..lease.clone()
        })
    }
}

#[async_trait]
impl ResourceTx for PgResourceTx {
    fn state(&self) -> &ResourceState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut ResourceState {
        &mut self.state
    }

    async fn save(&mut self, entry: Option<NewEntry<'_>>) -> Result<(), StoreError> {
        self.save_state(entry).await
    }

    async fn lease(&mut self, id: LeaseId) -> Result<Option<Lease>, StoreError> {
        let sql = format!(
            "SELECT {LEASE_COLUMNS} FROM leases l \
             WHERE l.id = $1 AND l.resource_type = $2 AND l.resource_guid = $3"
        );
        let key = self.state.key;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(key.resource_type.as_str())
            .bind(key.guid)
            .fetch_optional(self.conn())
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => lease_from_row(&row),
            None => Ok(None),
        }
    }

    async fn insert_lease(&mut self, lease: &Lease) -> Result<(), StoreError> {
        // The unique index on open leases backs up the lock: a second open lease cannot exist.
        sqlx::query(
            "INSERT INTO leases (id, resource_type, resource_guid, holder, fencing_token, \
             ttl_seconds, acquired_at, renewed_at, expires_at, lock_delay_seconds, principal) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
        )
        .bind(lease.id.0)
        .bind(lease.resource.resource_type.as_str())
        .bind(lease.resource.guid)
        .bind(&lease.holder)
        .bind(signed(lease.fencing_token.0))
        .bind(lease.ttl_seconds as i32)
        .bind(lease.acquired_at)
        .bind(lease.expires_at)
        .bind(lease.lock_delay_seconds as i32)
        .bind(lease.principal.as_deref())
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn extend_lease(&mut self, renewed: &Lease) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE leases SET ttl_seconds = $2, renewed_at = $3, expires_at = $4 \
             WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(renewed.id.0)
        .bind(renewed.ttl_seconds as i32)
        .bind(renewed.renewed_at)
        .bind(renewed.expires_at)
        .execute(self.conn())
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Corrupt(format!(
                "lease {} was not open inside its resource's lock",
                renewed.id
            )));
        }
        Ok(())
    }

    async fn end(&mut self, lease: &Lease, how: LeaseEnd) -> Result<Lease, StoreError> {
        let now = self.state.now;
        self.close_lease(lease, how, now).await
    }

    async fn delete(&mut self, actor: &Actor, detail: Option<Value>) -> Result<(), StoreError> {
        self.notify().await?;
        self.state.version += 1;
        self.state.deleted = true;
        let entry = NewEntry {
            event: Event::Deleted,
            at: self.state.now,
            actor: actor.name.as_deref(),
            lease: actor.lease,
            detail,
        };
        self.save_state(Some(entry)).await
    }

    async fn queue_head(&mut self) -> Result<Option<QueueHead>, StoreError> {
        let key = self.state.key;
        let row = sqlx::query(
            "SELECT w.id, w.seq, count(*) OVER () AS live FROM waiters w \
             JOIN instances i ON i.id = w.instance_id \
             WHERE w.resource_type = $1 AND w.resource_guid = $2 \
               AND w.deadline > $3 AND i.alive_until > $3 \
             ORDER BY w.seq LIMIT 1",
        )
        .bind(key.resource_type.as_str())
        .bind(key.guid)
        .bind(self.state.now)
        .fetch_optional(self.conn())
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(QueueHead {
            first: Waiter {
                id: row.try_get("id").map_err(db_error)?,
                seq: unsigned(row.try_get("seq").map_err(db_error)?, "seq")?,
            },
            live: unsigned(row.try_get("live").map_err(db_error)?, "live")?,
        }))
    }

    async fn enqueue(
        &mut self,
        holder: &Holder,
        deadline: DateTime<Utc>,
        instance: uuid::Uuid,
    ) -> Result<Waiter, StoreError> {
        let key = self.state.key;
        let id = uuid::Uuid::new_v4();
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO waiters (id, resource_type, resource_guid, holder, instance_id, deadline) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(id)
        .bind(key.resource_type.as_str())
        .bind(key.guid)
        .bind(holder.as_str())
        .bind(instance)
        .bind(deadline)
        .fetch_one(self.conn())
        .await
        .map_err(db_error)?;
        Ok(Waiter {
            id,
            seq: unsigned(seq, "seq")?,
        })
    }

    async fn dequeue(&mut self, waiter: Waiter) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM waiters WHERE id = $1")
            .bind(waiter.id)
            .execute(self.conn())
            .await
            .map_err(db_error)?;
        self.notify().await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db_error)
    }
}
