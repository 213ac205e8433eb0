//! The Docker driver: runs instances as containers through bollard and reports every change
//! the engine's event stream announces.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    container::LogOutput,
    exec::{CreateExecOptions, StartExecOptions, StartExecResults},
    models::ContainerStatsResponse,
    models::{ContainerInspectResponse, VolumeCreateRequest},
    query_parameters::{
        CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions, LogsOptions,
        RemoveContainerOptions, RestartContainerOptions, StatsOptions, StopContainerOptions,
    },
};
use futures::StreamExt;
use persys_kit::shutdown::Shutdown;
use persys_proto::{
    common::v1::OutputStream,
    metrics::v1::ContainerMetrics,
    scheduler::v1::{
        ContainerAction, ContainerActionResult, ContainerOperation, ExecExit, ExecInstance, FetchLogs, ImagePullPolicy,
        ImagePullProgress, InstanceStatus, RunInstance, WorkloadPhase, WorkloadStatusEvent,
    },
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{
    LABEL_MANAGED, LABEL_NODE_ID, Output, bare_status,
    container::{self, Defaults},
    event, tail, timestamp_ms,
};
use crate::{error::CommandError, outbox::Outbox};

const EXIT_TAIL_LINES: usize = super::EXIT_TAIL.0;
const EXIT_TAIL_BYTES: usize = super::EXIT_TAIL.1;
/// Output of one exec kept at most; the rest is dropped.
pub const EXEC_OUTPUT_CAP: usize = 4 * 1024 * 1024;
/// Deadline of plain engine calls; stops get their grace period on top.
const CALL_TIMEOUT: u64 = 60;

/// Containers through a Docker engine.
#[derive(Debug)]
pub struct DockerDriver {
    docker: Docker,
    defaults: Defaults,
    outbox: Arc<Outbox>,
    /// Last reported status per container id, to report changes only once.
    last: Mutex<HashMap<String, WorkloadStatusEvent>>,
    /// Instances the agent stopped on request (their exit is STOPPED, not FAILED).
    stopped: Mutex<HashSet<String>>,
    healthy: AtomicBool,
    version: Mutex<String>,
    /// Runs in progress per instance: a removal cancels the run's image pull and waits for the
    /// run to end before it removes, so no container appears after its removal.
    runs: Mutex<HashMap<String, InFlight>>,
}

/// A run in progress: cancelled by a removal, which then waits on `lock` until it ends.
#[derive(Clone, Debug)]
struct InFlight {
    cancel: CancellationToken,
    lock: Arc<tokio::sync::Mutex<()>>,
}

fn cancelled(instance_id: &str) -> CommandError {
    CommandError::new("Cancelled", format!("instance `{instance_id}` was removed while it was starting"))
}

impl DockerDriver {
    /// Connects to the engine at `address` (`unix:///path` or `tcp://host:port`) and agrees on
    /// the API version; an engine that is down is retried by [`DockerDriver::watch`].
    pub async fn connect(address: &str, defaults: Defaults, outbox: Arc<Outbox>) -> Result<Arc<Self>, String> {
        let docker = if let Some(path) = address.strip_prefix("unix://") {
            Docker::connect_with_unix(path, CALL_TIMEOUT, API_DEFAULT_VERSION)
        } else if address.starts_with("tcp://") || address.starts_with("http://") {
            Docker::connect_with_http(&address.replacen("tcp://", "http://", 1), CALL_TIMEOUT, API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_unix(address, CALL_TIMEOUT, API_DEFAULT_VERSION)
        }
        .map_err(|e| format!("docker at {address}: {e}"))?;
        let driver = Arc::new(Self {
            docker,
            defaults,
            outbox,
            last: Mutex::default(),
            stopped: Mutex::default(),
            healthy: AtomicBool::new(false),
            version: Mutex::default(),
            runs: Mutex::default(),
        });
        if let Err(error) = driver.negotiate().await {
            tracing::warn!(%error, "docker engine not reachable yet; retrying in the background");
        }
        Ok(driver)
    }

    async fn negotiate(&self) -> Result<(), bollard::errors::Error> {
        // Clones share the version, so negotiating on one sets it for all.
        let docker = tokio::time::timeout(Duration::from_secs(10), self.docker.clone().negotiate_version())
            .await
            .map_err(|_| bollard::errors::Error::RequestTimeoutError)??;
        let version = docker.version().await?;
        *self.version.lock().expect("version lock") = version.version.unwrap_or_default();
        self.healthy.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Returns the engine version, e.g. `20.10.24`; empty before the first contact.
    pub fn version(&self) -> String {
        self.version.lock().expect("version lock").clone()
    }

    /// Returns `None` when the engine answers, else why not.
    pub async fn health(&self) -> Option<String> {
        match tokio::time::timeout(Duration::from_secs(3), self.docker.ping()).await {
            Ok(Ok(_)) => {
                self.healthy.store(true, Ordering::Relaxed);
                None
            }
            Ok(Err(e)) => Some(format!("docker: {e}")),
            Err(_) => Some("docker: ping timed out".into()),
        }
    }

    /// Returns the Docker client (for tests and benchmarks that inspect containers).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn is_stopped(&self, instance_id: &str) -> bool {
        self.stopped.lock().expect("stopped lock").contains(instance_id)
    }

    fn mark_stopped(&self, instance_id: &str, stopped: bool) {
        let mut set = self.stopped.lock().expect("stopped lock");
        if stopped {
            set.insert(instance_id.to_owned());
        } else {
            set.remove(instance_id);
        }
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>, CommandError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn exit_tail(&self, container_id: &str) -> String {
        let options =
            LogsOptions { stdout: true, stderr: true, tail: EXIT_TAIL_LINES.to_string(), ..Default::default() };
        let mut logs = self.docker.logs(container_id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
            if text.len() > 4 * EXIT_TAIL_BYTES {
                text = tail(&text, EXIT_TAIL_LINES, EXIT_TAIL_BYTES);
            }
        }
        tail(&text, EXIT_TAIL_LINES, EXIT_TAIL_BYTES)
    }

    /// Returns an instance's current status event, with the output tail when it has exited.
    async fn current(&self, c: &ContainerInspectResponse) -> Option<WorkloadStatusEvent> {
        let instance = c.config.as_ref()?.labels.as_ref()?.get(super::LABEL_INSTANCE_ID)?.clone();
        let (workload_id, mut status) = container::status_of(c, &self.defaults.node_id, self.is_stopped(&instance))?;
        if container::is_exited(status.phase) {
            let output = self.exit_tail(&status.container_id).await;
            status.message = match (status.message.is_empty(), output.is_empty()) {
                (_, true) => status.message,
                (true, false) => output,
                (false, false) => format!("{}\n{output}", status.message),
            };
        }
        Some(event(&workload_id, status, false))
    }

    /// Reports `e` if it differs from the last report of its container.
    fn report(&self, container_id: &str, e: WorkloadStatusEvent) {
        let mut last = self.last.lock().expect("last lock");
        if last.get(container_id).is_some_and(|prev| prev.status == e.status && !e.removed) {
            return;
        }
        if e.removed {
            last.remove(container_id);
        } else {
            last.insert(container_id.to_owned(), e.clone());
        }
        drop(last);
        self.outbox.push(e);
    }

    /// Reports a container's current state after engine event `action`. An exit is reported
    /// from its `die` event only: an earlier event may find the container already exited
    /// while its last output is still being copied to the log.
    async fn refresh(&self, container_id: &str, action: &str) {
        match self.inspect(container_id).await {
            Ok(Some(c)) => {
                let exited = c.state.as_ref().is_some_and(|s| {
                    s.running != Some(true) && s.status != Some(bollard::models::ContainerStateStatusEnum::CREATED)
                });
                if exited && !matches!(action, "die" | "oom" | "resync") {
                    return;
                }
                if let Some(e) = self.current(&c).await {
                    self.report(container_id, e);
                }
            }
            Ok(None) => self.gone(container_id),
            Err(error) => tracing::warn!(container_id, %error, "inspecting a container failed"),
        }
    }

    fn gone(&self, container_id: &str) {
        let previous = self.last.lock().expect("last lock").get(container_id).cloned();
        if let Some(mut e) = previous {
            e.removed = true;
            e.observed_at = Some(super::now());
            e.sequence = super::next_sequence();
            if let Some(status) = &e.status {
                self.mark_stopped(&status.instance_id, false);
            }
            self.report(container_id, e);
        }
    }

    /// Returns the status of every Persys container on the engine (running or not), and
    /// remembers them so later events report changes only.
    pub async fn inventory(&self) -> Result<Vec<WorkloadStatusEvent>, CommandError> {
        self.scan(false).await
    }

    /// Lists every Persys container; with `report`, also queues an event for each one whose
    /// state differs from the last report (a resync after the event stream was down).
    async fn scan(&self, report: bool) -> Result<Vec<WorkloadStatusEvent>, CommandError> {
        let filters: HashMap<String, Vec<String>> =
            // Only this node's containers: several agents may share one engine (tests, or a
            // machine re-joined under a new node id), and each must report only its own.
            [("label".to_owned(), vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_NODE_ID}={}", self.defaults.node_id)])].into();
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await?;
        let mut out = Vec::with_capacity(list.len());
        let mut seen = HashSet::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            if let Ok(Some(c)) = self.inspect(&id).await
                && let Some(e) = self.current(&c).await
            {
                if report {
                    self.report(&id, e.clone());
                } else {
                    self.last.lock().expect("last lock").insert(id.clone(), e.clone());
                }
                seen.insert(id);
                out.push(e);
            }
        }
        let vanished: Vec<String> =
            self.last.lock().expect("last lock").keys().filter(|id| !seen.contains(*id)).cloned().collect();
        for id in vanished {
            self.gone(&id);
        }
        Ok(out)
    }

    /// Returns the resource use of each running Persys container of this node, labelled with
    /// its workload and instance. Each container's stats come from the engine's non-streaming
    /// stats call (two readings about a second apart, so CPU is a rate); containers are read
    /// concurrently, and one that fails or vanishes is left out.
    pub async fn container_metrics(&self) -> Vec<ContainerMetrics> {
        let filters: HashMap<String, Vec<String>> = [
            (
                "label".to_owned(),
                vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_NODE_ID}={}", self.defaults.node_id)],
            ),
            ("status".to_owned(), vec!["running".to_owned()]),
        ]
        .into();
        let options = ListContainersOptions { all: false, filters: Some(filters), ..Default::default() };
        let Ok(list) = self.docker.list_containers(Some(options)).await else { return Vec::new() };
        let reads = list.into_iter().filter_map(|summary| {
            let id = summary.id?;
            let labels = summary.labels.unwrap_or_default();
            let name =
                summary.names.and_then(|n| n.first().cloned()).unwrap_or_default().trim_start_matches('/').to_owned();
            let docker = self.docker.clone();
            Some(async move {
                let options = StatsOptions { stream: false, one_shot: false };
                let stats = tokio::time::timeout(Duration::from_secs(4), docker.stats(&id, Some(options)).next()).await;
                let Ok(Some(Ok(stats))) = stats else { return None };
                let mut m = container_metrics_of(&stats);
                // Docker's own restarts (a restart policy) are only in the inspection.
                let inspected = tokio::time::timeout(Duration::from_secs(4), docker.inspect_container(&id, None)).await;
                m.restart_count = inspected.ok().and_then(Result::ok).and_then(|i| i.restart_count).unwrap_or(0);
                m.container_id = id;
                m.name = name;
                m.image = summary.image.unwrap_or_default();
                m.state = summary.state.map(|s| s.to_string()).unwrap_or_default();
                m.workload_id = labels.get(super::LABEL_WORKLOAD_ID).cloned().unwrap_or_default();
                m.instance_id = labels.get(super::LABEL_INSTANCE_ID).cloned().unwrap_or_default();
                m.created_at = summary.created.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
                Some(m)
            })
        });
        futures::future::join_all(reads).await.into_iter().flatten().collect()
    }

    /// Follows the engine's container events and reports each change of a Persys container at
    /// once. When the engine goes away it is retried with backoff and resynchronised.
    pub async fn watch(self: Arc<Self>, shutdown: Shutdown) {
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                self.healthy.store(false, Ordering::Relaxed);
                let wait = crate::host::backoff(attempt, Duration::from_secs(30), rand::random());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.clone().wait() => return,
                }
            }
            if let Err(error) = self.negotiate().await {
                tracing::warn!(%error, attempt, "docker engine unreachable");
                attempt += 1;
                continue;
            }
            // Replaying the last seconds closes the gap between subscribing and the resync below;
            // reports are deduplicated.
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .saturating_sub(2);
            let filters: HashMap<String, Vec<String>> = [
                ("type".to_owned(), vec!["container".to_owned()]),
                (
                    "label".to_owned(),
                    vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_NODE_ID}={}", self.defaults.node_id)],
                ),
            ]
            .into();
            let options = EventsOptions { since: Some(since.to_string()), until: None, filters: Some(filters) };
            let mut events = self.docker.events(Some(options));
            if let Err(error) = self.scan(true).await {
                tracing::warn!(%error, "resynchronising containers failed");
            }
            tracing::info!(version = %self.version(), "following docker events");
            loop {
                let next = tokio::select! {
                    next = events.next() => next,
                    _ = shutdown.clone().wait() => return,
                };
                match next {
                    Some(Ok(message)) => {
                        attempt = 0;
                        let action = message.action.unwrap_or_default();
                        let Some(id) = message.actor.and_then(|a| a.id) else { continue };
                        tracing::debug!(container_id = %id, %action, "docker event");
                        match action.as_str() {
                            "destroy" => self.gone(&id),
                            a if a.starts_with("exec_") || a == "attach" || a == "resize" || a == "top" => {}
                            _ => self.refresh(&id, &action).await,
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "docker event stream failed");
                        break;
                    }
                    None => {
                        tracing::warn!("docker event stream ended");
                        break;
                    }
                }
            }
            attempt += 1;
        }
    }

    /// Creates and starts an instance (idempotent on the instance id); pulls the image first
    /// when the pull policy asks for it. A removal of the instance meanwhile cancels the pull,
    /// and the run ends without a container.
    pub async fn run(&self, run: &RunInstance, output: &Output) -> Result<(), CommandError> {
        let name = run.instance_id.as_str();
        let flight = self
            .runs
            .lock()
            .expect("runs lock")
            .entry(name.to_owned())
            .or_insert_with(|| InFlight { cancel: CancellationToken::new(), lock: Arc::default() })
            .clone();
        let result = {
            let _running = flight.lock.lock().await;
            self.run_once(run, output, &flight.cancel).await
        };
        // Whatever stopped it before the container ran is the instance's state, so the scheduler
        // never waits on an instance that will not start: refused by the node's policy, an
        // image or volume that failed, an engine error. A cancelled run is being removed, and a
        // container that failed to start is reported by the watcher from its real state.
        if let Err(e) = &result
            && !matches!(e.reason, "Cancelled" | "StartFailed")
        {
            self.fail(run, e);
        }
        let mut runs = self.runs.lock().expect("runs lock");
        if runs.get(name).is_some_and(|f| Arc::ptr_eq(&f.lock, &flight.lock)) {
            runs.remove(name);
        }
        result
    }

    async fn run_once(
        &self,
        run: &RunInstance,
        output: &Output,
        cancel: &CancellationToken,
    ) -> Result<(), CommandError> {
        let body = container::create_body(run, &self.defaults)?;
        let spec = run.spec.as_ref().expect("create_body checked the spec");
        let name = run.instance_id.as_str();
        self.mark_stopped(name, false);
        if let Some(existing) = self.inspect(name).await? {
            let running = existing.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            if !running {
                self.docker.start_container(name, None).await?;
            }
            if let Some(id) = &existing.id {
                self.refresh(id, "resync").await;
            }
            return Ok(());
        }
        if cancel.is_cancelled() {
            return Err(cancelled(name));
        }
        self.ensure_image(run, &spec.image, spec.image_pull_policy, output, cancel).await?;
        self.ensure_volumes(run).await?;
        if cancel.is_cancelled() {
            return Err(cancelled(name));
        }
        let options = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                // A concurrent run of the same instance won the race; it reports the outcome.
                return Ok(());
            }
            Err(e) => return Err(CommandError::new("CreateFailed", CommandError::from(e).message)),
        };
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let e = CommandError::new("StartFailed", CommandError::from(e).message);
            self.refresh(&created.id, "resync").await;
            return Err(e);
        }
        Ok(())
    }

    /// Returns the owner label of a Docker volume: `None` when there is no such volume,
    /// `Some(None)` for one without the label (not made by an agent).
    async fn volume_owner(&self, name: &str) -> Result<Option<Option<String>>, CommandError> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(v.labels.get(container::LABEL_VOLUME_OWNER).cloned())),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the owner's named volumes an instance mounts, labelled with the owner, before
    /// Docker would create them unlabelled; a volume of that name that exists with another
    /// owner, or with none, is refused rather than mounted.
    async fn ensure_volumes(&self, run: &RunInstance) -> Result<(), CommandError> {
        for name in container::named_volumes(run) {
            if self.volume_owner(&name).await?.is_none() {
                let labels = HashMap::from([
                    (LABEL_MANAGED.to_owned(), "true".to_owned()),
                    (container::LABEL_VOLUME_OWNER.to_owned(), run.owner_id.clone()),
                ]);
                let request =
                    VolumeCreateRequest { name: Some(name.clone()), labels: Some(labels), ..Default::default() };
                self.docker.create_volume(request).await?;
            }
            // Docker answers a create of an existing name with that volume: read the owner back.
            let owner = self.volume_owner(&name).await?.flatten();
            if owner.as_deref() != Some(run.owner_id.as_str()) {
                return Err(CommandError::new(
                    "NotAllowed",
                    format!("Docker volume `{name}` exists but was not made for this workload's owner"),
                ));
            }
        }
        Ok(())
    }

    fn fail(&self, run: &RunInstance, e: &CommandError) {
        let status = bare_status(run, &self.defaults.node_id, WorkloadPhase::Failed, e.reason, &e.message);
        self.outbox.push(event(&run.workload_id, status, false));
    }

    async fn ensure_image(
        &self,
        run: &RunInstance,
        image: &str,
        policy: i32,
        output: &Output,
        cancel: &CancellationToken,
    ) -> Result<(), CommandError> {
        let policy = container::effective_pull_policy(image, policy);
        if policy != ImagePullPolicy::Always {
            match self.docker.inspect_image(image).await {
                Ok(_) => return Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if policy == ImagePullPolicy::Never {
                return Err(CommandError::new(
                    "ImageNotPresent",
                    format!("image `{image}` is not on the node and the pull policy is Never"),
                ));
            }
        }
        let pulling = bare_status(run, &self.defaults.node_id, WorkloadPhase::Starting, "PullingImage", image);
        self.outbox.push(event(&run.workload_id, pulling, false));
        let (timeout, attempts) = (self.defaults.pull_timeout, self.defaults.pull_attempts.max(1));
        let mut backoff = Duration::from_secs(1);
        for attempt in 1..=attempts {
            let error = tokio::select! {
                pulled = tokio::time::timeout(timeout, self.pull(run, image, output)) => match pulled {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => e,
                    Err(_) => CommandError::new(
                        "ImagePullFailed",
                        format!("pulling `{image}`: not done after {}s", timeout.as_secs_f64()),
                    ),
                },
                _ = cancel.cancelled() => return Err(cancelled(&run.instance_id)),
            };
            if attempt == attempts {
                return Err(CommandError::new(
                    "ImagePullFailed",
                    format!("{} (attempt {attempt} of {attempts})", error.message),
                ));
            }
            tracing::info!(instance = %run.instance_id, image, attempt, reason = error.reason, message = %error.message, ?backoff, "image pull failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return Err(cancelled(&run.instance_id)),
            }
            backoff *= 2;
        }
        unreachable!("the last attempt returns")
    }

    async fn pull(&self, run: &RunInstance, image: &str, output: &Output) -> Result<(), CommandError> {
        let options = CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), None, None);
        let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
        let mut last_sent: Option<Instant> = None;
        let mut status = String::new();
        let progress = |layers: &HashMap<String, (i64, i64)>, status: &str, done: bool| ImagePullProgress {
            command_id: String::new(),
            instance_id: run.instance_id.clone(),
            image: image.to_owned(),
            current_bytes: layers.values().map(|l| l.0).sum(),
            total_bytes: layers.values().map(|l| l.1).sum(),
            status: status.to_owned(),
            done,
        };
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| CommandError::new("ImagePullFailed", format!("pulling `{image}`: {e}")))?;
            if let (Some(id), Some(detail)) = (&info.id, &info.progress_detail)
                && let (Some(current), Some(total)) = (detail.current, detail.total)
            {
                layers.insert(id.clone(), (current, total));
            }
            status = info.status.unwrap_or(status);
            if last_sent.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_sent = Some(Instant::now());
                output.pull_progress(progress(&layers, &status, false)).await;
            }
        }
        output.pull_progress(progress(&layers, &status, true)).await;
        Ok(())
    }

    fn with_grace(&self, grace: Option<Duration>) -> (Option<i32>, Docker) {
        let t = grace.map(|g| g.as_secs().min(i32::MAX as u64) as i32);
        let wait = t.map(|t| t as u64).unwrap_or(container::DEFAULT_STOP_TIMEOUT.as_secs()).max(30);
        (t, self.docker.clone().with_timeout(Duration::from_secs(CALL_TIMEOUT + wait)))
    }

    /// Stops an instance: SIGTERM, then SIGKILL after the grace period (the container's own
    /// stop timeout when `None`). The container is kept.
    pub async fn stop(&self, instance_id: &str, grace: Option<Duration>) -> Result<(), CommandError> {
        self.mark_stopped(instance_id, true);
        let (t, docker) = self.with_grace(grace);
        match docker.stop_container(instance_id, Some(StopContainerOptions { t, signal: None })).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops (if running) and removes an instance; an instance that is already gone counts
    /// as removed.
    pub async fn remove(&self, instance_id: &str, grace: Option<Duration>, volumes: bool) -> Result<(), CommandError> {
        // A run still starting (pulling its image) is cancelled, and has ended before this
        // removes: it cannot create the container afterwards.
        let flight = self.runs.lock().expect("runs lock").get(instance_id).cloned();
        if let Some(flight) = flight {
            flight.cancel.cancel();
            let _ended = flight.lock.lock().await;
        }
        match self.stop(instance_id, grace).await {
            Ok(()) => {}
            Err(e) if e.reason == "ContainerNotFound" => return Ok(()),
            Err(e) => return Err(e),
        }
        let options = RemoveContainerOptions { v: volumes, force: true, link: false };
        match self.docker.remove_container(instance_id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Restarts an instance in place.
    pub async fn restart(&self, instance_id: &str, grace: Option<Duration>) -> Result<(), CommandError> {
        self.mark_stopped(instance_id, false);
        let (t, docker) = self.with_grace(grace);
        docker.restart_container(instance_id, Some(RestartContainerOptions { t, signal: None })).await?;
        Ok(())
    }

    /// Sends an instance's output as chunks; with `follow`, until the container stops or the
    /// command is canceled.
    pub async fn logs(&self, req: &FetchLogs, output: &Output, cancel: &CancellationToken) -> Result<(), CommandError> {
        if self.inspect(&req.instance_id).await?.is_none() {
            return Err(CommandError::new("ContainerNotFound", format!("no instance `{}`", req.instance_id)));
        }
        // Docker's `since` has whole seconds; the rest of the second is cut here, by each
        // line's own time (`timestamps`), which also stamps the chunks.
        let since_ms = req.since.as_ref().map(timestamp_ms);
        let options = LogsOptions {
            follow: req.follow,
            stdout: true,
            stderr: true,
            since: req.since.map(|t| t.seconds.clamp(0, i32::MAX as i64) as i32).unwrap_or(0),
            until: 0,
            timestamps: true,
            tail: req.tail_lines.map(|n| n.max(0).to_string()).unwrap_or_else(|| "all".into()),
        };
        let mut stream = self.docker.logs(&req.instance_id, Some(options));
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = cancel.cancelled() => return Err(CommandError::canceled()),
            };
            match next {
                Some(Ok(chunk)) => send_logged(output, chunk, since_ms).await?,
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            }
        }
    }

    /// Acts on any container of the machine (ChatOps), named by its id, a unique prefix of at
    /// least 12 characters of it, or its name. Containers of Persys instances can only be
    /// read: START, STOP and RESTART are refused (`ManagedByPersys`). LOGS follows for at most
    /// an hour.
    pub async fn action(
        &self,
        req: &ContainerAction,
        output: &Output,
        cancel: &CancellationToken,
    ) -> Result<ContainerActionResult, CommandError> {
        let wanted = req.container_id.trim();
        if wanted.is_empty()
            || wanted.len() > 128
            || !wanted.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(CommandError::new(
                "InvalidArgument",
                format!("`{wanted}` is not a container id or name (letters, digits, `_`, `.`, `-`)"),
            ));
        }
        let not_found = || CommandError::new("ContainerNotFound", format!("no container `{wanted}` on this node"));
        let found = self.inspect(wanted).await?.ok_or_else(not_found)?;
        let id = found.id.clone().unwrap_or_default();
        let name = found.name.as_deref().unwrap_or_default().trim_start_matches('/');
        // Docker takes any prefix of an id; a short one names a container by chance.
        if name != wanted && !(wanted.len() >= 12 && id.starts_with(wanted)) {
            return Err(CommandError::new(
                "ContainerNotFound",
                format!("no container named `{wanted}`; give its name, its id or at least 12 characters of it"),
            ));
        }
        let managed = found
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(LABEL_MANAGED))
            .is_some_and(|v| v == "true");
        let operation = ContainerOperation::try_from(req.operation).unwrap_or(ContainerOperation::Unspecified);
        if managed && operation != ContainerOperation::Logs {
            return Err(CommandError::new(
                "ManagedByPersys",
                format!("container `{name}` is an instance of a Persys workload: stop, start or restart its workload"),
            ));
        }
        let grace = container::duration(&req.grace_period).unwrap_or(Duration::from_secs(10));
        if grace > Duration::from_secs(300) {
            return Err(CommandError::new("InvalidArgument", "grace_period is at most 5 minutes"));
        }
        tracing::info!(audit = true, requested_by = %req.requested_by, container = %id, operation = ?operation, "container action");
        match operation {
            ContainerOperation::Unspecified => {
                return Err(CommandError::new("InvalidArgument", "operation: one of START, STOP, RESTART, LOGS"));
            }
            ContainerOperation::Start => self.docker.start_container(&id, None).await?,
            ContainerOperation::Stop => {
                let (t, docker) = self.with_grace(Some(grace));
                match docker.stop_container(&id, Some(StopContainerOptions { t, signal: None })).await {
                    Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            ContainerOperation::Restart => {
                let (t, docker) = self.with_grace(Some(grace));
                docker.restart_container(&id, Some(RestartContainerOptions { t, signal: None })).await?;
            }
            ContainerOperation::Logs => {
                let options = LogsOptions {
                    follow: req.follow,
                    stdout: true,
                    stderr: true,
                    tail: req.tail_lines.unwrap_or(500).max(0).to_string(),
                    ..Default::default()
                };
                let mut stream = self.docker.logs(&id, Some(options));
                let deadline = tokio::time::sleep(Duration::from_secs(3600));
                tokio::pin!(deadline);
                loop {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        _ = cancel.cancelled() => return Err(CommandError::canceled()),
                        _ = &mut deadline => None,
                    };
                    match next {
                        Some(Ok(chunk)) => send_output(output, chunk).await?,
                        Some(Err(e)) => return Err(e.into()),
                        None => break,
                    }
                }
            }
        }
        let state = self
            .inspect(&id)
            .await?
            .and_then(|c| c.state)
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "removed".into());
        Ok(ContainerActionResult { container_id: id, state })
    }

    /// Runs a command inside a running instance, streaming its output; returns how it ended.
    pub async fn exec(
        &self,
        req: &ExecInstance,
        output: &Output,
        cancel: &CancellationToken,
    ) -> Result<ExecExit, CommandError> {
        if req.command.is_empty() {
            return Err(CommandError::new("InvalidArgument", "exec without a command"));
        }
        let started = Instant::now();
        let options = CreateExecOptions {
            attach_stdin: Some(!req.stdin.is_empty()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            env: Some(req.env.iter().map(|e| format!("{}={}", e.name, e.value)).collect()),
            cmd: Some(req.command.clone()),
            working_dir: (!req.working_dir.is_empty()).then(|| req.working_dir.clone()),
            ..Default::default()
        };
        let exec = self.docker.create_exec(&req.instance_id, options).await?;
        let StartExecResults::Attached { output: mut stream, mut input } =
            self.docker.start_exec(&exec.id, Some(StartExecOptions::default())).await?
        else {
            return Err(CommandError::new("RuntimeError", "exec started detached"));
        };
        if !req.stdin.is_empty() {
            input
                .write_all(&req.stdin)
                .await
                .map_err(|e| CommandError::new("RuntimeError", format!("exec stdin: {e}")))?;
        }
        let _ = input.shutdown().await;
        let timeout = container::duration(&req.timeout).filter(|d| !d.is_zero());
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut sent = 0usize;
        let mut truncated = false;
        let mut timed_out = false;
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = &mut deadline => { timed_out = true; break; }
                _ = cancel.cancelled() => return Err(CommandError::canceled()),
            };
            match next {
                Some(Ok(chunk)) => {
                    let len = chunk.as_ref().len();
                    if sent + len > EXEC_OUTPUT_CAP {
                        truncated = true;
                        continue;
                    }
                    sent += len;
                    send_output(output, chunk).await?;
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        let mut exit_code = -1;
        if !timed_out {
            // The exit code is set once the engine has reaped the process, just after the
            // output ends.
            for _ in 0..50 {
                let inspect = self.docker.inspect_exec(&exec.id).await?;
                if inspect.running != Some(true) {
                    exit_code = inspect.exit_code.unwrap_or(-1) as i32;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(ExecExit {
            exit_code,
            timed_out,
            output_truncated: truncated,
            duration: prost_types::Duration::try_from(started.elapsed()).ok(),
        })
    }

    /// Returns whether a Persys container with this instance id exists.
    pub async fn has(&self, instance_id: &str) -> bool {
        matches!(self.inspect(instance_id).await, Ok(Some(_)))
    }

    /// Returns the status the driver last reported for an instance, if any.
    pub fn last_status(&self, instance_id: &str) -> Option<InstanceStatus> {
        self.last
            .lock()
            .expect("last lock")
            .values()
            .filter_map(|e| e.status.clone())
            .find(|s| s.instance_id == instance_id)
    }
}

/// Splits Docker's `timestamps` output into lines with their times: each line starts with an
/// RFC 3339 time and a space. A line without one (which Docker does not send) keeps no time.
pub fn timestamped_lines(data: &[u8]) -> Vec<(Option<prost_types::Timestamp>, &[u8])> {
    data.split_inclusive(|b| *b == b'\n')
        .map(|line| {
            let time = line
                .iter()
                .position(|b| *b == b' ')
                .and_then(|space| Some((std::str::from_utf8(&line[..space]).ok()?.parse().ok()?, space)));
            match time {
                Some((t, space)) => (Some(t), &line[space + 1..]),
                None => (None, line),
            }
        })
        .collect()
}

/// Sends a log message read with `timestamps`: each line as a chunk stamped with its own time,
/// without the lines written before `since_ms`.
async fn send_logged(output: &Output, chunk: LogOutput, since_ms: Option<i64>) -> Result<(), CommandError> {
    let (stream, data) = match chunk {
        LogOutput::StdErr { message } => (OutputStream::Stderr, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => (OutputStream::Stdout, message),
        LogOutput::StdIn { .. } => return Ok(()),
    };
    for (time, line) in timestamped_lines(&data) {
        match time {
            Some(t) if since_ms.is_some_and(|since| timestamp_ms(&t) < since) => {}
            Some(t) => output.chunk_at(stream, data.slice_ref(line), t).await?,
            None => output.chunk(stream, data.slice_ref(line)).await?,
        }
    }
    Ok(())
}

async fn send_output(output: &Output, chunk: LogOutput) -> Result<(), CommandError> {
    let (stream, data) = match chunk {
        LogOutput::StdErr { message } => (OutputStream::Stderr, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => (OutputStream::Stdout, message),
        LogOutput::StdIn { .. } => return Ok(()),
    };
    output.chunk(stream, data).await
}

/// The figures of one stats reading: CPU as percent of one core between the reading and the
/// one before it (Docker's own formula), memory without the page cache, network and block I/O
/// totals. Missing figures are zero; nothing here can panic on odd input.
pub fn container_metrics_of(s: &ContainerStatsResponse) -> ContainerMetrics {
    let total = |c: &Option<bollard::models::ContainerCpuStats>| {
        c.as_ref().and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0)
    };
    let system =
        |c: &Option<bollard::models::ContainerCpuStats>| c.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0);
    let cpus = s.cpu_stats.as_ref().and_then(|c| c.online_cpus).filter(|n| *n > 0).unwrap_or(1);
    let cpu_delta = total(&s.cpu_stats).saturating_sub(total(&s.precpu_stats)) as f64;
    let system_delta = system(&s.cpu_stats).saturating_sub(system(&s.precpu_stats)) as f64;
    let cpu_percent = if system_delta > 0.0 { cpu_delta / system_delta * f64::from(cpus) * 100.0 } else { 0.0 };
    let memory = s.memory_stats.as_ref();
    let cache = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| st.get("inactive_file").or_else(|| st.get("total_inactive_file")).copied())
        .unwrap_or(0);
    let usage = memory.and_then(|m| m.usage).unwrap_or(0).saturating_sub(cache);
    let limit = memory.and_then(|m| m.limit).unwrap_or(0);
    let (rx, tx) = s.networks.iter().flatten().fold((0u64, 0u64), |(rx, tx), (_, n)| {
        (rx.saturating_add(n.rx_bytes.unwrap_or(0)), tx.saturating_add(n.tx_bytes.unwrap_or(0)))
    });
    let (read, write) =
        s.blkio_stats.as_ref().and_then(|b| b.io_service_bytes_recursive.as_ref()).into_iter().flatten().fold(
            (0u64, 0u64),
            |(r, w), e| match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => (r.saturating_add(e.value.unwrap_or(0)), w),
                Some("write") => (r, w.saturating_add(e.value.unwrap_or(0))),
                _ => (r, w),
            },
        );
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    ContainerMetrics {
        cpu_percent: if cpu_percent.is_finite() { cpu_percent } else { 0.0 },
        memory_usage_bytes: i(usage),
        memory_limit_bytes: i(limit),
        network_rx_bytes: i(rx),
        network_tx_bytes: i(tx),
        block_read_bytes: i(read),
        block_write_bytes: i(write),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::timestamped_lines;

    #[test]
    fn docker_timestamps_become_each_lines_time() {
        let data = b"2026-12-04T20:31:00.123456789Z one\n2026-12-04T20:31:01.5Z two words\nno-time\n";
        let lines = timestamped_lines(data);
        let text: Vec<&[u8]> = lines.iter().map(|(_, l)| *l).collect();
        assert_eq!(text, [&b"one\n"[..], b"two words\n", b"no-time\n"]);
        let one = lines[0].0.unwrap();
        assert_eq!((one.seconds % 60, one.nanos), (0, 123_456_789));
        assert_eq!(lines[1].0.unwrap().nanos, 500_000_000);
        assert!(lines[2].0.is_none(), "a line without a time keeps none (and its text whole)");
        // Never panics on odd bytes; an unterminated last line is kept.
        assert_eq!(timestamped_lines(b"\xff\xfe \x00").len(), 1);
        assert!(timestamped_lines(b"").is_empty());
        assert_eq!(timestamped_lines(b"2026-12-04T20:31:00Z tail")[0].1, b"tail");
    }
}
