//! Shared by the corpus tests: the fixtures and the options each is analysed with.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use persys_analyzer::tree::SourceTree;
use persys_proto::analyzer::v1::{AnalysisResult, AnalyzeMetadata, AnalyzeOptions};

/// The fixture directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture name, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Reads a fixture.
pub fn tree(name: &str) -> SourceTree {
    SourceTree::from_dir(&root().join(name)).expect("fixture readable")
}

/// The metadata a fixture is analysed with: some get a host, TLS, a registry.
pub fn metadata(name: &str) -> AnalyzeMetadata {
    let mut options = AnalyzeOptions { environment: "production".into(), ..AnalyzeOptions::default() };
    let mut host = String::new();
    match name {
        "node-express" => {
            host = "orders.example.com".into();
            options.tls_enabled = true;
            options.cluster_issuer = "letsencrypt".into();
            options.registry = "ghcr.io/acme".into();
        }
        "compose-shop" => {
            host = "shop.example.com".into();
            options.registry = "registry.acme.test/shop".into();
        }
        "java-spring-maven" | "go-gin" => options.registry = "ghcr.io/acme".into(),
        _ => {}
    }
    AnalyzeMetadata { name: name.into(), namespace: "apps".into(), host, options: Some(options) }
}

/// Renders a result as one text for a golden file.
pub fn render(result: &AnalysisResult) -> String {
    let mut out = String::new();
    let facts = result.facts.clone().unwrap_or_default();
    out.push_str(&format!(
        "# facts\nname: {}\nlanguage: {}\nframework: {}\nhealth: {}\nports: {:?}\ndependencies: {:?}\n",
        facts.name,
        facts.language,
        facts.framework,
        facts.health_path,
        facts.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        facts.dependencies
    ));
    out.push_str("# warnings\n");
    for w in &facts.warnings {
        out.push_str(&format!("- {w}\n"));
    }
    out.push_str("# findings\n");
    for f in &result.findings {
        out.push_str(&format!("- [{}] {} {}: {}\n", f.severity, f.file, f.rule_id, f.message));
    }
    out.push_str(&format!("# validation passed: {}\n", result.validation_passed));
    for m in &result.manifests {
        out.push_str(&format!("\n=== {} ({}) ===\n{}", m.path, m.kind, m.content));
    }
    out
}
