//! Node.js: Express, Next.js, NestJS.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::Regex;

use super::{
    ADDRESS_PORT, Routes, SourceFacts, call_default, captures, env, env_reads, or_fallback, port_of, re, record_routes,
    required, services_of, sources,
};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["js", "mjs", "cjs", "ts", "mts", "cts", "jsx", "tsx"];

static LISTEN: LazyLock<Regex> = LazyLock::new(|| re(r"\.listen\(\s*(\d{2,5})\b"));
static PORT_DEFAULT: LazyLock<Regex> = LazyLock::new(|| re(r"PORT\s*(?:\|\||\?\?)\s*['\x22]?(\d{2,5})\b"));
static CLI_PORT: LazyLock<Regex> = LazyLock::new(|| re(r"(?:-p|--port)[ =](\d{2,5})\b"));
static EXPRESS_ROUTE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"\.(?:get|all|head|use)\(\s*['"`](/[A-Za-z0-9_./-]*)['"`]"#));
static NEST_CONTROLLER: LazyLock<Regex> = LazyLock::new(|| re(r#"@Controller\(\s*['"`]([^'"`]*)['"`]"#));
static NEST_GET: LazyLock<Regex> = LazyLock::new(|| re(r#"@Get\(\s*(?:['"`]([^'"`]*)['"`])?\s*\)"#));
static NEST_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r#"setGlobalPrefix\(\s*['"`]([^'"`]+)['"`]"#));
static ENV_DOT: LazyLock<Regex> = LazyLock::new(|| re(r"process\.env\.(?P<n>[A-Za-z_][A-Za-z0-9_]*)"));
static ENV_INDEX: LazyLock<Regex> =
    LazyLock::new(|| re(r#"process\.env\[\s*['"](?P<n>[A-Za-z_][A-Za-z0-9_]*)['"]\s*\]"#));
static ENV_CONFIG: LazyLock<Regex> =
    LazyLock::new(|| re(r#"config(?:Service)?\.get(?:<[^>]*>)?\(\s*['"](?P<n>[A-Z_][A-Z0-9_]*)['"]"#));
static QUOTED_NAME: LazyLock<Regex> = LazyLock::new(|| re(r#""([A-Za-z_][A-Za-z0-9_]*)""#));
static ENV_CONFIG_THROW: LazyLock<Regex> =
    LazyLock::new(|| re(r#"config(?:Service)?\.getOrThrow(?:<[^>]*>)?\(\s*['"](?P<n>[A-Z_][A-Z0-9_]*)['"]"#));

const SERVICES: &[(&str, &str)] = &[
    ("pg", "postgresql"),
    ("postgres", "postgresql"),
    ("mysql", "mysql"),
    ("mysql2", "mysql"),
    ("mongodb", "mongodb"),
    ("mongoose", "mongodb"),
    ("redis", "redis"),
    ("ioredis", "redis"),
    ("kafkajs", "kafka"),
    ("amqplib", "rabbitmq"),
    ("@elastic/elasticsearch", "elasticsearch"),
    ("memcached", "memcached"),
    ("nats", "nats"),
];

/// Detects a Node.js application from `package.json`.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let Some(text) = tree.text("package.json") else { return false };
    let pkg: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let mut deps = BTreeSet::new();
    for section in ["dependencies", "devDependencies"] {
        if let Some(map) = pkg.get(section).and_then(|v| v.as_object()) {
            deps.extend(map.keys().cloned());
        }
    }
    let typescript = deps.contains("typescript") || tree.contains("tsconfig.json");
    facts.language = if typescript { "typescript" } else { "javascript" }.into();
    facts.build_tool = if tree.contains("yarn.lock") {
        "yarn"
    } else if tree.contains("pnpm-lock.yaml") {
        "pnpm"
    } else {
        "npm"
    }
    .into();
    facts.note(format!(
        "language {}: package.json{}",
        facts.language,
        if typescript { " with TypeScript" } else { "" }
    ));
    // NestJS and Next.js build on Express-like servers, so they win when present.
    let framework = [("@nestjs/core", "nestjs"), ("next", "nextjs"), ("express", "express")]
        .into_iter()
        .find(|(dep, _)| deps.contains(*dep));
    if let Some((dep, name)) = framework {
        facts.framework = name.into();
        facts.note(format!("framework {name}: package.json depends on {dep}"));
    }
    services_of(&deps, SERVICES, facts);
    let scripts = pkg.get("scripts").and_then(|s| s.as_object());
    let start = scripts.and_then(|s| s.get("start")).and_then(|s| s.as_str()).unwrap_or("");
    for (path, text) in sources(tree, EXTS) {
        let mut found = super::captures_located(&LISTEN, text, path);
        found.extend(super::captures_located(&PORT_DEFAULT, text, path));
        for (p, at) in found {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("listen call at {at}"));
            }
        }
    }
    for p in captures(&CLI_PORT, start).filter_map(port_of) {
        facts.add_port(p, "the `start` script of package.json passes it");
    }
    if facts.framework != "nextjs" {
        for (path, text) in sources(tree, EXTS) {
            for (p, at) in super::captures_located(&ADDRESS_PORT, text, path) {
                if let Some(p) = port_of(p) {
                    facts.add_port(p, format!("address literal at {at}"));
                }
            }
        }
    }
    match facts.framework.as_str() {
        "nextjs" => {
            facts.default_port(3000, "next start");
            facts.web_frontend = true;
            facts.writable_paths.push(".next/cache".into());
        }
        "nestjs" => facts.default_port(3000, "NestJS"),
        "express" => facts.default_port(3000, "Express apps by convention"),
        _ => {}
    }
    env_reads(
        tree,
        EXTS,
        &[
            (&ENV_DOT, or_fallback),
            (&ENV_INDEX, or_fallback),
            (&ENV_CONFIG, call_default),
            (&ENV_CONFIG_THROW, required),
        ],
        facts,
    );
    node_config(tree, facts);
    facts.env_reads.remove("NODE_ENV");
    facts.start_command = if !start.is_empty() {
        vec!["npm".into(), "start".into()]
    } else if let Some(main) = pkg.get("main").and_then(|m| m.as_str()) {
        vec!["node".into(), main.into()]
    } else {
        vec!["node".into(), "index.js".into()]
    };
    true
}

/// The `config` package: `config/custom-environment-variables.json` maps settings to
/// variables (a string, or `{"__name": "X"}`); the setting's value in `config/default.json`
/// is the default.
fn node_config(tree: &SourceTree, facts: &mut SourceFacts) {
    const FILE: &str = "config/custom-environment-variables.json";
    let Some(text) = tree.text(FILE) else { return };
    let Ok(map) = serde_json::from_str::<serde_json::Value>(text) else {
        facts.note(format!("{FILE} is not valid JSON; its variables are not listed"));
        return;
    };
    let defaults: serde_json::Value =
        tree.text("config/default.json").and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    let mut found = Vec::new();
    walk(&map, &mut Vec::new(), &mut found, 0);
    // Where each quoted name first appears, found in one pass.
    let mut first = std::collections::BTreeMap::new();
    for m in QUOTED_NAME.captures_iter(text) {
        if let (Some(all), Some(name)) = (m.get(0), m.get(1)) {
            first.entry(name.as_str()).or_insert(all.start());
        }
    }
    let mut at: Vec<(usize, String, Vec<String>)> =
        found.into_iter().map(|(name, path)| (first.get(name.as_str()).copied().unwrap_or(0), name, path)).collect();
    at.sort();
    let mut lines = env::Lines::new(text);
    for (offset, name, path) in at {
        let default = path.iter().try_fold(&defaults, |v, k| v.get(k)).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        });
        let line = lines.at(offset);
        let read = env::EnvRead {
            need: default.map_or(env::Need::Optional, |d| env::Need::Default(Some(d))),
            file: FILE.into(),
            line,
            expr: env::excerpt(&format!("{}: \"{name}\"", path.join("."))),
        };
        env::record(&mut facts.env_reads, &name, read);
    }
}

fn walk(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>, depth: usize) {
    if depth > 32 {
        return;
    }
    match v {
        serde_json::Value::String(name) => out.push((name.clone(), path.clone())),
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(name)) = map.get("__name") {
                out.push((name.clone(), path.clone()));
                return;
            }
            for (k, child) in map {
                path.push(k.clone());
                walk(child, path, out, depth + 1);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Finds the routes of Express, NestJS and Next.js applications.
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    let prefix = sources(tree, EXTS).find_map(|(_, t)| captures(&NEST_PREFIX, t).next().map(str::to_owned));
    for (path, text) in sources(tree, EXTS) {
        record_routes(routes, &EXPRESS_ROUTE, text, path, "");
        if let Some(controller) = captures(&NEST_CONTROLLER, text).next() {
            let base = format!("{}/{}", prefix.as_deref().unwrap_or(""), controller);
            // `@Get()` serves the controller's own path.
            for caps in NEST_GET.captures_iter(text) {
                let sub = caps.get(1).map_or("", |m| m.as_str());
                let route = super::normalize_route(&format!("{base}/{sub}"));
                routes.0.entry(route).or_insert_with(|| path.to_owned());
            }
        }
    }
    // Next.js file-system routes: pages/api/x.ts -> /api/x, app/x/route.ts -> /x.
    for path in tree.paths() {
        let p = path.strip_prefix("src/").unwrap_or(path);
        let Some((stem, ext)) = p.rsplit_once('.') else { continue };
        if !EXTS.contains(&ext) {
            continue;
        }
        let route = if let Some(api) = stem.strip_prefix("pages/") {
            api.starts_with("api/").then(|| api.trim_end_matches("/index").to_owned())
        } else if let Some(app) = stem.strip_prefix("app/") {
            app.strip_suffix("/route").map(|dir| {
                dir.split('/').filter(|s| !(s.starts_with('(') && s.ends_with(')'))).collect::<Vec<_>>().join("/")
            })
        } else {
            None
        };
        if let Some(route) = route {
            routes.0.entry(super::normalize_route(&route)).or_insert_with(|| path.to_owned());
        }
    }
}
