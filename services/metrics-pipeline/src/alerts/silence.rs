//! Silences: matchers over an alert's fields and series labels, in force for a time. A
//! transition of a matching alert is stored and watched as always, marked `silenced_by`, and
//! queues no notification. Pure: checking and matching; storing is the store's.

use persys_kit::{ApiError, error::Violations};
use persys_proto::metrics::v1::{Alert, AlertSeverity, Metric, Silence};

/// Most matchers on one silence.
pub const MAX_MATCHERS: usize = 20;
/// Furthest a silence may end ahead of now.
pub const MAX_AHEAD_MS: i64 = 90 * 86_400_000;

fn ms(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.map(crate::clock::millis)
}

/// When `s` starts and ends, in Unix milliseconds (the end is the earlier of `ends_at` and
/// `expired_at`).
pub fn window(s: &Silence) -> (i64, i64) {
    let starts = ms(s.starts_at.as_ref()).or(ms(s.created_at.as_ref())).unwrap_or(0);
    let ends = ms(s.ends_at.as_ref()).unwrap_or(0);
    (starts, ms(s.expired_at.as_ref()).map_or(ends, |e| e.min(ends)))
}

/// Whether `s` is in force at `now_ms`.
pub fn in_force(s: &Silence, now_ms: i64) -> bool {
    let (starts, ends) = window(s);
    starts <= now_ms && now_ms < ends
}

fn lower_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_lowercase()
}

/// The value of `name` on `a`: one of its fields, or a series label (empty when absent).
fn value_of<'a>(a: &'a Alert, name: &str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    match name {
        "rule_id" => Cow::Borrowed(&a.rule_id),
        "rule_name" => Cow::Borrowed(&a.rule_name),
        "node_id" => Cow::Borrowed(&a.node_id),
        "severity" => Cow::Owned(
            AlertSeverity::try_from(a.severity)
                .map_or_else(|_| a.severity.to_string(), |s| lower_name(s.as_str_name(), "ALERT_SEVERITY_")),
        ),
        "metric" => Cow::Owned(
            Metric::try_from(a.metric)
                .map_or_else(|_| a.metric.to_string(), |m| lower_name(m.as_str_name(), "METRIC_")),
        ),
        label => Cow::Borrowed(a.labels.get(label).map_or("", String::as_str)),
    }
}

/// Whether every matcher of `s` holds for `a`.
pub fn matches(s: &Silence, a: &Alert) -> bool {
    s.matchers.iter().all(|m| (value_of(a, &m.name) == m.value.as_str()) != m.negate)
}

/// The first of `silences` in force at `now_ms` that matches `a`.
pub fn silencing<'a>(silences: &'a [Silence], a: &Alert, now_ms: i64) -> Option<&'a Silence> {
    silences.iter().find(|s| in_force(s, now_ms) && matches(s, a))
}

/// Checks a silence from a caller at `now_ms`; field names are relative to `silence.`.
pub fn validate(s: &Silence, now_ms: i64) -> Result<(), ApiError> {
    let mut v = Violations::new();
    v.check(s.matchers.is_empty(), "silence.matchers", "at least one matcher, e.g. node_id = web-1");
    v.check(s.matchers.len() > MAX_MATCHERS, "silence.matchers", format!("at most {MAX_MATCHERS} matchers"));
    for (i, m) in s.matchers.iter().enumerate() {
        let valid = !m.name.is_empty()
            && m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !m.name.starts_with(|c: char| c.is_ascii_digit());
        v.check(
            !valid,
            &format!("silence.matchers[{i}].name"),
            "a field (rule_id, rule_name, node_id, severity, metric) or a label name: letters, digits and _",
        );
    }
    v.check(s.comment.trim().is_empty(), "silence.comment", "required: say why, e.g. \"maintenance of web-1\"");
    v.check(s.comment.len() > 1024, "silence.comment", "at most 1024 bytes");
    let starts = ms(s.starts_at.as_ref()).unwrap_or(now_ms);
    match ms(s.ends_at.as_ref()) {
        None => {
            v.check(true, "silence.ends_at", "required");
        }
        Some(ends) => {
            v.check(ends <= now_ms, "silence.ends_at", "must be in the future");
            v.check(ends <= starts, "silence.ends_at", "must be after starts_at");
            v.check(ends > now_ms + MAX_AHEAD_MS, "silence.ends_at", "at most 90 days ahead");
        }
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use persys_proto::metrics::v1::SilenceMatcher;

    use super::*;

    fn ts(ms: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds: ms / 1000, nanos: 0 })
    }

    fn matcher(name: &str, value: &str, negate: bool) -> SilenceMatcher {
        SilenceMatcher { name: name.into(), value: value.into(), negate }
    }

    #[test]
    fn matchers_read_fields_and_labels_and_all_must_hold() {
        let alert = Alert {
            node_id: "web-1".into(),
            rule_name: "disk full".into(),
            severity: AlertSeverity::Critical as i32,
            metric: Metric::DiskUsagePercent as i32,
            labels: [("mount_point".into(), "/".into())].into(),
            ..Default::default()
        };
        let silence = |m: Vec<SilenceMatcher>| Silence { matchers: m, ..Default::default() };
        assert!(matches(
            &silence(vec![matcher("node_id", "web-1", false), matcher("mount_point", "/", false)]),
            &alert
        ));
        assert!(matches(
            &silence(vec![matcher("severity", "critical", false), matcher("metric", "disk_usage_percent", false)]),
            &alert
        ));
        assert!(!matches(
            &silence(vec![matcher("node_id", "web-1", false), matcher("mount_point", "/data", false)]),
            &alert
        ));
        assert!(matches(&silence(vec![matcher("node_id", "web-2", true)]), &alert), "negated");
        assert!(matches(&silence(vec![matcher("interface", "", false)]), &alert), "an absent label is empty");
    }

    #[test]
    fn a_silence_is_in_force_from_its_start_until_its_end_or_expiry() {
        let s = Silence { starts_at: ts(1_000), ends_at: ts(10_000), ..Default::default() };
        assert!(!in_force(&s, 999) && in_force(&s, 1_000) && in_force(&s, 9_999) && !in_force(&s, 10_000));
        let expired = Silence { expired_at: ts(5_000), ..s };
        assert!(in_force(&expired, 4_999) && !in_force(&expired, 5_000));
    }

    #[test]
    fn bad_silences_name_their_fields() {
        let now = 1_000_000;
        let fields = |s: &Silence| -> Vec<String> {
            let status: tonic::Status = validate(s, now).unwrap_err().into();
            let details = tonic_types::StatusExt::get_details_bad_request(&status).unwrap();
            details.field_violations.into_iter().map(|v| v.field).collect()
        };
        let empty = Silence::default();
        assert_eq!(fields(&empty), ["silence.matchers", "silence.comment", "silence.ends_at"]);
        let past = Silence {
            matchers: vec![matcher("9bad", "x", false)],
            comment: "why".into(),
            ends_at: ts(now - 1000),
            ..Default::default()
        };
        assert_eq!(fields(&past), ["silence.matchers[0].name", "silence.ends_at", "silence.ends_at"]);
        let good = Silence { matchers: vec![matcher("node_id", "web-1", false)], ends_at: ts(now + 3_600_000), ..past };
        assert!(validate(&good, now).is_ok());
    }
}
