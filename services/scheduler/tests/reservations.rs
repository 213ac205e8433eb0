//! Node reservations through the scheduling core, without servers: several replicas on one
//! node leaving it at once (node loss, drain, start after stop, delete), drain and delete
//! reaching a node whose connection another replica holds and keeping the reservations until
//! its agent confirms (issue 9, item 6), reservations taken back only when they fit (restart, start, an ended instance
//! reported live again), and placement batches within etcd's transaction limit. Each case runs
//! on the embedded store and on a real etcd, and ends with the invariant checker.

#[macro_use]
mod stores;
mod inproc;

use std::{sync::Arc, time::Duration};

use inproc::{add_node, admin, connect, create, instances, sent, spec, workload};

use persys_proto::scheduler::v1::{
    ConnectResponse, InstanceStatus, NodeState, RestartPolicy, Workload, WorkloadPhase, WorkloadStatusEvent,
    connect_response::Payload,
};
use persys_scheduler::{
    config::Strategy,
    kv::{Kv, etcd::EtcdKv, mem::MemKv},
    model::is_terminal,
    sched::{Scheduler, Settings},
    testing::assert_invariants,
};
use tokio::sync::mpsc;

/// The core on `kv`, leading, with no loops running: tests drive each step.
fn core<K: Kv>(kv: Arc<K>, prefix: &str, strategy: Strategy) -> Arc<Scheduler<K>> {
    inproc::core(kv, prefix, Settings { strategy, ..Settings::default() })
}

fn on(w: &Workload, node: &str) -> usize {
    instances(w).iter().filter(|i| i.node_id == node).count()
}

async fn available<K: Kv>(s: &Scheduler<K>, node: &str) -> i64 {
    s.store.node(node).await.unwrap().unwrap().available.unwrap().cpu_millis
}

async fn report<K: Kv>(s: &Scheduler<K>, node: &str, workload: &str, instance: &str, phase: WorkloadPhase) {
    let exit_code = (phase == WorkloadPhase::Failed).then_some(1);
    let status = InstanceStatus { instance_id: instance.into(), phase: phase as i32, exit_code, ..Default::default() };
    let event = WorkloadStatusEvent { workload_id: workload.into(), status: Some(status), ..Default::default() };
    s.on_status(node, event).await.unwrap();
}

/// Waits (on a watch, not a timer) until the workload satisfies `done`.
async fn wait_workload<K: Kv>(s: &Scheduler<K>, id: &str, done: impl Fn(&Workload) -> bool) {
    let key = s.keys().workload(id);
    let (_, revision) = s.store.kv().range(&key).await.unwrap();
    let mut changes = s.store.kv().watch(&key, revision + 1).await.unwrap();
    while !done(&workload(s, id).await) {
        tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut changes))
            .await
            .unwrap_or_else(|_| panic!("workload {id} never got there"));
    }
}

/// Reports every instance of `w` on `node` in `phase`.
async fn report_all<K: Kv>(s: &Scheduler<K>, node: &str, w: &str, phase: WorkloadPhase) {
    for i in instances(&workload(s, w).await).into_iter().filter(|i| i.node_id == node) {
        report(s, node, w, &i.instance_id, phase).await;
    }
}

/// Four replicas spread over nodes a and b (a holds replicas 0 and 2), all running.
async fn two_replicas_on_a<K: Kv>(s: &Scheduler<K>) -> String {
    add_node(s, "a", 4000).await;
    add_node(s, "b", 4000).await;
    let id = create(s, "web", spec(4, 500, RestartPolicy::Always)).await;
    assert_eq!(s.place_pending().await.unwrap(), 4);
    let w = workload(s, &id).await;
    assert_eq!((on(&w, "a"), on(&w, "b")), (2, 2));
    for node in ["a", "b"] {
        report_all(s, node, &id, WorkloadPhase::Running).await;
    }
    assert_eq!(available(s, "a").await, 3000);
    assert_invariants(&s.store).await;
    id
}

async fn losing_a_node_with_two_replicas_reschedules_both<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Spread);
    let id = two_replicas_on_a(&s).await;
    s.store
        .update_node("a", |n| {
            n.state = NodeState::Down as i32;
            true
        })
        .await
        .unwrap();
    s.on_node_lost("a").await.expect("both instances leave node a in one write");
    assert_eq!(available(&s, "a").await, 4000);
    assert_invariants(&s.store).await;
    assert_eq!(s.place_pending().await.unwrap(), 2);
    let w = workload(&s, &id).await;
    assert_eq!((on(&w, "a"), on(&w, "b")), (0, 4));
    assert_eq!(available(&s, "b").await, 2000);
    assert_invariants(&s.store).await;
}

/// Waits for a removal of each of `instances` on an agent's stream.
async fn removals_sent(agent: &mut mpsc::Receiver<Result<ConnectResponse, tonic::Status>>, instances: &[String]) {
    let mut left: Vec<&String> = instances.iter().collect();
    let mut commands = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = agent.recv().await {
            if let Some(Payload::Remove(r)) = &m.payload {
                left.retain(|i| **i != r.instance_id);
            }
            commands.extend(m.payload);
            if left.is_empty() {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "removals of {left:?} not sent: {commands:?}");
}

/// The agent of `node` confirms that it removed `instance`.
async fn removed<K: Kv>(s: &Scheduler<K>, node: &str, workload: &str, instance: &str) {
    let status = InstanceStatus { instance_id: instance.into(), ..Default::default() };
    let event =
        WorkloadStatusEvent { workload_id: workload.into(), status: Some(status), removed: true, ..Default::default() };
    s.on_status(node, event).await.unwrap();
}

fn ids_on(w: &Workload, node: &str) -> Vec<String> {
    instances(w).into_iter().filter(|i| i.node_id == node).map(|i| i.instance_id).collect()
}

async fn draining_a_node_with_two_replicas_moves_both<K: Kv>(kv: Arc<K>, prefix: &str) {
    // The drain is handled by a replica that does not hold node a's connection.
    let s = core(kv.clone(), prefix, Strategy::Spread);
    let id = two_replicas_on_a(&s).await;
    let on_a = ids_on(&workload(&s, &id).await, "a");
    s.drain(&admin(), "a", "maintenance").await.expect("drained");
    // Until a's agent confirms, both keep their slots and reservations: no replacement yet.
    let w = workload(&s, &id).await;
    assert!(instances(&w).iter().filter(|i| i.node_id == "a").all(|i| i.removing), "{:?}", instances(&w));
    assert_eq!(available(&s, "a").await, 3000);
    assert_eq!(s.place_pending().await.unwrap(), 0, "replaced before the old ones were removed");
    assert_invariants(&s.store).await;

    // The replica holding a's connection sends the removals, from the stored workload.
    let holder = core(kv, prefix, Strategy::Spread);
    let mut agent = connect(&holder, "a");
    holder.dispatch(&w).await;
    removals_sent(&mut agent, &on_a).await;
    for instance in &on_a {
        removed(&holder, "a", &id, instance).await;
    }
    assert_eq!(available(&s, "a").await, 4000);
    assert_eq!(s.place_pending().await.unwrap(), 2);
    let w = workload(&s, &id).await;
    assert_eq!((on(&w, "a"), on(&w, "b")), (0, 4));
    assert_invariants(&s.store).await;
}

async fn starting_after_stop_takes_back_both_reservations_of_a_node<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Spread);
    let id = two_replicas_on_a(&s).await;
    s.stop_workload(&admin(), &id, 0).await.unwrap();
    for node in ["a", "b"] {
        report_all(&s, node, &id, WorkloadPhase::Stopped).await;
    }
    assert_eq!((available(&s, "a").await, available(&s, "b").await), (4000, 4000));
    assert_invariants(&s.store).await;
    s.start_workload(&admin(), &id, 0).await.expect("started");
    let w = workload(&s, &id).await;
    assert_eq!((on(&w, "a"), on(&w, "b")), (2, 2));
    assert!(instances(&w).iter().all(|i| i.phase == WorkloadPhase::Scheduled as i32));
    assert_eq!((available(&s, "a").await, available(&s, "b").await), (3000, 3000));
    assert_invariants(&s.store).await;
}

async fn deleting_waits_for_every_node_to_confirm<K: Kv>(kv: Arc<K>, prefix: &str) {
    // The delete is handled by a replica holding neither node's connection.
    let s = core(kv.clone(), prefix, Strategy::Spread);
    let id = two_replicas_on_a(&s).await;
    s.delete_workload(&admin(), &id, false, 0).await.expect("deleting");
    let w = workload(&s, &id).await;
    assert_eq!(instances(&w).len(), 4, "instances dropped before their nodes confirmed");
    assert_eq!((available(&s, "a").await, available(&s, "b").await), (3000, 3000));
    assert_invariants(&s.store).await;

    // The replica holding both nodes' connections removes them; once both confirm, the record
    // goes (as its dispatch loop does on the last confirmation's write).
    let holder = core(kv, prefix, Strategy::Spread);
    for node in ["a", "b"] {
        let mut agent = connect(&holder, node);
        let ids = ids_on(&w, node);
        holder.dispatch(&workload(&holder, &id).await).await;
        removals_sent(&mut agent, &ids).await;
        for instance in &ids {
            removed(&holder, node, &id, instance).await;
        }
    }
    holder.dispatch(&workload(&holder, &id).await).await;
    assert!(s.store.workload(&id).await.unwrap().is_none());
    assert_eq!((available(&s, "a").await, available(&s, "b").await), (4000, 4000));
    assert_invariants(&s.store).await;
}

async fn deleting_while_the_nodes_are_down_gives_back_every_reservation<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Spread);
    let id = two_replicas_on_a(&s).await;
    for node in ["a", "b"] {
        s.store
            .update_node(node, |n| {
                n.state = NodeState::Down as i32;
                true
            })
            .await
            .unwrap();
    }
    // Nobody can confirm: every instance is dropped, the record goes at once.
    s.delete_workload(&admin(), &id, false, 0).await.expect("deleted");
    assert!(s.store.workload(&id).await.unwrap().is_none());
    assert_eq!((available(&s, "a").await, available(&s, "b").await), (4000, 4000));
    assert_invariants(&s.store).await;
}

/// Node a (1000m) runs `first` (one 500m replica); it ends, and while it waits, `filler` takes
/// the whole node. Returns (first, its instance, filler).
async fn a_full_node<K: Kv>(s: &Scheduler<K>, policy: RestartPolicy, end: WorkloadPhase) -> (String, String, String) {
    add_node(s, "a", 1000).await;
    let first = create(s, "first", spec(1, 500, policy)).await;
    assert_eq!(s.place_pending().await.unwrap(), 1);
    let instance = instances(&workload(s, &first).await)[0].instance_id.clone();
    report(s, "a", &first, &instance, WorkloadPhase::Running).await;
    report(s, "a", &first, &instance, end).await;
    assert_eq!(available(s, "a").await, 1000, "an ended instance gives its reservation back");
    let filler = create(s, "filler", spec(2, 500, RestartPolicy::Never)).await;
    assert_eq!(s.place_pending().await.unwrap(), 2);
    assert_eq!(available(s, "a").await, 0);
    assert_invariants(&s.store).await;
    (first, instance, filler)
}

/// The instance was evicted from its full node (its agent told to remove it), and placement
/// puts a new one on node b.
async fn evicted_then_placed_on_b<K: Kv>(
    s: &Scheduler<K>,
    first: &str,
    instance: &str,
    agent: &mut mpsc::Receiver<Result<ConnectResponse, tonic::Status>>,
) {
    // Never overbooked, and `available` tells the truth (it is not clamped at zero).
    assert_invariants(&s.store).await;
    let w = workload(s, first).await;
    assert!(instances(&w).iter().all(|i| i.instance_id != instance), "evicted: {:?}", instances(&w));
    assert_eq!(available(s, "a").await, 0);
    // The removal is sent right after the eviction is written (by the restart's own task).
    let mut commands = Vec::new();
    let removed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(m)) = agent.recv().await {
            let remove = matches!(&m.payload, Some(Payload::Remove(r)) if r.instance_id == instance);
            commands.extend(m.payload);
            if remove {
                return;
            }
        }
    })
    .await;
    assert!(removed.is_ok(), "the agent is told to remove it: {commands:?}");
    commands.extend(sent(agent));
    assert!(!commands.iter().any(|p| matches!(p, Payload::Restart(_))), "{commands:?}");
    assert_invariants(&s.store).await;
    add_node(s, "b", 1000).await;
    assert_eq!(s.place_pending().await.unwrap(), 1);
    assert_eq!(on(&workload(s, first).await, "b"), 1);
    assert_invariants(&s.store).await;
}

async fn a_restart_on_a_node_without_room_moves_elsewhere<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Binpack);
    let mut agent = connect(&s, "a");
    let (first, instance, _) = a_full_node(&s, RestartPolicy::Always, WorkloadPhase::Failed).await;
    // The restart waits out its backoff (1 s for the first) in a task of its own.
    wait_workload(&s, &first, |w| instances(w).iter().all(|i| i.instance_id != instance || !is_terminal(i.phase)))
        .await;
    evicted_then_placed_on_b(&s, &first, &instance, &mut agent).await;
}

async fn a_start_on_a_node_without_room_moves_elsewhere<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Binpack);
    let mut agent = connect(&s, "a");
    let (first, instance, _) = a_full_node(&s, RestartPolicy::Never, WorkloadPhase::Failed).await;
    s.stop_workload(&admin(), &first, 0).await.unwrap();
    s.start_workload(&admin(), &first, 0).await.expect("started");
    evicted_then_placed_on_b(&s, &first, &instance, &mut agent).await;
}

async fn an_ended_instance_reported_live_on_a_full_node_is_evicted<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Binpack);
    let mut agent = connect(&s, "a");
    let (first, instance, _) = a_full_node(&s, RestartPolicy::Never, WorkloadPhase::Failed).await;
    report(&s, "a", &first, &instance, WorkloadPhase::Running).await;
    evicted_then_placed_on_b(&s, &first, &instance, &mut agent).await;
}

async fn an_ended_instance_reported_live_with_room_takes_its_reservation_back<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Binpack);
    add_node(&s, "a", 1000).await;
    let id = create(&s, "web", spec(1, 500, RestartPolicy::Never)).await;
    s.place_pending().await.unwrap();
    let instance = instances(&workload(&s, &id).await)[0].instance_id.clone();
    report(&s, "a", &id, &instance, WorkloadPhase::Stopped).await;
    assert_eq!(available(&s, "a").await, 1000);
    report(&s, "a", &id, &instance, WorkloadPhase::Running).await;
    assert_eq!(instances(&workload(&s, &id).await)[0].phase, WorkloadPhase::Running as i32);
    assert_eq!(available(&s, "a").await, 500);
    assert_invariants(&s.store).await;
}

async fn a_placement_spread_over_many_nodes_stays_within_the_txn_limit<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = core(kv, prefix, Strategy::Spread);
    for n in 0..150 {
        add_node(&s, &format!("n{n:03}"), 1000).await;
    }
    let mut one_per_node = spec(3, 100, RestartPolicy::Always);
    one_per_node.max_replicas_per_node = 1;
    for i in 0..60 {
        create(&s, &format!("w{i}"), one_per_node.clone()).await;
    }
    let mut wide = spec(100, 10, RestartPolicy::Always);
    wide.max_replicas_per_node = 1;
    create(&s, "wide", wide).await;
    // 60 × 3 + 100 instances, each on its own node per workload: a batch that wrote every
    // workload and node it touched at once would carry hundreds of operations.
    assert_eq!(s.place_pending().await.expect("every batch within the limit"), 280);
    let (workloads, _) = s.store.workloads().await.unwrap();
    assert!(workloads.iter().all(|w| {
        let want = w.spec.as_ref().unwrap().replicas as usize;
        instances(w).len() == want
            && instances(w).iter().map(|i| &i.node_id).collect::<std::collections::HashSet<_>>().len() == want
    }));
    assert_invariants(&s.store).await;
}

both_stores!(
    losing_a_node_with_two_replicas_reschedules_both,
    draining_a_node_with_two_replicas_moves_both,
    starting_after_stop_takes_back_both_reservations_of_a_node,
    deleting_waits_for_every_node_to_confirm,
    deleting_while_the_nodes_are_down_gives_back_every_reservation,
    a_restart_on_a_node_without_room_moves_elsewhere,
    a_start_on_a_node_without_room_moves_elsewhere,
    an_ended_instance_reported_live_on_a_full_node_is_evicted,
    an_ended_instance_reported_live_with_room_takes_its_reservation_back,
    a_placement_spread_over_many_nodes_stays_within_the_txn_limit,
);
