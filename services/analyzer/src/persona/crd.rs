//! The `ApplicationPersona` custom resource (`dorgu.io/v1`): the types live in `persys-crds`,
//! shared with the reconciler and dorgu; `Spec` is the analyzer's name for the spec.

pub use persys_crds::persona::{
    API_VERSION, Amounts, ApplicationPersona, ApplicationPersonaSpec as Spec, ApplicationPersonaStatus, Dependency,
    Deployment, EnvVar, Health, Ingress, KIND, Maintenance, Networking, Ownership, Policies, Port, Resources, Scaling,
    Security, Technical,
};
