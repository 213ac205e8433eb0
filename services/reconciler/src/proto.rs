//! The custom resources in the contract's terms (`persys.reconciler.v1`), for PersonaService.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use persys_analyzer::persona::{convert, spelling::parse};
use persys_crds::{
    cluster::{self as crd_cluster, ClusterPersona},
    persona::{self as crd, ApplicationPersona},
};
use persys_proto::{
    analyzer::v1::{Finding, FindingSeverity},
    common::v1 as common,
    reconciler::v1 as pb,
};

/// An RFC 3339 string as a protobuf timestamp; `None` when absent or unreadable.
pub fn timestamp(s: Option<&str>) -> Option<prost_types::Timestamp> {
    let t: k8s_openapi::jiff::Timestamp = s?.parse().ok()?;
    Some(prost_types::Timestamp { seconds: t.as_second(), nanos: t.subsec_nanosecond() })
}

/// Kubernetes metadata in the contract's terms.
pub(crate) fn meta(m: &ObjectMeta) -> pb::ObjectMeta {
    pb::ObjectMeta {
        name: m.name.clone().unwrap_or_default(),
        namespace: m.namespace.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        resource_version: m.resource_version.clone().unwrap_or_default(),
        generation: m.generation.unwrap_or(0),
        labels: m.labels.clone().unwrap_or_default().into_iter().collect(),
        annotations: m.annotations.clone().unwrap_or_default().into_iter().collect(),
        creation_timestamp: m
            .creation_timestamp
            .as_ref()
            .map(|t| prost_types::Timestamp { seconds: t.0.as_second(), nanos: t.0.subsec_nanosecond() }),
    }
}

/// Kubernetes conditions in the contract's terms.
pub(crate) fn conditions(cs: &[Condition]) -> Vec<common::Condition> {
    cs.iter()
        .map(|c| common::Condition {
            r#type: c.type_.clone(),
            status: parse(&c.status).unwrap_or(common::ConditionStatus::Unknown) as i32,
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: Some(prost_types::Timestamp {
                seconds: c.last_transition_time.0.as_second(),
                nanos: c.last_transition_time.0.subsec_nanosecond(),
            }),
            observed_generation: c.observed_generation.unwrap_or(0),
        })
        .collect()
}

/// The CRD's phase spelling as the contract's enum.
pub fn phase(p: Option<&str>) -> pb::PersonaPhase {
    p.and_then(parse).unwrap_or(pb::PersonaPhase::Unspecified)
}

fn health(h: &crd::HealthStatus) -> pb::HealthReport {
    pb::HealthReport {
        status: parse(&h.status).unwrap_or(pb::HealthStatus::Unknown) as i32,
        last_check: timestamp(h.last_check.as_deref()),
        message: h.message.clone(),
        ready_replicas: h.ready_replicas.unwrap_or(0),
        desired_replicas: h.desired_replicas.unwrap_or(0),
        pod_failures: h
            .pod_failures
            .iter()
            .map(|f| pb::PodFailure {
                pod_name: f.pod_name.clone(),
                container: f.container.clone(),
                reason: f.reason.clone(),
                message: f.message.clone(),
            })
            .collect(),
    }
}

fn issue(i: &crd::ValidationIssue) -> Finding {
    Finding {
        severity: parse(&i.severity).unwrap_or(FindingSeverity::Info) as i32,
        rule_id: i.rule.clone(),
        message: i.message.clone(),
        suggestion: i.suggestion.clone(),
        field: i.field.clone(),
        ..Finding::default()
    }
}

fn argocd(a: &crd::ArgoCdStatus) -> pb::ArgoCdStatus {
    pb::ArgoCdStatus {
        sync_status: parse(&a.sync_status).unwrap_or(pb::ArgoSyncStatus::Unknown) as i32,
        health_status: parse(&a.health_status).unwrap_or(pb::ArgoHealthStatus::Unknown) as i32,
        last_sync_time: timestamp(a.last_sync_time.as_deref()),
        revision: a.revision.clone(),
        application_name: a.application_name.clone(),
        application_namespace: a.application_namespace.clone(),
    }
}

/// An ApplicationPersona in the contract's terms. A spec the analyzer's conversion refuses
/// (values outside its enums) is sent with only its name.
pub fn application_persona(p: &ApplicationPersona) -> pb::ApplicationPersona {
    let spec = convert::from_crd(&p.spec).unwrap_or_else(|_| persys_proto::analyzer::v1::ApplicationPersonaSpec {
        name: p.spec.name.clone(),
        ..Default::default()
    });
    let status = p.status.as_ref().map(|s| pb::ApplicationPersonaStatus {
        phase: phase(s.phase.as_deref()) as i32,
        last_updated: timestamp(s.last_updated.as_deref()),
        deployments: s.deployments.as_ref().map(|d| pb::DeploymentHistory {
            current: d.current.clone(),
            last_successful: d.last_successful.clone(),
            last_failed: d.last_failed.clone(),
            history: vec![],
        }),
        health: s.health.as_ref().map(health),
        validation: s.validation.as_ref().map(|v| pb::ValidationReport {
            passed: v.passed,
            last_checked: timestamp(v.last_checked.as_deref()),
            issues: v.issues.iter().map(issue).collect(),
        }),
        learned: s.learned.as_ref().map(|l| pb::LearnedState {
            resource_baseline: l.resource_baseline.as_ref().map(|b| pb::ResourceBaseline {
                avg_cpu: b.avg_cpu.clone(),
                avg_memory: b.avg_memory.clone(),
                peak_cpu: b.peak_cpu.clone(),
                peak_memory: b.peak_memory.clone(),
                window: None,
                sampled_at: timestamp(l.last_learned.as_deref()),
            }),
        }),
        argocd: s.argo_cd.as_ref().map(argocd),
        conditions: conditions(&s.conditions),
        matched_workload: s.workload.as_ref().map(|w| common::ObjectReference {
            api_version: "apps/v1".into(),
            kind: w.kind.clone(),
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: w.name.clone(),
            uid: String::new(),
        }),
        observed_generation: s.observed_generation.unwrap_or(0),
        recommendations: s
            .recommendations
            .iter()
            .map(|r| pb::Recommendation {
                r#type: r.kind.clone(),
                priority: r.priority.clone(),
                message: r.message.clone(),
                action: r.action.clone(),
            })
            .collect(),
    });
    pb::ApplicationPersona { metadata: Some(meta(&p.metadata)), spec: Some(spec), status }
}

fn node_resources(r: &crd_cluster::NodeResources) -> pb::NodeResources {
    pb::NodeResources {
        cpu: r.cpu.clone(),
        memory: r.memory.clone(),
        pods: r.pods.clone(),
        ephemeral_storage: r.ephemeral_storage.clone(),
    }
}

/// The cluster's phase as the contract's enum.
pub fn cluster_phase(p: Option<&str>) -> pb::ClusterPhase {
    p.and_then(parse).unwrap_or(pb::ClusterPhase::Unspecified)
}

/// A ClusterPersona in the contract's terms.
pub fn cluster_persona(c: &ClusterPersona) -> pb::ClusterPersona {
    let s = &c.spec;
    let defaults = s.defaults.as_ref().map(|d| {
        // The analyzer converts whole persona specs: borrow one for the shared shapes.
        let borrowed = convert::from_crd(&crd::ApplicationPersonaSpec {
            name: "defaults".into(),
            kind: "api".into(),
            resources: d.resources.clone(),
            scaling: d.scaling.clone(),
            ..Default::default()
        })
        .ok();
        pb::ClusterDefaults {
            namespace: d.namespace.clone(),
            registry: d.registry.clone(),
            resources: borrowed.as_ref().and_then(|b| b.resources.clone()),
            scaling: borrowed.and_then(|b| b.scaling),
        }
    });
    let spec = pb::ClusterPersonaSpec {
        name: s.name.clone(),
        description: s.description.clone(),
        environment: s.environment.as_deref().and_then(parse).unwrap_or(pb::ClusterEnvironment::Unspecified) as i32,
        policies: s.policies.as_ref().map(|p| pb::ClusterPolicies {
            security: p.security.as_ref().map(|sec| pb::ClusterSecurityPolicy {
                enforce_non_root: sec.enforce_non_root,
                enforce_read_only_root: sec.enforce_read_only_root,
                disallow_privileged: sec.disallow_privileged,
                allowed_registries: sec.allowed_registries.clone(),
                pod_security_standard: sec
                    .pod_security_standard
                    .as_deref()
                    .and_then(parse)
                    .unwrap_or(pb::PodSecurityStandard::Unspecified) as i32,
            }),
            networking: p.networking.as_ref().map(|n| pb::ClusterNetworkingPolicy {
                default_deny_ingress: n.default_deny_ingress.unwrap_or(false),
                default_deny_egress: n.default_deny_egress.unwrap_or(false),
                allowed_external_cidrs: n.allowed_external_cidrs.clone(),
            }),
            compliance: p.compliance.clone(),
        }),
        conventions: s.conventions.as_ref().map(|c| pb::ClusterConventions {
            naming_pattern: c.naming_pattern.clone(),
            required_labels: c.required_labels.clone(),
            required_annotations: c.required_annotations.clone(),
            namespace_prefix: c.namespace_prefix.clone(),
        }),
        defaults,
        resource_quotas: s.resource_quotas.as_ref().map(|q| pb::ResourceQuotaPolicy {
            max_pods_per_namespace: q.max_pods_per_namespace.unwrap_or(0),
            max_cpu_per_namespace: q.max_cpu_per_namespace.clone(),
            max_memory_per_namespace: q.max_memory_per_namespace.clone(),
            max_pvcs_per_namespace: q.max_pvcs_per_namespace.unwrap_or(0),
        }),
    };
    let status = c.status.as_ref().map(|st| pb::ClusterPersonaStatus {
        phase: cluster_phase(st.phase.as_deref()) as i32,
        last_discovery: timestamp(st.last_discovery.as_deref()),
        nodes: st
            .nodes
            .iter()
            .map(|n| pb::ClusterNode {
                name: n.name.clone(),
                role: n.role.clone(),
                ready: n.ready,
                capacity: n.capacity.as_ref().map(node_resources),
                allocatable: n.allocatable.as_ref().map(node_resources),
                taints: n.taints.clone(),
                labels: n.labels.clone().into_iter().collect::<BTreeMap<_, _>>().into_iter().collect(),
                kubelet_version: n.kubelet_version.clone(),
                container_runtime: n.container_runtime.clone(),
            })
            .collect(),
        resource_summary: st.resource_summary.as_ref().map(|r| pb::ResourceSummary {
            total_cpu: r.total_cpu.clone(),
            total_memory: r.total_memory.clone(),
            allocatable_cpu: r.allocatable_cpu.clone(),
            allocatable_memory: r.allocatable_memory.clone(),
            used_cpu: r.used_cpu.clone(),
            used_memory: r.used_memory.clone(),
            cpu_utilization: f64::from(r.cpu_utilization.unwrap_or(0)),
            memory_utilization: f64::from(r.memory_utilization.unwrap_or(0)),
            total_pods: r.total_pods,
            running_pods: r.running_pods,
            node_count: r.node_count,
        }),
        addons: st
            .addons
            .iter()
            .map(|a| pb::Addon {
                name: a.name.clone(),
                r#type: parse(&a.kind).unwrap_or(pb::AddonType::Other) as i32,
                installed: a.installed,
                version: a.version.clone(),
                namespace: a.namespace.clone(),
                healthy: a.healthy,
            })
            .collect(),
        namespaces: st.namespaces.as_ref().map(|n| pb::NamespaceSummary {
            total: n.total,
            active: n.active,
            with_personas: n.with_personas,
        }),
        kubernetes_version: st.kubernetes_version.clone(),
        platform: st.platform.clone(),
        application_count: st.application_count,
        conditions: conditions(&st.conditions),
    });
    pb::ClusterPersona { metadata: Some(meta(&c.metadata)), spec: Some(spec), status }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_and_recommendations_reach_the_wire() {
        let p: ApplicationPersona = serde_json::from_value(serde_json::json!({
            "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
            "metadata": {"name": "shop", "namespace": "apps"},
            "spec": {"name": "shop", "type": "api"},
            "status": {
                "phase": "Active",
                "learned": {"resourceBaseline": {"avgCPU": "250m", "peakCPU": "500m", "avgMemory": "258Mi", "peakMemory": "512Mi"},
                    "lastLearned": "2026-12-04T12:00:00Z"},
                "recommendations": [{"type": "resource", "priority": "high", "message": "peak memory 512Mi is 200% of the limit 256Mi", "action": "raise resources.limits.memory to at least 640Mi"}]
            }
        }))
        .unwrap();
        let s = application_persona(&p).status.unwrap();
        assert_eq!(s.phase, pb::PersonaPhase::Active as i32);
        let b = s.learned.unwrap().resource_baseline.unwrap();
        assert_eq!((b.avg_cpu.as_str(), b.peak_memory.as_str()), ("250m", "512Mi"));
        assert_eq!(b.sampled_at.map(|t| t.seconds), timestamp(Some("2026-12-04T12:00:00Z")).map(|t| t.seconds));
        assert_eq!(s.recommendations.len(), 1);
        let r = &s.recommendations[0];
        assert_eq!((r.r#type.as_str(), r.priority.as_str()), ("resource", "high"));
        assert_eq!(r.action, "raise resources.limits.memory to at least 640Mi");
    }
}
