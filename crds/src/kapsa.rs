//! Kapsa's resources (`kapsa-project.io/v1alpha1`), field for field with Kapsa's CRDs so its
//! manifests apply unchanged: `Project` (an application built from git), the `Environment`s it
//! runs in, the `DomainPool` its host names come from and the `Registry` its images go to. The
//! schemas add what Kapsa left to the controllers: patterns, enums and ranges.

// kube-derive's repeated `printcolumn(type_ = …)` reads to clippy as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group and version of Kapsa's resources.
pub const API_VERSION: &str = "kapsa-project.io/v1alpha1";

/// `spec` of a [`Registry`] (cluster-scoped, short name `reg`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kapsa-project.io",
    version = "v1alpha1",
    kind = "Registry",
    plural = "registries",
    shortname = "reg",
    status = "RegistryStatus",
    derive = "PartialEq",
    derive = "Default",
    crates(kube_core = "::kube_core"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(name = "Verified", type_ = "boolean", json_path = ".status.verified"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// harbor, gitlab, docker, ecr, gcr or acr.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["harbor", "gitlab", "docker", "ecr", "gcr", "acr"]))]
    pub kind: String,
    /// Where the registry serves its v2 API: `registry.example.com`, `https://harbor.corp` or
    /// `http://127.0.0.1:5000` (no scheme: https).
    #[schemars(length(min = 1))]
    pub endpoint: String,
    /// Credentials. Kapsa required them; an anonymous registry may leave them out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegistryAuth>,
    /// Registry-specific settings (e.g. Harbor's `projectName`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The pull Secret made for projects' namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<ImagePullSecret>,
}

/// `spec.auth`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAuth {
    /// The Secret holding `username` and `password` (`kubernetes.io/basic-auth` or Opaque), or
    /// `.dockerconfigjson` (`kubernetes.io/dockerconfigjson`).
    pub secret_ref: SecretRef,
}

/// A Secret by name and namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace; the reconciler's credentials namespace when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `spec.imagePullSecret`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecret {
    /// Its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Make one in every project namespace.
    #[serde(default = "yes")]
    pub generate_per_namespace: bool,
}

fn yes() -> bool {
    true
}

/// `status` of a [`Registry`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    /// Reachable and, with credentials, authenticated by the last check.
    #[serde(default)]
    pub verified: bool,
    /// When it was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<String>,
    /// The generation that check read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: reachable and authenticated, or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A DNS label: lowercase letters, digits and `-`, starting and ending with a letter or digit.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A DNS name of at least two labels (`apps.example.com`), lowercase.
pub const DNS_NAME: &str = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A Kubernetes resource quantity, as [`crate::persona::QUANTITY`].
const QUANTITY: &str = crate::persona::QUANTITY;

/// `spec` of a [`Project`] (namespaced, short name `proj`): an application built from a git
/// repository into a registry and run in environments.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kapsa-project.io",
    version = "v1alpha1",
    kind = "Project",
    plural = "projects",
    shortname = "proj",
    namespaced,
    status = "ProjectStatus",
    derive = "PartialEq",
    derive = "Default",
    crates(kube_core = "::kube_core"),
    printcolumn(name = "Repository", type_ = "string", json_path = ".spec.repository.url"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Latest Image", type_ = "string", json_path = ".status.latestImage"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// Where the source lives.
    pub repository: Repository,
    /// How it is built.
    pub build: Build,
    /// Where images are pushed.
    pub registry: ProjectRegistry,
    /// The project's host names.
    pub domain: Domain,
    /// Permanent environments (e.g. `prod` from `main`, `staging` from `develop`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub environments: Vec<ProjectEnvironment>,
    /// An environment per matching branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_environments: Option<PreviewEnvironments>,
}

/// `spec.repository`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// The git repository's HTTP(S) URL (smart HTTP), without credentials in it.
    #[schemars(length(min = 1), regex(pattern = r"^https?://[^@\s]+$"))]
    pub url: String,
    /// The default branch.
    #[serde(default = "main_branch")]
    pub branch: String,
    /// Seconds between polls of the branch heads.
    #[serde(default = "default_poll")]
    #[schemars(range(min = 60))]
    pub poll_interval: i64,
    /// A Secret with `username` and `password` (or a `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

fn main_branch() -> String {
    "main".into()
}

fn default_poll() -> i64 {
    300
}

/// `spec.repository.credentials`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The Secret (in the Project's namespace when `namespace` is empty).
    pub secret_ref: SecretRef,
}

/// `spec.build`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    /// `dockerfile` or `buildpack`.
    #[schemars(extend("enum" = ["dockerfile", "buildpack"]))]
    pub strategy: String,
    /// The Dockerfile's path (strategy `dockerfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The build context within the repository.
    #[serde(default = "dot")]
    pub context: String,
    /// Build arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Build-time environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

fn dot() -> String {
    ".".into()
}

/// A name and a value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EnvVar {
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// `spec.registry`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRegistry {
    /// The [`Registry`]'s name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The repository within it (`team/api`).
    #[schemars(length(min = 1))]
    pub image_repository: String,
}

/// `spec.domain`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// The project's label in host names (`api` → `api.apps.example.com`).
    #[schemars(regex(pattern = DNS_LABEL))]
    pub subdomain: String,
    /// The [`DomainPool`] its base domain comes from.
    #[schemars(length(min = 1))]
    pub domain_pool_ref: String,
}

/// One of `spec.environments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectEnvironment {
    /// Its name (`prod` is served on the project's own host).
    #[schemars(regex(pattern = DNS_LABEL))]
    pub name: String,
    /// The branch it runs; the project's default branch when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Roll to every new image of its branch.
    #[serde(default)]
    pub auto_sync: bool,
}

/// `spec.previewEnvironments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewEnvironments {
    /// Make previews at all.
    #[serde(default)]
    pub enabled: bool,
    /// How long a preview lives after its branch's head last moved (`168h`, `1h30m`); an
    /// expired preview comes back with the branch's next commit.
    #[serde(default = "week")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub ttl: String,
    /// Which branches get one.
    #[serde(default)]
    pub branches: BranchFilter,
}

fn week() -> String {
    "168h".into()
}

/// Branch globs: `*` matches within one path segment, `**` across segments, `?` one
/// character; a branch matches when it matches an `include` (all when empty) and no `exclude`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BranchFilter {
    /// Globs of branches that get a preview.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs of branches that never do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// `status` of a [`Project`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The namespace its environments run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The head of the default branch at the last poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_commit: Option<String>,
    /// The last image built successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<String>,
    /// When the repository was last polled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_polled: Option<String>,
    /// The value of the annotation `kapsa-project.io/refresh` the last poll answered (setting
    /// it to a new value polls at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<String>,
    /// Branch heads at the last poll, and the last good image of each branch built.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub branches: Vec<BranchStatus>,
    /// Its environments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub environments: Vec<EnvironmentSummary>,
    /// `Ready`, `RepositoryAccessible`, `BuildSucceeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A branch the project builds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BranchStatus {
    /// The branch.
    pub name: String,
    /// Its head at the last poll.
    pub commit: String,
    /// When that head was first seen (RFC 3339); a preview expires `ttl` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_seen_at: Option<String>,
    /// Its DNS-safe name in host names, builds and previews (stable once given).
    #[serde(default)]
    pub slug: String,
    /// The last image built from it successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The commit of that image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_commit: Option<String>,
    /// The commit whose build failed (not retried until the next commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_commit: Option<String>,
}

/// One entry of `status.environments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSummary {
    /// The Environment's name.
    pub name: String,
    /// Running its image.
    #[serde(default)]
    pub ready: bool,
    /// Where it is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `permanent` or `preview`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `spec` of an [`Environment`] (namespaced, short name `env`), made by the Project controller
/// in the project's namespace: one running copy of the project.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kapsa-project.io",
    version = "v1alpha1",
    kind = "Environment",
    plural = "environments",
    shortname = "env",
    namespaced,
    status = "EnvironmentStatus",
    derive = "PartialEq",
    derive = "Default",
    crates(kube_core = "::kube_core"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.urls[0]"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// The Project it belongs to.
    pub project_ref: ProjectRef,
    /// `permanent` or `preview`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["permanent", "preview"]))]
    pub kind: String,
    /// The branch it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The image it runs; set by the Project controller (on each new build when `autoSync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Roll to each new image of its branch.
    #[serde(default)]
    pub auto_sync: bool,
    /// How it runs.
    #[serde(default)]
    pub runtime: Runtime,
    /// How it is reached.
    #[serde(default)]
    pub ingress: IngressSpec,
    /// ConfigMaps whose keys become environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_refs: Vec<ConfigRef>,
    /// Secrets whose keys become environment variables (referenced, never copied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_refs: Vec<SecretRefEntry>,
    /// Plain environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// `spec.projectRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectRef {
    /// The Project's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The Project's namespace (its environments run in a namespace of their own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `spec.runtime`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    /// Replicas without autoscaling.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Requests and limits.
    #[serde(default)]
    pub resources: RuntimeResources,
    /// Horizontal autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Ports the app listens on; the first is served by the Service and Ingress (8080 when
    /// none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self { replicas: 1, resources: RuntimeResources::default(), autoscaling: None, ports: Vec::new() }
    }
}

fn one() -> i32 {
    1
}

/// `spec.runtime.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuntimeResources {
    /// Limits (`cpu`, `memory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("additionalProperties" = {"type": "string", "pattern": QUANTITY}))]
    pub limits: BTreeMap<String, String>,
    /// Requests (`cpu`, `memory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("additionalProperties" = {"type": "string", "pattern": QUANTITY}))]
    pub requests: BTreeMap<String, String>,
}

/// `spec.runtime.autoscaling`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// On.
    #[serde(default)]
    pub enabled: bool,
    /// Fewest replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    /// Most replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
    /// Average CPU utilisation to aim for (% of requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "targetCPUUtilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
    /// Average memory utilisation to aim for (% of requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_memory_utilization: Option<i32>,
}

/// One of `spec.runtime.ports`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The container's port.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
    /// TCP or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["TCP", "UDP"]))]
    pub protocol: Option<String>,
}

/// `spec.ingress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Make an Ingress.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Its host; allocated from the project's DomainPool when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its path.
    #[serde(default = "slash")]
    pub path: String,
    /// TLS through cert-manager.
    #[serde(default)]
    pub tls: Tls,
    /// Extra annotations of the Ingress.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for IngressSpec {
    fn default() -> Self {
        Self { enabled: true, host: None, path: slash(), tls: Tls::default(), annotations: BTreeMap::new() }
    }
}

fn slash() -> String {
    "/".into()
}

/// `spec.ingress.tls`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// On.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The certificate's Secret (`<environment>-tls` when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

impl Default for Tls {
    fn default() -> Self {
        Self { enabled: true, secret_name: None }
    }
}

/// One of `spec.configRefs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRef {
    /// The ConfigMap.
    pub config_map_ref: NameRef,
}

/// One of `spec.secretRefs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRefEntry {
    /// The Secret.
    pub secret_ref: NameRef,
}

/// An object in the same namespace, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NameRef {
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// `status` of an [`Environment`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Building, Running or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Pending", "Building", "Running", "Failed"]))]
    pub phase: Option<String>,
    /// The image it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<EnvironmentResources>,
    /// Where it is served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// When a preview is deleted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `Ready`, `IngressReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// `status.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentResources {
    /// The Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// The Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_name: Option<String>,
}

/// `spec` of a [`DomainPool`] (cluster-scoped): base domains projects get host names under.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kapsa-project.io",
    version = "v1alpha1",
    kind = "DomainPool",
    plural = "domainpools",
    shortname = "dp",
    status = "DomainPoolStatus",
    derive = "PartialEq",
    derive = "Default",
    crates(kube_core = "::kube_core"),
    printcolumn(name = "Domains", type_ = "string", json_path = ".spec.baseDomains"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DomainPoolSpec {
    /// Base domains (`apps.example.com`).
    #[schemars(length(min = 1), extend("items" = {"type": "string", "pattern": DNS_NAME, "maxLength": 253}))]
    pub base_domains: Vec<String>,
    /// The cert-manager issuer of the Ingresses' certificates.
    pub cert_manager: CertManager,
    /// How a base domain is picked.
    #[serde(default)]
    pub allocation_policy: AllocationPolicy,
}

/// `spec.certManager`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertManager {
    /// The issuer.
    pub issuer_ref: IssuerRef,
}

/// `spec.certManager.issuerRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerRef {
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `ClusterIssuer` or `Issuer`.
    #[serde(default = "cluster_issuer")]
    #[schemars(extend("enum" = ["ClusterIssuer", "Issuer"]))]
    pub kind: String,
}

fn cluster_issuer() -> String {
    "ClusterIssuer".into()
}

/// `spec.allocationPolicy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationPolicy {
    /// `round-robin`, `random` or `least-used`.
    #[serde(default = "round_robin")]
    #[schemars(extend("enum" = ["round-robin", "random", "least-used"]))]
    pub strategy: String,
    /// Subdomains never handed out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved_subdomains: Vec<String>,
}

impl Default for AllocationPolicy {
    fn default() -> Self {
        Self { strategy: round_robin(), reserved_subdomains: Vec::new() }
    }
}

fn round_robin() -> String {
    "round-robin".into()
}

/// `status` of a [`DomainPool`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainPoolStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Host names handed out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<Allocation>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One of `status.allocations`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The label(s) before the base domain (`api`, `staging.api`).
    pub subdomain: String,
    /// The base domain.
    pub base_domain: String,
    /// The Project (`namespace/name`).
    pub project: String,
    /// The Environment.
    pub environment: String,
}

#[cfg(test)]
mod tests {
    use kube_core::CustomResourceExt;

    use super::*;

    #[test]
    fn kapsas_registry_manifest_reads() {
        let r: Registry = serde_json::from_value(serde_json::json!({
            "apiVersion": "kapsa-project.io/v1alpha1", "kind": "Registry",
            "metadata": {"name": "harbor"},
            "spec": {"type": "harbor", "endpoint": "harbor.corp", "auth": {"secretRef": {"name": "harbor-creds", "namespace": "kapsa-system"}},
                "options": {"projectName": "apps"}, "imagePullSecret": {"name": "harbor-pull"}}
        }))
        .unwrap();
        assert_eq!(r.spec.kind, "harbor");
        assert_eq!(r.spec.auth.unwrap().secret_ref.namespace, "kapsa-system");
        assert!(r.spec.image_pull_secret.unwrap().generate_per_namespace, "defaults to true");
        let crd = Registry::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["reg".to_owned()]));
    }
}
