//! The all-in-one stack: gateway, scheduler and an agent in one process on loopback, with the
//! embedded state store, a SQLite database, dev certificates made at first start and a
//! bootstrap admin. The services talk to each other exactly as they do when deployed apart:
//! over mTLS gRPC on loopback ports, the agent joining with a token.
//!
//! It is for a laptop. The scheduler's state lives in memory and is gone when the stack stops
//! (users, API keys and the audit log persist in SQLite).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use base64::Engine;
use clap::{Parser, ValueEnum};
use persys_kit::{
    Identity,
    config::TelemetryArgs,
    identity::{Role, UserClaims},
    pki::{Ca, LeafRequest, service_dns_names, write_private, write_public},
    server::announce_ready,
    shutdown::Shutdown,
    tls::CertsDir,
};
use persys_scheduler::kv::mem::MemKv;
use rand::RngCore;

/// Which driver the built-in agent uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// Docker when a Docker engine answers, host processes otherwise.
    Auto,
    /// Containers on the local Docker engine.
    Docker,
    /// Host processes (`image: process://` workloads).
    Process,
}

/// Persys on one machine: gateway, scheduler and an agent in one process.
#[derive(Parser, Debug, Clone)]
#[command(name = "persys-stack", version, about, long_about = None)]
pub struct Config {
    /// Where certificates, secrets and the database are kept.
    #[arg(long, env = "PERSYS_STACK_DIR", default_value = ".persys-stack")]
    pub dir: PathBuf,
    /// Public gRPC and gRPC-web address of the gateway.
    #[arg(long, env = "PERSYS_STACK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Driver of the built-in agent.
    #[arg(long, env = "PERSYS_STACK_DRIVER", value_enum, default_value_t = Driver::Auto)]
    pub driver: Driver,
    /// Docker engine address for the docker driver (default: DOCKER_HOST or the local socket).
    #[arg(long, env = "PERSYS_STACK_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Container network mode of the built-in agent.
    #[arg(long, env = "PERSYS_STACK_NETWORK_MODE", default_value = "bridge")]
    pub network_mode: String,
    /// Directory of the built dashboard (`clients/web/dist`), served by the gateway at `/` on
    /// the public address; without it the gateway serves no files.
    #[arg(long, env = "PERSYS_STACK_WEB_ROOT")]
    pub web_root: Option<PathBuf>,
    /// Logs, traces, metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

fn random_secret(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Creates the dev CA and the certificates of the stack's services, once.
fn ensure_certs(certs: &CertsDir) -> anyhow::Result<()> {
    if certs.ca().exists() {
        return Ok(());
    }
    let dir = certs.path();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = Ca::generate("Persys dev CA", Duration::from_secs(3650 * 86400))?;
    write_public(&certs.ca(), ca.cert_pem().as_bytes())?;
    write_private(&certs.ca_key(), ca.key_pem().as_bytes())?;
    for service in ["gateway", "scheduler", "stack"] {
        let issued = ca.issue(&LeafRequest {
            identity: Identity::Service(service.into()),
            dns_names: service_dns_names(service, "persys"),
            ips: vec!["127.0.0.1".parse()?],
            validity: Duration::from_secs(365 * 86400),
        })?;
        let paths = certs.paths(service);
        std::fs::create_dir_all(certs.service_dir(service))?;
        write_public(&paths.cert, issued.cert_pem.as_bytes())?;
        write_private(&paths.key, issued.key_pem.as_bytes())?;
    }
    Ok(())
}

fn ensure_secret(path: &Path, bytes: usize) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        return Ok(s.trim().to_owned());
    }
    let secret = random_secret(bytes);
    write_private(path, secret.as_bytes())?;
    Ok(secret)
}

fn docker_answers(host: Option<&str>) -> bool {
    let path = match host {
        Some(h) => h.strip_prefix("unix://").unwrap_or(h).to_owned(),
        None => std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
            .unwrap_or_else(|| "/var/run/docker.sock".into()),
    };
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Runs the stack until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let dir = config.dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let certs = CertsDir::new(dir.join("certs"));
    ensure_certs(&certs)?;
    ensure_secret(&dir.join("jwt-secret"), 48)?;
    let password = ensure_secret(&dir.join("admin-password"), 18)?;

    // Scheduler: embedded store, loopback ports.
    let scheduler_config = persys_scheduler::config::Config::loopback(&certs);
    let scheduler = persys_scheduler::start(std::sync::Arc::new(MemKv::new()), scheduler_config, shutdown.clone())
        .await
        .context("starting the scheduler")?;

    // Gateway: SQLite, forwarding to the scheduler.
    let mut gateway_config = persys_gateway::config::ServeArgs::loopback(
        &certs,
        config.listen,
        format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display()),
        dir.join("jwt-secret"),
    );
    gateway_config.admin_username = Some("admin".into());
    gateway_config.admin_password = Some(password.clone().into());
    gateway_config.upstreams = vec![format!("scheduler=https://localhost:{}", scheduler.grpc.port())];
    gateway_config.telemetry.admin_listen = config.telemetry.admin_listen.clone();
    gateway_config.web_root = config.web_root.clone();
    let gateway = tokio::spawn(persys_gateway::run(gateway_config, shutdown.clone()));

    // Agent: joins with a token made for it, like any other machine.
    let admin = UserClaims { id: "stack".into(), name: "stack".into(), role: Role::Admin };
    let token = scheduler
        .sched
        .create_token(
            &admin,
            persys_proto::scheduler::v1::CreateJoinTokenRequest {
                description: "built-in agent of persys-stack".into(),
                max_uses: 1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the agent's join token: {e}"))?
        .token;
    let driver = match config.driver {
        Driver::Auto if docker_answers(config.docker_host.as_deref()) => "docker,process",
        Driver::Auto | Driver::Process => "process",
        Driver::Docker => "docker",
    };
    let mut agent_config = persys_agent::config::Cli::joining(
        format!("https://localhost:{}", scheduler.grpc.port()),
        format!("https://localhost:{}", scheduler.bootstrap.port()),
        token,
        certs.ca(),
        // A fresh agent state per run: the scheduler's state is in memory too.
        dir.join("agent").join(random_secret(6)),
    );
    agent_config.drivers = driver.split(',').map(String::from).collect();
    // Host processes: outside the agent's state, as the user who started the stack (its admin),
    // since only the admin's workloads may run them.
    agent_config.process_dir = dir.join("processes").join(random_secret(6));
    agent_config.process_user =
        format!("{}:{}", rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    agent_config.network_mode = config.network_mode.clone();
    agent_config.admin_api_listen = "127.0.0.1:0".into();
    agent_config.docker_host = config.docker_host.clone();
    let agent = tokio::spawn(persys_agent::run(agent_config, shutdown.clone()));

    announce_ready("persys-stack", &[("scheduler", Some(scheduler.grpc))]);
    eprintln!(
        "\nPersys is running on {listen} (agent driver: {driver}).\n\n  \
         admin user:     admin\n  admin password: {password}   (kept in {pw})\n\n\
         {dashboard}\
         Log in:   persys --server http://{listen} login --username admin\n\
         Run:      persys --server http://{listen} workload run persys-test/busybox -- sleep 3600\n\
         grpcurl:  grpcurl -plaintext {listen} list\n\nCtrl-C stops everything.\n",
        listen = config.listen,
        pw = dir.join("admin-password").display(),
        dashboard =
            if config.web_root.is_some() { format!("Browse:   http://{}/\n", config.listen) } else { String::new() },
    );
    let (scheduler_result, gateway_result, agent_result) = tokio::join!(scheduler.task, gateway, agent);
    scheduler_result?.context("scheduler")?;
    gateway_result?.context("gateway")?;
    agent_result?.context("agent")?;
    Ok(())
}
