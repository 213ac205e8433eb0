//! How the custom resources spell the values of the contract's enums: a value's protobuf name
//! without its enum's prefix, in the case the resource uses (`TIER_BEST_EFFORT` <-> `best-effort`,
//! `DEPLOYMENT_STRATEGY_ROLLING_UPDATE` <-> `RollingUpdate`, `ENV_SOURCE_CONFIG_MAP` <->
//! `configMap`). Each enum states its prefix and case once, below; every conversion between the
//! contract and the resources uses [`spell`] and [`parse`]: the analyzer's persona spec, the
//! reconciler's PersonaService and `dorgu persona status` reading the service's answer back.

use persys_proto::{
    analyzer::v1::{
        AppType, DependencyType, DeploymentStrategy, EnvNeed, EnvSource, FindingSeverity, ResourceProfile,
        ScalingBehavior, Tier,
    },
    common::v1::ConditionStatus,
    reconciler::v1::{
        AddonType, ArgoHealthStatus, ArgoSyncStatus, ClusterEnvironment, ClusterPhase, HealthStatus, PersonaPhase,
        PodSecurityStandard,
    },
};

/// The case of a resource's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// `best-effort`
    Kebab,
    /// `RollingUpdate`
    Pascal,
    /// `configMap`
    Camel,
}

/// A contract enum the custom resources spell (see the module's documentation).
pub trait Spelled: Copy + TryFrom<i32> {
    /// The prefix of every value's protobuf name (`TIER_`).
    const PREFIX: &'static str;
    /// The case the resources use.
    const CASE: Case;
    /// The value's protobuf name (`TIER_BEST_EFFORT`).
    fn proto_name(self) -> &'static str;
    /// The value with this protobuf name.
    fn from_proto_name(name: &str) -> Option<Self>;
}

macro_rules! spelled {
    ($($ty:ty => $prefix:literal, $case:ident;)*) => {$(
        impl Spelled for $ty {
            const PREFIX: &'static str = $prefix;
            const CASE: Case = Case::$case;
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
            fn from_proto_name(name: &str) -> Option<Self> {
                Self::from_str_name(name)
            }
        }
    )*};
}

spelled! {
    AppType => "APP_TYPE_", Kebab;
    Tier => "TIER_", Kebab;
    ResourceProfile => "RESOURCE_PROFILE_", Kebab;
    ScalingBehavior => "SCALING_BEHAVIOR_", Kebab;
    DependencyType => "DEPENDENCY_TYPE_", Kebab;
    DeploymentStrategy => "DEPLOYMENT_STRATEGY_", Pascal;
    EnvNeed => "ENV_NEED_", Kebab;
    EnvSource => "ENV_SOURCE_", Camel;
    FindingSeverity => "FINDING_SEVERITY_", Kebab;
    ConditionStatus => "CONDITION_STATUS_", Pascal;
    PersonaPhase => "PERSONA_PHASE_", Pascal;
    HealthStatus => "HEALTH_STATUS_", Pascal;
    ArgoSyncStatus => "ARGO_SYNC_STATUS_", Pascal;
    ArgoHealthStatus => "ARGO_HEALTH_STATUS_", Pascal;
    ClusterPhase => "CLUSTER_PHASE_", Pascal;
    ClusterEnvironment => "CLUSTER_ENVIRONMENT_", Kebab;
    PodSecurityStandard => "POD_SECURITY_STANDARD_", Kebab;
    AddonType => "ADDON_TYPE_", Kebab;
}

fn unspecified<E: Spelled>(e: E) -> bool {
    e.proto_name().strip_prefix(E::PREFIX) == Some("UNSPECIFIED")
}

/// The resource's spelling of a contract value (a message's `i32` field); `None` for the
/// unspecified value and for numbers the enum does not have.
pub fn spell<E: Spelled>(value: i32) -> Option<String> {
    let e = E::try_from(value).ok().filter(|e| !unspecified(*e))?;
    let name = e.proto_name();
    Some(match E::CASE {
        Case::Kebab => kebab(name, E::PREFIX),
        Case::Pascal => pascal(name, E::PREFIX),
        Case::Camel => camel(name, E::PREFIX),
    })
}

/// The contract value a resource's spelling stands for; `None` for a spelling the enum does not
/// have (or the unspecified value's).
pub fn parse<E: Spelled>(spelling: &str) -> Option<E> {
    let name = match E::CASE {
        Case::Kebab => from_kebab(spelling, E::PREFIX),
        Case::Pascal | Case::Camel => from_pascal(spelling, E::PREFIX),
    };
    E::from_proto_name(&name).filter(|e| !unspecified(*e))
}

fn kebab(proto_name: &str, prefix: &str) -> String {
    proto_name.trim_start_matches(prefix).to_ascii_lowercase().replace('_', "-")
}

fn pascal(proto_name: &str, prefix: &str) -> String {
    proto_name
        .trim_start_matches(prefix)
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or_else(String::new, |f| f.to_string() + &c.as_str().to_ascii_lowercase())
        })
        .collect()
}

fn camel(proto_name: &str, prefix: &str) -> String {
    let mut p = pascal(proto_name, prefix);
    if let Some(first) = p.get_mut(0..1) {
        first.make_ascii_lowercase();
    }
    p
}

fn from_kebab(value: &str, prefix: &str) -> String {
    format!("{prefix}{}", value.to_ascii_uppercase().replace('-', "_"))
}

fn from_pascal(value: &str, prefix: &str) -> String {
    let mut out = String::from(prefix);
    for (i, c) in value.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_map_both_ways() {
        assert_eq!(kebab("TIER_BEST_EFFORT", "TIER_"), "best-effort");
        assert_eq!(from_kebab("best-effort", "TIER_"), "TIER_BEST_EFFORT");
        assert_eq!(pascal("DEPLOYMENT_STRATEGY_ROLLING_UPDATE", "DEPLOYMENT_STRATEGY_"), "RollingUpdate");
        assert_eq!(from_pascal("BlueGreen", "DEPLOYMENT_STRATEGY_"), "DEPLOYMENT_STRATEGY_BLUE_GREEN");
        assert_eq!(camel("ENV_SOURCE_CONFIG_MAP", "ENV_SOURCE_"), "configMap");
        assert_eq!(from_pascal("configMap", "ENV_SOURCE_"), "ENV_SOURCE_CONFIG_MAP");
        assert_eq!(camel("ENV_SOURCE_SECRET", "ENV_SOURCE_"), "secret");
    }

    /// What resources already stored in clusters hold (Dorgu's CRDs): changing a spelling
    /// breaks them.
    #[test]
    fn the_resources_spellings() {
        assert_eq!(spell::<Tier>(Tier::BestEffort as i32).as_deref(), Some("best-effort"));
        assert_eq!(spell::<DeploymentStrategy>(DeploymentStrategy::BlueGreen as i32).as_deref(), Some("BlueGreen"));
        assert_eq!(spell::<EnvSource>(EnvSource::ConfigMap as i32).as_deref(), Some("configMap"));
        assert_eq!(spell::<FindingSeverity>(FindingSeverity::Warning as i32).as_deref(), Some("warning"));
        assert_eq!(spell::<ConditionStatus>(ConditionStatus::True as i32).as_deref(), Some("True"));
        assert_eq!(spell::<PersonaPhase>(PersonaPhase::Active as i32).as_deref(), Some("Active"));
        assert_eq!(spell::<ArgoSyncStatus>(ArgoSyncStatus::OutOfSync as i32).as_deref(), Some("OutOfSync"));
        assert_eq!(spell::<ArgoHealthStatus>(ArgoHealthStatus::Progressing as i32).as_deref(), Some("Progressing"));
        assert_eq!(spell::<ClusterPhase>(ClusterPhase::Discovering as i32).as_deref(), Some("Discovering"));
        assert_eq!(spell::<ClusterEnvironment>(ClusterEnvironment::Production as i32).as_deref(), Some("production"));
        assert_eq!(spell::<PodSecurityStandard>(PodSecurityStandard::Restricted as i32).as_deref(), Some("restricted"));
        assert_eq!(spell::<AddonType>(AddonType::ServiceMesh as i32).as_deref(), Some("service-mesh"));
        assert_eq!(spell::<AddonType>(AddonType::CertManagement as i32).as_deref(), Some("cert-management"));
        assert_eq!(spell::<AddonType>(AddonType::Gitops as i32).as_deref(), Some("gitops"));
    }

    fn round_trips<E: Spelled>() -> usize {
        let mut spelled = 0;
        for v in -1..64 {
            match spell::<E>(v) {
                Some(s) => {
                    let back = parse::<E>(&s).map(|e| e.proto_name());
                    assert_eq!(back, E::try_from(v).ok().map(|e| e.proto_name()), "{s}");
                    spelled += 1;
                }
                None => assert!(E::try_from(v).map_or(true, unspecified), "{} {v} has no spelling", E::PREFIX),
            }
        }
        assert_eq!(parse::<E>("unspecified").map(|e| e.proto_name()), None, "{}", E::PREFIX);
        assert_eq!(parse::<E>("Unspecified").map(|e| e.proto_name()), None, "{}", E::PREFIX);
        assert_eq!(parse::<E>("").map(|e| e.proto_name()), None, "{}", E::PREFIX);
        spelled
    }

    /// Every value of every enum reads back as itself; the unspecified value has no spelling.
    #[test]
    fn every_value_round_trips() {
        assert_eq!(round_trips::<AppType>(), 5);
        assert_eq!(round_trips::<Tier>(), 3);
        assert_eq!(round_trips::<ResourceProfile>(), 4);
        assert_eq!(round_trips::<ScalingBehavior>(), 3);
        assert_eq!(round_trips::<DependencyType>(), 5);
        assert_eq!(round_trips::<DeploymentStrategy>(), 4);
        assert_eq!(round_trips::<EnvNeed>(), 3);
        assert_eq!(round_trips::<EnvSource>(), 5);
        assert_eq!(round_trips::<FindingSeverity>(), 3);
        assert_eq!(round_trips::<ConditionStatus>(), 3);
        assert_eq!(round_trips::<PersonaPhase>(), 4);
        assert_eq!(round_trips::<HealthStatus>(), 4);
        assert_eq!(round_trips::<ArgoSyncStatus>(), 3);
        assert_eq!(round_trips::<ArgoHealthStatus>(), 6);
        assert_eq!(round_trips::<ClusterPhase>(), 4);
        assert_eq!(round_trips::<ClusterEnvironment>(), 4);
        assert_eq!(round_trips::<PodSecurityStandard>(), 3);
        assert_eq!(round_trips::<AddonType>(), 9);
    }
}
