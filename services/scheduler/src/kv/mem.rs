//! [`Kv`] in memory, with etcd's semantics: one revision counter, guarded transactions,
//! leases that expire and delete their keys, and watches that replay history.
//!
//! [`MemKv::open`] makes it durable: every change is committed to a journal file (redb,
//! fsync on commit) before it is applied in memory and shown to watchers, and the file is read
//! back at the next start. As etcd does after a restart, leases come back with their full TTL
//! (their holders have that long to return), and history before the restart is compacted: a
//! watch from an older revision gets [`KvError::Compacted`] and lists again.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    path::Path,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use redb::{ReadableTable, TableDefinition};

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
    /// The oldest revision whose events are in `history` when it is not full (the first
    /// revision after a restart; 1 for a new store).
    floor: Revision,
    journal: Option<Journal>,
}

/// Keys and their entries (mod revision, create revision, lease, value).
const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");
/// Leases and their TTL in milliseconds.
const LEASES: TableDefinition<i64, u64> = TableDefinition::new("leases");
/// `revision` and `next_lease`.
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// The durable store's file: one redb write transaction, committed with fsync, per change.
struct Journal {
    db: redb::Database,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

/// A change to write: the new revision, keys put or deleted, leases granted or dropped.
#[derive(Default)]
struct Change<'a> {
    revision: Option<Revision>,
    puts: Vec<&'a Entry>,
    deletes: Vec<&'a str>,
    granted: Option<(LeaseId, Duration)>,
    dropped: Vec<LeaseId>,
}

fn unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(format!("state file: {e}"))
}

fn encode(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + e.value.len());
    for n in [e.mod_revision, e.create_revision, e.lease] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&e.value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Option<Entry> {
    let n = |i: usize| raw.get(i * 8..i * 8 + 8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
    Some(Entry {
        key: key.to_owned(),
        mod_revision: n(0)?,
        create_revision: n(1)?,
        lease: n(2)?,
        value: raw.get(24..)?.to_vec(),
    })
}

impl Journal {
    /// Commits `change`; nothing of it is applied when this fails.
    fn write(&self, change: &Change<'_>) -> Result<(), KvError> {
        let tx = self.db.begin_write().map_err(unavailable)?;
        {
            let mut data = tx.open_table(DATA).map_err(unavailable)?;
            for e in &change.puts {
                data.insert(e.key.as_str(), encode(e).as_slice()).map_err(unavailable)?;
            }
            for key in &change.deletes {
                data.remove(*key).map_err(unavailable)?;
            }
            let mut leases = tx.open_table(LEASES).map_err(unavailable)?;
            let mut meta = tx.open_table(META).map_err(unavailable)?;
            if let Some((id, ttl)) = change.granted {
                leases.insert(id, ttl.as_millis() as u64).map_err(unavailable)?;
                meta.insert("next_lease", id).map_err(unavailable)?;
            }
            for id in &change.dropped {
                leases.remove(*id).map_err(unavailable)?;
            }
            if let Some(revision) = change.revision {
                meta.insert("revision", revision).map_err(unavailable)?;
            }
        }
        tx.commit().map_err(unavailable)
    }

    /// Reads the whole state back.
    fn load(&self) -> Result<State, KvError> {
        let tx = self.db.begin_write().map_err(unavailable)?;
        let mut state = State::default();
        {
            let meta = tx.open_table(META).map_err(unavailable)?;
            let get = |name: &str| meta.get(name).map(|v| v.map_or(0, |v| v.value()));
            state.revision = get("revision").map_err(unavailable)?;
            state.next_lease = get("next_lease").map_err(unavailable)?;
            let now = Instant::now();
            for row in tx.open_table(LEASES).map_err(unavailable)?.iter().map_err(unavailable)? {
                let (id, ttl) = row.map_err(unavailable)?;
                let ttl = Duration::from_millis(ttl.value());
                state.leases.insert(id.value(), Lease { ttl, deadline: now + ttl, keys: BTreeSet::new() });
            }
            for row in tx.open_table(DATA).map_err(unavailable)?.iter().map_err(unavailable)? {
                let (key, raw) = row.map_err(unavailable)?;
                let entry = decode(key.value(), raw.value())
                    .ok_or_else(|| unavailable(format!("the entry of {} is damaged", key.value())))?;
                if entry.lease != 0 {
                    match state.leases.get_mut(&entry.lease) {
                        Some(lease) => {
                            lease.keys.insert(entry.key.clone());
                        }
                        None => {
                            return Err(unavailable(format!(
                                "{} names lease {} it does not hold",
                                entry.key, entry.lease
                            )));
                        }
                    }
                }
                state.data.insert(entry.key.clone(), entry);
            }
        }
        // Creates the tables of a new file.
        tx.commit().map_err(unavailable)?;
        Ok(state)
    }
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

    /// Removes lease `id` and the keys attached to it (one revision when there are any),
    /// journaled first; returns the deletions.
    fn drop_lease(&mut self, id: LeaseId) -> Result<Vec<Event>, KvError> {
        let Some(lease) = self.leases.get(&id) else { return Ok(Vec::new()) };
        let revision = (!lease.keys.is_empty()).then_some(self.revision + 1);
        let keys: Vec<&str> = lease.keys.iter().map(String::as_str).collect();
        self.persist(&Change { revision, deletes: keys, dropped: vec![id], ..Change::default() })?;
        let lease = self.leases.remove(&id).expect("read above");
        let Some(revision) = revision else { return Ok(Vec::new()) };
        self.revision = revision;
        Ok(lease
            .keys
            .into_iter()
            .map(|key| {
                let prev = self.data.remove(&key).map(Box::new);
                Event::Delete { key, revision, prev }
            })
            .collect())
    }

    /// Writes `change` to the journal, when the store has one.
    fn persist(&self, change: &Change<'_>) -> Result<(), KvError> {
        self.journal.as_ref().map_or(Ok(()), |j| j.write(change))
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
        Self::with_state(State { floor: 1, ..State::default() })
    }

    /// The durable store in the file at `path` (created when missing), with what it held at
    /// its last commit; starts its lease reaper (needs a tokio runtime).
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let db = redb::Database::create(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let journal = Journal { db };
        let mut state = journal.load()?;
        state.floor = state.revision + 1;
        state.journal = Some(journal);
        Ok(Self::with_state(state))
    }

    fn with_state(state: State) -> Self {
        let (events, _) = broadcast::channel(4096);
        let kv = Self { state: Arc::new(Mutex::new(state)), events };
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
            match s.drop_lease(id) {
                Ok(events) => batch.extend(events),
                // The journal failed: the lease stays, and is tried again next tick.
                Err(e) => tracing::warn!(lease = id, error = %e, "could not expire a lease"),
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
        let revision = s.revision + 1;
        // The new entries first (keys are distinct: checked above), journaled, then applied.
        let puts: Vec<Entry> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, value, lease } => Some(Entry {
                    key: key.clone(),
                    value: value.clone(),
                    mod_revision: revision,
                    create_revision: s.data.get(key).map_or(revision, |e| e.create_revision),
                    lease: lease.unwrap_or(0),
                }),
                Op::Delete(_) => None,
            })
            .collect();
        let deletes: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Delete(key) if s.data.contains_key(key) => Some(key.as_str()),
                _ => None,
            })
            .collect();
        s.persist(&Change { revision: Some(revision), puts: puts.iter().collect(), deletes, ..Change::default() })?;
        s.revision = revision;
        let mut puts = puts.into_iter();
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, .. } => {
                    let entry = puts.next().expect("one entry per put");
                    s.detach(&key);
                    if entry.lease != 0 {
                        s.leases.get_mut(&entry.lease).expect("checked above").keys.insert(key.clone());
                    }
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
        let id = s.next_lease + 1;
        s.persist(&Change { granted: Some((id, ttl)), ..Change::default() })?;
        s.next_lease = id;
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
        let events = s.drop_lease(lease)?;
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
                // Full, the history has lost its oldest events; otherwise it holds every one
                // since `floor`.
                let oldest = if s.history.len() == HISTORY {
                    s.history.front().map_or(s.floor, Event::revision)
                } else {
                    s.floor
                };
                if from < oldest {
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
