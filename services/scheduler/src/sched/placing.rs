//! Placement of pending instances: planned in batches against one snapshot of the nodes
//! ([`crate::batch`]), each batch committed in one guarded transaction.

use std::{sync::Arc, time::Duration};

use persys_kit::ApiError;
use persys_proto::{
    common::v1::EventType as PbEventType,
    scheduler::v1::{Node, Workload},
};

use super::Scheduler;
use crate::{
    batch::{Batch, Snapshot, needs_placement},
    events::record_event,
    kv::{Kv, MAX_TXN_OPS},
    store::Change,
};

impl<K: Kv> Scheduler<K> {
    /// Places every instance that waits for a node; returns how many were placed.
    ///
    /// Placements are planned against one snapshot and committed in batches: each batch is one
    /// transaction guarded by the revisions of every workload and node it touches, so it lands
    /// whole or not at all, and it never carries more than [`MAX_TXN_OPS`] guards or writes
    /// (one per workload and one per node), however widely its replicas spread. A batch that
    /// loses a race is planned again from fresh reads.
    pub async fn place_pending(&self) -> Result<usize, ApiError> {
        let mut placed = 0;
        for _ in 0..8 {
            let (nodes, _) = self.store.nodes().await?;
            let (workloads, _) = self.store.workloads().await?;
            let mut snapshot = Snapshot::new(nodes);
            let pending: Vec<Workload> = workloads.into_iter().filter(needs_placement).collect();
            tracing::debug!(pending = pending.len(), "placement pass");
            if pending.is_empty() {
                return Ok(placed);
            }
            let (mut conflicted, mut more) = (false, false);
            let mut batch = Batch::default();
            for w in &pending {
                if batch.ops() + 2 > MAX_TXN_OPS {
                    match self.commit(&mut batch, &mut snapshot).await? {
                        Some(count) => placed += count,
                        None => {
                            conflicted = true;
                            break;
                        }
                    }
                }
                // One write for this workload; the rest of the budget for nodes not yet touched.
                let new_nodes = MAX_TXN_OPS - batch.ops() - 1;
                match snapshot.plan(w, self.settings.strategy, &mut batch.touched, new_nodes) {
                    Ok(Some(plan)) => {
                        // Held back by the budget: the rest is placed in the next pass.
                        more |= plan.partial;
                        batch.plans.push(plan);
                    }
                    Ok(None) => {}
                    Err((id, reason)) => self.mark_unplaceable(&id, reason).await?,
                }
            }
            if !conflicted {
                match self.commit(&mut batch, &mut snapshot).await? {
                    Some(count) => placed += count,
                    None => conflicted = true,
                }
            }
            if !conflicted && !more {
                return Ok(placed);
            }
        }
        Ok(placed)
    }

    /// Commits a batch and empties it; returns how many instances it placed, or `None` when it
    /// lost a race.
    async fn commit(&self, batch: &mut Batch, snapshot: &mut Snapshot) -> Result<Option<usize>, ApiError> {
        let batch = std::mem::take(batch);
        if batch.plans.is_empty() {
            return Ok(Some(0));
        }
        let count: usize = batch.plans.iter().map(|p| p.added).sum();
        let nodes: Vec<Node> = batch.touched.values().cloned().collect();
        match self.store.commit_placements(&batch.plans, &nodes).await? {
            Some(revision) => {
                snapshot.committed(batch.touched.keys(), revision);
                for p in &batch.plans {
                    tracing::debug!(workload = %p.workload.id, instances = p.added, "instances placed");
                }
                Ok(Some(count))
            }
            None => {
                tracing::debug!("placement batch lost a race; planning again");
                Ok(None)
            }
        }
    }

    async fn mark_unplaceable(&self, id: &str, message: String) -> Result<(), ApiError> {
        tracing::debug!(workload = id, %message, "unplaceable");
        self.store
            .update_workload(id, |w| {
                let status = w.status.get_or_insert_with(Default::default);
                if status.reason == "Unschedulable" && status.message == message {
                    return Change::Keep;
                }
                status.reason = "Unschedulable".into();
                status.message = message.clone();
                record_event(w, PbEventType::Warning, "Unschedulable", message.clone());
                Change::Write(())
            })
            .await?;
        Ok(())
    }

    /// Runs placement whenever kicked, and every few seconds, while this replica leads.
    pub async fn placement_loop(self: Arc<Self>, shutdown: persys_kit::shutdown::Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.kick.notified() => {}
                _ = shutdown.clone().wait() => return,
            }
            if !self.is_leader() {
                continue;
            }
            if let Err(error) = self.place_pending().await {
                tracing::warn!(%error, "placement pass failed");
            }
        }
    }
}
