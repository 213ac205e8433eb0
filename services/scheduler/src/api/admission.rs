//! What a workload spec may ask of a node, by its owner's role: the network it joins.
//!
//! Members get the node's default network, `none`, or a network an admin allowed for the
//! cluster (`--allowed-networks`); the host's network and another container's namespaces are
//! for admins only. The spec has no field for privileged mode, capabilities, devices or host
//! PID/IPC at all, and agents never grant them (see the agent's container builder), so there
//! is nothing else to refuse here. Agents check the network again before they create a
//! container.

use persys_kit::{error::Violations, identity::Role};
use persys_proto::scheduler::v1::WorkloadSpec;

/// Returns whether `network` joins the host's network or another container's namespace.
pub fn is_host_level(network: &str) -> bool {
    network == "host" || network.starts_with("container:")
}

/// The cluster's admission policy for workload specs, set by admins at start.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    allowed_networks: Vec<String>,
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
        Self { allowed_networks }
    }

    /// Records a violation of `spec.network` when `role` may not use the spec's network.
    pub fn check_network(&self, role: Role, spec: &WorkloadSpec, v: &mut Violations) {
        check_network(role, spec, &self.allowed_networks, v);
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
}
