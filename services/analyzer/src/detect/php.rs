//! PHP: Laravel.

use std::sync::LazyLock;

use regex::Regex;

use super::{Routes, SourceFacts, call_default, env_reads, env_reads_in, optional, re, record_routes};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["php"];

static ROUTE: LazyLock<Regex> = LazyLock::new(|| re(r#"Route::(?:get|any|match)\(\s*['"]([^'"]*)['"]"#));
static HEALTH: LazyLock<Regex> = LazyLock::new(|| re(r#"health:\s*['"]([^'"]+)['"]"#));
static ENV: LazyLock<Regex> = LazyLock::new(|| re(r#"\b(?:env|getenv)\(\s*['"](?P<n>[A-Za-z_][A-Za-z0-9_]*)['"]"#));
static DOTENV_KEY: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^(?P<n>[A-Z][A-Z0-9_]*)="));

/// Detects a PHP application from `composer.json`.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let Some(text) = tree.text("composer.json") else { return false };
    let composer: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    facts.language = "php".into();
    facts.build_tool = "composer".into();
    facts.note("language php: composer.json");
    let requires = |name: &str| composer.get("require").and_then(|r| r.get(name)).is_some();
    if requires("laravel/framework") {
        facts.framework = "laravel".into();
        facts.note("framework laravel: composer.json requires laravel/framework");
        facts.default_port(8000, "php artisan serve");
        facts.writable_paths.extend(["storage".to_owned(), "bootstrap/cache".to_owned()]);
        facts.start_command = ["php", "artisan", "serve", "--host=0.0.0.0", "--port=8000"].map(String::from).to_vec();
    } else {
        facts.start_command = ["php", "-S", "0.0.0.0:8000", "-t", "public"].map(String::from).to_vec();
    }
    let example = tree.text(".env.example").unwrap_or("");
    let connection = example.lines().find_map(|l| l.strip_prefix("DB_CONNECTION=")).map(str::trim);
    let db = match connection {
        Some("pgsql") => Some("postgresql"),
        Some("mysql") | Some("mariadb") => Some("mysql"),
        _ => None,
    };
    if let Some(db) = db
        && facts.dependencies.insert(db.into())
    {
        facts.note(format!("backing service {db}: DB_CONNECTION in .env.example"));
    }
    if (requires("predis/predis") || example.contains("REDIS_HOST=")) && facts.dependencies.insert("redis".into()) {
        facts.note("backing service redis: predis or REDIS_HOST in .env.example");
    }
    // config/*.php: `env('X', default)`; without a default Laravel reads null.
    env_reads(tree, EXTS, &[(&ENV, call_default)], facts);
    // Laravel reads its whole configuration from the environment; .env.example lists it. Its
    // values are a developer's local settings, not defaults.
    env_reads_in(".env.example", example, &[(&DOTENV_KEY, optional)], facts);
    true
}

/// Finds `Route::get` routes (`routes/api.php` is served under `/api`) and Laravel 11's
/// `health: '/up'` route.
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    if let Some(text) = tree.text("routes/web.php") {
        record_routes(routes, &ROUTE, text, "routes/web.php", "");
    }
    if let Some(text) = tree.text("routes/api.php") {
        record_routes(routes, &ROUTE, text, "routes/api.php", "/api");
    }
    if let Some(text) = tree.text("bootstrap/app.php") {
        record_routes(routes, &HEALTH, text, "bootstrap/app.php", "");
    }
}
