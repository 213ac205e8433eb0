//! A fake scheduler for the agent's tests: BootstrapService (Join on a TLS-only port,
//! RenewCertificate on the mTLS port) and AgentService.Connect, with certificates from a test
//! CA. It records everything agents send and lets the test push commands.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::Stream;
use persys_kit::{
    Caller, Identity,
    identity::{AuthorizeLayer, Matcher, Policy},
    pki::{Ca, LeafRequest},
    server::{ServerOptions, base_routes, serve},
    shutdown::{self, ShutdownTrigger},
    tls::{Tls, TlsPaths},
};
use persys_proto::scheduler::v1::{
    ConnectRequest, ConnectResponse, JoinRequest, JoinResponse, RenewCertificateRequest, RenewCertificateResponse,
    Welcome,
    agent_service_server::{AgentService, AgentServiceServer},
    bootstrap_service_server::{BootstrapService, BootstrapServiceServer},
    connect_request, connect_response,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

pub const TOKEN: &str = "abcdef.0123456789abcdef";

/// What an agent sent, with the node its certificate names.
#[derive(Debug, Clone)]
pub struct Received {
    pub node: String,
    pub message: connect_request::Payload,
}

type CommandSender = mpsc::Sender<Result<ConnectResponse, Status>>;

#[derive(Clone)]
struct State {
    ca: Arc<Ca>,
    cert_validity: Duration,
    joins: Arc<AtomicU32>,
    renewals: Arc<AtomicU32>,
    joined_cert: Arc<Mutex<String>>,
    heartbeat: Duration,
    inbound: mpsc::UnboundedSender<Received>,
    /// Sender of commands to the currently connected agent.
    commands: Arc<Mutex<Option<CommandSender>>>,
}

impl State {
    fn sign(&self, csr: &str, node: &str) -> Result<(String, prost_types::Timestamp, prost_types::Timestamp), Status> {
        let pem = self
            .ca
            .sign_csr(
                csr,
                &LeafRequest {
                    identity: Identity::Agent(node.to_owned()),
                    dns_names: vec![],
                    ips: vec![],
                    validity: self.cert_validity,
                },
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = std::time::SystemTime::now();
        Ok((pem, (now + self.cert_validity).into(), (now + self.cert_validity * 2 / 3).into()))
    }
}

#[tonic::async_trait]
impl BootstrapService for State {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let join = request.into_inner();
        if join.token != TOKEN {
            return Err(Status::unauthenticated("invalid join token"));
        }
        let n = self.joins.fetch_add(1, Ordering::SeqCst) + 1;
        let node_id = format!("node-{n}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let (certificate_pem, expires_at, renew_after) = self.sign(&join.csr_pem, &node_id)?;
        *self.joined_cert.lock().unwrap() = certificate_pem.clone();
        Ok(Response::new(JoinResponse {
            node_id,
            certificate_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            expires_at: Some(expires_at),
            renew_after: Some(renew_after),
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let Some(Identity::Agent(node)) = Caller::of(&request).map(|c| c.identity.clone()) else {
            return Err(Status::permission_denied("agents only"));
        };
        let (certificate_pem, expires_at, renew_after) = self.sign(&request.get_ref().csr_pem, &node)?;
        self.renewals.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            expires_at: Some(expires_at),
            renew_after: Some(renew_after),
        }))
    }
}

type ConnectStream = Pin<Box<dyn Stream<Item = Result<ConnectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for State {
    type ConnectStream = ConnectStream;

    async fn connect(
        &self,
        request: Request<Streaming<ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let Some(Identity::Agent(node)) = Caller::of(&request).map(|c| c.identity.clone()) else {
            return Err(Status::permission_denied("agents only"));
        };
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.and_then(|m| m.payload);
        let Some(connect_request::Payload::Hello(hello)) = first else {
            return Err(Status::invalid_argument("hello first"));
        };
        if hello.node_id != node {
            return Err(Status::permission_denied("the certificate names another node"));
        }
        let _ = self.inbound.send(Received { node: node.clone(), message: connect_request::Payload::Hello(hello) });
        let (tx, rx) = mpsc::channel(64);
        let welcome = ConnectResponse {
            command_id: String::new(),
            payload: Some(connect_response::Payload::Welcome(Welcome {
                node_id: node.clone(),
                heartbeat_interval: prost_types::Duration::try_from(self.heartbeat).ok(),
                server_time: Some(std::time::SystemTime::now().into()),
            })),
        };
        tx.send(Ok(welcome)).await.unwrap();
        *self.commands.lock().unwrap() = Some(tx);
        let sink = self.inbound.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = inbound.next().await {
                if let Some(message) = m.payload {
                    let _ = sink.send(Received { node: node.clone(), message });
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Running {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

/// The fake scheduler.
pub struct FakeScheduler {
    pub dir: PathBuf,
    state: State,
    server_tls: Arc<Tls>,
    pub mtls_addr: SocketAddr,
    pub bootstrap_addr: SocketAddr,
    mtls: Option<Running>,
    bootstrap: Option<Running>,
    pub inbound: mpsc::UnboundedReceiver<Received>,
}

fn write_server_cert(ca: &Ca, dir: &Path) -> TlsPaths {
    let leaf = ca
        .issue(&LeafRequest {
            identity: Identity::Service("scheduler".into()),
            dns_names: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("server.pem"), leaf.cert_pem).unwrap();
    std::fs::write(dir.join("server-key.pem"), leaf.key_pem).unwrap();
    TlsPaths { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server-key.pem") }
}

impl FakeScheduler {
    /// Starts both ports; agent certificates last `cert_validity`.
    pub async fn start(dir: &Path, cert_validity: Duration) -> Self {
        let ca = Arc::new(Ca::generate("persys-test", Duration::from_secs(86400)).unwrap());
        let paths = write_server_cert(&ca, dir);
        let server_tls = Tls::load(paths).unwrap();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let state = State {
            ca,
            cert_validity,
            joins: Arc::default(),
            renewals: Arc::default(),
            joined_cert: Arc::default(),
            heartbeat: Duration::from_millis(300),
            inbound: inbound_tx,
            commands: Arc::default(),
        };
        let mtls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bootstrap_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut fake = Self {
            dir: dir.to_owned(),
            state,
            server_tls,
            mtls_addr: mtls_listener.local_addr().unwrap(),
            bootstrap_addr: bootstrap_listener.local_addr().unwrap(),
            mtls: None,
            bootstrap: None,
            inbound,
        };
        fake.mtls = Some(fake.serve_mtls(mtls_listener));
        fake.bootstrap = Some(fake.serve_bootstrap(bootstrap_listener));
        fake
    }

    fn serve_mtls(&self, listener: TcpListener) -> Running {
        let (routes, health) = base_routes(&[]).unwrap();
        let routes = routes
            .add_service(AgentServiceServer::new(self.state.clone()))
            .add_service(BootstrapServiceServer::new(self.state.clone()));
        let (trigger, handle) = shutdown::channel();
        let options = ServerOptions {
            tls: Some(self.server_tls.server_config(&[b"h2"])),
            authorize: Some(AuthorizeLayer::new(Policy::new().allow("/persys.scheduler.v1.", [Matcher::AnyAgent]))),
            drain_timeout: Duration::from_millis(100),
            ..ServerOptions::default()
        };
        let task = tokio::spawn(async move {
            serve(listener, routes, options, Some(health), handle).await.unwrap();
        });
        Running { trigger, task }
    }

    fn serve_bootstrap(&self, listener: TcpListener) -> Running {
        let (routes, health) = base_routes(&[]).unwrap();
        let routes = routes.add_service(BootstrapServiceServer::new(self.state.clone()));
        let (trigger, handle) = shutdown::channel();
        let options = ServerOptions {
            tls: Some(self.server_tls.server_config_with(&[b"h2"], false)),
            drain_timeout: Duration::from_millis(100),
            ..ServerOptions::default()
        };
        let task = tokio::spawn(async move {
            serve(listener, routes, options, Some(health), handle).await.unwrap();
        });
        Running { trigger, task }
    }

    /// Stops the mTLS port (the agents' streams break).
    pub async fn stop_mtls(&mut self) {
        if let Some(r) = self.mtls.take() {
            r.trigger.trigger();
            r.task.await.unwrap();
        }
        *self.state.commands.lock().unwrap() = None;
    }

    /// Serves the mTLS port again on the same address.
    pub async fn restart_mtls(&mut self) {
        let listener = TcpListener::bind(self.mtls_addr).await.unwrap();
        self.mtls = Some(self.serve_mtls(listener));
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn joins(&self) -> u32 {
        self.state.joins.load(Ordering::SeqCst)
    }

    /// Returns the certificate issued by the last Join.
    pub fn joined_cert(&self) -> String {
        self.state.joined_cert.lock().unwrap().clone()
    }

    pub fn renewals(&self) -> u32 {
        self.state.renewals.load(Ordering::SeqCst)
    }

    /// Sends a command to the connected agent.
    pub async fn send(&self, command_id: &str, payload: connect_response::Payload) {
        let tx = self.state.commands.lock().unwrap().clone().expect("an agent is connected");
        tx.send(Ok(ConnectResponse { command_id: command_id.to_owned(), payload: Some(payload) })).await.unwrap();
    }

    /// Waits (up to 30 s) for a message matching `pred`, skipping others.
    pub async fn expect<T>(&mut self, what: &str, mut pred: impl FnMut(&Received) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.inbound.recv()).await {
                Ok(Some(r)) => {
                    if let Some(t) = pred(&r) {
                        return t;
                    }
                }
                Ok(None) => panic!("inbound closed while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}

impl Drop for FakeScheduler {
    fn drop(&mut self) {
        for r in [self.mtls.take(), self.bootstrap.take()].into_iter().flatten() {
            r.trigger.trigger();
        }
    }
}
