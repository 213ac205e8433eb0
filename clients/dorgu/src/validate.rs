//! `dorgu validate`: manifests against a persona, offline, with the same rules as the
//! analyzer's ValidateManifests and the reconciler. Exits 1 when there is an error finding.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use persys_analyzer::{persona, validate as rules};
use persys_proto::analyzer::v1::{FindingSeverity, ManifestFile};

use crate::{cli::ValidateArgs, config};

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
    } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
        out.push(path.to_owned());
    } else if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    Ok(())
}

/// `dorgu validate`.
pub fn validate(args: ValidateArgs, json: bool) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, &mut files)?;
    }
    let persona_path = match &args.persona {
        Some(p) => p.clone(),
        None => files
            .iter()
            .find(|f| f.file_name().is_some_and(|n| n == "persona.yaml"))
            .cloned()
            .context("no persona: pass --persona FILE (or keep persona.yaml among the manifests)")?,
    };
    let text = std::fs::read_to_string(&persona_path).with_context(|| format!("reading {}", persona_path.display()))?;
    let spec = persona::parse_manifest(&text).map_err(|e| anyhow::anyhow!("{}: {e}", persona_path.display()))?;
    let manifests: Vec<ManifestFile> = files
        .iter()
        .filter(|f| **f != persona_path)
        .map(|f| {
            Ok(ManifestFile {
                path: f.display().to_string(),
                content: std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
                kind: String::new(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let namespace =
        args.namespace.clone().unwrap_or_else(|| config::load().map(|c| c.defaults.namespace).unwrap_or_default());
    let findings = rules::validate_files(&manifests, &spec, &namespace);
    let (errors, warnings, infos) = rules::counts(&findings);
    if json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| serde_json::json!({"severity": f.severity, "ruleId": f.rule_id, "message": f.message, "suggestion": f.suggestion, "field": f.field, "file": f.file}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"passed": errors == 0, "errors": errors, "warnings": warnings, "info": infos, "findings": list})
        );
    } else {
        for f in &findings {
            let sev = match FindingSeverity::try_from(f.severity).unwrap_or(FindingSeverity::Unspecified) {
                FindingSeverity::Error => "error",
                FindingSeverity::Warning => "warning",
                _ => "info",
            };
            let loc = if f.file.is_empty() { String::new() } else { format!("{}: ", f.file) };
            println!("{sev:<7} {loc}{} ({})", f.message, f.rule_id);
            if !f.suggestion.is_empty() {
                println!("        fix: {}", f.suggestion);
            }
        }
        println!(
            "{} against persona `{}`: {errors} error(s), {warnings} warning(s), {infos} info",
            if errors == 0 { "passed" } else { "FAILED" },
            spec.name
        );
    }
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
