//! The scheduler's core: placement of pending instances, reaction to agents' reports,
//! restarts with backoff, node liveness and rescheduling after node loss, and dispatch of
//! commands to the agents connected to this replica.
//!
//! Each reaction reads the records it needs, asks [`crate::decide`] what to do, and applies
//! the plan in guarded transactions: placement in `placing`, agents' reports and node
//! reconciliation in `reports`, commands and restarts in `dispatch`, node liveness in
//! `liveness`.

mod dispatch;
mod liveness;
mod placing;
mod reports;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use persys_kit::{ApiError, pki::Ca};
use persys_proto::scheduler::v1::{InstanceStatus, RemoveInstance, Workload, connect_response::Payload};
use tokio::sync::{Notify, watch};

use crate::{
    agents::Agents,
    config::Strategy,
    kv::{Cmp, Kv, Revision},
    model::Keys,
    store::{Change, Store},
};
pub use crate::{
    batch::Plan,
    decide::{RESTARTING, status::report_sequence},
    events::record_event,
};

/// Timing and policy knobs of the core.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Heartbeat interval told to agents.
    pub heartbeat: Duration,
    /// Liveness lease TTL.
    pub lease_ttl: Duration,
    /// How long a NotReady node may stay before it is Down.
    pub down_grace: Duration,
    /// Placement strategy.
    pub strategy: Strategy,
    /// Lifetime of node certificates.
    pub node_cert_ttl: Duration,
    /// Zone of the CoreDNS records, `None` for none.
    pub dns_zone: Option<String>,
}

impl Default for Settings {
    /// Returns the flags' defaults, without DNS records.
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(15),
            down_grace: Duration::from_secs(60),
            strategy: Strategy::Binpack,
            node_cert_ttl: Duration::from_secs(24 * 3600),
            dns_zone: None,
        }
    }
}

/// The shared state of one scheduler replica.
pub struct Scheduler<K> {
    /// Nodes and workloads.
    pub store: Store<K>,
    /// Streams of the agents connected here.
    pub agents: Arc<Agents>,
    /// Knobs.
    pub settings: Settings,
    /// The cluster CA, to sign node certificates.
    pub ca: Arc<Ca>,
    /// The term this replica leads in (its election key's revision), while it leads (runs
    /// placement and the liveness monitor).
    pub leader: watch::Receiver<Option<Revision>>,
    /// Wakes the placement loop.
    pub kick: Notify,
    /// Commands already sent for an instance (`instance/action`), so watch events and
    /// reconnects do not repeat them.
    sent: Mutex<HashSet<String>>,
    /// Itself, for the timers of pending restarts (which must not keep a stopped core alive).
    me: std::sync::Weak<Self>,
}

impl<K: Kv> Scheduler<K> {
    /// Returns the core.
    pub fn new(
        store: Store<K>,
        settings: Settings,
        ca: Arc<Ca>,
        leader: watch::Receiver<Option<Revision>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            store,
            agents: Arc::new(Agents::default()),
            settings,
            ca,
            leader,
            kick: Notify::new(),
            sent: Mutex::new(HashSet::new()),
            me: me.clone(),
        })
    }

    /// Returns the key layout.
    pub fn keys(&self) -> &Keys {
        self.store.keys()
    }

    fn is_leader(&self) -> bool {
        self.leader.borrow().is_some()
    }

    /// Returns the guard of a write only the leader may make: the election key still at the
    /// revision this replica won it with. `None` when this replica does not lead.
    pub fn leader_fence(&self) -> Option<Cmp> {
        let term = (*self.leader.borrow())?;
        Some(Cmp::ModRevision(self.keys().leader(), term))
    }

    /// Returns the guards of a liveness decision about `node_id` (NotReady, Down, taking its
    /// instances away): made by the current leader, while the node's liveness key is absent.
    fn liveness_fence(&self, node_id: &str) -> Option<[Cmp; 2]> {
        Some([self.leader_fence()?, Cmp::ModRevision(self.keys().live(node_id), 0)])
    }

    /// Applies `f` to a workload like [`Store::update_workload_evicting`], and tells the agents
    /// connected here to remove the instances it evicted.
    pub async fn update_workload_evicting(
        &self,
        id: &str,
        f: impl FnMut(&mut Workload) -> Change<()>,
    ) -> Result<Option<crate::store::Updated>, ApiError> {
        let updated = self.store.update_workload_evicting(id, f).await?;
        if let Some(u) = &updated
            && !u.evicted.is_empty()
        {
            remove_evicted(&self.agents, &u.evicted).await;
            self.kick.notify_one();
        }
        Ok(updated)
    }

    /// Applies `f` to a workload like [`Store::update_workload`], and tells the agents connected
    /// here to remove the instances it evicted; returns the workload as written.
    pub async fn update_workload(
        &self,
        id: &str,
        f: impl FnMut(&mut Workload) -> Change<()>,
    ) -> Result<Option<Workload>, ApiError> {
        Ok(self.update_workload_evicting(id, f).await?.map(|u| u.workload))
    }
}

/// Returns the change a store closure makes for a decision's new record (`None`: keep it).
fn write<T>(slot: &mut T, next: Option<T>) -> Change<()> {
    if crate::decide::adopt(slot, next) { Change::Write(()) } else { Change::Keep }
}

/// Tells the agents connected here to remove evicted instances (an agent connected elsewhere,
/// or not at all, removes them when it next reconciles, as they are no longer wanted).
async fn remove_evicted(agents: &Agents, evicted: &[InstanceStatus]) {
    for i in evicted {
        tracing::warn!(instance = %i.instance_id, node = %i.node_id, "instance evicted: its node has no room for it");
        let remove = Payload::Remove(RemoveInstance {
            instance_id: i.instance_id.clone(),
            grace_period: None,
            remove_volumes: true,
        });
        if let Err(error) = agents.send(&i.node_id, remove).await {
            tracing::debug!(%error, "removal of an evicted instance deferred until its node reconciles");
        }
    }
}
