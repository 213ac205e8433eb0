//! A small upstream implementing `persys.metrics.v1.MetricsQueryService` for end-to-end tests
//! and benchmarks, served with the real kit over mTLS and accepting only the gateway.
//!
//! It echoes what it was told so tests can see what crossed the gateway: the caller's verified
//! user and identity come back as series labels, `match_labels` are echoed, and `WatchHostMetrics`
//! streams one event per requested node.

use std::{net::SocketAddr, pin::Pin};

use clap::Parser;
use futures::Stream;
use persys_kit::{
    Caller,
    config::{TelemetryArgs, TlsArgs},
    identity::{AuthorizeLayer, Matcher, Policy},
    server::{ServerOptions, announce_ready, base_routes, serve},
    shutdown, telemetry,
};
use persys_proto::{
    common::v1::WatchEventType,
    metrics::v1::{
        self as pb,
        metrics_query_service_server::{MetricsQueryService, MetricsQueryServiceServer},
    },
};
use tonic::{Request, Response, Status};

#[derive(Parser, Debug)]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

struct Echo;

fn caller_labels<T>(request: &Request<T>) -> Vec<(String, String)> {
    let caller = Caller::of(request);
    let mut labels = vec![("caller_identity".to_owned(), caller.map(|c| c.identity.to_string()).unwrap_or_default())];
    if let Some(user) = caller.and_then(|c| c.user.as_ref()) {
        labels.push(("caller_user".into(), user.name.clone()));
        labels.push(("caller_user_id".into(), user.id.clone()));
        labels.push(("caller_role".into(), user.role.as_str().into()));
    }
    labels
}

#[tonic::async_trait]
impl MetricsQueryService for Echo {
    async fn query_range(
        &self,
        request: Request<pb::QueryRangeRequest>,
    ) -> Result<Response<pb::QueryRangeResponse>, Status> {
        let mut labels: std::collections::HashMap<String, String> = caller_labels(&request).into_iter().collect();
        let r = request.into_inner();
        labels.extend(r.match_labels);
        let series = r
            .node_ids
            .iter()
            .map(|node| pb::Series { node_id: node.clone(), labels: labels.clone(), ..Default::default() })
            .collect();
        Ok(Response::new(pb::QueryRangeResponse { series, step: r.step }))
    }

    async fn latest_host_metrics(
        &self,
        _request: Request<pb::LatestHostMetricsRequest>,
    ) -> Result<Response<pb::LatestHostMetricsResponse>, Status> {
        Err(Status::unimplemented("the test upstream does not serve LatestHostMetrics"))
    }

    type WatchHostMetricsStream = Pin<Box<dyn Stream<Item = Result<pb::WatchHostMetricsResponse, Status>> + Send>>;

    async fn watch_host_metrics(
        &self,
        request: Request<pb::WatchHostMetricsRequest>,
    ) -> Result<Response<Self::WatchHostMetricsStream>, Status> {
        let user =
            Caller::of(&request).and_then(|c| c.user.clone()).ok_or_else(|| Status::unauthenticated("no user"))?;
        let r = request.into_inner();
        let start = r.since_revision;
        let events: Vec<_> = r
            .node_ids
            .into_iter()
            .enumerate()
            .map(move |(i, node)| {
                Ok(pb::WatchHostMetricsResponse {
                    r#type: WatchEventType::Added as i32,
                    metrics: Some(pb::HostMetrics { node_id: format!("{node}@{}", user.name), ..Default::default() }),
                    revision: start + i as i64 + 1,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init("test-upstream", &args.telemetry)?;
    let tls = args.tls.load()?;
    let (routes, health) = base_routes(&[])?;
    let routes = routes.add_service(MetricsQueryServiceServer::new(Echo));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    announce_ready("test-upstream", &[("grpc", Some(listener.local_addr()?))]);
    let options = ServerOptions {
        tls: Some(tls.server_config(&[b"h2"])),
        authorize: Some(AuthorizeLayer::new(
            Policy::new().allow("/persys.metrics.v1.", [Matcher::Service("gateway".into())]),
        )),
        ..ServerOptions::default()
    };
    serve(listener, routes, options, Some(health), shutdown::on_signals()).await?;
    Ok(())
}
