//! `persys workload run`: build a spec from flags, create it idempotently, and optionally
//! follow it until it runs or ends.

use std::time::Duration;

use clap::{Args, ValueEnum};
use persys_proto::{
    common::v1::{LabelSelector, ResourceQuantities},
    scheduler::v1::{
        CreateWorkloadRequest, EnvVar, ImagePullPolicy, PortMapping, ResourceRequirements, RestartPolicy, Workload,
        WorkloadSpec,
    },
};

use crate::{
    client::{Global, Session},
    error::{Exit, Failure},
    output::{self, Format},
    quantity::{parse_bytes, parse_cpu},
    view, wait,
};

/// When exited instances restart.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Restart {
    /// Never; the workload ends Succeeded or Failed.
    Never,
    /// After a non-zero exit.
    OnFailure,
    /// After every exit (services).
    Always,
}

/// When the node pulls the image.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Pull {
    /// Always pull (the default for `:latest` and untagged images).
    Always,
    /// Pull only when the node lacks the image (the default for other tags and digests).
    IfNotPresent,
    /// Never pull: the image must already be on the node.
    Never,
}

/// Arguments of `persys workload run`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  persys workload run nginx:1.27 --name web -p 8080:80 --cpu 250m --memory 128Mi
  persys workload run python:3.12 --restart never --wait -- python -c 'print(42)'
  persys workload run redis:7 -e REDIS_ARGS=--appendonly --secret-env REDIS_PASSWORD=s3cret -d")]
pub struct RunArgs {
    /// Container image, e.g. nginx:1.27.
    image: String,
    /// Command and arguments replacing the image's entrypoint (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
    /// Name, 1-63 characters of [a-z0-9-] (default: from the image).
    #[arg(long)]
    name: Option<String>,
    /// Environment variable KEY=VAL (repeatable).
    #[arg(short = 'e', long = "env", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Secret environment variable KEY=VAL: delivered to the container, never shown back.
    #[arg(long = "secret-env", value_parser = key_value)]
    secret_env: Vec<(String, String)>,
    /// Publish a port HOST:CONTAINER[/udp], or CONTAINER alone to expose without publishing.
    #[arg(short = 'p', long = "port", value_parser = parse_port)]
    ports: Vec<PortMapping>,
    /// CPU to reserve: cores (1, 0.5) or millicores (500m).
    #[arg(long, value_parser = parse_cpu, value_name = "CPU")]
    cpu: Option<i64>,
    /// Memory to reserve: 256Mi, 1Gi, 512M.
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    memory: Option<i64>,
    /// CPU limit (default: none).
    #[arg(long, value_parser = parse_cpu, value_name = "CPU")]
    cpu_limit: Option<i64>,
    /// Memory limit (default: none).
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    memory_limit: Option<i64>,
    /// Number of identical instances (1-100).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
    replicas: i32,
    /// When exited instances restart.
    #[arg(long, value_enum, default_value_t = Restart::Always)]
    restart: Restart,
    /// Most restarts per instance (0: unlimited).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    max_restarts: i32,
    /// When the node pulls the image (default: always for `:latest`, if not present otherwise).
    #[arg(long, value_enum)]
    pull: Option<Pull>,
    /// Workload label k=v (repeatable).
    #[arg(short = 'l', long = "label", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// Only place on nodes with label k=v (repeatable).
    #[arg(long = "node-selector", value_parser = key_value)]
    node_selector: Vec<(String, String)>,
    /// Idempotency key: retrying with the same key returns the first workload instead of
    /// creating another (default: a fresh UUID).
    #[arg(long)]
    request_id: Option<String>,
    /// Follow the workload until it is Running, Succeeded or Failed.
    #[arg(long, conflicts_with = "detach")]
    wait: bool,
    /// Give up waiting after this long (with --wait), e.g. 5m.
    #[arg(long, requires = "wait", value_parser = persys_kit::config::parse_duration)]
    wait_timeout: Option<Duration>,
    /// Print only the new workload's id and return.
    #[arg(short, long)]
    detach: bool,
}

/// Parses `KEY=VALUE`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Parses `HOST:CONTAINER[/udp|/tcp]` or `CONTAINER[/proto]`.
pub fn parse_port(s: &str) -> Result<PortMapping, String> {
    use persys_proto::common::v1::Protocol;
    let (ports, protocol) = match s.rsplit_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some((_, other)) => return Err(format!("`{s}`: unknown protocol `{other}`; use tcp or udp")),
        None => (s, Protocol::Tcp),
    };
    let number = |p: &str| -> Result<u32, String> {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .map(u32::from)
            .ok_or_else(|| format!("`{s}`: `{p}` is not a port (1-65535); use HOST:CONTAINER, e.g. 8080:80"))
    };
    let (host, container) = match ports.split_once(':') {
        Some((h, c)) => (number(h)?, number(c)?),
        None => (0, number(ports)?),
    };
    Ok(PortMapping { container_port: container, host_port: host, protocol: protocol as i32, ..Default::default() })
}

/// Returns a selector matching every label, or `None` for no labels.
pub fn selector(labels: Vec<(String, String)>) -> Option<LabelSelector> {
    (!labels.is_empty()).then(|| LabelSelector { match_labels: labels.into_iter().collect(), ..Default::default() })
}

/// Returns a workload name derived from an image: `ghcr.io/acme/api:1.2` becomes `api`.
pub fn name_from_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let base = last.split(['@', ':']).next().unwrap_or(last);
    let mut name: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    name.truncate(63);
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() { "workload".into() } else { name }
}

fn spec(args: &RunArgs) -> WorkloadSpec {
    let quantities = |cpu: Option<i64>, memory: Option<i64>| ResourceQuantities {
        cpu_millis: cpu.unwrap_or(0),
        memory_bytes: memory.unwrap_or(0),
        disk_bytes: 0,
    };
    let env = args.env.iter().map(|kv| (kv, false)).chain(args.secret_env.iter().map(|kv| (kv, true)));
    WorkloadSpec {
        image: args.image.clone(),
        command: args.command.clone(),
        env: env
            .map(|((name, value), sensitive)| EnvVar { name: name.clone(), value: value.clone(), sensitive })
            .collect(),
        ports: args.ports.clone(),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(args.cpu, args.memory)),
            limits: Some(quantities(args.cpu_limit, args.memory_limit)),
        }),
        labels: args.labels.iter().cloned().collect(),
        restart_policy: match args.restart {
            Restart::Never => RestartPolicy::Never,
            Restart::OnFailure => RestartPolicy::OnFailure,
            Restart::Always => RestartPolicy::Always,
        } as i32,
        max_restarts: args.max_restarts,
        image_pull_policy: match args.pull {
            None => ImagePullPolicy::Unspecified,
            Some(Pull::Always) => ImagePullPolicy::Always,
            Some(Pull::IfNotPresent) => ImagePullPolicy::IfNotPresent,
            Some(Pull::Never) => ImagePullPolicy::Never,
        } as i32,
        node_selector: args.node_selector.iter().cloned().collect(),
        replicas: args.replicas,
        ..Default::default()
    }
}

/// Creates the workload and reports it as asked.
pub async fn run(global: &Global, s: &Session, args: RunArgs) -> anyhow::Result<()> {
    let request = &CreateWorkloadRequest {
        name: args.name.clone().unwrap_or_else(|| name_from_image(&args.image)),
        spec: Some(spec(&args)),
        request_id: args.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    };
    let created = s.call(|c| async move { c.scheduler().create_workload(request.clone()).await }).await?;
    let workload = created.workload.unwrap_or_default();
    if args.detach {
        println!("{}", workload.id);
        return Ok(());
    }
    if !args.wait {
        return report(global.output, &workload);
    }
    eprintln!("created workload {} ({})", workload.id, workload.name);
    let done = wait::until_settled(s, &workload, args.wait_timeout).await?;
    report(global.output, &done)?;
    if done.status.as_ref().is_some_and(|st| st.phase == persys_proto::scheduler::v1::WorkloadPhase::Failed as i32) {
        let st = done.status.unwrap_or_default();
        return Err(Failure::new(
            Exit::WorkloadFailed,
            format!("workload {} failed: {} {}", done.id, st.reason, st.message),
        )
        .into());
    }
    Ok(())
}

fn report(format: Format, w: &Workload) -> anyhow::Result<()> {
    output::emit(format, &view::Workload::from(w), || {
        let status = w.status.clone().unwrap_or_default();
        let reason =
            if status.reason.is_empty() { String::new() } else { format!(" ({}: {})", status.reason, status.message) };
        format!(
            "{}\nworkload {} is {}{reason}\n  follow it: persys workload get {0}   |   persys watch workloads --workload {0}\n",
            w.id,
            w.name,
            view::phase(status.phase)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_host_container_and_protocol() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!((p.host_port, p.container_port), (8080, 80));
        let p = parse_port("53:53/udp").unwrap();
        assert_eq!(p.protocol, persys_proto::common::v1::Protocol::Udp as i32);
        assert_eq!(parse_port("9000").unwrap().host_port, 0);
        for bad in ["", "0:80", "80:", "x:80", "70000:80", "80/sctp"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_values_need_a_key() {
        assert_eq!(key_value("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(key_value("A=").unwrap(), ("A".into(), String::new()));
        assert!(key_value("=x").is_err());
        assert!(key_value("novalue").is_err());
    }

    #[test]
    fn names_come_from_the_image() {
        assert_eq!(name_from_image("nginx:1.27"), "nginx");
        assert_eq!(name_from_image("ghcr.io/acme/my_api@sha256:abc"), "my-api");
        assert_eq!(name_from_image("localhost:5000/Web"), "web");
        assert_eq!(name_from_image("___"), "workload");
    }
}
