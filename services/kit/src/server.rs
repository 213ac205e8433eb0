//! Server assembly: one function that serves a router with health, reflection, trace context,
//! metrics, optional caller authorization, optional gRPC-web with CORS, TLS and a graceful
//! shutdown that drains in-flight calls and streams until a deadline.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{body::Body, server::NamedService, service::Routes, transport::Server};
use tonic_health::server::HealthReporter;
use tower::{Service, ServiceBuilder, util::BoxCloneService};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{identity::AuthorizeLayer, killable::Killable, metrics::Metrics, shutdown::Shutdown, trace::TraceLayer};

/// Default limit of one decoded message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Errors serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(String),
}

/// Why a service could not start or serve: the part every service's own error shares. A
/// service's error enum wraps it (`Start(#[from] StartError)`, transparent) and adds its own
/// variants; [`start_error_conversions!`](crate::start_error_conversions) lets `?` convert the
/// kit's errors straight into it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Certificates could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A port could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A server failed.
    #[error("serve: {0}")]
    Serve(#[from] ServeError),
    /// An address to call is invalid.
    #[error("client: {0}")]
    Client(#[from] crate::client::ClientError),
}

/// Implements `From` the kit's start errors (config, TLS, serve, client) for a service error
/// type with a `Start(StartError)` variant, so `?` works on them directly.
#[macro_export]
macro_rules! start_error_conversions {
    ($error:ty) => {
        impl From<$crate::config::ConfigError> for $error {
            fn from(e: $crate::config::ConfigError) -> Self {
                Self::Start(e.into())
            }
        }
        impl From<$crate::tls::TlsError> for $error {
            fn from(e: $crate::tls::TlsError) -> Self {
                Self::Start(e.into())
            }
        }
        impl From<$crate::server::ServeError> for $error {
            fn from(e: $crate::server::ServeError) -> Self {
                Self::Start(e.into())
            }
        }
        impl From<$crate::client::ClientError> for $error {
            fn from(e: $crate::client::ClientError) -> Self {
                Self::Start(e.into())
            }
        }
    };
}

/// Binds `addr` and returns the listener with the address it got (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Serves `/metrics` and `/healthz` for `metrics` on the admin address of `telemetry`, unless
/// it is `off`; returns the address it serves on.
pub async fn spawn_admin(
    telemetry: &crate::config::TelemetryArgs,
    metrics: &Metrics,
    shutdown: Shutdown,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(addr) = telemetry.admin_addr()? else { return Ok(None) };
    let bound = metrics.spawn_admin(addr, shutdown).await.map_err(|source| StartError::Bind { addr, source })?;
    Ok(Some(bound))
}

/// Browser access through gRPC-web.
#[derive(Clone, Debug, Default)]
pub struct GrpcWeb {
    /// Origins allowed by CORS; `*` allows any.
    pub allowed_origins: Vec<String>,
}

/// How a server is assembled.
pub struct ServerOptions {
    /// TLS config; `None` serves plaintext h2c (only for loopback development and tests).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Caller authorization; requires `tls` with client certificates.
    pub authorize: Option<AuthorizeLayer>,
    /// gRPC-web over HTTP/1.1 and HTTP/2, with CORS.
    pub grpc_web: Option<GrpcWeb>,
    /// RPC metrics to record.
    pub metrics: Option<Metrics>,
    /// How long in-flight calls and streams may run after shutdown begins.
    pub drain_timeout: Duration,
    /// Extra encoded descriptor sets to offer through reflection (Persys and health are always there).
    pub descriptor_sets: Vec<&'static [u8]>,
    /// Answers plain `GET`/`HEAD` requests that are not gRPC (see [`is_plain_http`]), e.g. a
    /// web app's files, before gRPC-web, CORS and `authorize`: whatever it serves is public.
    pub plain_http: Option<HttpService>,
}

/// Returns whether a request is plain HTTP for [`ServerOptions::plain_http`]: a `GET` or
/// `HEAD` whose content type is not `application/grpc*` (gRPC and gRPC-web calls are `POST`s).
pub fn is_plain_http<B>(request: &Request<B>) -> bool {
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    !grpc && matches!(*request.method(), http::Method::GET | http::Method::HEAD)
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls: None,
            authorize: None,
            grpc_web: None,
            metrics: None,
            drain_timeout: Duration::from_secs(10),
            descriptor_sets: Vec::new(),
            plain_http: None,
        }
    }
}

/// The health service of a server, so its owner can flip statuses.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// Marks `S` as serving.
    pub async fn serving<S: NamedService>(&self) {
        self.reporter.set_serving::<S>().await;
    }

    /// Marks the whole server as not serving (during drain).
    pub async fn not_serving(&self) {
        self.reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    }
}

/// Returns routes with `grpc.health.v1` and reflection mounted, plus the health handle.
pub fn base_routes(extra_descriptor_sets: &[&'static [u8]]) -> Result<(Routes, Health), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(persys_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for set in extra_descriptor_sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        builder
    };
    // grpc.reflection.v1alpha too: grpcio's reflection client, older grpcurl releases and IDE
    // plugins still ask for it. Each lists both (a builder adds only its own version's file).
    let v1 = reflection()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let v1alpha = reflection()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let routes = Routes::new(health_service).add_service(v1).add_service(v1alpha);
    Ok((routes, Health { reporter }))
}

/// A boxed HTTP service, as servers are assembled from.
pub type HttpService = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

fn stack(router: axum::Router, options: &ServerOptions) -> HttpService {
    let cors = options.grpc_web.as_ref().map(|web| {
        let origin = if web.allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(web.allowed_origins.iter().filter_map(|o| o.parse().ok()))
        };
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([http::Method::POST, http::Method::OPTIONS])
            .allow_headers(tower_http::cors::Any)
            .expose_headers([
                http::HeaderName::from_static("grpc-status"),
                http::HeaderName::from_static("grpc-message"),
                http::HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(600))
    });
    let inner = ServiceBuilder::new()
        .map_response(oversized_is_resource_exhausted)
        .layer(TraceLayer::server(options.metrics.clone()))
        .option_layer(options.authorize.clone())
        .map_response(|r: Response<axum::body::Body>| r.map(Body::new))
        .service(router);
    let inner = BoxCloneService::new(inner);
    let grpc = match cors {
        Some(cors) => BoxCloneService::<Request<Body>, Response<Body>, Infallible>::new(
            ServiceBuilder::new().layer(cors).layer(tonic_web::GrpcWebLayer::new()).service(inner),
        ),
        None => inner,
    };
    let Some(plain) = options.plain_http.clone() else { return grpc };
    // Counted and traced like the rest (under one label), but outside gRPC-web, which answers
    // any other HTTP/1.1 request with 400.
    let plain =
        BoxCloneService::new(ServiceBuilder::new().layer(TraceLayer::server(options.metrics.clone())).service(plain));
    BoxCloneService::new(tower::service_fn(move |request: Request<Body>| {
        let (plain, grpc) = (plain.clone(), grpc.clone());
        async move {
            use tower::ServiceExt;
            if is_plain_http(&request) { plain.oneshot(request).await } else { grpc.oneshot(request).await }
        }
    }))
}

/// tonic refuses a message over the decoding limit with OUT_OF_RANGE; gRPC's own servers, and
/// our clients, expect RESOURCE_EXHAUSTED for a limit hit, so the code is corrected here, in the
/// headers of trailers-only responses and in the trailers of the others (`grpc-message` is
/// percent-encoded on the wire).
fn oversized_is_resource_exhausted(response: Response<Body>) -> Response<Body> {
    fn fix(headers: &mut http::HeaderMap) {
        let oversized = headers.get("grpc-status").is_some_and(|v| v == "11")
            && headers.get("grpc-message").and_then(|v| v.to_str().ok()).is_some_and(|m| {
                m.contains("message%20length%20too%20large") || m.contains("message length too large")
            });
        if oversized {
            headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        }
    }
    let (mut parts, body) = response.into_parts();
    fix(&mut parts.headers);
    let body = http_body_util::BodyExt::map_frame(body, |frame| match frame.into_trailers() {
        Ok(mut trailers) => {
            fix(&mut trailers);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    });
    Response::from_parts(parts, Body::new(body))
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop, so one slow or
/// hostile client cannot stall others.
fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: Shutdown,
) -> ReceiverStream<Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.clone().wait() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Serves `routes` on `listener` until `shutdown`, then drains for up to
/// `options.drain_timeout` and closes what remains.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    options: ServerOptions,
    health: Option<Health>,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    let service = stack(routes.prepare().into_axum_router(), &options);
    let builder = Server::builder()
        .accept_http1(options.grpc_web.is_some())
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    let drain = options.drain_timeout;
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            if let Some(h) = health {
                h.not_serving().await;
            }
        }
    };
    tracing::info!(addr = ?local, tls = options.tls.is_some(), grpc_web = options.grpc_web.is_some(), "serving");
    // Cancelled at the drain deadline: cuts connections whose calls outlive it.
    let cut = CancellationToken::new();
    let served = async {
        match options.tls.clone() {
            Some(config) => {
                let incoming =
                    tls_incoming(listener, config, shutdown.clone()).map(|io| io.map(|io| Killable::new(io, &cut)));
                builder.serve_with_incoming_shutdown(ServiceFn(service), incoming, signal).await
            }
            None => {
                let incoming = tonic::transport::server::TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .map(|io| io.map(|io| Killable::new(io, &cut)));
                builder.serve_with_incoming_shutdown(ServiceFn(service), incoming, signal).await
            }
        }
    };
    tokio::pin!(served);
    let deadline = async {
        shutdown.clone().wait().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        result = &mut served => result?,
        _ = deadline => {
            tracing::warn!(?drain, "drain deadline passed; closing remaining connections");
            cut.cancel();
        }
    }
    tracing::info!(addr = ?local, "stopped");
    Ok(())
}

/// Serves `router` over HTTPS (HTTP/1.1 and HTTP/2, server certificate of `tls`, no client
/// certificate asked) on `listener` until `shutdown`, then lets open requests finish. For
/// callers that hold no Persys identity but trust the CA, such as the Kubernetes API server
/// calling an admission webhook; everything internal uses [`serve`] with mTLS. Handshakes run
/// off the accept loop, as in [`serve`].
pub async fn serve_https(
    listener: TcpListener,
    router: axum::Router,
    tls: &Arc<crate::tls::Tls>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let config = tls.server_config_with(&[b"h2", b"http/1.1"], false);
    let listener = TlsListener { streams: tls_incoming(listener, config, shutdown.clone()), local };
    tracing::info!(addr = %local, "serving https");
    axum::serve(listener, router).with_graceful_shutdown(shutdown.wait()).await?;
    tracing::info!(addr = %local, "stopped");
    Ok(())
}

/// Handshaken TLS connections as an [`axum::serve::Listener`].
struct TlsListener {
    streams: ReceiverStream<Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.streams.next().await {
                Some(Ok(stream)) => {
                    let peer = stream.get_ref().0.peer_addr().unwrap_or(self.local);
                    return (stream, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop stopped at shutdown; the graceful shutdown ends the server.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Adapts the boxed stack to what tonic's `serve_with_incoming_shutdown` expects.
#[derive(Clone)]
struct ServiceFn(HttpService);

impl Service<Request<Body>> for ServiceFn {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = <HttpService as Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.0.call(request)
    }
}

/// Waits until the gRPC health service at `channel` reports SERVING, polling with backoff up to
/// `timeout`. Tests and the CLI use it instead of sleeping.
pub async fn wait_until_serving(channel: tonic::transport::Channel, timeout: Duration) -> Result<(), tonic::Status> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        let result = client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
        match result {
            Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 => {
                return Ok(());
            }
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Ok(r) => return Err(tonic::Status::unavailable(format!("health is {:?}", r.get_ref().status))),
            Err(e) => return Err(e),
        }
    }
}

/// Prints one JSON line on stdout naming the bound addresses, e.g.
/// `{"event":"ready","service":"gateway","public":"127.0.0.1:8080"}`, so supervisors and tests
/// learn ports bound with `:0` without scraping logs (which go to stderr).
pub fn announce_ready(service: &str, addrs: &[(&str, Option<SocketAddr>)]) {
    use std::io::Write;
    let mut line = format!(r#"{{"event":"ready","service":"{service}""#);
    for (name, addr) in addrs {
        if let Some(addr) = addr {
            line.push_str(&format!(r#","{name}":"{addr}""#));
        }
    }
    line.push('}');
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_are_never_plain_http() {
        let grpc_web = Request::post("/persys.gateway.v1.AuthService/Login")
            .header(http::header::CONTENT_TYPE, "application/grpc-web+proto")
            .body(())
            .unwrap();
        assert!(!is_plain_http(&grpc_web));
        let get_grpc = Request::get("/x").header(http::header::CONTENT_TYPE, "application/grpc").body(()).unwrap();
        assert!(!is_plain_http(&get_grpc));
        assert!(!is_plain_http(&Request::post("/").body(()).unwrap()));
        assert!(is_plain_http(&Request::get("/").body(()).unwrap()));
        assert!(is_plain_http(&Request::head("/index.html").body(()).unwrap()));
    }

    /// Issues a CA and a server certificate for 127.0.0.1 into `dir`; returns the CA PEM.
    fn issue_server(dir: &std::path::Path) -> (crate::tls::TlsPaths, String) {
        use crate::{
            identity::Identity,
            pki::{Ca, LeafRequest},
        };
        let ca = Ca::generate("webhook-test", Duration::from_secs(3600)).unwrap();
        let leaf = ca
            .issue(&LeafRequest {
                identity: Identity::Service("reconciler".into()),
                dns_names: vec!["localhost".into()],
                ips: vec!["127.0.0.1".parse().unwrap()],
                validity: Duration::from_secs(600),
            })
            .unwrap();
        let paths =
            crate::tls::TlsPaths { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&paths.ca, ca.cert_pem()).unwrap();
        std::fs::write(&paths.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&paths.key, &leaf.key_pem).unwrap();
        (paths, ca.cert_pem().to_owned())
    }

    /// Sends one HTTP/1.1 POST over TLS trusting `ca_pem` alone, with no client certificate.
    async fn post(addr: SocketAddr, ca_pem: &str, path: &str, body: &str) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        tls.read_to_string(&mut response).await?;
        Ok(response)
    }

    #[tokio::test]
    async fn https_serves_callers_without_a_client_certificate_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, ca_pem) = issue_server(dir.path());
        let tls = crate::tls::Tls::load(paths).unwrap();
        let router = axum::Router::new()
            .route("/validate", axum::routing::post(|body: String| async move { format!("seen {body}") }));
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = tokio::spawn(async move { serve_https(listener, router, &tls, shutdown).await });

        let response = post(addr, &ca_pem, "/validate", r#"{"kind":"AdmissionReview"}"#).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(r#"seen {"kind":"AdmissionReview"}"#), "{response}");
        let missing = post(addr, &ca_pem, "/other", "").await.unwrap();
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        // A caller trusting another CA refuses the server's certificate.
        let other = tempfile::tempdir().unwrap();
        let (_, other_ca) = issue_server(other.path());
        assert!(post(addr, &other_ca, "/validate", "{}").await.is_err());

        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener closes after shutdown");
    }
}
