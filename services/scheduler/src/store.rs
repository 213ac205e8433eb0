//! Typed access to nodes and workloads in the [`Kv`]: every write is a transaction guarded by
//! the revisions it read, retried on conflict — no blind read-modify-write.
//!
//! Node `available` resources are reservations: placement subtracts an instance's requests in
//! the same transaction that assigns it, and an instance that ends gives them back in the same
//! transaction that records its end, so a node is never overbooked even with several
//! schedulers writing at once. Each transaction writes a node once, with the sum of its
//! changes; an instance that takes a reservation back (restart, start, an ended instance
//! reported live) is checked against what the node has left, like placement; and `available`
//! is kept exact (never clamped), so `allocatable − Σ live reservations = available` holds
//! (see [`crate::testing`]).

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use persys_kit::ApiError;
use persys_proto::{
    common::v1::ResourceQuantities,
    scheduler::v1::{InstanceStatus, Node, NodeState, Workload, WorkloadPhase},
};
use prost::Message;

use crate::{
    kv::{Cmp, Kv, KvError, Op, Revision},
    model::{Keys, add, decode_node, decode_workload, derive_phase, is_terminal, now_ts, requests_of},
};

/// How often a guarded write is retried after losing a race.
const RETRIES: usize = 64;

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Unavailable(m) => {
                // The store's own words (addresses, gRPC transport errors) go to the log only.
                tracing::warn!(error = %m, "state store unavailable");
                ApiError::Unavailable("the state store is unavailable; retry shortly".into())
            }
            KvError::Compacted { requested, oldest } => ApiError::FailedPrecondition(format!(
                "revision {requested} is no longer available (oldest {oldest}); list again and watch from its revision"
            )),
            other => ApiError::internal(other),
        }
    }
}

/// What a closure decided about a record.
pub enum Change<T> {
    /// Write this.
    Write(T),
    /// Leave the record as it is.
    Keep,
}

/// Typed store over a [`Kv`].
pub struct Store<K> {
    kv: Arc<K>,
    keys: Keys,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Self { kv: self.kv.clone(), keys: self.keys.clone() }
    }
}

fn conflict(what: &str) -> ApiError {
    ApiError::Unavailable(format!("{what}: too many concurrent updates; retry"))
}

/// The error of a fenced write whose fence no longer holds (the key `key` changed): this
/// replica lost leadership, or the node it was about to give up on is live again.
pub fn fenced(key: &str) -> ApiError {
    ApiError::FailedPrecondition(format!("fenced write not made: {key} changed"))
}

/// Returns whether an error is [`fenced`]'s.
pub fn is_fenced(e: &ApiError) -> bool {
    matches!(e, ApiError::FailedPrecondition(m) if m.starts_with("fenced write not made"))
}

impl<K: Kv> Store<K> {
    /// Returns a store under `prefix`.
    pub fn new(kv: Arc<K>, prefix: &str) -> Self {
        Self { kv, keys: Keys::new(prefix) }
    }

    /// Returns the raw key-value store.
    pub fn kv(&self) -> &Arc<K> {
        &self.kv
    }

    /// Returns the key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Returns a node.
    pub async fn node(&self, id: &str) -> Result<Option<Node>, KvError> {
        Ok(self.kv.get(&self.keys.node(id)).await?.as_ref().and_then(decode_node))
    }

    /// Returns every node and the revision read at.
    pub async fn nodes(&self) -> Result<(Vec<Node>, Revision), KvError> {
        let (entries, rev) = self.kv.range(&self.keys.nodes()).await?;
        Ok((entries.iter().filter_map(decode_node).collect(), rev))
    }

    /// Returns a workload.
    pub async fn workload(&self, id: &str) -> Result<Option<Workload>, KvError> {
        Ok(self.kv.get(&self.keys.workload(id)).await?.as_ref().and_then(decode_workload))
    }

    /// Returns every workload and the revision read at.
    pub async fn workloads(&self) -> Result<(Vec<Workload>, Revision), KvError> {
        let (entries, rev) = self.kv.range(&self.keys.workloads()).await?;
        Ok((entries.iter().filter_map(decode_workload).collect(), rev))
    }

    /// Stores a new workload, once per `(owner, request_id)`: a retried create returns the
    /// workload the first attempt stored.
    pub async fn create_workload(&self, w: &Workload, request_id: &str) -> Result<Workload, ApiError> {
        let wkey = self.keys.workload(&w.id);
        let mut cmps = vec![Cmp::ModRevision(wkey.clone(), 0)];
        let mut ops = vec![Op::put(wkey, w.encode_to_vec())];
        let rkey = (!request_id.is_empty()).then(|| self.keys.request(&w.owner_id, request_id));
        if let Some(rkey) = &rkey {
            cmps.push(Cmp::ModRevision(rkey.clone(), 0));
            ops.push(Op::put(rkey, w.id.clone().into_bytes()));
        }
        let outcome = self.kv.txn(cmps, ops).await?;
        if outcome.succeeded {
            let mut stored = w.clone();
            stored.revision = outcome.revision;
            return Ok(stored);
        }
        if let Some(rkey) = rkey
            && let Some(existing) = self.kv.get(&rkey).await?
        {
            let id = String::from_utf8_lossy(&existing.value).into_owned();
            return self.workload(&id).await?.ok_or_else(|| {
                ApiError::FailedPrecondition(format!("request `{request_id}` created workload {id}, since deleted"))
            });
        }
        Err(ApiError::AlreadyExists(format!("workload `{}`", w.id)))
    }

    /// Applies `f` to a node with compare-and-set, retrying on conflict.
    pub async fn update_node(&self, id: &str, f: impl FnMut(&mut Node) -> bool) -> Result<Option<Node>, ApiError> {
        self.update_node_fenced(id, &[], f).await
    }

    /// Applies `f` to a node like [`Store::update_node`], in a transaction that also requires
    /// every comparison of `fence` to hold (e.g. the leader's election key unchanged, the
    /// node's liveness key absent); fails with [`fenced`] once one does not.
    pub async fn update_node_fenced(
        &self,
        id: &str,
        fence: &[Cmp],
        mut f: impl FnMut(&mut Node) -> bool,
    ) -> Result<Option<Node>, ApiError> {
        let key = self.keys.node(id);
        for _ in 0..RETRIES {
            let Some(entry) = self.kv.get(&key).await? else { return Ok(None) };
            let Some(mut node) = decode_node(&entry) else { return Ok(None) };
            if !f(&mut node) {
                return Ok(Some(node));
            }
            node.revision = 0;
            let mut cmps = vec![Cmp::ModRevision(key.clone(), entry.mod_revision)];
            cmps.extend_from_slice(fence);
            let outcome = self.kv.txn(cmps, vec![Op::put(&key, node.encode_to_vec())]).await?;
            if outcome.succeeded {
                node.revision = outcome.revision;
                return Ok(Some(node));
            }
            self.check_fence(fence).await?;
        }
        Err(conflict(&format!("node {id}")))
    }

    /// Returns [`fenced`] when a comparison of `fence` no longer holds.
    async fn check_fence(&self, fence: &[Cmp]) -> Result<(), ApiError> {
        for Cmp::ModRevision(key, revision) in fence {
            let now = self.kv.get(key).await?.map_or(0, |e| e.mod_revision);
            if now != *revision {
                return Err(fenced(key));
            }
        }
        Ok(())
    }

    /// Applies `f` to a workload with compare-and-set, keeping node reservations in step (see
    /// [`Store::update_workload_evicting`]); returns the workload as written.
    pub async fn update_workload(
        &self,
        id: &str,
        f: impl FnMut(&mut Workload) -> Change<()>,
    ) -> Result<Option<Workload>, ApiError> {
        let updated = self.update_workload_evicting(id, f).await?;
        if let Some(u) = &updated
            && !u.evicted.is_empty()
        {
            let ids: Vec<&str> = u.evicted.iter().map(|i| i.instance_id.as_str()).collect();
            tracing::warn!(workload = id, instances = ?ids, "instances evicted; their agents remove them on reconcile");
        }
        Ok(updated.map(|u| u.workload))
    }

    /// Applies `f` to a workload with compare-and-set, keeping node reservations in step: any
    /// instance that ends (or disappears) gives its requests back to its node, any instance that
    /// newly holds a node takes them, in the same transaction, with one write per node.
    ///
    /// Taking is checked: an instance that would take more than its node has left (a restart,
    /// a start after stop, an ended instance reported live again), or would land on a node
    /// that is Down or gone, is dropped from the workload instead (evicted, so placement puts a
    /// new one wherever it fits) and returned, for the caller to remove from its node.
    pub async fn update_workload_evicting(
        &self,
        id: &str,
        f: impl FnMut(&mut Workload) -> Change<()>,
    ) -> Result<Option<Updated>, ApiError> {
        self.update_workload_fenced(id, &[], f).await
    }

    /// [`Store::update_workload_evicting`] in a transaction that also requires every comparison
    /// of `fence` to hold; fails with [`fenced`] once one does not.
    pub async fn update_workload_fenced(
        &self,
        id: &str,
        fence: &[Cmp],
        mut f: impl FnMut(&mut Workload) -> Change<()>,
    ) -> Result<Option<Updated>, ApiError> {
        let key = self.keys.workload(id);
        for _ in 0..RETRIES {
            let Some(entry) = self.kv.get(&key).await? else { return Ok(None) };
            let Some(before) = decode_workload(&entry) else { return Ok(None) };
            let mut after = before.clone();
            if let Change::Keep = f(&mut after) {
                return Ok(Some(Updated { workload: before, evicted: Vec::new() }));
            }
            let requests = requests_of(&before);
            let mut cmps = vec![Cmp::ModRevision(key.clone(), entry.mod_revision)];
            cmps.extend_from_slice(fence);
            let mut ops = Vec::new();
            let mut evicted = Vec::new();
            for (node_id, taken) in reservation_deltas(&before, &after) {
                let nkey = self.keys.node(&node_id);
                let nentry = self.kv.get(&nkey).await?;
                let Some((nentry, mut node)) = nentry.and_then(|e| decode_node(&e).map(|n| (e, n))) else {
                    // Nothing to give back to; nothing may be taken from a node that is gone.
                    cmps.push(Cmp::ModRevision(nkey, 0));
                    if taken > 0 {
                        evicted.extend(evict(&before, &mut after, &node_id, taken as usize));
                    }
                    continue;
                };
                let avail = node.available.unwrap_or_default();
                let taken = if taken > 0 {
                    let fit = if node.state() == NodeState::Down { 0 } else { room(&avail, &requests, taken) };
                    evicted.extend(evict(&before, &mut after, &node_id, (taken - fit) as usize));
                    fit
                } else {
                    taken
                };
                cmps.push(Cmp::ModRevision(nkey.clone(), nentry.mod_revision));
                if taken == 0 {
                    continue;
                }
                node.available = Some(add(&avail, &requests, -taken));
                node.instance_count += taken as i32;
                node.revision = 0;
                ops.push(Op::put(nkey, node.encode_to_vec()));
            }
            for i in &evicted {
                crate::events::record_event(
                    &mut after,
                    persys_proto::common::v1::EventType::Warning,
                    "Evicted",
                    format!(
                        "instance {} does not fit on node {} any more; it is removed from there",
                        i.instance_id, i.node_id
                    ),
                );
            }
            settle_status(&mut after);
            after.revision = 0;
            ops.push(Op::put(&key, after.encode_to_vec()));
            let outcome = self.kv.txn(cmps, ops).await?;
            if outcome.succeeded {
                after.revision = outcome.revision;
                return Ok(Some(Updated { workload: after, evicted }));
            }
            self.check_fence(fence).await?;
        }
        Err(conflict(&format!("workload {id}")))
    }

    /// Deletes a workload record, giving back what its live instances reserved.
    pub async fn delete_workload(&self, id: &str) -> Result<bool, ApiError> {
        let key = self.keys.workload(id);
        for _ in 0..RETRIES {
            let Some(entry) = self.kv.get(&key).await? else { return Ok(false) };
            let Some(w) = decode_workload(&entry) else { return Ok(false) };
            let gone = Workload { status: None, ..w.clone() };
            let requests = requests_of(&w);
            let mut cmps = vec![Cmp::ModRevision(key.clone(), entry.mod_revision)];
            let mut ops = vec![Op::Delete(key.clone())];
            for (node_id, taken) in reservation_deltas(&w, &gone) {
                let nkey = self.keys.node(&node_id);
                let Some(nentry) = self.kv.get(&nkey).await? else { continue };
                let Some(mut node) = decode_node(&nentry) else { continue };
                node.available = Some(add(&node.available.unwrap_or_default(), &requests, -taken));
                node.instance_count += taken as i32;
                node.revision = 0;
                cmps.push(Cmp::ModRevision(nkey.clone(), nentry.mod_revision));
                ops.push(Op::put(nkey, node.encode_to_vec()));
            }
            if self.kv.txn(cmps, ops).await?.succeeded {
                return Ok(true);
            }
        }
        Err(conflict(&format!("workload {id}")))
    }

    /// Commits planned placements in one transaction guarded by every workload's and every
    /// touched node's revision as read; the nodes in `nodes_before` are written with the
    /// reservations of the plans applied. Returns the new revision, or `None` on a conflict.
    pub async fn commit_placements(
        &self,
        plans: &[crate::batch::Plan],
        nodes_before: &[Node],
    ) -> Result<Option<Revision>, KvError> {
        let mut cmps = Vec::with_capacity(plans.len() + nodes_before.len());
        let mut ops = Vec::with_capacity(plans.len() + nodes_before.len());
        let mut nodes: std::collections::HashMap<&str, Node> =
            nodes_before.iter().map(|n| (n.id.as_str(), n.clone())).collect();
        for n in nodes_before {
            cmps.push(Cmp::ModRevision(self.keys.node(&n.id), n.revision));
        }
        for plan in plans {
            let w = &plan.workload;
            cmps.push(Cmp::ModRevision(self.keys.workload(&w.id), w.revision));
            let requests = requests_of(w);
            for inst in w.status.iter().flat_map(|s| &s.instances).rev().take(plan.added) {
                if let Some(n) = nodes.get_mut(inst.node_id.as_str()) {
                    n.available = Some(add(&n.available.unwrap_or_default(), &requests, -1));
                    n.instance_count += 1;
                }
            }
            let mut stored = w.clone();
            stored.revision = 0;
            ops.push(Op::put(self.keys.workload(&w.id), stored.encode_to_vec()));
        }
        for (_, mut n) in nodes {
            n.revision = 0;
            ops.push(Op::put(self.keys.node(&n.id), n.encode_to_vec()));
        }
        let outcome = self.kv.txn(cmps, ops).await?;
        Ok(outcome.succeeded.then_some(outcome.revision))
    }
}

/// A workload as written, and the instances the write evicted (see
/// [`Store::update_workload_evicting`]).
#[derive(Clone, Debug)]
pub struct Updated {
    /// The workload as stored.
    pub workload: Workload,
    /// Instances dropped because their node had no room for them, each with its node.
    pub evicted: Vec<InstanceStatus>,
}

/// Recomputes the status fields that follow from the instances.
fn settle_status(w: &mut Workload) {
    let phase = derive_phase(w);
    if let Some(status) = w.status.as_mut() {
        status.node_id = status.instances.first().map(|i| i.node_id.clone()).unwrap_or_default();
        if status.phase != phase as i32 {
            status.last_transition_time = Some(now_ts());
        }
        status.phase = phase as i32;
        status.ready_replicas =
            status.instances.iter().filter(|i| i.phase == WorkloadPhase::Running as i32).count() as i32;
    }
    w.updated_at = Some(now_ts());
}

/// Returns how many of `wanted` instances asking `requests` each fit in `avail` (placement's
/// rule: what is left never goes below zero).
fn room(avail: &ResourceQuantities, requests: &ResourceQuantities, wanted: i64) -> i64 {
    let fits = |n: i64| {
        avail.cpu_millis - n * requests.cpu_millis >= 0
            && avail.memory_bytes - n * requests.memory_bytes >= 0
            && avail.disk_bytes - n * requests.disk_bytes >= 0
    };
    (0..=wanted).rev().find(|n| fits(*n)).unwrap_or(0)
}

/// Drops from `after` the last `count` instances that newly hold `node` (live there now, not
/// live there in `before`), and returns them.
fn evict(before: &Workload, after: &mut Workload, node: &str, count: usize) -> Vec<InstanceStatus> {
    if count == 0 {
        return Vec::new();
    }
    let was_live: HashSet<String> = live(before).into_iter().filter(|(_, n)| n == node).map(|(i, _)| i).collect();
    let Some(status) = after.status.as_mut() else { return Vec::new() };
    let newcomers: Vec<String> = status
        .instances
        .iter()
        .filter(|i| i.node_id == node && !is_terminal(i.phase) && !was_live.contains(&i.instance_id))
        .map(|i| i.instance_id.clone())
        .rev()
        .take(count)
        .collect();
    let (out, keep): (Vec<_>, Vec<_>) =
        std::mem::take(&mut status.instances).into_iter().partition(|i| newcomers.contains(&i.instance_id));
    status.instances = keep;
    out
}

/// Returns the live instances of a workload that hold a node, as `(instance, node)`.
fn live(w: &Workload) -> Vec<(String, String)> {
    w.status
        .iter()
        .flat_map(|s| &s.instances)
        .filter(|i| !i.node_id.is_empty() && !is_terminal(i.phase))
        .map(|i| (i.instance_id.clone(), i.node_id.clone()))
        .collect()
}

/// Returns, per node, how many more instances of the workload hold it going from `before` to
/// `after` (negative: how many give their reservations back); nodes with no net change are
/// left out. One entry per node, so a transaction writes each node key once.
fn reservation_deltas(before: &Workload, after: &Workload) -> BTreeMap<String, i64> {
    let (was, is) = (live(before), live(after));
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    for (inst, node) in &was {
        if !is.iter().any(|(i, n)| i == inst && n == node) {
            *deltas.entry(node.clone()).or_default() -= 1;
        }
    }
    for (inst, node) in &is {
        if !was.iter().any(|(i, n)| i == inst && n == node) {
            *deltas.entry(node.clone()).or_default() += 1;
        }
    }
    deltas.retain(|_, d| *d != 0);
    deltas
}
