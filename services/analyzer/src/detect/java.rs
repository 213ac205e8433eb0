//! Java and Kotlin: Spring Boot with Maven or Gradle.

use std::sync::LazyLock;

use regex::Regex;

use super::{Routes, SourceFacts, captures, env_reads, port_of, re, record_routes, sources};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["java", "kt"];

static PROPS_PORT: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*server\.port\s*[=:]\s*(?:\$\{[A-Z_]+:)?(\d{2,5})"));
static YAML_PORT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^server:\s*\n(?:\s+.*\n)*?\s+port:\s*(?:\$\{[A-Z_]+:)?(\d{2,5})"));
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| re(r"\$\{([A-Z][A-Z0-9_]*)(?::[^}]*)?\}"));
static GETENV: LazyLock<Regex> = LazyLock::new(|| re(r#"System\.getenv\(\s*"([A-Za-z_][A-Za-z0-9_]*)""#));
static CLASS_MAPPING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"@RequestMapping\(\s*(?:value\s*=\s*|path\s*=\s*)?\{?\s*"([^"]*)"[^)]*\)\s*(?:@\w+\s*)*(?:public\s+)?(?:class|object)"#,
    )
});
static GET_MAPPING: LazyLock<Regex> =
    LazyLock::new(|| re(r#"@GetMapping\(\s*(?:value\s*=\s*|path\s*=\s*)?\{?\s*"([^"]*)""#));

const SERVICES: &[(&str, &str)] = &[
    ("org.postgresql", "postgresql"),
    ("mysql-connector", "mysql"),
    ("spring-boot-starter-data-mongodb", "mongodb"),
    ("spring-boot-starter-data-redis", "redis"),
    ("spring-kafka", "kafka"),
    ("spring-boot-starter-amqp", "rabbitmq"),
    ("spring-boot-starter-data-elasticsearch", "elasticsearch"),
];

fn config_files(tree: &SourceTree) -> Vec<(&str, &str)> {
    tree.files()
        .filter(|(p, _)| {
            let name = p.rsplit('/').next().unwrap_or(p);
            p.contains("src/main/resources/") && name.starts_with("application") && !super::is_test_path(p)
        })
        .filter_map(|(p, b)| Some((p, std::str::from_utf8(b).ok()?)))
        .collect()
}

/// Detects a JVM application from `pom.xml` or a Gradle build.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let (marker, build) = if let Some(t) = tree.text("pom.xml") {
        ("pom.xml", t)
    } else if let Some(t) = tree.text("build.gradle") {
        ("build.gradle", t)
    } else if let Some(t) = tree.text("build.gradle.kts") {
        ("build.gradle.kts", t)
    } else {
        return false;
    };
    let kotlin = marker.ends_with(".kts") || sources(tree, &["kt"]).next().is_some();
    facts.language = if kotlin { "kotlin" } else { "java" }.into();
    facts.build_tool = if marker == "pom.xml" { "maven" } else { "gradle" }.into();
    facts.note(format!("language {}: {marker} ({} build)", facts.language, facts.build_tool));
    if build.contains("spring-boot") || build.contains("org.springframework.boot") {
        facts.framework = "spring-boot".into();
        facts.note(format!("framework spring-boot: {marker} uses the Spring Boot plugin or starters"));
        facts.startup_secs = 60;
    }
    for (dep, service) in SERVICES {
        if build.contains(dep) && facts.dependencies.insert((*service).to_owned()) {
            facts.note(format!("backing service {service}: {marker} depends on {dep}"));
        }
    }
    let configs = config_files(tree);
    for (path, text) in &configs {
        for p in captures(&PROPS_PORT, text).chain(captures(&YAML_PORT, text)).filter_map(port_of) {
            facts.add_port(p, format!("server.port in {path}"));
        }
        for name in captures(&PLACEHOLDER, text) {
            facts.env_reads.insert(name.to_owned());
        }
    }
    if facts.framework == "spring-boot" {
        facts.default_port(8080, "Spring Boot");
        if build.contains("spring-boot-starter-actuator") {
            let probes = configs.iter().any(|(_, t)| t.contains("probes.enabled") && t.contains("true"));
            if probes {
                facts.health_path = Some("/actuator/health/liveness".into());
                facts.readiness_path = Some("/actuator/health/readiness".into());
            } else {
                facts.health_path = Some("/actuator/health".into());
            }
            if build.contains("micrometer-registry-prometheus") {
                facts.metrics_path = Some("/actuator/prometheus".into());
            }
        }
    }
    env_reads(tree, EXTS, &[&GETENV], facts);
    facts.start_command = ["java", "-jar", "/app/app.jar"].map(String::from).to_vec();
    true
}

/// Finds `@GetMapping` routes under their class-level `@RequestMapping`.
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    for (path, text) in sources(tree, EXTS) {
        let base = captures(&CLASS_MAPPING, text).next().unwrap_or("");
        record_routes(routes, &GET_MAPPING, text, path, base);
    }
}
