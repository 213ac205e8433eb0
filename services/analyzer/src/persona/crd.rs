//! The `ApplicationPersona` custom resource (`dorgu.io/v1`) as Dorgu's CRD defines it, field
//! for field, so personas written by Dorgu load here and personas written here apply to a
//! cluster running Dorgu's CRD. Unknown fields are ignored when reading.

use serde::{Deserialize, Serialize};

/// API version of the CRD.
pub const API_VERSION: &str = "dorgu.io/v1";
/// Kind of the CRD.
pub const KIND: &str = "ApplicationPersona";

fn is_false(b: &Option<bool>) -> bool {
    b.is_none()
}

/// The custom resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPersona {
    /// `dorgu.io/v1`.
    pub api_version: String,
    /// `ApplicationPersona`.
    pub kind: String,
    /// Metadata.
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    /// Spec.
    pub spec: Spec,
    /// Status, as the operator wrote it (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Application name.
    pub name: String,
    /// Persona version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// api|web|worker|cron|daemon.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// critical|standard|best-effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
}

/// `spec.technical`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    /// CPU.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu: String,
    /// Memory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory: String,
}

/// `spec.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    pub profile: Option<String>,
}

/// `spec.scaling`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    /// Fewest replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// Most replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Target CPU percent.
    #[serde(rename = "targetCPU", default, skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<i32>,
    /// Target memory percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory: Option<i32>,
    /// conservative|balanced|aggressive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
}

/// `spec.health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    pub port: Option<i32>,
    /// Startup grace, e.g. `30s`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub startup_grace_period: String,
}

/// `spec.dependencies[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// Name.
    pub name: String,
    /// database|cache|queue|service|external.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Required.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: Option<bool>,
    /// How to check it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health_check: String,
}

/// `spec.networking.ports[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port.
    pub port: i32,
    /// TCP|UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// What it serves.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub purpose: String,
}

/// `spec.networking.ingress`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// RollingUpdate|Recreate|BlueGreen|Canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Max surge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_surge: String,
    /// Max unavailable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_unavailable: String,
}

/// `spec.policies.maintenance`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
