//! The Persys scheduler: it owns nodes and workloads.
//!
//! Agents join with a token and a CSR and get a certificate bound to their node; each keeps one
//! bidirectional stream open, over which it reports and receives commands. Workloads are stored
//! before anything is dispatched, placed by filter-then-score with reservations written in the
//! same guarded transaction as the assignment, and rescheduled when their node is lost. State
//! lives in etcd (or the embedded store of the all-in-one stack) behind [`kv::Kv`]; one replica
//! at a time leads (placement, liveness), every replica serves the API and agents' streams.
//!
//! It does not run containers (agents do) or authenticate users (the gateway does).

pub mod agents;
pub mod api;
pub mod batch;
pub mod config;
pub mod decide;
pub mod dns;
pub mod error;
pub mod events;
pub mod grpc;
pub mod kv;
pub mod leader;
pub mod model;
pub mod placement;
pub mod sched;
pub mod store;
pub mod testing;

use std::sync::Arc;

use persys_kit::{
    metrics::Metrics,
    pki::Ca,
    server::{ServerOptions, announce_ready, serve},
    shutdown::Shutdown,
};

use crate::{
    api::admission::Admission,
    config::Config,
    error::SchedulerError,
    kv::{Kv, etcd::EtcdKv, mem::MemKv},
    sched::{Scheduler, Settings},
    store::Store,
};

/// Runs the scheduler until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), SchedulerError> {
    if config.etcd.len() == 1 && config.etcd[0] == "memory" {
        tracing::warn!("state in memory: one replica only, lost on exit");
        run_with(Arc::new(MemKv::new()), config, shutdown).await
    } else {
        let kv = EtcdKv::connect(&config.etcd).await?;
        run_with(Arc::new(kv), config, shutdown).await
    }
}

/// Runs the scheduler on a given store until `shutdown`.
pub async fn run_with<K: Kv>(kv: Arc<K>, config: Config, shutdown: Shutdown) -> Result<(), SchedulerError> {
    let running = start(kv, config, shutdown).await?;
    running.task.await.unwrap_or(Ok(()))
}

/// A scheduler serving in the background.
pub struct Running<K> {
    /// The mTLS address.
    pub grpc: std::net::SocketAddr,
    /// The bootstrap (join) address.
    pub bootstrap: std::net::SocketAddr,
    /// The core, for tests and the all-in-one stack.
    pub sched: Arc<Scheduler<K>>,
    /// Completes when both servers have stopped.
    pub task: tokio::task::JoinHandle<Result<(), SchedulerError>>,
}

/// Binds, starts every loop and both servers, and returns once they accept connections.
pub async fn start<K: Kv>(kv: Arc<K>, config: Config, shutdown: Shutdown) -> Result<Running<K>, SchedulerError> {
    config.validate()?;
    let tls = config.tls.load()?;
    let ca_pem = std::fs::read_to_string(&config.tls.tls_ca)
        .map_err(|source| persys_kit::pki::PkiError::Io { path: config.tls.tls_ca.display().to_string(), source })?;
    let key_pem = std::fs::read_to_string(&config.ca_key)
        .map_err(|source| persys_kit::pki::PkiError::Io { path: config.ca_key.display().to_string(), source })?;
    let ca = Arc::new(Ca::load(&ca_pem, &key_pem)?);
    let settings = Settings {
        heartbeat: config.heartbeat,
        lease_ttl: config.lease_ttl,
        down_grace: config.down_grace,
        strategy: config.strategy,
        node_cert_ttl: config.node_cert_ttl,
        dns_zone: (config.dns_zone != "off").then(|| config.dns_zone.clone()),
    };
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(None);
    let store = Store::new(kv.clone(), &config.prefix);
    let sched = Scheduler::new(store, settings, ca, leader_rx);
    let replica = config.replica.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    tokio::spawn(leader::campaign(kv, sched.keys().leader(), replica, config.lease_ttl, leader_tx, shutdown.clone()));
    tokio::spawn(sched.clone().placement_loop(shutdown.clone()));
    tokio::spawn(sched.clone().liveness_loop(shutdown.clone()));
    tokio::spawn(sched.clone().dispatch_loop(shutdown.clone()));
    {
        let sched = sched.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            sched.agents.close_all();
        });
    }

    let metrics = Metrics::new();
    let admin = persys_kit::server::spawn_admin(&config.telemetry, &metrics, shutdown.clone()).await?;
    let admission = Admission::new(&config.allowed_networks).require_limits(config.require_limits);
    let (routes, health, authorize) = grpc::routes(&sched, admission, persys_kit::server::DEFAULT_MAX_MESSAGE_BYTES)?;
    let (boot_routes, boot_health) = grpc::bootstrap_routes(&sched)?;
    let (main, main_addr) = persys_kit::server::bind(config.listen).await?;
    let (boot, boot_addr) = persys_kit::server::bind(config.bootstrap_listen).await?;
    tracing::info!(grpc = %main_addr, bootstrap = %boot_addr, "scheduler ready");
    announce_ready("scheduler", &[("grpc", Some(main_addr)), ("bootstrap", Some(boot_addr)), ("admin", admin)]);
    let main_options = ServerOptions {
        tls: Some(tls.server_config(&[b"h2"])),
        authorize: Some(authorize),
        metrics: Some(metrics.clone()),
        drain_timeout: config.drain_timeout,
        ..ServerOptions::default()
    };
    let boot_options = ServerOptions {
        tls: Some(tls.server_config_with(&[b"h2"], false)),
        metrics: Some(metrics),
        drain_timeout: config.drain_timeout,
        ..ServerOptions::default()
    };
    let task = tokio::spawn(async move {
        tokio::try_join!(
            serve(main, routes, main_options, Some(health), shutdown.clone()),
            serve(boot, boot_routes, boot_options, Some(boot_health), shutdown),
        )?;
        Ok(())
    });
    Ok(Running { grpc: main_addr, bootstrap: boot_addr, sched, task })
}
