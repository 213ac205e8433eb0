//! The Persys metrics pipeline (service name `metrics`): agents stream host and container
//! metrics in batches over mTLS ([`ingest`]); each batch is committed to the database once per
//! (node, batch sequence) and only then acknowledged ([`store`]); range queries, each node's
//! newest sample and a live watch answer the dashboard and the CLIs through the gateway
//! ([`query`]); alert rules are evaluated as samples arrive ([`alerts`]); the admin port
//! carries each node's newest sample in Prometheus text ([`prometheus`]); alert transitions are
//! notified through an outbox in the database to webhooks, Slack and Alertmanager ([`notify`]).
//!
//! The database ([`db`]) is PostgreSQL for deployments (replicas share it), or SQLite for a
//! single pipeline in one process (the all-in-one stack): the same behaviour, each query
//! written for both.
//!
//! Samples are kept raw (daily partitions on PostgreSQL), in one-minute rollups written with each batch and
//! in one-hour rollups folded from those once an hour ends; each with its own retention.
//!
//! DORA ([`dora`]): deployments recorded by the reconciler's ArgoCD watcher, their commits
//! resolved from GitHub, sent once to Apache DevLake, and the four keys computed here.
//!
//! ChatOps ([`commands`]): commands and Docker actions on a node, for admins, relayed to the
//! node's agent through the scheduler, each kept in the command history.

pub mod alerts;
pub mod clock;
pub mod commands;
pub mod config;
pub mod db;
pub mod dora;
pub mod error;
pub mod ingest;
pub mod notify;
pub mod outcomes;
pub mod prometheus;
pub mod query;
pub mod samples;
pub mod store;
pub mod watch;

use std::{net::SocketAddr, sync::Arc};

use persys_kit::{
    identity::{AuthorizeLayer, Matcher, Policy},
    metrics::Metrics,
    server::{Health, ServeError, ServerOptions, announce_ready, base_routes, bind, serve, spawn_admin},
    shutdown::Shutdown,
};
use persys_proto::metrics::v1::{
    alert_service_server::AlertServiceServer, command_service_server::CommandServiceServer,
    dora_service_server::DoraServiceServer, metrics_ingest_service_server::MetricsIngestServiceServer,
    metrics_query_service_server::MetricsQueryServiceServer,
};
use tonic::service::Routes;

use crate::{config::ServeArgs, error::PipelineError, ingest::Ingest, query::Query, store::Store};

/// The service's name: its identity `spiffe://persys/metrics`, certificate directory and
/// gateway upstream key.
pub const SERVICE: &str = "metrics";

/// Agents may ingest (each for its own node, checked per batch); `callers` may query.
pub fn authorize(callers: &[String]) -> AuthorizeLayer {
    let policy = Policy::new()
        .allow("/persys.metrics.v1.MetricsIngestService/", [Matcher::AnyAgent])
        .allow("/persys.metrics.v1.MetricsQueryService/", callers.iter().map(|c| Matcher::Service(c.clone())))
        .allow("/persys.metrics.v1.AlertService/", callers.iter().map(|c| Matcher::Service(c.clone())))
        .allow("/persys.metrics.v1.DoraService/", callers.iter().map(|c| Matcher::Service(c.clone())))
        .allow("/persys.metrics.v1.CommandService/", callers.iter().map(|c| Matcher::Service(c.clone())));
    AuthorizeLayer::new(policy)
}

/// Builds the routes with the services mounted and SERVING.
pub async fn routes(
    ingest: Ingest,
    query: Query,
    alerts: alerts::Alerts,
    dora: dora::Dora,
    commands: commands::Commands,
) -> Result<(Routes, Health), ServeError> {
    let (routes, health) = base_routes(&[])?;
    health.serving::<MetricsIngestServiceServer<Ingest>>().await;
    health.serving::<MetricsQueryServiceServer<Query>>().await;
    health.serving::<AlertServiceServer<alerts::Alerts>>().await;
    health.serving::<DoraServiceServer<dora::Dora>>().await;
    health.serving::<CommandServiceServer<commands::Commands>>().await;
    let routes = routes
        .add_service(MetricsIngestServiceServer::new(ingest))
        .add_service(MetricsQueryServiceServer::new(query))
        .add_service(AlertServiceServer::new(alerts))
        .add_service(DoraServiceServer::new(dora))
        .add_service(CommandServiceServer::new(commands));
    Ok((routes, health))
}

/// A started pipeline.
pub struct Running {
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The admin address (`/metrics`, `/healthz`), unless off.
    pub admin: Option<SocketAddr>,
    /// The store, for invariants in tests.
    pub store: Arc<Store>,
    /// The DORA service, for invariants in tests.
    pub dora: dora::Dora,
    /// Ends when the server has drained after shutdown.
    pub served: tokio::task::JoinHandle<Result<(), ServeError>>,
}

/// Opens the store, binds and starts serving; returns once the port accepts calls.
pub async fn start(args: ServeArgs, shutdown: Shutdown) -> Result<Running, PipelineError> {
    args.validate()?;
    args.telemetry.admin_addr()?;
    let tls = args.tls.load()?;
    let store = Arc::new(
        Store::connect(args.database_url.expose(), args.database_max_connections, &args.database_schema).await?,
    );
    tracing::info!(backend = store.db().backend(), "metrics database open");
    let metrics = Metrics::new();
    let admin = spawn_admin(&args.telemetry, &metrics, shutdown.clone()).await?;
    let (live, _) = tokio::sync::broadcast::channel(args.watch_buffer);
    let max_age_ms = args.raw_retention.as_millis() as i64;
    let latest = prometheus::LatestHosts::default();
    for (_, payload) in store.latest(&[], "", i64::MAX).await? {
        if let Ok(sample) = <persys_proto::metrics::v1::HostMetrics as prost::Message>::decode(payload.as_slice()) {
            latest.update(&sample);
        }
    }
    metrics.with_registry(|r| r.register_collector(Box::new(latest.clone())));
    let rollup_retention = (args.minute_retention.as_millis() as i64, args.hour_retention.as_millis() as i64);
    spawn_expiry(store.clone(), max_age_ms, rollup_retention, shutdown.clone());
    spawn_hourly_rollups(store.clone(), shutdown.clone());
    let notifier = notify::Notifier::new(store.clone(), args.notify_options())
        .map_err(|e| persys_kit::config::ConfigError(format!("notification client: {e}")))?;
    notifier.register_metrics(&metrics);
    let alerts = alerts::Alerts::load(store.clone(), args.watch_buffer, notifier.clone()).await?;
    notifier.spawn(shutdown.clone());
    let ingest = Ingest::new(store.clone(), live.clone(), latest, max_age_ms, alerts.clone());
    let owners = query::Owners::default();
    let query = Query::new(store.clone(), live, owners.clone());
    let dora = dora::Dora::new(&store, args.dora_options().map_err(persys_kit::config::ConfigError)?)
        .map_err(persys_kit::config::ConfigError)?;
    dora.register_metrics(&metrics);
    dora.spawn(shutdown.clone());
    let scheduler = match &args.scheduler {
        Some(url) => Some(
            persys_kit::client::mtls_channel_to(
                url,
                &tls,
                persys_kit::Identity::Service("scheduler".into()),
                &persys_kit::client::ClientOptions::default(),
            )
            .map_err(|e| persys_kit::config::ConfigError(format!("--scheduler {url}: {e}")))?,
        ),
        None => None,
    };
    if let Some(channel) = &scheduler {
        owners.following();
        tokio::spawn(dora::rollouts::run(
            dora.clone(),
            alerts.clone(),
            owners,
            channel.clone(),
            args.rollouts_cluster.clone(),
            shutdown.clone(),
        ));
    }
    let commands = commands::Commands::new(store.clone(), scheduler, args.host_commands.clone());
    let (routes, health) = routes(ingest, query, alerts, dora.clone(), commands).await?;
    let (listener, addr) = bind(args.listen).await?;
    announce_ready("metrics-pipeline", &[("grpc", Some(addr)), ("admin", admin)]);
    let options = ServerOptions {
        tls: Some(tls.server_config(&[b"h2"])),
        authorize: Some(authorize(&args.allowed_callers)),
        metrics: Some(metrics),
        drain_timeout: args.drain_timeout,
        ..ServerOptions::default()
    };
    let served = tokio::spawn(serve(listener, routes, options, Some(health), shutdown));
    Ok(Running { addr, admin, store, dora, served })
}

/// Drops expired partitions and rollups at start and then hourly, until `shutdown`.
fn spawn_expiry(store: Arc<Store>, retention_ms: i64, (minute_ms, hour_ms): (i64, i64), shutdown: Shutdown) {
    tokio::spawn(async move {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = every.tick() => {
                    let now = clock::now_ms();
                    match store.expire(now, retention_ms).await {
                        Ok(days) if !days.is_empty() => tracing::info!(?days, "dropped expired sample partitions"),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "could not drop expired sample partitions"),
                    }
                    if let Err(error) = store.expire_rollups(now, minute_ms, hour_ms).await {
                        tracing::warn!(%error, "could not delete expired rollups");
                    }
                }
            }
        }
    });
}

/// Folds ended hours into the one-hour rollups at start and then every minute, until
/// `shutdown` (queries read hours not folded yet from the one-minute rollups meanwhile).
fn spawn_hourly_rollups(store: Arc<Store>, shutdown: Shutdown) {
    tokio::spawn(async move {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = every.tick() => {
                    loop {
                        match store.roll_hours(clock::now_ms(), 24).await {
                            Ok(24) => continue,
                            Ok(_) => break,
                            Err(error) => {
                                tracing::warn!(%error, "could not fold hourly rollups");
                                break;
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Runs the pipeline until `shutdown`, then drains.
pub async fn run(args: ServeArgs, shutdown: Shutdown) -> Result<(), PipelineError> {
    let running = start(args, shutdown).await?;
    running.served.await??;
    Ok(())
}
