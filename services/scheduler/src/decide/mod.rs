//! The scheduler's decisions, as pure functions: each takes the records already read (a
//! workload, a node, what an agent reported), and the time `now` as a value, and returns a
//! plan of what to write and send. None of them reads the store, talks to an agent or looks at
//! the clock; [`crate::sched::Scheduler`] reads, decides, and applies the plan in guarded
//! transactions (running the decision again on every retry, over the fresh record).
//!
//! - [`status`]: an agent's report about one instance, and the DNS record it implies.
//! - [`restart`]: what a workload needs sent to agents (runs, stops, removals, restarts that
//!   are due or waiting out their backoff) and the restart of an instance that is due.
//! - [`reconcile`]: a node that just connected, against what the cluster wants it to run.
//! - [`liveness`]: nodes whose lease expired (NotReady, then Down), and the instances taken
//!   off a lost node.

pub mod liveness;
pub mod reconcile;
pub mod restart;
pub mod status;

/// Reason of an instance whose restart is written and sent, until its agent reports on it.
pub const RESTARTING: &str = "Restarting";

/// Replaces `slot` with `next` when there is one; returns whether it did (the shape the store's
/// update closures want).
pub fn adopt<T>(slot: &mut T, next: Option<T>) -> bool {
    match next {
        Some(next) => {
            *slot = next;
            true
        }
        None => false,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small builders of the records the decisions read.

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use persys_proto::scheduler::v1::{
        DesiredState, InstanceStatus, RestartPolicy, Workload, WorkloadPhase, WorkloadSpec, WorkloadStatus,
    };

    /// A fixed `now`: 1 000 000 s after the epoch.
    pub fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    /// An instance `id` of phase `phase` on `node`.
    pub fn instance(id: &str, node: &str, phase: WorkloadPhase) -> InstanceStatus {
        InstanceStatus { instance_id: id.into(), node_id: node.into(), phase: phase as i32, ..Default::default() }
    }

    /// A workload `id` that should run under `policy`, with these instances.
    pub fn workload(id: &str, policy: RestartPolicy, instances: Vec<InstanceStatus>) -> Workload {
        Workload {
            id: id.into(),
            name: format!("{id}-name"),
            desired_state: DesiredState::Running as i32,
            spec: Some(WorkloadSpec {
                replicas: instances.len().max(1) as i32,
                restart_policy: policy as i32,
                ..Default::default()
            }),
            status: Some(WorkloadStatus { instances, ..Default::default() }),
            ..Default::default()
        }
    }

    /// Returns the instances of a workload.
    pub fn instances(w: &Workload) -> &[InstanceStatus] {
        w.status.as_ref().map_or(&[], |s| &s.instances)
    }
}
