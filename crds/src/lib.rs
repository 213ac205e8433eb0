//! The Kubernetes contracts of Persys, as [`proto`](../persys_proto) holds the gRPC ones: typed
//! custom resources with their OpenAPI schemas, shared by the analyzer (which writes personas),
//! the `dorgu` CLI (which applies them) and the reconciler (which owns their status).
//!
//! [`all`] is every CustomResourceDefinition the reconciler needs; `reconciler crds` prints
//! them and the Helm chart carries the same YAML (a test fails when the two drift).

pub mod cluster;
pub mod kapsa;
pub mod persona;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;

pub use cluster::{ClusterPersona, ClusterPersonaSpec, ClusterPersonaStatus};
pub use persona::{ApplicationPersona, ApplicationPersonaSpec, ApplicationPersonaStatus};

/// Every CRD, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        ApplicationPersona::crd(),
        ClusterPersona::crd(),
        kapsa::Registry::crd(),
        kapsa::Project::crd(),
        kapsa::Environment::crd(),
        kapsa::DomainPool::crd(),
    ]
}
