//! The Persys node agent.
//!
//! One per machine. It joins the cluster with a token (kubelet style), keeps its key and
//! certificate in its state directory and rotates them before expiry, then holds one outgoing
//! mTLS stream to the scheduler (`AgentService.Connect`): a hello with the full inventory,
//! heartbeats, a status event at once for every container change the Docker event stream
//! announces, and the commands the scheduler sends (run, stop, remove, restart, logs, exec,
//! cancel). It needs no inbound port. Containers keep running while the scheduler is away;
//! events are buffered (bounded) and the inventory is resent on reconnect.
//!
//! With `--metrics-pipeline` it also samples the host (`/proc`, `statvfs`) every interval and
//! ships the samples on a second stream, to the metrics pipeline (`MetricsIngestService.Ingest`),
//! keeping unanswered batches (bounded) across reconnects.
//!
//! It does not decide anything: placement, restarts and rescheduling belong to the scheduler
//! (Docker's own restart policy stays `no`). Host commands (ChatOps) run only as the node's own
//! policy allows: none unless `--host-commands` lists them (see [`host_command`]); container
//! actions on any container but a Persys instance's (which can only be read).

pub mod admin;
pub mod bootstrap;
pub mod commands;
pub mod config;
pub mod driver;
pub mod error;
pub mod host;
pub mod host_command;
pub mod hostmetrics;
pub mod outbox;
pub mod session;
pub mod shipper;
pub mod state;

use std::{sync::Arc, time::Duration};

use persys_kit::{
    Identity,
    client::{ClientOptions, mtls_channel_to},
    shutdown::Shutdown,
    tls::Tls,
};
use persys_proto::common::v1::ResourceQuantities;

use crate::{
    commands::Drivers,
    config::Cli,
    driver::{container::Defaults, docker::DockerDriver, process::ProcessDriver},
    error::AgentError,
    host::Host,
    host_command::HostPolicy,
    outbox::Outbox,
    session::{Session, SessionConfig},
    shipper::ShipperConfig,
    state::StateDir,
};

/// Returns the identity the scheduler's certificate must name, on the bootstrap and mTLS ports.
pub fn scheduler_identity() -> Identity {
    Identity::Service("scheduler".into())
}

/// Returns the identity the metrics pipeline's certificate must name: `spiffe://persys/metrics`,
/// the name `persys certs init` issues it under and `persys_metrics_pipeline::SERVICE`.
pub fn metrics_pipeline_identity() -> Identity {
    Identity::Service("metrics".into())
}

/// Joins if needed and returns the node id.
async fn node_id(cli: &Cli, state: &StateDir, host: &Host) -> Result<String, AgentError> {
    if let Some(id) = state.usable_identity()? {
        return Ok(id);
    }
    if let Some(id) = state.node_id()? {
        tracing::warn!(node_id = %id, "the node certificate has expired; joining again");
    }
    let missing = |what: &str| AgentError::Join(format!("the node has not joined yet and {what} is not set"));
    let token = cli.join_token()?.ok_or_else(|| missing("--join-token / --join-token-file"))?;
    let bootstrap = cli.bootstrap_url()?.ok_or_else(|| missing("--bootstrap"))?;
    let ca_file = cli.ca_file.as_ref().ok_or_else(|| missing("--ca-file"))?;
    let ca_pem = std::fs::read(ca_file).map_err(|source| AgentError::StateDir { path: ca_file.clone(), source })?;
    let params = bootstrap::JoinParams {
        bootstrap_url: &bootstrap,
        ca_pem: &ca_pem,
        token: &token,
        labels: cli.label_map()?.into_iter().collect(),
        addresses: cli.addresses.clone(),
    };
    bootstrap::join(params, host, state).await
}

/// Runs the agent until `shutdown`.
pub async fn run(cli: Cli, shutdown: Shutdown) -> Result<(), AgentError> {
    let enabled = cli.driver_set()?;
    let process_dir = if enabled.process { Some(cli.process_dir()?) } else { None };
    let labels = cli.label_map()?;
    let scheduler = cli.scheduler_url()?;
    let metrics_pipeline = cli.metrics_pipeline_url()?;
    let state = StateDir::open(&cli.state_dir)?;
    let reserved = ResourceQuantities {
        cpu_millis: cli.reserved_cpu_millis,
        memory_bytes: cli.reserved_memory_bytes,
        disk_bytes: 0,
    };
    let host = Arc::new(Host::detect(cli.node_name.as_deref(), &reserved));
    let node_id = node_id(&cli, &state, &host).await?;
    let tls = Tls::load(state.tls_paths())?;
    let outbox = Arc::new(Outbox::new(cli.event_buffer));

    let host_policy = HostPolicy::new(&cli.host_commands, cli.host_shell, &cli.host_command_user)
        .map_err(persys_kit::config::ConfigError)?;
    if host_policy.enabled() {
        tracing::info!(allowed = ?cli.host_commands, shell = cli.host_shell, "host commands enabled");
    }
    let mut drivers = Drivers { host: host_policy, ..Drivers::default() };
    if enabled.docker {
        let defaults = Defaults {
            node_id: node_id.clone(),
            network_mode: cli.network_mode.clone(),
            volume_roots: cli.volume_roots.clone(),
            allowed_networks: cli
                .allowed_networks
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty() && n != "host" && !n.starts_with("container:"))
                .collect(),
            pull_timeout: cli.image_pull_timeout,
            pull_attempts: cli.image_pull_attempts.max(1),
        };
        let docker =
            DockerDriver::connect(&cli.docker_address(), defaults, outbox.clone()).await.map_err(AgentError::Driver)?;
        tokio::spawn(docker.clone().watch(shutdown.clone()));
        drivers.docker = Some(docker);
    }
    if let Some(dir) = process_dir {
        let driver = ProcessDriver::new(dir, node_id.clone(), outbox.clone()).run_as(&cli.process_user);
        drivers.process = Some(Arc::new(driver));
    }
    let drivers = Arc::new(drivers);

    // The kit's connector backoff is kept short: the session's own backoff paces reconnects.
    let options = ClientOptions { max_backoff: Duration::from_secs(1), ..ClientOptions::default() };
    // Only the scheduler may answer: another certificate from the CA (another node's, say)
    // cannot pose as it and hand this node commands.
    let channel = mtls_channel_to(&scheduler, &tls, scheduler_identity(), &options)?;
    tokio::spawn(bootstrap::keep_renewed(channel.clone(), tls.clone(), state.clone(), shutdown.clone()));

    let config = SessionConfig {
        node_id: node_id.clone(),
        labels: labels.into_iter().collect(),
        addresses: cli.addresses.clone(),
        heartbeat_interval: cli.heartbeat_interval,
        max_backoff: cli.max_backoff,
    };
    let shipper = match &metrics_pipeline {
        Some(address) => {
            // Only the pipeline may take the node's metrics, as only the scheduler its commands.
            let channel = mtls_channel_to(address, &tls, metrics_pipeline_identity(), &options)?;
            let config = ShipperConfig {
                node_id: node_id.clone(),
                interval: cli.metrics_interval,
                buffer: cli.metrics_buffer,
                max_backoff: cli.max_backoff,
                answer_timeout: Duration::from_secs(60),
            };
            tracing::info!(metrics_pipeline = %address, interval = ?cli.metrics_interval, "shipping host metrics");
            Some(shipper::spawn(config, channel, state.clone(), drivers.docker.clone(), shutdown.clone()))
        }
        None => None,
    };

    let session = Session::new(config, channel, host, drivers.clone(), outbox);
    let metrics =
        persys_kit::server::spawn_admin(&cli.telemetry, &persys_kit::metrics::Metrics::new(), shutdown.clone()).await?;
    let admin = match cli.admin_listen()? {
        Some(addr) => Some(
            admin::spawn(addr, admin::Admin::new(&node_id, &scheduler, &state, &session, &drivers), shutdown.clone())
                .await?,
        ),
        None => None,
    };
    persys_kit::server::announce_ready("agent", &[("admin_api", admin), ("admin", metrics)]);
    tracing::info!(%node_id, scheduler = %cli.scheduler, "agent started");
    session.run(shutdown).await;
    if let Some(shipper) = shipper {
        let _ = shipper.await;
    }
    if let Some(p) = &drivers.process {
        p.stop_all(Duration::from_secs(5)).await;
    }
    tracing::info!("agent stopped; containers keep running");
    Ok(())
}
