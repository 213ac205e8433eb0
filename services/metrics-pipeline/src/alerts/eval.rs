//! Alert evaluation as samples arrive: each enabled rule owns its alerts, one open alert per
//! (rule, subject), where the subject is the node and the series' labels. Pure: it takes rows
//! and their times and returns the transitions; storing and announcing them is the caller's.
//!
//! Lifecycle (as Prometheus): the condition holds → PENDING; it has held for the rule's
//! `for_duration` → FIRING (at once when that is zero); it stops holding → a pending alert is
//! forgotten, a firing or acknowledged one becomes RESOLVED. With a `resolve_threshold` the
//! alert resolves only once the value is on the other side of that threshold (hysteresis).

use std::collections::HashMap;

use persys_proto::metrics::v1::{Alert, AlertRule, AlertState, Comparator};

use crate::samples::{Labels, Row};

/// Returns whether `value` compared with `threshold` by `c` holds.
pub fn holds(c: Comparator, value: f64, threshold: f64) -> bool {
    match c {
        Comparator::GreaterThan => value > threshold,
        Comparator::GreaterThanOrEqual => value >= threshold,
        Comparator::LessThan => value < threshold,
        Comparator::LessThanOrEqual => value <= threshold,
        Comparator::Equal => value == threshold,
        Comparator::NotEqual => value != threshold,
        Comparator::Unspecified => false,
    }
}

/// The subject of an alert: node and series labels, as one key.
pub fn subject(node_id: &str, labels: &Labels) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{node_id}{{{}}}", labels.join(","))
}

fn ms_of(d: Option<&prost_types::Duration>) -> i64 {
    d.map_or(0, |d| d.seconds.saturating_mul(1000).saturating_add(i64::from(d.nanos) / 1_000_000))
}

use crate::clock::timestamp as ts;

/// One change of one alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The alert after the change.
    pub alert: Alert,
    /// `None` when the alert was pending and is now forgotten (nothing to store but removal).
    pub forgotten: bool,
}

/// The rules in force and the alerts they hold open.
#[derive(Debug, Default)]
pub struct Evaluator {
    rules: Vec<AlertRule>,
    /// Open alerts by (rule id, subject).
    open: HashMap<(String, String), Alert>,
    next_id: u64,
    id_prefix: String,
}

impl Evaluator {
    /// An evaluator whose new alert ids start with `id_prefix` (unique per process start).
    pub fn new(id_prefix: impl Into<String>) -> Self {
        Self { id_prefix: id_prefix.into(), ..Self::default() }
    }

    /// Replaces the rules; open alerts of rules no longer present are returned resolved.
    pub fn set_rules(&mut self, rules: Vec<AlertRule>, now_ms: i64) -> Vec<Transition> {
        let ids: std::collections::HashSet<&str> = rules.iter().filter(|r| r.enabled).map(|r| r.id.as_str()).collect();
        let gone: Vec<(String, String)> =
            self.open.keys().filter(|(r, _)| !ids.contains(r.as_str())).cloned().collect();
        let mut out = Vec::new();
        for key in gone {
            if let Some(alert) = self.open.remove(&key) {
                out.push(close(alert, now_ms, "its rule was deleted or disabled"));
            }
        }
        self.rules = rules.into_iter().filter(|r| r.enabled).collect();
        out
    }

    /// The enabled rules in force.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Takes back alerts that were open before a restart.
    pub fn restore(&mut self, alerts: Vec<Alert>) {
        for a in alerts {
            let labels: Labels = a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            self.open.insert((a.rule_id.clone(), subject(&a.node_id, &labels)), a);
        }
    }

    /// Returns the open alert with `id`.
    pub fn open_alert_mut(&mut self, id: &str) -> Option<&mut Alert> {
        self.open.values_mut().find(|a| a.id == id)
    }

    /// Evaluates `rows` of `node_id`, oldest first.
    pub fn observe(&mut self, node_id: &str, rows: &[Row]) -> Vec<Transition> {
        let mut out = Vec::new();
        for row in rows {
            for rule in &self.rules {
                if rule.metric != row.metric as i32
                    || (!rule.node_ids.is_empty() && !rule.node_ids.iter().any(|n| n == node_id))
                    || !rule.match_labels.iter().all(|(k, v)| row.labels.get(k) == Some(v))
                {
                    continue;
                }
                let comparator = Comparator::try_from(rule.comparator).unwrap_or(Comparator::Unspecified);
                let key = (rule.id.clone(), subject(node_id, &row.labels));
                let firing = holds(comparator, row.value, rule.threshold);
                match self.open.get_mut(&key) {
                    None if firing => {
                        self.next_id += 1;
                        let mut alert = Alert {
                            id: format!("{}-{}", self.id_prefix, self.next_id),
                            rule_id: rule.id.clone(),
                            rule_name: rule.name.clone(),
                            node_id: node_id.to_owned(),
                            labels: row.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                            metric: rule.metric,
                            comparator: rule.comparator,
                            threshold: rule.threshold,
                            value: row.value,
                            severity: rule.severity,
                            state: AlertState::Pending as i32,
                            pending_since: Some(ts(row.time_ms)),
                            last_evaluated_at: Some(ts(row.time_ms)),
                            revision: 1,
                            ..Default::default()
                        };
                        if ms_of(rule.for_duration.as_ref()) <= 0 {
                            fire(&mut alert, rule, row.time_ms);
                        }
                        out.push(Transition { alert: alert.clone(), forgotten: false });
                        self.open.insert(key, alert);
                    }
                    None => {}
                    Some(alert) => {
                        alert.value = row.value;
                        alert.last_evaluated_at = Some(ts(row.time_ms));
                        let pending = alert.state == AlertState::Pending as i32;
                        let still = match (pending, rule.resolve_threshold) {
                            // Hysteresis: an active alert stays until the resolve threshold is crossed.
                            (false, Some(resolve)) => holds(comparator, row.value, resolve),
                            _ => firing,
                        };
                        if still && pending {
                            let since = alert
                                .pending_since
                                .as_ref()
                                .map_or(row.time_ms, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
                            if row.time_ms - since >= ms_of(rule.for_duration.as_ref()) {
                                fire(alert, rule, row.time_ms);
                                alert.revision += 1;
                                out.push(Transition { alert: alert.clone(), forgotten: false });
                            }
                        } else if !still {
                            let alert = self.open.remove(&key).expect("present");
                            if pending {
                                let mut gone = alert;
                                gone.revision += 1;
                                out.push(Transition { alert: gone, forgotten: true });
                            } else {
                                out.push(close(alert, row.time_ms, "the value is back within bounds"));
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

fn fire(alert: &mut Alert, rule: &AlertRule, at_ms: i64) {
    alert.state = AlertState::Firing as i32;
    alert.fired_at = Some(ts(at_ms));
    let metric = persys_proto::metrics::v1::Metric::try_from(rule.metric)
        .map_or("metric".into(), |m| m.as_str_name().trim_start_matches("METRIC_").to_lowercase().replace('_', " "));
    alert.message =
        format!("{}: {metric} is {} (threshold {})", rule.name, figure(alert.value), figure(rule.threshold));
}

/// A value as a person reads it: at most two decimals, no trailing zeros (`22.41`, `90`).
fn figure(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn close(mut alert: Alert, at_ms: i64, why: &str) -> Transition {
    alert.state = AlertState::Resolved as i32;
    alert.resolved_at = Some(ts(at_ms));
    alert.message = format!("resolved: {why}");
    alert.revision += 1;
    Transition { alert, forgotten: false }
}

#[cfg(test)]
mod tests {
    use persys_proto::metrics::v1::Metric;

    use super::*;

    fn rule(id: &str, c: Comparator, threshold: f64, for_ms: i64) -> AlertRule {
        AlertRule {
            id: id.into(),
            name: format!("rule {id}"),
            metric: Metric::CpuUsagePercent as i32,
            comparator: c as i32,
            threshold,
            for_duration: Some(prost_types::Duration { seconds: for_ms / 1000, nanos: 0 }),
            enabled: true,
            ..Default::default()
        }
    }

    fn cpu(at: i64, value: f64) -> Row {
        Row { metric: Metric::CpuUsagePercent, labels: Labels::new(), time_ms: at, value }
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(
            [22.413793103448278, 90.0, 0.5, 0.0, -0.001, 1e6, 99.999].map(super::figure),
            ["22.41", "90", "0.5", "0", "0", "1000000", "100"]
        );
    }

    fn states(t: &[Transition]) -> Vec<(String, AlertState, bool)> {
        t.iter().map(|t| (t.alert.rule_id.clone(), AlertState::try_from(t.alert.state).unwrap(), t.forgotten)).collect()
    }

    #[test]
    fn a_rule_fires_after_its_for_duration_and_resolves_when_values_return() {
        let mut e = Evaluator::new("a");
        e.set_rules(vec![rule("hot", Comparator::GreaterThan, 80.0, 2000)], 0);
        assert_eq!(states(&e.observe("n1", &[cpu(1000, 90.0)])), [("hot".into(), AlertState::Pending, false)]);
        assert!(e.observe("n1", &[cpu(2000, 95.0)]).is_empty(), "still pending after 1 s");
        let fired = e.observe("n1", &[cpu(3000, 91.0)]);
        assert_eq!(states(&fired), [("hot".into(), AlertState::Firing, false)]);
        assert_eq!(fired[0].alert.message, "rule hot: cpu usage percent is 91 (threshold 80)");
        assert!(e.observe("n1", &[cpu(4000, 99.0)]).is_empty(), "one open alert per rule and subject");
        let resolved = e.observe("n1", &[cpu(5000, 10.0)]);
        assert_eq!(states(&resolved), [("hot".into(), AlertState::Resolved, false)]);
        assert_eq!(resolved[0].alert.id, fired[0].alert.id, "the same alert resolves");
        // A new breach opens a new alert.
        let again = e.observe("n1", &[cpu(6000, 85.0)]);
        assert_ne!(again[0].alert.id, fired[0].alert.id);
    }

    #[test]
    fn a_pending_alert_that_recovers_is_forgotten_and_rules_never_fight() {
        let mut e = Evaluator::new("a");
        e.set_rules(
            vec![
                rule("warn", Comparator::GreaterThanOrEqual, 70.0, 0),
                rule("crit", Comparator::GreaterThan, 90.0, 5000),
            ],
            0,
        );
        let t = e.observe("n1", &[cpu(1000, 95.0)]);
        assert_eq!(
            states(&t),
            [("warn".into(), AlertState::Firing, false), ("crit".into(), AlertState::Pending, false)]
        );
        let t = e.observe("n1", &[cpu(2000, 75.0)]);
        assert_eq!(states(&t), [("crit".into(), AlertState::Pending, true)], "crit forgotten, warn keeps firing");
        // Other nodes are other subjects.
        assert_eq!(states(&e.observe("n2", &[cpu(2000, 71.0)])), [("warn".into(), AlertState::Firing, false)]);
    }

    #[test]
    fn hysteresis_node_filters_labels_and_deleted_rules() {
        let mut e = Evaluator::new("a");
        let mut r = rule("hyst", Comparator::GreaterThan, 80.0, 0);
        r.resolve_threshold = Some(60.0);
        r.node_ids = vec!["n1".into()];
        e.set_rules(vec![r], 0);
        assert!(e.observe("n2", &[cpu(1000, 99.0)]).is_empty(), "not this rule's node");
        assert_eq!(states(&e.observe("n1", &[cpu(1000, 85.0)]))[0].1, AlertState::Firing);
        assert!(e.observe("n1", &[cpu(2000, 70.0)]).is_empty(), "below 80 but above 60: still firing");
        assert_eq!(states(&e.observe("n1", &[cpu(3000, 50.0)]))[0].1, AlertState::Resolved);
        assert_eq!(states(&e.observe("n1", &[cpu(4000, 85.0)]))[0].1, AlertState::Firing);
        let gone = e.set_rules(vec![], 5000);
        assert_eq!(states(&gone), [("hyst".into(), AlertState::Resolved, false)]);
        assert!(e.observe("n1", &[cpu(6000, 99.0)]).is_empty());
        assert!(holds(Comparator::NotEqual, 1.0, 2.0) && !holds(Comparator::Equal, 1.0, 2.0));
        assert!(holds(Comparator::LessThanOrEqual, 2.0, 2.0) && !holds(Comparator::LessThan, 2.0, 2.0));
    }
}
