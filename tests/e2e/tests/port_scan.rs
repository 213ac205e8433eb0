//! A port scan of every Persys process the harness starts: the all-in-one `persys-stack`, the
//! cluster of separate processes (scheduler, gateway, a real agent) and the analyzer.
//!
//! The ports are not listed here: they are found from each process's own sockets (the socket
//! inodes in `/proc/<pid>/fd` looked up in `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`), so a port a
//! service starts to open tomorrow is scanned too. Each one is mapped to a role through the
//! addresses the process announced on its ready line and [`PORTS`], the table of what each
//! (service, port) is documented to accept; a listening socket that maps to no role fails the
//! test, and so does one bound beyond loopback.
//!
//! Every mTLS port is then tried with what it must refuse: TLS without a client certificate,
//! plaintext HTTP/2, a certificate from another CA (with the very identity the port admits), and
//! valid certificates of the cluster CA naming the wrong identity (a real joined agent's, other
//! services', one with no Persys identity). The documented open ports must accept exactly what
//! their documentation says: the gateway's public port (Login, health and reflection without a
//! token, everything else only with a bearer token, plaintext or TLS as configured, gRPC-web),
//! the scheduler's bootstrap port (server-side TLS, `Join` without a client certificate and
//! nothing else of the scheduler's API), the admin HTTP ports (`/metrics`, `/healthz`) and the
//! agent's local admin API (plaintext `AgentAdminService` on loopback). Every refusal is paired
//! with a positive control over the same client code, so a broken probe cannot pass as a
//! refusal.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Buf, BufMut, Bytes};
use http_body_util::{BodyExt, Full};
use persys_e2e::{
    analyzer::Analyzer,
    bin,
    cluster::{Cluster, ClusterOptions},
    process::Service,
    stack::{ADMIN, ADMIN_PASSWORD},
};
use persys_kit::{
    Identity,
    client::{ClientOptions, TracedChannel, plain_channel, tls_channel},
    pki::{Ca, LeafRequest, service_dns_names},
    testing::require_env,
    tls::{Tls, TlsPaths},
};
use persys_proto::{
    gateway::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    scheduler::v1::{CreateJoinTokenRequest, scheduler_service_client::SchedulerServiceClient},
};
use prost::Message;
use rustls::{AlertDescription, ClientConfig, RootCertStore, pki_types::ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::{
    Code,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataValue,
};

// ---------------------------------------------------------------------------------------------
// The documented policy of every port.

/// What a port is for, and so what it must accept and refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The gateway's public gRPC and gRPC-web port.
    GatewayPublic,
    /// The gateway's internal mTLS port.
    GatewayInternal,
    /// The scheduler's mTLS port.
    SchedulerMtls,
    /// The scheduler's bootstrap (join) port.
    SchedulerBootstrap,
    /// The analyzer's mTLS port.
    AnalyzerMtls,
    /// The metrics pipeline's mTLS port.
    MetricsMtls,
    /// The agent's local admin gRPC API.
    AgentAdminApi,
    /// Any service's admin HTTP server (`/metrics`, `/healthz`).
    AdminHttp,
}

/// One (service, port) of a ready line, its role and what the documentation says of it.
struct Documented {
    /// The `service` of the ready line that announces the port.
    service: &'static str,
    /// The address's name on that line.
    name: &'static str,
    role: Role,
    /// Who may reach it, and where that is written.
    policy: &'static str,
}

/// Every port a Persys process may open. A discovered port not found here fails the test.
const PORTS: &[Documented] = &[
    Documented {
        service: "gateway",
        name: "public",
        role: Role::GatewayPublic,
        policy: "users: gRPC + gRPC-web, plaintext unless --public-tls (docs/deploy.md); a bearer token for \
                 everything but Login/Refresh/Logout, health and reflection (gateway authn.rs)",
    },
    Documented {
        service: "gateway",
        name: "internal",
        role: Role::GatewayInternal,
        policy: "mTLS, other Persys services only (docs/deploy.md); serves health and reflection",
    },
    Documented {
        service: "gateway",
        name: "admin",
        role: Role::AdminHttp,
        policy: "admin HTTP /metrics, /healthz for Prometheus and health checks (docs/deploy.md)",
    },
    Documented {
        service: "scheduler",
        name: "grpc",
        role: Role::SchedulerMtls,
        policy: "mTLS: SchedulerService for the gateway (and the stack), AgentService and renewals for \
                 agents (docs/deploy.md, scheduler grpc.rs)",
    },
    Documented {
        service: "scheduler",
        name: "bootstrap",
        role: Role::SchedulerBootstrap,
        policy: "TLS, server-auth only: machines join with a token and a CSR (docs/deploy.md)",
    },
    Documented {
        service: "scheduler",
        name: "admin",
        role: Role::AdminHttp,
        policy: "admin HTTP /metrics, /healthz (docs/deploy.md)",
    },
    Documented {
        service: "persys-stack",
        name: "scheduler",
        role: Role::SchedulerMtls,
        policy: "the stack's own ready line repeats its scheduler's mTLS address",
    },
    Documented {
        service: "agent",
        name: "admin_api",
        role: Role::AgentAdminApi,
        policy: "local AgentAdminService, plaintext, loopback only (agent config.rs --admin-api-listen)",
    },
    Documented {
        service: "agent",
        name: "admin",
        role: Role::AdminHttp,
        policy: "admin HTTP /metrics, /healthz (kit config.rs PERSYS_ADMIN_LISTEN)",
    },
    Documented {
        service: "analyzer",
        name: "grpc",
        role: Role::AnalyzerMtls,
        policy: "mTLS, callers by identity: gateway, reconciler, stack, dorgu (docs/analyzer.md)",
    },
    Documented {
        service: "analyzer",
        name: "admin",
        role: Role::AdminHttp,
        policy: "admin HTTP /metrics, /healthz (docs/analyzer.md)",
    },
    Documented {
        service: "metrics-pipeline",
        name: "grpc",
        role: Role::MetricsMtls,
        policy: "mTLS: ingest for agents, queries, alerts, DORA and commands for the gateway, reconciler and \
                 stack, users vouched for by the gateway only (docs/metrics.md, metrics-pipeline lib.rs)",
    },
    Documented {
        service: "metrics-pipeline",
        name: "admin",
        role: Role::AdminHttp,
        policy: "admin HTTP /metrics (Prometheus text of the latest samples), /healthz (docs/metrics.md)",
    },
];

const HEALTH: &str = "/grpc.health.v1.Health/Check";
const LIST_NODES: &str = "/persys.scheduler.v1.SchedulerService/ListNodes";
const CREATE_JOIN_TOKEN: &str = "/persys.scheduler.v1.SchedulerService/CreateJoinToken";
const CONNECT: &str = "/persys.scheduler.v1.AgentService/Connect";
const JOIN: &str = "/persys.scheduler.v1.BootstrapService/Join";
const RENEW: &str = "/persys.scheduler.v1.BootstrapService/RenewCertificate";
const RUN_HOST_COMMAND: &str = "/persys.scheduler.v1.NodeCommandService/RunHostCommand";
const VALIDATE: &str = "/persys.analyzer.v1.AnalyzerService/ValidateManifests";
const LIST_USERS: &str = "/persys.gateway.v1.UserService/ListUsers";
const LOGIN: &str = "/persys.gateway.v1.AuthService/Login";
const AGENT_STATUS: &str = "/persys.agent.v1.AgentAdminService/GetStatus";
const LIST_ALERT_RULES: &str = "/persys.metrics.v1.AlertService/ListAlertRules";
const INGEST: &str = "/persys.metrics.v1.MetricsIngestService/Ingest";

const PD: &[Code] = &[Code::PermissionDenied];
const UNAUTHENTICATED: &[Code] = &[Code::Unauthenticated];
/// Refused, or not served on this port at all.
const REFUSED_OR_ABSENT: &[Code] = &[Code::Unauthenticated, Code::PermissionDenied, Code::Unimplemented];
const ABSENT: &[Code] = &[Code::Unimplemented];

// ---------------------------------------------------------------------------------------------
// Discovery: the sockets a process listens on, from /proc.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
}

/// A listening socket: TCP in LISTEN, or UDP bound and unconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Socket {
    proto: Proto,
    addr: SocketAddr,
}

impl fmt::Display for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", if self.proto == Proto::Tcp { "tcp" } else { "udp" }, self.addr)
    }
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as the kernel prints them:
/// each 32-bit word of the address in host byte order.
fn parse_proc_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes);
    let ip: IpAddr = match ip.len() {
        8 => Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ipv6Addr::from(bytes).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Rows of a `/proc/<pid>/net/*` table: local address, remote address, state, inode.
fn proc_net(path: &Path) -> Vec<(SocketAddr, SocketAddr, u8, u64)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some((
                parse_proc_addr(f.get(1)?)?,
                parse_proc_addr(f.get(2)?)?,
                u8::from_str_radix(f.get(3)?, 16).ok()?,
                f.get(9)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The inodes of the sockets `pid` holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return BTreeSet::new() };
    dir.filter_map(|entry| {
        let link = std::fs::read_link(entry.ok()?.path()).ok()?;
        link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// Every socket `pid` listens on, in any address family this test can reach.
fn listening(pid: u32) -> BTreeSet<Socket> {
    const TCP_LISTEN: u8 = 0x0A;
    const UDP_UNCONNECTED: u8 = 0x07;
    let inodes = socket_inodes(pid);
    let mut out = BTreeSet::new();
    for (table, proto, state) in [
        ("tcp", Proto::Tcp, TCP_LISTEN),
        ("tcp6", Proto::Tcp, TCP_LISTEN),
        ("udp", Proto::Udp, UDP_UNCONNECTED),
        ("udp6", Proto::Udp, UDP_UNCONNECTED),
    ] {
        for (local, remote, st, inode) in proc_net(Path::new(&format!("/proc/{pid}/net/{table}"))) {
            if st == state && inodes.contains(&inode) && (proto == Proto::Tcp || remote.port() == 0) {
                out.insert(Socket { proto, addr: local });
            }
        }
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the child process of this test that listens on `addr` (the harness starts the
/// binaries as direct children).
fn child_listening_on(addr: SocketAddr) -> u32 {
    let me = std::process::id();
    let socket = Socket { proto: Proto::Tcp, addr };
    let found: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me) && listening(*pid).contains(&socket))
        .collect();
    assert_eq!(found.len(), 1, "exactly one child of this test must listen on {addr}: {found:?}");
    found[0]
}

/// A process the harness started, and the addresses it announced: (ready-line service, name,
/// address).
struct Process {
    label: String,
    pid: u32,
    exe: PathBuf,
    announced: Vec<(String, String, SocketAddr)>,
}

impl Process {
    fn new(label: &str, announced: Vec<(String, String, SocketAddr)>) -> Self {
        let pid = child_listening_on(announced.first().expect("announced addresses").2);
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        Self { label: label.to_owned(), pid, exe, announced }
    }

    /// A process started with [`Service`], whose ready line named `service`.
    fn of(label: &str, service_name: &str, service: &Service) -> Self {
        let mut announced: Vec<_> =
            service.addrs.iter().map(|(name, addr)| (service_name.to_owned(), name.clone(), *addr)).collect();
        announced.sort();
        Self::new(label, announced)
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A certificate to present, or none.
#[derive(Clone, Debug)]
enum Cred {
    /// TLS without a client certificate.
    NoCert,
    /// A certificate naming `identity` from a CA the cluster does not trust, named `ca`.
    OtherCa { ca: &'static str, identity: Identity },
    /// A valid certificate of the cluster CA naming this identity.
    Cluster(Identity),
    /// A valid certificate of the cluster CA with no Persys identity in it.
    Anonymous,
    /// The certificate a real agent received when it joined.
    Joined(TlsPaths),
}

impl fmt::Display for Cred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCert => f.write_str("no client certificate"),
            Self::OtherCa { ca, identity } => write!(f, "another CA's (`{ca}`) certificate for {identity}"),
            Self::Cluster(id) => write!(f, "the cluster CA's certificate for {id}"),
            Self::Anonymous => f.write_str("the cluster CA's certificate without a Persys identity"),
            Self::Joined(_) => f.write_str("a joined agent's own certificate"),
        }
    }
}

fn service(name: &str) -> Identity {
    Identity::Service(name.into())
}

fn agent(node: &str) -> Identity {
    Identity::Agent(node.into())
}

/// Names of the CAs nobody here trusts: those of `persys certs init` and of `persys-stack`, so
/// one of them is a name twin of each group's CA (a server cannot tell them apart by name).
const OTHER_CAS: [&str; 2] = ["Persys cluster CA", "Persys dev CA"];

/// Another CA's certificate naming `identity`.
fn other_ca(identity: Identity) -> Cred {
    Cred::OtherCa { ca: OTHER_CAS[0], identity }
}

/// The CA of one group of processes, and others nobody trusts.
struct Pki {
    ca_pem: PathBuf,
    ca: Ca,
    others: Vec<(&'static str, Ca)>,
    files: TempDir,
    issued: AtomicUsize,
}

impl Pki {
    fn new(certs: &Path) -> Self {
        Self {
            ca_pem: certs.join("ca.pem"),
            ca: Ca::load_dir(certs).expect("the cluster CA and its key"),
            others: OTHER_CAS
                .iter()
                .map(|name| (*name, Ca::generate(name, Duration::from_secs(3600)).expect("another CA")))
                .collect(),
            files: tempfile::tempdir().expect("tempdir"),
            issued: AtomicUsize::new(0),
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let pem = std::fs::read(&self.ca_pem).expect("ca.pem");
        let mut roots = RootCertStore::empty();
        for cert in persys_kit::tls::parse_certs(&pem, &self.ca_pem).expect("CA certificates") {
            roots.add(cert).expect("CA certificate");
        }
        Arc::new(roots)
    }

    /// Issues a leaf for `identity` with `ca` and loads it, trusting the cluster CA for servers.
    fn leaf(&self, ca: &Ca, identity: Identity) -> Arc<Tls> {
        let issued = ca
            .issue(&LeafRequest {
                identity,
                dns_names: service_dns_names("probe", "persys"),
                ips: vec![Ipv4Addr::LOCALHOST.into()],
                validity: Duration::from_secs(3600),
            })
            .expect("issue a leaf");
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert = self.files.path().join(format!("{n}-cert.pem"));
        let key = self.files.path().join(format!("{n}-key.pem"));
        std::fs::write(&cert, issued.cert_pem).expect("write cert");
        std::fs::write(&key, issued.key_pem).expect("write key");
        Tls::load(TlsPaths { ca: self.ca_pem.clone(), cert, key }).expect("load leaf")
    }

    /// A client config presenting `cred`, verifying the server against the cluster CA.
    fn config(&self, cred: &Cred) -> Arc<ClientConfig> {
        let tls = match cred {
            Cred::NoCert => {
                let mut config = ClientConfig::builder_with_provider(persys_kit::tls::provider())
                    .with_safe_default_protocol_versions()
                    .expect("protocol versions")
                    .with_root_certificates(self.roots())
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"h2".to_vec()];
                return Arc::new(config);
            }
            Cred::OtherCa { ca, identity } => {
                let other = &self.others.iter().find(|(name, _)| name == ca).expect("a known other CA").1;
                self.leaf(other, identity.clone())
            }
            Cred::Cluster(id) => self.leaf(&self.ca, id.clone()),
            // A URI SAN in the Persys trust domain that names neither a service nor an agent.
            Cred::Anonymous => self.leaf(&self.ca, service("not/a-persys-identity")),
            Cred::Joined(paths) => Tls::load(paths.clone()).expect("the joined agent's certificate"),
        };
        tls.client_config()
    }

    fn channel(&self, addr: SocketAddr, cred: &Cred) -> TracedChannel {
        tls_channel(&format!("http://localhost:{}", addr.port()), self.config(cred), &options()).expect("channel")
    }
}

// ---------------------------------------------------------------------------------------------
// Probes.

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Some(Duration::from_secs(15)),
        ..ClientOptions::default()
    }
}

fn h2c(addr: SocketAddr) -> TracedChannel {
    plain_channel(&format!("http://{addr}"), &options()).expect("channel")
}

/// How a TLS handshake (and the first bytes after it) went.
enum Handshake {
    /// Done, and the server spoke HTTP/2 over it.
    Accepted,
    /// The server refused with an alert.
    Alert(AlertDescription),
    /// The server closed the connection without a word.
    Closed(String),
    /// The server does not speak TLS.
    NotTls(String),
    /// Anything else: a problem of the probe, never counted as a refusal.
    Failed(String),
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted => f.write_str("accepted"),
            Self::Alert(alert) => write!(f, "refused with the alert {alert:?}"),
            Self::Closed(why) => write!(f, "closed: {why}"),
            Self::NotTls(why) => write!(f, "not TLS: {why}"),
            Self::Failed(why) => write!(f, "probe failed: {why}"),
        }
    }
}

impl Handshake {
    fn refused(&self) -> bool {
        matches!(self, Self::Alert(_) | Self::Closed(_) | Self::NotTls(_))
    }
}

fn handshake_verdict(error: std::io::Error) -> Handshake {
    use std::io::ErrorKind;
    if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::AlertReceived(alert) => Handshake::Alert(*alert),
            rustls::Error::InvalidMessage(_) => Handshake::NotTls(tls.to_string()),
            other => Handshake::Failed(other.to_string()),
        };
    }
    match error.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => Handshake::Closed(error.to_string()),
        _ => Handshake::Failed(error.to_string()),
    }
}

/// Connects to `addr`, completes a TLS handshake with `config`, sends the HTTP/2 preface and
/// reads the server's first bytes. Under TLS 1.3 a server checks the client's certificate after
/// the client considers the handshake done, so its verdict arrives on that first read.
async fn handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> Handshake {
    tokio::task::spawn_blocking(move || {
        let mut tcp = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(tcp) => tcp,
            Err(e) => return Handshake::Failed(format!("connect: {e}")),
        };
        let timeout = Some(Duration::from_secs(10));
        tcp.set_read_timeout(timeout).expect("read timeout");
        tcp.set_write_timeout(timeout).expect("write timeout");
        let name = ServerName::try_from("localhost").expect("server name");
        let mut conn = rustls::ClientConnection::new(config, name).expect("client connection");
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        if let Err(e) = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").and_then(|()| stream.flush()) {
            return handshake_verdict(e);
        }
        let mut first = [0u8; 64];
        match stream.read(&mut first) {
            Ok(0) => Handshake::Closed("closed after the handshake".into()),
            Ok(_) => Handshake::Accepted,
            Err(e) => handshake_verdict(e),
        }
    })
    .await
    .expect("handshake probe")
}

/// Passes request and response messages through as bytes, so any RPC can be called.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// How a gRPC call ended.
enum Answer {
    /// The server answered OK with this message.
    Ok(Bytes),
    /// The server answered with a status.
    Status(Code, String),
    /// No answer: the connection or the handshake failed.
    Transport(String),
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok(body) => write!(f, "OK ({} bytes)", body.len()),
            Self::Status(code, message) => write!(f, "{code:?}: {message}"),
            Self::Transport(why) => write!(f, "no answer: {why}"),
        }
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Calls `path` with an empty request message (every field at its default) and `metadata`.
async fn call(channel: TracedChannel, path: &'static str, metadata: &[(&'static str, String)]) -> Answer {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return Answer::Transport(error_chain(&*Into::<Box<dyn std::error::Error + Send + Sync>>::into(e)));
    }
    let mut request = tonic::Request::new(Bytes::new());
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, MetadataValue::try_from(value.as_str()).expect("metadata value"));
    }
    match grpc.unary(request, http::uri::PathAndQuery::from_static(path), Raw).await {
        Ok(response) => Answer::Ok(response.into_inner()),
        // Statuses a client makes up for a failed connection carry their cause; a server's don't.
        Err(status) => match std::error::Error::source(&status) {
            Some(cause) => {
                Answer::Transport(format!("{:?} {}: {}", status.code(), status.message(), error_chain(cause)))
            }
            None => Answer::Status(status.code(), status.message().to_owned()),
        },
    }
}

fn is_transport(answer: &Answer) -> bool {
    matches!(answer, Answer::Transport(_))
}

fn code_in(answer: &Answer, codes: &[Code]) -> bool {
    matches!(answer, Answer::Status(code, _) if codes.contains(code))
}

/// The call reached its handler: OK, or an answer that is not a refusal.
fn served(answer: &Answer) -> bool {
    match answer {
        Answer::Ok(_) => true,
        Answer::Status(code, _) => !REFUSED_OR_ABSENT.contains(code),
        Answer::Transport(_) => false,
    }
}

fn health_serving(answer: &Answer) -> bool {
    matches!(answer, Answer::Ok(body) if tonic_health::pb::HealthCheckResponse::decode(body.clone())
        .is_ok_and(|r| r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32))
}

/// gRPC metadata to send with a call.
type Metadata = Vec<(&'static str, String)>;

/// `x-persys-user-*` metadata claiming an admin: only the gateway's certificate may carry it.
fn forged_admin() -> Metadata {
    vec![
        ("x-persys-user-id", "forged".into()),
        ("x-persys-user-name", "forged".into()),
        ("x-persys-user-role", "admin".into()),
    ]
}

fn bearer(token: &str) -> Metadata {
    vec![("authorization", format!("Bearer {token}"))]
}

/// One HTTP/1.1 exchange over plain TCP: status, headers, body.
async fn http1(
    addr: SocketAddr,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| error_chain(&e))?;
        tokio::spawn(conn);
        let response = sender.send_request(request).await.map_err(|e| error_chain(&e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| error_chain(&e))?.to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(Duration::from_secs(15), exchange).await.map_err(|_| "timed out".to_owned())?
}

fn get(addr: SocketAddr, path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path).header(http::header::HOST, addr.to_string()).body(Full::default()).expect("request")
}

/// A gRPC-web call of `path` with an empty message; returns the HTTP status and `grpc-status`
/// (from the headers of a trailers-only answer, or from the trailer frame of the body).
async fn grpc_web(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, Option<i32>), String> {
    let mut request = http::Request::post(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/grpc-web+proto")
        .header("x-grpc-web", "1");
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))).expect("request");
    let (status, headers, body) = http1(addr, request).await?;
    let from_headers = headers.get("grpc-status").and_then(|v| v.to_str().ok()?.parse().ok());
    let mut rest = &body[..];
    let mut from_trailers = None;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(frame) = rest.get(5..5 + len) else { break };
        if rest[0] & 0x80 != 0 {
            from_trailers = String::from_utf8_lossy(frame)
                .split("\r\n")
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("grpc-status:")?.trim().parse().ok());
        }
        rest = &rest[5 + len..];
    }
    Ok((status.as_u16(), from_headers.or(from_trailers)))
}

// ---------------------------------------------------------------------------------------------
// The scan.

/// What was checked, and what failed.
#[derive(Default)]
struct Findings {
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Findings {
    fn check(&mut self, port: &str, what: &str, ok: bool, got: &dyn fmt::Debug) {
        let line = format!("{} {port}: {what}: {got:?}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failures.push(line.clone());
        }
        self.lines.push(line);
    }

    fn note(&mut self, line: String) {
        self.lines.push(line);
    }
}

/// Processes sharing one CA, and what the probes need to know about them.
struct Group {
    name: &'static str,
    processes: Vec<Process>,
    pki: Pki,
    /// The bootstrap admin's password, for the gateway's public port.
    admin_password: Option<String>,
    /// Whether the gateway's public port was started with `--public-tls`.
    public_tls: bool,
    /// A real agent's certificate, when the group has an agent.
    joined_agent: Option<TlsPaths>,
}

impl Group {
    /// The certificates of agents to try: the real one and one minted for a node that never
    /// joined.
    fn agents(&self) -> Vec<Cred> {
        let mut out = vec![Cred::Cluster(agent("intruder"))];
        out.extend(self.joined_agent.clone().map(Cred::Joined));
        out
    }
}

/// Finds every listening socket of the group's processes, maps each to its role, probes it, and
/// looks again at the end for sockets opened meanwhile.
async fn scan(group: &Group) {
    let mut f = Findings::default();
    let mut plan: Vec<(String, SocketAddr, Role)> = Vec::new();
    let mut seen: BTreeMap<u32, BTreeSet<Socket>> = BTreeMap::new();
    for process in &group.processes {
        let sockets = listening(process.pid);
        f.note(format!(
            "{}/{} (pid {}, {}): {} listening socket(s)",
            group.name,
            process.label,
            process.pid,
            process.exe.display(),
            sockets.len()
        ));
        for socket in &sockets {
            let names: Vec<&(String, String, SocketAddr)> =
                process.announced.iter().filter(|(_, _, a)| socket.proto == Proto::Tcp && *a == socket.addr).collect();
            let roles: Vec<Option<&Documented>> = names
                .iter()
                .map(|(service, name, _)| PORTS.iter().find(|d| d.service == service && d.name == name))
                .collect();
            let port = format!("{}/{} {socket}", group.name, process.label);
            let described =
                names.iter().map(|(service, name, _)| format!("{service}.{name}")).collect::<Vec<_>>().join(" = ");
            let role = match roles.as_slice() {
                [] => None,
                [first, rest @ ..] => {
                    first.filter(|d| rest.iter().all(|r| r.is_some_and(|r| r.role == d.role))).map(|d| d.role)
                }
            };
            let what = if names.is_empty() {
                "classified (the process announced no such address, so it has no role)".to_owned()
            } else {
                format!("classified as {described} (in the PORTS table, one role)")
            };
            f.check(&port, &what, role.is_some(), &role);
            if let (Some(role), Some(Some(doc))) = (role, roles.first()) {
                f.note(format!("     {port} is {role:?}: {}", doc.policy));
            }
            f.check(&port, "bound to loopback only", socket.addr.ip().is_loopback(), &socket.addr.ip());
            if let Some(role) = role {
                plan.push((format!("{port} {described}"), socket.addr, role));
            }
        }
        for (service, name, addr) in &process.announced {
            let socket = Socket { proto: Proto::Tcp, addr: *addr };
            f.check(
                &format!("{}/{} {service}.{name}", group.name, process.label),
                "the announced address is listening",
                sockets.contains(&socket),
                addr,
            );
        }
        seen.insert(process.pid, sockets);
    }
    assert!(!plan.is_empty(), "no port found at all: the discovery is broken");

    for (port, addr, role) in &plan {
        match role {
            Role::GatewayPublic => check_public(group, port, *addr, &mut f).await,
            Role::GatewayInternal => check_mtls(group, port, *addr, gateway_internal(group), &mut f).await,
            Role::SchedulerMtls => check_mtls(group, port, *addr, scheduler_mtls(group), &mut f).await,
            Role::AnalyzerMtls => check_mtls(group, port, *addr, analyzer_mtls(group), &mut f).await,
            Role::MetricsMtls => check_mtls(group, port, *addr, metrics_mtls(group), &mut f).await,
            Role::SchedulerBootstrap => check_bootstrap(group, port, *addr, &mut f).await,
            Role::AgentAdminApi => check_agent_admin(group, port, *addr, &mut f).await,
            Role::AdminHttp => check_admin_http(group, port, *addr, &mut f).await,
        }
    }

    // A port opened while the probes ran (lazily, on a first call) was not classified above.
    for process in &group.processes {
        let now = listening(process.pid);
        let before = &seen[&process.pid];
        let new: Vec<String> = now.difference(before).map(ToString::to_string).collect();
        f.check(&format!("{}/{}", group.name, process.label), "no socket opened during the scan", new.is_empty(), &new);
    }

    let report = f.lines.join("\n");
    eprintln!("{report}");
    assert!(
        f.failures.is_empty(),
        "{} failure(s):\n{}\n\nfull scan:\n{report}",
        f.failures.len(),
        f.failures.join("\n")
    );
}

/// What an mTLS port admits: `allowed` may call `rpc` (with `metadata`), and each of `denied`
/// (credential, path, metadata, acceptable codes) is refused.
struct Mtls {
    rpc: &'static str,
    allowed: Identity,
    metadata: Metadata,
    denied: Vec<Denied>,
    /// Calls whose answer is reported but not judged.
    noted: Vec<(Cred, &'static str)>,
}

/// A call that must be refused: credential, path, metadata, the acceptable codes.
type Denied = (Cred, &'static str, Metadata, &'static [Code]);

fn scheduler_mtls(group: &Group) -> Mtls {
    let mut denied = Vec::new();
    for agent in group.agents() {
        denied.push((agent.clone(), LIST_NODES, forged_admin(), PD));
        denied.push((agent.clone(), CREATE_JOIN_TOKEN, forged_admin(), PD));
        denied.push((agent.clone(), RUN_HOST_COMMAND, vec![], PD));
        denied.push((agent, JOIN, vec![], PD));
    }
    for other in ["analyzer", "metrics", "reconciler", "scheduler"] {
        denied.push((Cred::Cluster(service(other)), LIST_NODES, forged_admin(), PD));
    }
    // The stack's identity is admitted by the policy, but only the gateway vouches for users.
    denied.push((Cred::Cluster(service("stack")), LIST_NODES, forged_admin(), UNAUTHENTICATED));
    denied.push((Cred::Cluster(service("stack")), CREATE_JOIN_TOKEN, forged_admin(), UNAUTHENTICATED));
    // The gateway's certificate is for SchedulerService only.
    for path in [CONNECT, RENEW, JOIN, RUN_HOST_COMMAND] {
        denied.push((Cred::Cluster(service("gateway")), path, forged_admin(), PD));
    }
    denied.push((Cred::Cluster(service("analyzer")), CONNECT, vec![], PD));
    denied.push((Cred::Anonymous, HEALTH, vec![], UNAUTHENTICATED));
    denied.push((Cred::Anonymous, LIST_NODES, forged_admin(), UNAUTHENTICATED));
    Mtls { rpc: LIST_NODES, allowed: service("gateway"), metadata: forged_admin(), denied, noted: vec![] }
}

fn gateway_internal(group: &Group) -> Mtls {
    let mut denied = Vec::new();
    for agent in group.agents() {
        denied.push((agent.clone(), LIST_NODES, forged_admin(), PD));
        denied.push((agent, LIST_USERS, forged_admin(), REFUSED_OR_ABSENT));
    }
    // No user API on the internal port, whoever asks.
    denied.push((Cred::Cluster(service("analyzer")), LIST_USERS, forged_admin(), REFUSED_OR_ABSENT));
    denied.push((Cred::Cluster(service("scheduler")), LOGIN, vec![], REFUSED_OR_ABSENT));
    denied.push((Cred::Cluster(service("scheduler")), LIST_NODES, forged_admin(), REFUSED_OR_ABSENT));
    denied.push((Cred::Anonymous, HEALTH, vec![], UNAUTHENTICATED));
    denied.push((Cred::Anonymous, LIST_USERS, forged_admin(), UNAUTHENTICATED));
    // The kit opens health and reflection to any identity of the CA, agents included.
    let noted = group.agents().into_iter().map(|a| (a, HEALTH)).collect();
    Mtls { rpc: HEALTH, allowed: service("scheduler"), metadata: vec![], denied, noted }
}

fn analyzer_mtls(group: &Group) -> Mtls {
    let mut denied = Vec::new();
    for agent in group.agents() {
        denied.push((agent, VALIDATE, forged_admin(), PD));
    }
    for other in ["scheduler", "metrics", "analyzer"] {
        denied.push((Cred::Cluster(service(other)), VALIDATE, forged_admin(), PD));
    }
    denied.push((Cred::Cluster(service("gateway")), LIST_NODES, forged_admin(), PD));
    denied.push((Cred::Anonymous, HEALTH, vec![], UNAUTHENTICATED));
    denied.push((Cred::Anonymous, VALIDATE, vec![], UNAUTHENTICATED));
    Mtls { rpc: VALIDATE, allowed: service("gateway"), metadata: vec![], denied, noted: vec![] }
}

fn metrics_mtls(group: &Group) -> Mtls {
    let mut denied = Vec::new();
    for agent in group.agents() {
        denied.push((agent, LIST_ALERT_RULES, forged_admin(), PD));
    }
    for other in ["scheduler", "metrics", "analyzer"] {
        denied.push((Cred::Cluster(service(other)), LIST_ALERT_RULES, forged_admin(), PD));
    }
    // Only agents ship samples.
    denied.push((Cred::Cluster(service("gateway")), INGEST, vec![], PD));
    denied.push((Cred::Anonymous, HEALTH, vec![], UNAUTHENTICATED));
    denied.push((Cred::Anonymous, LIST_ALERT_RULES, forged_admin(), UNAUTHENTICATED));
    // The stack's and the reconciler's identities are callers the pipeline admits and serves as
    // themselves (a service, no user: the reconciler records deployments that way).
    let noted = vec![(Cred::Cluster(service("stack")), LIST_ALERT_RULES)];
    Mtls { rpc: LIST_ALERT_RULES, allowed: service("gateway"), metadata: forged_admin(), denied, noted }
}

async fn check_mtls(group: &Group, port: &str, addr: SocketAddr, spec: Mtls, f: &mut Findings) {
    let pki = &group.pki;
    let rpc = spec.rpc;

    // 1. No client certificate: TLS without one, and plaintext HTTP/2.
    let h = handshake(addr, pki.config(&Cred::NoCert)).await;
    f.check(port, "TLS without a client certificate is refused in the handshake", h.refused(), &h);
    let a = call(pki.channel(addr, &Cred::NoCert), rpc, &spec.metadata).await;
    f.check(port, &format!("{rpc} without a client certificate is refused"), is_transport(&a), &a);
    for path in [HEALTH, rpc] {
        let a = call(h2c(addr), path, &forged_admin()).await;
        f.check(port, &format!("{path} in plaintext HTTP/2 is refused"), is_transport(&a), &a);
    }

    // 2. Other CAs' certificates, naming the very identity this port admits.
    for ca in OTHER_CAS {
        let other = Cred::OtherCa { ca, identity: spec.allowed.clone() };
        let h = handshake(addr, pki.config(&other)).await;
        f.check(port, &format!("TLS with {other} is refused in the handshake"), h.refused(), &h);
        let a = call(pki.channel(addr, &other), rpc, &spec.metadata).await;
        f.check(port, &format!("{rpc} with {other} is refused"), is_transport(&a), &a);
    }

    // Positive control: the admitted identity gets through the same probes, so the refusals
    // above are the port's doing.
    let allowed = Cred::Cluster(spec.allowed.clone());
    let h = handshake(addr, pki.config(&allowed)).await;
    f.check(port, &format!("TLS with {allowed} is accepted"), matches!(h, Handshake::Accepted), &h);
    let a = call(pki.channel(addr, &allowed), rpc, &spec.metadata).await;
    f.check(port, &format!("{rpc} with {allowed} is served"), served(&a), &a);

    // 3. Valid certificates of the cluster CA naming the wrong identity.
    for (cred, path, metadata, codes) in &spec.denied {
        let a = call(pki.channel(addr, cred), path, metadata).await;
        let forged = if metadata.is_empty() { "" } else { " (claiming an admin user)" };
        f.check(port, &format!("{path} with {cred}{forged} is answered {codes:?}"), code_in(&a, codes), &a);
    }
    for (cred, path) in &spec.noted {
        let a = call(pki.channel(addr, cred), path, &[]).await;
        f.note(format!("note {port}: {path} with {cred} (not judged): {a:?}"));
    }
}

async fn check_bootstrap(group: &Group, port: &str, addr: SocketAddr, f: &mut Findings) {
    let pki = &group.pki;
    for path in [HEALTH, JOIN] {
        let a = call(h2c(addr), path, &[]).await;
        f.check(port, &format!("{path} in plaintext HTTP/2 is refused"), is_transport(&a), &a);
    }
    // Server-side TLS only: no client certificate needed, none asked for.
    for cred in [Cred::NoCert, other_ca(service("gateway"))] {
        let h = handshake(addr, pki.config(&cred)).await;
        f.check(port, &format!("TLS with {cred} is accepted (server-auth only)"), matches!(h, Handshake::Accepted), &h);
    }
    // Join is reachable without a client certificate: an empty CSR reaches its handler.
    let a = call(pki.channel(addr, &Cred::NoCert), JOIN, &[]).await;
    let reached = matches!(&a, Answer::Status(Code::InvalidArgument, m) if m.contains("csr_pem"));
    f.check(port, "Join without a client certificate reaches its handler (INVALID_ARGUMENT on csr_pem)", reached, &a);
    // Nothing else of the scheduler's API, whatever certificate is offered (none is asked for).
    let mut creds = vec![Cred::NoCert, other_ca(service("gateway")), Cred::Cluster(service("gateway"))];
    creds.extend(group.agents());
    for cred in &creds {
        for path in [RENEW, LIST_NODES, CREATE_JOIN_TOKEN, CONNECT, RUN_HOST_COMMAND] {
            let a = call(pki.channel(addr, cred), path, &forged_admin()).await;
            let codes = if path == RENEW { UNAUTHENTICATED } else { REFUSED_OR_ABSENT };
            f.check(
                port,
                &format!("{path} with {cred} (claiming an admin user) is answered {codes:?}"),
                code_in(&a, codes),
                &a,
            );
        }
    }
}

async fn check_public(group: &Group, port: &str, addr: SocketAddr, f: &mut Findings) {
    let pki = &group.pki;
    let user_channel = || if group.public_tls { pki.channel(addr, &Cred::NoCert) } else { h2c(addr) };
    if group.public_tls {
        let a = call(h2c(addr), HEALTH, &[]).await;
        f.check(port, "plaintext HTTP/2 is refused (--public-tls)", is_transport(&a), &a);
        for cred in [Cred::NoCert, other_ca(service("gateway"))] {
            let h = handshake(addr, pki.config(&cred)).await;
            f.check(
                port,
                &format!("TLS with {cred} is accepted (no client certificate asked for)"),
                matches!(h, Handshake::Accepted),
                &h,
            );
        }
    } else {
        let h = handshake(addr, pki.config(&Cred::NoCert)).await;
        f.check(port, "TLS is refused (plaintext unless --public-tls)", h.refused(), &h);
    }

    // Open without a token: health, reflection, login.
    let a = call(user_channel(), HEALTH, &[]).await;
    f.check(port, "health without a token is SERVING", health_serving(&a), &a);
    let password = group.admin_password.clone().expect("the admin's password");
    let login = AuthServiceClient::new(user_channel())
        .login(LoginRequest { username: ADMIN.into(), password })
        .await
        .map(|r| r.into_inner().access_token);
    f.check(
        port,
        "Login without a token is served",
        login.as_ref().is_ok_and(|t| !t.is_empty()),
        &login.as_ref().map(|_| "token"),
    );
    let token = login.unwrap_or_default();

    // Everything else needs a bearer token; certificates and forged metadata count for nothing.
    let mut attempts: Vec<(String, TracedChannel, Metadata)> = vec![
        ("no token".into(), user_channel(), vec![]),
        ("no token, claiming an admin user".into(), user_channel(), forged_admin()),
        ("a forged bearer token".into(), user_channel(), bearer("not-a-token")),
    ];
    if group.public_tls {
        for cred in [other_ca(service("gateway")), Cred::Cluster(service("gateway")), Cred::Cluster(agent("intruder"))]
        {
            attempts.push((
                format!("{cred}, no token, claiming an admin user"),
                pki.channel(addr, &cred),
                forged_admin(),
            ));
        }
    }
    for (how, channel, metadata) in attempts {
        for path in [LIST_NODES, CREATE_JOIN_TOKEN, LIST_USERS, JOIN, RENEW, CONNECT] {
            let a = call(channel.clone(), path, &metadata).await;
            f.check(port, &format!("{path} with {how} is UNAUTHENTICATED"), code_in(&a, UNAUTHENTICATED), &a);
        }
    }

    // With the token: what users may do is served, what only machines and services may do is
    // still refused (the scheduler judges the gateway's certificate).
    let with_token = bearer(&token);
    for path in [LIST_NODES, LIST_USERS] {
        let a = call(user_channel(), path, &with_token).await;
        f.check(port, &format!("{path} with the admin's token is served"), matches!(a, Answer::Ok(_)), &a);
    }
    for path in [JOIN, RENEW, CONNECT, RUN_HOST_COMMAND] {
        let a = call(user_channel(), path, &with_token).await;
        f.check(port, &format!("{path} with the admin's token is refused"), code_in(&a, REFUSED_OR_ABSENT), &a);
    }

    // gRPC-web (HTTP/1.1), on a plaintext public port.
    if !group.public_tls {
        let r = grpc_web(addr, HEALTH, None).await;
        f.check(port, "gRPC-web health without a token is OK", matches!(r, Ok((200, Some(0)))), &r);
        let r = grpc_web(addr, LIST_NODES, None).await;
        f.check(port, "gRPC-web ListNodes without a token is UNAUTHENTICATED", matches!(r, Ok((_, Some(16)))), &r);
        let r = grpc_web(addr, LIST_NODES, Some(&token)).await;
        f.check(port, "gRPC-web ListNodes with the admin's token is OK", matches!(r, Ok((200, Some(0)))), &r);
    }
}

async fn check_agent_admin(group: &Group, port: &str, addr: SocketAddr, f: &mut Findings) {
    let h = handshake(addr, group.pki.config(&Cred::NoCert)).await;
    f.check(port, "TLS is refused (plaintext admin API)", h.refused(), &h);
    // Documented: the local admin API answers anyone on loopback (bound there, checked above).
    let a = call(h2c(addr), AGENT_STATUS, &[]).await;
    f.check(port, "GetStatus in plaintext is served (local admin API)", matches!(a, Answer::Ok(_)), &a);
    // It relays nothing of the scheduler's or the gateway's API.
    for path in [LIST_NODES, CREATE_JOIN_TOKEN, CONNECT, JOIN, RENEW, RUN_HOST_COMMAND, LIST_USERS, VALIDATE] {
        let a = call(h2c(addr), path, &forged_admin()).await;
        f.check(port, &format!("{path} is not served"), code_in(&a, ABSENT), &a);
    }
}

async fn check_admin_http(group: &Group, port: &str, addr: SocketAddr, f: &mut Findings) {
    let h = handshake(addr, group.pki.config(&Cred::NoCert)).await;
    f.check(port, "TLS is refused (plain HTTP)", h.refused(), &h);
    let r = http1(addr, get(addr, "/healthz")).await;
    f.check(port, "GET /healthz is 200 ok", matches!(&r, Ok((s, _, b)) if *s == 200 && b.as_ref() == b"ok"), &r);
    let r = http1(addr, get(addr, "/metrics")).await;
    let text = |h: &http::HeaderMap| {
        h.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
    };
    f.check(
        port,
        "GET /metrics is 200 text/plain",
        matches!(&r, Ok((s, h, _)) if *s == 200 && text(h)),
        &r.map(|(s, h, _)| (s, h)),
    );
    for path in ["/", "/debug/pprof", LIST_NODES] {
        let r = http1(addr, get(addr, path)).await;
        f.check(port, &format!("GET {path} is 404"), matches!(&r, Ok((s, _, _)) if *s == 404), &r.map(|(s, _, _)| s));
    }
    // No gRPC here, in HTTP/2 or gRPC-web.
    let a = call(h2c(addr), LIST_NODES, &forged_admin()).await;
    f.check(port, "gRPC ListNodes is not served", code_in(&a, ABSENT), &a);
    let r = grpc_web(addr, LIST_NODES, None).await;
    f.check(port, "gRPC-web ListNodes is 404", matches!(&r, Ok((404, _))), &r);
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// The all-in-one stack, started here rather than with [`Service`], which keeps one ready line:
/// the stack prints one per service it runs, and every one of their addresses is needed.
struct Stack {
    child: tokio::process::Child,
    dir: TempDir,
    lines: BTreeMap<String, Vec<(String, SocketAddr)>>,
}

impl Stack {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        // A password starting with `-`, as one random password in 64 does: the stack must pass
        // it to its gateway as one argument, not one clap reads as a flag (it once did). A
        // restarted stack finds its password here.
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::write(state.join("admin-password"), "-port-scan-admin-password-0123456789").expect("admin password");
        let log = std::fs::File::create(dir.path().join("stack.log")).expect("log");
        let mut child = tokio::process::Command::new(bin("persys-stack").expect("persys-stack"))
            .args(["--dir", state.to_str().expect("utf-8"), "--listen", "127.0.0.1:0", "--driver", "process"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start persys-stack");
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut lines: BTreeMap<String, Vec<(String, SocketAddr)>> = BTreeMap::new();
        let wanted = ["scheduler", "gateway", "agent", "analyzer", "metrics-pipeline", "persys-stack"];
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = out.next_line().await.expect("stdout") {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let (Some(service), Some(fields)) = (value["service"].as_str(), value.as_object()) else { continue };
                if value["event"] != "ready" {
                    continue;
                }
                let addrs = fields.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?))).collect();
                lines.insert(service.to_owned(), addrs);
                if wanted.iter().all(|w| lines.contains_key(*w)) {
                    return true;
                }
            }
            false
        })
        .await;
        let log = || std::fs::read_to_string(dir.path().join("stack.log")).unwrap_or_default();
        assert!(matches!(ready, Ok(true)), "persys-stack never announced {wanted:?} (got {lines:?}):\n{}", log());
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        Self { child, dir, lines }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn announced(&self) -> Vec<(String, String, SocketAddr)> {
        self.lines
            .iter()
            .flat_map(|(service, addrs)| addrs.iter().map(move |(name, addr)| (service.clone(), name.clone(), *addr)))
            .collect()
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// The certificate files of the first agent state directory under `dir`.
fn agent_cert_under(dir: &Path) -> Option<TlsPaths> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("node-id").exists() && d.join("cert.pem").exists() {
            return Some(TlsPaths { ca: d.join("ca.pem"), cert: d.join("cert.pem"), key: d.join("key.pem") });
        }
        stack.extend(std::fs::read_dir(&d).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_of_the_all_in_one_stack_refuses_what_it_must() {
    let stack = Stack::start().await;
    let state = stack.state();
    let group = Group {
        name: "stack",
        processes: vec![Process::new("persys-stack", stack.announced())],
        pki: Pki::new(&state.join("certs")),
        admin_password: Some(
            std::fs::read_to_string(state.join("admin-password")).expect("admin password").trim().into(),
        ),
        public_tls: false,
        joined_agent: Some(agent_cert_under(&state.join("agent-state")).expect("the built-in agent's certificate")),
    };
    scan(&group).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_of_a_cluster_refuses_what_it_must() {
    let Some(docker_host) = require_env("DOCKER_HOST", "a Docker engine for the agent") else { return };
    // The public port speaks TLS here (the stack above covers the plaintext default).
    let cluster = Cluster::start(ClusterOptions { gateway_args: vec!["--public-tls".into()], ..Default::default() })
        .await
        .expect("cluster");
    let pki = Pki::new(&cluster.certs());
    let public = cluster.gateway.addr("public");
    let token = AuthServiceClient::new(pki.channel(public, &Cred::NoCert))
        .login(LoginRequest { username: ADMIN.into(), password: ADMIN_PASSWORD.into() })
        .await
        .expect("admin login over TLS")
        .into_inner()
        .access_token;
    let join =
        SchedulerServiceClient::with_interceptor(pki.channel(public, &Cred::NoCert), persys_e2e::stack::bearer(token))
            .create_join_token(CreateJoinTokenRequest::default())
            .await
            .expect("join token")
            .into_inner()
            .token;
    let agent = cluster.agent("scan-node", &join, &docker_host).await.expect("agent");
    let scheduler = cluster.scheduler.as_ref().expect("scheduler");
    let group = Group {
        name: "cluster",
        processes: vec![
            Process::of("gateway", "gateway", &cluster.gateway),
            Process::of("scheduler", "scheduler", scheduler),
            Process::of("agent", "agent", &agent),
        ],
        pki,
        admin_password: Some(ADMIN_PASSWORD.into()),
        public_tls: true,
        joined_agent: Some(
            agent_cert_under(&cluster.dir.path().join("agent-scan-node")).expect("the agent's certificate"),
        ),
    };
    scan(&group).await;
    agent.stop().await.expect("agent stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_of_the_analyzer_refuses_what_it_must() {
    let analyzer = Analyzer::start(&[]).await.expect("analyzer");
    let group = Group {
        name: "analyzer",
        processes: vec![Process::of("analyzer", "analyzer", &analyzer.service)],
        pki: Pki::new(&analyzer.certs()),
        admin_password: None,
        public_tls: false,
        joined_agent: None,
    };
    scan(&group).await;
}
