//! Builds one [`App`] from what its compose service, Dockerfile, source and `.dorgu.yaml` say,
//! in that order of precedence for runtime settings (the compose file is how it really runs).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use super::{Options, health, images, ports, units};
use crate::{
    appconfig::AppConfig,
    compose::{self, CommandLine, HealthTest, VolumeKind},
    detect::{self, Need, SourceFacts},
    dockerfile::Dockerfile,
    model::{Amounts, App, AppKind, Backing, ClaimMount, EnvValue, Probe, Scratch, dns_label, is_secret},
    quantity,
};

/// Everything known about one application before it is combined.
pub struct Input<'a> {
    /// Kubernetes name.
    pub name: String,
    /// Project name.
    pub project: String,
    /// Its compose service.
    pub service: Option<&'a compose::Service>,
    /// Its Dockerfile.
    pub dockerfile: Option<&'a Dockerfile>,
    /// Its source facts.
    pub source: Option<&'a SourceFacts>,
    /// Image.
    pub image: String,
    /// Built from source.
    pub built: bool,
    /// Options.
    pub options: &'a Options,
    /// `.dorgu.yaml` (primary application only).
    pub config: Option<&'a AppConfig>,
    /// Variables from its env_files.
    pub env_files: BTreeMap<String, String>,
    /// Ingress host.
    pub host: Option<String>,
}

fn profile_defaults(profile: &str) -> (Amounts, Amounts) {
    let a = |cpu: &str, memory: &str| Amounts { cpu: cpu.into(), memory: memory.into() };
    match profile {
        "minimal" => (a("50m", "128Mi"), a("500m", "512Mi")),
        "compute-heavy" => (a("500m", "512Mi"), a("2", "2Gi")),
        "memory-heavy" => (a("250m", "512Mi"), a("1", "2Gi")),
        _ => (a("100m", "256Mi"), a("1", "1Gi")),
    }
}

fn exec_form(cmd: &CommandLine) -> Vec<String> {
    match cmd {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    }
}

/// Combines the inputs into an application.
pub fn build(input: Input<'_>, warnings: &mut Vec<String>) -> App {
    let Input { name, project, service, dockerfile, source, image, built, options: _, config, env_files, host } = input;
    let known = if built { None } else { images::lookup(&image) };
    let stage = dockerfile.map(|d| d.final_stage());
    let empty = SourceFacts::default();
    let source = source.unwrap_or(&empty);
    let mut notes = Vec::new();

    // Health checks written as commands: a compose healthcheck replaces the image's HEALTHCHECK.
    // The one that applies says, when it requests a URL, which port answers HTTP.
    let config_health = config.and_then(|c| c.health.as_ref());
    let compose_check = service.and_then(|s| s.healthcheck.as_ref()).and_then(|h| match &h.test {
        HealthTest::Exec(c) => Some(c.clone()),
        HealthTest::Shell(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
        HealthTest::None => None,
    });
    let docker_file = dockerfile.map_or("Dockerfile", |d| d.path.as_str());
    let docker_check = stage
        .and_then(|s| s.healthcheck.as_ref())
        .filter(|h| !h.disabled)
        .map(|h| (h.command.clone(), format!("the HEALTHCHECK at {docker_file}:{}", h.line)));
    // Where the compose settings are written, for the notes (`services.api.expose at compose.yaml:12`).
    let origin = service.map(|s| &s.origin);
    let compose_at = |key: &str| origin.map_or_else(|| format!("compose {key}"), |o| o.at(key));
    let check = match (compose_check, docker_check) {
        (Some(c), _) => Some((c, compose_at("healthcheck"))),
        (None, Some(c)) => Some(c),
        (None, None) => None,
    };
    let check_env = health::environment(service, stage, &env_files);
    let check_get = check.as_ref().and_then(|(c, _)| health::http_get(c, &check_env.vars));
    if let (Some(get), Some((_, what))) = (&check_get, &check) {
        for (var, _) in get.variables.iter().filter(|(v, _)| check_env.build_only.contains(v)) {
            warnings.push(format!(
                "{name}: {what} reads ${var}, a build argument the running container does not see; the probe uses its build value, Docker's own check runs without it"
            ));
        }
    }

    // Ports: the compose file, then EXPOSE, then a PORT variable, then the image's or the code's.
    let mut found: Vec<ports::Found> = Vec::new();
    fn push(found: &mut Vec<ports::Found>, f: ports::Found) {
        match found.iter_mut().find(|p| p.port == f.port && p.udp == f.udp) {
            Some(p) => p.published |= f.published,
            None => found.push(f),
        }
    }
    let at =
        |port: u16, udp: bool, source: &str| ports::Found { port, udp, source: source.into(), ..Default::default() };
    if let Some(s) = service {
        for p in &s.ports {
            push(
                &mut found,
                ports::Found {
                    published: p.published.is_some(),
                    app_protocol: p.app_protocol.clone(),
                    name: p.name.clone(),
                    ..at(p.target, p.udp, &compose_at("ports"))
                },
            );
        }
        for p in &s.expose {
            push(&mut found, at(p.target, p.udp, &compose_at("expose")));
        }
    }
    // A compose `command` that replaces what the image runs, with no ports of its own, is a
    // different process (a worker on the same image): the image's EXPOSE does not describe it.
    let replaced_command = service.is_some_and(|s| s.command.is_some() && s.ports.is_empty() && s.expose.is_empty());
    if replaced_command {
        let image_cmd = stage
            .filter(|s| s.cmd_line > 0)
            .map(|s| format!(" (CMD at {docker_file}:{})", s.cmd_line))
            .unwrap_or_default();
        notes.push(format!(
            "no ports: {} replaces the image's command{image_cmd} and declares no ports",
            compose_at("command")
        ));
    }
    if let Some(st) = stage.filter(|_| !replaced_command) {
        for e in &st.exposed {
            push(&mut found, at(e.port, e.udp, &format!("EXPOSE at {docker_file}:{}", e.line)));
        }
    }
    let env_port = service
        .and_then(|s| s.environment.get("PORT").cloned().flatten())
        .map(|p| (p, format!("PORT in {}", compose_at("environment"))))
        .or_else(|| {
            let st = stage?;
            let line = st.env_lines.get("PORT").copied().unwrap_or(st.line);
            st.env.get("PORT").map(|p| (p.clone(), format!("ENV PORT at {docker_file}:{line}")))
        })
        .and_then(|(p, at)| Some((p.parse::<u16>().ok().filter(|p| *p > 0)?, at)));
    if found.is_empty()
        && let Some((p, source)) = &env_port
    {
        push(&mut found, at(*p, false, source));
    }
    let env_port = env_port.map(|(p, _)| p);
    if found.is_empty()
        && let Some(k) = known
    {
        push(&mut found, at(k.port, false, &format!("the default port of {}", k.service)));
    }
    if found.is_empty() && !replaced_command {
        for p in &source.ports {
            push(&mut found, at(*p, false, "detected in the source"));
        }
    }
    let mut evidence = ports::Evidence {
        framework: source.framework.clone(),
        // The framework's server: the code's main port (or the framework's default), or $PORT.
        code_ports: source.ports.first().copied().into_iter().chain(env_port).collect(),
        known: known.map(|k| (k.service, k.port)),
        built,
        ..ports::Evidence::default()
    };
    if let (Some(get), Some((_, what))) = (&check_get, &check) {
        evidence.http_checks.insert(get.port, format!("{what} requests HTTP on it"));
    }
    if let Some(p) = source.health_port {
        evidence.http_checks.entry(p).or_insert_with(|| "the framework's management server serves HTTP on it".into());
    }
    let config_live = config_health.and_then(|h| h.liveness.as_ref()).filter(|l| !l.path.is_empty());
    let config_port = config_live.and_then(|l| l.port).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
    if let Some(p) = config_port {
        evidence.http_checks.insert(p, ".dorgu.yaml health.liveness checks HTTP on it".into());
    }
    let (mut ports, mut port_notes) = ports::assign(&found, &evidence);
    // `.dorgu.yaml` names an HTTP liveness path but no port: the app serves HTTP on its main port.
    if config_live.is_some()
        && config_port.is_none()
        && !ports.iter().any(ports::is_http)
        && let Some(main) = ports::main_port(&ports).map(|p| p.port)
    {
        evidence.http_checks.insert(main, ".dorgu.yaml health.liveness checks HTTP on the main port".into());
        (ports, port_notes) = ports::assign(&found, &evidence);
    }
    notes.append(&mut port_notes);
    let main_port = ports::main_port(&ports).map(|p| p.port);
    let http_main_port = ports::main_port(&ports).filter(|p| ports::is_http(p)).map(|p| p.port);

    // Environment: env_file, then `environment` (compose's precedence); values that look secret
    // become references to the app's Secret and never reach the output.
    let mut env: BTreeMap<String, EnvValue> = BTreeMap::new();
    let mut env_unset = BTreeSet::new();
    let set = |k: &str, v: Option<&str>, env: &mut BTreeMap<String, EnvValue>, unset: &mut BTreeSet<String>| {
        if is_secret(k, v) {
            env.insert(k.to_owned(), EnvValue::Secret { optional: false });
        } else if let Some(v) = v {
            env.insert(k.to_owned(), EnvValue::Plain(v.to_owned()));
        } else {
            unset.insert(k.to_owned());
        }
    };
    for (k, v) in &env_files {
        set(k, Some(v), &mut env, &mut env_unset);
    }
    if let Some(s) = service {
        for (k, v) in &s.environment {
            set(k, v.as_deref(), &mut env, &mut env_unset);
        }
    }
    if let Some(st) = stage {
        for (k, v) in &st.env {
            if is_secret(k, Some(v)) && !env.contains_key(k) {
                if !v.is_empty() {
                    let line = st.env_lines.get(k).copied().unwrap_or(st.line);
                    warnings.push(format!(
                        "{name}: the Dockerfile bakes a value for {k} into the image (ENV at {docker_file}:{line}); the Deployment overrides it from the Secret {name}-secrets"
                    ));
                }
                env.insert(k.clone(), EnvValue::Secret { optional: false });
            }
        }
    }
    let image_env: BTreeSet<&String> = stage.map(|s| s.env.keys().collect()).unwrap_or_default();
    for (k, read) in &source.env_reads {
        if env.contains_key(k) || image_env.contains(k) {
            continue;
        }
        let at = format!("`{}` at {}", read.expr, read.location());
        let secret_default = matches!(&read.need, Need::Default(Some(v)) if is_secret(k, Some(v)));
        if is_secret(k, None) || secret_default {
            let optional = read.need != Need::Required;
            let how = if optional { "optional: the pod starts without it" } else { "the pod waits until it is set" };
            notes.push(format!("env {k}: {} {at}; a key of the Secret {name}-secrets ({how})", read.need.by()));
            env.insert(k.clone(), EnvValue::Secret { optional });
        } else if k == "PORT"
            && let Some(p) = main_port
        {
            notes.push(format!("env PORT: read by {at}; set to the main port {p}"));
            env.insert(k.clone(), EnvValue::Plain(p.to_string()));
        } else {
            match &read.need {
                Need::Default(Some(v)) => {
                    notes.push(format!("env {k}: {} {at}; the ConfigMap holds the default", read.need.by()));
                    env.insert(k.clone(), EnvValue::Plain(v.clone()));
                }
                Need::Required => {
                    notes.push(format!("env {k}: {} {at}; nothing sets it", read.need.by()));
                    warnings.push(format!(
                        "{name}: {k} is required ({}) and nothing sets it: add it to the ConfigMap {name}-config; the pod waits until it is there",
                        read.location()
                    ));
                    env.insert(k.clone(), EnvValue::ConfigKey);
                }
                Need::Default(None) | Need::Optional => {
                    env_unset.insert(k.clone());
                }
            }
        }
    }
    if let Some(k) = known {
        for (key, value) in k.env {
            env.entry((*key).to_owned()).or_insert_with(|| EnvValue::Plain((*value).to_owned()));
        }
    }
    for k in env.keys() {
        env_unset.remove(k);
    }

    // Health: a compose healthcheck, a Dockerfile HEALTHCHECK, a route in the code, the image's
    // own check, then the port. HTTP only where a port has shown it speaks HTTP.
    let readiness_code = source.readiness_path.clone();
    let mut probe = Probe::None;
    if let Some((command, what)) = check {
        probe = match check_get {
            Some(get) => {
                let mut note = format!("probes: HTTP GET {} on port {}, from {what}", get.path, get.port);
                for (var, value) in &get.variables {
                    let _ = write!(note, "; ${var} is {value}");
                }
                match &source.health_path {
                    Some(code) if *code == get.path => note.push_str("; the code declares the same route"),
                    Some(code) => {
                        let _ = write!(note, "; the code also declares {code}, the check's path is used");
                    }
                    None => {}
                }
                notes.push(note);
                Probe::Http {
                    readiness: readiness_code.clone().unwrap_or_else(|| get.path.clone()),
                    path: get.path,
                    port: get.port,
                }
            }
            None => {
                notes.push(format!("probes: run `{}`, from {what}", command.join(" ")));
                Probe::Exec(command)
            }
        };
    }
    // The framework's own management server (Spring's management.server.port) speaks HTTP.
    if probe == Probe::None
        && let (Some(path), Some(port)) = (&source.health_path, source.health_port.or(http_main_port))
    {
        let found = if source.health_port.is_some() {
            "served by the framework's management server"
        } else {
            "found in the code"
        };
        notes.push(format!("probes: HTTP GET {path} on port {port}, the endpoint {found}"));
        probe =
            Probe::Http { path: path.clone(), readiness: readiness_code.clone().unwrap_or_else(|| path.clone()), port };
    }
    if probe == Probe::None
        && let Some(k) = known.filter(|k| !k.probe.is_empty())
    {
        notes.push(format!("probes: `{}`, the usual check for {}", k.probe.join(" "), k.service));
        probe = Probe::Exec(k.probe.iter().map(|s| (*s).to_owned()).collect());
    }
    if probe == Probe::None
        && let Some(port) = main_port
    {
        let why = match (&source.health_path, http_main_port) {
            (Some(path), None) => format!("the code declares {path}, but port {port} has shown no sign of HTTP"),
            _ => "no health endpoint or check was found".to_owned(),
        };
        notes.push(format!("probes: TCP connect to port {port}; {why}"));
        probe = Probe::Tcp(port);
    }
    if probe == Probe::None && !ports.is_empty() && main_port.is_none() {
        notes.push("probes: none; the app serves UDP only, which no TCP or HTTP check can reach".into());
    }
    if let (Some(h), Some(l)) = (config_health, config_live) {
        let port = config_port
            .or_else(|| ports.iter().find(|p| ports::is_http(p)).map(|p| p.port))
            .or(main_port)
            .unwrap_or(8080);
        let readiness =
            h.readiness.as_ref().filter(|r| !r.path.is_empty()).map_or_else(|| l.path.clone(), |r| r.path.clone());
        notes.push(format!("probes: HTTP GET {} on port {port}, from .dorgu.yaml", l.path));
        probe = Probe::Http { path: l.path.clone(), readiness, port };
    }
    // The stack's typical start (detect::typical_start), else 30s for an image or unknown code.
    let mut startup_secs = if source.recognised() { source.startup_secs.max(1) } else { 30 };
    if let Some(sp) = service.and_then(|s| s.healthcheck.as_ref()).and_then(|h| h.start_period_secs) {
        startup_secs = startup_secs.max(sp.min(600) as u32);
    }
    if let Some(sp) = stage.and_then(|s| s.healthcheck.as_ref()).and_then(|h| h.start_period_secs) {
        startup_secs = startup_secs.max(sp.min(600) as u32);
    }
    if let Some(g) = config_health.map(|h| h.startup_grace_period.as_str()).filter(|g| !g.is_empty()) {
        match compose_seconds(g) {
            Some(s) => startup_secs = s.min(600) as u32,
            None => warnings.push(format!(
                ".dorgu.yaml: health.startup_grace_period `{g}` is not a duration; using {startup_secs}s"
            )),
        }
    }

    // Kind and component.
    let configured_kind = config.map(|c| c.app.kind.as_str()).filter(|k| !k.is_empty());
    let kind = match configured_kind.and_then(AppKind::parse) {
        Some(k) => k,
        None => {
            if let Some(k) = configured_kind {
                warnings.push(format!(".dorgu.yaml: app.type `{k}` is not api, web, worker, cron or daemon"));
            }
            if known.is_some() {
                AppKind::Api
            } else if source.web_frontend {
                AppKind::Web
            } else if ports.is_empty() {
                AppKind::Worker
            } else {
                AppKind::Api
            }
        }
    };
    let component = known.map_or_else(|| kind.as_str().to_owned(), |k| k.kind.to_owned());

    // Volumes.
    let mut claims = Vec::new();
    let mut scratch = BTreeSet::new();
    scratch.insert(Scratch { path: "/tmp".into(), memory: false });
    if let Some(s) = service {
        for v in &s.volumes {
            match v.kind {
                VolumeKind::Volume if v.source.is_empty() => {
                    scratch.insert(Scratch { path: v.target.clone(), memory: false });
                }
                VolumeKind::Volume => claims.push(ClaimMount {
                    claim: dns_label(&v.source, "data"),
                    path: v.target.clone(),
                    read_only: v.read_only,
                }),
                VolumeKind::Tmpfs => {
                    scratch.insert(Scratch { path: v.target.clone(), memory: true });
                }
                VolumeKind::Bind => warnings.push(format!(
                    "{name}: bind mount {} -> {} is not carried over; put the files in the image or a ConfigMap",
                    v.source, v.target
                )),
            }
        }
        for t in &s.tmpfs {
            let path = t.split(':').next().unwrap_or(t).to_owned();
            scratch.insert(Scratch { path, memory: true });
        }
    }
    let workdir = service
        .and_then(|s| s.working_dir.clone())
        .or_else(|| stage.map(|s| s.workdir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/app".into());
    for p in &source.writable_paths {
        scratch.insert(Scratch { path: format!("{}/{p}", workdir.trim_end_matches('/')), memory: false });
    }
    if let Some(st) = stage {
        for v in &st.volumes {
            scratch.insert(Scratch { path: v.clone(), memory: false });
        }
    }
    if let Some(k) = known {
        for p in k.scratch {
            scratch.insert(Scratch { path: (*p).to_owned(), memory: false });
        }
        if !k.data_dir.is_empty() {
            scratch.insert(Scratch { path: k.data_dir.to_owned(), memory: false });
        }
    }
    let claimed: BTreeSet<&str> = claims.iter().map(|c| c.path.as_str()).collect();
    let scratch: Vec<Scratch> = scratch.into_iter().filter(|s| !claimed.contains(s.path.as_str())).collect();
    if let Some(k) = known
        && !k.data_dir.is_empty()
        && !claimed.contains(k.data_dir)
    {
        warnings.push(format!(
            "{name}: {} keeps its data in {} but no volume is mounted there; it is an emptyDir and is lost on restart",
            k.service, k.data_dir
        ));
    }

    // Resources.
    let profile = if known.is_some() {
        "standard"
    } else if matches!(source.language.as_str(), "java" | "kotlin") {
        "memory-heavy"
    } else {
        match kind {
            AppKind::Web => "minimal",
            AppKind::Worker => "compute-heavy",
            _ => "standard",
        }
    };
    let (mut requests, mut limits) = profile_defaults(profile);
    if let Some(s) = service {
        let deploy = s.deploy.as_ref();
        let convert = |what: &str, v: Option<&str>, f: fn(&str) -> Result<String, String>, w: &mut Vec<String>| {
            v.and_then(|v| f(v).map_err(|e| w.push(format!("{name}: {what}: {e}; using the default"))).ok())
        };
        let lim = deploy.and_then(|d| d.limits.as_ref());
        let res = deploy.and_then(|d| d.reservations.as_ref());
        let cpu_limit = lim.and_then(|l| l.cpus.as_ref().map(|t| t.0.as_str())).or(s.cpus.as_deref());
        let mem_limit = lim.and_then(|l| l.memory.as_ref().map(|t| t.0.as_str())).or(s.mem_limit.as_deref());
        if let Some(v) = convert("cpu limit", cpu_limit, units::cpus, warnings) {
            limits.cpu = v;
        }
        if let Some(v) = convert("memory limit", mem_limit, units::memory, warnings) {
            limits.memory = v;
        }
        if let Some(v) =
            convert("cpu reservation", res.and_then(|r| r.cpus.as_ref().map(|t| t.0.as_str())), units::cpus, warnings)
        {
            requests.cpu = v;
        }
        if let Some(v) = convert(
            "memory reservation",
            res.and_then(|r| r.memory.as_ref().map(|t| t.0.as_str())),
            units::memory,
            warnings,
        ) {
            requests.memory = v;
        }
    }
    if let Some(r) = config.and_then(|c| c.resources.as_ref()) {
        let mut take = |field: &str, value: &str, target: &mut String| {
            if value.is_empty() {
                return;
            }
            match quantity::parse(value) {
                Ok(_) => *target = value.to_owned(),
                Err(e) => warnings.push(format!(".dorgu.yaml: resources.{field}: {e}; using {target}")),
            }
        };
        take("requests.cpu", &r.requests.cpu, &mut requests.cpu);
        take("requests.memory", &r.requests.memory, &mut requests.memory);
        take("limits.cpu", &r.limits.cpu, &mut limits.cpu);
        take("limits.memory", &r.limits.memory, &mut limits.memory);
    }
    for (what, req, lim) in [("cpu", &mut requests.cpu, &limits.cpu), ("memory", &mut requests.memory, &limits.memory)]
    {
        if let (Ok(r), Ok(l)) = (quantity::parse(req), quantity::parse(lim))
            && r > l
        {
            warnings.push(format!(
                "{name}: the {what} request {req} is above the limit {lim}; the request is lowered to it"
            ));
            *req = lim.clone();
        }
    }

    // Replicas and autoscaling; a ReadWriteOnce volume pins the app to one pod.
    let scaling = config.and_then(|c| c.scaling.as_ref());
    let stateful = !claims.is_empty();
    let mut replicas: i32 = if known.is_some() || stateful { 1 } else { 2 };
    if let Some(r) = service.and_then(|s| s.deploy.as_ref().and_then(|d| d.replicas).or(s.scale)) {
        replicas = r.min(1000) as i32;
    }
    if let Some(min) = scaling.and_then(|s| s.min_replicas) {
        replicas = min.clamp(0, 1000);
    }
    if stateful && replicas > 1 {
        warnings.push(format!(
            "{name}: {replicas} replicas cannot share its ReadWriteOnce volume; it runs 1 replica with the Recreate strategy"
        ));
        replicas = 1;
    }
    let autoscale = (!stateful && known.is_none()).then(|| {
        let min = replicas.max(1);
        let max = scaling.and_then(|s| s.max_replicas).unwrap_or(10).max(min);
        let cpu = scaling.and_then(|s| s.target_cpu).filter(|c| (1..=100).contains(c)).unwrap_or(70);
        (min, max, cpu)
    });
    let target_memory =
        scaling.and_then(|s| s.target_memory).filter(|c| (1..=100).contains(c) && autoscale.is_some()).unwrap_or(0);
    let behavior = scaling.map(|s| s.behavior.clone()).filter(|b| !b.is_empty()).unwrap_or_else(|| "balanced".into());

    // The user: Kubernetes can only verify runAsNonRoot for numeric users.
    let compose_user = service.and_then(|s| s.user.clone());
    let user_at = if compose_user.is_some() {
        compose_at("user")
    } else {
        stage.filter(|s| s.user_line > 0).map(|s| format!("USER at {docker_file}:{}", s.user_line)).unwrap_or_default()
    };
    let user = compose_user.or_else(|| stage.map(|s| s.user.clone())).unwrap_or_default();
    let uid_part = user.split(':').next().unwrap_or("").trim().to_owned();
    let (run_as_user, image_runs_as_root) = if let Some(k) = known.filter(|_| uid_part.is_empty()) {
        notes.push(format!("runs as uid {}: the service user of the {} image", k.uid, k.service));
        (Some(k.uid), true)
    } else if matches!(uid_part.as_str(), "" | "root" | "0") {
        let why = if built && dockerfile.is_none() {
            "no Dockerfile says which user the image runs as"
        } else if built {
            "the Dockerfile's final stage runs as root"
        } else {
            "the image's user is unknown"
        };
        warnings.push(format!("{name}: {why}; the pod runs as uid 65534 (nobody), which the image must support"));
        (Some(65534), true)
    } else if let Ok(uid) = uid_part.parse::<i64>() {
        notes.push(format!("runs as uid {uid}: {user_at}"));
        (None, false)
    } else if let Some(uid) = images::named_user_uid(&uid_part) {
        notes.push(format!("runs as uid {uid}: the usual uid of the user `{uid_part}`, {user_at}"));
        (Some(uid), false)
    } else {
        warnings.push(format!(
            "{name}: USER `{uid_part}` ({user_at}) is a name Kubernetes cannot verify as non-root; the pod runs as uid 10001 (use a numeric USER to choose)"
        ));
        (Some(10001), false)
    };
    let fs_group = (!claims.is_empty()).then(|| run_as_user.or_else(|| uid_part.parse().ok()).unwrap_or(65534));

    // Command overrides from compose.
    let command = service.and_then(|s| s.entrypoint.as_ref()).map(exec_form).unwrap_or_default();
    let args = service.and_then(|s| s.command.as_ref()).map(exec_form).unwrap_or_default();

    // Backing services the code needs.
    let backing: Vec<Backing> = source
        .dependencies
        .iter()
        .map(|d| Backing {
            name: d.clone(),
            kind: match d.as_str() {
                "redis" | "memcached" => "cache",
                "kafka" | "rabbitmq" | "nats" => "queue",
                _ => "database",
            }
            .into(),
            ports: detect::service_port(d).into_iter().collect(),
            in_analysis: false,
        })
        .collect();

    let is_http = ports.iter().any(|p| !p.udp && (p.purpose == "http" || p.purpose == "https"));
    let host = host.filter(|_| {
        if !is_http {
            warnings.push(format!("{name}: no HTTP port, so no Ingress is generated for the host"));
        }
        is_http
    });
    let ingress_paths = config
        .and_then(|c| c.ingress.as_ref())
        .map(|i| {
            i.paths
                .iter()
                .filter(|p| p.path.starts_with('/'))
                .map(|p| (p.path.clone(), if p.path_type.is_empty() { "Prefix".into() } else { p.path_type.clone() }))
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| vec![("/".into(), "Prefix".into())]);

    let language = source.language.clone();
    let framework = source.framework.clone();
    let description = config.map(|c| c.app.description.clone()).filter(|d| !d.is_empty()).unwrap_or_else(|| {
        if let Some(k) = known {
            format!("{} {} running the image {image}.", capitalize(k.service), k.kind)
        } else {
            let noun = match kind {
                AppKind::Api => "API",
                AppKind::Web => "web front end",
                AppKind::Worker => "worker",
                AppKind::Cron => "scheduled job",
                AppKind::Daemon => "node daemon",
            };
            let what =
                if framework.is_empty() { noun.to_owned() } else { format!("{} {noun}", display_name(&framework)) };
            let article = if what.starts_with(['A', 'E', 'I', 'O', 'U', 'a', 'e', 'i', 'o', 'u']) { "An" } else { "A" };
            if language.is_empty() {
                format!("A containerized {what}.")
            } else {
                format!("{article} {what} written in {}.", display_name(&language))
            }
        }
    });
    let c = config.cloned().unwrap_or_default();
    let ops = c.operations.clone().unwrap_or_default();
    App {
        external: ports.iter().any(|p| p.published),
        name,
        part_of: project,
        image,
        built,
        kind,
        component,
        language,
        framework,
        description,
        ports,
        env,
        env_unset,
        env_reads: source.env_reads.clone(),
        command,
        args,
        probe,
        startup_secs,
        requests,
        limits,
        profile: profile.into(),
        replicas,
        autoscale,
        target_memory,
        behavior,
        run_as_user,
        fs_group,
        image_runs_as_root,
        scratch,
        strategy: if stateful { "Recreate" } else { "RollingUpdate" }.into(),
        claims,
        backing,
        dependents: Vec::new(),
        host,
        ingress_paths,
        metrics_path: source.metrics_path.clone(),
        start_command: source.start_command.clone(),
        tier: if c.app.tier.is_empty() { "standard".into() } else { c.app.tier.clone() },
        team: c.app.team.clone(),
        owner: c.app.owner.clone(),
        oncall: ops.on_call,
        runbook: ops.runbook,
        maintenance_window: ops.maintenance_window,
        auto_restart: ops.auto_restart,
        labels: c.labels.clone(),
        annotations: c.annotations.clone(),
        notes,
    }
}

fn compose_seconds(s: &str) -> Option<u64> {
    crate::compose::parse_seconds(s)
}

/// Returns how a language or framework is usually written.
fn display_name(s: &str) -> String {
    match s {
        "javascript" => "JavaScript".into(),
        "typescript" => "TypeScript".into(),
        "csharp" => "C#".into(),
        "fsharp" => "F#".into(),
        "php" => "PHP".into(),
        "express" => "Express".into(),
        "nextjs" => "Next.js".into(),
        "nestjs" => "NestJS".into(),
        "fastapi" => "FastAPI".into(),
        "spring-boot" => "Spring Boot".into(),
        "aspnetcore" => "ASP.NET Core".into(),
        "actix-web" => "actix-web".into(),
        "net/http" => "net/http".into(),
        "gin" | "echo" | "axum" => s.into(),
        other => capitalize(other),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Connects the applications of a compose file: `depends_on` and host names in environment
/// values become backing services (and network policy rules); backing services the code needs
/// that another application provides are served by it. `env_file_vars` names, by application,
/// the env_file each variable read from one comes from.
pub fn wire(
    apps: &mut [App],
    compose: &compose::ComposeFile,
    names: &BTreeMap<String, String>,
    env_file_vars: &BTreeMap<String, BTreeMap<String, String>>,
    warnings: &mut Vec<String>,
) {
    let by_compose: BTreeMap<&str, usize> =
        apps.iter().enumerate().filter_map(|(i, a)| names.get(&a.name).map(|orig| (orig.as_str(), i))).collect();
    let provides: Vec<(String, String, String, Vec<u16>)> = apps
        .iter()
        .map(|a| {
            let service = ports::main_port(&a.ports).or(a.ports.first()).map(|p| p.purpose.clone()).unwrap_or_default();
            (a.name.clone(), service, a.component.clone(), a.ports.iter().filter(|p| !p.udp).map(|p| p.port).collect())
        })
        .collect();
    let longest = by_compose.keys().map(|n| n.len()).max().unwrap_or(0);
    // Each edge with what made it: depends_on first, else the first variable naming the host.
    let mut edges: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (orig, &i) in &by_compose {
        let Some(service) = compose.services.get(*orig) else { continue };
        for dep in service.depends_on.keys() {
            if let Some(&j) = by_compose.get(dep.as_str()) {
                edges.entry((i, j)).or_insert_with(|| service.origin.at("depends_on"));
            }
        }
        // `postgres://db:5432/x` or `cache:6379` in a value wires the app to that service.
        for (key, value) in apps[i].env.iter().filter_map(|(k, v)| match v {
            EnvValue::Plain(s) => Some((k, s.as_str())),
            EnvValue::Secret { .. } | EnvValue::ConfigKey => None,
        }) {
            for host in hosts_in(value, longest) {
                if let Some(&j) = by_compose.get(host)
                    && j != i
                {
                    // Where the value comes from, in the order `build` gives them precedence.
                    let app = &apps[i];
                    edges.entry((i, j)).or_insert_with(|| {
                        let from = if service.environment.contains_key(key) {
                            service.origin.at("environment")
                        } else if let Some(file) = env_file_vars.get(&app.name).and_then(|v| v.get(key)) {
                            format!("the env_file {file}")
                        } else if let Some(read) = app.env_reads.get(key) {
                            format!("the default at {}", read.location())
                        } else {
                            "the image's defaults".to_owned()
                        };
                        format!("the host name in {key}, from {from}")
                    });
                }
            }
        }
    }
    for ((i, j), why) in edges {
        let (name, service, component, ports) = &provides[j];
        let kind = match component.as_str() {
            "database" | "cache" | "queue" => component.clone(),
            _ => "service".into(),
        };
        let app = &mut apps[i];
        app.backing.retain(|b| b.in_analysis || b.name != *service);
        if !app.backing.iter().any(|b| b.name == *name) {
            app.backing.push(Backing { name: name.clone(), kind, ports: ports.clone(), in_analysis: true });
            app.notes.push(format!("reaches {name}: {why}"));
        }
        let dependent = apps[i].name.clone();
        if !apps[j].dependents.contains(&dependent) {
            apps[j].dependents.push(dependent);
        }
    }
    for app in apps.iter_mut() {
        app.backing.sort();
        app.dependents.sort();
        if app.ports.is_empty() && !app.dependents.is_empty() {
            warnings.push(format!("{}: other services depend on it but it exposes no port", app.name));
        }
    }
}

/// Returns the parts of `value` that may name a host, at most `longest` bytes long: each
/// begins at the start or after one of `/@, =` and ends at the end or before one of `:/, `
/// (`db` in `postgres://u@db:5432/x`, `cache` in `cache:6379`). Looking these up among the
/// service names costs one pass per value, where searching the value for every name cost one
/// per name.
fn hosts_in(value: &str, longest: usize) -> Vec<&str> {
    let bytes = value.as_bytes();
    // The delimiters are ASCII, so every position next to one is a character boundary.
    let ends: Vec<usize> =
        (0..bytes.len()).filter(|&i| b":/, ".contains(&bytes[i])).chain(std::iter::once(bytes.len())).collect();
    let starts = std::iter::once(0).chain((0..bytes.len()).filter(|&i| b"/@, =".contains(&bytes[i])).map(|i| i + 1));
    let mut hosts = Vec::new();
    for start in starts {
        let first = ends.partition_point(|&e| e < start);
        for &end in ends[first..].iter().take_while(|&&e| e - start <= longest) {
            hosts.push(&value[start..end]);
        }
    }
    hosts
}

#[cfg(test)]
mod tests;
