//! Pending restarts live in the stored instance, not in a task of the replica that saw the
//! instance end (issue 9, item 5): a restart waiting out its backoff survives the scheduler
//! stopping, and the replica that next holds the node's connection restarts it on time; a
//! restart written but never sent (the replica stopped between the two) is sent by the next
//! one instead of leaving the instance Starting for good. The record of what was sent stays
//! bounded: a relist forgets workloads deleted unseen (item 11). Each case runs on the embedded
//! store and on a real etcd.

#[macro_use]
mod stores;
mod inproc;

use std::{sync::Arc, time::Duration};

use inproc::{add_node, connect, create, instances, sent, spec, workload};

use persys_proto::scheduler::v1::{
    ConnectResponse, InstanceStatus, RestartPolicy, WorkloadPhase, WorkloadStatusEvent, connect_response::Payload,
};
use persys_scheduler::{
    kv::{Kv, etcd::EtcdKv, mem::MemKv},
    model::{now_ms, ts_ms},
    sched::{RESTARTING, Scheduler, Settings},
    store::Change,
    testing::assert_invariants,
};
use tokio::sync::mpsc;

type Stream = mpsc::Receiver<Result<ConnectResponse, tonic::Status>>;

/// A report of node `a` about `instance` with the agent's `sequence`.
fn report(workload: &str, instance: &str, phase: WorkloadPhase, sequence: u64) -> WorkloadStatusEvent {
    let exit_code = (phase == WorkloadPhase::Failed).then_some(1);
    let status = InstanceStatus { instance_id: instance.into(), phase: phase as i32, exit_code, ..Default::default() };
    WorkloadStatusEvent { workload_id: workload.into(), status: Some(status), sequence, ..Default::default() }
}

/// Waits for a restart of `instance` on an agent's stream; returns everything sent meanwhile.
async fn restart_sent(agent: &mut Stream, instance: &str) -> Vec<Payload> {
    let mut commands = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = agent.recv().await {
            let restart = matches!(&m.payload, Some(Payload::Restart(r)) if r.instance_id == instance);
            commands.extend(m.payload);
            if restart {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no restart of {instance} was sent: {commands:?}");
    commands
}

/// One replica of an `Always` workload on node `a`, running (reported with sequence 1).
async fn running_on_a<K: Kv>(s: &Scheduler<K>) -> (String, String) {
    add_node(s, "a", 1000).await;
    let id = create(s, "web", spec(1, 500, RestartPolicy::Always)).await;
    assert_eq!(s.place_pending().await.unwrap(), 1);
    let instance = instances(&workload(s, &id).await)[0].instance_id.clone();
    s.on_status("a", report(&id, &instance, WorkloadPhase::Running, 1)).await.unwrap();
    (id, instance)
}

async fn a_restart_in_backoff_survives_the_scheduler_stopping<K: Kv>(kv: Arc<K>, prefix: &str) {
    let first = inproc::core(kv.clone(), prefix, Settings::default());
    let mut first_stream = connect(&first, "a");
    let (id, instance) = running_on_a(&first).await;

    // It fails: the restart is stored with its time (the first backoff is 1 s), not sent yet.
    let before = now_ms();
    first.on_status("a", report(&id, &instance, WorkloadPhase::Failed, 2)).await.unwrap();
    let ended = instances(&workload(&first, &id).await).remove(0);
    assert_eq!(ended.phase, WorkloadPhase::Failed as i32);
    let at = ts_ms(ended.restart_at.as_ref().expect("the pending restart is stored with the instance"));
    assert!((before + 900..=now_ms() + 1_100).contains(&at), "restart at {at}, failed at {before}");
    assert!(!sent(&mut first_stream).iter().any(|p| matches!(p, Payload::Restart(_))), "sent before its backoff");

    // The scheduler stops before the backoff ends; another takes the node's connection. The
    // agent's inventory repeats what it last reported (a stale report, ignored).
    drop(first);
    let second = inproc::core(kv, prefix, Settings::default());
    let mut second_stream = connect(&second, "a");
    second.reconcile_node("a", vec![report(&id, &instance, WorkloadPhase::Failed, 2)], None).await.unwrap();
    restart_sent(&mut second_stream, &instance).await;
    assert!(now_ms() >= at, "restarted before its backoff ended");

    // Written before it was sent: Starting, one restart more, nothing pending.
    let restarted = instances(&workload(&second, &id).await).remove(0);
    assert_eq!(restarted.phase, WorkloadPhase::Starting as i32);
    assert_eq!(restarted.reason, RESTARTING);
    assert_eq!(restarted.restart_count, 1);
    assert_eq!(restarted.restart_at, None);
    // The stopped scheduler restarted nothing, and the new one restarts it once.
    let late: Vec<_> = std::iter::from_fn(|| first_stream.try_recv().ok()).filter_map(|m| m.ok()?.payload).collect();
    assert!(!late.iter().any(|p| matches!(p, Payload::Restart(_))), "the stopped scheduler restarted it: {late:?}");
    let dispatched = workload(&second, &id).await;
    second.dispatch(&dispatched).await;
    assert!(!sent(&mut second_stream).iter().any(|p| matches!(p, Payload::Restart(_))), "restarted twice");

    second.on_status("a", report(&id, &instance, WorkloadPhase::Running, 3)).await.unwrap();
    let running = instances(&workload(&second, &id).await).remove(0);
    assert_eq!(running.phase, WorkloadPhase::Running as i32);
    assert_eq!(running.restart_count, 1);
    assert_invariants(&second.store).await;
}

async fn a_restart_written_but_not_sent_is_sent_by_the_next_scheduler<K: Kv>(kv: Arc<K>, prefix: &str) {
    let first = inproc::core(kv.clone(), prefix, Settings::default());
    let (id, instance) = running_on_a(&first).await;
    first.on_status("a", report(&id, &instance, WorkloadPhase::Failed, 2)).await.unwrap();
    // The restart was written (as `restart_due` writes it) and the scheduler stopped before it
    // sent it: the agent still has the instance Failed.
    first
        .update_workload(&id, |w| {
            let i = &mut w.status.as_mut().unwrap().instances[0];
            i.phase = WorkloadPhase::Starting as i32;
            i.reason = RESTARTING.into();
            i.restart_count += 1;
            i.restart_at = None;
            Change::Write(())
        })
        .await
        .unwrap();
    drop(first);

    let second = inproc::core(kv, prefix, Settings::default());
    let mut stream = connect(&second, "a");
    second.reconcile_node("a", vec![report(&id, &instance, WorkloadPhase::Failed, 2)], None).await.unwrap();
    let commands = restart_sent(&mut stream, &instance).await;
    assert!(!commands.iter().any(|p| matches!(p, Payload::Run(_) | Payload::Remove(_))), "{commands:?}");
    let w = workload(&second, &id).await;
    assert_eq!(instances(&w)[0].restart_count, 1, "counted twice");
    assert_invariants(&second.store).await;
}

async fn a_restart_asked_of_any_replica_reaches_the_node<K: Kv>(kv: Arc<K>, prefix: &str) {
    // The call lands on a replica that does not hold node a's connection.
    let s = inproc::core(kv.clone(), prefix, Settings::default());
    let (id, instance) = running_on_a(&s).await;
    let w = s.restart_workload(&inproc::admin(), &id, 0, None).await.expect("restart requested");
    let written = instances(&w).remove(0);
    assert_eq!((written.phase, written.reason.as_str()), (WorkloadPhase::Starting as i32, RESTARTING));
    assert_eq!(written.restart_count, 1);

    // The replica that holds it sends the restart, from the stored workload, once.
    let holder = inproc::core(kv, prefix, Settings::default());
    let mut stream = connect(&holder, "a");
    holder.dispatch(&workload(&holder, &id).await).await;
    restart_sent(&mut stream, &instance).await;
    holder.dispatch(&workload(&holder, &id).await).await;
    assert!(!sent(&mut stream).iter().any(|p| matches!(p, Payload::Restart(_))), "restarted twice");

    // Where the call's replica holds the node, it sends the restart itself, with the grace asked.
    let mut own = connect(&s, "a");
    let grace = prost_types::Duration { seconds: 3, nanos: 0 };
    s.restart_workload(&inproc::admin(), &id, 0, Some(grace)).await.expect("restart requested");
    let commands = restart_sent(&mut own, &instance).await;
    assert!(commands.iter().any(|p| matches!(p, Payload::Restart(r) if r.grace_period == Some(grace))), "{commands:?}");
    assert_invariants(&s.store).await;
}

async fn what_was_sent_for_a_workload_deleted_unseen_is_forgotten_on_relist<K: Kv>(kv: Arc<K>, prefix: &str) {
    let s = inproc::core(kv, prefix, Settings::default());
    let mut agent = connect(&s, "a");
    add_node(&s, "a", 1000).await;
    let gone = create(&s, "gone", spec(1, 100, RestartPolicy::Always)).await;
    let kept = create(&s, "kept", spec(1, 100, RestartPolicy::Always)).await;
    assert_eq!(s.place_pending().await.unwrap(), 2);
    for id in [&gone, &kept] {
        s.dispatch(&workload(&s, id).await).await;
    }
    let runs = sent(&mut agent).iter().filter(|p| matches!(p, Payload::Run(_))).count();
    assert_eq!((runs, s.sent_len()), (2, 2));

    // Deleted while this replica's watch was down: no delete event will prune its entry.
    s.store.delete_workload(&gone).await.unwrap();
    s.relist().await.unwrap();
    assert_eq!(s.sent_len(), 1, "what was sent for the deleted workload is still remembered");
    // What it remembers for the other still keeps it from being sent twice.
    assert!(sent(&mut agent).is_empty());
}

both_stores!(
    a_restart_in_backoff_survives_the_scheduler_stopping,
    a_restart_written_but_not_sent_is_sent_by_the_next_scheduler,
    what_was_sent_for_a_workload_deleted_unseen_is_forgotten_on_relist,
    a_restart_asked_of_any_replica_reaches_the_node,
);
