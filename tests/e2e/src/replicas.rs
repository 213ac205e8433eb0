//! Scheduler replicas as real processes on a real etcd, with real agents on a Docker engine:
//! the harness of the failover and fault-injection tests.
//!
//! Timing is short so that faults play out in seconds: heartbeats every 500 ms, node and leader
//! leases of 2 s, Down 5 s after that; agents reconnect within 1 s. Each [`EtcdCluster`] has its
//! own key prefix and node names, so tests run in parallel on one etcd and one engine, and it
//! removes the containers of its nodes when dropped.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use futures::StreamExt;
use persys_client::testing::AsUser;
use persys_kit::{client::ClientOptions, identity::Role, tls::CertsDir};
use persys_proto::scheduler::v1::{
    self as pb, Node, NodeState, Workload, scheduler_service_client::SchedulerServiceClient,
};
use persys_scheduler::{
    kv::{Event, Kv, etcd::EtcdKv},
    store::Store,
};
use tempfile::TempDir;
use tonic::codegen::InterceptedService;

use crate::{
    bin, certs_init,
    cluster::{AgentUrls, start_agent_at},
    invariants::Invariants,
    process::Service,
    tls_args,
};

/// How often agents send heartbeats to these replicas.
pub const HEARTBEAT: &str = "500ms";
/// The lease of a node's liveness and of the leader's election key.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// How long a NotReady node waits before it is Down.
pub const DOWN_GRACE: Duration = Duration::from_secs(5);

/// A scheduler client acting as an admin, as the gateway does for one.
pub type Api = SchedulerServiceClient<InterceptedService<persys_kit::client::TracedChannel, AsUser>>;

/// The shared state of a cluster of scheduler replicas: etcd prefix, certificates, logs and the
/// agents' state directories (kept across an agent's restarts).
pub struct EtcdCluster {
    /// Certificates, logs, agents' state.
    pub dir: TempDir,
    /// The real etcd endpoints, comma-separated.
    pub etcd: String,
    /// This cluster's key prefix.
    pub prefix: String,
    /// The Docker engine the agents use.
    pub docker_host: String,
    name: String,
    nodes: Mutex<BTreeSet<String>>,
}

impl EtcdCluster {
    /// Prepares a cluster named `name` (unique per test: it names the prefix and the nodes) on
    /// the etcd at `etcd`, with agents on the engine at `docker_host`.
    pub fn new(etcd: &str, docker_host: &str, name: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        certs_init(&dir.path().join("certs"))?;
        let name = format!("{name}-{}", std::process::id());
        Ok(Self {
            dir,
            etcd: etcd.to_owned(),
            prefix: format!("/e2e-{name}"),
            docker_host: docker_host.to_owned(),
            name,
            nodes: Mutex::default(),
        })
    }

    /// Returns the certificates directory.
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Returns this cluster's name for node `suffix` (unique across tests on one engine).
    pub fn node(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// Returns the flags of replica `replica` talking to etcd at `etcd` (comma-separated URLs).
    pub fn scheduler_args(&self, replica: &str, etcd: &str) -> Vec<String> {
        let certs = self.certs();
        let mut args: Vec<String> = [
            ("--listen", "127.0.0.1:0"),
            ("--bootstrap-listen", "127.0.0.1:0"),
            ("--etcd", etcd),
            ("--prefix", &self.prefix),
            ("--replica", replica),
            ("--heartbeat", HEARTBEAT),
            ("--lease-ttl", &format!("{}ms", LEASE_TTL.as_millis())),
            ("--down-grace", &format!("{}ms", DOWN_GRACE.as_millis())),
            ("--admin-listen", "off"),
            ("--ca-key", &certs.join("ca-key.pem").display().to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v.to_owned()])
        .collect();
        args.extend(tls_args(&certs, "scheduler"));
        args
    }

    /// Starts replica `replica` on the real etcd.
    pub async fn start_scheduler(&self, replica: &str) -> anyhow::Result<Service> {
        self.start_scheduler_via(replica, &self.etcd).await
    }

    /// Starts replica `replica` talking to etcd at `etcd` (e.g. a [`crate::proxy::TcpProxy`]).
    pub async fn start_scheduler_via(&self, replica: &str, etcd: &str) -> anyhow::Result<Service> {
        let args = self.scheduler_args(replica, etcd);
        let name = format!("scheduler-{replica}");
        Service::start(&name, bin("scheduler")?, &args, &[], self.dir.path(), Duration::from_secs(60)).await
    }

    /// Kills replica `replica` (`old`) with SIGKILL, as a crash would, and starts it again on the
    /// same ports (where its agents reconnect) and the same etcd endpoints `etcd`.
    pub async fn restart_scheduler(&self, replica: &str, old: Service, etcd: &str) -> anyhow::Result<Service> {
        let (grpc, bootstrap) = (old.addr("grpc"), old.addr("bootstrap"));
        old.kill().await?;
        let mut args = self.scheduler_args(replica, etcd);
        for (flag, addr) in [("--listen", grpc), ("--bootstrap-listen", bootstrap)] {
            let at = args.iter().position(|a| a == flag).expect("flag") + 1;
            args[at] = addr.to_string();
        }
        let name = format!("scheduler-{replica}");
        Service::start(&name, bin("scheduler")?, &args, &[], self.dir.path(), Duration::from_secs(60)).await
    }

    /// Returns an admin's client of `scheduler`.
    pub fn api(&self, scheduler: &Service) -> anyhow::Result<Api> {
        let tls = CertsDir::new(self.certs()).load("gateway")?;
        let url = format!("http://localhost:{}", scheduler.addr("grpc").port());
        let channel = persys_kit::client::mtls_channel(&url, &tls, &ClientOptions::default())?;
        Ok(SchedulerServiceClient::with_interceptor(channel, AsUser::named("root", Role::Admin)))
    }

    /// Creates a join token (for one node) on `scheduler`.
    pub async fn join_token(&self, scheduler: &Service) -> anyhow::Result<String> {
        let mut api = self.api(scheduler)?;
        Ok(api.create_join_token(pb::CreateJoinTokenRequest::default()).await?.into_inner().token)
    }

    /// Starts (or restarts, with the same state directory and so the same identity) the agent of
    /// node `node` (see [`EtcdCluster::node`]) streaming to `scheduler`, joining with a token of
    /// its own the first time; it reconnects within 1 s of losing its stream.
    pub async fn start_agent(&self, scheduler: &Service, node: &str) -> anyhow::Result<Service> {
        self.start_agent_on(scheduler, node, &self.docker_host.clone()).await
    }

    /// Like [`EtcdCluster::start_agent`], with containers on the engine at `docker_host`.
    pub async fn start_agent_on(&self, scheduler: &Service, node: &str, docker_host: &str) -> anyhow::Result<Service> {
        let urls = AgentUrls {
            scheduler: format!("https://localhost:{}", scheduler.addr("grpc").port()),
            bootstrap: format!("https://localhost:{}", scheduler.addr("bootstrap").port()),
        };
        self.start_agent_via(scheduler, &urls, node, docker_host).await
    }

    /// Like [`EtcdCluster::start_agent_on`], streaming to and joining at `urls` (e.g. a
    /// [`crate::proxy::TcpProxy`] in front of a replica) with a token made on `scheduler`.
    pub async fn start_agent_via(
        &self,
        scheduler: &Service,
        urls: &AgentUrls,
        node: &str,
        docker_host: &str,
    ) -> anyhow::Result<Service> {
        self.nodes.lock().expect("nodes lock").insert(node.to_owned());
        let token = self.join_token(scheduler).await?;
        let extra = ["--max-backoff".to_owned(), "1s".to_owned()];
        start_agent_at(self.dir.path(), &self.certs(), urls, node, &token, docker_host, &extra).await
    }

    /// Connects to the real etcd.
    pub async fn kv(&self) -> anyhow::Result<Arc<EtcdKv>> {
        let endpoints: Vec<String> = self.etcd.split(',').map(str::to_owned).collect();
        Ok(Arc::new(EtcdKv::connect(&endpoints).await.context("connecting to etcd")?))
    }

    /// Returns the typed store of this cluster, on the real etcd.
    pub async fn store(&self) -> anyhow::Result<Store<EtcdKv>> {
        Ok(Store::new(self.kv().await?, &self.prefix))
    }

    /// Returns the invariant checker of this cluster (on its agents' engine).
    pub async fn invariants(&self) -> anyhow::Result<Invariants> {
        let invariants = Invariants::new(self.store().await?, &self.docker_host)?;
        for node in self.nodes.lock().expect("nodes lock").iter() {
            invariants.track_node(node);
        }
        Ok(invariants)
    }

    /// Returns the name of the leading replica, if any.
    pub async fn leader(&self, kv: &EtcdKv) -> anyhow::Result<Option<String>> {
        let key = format!("{}/leader", self.prefix);
        Ok(kv.get(&key).await?.map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }

    /// Waits until replica `replica` leads; panics after `timeout`. Returns its term (the
    /// leader key's revision).
    pub async fn wait_leader(&self, kv: &EtcdKv, replica: &str, timeout: Duration) -> i64 {
        let key = format!("{}/leader", self.prefix);
        let found = tokio::time::timeout(timeout, async {
            loop {
                let (entry, rev) = match kv.range(&key).await {
                    Ok((entries, rev)) => (entries.into_iter().find(|e| e.key == key), rev),
                    Err(_) => (None, 0),
                };
                if let Some(e) = &entry
                    && e.value == replica.as_bytes()
                {
                    return e.mod_revision;
                }
                // Sleep on the leader key rather than on a clock: any change wakes this up.
                if let Ok(mut watch) = kv.watch(&key, rev + 1).await {
                    let _ = tokio::time::timeout(Duration::from_secs(1), watch.next()).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("replica {replica} did not lead within {timeout:?}"))
    }

    /// Polls node `id` until `done` holds for it and returns it; panics after `timeout` with
    /// the last version seen.
    pub async fn wait_node(
        &self,
        store: &Store<EtcdKv>,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Node) -> bool,
    ) -> Node {
        let mut last = None;
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(n)) = store.node(id).await {
                if done(&n) {
                    return n;
                }
                last = Some(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {id} never reached the condition within {timeout:?}; last seen: {last:#?}")
    }

    /// Polls workload `id` in etcd until `done` holds for it and returns it; panics after
    /// `timeout` with the last version seen.
    pub async fn wait_workload(
        &self,
        store: &Store<EtcdKv>,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Workload) -> bool,
    ) -> Workload {
        let mut last = None;
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(w)) = store.workload(id).await {
                if done(&w) {
                    return w;
                }
                last = Some(w);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("workload {id} never reached the condition within {timeout:?}; last seen: {last:#?}")
    }

    /// Returns the last `lines` lines of the log of every process of this cluster so far.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else { return out };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.extension().is_some_and(|x| x == "log")) {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            out.push_str(&format!("==== {} (last {lines} lines)\n{tail}\n", path.display()));
        }
        out
    }

    /// Removes every container of this cluster's nodes from `docker_host`.
    pub fn remove_containers(&self, docker_host: &str) {
        for node in self.nodes.lock().expect("nodes lock").iter() {
            remove_node_containers(docker_host, node);
        }
    }
}

impl Drop for EtcdCluster {
    /// Removes the cluster's containers; when a test failed, first prints the end of every
    /// process's log (which goes with the temporary directory, unless `PERSYS_E2E_KEEP=1`).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(80));
        }
        self.remove_containers(&self.docker_host.clone());
        // The shared etcd keeps nothing of this cluster (on a runtime of its own: this may run
        // inside the test's runtime, which cannot be blocked on).
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.prefix));
        let cleared = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), clear(&etcd, &root)).await.ok()?.ok() })
        });
        let _ = cleared.join();
        if std::env::var("PERSYS_E2E_KEEP").is_ok_and(|v| v == "1") {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// Deletes every key under `prefix` from the etcd at `etcd` (comma-separated endpoints).
pub async fn clear(etcd: &str, prefix: &str) -> anyhow::Result<()> {
    let endpoints: Vec<String> = etcd.split(',').map(str::to_owned).collect();
    let kv = EtcdKv::connect(&endpoints).await?;
    let (entries, _) = kv.range(prefix).await?;
    for chunk in entries.chunks(persys_scheduler::kv::MAX_TXN_OPS) {
        let ops = chunk.iter().map(|e| persys_scheduler::kv::Op::Delete(e.key.clone())).collect();
        kv.txn(Vec::new(), ops).await?;
    }
    Ok(())
}

/// Removes every Persys container of node `node` from the engine at `docker_host`.
pub fn remove_node_containers(docker_host: &str, node: &str) {
    let docker =
        |args: &[&str]| std::process::Command::new("docker").env("DOCKER_HOST", docker_host).args(args).output();
    let Ok(ids) = docker(&["ps", "-aq", "--filter", &format!("label=persys.node-id={node}")]) else { return };
    for id in String::from_utf8_lossy(&ids.stdout).lines() {
        let _ = docker(&["rm", "-f", id]);
    }
}

/// Returns a spec running `script` under `sh -c` in `image`, never pulled, with `replicas`
/// instances (at most `per_node` on one node, 0 for no limit) and restart policy Always. It is
/// given 1 s to stop (a shell or `sleep` as process 1 ignores SIGTERM).
pub fn sh_spec(image: &str, script: &str, replicas: i32, per_node: i32) -> pb::WorkloadSpec {
    pb::WorkloadSpec {
        image: image.to_owned(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        image_pull_policy: pb::ImagePullPolicy::Never as i32,
        restart_policy: pb::RestartPolicy::Always as i32,
        replicas,
        max_replicas_per_node: per_node,
        stop_timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        ..Default::default()
    }
}

/// Creates workload `name` with `spec` through `api` and returns it.
pub async fn create(api: &Api, name: &str, spec: pb::WorkloadSpec) -> anyhow::Result<Workload> {
    let request = pb::CreateWorkloadRequest { name: name.into(), spec: Some(spec), request_id: String::new() };
    let w = api.clone().create_workload(request).await?.into_inner().workload;
    w.context("create returned no workload")
}

/// Returns whether `w` is Running with every replica Running.
pub fn running(w: &Workload) -> bool {
    w.status.as_ref().is_some_and(|s| s.phase == pb::WorkloadPhase::Running as i32)
}

/// Returns the live instances of `w` as `(replica, instance, node)`, sorted.
pub fn placement(w: &Workload) -> Vec<(i32, String, String)> {
    let mut out: Vec<_> = w
        .status
        .iter()
        .flat_map(|s| &s.instances)
        .filter(|i| !persys_scheduler::model::is_terminal(i.phase))
        .map(|i| (i.replica_index, i.instance_id.clone(), i.node_id.clone()))
        .collect();
    out.sort();
    out
}

/// Returns whether node `n` is Ready.
pub fn ready(n: &Node) -> bool {
    n.state() == NodeState::Ready
}

/// Follows the keys under `prefix` from `revision + 1` and returns every event until the
/// returned sender is dropped or fired: to see afterwards what was written during a fault.
pub async fn record(kv: &EtcdKv, prefix: &str, revision: i64) -> anyhow::Result<Recorder> {
    let mut watch = kv.watch(prefix, revision + 1).await?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut events = Vec::new();
        loop {
            tokio::select! {
                batch = watch.next() => match batch {
                    Some(Ok(batch)) => events.extend(batch),
                    _ => return events,
                },
                _ = &mut stopped => return events,
            }
        }
    });
    Ok(Recorder { stop, task })
}

/// Events recorded by [`record`].
pub struct Recorder {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Event>>,
}

impl Recorder {
    /// Stops recording and returns the events seen.
    pub async fn finish(self) -> Vec<Event> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
