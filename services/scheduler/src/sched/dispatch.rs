//! Commands to the agents connected here: what each stored workload needs
//! ([`crate::decide::restart::dispatch`]), sent once per instance, action and attempt; timers
//! for restarts waiting out their backoff; and the watch that dispatches every change.

use std::{collections::HashSet, sync::Arc, time::Duration, time::SystemTime};

use futures::StreamExt;
use persys_proto::scheduler::v1::{Workload, connect_response::Payload};

use super::{Scheduler, write};
use crate::{
    batch::needs_placement,
    decide::restart::{self, Step},
    kv::{Event, Kv, Revision},
    model::Keys,
};

impl<K: Kv> Scheduler<K> {
    /// Sends whatever a workload needs from the agents connected here: runs for instances not
    /// yet started, restarts that are due (and a timer for those that are not yet), stops when
    /// it should stop, removals when it is being deleted.
    ///
    /// Everything is read from the stored workload, so a replica that takes over a node's
    /// connection (after a failover or its own restart) picks up where the last one stopped:
    /// a restart waiting out its backoff is armed again, and one written but never sent (the
    /// instance left Starting, reason `Restarting`) is sent.
    pub async fn dispatch(&self, w: &Workload) {
        let plan = restart::dispatch(w, |node| self.agents.connected(node), SystemTime::now());
        for step in plan.steps {
            match step {
                Step::Send(c) => {
                    let c = *c;
                    self.send_once(&c.instance_id, c.action, c.attempt, &c.node_id, c.payload).await;
                }
                Step::Arm { instance_id, restart_count, wait } => {
                    self.arm_restart(&w.id, &instance_id, restart_count, wait);
                }
            }
        }
        if plan.delete {
            let _ = self.store.delete_workload(&w.id).await;
            self.forget_workload_dns(w).await;
        }
        for instance_id in plan.due {
            self.restart_due(&w.id, &instance_id).await;
        }
    }

    /// Sends `action` for attempt `attempt` of an instance to its node once: a command already
    /// sent (by [`Scheduler::dispatch`] or a call) is not sent again; one that could not be sent
    /// is forgotten, so the next dispatch tries again. Returns whether it was sent now.
    pub async fn send_once(&self, instance: &str, action: &str, attempt: i32, node: &str, payload: Payload) -> bool {
        let key = format!("{instance}/{action}/{attempt}");
        if !self.sent.lock().expect("sent lock").insert(key.clone()) {
            return false;
        }
        match self.agents.send(node, payload).await {
            Ok(_) => true,
            Err(error) => {
                self.sent.lock().expect("sent lock").remove(&key);
                tracing::debug!(%error, "dispatch deferred until the node reconnects");
                false
            }
        }
    }

    /// Wakes at a pending restart's time and dispatches the workload again; one timer per
    /// instance and attempt (`restart_count`) on this replica.
    fn arm_restart(&self, workload_id: &str, instance_id: &str, restart_count: i32, wait: Duration) {
        let key = format!("{instance_id}/restart-timer/{restart_count}");
        if !self.sent.lock().expect("sent lock").insert(key.clone()) {
            return;
        }
        let (me, id) = (self.me.clone(), workload_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            // A core that stopped meanwhile does nothing: the next one arms it again.
            let Some(me) = me.upgrade() else { return };
            me.sent.lock().expect("sent lock").remove(&key);
            match me.store.workload(&id).await {
                Ok(Some(w)) => me.dispatch(&w).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, workload = %id, "pending restart deferred to the next change"),
            }
        });
    }

    /// Restarts an ended instance whose restart is due: marks it Starting (reason
    /// [`RESTARTING`](crate::decide::RESTARTING); see [`restart::restart_due`]), taking its
    /// reservation back with a capacity check (without room it is evicted and placed again
    /// elsewhere), then sends the restart.
    async fn restart_due(&self, workload_id: &str, instance_id: &str) {
        let now = SystemTime::now();
        let updated =
            self.update_workload_evicting(workload_id, |w| write(w, restart::restart_due(w, instance_id, now))).await;
        match updated {
            // Sends the restart (once: the dispatch loop sees the same write).
            Ok(Some(u)) if u.evicted.is_empty() => Box::pin(self.dispatch(&u.workload)).await,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, instance = %instance_id, "restart failed"),
        }
    }

    /// Forgets what was sent for these instances, so they are dispatched again.
    pub fn forget_sent(&self, instances: &[String]) {
        let mut sent = self.sent.lock().expect("sent lock");
        sent.retain(|k| !instances.iter().any(|i| k.starts_with(&format!("{i}/"))));
    }

    /// Dispatches every stored workload, as after a (re)start of the workload watch, and
    /// forgets what was sent for workloads that no longer exist (deleted while the watch was
    /// down, so no delete event pruned them). Returns the revision the list was read at.
    pub async fn relist(&self) -> Result<Revision, crate::kv::KvError> {
        let (workloads, rev) = self.store.workloads().await?;
        let ids: HashSet<&str> = workloads.iter().map(|w| w.id.as_str()).collect();
        // Keys are `<instance id>/<action>/<n>`, instance ids `<workload id>-<suffix>`.
        self.sent.lock().expect("sent lock").retain(|k| {
            let instance = k.split('/').next().unwrap_or_default();
            instance.rsplit_once('-').is_some_and(|(workload, _)| ids.contains(workload))
        });
        for w in &workloads {
            self.dispatch(w).await;
        }
        Ok(rev)
    }

    /// How many sent commands this replica remembers (to see that the record stays bounded).
    pub fn sent_len(&self) -> usize {
        self.sent.lock().expect("sent lock").len()
    }

    /// Follows workload changes and dispatches them (every replica, for its own agents).
    pub async fn dispatch_loop(self: Arc<Self>, shutdown: persys_kit::shutdown::Shutdown) {
        loop {
            let result = async {
                let rev = self.relist().await?;
                let mut watch = self.store.kv().watch(&self.keys().workloads(), rev + 1).await?;
                while let Some(batch) = watch.next().await {
                    for event in batch? {
                        match event {
                            Event::Put(entry) => {
                                if let Some(w) = crate::model::decode_workload(&entry) {
                                    if needs_placement(&w) {
                                        self.kick.notify_one();
                                    }
                                    self.dispatch(&w).await;
                                }
                            }
                            // Instance ids start with their workload's id: forget what was sent
                            // for a deleted workload, so the record of sent commands stays bounded.
                            Event::Delete { key, .. } => {
                                let id = format!("{}-", Keys::id_of(&key));
                                self.sent.lock().expect("sent lock").retain(|k| !k.starts_with(&id));
                            }
                        }
                    }
                }
                Ok::<(), crate::kv::KvError>(())
            };
            tokio::select! {
                r = result => if let Err(error) = r { tracing::warn!(%error, "workload watch ended; restarting") },
                _ = shutdown.clone().wait() => return,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
