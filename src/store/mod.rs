//! Storage: where leases, fences, versions, metadata and history live. The HTTP layer never
//! sees it; the coordinator drives it through two narrow traits so a second backend slots in:
//! [`Store`] for reads and for opening a resource's critical section, [`ResourceTx`] for
//! everything done inside it. Every write happens inside a `ResourceTx`, which holds the
//! resource's lock until it commits or is dropped (a drop rolls back). Two implementations
//! with the same behaviour: [`postgres`] (any number of instances share one database) and
//! [`sqlite`] (embedded, one process per database file).

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::etag::Version;
use crate::domain::lease::{FencingToken, Holder, Lease, LeaseEnd, LeaseId, Ttl};
use crate::domain::metadata::{Metadata, MetadataChange};
use crate::domain::resource::{ResourceKey, ResourceType};

/// A resource as read, or as it stands inside its critical section.
#[derive(Debug, Clone)]
pub struct ResourceState {
    pub key: ResourceKey,
    pub version: Version,
    /// The last fencing token issued for the resource, 0 if none.
    pub fence: u64,
    pub metadata: Metadata,
    pub deleted: bool,
    /// The lease active at `now`, if any.
    pub lease: Option<Lease>,
    /// The database's clock when the state was read (inside the lock, for a `ResourceTx`).
    pub now: DateTime<Utc>,
    /// Digest of the upstream's body when leasehold last saw it (cloud-controller upstream).
    pub upstream_digest: Option<String>,
    /// A write was sent upstream and its answer lost; the next read settles it.
    pub upstream_uncertain: bool,
    /// Nobody may acquire before then: the lock-delay of a lease that expired or was revoked.
    pub lock_delay_until: Option<DateTime<Utc>>,
}

impl ResourceState {
    /// The end of a lock-delay still running at `now`.
    pub fn lock_delay_at_now(&self) -> Option<DateTime<Utc>> {
        self.lock_delay_until.filter(|until| *until > self.now)
    }
}

/// A place in a resource's queue of waiting acquires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub id: Uuid,
    /// Arrival order across all instances.
    pub seq: u64,
}

/// The front of a resource's queue: its first live waiter, and how many are live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueHead {
    pub first: Waiter,
    pub live: u64,
}

/// Who made a change, for history: the lease holder (or nobody known) and the lease used.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub name: Option<String>,
    pub lease: Option<(LeaseId, FencingToken)>,
}

impl Actor {
    /// The holder of `lease` (its principal, with authentication), acting under it.
    pub fn holder_of(lease: &Lease) -> Self {
        Self {
            name: Some(lease.actor().to_owned()),
            lease: Some((lease.id, lease.fencing_token)),
        }
    }
}

/// The kinds of history events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    LeaseGranted,
    LeaseRenewed,
    LeaseReleased,
    LeaseExpired,
    LeaseRevoked,
    MetadataChanged,
    Drift,
    Deleted,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeaseGranted => "lease-granted",
            Self::LeaseRenewed => "lease-renewed",
            Self::LeaseReleased => "lease-released",
            Self::LeaseExpired => "lease-expired",
            Self::LeaseRevoked => "lease-revoked",
            Self::MetadataChanged => "metadata-changed",
            Self::Drift => "drift",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::LeaseGranted,
            Self::LeaseRenewed,
            Self::LeaseReleased,
            Self::LeaseExpired,
            Self::LeaseRevoked,
            Self::MetadataChanged,
            Self::Drift,
            Self::Deleted,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }

    /// The event that records a lease ending this way.
    pub fn lease_ended(how: LeaseEnd) -> Self {
        match how {
            LeaseEnd::Released => Self::LeaseReleased,
            LeaseEnd::Expired => Self::LeaseExpired,
            LeaseEnd::Revoked => Self::LeaseRevoked,
        }
    }
}

/// One history entry as stored.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub event: Event,
    pub actor: Option<String>,
    pub lease_id: Option<LeaseId>,
    pub fencing_token: Option<FencingToken>,
    pub version: Version,
    pub detail: Option<Value>,
}

/// One history entry to append; `save` numbers it.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub event: Event,
    pub at: DateTime<Utc>,
    pub actor: Option<&'a str>,
    pub lease: Option<(LeaseId, FencingToken)>,
    pub detail: Option<Value>,
}

/// Which leases the operator listing shows, by state at the database's now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateFilter {
    #[default]
    Active,
    Ended,
    All,
}

/// The operator listing's filters and page.
#[derive(Debug, Clone, Default)]
pub struct LeaseQuery {
    pub resource_type: Option<ResourceType>,
    pub guid: Option<Uuid>,
    pub holder: Option<String>,
    /// Only leases taken by this principal (non-admin callers see only their own).
    pub principal: Option<String>,
    pub state: StateFilter,
    pub limit: u32,
    /// Keyset: only leases strictly after this one in (acquired_at, id) descending order.
    pub after: Option<(DateTime<Utc>, LeaseId)>,
}

/// A page of leases, newest first, with the state of each as of `now`.
#[derive(Debug, Clone)]
pub struct LeasePage {
    pub items: Vec<Lease>,
    pub now: DateTime<Utc>,
    pub has_more: bool,
}

/// How busy the connection pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The schema is not in place yet (migrations still pending): 503.
    #[error("the database schema is not ready yet")]
    NotReady,
    /// The database cannot be reached or the pool is exhausted: 503.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The resource's lock or a statement took longer than allowed: 503.
    #[error("the database did not answer in time (lock or statement timeout)")]
    Busy(#[source] sqlx::Error),
    /// A stored row breaks an invariant (e.g. an unknown resource type): 500.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Anything else the database said: 500.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

/// Reads, and the way into a resource's critical section.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name for `/v1/info`, e.g. `postgres`.
    fn kind(&self) -> &'static str;

    /// Connections of the pool, for `/metrics`.
    fn pool_stats(&self) -> PoolStats;

    /// Ok when the database answers and the schema is in place.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// The resource as of one instant; a resource never seen reads as version 0, empty.
    async fn read_resource(&self, key: ResourceKey) -> Result<ResourceState, StoreError>;

    /// Any lease by id, as recorded.
    async fn read_lease(&self, id: LeaseId) -> Result<Option<(Lease, DateTime<Utc>)>, StoreError>;

    /// The operator listing.
    async fn list_leases(&self, query: &LeaseQuery) -> Result<LeasePage, StoreError>;

    /// Whether the resource has an open lease past its expiry that history does not show yet.
    async fn has_unrecorded_expiry(&self, key: ResourceKey) -> Result<bool, StoreError>;

    /// History entries newest first, with `seq < before` when given.
    async fn history(
        &self,
        key: ResourceKey,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Records that this instance is alive until `alive_for` from now (its waiters count
    /// only while it is).
    async fn heartbeat(
        &self,
        instance: Uuid,
        alive_for: std::time::Duration,
    ) -> Result<(), StoreError>;

    /// Removes a stopping instance and its waiters.
    async fn forget_instance(&self, instance: Uuid) -> Result<(), StoreError>;

    /// Resources with an open lease past its expiry (at most `limit`), for the sweep.
    async fn overdue_leases(&self, limit: u32) -> Result<Vec<ResourceKey>, StoreError>;

    /// Resources whose lease ended or whose queue changed, on any instance sharing the
    /// database: waiters wake on these.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ResourceKey>;

    /// Opens the resource's critical section: locks it (on every instance sharing the
    /// database), takes the database's clock, and records the expiry of an open lease whose
    /// time ran out, so the returned state's `lease` is the one active now.
    async fn lock_resource(&self, key: ResourceKey) -> Result<Box<dyn ResourceTx>, StoreError>;
}

/// Everything done to one resource inside its critical section. Each method records its
/// history entry itself and keeps `state()` current. Nothing is visible before `commit`.
#[async_trait]
pub trait ResourceTx: Send {
    fn state(&self) -> &ResourceState;

    /// A lease of this resource by id, as recorded (the caller judges it at `state().now`).
    async fn lease(&mut self, id: LeaseId) -> Result<Option<Lease>, StoreError>;

    /// Inserts a new open lease (backends only; `grant` decides what it is).
    async fn insert_lease(&mut self, lease: &Lease) -> Result<(), StoreError>;

    /// Writes a renewed lease's TTL, `renewed_at` and `expires_at` (backends only).
    async fn extend_lease(&mut self, renewed: &Lease) -> Result<(), StoreError>;

    /// Grants a new lease with the next fencing token; there must be no active lease.
    async fn grant(
        &mut self,
        holder: &Holder,
        principal: Option<&str>,
        ttl: Ttl,
        lock_delay_seconds: u32,
    ) -> Result<Lease, StoreError> {
        let state = self.state_mut();
        let now = state.now;
        let lease = Lease {
            id: LeaseId::new_random(),
            resource: state.key,
            holder: holder.as_str().to_owned(),
            principal: principal.map(str::to_owned),
            fencing_token: FencingToken(state.fence + 1),
            ttl_seconds: ttl.seconds(),
            lock_delay_seconds,
            acquired_at: now,
            renewed_at: now,
            expires_at: now + ttl.as_chrono(),
            ended: None,
        };
        self.insert_lease(&lease).await?;
        self.state_mut().fence = lease.fencing_token.0;
        self.save(Some(NewEntry {
            event: Event::LeaseGranted,
            at: now,
            actor: Some(lease.actor()),
            lease: Some((lease.id, lease.fencing_token)),
            detail: None,
        }))
        .await?;
        crate::metrics::lease_event("granted");
        self.state_mut().lease = Some(lease.clone());
        Ok(lease)
    }

    /// Extends the active lease to now + `ttl`.
    async fn renew(&mut self, lease: &Lease, ttl: Ttl) -> Result<Lease, StoreError> {
        let now = self.state().now;
        let renewed = Lease {
            ttl_seconds: ttl.seconds(),
            renewed_at: now,
            expires_at: now + ttl.as_chrono(),
            ..lease.clone()
        };
        self.extend_lease(&renewed).await?;
        self.save(Some(NewEntry {
            event: Event::LeaseRenewed,
            at: now,
            actor: Some(lease.actor()),
            lease: Some((lease.id, lease.fencing_token)),
            detail: None,
        }))
        .await?;
        crate::metrics::lease_event("renewed");
        self.state_mut().lease = Some(renewed.clone());
        Ok(renewed)
    }

    /// Ends the active lease now, as released or revoked (a revocation starts its
    /// lock-delay). Waiters on every instance are told.
    async fn end(&mut self, lease: &Lease, how: LeaseEnd) -> Result<Lease, StoreError>;

    /// The first live waiter (deadline not passed, instance alive) and the live count.
    async fn queue_head(&mut self) -> Result<Option<QueueHead>, StoreError>;

    /// Joins the queue, behind every waiter already in it.
    async fn enqueue(
        &mut self,
        holder: &Holder,
        deadline: DateTime<Utc>,
        instance: Uuid,
    ) -> Result<Waiter, StoreError>;

    /// Leaves the queue; waiters on every instance are told.
    async fn dequeue(&mut self, waiter: Waiter) -> Result<(), StoreError>;

    /// The state the shared transitions below change (backends only).
    fn state_mut(&mut self) -> &mut ResourceState;

    /// Writes the in-memory state to the resource's row, and appends `entry` when given,
    /// numbering it next in the resource's history (backends only).
    async fn save(&mut self, entry: Option<NewEntry<'_>>) -> Result<(), StoreError>;

    /// Replaces the metadata, bumps the version and records the change. With an upstream,
    /// `upstream_digest` is the digest of its body after the write.
    async fn write_metadata(
        &mut self,
        after: Metadata,
        change: &MetadataChange,
        actor: &Actor,
        upstream_digest: Option<String>,
    ) -> Result<(), StoreError> {
        let state = self.state_mut();
        state.version += 1;
        state.metadata = after;
        if upstream_digest.is_some() {
            state.upstream_digest = upstream_digest;
            state.upstream_uncertain = false;
        }
        let entry = NewEntry {
            event: Event::MetadataChanged,
            at: state.now,
            actor: actor.name.as_deref(),
            lease: actor.lease,
            detail: serde_json::to_value(change).ok(),
        };
        self.save(Some(entry)).await
    }

    /// Compares what the upstream has now with what leasehold last saw. The first sight is a
    /// baseline (no version change); a different digest later is drift: the metadata is taken
    /// from upstream, the version bumped and a `drift` entry recorded. Returns whether it drifted.
    async fn observe_upstream(
        &mut self,
        metadata: Metadata,
        digest: String,
    ) -> Result<bool, StoreError> {
        let state = self.state_mut();
        let Some(seen) = state.upstream_digest.as_deref() else {
            state.metadata = metadata;
            state.upstream_digest = Some(digest);
            self.save(None).await?;
            return Ok(false);
        };
        if seen == digest {
            if state.upstream_uncertain {
                // The lost write did not land: nothing changed upstream.
                state.upstream_uncertain = false;
                self.save(None).await?;
            }
            return Ok(false);
        }
        let mut detail = state
            .metadata
            .change_to(&metadata)
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or_else(|| serde_json::json!({"labels": {}, "annotations": {}}));
        detail["cause"] = Value::from(if state.upstream_uncertain {
            "unacknowledged-write"
        } else {
            "out-of-band"
        });
        state.version += 1;
        state.metadata = metadata;
        state.upstream_digest = Some(digest);
        state.upstream_uncertain = false;
        let entry = NewEntry {
            event: Event::Drift,
            at: state.now,
            actor: None,
            lease: None,
            detail: Some(detail),
        };
        self.save(Some(entry)).await?;
        Ok(true)
    }

    /// Marks that a write was sent upstream whose outcome is unknown.
    async fn mark_upstream_uncertain(&mut self) -> Result<(), StoreError> {
        self.state_mut().upstream_uncertain = true;
        self.save(None).await
    }

    /// Tombstones the resource and bumps the version; `detail` goes into the history entry.
    async fn delete(&mut self, actor: &Actor, detail: Option<Value>) -> Result<(), StoreError>;

    /// Makes everything done durable and visible, and releases the lock.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
