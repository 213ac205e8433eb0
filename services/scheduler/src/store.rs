//! Typed access to nodes and workloads in the [`Kv`]: every write is a transaction guarded by
//! the revisions it read, retried on conflict — no blind read-modify-write.
//!
//! Node `available` resources are reservations: placement subtracts an instance's requests in
//! the same transaction that assigns it, and an instance that ends gives them back in the same
//! transaction that records its end, so a node is never overbooked even with several
//! schedulers writing at once.

use std::sync::Arc;

use persys_kit::ApiError;
use persys_proto::scheduler::v1::{Node, Workload};
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
            KvError::Unavailable(m) => ApiError::Unavailable(format!("state store: {m}")),
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
    pub async fn update_node(&self, id: &str, mut f: impl FnMut(&mut Node) -> bool) -> Result<Option<Node>, ApiError> {
        let key = self.keys.node(id);
        for _ in 0..RETRIES {
            let Some(entry) = self.kv.get(&key).await? else { return Ok(None) };
            let Some(mut node) = decode_node(&entry) else { return Ok(None) };
            if !f(&mut node) {
                return Ok(Some(node));
            }
            node.revision = 0;
            let outcome = self
                .kv
                .txn(vec![Cmp::ModRevision(key.clone(), entry.mod_revision)], vec![Op::put(&key, node.encode_to_vec())])
                .await?;
            if outcome.succeeded {
                node.revision = outcome.revision;
                return Ok(Some(node));
            }
        }
        Err(conflict(&format!("node {id}")))
    }

    /// Applies `f` to a workload with compare-and-set, keeping node reservations in step: any
    /// instance that ends (or disappears) gives its requests back to its node, any instance that
    /// newly appears on a node takes them, in the same transaction.
    pub async fn update_workload(
        &self,
        id: &str,
        mut f: impl FnMut(&mut Workload) -> Change<()>,
    ) -> Result<Option<Workload>, ApiError> {
        let key = self.keys.workload(id);
        for _ in 0..RETRIES {
            let Some(entry) = self.kv.get(&key).await? else { return Ok(None) };
            let Some(before) = decode_workload(&entry) else { return Ok(None) };
            let mut after = before.clone();
            if let Change::Keep = f(&mut after) {
                return Ok(Some(before));
            }
            let phase = derive_phase(&after);
            if let Some(status) = after.status.as_mut() {
                status.node_id = status.instances.first().map(|i| i.node_id.clone()).unwrap_or_default();
                if status.phase != phase as i32 {
                    status.last_transition_time = Some(now_ts());
                }
                status.phase = phase as i32;
                status.ready_replicas = status
                    .instances
                    .iter()
                    .filter(|i| i.phase == persys_proto::scheduler::v1::WorkloadPhase::Running as i32)
                    .count() as i32;
            }
            after.updated_at = Some(now_ts());
            let deltas = reservation_deltas(&before, &after);
            let mut cmps = vec![Cmp::ModRevision(key.clone(), entry.mod_revision)];
            let mut ops = Vec::new();
            for (node_id, sign) in deltas {
                let nkey = self.keys.node(&node_id);
                let Some(nentry) = self.kv.get(&nkey).await? else { continue };
                let Some(mut node) = decode_node(&nentry) else { continue };
                let avail = node.available.unwrap_or_default();
                node.available = Some(add(&avail, &requests_of(&before), sign));
                node.instance_count = (node.instance_count + if sign > 0 { -1 } else { 1 }).max(0);
                node.revision = 0;
                cmps.push(Cmp::ModRevision(nkey.clone(), nentry.mod_revision));
                ops.push(Op::put(nkey, node.encode_to_vec()));
            }
            after.revision = 0;
            ops.push(Op::put(&key, after.encode_to_vec()));
            let outcome = self.kv.txn(cmps, ops).await?;
            if outcome.succeeded {
                after.revision = outcome.revision;
                return Ok(Some(after));
            }
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
            let mut cmps = vec![Cmp::ModRevision(key.clone(), entry.mod_revision)];
            let mut ops = vec![Op::Delete(key.clone())];
            for (node_id, sign) in reservation_deltas(&w, &gone) {
                let nkey = self.keys.node(&node_id);
                let Some(nentry) = self.kv.get(&nkey).await? else { continue };
                let Some(mut node) = decode_node(&nentry) else { continue };
                node.available = Some(add(&node.available.unwrap_or_default(), &requests_of(&w), sign));
                node.instance_count = (node.instance_count - 1).max(0);
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
        plans: &[crate::sched::Plan],
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

/// Returns, per node, whether reservations are given back (+1) or taken (-1) going from
/// `before` to `after`: live instances that ended or vanished give back, new live ones take.
fn reservation_deltas(before: &Workload, after: &Workload) -> Vec<(String, i64)> {
    let live = |w: &Workload| -> Vec<(String, String)> {
        w.status
            .as_ref()
            .map(|s| {
                s.instances
                    .iter()
                    .filter(|i| !i.node_id.is_empty() && !is_terminal(i.phase))
                    .map(|i| (i.instance_id.clone(), i.node_id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (was, is) = (live(before), live(after));
    let mut deltas = Vec::new();
    for (inst, node) in &was {
        if !is.iter().any(|(i, n)| i == inst && n == node) {
            deltas.push((node.clone(), 1));
        }
    }
    for (inst, node) in &is {
        if !was.iter().any(|(i, n)| i == inst && n == node) {
            deltas.push((node.clone(), -1));
        }
    }
    deltas
}
