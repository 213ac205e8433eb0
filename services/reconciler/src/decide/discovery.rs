//! The ClusterPersona's discovery, as pure functions of what the API server lists: nodes,
//! their platform, the resource summary, add-ons and the phase.
//!
//! Fixed against Dorgu: the platform is read from the nodes' full label sets (Dorgu filtered
//! them first, so only providerID ever decided); used CPU and memory are the requests of pods
//! scheduled on a node and not finished (Dorgu's 1689% came from counting unscheduled pods);
//! add-ons are matched by the pod's `app.kubernetes.io/name` label or name prefix, not a
//! substring anywhere in the name.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Node, Pod},
    apimachinery::pkg::api::resource::Quantity,
};
use persys_analyzer::quantity;
use persys_crds::cluster::{Addon, NodeInfo, NodeResources, ResourceSummary};

fn q(map: Option<&BTreeMap<String, Quantity>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).map(|q| q.0.clone()).unwrap_or_default()
}

fn resources(map: Option<&BTreeMap<String, Quantity>>) -> Option<NodeResources> {
    map.map(|m| NodeResources {
        cpu: q(Some(m), "cpu"),
        memory: q(Some(m), "memory"),
        pods: q(Some(m), "pods"),
        ephemeral_storage: q(Some(m), "ephemeral-storage"),
    })
}

/// Labels worth showing: topology, OS and architecture, roles.
fn shown(key: &str) -> bool {
    ["node.kubernetes.io/", "topology.kubernetes.io/", "node-role.kubernetes.io/"].iter().any(|p| key.starts_with(p))
        || matches!(key, "kubernetes.io/arch" | "kubernetes.io/os")
}

/// Whether NodeReady is True.
pub fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One node as the status shows it.
pub fn node_info(node: &Node) -> NodeInfo {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let control_plane = labels.contains_key("node-role.kubernetes.io/control-plane")
        || labels.contains_key("node-role.kubernetes.io/master");
    let status = node.status.clone().unwrap_or_default();
    let info = status.node_info.clone().unwrap_or_default();
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        role: if control_plane { "control-plane" } else { "worker" }.into(),
        ready: ready(node),
        capacity: resources(status.capacity.as_ref()),
        allocatable: resources(status.allocatable.as_ref()),
        taints: node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .map(|ts| {
                ts.iter()
                    .map(|t| match t.value.as_deref() {
                        Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
                        _ => format!("{}:{}", t.key, t.effect),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        labels: labels.into_iter().filter(|(k, _)| shown(k)).collect(),
        kubelet_version: info.kubelet_version,
        container_runtime: info.container_runtime_version,
    }
}

/// The platform, from any node's labels, then the first node's providerID.
pub fn platform(nodes: &[Node]) -> String {
    const BY_LABEL: [(&str, &str); 7] = [
        ("eks.amazonaws.com", "EKS"),
        ("cloud.google.com/gke", "GKE"),
        ("kubernetes.azure.com", "AKS"),
        ("node.openshift.io", "OpenShift"),
        ("minikube.k8s.io", "Minikube"),
        ("kind.x-k8s.io", "Kind"),
        ("k3s.io", "K3s"),
    ];
    if nodes.is_empty() {
        return "Unknown".into();
    }
    for (needle, name) in BY_LABEL {
        let labelled = nodes.iter().any(|n| {
            n.metadata.labels.as_ref().is_some_and(|l| l.keys().chain(l.values()).any(|s| s.contains(needle)))
        });
        if labelled {
            return name.into();
        }
    }
    const BY_PROVIDER: [(&str, &str); 5] =
        [("aws://", "EKS"), ("gce://", "GKE"), ("azure://", "AKS"), ("kind://", "Kind"), ("k3s://", "K3s")];
    let provider = nodes[0].spec.as_ref().and_then(|s| s.provider_id.clone()).unwrap_or_default();
    BY_PROVIDER.iter().find(|(p, _)| provider.starts_with(p)).map_or("Generic", |(_, n)| n).into()
}

fn capacity(n: &Node) -> Option<&BTreeMap<String, Quantity>> {
    n.status.as_ref().and_then(|s| s.capacity.as_ref())
}

fn allocatable(n: &Node) -> Option<&BTreeMap<String, Quantity>> {
    n.status.as_ref().and_then(|s| s.allocatable.as_ref())
}

fn sum(nodes: &[Node], pick: fn(&Node) -> Option<&BTreeMap<String, Quantity>>, key: &str) -> f64 {
    nodes.iter().filter_map(|n| pick(n).and_then(|m| m.get(key))).filter_map(|q| quantity::parse(&q.0).ok()).sum()
}

fn pod_request(pod: &Pod, key: &str) -> f64 {
    let Some(spec) = pod.spec.as_ref() else { return 0.0 };
    let request = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(key))
            .and_then(|q| quantity::parse(&q.0).ok())
            .unwrap_or(0.0)
    };
    let apps: f64 = spec.containers.iter().map(request).sum();
    let init = spec.init_containers.iter().flatten().map(request).fold(0.0, f64::max);
    apps.max(init)
}

/// Whether a pod counts towards used resources: scheduled on a node, not finished.
pub fn counts(pod: &Pod) -> bool {
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    scheduled && !matches!(phase, "Succeeded" | "Failed")
}

fn cores(v: f64) -> String {
    if v == 0.0 {
        return String::new();
    }
    if (v * 1000.0).round() % 1000.0 == 0.0 {
        format!("{}", v.round() as i64)
    } else {
        format!("{}m", (v * 1000.0).round() as i64)
    }
}

fn bytes(v: f64) -> String {
    if v == 0.0 {
        return String::new();
    }
    const GI: f64 = 1_073_741_824.0;
    if v >= GI { format!("{:.1}Gi", v / GI) } else { format!("{}Mi", (v / 1_048_576.0).round() as i64) }
}

fn percent(used: f64, of: f64) -> Option<i32> {
    (of > 0.0).then(|| (used / of * 100.0).round() as i32)
}

/// Capacity, allocatable, requests of scheduled pods and pod counts.
pub fn summary(nodes: &[Node], pods: &[Pod]) -> ResourceSummary {
    let (alloc_cpu, alloc_mem) = (sum(nodes, allocatable, "cpu"), sum(nodes, allocatable, "memory"));
    let scheduled: Vec<&Pod> = pods.iter().filter(|p| counts(p)).collect();
    let used_cpu: f64 = scheduled.iter().map(|p| pod_request(p, "cpu")).sum();
    let used_mem: f64 = scheduled.iter().map(|p| pod_request(p, "memory")).sum();
    ResourceSummary {
        node_count: nodes.len() as i32,
        total_cpu: cores(sum(nodes, capacity, "cpu")),
        total_memory: bytes(sum(nodes, capacity, "memory")),
        allocatable_cpu: cores(alloc_cpu),
        allocatable_memory: bytes(alloc_mem),
        used_cpu: cores(used_cpu),
        used_memory: bytes(used_mem),
        cpu_utilization: percent(used_cpu, alloc_cpu),
        memory_utilization: percent(used_mem, alloc_mem),
        total_pods: sum(nodes, capacity, "pods") as i32,
        running_pods: pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count() as i32,
    }
}

/// The add-ons looked for: (name, the namespaces it is usually in, type).
pub const ADDONS: [(&str, &[&str], &str); 9] = [
    ("argocd", &["argocd"], "gitops"),
    ("prometheus", &["monitoring", "prometheus"], "monitoring"),
    ("grafana", &["monitoring", "grafana"], "monitoring"),
    ("cert-manager", &["cert-manager"], "cert-management"),
    ("ingress-nginx", &["ingress-nginx"], "ingress"),
    ("external-secrets", &["external-secrets"], "secrets"),
    ("istio", &["istio-system"], "service-mesh"),
    ("kpack", &["kpack"], "build"),
    ("metrics-server", &["kube-system"], "monitoring"),
];

fn image_tag(pod: &Pod) -> String {
    let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
    let image = image.split('@').next().unwrap_or("");
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') && !repo.is_empty() && tag != "latest" => tag.into(),
        _ => String::new(),
    }
}

/// Each add-on of [`ADDONS`], installed or not: a pod in one of its namespaces whose
/// `app.kubernetes.io/name` label or name starts with the add-on's name. Version from the
/// `app.kubernetes.io/version` label, else the image tag; healthy when such a pod runs and is
/// ready.
pub fn addons(pods: &[Pod]) -> Vec<Addon> {
    ADDONS
        .iter()
        .map(|(name, namespaces, kind)| {
            let found: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.namespace.as_deref().is_some_and(|ns| namespaces.contains(&ns)))
                .filter(|p| {
                    let label = p.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/name"));
                    label.is_some_and(|l| l.starts_with(name))
                        || p.metadata.name.as_deref().is_some_and(|n| n.starts_with(name))
                })
                .collect();
            let healthy = found.iter().any(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase.as_deref() == Some("Running")
                        && s.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
                })
            });
            let version = found
                .iter()
                .find_map(|p| p.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/version")).cloned())
                .or_else(|| found.iter().map(|p| image_tag(p)).find(|t| !t.is_empty()))
                .unwrap_or_default();
            Addon {
                name: (*name).into(),
                kind: (*kind).into(),
                installed: !found.is_empty(),
                version,
                namespace: found.first().and_then(|p| p.metadata.namespace.clone()).unwrap_or_default(),
                healthy,
            }
        })
        .collect()
}

/// Ready when every node is, Degraded when some are, Unknown when none are (or no nodes).
pub fn phase(nodes: &[NodeInfo]) -> (&'static str, String) {
    let ready = nodes.iter().filter(|n| n.ready).count();
    let message = format!("{ready}/{} nodes ready", nodes.len());
    match (ready, nodes.len()) {
        (_, 0) => ("Unknown", "no nodes".into()),
        (r, n) if r == n => ("Ready", message),
        (0, _) => ("Unknown", message),
        _ => ("Degraded", message),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, labels: serde_json::Value, provider: &str, ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": provider, "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "nodeInfo": {"kubeletVersion": "v1.37.2", "containerRuntimeVersion": "containerd://2.1.0",
                    "architecture": "amd64", "bootID": "", "kernelVersion": "", "kubeProxyVersion": "", "machineID": "",
                    "operatingSystem": "linux", "osImage": "", "systemUUID": ""}
            }
        }))
        .unwrap()
    }

    fn pod(ns: &str, name: &str, node: Option<&str>, phase: &str, cpu: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "quay.io/argoproj/argocd:v2.9.3",
                "resources": {"requests": {"cpu": cpu, "memory": "512Mi"}}}],
                "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "2"}}}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    #[test]
    fn nodes_show_role_readiness_taints_and_only_useful_labels() {
        let n = node(
            "cp",
            json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/os": "linux", "team": "x"}),
            "",
            true,
        );
        let info = node_info(&n);
        assert_eq!(info.role, "control-plane");
        assert!(info.ready);
        assert_eq!(info.taints, ["dedicated=gpu:NoSchedule"]);
        assert_eq!(
            info.labels.keys().collect::<Vec<_>>(),
            ["kubernetes.io/os", "node-role.kubernetes.io/control-plane"]
        );
        assert_eq!(info.kubelet_version, "v1.37.2");
        assert_eq!(info.capacity.unwrap().memory, "8Gi");
    }

    #[test]
    fn platform_from_unfiltered_labels_then_provider_id() {
        let gke = node("a", json!({"cloud.google.com/gke-nodepool": "pool"}), "kind://docker/x", true);
        assert_eq!(platform(&[gke]), "GKE", "labels first, even ones not shown in the status");
        assert_eq!(platform(&[node("a", json!({}), "kind://docker/kind/kind-worker", true)]), "Kind");
        assert_eq!(platform(&[node("a", json!({}), "", true)]), "Generic");
        assert_eq!(platform(&[]), "Unknown");
    }

    #[test]
    fn used_counts_only_scheduled_unfinished_pods_with_init_containers_as_a_floor() {
        let nodes = vec![node("a", json!({}), "", true), node("b", json!({}), "", false)];
        let pods = vec![
            pod("x", "on-node", Some("a"), "Running", "500m", json!({})),
            pod("x", "big-init", Some("a"), "Running", "100m", json!({})),
            pod("x", "unscheduled", None, "Pending", "64", json!({})),
            pod("x", "done", Some("a"), "Succeeded", "64", json!({})),
        ];
        let s = summary(&nodes, &pods);
        assert_eq!(s.node_count, 2);
        assert_eq!((s.total_cpu.as_str(), s.allocatable_cpu.as_str()), ("8", "7600m"));
        // Each scheduled pod counts its init container's 2 CPUs as the floor: 2 + 2.
        assert_eq!(s.used_cpu, "4");
        assert_eq!(s.cpu_utilization, Some(53));
        assert_eq!(s.used_memory, "1.0Gi");
        assert_eq!((s.total_pods, s.running_pods), (220, 2));
    }

    #[test]
    fn addons_by_label_or_name_prefix_in_their_namespaces() {
        let pods = vec![
            pod("argocd", "argocd-server-7d9", Some("a"), "Running", "1", json!({})),
            pod(
                "monitoring",
                "x-1",
                Some("a"),
                "Pending",
                "1",
                json!({"app.kubernetes.io/name": "grafana", "app.kubernetes.io/version": "11.0.0"}),
            ),
            pod("default", "prometheus-fake", Some("a"), "Running", "1", json!({})),
            pod("monitoring", "my-prometheus-exporter", Some("a"), "Running", "1", json!({})),
        ];
        let found = addons(&pods);
        let get = |n: &str| found.iter().find(|a| a.name == n).unwrap().clone();
        let argocd = get("argocd");
        assert!(argocd.installed && argocd.healthy);
        assert_eq!((argocd.version.as_str(), argocd.namespace.as_str()), ("v2.9.3", "argocd"));
        let grafana = get("grafana");
        assert!(grafana.installed && !grafana.healthy, "installed but not running");
        assert_eq!(grafana.version, "11.0.0");
        assert!(!get("prometheus").installed, "wrong namespace or not a prefix");
        assert_eq!(found.len(), ADDONS.len(), "every add-on is reported, installed or not");
    }

    #[test]
    fn phase_from_node_readiness() {
        let info = |ready| NodeInfo { ready, ..NodeInfo::default() };
        assert_eq!(phase(&[info(true), info(true)]).0, "Ready");
        assert_eq!(phase(&[info(true), info(false)]), ("Degraded", "1/2 nodes ready".into()));
        assert_eq!(phase(&[info(false)]).0, "Unknown");
        assert_eq!(phase(&[]).0, "Unknown");
    }
}
