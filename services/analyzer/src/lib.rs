//! The Persys analyzer: from an application's source (Dockerfile, compose file, code) to
//! production-grade Kubernetes manifests and an `ApplicationPersona`, plus the persona
//! validation rules.
//!
//! One library holds all the logic: [`result::analyze_tree`] turns a [`tree::SourceTree`] and
//! the request metadata into the contract's `AnalysisResult`; the gRPC service ([`grpc`],
//! [`api`]) and the `dorgu` CLI's offline mode both call it, so their output is identical.
//! It is stateless and makes no network calls except to an optional language model ([`llm`]).
//! It does not apply anything to a cluster: that is the CLI's and the reconciler's job.

pub mod analysis;
pub mod api;
pub mod appconfig;
pub mod compose;
pub mod config;
pub mod detect;
pub mod dockerfile;
pub mod error;
pub mod generate;
pub mod grpc;
pub mod llm;
pub mod model;
pub mod persona;
pub mod quantity;
pub mod result;
pub mod tree;
pub mod upload;
pub mod validate;
pub use persys_kit::yaml;

pub use result::{analyze_tree, analyze_tree_with};

use persys_kit::{
    metrics::Metrics,
    server::{ServerOptions, announce_ready, bind, serve, spawn_admin},
    shutdown::Shutdown,
};

use crate::{config::ServeArgs, error::AnalyzerError};

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
