//! Source detection: language and framework, ports, health endpoints that exist in the code,
//! the environment variables the code reads, backing services and the start command.
//!
//! Every choice follows a fixed precedence and every collection is sorted, so the same files
//! always give the same answer; each conclusion records why it was reached in `notes`.

mod dotnet;
mod go;
mod java;
mod node;
mod php;
mod python;
mod ruby;
mod rust;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use regex::Regex;

use crate::tree::SourceTree;

/// What the source code says about the application.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// Language, e.g. `go`, `javascript`, `typescript`, `python`; empty if none recognised.
    pub language: String,
    /// Framework, e.g. `gin`, `express`, `spring-boot`; empty if none recognised.
    pub framework: String,
    /// Build tool, e.g. `maven`, `gradle`, `npm`; empty if not applicable.
    pub build_tool: String,
    /// Ports the code listens on, in order of evidence strength (first is the main port).
    pub ports: Vec<u16>,
    /// Whether `ports` came from the framework's default rather than from the code.
    pub port_is_default: bool,
    /// Liveness endpoint found in the code.
    pub health_path: Option<String>,
    /// Readiness endpoint found in the code, when distinct.
    pub readiness_path: Option<String>,
    /// Prometheus metrics endpoint found in the code.
    pub metrics_path: Option<String>,
    /// Environment variables the code reads, sorted.
    pub env_reads: BTreeSet<String>,
    /// Backing services inferred from dependencies (`postgresql`, `redis`, ...), sorted.
    pub dependencies: BTreeSet<String>,
    /// How the application is started, in exec form.
    pub start_command: Vec<String>,
    /// Paths relative to the working directory the framework writes to at run time.
    pub writable_paths: Vec<String>,
    /// How long the application needs to start, in seconds.
    pub startup_secs: u32,
    /// Whether this looks like a web front end rather than an API.
    pub web_frontend: bool,
    /// Why each conclusion was reached.
    pub notes: Vec<String>,
}

impl SourceFacts {
    /// Returns whether a language was recognised.
    pub fn recognised(&self) -> bool {
        !self.language.is_empty()
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn add_port(&mut self, port: u16, why: impl Into<String>) {
        if !self.ports.contains(&port) {
            self.ports.push(port);
            self.notes.push(format!("port {port}: {}", why.into()));
        }
    }

    fn default_port(&mut self, port: u16, framework: &str) {
        if self.ports.is_empty() {
            self.ports.push(port);
            self.port_is_default = true;
            self.notes.push(format!("port {port}: the default of {framework}; no port found in the code"));
        }
    }
}

/// The marker files that name a language, in the order they are tried. Backends come before
/// `package.json`, which many of them carry only for front-end tooling.
pub const MARKERS: &[&str] = &[
    "go.mod",
    "Cargo.toml",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "*.csproj",
    "composer.json",
    "Gemfile",
    "pyproject.toml",
    "requirements.txt",
    "Pipfile",
    "setup.py",
    "package.json",
];

/// Detects what the files under the tree's root say about the application.
pub fn detect(tree: &SourceTree) -> SourceFacts {
    let mut facts = SourceFacts { startup_secs: 30, ..SourceFacts::default() };
    let found = go::detect(tree, &mut facts)
        || rust::detect(tree, &mut facts)
        || java::detect(tree, &mut facts)
        || dotnet::detect(tree, &mut facts)
        || php::detect(tree, &mut facts)
        || ruby::detect(tree, &mut facts)
        || python::detect(tree, &mut facts)
        || node::detect(tree, &mut facts);
    if found {
        let routes = tree_routes(tree, &facts.language);
        choose_health(&mut facts, &routes);
    }
    facts
}

/// Returns whether `path` is test code, whose routes and ports are not the application's.
pub fn is_test_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    lower.split('/').any(|s| matches!(s, "test" | "tests" | "__tests__" | "spec" | "e2e" | "testdata" | "fixtures"))
        || name.ends_with("_test.go")
        || name.starts_with("test_")
        || name.ends_with("_test.py")
        || name.contains(".test.")
        || name.contains(".spec.")
        || name.ends_with("tests.cs")
        || name.ends_with("test.java")
        || name.ends_with("_spec.rb")
}

/// Returns the non-test text files with one of `exts`, sorted by path.
pub fn sources<'a>(tree: &'a SourceTree, exts: &'a [&'a str]) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    tree.files().filter_map(move |(path, bytes)| {
        let ext = path.rsplit_once('.').map(|(_, e)| e)?;
        if !exts.contains(&ext) || is_test_path(path) || bytes.len() > 1024 * 1024 {
            return None;
        }
        Some((path, std::str::from_utf8(bytes).ok()?))
    })
}

/// Returns the first capture group of every match of `re` in `text`.
pub fn captures<'t>(re: &Regex, text: &'t str) -> impl Iterator<Item = &'t str> {
    re.captures_iter(text).filter_map(|c| c.iter().skip(1).flatten().next().map(|m| m.as_str()))
}

/// Collects environment variable names read by `patterns` over the files with `exts`.
pub fn env_reads(tree: &SourceTree, exts: &[&str], patterns: &[&Regex], facts: &mut SourceFacts) {
    for (_, text) in sources(tree, exts) {
        for re in patterns {
            for name in captures(re, text) {
                if is_env_name(name) {
                    facts.env_reads.insert(name.to_owned());
                }
            }
        }
    }
}

/// Environment variable names worth reporting: upper-case words.
pub fn is_env_name(name: &str) -> bool {
    name.len() > 1
        && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Routes found in the code, with the file each came from; filled by the language modules
/// through [`record_routes`].
#[derive(Default)]
pub struct Routes(pub BTreeMap<String, String>);

/// Returns the HTTP routes declared in the code of the detected language.
fn tree_routes(tree: &SourceTree, language: &str) -> Routes {
    let mut routes = Routes::default();
    match language {
        "javascript" | "typescript" => node::routes(tree, &mut routes),
        "python" => python::routes(tree, &mut routes),
        "go" => go::routes(tree, &mut routes),
        "java" | "kotlin" => java::routes(tree, &mut routes),
        "rust" => rust::routes(tree, &mut routes),
        "ruby" => ruby::routes(tree, &mut routes),
        "php" => php::routes(tree, &mut routes),
        "csharp" => dotnet::routes(tree, &mut routes),
        _ => {}
    }
    routes
}

/// Adds the routes matched by `re` (first capture group) in `text`, prefixed with `prefix`.
pub fn record_routes(routes: &mut Routes, re: &Regex, text: &str, path: &str, prefix: &str) {
    for route in captures(re, text) {
        let route = normalize_route(&format!("{}/{}", prefix.trim_end_matches('/'), route.trim_start_matches('/')));
        routes.0.entry(route).or_insert_with(|| path.to_owned());
    }
}

/// Returns a route with one leading `/`, no doubled slashes and no trailing `/` (except `/`).
pub fn normalize_route(route: &str) -> String {
    let parts: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// Liveness candidates, best first.
const LIVENESS: &[&str] = &[
    "/healthz",
    "/livez",
    "/health/live",
    "/health/liveness",
    "/health",
    "/_health",
    "/api/health",
    "/api/healthz",
    "/actuator/health/liveness",
    "/actuator/health",
    "/healthcheck",
    "/health-check",
    "/up",
    "/ping",
    "/status",
];

/// Readiness candidates, best first.
const READINESS: &[&str] =
    &["/readyz", "/health/ready", "/health/readiness", "/ready", "/readiness", "/actuator/health/readiness"];

fn choose_health(facts: &mut SourceFacts, routes: &Routes) {
    // Django-style trailing slashes are normalised away for matching but kept for probing.
    let lookup = |want: &str| routes.0.iter().find(|(r, _)| r.as_str() == want).map(|(r, f)| (r.clone(), f.clone()));
    if let Some(existing) = &facts.health_path {
        facts.note(format!("health endpoint {existing}: provided by the framework"));
    } else if let Some((route, file)) = LIVENESS.iter().find_map(|c| lookup(c)) {
        facts.note(format!("health endpoint {route}: route declared in {file}"));
        facts.health_path = Some(route);
    }
    if facts.readiness_path.is_none()
        && let Some((route, file)) = READINESS.iter().find_map(|c| lookup(c))
        && Some(&route) != facts.health_path.as_ref()
    {
        facts.note(format!("readiness endpoint {route}: route declared in {file}"));
        facts.readiness_path = Some(route);
    }
    if facts.metrics_path.is_none()
        && let Some((route, _)) = lookup("/metrics")
    {
        facts.metrics_path = Some(route);
    }
    if facts.health_path.is_none() {
        facts.note("no health endpoint found in the code; probes check the port instead");
    }
}

/// Backing services by the dependency names that imply them.
pub fn services_of(deps: &BTreeSet<String>, table: &[(&str, &str)], facts: &mut SourceFacts) {
    for (dep, service) in table {
        if deps.contains(*dep) && facts.dependencies.insert((*service).to_owned()) {
            facts.note(format!("backing service {service}: depends on {dep}"));
        }
    }
}

/// The well-known port of a backing service.
pub fn service_port(service: &str) -> Option<u16> {
    Some(match service {
        "postgresql" => 5432,
        "mysql" => 3306,
        "mongodb" => 27017,
        "redis" => 6379,
        "memcached" => 11211,
        "kafka" => 9092,
        "rabbitmq" => 5672,
        "elasticsearch" => 9200,
        "nats" => 4222,
        _ => return None,
    })
}

/// Compiles a pattern known to be valid.
pub fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static pattern")
}

/// A port literal (two to five digits) in a listen call or address.
pub static ADDRESS_PORT: LazyLock<Regex> = LazyLock::new(|| re(r#"["'](?:0\.0\.0\.0|\[::\]|\*|\+)?:(\d{2,5})["'/]"#));

/// Parses a port literal, refusing 0, values above 65535 and the well-known ports of backing
/// services (a literal `:6379` is a Redis address the app dials, not a port it serves).
pub fn port_of(s: &str) -> Option<u16> {
    const SERVICE_PORTS: &[u16] = &[5432, 3306, 27017, 6379, 11211, 9092, 5672, 9200, 4222];
    s.parse::<u16>().ok().filter(|p| *p > 0 && !SERVICE_PORTS.contains(p))
}

#[cfg(test)]
mod tests;
