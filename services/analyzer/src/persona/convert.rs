//! Between the persona of the gRPC contract and the CRD's YAML form. Enum values map by name
//! (`APP_TYPE_API` <-> `api`, `TIER_BEST_EFFORT` <-> `best-effort`, `ROLLING_UPDATE` <->
//! `RollingUpdate`): see [`super::spelling`].

use persys_proto::{
    analyzer::v1::{
        AppType, ApplicationPersonaSpec, DependencyType, DeploymentPolicy, DeploymentStrategy, EnvNeed, EnvSource,
        MaintenancePolicy, PersonaDependency, PersonaEnvVar, PersonaHealth, PersonaIngress, PersonaNetworking,
        PersonaOwnership, PersonaPolicies, PersonaPort, PersonaResources, PersonaScaling, PersonaTechnical,
        ResourceAmounts, ResourceProfile, ScalingBehavior, SecurityPolicy, Tier,
    },
    common::v1::Protocol,
};

use super::{
    crd,
    spelling::{parse, spell},
};

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Returns the CRD string of an app type (`api` for unspecified: the CRD requires one).
pub fn app_type_str(t: i32) -> String {
    spell::<AppType>(t).unwrap_or_else(|| "api".into())
}

/// Converts the contract's persona spec to the CRD spec.
pub fn to_crd(s: &ApplicationPersonaSpec) -> crd::Spec {
    let tier = spell::<Tier>(s.tier);
    let amounts = |a: &Option<ResourceAmounts>| {
        a.as_ref()
            .filter(|a| !a.cpu.is_empty() || !a.memory.is_empty())
            .map(|a| crd::Amounts { cpu: a.cpu.clone(), memory: a.memory.clone() })
    };
    let resources = s.resources.as_ref().map(|r| crd::Resources {
        requests: amounts(&r.requests),
        limits: amounts(&r.limits),
        profile: spell::<ResourceProfile>(r.profile),
    });
    let scaling = s.scaling.as_ref().map(|sc| crd::Scaling {
        min_replicas: Some(sc.min_replicas),
        max_replicas: Some(sc.max_replicas),
        target_cpu: (sc.target_cpu_percent > 0).then_some(sc.target_cpu_percent),
        target_memory: (sc.target_memory_percent > 0).then_some(sc.target_memory_percent),
        behavior: spell::<ScalingBehavior>(sc.behavior),
    });
    let health = s.health.as_ref().map(|h| crd::Health {
        liveness_path: h.liveness_path.clone(),
        readiness_path: h.readiness_path.clone(),
        port: (h.port > 0).then_some(h.port),
        startup_grace_period: h.startup_grace_period.as_ref().map(|d| format!("{}s", d.seconds)).unwrap_or_default(),
    });
    let dependencies = s
        .dependencies
        .iter()
        .map(|d| crd::Dependency {
            name: d.name.clone(),
            kind: spell::<DependencyType>(d.r#type),
            required: d.required,
            health_check: d.health_check.clone(),
        })
        .collect();
    let networking = s.networking.as_ref().map(|n| crd::Networking {
        ports: n
            .ports
            .iter()
            .map(|p| crd::Port {
                port: p.port,
                protocol: Some(if p.protocol == Protocol::Udp as i32 { "UDP" } else { "TCP" }.into()),
                purpose: p.purpose.clone(),
            })
            .collect(),
        ingress: n.ingress.as_ref().map(|i| crd::Ingress {
            enabled: i.enabled,
            host: i.host.clone(),
            paths: i.paths.clone(),
            tls_enabled: i.tls_enabled,
        }),
    });
    let ownership = s.ownership.as_ref().map(|o| crd::Ownership {
        team: o.team.clone(),
        owner: o.owner.clone(),
        repository: o.repository.clone(),
        oncall: o.oncall.clone(),
        runbook: o.runbook.clone(),
    });
    let policies = s.policies.as_ref().map(|p| crd::Policies {
        security: p.security.as_ref().map(|sec| crd::Security {
            run_as_non_root: sec.run_as_non_root,
            read_only_root_filesystem: sec.read_only_root_filesystem,
            allow_privilege_escalation: sec.allow_privilege_escalation,
            image_runs_as_root: sec.image_runs_as_root,
            run_as_user: sec.run_as_user,
        }),
        deployment: p.deployment.as_ref().map(|d| crd::Deployment {
            strategy: spell::<DeploymentStrategy>(d.strategy),
            max_surge: d.max_surge.clone(),
            max_unavailable: d.max_unavailable.clone(),
        }),
        maintenance: p
            .maintenance
            .as_ref()
            .map(|m| crd::Maintenance { window: m.window.clone(), auto_restart: m.auto_restart }),
    });
    let env = s
        .env
        .iter()
        .map(|e| crd::EnvVar {
            name: e.name.clone(),
            need: spell::<EnvNeed>(e.need),
            source: spell::<EnvSource>(e.source),
            default: e.default_value.clone(),
            read_at: e.read_at.clone(),
        })
        .collect();
    crd::Spec {
        name: s.name.clone(),
        version: s.version.clone(),
        kind: app_type_str(s.r#type),
        tier,
        technical: s.technical.as_ref().map(|t| crd::Technical {
            language: t.language.clone(),
            framework: t.framework.clone(),
            description: t.description.clone(),
        }),
        resources,
        scaling,
        health,
        dependencies,
        networking,
        ownership,
        policies,
        env,
    }
}

fn parse_enum<T>(
    value: &Option<String>,
    field: &str,
    allowed: &str,
    f: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, String> {
    match value.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => f(v).map(Some).ok_or_else(|| format!("{field}: `{v}` is not one of {allowed}")),
    }
}

/// Converts a CRD spec (e.g. read from a persona.yaml) to the contract's form; unknown enum
/// strings are errors naming the field.
pub fn from_crd(s: &crd::Spec) -> Result<ApplicationPersonaSpec, String> {
    let kind = parse::<AppType>(&s.kind)
        .ok_or_else(|| format!("spec.type: `{}` is not one of api, web, worker, cron, daemon", s.kind))?;
    let tier = parse_enum(&s.tier, "spec.tier", "critical, standard, best-effort", parse::<Tier>)?;
    let amounts =
        |a: &Option<crd::Amounts>| a.as_ref().map(|a| ResourceAmounts { cpu: a.cpu.clone(), memory: a.memory.clone() });
    let resources = match &s.resources {
        Some(r) => Some(PersonaResources {
            requests: amounts(&r.requests),
            limits: amounts(&r.limits),
            profile: parse_enum(
                &r.profile,
                "spec.resources.profile",
                "minimal, standard, compute-heavy, memory-heavy",
                parse::<ResourceProfile>,
            )?
            .map_or(0, |p| p as i32),
        }),
        None => None,
    };
    let scaling = match &s.scaling {
        Some(sc) => Some(PersonaScaling {
            min_replicas: sc.min_replicas.unwrap_or(0),
            max_replicas: sc.max_replicas.unwrap_or(0),
            target_cpu_percent: sc.target_cpu.unwrap_or(0),
            target_memory_percent: sc.target_memory.unwrap_or(0),
            behavior: parse_enum(
                &sc.behavior,
                "spec.scaling.behavior",
                "conservative, balanced, aggressive",
                parse::<ScalingBehavior>,
            )?
            .map_or(0, |b| b as i32),
        }),
        None => None,
    };
    let health = match &s.health {
        Some(h) => Some(PersonaHealth {
            liveness_path: h.liveness_path.clone(),
            readiness_path: h.readiness_path.clone(),
            port: h.port.unwrap_or(0),
            startup_grace_period: match h.startup_grace_period.as_str() {
                "" => None,
                g => Some(prost_types::Duration {
                    seconds: crate::compose::parse_seconds(g)
                        .ok_or_else(|| format!("spec.health.startupGracePeriod: `{g}` is not a duration like 30s"))?
                        as i64,
                    nanos: 0,
                }),
            },
        }),
        None => None,
    };
    let mut dependencies = Vec::new();
    for (i, d) in s.dependencies.iter().enumerate() {
        let kind = parse_enum(
            &d.kind,
            &format!("spec.dependencies[{i}].type"),
            "database, cache, queue, service, external",
            parse::<DependencyType>,
        )?;
        dependencies.push(PersonaDependency {
            name: d.name.clone(),
            r#type: kind.map_or(0, |k| k as i32),
            required: d.required,
            health_check: d.health_check.clone(),
        });
    }
    let networking = match &s.networking {
        Some(n) => {
            let mut ports = Vec::new();
            for (i, p) in n.ports.iter().enumerate() {
                let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    other => return Err(format!("spec.networking.ports[{i}].protocol: `{other}` is not TCP or UDP")),
                };
                ports.push(PersonaPort { port: p.port, protocol: protocol as i32, purpose: p.purpose.clone() });
            }
            Some(PersonaNetworking {
                ports,
                ingress: n.ingress.as_ref().map(|i| PersonaIngress {
                    enabled: i.enabled,
                    host: i.host.clone(),
                    paths: i.paths.clone(),
                    tls_enabled: i.tls_enabled,
                }),
            })
        }
        None => None,
    };
    let policies = match &s.policies {
        Some(p) => Some(PersonaPolicies {
            security: p.security.as_ref().map(|sec| SecurityPolicy {
                run_as_non_root: sec.run_as_non_root,
                read_only_root_filesystem: sec.read_only_root_filesystem,
                allow_privilege_escalation: sec.allow_privilege_escalation,
                image_runs_as_root: sec.image_runs_as_root,
                run_as_user: sec.run_as_user,
            }),
            deployment: match &p.deployment {
                Some(d) => Some(DeploymentPolicy {
                    strategy: parse_enum(
                        &d.strategy,
                        "spec.policies.deployment.strategy",
                        "RollingUpdate, Recreate, BlueGreen, Canary",
                        parse::<DeploymentStrategy>,
                    )?
                    .map_or(0, |s| s as i32),
                    max_surge: d.max_surge.clone(),
                    max_unavailable: d.max_unavailable.clone(),
                }),
                None => None,
            },
            maintenance: p
                .maintenance
                .as_ref()
                .map(|m| MaintenancePolicy { window: m.window.clone(), auto_restart: m.auto_restart }),
        }),
        None => None,
    };
    let mut env = Vec::new();
    for (i, e) in s.env.iter().enumerate() {
        let need =
            parse_enum(&e.need, &format!("spec.env[{i}].need"), "required, defaulted, optional", parse::<EnvNeed>)?;
        let source = parse_enum(
            &e.source,
            &format!("spec.env[{i}].source"),
            "configMap, secret, image, missing, unset",
            parse::<EnvSource>,
        )?;
        env.push(PersonaEnvVar {
            name: e.name.clone(),
            need: need.map_or(0, |n| n as i32),
            source: source.map_or(0, |n| n as i32),
            default_value: e.default.clone(),
            read_at: e.read_at.clone(),
        });
    }
    Ok(ApplicationPersonaSpec {
        name: s.name.clone(),
        version: s.version.clone(),
        r#type: kind as i32,
        tier: tier.map_or(0, |t| t as i32),
        technical: s.technical.as_ref().map(|t| PersonaTechnical {
            language: t.language.clone(),
            framework: t.framework.clone(),
            description: t.description.clone(),
        }),
        resources,
        scaling,
        health,
        dependencies,
        networking,
        ownership: s.ownership.as_ref().map(|o| PersonaOwnership {
            team: o.team.clone(),
            owner: o.owner.clone(),
            repository: o.repository.clone(),
            oncall: o.oncall.clone(),
            runbook: o.runbook.clone(),
        }),
        policies,
        env,
    })
}

/// Returns `s` if non-empty, for optional CRD strings.
pub fn opt(s: &str) -> Option<String> {
    non_empty(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dorgu_sample_persona_round_trips() {
        // Dorgu's own sample CR (config/samples), as users have it in their repositories.
        let yaml = r#"
name: order-service
version: "1"
type: api
tier: critical
technical: {language: java, framework: spring}
resources:
  requests: {cpu: 500m, memory: 1Gi}
  limits: {cpu: 2000m, memory: 2Gi}
  profile: standard
scaling: {minReplicas: 2, maxReplicas: 10, targetCPU: 70, behavior: balanced}
health: {livenessPath: /actuator/health/liveness, readinessPath: /actuator/health/readiness, port: 8080, startupGracePeriod: 60s}
dependencies:
  - {name: mysql, type: database, required: true}
  - {name: redis, type: cache, required: false}
networking:
  ports: [{port: 8080, protocol: TCP, purpose: http}]
policies:
  security: {runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
  deployment: {strategy: RollingUpdate, maxSurge: 25%, maxUnavailable: 25%}
"#;
        let spec: crd::Spec = crate::yaml::from_str(yaml).unwrap();
        let proto = from_crd(&spec).unwrap();
        assert_eq!(proto.tier, Tier::Critical as i32);
        assert_eq!(proto.health.as_ref().unwrap().startup_grace_period.as_ref().unwrap().seconds, 60);
        assert_eq!(
            proto.policies.as_ref().unwrap().deployment.as_ref().unwrap().strategy,
            DeploymentStrategy::RollingUpdate as i32
        );
        let back = to_crd(&proto);
        assert_eq!(back.tier.as_deref(), Some("critical"));
        assert_eq!(back.scaling.as_ref().unwrap().target_cpu, Some(70));
        assert_eq!(back.dependencies[1].kind.as_deref(), Some("cache"));
        assert_eq!(back.policies.unwrap().deployment.unwrap().strategy.as_deref(), Some("RollingUpdate"));
    }

    #[test]
    fn env_round_trips() {
        let yaml = r#"
name: ledger
type: api
env:
  - {name: DATABASE_URL, need: required, source: secret, readAt: "src/app.yml:7"}
  - {name: KAFKA_BROKERS, need: defaulted, source: configMap, default: "kafka:9092"}
  - {name: TZ, source: image}
"#;
        let spec: crd::Spec = crate::yaml::from_str(yaml).unwrap();
        let proto = from_crd(&spec).unwrap();
        assert_eq!(proto.env[0].need, EnvNeed::Required as i32);
        assert_eq!(proto.env[0].source, EnvSource::Secret as i32);
        assert_eq!(proto.env[1].source, EnvSource::ConfigMap as i32);
        assert_eq!(proto.env[1].default_value, "kafka:9092");
        assert_eq!(proto.env[2].need, EnvNeed::Unspecified as i32);
        assert_eq!(to_crd(&proto), spec);
    }

    #[test]
    fn unknown_enum_values_name_the_field() {
        let spec =
            crd::Spec { name: "x".into(), kind: "api".into(), tier: Some("gold".into()), ..crd::Spec::default() };
        assert!(from_crd(&spec).unwrap_err().contains("spec.tier"));
        let spec = crd::Spec { name: "x".into(), kind: "batch".into(), ..crd::Spec::default() };
        assert!(from_crd(&spec).unwrap_err().contains("spec.type"));
        let spec = crd::Spec {
            name: "x".into(),
            kind: "api".into(),
            env: vec![crd::EnvVar { name: "A".into(), source: Some("vault".into()), ..crd::EnvVar::default() }],
            ..crd::Spec::default()
        };
        assert!(from_crd(&spec).unwrap_err().contains("spec.env[0].source"));
    }
}
