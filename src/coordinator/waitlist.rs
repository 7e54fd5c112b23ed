//! This process's waiting acquires, per resource, in queue order. A wake-up for a resource
//! (its lease ended or its queue changed, on any instance) goes to the local waiter that is
//! first in line, so one release costs each instance one check, not one per waiter.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::domain::resource::ResourceKey;

#[derive(Default)]
pub struct Waitlist {
    waiting: Mutex<HashMap<ResourceKey, BTreeMap<u64, Arc<Notify>>>>,
}

/// A waiter's place in this process's list; leaving it wakes the next local waiter, which
/// takes over watching the resource.
pub struct Place<'a> {
    list: &'a Waitlist,
    key: ResourceKey,
    seq: u64,
    pub wake: Arc<Notify>,
}

impl Waitlist {
    fn lock(&self) -> MutexGuard<'_, HashMap<ResourceKey, BTreeMap<u64, Arc<Notify>>>> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for the waiter with queue position `seq`.
    pub fn join(&self, key: ResourceKey, seq: u64) -> Place<'_> {
        let wake = Arc::new(Notify::new());
        self.lock()
            .entry(key)
            .or_default()
            .insert(seq, wake.clone());
        Place {
            list: self,
            key,
            seq,
            wake,
        }
    }

    /// Wakes the first local waiter on `key`, if any.
    pub fn wake_first(&self, key: &ResourceKey) {
        if let Some(first) = self.lock().get(key).and_then(|q| q.values().next()) {
            first.notify_one();
        }
    }

    /// Wakes the first local waiter of every resource (after events may have been missed).
    pub fn wake_all_first(&self) {
        for queue in self.lock().values() {
            if let Some(first) = queue.values().next() {
                first.notify_one();
            }
        }
    }
}

impl Place<'_> {
    /// Whether this waiter is the first of this process on its resource (the one that
    /// watches the lease's expiry).
    pub fn is_first_here(&self) -> bool {
        self.list
            .lock()
            .get(&self.key)
            .and_then(|q| q.keys().next())
            .is_some_and(|first| *first == self.seq)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut waiting = self.list.lock();
        if let Some(queue) = waiting.get_mut(&self.key) {
            queue.remove(&self.seq);
            match queue.values().next() {
                Some(next) => next.notify_one(),
                None => {
                    waiting.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::resource::ResourceType;

    #[tokio::test]
    async fn wake_ups_go_to_the_first_local_waiter_and_pass_on_when_it_leaves() {
        let list = Waitlist::default();
        let key = ResourceKey {
            resource_type: ResourceType::Routes,
            guid: uuid::Uuid::new_v4(),
        };
        let second = list.join(key, 7);
        let first = list.join(key, 3);
        assert!(first.is_first_here() && !second.is_first_here());
        list.wake_first(&key);
        first.wake.notified().await;
        drop(first);
        assert!(second.is_first_here());
        second.wake.notified().await;
        drop(second);
        assert!(list.lock().is_empty());
    }
}
