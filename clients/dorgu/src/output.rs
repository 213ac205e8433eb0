//! Human and machine output of an analysis.

use std::{fmt::Write, path::Path};

use persys_proto::analyzer::v1::{AnalysisResult, FindingSeverity};

fn severity(s: i32) -> &'static str {
    match FindingSeverity::try_from(s).unwrap_or(FindingSeverity::Unspecified) {
        FindingSeverity::Error => "error",
        FindingSeverity::Warning => "warning",
        FindingSeverity::Info => "info",
        FindingSeverity::Unspecified => "?",
    }
}

/// The summary of what was detected and why.
pub fn summary(path: &Path, r: &AnalysisResult) -> String {
    let mut out = String::new();
    let f = r.facts.clone().unwrap_or_default();
    let source = if !f.compose_services.is_empty() {
        format!("compose file with {} services", f.compose_services.len())
    } else if let Some(d) = &f.dockerfile {
        format!("{} (base image {})", d.path, d.base_image)
    } else {
        "source code only".into()
    };
    let _ = writeln!(out, "analysed {} as `{}`: {source}", path.display(), f.name);
    if !f.language.is_empty() {
        let fw = if f.framework.is_empty() { String::new() } else { format!(" / {}", f.framework) };
        let _ = writeln!(out, "  stack:    {}{fw}", f.language);
    }
    let ports: Vec<String> = f.ports.iter().map(|p| format!("{} ({})", p.port, p.purpose)).collect();
    let _ = writeln!(out, "  ports:    {}", if ports.is_empty() { "none".into() } else { ports.join(", ") });
    let _ = writeln!(out, "  health:   {}", if f.health_path.is_empty() { "no HTTP endpoint" } else { &f.health_path });
    if !f.dependencies.is_empty() {
        let _ = writeln!(out, "  needs:    {}", f.dependencies.join(", "));
    }
    if f.llm_enhanced {
        let _ = writeln!(out, "  model:    description, type, tier and scaling refined by the language model");
    }
    let _ = writeln!(out, "why:");
    for n in &f.notes {
        let _ = writeln!(out, "  - {n}");
    }
    if !f.warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for w in &f.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    if !r.findings.is_empty() {
        let _ = writeln!(out, "validation {}:", if r.validation_passed { "passed" } else { "FAILED" });
        for x in &r.findings {
            let file = if x.file.is_empty() { String::new() } else { format!("{}: ", x.file) };
            let _ = writeln!(out, "  {:<7} {file}{} ({})", severity(x.severity), x.message, x.rule_id);
        }
    }
    out
}

/// The result as JSON for machines.
pub fn result_json(r: &AnalysisResult) -> serde_json::Value {
    let f = r.facts.clone().unwrap_or_default();
    serde_json::json!({
        "name": f.name,
        "language": f.language,
        "framework": f.framework,
        "ports": f.ports.iter().map(|p| serde_json::json!({"port": p.port, "purpose": p.purpose})).collect::<Vec<_>>(),
        "healthPath": f.health_path,
        "dependencies": f.dependencies,
        "notes": f.notes,
        "llmEnhanced": f.llm_enhanced,
        "warnings": f.warnings,
        "validationPassed": r.validation_passed,
        "findings": r.findings.iter().map(|x| serde_json::json!({
            "severity": severity(x.severity), "ruleId": x.rule_id, "message": x.message,
            "suggestion": x.suggestion, "field": x.field, "file": x.file,
        })).collect::<Vec<_>>(),
        "files": r.manifests.iter().map(|m| serde_json::json!({"path": m.path, "kind": m.kind})).collect::<Vec<_>>(),
    })
}
