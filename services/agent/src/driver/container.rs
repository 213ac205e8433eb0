//! Pure translations between Persys and Docker: a RunInstance into a container definition,
//! and a container's inspected state into an [`InstanceStatus`].

use std::{
    collections::HashMap,
    path::{Component, Path, PathBuf},
    time::Duration,
};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HealthConfig, HealthStatusEnum,
    HostConfig, PortBinding, RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use persys_proto::{
    common::v1::{Protocol, Role},
    scheduler::v1::{ImagePullPolicy, InstanceStatus, RunInstance, WorkloadPhase},
    workload::valid_volume_name,
};

use super::{
    LABEL_INSTANCE_ID, LABEL_MANAGED, LABEL_NODE_ID, LABEL_REPLICA_INDEX, LABEL_WORKLOAD_ID, LABEL_WORKLOAD_NAME,
};
use crate::error::CommandError;

/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the agent adds to every container.
#[derive(Clone, Debug)]
pub struct Defaults {
    /// Node id written into the labels.
    pub node_id: String,
    /// Network when the spec names none.
    pub network_mode: String,
    /// Host directories under which bind mounts are allowed; empty refuses host paths.
    pub volume_roots: Vec<PathBuf>,
    /// Named networks that workloads of non-admins may join besides `network_mode` and `none`.
    pub allowed_networks: Vec<String>,
    /// How long one attempt to pull an image may take.
    pub pull_timeout: std::time::Duration,
    /// Attempts at a pull before the instance fails (1 s, then 2 s, ... between them).
    pub pull_attempts: u32,
}

/// Returns the pull policy in force: the spec's, or for UNSPECIFIED `Always` for images tagged
/// `latest` or untagged and `IfNotPresent` otherwise.
pub fn effective_pull_policy(image: &str, policy: i32) -> ImagePullPolicy {
    match ImagePullPolicy::try_from(policy).unwrap_or_default() {
        ImagePullPolicy::Unspecified => {
            let last = image.rsplit('/').next().unwrap_or(image);
            let digest = last.contains('@');
            let tag = last.split_once(':').map(|(_, t)| t);
            if digest || tag.is_some_and(|t| t != "latest") {
                ImagePullPolicy::IfNotPresent
            } else {
                ImagePullPolicy::Always
            }
        }
        p => p,
    }
}

fn nanos(d: &Option<prost_types::Duration>) -> Option<i64> {
    d.as_ref().map(|d| d.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(d.nanos)))
}

/// Returns a protobuf duration as a std one (negative ones as zero).
pub fn duration(d: &Option<prost_types::Duration>) -> Option<Duration> {
    d.as_ref().map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
}

/// Returns the labels of an instance's container: the workload's own, then the Persys ones
/// (which win).
pub fn labels(run: &RunInstance, node_id: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> =
        run.spec.as_ref().map(|s| s.labels.clone()).unwrap_or_default().into_iter().collect();
    labels.retain(|k, _| !k.starts_with("persys."));
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels.insert(LABEL_WORKLOAD_ID.into(), run.workload_id.clone());
    labels.insert(LABEL_INSTANCE_ID.into(), run.instance_id.clone());
    labels.insert(LABEL_WORKLOAD_NAME.into(), run.workload_name.clone());
    labels.insert(LABEL_NODE_ID.into(), node_id.to_owned());
    labels.insert(LABEL_REPLICA_INDEX.into(), run.replica_index.to_string());
    labels
}

/// Label on the Docker volumes the agent creates: the id of the owner they belong to.
pub const LABEL_VOLUME_OWNER: &str = "persys.owner";

/// Returns the part of a Docker volume name that stands for an owner: the owner id itself when
/// it is a plain id (the gateway's are UUIDs), otherwise a digest of it, so no owner id can
/// spell a separator or another owner's key.
fn owner_key(owner_id: &str) -> String {
    let plain = (1..=40).contains(&owner_id.len()) && owner_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if plain {
        return owner_id.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(owner_id.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("h{hex}")
}

/// Returns the Docker volume behind a workload's named volume `name`: `persys-<owner>.<name>`.
/// Every owner has volumes of their own, so one member's `data` is never another's, and no
/// spec can name a platform volume (certificates, state) or another owner's.
pub fn volume_name(owner_id: &str, name: &str) -> String {
    format!("persys-{}.{name}", owner_key(owner_id))
}

/// Returns `path` with every symbolic link resolved: the longest existing ancestor through
/// `canonicalize`, the rest (not yet created; Docker creates it) appended as written. The
/// path must be absolute with no `..`.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(resolved) => return Ok(rest.iter().rev().fold(resolved, |p, c: &std::ffi::OsString| p.join(c))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = existing.file_name().map(ToOwned::to_owned).ok_or(e)?;
                rest.push(name);
                existing.pop();
            }
            Err(e) => return Err(e),
        }
    }
}

/// Returns the host path a bind mount may use: `source` with its symbolic links resolved, when
/// that lies under one of the (equally resolved) roots. Checking the resolved path means a link
/// placed under a root (by a workload that mounts it, say) cannot lead another mount out of it.
pub fn bind_source(source: &str, roots: &[PathBuf]) -> Result<PathBuf, CommandError> {
    let refused =
        || CommandError::new("NotAllowed", format!("host path `{source}` is outside the agent's allowed volume roots"));
    let path = Path::new(source);
    if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(refused());
    }
    let resolved = resolve(path).map_err(|_| refused())?;
    let inside =
        roots.iter().filter_map(|root| std::fs::canonicalize(root).ok()).any(|root| resolved.starts_with(root));
    if inside { Ok(resolved) } else { Err(refused()) }
}

/// Returns the Docker bind of a volume mount: a named volume becomes the owner's own
/// ([`volume_name`]), a host path must resolve under the roots ([`bind_source`]).
fn bind(
    owner_id: &str,
    source: &str,
    target: &str,
    read_only: bool,
    roots: &[PathBuf],
) -> Result<String, CommandError> {
    if !target.starts_with('/') {
        return Err(CommandError::new("InvalidArgument", format!("volume target `{target}` is not an absolute path")));
    }
    let source = if source.starts_with('/') {
        bind_source(source, roots)?.display().to_string()
    } else if valid_volume_name(source) {
        volume_name(owner_id, source)
    } else {
        return Err(CommandError::new(
            "InvalidArgument",
            format!(
                "volume source `{source}` is neither an absolute path nor a volume name (letters, digits, `_`, `-`)"
            ),
        ));
    };
    Ok(format!("{source}:{target}{}", if read_only { ":ro" } else { "" }))
}

/// Returns the Docker volumes (names) an instance's named volumes map to.
pub fn named_volumes(run: &RunInstance) -> Vec<String> {
    run.spec
        .iter()
        .flat_map(|s| &s.volumes)
        .filter(|v| valid_volume_name(&v.source))
        .map(|v| volume_name(&run.owner_id, &v.source))
        .collect()
}

/// Returns the network an instance joins: the node's default when the spec names none. The
/// host's network and another container's (`container:NAME`) are granted to admins' workloads
/// only; other named networks to admins' or those on the node's allow list.
pub fn network_of(run: &RunInstance, defaults: &Defaults) -> Result<String, CommandError> {
    let asked = run.spec.as_ref().map_or("", |s| s.network.trim());
    if asked.is_empty() || asked == defaults.network_mode {
        return Ok(defaults.network_mode.clone());
    }
    let admin = run.owner_role() == Role::Admin;
    let host_level = asked == "host" || asked.starts_with("container:");
    let allowed = admin || asked == "none" || (!host_level && defaults.allowed_networks.iter().any(|n| n == asked));
    if allowed {
        Ok(asked.to_owned())
    } else {
        Err(CommandError::new(
            "NotAllowed",
            format!("network `{asked}` is not allowed on this node for a workload whose owner is not an admin"),
        ))
    }
}

/// Returns the runtime settings every container gets whoever owns it: never privileged, no
/// capability beyond Docker's default set, no devices, and its own PID, IPC and UTS namespaces
/// (IPC explicitly private, whatever the daemon's `default-ipc-mode`). The spec has no field
/// that could ask for more, and nothing else in [`create_body`] sets these.
pub fn confined(host: HostConfig) -> HostConfig {
    HostConfig {
        privileged: Some(false),
        cap_add: None,
        devices: None,
        device_requests: None,
        device_cgroup_rules: None,
        pid_mode: None,
        ipc_mode: Some("private".into()),
        uts_mode: None,
        userns_mode: None,
        security_opt: None,
        sysctls: None,
        publish_all_ports: Some(false),
        ..host
    }
}

/// Returns the container definition of a RunInstance. Docker's own restart policy stays `no`:
/// restarts are decided by the scheduler.
pub fn create_body(run: &RunInstance, defaults: &Defaults) -> Result<ContainerCreateBody, CommandError> {
    let spec = run.spec.as_ref().ok_or_else(|| CommandError::new("InvalidArgument", "run without a spec"))?;
    let limits = spec.resources.as_ref().and_then(|r| r.limits);
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.ports {
        let proto = if port.protocol == Protocol::Udp as i32 { "udp" } else { "tcp" };
        let key = format!("{}/{proto}", port.container_port);
        exposed.push(key.clone());
        if port.host_port != 0 {
            bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(PortBinding {
                host_ip: (!port.host_ip.is_empty()).then(|| port.host_ip.clone()),
                host_port: Some(port.host_port.to_string()),
            });
        }
    }
    let binds = spec
        .volumes
        .iter()
        .map(|v| bind(&run.owner_id, &v.source, &v.target, v.read_only, &defaults.volume_roots))
        .collect::<Result<Vec<_>, _>>()?;
    let healthcheck = spec.health_check.as_ref().filter(|h| !h.command.is_empty()).map(|h| HealthConfig {
        test: Some(std::iter::once("CMD".to_owned()).chain(h.command.iter().cloned()).collect()),
        interval: nanos(&h.interval),
        timeout: nanos(&h.timeout),
        retries: (h.retries > 0).then_some(i64::from(h.retries)),
        start_period: nanos(&h.start_period),
        ..Default::default()
    });
    let stop_timeout = duration(&spec.stop_timeout).unwrap_or(DEFAULT_STOP_TIMEOUT);
    let network = network_of(run, defaults)?;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(spec.env.iter().map(|e| format!("{}={}", e.name, e.value)).collect()),
        labels: Some(labels(run, &defaults.node_id)),
        working_dir: non_empty(&spec.working_dir),
        user: non_empty(&spec.user),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_timeout: Some(stop_timeout.as_secs() as i64),
        healthcheck,
        host_config: Some(confined(HostConfig {
            nano_cpus: limits.filter(|l| l.cpu_millis > 0).map(|l| l.cpu_millis * 1_000_000),
            memory: limits.filter(|l| l.memory_bytes > 0).map(|l| l.memory_bytes),
            network_mode: Some(network),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            binds: (!binds.is_empty()).then_some(binds),
            restart_policy: Some(DockerRestart { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
            ..Default::default()
        })),
        ..Default::default()
    })
}

/// Parses a Docker RFC 3339 time; Docker's zero time (`0001-01-01...`) is `None`.
pub fn docker_time(s: Option<&str>) -> Option<prost_types::Timestamp> {
    let s = s?;
    if s.starts_with("0001-") {
        return None;
    }
    s.parse().ok()
}

/// Returns an inspected container's state as an [`InstanceStatus`], or `None` if it is not a
/// Persys instance. `stopped_on_request` says the agent stopped it (phase STOPPED on exit).
pub fn status_of(
    c: &ContainerInspectResponse,
    node_id: &str,
    stopped_on_request: bool,
) -> Option<(String, InstanceStatus)> {
    let labels = c.config.as_ref()?.labels.as_ref()?;
    if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
        return None;
    }
    let workload_id = labels.get(LABEL_WORKLOAD_ID).cloned().unwrap_or_default();
    let instance_id = labels
        .get(LABEL_INSTANCE_ID)
        .cloned()
        .or_else(|| c.name.as_deref().map(|n| n.trim_start_matches('/').to_owned()))
        .unwrap_or_default();
    let state = c.state.clone().unwrap_or_default();
    let exited_once = docker_time(state.finished_at.as_deref()).is_some();
    let exit_code = state.exit_code.unwrap_or(0) as i32;
    let health = state.health.as_ref().and_then(|h| h.status);
    use ContainerStateStatusEnum as S;
    let (phase, reason) = match state.status {
        Some(S::CREATED) => (WorkloadPhase::Starting, "ContainerCreated"),
        Some(S::RUNNING | S::RESTARTING) => match health {
            Some(HealthStatusEnum::STARTING) => (WorkloadPhase::Starting, "HealthCheckPending"),
            Some(HealthStatusEnum::UNHEALTHY) => (WorkloadPhase::Running, "Unhealthy"),
            _ => (WorkloadPhase::Running, ""),
        },
        Some(S::PAUSED) => (WorkloadPhase::Running, "Paused"),
        Some(S::EXITED | S::DEAD | S::REMOVING) => {
            if state.oom_killed == Some(true) {
                (WorkloadPhase::Failed, "OOMKilled")
            } else if stopped_on_request {
                (WorkloadPhase::Stopped, "Stopped")
            } else if exit_code == 0 && state.status != Some(S::DEAD) {
                (WorkloadPhase::Succeeded, "Completed")
            } else {
                (WorkloadPhase::Failed, "Error")
            }
        }
        _ => (WorkloadPhase::Starting, "Unknown"),
    };
    let status = InstanceStatus {
        instance_id,
        replica_index: labels.get(LABEL_REPLICA_INDEX).and_then(|r| r.parse().ok()).unwrap_or(0),
        node_id: node_id.to_owned(),
        phase: phase as i32,
        reason: reason.to_owned(),
        message: state.error.clone().unwrap_or_default(),
        container_id: c.id.clone().unwrap_or_default(),
        restart_count: c.restart_count.unwrap_or(0) as i32,
        exit_code: exited_once.then_some(exit_code),
        started_at: docker_time(state.started_at.as_deref()),
        finished_at: docker_time(state.finished_at.as_deref()),
        image_digest: c.image.clone().unwrap_or_default(),
        // The scheduler's bookkeeping (report order, pending restart, removal); agents order
        // their reports with the event's sequence.
        report_sequence: 0,
        restart_at: None,
        removing: false,
    };
    Some((workload_id, status))
}

/// Returns whether a phase means the container has exited.
pub fn is_exited(phase: i32) -> bool {
    [WorkloadPhase::Succeeded, WorkloadPhase::Failed, WorkloadPhase::Stopped].iter().any(|p| *p as i32 == phase)
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, ContainerState};
    use persys_proto::{
        common::v1::ResourceQuantities,
        scheduler::v1::{EnvVar, PortMapping, ResourceRequirements, VolumeMount, WorkloadSpec},
    };

    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            node_id: "node-1".into(),
            network_mode: "bridge".into(),
            volume_roots: vec!["/srv/data".into()],
            allowed_networks: vec!["backend".into()],
            pull_timeout: std::time::Duration::from_secs(600),
            pull_attempts: 3,
        }
    }

    fn run(spec: WorkloadSpec) -> RunInstance {
        RunInstance {
            workload_id: "w1".into(),
            instance_id: "w1-0-abc".into(),
            replica_index: 2,
            workload_name: "web".into(),
            spec: Some(spec),
            owner_role: Role::Member as i32,
            owner_id: "0190a6e2-7d1c-7000-8000-00000000000a".into(),
        }
    }

    fn on(network: &str, owner: Role) -> RunInstance {
        let mut r = run(WorkloadSpec { image: "x".into(), network: network.into(), ..Default::default() });
        r.owner_role = owner as i32;
        r
    }

    #[test]
    fn only_admins_workloads_join_the_hosts_or_another_containers_network() {
        let network = |network: &str, owner| {
            create_body(&on(network, owner), &defaults()).map(|b| b.host_config.unwrap().network_mode.unwrap())
        };
        for (asked, got) in [("", "bridge"), ("bridge", "bridge"), ("none", "none"), ("backend", "backend")] {
            assert_eq!(network(asked, Role::Member).unwrap(), got);
        }
        for refused in ["host", "container:db", "etcd-net"] {
            for owner in [Role::Member, Role::Viewer, Role::Unspecified] {
                assert_eq!(network(refused, owner).unwrap_err().reason, "NotAllowed", "{refused} for {owner:?}");
            }
            assert_eq!(network(refused, Role::Admin).unwrap(), refused);
        }
    }

    #[test]
    fn containers_get_no_privilege_beyond_dockers_defaults_whoever_owns_them() {
        for owner in [Role::Member, Role::Admin] {
            let host = create_body(&on("", owner), &defaults()).unwrap().host_config.unwrap();
            assert_eq!(host.privileged, Some(false));
            assert_eq!(host.ipc_mode.as_deref(), Some("private"), "not the daemon's default, which may be shareable");
            assert_eq!(host.publish_all_ports, Some(false));
            assert!(host.cap_add.is_none() && host.devices.is_none() && host.device_requests.is_none());
            assert!(host.device_cgroup_rules.is_none() && host.security_opt.is_none() && host.sysctls.is_none());
            assert!(host.pid_mode.is_none() && host.uts_mode.is_none() && host.userns_mode.is_none());
            assert!(host.cgroup_parent.is_none() && host.volumes_from.is_none() && host.links.is_none());
        }
    }

    #[test]
    fn a_spec_becomes_a_labelled_limited_container_without_a_restart_policy() {
        let spec = WorkloadSpec {
            image: "nginx:1.27".into(),
            command: vec!["/bin/sh".into()],
            args: vec!["-c".into(), "echo hi".into()],
            env: vec![EnvVar { name: "A".into(), value: "1".into(), sensitive: true }],
            ports: vec![PortMapping { container_port: 80, host_port: 8080, ..Default::default() }],
            resources: Some(ResourceRequirements {
                requests: None,
                limits: Some(ResourceQuantities { cpu_millis: 500, memory_bytes: 64 << 20, disk_bytes: 0 }),
            }),
            labels: [("team".to_owned(), "a".to_owned()), ("persys.managed".to_owned(), "false".to_owned())].into(),
            volumes: vec![VolumeMount { source: "data".into(), target: "/data".into(), read_only: true }],
            working_dir: "/app".into(),
            user: "1000:1000".into(),
            ..Default::default()
        };
        let body = create_body(&run(spec), &defaults()).unwrap();
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.restart_policy.as_ref().unwrap().name, Some(RestartPolicyNameEnum::NO));
        assert_eq!(host.binds.as_ref().unwrap(), &["persys-0190a6e2-7d1c-7000-8000-00000000000a.data:/data:ro"]);
        let binding = &host.port_bindings.as_ref().unwrap()["80/tcp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_port.as_deref(), Some("8080"));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels["persys.managed"], "true");
        assert_eq!(labels["persys.workload-name"], "web");
        assert_eq!(labels["persys.replica-index"], "2");
        assert_eq!(labels["persys.node-id"], "node-1");
        assert_eq!(labels["team"], "a");
        assert_eq!(body.entrypoint.as_ref().unwrap(), &["/bin/sh"]);
        assert_eq!(body.env.as_ref().unwrap(), &["A=1"]);
        assert_eq!(body.stop_timeout, Some(10));
    }

    fn mount(source: &str) -> WorkloadSpec {
        WorkloadSpec {
            image: "x".into(),
            volumes: vec![VolumeMount { source: source.into(), target: "/d".into(), read_only: false }],
            ..Default::default()
        }
    }

    fn binds(run: &RunInstance, defaults: &Defaults) -> Result<Vec<String>, CommandError> {
        create_body(run, defaults).map(|b| b.host_config.unwrap().binds.unwrap_or_default())
    }

    #[test]
    fn host_paths_must_resolve_under_the_allowed_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A link under the root that leads out of it, as a workload mounting the root could make.
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        // The root itself named through a link is still the root.
        std::os::unix::fs::symlink(&root, base.join("root-link")).unwrap();
        let d = Defaults { volume_roots: vec![base.join("root-link")], ..defaults() };
        let at = |p: &std::path::Path| run(mount(&p.display().to_string()));

        assert_eq!(binds(&at(&root.join("a")), &d).unwrap(), [format!("{}:/d", root.join("a").display())]);
        // Not created yet: Docker creates it, under the root.
        assert_eq!(binds(&at(&root.join("new/dir")), &d).unwrap(), [format!("{}:/d", root.join("new/dir").display())]);
        for refused in
            [outside.clone(), root.join("escape"), root.join("escape/sub"), root.join("a/../../outside"), "/etc".into()]
        {
            assert_eq!(binds(&at(&refused), &d).unwrap_err().reason, "NotAllowed", "{}", refused.display());
        }
        // A root that does not exist on this machine allows nothing.
        let missing = Defaults { volume_roots: vec![base.join("missing")], ..defaults() };
        assert_eq!(binds(&at(&base.join("missing/x")), &missing).unwrap_err().reason, "NotAllowed");
    }

    #[test]
    fn named_volumes_belong_to_their_owner() {
        let as_owner = |owner: &str, source: &str| {
            let mut r = run(mount(source));
            r.owner_id = owner.into();
            binds(&r, &defaults())
        };
        let alice = as_owner("alice-1", "data").unwrap();
        let bob = as_owner("bob-2", "data").unwrap();
        assert_eq!(alice, ["persys-alice-1.data:/d"]);
        assert_ne!(alice, bob, "two owners' `data` must be different volumes");
        // Naming another owner's Docker volume, or a platform volume, only reaches one's own.
        assert_eq!(as_owner("alice-1", "persys-bob-2").unwrap(), ["persys-alice-1.persys-bob-2:/d"]);
        assert_eq!(as_owner("alice-1", "persys_certs").unwrap(), ["persys-alice-1.persys_certs:/d"]);
        for refused in ["persys-bob-2.data", "a:b", ".hidden", "-x", "", "../x"] {
            let err = as_owner("alice-1", refused).unwrap_err();
            assert_eq!(err.reason, "InvalidArgument", "{refused}");
        }
        // Owner ids that are not plain ids cannot spell a separator or another owner's key.
        let odd = as_owner("alice-1.x", "data").unwrap();
        assert!(odd[0].starts_with("persys-h") && !odd[0].contains("alice"), "{odd:?}");
        assert_ne!(as_owner("", "data").unwrap(), alice);
    }

    #[test]
    fn unspecified_pull_policy_depends_on_the_tag() {
        let unspecified = ImagePullPolicy::Unspecified as i32;
        assert_eq!(effective_pull_policy("busybox", unspecified), ImagePullPolicy::Always);
        assert_eq!(effective_pull_policy("busybox:latest", unspecified), ImagePullPolicy::Always);
        assert_eq!(effective_pull_policy("localhost:5000/busybox", unspecified), ImagePullPolicy::Always);
        assert_eq!(effective_pull_policy("busybox:1.36", unspecified), ImagePullPolicy::IfNotPresent);
        assert_eq!(effective_pull_policy("a/b@sha256:00", unspecified), ImagePullPolicy::IfNotPresent);
        assert_eq!(effective_pull_policy("busybox", ImagePullPolicy::Never as i32), ImagePullPolicy::Never);
    }

    fn inspected(status: ContainerStateStatusEnum, exit: i64, oom: bool) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("c1".into()),
            config: Some(ContainerConfig {
                labels: Some(
                    [
                        ("persys.managed", "true"),
                        ("persys.workload-id", "w1"),
                        ("persys.instance-id", "i1"),
                        ("persys.replica-index", "3"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: Some(status),
                exit_code: Some(exit),
                oom_killed: Some(oom),
                started_at: Some("2024-05-01T10:00:00.5Z".into()),
                finished_at: Some(if status == ContainerStateStatusEnum::RUNNING {
                    "0001-01-01T00:00:00Z".into()
                } else {
                    "2024-05-01T10:01:00Z".into()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn docker_states_map_to_phases() {
        use ContainerStateStatusEnum as S;
        let phase = |s, exit, oom, stopped| {
            let (_, st) = status_of(&inspected(s, exit, oom), "n", stopped).unwrap();
            (WorkloadPhase::try_from(st.phase).unwrap(), st.reason, st.exit_code)
        };
        assert_eq!(phase(S::RUNNING, 0, false, false), (WorkloadPhase::Running, String::new(), None));
        assert_eq!(phase(S::EXITED, 0, false, false), (WorkloadPhase::Succeeded, "Completed".into(), Some(0)));
        assert_eq!(phase(S::EXITED, 137, false, false), (WorkloadPhase::Failed, "Error".into(), Some(137)));
        assert_eq!(phase(S::EXITED, 137, true, false), (WorkloadPhase::Failed, "OOMKilled".into(), Some(137)));
        assert_eq!(phase(S::EXITED, 143, false, true), (WorkloadPhase::Stopped, "Stopped".into(), Some(143)));
        assert_eq!(phase(S::CREATED, 0, false, false).0, WorkloadPhase::Starting);
        let (workload, st) = status_of(&inspected(S::RUNNING, 0, false), "n", false).unwrap();
        assert_eq!((workload.as_str(), st.instance_id.as_str(), st.replica_index), ("w1", "i1", 3));
        assert_eq!(st.started_at.unwrap().seconds, 1714557600);
    }
}
