//! What a stored workload needs from its agents, and the restart of an ended instance once its
//! backoff is over.

use std::time::{Duration, SystemTime};

use persys_proto::{
    common::v1::EventType as PbEventType,
    scheduler::v1::{
        DesiredState, RemoveInstance, RestartInstance, RunInstance, StopInstance, Workload, WorkloadPhase,
        connect_response::Payload,
    },
};

use super::RESTARTING;
use crate::{
    events::record_event_at,
    model::{is_terminal, ms_of, ts_ms},
};

/// A command for one instance's agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The instance it is about.
    pub instance_id: String,
    /// `run`, `restart`, `stop` or `remove`: with the instance and `attempt`, what makes it
    /// sent once.
    pub action: &'static str,
    /// The instance's restart count (0 for a workload without a spec).
    pub attempt: i32,
    /// The node to send it to.
    pub node_id: String,
    /// The command.
    pub payload: Payload,
}

/// One step of a dispatch, in the order of the workload's instances.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Send a command.
    Send(Box<Command>),
    /// Wait `wait` for an instance's pending restart (attempt `restart_count`), then dispatch
    /// the workload again.
    Arm {
        /// The instance waiting.
        instance_id: String,
        /// Its restart count, which tells one attempt's timer from the next.
        restart_count: i32,
        /// How long until its restart is due.
        wait: Duration,
    },
}

/// What a workload needs from the agents connected here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DispatchPlan {
    /// Commands to send and restart timers to arm.
    pub steps: Vec<Step>,
    /// Instances whose restart is due: restart them (see [`restart_due`]).
    pub due: Vec<String>,
    /// The workload is deleted and has no instance left: delete its record and DNS records.
    pub delete: bool,
}

/// Decides what `w`, as stored, needs from the agents of the nodes `connected` says are
/// connected here, at `now`: a run for an instance not yet started, a restart for one written
/// Starting (reason [`RESTARTING`]) but not yet sent, a stop when it should stop, a removal
/// when it (or the instance) is being removed; a restart whose time has come is due, one whose
/// time has not is armed.
pub fn dispatch(w: &Workload, connected: impl Fn(&str) -> bool, now: SystemTime) -> DispatchPlan {
    let mut plan = DispatchPlan::default();
    let desired = w.desired_state();
    let Some(status) = &w.status else { return plan };
    let grace_period = w.spec.as_ref().and_then(|s| s.stop_timeout);
    for inst in &status.instances {
        if !connected(&inst.node_id) {
            continue;
        }
        if let (DesiredState::Running, Some(at)) = (desired, &inst.restart_at)
            && is_terminal(inst.phase)
        {
            let wait = ts_ms(at) - ms_of(now);
            if wait <= 0 {
                plan.due.push(inst.instance_id.clone());
            } else {
                plan.steps.push(Step::Arm {
                    instance_id: inst.instance_id.clone(),
                    restart_count: inst.restart_count,
                    wait: Duration::from_millis(wait as u64),
                });
            }
            continue;
        }
        let phase = WorkloadPhase::try_from(inst.phase).unwrap_or(WorkloadPhase::Pending);
        let instance_id = inst.instance_id.clone();
        let (action, payload) = match desired {
            _ if inst.removing || desired == DesiredState::Deleted => {
                ("remove", Payload::Remove(RemoveInstance { instance_id, grace_period, remove_volumes: true }))
            }
            DesiredState::Running if phase == WorkloadPhase::Scheduled => (
                "run",
                Payload::Run(RunInstance {
                    workload_id: w.id.clone(),
                    instance_id,
                    replica_index: inst.replica_index,
                    workload_name: w.name.clone(),
                    spec: w.spec.clone(),
                    owner_role: w.owner_role,
                    owner_id: w.owner_id.clone(),
                }),
            ),
            DesiredState::Running if phase == WorkloadPhase::Starting && inst.reason == RESTARTING => {
                ("restart", Payload::Restart(RestartInstance { instance_id, grace_period }))
            }
            DesiredState::Stopped if !is_terminal(inst.phase) => {
                ("stop", Payload::Stop(StopInstance { instance_id, grace_period }))
            }
            _ => continue,
        };
        plan.steps.push(Step::Send(Box::new(Command {
            instance_id: inst.instance_id.clone(),
            action,
            attempt: w.spec.as_ref().map_or(0, |_| inst.restart_count),
            node_id: inst.node_id.clone(),
            payload,
        })));
    }
    plan.delete = desired == DesiredState::Deleted && status.instances.is_empty();
    plan
}

/// Returns `w` with `instance_id` restarting, when the workload should run and the instance
/// has ended with a restart due by `now`: one restart more, Starting with reason
/// [`RESTARTING`], recorded as an event. `None` when there is nothing to restart (any more).
pub fn restart_due(w: &Workload, instance_id: &str, now: SystemTime) -> Option<Workload> {
    if w.desired_state() != DesiredState::Running {
        return None;
    }
    let mut w = w.clone();
    let now_ms = ms_of(now);
    let status = w.status.as_mut()?;
    let i = status.instances.iter_mut().find(|i| {
        i.instance_id == instance_id
            && is_terminal(i.phase)
            && i.restart_at.as_ref().is_some_and(|at| ts_ms(at) <= now_ms)
    })?;
    i.restart_count += 1;
    i.restart_at = None;
    i.phase = WorkloadPhase::Starting as i32;
    i.reason = RESTARTING.into();
    status.restart_count += 1;
    record_event_at(&mut w, PbEventType::Normal, RESTARTING, format!("instance {instance_id} restarts"), now);
    Some(w)
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::RestartPolicy;

    use super::*;
    use crate::{
        decide::fixtures::{instance, instances, now, workload},
        model::ms_ts,
    };

    fn failed_with_restart_at(id: &str, at: SystemTime) -> persys_proto::scheduler::v1::InstanceStatus {
        let mut i = instance(id, "a", WorkloadPhase::Failed);
        i.restart_at = Some(ms_ts(ms_of(at)));
        i.restart_count = 2;
        i
    }

    fn sent(plan: &DispatchPlan) -> Vec<(&str, &str)> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(c) => Some((c.instance_id.as_str(), c.action)),
                Step::Arm { .. } => None,
            })
            .collect()
    }

    #[test]
    fn scheduled_instances_run_and_restarts_are_due_or_armed_from_now() {
        let mut restarting = instance("w-4", "a", WorkloadPhase::Starting);
        restarting.reason = RESTARTING.into();
        let w = workload(
            "w",
            RestartPolicy::Always,
            vec![
                instance("w-1", "a", WorkloadPhase::Scheduled),
                failed_with_restart_at("w-2", now() - Duration::from_secs(1)),
                failed_with_restart_at("w-3", now() + Duration::from_millis(1500)),
                restarting,
                instance("w-5", "elsewhere", WorkloadPhase::Scheduled),
                instance("w-6", "a", WorkloadPhase::Running),
            ],
        );
        let plan = dispatch(&w, |n| n == "a", now());
        assert_eq!(sent(&plan), [("w-1", "run"), ("w-4", "restart")], "only nodes connected here get commands");
        assert_eq!(plan.due, ["w-2"]);
        assert!(plan.steps.contains(&Step::Arm {
            instance_id: "w-3".into(),
            restart_count: 2,
            wait: Duration::from_millis(1500)
        }));
        assert!(!plan.delete);
    }

    #[test]
    fn stopping_and_deleting_send_stops_and_removals() {
        let mut w = workload(
            "w",
            RestartPolicy::Always,
            vec![instance("w-1", "a", WorkloadPhase::Running), instance("w-2", "a", WorkloadPhase::Stopped)],
        );
        w.desired_state = DesiredState::Stopped as i32;
        assert_eq!(sent(&dispatch(&w, |_| true, now())), [("w-1", "stop")]);

        w.desired_state = DesiredState::Deleted as i32;
        let plan = dispatch(&w, |_| true, now());
        assert_eq!(sent(&plan), [("w-1", "remove"), ("w-2", "remove")]);
        assert!(!plan.delete, "deleted only once no instance is left");
        w.status.as_mut().unwrap().instances.clear();
        assert!(dispatch(&w, |_| true, now()).delete);
    }

    #[test]
    fn a_due_restart_is_written_starting_once() {
        let w = workload("w", RestartPolicy::Always, vec![failed_with_restart_at("w-1", now())]);
        assert!(restart_due(&w, "w-1", now() - Duration::from_millis(1)).is_none(), "not due yet");
        let restarted = restart_due(&w, "w-1", now()).expect("due now");
        let i = &instances(&restarted)[0];
        assert_eq!((i.restart_count, i.phase, i.reason.as_str()), (3, WorkloadPhase::Starting as i32, RESTARTING));
        assert!(i.restart_at.is_none());
        assert_eq!(restarted.status.as_ref().unwrap().restart_count, 1);
        assert!(restart_due(&restarted, "w-1", now()).is_none(), "a restart written is not made twice");

        let mut stopped = w.clone();
        stopped.desired_state = DesiredState::Stopped as i32;
        assert!(restart_due(&stopped, "w-1", now()).is_none());
    }
}
