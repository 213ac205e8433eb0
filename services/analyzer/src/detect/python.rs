//! Python: Django, FastAPI, Flask.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::Regex;

use super::{
    Routes, SourceFacts, call_default, call_default_or_required, captures, env_reads, port_of, re, record_routes,
    required, services_of, sources,
};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["py"];

static REQUIREMENT: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*([A-Za-z0-9][A-Za-z0-9._-]*)"));
static PYPROJECT_DEP: LazyLock<Regex> = LazyLock::new(|| re(r#"(?m)^\s*['"]?([A-Za-z0-9][A-Za-z0-9._-]*)"#));
static PORT_KW: LazyLock<Regex> = LazyLock::new(|| re(r"\bport\s*=\s*(\d{2,5})\b"));
static BIND: LazyLock<Regex> = LazyLock::new(|| re(r#"(?:--bind|-b|bind\s*=)\s*['"]?[\w.\[\]:]*:(\d{2,5})"#));
static CLI_PORT: LazyLock<Regex> = LazyLock::new(|| re(r"--port[ =](\d{2,5})\b"));
static RUNSERVER: LazyLock<Regex> = LazyLock::new(|| re(r"runserver\s+[\w.]*:(\d{2,5})"));
static FLASK_ROUTE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"@\w+\.(?:route|get|head|api_route)\(\s*['"]([^'"]*)['"]"#));
static DJANGO_PATH: LazyLock<Regex> = LazyLock::new(|| re(r#"\b(?:path|re_path)\(\s*r?['"]\^?([^'"$]*)\$?['"]"#));
static ENV_INDEX: LazyLock<Regex> =
    LazyLock::new(|| re(r#"os\.environ\[\s*['"](?P<n>[A-Za-z_][A-Za-z0-9_]*)['"]\s*\]"#));
static ENV_GET: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?:os\.environ\.get|os\.getenv|environ\.get)\(\s*['"](?P<n>[A-Za-z_][A-Za-z0-9_]*)['"]"#));
// django-environ (`env("X")`, `env.bool("X", default=False)`) and python-decouple
// (`config("X", default=..., cast=...)`) raise when a variable without a default is unset.
static ENV_LIB: LazyLock<Regex> =
    LazyLock::new(|| re(r#"\b(?:env(?:\.\w+)?|config)\(\s*['"](?P<n>[A-Z_][A-Z0-9_]*)['"]"#));
static WSGI: LazyLock<Regex> = LazyLock::new(|| re(r#"WSGI_APPLICATION\s*=\s*['"]([\w.]+)\.application['"]"#));
static APP_VAR: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^(\w+)\s*=\s*(?:FastAPI|Flask)\("));

const SERVICES: &[(&str, &str)] = &[
    ("psycopg2", "postgresql"),
    ("psycopg2-binary", "postgresql"),
    ("psycopg", "postgresql"),
    ("asyncpg", "postgresql"),
    ("pymysql", "mysql"),
    ("mysqlclient", "mysql"),
    ("mysql-connector-python", "mysql"),
    ("pymongo", "mongodb"),
    ("motor", "mongodb"),
    ("redis", "redis"),
    ("kafka-python", "kafka"),
    ("confluent-kafka", "kafka"),
    ("aiokafka", "kafka"),
    ("pika", "rabbitmq"),
    ("aio-pika", "rabbitmq"),
    ("elasticsearch", "elasticsearch"),
];

fn dependencies(tree: &SourceTree) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    for file in ["requirements.txt", "requirements/base.txt", "requirements/prod.txt", "Pipfile"] {
        if let Some(text) = tree.text(file) {
            deps.extend(captures(&REQUIREMENT, text).map(norm));
        }
    }
    if let Some(text) = tree.text("pyproject.toml") {
        deps.extend(captures(&PYPROJECT_DEP, text).map(norm));
    }
    if let Some(text) = tree.text("setup.py") {
        deps.extend(captures(&PYPROJECT_DEP, text).map(norm));
    }
    deps
}

/// Detects a Python application from its requirements or project files.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let marker = ["pyproject.toml", "requirements.txt", "Pipfile", "setup.py"].into_iter().find(|m| tree.contains(m));
    let Some(marker) = marker else { return false };
    facts.language = "python".into();
    facts.build_tool = if marker == "pyproject.toml" && tree.contains("poetry.lock") { "poetry" } else { "pip" }.into();
    facts.note(format!("language python: {marker}"));
    let deps = dependencies(tree);
    let framework = [("django", "django"), ("fastapi", "fastapi"), ("flask", "flask")]
        .into_iter()
        .find(|(dep, _)| deps.contains(*dep));
    if let Some((dep, name)) = framework {
        facts.framework = name.into();
        facts.note(format!("framework {name}: {marker} requires {dep}"));
    }
    services_of(&deps, SERVICES, facts);
    let procfile = tree.text("Procfile").unwrap_or("");
    let gunicorn_conf = tree.text("gunicorn.conf.py").unwrap_or("");
    for (what, text) in [("Procfile", procfile), ("gunicorn.conf.py", gunicorn_conf)] {
        let mut found = super::captures_located(&BIND, text, what);
        found.extend(super::captures_located(&CLI_PORT, text, what));
        for (p, at) in found {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("{at} binds it"));
            }
        }
    }
    for (path, text) in sources(tree, EXTS) {
        let mut found = super::captures_located(&PORT_KW, text, path);
        found.extend(super::captures_located(&RUNSERVER, text, path));
        for (p, at) in found {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("port set at {at}"));
            }
        }
    }
    let web = procfile.lines().find_map(|l| l.strip_prefix("web:")).map(str::trim);
    let has = |d: &str| deps.contains(d);
    let app_module = || {
        sources(tree, EXTS).find_map(|(path, text)| {
            let var = captures(&APP_VAR, text).next()?;
            Some(format!("{}:{var}", path.trim_end_matches(".py").replace('/', ".")))
        })
    };
    match facts.framework.as_str() {
        "django" => {
            facts.default_port(8000, "Django");
            let wsgi = sources(tree, EXTS).find_map(|(_, t)| captures(&WSGI, t).next().map(str::to_owned));
            facts.start_command = match (has("gunicorn"), wsgi) {
                (true, Some(module)) => {
                    vec!["gunicorn".into(), format!("{module}:application"), "--bind".into(), "0.0.0.0:8000".into()]
                }
                _ => ["python", "manage.py", "runserver", "0.0.0.0:8000"].map(String::from).to_vec(),
            };
        }
        "fastapi" => {
            facts.default_port(8000, "uvicorn");
            let module = app_module().unwrap_or_else(|| "main:app".into());
            facts.start_command = vec![
                "uvicorn".into(),
                module,
                "--host".into(),
                "0.0.0.0".into(),
                "--port".into(),
                facts.ports[0].to_string(),
            ];
        }
        "flask" => {
            facts.default_port(5000, "Flask");
            let module = app_module().unwrap_or_else(|| "app:app".into());
            facts.start_command = if has("gunicorn") {
                vec!["gunicorn".into(), module, "--bind".into(), format!("0.0.0.0:{}", facts.ports[0])]
            } else {
                vec!["flask".into(), "run".into(), "--host=0.0.0.0".into(), format!("--port={}", facts.ports[0])]
            };
        }
        _ => facts.start_command = vec!["python".into(), "main.py".into()],
    }
    if let Some(web) = web {
        facts.start_command = vec!["/bin/sh".into(), "-c".into(), web.to_owned()];
        facts.note("start command: the `web` process of the Procfile");
    }
    env_reads(
        tree,
        EXTS,
        &[(&ENV_INDEX, required), (&ENV_GET, call_default), (&ENV_LIB, call_default_or_required)],
        facts,
    );
    true
}

/// Finds Flask/FastAPI decorators and Django URL patterns (under the root URLconf).
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    for (path, text) in sources(tree, EXTS) {
        record_routes(routes, &FLASK_ROUTE, text, path, "");
        if path.ends_with("urls.py") {
            record_routes(routes, &DJANGO_PATH, text, path, "");
        }
    }
}
