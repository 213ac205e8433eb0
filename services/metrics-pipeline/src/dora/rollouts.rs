//! Persys cloud's own rollouts as DORA deployments, so users without ArgoCD get the four keys.
//!
//! The pipeline follows the scheduler's workloads (`WatchWorkloads`, mTLS as `metrics`, which
//! the scheduler lets read every workload and nothing else). A workload is one rollout of its
//! name: it is recorded once, when it settles: every replica RUNNING is a success, FAILED (the
//! image would not start, or the restart budget ran out before it ever ran) a failure. The
//! component is the workload's name, the revision its id's 32 hex digits (all of them: the first
//! 12 of a UUIDv7 are only its creation millisecond, which two workloads may share), the time
//! its phase changed, the image its spec's. A workload that fails after it ran is an incident,
//! not a failed deployment, and is not recorded again. A rollout carries its workload's owner:
//! members see only their own (as with workloads).
//!
//! After a broken stream it resumes from the last revision it saw; rollouts recorded before a
//! restart are known from the database, so nothing is recorded twice.
//!
//! The same stream feeds the alert rules on workload health ([`Health`]): replicas wanted
//! running that are not, and restarts over the last 10 minutes, evaluated on every change and
//! every 30 s (so a loop that stopped restarting resolves).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::Duration,
};

use persys_kit::{client::TracedChannel, shutdown::Shutdown};
use persys_proto::{
    common::v1::WatchEventType,
    metrics::v1::Metric,
    metrics::v1::{DeploymentEnvironment, DeploymentStatus, RecordDeploymentRequest},
    scheduler::v1::{
        DesiredState, WatchWorkloadsRequest, Workload, WorkloadPhase, scheduler_service_client::SchedulerServiceClient,
    },
};

use super::Dora;
use crate::{alerts::Alerts, clock::now_ms, samples::Row};

/// The window of METRIC_WORKLOAD_RESTARTS_10M.
const RESTART_WINDOW_MS: i64 = 600_000;
/// How often every known workload is evaluated again without a change.
const REEVALUATE: Duration = Duration::from_secs(30);

/// What the workload-health rules see of one workload.
#[derive(Default)]
struct Seen {
    name: String,
    /// Replicas wanted running that are not.
    unavailable: f64,
    /// Restart counts with when they were seen, oldest first.
    restarts: VecDeque<(i64, i32)>,
}

/// What the workload-health rules see of each workload.
#[derive(Default)]
pub struct Health {
    /// By workload id.
    workloads: HashMap<String, Seen>,
}

impl Health {
    /// Takes in a change of `w` at `now_ms` (a deletion with `deleted`); returns its rows.
    pub fn update(&mut self, w: &Workload, deleted: bool, now_ms: i64) -> Vec<Row> {
        if deleted {
            // Its alerts resolve: nothing is wanted of a deleted workload.
            let name = self.workloads.remove(&w.id).map(|e| e.name).unwrap_or_else(|| w.name.clone());
            return rows(&w.id, &name, 0.0, 0.0, now_ms);
        }
        let spec = w.spec.clone().unwrap_or_default();
        let status = w.status.clone().unwrap_or_default();
        let wanted = match DesiredState::try_from(w.desired_state).unwrap_or_default() {
            DesiredState::Unspecified | DesiredState::Running => spec.replicas.max(1),
            _ => 0,
        };
        let terminal = matches!(WorkloadPhase::try_from(status.phase), Ok(WorkloadPhase::Succeeded));
        let unavailable = if terminal { 0 } else { (wanted - status.ready_replicas).max(0) };
        let entry = self.workloads.entry(w.id.clone()).or_default();
        entry.name = w.name.clone();
        entry.unavailable = f64::from(unavailable);
        if entry.restarts.back().is_none_or(|(_, c)| *c != status.restart_count) {
            entry.restarts.push_back((now_ms, status.restart_count));
        }
        self.rows_of(&w.id, now_ms)
    }

    /// Every known workload's rows at `now_ms`.
    pub fn all(&mut self, now_ms: i64) -> Vec<Row> {
        let ids: Vec<String> = self.workloads.keys().cloned().collect();
        ids.iter().flat_map(|id| self.rows_of(id, now_ms)).collect()
    }

    fn rows_of(&mut self, id: &str, now_ms: i64) -> Vec<Row> {
        let Some(Seen { name, unavailable, restarts: counts }) = self.workloads.get_mut(id) else { return Vec::new() };
        // Keep the newest count from before the window as the baseline.
        while counts.len() > 1 && counts[1].0 <= now_ms - RESTART_WINDOW_MS {
            counts.pop_front();
        }
        let newest = counts.back().map_or(0, |c| c.1);
        let baseline = counts.front().map_or(newest, |c| c.1);
        let restarts = f64::from((newest - baseline).max(0));
        rows(id, name, *unavailable, restarts, now_ms)
    }
}

fn rows(id: &str, name: &str, unavailable: f64, restarts: f64, now_ms: i64) -> Vec<Row> {
    let labels: crate::samples::Labels =
        [("workload_id".to_string(), id.to_string()), ("workload".to_string(), name.to_string())].into();
    vec![
        Row {
            metric: Metric::WorkloadUnavailableReplicas,
            labels: labels.clone(),
            time_ms: now_ms,
            value: unavailable,
        },
        Row { metric: Metric::WorkloadRestarts10m, labels, time_ms: now_ms, value: restarts },
    ]
}

/// Longest wait before following the scheduler again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A workload name as a component: letters, digits, `.`, `_`, `-`; anything else becomes `-`.
fn component(name: &str) -> String {
    let c: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).take(253).collect();
    if c.is_empty() { "workload".into() } else { c }
}

/// The deployment a workload makes once it settled; `None` while it is on its way.
pub fn deployment_of(w: &Workload, cluster: &str) -> Option<RecordDeploymentRequest> {
    let spec = w.spec.as_ref()?;
    let status = w.status.as_ref()?;
    let phase = WorkloadPhase::try_from(status.phase).ok()?;
    let outcome = match phase {
        WorkloadPhase::Running if status.ready_replicas >= spec.replicas.max(1) => DeploymentStatus::Success,
        WorkloadPhase::Failed => DeploymentStatus::Failed,
        _ => return None,
    };
    let revision: String = w.id.chars().filter(char::is_ascii_hexdigit).collect();
    if revision.len() != 32 {
        return None;
    }
    let environment = match spec.labels.get("environment").map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("staging" | "stage") => DeploymentEnvironment::Staging,
        Some("testing" | "test") => DeploymentEnvironment::Testing,
        Some("development" | "dev") => DeploymentEnvironment::Development,
        _ => DeploymentEnvironment::Production,
    };
    Some(RecordDeploymentRequest {
        application: component(&w.name),
        cluster: cluster.to_owned(),
        component: component(&w.name),
        environment: environment as i32,
        revision,
        images: vec![spec.image.clone()],
        status: outcome as i32,
        sync_status: phase.as_str_name().trim_start_matches("WORKLOAD_PHASE_").to_owned(),
        health_status: status.reason.clone(),
        deployed_at: status.last_transition_time.or(w.updated_at),
        ..RecordDeploymentRequest::default()
    })
}

async fn evaluate(alerts: &Alerts, rows: Vec<Row>) {
    if rows.is_empty() {
        return;
    }
    if let Err(error) = alerts.observe("", &rows).await {
        tracing::warn!(error = ?error, "evaluating workload health failed");
    }
}

/// Follows the scheduler at `channel`, records rollouts with `dora` as cluster `cluster`,
/// evaluates workload health with `alerts` and keeps `owners` current, until `shutdown`.
pub async fn run(
    dora: Dora,
    alerts: Alerts,
    owners: crate::query::Owners,
    channel: TracedChannel,
    cluster: String,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut health = Health::default();
    let mut every = tokio::time::interval(REEVALUATE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client = SchedulerServiceClient::new(channel);
    let mut recorded: HashSet<String> = loop {
        match dora.deployments().revisions_in(&cluster).await {
            Ok(r) => break r.into_iter().collect(),
            Err(error) => {
                tracing::warn!(%error, "reading recorded rollouts failed; trying again in 5 s");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    let mut since = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        let request = WatchWorkloadsRequest { since_revision: since, ..WatchWorkloadsRequest::default() };
        let opened = tokio::select! {
            _ = &mut stop => return,
            r = client.watch_workloads(request) => r,
        };
        match opened {
            Ok(stream) => {
                tracing::info!(since, "following the scheduler's workloads for DORA rollouts");
                let mut stream = stream.into_inner();
                loop {
                    let next = tokio::select! {
                        _ = &mut stop => return,
                        _ = every.tick() => {
                            evaluate(&alerts, health.all(now_ms())).await;
                            continue;
                        }
                        m = stream.message() => m,
                    };
                    match next {
                        Ok(Some(event)) => {
                            backoff = Duration::from_secs(1);
                            since = since.max(event.revision);
                            let deleted = event.r#type == WatchEventType::Deleted as i32;
                            if let Some(w) = event.workload.as_ref() {
                                owners.set(&w.id, (!deleted).then_some(w.owner_id.as_str()));
                                evaluate(&alerts, health.update(w, deleted, now_ms())).await;
                            }
                            if deleted {
                                continue;
                            }
                            let Some(w) = event.workload.as_ref() else { continue };
                            let Some(req) = deployment_of(w, &cluster) else { continue };
                            // Recorded already: by its whole id, or by the first 12 digits, as
                            // pipelines before 2026-12 recorded rollouts.
                            if recorded.contains(&req.revision) || recorded.contains(&req.revision[..12]) {
                                continue;
                            }
                            match dora.record(&req, false, &w.owner_id).await {
                                Ok(_) => {
                                    recorded.insert(req.revision);
                                }
                                Err(error) => {
                                    tracing::warn!(workload = %req.application, error = ?error, "recording a rollout failed; it is retried on the next change or resume");
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            if status.code() == tonic::Code::OutOfRange {
                                since = 0;
                            }
                            tracing::warn!(code = ?status.code(), error = %status.message(), "the workload watch broke; resuming");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), error = %status.message(), retry_in = ?backoff, "cannot follow the scheduler's workloads");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::{
        metrics::v1::DeploymentStatus,
        scheduler::v1::{Workload, WorkloadPhase, WorkloadSpec, WorkloadStatus},
    };

    use super::{Health, deployment_of};

    fn workload(phase: WorkloadPhase, ready: i32) -> Workload {
        Workload {
            id: "0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
            name: "shop web".into(),
            spec: Some(WorkloadSpec { image: "quay.io/acme/shop:3f9a1c2".into(), replicas: 2, ..Default::default() }),
            status: Some(WorkloadStatus {
                phase: phase as i32,
                ready_replicas: ready,
                last_transition_time: Some(prost_types::Timestamp { seconds: 1_796_119_200, nanos: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_workload_is_a_deployment_once_every_replica_runs_or_it_failed() {
        assert!(deployment_of(&workload(WorkloadPhase::Starting, 0), "persys").is_none());
        assert!(deployment_of(&workload(WorkloadPhase::Running, 1), "persys").is_none(), "1 of 2 replicas");
        let ok = deployment_of(&workload(WorkloadPhase::Running, 2), "persys").unwrap();
        assert_eq!((ok.component.as_str(), ok.revision.as_str()), ("shop-web", "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b"));
        // Two workloads of one name made in the same millisecond are two rollouts.
        let mut twin = workload(WorkloadPhase::Running, 2);
        twin.id = "0193a5b2-7c4d-7e8f-9a0b-ffffffffffff".into();
        assert_ne!(deployment_of(&twin, "persys").unwrap().revision, ok.revision);
        assert_eq!(ok.status, DeploymentStatus::Success as i32);
        assert_eq!(ok.images, ["quay.io/acme/shop:3f9a1c2"]);
        assert_eq!(ok.deployed_at.unwrap().seconds, 1_796_119_200);
        let failed = deployment_of(&workload(WorkloadPhase::Failed, 0), "persys").unwrap();
        assert_eq!(failed.status, DeploymentStatus::Failed as i32);
        assert!(deployment_of(&workload(WorkloadPhase::Stopped, 0), "persys").is_none());
    }

    fn values(rows: &[crate::samples::Row]) -> (f64, f64) {
        (rows[0].value, rows[1].value)
    }

    #[test]
    fn health_counts_missing_replicas_and_recent_restarts() {
        let mut h = Health::default();
        let mut w = workload(WorkloadPhase::Running, 1);
        assert_eq!(values(&h.update(&w, false, 0)), (1.0, 0.0), "1 of 2 replicas runs");
        w.status.as_mut().unwrap().restart_count = 2;
        w.status.as_mut().unwrap().ready_replicas = 2;
        assert_eq!(values(&h.update(&w, false, 60_000)), (0.0, 2.0));
        w.status.as_mut().unwrap().restart_count = 5;
        assert_eq!(values(&h.update(&w, false, 120_000)), (0.0, 5.0));
        // Ten minutes after the last restart, the window holds none.
        assert_eq!(values(&h.all(120_000 + 600_000)), (0.0, 0.0));
        // Stopped on request: nothing is missing; deleted: its rows read 0.
        w.desired_state = persys_proto::scheduler::v1::DesiredState::Stopped as i32;
        w.status.as_mut().unwrap().ready_replicas = 0;
        assert_eq!(values(&h.update(&w, false, 800_000)).0, 0.0);
        assert_eq!(values(&h.update(&w, true, 800_001)), (0.0, 0.0));
        assert!(h.all(900_000).is_empty());
    }
}
