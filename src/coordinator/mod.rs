//! The coordinator: the one place that opens a resource's critical section and decides
//! inside it. It joins the store (state under lock), the domain rules (write rule, CC's
//! limits) and, in later upstream modes, the upstream call. Handlers parse and render;
//! every decision about leases and writes is made here.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::lease::{Lease, LeaseEnd, LeaseId, Ttl};
use crate::domain::metadata::{MetadataLimits, MetadataPatch};
use crate::domain::resource::ResourceKey;
use crate::domain::write_rule::{self, Current, Preconditions, Refusal};
use crate::store::{
    Actor, HistoryEntry, LeasePage, LeaseQuery, ResourceState, ResourceTx, Store, StoreError,
};
use crate::upstream::{Caller, DeleteOutcome, Upstream, UpstreamError, UpstreamResource};

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
    /// 409 `lease-held`: another holder's lease is active, or the lease is free but other
    /// acquires wait for it (then `holder` and `expires_at` are `None`).
    #[error("the lease is held by another holder")]
    LeaseHeld {
        holder: Option<String>,
        expires_at: Option<DateTime<Utc>>,
        retry_after: u64,
        waiting: Option<u64>,
    },
    /// 409 `lock-delay`: a lease of the resource expired or was revoked recently.
    #[error("the resource is in lock-delay")]
    LockDelay {
        until: DateTime<Utc>,
        retry_after: u64,
    },
    /// 403 `not-lease-holder`: the lease was taken by another principal.
    #[error("the lease belongs to another principal")]
    NotLeaseHolder,
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
    /// The upstream failed or refused: 404, 405, 403, 422, 502 or 504 by the error.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// A resource as read or written: leasehold's state and, with an upstream, its body there.
#[derive(Debug, Clone)]
pub struct Resource {
    pub state: ResourceState,
    pub upstream: Option<serde_json::Value>,
}

/// How a delete ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Gone (204).
    Done,
    /// The upstream's delete job was still running when leasehold stopped waiting (202).
    StillDeleting { job: String },
}

/// What an acquire did.
#[derive(Debug, Clone)]
pub enum Acquired {
    /// A new lease with a new fencing token (201).
    Granted(Lease),
    /// The same holder already held it: the same lease, extended (200).
    Renewed(Lease),
}

mod acquire;
mod background;
mod waitlist;

pub use acquire::AcquireRequest;
use waitlist::Waitlist;

pub struct Coordinator {
    store: Arc<dyn Store>,
    upstream: Option<Arc<dyn Upstream>>,
    rules: Rules,
    /// This process, for the queue of waiting acquires.
    instance: uuid::Uuid,
    waitlist: Waitlist,
    /// Whether this instance has announced itself (its waiters count only once it has).
    announced: std::sync::atomic::AtomicBool,
}

impl Coordinator {
    /// A coordinator over `store`, with the metadata of record in `upstream` when given
    /// (otherwise in the store itself: the local upstream).
    pub fn new(store: Arc<dyn Store>, upstream: Option<Arc<dyn Upstream>>, rules: Rules) -> Self {
        Self {
            store,
            upstream,
            rules,
            instance: uuid::Uuid::new_v4(),
            waitlist: Waitlist::default(),
            announced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The upstream, when metadata of record lives outside leasehold.
    pub fn upstream(&self) -> Option<&dyn Upstream> {
        self.upstream.as_deref()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// Extends an active lease to now + `ttl` (default: its own TTL).
    #[tracing::instrument(skip_all, fields(lease.id = %id))]
    pub async fn renew(
        &self,
        id: LeaseId,
        ttl: Option<Ttl>,
        caller: &Caller,
    ) -> Result<Lease, CoordinatorError> {
        let (mut tx, lease) = self.lock_lease(id, caller).await?;
        let ttl = ttl.unwrap_or_else(|| own_ttl(&lease));
        let renewed = tx.renew(&lease, ttl).await?;
        tx.commit().await?;
        Ok(renewed)
    }

    /// Ends an active lease at once as revoked (operators); its lock-delay starts.
    #[tracing::instrument(skip_all, fields(lease.id = %id))]
    pub async fn revoke(&self, id: LeaseId, caller: &Caller) -> Result<Lease, CoordinatorError> {
        let (mut tx, lease) = self.lock_lease(id, caller).await?;
        let revoked = tx.end(&lease, LeaseEnd::Revoked).await?;
        tx.commit().await?;
        tracing::info!(holder = %revoked.holder, token = revoked.fencing_token.0, "lease revoked");
        Ok(revoked)
    }

    /// Ends an active lease as released.
    #[tracing::instrument(skip_all, fields(lease.id = %id))]
    pub async fn release(&self, id: LeaseId, caller: &Caller) -> Result<Lease, CoordinatorError> {
        let (mut tx, lease) = self.lock_lease(id, caller).await?;
        let released = tx.end(&lease, LeaseEnd::Released).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Locks the lease's resource and returns the lease if it is still active and the
    /// caller may act on it (its principal, or an admin).
    async fn lock_lease(
        &self,
        id: LeaseId,
        caller: &Caller,
    ) -> Result<(Box<dyn ResourceTx>, Lease), CoordinatorError> {
        let (lease, _) = self
            .store
            .read_lease(id)
            .await?
            .ok_or(CoordinatorError::LeaseNotFound)?;
        if !caller.authz.may_act_for(lease.principal.as_deref()) {
            return Err(CoordinatorError::NotLeaseHolder);
        }
        let mut tx = self.store.lock_resource(lease.resource).await?;
        // Read again under the lock: the lease may have ended meanwhile (the lock recorded
        // its expiry if its time ran out).
        let lease = match tx.state().lease.clone().filter(|active| active.id == id) {
            // The active lease was read under the lock already.
            Some(active) => active,
            None => tx.lease(id).await?.ok_or(CoordinatorError::LeaseNotFound)?,
        };
        match lease.ended_at(tx.state().now) {
            Some((how, _)) => refuse(tx, CoordinatorError::LeaseEnded(how)).await,
            None => Ok((tx, lease)),
        }
    }

    /// Applies a metadata patch under the write rule; returns the resource after it (and the
    /// upstream's body of it, with an upstream).
    #[tracing::instrument(skip_all, fields(resource = %key, token = pre.fencing_token.map(|t| t.0)))]
    pub async fn patch_metadata(
        &self,
        key: ResourceKey,
        patch: &MetadataPatch,
        pre: &Preconditions,
        caller: &Caller,
    ) -> Result<Resource, CoordinatorError> {
        let mut tx = self.store.lock_resource(key).await?;
        let seen = match self.enter(&mut tx, pre, caller).await {
            Ok(seen) => seen,
            Err(err) => return refuse(tx, err).await,
        };
        let state = tx.state();
        let after = state.metadata.apply(patch);
        let Some(change) = state.metadata.change_to(&after) else {
            let state = tx.state().clone();
            tx.commit().await?;
            return Ok(Resource {
                state,
                upstream: seen.map(|s| s.body),
            });
        };
        let errors = state
            .metadata
            .limit_errors(patch, &after, self.rules.limits);
        if !errors.is_empty() {
            return refuse(tx, CoordinatorError::InvalidMetadata(errors)).await;
        }
        let actor = actor(state, caller);
        let upstream = match &self.upstream {
            None => {
                tx.write_metadata(after, &change, &actor, None).await?;
                None
            }
            Some(upstream) => {
                // Send only the keys that change; CC's answer is the truth afterwards.
                let written = match upstream
                    .patch_metadata(key, &change.as_patch(), caller)
                    .await
                {
                    Ok(written) => written,
                    Err(error) => return Err(self.upstream_failed(key, tx, error).await),
                };
                let change = tx
                    .state()
                    .metadata
                    .change_to(&written.metadata)
                    .unwrap_or(change);
                tx.write_metadata(written.metadata, &change, &actor, Some(written.digest))
                    .await?;
                Some(written.body)
            }
        };
        tracing::info!(version = tx.state().version, "metadata changed");
        let state = tx.state().clone();
        tx.commit().await?;
        Ok(Resource { state, upstream })
    }

    /// Deletes the resource under the write rule; its active lease ends as released.
    #[tracing::instrument(skip_all, fields(resource = %key, token = pre.fencing_token.map(|t| t.0)))]
    pub async fn delete_resource(
        &self,
        key: ResourceKey,
        pre: &Preconditions,
        caller: &Caller,
    ) -> Result<Deleted, CoordinatorError> {
        let mut tx = self.store.lock_resource(key).await?;
        if let Err(err) = self.enter(&mut tx, pre, caller).await {
            return refuse(tx, err).await;
        }
        let outcome = match &self.upstream {
            None => DeleteOutcome::Done,
            Some(upstream) => match upstream.delete(key, caller).await {
                Ok(outcome) => outcome,
                Err(error) => return Err(self.upstream_failed(key, tx, error).await),
            },
        };
        let (deleted, detail) = match &outcome {
            DeleteOutcome::Done => (Deleted::Done, None),
            DeleteOutcome::StillDeleting { job } => (
                Deleted::StillDeleting { job: job.clone() },
                Some(serde_json::json!({"state": "deleting", "job": job})),
            ),
        };
        let lease = tx.state().lease.clone();
        tx.delete(&actor(tx.state(), caller), detail).await?;
        if let Some(lease) = lease {
            tx.end(&lease, LeaseEnd::Released).await?;
        }
        tx.commit().await?;
        tracing::info!(?deleted, "resource deleted");
        Ok(deleted)
    }

    /// The write rule up to the change: steps 1–3, then (with an upstream) step 4 — re-read
    /// the resource upstream and record drift — then steps 5–7. Returns what the upstream has.
    async fn enter(
        &self,
        tx: &mut Box<dyn ResourceTx>,
        pre: &Preconditions,
        caller: &Caller,
    ) -> Result<Option<UpstreamResource>, CoordinatorError> {
        write_rule::check_access(current(tx.state()), pre).map_err(CoordinatorError::Refused)?;
        // The token is the active lease's: it must be presented by the lease's principal.
        if let (Some(_), Some(lease)) = (pre.fencing_token, &tx.state().lease)
            && !caller.authz.may_act_for(lease.principal.as_deref())
        {
            return Err(CoordinatorError::NotLeaseHolder);
        }
        let seen = match &self.upstream {
            None => None,
            Some(upstream) => {
                let seen = upstream.read(tx.state().key, caller).await?;
                if tx
                    .observe_upstream(seen.metadata.clone(), seen.digest.clone())
                    .await?
                {
                    tracing::info!(version = tx.state().version, "upstream drift recorded");
                }
                Some(seen)
            }
        };
        write_rule::check_conditions(current(tx.state()), pre, self.rules.require_preconditions)
            .map_err(CoordinatorError::Refused)?;
        Ok(seen)
    }

    /// After an upstream write failed: nothing of the critical section is kept (version,
    /// history and leases stay as they were), except, when the write may have landed, the
    /// mark that makes the next read name the resulting drift.
    async fn upstream_failed(
        &self,
        key: ResourceKey,
        tx: Box<dyn ResourceTx>,
        error: UpstreamError,
    ) -> CoordinatorError {
        drop(tx);
        if error.outcome_unknown() {
            tracing::warn!(%error, "upstream write outcome unknown; marking the resource uncertain");
            let marked = async {
                let mut tx = self.store.lock_resource(key).await?;
                tx.mark_upstream_uncertain().await?;
                tx.commit().await
            };
            if let Err(e) = marked.await {
                tracing::warn!(error = %e, "could not mark the resource uncertain; the next read re-reads it anyway");
            }
        }
        CoordinatorError::Upstream(error)
    }

    /// The resource as of now; 410 once deleted. With an upstream, the resource is read
    /// there, and a change made past leasehold is recorded as drift before answering.
    pub async fn resource(
        &self,
        key: ResourceKey,
        caller: &Caller,
    ) -> Result<Resource, CoordinatorError> {
        let state = self.store.read_resource(key).await?;
        if state.deleted {
            return Err(CoordinatorError::Refused(Refusal::Deleted));
        }
        let Some(upstream) = &self.upstream else {
            return Ok(Resource {
                state,
                upstream: None,
            });
        };
        let seen = upstream.read(key, caller).await?;
        if state.upstream_digest.as_deref() == Some(seen.digest.as_str())
            && !state.upstream_uncertain
        {
            return Ok(Resource {
                state,
                upstream: Some(seen.body),
            });
        }
        // It changed since leasehold last looked. Look again inside the critical section: the
        // first read may predate a write another instance has committed since, and recording
        // it would be false drift.
        let mut tx = self.store.lock_resource(key).await?;
        if tx.state().deleted {
            return refuse(tx, CoordinatorError::Refused(Refusal::Deleted)).await;
        }
        let seen = upstream.read(key, caller).await?;
        tx.observe_upstream(seen.metadata.clone(), seen.digest.clone())
            .await?;
        let state = tx.state().clone();
        tx.commit().await?;
        Ok(Resource {
            state,
            upstream: Some(seen.body),
        })
    }

    /// The resource's active lease, with the database's now.
    pub async fn active_lease(
        &self,
        key: ResourceKey,
    ) -> Result<(Lease, DateTime<Utc>), CoordinatorError> {
        let state = self.store.read_resource(key).await?;
        if state.deleted {
            return Err(CoordinatorError::Refused(Refusal::Deleted));
        }
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

    /// The operator listing; a caller who is not an admin sees only its own leases.
    pub async fn list_leases(
        &self,
        query: &LeaseQuery,
        caller: &Caller,
    ) -> Result<LeasePage, CoordinatorError> {
        let mut query = query.clone();
        if !caller.authz.admin && caller.authz.principal.is_some() {
            query.principal = caller.authz.principal.clone();
        }
        Ok(self.store.list_leases(&query).await?)
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

fn current(state: &ResourceState) -> Current<'_> {
    Current {
        deleted: state.deleted,
        version: state.version,
        metadata: &state.metadata,
        lease: state.lease.as_ref(),
        now: state.now,
    }
}

fn own_ttl(lease: &Lease) -> Ttl {
    Ttl::from_seconds(u64::from(lease.ttl_seconds)).unwrap_or(Ttl::DEFAULT)
}

/// The holder acting under the active lease, or else the caller's principal (nobody known
/// for an `If-Match`-only write without authentication).
fn actor(state: &ResourceState, caller: &Caller) -> Actor {
    match &state.lease {
        Some(lease) => Actor::holder_of(lease),
        None => Actor {
            name: caller.authz.principal.clone(),
            lease: None,
        },
    }
}

/// Ends a critical section that changes nothing the caller asked for, keeping what the lock
/// itself recorded (an expiry it noticed), and returns `err`.
async fn refuse<T>(tx: Box<dyn ResourceTx>, err: CoordinatorError) -> Result<T, CoordinatorError> {
    tx.commit().await?;
    Err(err)
}
