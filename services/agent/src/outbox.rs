//! The bounded queue of status events waiting for the scheduler.
//!
//! Drivers push every instance change here whether or not the stream is up; the session
//! drains it while connected. While disconnected it keeps the newest `capacity` events and
//! drops the oldest, counting them.

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
    time::SystemTime,
};

use persys_proto::scheduler::v1::WorkloadStatusEvent;
use tokio::sync::Notify;

/// A status event and when the agent observed it.
#[derive(Clone, Debug)]
pub struct Pending {
    /// When the change was observed.
    pub at: SystemTime,
    /// The event.
    pub event: WorkloadStatusEvent,
}

/// The queue (see the module docs).
#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    inner: Mutex<Inner>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Pending>,
    dropped: u64,
}

impl Outbox {
    /// Returns an empty queue holding at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::default(), notify: Notify::new() }
    }

    /// Queues an event, dropping the oldest one when full.
    pub fn push(&self, event: WorkloadStatusEvent) {
        let at = event
            .observed_at
            .and_then(|t| {
                SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(t.seconds as u64, t.nanos as u32))
            })
            .unwrap_or_else(SystemTime::now);
        {
            let mut inner = self.inner.lock().expect("outbox lock");
            if inner.queue.len() >= self.capacity {
                inner.queue.pop_front();
                inner.dropped += 1;
                if inner.dropped == 1 || inner.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = inner.dropped,
                        capacity = self.capacity,
                        "event buffer full; dropping the oldest events"
                    );
                }
            }
            inner.queue.push_back(Pending { at, event });
        }
        self.notify.notify_one();
    }

    /// Puts events that could not be sent back at the front, in order.
    pub fn requeue(&self, events: Vec<Pending>) {
        let mut inner = self.inner.lock().expect("outbox lock");
        for pending in events.into_iter().rev() {
            if inner.queue.len() >= self.capacity {
                inner.dropped += 1;
                continue;
            }
            inner.queue.push_front(pending);
        }
    }

    /// Takes every queued event, oldest first.
    pub fn drain(&self) -> Vec<Pending> {
        self.inner.lock().expect("outbox lock").queue.drain(..).collect()
    }

    /// Takes the queued events that a fresh inventory taken at `snapshot` does not already
    /// cover: events of instances absent from it (e.g. removed ones) and events observed after
    /// it. Returns them with the number of events dropped since the last call.
    pub fn drain_after(&self, snapshot: SystemTime, inventory: &HashSet<String>) -> (Vec<Pending>, u64) {
        let mut inner = self.inner.lock().expect("outbox lock");
        let dropped = std::mem::take(&mut inner.dropped);
        let kept = inner
            .queue
            .drain(..)
            .filter(|p| {
                let id = p.event.status.as_ref().map(|s| s.instance_id.as_str()).unwrap_or_default();
                p.at > snapshot || !inventory.contains(id)
            })
            .collect();
        (kept, dropped)
    }

    /// Completes when an event was pushed since the last wait.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Returns how many events are waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("outbox lock").queue.len()
    }

    /// Returns whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use persys_proto::scheduler::v1::InstanceStatus;

    use super::*;

    fn event(instance: &str, at: SystemTime) -> WorkloadStatusEvent {
        WorkloadStatusEvent {
            workload_id: "w".into(),
            status: Some(InstanceStatus { instance_id: instance.into(), ..Default::default() }),
            observed_at: Some(at.into()),
            removed: false,
            sequence: 0,
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts() {
        let outbox = Outbox::new(2);
        let t = SystemTime::now();
        for i in 0..5 {
            outbox.push(event(&format!("i{i}"), t));
        }
        let (kept, dropped) = outbox.drain_after(SystemTime::UNIX_EPOCH, &HashSet::new());
        let ids: Vec<_> = kept.iter().map(|p| p.event.status.as_ref().unwrap().instance_id.clone()).collect();
        assert_eq!(ids, ["i3", "i4"]);
        assert_eq!(dropped, 3);
        assert!(outbox.is_empty());
    }

    #[test]
    fn events_covered_by_a_newer_inventory_are_skipped() {
        let outbox = Outbox::new(10);
        let t0 = SystemTime::now();
        let snapshot = t0 + Duration::from_secs(1);
        outbox.push(event("listed-old", t0));
        outbox.push(event("removed", t0));
        outbox.push(event("listed-new", snapshot + Duration::from_secs(1)));
        let inventory: HashSet<String> = ["listed-old".to_owned(), "listed-new".to_owned()].into();
        let (kept, _) = outbox.drain_after(snapshot, &inventory);
        let ids: Vec<_> = kept.iter().map(|p| p.event.status.as_ref().unwrap().instance_id.clone()).collect();
        assert_eq!(ids, ["removed", "listed-new"]);
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiter_even_if_it_came_first() {
        let outbox = std::sync::Arc::new(Outbox::new(4));
        outbox.push(event("a", SystemTime::now()));
        tokio::time::timeout(Duration::from_secs(1), outbox.notified()).await.unwrap();
        assert_eq!(outbox.drain().len(), 1);
    }
}
