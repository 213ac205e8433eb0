//! Node.js: Express, Next.js, NestJS.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::Regex;

use super::{ADDRESS_PORT, Routes, SourceFacts, captures, env_reads, port_of, re, record_routes, services_of, sources};
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
static ENV_DOT: LazyLock<Regex> = LazyLock::new(|| re(r"process\.env\.([A-Za-z_][A-Za-z0-9_]*)"));
static ENV_INDEX: LazyLock<Regex> = LazyLock::new(|| re(r#"process\.env\[\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\]"#));
static ENV_CONFIG: LazyLock<Regex> =
    LazyLock::new(|| re(r#"config(?:Service)?\.get(?:<[^>]*>)?\(\s*['"]([A-Z_][A-Z0-9_]*)['"]"#));

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
    for (_, text) in sources(tree, EXTS) {
        for p in captures(&LISTEN, text).chain(captures(&PORT_DEFAULT, text)).filter_map(port_of) {
            facts.add_port(p, "listen call in the code");
        }
    }
    for p in captures(&CLI_PORT, start).filter_map(port_of) {
        facts.add_port(p, "`npm start` script passes it");
    }
    if facts.framework != "nextjs" {
        for (_, text) in sources(tree, EXTS) {
            for p in captures(&ADDRESS_PORT, text).filter_map(port_of) {
                facts.add_port(p, "address literal in the code");
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
    env_reads(tree, EXTS, &[&ENV_DOT, &ENV_INDEX, &ENV_CONFIG], facts);
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
