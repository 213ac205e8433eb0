//! A node that just connected, against what the cluster wants it to run: its reports are
//! recorded, what it runs but should not is removed, what it should run but lost is run again.

use std::collections::{HashMap, HashSet};

use persys_proto::scheduler::v1::{DesiredState, InstanceStatus, Workload, WorkloadPhase, WorkloadStatusEvent};

use crate::model::is_terminal;

/// What to do about one instance the node reported, in the order of its reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ReportStep {
    /// The instance is the node's and wanted: record the report (see
    /// [`super::status::report`]).
    Record(Box<WorkloadStatusEvent>),
    /// The cluster no longer wants the instance on this node (another node's, deleted, or
    /// unknown): tell the agent to remove it.
    Remove(String),
}

/// An instance assigned to the node that the node did not report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// Its workload.
    pub workload_id: String,
    /// The instance.
    pub instance_id: String,
}

/// What reconciling a node comes to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReconcilePlan {
    /// One step per report.
    pub reports: Vec<ReportStep>,
    /// Instances the node should have but did not report: forget what was sent for them and
    /// settle each with [`missing`].
    pub missing: Vec<Missing>,
    /// Workloads with an instance on the node, to dispatch again (read afresh) once the rest
    /// is written.
    pub redispatch: Vec<String>,
}

/// Decides how to reconcile `node_id`, which reported `reported`, with `workloads` as read.
///
/// A report for an instance assigned to the node, of a workload not being deleted, is
/// recorded; any other reported instance is removed. An assigned instance the node did not
/// report is missing when it matters: being removed (its removal is then confirmed), of a
/// deleted workload, or one that should be running.
pub fn reconcile(node_id: &str, workloads: &[Workload], reported: Vec<WorkloadStatusEvent>) -> ReconcilePlan {
    let mut wanted: HashMap<&str, (&Workload, &InstanceStatus)> = HashMap::new();
    for w in workloads {
        for i in w.status.iter().flat_map(|s| &s.instances) {
            if i.node_id == node_id {
                wanted.insert(&i.instance_id, (w, i));
            }
        }
    }
    let mut plan = ReconcilePlan::default();
    let mut has = HashSet::new();
    for report in reported {
        let Some(status) = &report.status else { continue };
        let id = status.instance_id.clone();
        let step = match wanted.get(id.as_str()) {
            Some((w, _)) if w.desired_state() != DesiredState::Deleted => ReportStep::Record(Box::new(report)),
            _ => ReportStep::Remove(id.clone()),
        };
        has.insert(id);
        plan.reports.push(step);
    }
    plan.missing = wanted
        .iter()
        .filter(|(id, (w, i))| {
            !has.contains(**id)
                && (i.removing
                    || w.desired_state() == DesiredState::Deleted
                    || (w.desired_state() == DesiredState::Running && !is_terminal(i.phase)))
        })
        .map(|(id, (w, _))| Missing { workload_id: w.id.clone(), instance_id: (*id).to_owned() })
        .collect();
    plan.redispatch = workloads
        .iter()
        .filter(|w| w.status.iter().flat_map(|s| &s.instances).any(|i| i.node_id == node_id))
        .map(|w| w.id.clone())
        .collect();
    plan
}

/// Returns `w` as it becomes once its node did not report `instance_id` after reconnecting,
/// `None` to leave it: one being removed (drained, or its workload deleted) is gone, its
/// removal confirmed; any other is Scheduled again (reason `Missing`), to be run again.
pub fn missing(w: &Workload, instance_id: &str) -> Option<Workload> {
    let mut w = w.clone();
    let deleted = w.desired_state() == DesiredState::Deleted;
    let s = w.status.as_mut()?;
    if s.instances.iter().any(|i| i.instance_id == instance_id && (i.removing || deleted)) {
        s.instances.retain(|i| i.instance_id != instance_id);
        return Some(w);
    }
    let i = s.instances.iter_mut().find(|i| i.instance_id == instance_id)?;
    if i.phase == WorkloadPhase::Scheduled as i32 {
        return None;
    }
    i.phase = WorkloadPhase::Scheduled as i32;
    i.reason = "Missing".into();
    i.message = "the agent did not report it after reconnecting".into();
    Some(w)
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::RestartPolicy;

    use super::*;
    use crate::decide::fixtures::{instance, instances, workload};

    fn reported(workload_id: &str, instance_id: &str) -> WorkloadStatusEvent {
        WorkloadStatusEvent {
            workload_id: workload_id.into(),
            status: Some(instance(instance_id, "", WorkloadPhase::Running)),
            ..Default::default()
        }
    }

    #[test]
    fn a_returning_node_is_told_to_remove_instances_not_assigned_to_it() {
        let moved = workload("w", RestartPolicy::Always, vec![instance("w-new", "b", WorkloadPhase::Running)]);
        let mut deleted = workload("d", RestartPolicy::Always, vec![instance("d-1", "a", WorkloadPhase::Running)]);
        deleted.desired_state = DesiredState::Deleted as i32;
        let kept = workload("k", RestartPolicy::Always, vec![instance("k-1", "a", WorkloadPhase::Running)]);
        let workloads = [moved, deleted, kept];
        let plan = reconcile(
            "a",
            &workloads,
            vec![reported("w", "w-old"), reported("d", "d-1"), reported("k", "k-1"), reported("x", "x-1")],
        );
        assert_eq!(
            plan.reports,
            [
                ReportStep::Remove("w-old".into()),
                ReportStep::Remove("d-1".into()),
                ReportStep::Record(Box::new(reported("k", "k-1"))),
                ReportStep::Remove("x-1".into()),
            ]
        );
        assert!(plan.missing.is_empty());
        assert_eq!(plan.redispatch, ["d", "k"], "the moved workload has nothing on this node");
    }

    #[test]
    fn instances_the_node_lost_are_run_again_and_removals_it_finished_are_confirmed() {
        let mut draining = instance("w-2", "a", WorkloadPhase::Running);
        draining.removing = true;
        let w = workload(
            "w",
            RestartPolicy::Always,
            vec![
                instance("w-1", "a", WorkloadPhase::Running),
                draining,
                instance("w-3", "a", WorkloadPhase::Succeeded),
                instance("w-4", "b", WorkloadPhase::Running),
            ],
        );
        let plan = reconcile("a", std::slice::from_ref(&w), vec![]);
        let mut missing: Vec<_> = plan.missing.iter().map(|m| m.instance_id.as_str()).collect();
        missing.sort();
        assert_eq!(missing, ["w-1", "w-2"], "an ended instance is not missed, another node's is not this one's");

        let rerun = missing_of(&w, "w-1");
        let i = instances(&rerun).iter().find(|i| i.instance_id == "w-1").unwrap();
        assert_eq!((i.phase, i.reason.as_str()), (WorkloadPhase::Scheduled as i32, "Missing"));
        assert!(super::missing(&rerun, "w-1").is_none(), "already Scheduled: nothing to write");

        let confirmed = missing_of(&w, "w-2");
        assert!(!instances(&confirmed).iter().any(|i| i.instance_id == "w-2"));
    }

    fn missing_of(w: &Workload, id: &str) -> Workload {
        super::missing(w, id).expect("a change")
    }
}
