//! Node liveness: a node whose lease expired is NotReady, one NotReady for longer than the
//! grace period is Down, and a Down node's live instances are taken away (rescheduled, or Lost
//! under a Never policy).

use std::{collections::HashSet, time::Duration, time::SystemTime};

use persys_proto::{
    common::v1::EventType as PbEventType,
    scheduler::v1::{DesiredState, Node, NodeState, Workload, WorkloadPhase},
};

use crate::{
    events::record_event_at,
    model::{is_terminal, ms_of, ts_ms, wants_restart},
};

/// What becomes of a node without a liveness key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It was live (Ready, Cordoned or Draining): NotReady now (see [`not_ready`]).
    NotReady,
    /// NotReady past the grace period: Down now (see [`down`]), its instances taken away.
    Down,
    /// Down but still holding live instances (a leader stopped half way): take them away.
    Reclaim,
}

/// Returns a verdict for each node whose liveness key is gone (`alive` names those whose key
/// is there), at `now`: NotReady once the lease expired, Down once NotReady longer than
/// `lease_ttl + down_grace` since its last heartbeat, Reclaim for a Down node that still holds
/// live instances of `workloads`. Nodes with nothing to do are left out.
pub fn check(
    nodes: &[Node],
    alive: &HashSet<&str>,
    workloads: &[Workload],
    lease_ttl: Duration,
    down_grace: Duration,
    now: SystemTime,
) -> Vec<(String, Verdict)> {
    let mut verdicts = Vec::new();
    for node in nodes.iter().filter(|n| !alive.contains(n.id.as_str())) {
        let verdict = match node.state() {
            NodeState::Ready | NodeState::Cordoned | NodeState::Draining => Verdict::NotReady,
            NodeState::NotReady if past_grace(node, lease_ttl, down_grace, now) => Verdict::Down,
            NodeState::Down if workloads.iter().any(|w| holds_live(w, &node.id)) => Verdict::Reclaim,
            _ => continue,
        };
        verdicts.push((node.id.clone(), verdict));
    }
    verdicts
}

/// Returns whether a node's last heartbeat (none: the epoch) is older than
/// `lease_ttl + down_grace` at `now`.
fn past_grace(node: &Node, lease_ttl: Duration, down_grace: Duration, now: SystemTime) -> bool {
    let grace = (lease_ttl + down_grace).as_millis() as i64;
    let heartbeat = node.last_heartbeat.as_ref().map_or(0, ts_ms);
    ms_of(now) - heartbeat > grace
}

/// Returns `n` NotReady, when it is still live as stored; `None` to leave it.
pub fn not_ready(n: &Node) -> Option<Node> {
    let live = [NodeState::Ready, NodeState::Cordoned, NodeState::Draining];
    if !live.iter().any(|s| *s as i32 == n.state) {
        return None;
    }
    Some(Node {
        state: NodeState::NotReady as i32,
        state_reason: "no heartbeat within the lease TTL".into(),
        ..n.clone()
    })
}

/// Returns `n` Down, when it is still NotReady as stored and past the grace period at `now`;
/// `None` to leave it (its agent came back meanwhile).
pub fn down(n: &Node, lease_ttl: Duration, down_grace: Duration, now: SystemTime) -> Option<Node> {
    if n.state != NodeState::NotReady as i32 || !past_grace(n, lease_ttl, down_grace, now) {
        return None;
    }
    Some(Node {
        state: NodeState::Down as i32,
        state_reason: format!("NotReady for longer than {down_grace:?}"),
        ..n.clone()
    })
}

/// Returns whether `w` has a live (not ended) instance on `node_id`.
pub fn holds_live(w: &Workload, node_id: &str) -> bool {
    w.status.iter().flat_map(|s| &s.instances).any(|i| i.node_id == node_id && !is_terminal(i.phase))
}

/// Returns `w` with its live instances taken off the lost node `node_id`, `None` when it has
/// none there: dropped, for placement to replace them, when the workload should run and its
/// policy restarts; otherwise kept as Lost (reason `NodeLost`). Either is recorded as a
/// warning event at `now`.
pub fn evacuate(w: &Workload, node_id: &str, now: SystemTime) -> Option<Workload> {
    let mut w = w.clone();
    let policy = w.spec.as_ref().map_or(0, |s| s.restart_policy);
    let reschedule = w.desired_state() == DesiredState::Running && wants_restart(policy, None);
    let status = w.status.as_mut()?;
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
        return None;
    }
    let what = if reschedule { "Rescheduling" } else { "Lost" };
    let message = format!("node {node_id} is down: instances {}", moved.join(", "));
    record_event_at(&mut w, PbEventType::Warning, what, message, now);
    Some(w)
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::RestartPolicy;

    use super::*;
    use crate::{
        decide::fixtures::{instance, instances, now, workload},
        model::ms_ts,
    };

    const TTL: Duration = Duration::from_secs(15);
    const GRACE: Duration = Duration::from_secs(60);

    fn node(id: &str, state: NodeState, heartbeat: SystemTime) -> Node {
        Node { id: id.into(), state: state as i32, last_heartbeat: Some(ms_ts(ms_of(heartbeat))), ..Default::default() }
    }

    #[test]
    fn a_node_past_its_lease_is_not_ready_then_down_after_the_grace() {
        let recent = now() - Duration::from_secs(20);
        let long_ago = now() - TTL - GRACE - Duration::from_millis(1);
        let nodes = [
            node("alive", NodeState::Ready, long_ago),
            node("expired", NodeState::Cordoned, recent),
            node("waiting", NodeState::NotReady, recent),
            node("gone", NodeState::NotReady, long_ago),
            node("down", NodeState::Down, long_ago),
        ];
        let alive = HashSet::from(["alive"]);
        let verdicts = check(&nodes, &alive, &[], TTL, GRACE, now());
        assert_eq!(verdicts, [("expired".to_owned(), Verdict::NotReady), ("gone".to_owned(), Verdict::Down)]);

        let n = not_ready(&nodes[1]).expect("a live node becomes NotReady");
        assert_eq!(n.state(), NodeState::NotReady);
        assert!(not_ready(&n).is_none(), "already NotReady");
        assert!(down(&n, TTL, GRACE, now()).is_none(), "its heartbeat is within the grace");
        let d = down(&nodes[3], TTL, GRACE, now()).expect("past the grace");
        assert_eq!((d.state(), d.state_reason.as_str()), (NodeState::Down, "NotReady for longer than 60s"));
        let back = node("gone", NodeState::Ready, now());
        assert!(down(&back, TTL, GRACE, now()).is_none(), "a node whose agent came back is left alone");
    }

    #[test]
    fn a_down_node_that_still_holds_live_instances_is_reclaimed() {
        let nodes = [node("down", NodeState::Down, now())];
        let ended = workload("e", RestartPolicy::Always, vec![instance("e-1", "down", WorkloadPhase::Failed)]);
        assert!(check(&nodes, &HashSet::new(), std::slice::from_ref(&ended), TTL, GRACE, now()).is_empty());
        let live = workload("w", RestartPolicy::Always, vec![instance("w-1", "down", WorkloadPhase::Running)]);
        let verdicts = check(&nodes, &HashSet::new(), &[ended, live], TTL, GRACE, now());
        assert_eq!(verdicts, [("down".to_owned(), Verdict::Reclaim)]);
    }

    #[test]
    fn a_lost_nodes_instances_are_rescheduled_or_lost_under_never() {
        let w = workload(
            "w",
            RestartPolicy::Always,
            vec![
                instance("w-1", "a", WorkloadPhase::Running),
                instance("w-2", "b", WorkloadPhase::Running),
                instance("w-3", "a", WorkloadPhase::Succeeded),
            ],
        );
        let moved = evacuate(&w, "a", now()).expect("a live instance leaves");
        let ids: Vec<_> = instances(&moved).iter().map(|i| i.instance_id.as_str()).collect();
        assert_eq!(ids, ["w-2", "w-3"], "the live one is dropped for placement to replace");
        let event = moved.events.last().unwrap();
        assert_eq!((event.reason.as_str(), event.message.as_str()), ("Rescheduling", "node a is down: instances w-1"));
        assert!(evacuate(&moved, "a", now()).is_none(), "nothing live left there");

        let never = workload("n", RestartPolicy::Never, vec![instance("n-1", "a", WorkloadPhase::Running)]);
        let lost = evacuate(&never, "a", now()).unwrap();
        let i = &instances(&lost)[0];
        assert_eq!((i.phase, i.reason.as_str()), (WorkloadPhase::Lost as i32, "NodeLost"));
        assert_eq!(lost.events.last().unwrap().reason, "Lost");
    }
}
