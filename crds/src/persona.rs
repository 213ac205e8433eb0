//! `ApplicationPersona` (`dorgu.io/v1`, namespaced): Dorgu's CRD field for field, so personas
//! written for Dorgu apply unchanged and personas written here apply to a cluster running
//! Dorgu's operator. The schema adds what Dorgu left to the operator: enums, ranges and the
//! Kubernetes quantity pattern, so the API server rejects a bad persona at apply time.

// kube-derive's repeated `printcolumn(type_ = …)` reads to clippy as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API version of the CRD.
pub const API_VERSION: &str = "dorgu.io/v1";
/// Kind of the CRD.
pub const KIND: &str = "ApplicationPersona";

/// A Kubernetes resource quantity (`100m`, `1.5Gi`, `2e3`), as the API server's own parser
/// accepts it, or empty (unset).
pub const QUANTITY: &str =
    r"^([+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?)?$";

fn is_false(b: &Option<bool>) -> bool {
    b.is_none()
}

/// `spec` of an [`ApplicationPersona`]: what the application is and needs. Written by
/// `dorgu generate` or by hand; read by the reconciler's controller and webhook.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dorgu.io",
    version = "v1",
    kind = "ApplicationPersona",
    plural = "applicationpersonas",
    namespaced,
    status = "ApplicationPersonaStatus",
    derive = "PartialEq",
    derive = "Default",
    crates(kube_core = "::kube_core"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Health", type_ = "string", json_path = ".status.health.status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPersonaSpec {
    /// Application name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Persona version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// api|web|worker|cron|daemon.
    #[schemars(extend("enum" = ["api", "web", "worker", "cron", "daemon"], "default" = "api"))]
    #[serde(rename = "type", default)]
    pub kind: String,
    /// critical|standard|best-effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["critical", "standard", "best-effort"]))]
    pub tier: Option<String>,
    /// Technology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technical: Option<Technical>,
    /// Sizing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Replicas and autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// Health endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Backing services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    /// Ports and ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,
    /// Responsibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
    /// Policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Policies>,
    /// Environment variables the application reads or is given (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// `spec.env[]`: one environment variable, how the code needs it and where the Deployment
/// takes it from. Values are never listed; only a non-secret default written in the code.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name, as Kubernetes accepts it in a container's `env`.
    #[schemars(regex(pattern = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"), length(min = 1))]
    pub name: String,
    /// required|defaulted|optional; unset when no read was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["required", "defaulted", "optional"]))]
    pub need: Option<String>,
    /// configMap|secret|image|missing|unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["configMap", "secret", "image", "missing", "unset"]))]
    pub source: Option<String>,
    /// The default the code falls back to (never a secret's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default: String,
    /// Where the code reads it, `file:line`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub read_at: String,
}

/// `spec.technical`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Technical {
    /// Language.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language: String,
    /// Framework.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub framework: String,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// CPU and memory strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    /// CPU.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = QUANTITY))]
    pub cpu: String,
    /// Memory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = QUANTITY))]
    pub memory: String,
}

/// `spec.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Amounts>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Amounts>,
    /// minimal|standard|compute-heavy|memory-heavy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["minimal", "standard", "compute-heavy", "memory-heavy"]))]
    pub profile: Option<String>,
}

/// `spec.scaling`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    /// Fewest replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_replicas: Option<i32>,
    /// Most replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
    /// Target CPU percent.
    #[serde(rename = "targetCPU", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu: Option<i32>,
    /// Target memory percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_memory: Option<i32>,
    /// conservative|balanced|aggressive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["conservative", "balanced", "aggressive"]))]
    pub behavior: Option<String>,
}

/// `spec.health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Liveness path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub liveness_path: String,
    /// Readiness path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub readiness_path: String,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Startup grace, e.g. `30s`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub startup_grace_period: String,
}

/// `spec.dependencies[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// Name.
    pub name: String,
    /// database|cache|queue|service|external.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["database", "cache", "queue", "service", "external"]))]
    pub kind: Option<String>,
    /// Required.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: Option<bool>,
    /// How to check it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health_check: String,
}

/// `spec.networking.ports[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// TCP|UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["TCP", "UDP", "SCTP"]))]
    pub protocol: Option<String>,
    /// What it serves.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub purpose: String,
}

/// `spec.networking.ingress`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ingress {
    /// Enabled.
    #[serde(default)]
    pub enabled: bool,
    /// Host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// TLS.
    #[serde(default)]
    pub tls_enabled: bool,
}

/// `spec.networking`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    /// Ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
}

/// `spec.ownership`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    /// Team.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub team: String,
    /// Owner.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// On-call.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oncall: String,
    /// Runbook.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runbook: String,
}

/// `spec.policies.security`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    /// runAsNonRoot required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Read-only root filesystem required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Privilege escalation allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// The image's default user is root.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub image_runs_as_root: bool,
    /// UID to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
}

/// `spec.policies.deployment`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// RollingUpdate|Recreate|BlueGreen|Canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["RollingUpdate", "Recreate", "BlueGreen", "Canary"]))]
    pub strategy: Option<String>,
    /// Max surge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_surge: String,
    /// Max unavailable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_unavailable: String,
}

/// `spec.policies.maintenance`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Maintenance {
    /// Window.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub window: String,
    /// Automatic restarts allowed.
    #[serde(default)]
    pub auto_restart: bool,
}

/// `spec.policies`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    /// Security.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// Maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
}

/// `status` of an [`ApplicationPersona`], owned by the reconciler (server-side apply, field
/// manager `persys-reconciler`). Dorgu's fields, plus what Dorgu left out: the generation it
/// describes, the workload it resolved to and the replica counts behind the health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPersonaStatus {
    /// Pending (no workload yet), Active, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Pending", "Active", "Degraded", "Failed"]))]
    pub phase: Option<String>,
    /// When the reconciler last wrote this status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// The persona generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The workload the persona resolved to, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadStatus>,
    /// Images deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployments: Option<DeploymentsStatus>,
    /// Health of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// The workload checked against the persona.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationStatus>,
    /// What was learned from the workload's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<Learned>,
    /// Suggested changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<Recommendation>,
    /// The ArgoCD Application deploying this app.
    #[serde(rename = "argoCD", default, skip_serializing_if = "Option::is_none")]
    pub argo_cd: Option<ArgoCdStatus>,
    /// `Ready` and `Validated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// `status.workload`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Deployment or StatefulSet.
    pub kind: String,
    /// Its name, in the persona's namespace.
    pub name: String,
    /// The rung that matched: `app.kubernetes.io/name`, `app`, `name` or `selector`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub matched_by: String,
}

/// `status.deployments`. Only `current` is written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentsStatus {
    /// The first container's image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current: String,
    /// The last image that became healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_successful: String,
    /// The last image that failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_failed: String,
}

/// A pod of the workload that is failing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodFailure {
    /// Pod.
    pub pod_name: String,
    /// Container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// `CrashLoopBackOff`, `ImagePullBackOff`, `OOMKilled`, `Unschedulable`…
    pub reason: String,
    /// What Kubernetes said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `status.health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// Healthy, Degraded, Unhealthy or Unknown.
    #[schemars(extend("enum" = ["Healthy", "Degraded", "Unhealthy", "Unknown"]))]
    pub status: String,
    /// When it was checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Replicas wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Replicas ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods failing, at most ten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_failures: Vec<PodFailure>,
}

/// One finding of the validation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationIssue {
    /// error, warning or info.
    #[schemars(extend("enum" = ["error", "warning", "info"]))]
    pub severity: String,
    /// Stable rule id, such as `security.run-as-non-root`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// The field at fault.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suggestion: String,
}

/// `status.validation`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationStatus {
    /// No errors (warnings allowed).
    pub passed: bool,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Findings, errors first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<ValidationIssue>,
}

/// `status.learned.resourceBaseline`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceBaseline {
    /// Average CPU, such as `120m`.
    #[serde(rename = "avgCPU", default, skip_serializing_if = "String::is_empty")]
    pub avg_cpu: String,
    /// Average memory, such as `256Mi`.
    #[serde(rename = "avgMemory", default, skip_serializing_if = "String::is_empty")]
    pub avg_memory: String,
    /// Peak CPU.
    #[serde(rename = "peakCPU", default, skip_serializing_if = "String::is_empty")]
    pub peak_cpu: String,
    /// Peak memory.
    #[serde(rename = "peakMemory", default, skip_serializing_if = "String::is_empty")]
    pub peak_memory: String,
}

/// `status.learned`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Learned {
    /// Resource use over the last hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_baseline: Option<ResourceBaseline>,
    /// When it was learned (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_learned: Option<String>,
}

/// `status.recommendations[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// resource, scaling, security, cost or performance.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["resource", "scaling", "security", "cost", "performance"]))]
    pub kind: String,
    /// high, medium or low.
    #[schemars(extend("enum" = ["high", "medium", "low"]))]
    pub priority: String,
    /// What.
    pub message: String,
    /// How.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
}

/// `status.argoCD`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdStatus {
    /// Synced, OutOfSync or Unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sync_status: String,
    /// Healthy, Degraded, Progressing, Suspended, Missing or Unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health_status: String,
    /// When the last sync finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// Git revision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// Application.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application_name: String,
    /// Its namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application_namespace: String,
}
