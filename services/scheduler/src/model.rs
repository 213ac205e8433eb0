//! Where things live in the store and how they are encoded (protobuf messages as values).

use persys_proto::{
    common::v1::ResourceQuantities,
    scheduler::v1::{InstanceStatus, Node, NodeState, RestartPolicy, Workload, WorkloadPhase},
};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::kv::Entry;

/// Key layout under one cluster prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Returns the layout under `prefix` (e.g. `/persys`).
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.trim_end_matches('/').to_owned() }
    }

    /// Prefix of everything the scheduler stores.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// Prefix of every node record.
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// One node record.
    pub fn node(&self, id: &str) -> String {
        format!("{}/nodes/{id}", self.prefix)
    }

    /// Prefix of the liveness keys (attached to each node's lease).
    pub fn live_prefix(&self) -> String {
        format!("{}/live/", self.prefix)
    }

    /// One node's liveness key.
    pub fn live(&self, id: &str) -> String {
        format!("{}/live/{id}", self.prefix)
    }

    /// Prefix of every workload record.
    pub fn workloads(&self) -> String {
        format!("{}/workloads/", self.prefix)
    }

    /// One workload record.
    pub fn workload(&self, id: &str) -> String {
        format!("{}/workloads/{id}", self.prefix)
    }

    /// Idempotency record of a create call.
    pub fn request(&self, owner: &str, request_id: &str) -> String {
        format!("{}/requests/{owner}/{request_id}", self.prefix)
    }

    /// Prefix of join tokens.
    pub fn tokens(&self) -> String {
        format!("{}/tokens/", self.prefix)
    }

    /// One join token.
    pub fn token(&self, id: &str) -> String {
        format!("{}/tokens/{id}", self.prefix)
    }

    /// The leader key.
    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// Returns the id at the end of a key.
    pub fn id_of(key: &str) -> &str {
        key.rsplit('/').next().unwrap_or(key)
    }
}

/// Decodes a stored message, with the store revision filled in.
pub fn decode_node(e: &Entry) -> Option<Node> {
    let mut n = Node::decode(&e.value[..]).ok()?;
    n.revision = e.mod_revision;
    Some(n)
}

/// Decodes a stored workload, with the store revision filled in.
pub fn decode_workload(e: &Entry) -> Option<Workload> {
    let mut w = Workload::decode(&e.value[..]).ok()?;
    w.revision = e.mod_revision;
    Some(w)
}

/// A join token as stored: its public record and the hash of its secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredToken {
    /// Public id (the part before the dot).
    pub id: String,
    /// SHA-256 of the secret part, hex.
    pub secret_hash: String,
    /// Free text.
    pub description: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; 0 for never.
    pub expires_at: i64,
    /// 0 for unlimited.
    pub max_uses: i32,
    /// Uses so far.
    pub use_count: i32,
    /// Labels every node joining with it gets.
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// Who made it.
    pub created_by: String,
    /// Unix ms; 0 for active.
    pub revoked_at: i64,
}

/// Returns whether an instance has ended (it holds no resources any more).
pub fn is_terminal(phase: i32) -> bool {
    matches!(
        WorkloadPhase::try_from(phase),
        Ok(WorkloadPhase::Succeeded | WorkloadPhase::Failed | WorkloadPhase::Stopped | WorkloadPhase::Lost)
    )
}

/// Returns the workload's phase as derived from its instances and desired state.
pub fn derive_phase(w: &Workload) -> WorkloadPhase {
    let status = w.status.as_ref();
    let instances: &[InstanceStatus] = status.map_or(&[], |s| &s.instances);
    let replicas = w.spec.as_ref().map_or(1, |s| s.replicas.max(1)) as usize;
    let phases: Vec<WorkloadPhase> =
        instances.iter().map(|i| WorkloadPhase::try_from(i.phase).unwrap_or(WorkloadPhase::Pending)).collect();
    let count = |p: WorkloadPhase| phases.iter().filter(|x| **x == p).count();
    if instances.is_empty() {
        return match w.desired_state() {
            persys_proto::scheduler::v1::DesiredState::Stopped => WorkloadPhase::Stopped,
            _ => WorkloadPhase::Pending,
        };
    }
    if count(WorkloadPhase::Running) >= replicas {
        WorkloadPhase::Running
    } else if phases.iter().all(|p| *p == WorkloadPhase::Succeeded) && instances.len() >= replicas {
        WorkloadPhase::Succeeded
    } else if phases.iter().all(|p| *p == WorkloadPhase::Stopped) {
        WorkloadPhase::Stopped
    } else if count(WorkloadPhase::Failed) > 0 && phases.iter().all(|p| is_terminal(*p as i32)) {
        WorkloadPhase::Failed
    } else if count(WorkloadPhase::Lost) > 0 && phases.iter().all(|p| is_terminal(*p as i32)) {
        WorkloadPhase::Lost
    } else if count(WorkloadPhase::Starting) + count(WorkloadPhase::Running) > 0 {
        WorkloadPhase::Starting
    } else if count(WorkloadPhase::Scheduled) > 0 || instances.len() >= replicas {
        WorkloadPhase::Scheduled
    } else {
        WorkloadPhase::Pending
    }
}

/// Returns the requests of a workload's spec (zero when unset).
pub fn requests_of(w: &Workload) -> ResourceQuantities {
    w.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests).unwrap_or_default()
}

/// Returns `a + factor × b`, exactly: a node's `available` is never clamped, so a drift in
/// the accounting shows instead of hiding (and an overcommitted node reads negative).
pub fn add(a: &ResourceQuantities, b: &ResourceQuantities, factor: i64) -> ResourceQuantities {
    let f = |x: i64, y: i64| x + factor * y;
    ResourceQuantities {
        cpu_millis: f(a.cpu_millis, b.cpu_millis),
        memory_bytes: f(a.memory_bytes, b.memory_bytes),
        disk_bytes: f(a.disk_bytes, b.disk_bytes),
    }
}

/// Returns `q` with each quantity at most the ceiling's, where the ceiling knows it (non-zero).
pub fn at_most(q: &ResourceQuantities, ceiling: Option<&ResourceQuantities>) -> ResourceQuantities {
    let Some(c) = ceiling else { return *q };
    let min = |x: i64, y: i64| if y > 0 { x.min(y) } else { x };
    ResourceQuantities {
        cpu_millis: min(q.cpu_millis, c.cpu_millis),
        memory_bytes: min(q.memory_bytes, c.memory_bytes),
        disk_bytes: min(q.disk_bytes, c.disk_bytes),
    }
}

/// Returns whether restarting after an exit with `exit_code` is wanted by the policy.
pub fn wants_restart(policy: i32, exit_code: Option<i32>) -> bool {
    match RestartPolicy::try_from(policy).unwrap_or(RestartPolicy::Never) {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code.is_none_or(|c| c != 0),
        _ => false,
    }
}

/// Returns the delay before restart attempt `n` (1 s doubling, capped at 5 min).
pub fn restart_backoff(n: i32) -> std::time::Duration {
    std::time::Duration::from_secs(1u64 << n.clamp(0, 8) as u32).min(std::time::Duration::from_secs(300))
}

/// Returns whether a node accepts new instances.
pub fn schedulable(n: &Node) -> bool {
    n.state() == NodeState::Ready && !n.cordoned
}

/// Returns the current time as a protobuf timestamp.
pub fn now_ts() -> prost_types::Timestamp {
    ts_of(std::time::SystemTime::now())
}

/// Returns the current time in unix ms.
pub fn now_ms() -> i64 {
    ms_of(std::time::SystemTime::now())
}

/// Returns a time as a protobuf timestamp (the epoch for a time before it).
pub fn ts_of(t: std::time::SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// Returns a time in unix ms (0 for a time before the epoch).
pub fn ms_of(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Returns a unix time in ms as a protobuf timestamp.
pub fn ms_ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// Returns a protobuf timestamp in unix ms.
pub fn ts_ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds.saturating_mul(1000).saturating_add(i64::from(ts.nanos) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::{WorkloadSpec, WorkloadStatus};

    use super::*;

    fn workload(replicas: i32, phases: &[WorkloadPhase]) -> Workload {
        Workload {
            spec: Some(WorkloadSpec { replicas, ..Default::default() }),
            status: Some(WorkloadStatus {
                instances: phases.iter().map(|p| InstanceStatus { phase: *p as i32, ..Default::default() }).collect(),
                ..Default::default()
            }),
            desired_state: persys_proto::scheduler::v1::DesiredState::Running as i32,
            ..Default::default()
        }
    }

    #[test]
    fn phase_follows_the_instances() {
        use WorkloadPhase::*;
        assert_eq!(derive_phase(&workload(1, &[])), Pending);
        assert_eq!(derive_phase(&workload(2, &[Scheduled])), Scheduled);
        assert_eq!(derive_phase(&workload(2, &[Running, Starting])), Starting);
        assert_eq!(derive_phase(&workload(2, &[Running, Running])), Running);
        assert_eq!(derive_phase(&workload(1, &[Succeeded])), Succeeded);
        assert_eq!(derive_phase(&workload(2, &[Failed, Succeeded])), Failed);
        assert_eq!(derive_phase(&workload(1, &[Stopped])), Stopped);
        assert_eq!(derive_phase(&workload(1, &[Lost])), Lost);
    }

    #[test]
    fn restart_policy_and_backoff() {
        let (never, on_failure, always) =
            (RestartPolicy::Never as i32, RestartPolicy::OnFailure as i32, RestartPolicy::Always as i32);
        assert!(!wants_restart(never, Some(1)));
        assert!(wants_restart(on_failure, Some(1)));
        assert!(!wants_restart(on_failure, Some(0)));
        assert!(wants_restart(always, Some(0)));
        assert_eq!(restart_backoff(0).as_secs(), 1);
        assert_eq!(restart_backoff(3).as_secs(), 8);
        assert_eq!(restart_backoff(30).as_secs(), 256);
    }
}
