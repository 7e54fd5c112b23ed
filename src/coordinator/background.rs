//! The coordinator's background work: waking local waiters on events from every instance,
//! announcing this instance, and sweeping expired leases into history.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::Coordinator;
use super::acquire::INSTANCE_TTL;

/// How often this instance renews its announcement (well within `INSTANCE_TTL`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How often the sweep looks for leases whose time ran out unnoticed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Expired leases recorded per sweep round at most.
const SWEEP_BATCH: u32 = 100;

const _: () = assert!(HEARTBEAT_EVERY.as_millis() * 3 <= INSTANCE_TTL.as_millis());

impl Coordinator {
    /// Starts the background tasks; abort the handles to stop them.
    pub fn start_background(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(self.clone().wake_waiters()),
            tokio::spawn(self.clone().heartbeat()),
            tokio::spawn(self.clone().sweep()),
        ]
    }

    /// Removes this instance and its waiters (at shutdown).
    pub async fn retire(&self) {
        if let Err(error) = self.store.forget_instance(self.instance).await {
            tracing::warn!(%error, "could not retire this instance; its waiters lapse by themselves");
        }
    }

    async fn wake_waiters(self: Arc<Self>) {
        let mut events = self.store.subscribe();
        loop {
            match events.recv().await {
                Ok(key) => self.waitlist.wake_first(&key),
                Err(RecvError::Lagged(_)) => self.waitlist.wake_all_first(),
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn heartbeat(self: Arc<Self>) {
        loop {
            match self.store.heartbeat(self.instance, INSTANCE_TTL).await {
                Ok(()) => self
                    .announced
                    .store(true, std::sync::atomic::Ordering::Release),
                Err(error) => tracing::debug!(%error, "heartbeat failed; retrying"),
            }
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    }

    /// Records every expired lease as `lease-expired` (the lock does it), so no listing or
    /// history lags behind. Several instances may sweep at once: the lock serialises them and
    /// the second finds nothing left to record.
    async fn sweep(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let overdue = match self.store.overdue_leases(SWEEP_BATCH).await {
                Ok(keys) => keys,
                Err(error) => {
                    tracing::debug!(%error, "sweep: cannot list expired leases");
                    continue;
                }
            };
            for key in overdue {
                let settled = async { self.store.lock_resource(key).await?.commit().await };
                if let Err(error) = settled.await {
                    tracing::debug!(resource = %key, %error, "sweep: could not record an expiry");
                }
            }
        }
    }
}
