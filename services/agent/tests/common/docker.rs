//! A Docker driver on the test engine, isolated by a per-test node id, and cleanup.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    query_parameters::{ListContainersOptions, RemoveContainerOptions},
};
use persys_agent::{
    driver::{container::Defaults, docker::DockerDriver},
    outbox::Outbox,
};
use persys_proto::scheduler::v1::{ImagePullPolicy, RunInstance, WorkloadPhase, WorkloadSpec, WorkloadStatusEvent};

/// Returns the test engine's address and image, or `None` (test skipped).
pub fn engine() -> Option<(String, String)> {
    let host = persys_kit::testing::require_env("DOCKER_HOST", "a Docker engine")?;
    let image = std::env::var("PERSYS_TEST_IMAGE").unwrap_or_else(|_| "persys-test/busybox:latest".into());
    Some((host, image))
}

/// Returns a raw client on the test engine.
pub async fn client(host: &str) -> Docker {
    let path = host.trim_start_matches("unix://");
    Docker::connect_with_unix(path, 60, API_DEFAULT_VERSION).unwrap().negotiate_version().await.unwrap()
}

/// Removes every container labelled with `node_id`, also when the test panicked.
pub struct Cleanup {
    host: String,
    node_id: String,
}

impl Cleanup {
    pub fn new(host: &str, node_id: &str) -> Self {
        Self { host: host.to_owned(), node_id: node_id.to_owned() }
    }
}

pub async fn remove_all(host: &str, node_id: &str) {
    let docker = client(host).await;
    let filters: HashMap<String, Vec<String>> =
        [("label".to_owned(), vec![format!("persys.node-id={node_id}")])].into();
    let list = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await
        .unwrap_or_default();
    for c in list {
        let _ = docker
            .remove_container(&c.id.unwrap(), Some(RemoveContainerOptions { force: true, v: true, link: false }))
            .await;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (host, node) = (self.host.clone(), self.node_id.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(remove_all(&host, &node))
        })
        .join();
    }
}

/// Returns a unique node id for one test.
pub fn node_id(test: &str) -> String {
    format!("t-{test}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

pub async fn driver(host: &str, node_id: &str) -> (Arc<DockerDriver>, Arc<Outbox>) {
    driver_with(host, node_id, |_| {}).await
}

/// [`driver`] with the test's changes to the node's defaults.
pub async fn driver_with(
    host: &str,
    node_id: &str,
    change: impl FnOnce(&mut Defaults),
) -> (Arc<DockerDriver>, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(1024));
    let mut defaults = Defaults {
        node_id: node_id.to_owned(),
        network_mode: "none".into(),
        volume_roots: vec![],
        allowed_networks: vec![],
        pull_timeout: std::time::Duration::from_secs(600),
        pull_attempts: 3,
    };
    change(&mut defaults);
    let driver = DockerDriver::connect(host, defaults, outbox.clone()).await.unwrap();
    (driver, outbox)
}

/// Returns a RunInstance of the test image running `sh -c script`.
pub fn run_sh(node_id: &str, name: &str, image: &str, script: &str) -> RunInstance {
    RunInstance {
        workload_id: format!("w-{name}"),
        instance_id: format!("{node_id}-{name}"),
        replica_index: 0,
        workload_name: name.to_owned(),
        spec: Some(WorkloadSpec {
            image: image.to_owned(),
            command: vec!["sh".into(), "-c".into()],
            args: vec![script.to_owned()],
            image_pull_policy: ImagePullPolicy::IfNotPresent as i32,
            stop_timeout: Some(prost_types::Duration { seconds: 2, nanos: 0 }),
            ..Default::default()
        }),
        owner_role: persys_proto::common::v1::Role::Member as i32,
        owner_id: format!("owner-{node_id}"),
    }
}

/// Waits until the outbox yields an event for `instance` matching `pred`; returns it.
pub async fn wait_event(
    outbox: &Outbox,
    instance: &str,
    pred: impl Fn(&WorkloadStatusEvent) -> bool,
) -> WorkloadStatusEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let mut drained = outbox.drain().into_iter();
        while let Some(p) = drained.next() {
            let e = p.event.clone();
            if e.status.as_ref().is_some_and(|s| s.instance_id == instance) {
                if pred(&e) {
                    // Later events stay queued for the next wait.
                    outbox.requeue(drained.collect());
                    return e;
                }
                seen.push(e);
            }
        }
        if tokio::time::timeout_at(deadline, outbox.notified()).await.is_err() {
            panic!("no matching event for {instance}; saw {seen:#?}");
        }
    }
}

pub fn phase(e: &WorkloadStatusEvent) -> WorkloadPhase {
    WorkloadPhase::try_from(e.status.as_ref().unwrap().phase).unwrap()
}
