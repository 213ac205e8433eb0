//! The all-in-one stack: gateway, scheduler, an agent, the analyzer and the metrics pipeline in one
//! process on loopback, with the embedded state store, SQLite databases, dev certificates made at
//! first start and a bootstrap admin. The services talk to each other exactly as they do when deployed apart:
//! over mTLS gRPC on loopback ports, the agent joining with a token.
//!
//! It is for a laptop. Everything it keeps lives under its directory: the scheduler's state in
//! a durable embedded store (`scheduler.redb`, fsync on every commit), users, API keys and the
//! audit log in SQLite (`gateway.db`), metrics, alerts, DORA deployments and the command history
//! in SQLite too (`metrics.db`, unless `--metrics-database-url` names a PostgreSQL database), and
//! the built-in agent's identity. Stopped (Ctrl-C, or killed) and
//! started again, it comes back with every workload; the agent is the same node and adopts the
//! containers that still run instead of starting them again.

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

/// Persys on one machine: gateway, scheduler, an agent and the analyzer in one process.
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
    /// A Kubernetes cluster's kubeconfig: also run the reconciler on it (ApplicationPersonas,
    /// the ClusterPersona, webhook off), with PersonaService behind the gateway (`dorgu watch`,
    /// the dashboard's Personas page). Without it the stack has no reconciler.
    #[arg(long, env = "PERSYS_STACK_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// With `--kubeconfig`: reconcile only this namespace (and hold the leader Lease there);
    /// every namespace (Lease in `default`) without it.
    #[arg(long, env = "PERSYS_STACK_KUBE_NAMESPACE", requires = "kubeconfig")]
    pub kube_namespace: Option<String>,
    /// With `--kubeconfig`: also run Kapsa's controllers (Projects, Environments, DomainPools:
    /// a namespace per project, git polling, kpack builds, environments) and serve
    /// ProjectService behind the gateway (`persys project|env|build`, the dashboard's Projects
    /// page). Cluster-wide only: not with `--kube-namespace`.
    #[arg(long, env = "PERSYS_STACK_KAPSA_PROJECTS", requires = "kubeconfig", conflicts_with = "kube_namespace")]
    pub kapsa_projects: bool,
    /// The metrics pipeline always runs, with the built-in agent shipping host and container
    /// metrics every 5 s, and metrics queries, live watches, alerts and DORA behind the gateway
    /// (`persys metrics`, `persys alerts`, the dashboard's charts and Alerts page). Its data is
    /// in SQLite (`metrics.db` in `--dir`) unless this names a PostgreSQL database
    /// (`postgres://…`; tables in its `metrics` schema).
    #[arg(long, env = "PERSYS_STACK_METRICS_DATABASE_URL", hide_env_values = true)]
    pub metrics_database_url: Option<persys_kit::config::Secret>,
    /// Executables admins may run on this machine as host commands (`persys exec-host`, the
    /// dashboard's node page), comma-separated; none by default. They run as the user who
    /// started the stack.
    #[arg(long = "host-commands", env = "PERSYS_STACK_HOST_COMMANDS", value_delimiter = ',')]
    pub host_commands: Vec<String>,
    /// Logs, traces, metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

fn random_secret(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Creates the dev CA once, and each service's certificate that is missing (a stack directory
/// made before the reconciler joined gets its certificate on the next start).
fn ensure_certs(certs: &CertsDir) -> anyhow::Result<()> {
    let dir = certs.path();
    let ca = if certs.ca().exists() {
        let cert = std::fs::read_to_string(certs.ca()).with_context(|| format!("reading {}", certs.ca().display()))?;
        let key =
            std::fs::read_to_string(certs.ca_key()).with_context(|| format!("reading {}", certs.ca_key().display()))?;
        Ca::load(&cert, &key).context("loading the stack's dev CA")?
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = Ca::generate("Persys dev CA", Duration::from_secs(3650 * 86400))?;
        write_public(&certs.ca(), ca.cert_pem().as_bytes())?;
        write_private(&certs.ca_key(), ca.key_pem().as_bytes())?;
        ca
    };
    for service in ["gateway", "scheduler", "stack", "analyzer", "reconciler", "metrics"] {
        if certs.paths(service).cert.exists() {
            continue;
        }
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

/// Whether the built-in agent joined in an earlier run and its certificate is still valid (it
/// then needs no join token).
fn has_joined(agent_state: &Path) -> bool {
    persys_agent::state::StateDir::open(agent_state).is_ok_and(|s| matches!(s.usable_identity(), Ok(Some(_))))
}

/// The metrics pipeline's SQLite database under the stack's directory.
pub fn metrics_sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("metrics.db").display())
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
    let state_file = dir.join("scheduler.redb");
    let kv = MemKv::open(&state_file).with_context(|| {
        format!(
            "opening the scheduler's state {} (is another persys-stack running on this directory?)",
            state_file.display()
        )
    })?;
    let scheduler = persys_scheduler::start(std::sync::Arc::new(kv), scheduler_config, shutdown.clone())
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

    // Analyzer: stateless, always there (`dorgu --server`, the gateway's AnalyzerService).
    let analyzer = {
        let tls = certs.paths("analyzer");
        let mut argv: Vec<String> =
            ["analyzer", "--listen", "127.0.0.1:0", "--admin-listen", "off"].into_iter().map(String::from).collect();
        for (flag, path) in [("--tls-ca", &tls.ca), ("--tls-cert", &tls.cert), ("--tls-key", &tls.key)] {
            argv.extend([flag.into(), path.display().to_string()]);
        }
        let cli = persys_analyzer::config::Cli::try_parse_from(&argv).context("the analyzer's settings")?;
        let running = persys_analyzer::start(cli.serve, shutdown.clone()).await.context("starting the analyzer")?;
        gateway_config.upstreams.push(format!("analyzer=https://localhost:{}", running.addr.port()));
        running
    };

    // Reconciler, with a cluster: PersonaService on a loopback port, behind the gateway.
    let reconciler = match &config.kubeconfig {
        Some(kubeconfig) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let tls = certs.paths("reconciler");
            let mut argv: Vec<String> = vec!["reconciler".into(), "run".into(), "--kubeconfig".into()];
            argv.push(kubeconfig.display().to_string());
            argv.extend(["--listen".into(), format!("127.0.0.1:{port}"), "--admin-listen".into(), "off".into()]);
            for (flag, path) in [("--tls-ca", &tls.ca), ("--tls-cert", &tls.cert), ("--tls-key", &tls.key)] {
                argv.extend([flag.into(), path.display().to_string()]);
            }
            let ns = config.kube_namespace.clone();
            argv.extend(["--lease-namespace".into(), ns.clone().unwrap_or_else(|| "default".into())]);
            if let Some(ns) = ns {
                argv.extend(["--namespace".into(), ns]);
            }
            if config.kapsa_projects {
                argv.extend(["--projects".into(), "true".into()]);
            }
            let cli = persys_reconciler::config::Cli::try_parse_from(&argv).context("the reconciler's settings")?;
            let persys_reconciler::config::Command::Run(args) = cli.command else { unreachable!("argv names `run`") };
            gateway_config.upstreams.push(format!("reconciler=https://localhost:{port}"));
            Some(tokio::spawn(persys_reconciler::run(*args, shutdown.clone())))
        }
        None => None,
    };
    // Metrics pipeline, on SQLite under the directory or on PostgreSQL: behind the gateway, fed
    // by the agent.
    let metrics_url = match &config.metrics_database_url {
        Some(url) => url.expose().to_owned(),
        None => metrics_sqlite_url(&dir),
    };
    let metrics = {
        let mut args = persys_metrics_pipeline::config::ServeArgs::loopback(&certs, metrics_url);
        // The stack's workloads are DORA rollouts, and host commands are relayed through it.
        args.scheduler = Some(format!("https://localhost:{}", scheduler.grpc.port()));
        let running = persys_metrics_pipeline::start(args, shutdown.clone()).await.context(
            if config.metrics_database_url.is_some() {
                "starting the metrics pipeline (--metrics-database-url)"
            } else {
                "starting the metrics pipeline (metrics.db)"
            },
        )?;
        gateway_config.upstreams.push(format!("metrics=https://localhost:{}", running.addr.port()));
        running
    };
    gateway_config.telemetry.admin_listen = config.telemetry.admin_listen.clone();
    gateway_config.web_root = config.web_root.clone();
    let gateway = tokio::spawn(persys_gateway::run(gateway_config, shutdown.clone()));

    // Agent: joins with a token made for it, like any other machine; one that joined in an
    // earlier run keeps its identity, and no token is made for it.
    let agent_state = dir.join("agent-state");
    let token = if has_joined(&agent_state) {
        None
    } else {
        let admin = UserClaims { id: "stack".into(), name: "stack".into(), role: Role::Admin };
        let token = scheduler
            .sched
            .create_token(
                &admin,
                persys_proto::scheduler::v1::CreateJoinTokenRequest {
                    description: "built-in agent of persys-stack".into(),
                    max_uses: 1,
                    ttl: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating the agent's join token: {e}"))?
            .token;
        Some(token)
    };
    let driver = match config.driver {
        Driver::Auto if docker_answers(config.docker_host.as_deref()) => "docker,process",
        Driver::Auto | Driver::Process => "process",
        Driver::Docker => "docker",
    };
    let mut agent_config = persys_agent::config::Cli::joining(
        format!("https://localhost:{}", scheduler.grpc.port()),
        format!("https://localhost:{}", scheduler.bootstrap.port()),
        token.clone().unwrap_or_default(),
        certs.ca(),
        // The same node across runs, as the scheduler's state is kept too.
        agent_state,
    );
    if token.is_none() {
        agent_config.join_token = None;
    }
    agent_config.drivers = driver.split(',').map(String::from).collect();
    // Host processes: outside the agent's state, as the user who started the stack (its admin),
    // since only the admin's workloads may run them.
    agent_config.process_dir = dir.join("processes");
    agent_config.process_user =
        format!("{}:{}", rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    agent_config.network_mode = config.network_mode.clone();
    agent_config.admin_api_listen = "127.0.0.1:0".into();
    agent_config.docker_host = config.docker_host.clone();
    agent_config.metrics_pipeline = Some(format!("https://localhost:{}", metrics.addr.port()));
    agent_config.host_commands = config.host_commands.clone();
    agent_config.host_command_user = agent_config.process_user.clone();
    let agent = tokio::spawn(persys_agent::run(agent_config, shutdown.clone()));

    announce_ready("persys-stack", &[("scheduler", Some(scheduler.grpc))]);
    eprintln!(
        "\nPersys is running on {listen} (agent driver: {driver}{kube}{metrics}).\n\n  \
         admin user:     admin\n  admin password: {password}   (kept in {pw})\n\n\
         {dashboard}\
         Log in:   persys --server http://{listen} login --username admin\n\
         Run:      persys --server http://{listen} workload run persys-test/busybox -- sleep 3600\n\
         Analyze:  dorgu generate ./my-app --server http://{listen}\n\
         grpcurl:  grpcurl -plaintext {listen} list\n\nCtrl-C stops everything.\n",
        listen = config.listen,
        kube = match &config.kubeconfig {
            Some(k) => format!("; reconciler on the cluster of {}", k.display()),
            None => String::new(),
        },
        metrics = match config.metrics_database_url {
            Some(_) => "; metrics pipeline on PostgreSQL".to_owned(),
            None => format!("; metrics pipeline on SQLite in {}", dir.join("metrics.db").display()),
        },
        pw = dir.join("admin-password").display(),
        dashboard =
            if config.web_root.is_some() { format!("Browse:   http://{}/\n", config.listen) } else { String::new() },
    );
    let reconciler = async {
        match reconciler {
            Some(task) => task.await,
            None => Ok(Ok(())),
        }
    };
    let metrics = async { metrics.served.await.map(|r| r.map_err(anyhow::Error::from)) };
    let (scheduler_result, gateway_result, agent_result, analyzer_result, reconciler_result, metrics_result) =
        tokio::join!(scheduler.task, gateway, agent, analyzer.served, reconciler, metrics);
    analyzer_result?.context("analyzer")?;
    reconciler_result?.context("reconciler")?;
    metrics_result?.context("metrics pipeline")?;
    scheduler_result?.context("scheduler")?;
    gateway_result?.context("gateway")?;
    agent_result?.context("agent")?;
    Ok(())
}
