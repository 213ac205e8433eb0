//! Fixtures for tests that drive the scheduling core in-process, without servers: the core on
//! a store, leading, with no loops running, and small readers of what it stored.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use prost::Message;
use tokio::sync::mpsc;

use persys_kit::{UserClaims, identity::Role, pki::Ca};
use persys_proto::{
    common::v1::ResourceQuantities,
    scheduler::v1::{
        ConnectResponse, DesiredState, InstanceStatus, Node, NodeState, ResourceRequirements, RestartPolicy, Workload,
        WorkloadSpec, connect_response::Payload,
    },
};
use persys_scheduler::{
    kv::{Kv, Op},
    sched::{Scheduler, Settings},
    store::Store,
};

/// `millis` of CPU and as many MiB of memory.
pub fn cpu(millis: i64) -> ResourceQuantities {
    ResourceQuantities { cpu_millis: millis, memory_bytes: millis << 20, disk_bytes: 0 }
}

pub fn admin() -> UserClaims {
    UserClaims { id: "root".into(), name: "root".into(), role: Role::Admin }
}

/// The core on `kv` under `prefix` with `settings`, leading, with no loops running: tests drive
/// each step. Its term is 0 (no election key written), so its fenced writes land while no
/// other replica writes the election key.
pub fn core<K: Kv>(kv: Arc<K>, prefix: &str, settings: Settings) -> Arc<Scheduler<K>> {
    let ca = Arc::new(Ca::generate("test", Duration::from_secs(3600)).unwrap());
    let (_, leader) = tokio::sync::watch::channel(Some(0));
    Scheduler::new(Store::new(kv, prefix), settings, ca, leader)
}

pub async fn workload<K: Kv>(s: &Scheduler<K>, id: &str) -> Workload {
    s.store.workload(id).await.unwrap().expect("workload")
}

pub fn instances(w: &Workload) -> Vec<InstanceStatus> {
    w.status.clone().unwrap_or_default().instances
}

/// Adds a Ready node with `millis` of CPU (and as many MiB), none of it reserved.
pub async fn add_node<K: Kv>(s: &Scheduler<K>, id: &str, millis: i64) {
    let node = Node {
        id: id.into(),
        state: NodeState::Ready as i32,
        capacity: Some(cpu(millis)),
        allocatable: Some(cpu(millis)),
        available: Some(cpu(millis)),
        ..Default::default()
    };
    s.store.kv().txn(vec![], vec![Op::put(s.keys().node(id), node.encode_to_vec())]).await.unwrap();
}

/// `replicas` of busybox, each requesting `millis` of CPU, under `policy`.
pub fn spec(replicas: i32, millis: i64, policy: RestartPolicy) -> WorkloadSpec {
    WorkloadSpec {
        image: "busybox".into(),
        replicas,
        restart_policy: policy as i32,
        resources: Some(ResourceRequirements { requests: Some(cpu(millis)), limits: None }),
        ..Default::default()
    }
}

/// Stores a workload wanted Running, as the API does; returns its id.
pub async fn create<K: Kv>(s: &Scheduler<K>, name: &str, spec: WorkloadSpec) -> String {
    let w = Workload {
        id: format!("{name}-{}", uuid::Uuid::new_v4().simple()),
        name: name.into(),
        spec: Some(spec),
        desired_state: DesiredState::Running as i32,
        owner_id: "root".into(),
        ..Default::default()
    };
    s.store.create_workload(&w, "").await.unwrap().id
}

/// Registers a stream for `node`, as its agent connecting would; returns what is sent down it.
pub fn connect<K: Kv>(s: &Scheduler<K>, node: &str) -> mpsc::Receiver<Result<ConnectResponse, tonic::Status>> {
    let (tx, rx) = mpsc::channel(64);
    s.agents.register(node, tx);
    rx
}

/// What was sent down an agent's stream so far.
pub fn sent(rx: &mut mpsc::Receiver<Result<ConnectResponse, tonic::Status>>) -> Vec<Payload> {
    std::iter::from_fn(|| rx.try_recv().ok()).filter_map(|m| m.ok()?.payload).collect()
}
