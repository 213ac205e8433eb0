//! The scheduler's core: placement of pending instances, reaction to agents' reports,
//! restarts with backoff, node liveness and rescheduling after node loss, and dispatch of
//! commands to the agents connected to this replica.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use persys_kit::{ApiError, pki::Ca};
use persys_proto::{
    common::v1::{Event as PbEvent, EventType as PbEventType},
    scheduler::v1::{
        DesiredState, InstanceStatus, Node, NodeState, RemoveInstance, RestartInstance, RunInstance, StopInstance,
        Workload, WorkloadPhase, WorkloadStatusEvent, connect_response::Payload,
    },
};
use tokio::sync::{Notify, watch};

use crate::{
    agents::Agents,
    config::Strategy,
    kv::{Cmp, Event, Kv, MAX_TXN_OPS, Revision},
    model::{Keys, is_terminal, ms_ts, now_ms, now_ts, requests_of, restart_backoff, ts_ms, wants_restart},
    placement,
    store::{Change, Store},
};

/// Reason of an instance whose restart is written and sent, until its agent reports on it.
pub const RESTARTING: &str = "Restarting";

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

/// Returns a phase as people write it: `Running`, `Succeeded`.
fn phase_title(phase: i32) -> String {
    let name = WorkloadPhase::try_from(phase).map(|p| p.as_str_name()).unwrap_or("WORKLOAD_PHASE_UNKNOWN");
    let word = name.trim_start_matches("WORKLOAD_PHASE_").to_ascii_lowercase();
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// Events kept per workload.
const MAX_EVENTS: usize = 50;

/// Appends an event to a workload's history, folding repeats.
pub fn record_event(w: &mut Workload, kind: PbEventType, reason: &str, message: String) {
    if let Some(last) = w.events.last_mut()
        && last.reason == reason
        && last.message == message
    {
        last.count += 1;
        last.time = Some(now_ts());
        return;
    }
    w.events.push(PbEvent {
        id: uuid::Uuid::now_v7().to_string(),
        time: Some(now_ts()),
        r#type: kind as i32,
        reason: reason.to_owned(),
        message,
        source: "scheduler".into(),
        count: 1,
        first_time: Some(now_ts()),
    });
    if w.events.len() > MAX_EVENTS {
        let excess = w.events.len() - MAX_EVENTS;
        w.events.drain(..excess);
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

    /// Records an agent's report about one of its instances, enforcing that a node only
    /// reports for instances assigned to it and that a report older than the last one recorded
    /// for the instance (see [`report_sequence`]) changes nothing. When an instance ends under
    /// a restart policy, the time of its restart (now plus the backoff) is stored with it
    /// (`restart_at`) and the restart armed (see [`Scheduler::dispatch`]).
    pub async fn on_status(&self, node_id: &str, event: WorkloadStatusEvent) -> Result<(), ApiError> {
        let Some(report) = event.status else { return Ok(()) };
        let sequence = report_sequence(event.sequence, event.observed_at.as_ref());
        let mut restart = false;
        let mut outcome = Outcome::Unknown;
        let updated = self
            .update_workload_evicting(&event.workload_id, |w| {
                outcome = Outcome::Unknown;
                restart = false;
                let desired = w.desired_state();
                let policy = w.spec.as_ref().map_or(0, |s| s.restart_policy);
                let max_restarts = w.spec.as_ref().map_or(0, |s| s.max_restarts);
                let Some(status) = w.status.as_mut() else { return Change::Keep };
                let Some(inst) = status.instances.iter_mut().find(|i| i.instance_id == report.instance_id) else {
                    return Change::Keep;
                };
                if inst.node_id != node_id {
                    tracing::warn!(node = node_id, owner = %inst.node_id, instance = %report.instance_id, "report for another node's instance ignored");
                    outcome = Outcome::Ignored;
                    return Change::Keep;
                }
                if sequence != 0 && sequence <= inst.report_sequence {
                    tracing::debug!(node = node_id, instance = %report.instance_id, sequence, last = inst.report_sequence, "stale report ignored");
                    outcome = Outcome::Ignored;
                    return Change::Keep;
                }
                outcome = Outcome::Applied;
                if event.removed {
                    status.instances.retain(|i| i.instance_id != report.instance_id);
                    return Change::Write(());
                }
                let was_terminal = is_terminal(inst.phase);
                let restart_count = inst.restart_count;
                let pending = inst.restart_at.take();
                *inst = InstanceStatus {
                    instance_id: inst.instance_id.clone(),
                    replica_index: inst.replica_index,
                    node_id: inst.node_id.clone(),
                    restart_count: restart_count.max(report.restart_count),
                    report_sequence: sequence.max(inst.report_sequence),
                    restart_at: None,
                    removing: inst.removing,
                    ..report.clone()
                };
                let now_terminal = is_terminal(inst.phase);
                if inst.removing {
                    // On its way out (drain): it is not restarted.
                } else if now_terminal && was_terminal {
                    // Another report of the same end: the restart already pending stays.
                    inst.restart_at = pending;
                } else if now_terminal && desired == DesiredState::Running {
                    let exit = inst.exit_code;
                    if wants_restart(policy, exit) && (max_restarts == 0 || inst.restart_count < max_restarts) {
                        let delay = restart_backoff(inst.restart_count);
                        inst.restart_at = Some(ms_ts(now_ms() + delay.as_millis() as i64));
                        tracing::info!(instance = %inst.instance_id, ?delay, "restarting after backoff");
                        restart = true;
                    }
                }
                let phase_name = phase_title(report.phase);
                let message = match report.exit_code {
                    Some(code) => format!("instance {} is {phase_name} (exit {code})", report.instance_id),
                    None => format!("instance {} is {phase_name}", report.instance_id),
                };
                let reason = if report.reason.is_empty() { phase_name.clone() } else { report.reason.clone() };
                record_event(w, PbEventType::Normal, &reason, message);
                Change::Write(())
            })
            .await?;
        // A report that an ended instance lives again, on a node with no room left for it,
        // evicts it (see `Store::update_workload_evicting`): it is not running as far as the
        // cluster is concerned.
        let evicted = updated.as_ref().is_some_and(|u| u.evicted.iter().any(|i| i.instance_id == report.instance_id));
        let updated = updated.map(|u| u.workload);
        // A record is written only for an instance this node really runs, from a report that
        // was recorded; one for an instance the workload no longer has is removed.
        if let (Some(zone), Some(w)) = (&self.settings.dns_zone, &updated)
            && outcome != Outcome::Ignored
        {
            let key = crate::dns::instance_key(zone, &w.name, &report.instance_id);
            let running = outcome == Outcome::Applied
                && report.phase == WorkloadPhase::Running as i32
                && !event.removed
                && !evicted;
            let address = if running {
                self.store.node(node_id).await.ok().flatten().and_then(|n| n.addresses.first().cloned())
            } else {
                None
            };
            crate::dns::set(self.store.kv().as_ref(), key, address.as_deref()).await;
        }
        // The restart is armed here too (not only by the dispatch loop's watch), so it does
        // not wait for the watch.
        if let (true, Some(w)) = (restart, &updated) {
            self.dispatch(w).await;
        }
        Ok(())
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

    /// Shows an image pull's progress in the message of the instance it is for.
    pub async fn on_pull_progress(
        &self,
        node_id: &str,
        p: &persys_proto::scheduler::v1::ImagePullProgress,
    ) -> Result<(), ApiError> {
        // Instance ids are `<workload id>-<suffix>` (see `Snapshot::plan`).
        let Some((workload_id, _)) = p.instance_id.rsplit_once('-') else { return Ok(()) };
        let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
        let message = if p.done {
            format!("pulled {}", p.image)
        } else if p.total_bytes > 0 {
            format!("pulling {}: {:.1} of {:.1} MiB", p.image, mib(p.current_bytes), mib(p.total_bytes))
        } else {
            format!("pulling {}: {}", p.image, p.status)
        };
        self.store
            .update_workload(workload_id, |w| {
                match w.status.as_mut().and_then(|s| s.instances.iter_mut().find(|i| i.instance_id == p.instance_id)) {
                    Some(i) if i.node_id == node_id && i.message != message && !is_terminal(i.phase) => {
                        i.reason = "PullingImage".into();
                        i.message = message.clone();
                        Change::Write(())
                    }
                    _ => Change::Keep,
                }
            })
            .await?;
        Ok(())
    }

    /// Sends whatever a workload needs from the agents connected here: runs for instances not
    /// yet started, restarts that are due (and a timer for those that are not yet), stops when
    /// it should stop, removals when it is being deleted.
    ///
    /// Everything is read from the stored workload, so a replica that takes over a node's
    /// connection (after a failover or its own restart) picks up where the last one stopped:
    /// a restart waiting out its backoff is armed again, and one written but never sent (the
    /// instance left Starting, reason `Restarting`) is sent.
    pub async fn dispatch(&self, w: &Workload) {
        let desired = w.desired_state();
        let Some(status) = &w.status else { return };
        let mut due = Vec::new();
        for inst in &status.instances {
            if !self.agents.connected(&inst.node_id) {
                continue;
            }
            if let (DesiredState::Running, Some(at)) = (desired, &inst.restart_at)
                && is_terminal(inst.phase)
            {
                let wait = ts_ms(at) - now_ms();
                if wait <= 0 {
                    due.push(inst.instance_id.clone());
                } else {
                    self.arm_restart(&w.id, inst, Duration::from_millis(wait as u64));
                }
                continue;
            }
            let phase = WorkloadPhase::try_from(inst.phase).unwrap_or(WorkloadPhase::Pending);
            let (action, payload) = match desired {
                _ if inst.removing || desired == DesiredState::Deleted => (
                    "remove",
                    Payload::Remove(RemoveInstance {
                        instance_id: inst.instance_id.clone(),
                        grace_period: w.spec.as_ref().and_then(|s| s.stop_timeout),
                        remove_volumes: true,
                    }),
                ),
                DesiredState::Running if phase == WorkloadPhase::Scheduled => (
                    "run",
                    Payload::Run(RunInstance {
                        workload_id: w.id.clone(),
                        instance_id: inst.instance_id.clone(),
                        replica_index: inst.replica_index,
                        workload_name: w.name.clone(),
                        spec: w.spec.clone(),
                        owner_role: w.owner_role,
                        owner_id: w.owner_id.clone(),
                    }),
                ),
                DesiredState::Running if phase == WorkloadPhase::Starting && inst.reason == RESTARTING => (
                    "restart",
                    Payload::Restart(RestartInstance {
                        instance_id: inst.instance_id.clone(),
                        grace_period: w.spec.as_ref().and_then(|s| s.stop_timeout),
                    }),
                ),
                DesiredState::Stopped if !is_terminal(inst.phase) => (
                    "stop",
                    Payload::Stop(StopInstance {
                        instance_id: inst.instance_id.clone(),
                        grace_period: w.spec.as_ref().and_then(|s| s.stop_timeout),
                    }),
                ),
                _ => continue,
            };
            let attempt = w.spec.as_ref().map_or(0, |_| inst.restart_count);
            self.send_once(&inst.instance_id, action, attempt, &inst.node_id, payload).await;
        }
        if desired == DesiredState::Deleted && status.instances.is_empty() {
            let _ = self.store.delete_workload(&w.id).await;
            self.forget_workload_dns(w).await;
        }
        for instance_id in due {
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
    /// instance and attempt on this replica.
    fn arm_restart(&self, workload_id: &str, inst: &InstanceStatus, wait: Duration) {
        let key = format!("{}/restart-timer/{}", inst.instance_id, inst.restart_count);
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
    /// [`RESTARTING`]), taking its reservation back with a capacity check (without room it is
    /// evicted and placed again elsewhere), then sends the restart.
    async fn restart_due(&self, workload_id: &str, instance_id: &str) {
        let now = now_ms();
        let updated = self
            .update_workload_evicting(workload_id, |w| {
                if w.desired_state() != DesiredState::Running {
                    return Change::Keep;
                }
                let Some(i) = w.status.as_mut().and_then(|s| {
                    s.instances.iter_mut().find(|i| {
                        i.instance_id == instance_id
                            && is_terminal(i.phase)
                            && i.restart_at.as_ref().is_some_and(|at| ts_ms(at) <= now)
                    })
                }) else {
                    return Change::Keep;
                };
                i.restart_count += 1;
                i.restart_at = None;
                i.phase = WorkloadPhase::Starting as i32;
                i.reason = RESTARTING.into();
                if let Some(s) = w.status.as_mut() {
                    s.restart_count += 1;
                }
                record_event(w, PbEventType::Normal, RESTARTING, format!("instance {instance_id} restarts"));
                Change::Write(())
            })
            .await;
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

    /// Reconciles a node that just connected: instances it should run but does not are run
    /// again, instances it runs but should not are removed, and its reports are recorded.
    /// With `confirm`, returns only once the agent has answered every removal (or `timeout`
    /// passed): a node back from Down must have stopped what moved elsewhere before it takes
    /// work again. Returns how many removals were not confirmed.
    pub async fn reconcile_node(
        &self,
        node_id: &str,
        reported: Vec<WorkloadStatusEvent>,
        confirm: Option<Duration>,
    ) -> Result<usize, ApiError> {
        let mut calls = Vec::new();
        let (workloads, _) = self.store.workloads().await?;
        let mut wanted: HashMap<String, (&Workload, &InstanceStatus)> = HashMap::new();
        for w in &workloads {
            for i in w.status.iter().flat_map(|s| &s.instances) {
                if i.node_id == node_id {
                    wanted.insert(i.instance_id.clone(), (w, i));
                }
            }
        }
        let mut has = HashSet::new();
        for report in reported {
            let Some(status) = &report.status else { continue };
            let id = status.instance_id.clone();
            has.insert(id.clone());
            match wanted.get(&id) {
                Some((w, _)) if w.desired_state() != DesiredState::Deleted => {
                    self.on_status(node_id, report).await?;
                }
                _ => {
                    tracing::info!(node = node_id, instance = %id, "removing an instance the cluster no longer wants");
                    let remove =
                        Payload::Remove(RemoveInstance { instance_id: id, grace_period: None, remove_volumes: true });
                    if confirm.is_some() {
                        if let Ok(call) = self.agents.call(node_id, remove).await {
                            calls.push(call);
                        }
                    } else {
                        let _ = self.agents.send(node_id, remove).await;
                    }
                }
            }
        }
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(id, (w, i))| {
                !has.contains(*id)
                    && (i.removing
                        || w.desired_state() == DesiredState::Deleted
                        || (w.desired_state() == DesiredState::Running && !is_terminal(i.phase)))
            })
            .map(|(id, _)| id.clone())
            .collect();
        self.forget_sent(&missing);
        for id in missing {
            let (w, _) = wanted[&id];
            // The agent lost it (machine restarted, container removed by hand): run it again.
            self.store
                .update_workload(&w.id, |w| {
                    let deleted = w.desired_state() == DesiredState::Deleted;
                    let Some(s) = w.status.as_mut() else { return Change::Keep };
                    // One being removed (drained, or its workload deleted) that the agent no
                    // longer has is gone: its removal is confirmed.
                    if s.instances.iter().any(|i| i.instance_id == id && (i.removing || deleted)) {
                        s.instances.retain(|i| i.instance_id != id);
                        return Change::Write(());
                    }
                    match s.instances.iter_mut().find(|i| i.instance_id == id) {
                        Some(i) if i.phase != WorkloadPhase::Scheduled as i32 => {
                            i.phase = WorkloadPhase::Scheduled as i32;
                            i.reason = "Missing".into();
                            i.message = "the agent did not report it after reconnecting".into();
                            Change::Write(())
                        }
                        _ => Change::Keep,
                    }
                })
                .await?;
        }
        for w in &workloads {
            if w.status.iter().flat_map(|s| &s.instances).any(|i| i.node_id == node_id)
                && let Some(fresh) = self.store.workload(&w.id).await?
            {
                self.dispatch(&fresh).await;
            }
        }
        let Some(timeout) = confirm else { return Ok(0) };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut unconfirmed = 0;
        for mut call in calls {
            let done = tokio::time::timeout_at(deadline, async {
                loop {
                    match call.next().await {
                        Some(crate::agents::Reply::Done(result)) => return result.success,
                        Some(crate::agents::Reply::Cut(_)) | None => return false,
                        Some(_) => {}
                    }
                }
            })
            .await;
            if !matches!(done, Ok(true)) {
                unconfirmed += 1;
            }
        }
        Ok(unconfirmed)
    }

    /// Marks nodes whose liveness lease expired NotReady, and NotReady nodes past the grace
    /// period Down, rescheduling their instances (leader only). Every such write is fenced
    /// ([`Scheduler::liveness_fence`]): it lands only while this replica still leads and the
    /// node's liveness key is still absent, and it re-checks the node's record as stored, so a
    /// node whose agent came back in the meantime is left alone. A Down node that still holds
    /// live instances (a leader stopped half way) has them taken away again.
    pub async fn check_liveness(&self) -> Result<(), ApiError> {
        let (nodes, _) = self.store.nodes().await?;
        let (live, _) = self.store.kv().range(&self.keys().live_prefix()).await?;
        let alive: HashSet<&str> = live.iter().map(|e| Keys::id_of(&e.key)).collect();
        let (workloads, _) = self.store.workloads().await?;
        let holds_live = |node: &str| {
            workloads
                .iter()
                .flat_map(|w| w.status.iter().flat_map(|s| &s.instances))
                .any(|i| i.node_id == node && !is_terminal(i.phase))
        };
        let grace = (self.settings.lease_ttl + self.settings.down_grace).as_millis() as i64;
        let now = now_ms();
        for node in nodes {
            if alive.contains(node.id.as_str()) {
                continue;
            }
            let Some(fence) = self.liveness_fence(&node.id) else { return Ok(()) };
            let result = match node.state() {
                NodeState::Ready | NodeState::Cordoned | NodeState::Draining => {
                    tracing::warn!(node = %node.id, "liveness lease expired; node is NotReady");
                    self.store
                        .update_node_fenced(&node.id, &fence, |n| {
                            let live = [NodeState::Ready, NodeState::Cordoned, NodeState::Draining];
                            if !live.iter().any(|s| *s as i32 == n.state) {
                                return false;
                            }
                            n.state = NodeState::NotReady as i32;
                            n.state_reason = "no heartbeat within the lease TTL".into();
                            true
                        })
                        .await
                        .map(|_| ())
                }
                NodeState::NotReady if now - heartbeat_ms(&node) > grace => {
                    let mut down = false;
                    let written = self
                        .store
                        .update_node_fenced(&node.id, &fence, |n| {
                            if n.state != NodeState::NotReady as i32 || now - heartbeat_ms(n) <= grace {
                                return false;
                            }
                            n.state = NodeState::Down as i32;
                            n.state_reason = format!("NotReady for longer than {:?}", self.settings.down_grace);
                            down = true;
                            true
                        })
                        .await;
                    match written {
                        Ok(_) if down => {
                            tracing::warn!(node = %node.id, "node is Down; rescheduling its workloads");
                            self.on_node_lost(&node.id).await
                        }
                        other => other.map(|_| ()),
                    }
                }
                NodeState::Down if holds_live(&node.id) => {
                    tracing::warn!(node = %node.id, "a Down node still holds instances; rescheduling them");
                    self.on_node_lost(&node.id).await
                }
                _ => Ok(()),
            };
            match result {
                Err(e) if crate::store::is_fenced(&e) => {
                    tracing::info!(node = %node.id, error = %e, "liveness decision dropped: leadership or liveness changed");
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Takes every live instance off a lost node: rescheduled unless its policy is Never, in
    /// which case it is Lost. Each write is fenced ([`Scheduler::liveness_fence`]); without
    /// leadership nothing is done.
    pub async fn on_node_lost(&self, node_id: &str) -> Result<(), ApiError> {
        let Some(fence) = self.liveness_fence(node_id) else { return Ok(()) };
        let (workloads, _) = self.store.workloads().await?;
        for w in &workloads {
            if !w.status.iter().flat_map(|s| &s.instances).any(|i| i.node_id == node_id && !is_terminal(i.phase)) {
                continue;
            }
            self.store
                .update_workload_fenced(&w.id, &fence, |w| {
                    let policy = w.spec.as_ref().map_or(0, |s| s.restart_policy);
                    let reschedule = w.desired_state() == DesiredState::Running && wants_restart(policy, None);
                    let Some(status) = w.status.as_mut() else { return Change::Keep };
                    let mut moved = Vec::new();
                    if reschedule {
                        status.instances.retain(|i| {
                            let lost = i.node_id == node_id && !is_terminal(i.phase);
                            if lost {
                                moved.push(i.instance_id.clone());
                            }
                            !lost
                        });
                    } else {
                        for i in status.instances.iter_mut().filter(|i| i.node_id == node_id && !is_terminal(i.phase)) {
                            i.phase = WorkloadPhase::Lost as i32;
                            i.reason = "NodeLost".into();
                            i.message = format!("node {node_id} is down");
                            moved.push(i.instance_id.clone());
                        }
                    }
                    if moved.is_empty() {
                        return Change::Keep;
                    }
                    let what = if reschedule { "Rescheduling" } else { "Lost" };
                    record_event(
                        w,
                        PbEventType::Warning,
                        what,
                        format!("node {node_id} is down: instances {}", moved.join(", ")),
                    );
                    Change::Write(())
                })
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
}

impl<K: Kv> Scheduler<K> {
    /// Removes the DNS records of a node that is lost or deleted: its own and those of every
    /// instance placed on it (a returning node's agent writes its own record again).
    pub async fn forget_node_dns(&self, node_id: &str, workloads: &[Workload]) {
        let Some(zone) = &self.settings.dns_zone else { return };
        let mut keys = vec![crate::dns::node_key(zone, node_id)];
        for w in workloads {
            for i in w.status.iter().flat_map(|s| &s.instances).filter(|i| i.node_id == node_id) {
                keys.push(crate::dns::instance_key(zone, &w.name, &i.instance_id));
            }
        }
        crate::dns::remove(self.store.kv().as_ref(), keys).await;
    }

    /// Removes the DNS records of every instance a deleted workload ever had, including those
    /// dropped from its status while their nodes were away.
    pub async fn forget_workload_dns(&self, w: &Workload) {
        let Some(zone) = &self.settings.dns_zone else { return };
        crate::dns::remove_prefix(self.store.kv().as_ref(), &crate::dns::workload_prefix(zone, &w.name, &w.id)).await;
    }
}

/// What `on_status` made of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Recorded.
    Applied,
    /// The workload has no such instance (any more).
    Unknown,
    /// Another node's instance, or older than what was recorded: changes nothing.
    Ignored,
}

/// Returns the order of a report: its sequence, or for an agent that does not set one, its
/// observation time in nanoseconds since the Unix epoch (the same scale); 0 when neither is
/// known (such a report is always recorded).
/// Returns a node's last heartbeat in milliseconds since the epoch (0 without one).
fn heartbeat_ms(node: &Node) -> i64 {
    node.last_heartbeat.as_ref().map_or(0, ts_ms)
}

/// Returns the order of an agent's status report: its sequence when the agent sends one, else
/// the time it observed the change, so older reports can be told from newer ones.
pub fn report_sequence(sequence: u64, observed_at: Option<&prost_types::Timestamp>) -> u64 {
    if sequence != 0 {
        return sequence;
    }
    observed_at.map_or(0, |t| (t.seconds.max(0) as u64).saturating_mul(1_000_000_000) + t.nanos.max(0) as u64)
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

/// Returns whether a workload wants more instances than it has.
fn needs_placement(w: &Workload) -> bool {
    w.desired_state() == DesiredState::Running
        && (w.status.as_ref().map_or(0, |s| s.instances.len()) as i32)
            < w.spec.as_ref().map_or(1, |s| s.replicas.max(1))
}

/// A workload with its new instances, ready to commit.
pub struct Plan {
    /// The workload as it will be stored (revision: the one read).
    pub workload: Workload,
    /// How many instances were added.
    pub added: usize,
    /// Whether some replicas were left for a later batch (the batch could touch no more nodes).
    pub partial: bool,
}

/// Plans committed together in one transaction, with the nodes they touch (as read).
#[derive(Default)]
struct Batch {
    plans: Vec<Plan>,
    touched: HashMap<String, Node>,
}

impl Batch {
    /// Returns how many guards (and as many writes) the batch's transaction carries.
    fn ops(&self) -> usize {
        self.plans.len() + self.touched.len()
    }
}

/// Nodes as placement sees them while planning a batch.
struct Snapshot {
    nodes: Vec<Node>,
}

impl Snapshot {
    fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Self { nodes }
    }

    /// Plans the missing instances of `w`, reserving on the snapshot's nodes and recording each
    /// touched node (as read) in `touched`, adding at most `new_nodes` nodes to it. `Err` carries
    /// the reason nothing fits.
    fn plan(
        &mut self,
        w: &Workload,
        strategy: crate::config::Strategy,
        touched: &mut HashMap<String, Node>,
        new_nodes: usize,
    ) -> Result<Option<Plan>, (String, String)> {
        let budget = touched.len() + new_nodes;
        let mut partial = false;
        let spec = w.spec.clone().unwrap_or_default();
        let requests = requests_of(w);
        let replicas = spec.replicas.max(1);
        let mut planned = w.clone();
        let mut added = 0;
        let mut per_node: HashMap<String, i32> = HashMap::new();
        for i in w.status.iter().flat_map(|s| &s.instances) {
            if !is_terminal(i.phase) {
                *per_node.entry(i.node_id.clone()).or_default() += 1;
            }
        }
        loop {
            let have = planned.status.as_ref().map_or(0, |s| s.instances.len()) as i32;
            if have >= replicas {
                break;
            }
            // Once the batch touches as many nodes as it may, only those are candidates.
            let candidates: Vec<Node>;
            let pool: &[Node] = if touched.len() >= budget {
                candidates = self.nodes.iter().filter(|n| touched.contains_key(&n.id)).cloned().collect();
                &candidates
            } else {
                &self.nodes
            };
            let chosen = placement::choose(pool, &spec, &requests, &per_node, strategy).map(|n| n.id.clone());
            let node_id = match chosen {
                Ok(id) => id,
                Err(reason) if added == 0 => {
                    return Err((w.id.clone(), format!("cannot place replica {have}: {reason}")));
                }
                Err(_) => {
                    partial = touched.len() >= budget;
                    break;
                }
            };
            let node = self.nodes.iter_mut().find(|n| n.id == node_id).expect("chosen from the snapshot");
            touched.entry(node_id.clone()).or_insert_with(|| node.clone());
            node.available = Some(crate::model::add(&node.available.unwrap_or_default(), &requests, -1));
            node.instance_count += 1;
            *per_node.entry(node_id.clone()).or_default() += 1;
            let status = planned.status.get_or_insert_with(Default::default);
            // The lowest replica index no instance holds: after a node loss the survivors keep
            // theirs, and the replacement takes the one that was lost.
            let index = (0..).find(|n| !status.instances.iter().any(|i| i.replica_index == *n)).unwrap_or(have);
            status.instances.push(InstanceStatus {
                instance_id: format!("{}-{}", w.id, &uuid::Uuid::new_v4().simple().to_string()[..8]),
                replica_index: index,
                node_id: node_id.clone(),
                phase: WorkloadPhase::Scheduled as i32,
                reason: "Scheduled".into(),
                message: format!("placed on {node_id}"),
                ..Default::default()
            });
            record_event(
                &mut planned,
                PbEventType::Normal,
                "Scheduled",
                format!("replica {index} placed on node {node_id}"),
            );
            added += 1;
        }
        if added == 0 {
            return Ok(None);
        }
        let phase = crate::model::derive_phase(&planned);
        if let Some(status) = planned.status.as_mut() {
            status.node_id = status.instances.first().map(|i| i.node_id.clone()).unwrap_or_default();
            status.phase = phase as i32;
            status.reason.clear();
            status.message.clear();
            status.last_transition_time = Some(now_ts());
        }
        planned.updated_at = Some(now_ts());
        Ok(Some(Plan { workload: planned, added, partial }))
    }

    /// Notes the revision a committed batch gave the nodes it touched; their reservations are
    /// already in the snapshot.
    fn committed<'a>(&mut self, ids: impl Iterator<Item = &'a String>, revision: i64) {
        let ids: HashSet<&String> = ids.collect();
        for n in self.nodes.iter_mut().filter(|n| ids.contains(&n.id)) {
            n.revision = revision;
        }
    }
}
