//! The application's `.dorgu.yaml`: Dorgu's app config schema, read leniently (unknown keys
//! are ignored so existing files keep working) but with file:line errors for wrong types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The file name.
pub const FILE: &str = ".dorgu.yaml";

/// A malformed `.dorgu.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct AppConfigError {
    /// File path.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// `.dorgu.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppConfig {
    /// Schema version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// About the application.
    pub app: AppSection,
    /// Deployment environment, e.g. `production`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// Requests and limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSection>,
    /// Replica range and autoscaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSection>,
    /// Extra labels for every resource.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations for the workload.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Ingress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSection>,
    /// Health endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSection>,
    /// Backing services.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<DependencySection>,
    /// Operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operations: Option<OperationsSection>,
}

/// `app:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSection {
    /// Name (DNS-1123 label).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Owning team.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub team: String,
    /// Owner contact.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Repository URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// `api`, `web`, `worker`, `cron` or `daemon`.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// `critical`, `standard` or `best-effort`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tier: String,
    /// Free-text instructions for the language model.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instructions: String,
}

/// CPU and memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Amounts {
    /// CPU quantity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpu: String,
    /// Memory quantity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub memory: String,
}

/// `resources:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSection {
    /// Requests.
    pub requests: Amounts,
    /// Limits.
    pub limits: Amounts,
}

/// `scaling:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScalingSection {
    /// Fewest replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// Most replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Target CPU percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<i32>,
    /// Target memory percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_memory: Option<i32>,
    /// `conservative`, `balanced` or `aggressive`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub behavior: String,
}

/// `ingress:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressSection {
    /// Generate an Ingress.
    pub enabled: bool,
    /// Host.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<IngressPath>,
    /// TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
}

/// One ingress path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressPath {
    /// Path.
    pub path: String,
    /// `Prefix`, `Exact` or `ImplementationSpecific`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_type: String,
}

/// Ingress TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressTls {
    /// Enable TLS.
    pub enabled: bool,
    /// Secret holding the certificate.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_name: String,
}

/// One probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeSection {
    /// HTTP path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// `health:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthSection {
    /// Liveness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<ProbeSection>,
    /// Readiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ProbeSection>,
    /// Startup grace, e.g. `60s`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub startup_grace_period: String,
}

/// One dependency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DependencySection {
    /// Name.
    pub name: String,
    /// `database`, `cache`, `queue`, `service` or `external`.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// How to check it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub health_check: String,
}

/// `operations:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationsSection {
    /// Runbook URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runbook: String,
    /// Maintenance window.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub maintenance_window: String,
    /// On-call.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub on_call: String,
    /// Automatic restarts allowed.
    pub auto_restart: bool,
}

/// Parses a `.dorgu.yaml`.
pub fn parse(text: &str, path: &str) -> Result<AppConfig, AppConfigError> {
    if text.trim().is_empty() {
        return Ok(AppConfig::default());
    }
    crate::yaml::from_str(text).map_err(|e| AppConfigError {
        file: path.to_owned(),
        line: e.position.map_or(1, |(line, _)| line),
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dorgu_fields_and_reports_bad_types() {
        let text =
            "app:\n  name: orders\n  team: commerce\n  type: api\nscaling:\n  min_replicas: 3\nunknown: kept-quiet\n";
        let c = parse(text, ".dorgu.yaml").unwrap();
        assert_eq!((c.app.name.as_str(), c.scaling.unwrap().min_replicas), ("orders", Some(3)));
        let e = parse("scaling:\n  min_replicas: lots\n", ".dorgu.yaml").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("min_replicas"), "{}", e.message);
    }
}
