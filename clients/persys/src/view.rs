//! Serializable views of the API's messages for `-o json|yaml`: every field, enums by their
//! short names, times in RFC 3339, quantities in base units.

use std::collections::BTreeMap;

use persys_proto::{
    common::v1 as common,
    scheduler::v1::{self as pb, WorkloadPhase},
};
use serde::Serialize;

use crate::output::{enum_name, rfc3339};

macro_rules! enum_str {
    ($fn:ident, $ty:ty, $prefix:literal) => {
        /// Returns the short name of the enum value (`Unknown(n)` for values this CLI predates).
        pub fn $fn(value: i32) -> String {
            <$ty>::try_from(value)
                .map(|v| enum_name(v.as_str_name(), $prefix))
                .unwrap_or_else(|_| format!("Unknown({value})"))
        }
    };
}

enum_str!(phase, WorkloadPhase, "WORKLOAD_PHASE_");
enum_str!(node_state, pb::NodeState, "NODE_STATE_");
enum_str!(desired, pb::DesiredState, "DESIRED_STATE_");
enum_str!(restart_policy, pb::RestartPolicy, "RESTART_POLICY_");
enum_str!(pull_policy, pb::ImagePullPolicy, "IMAGE_PULL_POLICY_");
enum_str!(protocol, common::Protocol, "PROTOCOL_");
enum_str!(event_type, common::EventType, "EVENT_TYPE_");
enum_str!(role, common::Role, "ROLE_");
enum_str!(watch_type, common::WatchEventType, "WATCH_EVENT_TYPE_");

/// A workload.
#[derive(Serialize)]
pub struct Workload {
    id: String,
    name: String,
    owner_id: String,
    desired_state: String,
    spec: Spec,
    status: Status,
    events: Vec<Event>,
    created_at: Option<String>,
    updated_at: Option<String>,
    revision: i64,
}

#[derive(Serialize)]
struct Spec {
    image: String,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<Env>,
    ports: Vec<Port>,
    requests: Resources,
    limits: Resources,
    labels: BTreeMap<String, String>,
    restart_policy: String,
    max_restarts: i32,
    node_selector: BTreeMap<String, String>,
    replicas: i32,
    max_replicas_per_node: i32,
    volumes: Vec<Volume>,
    working_dir: String,
    user: String,
    image_pull_policy: String,
    network: String,
}

#[derive(Serialize)]
struct Env {
    name: String,
    value: String,
    sensitive: bool,
}

#[derive(Serialize)]
struct Port {
    name: String,
    container_port: u32,
    host_port: u32,
    protocol: String,
    host_ip: String,
}

#[derive(Serialize)]
struct Volume {
    source: String,
    target: String,
    read_only: bool,
}

/// Resource amounts in base units.
#[derive(Serialize, Default)]
pub struct Resources {
    cpu_millis: i64,
    memory_bytes: i64,
    disk_bytes: i64,
}

impl From<Option<&common::ResourceQuantities>> for Resources {
    fn from(q: Option<&common::ResourceQuantities>) -> Self {
        q.map(|q| Self { cpu_millis: q.cpu_millis, memory_bytes: q.memory_bytes, disk_bytes: q.disk_bytes })
            .unwrap_or_default()
    }
}

#[derive(Serialize)]
struct Status {
    phase: String,
    reason: String,
    message: String,
    node_id: String,
    ready_replicas: i32,
    restart_count: i32,
    last_transition_time: Option<String>,
    instances: Vec<Instance>,
}

#[derive(Serialize)]
struct Instance {
    instance_id: String,
    replica_index: i32,
    node_id: String,
    phase: String,
    reason: String,
    message: String,
    container_id: String,
    restart_count: i32,
    /// When a pending restart is due, while the instance waits out its backoff.
    restart_at: Option<String>,
    exit_code: Option<i32>,
    started_at: Option<String>,
    finished_at: Option<String>,
    image_digest: String,
}

/// One recorded event.
#[derive(Serialize)]
pub struct Event {
    id: String,
    time: Option<String>,
    r#type: String,
    reason: String,
    message: String,
    source: String,
    count: i32,
}

impl From<&common::Event> for Event {
    fn from(e: &common::Event) -> Self {
        Self {
            id: e.id.clone(),
            time: rfc3339(e.time.as_ref()),
            r#type: event_type(e.r#type),
            reason: e.reason.clone(),
            message: e.message.clone(),
            source: e.source.clone(),
            count: e.count,
        }
    }
}

fn sorted<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, String> {
    m.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl From<&pb::Workload> for Workload {
    fn from(w: &pb::Workload) -> Self {
        let spec = w.spec.clone().unwrap_or_default();
        let status = w.status.clone().unwrap_or_default();
        let resources = spec.resources.unwrap_or_default();
        Self {
            id: w.id.clone(),
            name: w.name.clone(),
            owner_id: w.owner_id.clone(),
            desired_state: desired(w.desired_state),
            spec: Spec {
                image: spec.image,
                command: spec.command,
                args: spec.args,
                env: spec
                    .env
                    .into_iter()
                    .map(|e| Env { name: e.name, value: e.value, sensitive: e.sensitive })
                    .collect(),
                ports: spec
                    .ports
                    .into_iter()
                    .map(|p| Port {
                        name: p.name,
                        container_port: p.container_port,
                        host_port: p.host_port,
                        protocol: protocol(p.protocol),
                        host_ip: p.host_ip,
                    })
                    .collect(),
                requests: resources.requests.as_ref().into(),
                limits: resources.limits.as_ref().into(),
                labels: sorted(&spec.labels),
                restart_policy: restart_policy(spec.restart_policy),
                max_restarts: spec.max_restarts,
                node_selector: sorted(&spec.node_selector),
                replicas: spec.replicas.max(1),
                max_replicas_per_node: spec.max_replicas_per_node,
                volumes: spec
                    .volumes
                    .into_iter()
                    .map(|v| Volume { source: v.source, target: v.target, read_only: v.read_only })
                    .collect(),
                working_dir: spec.working_dir,
                user: spec.user,
                image_pull_policy: pull_policy(spec.image_pull_policy),
                network: spec.network,
            },
            status: Status {
                phase: phase(status.phase),
                reason: status.reason,
                message: status.message,
                node_id: status.node_id,
                ready_replicas: status.ready_replicas,
                restart_count: status.restart_count,
                last_transition_time: rfc3339(status.last_transition_time.as_ref()),
                instances: status.instances.iter().map(instance).collect(),
            },
            events: w.events.iter().map(Event::from).collect(),
            created_at: rfc3339(w.created_at.as_ref()),
            updated_at: rfc3339(w.updated_at.as_ref()),
            revision: w.revision,
        }
    }
}

fn instance(i: &pb::InstanceStatus) -> Instance {
    Instance {
        instance_id: i.instance_id.clone(),
        replica_index: i.replica_index,
        node_id: i.node_id.clone(),
        phase: phase(i.phase),
        reason: i.reason.clone(),
        message: i.message.clone(),
        container_id: i.container_id.clone(),
        restart_count: i.restart_count,
        restart_at: rfc3339(i.restart_at.as_ref()),
        exit_code: i.exit_code,
        started_at: rfc3339(i.started_at.as_ref()),
        finished_at: rfc3339(i.finished_at.as_ref()),
        image_digest: i.image_digest.clone(),
    }
}

/// A node.
#[derive(Serialize)]
pub struct Node {
    id: String,
    hostname: String,
    addresses: Vec<String>,
    labels: BTreeMap<String, String>,
    capacity: Resources,
    allocatable: Resources,
    available: Resources,
    drivers: Vec<String>,
    state: String,
    state_reason: String,
    cordoned: bool,
    info: BTreeMap<&'static str, String>,
    owner_id: String,
    dns_name: String,
    joined_at: Option<String>,
    last_heartbeat: Option<String>,
    instance_count: i32,
    revision: i64,
}

impl From<&pb::Node> for Node {
    fn from(n: &pb::Node) -> Self {
        let i = n.info.clone().unwrap_or_default();
        let info = [
            ("os", i.os),
            ("arch", i.arch),
            ("kernel_version", i.kernel_version),
            ("os_image", i.os_image),
            ("agent_version", i.agent_version),
            ("container_runtime", i.container_runtime),
            ("container_runtime_version", i.container_runtime_version),
            ("machine_id", i.machine_id),
        ];
        Self {
            id: n.id.clone(),
            hostname: n.hostname.clone(),
            addresses: n.addresses.clone(),
            labels: sorted(&n.labels),
            capacity: n.capacity.as_ref().into(),
            allocatable: n.allocatable.as_ref().into(),
            available: n.available.as_ref().into(),
            drivers: n.drivers.clone(),
            state: node_state(n.state),
            state_reason: n.state_reason.clone(),
            cordoned: n.cordoned,
            info: info.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            owner_id: n.owner_id.clone(),
            dns_name: n.dns_name.clone(),
            joined_at: rfc3339(n.joined_at.as_ref()),
            last_heartbeat: rfc3339(n.last_heartbeat.as_ref()),
            instance_count: n.instance_count,
            revision: n.revision,
        }
    }
}

/// A join token (never its secret).
#[derive(Serialize)]
pub struct JoinToken {
    id: String,
    description: String,
    created_at: Option<String>,
    expires_at: Option<String>,
    max_uses: i32,
    use_count: i32,
    node_labels: BTreeMap<String, String>,
    created_by: String,
    revoked_at: Option<String>,
}

impl From<&pb::JoinToken> for JoinToken {
    fn from(t: &pb::JoinToken) -> Self {
        Self {
            id: t.id.clone(),
            description: t.description.clone(),
            created_at: rfc3339(t.created_at.as_ref()),
            expires_at: rfc3339(t.expires_at.as_ref()),
            max_uses: t.max_uses,
            use_count: t.use_count,
            node_labels: sorted(&t.node_labels),
            created_by: t.created_by.clone(),
            revoked_at: rfc3339(t.revoked_at.as_ref()),
        }
    }
}
