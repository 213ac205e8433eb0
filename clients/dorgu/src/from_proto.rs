//! The reconciler's PersonaService answers in the contract's terms (`persys.reconciler.v1`);
//! `dorgu persona status` and `dorgu cluster status` print and emit the custom resources'
//! statuses whichever way they were read. This is the inverse of the reconciler's `proto.rs`
//! (both spell enum values with `persys_analyzer::persona::spelling`), except for what the
//! contract does not carry: which label matched the workload, unknown replica counts (sent as
//! 0/0) and unknown utilisation (sent as 0).

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff,
};
use persys_analyzer::persona::spelling::spell;
use persys_crds::{cluster as crd_cluster, persona as crd};
use persys_proto::{analyzer::v1::FindingSeverity, common::v1 as common, reconciler::v1 as pb};

/// A protobuf timestamp as the RFC 3339 string the CRDs hold.
fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok()).map(|t| t.to_string())
}

fn conditions(cs: &[common::Condition]) -> Vec<Condition> {
    cs.iter()
        .map(|c| Condition {
            type_: c.r#type.clone(),
            status: spell::<common::ConditionStatus>(c.status).unwrap_or_else(|| "Unknown".into()),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: Time(
                c.last_transition_time
                    .as_ref()
                    .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            ),
            observed_generation: (c.observed_generation != 0).then_some(c.observed_generation),
        })
        .collect()
}

fn health(h: &pb::HealthReport) -> crd::HealthStatus {
    // The contract sends unknown counts as 0/0.
    let known = h.ready_replicas != 0 || h.desired_replicas != 0;
    crd::HealthStatus {
        status: spell::<pb::HealthStatus>(h.status).unwrap_or_else(|| "Unknown".into()),
        last_check: time(h.last_check.as_ref()),
        message: h.message.clone(),
        desired_replicas: known.then_some(h.desired_replicas),
        ready_replicas: known.then_some(h.ready_replicas),
        pod_failures: h
            .pod_failures
            .iter()
            .map(|f| crd::PodFailure {
                pod_name: f.pod_name.clone(),
                container: f.container.clone(),
                reason: f.reason.clone(),
                message: f.message.clone(),
            })
            .collect(),
    }
}

fn validation(v: &pb::ValidationReport) -> crd::ValidationStatus {
    crd::ValidationStatus {
        passed: v.passed,
        last_checked: time(v.last_checked.as_ref()),
        issues: v
            .issues
            .iter()
            .map(|i| crd::ValidationIssue {
                severity: spell::<FindingSeverity>(i.severity).unwrap_or_else(|| "info".into()),
                rule: i.rule_id.clone(),
                field: i.field.clone(),
                message: i.message.clone(),
                suggestion: i.suggestion.clone(),
            })
            .collect(),
    }
}

fn argocd(a: &pb::ArgoCdStatus) -> crd::ArgoCdStatus {
    crd::ArgoCdStatus {
        sync_status: spell::<pb::ArgoSyncStatus>(a.sync_status).unwrap_or_else(|| "Unknown".into()),
        health_status: spell::<pb::ArgoHealthStatus>(a.health_status).unwrap_or_else(|| "Unknown".into()),
        last_sync_time: time(a.last_sync_time.as_ref()),
        revision: a.revision.clone(),
        application_name: a.application_name.clone(),
        application_namespace: a.application_namespace.clone(),
    }
}

/// An ApplicationPersona's status as the CRD holds it.
pub fn persona_status(s: &pb::ApplicationPersonaStatus) -> crd::ApplicationPersonaStatus {
    crd::ApplicationPersonaStatus {
        phase: spell::<pb::PersonaPhase>(s.phase),
        last_updated: time(s.last_updated.as_ref()),
        observed_generation: (s.observed_generation != 0).then_some(s.observed_generation),
        workload: s.matched_workload.as_ref().map(|w| crd::WorkloadStatus {
            kind: w.kind.clone(),
            name: w.name.clone(),
            matched_by: String::new(),
        }),
        deployments: s.deployments.as_ref().map(|d| crd::DeploymentsStatus {
            current: d.current.clone(),
            last_successful: d.last_successful.clone(),
            last_failed: d.last_failed.clone(),
        }),
        health: s.health.as_ref().map(health),
        validation: s.validation.as_ref().map(validation),
        learned: s.learned.as_ref().map(|l| crd::Learned {
            resource_baseline: l.resource_baseline.as_ref().map(|b| crd::ResourceBaseline {
                avg_cpu: b.avg_cpu.clone(),
                avg_memory: b.avg_memory.clone(),
                peak_cpu: b.peak_cpu.clone(),
                peak_memory: b.peak_memory.clone(),
            }),
            last_learned: l.resource_baseline.as_ref().and_then(|b| time(b.sampled_at.as_ref())),
        }),
        recommendations: s
            .recommendations
            .iter()
            .map(|r| crd::Recommendation {
                kind: r.r#type.clone(),
                priority: r.priority.clone(),
                message: r.message.clone(),
                action: r.action.clone(),
            })
            .collect(),
        argo_cd: s.argocd.as_ref().map(argocd),
        conditions: conditions(&s.conditions),
    }
}

fn node_resources(r: &pb::NodeResources) -> crd_cluster::NodeResources {
    crd_cluster::NodeResources {
        cpu: r.cpu.clone(),
        memory: r.memory.clone(),
        pods: r.pods.clone(),
        ephemeral_storage: r.ephemeral_storage.clone(),
    }
}

/// A ClusterPersona's status as the CRD holds it.
pub fn cluster_status(s: &pb::ClusterPersonaStatus) -> crd_cluster::ClusterPersonaStatus {
    // The contract sends an unknown utilisation as 0, like the reconciler's 0 %.
    let percent = |p: f64| (p > 0.0).then(|| p.round() as i32);
    crd_cluster::ClusterPersonaStatus {
        phase: spell::<pb::ClusterPhase>(s.phase),
        last_discovery: time(s.last_discovery.as_ref()),
        nodes: s
            .nodes
            .iter()
            .map(|n| crd_cluster::NodeInfo {
                name: n.name.clone(),
                role: n.role.clone(),
                ready: n.ready,
                capacity: n.capacity.as_ref().map(node_resources),
                allocatable: n.allocatable.as_ref().map(node_resources),
                taints: n.taints.clone(),
                labels: n.labels.clone().into_iter().collect(),
                kubelet_version: n.kubelet_version.clone(),
                container_runtime: n.container_runtime.clone(),
            })
            .collect(),
        resource_summary: s.resource_summary.as_ref().map(|r| crd_cluster::ResourceSummary {
            node_count: r.node_count,
            total_cpu: r.total_cpu.clone(),
            total_memory: r.total_memory.clone(),
            allocatable_cpu: r.allocatable_cpu.clone(),
            allocatable_memory: r.allocatable_memory.clone(),
            used_cpu: r.used_cpu.clone(),
            used_memory: r.used_memory.clone(),
            cpu_utilization: percent(r.cpu_utilization),
            memory_utilization: percent(r.memory_utilization),
            total_pods: r.total_pods,
            running_pods: r.running_pods,
        }),
        addons: s
            .addons
            .iter()
            .map(|a| crd_cluster::Addon {
                name: a.name.clone(),
                kind: spell::<pb::AddonType>(a.r#type).unwrap_or_else(|| "other".into()),
                installed: a.installed,
                version: a.version.clone(),
                namespace: a.namespace.clone(),
                healthy: a.healthy,
            })
            .collect(),
        namespaces: s.namespaces.as_ref().map(|n| crd_cluster::NamespaceCounts {
            total: n.total,
            active: n.active,
            with_personas: n.with_personas,
        }),
        kubernetes_version: s.kubernetes_version.clone(),
        platform: s.platform.clone(),
        application_count: s.application_count,
        observed_generation: None,
        conditions: conditions(&s.conditions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_contract_sends_as_zero_stays_unknown() {
        let s = persona_status(&pb::ApplicationPersonaStatus {
            health: Some(pb::HealthReport { status: pb::HealthStatus::Healthy as i32, ..Default::default() }),
            argocd: Some(pb::ArgoCdStatus { sync_status: pb::ArgoSyncStatus::OutOfSync as i32, ..Default::default() }),
            last_updated: Some(prost_types::Timestamp { seconds: 1_796_515_200, nanos: 0 }),
            ..Default::default()
        });
        let h = s.health.unwrap();
        assert_eq!((h.status.as_str(), h.ready_replicas, h.desired_replicas), ("Healthy", None, None));
        assert_eq!(s.argo_cd.unwrap().sync_status, "OutOfSync");
        assert_eq!(s.last_updated.as_deref(), Some("2026-12-06T00:00:00Z"));
        assert_eq!((s.phase, s.observed_generation), (None, None));

        let c = cluster_status(&pb::ClusterPersonaStatus {
            resource_summary: Some(pb::ResourceSummary { cpu_utilization: 12.6, ..Default::default() }),
            ..Default::default()
        });
        let r = c.resource_summary.unwrap();
        assert_eq!((r.cpu_utilization, r.memory_utilization), (Some(13), None));
    }
}
