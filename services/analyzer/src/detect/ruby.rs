//! Ruby: Rails.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::Regex;

use super::{
    Routes, SourceFacts, captures, env, env_reads, env_reads_in, or_fallback, port_of, re, record_routes, services_of,
};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["rb"];

static GEM: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*gem\s+['"]([^'"]+)['"]"#));
static PUMA_PORT: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*port\s+(?:ENV\.fetch\([^)]*\)\s*\{\s*)?(\d{2,5})"));
static ROUTE: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*(?:get|match)\s+['"]/?([^'"]*)['"]"#));
static ENV_INDEX: LazyLock<Regex> = LazyLock::new(|| re(r#"ENV\[\s*['"](?P<n>[A-Za-z_][A-Za-z0-9_]*)['"]\s*\]"#));
static ENV_FETCH: LazyLock<Regex> = LazyLock::new(|| re(r#"ENV\.fetch\(\s*['"](?P<n>[A-Za-z_][A-Za-z0-9_]*)['"]"#));

const SERVICES: &[(&str, &str)] = &[
    ("pg", "postgresql"),
    ("mysql2", "mysql"),
    ("redis", "redis"),
    ("sidekiq", "redis"),
    ("mongoid", "mongodb"),
    ("bunny", "rabbitmq"),
    ("rdkafka", "kafka"),
];

/// Detects a Ruby application from its `Gemfile`.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let Some(gemfile) = tree.text("Gemfile") else { return false };
    facts.language = "ruby".into();
    facts.build_tool = "bundler".into();
    facts.note("language ruby: Gemfile");
    let gems: BTreeSet<String> = captures(&GEM, gemfile).map(str::to_owned).collect();
    services_of(&gems, SERVICES, facts);
    if let Some(puma) = tree.text("config/puma.rb") {
        for (p, at) in super::captures_located(&PUMA_PORT, puma, "config/puma.rb") {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("`port` at {at}"));
            }
        }
    }
    if gems.contains("rails") {
        facts.framework = "rails".into();
        facts.note("framework rails: the Gemfile requires rails");
        facts.default_port(3000, "Rails (puma)");
        facts.writable_paths.extend(["tmp".to_owned(), "log".to_owned()]);
        facts.start_command = ["bundle", "exec", "rails", "server", "-b", "0.0.0.0"].map(String::from).to_vec();
    } else {
        facts.start_command = ["bundle", "exec", "ruby", "app.rb"].map(String::from).to_vec();
    }
    let rules: &[(&Regex, super::NeedOf)] = &[(&ENV_INDEX, or_fallback), (&ENV_FETCH, fetch)];
    env_reads(tree, EXTS, rules, facts);
    // database.yml, cable.yml, storage.yml...: ERB reads the environment when Rails loads them.
    let configs = tree.files().filter(|(p, b)| {
        p.starts_with("config/") && (p.ends_with(".yml") || p.ends_with(".yaml")) && b.len() <= 1024 * 1024
    });
    for (path, bytes) in configs {
        if let Ok(text) = std::str::from_utf8(bytes) {
            env_reads_in(path, text, rules, facts);
        }
    }
    facts.env_reads.remove("RAILS_ENV");
    true
}

/// `ENV.fetch("X")` raises when X is unset; `ENV.fetch("X", d)` and `ENV.fetch("X") { d }`
/// fall back to `d`.
fn fetch(_: &regex::Captures<'_>, rest: &str) -> env::Need {
    let args = env::rest_args(rest);
    if !args.is_empty() {
        return env::default_arg(&args, env::Need::Required);
    }
    let after = rest.trim_start().strip_prefix(')').unwrap_or("").trim_start_matches([' ', '\t']);
    match after.strip_prefix('{').and_then(|b| b.split_once('}')) {
        Some((block, _)) if block.trim() == "nil" => env::Need::Optional,
        Some((block, _)) => env::Need::Default(env::literal(block)),
        None if after.starts_with("do") => env::Need::Default(None),
        None => env::Need::Required,
    }
}

/// Finds `get "path"` routes in `config/routes.rb` (including Rails 7.1's `get "up"`).
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    if let Some(text) = tree.text("config/routes.rb") {
        record_routes(routes, &ROUTE, text, "config/routes.rb", "");
    }
}
