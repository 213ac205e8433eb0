//! What an Environment owns, and its phase. From an [`Environment`] this decides the
//! Deployment that runs its image (none until there is an image), the Service in front of it,
//! the Ingress that serves its host (with cert-manager's issuer annotation) and the
//! HorizontalPodAutoscaler that scales it; and, from the Deployment the cluster holds, whether
//! it is Pending, Building, Running or Failed. Secrets are referenced by name, never copied.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressTLS,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use persys_crds::kapsa::{API_VERSION, Environment, IssuerRef};

/// The manager named in every owned object's `app.kubernetes.io/managed-by` label.
pub const MANAGED_BY: &str = "persys-reconciler";

/// The name of the one container of an Environment's pods.
pub const CONTAINER: &str = "app";

/// The port the app listens on when `spec.runtime.ports` names none.
pub const DEFAULT_PORT: i32 = 8080;

/// The Service's (and so the Ingress's) port.
pub const SERVICE_PORT: i32 = 80;

/// The CPU utilisation an HPA aims for when the Environment names no target.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// Why an Environment's objects could not be made. Each message says what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    /// The Environment lacks a name, namespace or uid (it was not read from the API server).
    #[error("the Environment has no metadata.{field}; only an Environment read from the API server can own objects")]
    MissingMetadata {
        /// `name`, `namespace` or `uid`.
        field: &'static str,
    },
    /// A request or limit is not a Kubernetes quantity.
    #[error(
        "{field} `{value}` is not a Kubernetes quantity; write e.g. `500m` or `2` (CPU), `256Mi` or `1Gi` (memory)"
    )]
    InvalidQuantity {
        /// The field's path (`spec.runtime.resources.limits.cpu`).
        field: String,
        /// Its value.
        value: String,
    },
    /// `spec.runtime.autoscaling` cannot be met.
    #[error("spec.runtime.autoscaling: {0}")]
    Autoscaling(String),
}

/// The objects an Environment owns. Each is named after the Environment, lives in its
/// namespace and has the Environment as its one (controller) owner.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Owned {
    /// Runs the image; `None` until the Environment has one (nothing to run yet).
    pub deployment: Option<Deployment>,
    /// ClusterIP, port 80 (`http`) to the app's first port.
    pub service: Service,
    /// Serves the host; `None` without `spec.ingress.enabled` and a host.
    pub ingress: Option<Ingress>,
    /// Scales the Deployment; `None` without `spec.runtime.autoscaling.enabled` or without a
    /// Deployment to scale.
    pub hpa: Option<HorizontalPodAutoscaler>,
}

/// The phase of an Environment and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// `Pending`, `Building`, `Running` or `Failed`.
    pub phase: &'static str,
    /// Running its image with every replica available.
    pub ready: bool,
    /// A CamelCase reason for the `Ready` condition.
    pub reason: String,
    /// A sentence for people.
    pub message: String,
}

/// Returns whether `s` is a Kubernetes quantity, by the rule of [`persys_crds::persona::QUANTITY`]
/// (an empty string passes: unset), without a regex engine.
pub fn is_quantity(s: &str) -> bool {
    /// `[0-9]+(\.[0-9]*)?|\.[0-9]+` at the start of `s`: the rest, or `None`.
    fn number(s: &str) -> Option<&str> {
        let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let whole = digits(s);
        let rest = &s[whole..];
        match rest.strip_prefix('.') {
            Some(frac) => {
                let n = digits(frac);
                (whole > 0 || n > 0).then(|| &frac[n..])
            }
            None => (whole > 0).then_some(rest),
        }
    }
    if s.is_empty() {
        return true;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let Some(suffix) = number(unsigned) else {
        return false;
    };
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        _ => suffix
            .strip_prefix(['e', 'E'])
            .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
            .and_then(number)
            .is_some_and(str::is_empty),
    }
}

/// The Environment's name, namespace and uid.
struct Identity<'e> {
    name: &'e str,
    namespace: &'e str,
    uid: &'e str,
}

fn identity(env: &Environment) -> Result<Identity<'_>, EnvironmentError> {
    fn field<'e>(v: &'e Option<String>, field: &'static str) -> Result<&'e str, EnvironmentError> {
        v.as_deref().filter(|s| !s.is_empty()).ok_or(EnvironmentError::MissingMetadata { field })
    }
    Ok(Identity {
        name: field(&env.metadata.name, "name")?,
        namespace: field(&env.metadata.namespace, "namespace")?,
        uid: field(&env.metadata.uid, "uid")?,
    })
}

/// The labels of every owned object and of the pods.
pub fn labels(env: &Environment) -> BTreeMap<String, String> {
    let name = env.metadata.name.clone().unwrap_or_default();
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), name.clone()),
        ("app.kubernetes.io/instance".to_owned(), name.clone()),
        ("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned()),
        ("kapsa-project.io/project".to_owned(), env.spec.project_ref.name.clone()),
        ("kapsa-project.io/environment".to_owned(), name),
        ("kapsa-project.io/type".to_owned(), env.spec.kind.clone()),
    ])
}

/// The labels the Deployment and the Service select the pods by.
pub fn selector(env: &Environment) -> BTreeMap<String, String> {
    let name = env.metadata.name.clone().unwrap_or_default();
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), name.clone()),
        ("kapsa-project.io/environment".to_owned(), name),
    ])
}

fn metadata(env: &Environment, id: &Identity<'_>) -> ObjectMeta {
    ObjectMeta {
        name: Some(id.name.to_owned()),
        namespace: Some(id.namespace.to_owned()),
        labels: Some(labels(env)),
        owner_references: Some(vec![OwnerReference {
            api_version: API_VERSION.to_owned(),
            kind: "Environment".to_owned(),
            name: id.name.to_owned(),
            uid: id.uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

/// The container's ports: `spec.runtime.ports` (the first, unnamed, is `http`), or 8080/TCP
/// named `http`.
fn ports(env: &Environment) -> Vec<ContainerPort> {
    let given = &env.spec.runtime.ports;
    if given.is_empty() {
        return vec![ContainerPort {
            container_port: DEFAULT_PORT,
            name: Some("http".to_owned()),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }];
    }
    let http_named = given.iter().any(|p| p.name.as_deref() == Some("http"));
    given
        .iter()
        .enumerate()
        .map(|(i, p)| ContainerPort {
            container_port: p.container_port,
            name: p.name.clone().or_else(|| (i == 0 && !http_named).then(|| "http".to_owned())),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
            ..ContainerPort::default()
        })
        .collect()
}

/// `requests` or `limits` as quantities; empty values are left out (unset).
fn quantities(
    kind: &str,
    values: &BTreeMap<String, String>,
) -> Result<Option<BTreeMap<String, Quantity>>, EnvironmentError> {
    let mut out = BTreeMap::new();
    for (resource, value) in values {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if !is_quantity(value) {
            return Err(EnvironmentError::InvalidQuantity {
                field: format!("spec.runtime.resources.{kind}.{resource}"),
                value: value.to_owned(),
            });
        }
        out.insert(resource.clone(), Quantity(value.to_owned()));
    }
    Ok((!out.is_empty()).then_some(out))
}

fn resources(env: &Environment) -> Result<Option<ResourceRequirements>, EnvironmentError> {
    let r = &env.spec.runtime.resources;
    let requests = quantities("requests", &r.requests)?;
    let limits = quantities("limits", &r.limits)?;
    Ok((requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..ResourceRequirements::default()
    }))
}

fn deployment(
    env: &Environment,
    id: &Identity<'_>,
    image: &str,
    resources: Option<ResourceRequirements>,
) -> Deployment {
    let spec = &env.spec;
    let autoscaled = spec.runtime.autoscaling.as_ref().is_some_and(|a| a.enabled);
    let env_from: Vec<EnvFromSource> = spec
        .config_refs
        .iter()
        .map(|c| EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: c.config_map_ref.name.clone(), optional: None }),
            ..EnvFromSource::default()
        })
        .chain(spec.secret_refs.iter().map(|s| EnvFromSource {
            secret_ref: Some(SecretEnvSource { name: s.secret_ref.name.clone(), optional: None }),
            ..EnvFromSource::default()
        }))
        .collect();
    let vars: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|v| EnvVar { name: v.name.clone(), value: Some(v.value.clone()), ..EnvVar::default() })
        .collect();
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        ports: Some(ports(env)),
        resources,
        env_from: (!env_from.is_empty()).then_some(env_from),
        env: (!vars.is_empty()).then_some(vars),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata: metadata(env, id),
        spec: DeploymentSpec {
            // With autoscaling the HPA owns the replica count; a value here would fight it.
            replicas: (!autoscaled).then_some(spec.runtime.replicas),
            selector: LabelSelector { match_labels: Some(selector(env)), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(env)), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn service(env: &Environment, id: &Identity<'_>) -> Service {
    let first = ports(env).into_iter().next();
    let target = first.as_ref().map_or(DEFAULT_PORT, |p| p.container_port);
    let protocol = first.and_then(|p| p.protocol).unwrap_or_else(|| "TCP".to_owned());
    Service {
        metadata: metadata(env, id),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector(env)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(target)),
                protocol: Some(protocol),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Ingress's host, when it has one.
fn host(env: &Environment) -> Option<&str> {
    let ingress = &env.spec.ingress;
    ingress.host.as_deref().map(str::trim).filter(|h| ingress.enabled && !h.is_empty())
}

/// `spec.ingress.path`, starting with `/`.
fn path(env: &Environment) -> String {
    let p = env.spec.ingress.path.trim();
    if p.starts_with('/') { p.to_owned() } else { format!("/{p}") }
}

fn ingress(env: &Environment, id: &Identity<'_>, issuer: Option<&IssuerRef>) -> Option<Ingress> {
    let host = host(env)?;
    let spec = &env.spec.ingress;
    let mut annotations = spec.annotations.clone();
    const ISSUER_KEYS: [&str; 2] = ["cert-manager.io/cluster-issuer", "cert-manager.io/issuer"];
    // An issuer the Environment names itself wins: cert-manager refuses both annotations at once.
    if spec.tls.enabled
        && let Some(issuer) = issuer
        && !ISSUER_KEYS.iter().any(|k| annotations.contains_key(*k))
    {
        let key = if issuer.kind == "Issuer" { ISSUER_KEYS[1] } else { ISSUER_KEYS[0] };
        annotations.insert(key.to_owned(), issuer.name.clone());
    }
    let tls = spec.tls.enabled.then(|| {
        vec![IngressTLS {
            hosts: Some(vec![host.to_owned()]),
            secret_name: Some(
                spec.tls.secret_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("{}-tls", id.name)),
            ),
        }]
    });
    let mut metadata = metadata(env, id);
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Some(Ingress {
        metadata,
        spec: Some(k8s_openapi::api::networking::v1::IngressSpec {
            rules: Some(vec![IngressRule {
                host: Some(host.to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(path(env)),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: id.name.to_owned(),
                                port: Some(ServiceBackendPort { number: Some(SERVICE_PORT), name: None }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            tls,
            ..Default::default()
        }),
        ..Ingress::default()
    })
}

fn hpa(env: &Environment, id: &Identity<'_>) -> Result<Option<HorizontalPodAutoscaler>, EnvironmentError> {
    let Some(a) = env.spec.runtime.autoscaling.as_ref().filter(|a| a.enabled) else {
        return Ok(None);
    };
    let min = a.min_replicas.unwrap_or(1);
    let max = a.max_replicas.unwrap_or(min.max(3));
    if min < 1 {
        return Err(EnvironmentError::Autoscaling(format!("minReplicas is {min}; set it to 1 or more")));
    }
    if max < min {
        return Err(EnvironmentError::Autoscaling(format!(
            "maxReplicas ({max}) is below minReplicas ({min}); raise maxReplicas or lower minReplicas"
        )));
    }
    let targets = match (a.target_cpu_utilization, a.target_memory_utilization) {
        (None, None) => vec![("cpu", DEFAULT_CPU_UTILIZATION)],
        (cpu, memory) => [("cpu", cpu), ("memory", memory)].into_iter().filter_map(|(r, t)| Some((r, t?))).collect(),
    };
    let requests = &env.spec.runtime.resources.requests;
    // Utilisation is a share of the request: without one the HPA never scales.
    if let Some((resource, _)) = targets.iter().find(|(r, _)| requests.get(*r).is_none_or(|v| v.trim().is_empty())) {
        return Err(EnvironmentError::Autoscaling(format!(
            "a {resource} utilisation target needs a {resource} request; set spec.runtime.resources.requests.{resource}"
        )));
    }
    let metrics = targets
        .into_iter()
        .map(|(resource, utilization)| MetricSpec {
            type_: "Resource".to_owned(),
            resource: Some(ResourceMetricSource {
                name: resource.to_owned(),
                target: MetricTarget {
                    type_: "Utilization".to_owned(),
                    average_utilization: Some(utilization),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        })
        .collect();
    Ok(Some(HorizontalPodAutoscaler {
        metadata: metadata(env, id),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: id.name.to_owned(),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        },
        ..HorizontalPodAutoscaler::default()
    }))
}

/// The Environment's image, when it has one.
fn image(env: &Environment) -> Option<&str> {
    env.spec.image.as_deref().map(str::trim).filter(|i| !i.is_empty())
}

/// Returns the objects `env` owns (see [`Owned`]). `issuer` is the cert-manager issuer of the
/// project's DomainPool, annotated on the Ingress when TLS is on.
///
/// Errors name the field to fix: a request or limit that is no quantity, an autoscaling range
/// that cannot be met (or a utilisation target without its request), or an Environment not
/// read from the API server (no name, namespace or uid).
pub fn owned(env: &Environment, issuer: Option<&IssuerRef>) -> Result<Owned, EnvironmentError> {
    let id = identity(env)?;
    let resources = resources(env)?;
    let hpa = hpa(env, &id)?;
    let deployment = image(env).map(|image| deployment(env, &id, image, resources));
    Ok(Owned {
        hpa: hpa.filter(|_| deployment.is_some()),
        deployment,
        service: service(env, &id),
        ingress: ingress(env, &id, issuer),
    })
}

/// Returns where `env` is served: `https://<host><path>` (`http` with TLS off; no path for
/// `/`), or nothing without an enabled Ingress and a host.
pub fn urls(env: &Environment) -> Vec<String> {
    let Some(host) = host(env) else {
        return Vec::new();
    };
    let scheme = if env.spec.ingress.tls.enabled { "https" } else { "http" };
    let path = path(env);
    let path = if path == "/" { "" } else { path.as_str() };
    vec![format!("{scheme}://{host}{path}")]
}

fn judgement(phase: &'static str, reason: &str, message: String) -> Judgement {
    Judgement { phase, ready: phase == "Running", reason: reason.to_owned(), message }
}

/// Returns the phase of `env`, given its Deployment as the cluster holds it and whether a
/// build for it is running:
///
/// - no image yet: `Building` while `building`, else `Pending` (waiting for the first build);
/// - no Deployment, or one whose controller has not observed its latest generation: `Pending`;
/// - a Deployment condition `Progressing=False` (e.g. `ProgressDeadlineExceeded`) or
///   `ReplicaFailure=True`: `Failed`, with the condition's reason and message;
/// - every desired replica (`spec.replicas`, 1 when unset) updated and available, on the
///   Environment's image: `Running` and ready (0 desired is Running with 0);
/// - otherwise `Pending`, with `n/m replicas available`.
pub fn phase(env: &Environment, deployment: Option<&Deployment>, building: bool) -> Judgement {
    let Some(want) = image(env) else {
        return if building {
            judgement("Building", "Building", "building the first image".to_owned())
        } else {
            judgement("Pending", "WaitingForBuild", "waiting for the first build".to_owned())
        };
    };
    let Some(deployment) = deployment else {
        return judgement("Pending", "DeploymentMissing", "waiting for the Deployment to be created".to_owned());
    };
    let status = deployment.status.clone().unwrap_or_default();
    if let Some(generation) = deployment.metadata.generation
        && status.observed_generation.is_none_or(|seen| seen < generation)
    {
        return judgement("Pending", "RollingOut", format!("rolling out generation {generation}"));
    }
    let failed = status.conditions.iter().flatten().find_map(|c| {
        let (kind, state) = (c.type_.as_deref()?, c.status.as_deref()?);
        matches!((kind, state), ("Progressing", "False") | ("ReplicaFailure", "True")).then_some((kind, state, c))
    });
    if let Some((kind, state, c)) = failed {
        let reason = c.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| kind.to_owned());
        let message = c.message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| format!("{kind} is {state}"));
        return judgement("Failed", &reason, message);
    }
    let spec = &deployment.spec;
    let desired = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let running = spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.iter().find(|c| c.name == CONTAINER).or_else(|| p.containers.first()))
        .and_then(|c| c.image.as_deref());
    let counts = format!("{available}/{desired} replicas available");
    if running != Some(want) {
        return judgement("Pending", "RollingOut", format!("{counts}; rolling out {want}"));
    }
    if updated >= desired && available >= desired {
        return judgement("Running", "Running", format!("{counts}, running {want}"));
    }
    judgement("Pending", "RollingOut", counts)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
    use persys_crds::kapsa::{Autoscaling, ConfigRef, EnvironmentSpec, NameRef, Port, ProjectRef, SecretRefEntry, Tls};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const IMAGE: &str = "harbor.corp/team/api:abc1234";

    fn env() -> Environment {
        let mut e = Environment::new(
            "api-prod",
            EnvironmentSpec {
                project_ref: ProjectRef { name: "api".into(), namespace: String::new() },
                kind: "permanent".into(),
                branch: Some("main".into()),
                image: Some(IMAGE.into()),
                ..EnvironmentSpec::default()
            },
        );
        e.metadata.namespace = Some("api-ns".into());
        e.metadata.uid = Some("0b9e-uid".into());
        e
    }

    fn with_host(mut e: Environment, host: &str) -> Environment {
        e.spec.ingress.host = Some(host.into());
        e
    }

    fn issuer(kind: &str) -> IssuerRef {
        IssuerRef { name: "letsencrypt".into(), kind: kind.into() }
    }

    fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn the_deployment_runs_the_image_safely() {
        let owned = owned(&env(), None).unwrap();
        let d = to_json(&owned.deployment.unwrap());
        assert_eq!(
            d,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {
                    "name": "api-prod", "namespace": "api-ns",
                    "labels": {
                        "app.kubernetes.io/instance": "api-prod", "app.kubernetes.io/managed-by": "persys-reconciler",
                        "app.kubernetes.io/name": "api-prod", "kapsa-project.io/environment": "api-prod",
                        "kapsa-project.io/project": "api", "kapsa-project.io/type": "permanent"
                    },
                    "ownerReferences": [{
                        "apiVersion": "kapsa-project.io/v1alpha1", "kind": "Environment", "name": "api-prod",
                        "uid": "0b9e-uid", "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app.kubernetes.io/instance": "api-prod", "kapsa-project.io/environment": "api-prod"}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                    "template": {
                        "metadata": {"labels": {
                            "app.kubernetes.io/instance": "api-prod", "app.kubernetes.io/managed-by": "persys-reconciler",
                            "app.kubernetes.io/name": "api-prod", "kapsa-project.io/environment": "api-prod",
                            "kapsa-project.io/project": "api", "kapsa-project.io/type": "permanent"
                        }},
                        "spec": {
                            "automountServiceAccountToken": false,
                            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                            "containers": [{
                                "name": "app", "image": IMAGE,
                                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                            }]
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn without_an_image_there_is_no_deployment_nor_hpa() {
        let mut e = env();
        e.spec.image = None;
        e.spec.runtime.autoscaling = Some(Autoscaling { enabled: true, ..Autoscaling::default() });
        e.spec.runtime.resources.requests.insert("cpu".into(), "100m".into());
        let owned = owned(&e, None).unwrap();
        assert!(owned.deployment.is_none());
        assert!(owned.hpa.is_none(), "nothing to scale");
        assert_eq!(owned.service.metadata.name.as_deref(), Some("api-prod"), "the Service is there already");
        e.spec.image = Some("  ".into());
        assert!(super::owned(&e, None).unwrap().deployment.is_none(), "a blank image is no image");
    }

    #[test]
    fn ports_resources_and_environment_reach_the_container() {
        let mut e = env();
        e.spec.runtime.replicas = 3;
        e.spec.runtime.ports = vec![
            Port { name: None, container_port: 3000, protocol: None },
            Port { name: Some("metrics".into()), container_port: 9090, protocol: Some("TCP".into()) },
        ];
        e.spec.runtime.resources.requests =
            BTreeMap::from([("cpu".into(), "250m".into()), ("memory".into(), "".into())]);
        e.spec.runtime.resources.limits = BTreeMap::from([("memory".into(), "512Mi".into())]);
        e.spec.config_refs = vec![ConfigRef { config_map_ref: NameRef { name: "api-config".into() } }];
        e.spec.env = vec![persys_crds::kapsa::EnvVar { name: "LOG".into(), value: "debug".into() }];
        let owned = owned(&e, None).unwrap();
        let d = to_json(&owned.deployment.unwrap());
        assert_eq!(d["spec"]["replicas"], 3);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([
                {"containerPort": 3000, "name": "http", "protocol": "TCP"},
                {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}
            ])
        );
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}}),
            "empty is unset"
        );
        assert_eq!(c["envFrom"], json!([{"configMapRef": {"name": "api-config"}}]));
        assert_eq!(c["env"], json!([{"name": "LOG", "value": "debug"}]));
        let s = to_json(&owned.service);
        assert_eq!(s["spec"]["ports"], json!([{"name": "http", "port": 80, "targetPort": 3000, "protocol": "TCP"}]));
    }

    #[test]
    fn secrets_are_referenced_never_copied() {
        let mut e = with_host(env(), "api.apps.test");
        e.spec.secret_refs = vec![SecretRefEntry { secret_ref: NameRef { name: "db-creds".into() } }];
        let owned = owned(&e, Some(&issuer("ClusterIssuer"))).unwrap();
        let d = to_json(&owned.deployment);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["envFrom"],
            json!([{"secretRef": {"name": "db-creds"}}])
        );
        let all = [d, to_json(&owned.service), to_json(&owned.ingress), to_json(&owned.hpa)];
        for object in &all {
            let text = object.to_string();
            for copied in ["\"data\"", "\"stringData\"", "\"valueFrom\"", "\"kind\":\"Secret\""] {
                assert!(!text.contains(copied), "{copied} in {text}");
            }
        }
        let mentions: usize = all.iter().map(|o| o.to_string().matches("db-creds").count()).sum();
        assert_eq!(mentions, 1, "only the envFrom reference names the Secret");
    }

    #[test]
    fn the_service_fronts_the_pods() {
        let s = to_json(&owned(&env(), None).unwrap().service);
        assert_eq!(s["kind"], "Service");
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Environment");
        assert_eq!(
            s["spec"],
            json!({
                "type": "ClusterIP",
                "selector": {"app.kubernetes.io/instance": "api-prod", "kapsa-project.io/environment": "api-prod"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
            })
        );
    }

    #[test]
    fn the_ingress_serves_the_host_with_tls() {
        let mut e = with_host(env(), "api.apps.test");
        e.spec.ingress.annotations.insert("nginx.ingress.kubernetes.io/proxy-body-size".into(), "8m".into());
        let i = to_json(&owned(&e, Some(&issuer("ClusterIssuer"))).unwrap().ingress.unwrap());
        assert_eq!(
            i["metadata"]["annotations"],
            json!({"cert-manager.io/cluster-issuer": "letsencrypt", "nginx.ingress.kubernetes.io/proxy-body-size": "8m"})
        );
        assert_eq!(
            i["spec"],
            json!({
                "rules": [{"host": "api.apps.test", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "api-prod", "port": {"number": 80}}}
                }]}}],
                "tls": [{"hosts": ["api.apps.test"], "secretName": "api-prod-tls"}]
            })
        );
        let namespaced = to_json(&owned(&e, Some(&issuer("Issuer"))).unwrap().ingress.unwrap());
        assert_eq!(namespaced["metadata"]["annotations"]["cert-manager.io/issuer"], "letsencrypt");
        assert!(namespaced["metadata"]["annotations"].get("cert-manager.io/cluster-issuer").is_none());
    }

    #[test]
    fn ingress_variants() {
        let mut e = with_host(env(), "api.apps.test");
        e.spec.ingress.path = "api".into();
        e.spec.ingress.tls = Tls { enabled: true, secret_name: Some("wildcard".into()) };
        let i = to_json(&owned(&e, None).unwrap().ingress.unwrap());
        assert_eq!(i["spec"]["rules"][0]["http"]["paths"][0]["path"], "/api");
        assert_eq!(i["spec"]["tls"][0]["secretName"], "wildcard");
        assert!(i["metadata"].get("annotations").is_none(), "no issuer given, none annotated");

        e.spec.ingress.tls.enabled = false;
        let i = to_json(&owned(&e, Some(&issuer("ClusterIssuer"))).unwrap().ingress.unwrap());
        assert!(i["spec"].get("tls").is_none());
        assert!(i["metadata"].get("annotations").is_none(), "no TLS, no issuer");

        let mut own = with_host(env(), "api.apps.test");
        own.spec.ingress.annotations.insert("cert-manager.io/issuer".into(), "mine".into());
        let i = to_json(&owned(&own, Some(&issuer("ClusterIssuer"))).unwrap().ingress.unwrap());
        assert_eq!(i["metadata"]["annotations"], json!({"cert-manager.io/issuer": "mine"}), "the Environment's wins");

        assert!(owned(&env(), None).unwrap().ingress.is_none(), "no host");
        let mut off = with_host(env(), "api.apps.test");
        off.spec.ingress.enabled = false;
        assert!(owned(&off, None).unwrap().ingress.is_none(), "disabled");
    }

    #[test]
    fn autoscaling_hands_replicas_to_the_hpa() {
        let mut e = env();
        e.spec.runtime.replicas = 5;
        e.spec.runtime.resources.requests.insert("cpu".into(), "100m".into());
        e.spec.runtime.autoscaling = Some(Autoscaling { enabled: true, ..Autoscaling::default() });
        let owned = owned(&e, None).unwrap();
        assert!(owned.deployment.unwrap().spec.replicas.is_none(), "the HPA owns replicas");
        let h = to_json(&owned.hpa.unwrap());
        assert_eq!(h["apiVersion"], "autoscaling/v2");
        assert_eq!(h["metadata"]["ownerReferences"][0]["uid"], "0b9e-uid");
        assert_eq!(
            h["spec"],
            json!({
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api-prod"},
                "minReplicas": 1, "maxReplicas": 3,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
            })
        );
    }

    #[test]
    fn hpa_targets_and_bounds() {
        let mut e = env();
        e.spec.runtime.resources.requests =
            BTreeMap::from([("cpu".into(), "100m".into()), ("memory".into(), "128Mi".into())]);
        e.spec.runtime.autoscaling = Some(Autoscaling {
            enabled: true,
            min_replicas: Some(4),
            max_replicas: None,
            target_cpu_utilization: None,
            target_memory_utilization: Some(70),
        });
        let h = to_json(&owned(&e, None).unwrap().hpa.unwrap());
        assert_eq!(h["spec"]["minReplicas"], 4);
        assert_eq!(h["spec"]["maxReplicas"], 4, "max defaults to max(min, 3)");
        assert_eq!(
            h["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}}}])
        );
        if let Some(a) = e.spec.runtime.autoscaling.as_mut() {
            a.target_cpu_utilization = Some(60);
            a.max_replicas = Some(10);
        }
        let h = to_json(&owned(&e, None).unwrap().hpa.unwrap());
        assert_eq!(h["spec"]["maxReplicas"], 10);
        assert_eq!(h["spec"]["metrics"][0]["resource"]["name"], "cpu");
        assert_eq!(h["spec"]["metrics"][1]["resource"]["name"], "memory");

        let mut disabled = env();
        disabled.spec.runtime.autoscaling = Some(Autoscaling {
            enabled: false,
            max_replicas: Some(1),
            min_replicas: Some(5),
            ..Autoscaling::default()
        });
        let owned_disabled = owned(&disabled, None).unwrap();
        assert!(owned_disabled.hpa.is_none());
        assert_eq!(owned_disabled.deployment.unwrap().spec.replicas, Some(1));
    }

    #[test]
    fn impossible_autoscaling_is_explained() {
        let mut e = env();
        e.spec.runtime.resources.requests.insert("cpu".into(), "100m".into());
        e.spec.runtime.autoscaling =
            Some(Autoscaling { enabled: true, min_replicas: Some(5), max_replicas: Some(2), ..Autoscaling::default() });
        let err = owned(&e, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.runtime.autoscaling: maxReplicas (2) is below minReplicas (5); raise maxReplicas or lower minReplicas"
        );
        e.spec.runtime.autoscaling =
            Some(Autoscaling { enabled: true, min_replicas: Some(0), ..Autoscaling::default() });
        assert!(owned(&e, None).unwrap_err().to_string().contains("minReplicas is 0"));
        e.spec.runtime.resources.requests.clear();
        e.spec.runtime.autoscaling = Some(Autoscaling { enabled: true, ..Autoscaling::default() });
        let err = owned(&e, None).unwrap_err();
        assert!(err.to_string().contains("set spec.runtime.resources.requests.cpu"), "{err}");
    }

    #[test]
    fn invalid_quantities_are_refused() {
        let mut e = env();
        e.spec.runtime.resources.limits.insert("memory".into(), "1 GB".into());
        let err = owned(&e, None).unwrap_err();
        assert_eq!(
            err,
            EnvironmentError::InvalidQuantity {
                field: "spec.runtime.resources.limits.memory".into(),
                value: "1 GB".into()
            }
        );
        assert!(err.to_string().contains("`256Mi`"), "{err}");
    }

    #[test]
    fn quantities_follow_the_api_servers_rule() {
        for ok in
            ["", "1", "100m", "1.5", ".5", "1.", "+2", "-3", "256Mi", "1Gi", "2e3", "2E-3", "1E", "5k", "7n", "1e+9"]
        {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [".", "m", "1 GB", "1GB", "1e", "1Ki2", "1.2.3", "--1", "1mi", "e3", "1e3.5.", "١"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn objects_need_an_environment_from_the_api_server() {
        let mut e = env();
        e.metadata.uid = None;
        assert_eq!(owned(&e, None).unwrap_err(), EnvironmentError::MissingMetadata { field: "uid" });
        let mut e = env();
        e.metadata.namespace = Some(String::new());
        assert_eq!(owned(&e, None).unwrap_err(), EnvironmentError::MissingMetadata { field: "namespace" });
    }

    #[test]
    fn urls_follow_the_ingress() {
        assert!(urls(&env()).is_empty(), "no host");
        let e = with_host(env(), "api.apps.test");
        assert_eq!(urls(&e), ["https://api.apps.test"]);
        let mut e = with_host(env(), "api.apps.test");
        e.spec.ingress.path = "/v1".into();
        e.spec.ingress.tls.enabled = false;
        assert_eq!(urls(&e), ["http://api.apps.test/v1"]);
        e.spec.ingress.enabled = false;
        assert!(urls(&e).is_empty(), "disabled");
    }

    /// A Deployment as the cluster would hold it after `owned`, with the given status.
    fn live(image: &str, replicas: Option<i32>, status: DeploymentStatus) -> Deployment {
        let mut e = env();
        e.spec.image = Some(image.into());
        let mut d = owned(&e, None).unwrap().deployment.unwrap();
        d.spec.replicas = replicas;
        d.metadata.generation = Some(2);
        d.status = Some(DeploymentStatus { observed_generation: Some(2), ..status });
        d
    }

    fn counts(updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> DeploymentCondition {
        DeploymentCondition {
            type_: Some(type_.into()),
            status: Some(status.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..DeploymentCondition::default()
        }
    }

    #[test]
    fn phase_without_an_image_waits_for_the_build() {
        let mut e = env();
        e.spec.image = None;
        let building = phase(&e, None, true);
        assert_eq!((building.phase, building.ready, building.reason.as_str()), ("Building", false, "Building"));
        let pending = phase(&e, None, false);
        assert_eq!((pending.phase, pending.message.as_str()), ("Pending", "waiting for the first build"));
    }

    #[test]
    fn phase_without_a_deployment_is_pending() {
        let j = phase(&env(), None, false);
        assert_eq!((j.phase, j.ready, j.reason.as_str()), ("Pending", false, "DeploymentMissing"));
    }

    #[test]
    fn phase_waits_for_the_controller_to_observe_the_generation() {
        let mut d = live(IMAGE, Some(1), counts(1, 1));
        d.metadata.generation = Some(3);
        let j = phase(&env(), Some(&d), false);
        assert_eq!((j.phase, j.message.as_str()), ("Pending", "rolling out generation 3"));
        if let Some(s) = d.status.as_mut() {
            s.observed_generation = None;
        }
        assert_eq!(phase(&env(), Some(&d), false).phase, "Pending");
    }

    #[test]
    fn phase_reports_a_stuck_rollout_as_failed() {
        let stuck = DeploymentStatus {
            conditions: Some(vec![condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                "ReplicaSet \"api-prod-7d9\" has timed out progressing.",
            )]),
            ..counts(0, 0)
        };
        let j = phase(&env(), Some(&live(IMAGE, Some(1), stuck)), false);
        assert_eq!(
            j,
            Judgement {
                phase: "Failed",
                ready: false,
                reason: "ProgressDeadlineExceeded".into(),
                message: "ReplicaSet \"api-prod-7d9\" has timed out progressing.".into()
            }
        );
        let quota = DeploymentStatus {
            conditions: Some(vec![
                condition("Progressing", "True", "ReplicaSetUpdated", "fine"),
                condition("ReplicaFailure", "True", "FailedCreate", "pods \"x\" is forbidden: exceeded quota"),
            ]),
            ..counts(0, 0)
        };
        let j = phase(&env(), Some(&live(IMAGE, Some(1), quota)), false);
        assert_eq!((j.phase, j.reason.as_str()), ("Failed", "FailedCreate"));
        assert!(j.message.contains("exceeded quota"));
        let healthy = DeploymentStatus {
            conditions: Some(vec![
                condition("ReplicaFailure", "False", "", ""),
                condition("Progressing", "True", "", ""),
            ]),
            ..counts(1, 1)
        };
        assert_eq!(phase(&env(), Some(&live(IMAGE, Some(1), healthy)), false).phase, "Running");
    }

    #[test]
    fn phase_is_running_once_every_replica_runs_the_image() {
        let j = phase(&env(), Some(&live(IMAGE, Some(2), counts(2, 2))), false);
        assert_eq!((j.phase, j.ready, j.reason.as_str()), ("Running", true, "Running"));
        assert_eq!(j.message, format!("2/2 replicas available, running {IMAGE}"));
        let default_one = phase(&env(), Some(&live(IMAGE, None, counts(1, 1))), false);
        assert_eq!(default_one.phase, "Running", "unset replicas mean 1");
        let zero = phase(&env(), Some(&live(IMAGE, Some(0), DeploymentStatus::default())), false);
        assert_eq!(
            (zero.phase, zero.ready, zero.message.as_str()),
            ("Running", true, &*format!("0/0 replicas available, running {IMAGE}"))
        );
    }

    #[test]
    fn phase_is_pending_while_replicas_come_up() {
        let j = phase(&env(), Some(&live(IMAGE, Some(3), counts(3, 1))), false);
        assert_eq!((j.phase, j.ready, j.message.as_str()), ("Pending", false, "1/3 replicas available"));
        let j = phase(&env(), Some(&live(IMAGE, Some(3), counts(1, 3))), false);
        assert_eq!((j.phase, j.message.as_str()), ("Pending", "3/3 replicas available"), "old pods still serve");
        let old = phase(&env(), Some(&live("harbor.corp/team/api:old", Some(1), counts(1, 1))), false);
        assert_eq!(old.phase, "Pending", "the Deployment does not run the Environment's image yet");
        assert_eq!(old.message, format!("1/1 replicas available; rolling out {IMAGE}"));
    }

    proptest! {
        #[test]
        fn is_quantity_agrees_with_the_crd_pattern(s in "[-+0-9.eEKMGTPimnuk ]{0,7}") {
            let re = regex::Regex::new(persys_crds::persona::QUANTITY).unwrap();
            prop_assert_eq!(is_quantity(&s), re.is_match(&s), "{:?}", s);
        }

        #[test]
        fn owned_objects_always_carry_the_environment(
            name in "[a-z][a-z0-9-]{0,20}[a-z0-9]",
            replicas in 0..10i32,
            image in proptest::option::of("[a-z]{1,8}:[a-z0-9]{1,8}"),
            host in proptest::option::of("[a-z]{1,8}\\.test"),
            autoscale in any::<bool>(),
        ) {
            let mut e = env();
            e.metadata.name = Some(name.clone());
            e.spec.image = image.clone();
            e.spec.runtime.replicas = replicas;
            e.spec.ingress.host = host.clone();
            e.spec.runtime.resources.requests.insert("cpu".into(), "1".into());
            e.spec.runtime.autoscaling = Some(Autoscaling { enabled: autoscale, ..Autoscaling::default() });
            let o = owned(&e, Some(&issuer("ClusterIssuer"))).unwrap();
            prop_assert_eq!(o.deployment.is_some(), image.is_some());
            prop_assert_eq!(o.ingress.is_some(), host.is_some());
            prop_assert_eq!(o.hpa.is_some(), autoscale && image.is_some());
            let metas = [
                o.deployment.as_ref().map(|d| &d.metadata),
                Some(&o.service.metadata),
                o.ingress.as_ref().map(|i| &i.metadata),
                o.hpa.as_ref().map(|h| &h.metadata),
            ];
            for m in metas.into_iter().flatten() {
                prop_assert_eq!(m.name.as_deref(), Some(name.as_str()));
                prop_assert_eq!(m.namespace.as_deref(), Some("api-ns"));
                let owners = m.owner_references.as_ref().unwrap();
                prop_assert_eq!(owners.len(), 1);
                prop_assert_eq!(owners[0].controller, Some(true));
                prop_assert_eq!(&owners[0].name, &name);
                prop_assert_eq!(m.labels.as_ref().unwrap().get("kapsa-project.io/environment"), Some(&name));
            }
        }
    }
}
