//! Node liveness (leader only): nodes whose lease expired become NotReady, then Down, and lose
//! their instances ([`crate::decide::liveness`]); with the DNS records that go with them.

use std::{collections::HashSet, sync::Arc, time::Duration, time::SystemTime};

use persys_kit::ApiError;
use persys_proto::scheduler::v1::Workload;

use super::{Scheduler, write};
use crate::{
    decide::{
        adopt,
        liveness::{self, Verdict},
    },
    kv::Kv,
    model::Keys,
};

impl<K: Kv> Scheduler<K> {
    /// Marks nodes whose liveness lease expired NotReady, and NotReady nodes past the grace
    /// period Down, rescheduling their instances (leader only). Every such write is fenced
    /// (`Scheduler::liveness_fence`): it lands only while this replica still leads and the
    /// node's liveness key is still absent, and it re-checks the node's record as stored, so a
    /// node whose agent came back in the meantime is left alone. A Down node that still holds
    /// live instances (a leader stopped half way) has them taken away again.
    pub async fn check_liveness(&self) -> Result<(), ApiError> {
        let (nodes, _) = self.store.nodes().await?;
        let (live, _) = self.store.kv().range(&self.keys().live_prefix()).await?;
        let alive: HashSet<&str> = live.iter().map(|e| Keys::id_of(&e.key)).collect();
        let (workloads, _) = self.store.workloads().await?;
        let (ttl, grace) = (self.settings.lease_ttl, self.settings.down_grace);
        let now = SystemTime::now();
        for (node_id, verdict) in liveness::check(&nodes, &alive, &workloads, ttl, grace, now) {
            let Some(fence) = self.liveness_fence(&node_id) else { return Ok(()) };
            let result = match verdict {
                Verdict::NotReady => {
                    tracing::warn!(node = %node_id, "liveness lease expired; node is NotReady");
                    self.store
                        .update_node_fenced(&node_id, &fence, |n| adopt(n, liveness::not_ready(n)))
                        .await
                        .map(|_| ())
                }
                Verdict::Down => {
                    let mut down = false;
                    let written = self
                        .store
                        .update_node_fenced(&node_id, &fence, |n| {
                            let next = liveness::down(n, ttl, grace, now);
                            down |= next.is_some();
                            adopt(n, next)
                        })
                        .await;
                    match written {
                        Ok(_) if down => {
                            tracing::warn!(node = %node_id, "node is Down; rescheduling its workloads");
                            self.on_node_lost(&node_id).await
                        }
                        other => other.map(|_| ()),
                    }
                }
                Verdict::Reclaim => {
                    tracing::warn!(node = %node_id, "a Down node still holds instances; rescheduling them");
                    self.on_node_lost(&node_id).await
                }
            };
            match result {
                Err(e) if crate::store::is_fenced(&e) => {
                    tracing::info!(node = %node_id, error = %e, "liveness decision dropped: leadership or liveness changed");
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Takes every live instance off a lost node: rescheduled unless its policy is Never, in
    /// which case it is Lost (see [`liveness::evacuate`]). Each write is fenced
    /// (`Scheduler::liveness_fence`); without leadership nothing is done.
    pub async fn on_node_lost(&self, node_id: &str) -> Result<(), ApiError> {
        let Some(fence) = self.liveness_fence(node_id) else { return Ok(()) };
        let (workloads, _) = self.store.workloads().await?;
        for w in workloads.iter().filter(|w| liveness::holds_live(w, node_id)) {
            self.store
                .update_workload_fenced(&w.id, &fence, |w| write(w, liveness::evacuate(w, node_id, SystemTime::now())))
                .await?;
        }
        // After the instances left the node, so a report racing this cannot bring one back.
        self.forget_node_dns(node_id, &workloads).await;
        self.kick.notify_one();
        Ok(())
    }

    /// Runs the liveness check every second while this replica leads.
    pub async fn liveness_loop(self: Arc<Self>, shutdown: persys_kit::shutdown::Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.clone().wait() => return,
            }
            if self.is_leader()
                && let Err(error) = self.check_liveness().await
            {
                tracing::warn!(%error, "liveness check failed");
            }
        }
    }

    /// Removes the DNS records of a node that is lost or deleted: its own and those of every
    /// instance placed on it (a returning node's agent writes its own record again).
    pub async fn forget_node_dns(&self, node_id: &str, workloads: &[Workload]) {
        let Some(zone) = &self.settings.dns_zone else { return };
        crate::dns::remove(self.store.kv().as_ref(), crate::dns::node_keys(zone, node_id, workloads)).await;
    }

    /// Removes the DNS records of every instance a deleted workload ever had, including those
    /// dropped from its status while their nodes were away.
    pub async fn forget_workload_dns(&self, w: &Workload) {
        let Some(zone) = &self.settings.dns_zone else { return };
        crate::dns::remove_prefix(self.store.kv().as_ref(), &crate::dns::workload_prefix(zone, &w.name, &w.id)).await;
    }
}
