//! Ruby: Rails.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::Regex;

use super::{Routes, SourceFacts, captures, env_reads, port_of, re, record_routes, services_of};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["rb"];

static GEM: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*gem\s+['"]([^'"]+)['"]"#));
static PUMA_PORT: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*port\s+(?:ENV\.fetch\([^)]*\)\s*\{\s*)?(\d{2,5})"));
static ROUTE: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*(?:get|match)\s+['"]/?([^'"]*)['"]"#));
static ENV: LazyLock<Regex> = LazyLock::new(|| re(r#"ENV(?:\.fetch\(\s*|\[\s*)['"]([A-Za-z_][A-Za-z0-9_]*)['"]"#));

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
        for p in captures(&PUMA_PORT, puma).filter_map(port_of) {
            facts.add_port(p, "config/puma.rb");
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
    env_reads(tree, EXTS, &[&ENV], facts);
    facts.env_reads.remove("RAILS_ENV");
    true
}

/// Finds `get "path"` routes in `config/routes.rb` (including Rails 7.1's `get "up"`).
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    if let Some(text) = tree.text("config/routes.rb") {
        record_routes(routes, &ROUTE, text, "config/routes.rb", "");
    }
}
