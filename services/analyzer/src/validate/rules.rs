//! The rules, one function per resource kind.

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Container, Probe, Service},
        networking::v1::Ingress,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use persys_proto::analyzer::v1::{ApplicationPersonaSpec, Finding, FindingSeverity as S, RuleGroup as G};

use super::finding;
use crate::quantity;

fn parse_q(q: &str, field: &str, out: &mut Vec<Finding>) -> Option<f64> {
    match quantity::parse(q) {
        Ok(v) => Some(v),
        Err(e) => {
            out.push(finding(
                S::Error,
                G::Schema,
                "schema.invalid-quantity",
                e,
                "use a quantity such as 500m, 1, 256Mi or 1Gi",
                field,
            ));
            None
        }
    }
}

/// Checks the persona itself: name, replica range, targets, quantities.
pub fn validate_persona(p: &ApplicationPersonaSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    if p.name.is_empty() || crate::model::dns_label(&p.name, "") != p.name {
        out.push(finding(
            S::Error,
            G::Metadata,
            "metadata.invalid-name",
            format!("persona name `{}` is not a DNS-1123 label", p.name),
            "use lower-case letters, digits and `-`",
            "spec.name",
        ));
    }
    if let Some(s) = &p.scaling {
        if s.min_replicas < 0 || s.max_replicas < 1 || s.min_replicas > s.max_replicas {
            out.push(finding(
                S::Error,
                G::Scaling,
                "scaling.invalid-range",
                format!("replica range {}..{} is invalid", s.min_replicas, s.max_replicas),
                "set 0 <= minReplicas <= maxReplicas and maxReplicas >= 1",
                "spec.scaling",
            ));
        }
        for (v, f) in
            [(s.target_cpu_percent, "spec.scaling.targetCPU"), (s.target_memory_percent, "spec.scaling.targetMemory")]
        {
            if !(0..=100).contains(&v) {
                out.push(finding(
                    S::Error,
                    G::Scaling,
                    "scaling.target-out-of-range",
                    format!("{f} is {v}; it must be 1-100"),
                    "use a percentage between 1 and 100",
                    f,
                ));
            }
        }
    }
    if let Some(r) = &p.resources {
        for (a, which) in [(&r.requests, "requests"), (&r.limits, "limits")] {
            if let Some(a) = a {
                if !a.cpu.is_empty() {
                    parse_q(&a.cpu, &format!("spec.resources.{which}.cpu"), &mut out);
                }
                if !a.memory.is_empty() {
                    parse_q(&a.memory, &format!("spec.resources.{which}.memory"), &mut out);
                }
            }
        }
    }
    if p.ownership.as_ref().is_none_or(|o| o.team.is_empty()) {
        out.push(finding(
            S::Info,
            G::Metadata,
            "metadata.no-team",
            "the persona names no owning team",
            "set app.team in .dorgu.yaml",
            "spec.ownership.team",
        ));
    }
    out
}

fn probe_path(p: &Option<Probe>) -> Option<Option<&str>> {
    p.as_ref().map(|p| p.http_get.as_ref().and_then(|h| h.path.as_deref()))
}

fn container_checks(
    i: usize,
    c: &Container,
    p: &ApplicationPersonaSpec,
    pod_non_root: Option<bool>,
    out: &mut Vec<Finding>,
) {
    let base = format!("spec.template.spec.containers[{i}]");
    let res = c.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    if requests.is_none_or(|r| !r.contains_key("cpu") && !r.contains_key("memory")) {
        out.push(finding(
            S::Warning,
            G::Resources,
            "resources.requests-missing",
            format!("container `{}` sets no CPU or memory request", c.name),
            "set resources.requests so the scheduler can place it",
            &format!("{base}.resources.requests"),
        ));
    }
    if limits.is_none_or(|l| !l.contains_key("memory")) {
        out.push(finding(
            S::Warning,
            G::Resources,
            "resources.memory-limit-missing",
            format!("container `{}` sets no memory limit", c.name),
            "set resources.limits.memory",
            &format!("{base}.resources.limits.memory"),
        ));
    }
    for key in ["cpu", "memory"] {
        let field = format!("{base}.resources.limits.{key}");
        let limit = limits.and_then(|l| l.get(key)).and_then(|q| parse_q(&q.0, &field, out));
        let request = requests
            .and_then(|r| r.get(key))
            .and_then(|q| parse_q(&q.0, &format!("{base}.resources.requests.{key}"), out));
        if let (Some(r), Some(l)) = (request, limit)
            && r > l
        {
            out.push(finding(
                S::Error,
                G::Resources,
                &format!("resources.{key}-request-above-limit"),
                format!("container `{}` requests more {key} than its limit", c.name),
                "lower the request or raise the limit",
                &field,
            ));
        }
        let persona_limit = p
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .map(|a| if key == "cpu" { a.cpu.as_str() } else { a.memory.as_str() })
            .filter(|s| !s.is_empty());
        if let (Some(l), Some(pl)) = (limit, persona_limit)
            && let Ok(pl_v) = quantity::parse(pl)
            && l > pl_v
        {
            let actual = limits.and_then(|m| m.get(key)).map(|q| q.0.clone()).unwrap_or_default();
            out.push(finding(
                S::Warning,
                G::Resources,
                &format!("resources.{key}-limit-above-persona"),
                format!("container `{}` {key} limit {actual} is above the persona's {pl}", c.name),
                "lower the limit or update the persona",
                &field,
            ));
        }
    }
    if let Some(h) = &p.health {
        if !h.liveness_path.is_empty() {
            match probe_path(&c.liveness_probe) {
                None | Some(None) => out.push(finding(
                    S::Warning,
                    G::Health,
                    "health.liveness-missing",
                    format!(
                        "container `{}` has no HTTP liveness probe; the persona expects {}",
                        c.name, h.liveness_path
                    ),
                    "add an httpGet liveness probe on the persona's path",
                    &format!("{base}.livenessProbe"),
                )),
                Some(Some(path)) if path != h.liveness_path => out.push(finding(
                    S::Info,
                    G::Health,
                    "health.liveness-path-differs",
                    format!("liveness probe checks {path}, the persona says {}", h.liveness_path),
                    "align the probe and the persona",
                    &format!("{base}.livenessProbe.httpGet.path"),
                )),
                _ => {}
            }
        }
        let readiness = if h.readiness_path.is_empty() { &h.liveness_path } else { &h.readiness_path };
        if !readiness.is_empty() && c.readiness_probe.is_none() {
            out.push(finding(
                S::Warning,
                G::Health,
                "health.readiness-missing",
                format!("container `{}` has no readiness probe; the persona expects {readiness}", c.name),
                "add a readiness probe",
                &format!("{base}.readinessProbe"),
            ));
        }
        if h.port > 0
            && let Some(get) = c.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref())
        {
            let port_ok = match &get.port {
                IntOrString::Int(n) => *n == h.port,
                IntOrString::String(name) => c
                    .ports
                    .iter()
                    .flatten()
                    .any(|cp| cp.name.as_deref() == Some(name.as_str()) && cp.container_port == h.port),
            };
            if !port_ok {
                out.push(finding(
                    S::Warning,
                    G::Health,
                    "health.probe-port-mismatch",
                    format!("liveness probe of `{}` does not target the persona's port {}", c.name, h.port),
                    "probe the port the persona names",
                    &format!("{base}.livenessProbe.httpGet.port"),
                ));
            }
        }
    }
    let sec = p.policies.as_ref().and_then(|pol| pol.security.as_ref());
    let csc = c.security_context.as_ref();
    if let Some(sec) = sec {
        if sec.run_as_non_root.unwrap_or(true)
            && pod_non_root != Some(true)
            && csc.and_then(|s| s.run_as_non_root) != Some(true)
        {
            out.push(finding(
                S::Error,
                G::Security,
                "security.run-as-non-root",
                format!("container `{}` may run as root; the persona requires runAsNonRoot", c.name),
                "set securityContext.runAsNonRoot: true on the pod or the container",
                &format!("{base}.securityContext.runAsNonRoot"),
            ));
        }
        if sec.read_only_root_filesystem.unwrap_or(true) && csc.and_then(|s| s.read_only_root_filesystem) != Some(true)
        {
            out.push(finding(
                S::Warning,
                G::Security,
                "security.read-only-root-filesystem",
                format!("container `{}` has a writable root filesystem", c.name),
                "set readOnlyRootFilesystem: true and mount emptyDirs where it writes",
                &format!("{base}.securityContext.readOnlyRootFilesystem"),
            ));
        }
        if !sec.allow_privilege_escalation.unwrap_or(false)
            && csc.and_then(|s| s.allow_privilege_escalation) == Some(true)
        {
            out.push(finding(
                S::Error,
                G::Security,
                "security.privilege-escalation",
                format!("container `{}` allows privilege escalation; the persona forbids it", c.name),
                "set allowPrivilegeEscalation: false",
                &format!("{base}.securityContext.allowPrivilegeEscalation"),
            ));
        }
    }
    if csc.and_then(|s| s.privileged) == Some(true) {
        out.push(finding(
            S::Error,
            G::Security,
            "security.privileged",
            format!("container `{}` is privileged", c.name),
            "remove privileged: true",
            &format!("{base}.securityContext.privileged"),
        ));
    }
    let drops_all = csc
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.drop.as_ref())
        .is_some_and(|d| d.iter().any(|x| x == "ALL"));
    if !drops_all {
        out.push(finding(
            S::Info,
            G::Security,
            "security.capabilities-not-dropped",
            format!("container `{}` keeps the default Linux capabilities", c.name),
            "drop ALL capabilities and add back only what it needs",
            &format!("{base}.securityContext.capabilities.drop"),
        ));
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.is_empty() {
        out.push(finding(
            S::Error,
            G::Image,
            "image.missing",
            format!("container `{}` names no image", c.name),
            "set the image",
            &format!("{base}.image"),
        ));
    } else {
        let has_registry = image
            .split_once('/')
            .is_some_and(|(first, _)| first.contains('.') || first.contains(':') || first == "localhost");
        let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
        if latest && !has_registry {
            out.push(finding(
                S::Warning,
                G::Image,
                "image.placeholder",
                format!(
                    "image `{image}` has no registry and no pinned tag: a placeholder until it is built and pushed"
                ),
                "set a registry (dorgu --registry, or defaults.registry in the dorgu config) and pin a tag",
                &format!("{base}.image"),
            ));
        } else if latest {
            out.push(finding(
                S::Info,
                G::Image,
                "image.latest-tag",
                format!("image `{image}` uses the latest tag"),
                "pin a version or a digest (kustomize edit set image)",
                &format!("{base}.image"),
            ));
        }
    }
}

/// Checks a Deployment against the persona: replicas, per-container resources, probes,
/// security, image, and the name label the persona controller matches on.
pub fn validate_deployment(d: &Deployment, p: &ApplicationPersonaSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    let spec = &d.spec;
    if let Some(s) = &p.scaling {
        let replicas = spec.replicas.unwrap_or(1);
        if replicas < s.min_replicas {
            out.push(finding(
                S::Error,
                G::Replicas,
                "replicas.below-min",
                format!("{replicas} replica(s), below the persona's minimum {}", s.min_replicas),
                "raise spec.replicas or lower scaling.minReplicas",
                "spec.replicas",
            ));
        } else if s.max_replicas > 0 && replicas > s.max_replicas {
            out.push(finding(
                S::Warning,
                G::Replicas,
                "replicas.above-max",
                format!("{replicas} replica(s), above the persona's maximum {}", s.max_replicas),
                "lower spec.replicas or raise scaling.maxReplicas",
                "spec.replicas",
            ));
        }
    }
    let label = d.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/name"));
    let pod_label =
        spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref()).and_then(|l| l.get("app.kubernetes.io/name"));
    if label.or(pod_label).map(String::as_str) != Some(p.name.as_str()) {
        out.push(finding(
            S::Warning,
            G::Metadata,
            "metadata.name-label",
            format!(
                "the Deployment is not labelled app.kubernetes.io/name={}, so the persona controller will not find it",
                p.name
            ),
            "add the label to the Deployment and its pod template",
            "metadata.labels",
        ));
    }
    let Some(pod) = &spec.template.spec else {
        out.push(finding(
            S::Error,
            G::Schema,
            "schema.no-pod-spec",
            "the Deployment has no pod template spec",
            "add spec.template.spec",
            "spec.template.spec",
        ));
        return out;
    };
    let pod_non_root = pod.security_context.as_ref().and_then(|s| s.run_as_non_root);
    for (i, c) in pod.containers.iter().enumerate() {
        container_checks(i, c, p, pod_non_root, &mut out);
    }
    out
}

/// Checks an HPA against the persona's scaling.
pub fn validate_hpa(h: &HorizontalPodAutoscaler, p: &ApplicationPersonaSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    let min = h.spec.min_replicas.unwrap_or(1);
    let max = h.spec.max_replicas;
    if min > max {
        out.push(finding(
            S::Error,
            G::Scaling,
            "scaling.hpa-min-above-max",
            format!("HPA minReplicas {min} is above maxReplicas {max}"),
            "set minReplicas <= maxReplicas",
            "spec.minReplicas",
        ));
    }
    for (i, m) in h.spec.metrics.iter().flatten().enumerate() {
        if let Some(u) = m.resource.as_ref().and_then(|r| r.target.average_utilization)
            && !(1..=100).contains(&u)
        {
            out.push(finding(
                S::Warning,
                G::Scaling,
                "scaling.target-out-of-range",
                format!("HPA target utilization {u}% is outside 1-100"),
                "use a percentage between 1 and 100",
                &format!("spec.metrics[{i}].resource.target.averageUtilization"),
            ));
        }
    }
    if let Some(s) = &p.scaling {
        if min < s.min_replicas {
            out.push(finding(
                S::Warning,
                G::Scaling,
                "scaling.hpa-min-below-persona",
                format!("HPA minReplicas {min} is below the persona's {}", s.min_replicas),
                "raise the HPA's minReplicas",
                "spec.minReplicas",
            ));
        }
        if s.max_replicas > 0 && max > s.max_replicas {
            out.push(finding(
                S::Warning,
                G::Scaling,
                "scaling.hpa-max-above-persona",
                format!("HPA maxReplicas {max} is above the persona's {}", s.max_replicas),
                "lower the HPA's maxReplicas",
                "spec.maxReplicas",
            ));
        }
    }
    out
}

/// Checks that a Service exposes the persona's ports.
pub fn validate_service(s: &Service, p: &ApplicationPersonaSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    let ports: Vec<i32> = s
        .spec
        .as_ref()
        .and_then(|sp| sp.ports.as_ref())
        .map(|ps| ps.iter().map(|p| p.port).collect())
        .unwrap_or_default();
    for (i, want) in p.networking.iter().flat_map(|n| n.ports.iter()).enumerate() {
        if !ports.contains(&want.port) {
            out.push(finding(
                S::Warning,
                G::Networking,
                "networking.port-not-exposed",
                format!("the Service does not expose the persona's port {}", want.port),
                "add the port to the Service",
                &format!("spec.networking.ports[{i}]"),
            ));
        }
    }
    out
}

/// Checks an Ingress: a host, and TLS when the persona wants it.
pub fn validate_ingress(ing: &Ingress, p: &ApplicationPersonaSpec) -> Vec<Finding> {
    let mut out = Vec::new();
    let spec = ing.spec.as_ref();
    for (i, r) in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten().enumerate() {
        if r.host.as_deref().is_none_or(str::is_empty) {
            out.push(finding(
                S::Warning,
                G::Networking,
                "networking.ingress-no-host",
                "an Ingress rule has no host, so it matches every host",
                "set the host",
                &format!("spec.rules[{i}].host"),
            ));
        }
    }
    let wants_tls = p.networking.as_ref().and_then(|n| n.ingress.as_ref()).is_some_and(|i| i.tls_enabled);
    if wants_tls && spec.and_then(|s| s.tls.as_ref()).is_none_or(Vec::is_empty) {
        out.push(finding(
            S::Warning,
            G::Networking,
            "networking.ingress-no-tls",
            "the persona expects TLS but the Ingress has none",
            "add spec.tls with a certificate secret",
            "spec.tls",
        ));
    }
    out
}
