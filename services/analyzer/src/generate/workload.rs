//! ServiceAccount, ConfigMap, PersistentVolumeClaims and the hardened Deployment.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, ContainerPort,
            EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
            PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext,
            PodSpec, PodTemplateSpec, Probe as K8sProbe, ResourceRequirements, SeccompProfile, SecretKeySelector,
            SecurityContext, ServiceAccount, TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use sha2::{Digest, Sha256};

use super::{Manifest, Object, labels, meta, selector, to_yaml};
use crate::{
    analysis::Analysis,
    model::{App, EnvValue, Probe},
};

/// The ServiceAccount: its own identity, with no API token mounted.
pub fn service_account(app: &App, ns: &str, env: &str) -> Manifest {
    let sa = ServiceAccount {
        metadata: meta(app, &app.name, ns, env),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    Manifest { path: "serviceaccount.yaml".into(), content: to_yaml(&sa), kind: "ServiceAccount".into(), object: None }
}

fn plain_env(app: &App) -> BTreeMap<String, String> {
    app.env
        .iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Plain(value) => Some((k.clone(), value.clone())),
            EnvValue::Secret { .. } | EnvValue::ConfigKey => None,
        })
        .collect()
}

/// The ConfigMap of plain settings, when there are any or the app requires a setting that
/// nothing sets (the user adds it here).
pub fn config_map(app: &App, ns: &str, env: &str) -> Option<Manifest> {
    let data = plain_env(app);
    if data.is_empty() && !app.env.values().any(|v| *v == EnvValue::ConfigKey) {
        return None;
    }
    let cm = ConfigMap {
        metadata: meta(app, &format!("{}-config", app.name), ns, env),
        data: Some(data),
        ..ConfigMap::default()
    };
    Some(Manifest { path: "configmap.yaml".into(), content: to_yaml(&cm), kind: "ConfigMap".into(), object: None })
}

/// The PersistentVolumeClaims of the compose volumes, one per volume however many apps mount it.
pub fn claims(analysis: &Analysis) -> Vec<Manifest> {
    let mut owners: BTreeMap<&str, &App> = BTreeMap::new();
    for app in &analysis.apps {
        for c in &app.claims {
            owners.entry(c.claim.as_str()).or_insert(app);
        }
    }
    owners
        .into_iter()
        .map(|(claim, app)| {
            let mut metadata = meta(app, claim, &analysis.options.namespace, &analysis.options.environment);
            if let Some(l) = metadata.labels.as_mut() {
                // The claim outlives any one app that mounts it.
                l.remove("app.kubernetes.io/name");
                l.remove("app.kubernetes.io/component");
                l.insert("app.kubernetes.io/name".into(), claim.to_owned());
                l.insert("app.kubernetes.io/component".into(), "storage".into());
            }
            let pvc = PersistentVolumeClaim {
                metadata,
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), Quantity("1Gi".into()))])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            };
            Manifest {
                path: format!("pvc-{claim}.yaml"),
                content: to_yaml(&pvc),
                kind: "PersistentVolumeClaim".into(),
                object: None,
            }
        })
        .collect()
}

fn probe(app: &App, readiness: bool, startup: bool) -> Option<K8sProbe> {
    let (http_get, tcp_socket, exec) = match &app.probe {
        Probe::Http { path, readiness: r, port } => {
            let path = if readiness { r.clone() } else { path.clone() };
            let action = HTTPGetAction {
                path: Some(path),
                port: IntOrString::Int(i32::from(*port)),
                ..HTTPGetAction::default()
            };
            (Some(action), None, None)
        }
        Probe::Tcp(port) => (
            None,
            Some(TCPSocketAction { port: IntOrString::Int(i32::from(*port)), ..TCPSocketAction::default() }),
            None,
        ),
        Probe::Exec(command) => (None, None, Some(ExecAction { command: Some(command.clone()) })),
        Probe::None => return None,
    };
    let (period, failure) = if startup {
        (5, (app.startup_secs.div_ceil(5)).max(1) as i32)
    } else if readiness {
        (5, 3)
    } else {
        (10, 3)
    };
    Some(K8sProbe {
        http_get,
        tcp_socket,
        exec,
        period_seconds: Some(period),
        timeout_seconds: Some(if matches!(app.probe, Probe::Exec(_)) { 5 } else { 3 }),
        failure_threshold: Some(failure),
        ..K8sProbe::default()
    })
}

fn quantity(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into())), ("memory".to_owned(), Quantity(memory.into()))])
}

fn volume_name(path: &str) -> String {
    crate::model::dns_label(path, "scratch")
}

/// The Deployment: non-root, no privilege escalation, all capabilities dropped, RuntimeDefault
/// seccomp, a read-only root filesystem with emptyDirs where the app writes, requests and
/// limits, and probes on the real health check.
pub fn deployment(app: &App, ns: &str, env: &str) -> Manifest {
    let mut env_vars: Vec<EnvVar> = Vec::new();
    for (k, v) in &app.env {
        let source = match v {
            EnvValue::Secret { optional } => EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: format!("{}-secrets", app.name),
                    key: k.clone(),
                    optional: optional.then_some(true),
                }),
                ..EnvVarSource::default()
            },
            EnvValue::ConfigKey => EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: format!("{}-config", app.name),
                    key: k.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            },
            EnvValue::Plain(_) => continue,
        };
        env_vars.push(EnvVar { name: k.clone(), value_from: Some(source), ..EnvVar::default() });
    }
    let plain = plain_env(app);
    let env_from = (!plain.is_empty()).then(|| {
        vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: format!("{}-config", app.name), optional: None }),
            ..EnvFromSource::default()
        }]
    });
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut used = BTreeSet::new();
    for s in &app.scratch {
        let mut name = volume_name(&s.path);
        while !used.insert(name.clone()) {
            name.push('x');
        }
        volumes.push(Volume {
            name: name.clone(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: s.memory.then(|| "Memory".to_owned()),
                size_limit: Some(Quantity(if s.memory { "64Mi" } else { "256Mi" }.into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount { name, mount_path: s.path.clone(), ..VolumeMount::default() });
    }
    for c in &app.claims {
        let mut name = format!("data-{}", c.claim).chars().take(63).collect::<String>();
        while !used.insert(name.clone()) {
            name.push('x');
        }
        volumes.push(Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.claim.clone(),
                read_only: c.read_only.then_some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: c.path.clone(),
            read_only: c.read_only.then_some(true),
            ..VolumeMount::default()
        });
    }
    let ports: Vec<ContainerPort> = app
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: i32::from(p.port),
            protocol: Some(if p.udp { "UDP" } else { "TCP" }.into()),
            ..ContainerPort::default()
        })
        .collect();
    let container = Container {
        name: app.name.clone(),
        image: Some(app.image.clone()),
        command: (!app.command.is_empty()).then(|| app.command.clone()),
        args: (!app.args.is_empty()).then(|| app.args.clone()),
        ports: (!ports.is_empty()).then_some(ports),
        env: (!env_vars.is_empty()).then_some(env_vars),
        env_from,
        resources: Some(ResourceRequirements {
            requests: Some(quantity(&app.requests.cpu, &app.requests.memory)),
            limits: Some(quantity(&app.limits.cpu, &app.limits.memory)),
            ..ResourceRequirements::default()
        }),
        startup_probe: probe(app, false, true),
        liveness_probe: probe(app, false, false),
        readiness_probe: probe(app, true, false),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..SecurityContext::default()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    };
    let mut annotations = app.annotations.clone();
    if !plain.is_empty() {
        // A changed ConfigMap changes this hash, which rolls the pods to pick it up.
        let digest = Sha256::digest(to_yaml(&plain).as_bytes());
        annotations.insert("dorgu.io/config-hash".into(), hex::encode(&digest[..8]));
    }
    let spread = (app.replicas > 1 || app.autoscale.is_some_and(|(_, max, _)| max > 1)).then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector { match_labels: Some(selector(app)), ..LabelSelector::default() }),
            ..TopologySpreadConstraint::default()
        }]
    });
    let pod = PodSpec {
        service_account_name: Some(app.name.clone()),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: app.run_as_user,
            run_as_group: app.run_as_user,
            fs_group: app.fs_group,
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: (!volumes.is_empty()).then_some(volumes),
        topology_spread_constraints: spread,
        ..PodSpec::default()
    };
    let strategy = if app.strategy == "Recreate" {
        DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }
    } else {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".into())),
                max_unavailable: Some(IntOrString::String("25%".into())),
            }),
        }
    };
    let mut metadata = meta(app, &app.name, ns, env);
    if !app.annotations.is_empty() {
        metadata.annotations = Some(app.annotations.clone());
    }
    let deployment = Deployment {
        metadata,
        spec: DeploymentSpec {
            // An HPA owns the count when there is one; the field then only seeds the first rollout.
            replicas: Some(app.replicas),
            revision_history_limit: Some(5),
            selector: LabelSelector { match_labels: Some(selector(app)), ..LabelSelector::default() },
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(app, env)),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    Manifest {
        path: "deployment.yaml".into(),
        content: to_yaml(&deployment),
        kind: "Deployment".into(),
        object: Some(Object::Deployment(Box::new(deployment))),
    }
}
