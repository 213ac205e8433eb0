//! What a workload spec may ask of a node, by its owner's role: the network it joins, whether
//! it runs as a host process, and the volumes it mounts.
//!
//! Members get the node's default network, `none`, or a network an admin allowed for the
//! cluster (`--allowed-networks`); the host's network and another container's namespaces are
//! for admins only. Host processes (`process://`) run code on the node itself: admins only.
//! A named volume is always the owner's own (agents name it `persys-<owner>.<name>`), so a
//! spec may only use plain names; a host path must be absolute without `..`, and its agent
//! checks it again, symbolic links resolved, against the node's volume roots. The spec has no
//! field for privileged mode, capabilities, devices or host PID/IPC at all, and agents never
//! grant them (see the agent's container builder). Agents check all of this again before they
//! create a container or a process.

use std::path::{Component, Path};

use persys_kit::{error::Violations, identity::Role};
use persys_proto::{
    scheduler::v1::WorkloadSpec,
    workload::{is_host_path, is_process_image, valid_volume_name},
};

/// Returns whether `network` joins the host's network or another container's namespace.
pub fn is_host_level(network: &str) -> bool {
    network == "host" || network.starts_with("container:")
}

/// The cluster's admission policy for workload specs, set by admins at start.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    allowed_networks: Vec<String>,
    require_limits: bool,
}

impl Admission {
    /// Returns the policy allowing members the named networks in `allowed_networks` (blank
    /// entries are ignored; `host` and `container:` ones are refused by the config check).
    pub fn new(allowed_networks: &[String]) -> Self {
        let allowed_networks = allowed_networks
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty() && !is_host_level(n))
            .collect();
        Self { allowed_networks, require_limits: false }
    }

    /// Requires a CPU and a memory limit on every container workload (`--require-limits`).
    pub fn require_limits(mut self, required: bool) -> Self {
        self.require_limits = required;
        self
    }

    /// Records a violation for everything in the spec that `role` may not ask for.
    pub fn check(&self, role: Role, spec: &WorkloadSpec, v: &mut Violations) {
        check_network(role, spec, &self.allowed_networks, v);
        check_process(role, spec, v);
        check_volumes(spec, v);
        if self.require_limits {
            check_limits(spec, v);
        }
    }
}

fn check_limits(spec: &WorkloadSpec, v: &mut Violations) {
    if is_process_image(&spec.image) {
        return;
    }
    let limits = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
    v.check(
        limits.is_none_or(|l| l.cpu_millis <= 0),
        "spec.resources.limits.cpu_millis",
        "this cluster requires a CPU limit on every workload (persys workload run --cpu-limit 500m)",
    );
    v.check(
        limits.is_none_or(|l| l.memory_bytes <= 0),
        "spec.resources.limits.memory_bytes",
        "this cluster requires a memory limit on every workload (persys workload run --memory-limit 256Mi)",
    );
}

fn check_process(role: Role, spec: &WorkloadSpec, v: &mut Violations) {
    v.check(
        role != Role::Admin && !spec.image.is_empty() && is_process_image(&spec.image),
        "spec.image",
        "`process://` runs a program on the node itself; only admins may start host processes",
    );
}

fn check_volumes(spec: &WorkloadSpec, v: &mut Violations) {
    for (i, m) in spec.volumes.iter().enumerate() {
        v.check(!m.target.starts_with('/'), &format!("spec.volumes[{i}].target"), "must be an absolute path");
        if is_host_path(&m.source) {
            v.check(
                Path::new(&m.source).components().any(|c| c == Component::ParentDir),
                &format!("spec.volumes[{i}].source"),
                "a host path must not contain `..`",
            );
        } else {
            v.check(
                !valid_volume_name(&m.source),
                &format!("spec.volumes[{i}].source"),
                "a volume name (1-63 letters, digits, '_' or '-', starting with a letter or digit) or an absolute host path",
            );
        }
    }
}

fn check_network(role: Role, spec: &WorkloadSpec, allowed: &[String], v: &mut Violations) {
    let network = spec.network.trim();
    if role == Role::Admin || network.is_empty() || network == "none" {
        return;
    }
    if is_host_level(network) {
        v.check(
            true,
            "spec.network",
            format!("`{network}` shares the host's or another container's namespaces; only admins may use it"),
        );
    } else if !allowed.iter().any(|a| a == network) {
        let choices = if allowed.is_empty() { "none are allowed".to_owned() } else { allowed.join(", ") };
        v.check(
            true,
            "spec.network",
            format!(
                "network `{network}` is not allowed: leave it empty for the node's default, `none`, or one the admins allow ({choices})"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use persys_kit::ApiError;

    use super::*;

    fn verdict(role: Role, network: &str, allowed: &[&str]) -> Result<(), ApiError> {
        let spec = WorkloadSpec { network: network.into(), ..Default::default() };
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        let mut v = Violations::new();
        check_network(role, &spec, &allowed, &mut v);
        v.finish()
    }

    #[test]
    fn members_keep_to_the_default_none_and_allowed_networks() {
        for ok in ["", "none", "backend"] {
            assert!(verdict(Role::Member, ok, &["backend"]).is_ok(), "{ok}");
        }
        for bad in ["host", "container:db", "etcd-net", "bridge"] {
            let Err(ApiError::InvalidArgument(v)) = verdict(Role::Member, bad, &["backend"]) else {
                panic!("`{bad}` accepted for a member")
            };
            assert_eq!(v[0].field, "spec.network");
        }
        for any in ["host", "container:db", "etcd-net"] {
            assert!(verdict(Role::Admin, any, &[]).is_ok(), "{any}");
        }
    }

    fn fields(role: Role, spec: &WorkloadSpec) -> Vec<String> {
        let mut v = Violations::new();
        Admission::default().check(role, spec, &mut v);
        match v.finish() {
            Ok(()) => Vec::new(),
            Err(ApiError::InvalidArgument(v)) => v.into_iter().map(|f| f.field).collect(),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn limits_are_required_only_when_the_cluster_says_so() {
        use persys_proto::{common::v1::ResourceQuantities, scheduler::v1::ResourceRequirements};
        let with = |cpu: i64, memory: i64| WorkloadSpec {
            image: "busybox".into(),
            resources: Some(ResourceRequirements {
                limits: Some(ResourceQuantities { cpu_millis: cpu, memory_bytes: memory, disk_bytes: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let strict = Admission::default().require_limits(true);
        let check = |a: &Admission, spec: &WorkloadSpec| {
            let mut v = Violations::new();
            a.check(Role::Admin, spec, &mut v);
            match v.finish() {
                Ok(()) => Vec::new(),
                Err(ApiError::InvalidArgument(v)) => v.into_iter().map(|f| f.field).collect(),
                Err(e) => panic!("{e:?}"),
            }
        };
        let bare = WorkloadSpec { image: "busybox".into(), ..Default::default() };
        assert!(check(&Admission::default(), &bare).is_empty(), "no policy, no requirement");
        assert_eq!(check(&strict, &bare), ["spec.resources.limits.cpu_millis", "spec.resources.limits.memory_bytes"]);
        assert_eq!(check(&strict, &with(500, 0)), ["spec.resources.limits.memory_bytes"]);
        assert!(check(&strict, &with(500, 256 << 20)).is_empty());
        let process = WorkloadSpec { image: "process:///bin/true".into(), ..Default::default() };
        assert!(check(&strict, &process).is_empty(), "host processes are not containers");
    }

    #[test]
    fn host_processes_are_for_admins_only() {
        let spec = WorkloadSpec { image: "process:///bin/sh".into(), ..Default::default() };
        for role in [Role::Member, Role::Viewer] {
            assert_eq!(fields(role, &spec), ["spec.image"], "{role:?}");
        }
        assert!(fields(Role::Admin, &spec).is_empty());
        assert!(fields(Role::Member, &WorkloadSpec { image: "busybox".into(), ..Default::default() }).is_empty());
    }

    #[test]
    fn volumes_are_plain_names_or_clean_absolute_paths() {
        use persys_proto::scheduler::v1::VolumeMount;
        let spec = |mounts: &[(&str, &str)]| WorkloadSpec {
            image: "busybox".into(),
            volumes: mounts
                .iter()
                .map(|(s, t)| VolumeMount { source: (*s).into(), target: (*t).into(), read_only: false })
                .collect(),
            ..Default::default()
        };
        assert!(fields(Role::Member, &spec(&[("data", "/data"), ("/srv/a", "/a")])).is_empty());
        let bad = spec(&[("persys-bob.data", "/d"), ("/srv/../etc", "/e"), ("data", "relative"), ("", "/x")]);
        assert_eq!(
            fields(Role::Admin, &bad),
            ["spec.volumes[0].source", "spec.volumes[1].source", "spec.volumes[2].target", "spec.volumes[3].source"]
        );
    }
}
