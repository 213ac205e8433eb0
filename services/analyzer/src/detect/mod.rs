//! Source detection: language and framework, ports, health endpoints that exist in the code,
//! the environment variables the code reads, backing services and the start command.
//!
//! Every choice follows a fixed precedence and every collection is sorted, so the same files
//! always give the same answer; each conclusion records why it was reached in `notes`.

mod dotnet;
pub mod env;
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

use regex::{Captures, Regex};

pub use self::env::{EnvRead, EnvReads, Need};
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
    /// Port of the health endpoints, when the framework serves them apart from the main port
    /// (Spring Boot's `management.server.port`).
    pub health_port: Option<u16>,
    /// Readiness endpoint found in the code, when distinct.
    pub readiness_path: Option<String>,
    /// Prometheus metrics endpoint found in the code.
    pub metrics_path: Option<String>,
    /// Environment variables the code and the framework's configuration read, by name, each
    /// at its strictest read.
    pub env_reads: EnvReads,
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

/// The files each stack's framework readers look at, the first its marker: what the no-panic
/// property test and the `detect` fuzz target fill with arbitrary text.
pub const STACK_FILES: &[&[&str]] = &[
    &[
        "pom.xml",
        "src/main/resources/application.yml",
        "src/main/resources/application.properties",
        "src/main/java/A.java",
    ],
    &["build.gradle.kts", "src/main/resources/application.yaml", "src/main/kotlin/A.kt"],
    &["Gemfile", "config/database.yml", "config/puma.rb", "config/routes.rb", "app/models/a.rb"],
    &["composer.json", "config/database.php", ".env.example", "routes/web.php", "bootstrap/app.php"],
    &["requirements.txt", "mysite/settings.py", "mysite/urls.py", "Procfile", "gunicorn.conf.py"],
    &["package.json", "src/app.ts", "config/custom-environment-variables.json", "config/default.json"],
    &["go.mod", "main.go", "config.go"],
    &["Cargo.toml", "src/main.rs"],
    &["App.csproj", "Program.cs"],
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
        let (secs, why) = typical_start(&facts.language, &facts.framework);
        facts.startup_secs = secs;
        facts.note(format!("startup allowed {secs}s: {why}"));
    }
    facts
}

/// Returns how long the startup probe waits for an application of this stack, and why: a JVM
/// loads and compiles a large class path, a Go or Rust binary serves within a second.
pub fn typical_start(language: &str, framework: &str) -> (u32, &'static str) {
    match (language, framework) {
        (_, "spring-boot") => (90, "Spring Boot on the JVM takes tens of seconds to start, more under a CPU limit"),
        ("java" | "kotlin", _) => (60, "the JVM takes tens of seconds to start"),
        ("ruby", _) => (60, "Rails loads the whole application before it serves"),
        ("csharp" | "fsharp", _) => (30, "ASP.NET Core starts in seconds; the JIT warms up on first requests"),
        ("python" | "php", _) => (30, "the interpreter imports the application before it serves"),
        ("javascript" | "typescript", "nextjs") => (30, "next start loads the built pages first"),
        ("javascript" | "typescript", _) => (20, "Node.js starts in seconds"),
        ("go" | "rust", _) => (15, "a compiled binary serves within a second"),
        _ => (30, "the default for an unknown stack"),
    }
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

/// How a read of a variable is judged: from the match and the text after it.
pub type NeedOf = fn(&Captures<'_>, &str) -> Need;

/// Collects the environment variables read by `rules` (the name in the group `n`) in the
/// files with `exts`.
pub fn env_reads(tree: &SourceTree, exts: &[&str], rules: &[(&Regex, NeedOf)], facts: &mut SourceFacts) {
    for (path, text) in sources(tree, exts) {
        env_reads_in(path, text, rules, facts);
    }
}

/// Collects the environment variables read by `rules` in one file.
pub fn env_reads_in(path: &str, text: &str, rules: &[(&Regex, NeedOf)], facts: &mut SourceFacts) {
    for (re, need) in rules {
        env::scan(&mut facts.env_reads, path, text, re, need);
    }
}

/// A read with no default.
pub fn optional(_: &Captures<'_>, _: &str) -> Need {
    Need::Optional
}

/// A read that fails when the variable is unset.
pub fn required(_: &Captures<'_>, _: &str) -> Need {
    Need::Required
}

/// A call whose next argument (or `default=`) is the default, or which is followed by
/// `|| d`, `?? d` or `or d`; optional otherwise.
pub fn call_default(_: &Captures<'_>, rest: &str) -> Need {
    let args = env::rest_args(rest);
    if args.is_empty()
        && let Some(after) = rest.trim_start().strip_prefix(')')
    {
        return env::fallback(after).unwrap_or(Need::Optional);
    }
    env::default_arg(&args, Need::Optional)
}

/// A call whose next argument (or `default=`) is the default; required without one.
pub fn call_default_or_required(_: &Captures<'_>, rest: &str) -> Need {
    env::default_arg(&env::rest_args(rest), Need::Required)
}

/// A read followed by `|| d`, `?? d` or `or d` has a default; optional otherwise.
pub fn or_fallback(_: &Captures<'_>, rest: &str) -> Need {
    env::fallback(rest).unwrap_or(Need::Optional)
}

/// Environment variable names worth reporting: upper-case words.
pub fn is_env_name(name: &str) -> bool {
    name.len() > 1
        && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Routes found in the code, with the `file:line` each came from; filled by the language modules
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

/// Adds the routes matched by `re` (first capture group) in `text`, prefixed with `prefix`,
/// each with the `file:line` that declares it.
pub fn record_routes(routes: &mut Routes, re: &Regex, text: &str, path: &str, prefix: &str) {
    let mut lines = env::Lines::new(text);
    for (route, at) in captures_at(re, text) {
        let route = normalize_route(&format!("{}/{}", prefix.trim_end_matches('/'), route.trim_start_matches('/')));
        let line = lines.at(at);
        routes.0.entry(route).or_insert_with(|| format!("{path}:{line}"));
    }
}

/// Returns the first capture group of every match of `re` in `text`, with its offset.
pub fn captures_at<'t>(re: &Regex, text: &'t str) -> impl Iterator<Item = (&'t str, usize)> {
    re.captures_iter(text).filter_map(|c| c.iter().skip(1).flatten().next().map(|m| (m.as_str(), m.start())))
}

/// Returns the first capture group of every match of `re` in `text` with its `path:line`.
pub fn captures_located<'t>(re: &Regex, text: &'t str, path: &str) -> Vec<(&'t str, String)> {
    let mut lines = env::Lines::new(text);
    captures_at(re, text).map(|(c, at)| (c, format!("{path}:{}", lines.at(at)))).collect()
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
    // A path the framework provides (Spring's Actuator) was noted where it was found.
    if facts.health_path.is_none()
        && let Some((route, file)) = LIVENESS.iter().find_map(|c| lookup(c))
    {
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
