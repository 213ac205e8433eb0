//! Invariants of a running cluster, checked over its etcd state and over the Docker engine its
//! agents run containers on: what every fault-injection test asserts once the fault is over,
//! and what the security and reconciler suites reuse.
//!
//! Over etcd: [`persys_scheduler::testing::check`] (reservations add up to `available`, one
//! live instance per replica, live instances on known nodes). Over Docker, for the containers
//! of the cluster's nodes (those in etcd, and any [`Invariants::track_node`] names):
//! - a replica never has two running containers;
//! - a workload whose phase is Running has exactly one running container per wanted replica;
//! - no container (running or not) is left for a workload that no longer exists;
//! - every running container is a live instance in etcd, on the node etcd says.
//!
//! ```ignore
//! let invariants = Invariants::connect(&etcd, "/my-prefix", &docker_host).await?;
//! invariants.wait_ok(Duration::from_secs(30)).await; // panics with the last violations
//! ```

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use bollard::{API_DEFAULT_VERSION, Docker, query_parameters::ListContainersOptions};
use persys_proto::scheduler::v1::{DesiredState, Workload, WorkloadPhase};
use persys_scheduler::{
    kv::{Kv, etcd::EtcdKv},
    model::{decode_node, decode_workload, is_terminal},
    store::Store,
    testing::Report,
};

/// Label the agent's Docker driver puts on every container it creates.
pub const LABEL_MANAGED: &str = "persys.managed";
/// Label naming the container's workload.
pub const LABEL_WORKLOAD_ID: &str = "persys.workload-id";
/// Label naming the container's instance.
pub const LABEL_INSTANCE_ID: &str = "persys.instance-id";
/// Label naming the container's node.
pub const LABEL_NODE_ID: &str = "persys.node-id";
/// Label naming the container's replica slot.
pub const LABEL_REPLICA_INDEX: &str = "persys.replica-index";

/// One Persys container as the engine lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Docker's id.
    pub id: String,
    /// Its node (label `persys.node-id`).
    pub node_id: String,
    /// Its workload (label `persys.workload-id`).
    pub workload_id: String,
    /// Its instance (label `persys.instance-id`).
    pub instance_id: String,
    /// Its replica slot (label `persys.replica-index`).
    pub replica_index: i32,
    /// Whether a process runs in it (Docker state running, restarting or paused).
    pub running: bool,
}

/// Connects to the Docker engine at `docker_host` (`unix:///path`, a bare socket path or
/// `tcp://host:port`).
pub fn docker(docker_host: &str) -> anyhow::Result<Docker> {
    let timeout = 30;
    let docker = if let Some(path) = docker_host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION)
    } else if docker_host.starts_with("tcp://") || docker_host.starts_with("http://") {
        Docker::connect_with_http(&docker_host.replacen("tcp://", "http://", 1), timeout, API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_unix(docker_host, timeout, API_DEFAULT_VERSION)
    };
    docker.with_context(|| format!("connecting to docker at {docker_host}"))
}

/// Returns every Persys container on the engine whose node is one of `nodes`.
pub async fn list_containers(docker: &Docker, nodes: &BTreeSet<String>) -> anyhow::Result<Vec<Container>> {
    let filters: HashMap<String, Vec<String>> = [("label".to_owned(), vec![format!("{LABEL_MANAGED}=true")])].into();
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = docker.list_containers(Some(options)).await.context("listing containers")?;
    let out = list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let node_id = label(LABEL_NODE_ID);
            if !nodes.contains(&node_id) {
                return None;
            }
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            Some(Container {
                id: c.id.unwrap_or_default(),
                node_id,
                workload_id: label(LABEL_WORKLOAD_ID),
                instance_id: label(LABEL_INSTANCE_ID),
                replica_index: label(LABEL_REPLICA_INDEX).parse().unwrap_or(-1),
                running: matches!(state.as_str(), "running" | "restarting" | "paused"),
            })
        })
        .collect();
    Ok(out)
}

/// Returns the broken Docker invariants (see the module docs) of `containers` against the
/// stored `workloads`.
pub fn docker_violations(workloads: &[Workload], containers: &[Container]) -> Vec<String> {
    let mut out = Vec::new();
    let by_id: HashMap<&str, &Workload> = workloads.iter().map(|w| (w.id.as_str(), w)).collect();
    let mut running: BTreeMap<(&str, i32), Vec<&str>> = BTreeMap::new();
    for c in containers {
        let Some(w) = by_id.get(c.workload_id.as_str()) else {
            out.push(format!(
                "container {} (instance {} on node {}) belongs to workload {}, which does not exist",
                short(&c.id),
                c.instance_id,
                c.node_id,
                c.workload_id
            ));
            continue;
        };
        if !c.running {
            continue;
        }
        running.entry((w.id.as_str(), c.replica_index)).or_default().push(&c.id);
        let instance = w.status.iter().flat_map(|s| &s.instances).find(|i| i.instance_id == c.instance_id);
        match instance {
            Some(i) if !is_terminal(i.phase) && i.node_id == c.node_id => {}
            Some(i) if !is_terminal(i.phase) => out.push(format!(
                "container {} of instance {} runs on node {}, but the instance is on node {}",
                short(&c.id),
                c.instance_id,
                c.node_id,
                i.node_id
            )),
            Some(i) => out.push(format!(
                "container {} of instance {} runs on node {}, but the instance has ended ({:?})",
                short(&c.id),
                c.instance_id,
                c.node_id,
                WorkloadPhase::try_from(i.phase).unwrap_or(WorkloadPhase::Unspecified)
            )),
            None => out.push(format!(
                "container {} runs on node {} for instance {}, which workload {} does not have",
                short(&c.id),
                c.node_id,
                c.instance_id,
                w.id
            )),
        }
    }
    for ((workload, replica), ids) in running.iter().filter(|(_, ids)| ids.len() > 1) {
        let ids: Vec<&str> = ids.iter().map(|id| short(id)).collect();
        out.push(format!("workload {workload}: replica {replica} runs in {} containers: {ids:?}", ids.len()));
    }
    for w in workloads {
        let running_phase = w.status.as_ref().is_some_and(|s| s.phase == WorkloadPhase::Running as i32);
        if w.desired_state() != DesiredState::Running || !running_phase {
            continue;
        }
        let replicas = w.spec.as_ref().map_or(1, |s| s.replicas.max(1));
        for r in (0..replicas).filter(|r| !running.contains_key(&(w.id.as_str(), *r))) {
            out.push(format!("workload {} is Running but replica {r} has no running container", w.id));
        }
    }
    out
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Returns the broken Docker invariant "a replica never runs twice" alone: what may be sampled
/// while a fault is on, when the others are expected to lag.
pub fn duplicates(containers: &[Container]) -> Vec<String> {
    let mut running: BTreeMap<(&str, i32), Vec<String>> = BTreeMap::new();
    for c in containers.iter().filter(|c| c.running) {
        running.entry((&c.workload_id, c.replica_index)).or_default().push(format!("{}@{}", short(&c.id), c.node_id));
    }
    running
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((w, r), v)| format!("workload {w}: replica {r} runs in {} containers: {v:?}", v.len()))
        .collect()
}

/// The invariant checker of one cluster (one etcd key prefix and one Docker engine).
#[derive(Clone)]
pub struct Invariants<K = EtcdKv> {
    store: Store<K>,
    docker: Docker,
    tracked: Arc<Mutex<BTreeSet<String>>>,
}

impl Invariants<EtcdKv> {
    /// Connects to etcd at `etcd` (comma-separated endpoints) for the cluster under `prefix`,
    /// and to the Docker engine at `docker_host`.
    pub async fn connect(etcd: &str, prefix: &str, docker_host: &str) -> anyhow::Result<Self> {
        let endpoints: Vec<String> = etcd.split(',').map(str::to_owned).collect();
        let kv = EtcdKv::connect(&endpoints).await.context("connecting to etcd")?;
        Self::new(Store::new(Arc::new(kv), prefix), docker_host)
    }
}

impl<K: Kv> Invariants<K> {
    /// Checks the cluster of `store` with containers on the engine at `docker_host`.
    pub fn new(store: Store<K>, docker_host: &str) -> anyhow::Result<Self> {
        Ok(Self { store, docker: docker(docker_host)?, tracked: Arc::default() })
    }

    /// Also checks the containers of node `node_id` when it is not (or no longer) in etcd, e.g.
    /// a node deleted during the test.
    pub fn track_node(&self, node_id: &str) {
        self.tracked.lock().expect("tracked lock").insert(node_id.to_owned());
    }

    /// Returns the store it reads.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Returns the Docker client it lists containers with.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Returns the containers of the cluster's nodes (in etcd now, or tracked).
    pub async fn containers(&self) -> anyhow::Result<Vec<Container>> {
        let (nodes, _) = self.store.nodes().await?;
        let mut ids = self.tracked.lock().expect("tracked lock").clone();
        ids.extend(nodes.into_iter().map(|n| n.id));
        list_containers(&self.docker, &ids).await
    }

    /// Checks every invariant once: etcd's at one revision, then Docker's against the workloads
    /// of that revision. A check made while the cluster is still settling may list violations
    /// that go away; see [`Invariants::wait_ok`].
    pub async fn check(&self) -> anyhow::Result<Report> {
        let mut report = persys_scheduler::testing::check(&self.store).await?;
        let keys = self.store.keys();
        let (entries, _) = self.store.kv().range(&keys.root()).await?;
        let workloads: Vec<Workload> =
            entries.iter().filter(|e| e.key.starts_with(&keys.workloads())).filter_map(decode_workload).collect();
        let mut ids = self.tracked.lock().expect("tracked lock").clone();
        ids.extend(entries.iter().filter(|e| e.key.starts_with(&keys.nodes())).filter_map(decode_node).map(|n| n.id));
        let containers = list_containers(&self.docker, &ids).await?;
        report.violations.extend(docker_violations(&workloads, &containers));
        Ok(report)
    }

    /// Polls [`Invariants::check`] until every invariant holds and returns that report; panics
    /// after `timeout`, listing the violations of the last check.
    pub async fn wait_ok(&self, timeout: Duration) -> Report {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match self.check().await {
                Ok(report) if report.violations.is_empty() => return report,
                Ok(report) => report.violations.join("\n  "),
                Err(e) => format!("check failed: {e:#}"),
            };
            if tokio::time::Instant::now() >= deadline {
                panic!("cluster invariants still broken after {timeout:?}:\n  {last}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Samples the engine every 100 ms in the background, recording every moment a replica
    /// runs in two containers, until [`DuplicateWatch::finish`]: for the stretch of a fault
    /// where nothing may run twice while the other invariants may lag. It samples the nodes in
    /// etcd when it starts, and the tracked ones.
    pub async fn watch_duplicates(&self) -> anyhow::Result<DuplicateWatch> {
        let (nodes, _) = self.store.nodes().await?;
        let mut ids = self.tracked.lock().expect("tracked lock").clone();
        ids.extend(nodes.into_iter().map(|n| n.id));
        let docker = self.docker.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                if let Ok(containers) = list_containers(&docker, &ids).await {
                    for d in duplicates(&containers) {
                        if !seen.contains(&d) {
                            seen.push(d);
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = &mut stopped => return seen,
                }
            }
        });
        Ok(DuplicateWatch { stop, task })
    }
}

/// A background sampler of "no replica runs twice" (see [`Invariants::watch_duplicates`]).
pub struct DuplicateWatch {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl DuplicateWatch {
    /// Stops sampling and returns every duplicate seen (empty when none).
    pub async fn finish(self) -> Vec<String> {
        let _ = self.stop.send(());
        self.task.await.expect("duplicate sampler")
    }

    /// Stops sampling and panics, listing them, if a replica ever ran twice.
    pub async fn assert_none(self) {
        let seen = self.finish().await;
        assert!(seen.is_empty(), "a replica ran twice while sampled:\n  {}", seen.join("\n  "));
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::{InstanceStatus, WorkloadSpec, WorkloadStatus};

    use super::*;

    fn workload(id: &str, replicas: i32, instances: &[(&str, i32, &str, WorkloadPhase)]) -> Workload {
        Workload {
            id: id.into(),
            desired_state: DesiredState::Running as i32,
            spec: Some(WorkloadSpec { replicas, ..Default::default() }),
            status: Some(WorkloadStatus {
                phase: WorkloadPhase::Running as i32,
                instances: instances
                    .iter()
                    .map(|(i, r, n, p)| InstanceStatus {
                        instance_id: (*i).into(),
                        replica_index: *r,
                        node_id: (*n).into(),
                        phase: *p as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(id: &str, node: &str, workload: &str, instance: &str, replica: i32, running: bool) -> Container {
        Container {
            id: id.into(),
            node_id: node.into(),
            workload_id: workload.into(),
            instance_id: instance.into(),
            replica_index: replica,
            running,
        }
    }

    #[test]
    fn one_running_container_per_live_replica_holds() {
        use WorkloadPhase::Running;
        let w = workload("w", 2, &[("w-a", 0, "n1", Running), ("w-b", 1, "n2", Running)]);
        let cs = [container("c1", "n1", "w", "w-a", 0, true), container("c2", "n2", "w", "w-b", 1, true)];
        assert_eq!(docker_violations(&[w], &cs), Vec::<String>::new());
    }

    #[test]
    fn each_broken_docker_invariant_is_named() {
        use WorkloadPhase::{Failed, Running};
        let w = workload("w", 2, &[("w-a", 0, "n1", Running), ("w-b", 1, "n2", Running), ("w-old", 1, "n1", Failed)]);
        let cs = [
            container("c-twice", "n1", "w", "w-a", 0, true),
            container("c-moved", "n2", "w", "w-a", 0, true),
            container("c-ended", "n1", "w", "w-old", 1, true),
            container("c-ghost", "n1", "w", "w-x", 1, true),
            container("c-deleted", "n1", "gone", "gone-a", 0, false),
        ];
        let v = docker_violations(&[w], &cs).join("\n");
        assert!(v.contains("runs on node n2, but the instance is on node n1"), "{v}");
        assert!(v.contains("instance w-old runs on node n1, but the instance has ended"), "{v}");
        assert!(v.contains("instance w-x, which workload w does not have"), "{v}");
        assert!(v.contains("belongs to workload gone, which does not exist"), "{v}");
        assert!(v.contains("replica 0 runs in 2 containers"), "{v}");
        assert!(v.contains("replica 1 runs in 2 containers"), "{v}");
        assert!(!v.contains("has no running container"), "{v}");

        let cs = [container("c1", "n1", "w", "w-a", 0, true), container("c2", "n2", "w", "w-b", 1, false)];
        let v = docker_violations(&[workload("w", 2, &[("w-a", 0, "n1", Running), ("w-b", 1, "n2", Running)])], &cs);
        assert_eq!(v, ["workload w is Running but replica 1 has no running container"]);
        assert_eq!(duplicates(&cs), Vec::<String>::new());
    }
}
