//! The persona's phase, conditions, validation issues and recommendations, from what the
//! controller observed. Pure: the controller reads, these decide, the controller writes.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use persys_crds::persona::{Recommendation, ValidationIssue};
use persys_proto::analyzer::v1::{Finding, FindingSeverity, RuleGroup};

use super::health::Health;

/// Pending, Active, Degraded or Failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No workload yet, or its first rollout has nothing ready.
    Pending,
    /// Healthy, and no validation errors.
    Active,
    /// Running, but with validation errors or not every replica ready.
    Degraded,
    /// The workload is unhealthy, or the persona itself cannot be used.
    Failed,
}

impl Phase {
    /// The CRD's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Active => "Active",
            Self::Degraded => "Degraded",
            Self::Failed => "Failed",
        }
    }
}

/// What the controller found, in the terms the phase is decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// No workload matched (or several did: `ambiguous`).
    NoWorkload {
        /// Why, for the Ready condition.
        message: String,
        /// Several matched.
        ambiguous: bool,
    },
    /// The persona's own spec is unusable (a value the rules cannot read).
    InvalidPersona,
    /// The workload and its health.
    Workload(Health),
}

/// The Ready condition's reason while several workloads match a persona.
pub const AMBIGUOUS: &str = "AmbiguousWorkload";

/// The phase and the Ready condition's (reason, message).
pub fn phase(observed: &Observed, errors: usize) -> (Phase, &'static str, String) {
    match observed {
        Observed::NoWorkload { message, ambiguous: false } => (Phase::Pending, "NoWorkload", message.clone()),
        Observed::NoWorkload { message, ambiguous: true } => (Phase::Pending, AMBIGUOUS, message.clone()),
        Observed::InvalidPersona => (Phase::Failed, "InvalidPersona", "the persona's spec cannot be used".into()),
        Observed::Workload(h) => match (h, errors) {
            (Health::Unhealthy, _) => (Phase::Failed, "Unhealthy", "the workload has no ready replica".into()),
            (_, n) if n > 0 => (Phase::Degraded, "ValidationFailed", format!("{n} validation error(s)")),
            (Health::Healthy, _) => (Phase::Active, "Active", "the workload is healthy and matches the persona".into()),
            (Health::Degraded, _) => (Phase::Degraded, "Degraded", "not every replica is ready".into()),
            (Health::Unknown, _) => (Phase::Pending, "RollingOut", "the workload is rolling out".into()),
        },
    }
}

/// The CRD's severity spelling.
pub fn severity(f: &Finding) -> &'static str {
    match FindingSeverity::try_from(f.severity).unwrap_or(FindingSeverity::Info) {
        FindingSeverity::Error => "error",
        FindingSeverity::Warning => "warning",
        _ => "info",
    }
}

/// Findings as status issues, errors first.
pub fn issues(findings: &[Finding]) -> Vec<ValidationIssue> {
    let mut out: Vec<ValidationIssue> = findings
        .iter()
        .map(|f| ValidationIssue {
            severity: severity(f).into(),
            rule: f.rule_id.clone(),
            field: f.field.clone(),
            message: f.message.clone(),
            suggestion: f.suggestion.clone(),
        })
        .collect();
    let rank = |s: &str| match s {
        "error" => 0,
        "warning" => 1,
        _ => 2,
    };
    out.sort_by_key(|i| rank(&i.severity));
    out
}

/// Recommendations: one per error or warning that says what to do, typed by its rule group,
/// high priority for errors. At most `limit`, errors first.
pub fn recommendations(findings: &[Finding], limit: usize) -> Vec<Recommendation> {
    let mut out: Vec<(u8, Recommendation)> = findings
        .iter()
        .filter(|f| !f.suggestion.is_empty() && severity(f) != "info")
        .map(|f| {
            let kind = match RuleGroup::try_from(f.rule_group).unwrap_or(RuleGroup::Unspecified) {
                RuleGroup::Resources => "resource",
                RuleGroup::Replicas | RuleGroup::Scaling => "scaling",
                RuleGroup::Security | RuleGroup::Image => "security",
                _ => "performance",
            };
            let error = severity(f) == "error";
            (
                u8::from(!error),
                Recommendation {
                    kind: kind.into(),
                    priority: if error { "high" } else { "medium" }.into(),
                    message: f.message.clone(),
                    action: f.suggestion.clone(),
                },
            )
        })
        .collect();
    out.sort_by_key(|(rank, _)| *rank);
    out.into_iter().take(limit).map(|(_, r)| r).collect()
}

/// The `limit` most urgent recommendations: high, then medium, then low, each kept in order.
pub fn most_urgent(mut recommendations: Vec<Recommendation>, limit: usize) -> Vec<Recommendation> {
    let rank = |p: &str| match p {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    };
    recommendations.sort_by_key(|r| rank(&r.priority));
    recommendations.truncate(limit);
    recommendations
}

/// A condition, keeping the previous transition time when its status did not change (a
/// condition's `lastTransitionTime` moves only on a transition).
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use persys_analyzer::validate::finding;

    use super::*;

    fn f(sev: FindingSeverity, group: RuleGroup, suggestion: &str) -> Finding {
        finding(sev, group, "r", "m", suggestion, "spec.x")
    }

    #[test]
    fn the_phase_table() {
        let w = |h| Observed::Workload(h);
        assert_eq!(phase(&w(Health::Healthy), 0).0, Phase::Active);
        assert_eq!(phase(&w(Health::Healthy), 1).0, Phase::Degraded);
        assert_eq!(phase(&w(Health::Healthy), 1).1, "ValidationFailed");
        assert_eq!(phase(&w(Health::Degraded), 0).0, Phase::Degraded);
        assert_eq!(phase(&w(Health::Unhealthy), 0).0, Phase::Failed);
        assert_eq!(phase(&w(Health::Unhealthy), 2).0, Phase::Failed);
        assert_eq!(phase(&w(Health::Unknown), 0).0, Phase::Pending);
        let none = Observed::NoWorkload { message: "x".into(), ambiguous: false };
        assert_eq!(phase(&none, 0), (Phase::Pending, "NoWorkload", "x".into()));
        let two = Observed::NoWorkload { message: "y".into(), ambiguous: true };
        assert_eq!(phase(&two, 0).1, "AmbiguousWorkload");
        assert_eq!(phase(&Observed::InvalidPersona, 0).0, Phase::Failed);
    }

    #[test]
    fn issues_come_errors_first_in_the_crd_spelling() {
        let found = vec![
            f(FindingSeverity::Info, RuleGroup::Health, ""),
            f(FindingSeverity::Warning, RuleGroup::Resources, "set requests"),
            f(FindingSeverity::Error, RuleGroup::Security, "set runAsNonRoot"),
        ];
        let sev: Vec<_> = issues(&found).into_iter().map(|i| i.severity).collect();
        assert_eq!(sev, ["error", "warning", "info"]);
        let recs = recommendations(&found, 10);
        assert_eq!(recs.len(), 2, "info findings and findings without a suggestion give none");
        assert_eq!((recs[0].kind.as_str(), recs[0].priority.as_str()), ("security", "high"));
        assert_eq!((recs[1].kind.as_str(), recs[1].priority.as_str()), ("resource", "medium"));
        assert_eq!(recommendations(&found, 1).len(), 1);
    }

    #[test]
    fn transition_time_moves_only_on_a_transition() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let first = condition(&[], "Ready", true, "Active", "ok".into(), Some(1), t0);
        let same = condition(std::slice::from_ref(&first), "Ready", true, "Active", "ok".into(), Some(2), t1);
        assert_eq!(same.last_transition_time, Time(t0));
        assert_eq!(same.observed_generation, Some(2));
        let flipped = condition(&[same], "Ready", false, "Degraded", "no".into(), Some(2), t1);
        assert_eq!(flipped.last_transition_time, Time(t1));
    }
}
