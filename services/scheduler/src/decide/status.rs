//! An agent's report about one of its instances: whether it is recorded, what the workload
//! becomes, whether a restart is armed, and which DNS record follows.

use std::time::{Duration, SystemTime};

use persys_proto::{
    common::v1::EventType as PbEventType,
    scheduler::v1::{DesiredState, InstanceStatus, Workload, WorkloadPhase, WorkloadStatusEvent},
};

use crate::{
    events::{phase_title, record_event_at},
    model::{is_terminal, ms_of, ms_ts, restart_backoff, wants_restart},
};

/// What a report comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded.
    Applied,
    /// The workload has no such instance (any more).
    Unknown,
    /// The instance is assigned to another node (`owner`): changes nothing.
    OtherNode {
        /// The node the instance is assigned to.
        owner: String,
    },
    /// Not newer than the last report recorded for the instance (`last`): changes nothing.
    Stale {
        /// The order of the last report recorded.
        last: u64,
    },
}

impl Outcome {
    /// Returns whether the report was ignored (another node's instance, or stale).
    pub fn ignored(&self) -> bool {
        matches!(self, Self::OtherNode { .. } | Self::Stale { .. })
    }
}

/// What to do about one report.
#[derive(Clone, Debug)]
pub struct ReportPlan {
    /// What the report comes to.
    pub outcome: Outcome,
    /// The workload to write, `None` to leave it as it is.
    pub workload: Option<Workload>,
    /// The backoff of a restart armed by this report (stored as the instance's `restart_at`).
    pub restart_in: Option<Duration>,
}

/// Decides what `node_id`'s report `event` does to `w` at `now`.
///
/// A node only reports for instances assigned to it, and a report not newer than the last one
/// recorded for the instance (see [`report_sequence`]) changes nothing. A removal drops the
/// instance. Otherwise the report replaces the instance's status, keeping what the scheduler
/// owns (node, replica index, restart count, removal), and is recorded as an event; an instance
/// that just ended, should run and whose policy wants a restart (within `max_restarts`) gets
/// `restart_at = now + backoff`. A repeat of an end keeps the restart already pending.
pub fn report(w: &Workload, node_id: &str, event: &WorkloadStatusEvent, now: SystemTime) -> ReportPlan {
    let keep = |outcome| ReportPlan { outcome, workload: None, restart_in: None };
    let Some(report) = &event.status else { return keep(Outcome::Unknown) };
    let sequence = report_sequence(event.sequence, event.observed_at.as_ref());
    let mut w = w.clone();
    let desired = w.desired_state();
    let policy = w.spec.as_ref().map_or(0, |s| s.restart_policy);
    let max_restarts = w.spec.as_ref().map_or(0, |s| s.max_restarts);
    let Some(status) = w.status.as_mut() else { return keep(Outcome::Unknown) };
    let Some(inst) = status.instances.iter_mut().find(|i| i.instance_id == report.instance_id) else {
        return keep(Outcome::Unknown);
    };
    if inst.node_id != node_id {
        return keep(Outcome::OtherNode { owner: inst.node_id.clone() });
    }
    if sequence != 0 && sequence <= inst.report_sequence {
        return keep(Outcome::Stale { last: inst.report_sequence });
    }
    if event.removed {
        status.instances.retain(|i| i.instance_id != report.instance_id);
        return ReportPlan { outcome: Outcome::Applied, workload: Some(w), restart_in: None };
    }
    let was_terminal = is_terminal(inst.phase);
    let restart_count = inst.restart_count;
    let pending = inst.restart_at.take();
    *inst = InstanceStatus {
        instance_id: inst.instance_id.clone(),
        replica_index: inst.replica_index,
        node_id: inst.node_id.clone(),
        restart_count: restart_count.max(report.restart_count),
        report_sequence: sequence.max(inst.report_sequence),
        restart_at: None,
        removing: inst.removing,
        ..report.clone()
    };
    let now_terminal = is_terminal(inst.phase);
    let mut restart_in = None;
    if inst.removing {
        // On its way out (drain): it is not restarted.
    } else if now_terminal && was_terminal {
        // Another report of the same end: the restart already pending stays.
        inst.restart_at = pending;
    } else if now_terminal
        && desired == DesiredState::Running
        && wants_restart(policy, inst.exit_code)
        && (max_restarts == 0 || inst.restart_count < max_restarts)
    {
        let delay = restart_backoff(inst.restart_count);
        inst.restart_at = Some(ms_ts(ms_of(now) + delay.as_millis() as i64));
        restart_in = Some(delay);
    }
    let phase_name = phase_title(report.phase);
    let message = match report.exit_code {
        Some(code) => format!("instance {} is {phase_name} (exit {code})", report.instance_id),
        None => format!("instance {} is {phase_name}", report.instance_id),
    };
    let reason = if report.reason.is_empty() { phase_name.clone() } else { report.reason.clone() };
    record_event_at(&mut w, PbEventType::Normal, &reason, message, now);
    ReportPlan { outcome: Outcome::Applied, workload: Some(w), restart_in }
}

/// A change of one instance's DNS record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Point the record at the reporting node's first address (or remove it when the node has
    /// none).
    PointAtNode(String),
    /// Remove the record.
    Remove(String),
}

/// Returns the change of the DNS record of the instance `event` is about, once the report was
/// handled with `outcome` on `w` (the workload as written) and the instance was or was not
/// `evicted` by that write; `None` when the record stays as it is.
///
/// A record points at a node only for an instance that node really runs, from a report that
/// was recorded; an ignored report changes nothing, and one about an instance the workload no
/// longer has (or that is not running) removes its record.
pub fn instance_record(
    zone: &str,
    w: &Workload,
    event: &WorkloadStatusEvent,
    outcome: &Outcome,
    evicted: bool,
) -> Option<Record> {
    let report = event.status.as_ref()?;
    if outcome.ignored() {
        return None;
    }
    let key = crate::dns::instance_key(zone, &w.name, &report.instance_id);
    let running =
        *outcome == Outcome::Applied && report.phase == WorkloadPhase::Running as i32 && !event.removed && !evicted;
    Some(if running { Record::PointAtNode(key) } else { Record::Remove(key) })
}

/// Returns the order of an agent's status report: its sequence when the agent sends one, else
/// the time it observed the change in nanoseconds since the Unix epoch (the same scale), so
/// older reports can be told from newer ones; 0 when neither is known (such a report is always
/// recorded).
pub fn report_sequence(sequence: u64, observed_at: Option<&prost_types::Timestamp>) -> u64 {
    if sequence != 0 {
        return sequence;
    }
    observed_at.map_or(0, |t| (t.seconds.max(0) as u64).saturating_mul(1_000_000_000) + t.nanos.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::RestartPolicy;

    use super::*;
    use crate::{
        decide::fixtures::{instance, instances, now, workload},
        model::ts_ms,
    };

    fn event(instance_id: &str, phase: WorkloadPhase, exit_code: Option<i32>, sequence: u64) -> WorkloadStatusEvent {
        WorkloadStatusEvent {
            workload_id: "w".into(),
            status: Some(InstanceStatus {
                instance_id: instance_id.into(),
                phase: phase as i32,
                exit_code,
                ..Default::default()
            }),
            sequence,
            ..Default::default()
        }
    }

    #[test]
    fn a_report_for_another_nodes_instance_changes_nothing() {
        let w = workload("w", RestartPolicy::Always, vec![instance("w-1", "a", WorkloadPhase::Running)]);
        let plan = report(&w, "b", &event("w-1", WorkloadPhase::Failed, Some(1), 5), now());
        assert_eq!(plan.outcome, Outcome::OtherNode { owner: "a".into() });
        assert!(plan.workload.is_none() && plan.restart_in.is_none());
        assert_eq!(
            instance_record("z", &w, &event("w-1", WorkloadPhase::Running, None, 5), &plan.outcome, false),
            None
        );
    }

    #[test]
    fn a_report_for_an_instance_the_workload_no_longer_has_removes_its_record() {
        let w = workload("w", RestartPolicy::Always, vec![instance("w-1", "a", WorkloadPhase::Running)]);
        let gone = event("w-2", WorkloadPhase::Running, None, 5);
        let plan = report(&w, "a", &gone, now());
        assert_eq!(plan.outcome, Outcome::Unknown);
        assert!(plan.workload.is_none());
        let key = crate::dns::instance_key("z", &w.name, "w-2");
        assert_eq!(instance_record("z", &w, &gone, &plan.outcome, false), Some(Record::Remove(key)));
    }

    #[test]
    fn an_older_report_is_stale_and_a_newer_one_is_recorded() {
        let mut inst = instance("w-1", "a", WorkloadPhase::Running);
        inst.report_sequence = 10;
        let w = workload("w", RestartPolicy::Never, vec![inst]);
        let stale = report(&w, "a", &event("w-1", WorkloadPhase::Starting, None, 10), now());
        assert_eq!(stale.outcome, Outcome::Stale { last: 10 });
        assert!(stale.workload.is_none());

        let running = event("w-1", WorkloadPhase::Running, None, 11);
        let plan = report(&w, "a", &running, now());
        assert_eq!(plan.outcome, Outcome::Applied);
        let written = plan.workload.expect("a newer report is written");
        let i = &instances(&written)[0];
        assert_eq!((i.report_sequence, i.node_id.as_str()), (11, "a"), "the scheduler's fields are kept");
        assert_eq!(written.events.last().unwrap().message, "instance w-1 is Running");
        let key = crate::dns::instance_key("z", &w.name, "w-1");
        assert_eq!(
            instance_record("z", &written, &running, &plan.outcome, false),
            Some(Record::PointAtNode(key.clone()))
        );
        assert_eq!(instance_record("z", &written, &running, &plan.outcome, true), Some(Record::Remove(key)));
    }

    #[test]
    fn an_end_under_a_restart_policy_arms_the_restart_after_the_backoff_from_now() {
        let mut inst = instance("w-1", "a", WorkloadPhase::Running);
        inst.restart_count = 3;
        let w = workload("w", RestartPolicy::OnFailure, vec![inst]);
        let plan = report(&w, "a", &event("w-1", WorkloadPhase::Failed, Some(2), 1), now());
        assert_eq!(plan.restart_in, Some(Duration::from_secs(8)));
        let written = plan.workload.unwrap();
        let at = instances(&written)[0].restart_at.expect("restart time stored");
        assert_eq!(ts_ms(&at), ms_of(now()) + 8_000);
        assert_eq!(written.events.last().unwrap().message, "instance w-1 is Failed (exit 2)");

        // The same end reported again keeps the pending restart and arms nothing more.
        let later = now() + Duration::from_secs(3);
        let again = report(&written, "a", &event("w-1", WorkloadPhase::Failed, Some(2), 2), later);
        assert_eq!(again.restart_in, None);
        assert_eq!(instances(&again.workload.unwrap())[0].restart_at, Some(at));

        // A clean exit under OnFailure, and any end past max_restarts, is not restarted.
        let clean = report(&w, "a", &event("w-1", WorkloadPhase::Succeeded, Some(0), 1), now());
        assert_eq!(clean.restart_in, None);
        let mut capped = w.clone();
        capped.spec.as_mut().unwrap().max_restarts = 3;
        let capped = report(&capped, "a", &event("w-1", WorkloadPhase::Failed, Some(1), 1), now());
        assert_eq!(capped.restart_in, None);
        assert!(instances(&capped.workload.unwrap())[0].restart_at.is_none());
    }

    #[test]
    fn a_removal_drops_the_instance_and_an_instance_being_removed_is_not_restarted() {
        let mut draining = instance("w-2", "a", WorkloadPhase::Running);
        draining.removing = true;
        let w = workload("w", RestartPolicy::Always, vec![instance("w-1", "a", WorkloadPhase::Running), draining]);
        let mut removed = event("w-1", WorkloadPhase::Stopped, None, 1);
        removed.removed = true;
        let plan = report(&w, "a", &removed, now());
        let ids: Vec<_> = instances(plan.workload.as_ref().unwrap()).iter().map(|i| i.instance_id.clone()).collect();
        assert_eq!(ids, ["w-2"]);

        let plan = report(&w, "a", &event("w-2", WorkloadPhase::Failed, Some(1), 1), now());
        assert_eq!(plan.restart_in, None);
        assert!(instances(&plan.workload.unwrap())[1].removing);
    }

    #[test]
    fn reports_are_ordered_by_sequence_or_else_observation_time() {
        assert_eq!(report_sequence(7, Some(&prost_types::Timestamp { seconds: 9, nanos: 0 })), 7);
        assert_eq!(report_sequence(0, Some(&prost_types::Timestamp { seconds: 2, nanos: 5 })), 2_000_000_005);
        assert_eq!(report_sequence(0, None), 0);
    }
}
