//! A workload's health from its status, as pure functions of a [`WorkloadState`] read from a
//! Deployment or StatefulSet.

/// Healthy, Degraded, Unhealthy or Unknown, as the CRD's `status.health.status` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Every wanted replica ready, on the current template.
    Healthy,
    /// Some replicas ready, not all.
    Degraded,
    /// None ready, and not because a rollout is still under way.
    Unhealthy,
    /// A rollout is under way and nothing is ready yet, or the controller has not seen the
    /// newest spec.
    Unknown,
}

impl Health {
    /// The CRD's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Degraded => "Degraded",
            Self::Unhealthy => "Unhealthy",
            Self::Unknown => "Unknown",
        }
    }
}

/// What health needs of a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadState {
    /// `spec.replicas` (1 when unset).
    pub desired: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.updatedReplicas`.
    pub updated: i32,
    /// Whether the workload's controller has seen the newest spec
    /// (`status.observedGeneration >= metadata.generation`).
    pub observed: bool,
    /// The Deployment's `Progressing` condition: `Some(false)` when its deadline passed
    /// (`ProgressDeadlineExceeded`), `Some(true)` while progressing; `None` for StatefulSets.
    pub progressing: Option<bool>,
    /// Failing pods, as `reason` strings (CrashLoopBackOff, OOMKilled…).
    pub pod_failures: usize,
}

/// Health and a one-line reason.
pub fn health(w: &WorkloadState) -> (Health, String) {
    if !w.observed {
        return (Health::Unknown, "the workload's controller has not observed the newest spec yet".into());
    }
    if w.desired == 0 {
        return (Health::Healthy, "scaled to zero".into());
    }
    let counts = format!("{}/{} replicas ready", w.ready, w.desired);
    if w.ready >= w.desired && w.updated >= w.desired {
        return (Health::Healthy, counts);
    }
    if w.progressing == Some(false) {
        return (
            if w.ready > 0 { Health::Degraded } else { Health::Unhealthy },
            format!("{counts}; the rollout exceeded its progress deadline"),
        );
    }
    if w.ready > 0 {
        return (Health::Degraded, counts);
    }
    if w.progressing == Some(true) && w.pod_failures == 0 {
        return (Health::Unknown, format!("{counts}; rolling out"));
    }
    (Health::Unhealthy, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(desired: i32, ready: i32, updated: i32) -> WorkloadState {
        WorkloadState { desired, ready, updated, observed: true, progressing: Some(true), pod_failures: 0 }
    }

    #[test]
    fn ready_and_updated_is_healthy() {
        assert_eq!(health(&w(3, 3, 3)).0, Health::Healthy);
        assert_eq!(health(&w(3, 3, 3)).1, "3/3 replicas ready");
        assert_eq!(health(&w(0, 0, 0)).0, Health::Healthy);
    }

    #[test]
    fn old_replicas_ready_during_a_rollout_are_not_healthy() {
        assert_eq!(health(&w(3, 3, 1)).0, Health::Degraded);
    }

    #[test]
    fn partial_is_degraded_and_none_is_unknown_while_rolling_out() {
        assert_eq!(health(&w(3, 1, 3)).0, Health::Degraded);
        assert_eq!(health(&w(3, 0, 3)).0, Health::Unknown);
    }

    #[test]
    fn failing_pods_or_a_passed_deadline_make_none_ready_unhealthy() {
        let mut s = w(2, 0, 2);
        s.pod_failures = 1;
        assert_eq!(health(&s).0, Health::Unhealthy);
        let mut s = w(2, 0, 2);
        s.progressing = Some(false);
        assert_eq!(health(&s).0, Health::Unhealthy);
        assert!(health(&s).1.contains("progress deadline"));
        let mut s = w(2, 0, 2);
        s.progressing = None;
        assert_eq!(health(&s).0, Health::Unhealthy);
    }

    #[test]
    fn an_unobserved_spec_is_unknown_whatever_the_counts() {
        let mut s = w(2, 2, 2);
        s.observed = false;
        assert_eq!(health(&s).0, Health::Unknown);
    }
}
