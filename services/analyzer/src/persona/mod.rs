//! The `ApplicationPersona`: built from the analysis, written as the CRD (`dorgu.io/v1`) and
//! as a short PERSONA.md for whoever is on call.

pub mod convert;
pub mod crd;
mod markdown;
pub mod spelling;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
pub use markdown::markdown;
use persys_proto::{
    analyzer::v1::{
        AppType, ApplicationPersonaSpec, DependencyType, DeploymentPolicy, DeploymentStrategy, EnvNeed, EnvSource,
        MaintenancePolicy, PersonaDependency, PersonaEnvVar, PersonaHealth, PersonaIngress, PersonaNetworking,
        PersonaOwnership, PersonaPolicies, PersonaPort, PersonaResources, PersonaScaling, PersonaTechnical,
        ResourceAmounts, ResourceProfile, ScalingBehavior, SecurityPolicy, Tier,
    },
    common::v1::Protocol,
};

use crate::{
    analysis::Analysis,
    detect::Need,
    model::{App, AppKind, EnvValue, Probe, is_secret},
};

fn app_type(kind: AppKind) -> AppType {
    match kind {
        AppKind::Api => AppType::Api,
        AppKind::Web => AppType::Web,
        AppKind::Worker => AppType::Worker,
        AppKind::Cron => AppType::Cron,
        AppKind::Daemon => AppType::Daemon,
    }
}

/// Lists the variables the application reads or is given, by name: how the code needs each,
/// where the Deployment takes it from, and a default only when the code writes a literal one
/// that is not secret. Values set by compose or env files are never copied here.
fn env_vars(app: &App) -> Vec<PersonaEnvVar> {
    let names: std::collections::BTreeSet<&String> =
        app.env.keys().chain(app.env_unset.iter()).chain(app.env_reads.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let read = app.env_reads.get(name);
            let need = match read.map(|r| &r.need) {
                None => EnvNeed::Unspecified,
                Some(Need::Required) => EnvNeed::Required,
                Some(Need::Default(_)) => EnvNeed::Defaulted,
                Some(Need::Optional) => EnvNeed::Optional,
            };
            let source = match app.env.get(name) {
                Some(EnvValue::Plain(_)) => EnvSource::ConfigMap,
                Some(EnvValue::Secret { .. }) => EnvSource::Secret,
                Some(EnvValue::ConfigKey) => EnvSource::Missing,
                None if app.env_unset.contains(name) => EnvSource::Unset,
                None => EnvSource::Image,
            };
            let default_value = match read.map(|r| &r.need) {
                Some(Need::Default(Some(v))) if !is_secret(name, Some(v)) && !is_secret(name, None) => v.clone(),
                _ => String::new(),
            };
            PersonaEnvVar {
                name: name.clone(),
                need: need as i32,
                source: source as i32,
                default_value,
                read_at: read.map(|r| r.location()).unwrap_or_default(),
            }
        })
        .collect()
}

/// Builds the persona of one application.
pub fn spec_for(analysis: &Analysis, app: &App) -> ApplicationPersonaSpec {
    let tier = match app.tier.as_str() {
        "critical" => Tier::Critical,
        "best-effort" => Tier::BestEffort,
        _ => Tier::Standard,
    };
    let profile = match app.profile.as_str() {
        "minimal" => ResourceProfile::Minimal,
        "compute-heavy" => ResourceProfile::ComputeHeavy,
        "memory-heavy" => ResourceProfile::MemoryHeavy,
        _ => ResourceProfile::Standard,
    };
    let behavior = match app.behavior.as_str() {
        "conservative" => ScalingBehavior::Conservative,
        "aggressive" => ScalingBehavior::Aggressive,
        _ => ScalingBehavior::Balanced,
    };
    let (min, max, cpu) = app.autoscale.unwrap_or((app.replicas, app.replicas.max(1), 0));
    let health = match &app.probe {
        Probe::Http { path, readiness, port } => Some(PersonaHealth {
            liveness_path: path.clone(),
            readiness_path: readiness.clone(),
            port: i32::from(*port),
            startup_grace_period: Some(prost_types::Duration { seconds: i64::from(app.startup_secs), nanos: 0 }),
        }),
        _ => None,
    };
    let dependencies = app
        .backing
        .iter()
        .map(|b| PersonaDependency {
            name: b.name.clone(),
            r#type: match b.kind.as_str() {
                "database" => DependencyType::Database,
                "cache" => DependencyType::Cache,
                "queue" => DependencyType::Queue,
                "external" => DependencyType::External,
                _ => DependencyType::Service,
            } as i32,
            required: Some(true),
            health_check: b.ports.first().map(|p| format!("tcp://{}:{p}", b.name)).unwrap_or_default(),
        })
        .collect();
    let ingress = app.host.as_ref().map(|host| PersonaIngress {
        enabled: true,
        host: host.clone(),
        paths: app.ingress_paths.iter().map(|(p, _)| p.clone()).collect(),
        tls_enabled: analysis.options.tls_enabled
            || analysis.config.ingress.as_ref().and_then(|i| i.tls.as_ref()).is_some_and(|t| t.enabled),
    });
    ApplicationPersonaSpec {
        name: app.name.clone(),
        version: "1".into(),
        r#type: app_type(app.kind) as i32,
        tier: tier as i32,
        technical: Some(PersonaTechnical {
            language: app.language.clone(),
            framework: app.framework.clone(),
            description: app.description.clone(),
        }),
        resources: Some(PersonaResources {
            requests: Some(ResourceAmounts { cpu: app.requests.cpu.clone(), memory: app.requests.memory.clone() }),
            limits: Some(ResourceAmounts { cpu: app.limits.cpu.clone(), memory: app.limits.memory.clone() }),
            profile: profile as i32,
        }),
        scaling: Some(PersonaScaling {
            min_replicas: min,
            max_replicas: max,
            target_cpu_percent: cpu,
            target_memory_percent: app.target_memory,
            behavior: behavior as i32,
        }),
        health,
        dependencies,
        networking: Some(PersonaNetworking {
            ports: app
                .ports
                .iter()
                .map(|p| PersonaPort {
                    port: i32::from(p.port),
                    protocol: if p.udp { Protocol::Udp } else { Protocol::Tcp } as i32,
                    purpose: p.purpose.clone(),
                })
                .collect(),
            ingress,
        }),
        ownership: Some(PersonaOwnership {
            team: app.team.clone(),
            owner: app.owner.clone(),
            repository: analysis.repository.clone(),
            oncall: app.oncall.clone(),
            runbook: app.runbook.clone(),
        }),
        policies: Some(PersonaPolicies {
            // The generated Deployment enforces all three, so the persona says so too (Dorgu
            // copied an unset org config here and claimed runAsNonRoot: false).
            security: Some(SecurityPolicy {
                run_as_non_root: Some(true),
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                image_runs_as_root: app.image_runs_as_root,
                run_as_user: app.run_as_user,
            }),
            deployment: Some(DeploymentPolicy {
                strategy: if app.strategy == "Recreate" {
                    DeploymentStrategy::Recreate
                } else {
                    DeploymentStrategy::RollingUpdate
                } as i32,
                max_surge: if app.strategy == "Recreate" { String::new() } else { "25%".into() },
                max_unavailable: if app.strategy == "Recreate" { String::new() } else { "25%".into() },
            }),
            maintenance: Some(MaintenancePolicy {
                window: app.maintenance_window.clone(),
                auto_restart: app.auto_restart,
            }),
        }),
        env: env_vars(app),
    }
}

/// Writes the persona as an `ApplicationPersona` manifest in `namespace`.
pub fn to_manifest_yaml(spec: &ApplicationPersonaSpec, namespace: &str) -> String {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), spec.name.clone()),
        ("app.kubernetes.io/managed-by".to_owned(), "dorgu".to_owned()),
    ]);
    if let Some(team) = spec.ownership.as_ref().map(|o| o.team.clone()).filter(|t| !t.is_empty()) {
        labels.insert("dorgu.io/team".into(), team);
    }
    let cr = crd::ApplicationPersona {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: convert::to_crd(spec),
        status: None,
    };
    crate::generate::to_yaml(&cr)
}

/// Reads an `ApplicationPersona` manifest (or a bare spec) and returns its spec in the
/// contract's form; errors name the field or the YAML line.
pub fn parse_manifest(text: &str) -> Result<ApplicationPersonaSpec, String> {
    /// Only what tells a manifest from a bare spec; the rest is read by the typed pass.
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        kind: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Manifest {
        spec: Option<crd::Spec>,
    }
    let head: Head = crate::yaml::from_str(text).map_err(|e| e.to_string())?;
    let spec = match head.kind.as_deref() {
        Some(crd::KIND) => crate::yaml::from_str::<Manifest>(text)
            .map_err(|e| format!("spec: {e}"))?
            .spec
            .ok_or("the ApplicationPersona has no spec")?,
        Some(other) => return Err(format!("expected kind ApplicationPersona, found {other}")),
        None => crate::yaml::from_str::<crd::Spec>(text).map_err(|e| format!("spec: {e}"))?,
    };
    convert::from_crd(&spec)
}
