//! Serving the analyzer: binding, mTLS, the admin port, draining.

use persys_kit::{
    metrics::Metrics,
    server::{ServerOptions, announce_ready, bind, serve, spawn_admin},
    shutdown::Shutdown,
};

use crate::{api, config::ServeArgs, error::AnalyzerError, grpc, llm};

/// A started analyzer: where it listens and the task serving it.
pub struct Running {
    /// The gRPC (mTLS) address it listens on.
    pub addr: std::net::SocketAddr,
    /// Ends when the analyzer has drained after `shutdown`.
    pub served: tokio::task::JoinHandle<Result<(), AnalyzerError>>,
}

/// Runs the analyzer until `shutdown`, then drains.
pub async fn run(args: ServeArgs, shutdown: Shutdown) -> Result<(), AnalyzerError> {
    start(args, shutdown).await?.served.await?
}

/// Binds and starts serving, returning once the analyzer listens (for embedding, e.g. in
/// `persys-stack`, where the port is chosen by the system).
pub async fn start(args: ServeArgs, shutdown: Shutdown) -> Result<Running, AnalyzerError> {
    args.telemetry.admin_addr()?; // a bad admin address fails before anything starts
    let llm = args.llm()?.map(llm::Client::new);
    let callers = args.callers()?;
    let tls = args.tls.load()?;
    let metrics = Metrics::new();
    let admin = spawn_admin(&args.telemetry, &metrics, shutdown.clone()).await?;
    let (routes, health) = grpc::routes(api::AnalyzerApi::new(llm.clone()), args.max_message_bytes).await?;
    let (listener, addr) = bind(args.listen).await?;
    tracing::info!(%addr, llm = llm.is_some(), callers = ?callers, "analyzer ready");
    announce_ready("analyzer", &[("grpc", Some(addr)), ("admin", admin)]);
    let options = ServerOptions {
        tls: Some(tls.server_config(&[b"h2"])),
        authorize: Some(grpc::authorize(&callers)),
        metrics: Some(metrics),
        drain_timeout: args.drain_timeout,
        ..ServerOptions::default()
    };
    let served = tokio::spawn(async move {
        serve(listener, routes, options, Some(health), shutdown).await?;
        Ok(())
    });
    Ok(Running { addr, served })
}
