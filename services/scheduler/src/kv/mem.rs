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
struct Change {
    revision: Option<Revision>,
    puts: Vec<Entry>,
    deletes: Vec<String>,
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
    fn write(&self, change: &Change) -> Result<(), KvError> {
        let tx = self.db.begin_write().map_err(unavailable)?;
        {
            let mut data = tx.open_table(DATA).map_err(unavailable)?;
            for e in &change.puts {
                data.insert(e.key.as_str(), encode(e).as_slice()).map_err(unavailable)?;
            }
            for key in &change.deletes {
                data.remove(key.as_str()).map_err(unavailable)?;
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
    /// Keeps `events` for watches resuming from a revision, and sends them to the live ones;
    /// both under the state's lock, so a watch starting meanwhile gets each event once.
    fn record(&mut self, events: Vec<Event>, live: &broadcast::Sender<Arc<Vec<Event>>>) {
        if events.is_empty() {
            return;
        }
        for e in &events {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(e.clone());
        }
        let _ = live.send(Arc::new(events));
    }

    /// What dropping lease `id` changes: the lease, and its keys at a new revision when it has
    /// any; `None` when there is no such lease.
    fn plan_drop(&self, id: LeaseId) -> Option<Change> {
        let lease = self.leases.get(&id)?;
        let revision = (!lease.keys.is_empty()).then_some(self.revision + 1);
        Some(Change { revision, deletes: lease.keys.iter().cloned().collect(), dropped: vec![id], ..Change::default() })
    }

    /// Applies a journaled [`State::plan_drop`]: removes the lease and its keys; returns the
    /// deletions.
    fn apply_drop(&mut self, id: LeaseId, revision: Option<Revision>) -> Vec<Event> {
        let Some(lease) = self.leases.remove(&id) else { return Vec::new() };
        let Some(revision) = revision else { return Vec::new() };
        self.revision = revision;
        lease
            .keys
            .into_iter()
            .map(|key| {
                let prev = self.data.remove(&key).map(Box::new);
                Event::Delete { key, revision, prev }
            })
            .collect()
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

/// The store's state and how changes reach it.
#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Serialises changes: each is planned under the state's lock, written to the journal
    /// without holding it (the fsync runs on a blocking thread, never on the async workers),
    /// then applied. Reads go on meanwhile and see the state before the change.
    writer: tokio::sync::Mutex<()>,
    journal: Option<Arc<Journal>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("kv lock")
    }

    /// Commits `change` to the journal, when the store has one, and hands it back; nothing
    /// of it is applied when this fails.
    async fn persist(&self, change: Change) -> Result<Change, KvError> {
        let Some(journal) = self.journal.clone() else { return Ok(change) };
        tokio::task::spawn_blocking(move || journal.write(&change).map(|()| change))
            .await
            .map_err(|e| unavailable(format!("journal writer: {e}")))?
    }

    /// Drops lease `id` and its keys (one journaled change); holds the writer.
    async fn drop_lease(&self, id: LeaseId) -> Result<(), KvError> {
        let Some(change) = self.lock().plan_drop(id) else { return Ok(()) };
        let revision = change.revision;
        self.persist(change).await?;
        let mut s = self.lock();
        let events = s.apply_drop(id, revision);
        s.record(events, &self.events);
        Ok(())
    }
}

/// The embedded store.
#[derive(Clone, Debug)]
pub struct MemKv {
    inner: Arc<Inner>,
}

impl MemKv {
    /// Returns an empty store and starts its lease reaper (needs a tokio runtime).
    pub fn new() -> Self {
        Self::with_state(State { floor: 1, ..State::default() }, None)
    }

    /// The durable store in the file at `path` (created when missing), with what it held at
    /// its last commit; starts its lease reaper (needs a tokio runtime).
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let db = redb::Database::create(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let journal = Journal { db };
        let mut state = journal.load()?;
        state.floor = state.revision + 1;
        Ok(Self::with_state(state, Some(Arc::new(journal))))
    }

    fn with_state(state: State, journal: Option<Arc<Journal>>) -> Self {
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner { state: Mutex::new(state), writer: tokio::sync::Mutex::new(()), journal, events });
        tokio::spawn(reap(Arc::downgrade(&inner)));
        Self { inner }
    }
}

impl Default for MemKv {
    fn default() -> Self {
        Self::new()
    }
}

async fn reap(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<LeaseId> =
            inner.lock().leases.iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        if expired.is_empty() {
            continue;
        }
        let _writer = inner.writer.lock().await;
        for id in expired {
            // Kept alive since it was seen expired: it stays.
            if inner.lock().leases.get(&id).is_none_or(|l| l.deadline > Instant::now()) {
                continue;
            }
            if let Err(e) = inner.drop_lease(id).await {
                // The journal failed: the lease stays, and is tried again next tick.
                tracing::warn!(lease = id, error = %e, "could not expire a lease");
            }
        }
    }
}

impl Kv for MemKv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        Ok(self.inner.lock().data.get(key).cloned())
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<Entry>, Revision), KvError> {
        let s = self.inner.lock();
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
        let _writer = self.inner.writer.lock().await;
        // Planned under the lock; nothing changes the state until this change is applied, as
        // every change holds the writer.
        let change = {
            let s = self.inner.lock();
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
            // Like etcd, a transaction whose operations change nothing (none, or only
            // deletions of absent keys) keeps the revision: watchers resuming from it miss
            // nothing.
            let changes = ops.iter().any(|op| match op {
                Op::Put { .. } => true,
                Op::Delete(key) => s.data.contains_key(key),
            });
            if !changes {
                return Ok(TxnOutcome { succeeded: true, revision: s.revision });
            }
            let revision = s.revision + 1;
            // The new entries (keys are distinct: checked above), journaled, then applied.
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
            let deletes: Vec<String> = ops
                .iter()
                .filter_map(|op| match op {
                    Op::Delete(key) if s.data.contains_key(key) => Some(key.clone()),
                    _ => None,
                })
                .collect();
            Change { revision: Some(revision), puts, deletes, ..Change::default() }
        };
        let change = self.inner.persist(change).await?;
        let revision = change.revision.expect("a change with keys has a revision");
        let mut s = self.inner.lock();
        s.revision = revision;
        let mut puts = change.puts.into_iter();
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
        s.record(events, &self.inner.events);
        Ok(TxnOutcome { succeeded: true, revision })
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let _writer = self.inner.writer.lock().await;
        let id = self.inner.lock().next_lease + 1;
        self.inner.persist(Change { granted: Some((id, ttl)), ..Change::default() }).await?;
        let mut s = self.inner.lock();
        s.next_lease = id;
        s.leases.insert(id, Lease { ttl, deadline: Instant::now() + ttl, keys: BTreeSet::new() });
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        let mut s = self.inner.lock();
        let l = s.leases.get_mut(&lease).ok_or(KvError::LeaseNotFound(lease))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(())
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), KvError> {
        let _writer = self.inner.writer.lock().await;
        self.inner.drop_lease(lease).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, KvError> {
        let (replay, mut rx) = {
            let s = self.inner.lock();
            // Subscribing under the lock, under which events are recorded and sent, means no
            // event falls between replay and live, nor comes in both.
            let rx = self.inner.events.subscribe();
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
