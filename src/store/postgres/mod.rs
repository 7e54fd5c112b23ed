//! The PostgreSQL store. The `resources` row is the per-resource lock (taken with an upsert,
//! so a resource never seen gets its row and its lock in one statement); all time is the
//! database's clock. Migrations are embedded and applied under sqlx's advisory lock, so
//! several instances may start at once.

mod rows;
mod tx;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::domain::lease::{Lease, LeaseId};
use crate::domain::resource::ResourceKey;
use crate::store::{
    HistoryEntry, LeasePage, LeaseQuery, PoolStats, ResourceState, ResourceTx, StateFilter, Store,
    StoreError,
};

use rows::{LEASE_COLUMNS, lease_from_row, metadata_from_row, signed, unsigned};

/// How long a request waits for a resource's lock before giving up with 503. Shorter than
/// [`STATEMENT_TIMEOUT`], which is shorter than the HTTP request timeout.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any one statement may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection before answering 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to reach the database and apply migrations at start.
const MIGRATE_RETRY: Duration = Duration::from_secs(1);

const _: () = assert!(LOCK_TIMEOUT.as_millis() < STATEMENT_TIMEOUT.as_millis());

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel on which a transaction announces, at commit, that a resource's lease ended
/// or its queue changed (payload `type/guid`).
pub const EVENTS_CHANNEL: &str = "leasehold_events";
/// How many undelivered events a slow subscriber may lag behind before it misses some
/// (waiters also re-check on a timer, so a miss only delays them).
const EVENTS_BUFFER: usize = 1024;

/// The PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    migrated: Arc<AtomicBool>,
    events: tokio::sync::broadcast::Sender<ResourceKey>,
}

impl PgStore {
    /// Builds the pool without connecting: leasehold starts while the database is down.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("leasehold")
            .options([
                ("lock_timeout", format!("{}ms", LOCK_TIMEOUT.as_millis())),
                (
                    "statement_timeout",
                    format!("{}ms", STATEMENT_TIMEOUT.as_millis()),
                ),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            migrated: Arc::new(AtomicBool::new(false)),
            events: tokio::sync::broadcast::channel(EVENTS_BUFFER).0,
        })
    }

    /// Forwards the events of every instance (PostgreSQL `LISTEN`) to this process's
    /// subscribers, reconnecting after a lost connection. Runs until aborted.
    pub async fn listen_for_events(&self) {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::debug!(%error, "cannot LISTEN yet; retrying");
                    tokio::time::sleep(MIGRATE_RETRY).await;
                    continue;
                }
            };
            if let Err(error) = listener.listen(EVENTS_CHANNEL).await {
                tracing::warn!(%error, "LISTEN failed; retrying");
                tokio::time::sleep(MIGRATE_RETRY).await;
                continue;
            }
            loop {
                match listener.recv().await {
                    Ok(notification) => {
                        if let Some(key) = parse_event(notification.payload()) {
                            // No subscriber is fine: nobody waits in this process.
                            let _ = self.events.send(key);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "lost the LISTEN connection; reconnecting");
                        break;
                    }
                }
            }
        }
    }

    /// Applies the embedded migrations, retrying until the database answers.
    pub async fn migrate_until_ready(&self) {
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => {
                    self.migrated.store(true, Ordering::Release);
                    tracing::info!("database schema is up to date");
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "database not ready yet; retrying");
                    tokio::time::sleep(MIGRATE_RETRY).await;
                }
            }
        }
    }

    /// Closes the pool's connections (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn ready(&self) -> Result<&PgPool, StoreError> {
        if self.migrated.load(Ordering::Acquire) {
            Ok(&self.pool)
        } else {
            Err(StoreError::NotReady)
        }
    }
}

fn parse_event(payload: &str) -> Option<ResourceKey> {
    let (resource_type, guid) = payload.split_once('/')?;
    Some(ResourceKey {
        resource_type: resource_type.parse().ok()?,
        guid: guid.parse().ok()?,
    })
}

/// Sorts a database error into what the caller should be told.
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // lock_not_available, query_canceled (statement_timeout), serialization, deadlock
            Some("55P03" | "57014" | "40001" | "40P01") => StoreError::Busy(error),
            // admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away
            Some("57P01" | "57P02" | "57P03") => StoreError::Unavailable(error),
            _ => StoreError::Database(error),
        },
        _ => StoreError::Database(error),
    }
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let pool = self.ready()?;
        sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn read_resource(&self, key: ResourceKey) -> Result<ResourceState, StoreError> {
        // One statement, so the resource and its lease come from one snapshot.
        const SQL: &str = "SELECT now() AS now, r.version, r.fence, r.labels, r.annotations, r.deleted_at, \
             r.upstream_digest, r.upstream_uncertain, \
             l.id, l.resource_type, l.resource_guid, l.holder, l.principal, l.fencing_token, l.ttl_seconds, \
             l.lock_delay_seconds, r.lock_delay_until, \
             l.acquired_at, l.renewed_at, l.expires_at, l.ended_at, l.end_reason \
             FROM (SELECT 1) AS one \
             LEFT JOIN resources r ON r.resource_type = $1 AND r.resource_guid = $2 \
             LEFT JOIN leases l ON l.resource_type = $1 AND l.resource_guid = $2 \
                 AND l.ended_at IS NULL AND l.expires_at > now()";
        let row = sqlx::query(SQL)
            .bind(key.resource_type.as_str())
            .bind(key.guid)
            .fetch_one(self.ready()?)
            .await
            .map_err(db_error)?;
        let version: Option<i64> = row.try_get("version").map_err(db_error)?;
        let fence: Option<i64> = row.try_get("fence").map_err(db_error)?;
        let deleted_at: Option<DateTime<Utc>> = row.try_get("deleted_at").map_err(db_error)?;
        Ok(ResourceState {
            key,
            version: unsigned(version.unwrap_or(0), "version")?,
            fence: unsigned(fence.unwrap_or(0), "fence")?,
            metadata: metadata_from_row(&row)?,
            deleted: deleted_at.is_some(),
            lease: lease_from_row(&row)?,
            now: row.try_get("now").map_err(db_error)?,
            upstream_digest: row.try_get("upstream_digest").map_err(db_error)?,
            upstream_uncertain: row
                .try_get::<Option<bool>, _>("upstream_uncertain")
                .map_err(db_error)?
                .unwrap_or(false),
            lock_delay_until: row.try_get("lock_delay_until").map_err(db_error)?,
        })
    }

    async fn read_lease(&self, id: LeaseId) -> Result<Option<(Lease, DateTime<Utc>)>, StoreError> {
        let sql = format!("SELECT now() AS now, {LEASE_COLUMNS} FROM leases l WHERE l.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(self.ready()?)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let now = row.try_get("now").map_err(db_error)?;
        Ok(lease_from_row(&row)?.map(|lease| (lease, now)))
    }

    async fn list_leases(&self, query: &LeaseQuery) -> Result<LeasePage, StoreError> {
        let sql = format!(
            "SELECT now() AS now, {LEASE_COLUMNS} FROM leases l \
             WHERE ($1::text IS NULL OR l.resource_type = $1) \
               AND ($2::uuid IS NULL OR l.resource_guid = $2) \
               AND ($3::text IS NULL OR l.holder = $3) \
               AND CASE $4::text \
                     WHEN 'active' THEN l.ended_at IS NULL AND l.expires_at > now() \
                     WHEN 'ended' THEN NOT (l.ended_at IS NULL AND l.expires_at > now()) \
                     ELSE true END \
               AND ($5::timestamptz IS NULL OR (l.acquired_at, l.id) < ($5, $6::uuid)) \
               AND ($8::text IS NULL OR l.principal = $8) \
             ORDER BY l.acquired_at DESC, l.id DESC \
             LIMIT $7"
        );
        let state = match query.state {
            StateFilter::Active => "active",
            StateFilter::Ended => "ended",
            StateFilter::All => "all",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query.resource_type.map(|t| t.as_str()))
            .bind(query.guid)
            .bind(query.holder.as_deref())
            .bind(state)
            .bind(query.after.map(|(at, _)| at))
            .bind(query.after.map(|(_, id)| id.0))
            .bind(i64::from(query.limit) + 1)
            .bind(query.principal.as_deref())
            .fetch_all(self.ready()?)
            .await
            .map_err(db_error)?;
        let now = match rows.first() {
            Some(row) => row.try_get("now").map_err(db_error)?,
            None => sqlx::query_scalar("SELECT now()")
                .fetch_one(self.ready()?)
                .await
                .map_err(db_error)?,
        };
        let has_more = rows.len() > query.limit as usize;
        let items = rows
            .iter()
            .take(query.limit as usize)
            .map(|row| lease_from_row(row).transpose())
            .collect::<Option<Result<Vec<_>, _>>>()
            .transpose()?
            .unwrap_or_default();
        Ok(LeasePage {
            items,
            now,
            has_more,
        })
    }

    async fn has_unrecorded_expiry(&self, key: ResourceKey) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM leases WHERE resource_type = $1 AND resource_guid = $2 \
             AND ended_at IS NULL AND expires_at <= now())",
        )
        .bind(key.resource_type.as_str())
        .bind(key.guid)
        .fetch_one(self.ready()?)
        .await
        .map_err(db_error)
    }

    async fn history(
        &self,
        key: ResourceKey,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, event, actor, lease_id, fencing_token, version, detail FROM history \
             WHERE resource_type = $1 AND resource_guid = $2 AND ($3::bigint IS NULL OR seq < $3) \
             ORDER BY seq DESC LIMIT $4",
        )
        .bind(key.resource_type.as_str())
        .bind(key.guid)
        .bind(before.map(signed))
        .bind(i64::from(limit))
        .fetch_all(self.ready()?)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::history_from_row).collect()
    }

    async fn heartbeat(&self, instance: Uuid, alive_for: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO instances (id, started_at, alive_until) \
             VALUES ($1, clock_timestamp(), clock_timestamp() + $2 * interval '1 millisecond') \
             ON CONFLICT (id) DO UPDATE SET alive_until = EXCLUDED.alive_until",
        )
        .bind(instance)
        .bind(alive_for.as_millis() as f64)
        .execute(self.ready()?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn forget_instance(&self, instance: Uuid) -> Result<(), StoreError> {
        let mut tx = self.ready()?.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM waiters WHERE instance_id = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn overdue_leases(&self, limit: u32) -> Result<Vec<ResourceKey>, StoreError> {
        let rows: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT resource_type, resource_guid FROM leases \
             WHERE ended_at IS NULL AND expires_at <= now() ORDER BY expires_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.ready()?)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(t, g)| rows::key_from_parts(&t, g))
            .collect()
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ResourceKey> {
        self.events.subscribe()
    }

    async fn lock_resource(&self, key: ResourceKey) -> Result<Box<dyn ResourceTx>, StoreError> {
        let tx = self.ready()?.begin().await.map_err(db_error)?;
        Ok(Box::new(tx::PgResourceTx::lock(tx, key).await?))
    }
}
