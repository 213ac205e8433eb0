//! Fixtures: a pipeline served in-process with real mTLS over a PostgreSQL database of its own,
//! agents that stream batches, and callers acting as a user through the gateway's certificate.

#![allow(dead_code)]

pub mod backends;
pub mod fakes;

use std::time::{Duration, SystemTime};

use persys_client::{CertsDir, Connection, testing::AsUser};
use persys_kit::testing::database_url;
use persys_kit::{
    Identity,
    identity::Role,
    pki::{Ca, LeafRequest, service_dns_names},
    shutdown::{self, ShutdownTrigger},
};
use persys_metrics_pipeline::{Running, config::ServeArgs};
use persys_proto::metrics::v1::{
    CpuMetrics, HostMetrics, IngestRequest, IngestResponse, LoadAverage, MemoryMetrics,
    metrics_ingest_service_client::MetricsIngestServiceClient, metrics_query_service_client::MetricsQueryServiceClient,
};
use sqlx::{AssertSqlSafe, Connection as _, postgres::PgConnection};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// The variable `scripts/test` exports: a PostgreSQL role that may create databases.
pub const PG_ADMIN_ENV: &str = "PERSYS_TEST_PG_ADMIN_URL";

fn issue(ca: &Ca, dir: &std::path::Path, name: &str, identity: Identity) {
    let leaf = ca
        .issue(&LeafRequest {
            identity,
            dns_names: service_dns_names(name, "persys"),
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("cert.pem"), leaf.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), leaf.key_pem).unwrap();
}

/// A PostgreSQL database of a test's own; [`Db::drop_now`] removes it.
pub struct Db {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl Db {
    /// Creates a database; `None` when PostgreSQL is not configured (which fails under `CI=true`).
    pub async fn create() -> Option<Self> {
        let admin_url = persys_kit::testing::require_env(PG_ADMIN_ENV, "a PostgreSQL role that may CREATE DATABASE")?;
        let name = format!("metrics_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.expect("connect with PERSYS_TEST_PG_ADMIN_URL");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await.unwrap();
        let _ = admin.close().await;
        let url = database_url(&admin_url, &name);
        Some(Self { admin_url, name, url })
    }

    /// Drops the database, closing what is still connected.
    pub async fn drop_now(self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut admin).await.unwrap();
    }
}

/// A CA with certificates for `metrics`, `gateway`, `scheduler` and agents `node-a`, `node-b`.
pub fn certs() -> TempDir {
    certs_for(&["node-a".to_owned(), "node-b".to_owned()])
}

/// A CA and certificates for the services and for agents `nodes`.
pub fn certs_for(nodes: &[String]) -> TempDir {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
    std::fs::write(certs.path().join("ca.pem"), ca.cert_pem()).unwrap();
    for service in ["metrics", "gateway", "scheduler", "reconciler"] {
        issue(&ca, certs.path(), service, Identity::Service(service.into()));
    }
    for node in nodes {
        issue(&ca, certs.path(), node, Identity::Agent(node.clone()));
    }
    certs
}

/// Clients of a pipeline at `addr` with the certificates in `certs`.
pub fn connection(certs: &std::path::Path, port: u16, me: &str) -> Connection {
    let address = format!("https://localhost:{port}");
    Connection::internal(&address, &CertsDir::new(certs), me, "metrics").unwrap()
}

/// A pipeline served in-process on its own database and certificates; call
/// [`Pipeline::finish`] to stop it and drop the database.
pub struct Pipeline {
    pub certs: TempDir,
    pub running: Running,
    trigger: ShutdownTrigger,
    db: Db,
}

impl Pipeline {
    /// Starts a pipeline; `None` when PostgreSQL is not configured.
    pub async fn start() -> Option<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a pipeline with options changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut ServeArgs)) -> Option<Self> {
        Self::start_for(certs(), configure).await
    }

    /// Starts a pipeline with the certificates in `certs` ([`certs_for`]).
    pub async fn start_for(certs: TempDir, configure: impl FnOnce(&mut ServeArgs)) -> Option<Self> {
        let db = Db::create().await?;
        let mut args = ServeArgs::loopback(&CertsDir::new(certs.path()), db.url.clone());
        args.telemetry.admin_listen = "127.0.0.1:0".into();
        configure(&mut args);
        let (trigger, handle) = shutdown::channel();
        let running = persys_metrics_pipeline::start(args, handle).await.expect("the pipeline starts");
        Some(Self { certs, running, trigger, db })
    }

    /// An ingest client presenting `me`'s certificate (`node-a`, `node-b`, or a service).
    pub fn ingest_as(&self, me: &str) -> MetricsIngestServiceClient<persys_kit::client::TracedChannel> {
        MetricsIngestServiceClient::new(connection(self.certs.path(), self.running.addr.port(), me).channel())
    }

    /// A query client acting as user `name` with `role`, through the gateway's certificate.
    pub fn query_as(&self, name: &str, role: Role) -> MetricsQueryServiceClient<persys_client::testing::UserChannel> {
        let channel = connection(self.certs.path(), self.running.addr.port(), "gateway").channel();
        MetricsQueryServiceClient::with_interceptor(channel, AsUser::named(name, role))
    }

    /// An alert client acting as user `name` with `role`, through the gateway's certificate.
    pub fn alerts_as(
        &self,
        name: &str,
        role: Role,
    ) -> persys_proto::metrics::v1::alert_service_client::AlertServiceClient<persys_client::testing::UserChannel> {
        let channel = connection(self.certs.path(), self.running.addr.port(), "gateway").channel();
        persys_proto::metrics::v1::alert_service_client::AlertServiceClient::with_interceptor(
            channel,
            AsUser::named(name, role),
        )
    }

    /// A DORA client acting as user `name` with `role`, through the gateway's certificate.
    pub fn dora_as(
        &self,
        name: &str,
        role: Role,
    ) -> persys_proto::metrics::v1::dora_service_client::DoraServiceClient<persys_client::testing::UserChannel> {
        let channel = connection(self.certs.path(), self.running.addr.port(), "gateway").channel();
        persys_proto::metrics::v1::dora_service_client::DoraServiceClient::with_interceptor(
            channel,
            AsUser::named(name, role),
        )
    }

    /// A DORA client presenting service `me`'s certificate (no user), e.g. `reconciler`.
    pub fn dora_service(
        &self,
        me: &str,
    ) -> persys_proto::metrics::v1::dora_service_client::DoraServiceClient<persys_kit::client::TracedChannel> {
        persys_proto::metrics::v1::dora_service_client::DoraServiceClient::new(
            connection(self.certs.path(), self.running.addr.port(), me).channel(),
        )
    }

    /// Another pipeline on the same database and certificates (a replica); stop it with the
    /// trigger.
    pub async fn replica(&self, configure: impl FnOnce(&mut ServeArgs)) -> (Running, ShutdownTrigger) {
        let mut args = ServeArgs::loopback(&CertsDir::new(self.certs.path()), self.db.url.clone());
        args.telemetry.admin_listen = "off".into();
        configure(&mut args);
        let (trigger, handle) = shutdown::channel();
        let running = persys_metrics_pipeline::start(args, handle).await.expect("the replica starts");
        (running, trigger)
    }

    /// Stops the pipeline and drops its database.
    pub async fn finish(self) {
        self.trigger.trigger();
        let _ = self.running.served.await;
        self.running.store.close().await;
        self.db.drop_now().await;
    }
}

/// Answers `GET path` on the plain HTTP server at `addr`: status line and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

/// An open ingest stream: batches go in, acknowledgements come out.
pub struct AgentStream {
    tx: mpsc::Sender<IngestRequest>,
    pub acks: Streaming<IngestResponse>,
}

impl AgentStream {
    pub async fn open(
        client: &mut MetricsIngestServiceClient<persys_kit::client::TracedChannel>,
    ) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel(16);
        let acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Self { tx, acks })
    }

    /// Sends one batch without waiting for its answer.
    pub async fn push(&mut self, batch: IngestRequest) {
        self.tx.send(batch).await.expect("the stream is open");
    }

    /// Sends one batch and waits for its answer.
    pub async fn send(&mut self, batch: IngestRequest) -> Result<IngestResponse, Status> {
        self.tx.send(batch).await.expect("the stream is open");
        match tokio::time::timeout(Duration::from_secs(10), self.acks.message()).await {
            Ok(Ok(Some(ack))) => Ok(ack),
            Ok(Ok(None)) => Err(Status::aborted("stream closed without an answer")),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("no answer within 10 s"),
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// A sample of `node` at `at_ms` whose CPU usage is `cpu` (and memory percent `cpu / 2`).
pub fn sample(node: &str, at_ms: i64, cpu: f64) -> HostMetrics {
    HostMetrics {
        node_id: node.into(),
        time: Some(ts(at_ms)),
        cpu: Some(CpuMetrics { usage_percent: cpu, cores: 2, ..Default::default() }),
        memory: Some(MemoryMetrics {
            total_bytes: 1 << 30,
            used_bytes: 1 << 29,
            usage_percent: cpu / 2.0,
            ..Default::default()
        }),
        load: Some(LoadAverage { load1: 1.0, load5: 0.5, load15: 0.25 }),
        ..Default::default()
    }
}

/// A batch of `node` numbered `seq`.
pub fn batch(node: &str, seq: u64, samples: Vec<HostMetrics>) -> IngestRequest {
    IngestRequest { node_id: node.into(), samples, batch_seq: seq, dropped_samples: 0 }
}

/// The median, 99th percentile (nearest rank) and maximum of `v`; `None` when it is empty.
pub fn p50_p99_max(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let max = *v.last()?;
    Some((q(0.5), q(0.99), max))
}

/// The four keys of the shop's fixed 14-day history (seven deployments, three failed, six
/// commits), which the store conformance suite and the end-to-end DORA test both build: worked
/// out by hand, so the store's SQL and the whole pipeline are held to the same figures.
pub fn assert_shop_keys(m: &persys_proto::metrics::v1::GetDoraMetricsResponse) {
    assert_eq!((m.deployments_total, m.deployments_failed), (7, 3));
    assert!((m.deployment_frequency_per_day - 4.0 / 14.0).abs() < 1e-9);
    assert!((m.change_failure_rate - 3.0 / 7.0).abs() < 1e-9);
    // Lead times s1 2h, s3 4h, s4 6h (first success d5), s2 10h, s5 30h; s6 never succeeded.
    assert_eq!(m.lead_time_median.map(|d| d.seconds), Some(6 * 3600));
    assert_eq!(m.lead_time_p90.map(|d| d.seconds), Some(22 * 3600));
    // d3 failed, d4 too (same run), d5 restored: 5h. d7 is not restored.
    assert_eq!(m.time_to_restore_median.map(|d| d.seconds), Some(5 * 3600));
    assert_eq!(m.unrestored_failures, 1);
}
