//! Deployments and StatefulSets as the persona controller caches them: only the fields its
//! decisions read (names and labels, replicas, selector, the pod template's labels, its
//! containers' image, resources, probes, ports and security contexts, and the replica counts
//! of the status).
//!
//! k8s-openapi's typed `Deployment` holds every field of the API inline (its `Container` alone
//! is over 2 KiB before any value is set), so a cache of typed workloads costs ~9 KiB per
//! object whatever the object says. [`Cached`] reads the same JSON into the few fields used;
//! serde skips the rest while parsing, so the full object is never built. Both kinds share
//! one shape; `K` only says which API it is read from.

use std::{borrow::Cow, collections::BTreeMap, marker::PhantomData};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Container, ContainerPort, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            SecurityContext,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use serde::Deserialize;

use crate::decide::resolve::Candidate;

/// A workload of kind `K` (`Deployment` or `StatefulSet`) with only what the decisions read.
#[derive(Deserialize, Debug)]
#[serde(bound = "")]
pub struct Cached<K> {
    /// Its metadata (the cache drops managed fields, annotations, owners and finalizers).
    pub metadata: ObjectMeta,
    /// Replicas, selector and pod template.
    #[serde(default)]
    pub spec: Spec,
    /// Replica counts and conditions.
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

// Not derived: the derive would ask `K: Clone`.
impl<K> Clone for Cached<K> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
            kind: PhantomData,
        }
    }
}

/// The spec fields both kinds share.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// `spec.replicas`.
    pub replicas: Option<i32>,
    /// `spec.selector`.
    #[serde(default)]
    pub selector: LabelSelector,
    /// `spec.template`.
    #[serde(default)]
    pub template: Template,
}

/// `spec.template`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Template {
    /// Its labels (the rest of its metadata is not read).
    pub metadata: Option<TemplateMeta>,
    /// Its pod spec.
    pub spec: Option<Pod>,
}

/// `spec.template.metadata`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TemplateMeta {
    /// `spec.template.metadata.labels`.
    pub labels: Option<BTreeMap<String, String>>,
}

/// `spec.template.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// Its containers (init containers are not checked).
    #[serde(default)]
    pub containers: Vec<PodContainer>,
    /// The pod-level security context.
    pub security_context: Option<Box<PodSecurityContext>>,
}

/// One of `spec.template.spec.containers`. Optional parts are boxed: absent, each costs a word.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodContainer {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its image.
    pub image: Option<String>,
    /// Requests and limits.
    pub resources: Option<Box<ResourceRequirements>>,
    /// The liveness probe.
    pub liveness_probe: Option<Box<Probe>>,
    /// The readiness probe.
    pub readiness_probe: Option<Box<Probe>>,
    /// The container's security context.
    pub security_context: Option<Box<SecurityContext>>,
    /// Its ports (a probe may name one).
    pub ports: Option<Vec<ContainerPort>>,
}

/// The status fields the health decision reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.readyReplicas`.
    pub ready_replicas: Option<i32>,
    /// `status.updatedReplicas`.
    pub updated_replicas: Option<i32>,
    /// `status.conditions`: type, status and reason of each.
    #[serde(default)]
    pub conditions: Vec<StatusCondition>,
}

/// A workload condition without its message and times.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct StatusCondition {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `status` (`True`, `False`, `Unknown`).
    #[serde(default)]
    pub status: String,
    /// `reason`.
    pub reason: Option<String>,
}

impl<K> kube::Resource for Cached<K>
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<K> Cached<K>
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    /// Reads a workload of kind `K` (e.g. an admission request's object) the way the cache does.
    pub fn from_value(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut w: Self = serde_json::from_value(value)?;
        w.forget_unread();
        Ok(w)
    }

    /// Drops the metadata no decision reads: managed fields, annotations (kubectl's
    /// last-applied copy of the object among them), owner references and finalizers.
    pub fn forget_unread(&mut self) {
        let m = &mut self.metadata;
        (m.managed_fields, m.annotations, m.owner_references, m.finalizers) = (None, None, None, None);
    }

    /// The workload as the resolution sees it.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            kind: K::kind(&()).into_owned(),
            name: self.metadata.name.clone().unwrap_or_default(),
            labels: self.metadata.labels.clone().unwrap_or_default(),
            template_labels: self.spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default(),
            selector: self.spec.selector.match_labels.clone().unwrap_or_default(),
        }
    }
}

impl<K> Cached<K> {
    /// The workload as a Deployment holding the fields kept, for the shared validation rules
    /// (a StatefulSet's replicas and pod template are what they check, read through the same
    /// shape).
    pub fn to_deployment(&self) -> Deployment {
        let template = &self.spec.template;
        Deployment {
            metadata: ObjectMeta {
                name: self.metadata.name.clone(),
                namespace: self.metadata.namespace.clone(),
                labels: self.metadata.labels.clone(),
                generation: self.metadata.generation,
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: self.spec.replicas,
                selector: self.spec.selector.clone(),
                template: PodTemplateSpec {
                    metadata: template
                        .metadata
                        .as_ref()
                        .map(|m| ObjectMeta { labels: m.labels.clone(), ..ObjectMeta::default() }),
                    spec: template.spec.as_ref().map(|pod| PodSpec {
                        containers: pod.containers.iter().map(PodContainer::to_container).collect(),
                        security_context: pod.security_context.as_deref().cloned(),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }
}

impl PodContainer {
    fn to_container(&self) -> Container {
        Container {
            name: self.name.clone(),
            image: self.image.clone(),
            resources: self.resources.as_deref().cloned(),
            liveness_probe: self.liveness_probe.as_deref().cloned(),
            readiness_probe: self.readiness_probe.as_deref().cloned(),
            security_context: self.security_context.as_deref().cloned(),
            ports: self.ports.clone(),
            ..Container::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use persys_analyzer::{persona::convert, validate};
    use persys_crds::persona::ApplicationPersonaSpec;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// A container with a random mix of what the rules read and what they do not.
    fn container() -> impl Strategy<Value = Value> {
        let probe = prop_oneof![
            Just(Value::Null),
            Just(json!({"httpGet": {"path": "/healthz", "port": 8080}})),
            Just(json!({"httpGet": {"path": "/live", "port": "http"}})),
            Just(json!({"tcpSocket": {"port": 9090}, "periodSeconds": 5})),
        ];
        let resources = prop_oneof![
            Just(Value::Null),
            Just(json!({"requests": {"cpu": "100m", "memory": "128Mi"}})),
            Just(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "4Gi"}})),
            Just(json!({"limits": {"memory": "not-a-quantity"}})),
        ];
        let security = prop_oneof![
            Just(Value::Null),
            Just(json!({"runAsNonRoot": true, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})),
            Just(json!({"privileged": true, "allowPrivilegeEscalation": true})),
        ];
        let image = prop_oneof![
            Just(Value::Null),
            Just(json!("nginx")),
            Just(json!("ghcr.io/acme/shop:1.2.3")),
            Just(json!("registry.local:5000/shop:latest")),
        ];
        let ports = prop_oneof![
            Just(Value::Null),
            Just(json!([{"name": "http", "containerPort": 8080}])),
            Just(json!([{"name": "http", "containerPort": 9000}, {"containerPort": 8080}])),
        ];
        (probe.clone(), probe, resources, security, image, ports, any::<bool>()).prop_map(
            |(live, ready, resources, security, image, ports, noise)| {
                let mut c = json!({"name": "app", "livenessProbe": live, "readinessProbe": ready,
                    "resources": resources, "securityContext": security, "image": image, "ports": ports});
                if noise {
                    c["env"] = json!([{"name": "A", "value": "b"}]);
                    c["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
                    c["startupProbe"] = json!({"exec": {"command": ["true"]}});
                    c["imagePullPolicy"] = json!("Always");
                }
                c.as_object_mut().unwrap().retain(|_, v| !v.is_null());
                c
            },
        )
    }

    fn workload(kind: &'static str) -> impl Strategy<Value = Value> {
        let labels = prop_oneof![
            Just(json!({})),
            Just(json!({"app.kubernetes.io/name": "shop"})),
            Just(json!({"app": "shop", "tier": "web"})),
        ];
        (
            prop::collection::vec(container(), 0..3),
            labels.clone(),
            labels,
            prop::option::of(0..6i32),
            any::<bool>(),
            prop::option::of(any::<bool>()),
        )
            .prop_map(move |(containers, labels, template_labels, replicas, pod_non_root, progressing)| {
                let conditions = match progressing {
                    None => json!([]),
                    Some(true) => json!([{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                        "message": "done", "lastUpdateTime": "2026-12-01T00:00:00Z"}]),
                    Some(false) => json!([{"type": "Available", "status": "True"},
                        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]),
                };
                json!({"apiVersion": "apps/v1", "kind": kind,
                    "metadata": {"name": "shop", "namespace": "apps", "generation": 3, "labels": labels,
                        "annotations": {"deployment.kubernetes.io/revision": "2"},
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "u"}],
                        "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                            "fieldsV1": {"f:spec": {}}}]},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {"pod": "shop"}},
                        "template": {"metadata": {"labels": template_labels, "annotations": {"a": "b"}},
                            "spec": {"containers": containers, "volumes": [{"name": "data", "emptyDir": {}}],
                                "securityContext": if pod_non_root { json!({"runAsNonRoot": true}) } else { json!({}) },
                                "initContainers": [{"name": "init", "image": "busybox"}]}}},
                    "status": {"observedGeneration": 3, "readyReplicas": 1, "updatedReplicas": 2, "conditions": conditions}})
            })
    }

    fn persona() -> impl Strategy<Value = ApplicationPersonaSpec> {
        // The ports the containers above use, so a named probe port is resolved both ways.
        let port = prop::option::of(prop::sample::select(vec![8080, 9000, 9090]));
        (port, any::<bool>(), any::<bool>()).prop_map(|(port, secure, limits)| {
            let mut spec = json!({"name": "shop", "type": "api", "scaling": {"minReplicas": 1, "maxReplicas": 4},
                "health": {"livenessPath": "/healthz", "readinessPath": "/ready", "port": port}});
            if secure {
                spec["policies"] = json!({"security": {"runAsNonRoot": true, "readOnlyRootFilesystem": true}});
            }
            if limits {
                spec["resources"] = json!({"limits": {"cpu": "500m", "memory": "1Gi"}});
            }
            serde_json::from_value(spec).unwrap()
        })
    }

    proptest! {
        /// The validation rules find the same on the cached Deployment as on the typed one, and
        /// the cached form keeps the labels, selector, replicas and status the decisions read.
        #[test]
        fn the_cached_deployment_validates_like_the_typed_one(object in workload("Deployment"), spec in persona()) {
            let typed: Deployment = serde_json::from_value(object.clone()).unwrap();
            let cached = Cached::<Deployment>::from_value(object).unwrap();
            let spec = convert::from_crd(&spec).unwrap();
            prop_assert_eq!(validate::validate_deployment(&typed, &spec), validate::validate_deployment(&cached.to_deployment(), &spec));
            let c = cached.candidate();
            prop_assert_eq!(c.kind.as_str(), "Deployment");
            prop_assert_eq!(c.labels, typed.metadata.labels.clone().unwrap_or_default());
            prop_assert_eq!(c.selector, typed.spec.selector.match_labels.clone().unwrap_or_default());
            let status = typed.status.unwrap();
            let kept = cached.status.as_ref().unwrap();
            prop_assert_eq!(kept.ready_replicas, status.ready_replicas);
            prop_assert_eq!(kept.updated_replicas, status.updated_replicas);
            prop_assert_eq!(kept.observed_generation, status.observed_generation);
            let reasons = |it: Vec<(Option<String>, Option<String>)>| it;
            prop_assert_eq!(
                reasons(kept.conditions.iter().map(|c| (Some(c.type_.clone()), c.reason.clone())).collect()),
                reasons(status.conditions.unwrap_or_default().into_iter().map(|c| (c.type_, c.reason)).collect())
            );
            // What the cache drops.
            prop_assert!(cached.metadata.managed_fields.is_none() && cached.metadata.annotations.is_none());
            prop_assert!(cached.metadata.owner_references.is_none());
        }

        /// A StatefulSet's replicas and template are checked through the same shape.
        #[test]
        fn the_cached_statefulset_validates_like_the_typed_one(object in workload("StatefulSet"), spec in persona()) {
            let typed: StatefulSet = serde_json::from_value(object.clone()).unwrap();
            let cached = Cached::<StatefulSet>::from_value(object).unwrap();
            let spec = convert::from_crd(&spec).unwrap();
            let as_deployment = Deployment {
                metadata: typed.metadata.clone(),
                spec: DeploymentSpec {
                    replicas: typed.spec.replicas,
                    selector: typed.spec.selector.clone(),
                    template: typed.spec.template.clone(),
                    ..DeploymentSpec::default()
                },
                status: None,
            };
            prop_assert_eq!(validate::validate_deployment(&as_deployment, &spec), validate::validate_deployment(&cached.to_deployment(), &spec));
            prop_assert_eq!(cached.candidate().kind, "StatefulSet");
        }
    }

    /// A cached workload is a fraction of the typed one's size: the point of the type.
    #[test]
    fn the_cached_shape_is_small() {
        assert!(size_of::<Cached<Deployment>>() * 3 < size_of::<Deployment>(), "{}", size_of::<Cached<Deployment>>());
        assert!(size_of::<PodContainer>() * 8 < size_of::<Container>(), "{}", size_of::<PodContainer>());
    }
}
