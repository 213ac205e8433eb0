//! `ClusterPersona` (`dorgu.io/v1`, cluster-scoped, one per cluster): Dorgu's CRD field for
//! field. The spec describes the cluster's intended policies and conventions (descriptive:
//! nothing enforces them yet); the status is what discovery found.

// kube-derive's repeated `printcolumn(type_ = …)` reads to clippy as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::persona::{Resources, Scaling};

/// `spec` of a [`ClusterPersona`].
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dorgu.io",
    version = "v1",
    kind = "ClusterPersona",
    plural = "clusterpersonas",
    status = "ClusterPersonaStatus",
    derive = "PartialEq",
    derive = "Default",
    crates(kube_core = "::kube_core"),
    printcolumn(name = "Environment", type_ = "string", json_path = ".spec.environment"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.resourceSummary.nodeCount"),
    printcolumn(name = "Apps", type_ = "integer", json_path = ".status.applicationCount"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPersonaSpec {
    /// Cluster name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// development, staging, production or sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["development", "staging", "production", "sandbox"]))]
    pub environment: Option<String>,
    /// Intended policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<ClusterPolicies>,
    /// Naming and labelling conventions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conventions: Option<Conventions>,
    /// Defaults for applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Per-namespace quotas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quotas: Option<ResourceQuotas>,
}

/// `spec.policies.security`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecurity {
    /// Pods must run as non-root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_non_root: Option<bool>,
    /// Root filesystems must be read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_read_only_root: Option<bool>,
    /// Privileged containers are not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disallow_privileged: Option<bool>,
    /// Registries images may come from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_registries: Vec<String>,
    /// privileged, baseline or restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["privileged", "baseline", "restricted"]))]
    pub pod_security_standard: Option<String>,
}

/// `spec.policies.networking`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworking {
    /// Deny ingress by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_deny_ingress: Option<bool>,
    /// Deny egress by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_deny_egress: Option<bool>,
    /// CIDRs reachable outside the cluster.
    #[serde(rename = "allowedExternalCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_external_cidrs: Vec<String>,
}

/// `spec.policies`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicies {
    /// Security.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<ClusterSecurity>,
    /// Networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<ClusterNetworking>,
    /// Compliance regimes, e.g. `soc2`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compliance: Vec<String>,
}

/// `spec.conventions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conventions {
    /// Pattern names follow.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub naming_pattern: String,
    /// Labels every workload carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_labels: Vec<String>,
    /// Annotations every workload carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_annotations: Vec<String>,
    /// Prefix of application namespaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_prefix: String,
}

/// `spec.defaults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Defaults {
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Registry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    /// Sizing, as in a persona.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Scaling, as in a persona.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
}

/// `spec.resourceQuotas`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceQuotas {
    /// Pods per namespace.
    #[serde(rename = "maxPodsPerNamespace", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pods_per_namespace: Option<i32>,
    /// CPU per namespace.
    #[serde(rename = "maxCPUPerNamespace", default, skip_serializing_if = "String::is_empty")]
    pub max_cpu_per_namespace: String,
    /// Memory per namespace.
    #[serde(rename = "maxMemoryPerNamespace", default, skip_serializing_if = "String::is_empty")]
    pub max_memory_per_namespace: String,
    /// PVCs per namespace.
    #[serde(rename = "maxPVCsPerNamespace", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pvcs_per_namespace: Option<i32>,
}

/// CPU, memory, pods and ephemeral storage of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeResources {
    /// CPU.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu: String,
    /// Memory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory: String,
    /// Pods.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pods: String,
    /// Ephemeral storage.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ephemeral_storage: String,
}

/// `status.nodes[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Node.
    pub name: String,
    /// control-plane or worker.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// NodeReady is True.
    #[serde(default)]
    pub ready: bool,
    /// Capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<NodeResources>,
    /// Allocatable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<NodeResources>,
    /// Taints as `key=value:Effect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<String>,
    /// Topology and role labels.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Kubelet version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubelet_version: String,
    /// Container runtime.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_runtime: String,
}

/// `status.resourceSummary`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceSummary {
    /// Nodes.
    #[serde(rename = "nodeCount", default)]
    pub node_count: i32,
    /// Sum of capacity CPU.
    #[serde(rename = "totalCPU", default, skip_serializing_if = "String::is_empty")]
    pub total_cpu: String,
    /// Sum of capacity memory.
    #[serde(rename = "totalMemory", default, skip_serializing_if = "String::is_empty")]
    pub total_memory: String,
    /// Sum of allocatable CPU.
    #[serde(rename = "allocatableCPU", default, skip_serializing_if = "String::is_empty")]
    pub allocatable_cpu: String,
    /// Sum of allocatable memory.
    #[serde(rename = "allocatableMemory", default, skip_serializing_if = "String::is_empty")]
    pub allocatable_memory: String,
    /// CPU requested by scheduled pods.
    #[serde(rename = "usedCPU", default, skip_serializing_if = "String::is_empty")]
    pub used_cpu: String,
    /// Memory requested by scheduled pods.
    #[serde(rename = "usedMemory", default, skip_serializing_if = "String::is_empty")]
    pub used_memory: String,
    /// usedCPU / allocatableCPU, percent.
    #[serde(rename = "cpuUtilization", default, skip_serializing_if = "Option::is_none")]
    pub cpu_utilization: Option<i32>,
    /// usedMemory / allocatableMemory, percent.
    #[serde(rename = "memoryUtilization", default, skip_serializing_if = "Option::is_none")]
    pub memory_utilization: Option<i32>,
    /// Pod capacity.
    #[serde(rename = "totalPods", default)]
    pub total_pods: i32,
    /// Pods running.
    #[serde(rename = "runningPods", default)]
    pub running_pods: i32,
}

/// `status.addons[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Addon {
    /// argocd, prometheus…
    pub name: String,
    /// gitops, monitoring, logging, ingress, service-mesh, secrets, cert-management, build, other.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["gitops", "monitoring", "logging", "ingress", "service-mesh", "secrets", "cert-management", "build", "database", "other"]))]
    pub kind: String,
    /// Found.
    #[serde(default)]
    pub installed: bool,
    /// Version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its pods run.
    #[serde(default)]
    pub healthy: bool,
}

/// `status.namespaces`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceCounts {
    /// All.
    pub total: i32,
    /// Active.
    #[serde(default)]
    pub active: i32,
    /// Holding ApplicationPersonas.
    #[serde(default)]
    pub with_personas: i32,
}

/// `status` of a [`ClusterPersona`], written by the reconciler's discovery.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPersonaStatus {
    /// Discovering, Ready, Degraded or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Discovering", "Ready", "Degraded", "Unknown"]))]
    pub phase: Option<String>,
    /// When discovery last ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_discovery: Option<String>,
    /// Nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeInfo>,
    /// Totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_summary: Option<ResourceSummary>,
    /// Add-ons found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<Addon>,
    /// Namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceCounts>,
    /// e.g. v1.37.2.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// EKS, GKE, AKS, OpenShift, K3s, Kind, Minikube, Generic or Unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// ApplicationPersonas in the cluster.
    #[serde(default)]
    pub application_count: i32,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Discovered` and `Healthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
