//! Fixtures for tests that drive the scheduling core in-process, without servers: the core on
//! a store, leading, with no loops running, and small readers of what it stored.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use persys_kit::{UserClaims, identity::Role, pki::Ca};
use persys_proto::{
    common::v1::ResourceQuantities,
    scheduler::v1::{InstanceStatus, Workload},
};
use persys_scheduler::{
    kv::Kv,
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
