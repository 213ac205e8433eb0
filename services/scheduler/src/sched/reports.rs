//! Agents' reports: one instance's status ([`crate::decide::status`]), an image pull's
//! progress, and the reconciliation of a node that just connected
//! ([`crate::decide::reconcile`]).

use std::time::{Duration, SystemTime};

use persys_kit::ApiError;
use persys_proto::scheduler::v1::{ImagePullProgress, RemoveInstance, WorkloadStatusEvent, connect_response::Payload};

use super::{Scheduler, write};
use crate::{
    decide::{
        reconcile::{self, ReportStep},
        status::{self, Outcome, Record, report_sequence},
    },
    kv::Kv,
    model::is_terminal,
    store::Change,
};

impl<K: Kv> Scheduler<K> {
    /// Records an agent's report about one of its instances, enforcing that a node only
    /// reports for instances assigned to it and that a report older than the last one recorded
    /// for the instance (see [`report_sequence`]) changes nothing. When an instance ends under
    /// a restart policy, the time of its restart (now plus the backoff) is stored with it
    /// (`restart_at`) and the restart armed (see [`Scheduler::dispatch`]). The decision is
    /// [`status::report`]'s, made again over the fresh record on every retry of the write.
    pub async fn on_status(&self, node_id: &str, event: WorkloadStatusEvent) -> Result<(), ApiError> {
        let Some(report) = &event.status else { return Ok(()) };
        let mut decided = None;
        let updated = self
            .update_workload_evicting(&event.workload_id, |w| {
                let mut plan = status::report(w, node_id, &event, SystemTime::now());
                let change = write(w, plan.workload.take());
                decided = Some(plan);
                change
            })
            .await?;
        let (outcome, restart_in) = decided.map_or((Outcome::Unknown, None), |p| (p.outcome, p.restart_in));
        let instance = &report.instance_id;
        match &outcome {
            Outcome::OtherNode { owner } => {
                tracing::warn!(node = node_id, %owner, %instance, "report for another node's instance ignored");
            }
            Outcome::Stale { last } => {
                let sequence = report_sequence(event.sequence, event.observed_at.as_ref());
                tracing::debug!(node = node_id, %instance, sequence, last, "stale report ignored");
            }
            Outcome::Applied | Outcome::Unknown => {}
        }
        if let Some(delay) = restart_in {
            tracing::info!(%instance, ?delay, "restarting after backoff");
        }
        // A report that an ended instance lives again, on a node with no room left for it,
        // evicts it (see `Store::update_workload_evicting`): it is not running as far as the
        // cluster is concerned.
        let evicted = updated.as_ref().is_some_and(|u| u.evicted.iter().any(|i| &i.instance_id == instance));
        let updated = updated.map(|u| u.workload);
        if let (Some(zone), Some(w)) = (&self.settings.dns_zone, &updated)
            && let Some(record) = status::instance_record(zone, w, &event, &outcome, evicted)
        {
            let (key, address) = match record {
                Record::PointAtNode(key) => {
                    let node = self.store.node(node_id).await.ok().flatten();
                    (key, node.and_then(|n| n.addresses.first().cloned()))
                }
                Record::Remove(key) => (key, None),
            };
            crate::dns::set(self.store.kv().as_ref(), key, address.as_deref()).await;
        }
        // The restart is armed here too (not only by the dispatch loop's watch), so it does
        // not wait for the watch.
        if let (Some(_), Some(w)) = (restart_in, &updated) {
            self.dispatch(w).await;
        }
        Ok(())
    }

    /// Shows an image pull's progress in the message of the instance it is for.
    pub async fn on_pull_progress(&self, node_id: &str, p: &ImagePullProgress) -> Result<(), ApiError> {
        // Instance ids are `<workload id>-<suffix>` (see `Snapshot::plan`).
        let Some((workload_id, _)) = p.instance_id.rsplit_once('-') else { return Ok(()) };
        let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
        let message = if p.done {
            format!("pulled {}", p.image)
        } else if p.total_bytes > 0 {
            format!("pulling {}: {:.1} of {:.1} MiB", p.image, mib(p.current_bytes), mib(p.total_bytes))
        } else {
            format!("pulling {}: {}", p.image, p.status)
        };
        self.store
            .update_workload(workload_id, |w| {
                match w.status.as_mut().and_then(|s| s.instances.iter_mut().find(|i| i.instance_id == p.instance_id)) {
                    Some(i) if i.node_id == node_id && i.message != message && !is_terminal(i.phase) => {
                        i.reason = "PullingImage".into();
                        i.message = message.clone();
                        Change::Write(())
                    }
                    _ => Change::Keep,
                }
            })
            .await?;
        Ok(())
    }

    /// Reconciles a node that just connected: instances it should run but does not are run
    /// again, instances it runs but should not are removed, and its reports are recorded (see
    /// [`reconcile::reconcile`]). With `confirm`, returns only once the agent has answered
    /// every removal (or `timeout` passed): a node back from Down must have stopped what moved
    /// elsewhere before it takes work again. Returns how many removals were not confirmed.
    pub async fn reconcile_node(
        &self,
        node_id: &str,
        reported: Vec<WorkloadStatusEvent>,
        confirm: Option<Duration>,
    ) -> Result<usize, ApiError> {
        let (workloads, _) = self.store.workloads().await?;
        let plan = reconcile::reconcile(node_id, &workloads, reported);
        let mut calls = Vec::new();
        for step in plan.reports {
            match step {
                ReportStep::Record(report) => self.on_status(node_id, *report).await?,
                ReportStep::Remove(id) => {
                    tracing::info!(node = node_id, instance = %id, "removing an instance the cluster no longer wants");
                    let remove =
                        Payload::Remove(RemoveInstance { instance_id: id, grace_period: None, remove_volumes: true });
                    if confirm.is_some() {
                        if let Ok(call) = self.agents.call(node_id, remove).await {
                            calls.push(call);
                        }
                    } else {
                        let _ = self.agents.send(node_id, remove).await;
                    }
                }
            }
        }
        let missing: Vec<String> = plan.missing.iter().map(|m| m.instance_id.clone()).collect();
        self.forget_sent(&missing);
        for m in &plan.missing {
            // The agent lost it (machine restarted, container removed by hand): run it again.
            self.store.update_workload(&m.workload_id, |w| write(w, reconcile::missing(w, &m.instance_id))).await?;
        }
        for id in &plan.redispatch {
            if let Some(fresh) = self.store.workload(id).await? {
                self.dispatch(&fresh).await;
            }
        }
        let Some(timeout) = confirm else { return Ok(0) };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut unconfirmed = 0;
        for mut call in calls {
            let done = tokio::time::timeout_at(deadline, async {
                loop {
                    match call.next().await {
                        Some(crate::agents::Reply::Done(result)) => return result.success,
                        Some(crate::agents::Reply::Cut(_)) | None => return false,
                        Some(_) => {}
                    }
                }
            })
            .await;
            if !matches!(done, Ok(true)) {
                unconfirmed += 1;
            }
        }
        Ok(unconfirmed)
    }
}
