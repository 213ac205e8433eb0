//! Go: gin, echo, net/http.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::Regex;

use super::{
    ADDRESS_PORT, Routes, SourceFacts, captures, env, env_reads, optional, port_of, re, record_routes, services_of,
    sources,
};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["go"];

static REQUIRE: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*(?:require\s+)?([a-z0-9.-]+\.[a-z]+/[^\s]+)\s+v"));
static MODULE: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^module\s+(\S+)"));
static ROUTE: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"\.(?:GET|HEAD|Any|Get|Handle|HandleFunc|Handler)\(\s*"(?:(?:GET|HEAD)\s+)?(/[A-Za-z0-9_./{}-]*)""#)
});
static ENV: LazyLock<Regex> = LazyLock::new(|| re(r#"os\.(?:Getenv|LookupEnv)\(\s*"(?P<n>[A-Za-z_][A-Za-z0-9_]*)""#));
// viper: `BindEnv("key", "NAME")` reads NAME for the key; `BindEnv("key")` reads the key in
// upper case after `SetEnvPrefix`'s prefix; `SetDefault("key", v)` is its default.
static BIND_ENV: LazyLock<Regex> =
    LazyLock::new(|| re(r#"\.BindEnv\(\s*"(?P<k>[A-Za-z0-9_.-]+)"\s*(?:,\s*"(?P<n>[A-Za-z_][A-Za-z0-9_]*)")?\s*\)"#));
static ENV_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r#"\.SetEnvPrefix\(\s*"([A-Za-z0-9_]+)""#));
static SET_DEFAULT: LazyLock<Regex> = LazyLock::new(|| re(r#"\.SetDefault\(\s*"([A-Za-z0-9_.-]+)"\s*,"#));

const SERVICES: &[(&str, &str)] = &[
    ("github.com/lib/pq", "postgresql"),
    ("github.com/jackc/pgx/v5", "postgresql"),
    ("github.com/jackc/pgx/v4", "postgresql"),
    ("github.com/go-sql-driver/mysql", "mysql"),
    ("go.mongodb.org/mongo-driver", "mongodb"),
    ("github.com/redis/go-redis/v9", "redis"),
    ("github.com/go-redis/redis/v8", "redis"),
    ("github.com/segmentio/kafka-go", "kafka"),
    ("github.com/IBM/sarama", "kafka"),
    ("github.com/rabbitmq/amqp091-go", "rabbitmq"),
    ("github.com/streadway/amqp", "rabbitmq"),
    ("github.com/nats-io/nats.go", "nats"),
];

/// Detects a Go application from `go.mod`.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let Some(gomod) = tree.text("go.mod") else { return false };
    facts.language = "go".into();
    facts.build_tool = "go".into();
    facts.note("language go: go.mod");
    let deps: BTreeSet<String> = captures(&REQUIRE, gomod).map(str::to_owned).collect();
    let uses_net_http = sources(tree, EXTS).any(|(_, t)| t.contains("\"net/http\""));
    if let Some(dep) = deps.iter().find(|d| d.starts_with("github.com/gin-gonic/gin")) {
        facts.framework = "gin".into();
        facts.note(format!("framework gin: go.mod requires {dep}"));
    } else if let Some(dep) = deps.iter().find(|d| d.starts_with("github.com/labstack/echo")) {
        facts.framework = "echo".into();
        facts.note(format!("framework echo: go.mod requires {dep}"));
    } else if uses_net_http {
        facts.framework = "net/http".into();
        facts.note("framework net/http: the code imports net/http and no router framework");
    }
    services_of(&deps, SERVICES, facts);
    for (path, text) in sources(tree, EXTS) {
        for (p, at) in super::captures_located(&ADDRESS_PORT, text, path) {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("listen address at {at}"));
            }
        }
    }
    if !facts.framework.is_empty() {
        facts.default_port(8080, &facts.framework.clone());
    }
    env_reads(tree, EXTS, &[(&ENV, optional)], facts);
    viper(tree, facts);
    let module = captures(&MODULE, gomod).next().unwrap_or("app");
    let binary = module.rsplit('/').next().unwrap_or("app");
    facts.start_command = vec![format!("/usr/local/bin/{binary}")];
    true
}

/// Reads viper's environment bindings: each bound variable, defaulted when `SetDefault`
/// names its key.
fn viper(tree: &SourceTree, facts: &mut SourceFacts) {
    for (path, text) in sources(tree, EXTS).filter(|(_, t)| t.contains("BindEnv(")) {
        let prefix = captures(&ENV_PREFIX, text).next().map(|p| format!("{}_", p.to_ascii_uppercase()));
        let mut defaults = std::collections::BTreeMap::new();
        for c in SET_DEFAULT.captures_iter(text) {
            let (Some(key), Some(m)) = (c.get(1), c.get(0)) else { continue };
            let value = env::rest_args(&format!(",{}", env::bounded(&text[m.end()..])))
                .first()
                .map(|v| env::literal(v))
                .unwrap_or_default();
            defaults.insert(key.as_str().to_ascii_lowercase(), value);
        }
        let mut lines = env::Lines::new(text);
        for c in BIND_ENV.captures_iter(text) {
            let (Some(whole), Some(key)) = (c.get(0), c.name("k")) else { continue };
            let name = match c.name("n") {
                Some(n) => n.as_str().to_owned(),
                None => format!("{}{}", prefix.as_deref().unwrap_or(""), key.as_str().to_ascii_uppercase()),
            };
            let need = match defaults.get(&key.as_str().to_ascii_lowercase()) {
                Some(value) => env::Need::Default(value.clone()),
                None => env::Need::Optional,
            };
            let read = env::EnvRead {
                need,
                file: path.to_owned(),
                line: lines.at(whole.start()),
                expr: env::excerpt(whole.as_str()),
            };
            env::record(&mut facts.env_reads, &name, read);
        }
    }
}

/// Finds gin/echo/net/http routes (including Go 1.22 `"GET /path"` patterns).
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    for (path, text) in sources(tree, EXTS) {
        record_routes(routes, &ROUTE, text, path, "");
    }
}
