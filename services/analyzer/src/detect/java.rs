//! Java and Kotlin: Spring Boot with Maven or Gradle.

use std::sync::LazyLock;

use regex::Regex;

use super::{
    Routes, SourceFacts, call_default, captures, env, env_reads, env_reads_in, port_of, re, record_routes, sources,
};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["java", "kt"];

static PROPS_PORT: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*server\.port\s*[=:]\s*(?:\$\{[A-Z_]+:)?(\d{2,5})"));
static YAML_PORT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^server:\s*\n(?:\s+.*\n)*?\s+port:\s*(?:\$\{[A-Z_]+:)?(\d{2,5})"));
// `${NAME}` fails the start when NAME is unset (and no property of that name exists);
// `${NAME:default}` falls back to the default.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| re(r"\$\{(?P<n>[A-Za-z_][A-Za-z0-9_.-]*)(?P<d>:[^}\n]*)?\}"));
static GETENV: LazyLock<Regex> = LazyLock::new(|| re(r#"System\.getenv\(\s*"(?P<n>[A-Za-z_][A-Za-z0-9_]*)""#));
static BOOT_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?:spring-boot-starter-parent</artifactId>\s*<version>|org\.springframework\.boot['"]\)?\s+version\s+['"])(\d+\.\d+)"#,
    )
});
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
        .filter(|(_, b)| b.len() <= 1024 * 1024)
        .filter_map(|(p, b)| Some((p, std::str::from_utf8(b).ok()?)))
        .collect()
}

fn placeholder(c: &regex::Captures<'_>, _: &str) -> env::Need {
    match c.name("d").map(|d| &d.as_str()[1..]) {
        None => env::Need::Required,
        Some(d) if d.contains("${") => env::Need::Default(None),
        Some(d) => env::Need::Default(Some(d.trim().trim_matches(['"', '\'']).to_owned())),
    }
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
    }
    for (dep, service) in SERVICES {
        if build.contains(dep) && facts.dependencies.insert((*service).to_owned()) {
            facts.note(format!("backing service {service}: {marker} depends on {dep}"));
        }
    }
    let configs = config_files(tree);
    for (path, text) in &configs {
        let mut found = super::captures_located(&PROPS_PORT, text, path);
        found.extend(super::captures_located(&YAML_PORT, text, path));
        for (p, at) in found {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("server.port at {at}"));
            }
        }
        env_reads_in(path, text, &[(&PLACEHOLDER, placeholder)], facts);
    }
    if facts.framework == "spring-boot" {
        facts.default_port(8080, "Spring Boot");
        if build.contains("spring-boot-starter-actuator") {
            actuator(build, marker, &configs, facts);
        }
    }
    env_reads(tree, EXTS, &[(&GETENV, call_default)], facts);
    facts.start_command = ["java", "-jar", "/app/app.jar"].map(String::from).to_vec();
    true
}

/// Spring Boot Actuator's health endpoints. Since Boot 2.3 the liveness and readiness groups
/// (`/actuator/health/liveness`, `/actuator/health/readiness`) are on whenever the app runs on
/// Kubernetes, unless `management.endpoint.health.probes.enabled` is false; the base path
/// follows `management.endpoints.web.base-path` and the servlet context path, or the
/// management server's own port and base path when it has one.
fn actuator(build: &str, marker: &str, configs: &[(&str, &str)], facts: &mut SourceFacts) {
    let setting =
        |key: &str| configs.iter().find_map(|(path, text)| spring_setting(path, text, key).map(|v| (v, *path)));
    let version = captures(&BOOT_VERSION, build).next().and_then(|v| {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Some((parts.next()?, parts.next().unwrap_or(0)))
    });
    let management_port = setting("management.server.port").and_then(|(v, path)| Some((port_of(&v)?, path)));
    let mut base = String::new();
    if let Some((port, path)) = management_port {
        base.push_str(setting("management.server.base-path").map(|(v, _)| v).unwrap_or_default().trim_end_matches('/'));
        facts.health_port = Some(port);
        facts.note(format!("health port {port}: management.server.port in {path}, Actuator's own server"));
    } else if let Some((context, _)) = setting("server.servlet.context-path") {
        base.push_str(context.trim_end_matches('/'));
    }
    match setting("management.endpoints.web.base-path") {
        Some((b, _)) => base.push_str(b.trim_end_matches('/')),
        None => base.push_str("/actuator"),
    }
    let base = super::normalize_route(&base);
    let base = base.trim_end_matches('/');
    let disabled = setting("management.endpoint.health.probes.enabled").filter(|(v, _)| v == "false");
    let old = version.filter(|v| *v < (2, 3));
    if let Some((v, path)) = &disabled {
        facts.health_path = Some(format!("{base}/health"));
        facts.note(format!("health endpoint {base}/health: Actuator, with probes.enabled={v} in {path}"));
    } else if let Some((major, minor)) = old {
        facts.health_path = Some(format!("{base}/health"));
        facts.note(format!(
            "health endpoint {base}/health: Actuator of Spring Boot {major}.{minor} in {marker}, older than the probe groups of 2.3"
        ));
    } else {
        facts.health_path = Some(format!("{base}/health/liveness"));
        facts.readiness_path = Some(format!("{base}/health/readiness"));
        facts.note(format!(
            "health endpoints {base}/health/liveness and {base}/health/readiness: {marker} depends on spring-boot-starter-actuator, whose probe groups are on under Kubernetes"
        ));
    }
    if build.contains("micrometer-registry-prometheus") {
        facts.metrics_path = Some(format!("{base}/prometheus"));
    }
}

/// Returns a setting of `application.properties` (`a.b=v`) or `application.yml` (nested or
/// dotted keys), with a `${X:default}` placeholder read as its default.
fn spring_setting(path: &str, text: &str, key: &str) -> Option<String> {
    let raw = if path.ends_with(".properties") {
        text.lines().find_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix(key)?.trim_start();
            rest.strip_prefix(['=', ':']).map(|v| v.trim().to_owned())
        })?
    } else {
        let doc: serde_json::Value = crate::yaml::from_str(text).ok()?;
        let value = doc.get(key).or_else(|| key.split('.').try_fold(&doc, |v, k| v.get(k)))?;
        match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return None,
        }
    };
    let value = match raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(p) => p.split_once(':')?.1.to_owned(),
        None => raw,
    };
    Some(value.trim_matches(['"', '\'']).to_owned())
}

/// Finds `@GetMapping` routes under their class-level `@RequestMapping`.
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    for (path, text) in sources(tree, EXTS) {
        let base = captures(&CLASS_MAPPING, text).next().unwrap_or("");
        record_routes(routes, &GET_MAPPING, text, path, base);
    }
}
