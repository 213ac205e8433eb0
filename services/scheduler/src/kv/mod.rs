//! The scheduler's storage: a small key-value contract with revisions, transactions guarded
//! by revisions, leases and watches — what the scheduler needs of etcd, and nothing more.
//!
//! [`etcd::EtcdKv`] is the real backend; [`mem::MemKv`] is the embedded one for the all-in-one
//! stack and unit tests. One conformance suite (`tests/kv_conformance.rs`) runs against both.

pub mod etcd;
pub mod mem;

use std::{pin::Pin, time::Duration};

use futures::Stream;

/// Most compares, and most operations, one transaction may carry: etcd's default
/// `--max-txn-ops`, which the embedded store enforces too so that what works on it works on
/// etcd.
pub const MAX_TXN_OPS: usize = 128;

/// A store revision: every write bumps it; 0 means "absent" in comparisons.
pub type Revision = i64;
/// A lease id.
pub type LeaseId = i64;

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value (empty for deletions in watch events).
    pub value: Vec<u8>,
    /// Revision of the last change of this key.
    pub mod_revision: Revision,
    /// Revision at which the key was created (equal to `mod_revision` on creation).
    pub create_revision: Revision,
    /// The lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

/// A transaction guard.
#[derive(Clone, Debug)]
pub enum Cmp {
    /// The key's mod revision equals this (0: the key is absent).
    ModRevision(String, Revision),
}

/// A transaction operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// Writes a key, optionally attached to a lease.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Lease to attach, if any.
        lease: Option<LeaseId>,
    },
    /// Deletes a key.
    Delete(String),
}

impl Op {
    /// Returns a put without a lease.
    pub fn put(key: impl Into<String>, value: Vec<u8>) -> Self {
        Self::Put { key: key.into(), value, lease: None }
    }
}

/// What a transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every guard held and the operations were applied.
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: Revision,
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was written.
    Put(Entry),
    /// The key was deleted (or its lease expired) at `revision`.
    Delete {
        /// The key.
        key: String,
        /// Revision of the deletion.
        revision: Revision,
        /// The value the key held before, when the store still has it (watchers use it to
        /// decide who may learn of the deletion).
        prev: Option<Box<Entry>>,
    },
}

impl Event {
    /// Returns the revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            Self::Put(e) => e.mod_revision,
            Self::Delete { revision, .. } => *revision,
        }
    }

    /// Returns the key.
    pub fn key(&self) -> &str {
        match self {
            Self::Put(e) => &e.key,
            Self::Delete { key, .. } => key,
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store cannot be reached or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A watch asked for history that was compacted away; list again.
    #[error("revision {requested} is compacted (oldest available {oldest})")]
    Compacted {
        /// What was asked for.
        requested: Revision,
        /// The oldest revision still available.
        oldest: Revision,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// The request breaks a rule of the store (a key written twice in one transaction, more
    /// than [`MAX_TXN_OPS`] operations): a bug of the caller, never worth retrying as is.
    #[error("request refused by the store: {0}")]
    Refused(String),
}

/// A stream of watch batches.
/// Checks a transaction against the rules etcd enforces before applying anything.
pub fn check_txn(cmps: &[Cmp], ops: &[Op]) -> Result<(), KvError> {
    if cmps.len() > MAX_TXN_OPS || ops.len() > MAX_TXN_OPS {
        return Err(KvError::Refused(format!(
            "too many operations in txn request ({} compares, {} operations; at most {MAX_TXN_OPS} each)",
            cmps.len(),
            ops.len()
        )));
    }
    let mut puts = std::collections::HashSet::new();
    for op in ops {
        if let Op::Put { key, .. } = op
            && !puts.insert(key.as_str())
        {
            return Err(KvError::Refused(format!("duplicate key given in txn request: {key}")));
        }
    }
    // Deleting a key twice is allowed; deleting a key that is also put is not.
    for op in ops {
        if let Op::Delete(key) = op
            && puts.contains(key.as_str())
        {
            return Err(KvError::Refused(format!("duplicate key given in txn request: {key}")));
        }
    }
    Ok(())
}

/// A stream of watch batches.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Vec<Event>, KvError>> + Send>>;

/// What the scheduler needs of its store.
pub trait Kv: Send + Sync + 'static {
    /// Returns one key.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Entry>, KvError>> + Send;
    /// Returns every key under `prefix`, in key order, and the revision they were read at.
    fn range(&self, prefix: &str) -> impl Future<Output = Result<(Vec<Entry>, Revision), KvError>> + Send;
    /// Applies `ops` atomically when every guard in `cmps` holds. Refuses (as etcd does) more
    /// than [`MAX_TXN_OPS`] guards or operations, and a key put twice or both put and deleted;
    /// a transaction that changes nothing leaves the revision as it is.
    fn txn(&self, cmps: Vec<Cmp>, ops: Vec<Op>) -> impl Future<Output = Result<TxnOutcome, KvError>> + Send;
    /// Grants a lease that expires `ttl` after its last keep-alive.
    fn grant(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId, KvError>> + Send;
    /// Renews a lease; `LeaseNotFound` once it has expired.
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<(), KvError>> + Send;
    /// Revokes a lease, deleting its keys.
    fn revoke(&self, lease: LeaseId) -> impl Future<Output = Result<(), KvError>> + Send;
    /// Stops keeping a lease alive from here without revoking it (it expires its TTL after the
    /// last keep-alive), and frees what [`Kv::keep_alive`] holds for it (on etcd, a keep-alive
    /// stream).
    fn release(&self, lease: LeaseId) {
        let _ = lease;
    }
    /// Streams changes under `prefix` from `from` (inclusive; 0 for "from now").
    fn watch(&self, prefix: &str, from: Revision) -> impl Future<Output = Result<WatchStream, KvError>> + Send;
}
