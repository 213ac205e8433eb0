//! .NET: ASP.NET Core.

use std::sync::LazyLock;

use regex::Regex;

use super::{Routes, SourceFacts, call_default, captures, env_reads, port_of, re, record_routes, sources};
use crate::tree::SourceTree;

const EXTS: &[&str] = &["cs", "fs"];

static URL_PORT: LazyLock<Regex> = LazyLock::new(|| re(r#"https?://(?:\*|\+|0\.0\.0\.0|\[::\]|localhost):(\d{2,5})"#));
static MAP: LazyLock<Regex> = LazyLock::new(|| re(r#"\.Map(?:Get|HealthChecks)\(\s*"(/[^"]*)""#));
static HTTP_GET: LazyLock<Regex> = LazyLock::new(|| re(r#"\[HttpGet\(\s*"([^"]*)"\s*\)\]"#));
static ROUTE_ATTR: LazyLock<Regex> = LazyLock::new(|| re(r#"\[Route\(\s*"([^"]*)"\s*\)\]"#));
static ENV: LazyLock<Regex> = LazyLock::new(|| re(r#"GetEnvironmentVariable\(\s*"(?P<n>[A-Za-z_][A-Za-z0-9_]*)""#));
static PACKAGE: LazyLock<Regex> = LazyLock::new(|| re(r#"PackageReference\s+Include="([^"]+)""#));

const SERVICES: &[(&str, &str)] = &[
    ("Npgsql", "postgresql"),
    ("Npgsql.EntityFrameworkCore.PostgreSQL", "postgresql"),
    ("StackExchange.Redis", "redis"),
    ("MySql.Data", "mysql"),
    ("Pomelo.EntityFrameworkCore.MySql", "mysql"),
    ("MongoDB.Driver", "mongodb"),
    ("RabbitMQ.Client", "rabbitmq"),
    ("Confluent.Kafka", "kafka"),
];

/// Detects a .NET application from a project file at the root.
pub fn detect(tree: &SourceTree, facts: &mut SourceFacts) -> bool {
    let project = tree.files().find(|(p, _)| !p.contains('/') && (p.ends_with(".csproj") || p.ends_with(".fsproj")));
    let Some((path, bytes)) = project else { return false };
    let text = std::str::from_utf8(bytes).unwrap_or("");
    facts.language = if path.ends_with(".fsproj") { "fsharp" } else { "csharp" }.into();
    facts.build_tool = "dotnet".into();
    facts.note(format!("language {}: {path}", facts.language));
    let assembly = path.rsplit_once('.').map_or(path, |(stem, _)| stem).to_owned();
    if text.contains("Microsoft.NET.Sdk.Web") {
        facts.framework = "aspnetcore".into();
        facts.note(format!("framework aspnetcore: {path} uses Microsoft.NET.Sdk.Web"));
    }
    let packages: std::collections::BTreeSet<String> = captures(&PACKAGE, text).map(str::to_owned).collect();
    super::services_of(&packages, SERVICES, facts);
    for (file, src) in sources(tree, EXTS) {
        for (p, at) in super::captures_located(&URL_PORT, src, file) {
            if let Some(p) = port_of(p) {
                facts.add_port(p, format!("URL bound at {at}"));
            }
        }
    }
    if facts.framework == "aspnetcore" {
        // .NET 8 images listen on 8080 (ASPNETCORE_HTTP_PORTS).
        facts.default_port(8080, "ASP.NET Core 8");
    }
    env_reads(tree, EXTS, &[(&ENV, call_default)], facts);
    facts.start_command = vec!["dotnet".into(), format!("{assembly}.dll")];
    true
}

/// Finds minimal-API `MapGet`/`MapHealthChecks` and controller `[HttpGet]` routes.
pub fn routes(tree: &SourceTree, routes: &mut Routes) {
    for (path, text) in sources(tree, EXTS) {
        record_routes(routes, &MAP, text, path, "");
        let base = captures(&ROUTE_ATTR, text).next().unwrap_or("").replace("[controller]", "");
        record_routes(routes, &HTTP_GET, text, path, &base);
    }
}
