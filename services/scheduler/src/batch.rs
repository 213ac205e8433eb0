//! Placement batching: the pending instances of many workloads planned against one snapshot
//! of the nodes, in batches that each fit one guarded transaction (see
//! [`crate::sched::Scheduler::place_pending`]). Which node an instance goes to is
//! [`crate::placement`]'s choice; this keeps the snapshot's reservations and the batch's
//! budget of operations.

use std::collections::{HashMap, HashSet};

use persys_proto::{
    common::v1::EventType as PbEventType,
    scheduler::v1::{DesiredState, InstanceStatus, Node, Workload, WorkloadPhase},
};

use crate::{
    events::record_event,
    model::{is_terminal, now_ts, requests_of},
    placement,
};

/// Returns whether a workload wants more instances than it has.
pub fn needs_placement(w: &Workload) -> bool {
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
pub(crate) struct Batch {
    /// The plans, one per workload.
    pub(crate) plans: Vec<Plan>,
    /// Every node the plans reserve on, as read.
    pub(crate) touched: HashMap<String, Node>,
}

impl Batch {
    /// Returns how many guards (and as many writes) the batch's transaction carries.
    pub(crate) fn ops(&self) -> usize {
        self.plans.len() + self.touched.len()
    }
}

/// Nodes as placement sees them while planning a batch.
pub(crate) struct Snapshot {
    nodes: Vec<Node>,
}

impl Snapshot {
    /// Returns a snapshot of `nodes`, in the order of their ids.
    pub(crate) fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Self { nodes }
    }

    /// Plans the missing instances of `w`, reserving on the snapshot's nodes and recording each
    /// touched node (as read) in `touched`, adding at most `new_nodes` nodes to it. `Err` carries
    /// the reason nothing fits.
    pub(crate) fn plan(
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
    pub(crate) fn committed<'a>(&mut self, ids: impl Iterator<Item = &'a String>, revision: i64) {
        let ids: HashSet<&String> = ids.collect();
        for n in self.nodes.iter_mut().filter(|n| ids.contains(&n.id)) {
            n.revision = revision;
        }
    }
}
