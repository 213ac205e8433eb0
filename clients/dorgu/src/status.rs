//! How `dorgu persona status` and `dorgu cluster status` print what the reconciler reports:
//! pure formatting of the typed statuses, one labelled line per fact, lists indented under
//! their heading, nothing printed for what the operator has not reported.

use std::fmt::Write;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use persys_crds::{cluster::ClusterPersonaStatus, persona::ApplicationPersonaStatus};

/// Writes `label: value` aligned, when `value` is not empty.
fn line(out: &mut String, label: &str, value: &str) {
    if !value.trim().is_empty() {
        let _ = writeln!(out, "  {:<12}{}", format!("{label}:"), value.trim_end());
    }
}

fn conditions(out: &mut String, conditions: &[Condition]) {
    if conditions.is_empty() {
        return;
    }
    let _ = writeln!(out, "  conditions:");
    for c in conditions {
        let _ = writeln!(out, "    {:<12}{:<6}{:<18}{}", c.type_, c.status, c.reason, c.message);
    }
}

/// Formats an ApplicationPersona's status.
pub fn persona(namespace: &str, name: &str, status: Option<&ApplicationPersonaStatus>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ApplicationPersona {namespace}/{name}");
    let Some(s) = status else {
        let _ = writeln!(out, "  no status yet: the operator has not reconciled it (is the reconciler running?)");
        return out;
    };
    line(&mut out, "phase", s.phase.as_deref().unwrap_or("-"));
    if let Some(w) = &s.workload {
        // Through the gateway, which label matched is not known.
        let matched = if w.matched_by.is_empty() { String::new() } else { format!(" (matched by {})", w.matched_by) };
        line(&mut out, "workload", &format!("{}/{}{matched}", w.kind, w.name));
    }
    if let Some(h) = &s.health {
        let replicas = match (h.ready_replicas, h.desired_replicas) {
            (Some(ready), Some(desired)) => format!(" ({ready}/{desired} ready)"),
            _ => String::new(),
        };
        line(&mut out, "health", &format!("{} {}{replicas}", h.status, h.message));
        for f in &h.pod_failures {
            let container = if f.container.is_empty() { String::new() } else { format!("/{}", f.container) };
            let _ = writeln!(out, "    {}{container}: {} {}", f.pod_name, f.reason, f.message);
        }
    }
    if let Some(d) = &s.deployments {
        line(&mut out, "deployed", &d.current);
        if d.last_successful != d.current {
            line(&mut out, "last good", &d.last_successful);
        }
    }
    if let Some(v) = &s.validation {
        line(&mut out, "validation", if v.passed { "passed" } else { "failed" });
        for issue in &v.issues {
            let field = if issue.field.is_empty() { "-" } else { &issue.field };
            let _ = writeln!(out, "    {:<7} {field} {}", issue.severity, issue.message);
            if !issue.suggestion.is_empty() {
                let _ = writeln!(out, "            fix: {}", issue.suggestion);
            }
        }
    }
    if let Some(a) = &s.argo_cd {
        let mut argo = format!("{} / {}", or_dash(&a.sync_status), or_dash(&a.health_status));
        if !a.revision.is_empty() {
            let _ = write!(argo, " at {}", short_revision(&a.revision));
        }
        if let Some(t) = &a.last_sync_time {
            let _ = write!(argo, ", synced {t}");
        }
        if !a.application_name.is_empty() {
            let _ = write!(argo, " (Application {}/{})", a.application_namespace, a.application_name);
        }
        line(&mut out, "argocd", &argo);
    }
    if let Some(b) = s.learned.as_ref().and_then(|l| l.resource_baseline.as_ref()) {
        line(
            &mut out,
            "baseline",
            &format!(
                "cpu avg {} peak {}, memory avg {} peak {}",
                or_dash(&b.avg_cpu),
                or_dash(&b.peak_cpu),
                or_dash(&b.avg_memory),
                or_dash(&b.peak_memory)
            ),
        );
    }
    if !s.recommendations.is_empty() {
        let _ = writeln!(out, "  recommendations:");
        for r in &s.recommendations {
            let action = if r.action.is_empty() { String::new() } else { format!(" ({})", r.action) };
            let _ = writeln!(out, "    [{}] {}: {}{action}", r.priority, r.kind, r.message);
        }
    }
    conditions(&mut out, &s.conditions);
    line(&mut out, "updated", s.last_updated.as_deref().unwrap_or(""));
    out
}

/// Formats a ClusterPersona's status.
pub fn cluster(name: &str, status: Option<&ClusterPersonaStatus>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ClusterPersona {name}");
    let Some(s) = status else {
        let _ = writeln!(out, "  no status yet: the reconciler has not discovered the cluster (is it running?)");
        return out;
    };
    line(&mut out, "phase", s.phase.as_deref().unwrap_or("-"));
    line(&mut out, "platform", &s.platform);
    line(&mut out, "kubernetes", &s.kubernetes_version);
    if let Some(r) = &s.resource_summary {
        let usage = |used: &str, allocatable: &str, pct: Option<i32>| {
            let pct = pct.map_or(String::new(), |p| format!(" ({p}%)"));
            format!("{} requested of {} allocatable{pct}", or_dash(used), or_dash(allocatable))
        };
        line(&mut out, "nodes", &r.node_count.to_string());
        line(&mut out, "cpu", &usage(&r.used_cpu, &r.allocatable_cpu, r.cpu_utilization));
        line(&mut out, "memory", &usage(&r.used_memory, &r.allocatable_memory, r.memory_utilization));
        line(&mut out, "pods", &format!("{} running of {}", r.running_pods, r.total_pods));
    }
    if let Some(n) = &s.namespaces {
        line(&mut out, "namespaces", &format!("{} ({} active, {} with personas)", n.total, n.active, n.with_personas));
    }
    line(&mut out, "personas", &s.application_count.to_string());
    if !s.nodes.is_empty() {
        let _ = writeln!(out, "  node list:");
        for n in &s.nodes {
            let ready = if n.ready { "Ready" } else { "NotReady" };
            let alloc = n.allocatable.as_ref().map_or(String::new(), |a| format!(" cpu {} memory {}", a.cpu, a.memory));
            let taints = if n.taints.is_empty() { String::new() } else { format!(" taints {}", n.taints.join(",")) };
            let _ = writeln!(
                out,
                "    {:<24}{:<14}{:<9}{}{alloc}{taints}",
                n.name,
                or_dash(&n.role),
                ready,
                or_dash(&n.kubelet_version)
            );
        }
    }
    let installed: Vec<_> = s.addons.iter().filter(|a| a.installed).collect();
    if !installed.is_empty() {
        let _ = writeln!(out, "  add-ons:");
        for a in installed {
            let health = if a.healthy { "healthy" } else { "unhealthy" };
            let _ = writeln!(out, "    {:<20}{:<12}{:<10}{}", a.name, or_dash(&a.version), health, a.namespace);
        }
    }
    conditions(&mut out, &s.conditions);
    line(&mut out, "discovered", s.last_discovery.as_deref().unwrap_or(""));
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn short_revision(r: &str) -> &str {
    if r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit()) { &r[..12] } else { r }
}

#[cfg(test)]
mod tests {
    use persys_crds::{
        cluster::{Addon, NodeInfo, ResourceSummary},
        persona::{ArgoCdStatus, HealthStatus, PodFailure, Recommendation, ValidationIssue, ValidationStatus},
    };

    use super::*;

    #[test]
    fn a_persona_without_status_says_so() {
        let text = persona("shop", "orders", None);
        assert!(text.starts_with("ApplicationPersona shop/orders\n"), "{text}");
        assert!(text.contains("no status yet"), "{text}");
    }

    #[test]
    fn a_persona_status_shows_every_reported_part() {
        let s = ApplicationPersonaStatus {
            phase: Some("Degraded".into()),
            health: Some(HealthStatus {
                status: "Unhealthy".into(),
                message: "1 of 2 replicas ready".into(),
                ready_replicas: Some(1),
                desired_replicas: Some(2),
                pod_failures: vec![PodFailure {
                    pod_name: "orders-7d9-x".into(),
                    container: "app".into(),
                    reason: "CrashLoopBackOff".into(),
                    message: String::new(),
                }],
                ..HealthStatus::default()
            }),
            validation: Some(ValidationStatus {
                passed: false,
                issues: vec![ValidationIssue {
                    severity: "error".into(),
                    field: "spec.replicas".into(),
                    message: "below the minimum 2".into(),
                    suggestion: "scale to 2".into(),
                    ..ValidationIssue::default()
                }],
                ..ValidationStatus::default()
            }),
            argo_cd: Some(ArgoCdStatus {
                sync_status: "OutOfSync".into(),
                health_status: "Degraded".into(),
                revision: "0123456789abcdef0123456789abcdef01234567".into(),
                ..ArgoCdStatus::default()
            }),
            recommendations: vec![Recommendation {
                kind: "scaling".into(),
                priority: "high".into(),
                message: "raise replicas".into(),
                action: String::new(),
            }],
            ..ApplicationPersonaStatus::default()
        };
        let text = persona("shop", "orders", Some(&s));
        for want in [
            "  phase:      Degraded\n",
            "  health:     Unhealthy 1 of 2 replicas ready (1/2 ready)\n",
            "    orders-7d9-x/app: CrashLoopBackOff",
            "  validation: failed\n",
            "    error   spec.replicas below the minimum 2\n",
            "            fix: scale to 2\n",
            "  argocd:     OutOfSync / Degraded at 0123456789ab\n",
            "    [high] scaling: raise replicas\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(!text.contains("baseline"), "nothing learned, nothing printed:\n{text}");
    }

    #[test]
    fn a_cluster_status_lists_nodes_resources_and_installed_addons_only() {
        let s = ClusterPersonaStatus {
            phase: Some("Ready".into()),
            platform: "Kind".into(),
            kubernetes_version: "v1.37.2".into(),
            resource_summary: Some(ResourceSummary {
                node_count: 1,
                allocatable_cpu: "4".into(),
                used_cpu: "1500m".into(),
                cpu_utilization: Some(37),
                running_pods: 3,
                total_pods: 4,
                ..ResourceSummary::default()
            }),
            nodes: vec![NodeInfo {
                name: "kind-control-plane".into(),
                role: "control-plane".into(),
                ready: true,
                kubelet_version: "v1.37.2".into(),
                taints: vec!["node-role.kubernetes.io/control-plane:NoSchedule".into()],
                ..NodeInfo::default()
            }],
            addons: vec![
                Addon {
                    name: "argocd".into(),
                    installed: true,
                    healthy: true,
                    version: "v3.1".into(),
                    ..Addon::default()
                },
                Addon { name: "istio".into(), installed: false, ..Addon::default() },
            ],
            application_count: 7,
            ..ClusterPersonaStatus::default()
        };
        let text = cluster("cluster", Some(&s));
        for want in [
            "ClusterPersona cluster\n",
            "  platform:   Kind\n",
            "  kubernetes: v1.37.2\n",
            "  cpu:        1500m requested of 4 allocatable (37%)\n",
            "  pods:       3 running of 4\n",
            "  personas:   7\n",
            "kind-control-plane",
            "node-role.kubernetes.io/control-plane:NoSchedule",
            "    argocd              v3.1        healthy",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(!text.contains("istio"), "an add-on that is not installed is not listed:\n{text}");
        assert!(cluster("c", None).contains("no status yet"));
    }
}
