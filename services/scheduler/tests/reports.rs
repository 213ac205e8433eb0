//! Agents' reports through the scheduling core, without servers: a late report older than what
//! was recorded changes nothing (issue 9, item 9), and DNS records are written only for
//! instances the reporting node runs and removed on node loss, force delete and node delete
//! (item 11). Each case runs on the embedded store and on a real etcd, and ends with the
//! invariant checker.

#[macro_use]
mod stores;
mod inproc;

use std::sync::Arc;

use inproc::{admin, cpu, instances, workload};

use persys_proto::scheduler::v1::{
    DesiredState, InstanceStatus, Node, NodeState, ResourceRequirements, RestartPolicy, Workload, WorkloadPhase,
    WorkloadSpec, WorkloadStatusEvent,
};
use persys_scheduler::{
    dns,
    kv::{Kv, Op, etcd::EtcdKv, mem::MemKv},
    sched::{Scheduler, Settings},
    testing::assert_invariants,
};
use prost::Message;

const ZONE: &str = "persys.test";

/// The core on `kv` with DNS records in [`ZONE`] (under the test's own zone labels, so tests
/// sharing an etcd do not meet), leading, with no loops running: tests drive each step.
fn core<K: Kv>(kv: Arc<K>, prefix: &str) -> (Arc<Scheduler<K>>, String) {
    let zone = format!("{}.{ZONE}", prefix.trim_start_matches("/").replace(['/', '-'], ""));
    let settings = Settings { dns_zone: Some(zone.clone()), ..Settings::default() };
    (inproc::core(kv, prefix, settings), zone)
}

async fn add_node<K: Kv>(s: &Scheduler<K>, id: &str, address: &str) {
    let node = Node {
        id: id.into(),
        state: NodeState::Ready as i32,
        capacity: Some(cpu(4000)),
        allocatable: Some(cpu(4000)),
        available: Some(cpu(4000)),
        addresses: vec![address.into()],
        ..Default::default()
    };
    s.store.kv().txn(vec![], vec![Op::put(s.keys().node(id), node.encode_to_vec())]).await.unwrap();
}

async fn create<K: Kv>(s: &Scheduler<K>, name: &str, replicas: i32, policy: RestartPolicy) -> String {
    let w = Workload {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.into(),
        spec: Some(WorkloadSpec {
            image: "busybox".into(),
            replicas,
            restart_policy: policy as i32,
            resources: Some(ResourceRequirements { requests: Some(cpu(500)), limits: None }),
            ..Default::default()
        }),
        desired_state: DesiredState::Running as i32,
        owner_id: "root".into(),
        ..Default::default()
    };
    s.store.create_workload(&w, "").await.unwrap().id
}

/// A report as an agent sends it: `sequence` and `observed_at` (unix ns) when given.
fn event(
    w: &str,
    instance: &str,
    phase: WorkloadPhase,
    sequence: u64,
    observed_ns: Option<i64>,
) -> WorkloadStatusEvent {
    let exit_code = matches!(phase, WorkloadPhase::Failed | WorkloadPhase::Succeeded).then_some(1);
    WorkloadStatusEvent {
        workload_id: w.into(),
        status: Some(InstanceStatus {
            instance_id: instance.into(),
            phase: phase as i32,
            reason: format!("{phase:?}"),
            exit_code,
            ..Default::default()
        }),
        observed_at: observed_ns
            .map(|ns| prost_types::Timestamp { seconds: ns / 1_000_000_000, nanos: (ns % 1_000_000_000) as i32 }),
        sequence,
        ..Default::default()
    }
}

/// One replica placed on node `a`; returns the workload and instance ids.
async fn one_on_a<K: Kv>(s: &Scheduler<K>, policy: RestartPolicy) -> (String, String) {
    add_node(s, "a", "192.0.2.1").await;
    let id = create(s, "web", 1, policy).await;
    assert_eq!(s.place_pending().await.unwrap(), 1);
    let instance = instances(&workload(s, &id).await)[0].instance_id.clone();
    (id, instance)
}

fn phase_of(w: &Workload, instance: &str) -> WorkloadPhase {
    let i = instances(w).into_iter().find(|i| i.instance_id == instance).expect("instance");
    WorkloadPhase::try_from(i.phase).unwrap()
}

async fn record<K: Kv>(s: &Scheduler<K>, key: &str) -> Option<String> {
    let entry = s.store.kv().get(key).await.unwrap()?;
    Some(serde_json::from_slice::<serde_json::Value>(&entry.value).unwrap()["host"].as_str().unwrap().to_owned())
}

// ------------------------------------------------------------------------------- item 9

async fn a_late_older_report_does_not_overwrite_a_newer_one<K: Kv>(kv: Arc<K>, prefix: &str) {
    let (s, _) = core(kv, prefix);
    let (id, inst) = one_on_a(&s, RestartPolicy::Always).await;
    s.on_status("a", event(&id, &inst, WorkloadPhase::Running, 2_000, None)).await.unwrap();
    let running = workload(&s, &id).await;
    assert_eq!(phase_of(&running, &inst), WorkloadPhase::Running);

    // Observed before the Running report, delivered after it (a reconnect's inventory, a
    // requeued event, another replica's backlog): both ignored.
    s.on_status("a", event(&id, &inst, WorkloadPhase::Starting, 1_000, None)).await.unwrap();
    s.on_status("a", event(&id, &inst, WorkloadPhase::Failed, 1_500, None)).await.unwrap();
    let after = workload(&s, &id).await;
    assert_eq!(phase_of(&after, &inst), WorkloadPhase::Running, "a stale report overwrote newer state");
    assert_eq!(after.revision, running.revision, "a stale report wrote the workload");
    assert_eq!(instances(&after)[0].report_sequence, 2_000);
    assert_invariants(&s.store).await;

    // A newer report is recorded as usual.
    s.on_status("a", event(&id, &inst, WorkloadPhase::Failed, 3_000, None)).await.unwrap();
    assert_eq!(phase_of(&workload(&s, &id).await, &inst), WorkloadPhase::Failed);
    assert_invariants(&s.store).await;
}

async fn without_a_sequence_the_observation_time_orders_reports<K: Kv>(kv: Arc<K>, prefix: &str) {
    let (s, _) = core(kv, prefix);
    let (id, inst) = one_on_a(&s, RestartPolicy::Never).await;
    let t = 1_700_000_000_000_000_000_i64;
    s.on_status("a", event(&id, &inst, WorkloadPhase::Running, 0, Some(t))).await.unwrap();
    s.on_status("a", event(&id, &inst, WorkloadPhase::Succeeded, 0, Some(t - 1_000_000))).await.unwrap();
    s.on_status("a", event(&id, &inst, WorkloadPhase::Starting, 0, Some(t - 2_000_000))).await.unwrap();
    let w = workload(&s, &id).await;
    assert_eq!(phase_of(&w, &inst), WorkloadPhase::Running, "a report observed earlier overwrote a later one");
    assert_eq!(w.status.as_ref().unwrap().ready_replicas, 1);
    assert_invariants(&s.store).await;
}

// ------------------------------------------------------------------------------ item 11

async fn records_are_written_only_for_the_reporting_nodes_own_instances<K: Kv>(kv: Arc<K>, prefix: &str) {
    let (s, zone) = core(kv, prefix);
    let (id, inst) = one_on_a(&s, RestartPolicy::Always).await;
    add_node(&s, "b", "192.0.2.2").await;
    let key = dns::instance_key(&zone, "web", &inst);

    // Node b claims a's instance, and an instance the workload does not have.
    s.on_status("b", event(&id, &inst, WorkloadPhase::Running, 1, None)).await.unwrap();
    let made_up = format!("{id}-deadbeef");
    s.on_status("b", event(&id, &made_up, WorkloadPhase::Running, 1, None)).await.unwrap();
    assert_eq!(record(&s, &key).await, None, "a record written for another node's instance");
    assert_eq!(record(&s, &dns::instance_key(&zone, "web", &made_up)).await, None, "a record for no instance");
    assert_eq!(phase_of(&workload(&s, &id).await, &inst), WorkloadPhase::Scheduled);

    // Its own node's report writes it, with that node's address; b's claim cannot remove it.
    s.on_status("a", event(&id, &inst, WorkloadPhase::Running, 2, None)).await.unwrap();
    assert_eq!(record(&s, &key).await.as_deref(), Some("192.0.2.1"));
    s.on_status("b", event(&id, &inst, WorkloadPhase::Failed, 3, None)).await.unwrap();
    assert_eq!(record(&s, &key).await.as_deref(), Some("192.0.2.1"));
    // Nor can a stale report of a.
    s.on_status("a", event(&id, &inst, WorkloadPhase::Failed, 1, None)).await.unwrap();
    assert_eq!(record(&s, &key).await.as_deref(), Some("192.0.2.1"));
    assert_invariants(&s.store).await;
}

/// One running replica on `a`, with its record and `a`'s own record.
async fn running_with_records<K: Kv>(s: &Scheduler<K>, zone: &str, policy: RestartPolicy) -> (String, String) {
    let (id, inst) = one_on_a(s, policy).await;
    // As the agent's connection does.
    dns::set(s.store.kv().as_ref(), dns::node_key(zone, "a"), Some("192.0.2.1")).await;
    s.on_status("a", event(&id, &inst, WorkloadPhase::Running, 1, None)).await.unwrap();
    assert!(record(s, &dns::instance_key(zone, "web", &inst)).await.is_some());
    (id, inst)
}

async fn node_loss_removes_its_records<K: Kv>(kv: Arc<K>, prefix: &str) {
    let (s, zone) = core(kv, prefix);
    let (rescheduled, moved) = running_with_records(&s, &zone, RestartPolicy::Always).await;
    let lost = create(&s, "batch", 1, RestartPolicy::Never).await;
    assert_eq!(s.place_pending().await.unwrap(), 1);
    let lost_inst = instances(&workload(&s, &lost).await)[0].instance_id.clone();
    s.on_status("a", event(&lost, &lost_inst, WorkloadPhase::Running, 1, None)).await.unwrap();
    assert!(record(&s, &dns::instance_key(&zone, "batch", &lost_inst)).await.is_some());

    s.on_node_lost("a").await.unwrap();
    assert_eq!(record(&s, &dns::instance_key(&zone, "web", &moved)).await, None, "record of a rescheduled instance");
    assert_eq!(record(&s, &dns::instance_key(&zone, "batch", &lost_inst)).await, None, "record of a lost instance");
    assert_eq!(record(&s, &dns::node_key(&zone, "a")).await, None, "record of a lost node");
    assert!(instances(&workload(&s, &rescheduled).await).is_empty());
    assert_invariants(&s.store).await;
}

async fn force_delete_removes_the_workloads_records<K: Kv>(kv: Arc<K>, prefix: &str) {
    let (s, zone) = core(kv, prefix);
    let (id, inst) = running_with_records(&s, &zone, RestartPolicy::Always).await;
    // Another workload of the same name keeps its record.
    let other = create(&s, "web", 1, RestartPolicy::Always).await;
    assert_eq!(s.place_pending().await.unwrap(), 1);
    let other_inst = instances(&workload(&s, &other).await)[0].instance_id.clone();
    s.on_status("a", event(&other, &other_inst, WorkloadPhase::Running, 1, None)).await.unwrap();

    // Node a is not connected here: the instance is dropped and the record deleted at once.
    s.delete_workload(&admin(), &id, true, 0).await.unwrap();
    assert!(s.store.workload(&id).await.unwrap().is_none());
    assert_eq!(record(&s, &dns::instance_key(&zone, "web", &inst)).await, None, "record left by a force delete");
    assert!(record(&s, &dns::instance_key(&zone, "web", &other_inst)).await.is_some(), "another workload's record");
    assert_invariants(&s.store).await;
}

async fn node_delete_removes_its_records<K: Kv>(kv: Arc<K>, prefix: &str) {
    let (s, zone) = core(kv, prefix);
    let (_, inst) = running_with_records(&s, &zone, RestartPolicy::Always).await;
    add_node(&s, "b", "192.0.2.2").await;
    dns::set(s.store.kv().as_ref(), dns::node_key(&zone, "b"), Some("192.0.2.2")).await;

    s.delete_node(&admin(), "a", true).await.unwrap();
    assert_eq!(record(&s, &dns::instance_key(&zone, "web", &inst)).await, None, "instance record of a deleted node");
    assert_eq!(record(&s, &dns::node_key(&zone, "a")).await, None, "record of a deleted node (forced)");
    // An empty node needs no force.
    s.delete_node(&admin(), "b", false).await.unwrap();
    assert_eq!(record(&s, &dns::node_key(&zone, "b")).await, None, "record of a deleted node");
    assert_invariants(&s.store).await;
}

both_stores!(
    a_late_older_report_does_not_overwrite_a_newer_one,
    without_a_sequence_the_observation_time_orders_reports,
    records_are_written_only_for_the_reporting_nodes_own_instances,
    node_loss_removes_its_records,
    force_delete_removes_the_workloads_records,
    node_delete_removes_its_records,
);
