//! [`Kv`] in memory, with etcd's semantics: one revision counter, guarded transactions,
//! leases that expire and delete their keys, and watches that replay history.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use tokio::{sync::broadcast, time::Instant};

use super::{Cmp, Entry, Event, Kv, KvError, LeaseId, Op, Revision, TxnOutcome, WatchStream};

/// How many events of history a watch can resume from.
const HISTORY: usize = 100_000;

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct State {
    revision: Revision,
    data: BTreeMap<String, Entry>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    history: VecDeque<Event>,
}

impl State {
    fn record(&mut self, events: &[Event]) {
        for e in events {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(e.clone());
        }
    }

    fn detach(&mut self, key: &str) {
        if let Some(old) = self.data.get(key)
            && old.lease != 0
            && let Some(lease) = self.leases.get_mut(&old.lease)
        {
            lease.keys.remove(key);
        }
    }
}

/// The embedded store.
#[derive(Clone, Debug)]
pub struct MemKv {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

impl MemKv {
    /// Returns an empty store and starts its lease reaper (needs a tokio runtime).
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        let kv = Self { state: Arc::default(), events };
        let weak = Arc::downgrade(&kv.state);
        let events = kv.events.clone();
        tokio::spawn(reap(weak, events));
        kv
    }

    fn publish(&self, events: Vec<Event>) {
        if !events.is_empty() {
            let _ = self.events.send(Arc::new(events));
        }
    }
}

impl Default for MemKv {
    fn default() -> Self {
        Self::new()
    }
}

async fn reap(state: Weak<Mutex<State>>, events: broadcast::Sender<Arc<Vec<Event>>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        let now = Instant::now();
        let mut s = state.lock().expect("kv lock");
        let expired: Vec<LeaseId> = s.leases.iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        let mut batch = Vec::new();
        for id in expired {
            let lease = s.leases.remove(&id).expect("listed above");
            if lease.keys.is_empty() {
                continue;
            }
            s.revision += 1;
            let revision = s.revision;
            for key in lease.keys {
                let prev = s.data.remove(&key).map(Box::new);
                batch.push(Event::Delete { key, revision, prev });
            }
        }
        s.record(&batch);
        drop(s);
        if !batch.is_empty() {
            let _ = events.send(Arc::new(batch));
        }
    }
}

impl Kv for MemKv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        Ok(self.state.lock().expect("kv lock").data.get(key).cloned())
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<Entry>, Revision), KvError> {
        let s = self.state.lock().expect("kv lock");
        let entries = s
            .data
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect();
        Ok((entries, s.revision))
    }

    async fn txn(&self, cmps: Vec<Cmp>, ops: Vec<Op>) -> Result<TxnOutcome, KvError> {
        super::check_txn(&cmps, &ops)?;
        let mut s = self.state.lock().expect("kv lock");
        let holds = cmps.iter().all(|c| match c {
            Cmp::ModRevision(key, rev) => s.data.get(key).map_or(0, |e| e.mod_revision) == *rev,
        });
        if !holds {
            return Ok(TxnOutcome { succeeded: false, revision: s.revision });
        }
        for op in &ops {
            if let Op::Put { lease: Some(l), .. } = op
                && !s.leases.contains_key(l)
            {
                return Err(KvError::LeaseNotFound(*l));
            }
        }
        // Like etcd, a transaction whose operations change nothing (none, or only deletions of
        // absent keys) keeps the revision: watchers resuming from it miss nothing.
        let changes = ops.iter().any(|op| match op {
            Op::Put { .. } => true,
            Op::Delete(key) => s.data.contains_key(key),
        });
        if !changes {
            return Ok(TxnOutcome { succeeded: true, revision: s.revision });
        }
        s.revision += 1;
        let revision = s.revision;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    s.detach(&key);
                    let create_revision = s.data.get(&key).map_or(revision, |e| e.create_revision);
                    let lease = lease.unwrap_or(0);
                    if lease != 0 {
                        s.leases.get_mut(&lease).expect("checked above").keys.insert(key.clone());
                    }
                    let entry = Entry { key: key.clone(), value, mod_revision: revision, create_revision, lease };
                    s.data.insert(key, entry.clone());
                    events.push(Event::Put(entry));
                }
                Op::Delete(key) => {
                    s.detach(&key);
                    if let Some(prev) = s.data.remove(&key) {
                        events.push(Event::Delete { key, revision, prev: Some(Box::new(prev)) });
                    }
                }
            }
        }
        s.record(&events);
        drop(s);
        self.publish(events);
        Ok(TxnOutcome { succeeded: true, revision })
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let mut s = self.state.lock().expect("kv lock");
        s.next_lease += 1;
        let id = s.next_lease;
        s.leases.insert(id, Lease { ttl, deadline: Instant::now() + ttl, keys: BTreeSet::new() });
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        let mut s = self.state.lock().expect("kv lock");
        let l = s.leases.get_mut(&lease).ok_or(KvError::LeaseNotFound(lease))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(())
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), KvError> {
        let mut s = self.state.lock().expect("kv lock");
        let Some(l) = s.leases.remove(&lease) else { return Ok(()) };
        if l.keys.is_empty() {
            return Ok(());
        }
        s.revision += 1;
        let revision = s.revision;
        let mut events = Vec::new();
        for key in l.keys {
            let prev = s.data.remove(&key).map(Box::new);
            events.push(Event::Delete { key, revision, prev });
        }
        s.record(&events);
        drop(s);
        self.publish(events);
        Ok(())
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, KvError> {
        let (replay, mut rx) = {
            let s = self.state.lock().expect("kv lock");
            // Subscribing under the lock means no event falls between replay and live.
            let rx = self.events.subscribe();
            let mut replay = Vec::new();
            if from > 0 && from <= s.revision {
                let oldest = s.history.front().map_or(s.revision + 1, Event::revision);
                if from < oldest && s.history.len() == HISTORY {
                    return Err(KvError::Compacted { requested: from, oldest });
                }
                replay =
                    s.history.iter().filter(|e| e.revision() >= from && e.key().starts_with(prefix)).cloned().collect();
            }
            (replay, rx)
        };
        let prefix = prefix.to_owned();
        let out = async_stream::stream! {
            if !replay.is_empty() {
                yield Ok(replay);
            }
            loop {
                match rx.recv().await {
                    Ok(batch) => {
                        let mine: Vec<Event> = batch.iter().filter(|e| e.key().starts_with(&prefix)).cloned().collect();
                        if !mine.is_empty() {
                            yield Ok(mine);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        yield Err(KvError::Unavailable(format!("watch fell {n} batches behind; list again")));
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        Ok(Box::pin(out))
    }
}
