//! PERSONA.md: what the application is and how it runs, for an engineer in the middle of an
//! incident. Deterministic: built from the analysis alone.

use std::fmt::Write;

use persys_proto::analyzer::v1::{ApplicationPersonaSpec, EnvNeed, EnvSource};

use crate::{
    analysis::Analysis,
    model::{App, EnvValue, Probe},
};

fn or_placeholder(s: &str, what: &str) -> String {
    if s.is_empty() { format!("_not set — add `{what}` to .dorgu.yaml_") } else { s.to_owned() }
}

/// Renders PERSONA.md for one application.
pub fn markdown(analysis: &Analysis, app: &App, spec: &ApplicationPersonaSpec) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", app.name);
    let _ = writeln!(md, "{}\n", app.description);
    let _ = writeln!(md, "## Overview\n");
    let _ = writeln!(md, "| | |\n| --- | --- |");
    let _ = writeln!(md, "| type | {} |", app.kind.as_str());
    let _ = writeln!(md, "| tier | {} |", app.tier);
    let _ = writeln!(md, "| part of | {} |", app.part_of);
    let _ = writeln!(md, "| namespace | {} |", analysis.options.namespace);
    let _ = writeln!(md, "| image | `{}` |", app.image);
    if !app.language.is_empty() {
        let fw = if app.framework.is_empty() { String::new() } else { format!(" / {}", app.framework) };
        let _ = writeln!(md, "| stack | {}{fw} |", app.language);
    }
    let _ = writeln!(md, "\n## Interfaces\n");
    if app.ports.is_empty() {
        let _ = writeln!(md, "No ports: it serves nothing over the network.");
    }
    for p in &app.ports {
        let exposure = if p.published { ", published outside by compose" } else { "" };
        let _ =
            writeln!(md, "- `{}` {}/{} ({}{exposure})", p.name, p.port, if p.udp { "udp" } else { "tcp" }, p.purpose);
    }
    if let Some(host) = &app.host {
        let _ = writeln!(
            md,
            "- Ingress: `{host}` → `{}`",
            app.ingress_paths.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join("`, `")
        );
    }
    let _ = writeln!(md, "\n## Dependencies\n");
    if app.backing.is_empty() {
        let _ = writeln!(md, "None detected.");
    }
    for b in &app.backing {
        let ports = b.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let where_ = if b.in_analysis { "deployed alongside" } else { "not deployed here; egress allowed on its port" };
        let _ = writeln!(md, "- {} ({}, port {ports}; {where_})", b.name, b.kind);
    }
    if !app.dependents.is_empty() {
        let _ = writeln!(md, "\nCalled by: {}.", app.dependents.join(", "));
    }
    let _ = writeln!(md, "\n## Resources and scaling\n");
    let _ = writeln!(
        md,
        "- profile {}: requests {} CPU / {}, limits {} CPU / {}",
        app.profile, app.requests.cpu, app.requests.memory, app.limits.cpu, app.limits.memory
    );
    match app.autoscale {
        Some((min, max, cpu)) => {
            let _ = writeln!(md, "- {min}–{max} replicas, scaled at {cpu}% CPU ({} behaviour)", app.behavior);
        }
        None => {
            let _ = writeln!(md, "- {} replica(s), not autoscaled", app.replicas);
        }
    }
    if !app.claims.is_empty() {
        let claims = app.claims.iter().map(|c| format!("`{}` at {}", c.claim, c.path)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(md, "- persistent volumes: {claims} (ReadWriteOnce, so one pod and the Recreate strategy)");
    }
    let _ = writeln!(md, "\n## Health and monitoring\n");
    let probe = match &app.probe {
        Probe::Http { path, readiness, port } if path == readiness => format!("HTTP GET `{path}` on port {port}"),
        Probe::Http { path, readiness, port } => {
            format!("liveness HTTP GET `{path}`, readiness `{readiness}`, port {port}")
        }
        Probe::Exec(c) => format!("command `{}`", c.join(" ")),
        Probe::Tcp(p) => format!("TCP connect to port {p} (no health endpoint found; add one)"),
        Probe::None if app.ports.is_empty() => "none (no port and no health check)".into(),
        Probe::None => "none (UDP ports only, which no TCP or HTTP check can reach; add a HEALTHCHECK)".into(),
    };
    let _ = writeln!(md, "- probes: {probe}; startup allowed {}s", app.startup_secs);
    if let Some(m) = &app.metrics_path {
        let _ = writeln!(md, "- metrics: `{m}`");
    }
    let _ = writeln!(md, "\n## Configuration\n");
    let plain: Vec<&String> = app.env.iter().filter(|(_, v)| matches!(v, EnvValue::Plain(_))).map(|(k, _)| k).collect();
    let secrets: Vec<String> = app
        .env
        .iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Secret { optional } => Some(if *optional { format!("{k} (optional)") } else { k.clone() }),
            EnvValue::Plain(_) | EnvValue::ConfigKey => None,
        })
        .collect();
    let missing: Vec<&str> =
        app.env.iter().filter(|(_, v)| **v == EnvValue::ConfigKey).map(|(k, _)| k.as_str()).collect();
    if !plain.is_empty() {
        let _ = writeln!(
            md,
            "- ConfigMap `{}-config`: {}",
            app.name,
            plain.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    if !secrets.is_empty() {
        let _ = writeln!(
            md,
            "- Secret `{}-secrets` (create it; values are never generated): {}",
            app.name,
            secrets.join(", ")
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            md,
            "- required and set nowhere, add them to the ConfigMap `{}-config` (the pod waits until they are there): {}",
            app.name,
            missing.join(", ")
        );
    }
    if !app.env_unset.is_empty() {
        let _ = writeln!(
            md,
            "- read by the code but not set anywhere: {}",
            app.env_unset.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
        );
    }
    if plain.is_empty() && secrets.is_empty() && missing.is_empty() && app.env_unset.is_empty() {
        let _ = writeln!(md, "No environment detected.");
    }
    let reads: Vec<_> = spec.env.iter().filter(|e| !e.read_at.is_empty()).collect();
    if !reads.is_empty() {
        let _ = writeln!(md, "\nRead by the application:\n");
        let _ = writeln!(md, "| variable | needed | read at | set by |\n| --- | --- | --- | --- |");
        for e in reads {
            let needed = match EnvNeed::try_from(e.need).unwrap_or(EnvNeed::Unspecified) {
                _ if !e.default_value.is_empty() => {
                    let v: String = e.default_value.chars().take(40).collect();
                    format!("default `{}`", v.replace(['`', '|', '\n'], " "))
                }
                EnvNeed::Required => "required".to_owned(),
                EnvNeed::Defaulted => "defaulted".to_owned(),
                EnvNeed::Optional | EnvNeed::Unspecified => "optional".to_owned(),
            };
            let set_by = match EnvSource::try_from(e.source).unwrap_or(EnvSource::Unspecified) {
                EnvSource::ConfigMap => format!("ConfigMap `{}-config`", app.name),
                EnvSource::Secret => format!("Secret `{}-secrets`", app.name),
                EnvSource::Missing => "nothing yet: add it to the ConfigMap".to_owned(),
                EnvSource::Unset | EnvSource::Unspecified => "not set".to_owned(),
                EnvSource::Image => "the image".to_owned(),
            };
            let _ = writeln!(md, "| `{}` | {needed} | `{}` | {set_by} |", e.name, e.read_at.replace('|', "\\|"));
        }
    }
    let _ = writeln!(md, "\n## Security\n");
    let user = app.run_as_user.map_or_else(|| "the image's own non-root user".to_owned(), |u| format!("uid {u}"));
    let _ = writeln!(
        md,
        "Runs as {user}, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root filesystem."
    );
    if !app.scratch.is_empty() {
        let _ = writeln!(
            md,
            "Writable: {}.",
            app.scratch.iter().map(|s| format!("`{}`", s.path)).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(md, "Network: deny by default; allowed traffic is listed in networkpolicy.yaml.");
    let _ = writeln!(md, "\n## Ownership\n");
    let owner = spec.ownership.clone().unwrap_or_default();
    let _ = writeln!(md, "- team: {}", or_placeholder(&owner.team, "app.team"));
    let _ = writeln!(md, "- owner: {}", or_placeholder(&owner.owner, "app.owner"));
    let _ = writeln!(md, "- repository: {}", or_placeholder(&owner.repository, "app.repository"));
    let _ = writeln!(md, "- on-call: {}", or_placeholder(&owner.oncall, "operations.on_call"));
    let _ = writeln!(md, "- runbook: {}", or_placeholder(&owner.runbook, "operations.runbook"));
    if !app.maintenance_window.is_empty() {
        let _ = writeln!(md, "- maintenance window: {}", app.maintenance_window);
    }
    let _ = writeln!(md, "\n## How this was detected\n");
    for n in &app.notes {
        let _ = writeln!(md, "- {n}");
    }
    if !app.start_command.is_empty() {
        let _ = writeln!(md, "- start command (from the source): `{}`", app.start_command.join(" "));
    }
    md
}
