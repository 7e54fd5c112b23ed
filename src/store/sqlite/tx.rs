//! A resource's critical section on SQLite: the resource's process-local lock, held from
//! `lock` to commit or drop, plus — from the first write on — the database's single writer and
//! a `BEGIN IMMEDIATE` transaction. Because the lock is held, the row's counters are known in
//! memory; each operation writes its change, the counters and its history entry. Events for
//! waiters are broadcast after (and only after) the commit.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use tokio::sync::OwnedMutexGuard;

use crate::domain::lease::{Holder, Lease, LeaseEnd, LeaseId};
use crate::domain::metadata::Metadata;
use crate::domain::resource::ResourceKey;
use crate::store::{
    Actor, Event, NewEntry, QueueHead, ResourceState, ResourceTx, StoreError, Waiter,
};

use super::rows::{
    LEASE_COLUMNS, lease_from_row, metadata_from_row, metadata_json, micros, opt_time, signed,
    unsigned, uuid, uuid_text,
};
use super::{ResourceGuard, Shared, SqliteStore, db_error};

/// The write half of a critical section, opened by its first write.
struct Writing {
    tx: Transaction<'static, Sqlite>,
    /// Released after the transaction is done (field order: `tx` drops first).
    _writer: OwnedMutexGuard<()>,
}

pub struct SqliteResourceTx {
    /// Dropped first: an open transaction rolls back before the locks go.
    writing: Option<Writing>,
    shared: Arc<Shared>,
    state: ResourceState,
    history_seq: u64,
    /// Whether waiters must be told at commit (a lease ended, the queue changed).
    notify: bool,
    _resource: ResourceGuard,
}

/// Writes the resource row from the in-memory state; `$1, $2` name the resource.
const SAVE: &str = "UPDATE resources SET version = $3, fence = $4, history_seq = $5, labels = $6, \
       annotations = $7, deleted_at = CASE WHEN $8 THEN coalesce(deleted_at, $9) END, \
       upstream_digest = $10, upstream_uncertain = $11, lock_delay_until = $12 \
     WHERE resource_type = $1 AND resource_guid = $2";

/// Appends one history entry (`$1, $2` the resource, then seq, at, event, actor, lease id,
/// token, version, detail).
const RECORD: &str = "INSERT INTO history (resource_type, resource_guid, seq, at, event, actor, \
       lease_id, fencing_token, version, detail) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

impl SqliteResourceTx {
    /// Reads the resource with its lock held, takes the clock (never earlier than the
    /// resource's last history entry), and records the expiry of an open lease whose time ran
    /// out.
    pub(super) async fn lock(
        shared: Arc<Shared>,
        resource: ResourceGuard,
        key: ResourceKey,
    ) -> Result<Self, StoreError> {
        let guid = uuid_text(key.guid);
        let row = sqlx::query(
            "SELECT r.version, r.fence, r.labels, r.annotations, r.deleted_at, r.history_seq, \
               r.upstream_digest, r.upstream_uncertain, r.lock_delay_until, h.at AS last_at \
             FROM resources r \
             LEFT JOIN history h ON h.resource_type = r.resource_type \
               AND h.resource_guid = r.resource_guid AND h.seq = r.history_seq \
             WHERE r.resource_type = $1 AND r.resource_guid = $2",
        )
        .bind(key.resource_type.as_str())
        .bind(&guid)
        .fetch_optional(&shared.pool)
        .await
        .map_err(db_error)?;
        let (state, history_seq) = match row {
            None => (
                ResourceState {
                    key,
                    version: 0,
                    fence: 0,
                    metadata: Metadata::default(),
                    deleted: false,
                    lease: None,
                    now: shared.clock.now(),
                    upstream_digest: None,
                    upstream_uncertain: false,
                    lock_delay_until: None,
                },
                0,
            ),
            Some(row) => {
                let last_at: Option<i64> = row.try_get("last_at").map_err(db_error)?;
                let state = ResourceState {
                    key,
                    version: unsigned(row.try_get("version").map_err(db_error)?, "version")?,
                    fence: unsigned(row.try_get("fence").map_err(db_error)?, "fence")?,
                    metadata: metadata_from_row(&row)?,
                    deleted: opt_time(&row, "deleted_at")?.is_some(),
                    lease: None,
                    now: shared.clock.at_least(last_at.unwrap_or(i64::MIN)),
                    upstream_digest: row.try_get("upstream_digest").map_err(db_error)?,
                    upstream_uncertain: row.try_get("upstream_uncertain").map_err(db_error)?,
                    lock_delay_until: opt_time(&row, "lock_delay_until")?,
                };
                let seq = unsigned(row.try_get("history_seq").map_err(db_error)?, "history_seq")?;
                (state, seq)
            }
        };
        let sql = format!(
            "SELECT {LEASE_COLUMNS} FROM leases l \
             WHERE l.resource_type = $1 AND l.resource_guid = $2 AND l.ended_at IS NULL"
        );
        let open = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.resource_type.as_str())
            .bind(&guid)
            .fetch_optional(&shared.pool)
            .await
            .map_err(db_error)?;
        let open = match open {
            Some(row) => lease_from_row(&row)?,
            None => None,
        };
        let mut this = Self {
            writing: None,
            shared,
            state,
            history_seq,
            notify: false,
            _resource: resource,
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

    /// The connection to read from: the open transaction (which sees this critical
    /// section's own writes) or, before the first write, a pooled one.
    async fn reader(&mut self) -> Result<ReadConn<'_>, StoreError> {
        match &mut self.writing {
            Some(writing) => Ok(ReadConn::Tx(&mut writing.tx)),
            None => Ok(ReadConn::Pool(
                self.shared.pool.acquire().await.map_err(db_error)?,
            )),
        }
    }

    /// The write transaction, opened on first use: the database's single writer, then
    /// `BEGIN IMMEDIATE`, then the resource's row (a resource never written gets it now).
    async fn conn(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        if self.writing.is_none() {
            let writer = SqliteStore::lock_writer(&self.shared).await?;
            let mut tx = self
                .shared
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db_error)?;
            let key = self.state.key;
            sqlx::query(
                "INSERT INTO resources (resource_type, resource_guid) VALUES ($1, $2) \
                 ON CONFLICT (resource_type, resource_guid) DO NOTHING",
            )
            .bind(key.resource_type.as_str())
            .bind(uuid_text(key.guid))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            self.writing = Some(Writing {
                tx,
                _writer: writer,
            });
        }
        match &mut self.writing {
            Some(writing) => Ok(&mut writing.tx),
            None => Err(StoreError::Corrupt(
                "the write transaction vanished".to_owned(),
            )),
        }
    }

    /// Writes the in-memory state, and appends `entry` when given.
    async fn save_state(&mut self, entry: Option<NewEntry<'_>>) -> Result<(), StoreError> {
        if entry.is_some() {
            self.history_seq += 1;
        }
        let key = self.state.key;
        let guid = uuid_text(key.guid);
        let (labels, annotations) = metadata_json(&self.state.metadata);
        let (version, fence, seq, now) = (
            signed(self.state.version),
            signed(self.state.fence),
            signed(self.history_seq),
            micros(self.state.now),
        );
        let deleted = self.state.deleted;
        let digest = self.state.upstream_digest.clone();
        let uncertain = self.state.upstream_uncertain;
        let lock_delay_until = self.state.lock_delay_until.map(micros);
        let conn = self.conn().await?;
        sqlx::query(SAVE)
            .bind(key.resource_type.as_str())
            .bind(&guid)
            .bind(version)
            .bind(fence)
            .bind(seq)
            .bind(labels)
            .bind(annotations)
            .bind(deleted)
            .bind(now)
            .bind(digest)
            .bind(uncertain)
            .bind(lock_delay_until)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        if let Some(entry) = entry {
            let detail = entry
                .detail
                .map(|d| serde_json::to_string(&d))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("history detail: {e}")))?;
            sqlx::query(RECORD)
                .bind(key.resource_type.as_str())
                .bind(&guid)
                .bind(seq)
                .bind(micros(entry.at))
                .bind(entry.event.as_str())
                .bind(entry.actor)
                .bind(entry.lease.map(|(id, _)| uuid_text(id.0)))
                .bind(entry.lease.map(|(_, token)| signed(token.0)))
                .bind(version)
                .bind(detail)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn close_lease(
        &mut self,
        lease: &Lease,
        how: LeaseEnd,
        at: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let done = sqlx::query(
            "UPDATE leases SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(uuid_text(lease.id.0))
        .bind(micros(at))
        .bind(how.as_str())
        .execute(self.conn().await?)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Corrupt(format!(
                "lease {} was not open inside its resource's lock",
                lease.id
            )));
        }
        if how != LeaseEnd::Released && lease.lock_delay_seconds > 0 {
            let until = at + chrono::Duration::seconds(i64::from(lease.lock_delay_seconds));
            self.state.lock_delay_until = self.state.lock_delay_until.max(Some(until));
        }
        self.notify = true;
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

/// Where reads go: the open transaction, or a pooled connection before the first write.
enum ReadConn<'a> {
    Tx(&'a mut Transaction<'static, Sqlite>),
    Pool(sqlx::pool::PoolConnection<Sqlite>),
}

impl std::ops::Deref for ReadConn<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match self {
            Self::Tx(tx) => tx,
            Self::Pool(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for ReadConn<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Self::Tx(tx) => tx,
            Self::Pool(conn) => conn,
        }
    }
}

#[async_trait]
impl ResourceTx for SqliteResourceTx {
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
        let mut conn = self.reader().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid_text(id.0))
            .bind(key.resource_type.as_str())
            .bind(uuid_text(key.guid))
            .fetch_optional(&mut *conn)
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
        .bind(uuid_text(lease.id.0))
        .bind(lease.resource.resource_type.as_str())
        .bind(uuid_text(lease.resource.guid))
        .bind(&lease.holder)
        .bind(signed(lease.fencing_token.0))
        .bind(i64::from(lease.ttl_seconds))
        .bind(micros(lease.acquired_at))
        .bind(micros(lease.expires_at))
        .bind(i64::from(lease.lock_delay_seconds))
        .bind(lease.principal.as_deref())
        .execute(self.conn().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn extend_lease(&mut self, renewed: &Lease) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE leases SET ttl_seconds = $2, renewed_at = $3, expires_at = $4 \
             WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(uuid_text(renewed.id.0))
        .bind(i64::from(renewed.ttl_seconds))
        .bind(micros(renewed.renewed_at))
        .bind(micros(renewed.expires_at))
        .execute(self.conn().await?)
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
        self.notify = true;
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
        let now = micros(self.state.now);
        let mut conn = self.reader().await?;
        let row = sqlx::query(
            "SELECT w.id, w.seq, count(*) OVER () AS live FROM waiters w \
             JOIN instances i ON i.id = w.instance_id \
             WHERE w.resource_type = $1 AND w.resource_guid = $2 \
               AND w.deadline > $3 AND i.alive_until > $3 \
             ORDER BY w.seq LIMIT 1",
        )
        .bind(key.resource_type.as_str())
        .bind(uuid_text(key.guid))
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id").map_err(db_error)?;
        Ok(Some(QueueHead {
            first: Waiter {
                id: uuid(&id, "waiter id")?,
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
        .bind(uuid_text(id))
        .bind(key.resource_type.as_str())
        .bind(uuid_text(key.guid))
        .bind(holder.as_str())
        .bind(uuid_text(instance))
        .bind(micros(deadline))
        .fetch_one(self.conn().await?)
        .await
        .map_err(db_error)?;
        Ok(Waiter {
            id,
            seq: unsigned(seq, "seq")?,
        })
    }

    async fn dequeue(&mut self, waiter: Waiter) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM waiters WHERE id = $1")
            .bind(uuid_text(waiter.id))
            .execute(self.conn().await?)
            .await
            .map_err(db_error)?;
        self.notify = true;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let Some(mut writing) = self.writing.take() else {
            // Nothing was written: nothing to make durable, and nobody to tell.
            return Ok(());
        };
        // Heartbeats that arrived while this transaction held the writer go in with it.
        for (id, beat) in self.shared.take_pending_instances() {
            SqliteStore::write_instances(&mut *writing.tx, id, beat).await?;
        }
        let Writing { tx, _writer } = writing;
        tx.commit().await.map_err(db_error)?;
        drop(_writer);
        if self.notify {
            // No subscriber is fine: nobody waits in this process.
            let _ = self.shared.events.send(self.state.key);
        }
        Ok(())
    }
}
