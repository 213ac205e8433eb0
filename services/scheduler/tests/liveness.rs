//! Liveness decisions through the scheduling core, without servers (issue 9, items 2 and 3):
//! a deposed leader declares nothing NotReady or Down and takes no instance off a node; a node
//! whose liveness key is back is not given up on; a Down node left holding instances (a leader
//! stopped half way) is emptied by the next leader. Each case runs on the embedded store and on
//! a real etcd, and ends with the invariant checker.

#[macro_use]
mod stores;
mod inproc;

use std::sync::Arc;

use inproc::{cpu, instances, workload};
use persys_proto::scheduler::v1::{
    DesiredState, Node, NodeState, ResourceRequirements, RestartPolicy, Workload, WorkloadPhase, WorkloadSpec,
};
use persys_scheduler::{
    kv::{Kv, Op, etcd::EtcdKv, mem::MemKv},
    sched::{Scheduler, Settings},
    store::is_fenced,
    testing::assert_invariants,
};
use prost::Message;

async fn add_node<K: Kv>(s: &Scheduler<K>, id: &str) {
    let node = Node {
        id: id.into(),
        state: NodeState::Ready as i32,
        capacity: Some(cpu(4000)),
        allocatable: Some(cpu(4000)),
        available: Some(cpu(4000)),
        ..Default::default()
    };
    s.store.kv().txn(vec![], vec![Op::put(s.keys().node(id), node.encode_to_vec())]).await.unwrap();
}

/// A workload with one replica on node `a` (the only node then), running; returns its id and
/// the instance's.
async fn running_on_a<K: Kv>(s: &Scheduler<K>) -> (String, String) {
    add_node(s, "a").await;
    let w = Workload {
        id: uuid::Uuid::new_v4().to_string(),
        name: "web".into(),
        spec: Some(WorkloadSpec {
            image: "busybox".into(),
            replicas: 1,
            restart_policy: RestartPolicy::Always as i32,
            resources: Some(ResourceRequirements { requests: Some(cpu(500)), limits: None }),
            ..Default::default()
        }),
        desired_state: DesiredState::Running as i32,
        owner_id: "root".into(),
        ..Default::default()
    };
    let id = s.store.create_workload(&w, "").await.unwrap().id;
    assert_eq!(s.place_pending().await.unwrap(), 1);
    let instance = instances(&workload(s, &id).await)[0].instance_id.clone();
    (id, instance)
}

/// Sets a node's state, with its last heartbeat long ago (past any grace period).
async fn set_state<K: Kv>(s: &Scheduler<K>, id: &str, state: NodeState) {
    s.store
        .update_node(id, |n| {
            n.state = state as i32;
            n.last_heartbeat = Some(prost_types::Timestamp { seconds: 1, nanos: 0 });
            true
        })
        .await
        .unwrap();
}

async fn state<K: Kv>(s: &Scheduler<K>, id: &str) -> NodeState {
    s.store.node(id).await.unwrap().unwrap().state()
}

async fn on_a<K: Kv>(s: &Scheduler<K>, w: &str) -> Vec<String> {
    instances(&workload(s, w).await).into_iter().filter(|i| i.node_id == "a").map(|i| i.instance_id).collect()
}

async fn a_deposed_leader_declares_nothing_down<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = inproc::core(kv, prefix, Settings::default());
    let (w, instance) = running_on_a(&s).await;
    add_node(&s, "b").await;
    set_state(&s, "a", NodeState::NotReady).await;

    // Another replica won the election since this one did (this one thinks it still leads).
    let leader = s.keys().leader();
    s.store.kv().txn(vec![], vec![Op::put(&leader, b"other".to_vec())]).await.unwrap();
    s.check_liveness().await.unwrap();
    assert_eq!(state(&s, "a").await, NodeState::NotReady, "a deposed leader declared the node Down");
    assert_eq!(on_a(&s, &w).await, std::slice::from_ref(&instance), "a deposed leader took the instance away");
    let err = s.on_node_lost("a").await.unwrap_err();
    assert!(is_fenced(&err), "{err:?}");
    assert_eq!(on_a(&s, &w).await, std::slice::from_ref(&instance));
    assert_invariants(&s.store).await;

    // Once the other replica is gone, this one's term holds again: the node is Down and its
    // instance leaves it.
    s.store.kv().txn(vec![], vec![Op::Delete(leader)]).await.unwrap();
    s.check_liveness().await.unwrap();
    assert_eq!(state(&s, "a").await, NodeState::Down);
    assert!(on_a(&s, &w).await.is_empty());
    assert_invariants(&s.store).await;
}

async fn a_node_live_again_keeps_its_instances<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = inproc::core(kv, prefix, Settings::default());
    let (w, instance) = running_on_a(&s).await;
    set_state(&s, "a", NodeState::Down).await;
    // Its agent came back (the liveness key is there again) before the instances were moved.
    s.store.kv().txn(vec![], vec![Op::put(s.keys().live("a"), b"1".to_vec())]).await.unwrap();
    let err = s.on_node_lost("a").await.unwrap_err();
    assert!(is_fenced(&err), "{err:?}");
    assert_eq!(on_a(&s, &w).await, [instance], "instances taken from a node that is live");
    s.check_liveness().await.unwrap();
    assert_eq!(state(&s, "a").await, NodeState::Down, "left for the agent's own reconnect to settle");
    assert_invariants(&s.store).await;
}

async fn a_down_node_left_holding_instances_is_emptied<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = inproc::core(kv, prefix, Settings::default());
    let (w, _) = running_on_a(&s).await;
    // A leader wrote Down and stopped before moving the instances.
    set_state(&s, "a", NodeState::Down).await;
    assert_eq!(on_a(&s, &w).await.len(), 1);
    s.check_liveness().await.unwrap();
    assert!(on_a(&s, &w).await.is_empty(), "the next check takes them off the Down node");
    let phases: Vec<i32> = instances(&workload(&s, &w).await).iter().map(|i| i.phase).collect();
    assert!(phases.iter().all(|p| *p != WorkloadPhase::Running as i32), "{phases:?}");
    assert_invariants(&s.store).await;
}

both_stores!(
    a_deposed_leader_declares_nothing_down,
    a_node_live_again_keeps_its_instances,
    a_down_node_left_holding_instances_is_emptied,
);
