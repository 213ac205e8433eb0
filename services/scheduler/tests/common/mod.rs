//! Test fixtures: a scheduler served in-process on loopback with real mTLS, callers that act as
//! the gateway for a given user, and fake agents that join with a token and speak the real
//! stream (their "driver" only pretends to run containers).

#![allow(dead_code)]

use std::{path::Path, sync::Arc, time::Duration};

use persys_client::{CertsDir, Connection, testing::AsUser};
use persys_kit::{
    Identity,
    client::{ClientOptions, mtls_channel, tls_channel},
    pki::{Ca, LeafRequest, service_dns_names},
    shutdown::{self, ShutdownTrigger},
    tls::{Tls, TlsPaths},
};
use persys_proto::scheduler::v1::{
    self as pb, agent_service_client::AgentServiceClient, bootstrap_service_client::BootstrapServiceClient,
    connect_request, connect_response::Payload, scheduler_service_client::SchedulerServiceClient,
};
use persys_scheduler::{config::Config, kv::Kv};
use tempfile::TempDir;
use tokio::sync::mpsc;

/// A CA and the certificates a test needs, on disk.
pub struct Pki {
    pub dir: TempDir,
    pub ca: Ca,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("ca-key.pem"), ca.key_pem()).unwrap();
        let pki = Self { dir, ca };
        for service in ["scheduler", "gateway", "analyzer"] {
            pki.issue(service, Identity::Service(service.into()));
        }
        pki
    }

    pub fn issue(&self, name: &str, identity: Identity) -> TlsPaths {
        let leaf = self
            .ca
            .issue(&LeafRequest {
                identity,
                dns_names: service_dns_names(name, "persys"),
                ips: vec!["127.0.0.1".parse().unwrap()],
                validity: Duration::from_secs(3600),
            })
            .unwrap();
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cert.pem"), leaf.cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), leaf.key_pem).unwrap();
        self.paths(name)
    }

    pub fn paths(&self, name: &str) -> TlsPaths {
        CertsDir::new(self.dir.path()).paths(name)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Scheduler flags for tests: loopback ports, fast liveness; `extra` holds `--flag value`
/// pairs that replace the defaults.
pub fn config(pki: &Pki, prefix: &str, extra: &[&str]) -> Config {
    use clap::Parser;
    let d = pki.path();
    let mut flags: Vec<(String, String)> = [
        ("--listen", "127.0.0.1:0"),
        ("--bootstrap-listen", "127.0.0.1:0"),
        ("--heartbeat", "200ms"),
        ("--lease-ttl", "1s"),
        ("--down-grace", "1s"),
        ("--admin-listen", "off"),
        ("--etcd", "memory"),
        ("--prefix", prefix),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, file) in [
        ("--ca-key", "ca-key.pem"),
        ("--tls-ca", "ca.pem"),
        ("--tls-cert", "scheduler/cert.pem"),
        ("--tls-key", "scheduler/key.pem"),
    ] {
        flags.push((k.into(), d.join(file).display().to_string()));
    }
    for pair in extra.chunks(2) {
        let (k, v) = (pair[0].to_string(), pair.get(1).map(|v| v.to_string()).unwrap_or_default());
        match flags.iter_mut().find(|(f, _)| *f == k) {
            Some(slot) => slot.1 = v,
            None => flags.push((k, v)),
        }
    }
    // A flag given without a value (e.g. `--require-limits`) is a switch.
    let args = std::iter::once("scheduler".to_string())
        .chain(flags.into_iter().flat_map(|(k, v)| if v.is_empty() { vec![k] } else { vec![k, v] }));
    Config::try_parse_from(args).unwrap()
}

/// A running scheduler.
pub struct Served<K> {
    pub running: persys_scheduler::Running<K>,
    pub trigger: ShutdownTrigger,
}

pub async fn serve<K: Kv>(kv: Arc<K>, config: Config) -> Served<K> {
    let (trigger, handle) = shutdown::channel();
    let running = persys_scheduler::start(kv, config, handle).await.unwrap();
    Served { running, trigger }
}

pub type Api = SchedulerServiceClient<persys_client::testing::UserChannel>;

/// A client acting through the gateway's certificate for `user` (id and name `id`).
pub fn api(pki: &Pki, addr: std::net::SocketAddr, id: &str, role: &'static str) -> Api {
    let certs = CertsDir::new(pki.path());
    let connection =
        Connection::internal(&format!("https://localhost:{}", addr.port()), &certs, "gateway", "scheduler").unwrap();
    let role = persys_kit::identity::Role::parse(role).expect("a role name");
    persys_client::testing::scheduler_as(&connection, AsUser::named(id, role))
}

/// Creates a join token as an admin.
pub async fn token(api: &mut Api) -> String {
    api.create_join_token(pb::CreateJoinTokenRequest { description: "test".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .token
}

/// Creates a join token that any number of machines may use, as an admin.
pub async fn fleet_token(api: &mut Api) -> String {
    api.create_join_token(pb::CreateJoinTokenRequest {
        description: "test fleet".into(),
        unlimited_uses: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .token
}

/// What a fake agent saw.
#[derive(Debug)]
pub enum Seen {
    Welcome,
    Command(String, Box<Payload>),
}

/// A fake agent: joined for real, streaming for real, running nothing.
pub struct FakeAgent {
    pub node_id: String,
    pub tls: Arc<Tls>,
    pub dir: TempDir,
    up: mpsc::Sender<pb::ConnectRequest>,
    pub seen: mpsc::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

pub fn capacity(cpu: i64, mem: i64) -> persys_proto::common::v1::ResourceQuantities {
    persys_proto::common::v1::ResourceQuantities { cpu_millis: cpu, memory_bytes: mem, disk_bytes: 10 << 30 }
}

/// Joins through the bootstrap port and returns the node id and its TLS material.
pub async fn join(
    pki: &Pki,
    bootstrap: std::net::SocketAddr,
    token: &str,
    hostname: &str,
) -> Result<(String, Arc<Tls>, TempDir), tonic::Status> {
    let request = pb::JoinRequest {
        token: token.into(),
        hostname: hostname.into(),
        capacity: Some(capacity(4000, 8 << 30)),
        ..Default::default()
    };
    join_with(pki, bootstrap, request).await
}

/// Joins with the given request (its CSR made here) and returns the node id and TLS material.
pub async fn join_with(
    pki: &Pki,
    bootstrap: std::net::SocketAddr,
    request: pb::JoinRequest,
) -> Result<(String, Arc<Tls>, TempDir), tonic::Status> {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr =
        rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().serialize_request(&key).unwrap().pem().unwrap();
    let roots = Tls::load(pki.paths("scheduler")).unwrap().roots();
    let mut config = rustls::ClientConfig::builder_with_provider(persys_kit::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let channel =
        tls_channel(&format!("https://localhost:{}", bootstrap.port()), Arc::new(config), &ClientOptions::default())
            .unwrap();
    let joined =
        BootstrapServiceClient::new(channel).join(pb::JoinRequest { csr_pem: csr, ..request }).await?.into_inner();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &joined.ca_pem).unwrap();
    std::fs::write(dir.path().join("cert.pem"), &joined.certificate_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let tls = Tls::load(TlsPaths {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    })
    .unwrap();
    Ok((joined.node_id, tls, dir))
}

/// The hello a fake agent sends: what it reported at join (no node id).
pub fn hello() -> pb::AgentHello {
    pb::AgentHello {
        addresses: vec!["192.0.2.10".into()],
        capacity: Some(capacity(4000, 8 << 30)),
        allocatable: Some(capacity(4000, 8 << 30)),
        drivers: vec!["fake".into()],
        ..Default::default()
    }
}

impl FakeAgent {
    /// Joins and connects, claiming to be `claimed` (normally its own node id).
    pub async fn start(
        pki: &Pki,
        grpc: std::net::SocketAddr,
        bootstrap: std::net::SocketAddr,
        token: &str,
        hostname: &str,
    ) -> Self {
        let (node_id, tls, dir) = join(pki, bootstrap, token, hostname).await.unwrap();
        Self::connect(grpc, node_id, tls, dir, None).await.unwrap()
    }

    /// Opens the stream as `node_id`, optionally claiming another node in hello.
    pub async fn connect(
        grpc: std::net::SocketAddr,
        node_id: String,
        tls: Arc<Tls>,
        dir: TempDir,
        claim: Option<&str>,
    ) -> Result<Self, tonic::Status> {
        let hello = pb::AgentHello { node_id: claim.unwrap_or(&node_id).to_owned(), ..hello() };
        Self::connect_with(grpc, node_id, tls, dir, hello).await
    }

    /// Opens the stream as `node_id` with the given hello.
    pub async fn connect_with(
        grpc: std::net::SocketAddr,
        node_id: String,
        tls: Arc<Tls>,
        dir: TempDir,
        hello: pb::AgentHello,
    ) -> Result<Self, tonic::Status> {
        let channel =
            mtls_channel(&format!("https://localhost:{}", grpc.port()), &tls, &ClientOptions::default()).unwrap();
        let (up, rx) = mpsc::channel(64);
        up.send(pb::ConnectRequest { payload: Some(connect_request::Payload::Hello(hello)) }).await.unwrap();
        let mut down = AgentServiceClient::new(channel)
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let (seen_tx, seen) = mpsc::channel(256);
        let first = down.message().await?;
        let Some(Payload::Welcome(welcome)) = first.as_ref().and_then(|m| m.payload.as_ref()) else {
            return Err(tonic::Status::internal(format!("expected welcome, got {first:?}")));
        };
        let every =
            welcome.heartbeat_interval.and_then(|d| Duration::try_from(d).ok()).unwrap_or(Duration::from_secs(5));
        seen_tx.send(Seen::Welcome).await.unwrap();
        let heartbeat = up.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let hb = pb::ConnectRequest { payload: Some(connect_request::Payload::Heartbeat(pb::Heartbeat::default())) };
                        if heartbeat.send(hb).await.is_err() { return; }
                    }
                    m = down.message() => match m {
                        Ok(Some(m)) => {
                            if let Some(p) = m.payload {
                                let _ = seen_tx.send(Seen::Command(m.command_id, Box::new(p))).await;
                            }
                        }
                        _ => return,
                    }
                }
            }
        });
        Ok(Self { node_id, tls, dir, up, seen, task })
    }

    /// Waits for the next command, skipping welcomes.
    pub async fn next_command(&mut self) -> (String, Payload) {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.seen.recv()).await.expect("a command within 30 s")
            {
                Some(Seen::Command(id, p)) => return (id, *p),
                Some(Seen::Welcome) => continue,
                None => panic!("stream closed"),
            }
        }
    }

    /// Reports an instance's status.
    pub async fn report(&self, workload_id: &str, instance_id: &str, phase: pb::WorkloadPhase, exit_code: Option<i32>) {
        self.up
            .send(pb::ConnectRequest {
                payload: Some(connect_request::Payload::WorkloadStatus(pb::WorkloadStatusEvent {
                    workload_id: workload_id.into(),
                    status: Some(pb::InstanceStatus {
                        instance_id: instance_id.into(),
                        node_id: self.node_id.clone(),
                        phase: phase as i32,
                        reason: format!("{phase:?}"),
                        exit_code,
                        ..Default::default()
                    }),
                    observed_at: None,
                    removed: false,
                    // Unordered, like an agent that does not number its reports.
                    sequence: 0,
                })),
            })
            .await
            .unwrap();
    }

    /// Answers a command.
    pub async fn answer(&self, command_id: &str, success: bool) {
        self.up
            .send(pb::ConnectRequest {
                payload: Some(connect_request::Payload::CommandResult(pb::CommandResult {
                    command_id: command_id.into(),
                    success,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
    }

    /// Sends raw messages (for log chunks).
    pub async fn send(&self, m: pb::ConnectRequest) {
        self.up.send(m).await.unwrap();
    }

    /// Drops the stream and stops heartbeating, like a killed agent.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Waits until a workload satisfies `done`, following WatchWorkloads (no polling).
pub async fn wait_workload(api: &mut Api, id: &str, done: impl Fn(&pb::Workload) -> bool) -> pb::Workload {
    persys_client::testing::expect_workload(api, id, Duration::from_secs(30), done).await
}

/// Returns the phase of a workload.
pub fn phase(w: &pb::Workload) -> pb::WorkloadPhase {
    pb::WorkloadPhase::try_from(w.status.as_ref().map_or(0, |s| s.phase)).unwrap()
}
