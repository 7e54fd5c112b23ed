//! The coordinator: the one place that opens a resource's critical section and decides
//! inside it. It joins the store (state under lock), the domain rules (write rule, CC's
//! limits) and, in later upstream modes, the upstream call. Handlers parse and render;
//! every decision about leases and writes is made here.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::lease::{Holder, Lease, LeaseEnd, LeaseId, Ttl};
use crate::domain::metadata::{MetadataLimits, MetadataPatch};
use crate::domain::resource::ResourceKey;
use crate::domain::write_rule::{self, Current, Preconditions, Refusal};
use crate::store::{
    Actor, HistoryEntry, LeasePage, LeaseQuery, ResourceState, ResourceTx, Store, StoreError,
};

/// The rules in force, from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// Refuse writes that carry neither `If-Match` nor `Fencing-Token` (428).
    pub require_preconditions: bool,
    pub limits: MetadataLimits,
}

/// Why an operation did not happen. Each variant names its HTTP outcome.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// 409 `lease-held`: another holder's lease is active.
    #[error("the lease is held by another holder")]
    LeaseHeld {
        holder: String,
        expires_at: DateTime<Utc>,
        retry_after: u64,
    },
    /// 404 `no-active-lease`.
    #[error("the resource has no active lease")]
    NoActiveLease,
    /// 404 `not-found`: no lease has this id.
    #[error("no lease has this id")]
    LeaseNotFound,
    /// 410 `lease-expired` / `lease-released` / `lease-revoked`.
    #[error("the lease has ended")]
    LeaseEnded(LeaseEnd),
    /// The write rule refused the mutation (or the resource is deleted): 410, 423, 409, 412, 428.
    #[error("the write rule refused the request")]
    Refused(Refusal),
    /// 422 `invalid-metadata`: CC's per-resource limits.
    #[error("the metadata breaks Cloud Controller's limits")]
    InvalidMetadata(Vec<String>),
    /// 503 or 500, by the store's error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an acquire did.
#[derive(Debug, Clone)]
pub enum Acquired {
    /// A new lease with a new fencing token (201).
    Granted(Lease),
    /// The same holder already held it: the same lease, extended (200).
    Renewed(Lease),
}

pub struct Coordinator {
    store: Arc<dyn Store>,
    rules: Rules,
}

impl Coordinator {
    pub fn new(store: Arc<dyn Store>, rules: Rules) -> Self {
        Self { store, rules }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// Grants the lease, or renews it when `holder` already holds it.
    #[tracing::instrument(skip_all, fields(resource = %key, holder = holder.as_str()))]
    pub async fn acquire(
        &self,
        key: ResourceKey,
        holder: Holder,
        ttl: Option<Ttl>,
    ) -> Result<Acquired, CoordinatorError> {
        let mut tx = self.store.lock_resource(key).await?;
        let state = tx.state();
        if state.deleted {
            return refuse(tx, CoordinatorError::Refused(Refusal::Deleted)).await;
        }
        if let Some(lease) = state.lease.clone() {
            if lease.holder != holder.as_str() {
                let err = CoordinatorError::LeaseHeld {
                    retry_after: lease.retry_after(state.now),
                    holder: lease.holder,
                    expires_at: lease.expires_at,
                };
                return refuse(tx, err).await;
            }
            let ttl = ttl.unwrap_or_else(|| own_ttl(&lease));
            let renewed = tx.renew(&lease, ttl).await?;
            tx.commit().await?;
            tracing::info!(lease.id = %renewed.id, token = renewed.fencing_token.0, "lease renewed by re-acquire");
            return Ok(Acquired::Renewed(renewed));
        }
        let lease = tx.grant(&holder, ttl.unwrap_or(Ttl::DEFAULT)).await?;
        tx.commit().await?;
        tracing::info!(lease.id = %lease.id, token = lease.fencing_token.0, "lease granted");
        Ok(Acquired::Granted(lease))
    }

    /// Extends an active lease to now + `ttl` (default: its own TTL).
    #[tracing::instrument(skip_all, fields(lease.id = %id))]
    pub async fn renew(&self, id: LeaseId, ttl: Option<Ttl>) -> Result<Lease, CoordinatorError> {
        let (mut tx, lease) = self.lock_lease(id).await?;
        let ttl = ttl.unwrap_or_else(|| own_ttl(&lease));
        let renewed = tx.renew(&lease, ttl).await?;
        tx.commit().await?;
        Ok(renewed)
    }

    /// Ends an active lease as released.
    #[tracing::instrument(skip_all, fields(lease.id = %id))]
    pub async fn release(&self, id: LeaseId) -> Result<Lease, CoordinatorError> {
        let (mut tx, lease) = self.lock_lease(id).await?;
        let released = tx.end(&lease, LeaseEnd::Released).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Locks the lease's resource and returns the lease if it is still active.
    async fn lock_lease(
        &self,
        id: LeaseId,
    ) -> Result<(Box<dyn ResourceTx>, Lease), CoordinatorError> {
        let (lease, _) = self
            .store
            .read_lease(id)
            .await?
            .ok_or(CoordinatorError::LeaseNotFound)?;
        let mut tx = self.store.lock_resource(lease.resource).await?;
        // Read again under the lock: the lease may have ended meanwhile (the lock recorded
        // its expiry if its time ran out).
        let lease = tx.lease(id).await?.ok_or(CoordinatorError::LeaseNotFound)?;
        match lease.ended_at(tx.state().now) {
            Some((how, _)) => refuse(tx, CoordinatorError::LeaseEnded(how)).await,
            None => Ok((tx, lease)),
        }
    }

    /// Applies a metadata patch under the write rule; returns the resource after it.
    #[tracing::instrument(skip_all, fields(resource = %key, token = pre.fencing_token.map(|t| t.0)))]
    pub async fn patch_metadata(
        &self,
        key: ResourceKey,
        patch: &MetadataPatch,
        pre: &Preconditions,
    ) -> Result<ResourceState, CoordinatorError> {
        let mut tx = self.store.lock_resource(key).await?;
        if let Err(refusal) = self.check(tx.state(), pre) {
            return refuse(tx, CoordinatorError::Refused(refusal)).await;
        }
        let state = tx.state();
        let after = state.metadata.apply(patch);
        if let Some(change) = state.metadata.change_to(&after) {
            let errors = state
                .metadata
                .limit_errors(patch, &after, self.rules.limits);
            if !errors.is_empty() {
                return refuse(tx, CoordinatorError::InvalidMetadata(errors)).await;
            }
            let actor = actor(state);
            tx.write_metadata(after, &change, &actor).await?;
            tracing::info!(version = tx.state().version, "metadata changed");
        }
        let state = tx.state().clone();
        tx.commit().await?;
        Ok(state)
    }

    /// Deletes the resource under the write rule; its active lease ends as released.
    #[tracing::instrument(skip_all, fields(resource = %key, token = pre.fencing_token.map(|t| t.0)))]
    pub async fn delete_resource(
        &self,
        key: ResourceKey,
        pre: &Preconditions,
    ) -> Result<(), CoordinatorError> {
        let mut tx = self.store.lock_resource(key).await?;
        if let Err(refusal) = self.check(tx.state(), pre) {
            return refuse(tx, CoordinatorError::Refused(refusal)).await;
        }
        let lease = tx.state().lease.clone();
        tx.delete(&actor(tx.state())).await?;
        if let Some(lease) = lease {
            tx.end(&lease, LeaseEnd::Released).await?;
        }
        tx.commit().await?;
        tracing::info!("resource deleted");
        Ok(())
    }

    fn check(&self, state: &ResourceState, pre: &Preconditions) -> Result<(), Refusal> {
        let current = Current {
            deleted: state.deleted,
            version: state.version,
            metadata: &state.metadata,
            lease: state.lease.as_ref(),
            now: state.now,
        };
        write_rule::check(current, pre, self.rules.require_preconditions)
    }

    /// The resource as of now; 410 once deleted.
    pub async fn resource(&self, key: ResourceKey) -> Result<ResourceState, CoordinatorError> {
        let state = self.store.read_resource(key).await?;
        if state.deleted {
            return Err(CoordinatorError::Refused(Refusal::Deleted));
        }
        Ok(state)
    }

    /// The resource's active lease, with the database's now.
    pub async fn active_lease(
        &self,
        key: ResourceKey,
    ) -> Result<(Lease, DateTime<Utc>), CoordinatorError> {
        let state = self.resource(key).await?;
        let now = state.now;
        state
            .lease
            .map(|lease| (lease, now))
            .ok_or(CoordinatorError::NoActiveLease)
    }

    /// Any lease by id, with the database's now to judge its state by.
    pub async fn lease(&self, id: LeaseId) -> Result<(Lease, DateTime<Utc>), CoordinatorError> {
        self.store
            .read_lease(id)
            .await?
            .ok_or(CoordinatorError::LeaseNotFound)
    }

    pub async fn list_leases(&self, query: &LeaseQuery) -> Result<LeasePage, CoordinatorError> {
        Ok(self.store.list_leases(query).await?)
    }

    /// History newest first. An expiry nobody has noticed yet is recorded first, so history
    /// never lags behind what the lease endpoints report.
    pub async fn history(
        &self,
        key: ResourceKey,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, CoordinatorError> {
        if self.store.has_unrecorded_expiry(key).await? {
            self.store.lock_resource(key).await?.commit().await?;
        }
        Ok(self.store.history(key, before, limit).await?)
    }
}

fn own_ttl(lease: &Lease) -> Ttl {
    Ttl::from_seconds(u64::from(lease.ttl_seconds)).unwrap_or(Ttl::DEFAULT)
}

/// The holder acting under the active lease, or nobody known for an `If-Match`-only write.
fn actor(state: &ResourceState) -> Actor {
    state
        .lease
        .as_ref()
        .map(Actor::holder_of)
        .unwrap_or_default()
}

/// Ends a critical section that changes nothing the caller asked for, keeping what the lock
/// itself recorded (an expiry it noticed), and returns `err`.
async fn refuse<T>(tx: Box<dyn ResourceTx>, err: CoordinatorError) -> Result<T, CoordinatorError> {
    tx.commit().await?;
    Err(err)
}
