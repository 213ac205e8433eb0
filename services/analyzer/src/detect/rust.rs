//! Rust: axum and actix-web.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::Regex;

use super::{
    ADDRESS_PORT, Routes, SourceFacts, captures, env, env_reads, port_of, re, record_routes, services_of, sources,
};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["rs"];

static DEP: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*([A-Za-z0-9_-]+)\s*=\s*(?:"|\{)"#));
static PKG_NAME: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*name\s*=\s*"([^"]+)""#));
static TUPLE_PORT: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"\(\s*(?:"[\w.:\[\]]*"|\[\s*0\s*,\s*0\s*,\s*0\s*,\s*0\s*\]|Ipv4Addr::\w+)\s*,\s*(\d{2,5})\s*\)"#)
});
static AXUM_ROUTE: LazyLock<Regex> = LazyLock::new(|| re(r#"\.route\(\s*"(/[^"]*)"\s*,\s*(?:get|any|head)\b"#));
static ACTIX_ATTR: LazyLock<Regex> = LazyLock::new(|| re(r#"#\[(?:get|head)\(\s*"(/[^"]*)""#));
static ACTIX_RESOURCE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?:web::resource\(\s*"(/[^"]*)"|\.route\(\s*"(/[^"]*)"\s*,\s*web::get\(\))"#));
static ENV: LazyLock<Regex> = LazyLock::new(|| re(r#"env::var(?:_os)?\(\s*"(?P<n>[A-Za-z_][A-Za-z0-9_]*)""#));

const SERVICES: &[(&str, &str)] = &[
    ("tokio-postgres", "postgresql"),
    ("postgres", "postgresql"),
    ("redis", "redis"),
    ("mongodb", "mongodb"),
    ("lapin", "rabbitmq"),
    ("rdkafka", "kafka"),
    ("async-nats", "nats"),
];

/// Detects a Rust application from `Cargo.toml`.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let Some(manifest) = tree.text("Cargo.toml") else { return false };
    facts.language = "rust".into();
    facts.build_tool = "cargo".into();
    facts.note("language rust: Cargo.toml");
    let deps: BTreeSet<String> = captures(&DEP, manifest).map(str::to_owned).collect();
    if deps.contains("axum") {
        facts.framework = "axum".into();
        facts.note("framework axum: Cargo.toml depends on axum");
    } else if deps.contains("actix-web") {
        facts.framework = "actix-web".into();
        facts.note("framework actix-web: Cargo.toml depends on actix-web");
    }
    services_of(&deps, SERVICES, facts);
    if deps.contains("sqlx") && manifest.contains("postgres") && facts.dependencies.insert("postgresql".into()) {
        facts.note("backing service postgresql: sqlx with the postgres feature");
    }
    for (path, text) in sources(tree, EXTS) {
        let mut found = super::captures_located(&ADDRESS_PORT, text, path);
        found.extend(super::captures_located(&TUPLE_PORT, text, path));
        for (p, at) in found {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("listen address at {at}"));
            }
        }
    }
    if !facts.framework.is_empty() {
        facts.default_port(8080, "Rust web services by convention");
    }
    env_reads(tree, EXTS, &[(&ENV, var)], facts);
    let name = captures(&PKG_NAME, manifest).next().unwrap_or("app");
    facts.start_command = vec![format!("/usr/local/bin/{name}")];
    true
}

/// `env::var("X")` then `.unwrap_or("d")` has a default; `.expect(..)`, `.unwrap()` or `?`
/// stops the program without it.
fn var(_: &regex::Captures<'_>, rest: &str) -> env::Need {
    let after = rest.trim_start().strip_prefix(')').unwrap_or("").trim_start();
    if let Some(d) = after.strip_prefix(".unwrap_or(") {
        env::Need::Default(env::rest_args(&format!(",{}", env::bounded(d))).first().and_then(|lit| env::literal(lit)))
    } else if after.starts_with(".unwrap_or_else(") || after.starts_with(".unwrap_or_default()") {
        env::Need::Default(None)
    } else if after.starts_with(".expect(") || after.starts_with(".unwrap()") || after.starts_with('?') {
        env::Need::Required
    } else {
        env::Need::Optional
    }
}

/// Finds axum `.route("/x", get(..))` and actix `#[get("/x")]` / `web::resource` routes.
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    for (path, text) in sources(tree, EXTS) {
        record_routes(routes, &AXUM_ROUTE, text, path, "");
        record_routes(routes, &ACTIX_ATTR, text, path, "");
        record_routes(routes, &ACTIX_RESOURCE, text, path, "");
    }
}
