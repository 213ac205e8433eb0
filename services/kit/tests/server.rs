//! The kit's server and client assembled for real on loopback: mTLS with certificate rotation,
//! caller authorization, and graceful shutdown with a drain deadline.

use std::{path::Path, pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use persys_kit::{
    Caller, Identity,
    client::{ClientOptions, mtls_channel, mtls_channel_to},
    identity::{AuthorizeLayer, Matcher, Policy},
    pki::{Ca, LeafRequest, service_dns_names},
    server::{ServerOptions, base_routes, serve},
    shutdown,
    tls::{Tls, TlsPaths},
};
use persys_proto::metrics::v1::{
    self as pb,
    metrics_query_service_client::MetricsQueryServiceClient,
    metrics_query_service_server::{MetricsQueryService, MetricsQueryServiceServer},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Streams one event per requested node, `interval` apart; echoes the caller in `QueryRange`.
struct Slow {
    interval: Duration,
}

#[tonic::async_trait]
impl MetricsQueryService for Slow {
    async fn query_range(
        &self,
        request: Request<pb::QueryRangeRequest>,
    ) -> Result<Response<pb::QueryRangeResponse>, Status> {
        let caller = Caller::of(&request).map(|c| c.identity.to_string()).unwrap_or_default();
        Ok(Response::new(pb::QueryRangeResponse {
            series: vec![pb::Series { node_id: caller, ..Default::default() }],
            step: None,
        }))
    }

    async fn latest_host_metrics(
        &self,
        _: Request<pb::LatestHostMetricsRequest>,
    ) -> Result<Response<pb::LatestHostMetricsResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }

    type WatchHostMetricsStream = Pin<Box<dyn Stream<Item = Result<pb::WatchHostMetricsResponse, Status>> + Send>>;

    async fn watch_host_metrics(
        &self,
        request: Request<pb::WatchHostMetricsRequest>,
    ) -> Result<Response<Self::WatchHostMetricsStream>, Status> {
        let interval = self.interval;
        let nodes = request.into_inner().node_ids;
        let stream = futures::stream::iter(nodes.into_iter().enumerate()).then(move |(i, node)| async move {
            tokio::time::sleep(interval).await;
            Ok(pb::WatchHostMetricsResponse {
                metrics: Some(pb::HostMetrics { node_id: node, ..Default::default() }),
                revision: i as i64 + 1,
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn issue(ca: &Ca, dir: &Path, name: &str, identity: Identity) -> TlsPaths {
    let leaf = ca
        .issue(&LeafRequest {
            identity,
            dns_names: service_dns_names(name, "persys"),
            ips: vec![],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(d.join("cert.pem"), leaf.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), leaf.key_pem).unwrap();
    TlsPaths { ca: dir.join("ca.pem"), cert: d.join("cert.pem"), key: d.join("key.pem") }
}

struct Running {
    addr: std::net::SocketAddr,
    trigger: shutdown::ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), persys_kit::server::ServeError>>,
}

async fn start(server_tls: &Arc<Tls>, interval: Duration, drain: Duration) -> Running {
    let (routes, health) = base_routes(&[]).unwrap();
    let routes = routes.add_service(MetricsQueryServiceServer::new(Slow { interval }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, handle) = shutdown::channel();
    let options = ServerOptions {
        tls: Some(server_tls.server_config(&[b"h2"])),
        authorize: Some(AuthorizeLayer::new(
            Policy::new().allow("/persys.metrics.v1.", [Matcher::Service("gateway".into())]),
        )),
        drain_timeout: drain,
        ..ServerOptions::default()
    };
    let task = tokio::spawn(serve(listener, routes, options, Some(health), handle));
    Running { addr, trigger, task }
}

fn client(tls: &Arc<Tls>, addr: std::net::SocketAddr) -> MetricsQueryServiceClient<persys_kit::client::TracedChannel> {
    MetricsQueryServiceClient::new(
        mtls_channel(&format!("http://localhost:{}", addr.port()), tls, &ClientOptions::default()).unwrap(),
    )
}

/// Returns the leaf certificate a fresh TLS connection to `addr` is served.
async fn served_leaf(client_tls: &Arc<Tls>, addr: std::net::SocketAddr) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(client_tls.client_config());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn rotated_certificates_serve_new_handshakes_and_keep_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
    let server_paths = issue(&ca, dir.path(), "server", Identity::Service("metrics".into()));
    let client_paths = issue(&ca, dir.path(), "gateway", Identity::Service("gateway".into()));
    let server_tls = Tls::load(server_paths.clone()).unwrap();
    let client_tls = Tls::load(client_paths).unwrap();
    let server = start(&server_tls, Duration::from_millis(1), Duration::from_secs(5)).await;

    let mut open = client(&client_tls, server.addr);
    let first = open.query_range(pb::QueryRangeRequest::default()).await.unwrap().into_inner();
    assert_eq!(first.series[0].node_id, "spiffe://persys/gateway");
    let before = served_leaf(&client_tls, server.addr).await;

    // Rotate: a new certificate and key for the same identity, then reload.
    issue(&ca, dir.path(), "server", Identity::Service("metrics".into()));
    assert!(server_tls.reload().unwrap(), "changed files are picked up");
    assert!(!server_tls.reload().unwrap(), "unchanged files are not reloaded again");

    let after = served_leaf(&client_tls, server.addr).await;
    assert_ne!(before, after, "new handshakes get the rotated certificate");
    // The connection opened before the rotation still works.
    open.query_range(pb::QueryRangeRequest::default()).await.unwrap();

    // A broken file keeps the old material in force.
    std::fs::write(&server_paths.key, b"not a key").unwrap();
    assert!(server_tls.reload().is_err());
    assert_eq!(served_leaf(&client_tls, server.addr).await, after);

    server.trigger.trigger();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn callers_outside_the_policy_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
    let server_tls = Tls::load(issue(&ca, dir.path(), "server", Identity::Service("metrics".into()))).unwrap();
    let agent_tls = Tls::load(issue(&ca, dir.path(), "agent", Identity::Agent("n1".into()))).unwrap();
    let server = start(&server_tls, Duration::from_millis(1), Duration::from_secs(5)).await;
    let denied = client(&agent_tls, server.addr).query_range(pb::QueryRangeRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(denied.message().contains("spiffe://persys/agent/n1"), "{}", denied.message());
}

#[tokio::test]
async fn shutdown_drains_open_streams_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
    let server_tls = Tls::load(issue(&ca, dir.path(), "server", Identity::Service("metrics".into()))).unwrap();
    let client_tls = Tls::load(issue(&ca, dir.path(), "gateway", Identity::Service("gateway".into()))).unwrap();
    let server = start(&server_tls, Duration::from_millis(50), Duration::from_secs(10)).await;

    let nodes: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
    let mut stream = client(&client_tls, server.addr)
        .watch_host_metrics(pb::WatchHostMetricsRequest { node_ids: nodes.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    server.trigger.trigger();
    // The stream in flight still delivers everything.
    let mut got = vec![first.metrics.unwrap().node_id];
    while let Some(item) = stream.next().await {
        got.push(item.unwrap().metrics.unwrap().node_id);
    }
    assert_eq!(got, nodes);
    server.task.await.unwrap().unwrap();
    // And the port is closed afterwards.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn the_drain_deadline_cuts_streams_that_would_not_end() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
    let server_tls = Tls::load(issue(&ca, dir.path(), "server", Identity::Service("metrics".into()))).unwrap();
    let client_tls = Tls::load(issue(&ca, dir.path(), "gateway", Identity::Service("gateway".into()))).unwrap();
    // Each event takes an hour; the deadline is 200 ms.
    let server = start(&server_tls, Duration::from_secs(3600), Duration::from_millis(200)).await;
    let mut stream = client(&client_tls, server.addr)
        .watch_host_metrics(pb::WatchHostMetricsRequest { node_ids: vec!["n".into()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    server.trigger.trigger();
    tokio::time::timeout(Duration::from_secs(30), server.task)
        .await
        .expect("server stopped at the deadline")
        .unwrap()
        .unwrap();
    // The cut stream ends with an error, not a hang.
    let end = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("stream ended");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}

/// Handshakes with `addr` expecting `expected`; returns the handshake error, if any.
async fn handshake(client_tls: &Arc<Tls>, addr: std::net::SocketAddr, expected: Identity) -> Result<(), String> {
    let connector = tokio_rustls::TlsConnector::from(client_tls.client_config_for(expected));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.map(drop).map_err(|e| e.to_string())
}

#[tokio::test]
async fn clients_refuse_a_valid_certificate_of_another_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
    let client_tls = Tls::load(issue(&ca, dir.path(), "gateway", Identity::Service("gateway".into()))).unwrap();
    let metrics = Identity::Service("metrics".into());
    // Two servers with valid certificates from the same CA: the real one and an impostor (say,
    // a machine whose agent key was stolen) that serves the same API.
    let real = start(
        &Tls::load(issue(&ca, dir.path(), "real", metrics.clone())).unwrap(),
        Duration::from_millis(1),
        Duration::from_secs(5),
    )
    .await;
    let impostors = [Identity::Agent("n1".into()), Identity::Service("analyzer".into())];
    for impostor in impostors {
        let name = format!("impostor-{}", impostor.uri().rsplit('/').next().unwrap());
        let server = start(
            &Tls::load(issue(&ca, dir.path(), &name, impostor.clone())).unwrap(),
            Duration::from_millis(1),
            Duration::from_secs(5),
        )
        .await;
        let refused = handshake(&client_tls, server.addr, metrics.clone()).await.unwrap_err();
        assert!(refused.contains("spiffe://persys/metrics") && refused.contains(&impostor.uri()), "{refused}");
        let channel = mtls_channel_to(
            &format!("http://localhost:{}", server.addr.port()),
            &client_tls,
            metrics.clone(),
            &ClientOptions::default(),
        )
        .unwrap();
        let err =
            MetricsQueryServiceClient::new(channel).query_range(pb::QueryRangeRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        // Checking the CA alone, as before, would have let it through.
        client(&client_tls, server.addr).query_range(pb::QueryRangeRequest::default()).await.unwrap();
        server.trigger.trigger();
    }

    handshake(&client_tls, real.addr, metrics.clone()).await.unwrap();
    let channel = mtls_channel_to(
        &format!("http://localhost:{}", real.addr.port()),
        &client_tls,
        metrics,
        &ClientOptions::default(),
    )
    .unwrap();
    MetricsQueryServiceClient::new(channel).query_range(pb::QueryRangeRequest::default()).await.unwrap();
    real.trigger.trigger();
}
