//! The embedded SQLite store: one file, served by exactly one leasehold process.
//!
//! **Single process.** Opening the store takes an OS advisory lock on a sidecar file
//! (`<database>.lock`, e.g. `leasehold.db.lock`) and holds it for the store's life; a second
//! process pointed at the same file cannot take it and refuses to start. Everything that makes
//! the guarantees of API.md §6 hold lives in this process: the per-resource locks, the clock,
//! the event broadcast. Several instances sharing one database are a PostgreSQL feature.
//!
//! **Critical section.** A resource's critical section is a process-local async lock for its
//! key (created on demand, removed when nobody holds or waits for it), held from
//! [`Store::lock_resource`] until commit or drop. SQLite has one writer per database: the first
//! write inside a critical section takes this process's writer lock (a fair async mutex, so
//! writers queue in order instead of polling SQLite's busy handler) and opens a
//! `BEGIN IMMEDIATE` transaction, held until commit. Reads before the first write need no
//! transaction: nothing else writes the resource's rows while its lock is held. A critical
//! section that only reads (a refusal) never blocks other resources' writers, and one that
//! calls Cloud Controller first takes the writer only when it writes.
//!
//! **Clock.** The database runs in-process, so time is the host's, read inside the critical
//! section, at microsecond resolution (PostgreSQL's). It never goes backwards: not within the
//! process (the clock is the maximum of the system clock and every instant handed out), and
//! not per resource across restarts (the lock takes at least the resource's last history `at`).
//!
//! **Durability.** WAL journal with `synchronous=FULL`: the WAL is synced at every commit, so
//! an acknowledged change survives a process crash *and* an OS crash or power loss. (`NORMAL`
//! syncs only at checkpoints: it survives a process crash, but the last commits may be lost
//! with power, and leasehold acknowledges nothing that is not durable.) Foreign keys are on;
//! `busy_timeout` bounds waits for locks held by other connections (a checkpoint, an operator's
//! `sqlite3` shell).
//!
//! Migrations (`migrations/sqlite`) are embedded and applied when the service starts.

mod rows;
mod tx;

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::domain::lease::{Lease, LeaseId};
use crate::domain::resource::ResourceKey;
use crate::store::{
    HistoryEntry, LeasePage, LeaseQuery, PoolStats, ResourceState, ResourceTx, StateFilter, Store,
    StoreError,
};

use rows::{LEASE_COLUMNS, lease_from_row, metadata_from_row, micros, opt_time, signed, uuid_text};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "leasehold.db";
/// How long a request waits for a resource's lock, or for the database's single writer,
/// before giving up with 503 (also SQLite's `busy_timeout`).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection before answering 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many undelivered events a slow subscriber may lag behind before it misses some
/// (waiters also re-check on a timer, so a miss only delays them).
const EVENTS_BUFFER: usize = 1024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Why the SQLite store cannot open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "another leasehold process{holder} is using the SQLite database {database} (it holds the lock on {lock_file}); \
         one SQLite file serves one leasehold instance: stop the other process, or point this one at \
         another data directory — several instances need PostgreSQL (DATABASE_URL=postgres://…)"
    )]
    Locked {
        database: String,
        lock_file: String,
        /// ` (pid N)` when the lock file names its holder.
        holder: String,
    },
    #[error("cannot use {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DATABASE_URL is not a usable SQLite URL: {0}")]
    BadUrl(String),
}

/// Where the SQLite database lives: from a `sqlite:` URL (e.g. `sqlite:///var/lib/leasehold/db`,
/// `sqlite:leasehold.db?mode=rwc`).
pub fn options_from_url(url: &str) -> Result<SqliteConnectOptions, OpenError> {
    let options =
        SqliteConnectOptions::from_str(url).map_err(|e| OpenError::BadUrl(e.to_string()))?;
    let in_memory = url.contains(":memory:")
        || url.contains("mode=memory")
        || options.get_filename().as_os_str().is_empty();
    if in_memory {
        return Err(OpenError::BadUrl(
            "an in-memory database would lose every change at exit; name a file".to_owned(),
        ));
    }
    Ok(options)
}

/// The database `leasehold.db` in `data_dir`.
pub fn options_in_dir(data_dir: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new().filename(data_dir.join(DATABASE_FILE))
}

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

/// What every clone and every open critical section share.
struct Shared {
    pool: SqlitePool,
    database: PathBuf,
    /// The advisory lock on `<database>.lock`, held until [`SqliteStore::close`].
    file_lock: Mutex<Option<File>>,
    migrated: AtomicBool,
    events: tokio::sync::broadcast::Sender<ResourceKey>,
    clock: Clock,
    resources: LockMap,
    /// SQLite's single writer, as seen from this process: held from a critical section's
    /// first write until it commits or rolls back.
    writer: Arc<AsyncMutex<()>>,
    /// Heartbeats that arrived while the writer was busy: (started_at, alive_until) in µs,
    /// written by the next transaction that commits (or the next heartbeat).
    pending_instances: Mutex<HashMap<Uuid, (i64, i64)>>,
}

impl SqliteStore {
    /// Takes the single-process lock and builds the pool, without connecting yet: the database
    /// file is created by [`SqliteStore::migrate`].
    pub fn open(options: SqliteConnectOptions, max_connections: u32) -> Result<Self, OpenError> {
        let database = options.get_filename().to_path_buf();
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| OpenError::Io { path, source }
        };
        if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let lock_path = lock_file_of(&database);
        let file_lock = take_file_lock(&database, &lock_path)?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(LOCK_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                database,
                file_lock: Mutex::new(Some(file_lock)),
                migrated: AtomicBool::new(false),
                events: tokio::sync::broadcast::channel(EVENTS_BUFFER).0,
                clock: Clock::default(),
                resources: LockMap::default(),
                writer: Arc::new(AsyncMutex::new(())),
                pending_instances: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The database file.
    pub fn database(&self) -> &Path {
        &self.shared.database
    }

    /// Creates the database file if needed and applies the embedded migrations. A failure
    /// here is permanent (the file is unusable), not a database that is still starting.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let _writer = self.shared.writer.lock().await;
        MIGRATOR.run(&self.shared.pool).await?;
        self.shared.migrated.store(true, Ordering::Release);
        tracing::info!(database = %self.shared.database.display(), "SQLite schema is up to date");
        Ok(())
    }

    /// Closes the pool's connections (checkpointing the WAL), then releases the
    /// single-process lock (at shutdown).
    pub async fn close(&self) {
        self.shared.pool.close().await;
        if let Some(file) = lock(&self.shared.file_lock).take() {
            let _ = file.unlock();
        }
    }

    fn ready(&self) -> Result<&SqlitePool, StoreError> {
        if self.shared.migrated.load(Ordering::Acquire) {
            Ok(&self.shared.pool)
        } else {
            Err(StoreError::NotReady)
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Records that `id` is alive until `alive_until` (µs; never shortening it).
    async fn write_instances<'c, E>(
        executor: E,
        id: Uuid,
        (started_at, alive_until): (i64, i64),
    ) -> Result<(), StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
    {
        sqlx::query(
            "INSERT INTO instances (id, started_at, alive_until) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET alive_until = max(alive_until, excluded.alive_until)",
        )
        .bind(uuid_text(id))
        .bind(started_at)
        .bind(alive_until)
        .execute(executor)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

impl Shared {
    fn take_pending_instances(&self) -> HashMap<Uuid, (i64, i64)> {
        std::mem::take(&mut *lock(&self.pending_instances))
    }
}

/// `leasehold.db` → `leasehold.db.lock`.
pub fn lock_file_of(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive advisory lock on `lock_path` without waiting, and writes this process's
/// id into the file for the next one's error message.
fn take_file_lock(database: &Path, lock_path: &Path) -> Result<File, OpenError> {
    let io = |source| OpenError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(OpenError::Locked {
                database: database.display().to_string(),
                lock_file: lock_path.display().to_string(),
                holder: if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(TryLockError::Error(error)) => return Err(io(error)),
    }
    // Only informative: the lock, not the content, keeps a second process out.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    Ok(file)
}

/// Locks a std mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host's clock as leasehold uses it: microseconds, never going backwards in this process.
#[derive(Default)]
struct Clock {
    /// The latest instant handed out, µs since the epoch.
    last: AtomicI64,
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        self.at_least(i64::MIN)
    }

    /// Now, but no earlier than `floor` µs (which then becomes the clock's minimum).
    fn at_least(&self, floor: i64) -> DateTime<Utc> {
        let system = Utc::now().timestamp_micros().max(floor);
        let previous = self.last.fetch_max(system, Ordering::AcqRel);
        let now = previous.max(system);
        // Always in range: it came from a DateTime or from a stored one.
        DateTime::from_timestamp_micros(now).unwrap_or_else(Utc::now)
    }
}

/// The per-resource locks of this process. An entry exists while someone holds or waits for
/// the resource's lock; the last one out removes it.
#[derive(Default)]
struct LockMap {
    locks: Mutex<HashMap<ResourceKey, Arc<AsyncMutex<()>>>>,
}

/// A held resource lock; dropping it releases the lock and forgets an unused entry.
pub(crate) struct ResourceGuard {
    shared: Arc<Shared>,
    key: ResourceKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for ResourceGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.shared.resources.locks);
        // Every clone is made under this mutex, so a count of 1 (the map's) means nobody
        // holds or waits for the lock, and nobody can start to without this mutex.
        if locks
            .get(&self.key)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

impl SqliteStore {
    /// Takes the resource's process-local lock, waiting up to [`LOCK_TIMEOUT`].
    async fn lock_key(&self, key: ResourceKey) -> Result<ResourceGuard, StoreError> {
        let entry = lock(&self.shared.resources.locks)
            .entry(key)
            .or_default()
            .clone();
        let mut guard = ResourceGuard {
            shared: self.shared.clone(),
            key,
            guard: None,
        };
        // On timeout the guard above still cleans up the entry (the waiting clone is gone).
        let waited = tokio::time::timeout(LOCK_TIMEOUT, entry.lock_owned()).await;
        match waited {
            Ok(held) => {
                guard.guard = Some(held);
                Ok(guard)
            }
            Err(_) => Err(timed_out("the resource's lock")),
        }
    }

    /// Takes the database's single writer, waiting up to [`LOCK_TIMEOUT`].
    async fn lock_writer(shared: &Shared) -> Result<OwnedMutexGuard<()>, StoreError> {
        tokio::time::timeout(LOCK_TIMEOUT, shared.writer.clone().lock_owned())
            .await
            .map_err(|_| timed_out("the database's writer"))
    }
}

/// A lock not granted in time: 503, nothing changed.
fn timed_out(what: &str) -> StoreError {
    StoreError::Busy(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} was not granted within {} s", LOCK_TIMEOUT.as_secs()),
    )))
}

/// Sorts a database error into what the caller should be told.
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
        sqlx::Error::Database(db) => {
            // The primary result code is the low byte of the extended one.
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            match primary {
                // SQLITE_BUSY, SQLITE_LOCKED: busy_timeout ran out
                Some(5 | 6) => StoreError::Busy(error),
                // SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN: the file or disk
                Some(8 | 10 | 13 | 14) => StoreError::Unavailable(error),
                _ => StoreError::Database(error),
            }
        }
        _ => StoreError::Database(error),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn pool_stats(&self) -> PoolStats {
        let pool = &self.shared.pool;
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            in_use: size.saturating_sub(idle),
            idle,
            max: pool.options().get_max_connections(),
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
        let now = self.now();
        // One statement, so the resource and its lease come from one snapshot.
        const SQL: &str = "SELECT r.version, r.fence, r.labels, r.annotations, r.deleted_at, \
             r.upstream_digest, r.upstream_uncertain, \
             l.id, l.resource_type, l.resource_guid, l.holder, l.principal, l.fencing_token, l.ttl_seconds, \
             l.lock_delay_seconds, r.lock_delay_until, \
             l.acquired_at, l.renewed_at, l.expires_at, l.ended_at, l.end_reason \
             FROM (SELECT 1) AS one \
             LEFT JOIN resources r ON r.resource_type = $1 AND r.resource_guid = $2 \
             LEFT JOIN leases l ON l.resource_type = $1 AND l.resource_guid = $2 \
                 AND l.ended_at IS NULL AND l.expires_at > $3";
        let row = sqlx::query(SQL)
            .bind(key.resource_type.as_str())
            .bind(uuid_text(key.guid))
            .bind(micros(now))
            .fetch_one(self.ready()?)
            .await
            .map_err(db_error)?;
        let version: Option<i64> = row.try_get("version").map_err(db_error)?;
        let fence: Option<i64> = row.try_get("fence").map_err(db_error)?;
        Ok(ResourceState {
            key,
            version: rows::unsigned(version.unwrap_or(0), "version")?,
            fence: rows::unsigned(fence.unwrap_or(0), "fence")?,
            metadata: metadata_from_row(&row)?,
            deleted: opt_time(&row, "deleted_at")?.is_some(),
            lease: lease_from_row(&row)?,
            now,
            upstream_digest: row.try_get("upstream_digest").map_err(db_error)?,
            upstream_uncertain: row
                .try_get::<Option<bool>, _>("upstream_uncertain")
                .map_err(db_error)?
                .unwrap_or(false),
            lock_delay_until: opt_time(&row, "lock_delay_until")?,
        })
    }

    async fn read_lease(&self, id: LeaseId) -> Result<Option<(Lease, DateTime<Utc>)>, StoreError> {
        let now = self.now();
        let sql = format!("SELECT {LEASE_COLUMNS} FROM leases l WHERE l.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid_text(id.0))
            .fetch_optional(self.ready()?)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(lease_from_row(&row)?.map(|lease| (lease, now)))
    }

    async fn list_leases(&self, query: &LeaseQuery) -> Result<LeasePage, StoreError> {
        let now = self.now();
        let sql = format!(
            "SELECT {LEASE_COLUMNS} FROM leases l \
             WHERE ($1 IS NULL OR l.resource_type = $1) \
               AND ($2 IS NULL OR l.resource_guid = $2) \
               AND ($3 IS NULL OR l.holder = $3) \
               AND CASE $4 \
                     WHEN 'active' THEN l.ended_at IS NULL AND l.expires_at > $8 \
                     WHEN 'ended' THEN NOT (l.ended_at IS NULL AND l.expires_at > $8) \
                     ELSE 1 END \
               AND ($5 IS NULL OR (l.acquired_at, l.id) < ($5, $6)) \
               AND ($9 IS NULL OR l.principal = $9) \
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
            .bind(query.guid.map(uuid_text))
            .bind(query.holder.as_deref())
            .bind(state)
            .bind(query.after.map(|(at, _)| micros(at)))
            .bind(query.after.map(|(_, id)| uuid_text(id.0)))
            .bind(i64::from(query.limit) + 1)
            .bind(micros(now))
            .bind(query.principal.as_deref())
            .fetch_all(self.ready()?)
            .await
            .map_err(db_error)?;
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
             AND ended_at IS NULL AND expires_at <= $3)",
        )
        .bind(key.resource_type.as_str())
        .bind(uuid_text(key.guid))
        .bind(micros(self.now()))
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
             WHERE resource_type = $1 AND resource_guid = $2 AND ($3 IS NULL OR seq < $3) \
             ORDER BY seq DESC LIMIT $4",
        )
        .bind(key.resource_type.as_str())
        .bind(uuid_text(key.guid))
        .bind(before.map(signed))
        .bind(i64::from(limit))
        .fetch_all(self.ready()?)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::history_from_row).collect()
    }

    async fn heartbeat(&self, instance: Uuid, alive_for: Duration) -> Result<(), StoreError> {
        let pool = self.ready()?;
        let now = self.now();
        let until = now + chrono::Duration::from_std(alive_for).unwrap_or_default();
        let beat = (micros(now), micros(until));
        // Never wait for the writer here: the caller may be the very critical section that
        // holds it (an acquire announcing its instance before queueing). Then the heartbeat
        // is written by whichever transaction commits next, in that transaction.
        let Ok(_writer) = self.shared.writer.clone().try_lock_owned() else {
            lock(&self.shared.pending_instances)
                .entry(instance)
                .and_modify(|(_, alive)| *alive = (*alive).max(beat.1))
                .or_insert(beat);
            return Ok(());
        };
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        for (id, pending) in self.shared.take_pending_instances() {
            Self::write_instances(&mut *tx, id, pending).await?;
        }
        Self::write_instances(&mut *tx, instance, beat).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn forget_instance(&self, instance: Uuid) -> Result<(), StoreError> {
        let pool = self.ready()?;
        lock(&self.shared.pending_instances).remove(&instance);
        let _writer = Self::lock_writer(&self.shared).await?;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        sqlx::query("DELETE FROM waiters WHERE instance_id = $1")
            .bind(uuid_text(instance))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(uuid_text(instance))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn overdue_leases(&self, limit: u32) -> Result<Vec<ResourceKey>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT resource_type, resource_guid FROM leases \
             WHERE ended_at IS NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(micros(self.now()))
        .bind(i64::from(limit))
        .fetch_all(self.ready()?)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(t, g)| rows::key_from_parts(&t, &g))
            .collect()
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ResourceKey> {
        self.shared.events.subscribe()
    }

    async fn lock_resource(&self, key: ResourceKey) -> Result<Box<dyn ResourceTx>, StoreError> {
        self.ready()?;
        let guard = self.lock_key(key).await?;
        Ok(Box::new(
            tx::SqliteResourceTx::lock(self.shared.clone(), guard, key).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_backwards_and_honours_a_floor() {
        let clock = Clock::default();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        let future = micros(Utc::now()) + 3_600_000_000;
        assert_eq!(micros(clock.at_least(future)), future);
        assert!(micros(clock.now()) >= future, "the floor holds afterwards");
        assert_eq!(
            clock.now().timestamp_subsec_nanos() % 1000,
            0,
            "µs resolution"
        );
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_naming_the_lock_file() {
        let dir = std::env::temp_dir().join(format!("leasehold-lock-{}", Uuid::new_v4()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _enter = rt.enter();
        let first = SqliteStore::open(options_in_dir(&dir), 1).expect("first open");
        let error = SqliteStore::open(options_in_dir(&dir), 1)
            .err()
            .expect("the second open is refused");
        let message = error.to_string();
        assert!(message.contains("leasehold.db.lock"), "{message}");
        assert!(message.contains("PostgreSQL"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        rt.block_on(first.close());
        let again = SqliteStore::open(options_in_dir(&dir), 1).expect("open after close");
        rt.block_on(again.close());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sqlite_urls_name_a_file_and_memory_is_refused() {
        let options = options_from_url("sqlite:///tmp/x/leasehold.db").expect("absolute");
        assert_eq!(options.get_filename(), Path::new("/tmp/x/leasehold.db"));
        let options = options_from_url("sqlite:data/lh.db").expect("relative");
        assert_eq!(options.get_filename(), Path::new("data/lh.db"));
        assert_eq!(
            lock_file_of(Path::new("data/lh.db")),
            Path::new("data/lh.db.lock")
        );
        assert!(options_from_url("sqlite::memory:").is_err());
        assert!(options_from_url("sqlite://x.db?mode=memory").is_err());
    }

    /// A migrated store in a fresh directory (removed by the caller).
    async fn fresh_store() -> (SqliteStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("leasehold-store-{}", Uuid::new_v4()));
        let store = SqliteStore::open(options_in_dir(&dir), 4).expect("open");
        store.migrate().await.expect("migrate");
        (store, dir)
    }

    fn route() -> ResourceKey {
        ResourceKey {
            resource_type: crate::domain::resource::ResourceType::Routes,
            guid: Uuid::new_v4(),
        }
    }

    #[tokio::test]
    async fn a_heartbeat_from_inside_a_writing_critical_section_does_not_wait_for_it() {
        use crate::domain::lease::{Holder, Ttl};
        let (store, dir) = fresh_store().await;
        let key = route();
        let holder = Holder::parse("svc/1".to_owned()).expect("holder");
        let mut tx = store.lock_resource(key).await.expect("lock");
        tx.grant(&holder, None, Ttl::DEFAULT, 0)
            .await
            .expect("grant");
        // This task holds the writer: the heartbeat must not wait for it (it would wait
        // for itself), and lands with the transaction.
        let instance = Uuid::new_v4();
        tokio::time::timeout(
            Duration::from_millis(500),
            store.heartbeat(instance, Duration::from_secs(10)),
        )
        .await
        .expect("the heartbeat returns at once")
        .expect("heartbeat");
        let deadline = tx.state().now + chrono::Duration::seconds(5);
        let waiter = Holder::parse("svc/2".to_owned()).expect("holder");
        let me = tx
            .enqueue(&waiter, deadline, instance)
            .await
            .expect("enqueue");
        let head = tx.queue_head().await.expect("queue head");
        assert_eq!(head.map(|h| h.first), None, "not alive before the commit");
        tx.commit().await.expect("commit");
        let mut tx = store.lock_resource(key).await.expect("lock");
        let head = tx
            .queue_head()
            .await
            .expect("queue head")
            .expect("a live waiter");
        assert_eq!((head.first, head.live), (me, 1));
        drop(tx);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_clock_of_a_resource_never_goes_below_its_last_history_entry() {
        use crate::domain::lease::{Holder, Ttl};
        let (store, dir) = fresh_store().await;
        let key = route();
        let holder = Holder::parse("svc/1".to_owned()).expect("holder");
        let mut tx = store.lock_resource(key).await.expect("lock");
        tx.grant(&holder, None, Ttl::DEFAULT, 0)
            .await
            .expect("grant");
        tx.commit().await.expect("commit");
        // As if the host's clock had been an hour ahead when the entry was written.
        let ahead = micros(Utc::now()) + 3_600_000_000;
        sqlx::query("UPDATE history SET at = $1")
            .bind(ahead)
            .execute(&store.shared.pool)
            .await
            .expect("move the entry");
        let tx = store.lock_resource(key).await.expect("lock");
        assert!(micros(tx.state().now) >= ahead);
        drop(tx);
        assert!(micros(store.now()) >= ahead, "reads agree afterwards");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_timestamp_a_store_hands_out_round_trips_exactly() {
        let now = Clock::default().now();
        assert_eq!(rows::time(micros(now)).expect("in range"), now);
    }
}
