//! Acquiring a lease: at once, or waiting first come, first served. A waiter holds a place
//! in the resource's durable queue (so the order holds across instances) and sleeps until
//! woken — by the lease ending anywhere (PostgreSQL `NOTIFY`), by its queue changing, at the
//! exact expiry of the lease in its way, or by a bounded fallback poll — then checks again
//! inside the resource's critical section. It leaves the queue when it is served, when its
//! time is up, or when its client goes away (its request future is dropped).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::domain::lease::{Holder, LeaseEnd, LeaseId, Ttl};
use crate::domain::resource::ResourceKey;
use crate::domain::write_rule::Refusal;
use crate::store::{ResourceTx, Store, Waiter};

use super::{Acquired, Coordinator, CoordinatorError, own_ttl, refuse};

/// The first waiter of this process on a resource re-checks at least this often, in case
/// a wake-up was lost (e.g. while the `LISTEN` connection was being re-established).
const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// Instances announce themselves for this long; their waiters count only meanwhile.
pub(super) const INSTANCE_TTL: Duration = Duration::from_secs(10);

/// What an acquire asks for.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub holder: Holder,
    /// `None`: the default TTL for a new lease, the lease's own for a renewal.
    pub ttl: Option<Ttl>,
    /// How long to wait for a lease held by someone else (0: answer at once).
    pub wait: Duration,
    /// Lock-delay of the new lease after it expires or is revoked.
    pub lock_delay_seconds: u32,
    /// The authenticated principal asking (`None` without authentication).
    pub principal: Option<String>,
}

/// The outcome of one look at the resource inside its critical section.
enum Attempt {
    Acquired(Acquired),
    /// Not now: why, and when the obstacle goes away by itself (a lease's expiry, the end of
    /// a lock-delay), in the database's time.
    Busy {
        error: CoordinatorError,
        clears_at: Option<DateTime<Utc>>,
    },
}

impl Coordinator {
    /// Grants the lease (waiting up to `request.wait` for it), or renews it when the holder
    /// already holds it.
    #[tracing::instrument(skip_all, fields(resource = %key, holder = request.holder.as_str()))]
    pub async fn acquire(
        &self,
        key: ResourceKey,
        request: AcquireRequest,
    ) -> Result<Acquired, CoordinatorError> {
        if !request.wait.is_zero() {
            // Before taking the lock: announcing uses a connection of its own, and waiting
            // for one while holding the resource's lock could exhaust the pool.
            self.announce().await?;
        }
        let mut tx = self.store.lock_resource(key).await?;
        match self.attempt(&mut tx, &request, None).await {
            Ok(Attempt::Acquired(acquired)) => return self.deliver(tx, acquired).await,
            Ok(Attempt::Busy { error, .. }) if request.wait.is_zero() => {
                return refuse(tx, error).await;
            }
            Ok(Attempt::Busy { .. }) => {}
            Err(error) => return refuse(tx, error).await,
        }
        let deadline = Instant::now() + request.wait;
        let db_deadline =
            tx.state().now + chrono::Duration::from_std(request.wait).unwrap_or_default();
        let me = tx
            .enqueue(&request.holder, db_deadline, self.instance)
            .await?;
        tx.commit().await?;
        tracing::debug!(seq = me.seq, "waiting for the lease");
        let mut queued = QueueGuard::new(self.store.clone(), key, me);
        let place = self.waitlist.join(key, me.seq);
        let mut clears_at: Option<Instant> = None;
        loop {
            let wake_by = if place.is_first_here() {
                let poll = Instant::now() + FALLBACK_POLL;
                clears_at.map_or(poll, |at| at.min(poll)).min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                () = place.wake.notified() => {}
                () = tokio::time::sleep_until(wake_by) => {}
            }
            let mut tx = self.store.lock_resource(key).await?;
            let out_of_time = Instant::now() >= deadline;
            match self.attempt(&mut tx, &request, Some(me)).await {
                Ok(Attempt::Acquired(acquired)) => {
                    queued.served();
                    drop(place);
                    return self.deliver(tx, acquired).await;
                }
                Ok(Attempt::Busy { error, .. }) if out_of_time => {
                    tx.dequeue(me).await?;
                    tx.commit().await?;
                    queued.served();
                    return Err(error);
                }
                Ok(Attempt::Busy { clears_at: at, .. }) => {
                    let now = tx.state().now;
                    clears_at = at.map(|at| {
                        let wait = (at - now).to_std().unwrap_or_default();
                        // Just past the instant, so the lease has expired by then.
                        Instant::now() + wait + Duration::from_millis(2)
                    });
                    // Keeps what the lock itself recorded (an expiry it noticed).
                    tx.commit().await?;
                }
                Err(error) => {
                    tx.dequeue(me).await?;
                    tx.commit().await?;
                    queued.served();
                    return Err(error);
                }
            }
        }
    }

    /// One look inside the critical section: renew for the holder, grant when the lease is
    /// free and nobody is ahead in the queue (`me`: this acquire's place, if it has one).
    async fn attempt(
        &self,
        tx: &mut Box<dyn ResourceTx>,
        request: &AcquireRequest,
        me: Option<Waiter>,
    ) -> Result<Attempt, CoordinatorError> {
        let state = tx.state();
        if state.deleted {
            return Err(CoordinatorError::Refused(Refusal::Deleted));
        }
        let now = state.now;
        if let Some(lease) = state.lease.clone() {
            if lease.holder != request.holder.as_str() || lease.principal != request.principal {
                return Ok(Attempt::Busy {
                    clears_at: Some(lease.expires_at),
                    error: CoordinatorError::LeaseHeld {
                        retry_after: lease.retry_after(now),
                        holder: Some(lease.holder),
                        expires_at: Some(lease.expires_at),
                        waiting: None,
                    },
                });
            }
            if let Some(me) = me {
                tx.dequeue(me).await?;
            }
            let ttl = request.ttl.unwrap_or_else(|| own_ttl(&lease));
            let renewed = tx.renew(&lease, ttl).await?;
            return Ok(Attempt::Acquired(Acquired::Renewed(renewed)));
        }
        if let Some(until) = state.lock_delay_at_now() {
            let millis = (until - now).num_milliseconds().max(0) as u64;
            return Ok(Attempt::Busy {
                clears_at: Some(until),
                error: CoordinatorError::LockDelay {
                    until,
                    retry_after: millis.div_ceil(1000).max(1),
                },
            });
        }
        match (tx.queue_head().await?, me) {
            (Some(head), Some(me)) if head.first == me => tx.dequeue(me).await?,
            (Some(head), _) => {
                return Ok(Attempt::Busy {
                    clears_at: None,
                    error: CoordinatorError::LeaseHeld {
                        holder: None,
                        expires_at: None,
                        retry_after: 1,
                        waiting: Some(head.live),
                    },
                });
            }
            // Our place lapsed (deadline or instance), but nobody else waits: take it.
            (None, Some(me)) => tx.dequeue(me).await?,
            (None, None) => {}
        }
        let ttl = request.ttl.unwrap_or(Ttl::DEFAULT);
        let lease = tx
            .grant(
                &request.holder,
                request.principal.as_deref(),
                ttl,
                request.lock_delay_seconds,
            )
            .await?;
        Ok(Attempt::Acquired(Acquired::Granted(lease)))
    }

    /// Commits a grant or renewal. A grant whose request goes away before the commit has
    /// answered (the client closed its connection) is released at once, never left to block
    /// the resource until its TTL.
    async fn deliver(
        &self,
        tx: Box<dyn ResourceTx>,
        acquired: Acquired,
    ) -> Result<Acquired, CoordinatorError> {
        let mut unclaimed = match &acquired {
            Acquired::Granted(lease) => Some(UnclaimedGrant {
                store: self.store.clone(),
                lease: Some(lease.id),
            }),
            Acquired::Renewed(_) => None,
        };
        tx.commit().await?;
        if let Some(grant) = unclaimed.as_mut() {
            grant.lease = None;
        }
        match &acquired {
            Acquired::Granted(l) => {
                tracing::info!(lease.id = %l.id, token = l.fencing_token.0, "lease granted");
            }
            Acquired::Renewed(l) => {
                tracing::info!(lease.id = %l.id, token = l.fencing_token.0, "lease renewed by re-acquire");
            }
        }
        Ok(acquired)
    }

    /// Makes sure this instance is announced before its first waiter queues.
    async fn announce(&self) -> Result<(), CoordinatorError> {
        if !self.announced.load(Ordering::Acquire) {
            self.store.heartbeat(self.instance, INSTANCE_TTL).await?;
            self.announced.store(true, Ordering::Release);
        }
        Ok(())
    }
}

/// Leaves the queue if the waiting request goes away (its client disconnected).
struct QueueGuard {
    store: Arc<dyn Store>,
    key: ResourceKey,
    waiter: Option<Waiter>,
}

impl QueueGuard {
    fn new(store: Arc<dyn Store>, key: ResourceKey, waiter: Waiter) -> Self {
        Self {
            store,
            key,
            waiter: Some(waiter),
        }
    }

    /// The waiter left the queue itself.
    fn served(&mut self) {
        self.waiter = None;
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else {
            return;
        };
        let (store, key) = (self.store.clone(), self.key);
        tokio::spawn(async move {
            let left = async {
                let mut tx = store.lock_resource(key).await?;
                tx.dequeue(waiter).await?;
                tx.commit().await
            };
            match left.await {
                Ok(()) => {
                    tracing::info!(resource = %key, seq = waiter.seq, "a waiter went away; it left the queue")
                }
                Err(error) => {
                    tracing::warn!(resource = %key, %error, "a waiter went away; its place lapses at its deadline")
                }
            }
        });
    }
}

/// Releases a just-granted lease whose request went away before the grant was delivered.
struct UnclaimedGrant {
    store: Arc<dyn Store>,
    lease: Option<LeaseId>,
}

impl Drop for UnclaimedGrant {
    fn drop(&mut self) {
        let Some(id) = self.lease.take() else {
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            let release = async {
                let Some((lease, _)) = store.read_lease(id).await? else {
                    return Ok(());
                };
                let mut tx = store.lock_resource(lease.resource).await?;
                if let Some(lease) = tx.lease(id).await?
                    && lease.is_active_at(tx.state().now)
                {
                    tx.end(&lease, LeaseEnd::Released).await?;
                }
                tx.commit().await
            };
            match release.await {
                Ok(()) => {
                    tracing::info!(lease.id = %id, "released a grant nobody was there to receive")
                }
                Err(error) => {
                    tracing::warn!(lease.id = %id, %error, "could not release an undelivered grant; it expires by its TTL")
                }
            }
        });
    }
}
