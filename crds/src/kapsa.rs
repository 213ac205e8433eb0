//! Kapsa's resources (`kapsa-project.io/v1alpha1`), field for field with Kapsa's CRDs so its
//! manifests apply unchanged. So far: `Registry`, the container registry projects push to,
//! whose reachability and credentials the reconciler verifies through the registry v2 API.

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
