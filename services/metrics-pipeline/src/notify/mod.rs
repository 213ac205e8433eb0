//! Notifications. Each alert transition a rule's channels want (firing; resolved when the
//! channel asks, or always for Alertmanager; a repeat while firing and unacknowledged) is queued
//! in the `notifications` outbox in the transaction that stores the alert's change, so nothing
//! is announced that is not queued and nothing queued is lost to a restart. A dispatcher claims
//! due rows for a lease, delivers them, and marks each delivered, or due again after a backoff
//! (network errors, 408, 429, 5xx), or failed (another 4xx, or past the give-up time). Delivery
//! is at least once; the notification id (`<alert id>/<transition>`) is the same on every
//! attempt so receivers can drop repeats, and the outbox's unique key queues each transition of
//! each alert once per channel.
//!
//! Alertmanager ends an alert that is not re-sent before its `endsAt`, so open alerts are
//! re-posted to Alertmanager channels every refresh interval (as Prometheus does), outside the
//! outbox: a missed refresh is made good by the next.
//!
//! Silenced alerts ([`crate::alerts::silence`]) queue nothing, are not refreshed and get no
//! repeats; a resolve is queued only for alerts whose firing was.
//!
//! Targets can carry credentials (a Slack webhook URL is one), so logs and stored errors name
//! only a target's scheme and host.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use persys_kit::{http as client, shutdown::Shutdown};
use persys_proto::metrics::v1::{
    Alert, AlertRule, AlertSeverity, AlertState, Comparator, Metric, NotificationChannel, NotificationChannelType,
};
use serde_json::{Value, json};

mod outbox;

pub use self::outbox::{Claimed, Settled, claim_due, enqueue, firing_queued, next_due, settle};
use crate::{
    on_db,
    store::{Store, StoreError},
};

/// How the dispatcher retries and refreshes.
#[derive(Clone, Debug)]
pub struct Options {
    /// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// After this long since it was queued a notification that still fails is given up.
    pub give_up: Duration,
    /// Bound on one delivery (connect, send, read the answer).
    pub timeout: Duration,
    /// How often open alerts are re-posted to Alertmanager channels and repeats are queued.
    pub refresh: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backoff: Duration::from_secs(1),
            give_up: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            refresh: Duration::from_secs(60),
        }
    }
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Most rows one dispatch claims.
const CLAIM: i64 = 64;
/// How long an alert posted to Alertmanager stays active without a refresh: past two refresh
/// intervals, so one missed refresh does not end it.
const ALERTMANAGER_HOLD_MS: i64 = 5 * 60_000;

/// One notification to queue with an alert's change.
#[derive(Clone, Debug, PartialEq)]
pub struct Queued {
    /// `firing`, `resolved` or `repeat-<n>`.
    pub transition: String,
    /// Index of the channel in the rule.
    pub channel: i32,
    /// The channel, with its secret.
    pub spec: NotificationChannel,
}

fn is_type(c: &NotificationChannel, t: NotificationChannelType) -> bool {
    c.r#type == t as i32
}

/// What `rule`'s channels want for `alert` just after it changed (pending and acknowledged
/// changes notify nobody; a resolve only if the alert had fired).
pub fn wanted(rule: &AlertRule, alert: &Alert) -> Vec<Queued> {
    let resolved = match AlertState::try_from(alert.state) {
        Ok(AlertState::Firing) => false,
        Ok(AlertState::Resolved) if alert.fired_at.is_some() => true,
        _ => return Vec::new(),
    };
    rule.notification_channels
        .iter()
        .enumerate()
        .filter(|(_, c)| !resolved || c.notify_on_resolve || is_type(c, NotificationChannelType::Alertmanager))
        .map(|(i, c)| Queued {
            transition: if resolved { "resolved" } else { "firing" }.into(),
            channel: i as i32,
            spec: c.clone(),
        })
        .collect()
}

/// A target as logs may show it: scheme and authority, never its path or query (a Slack
/// webhook's path is its credential).
pub fn redact(target: &str) -> String {
    match target.parse::<http::Uri>() {
        Ok(uri) => format!(
            "{}://{}/…",
            uri.scheme_str().unwrap_or("?"),
            uri.authority().map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"))
        ),
        Err(_) => "(not a URL)".into(),
    }
}

/// Checks a channel target: an absolute http or https URL with a host.
pub fn check_target(target: &str) -> Result<(), String> {
    let uri: http::Uri =
        target.parse().map_err(|_| "not a URL; use http://host/path or https://host/path".to_owned())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("names no host".into());
    }
    Ok(())
}

use crate::clock::now_ms;

fn ms(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.map(crate::clock::millis)
}

/// RFC 3339 in UTC with milliseconds, as Alertmanager and JSON readers take it.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn metric_name(m: i32) -> String {
    Metric::try_from(m).map_or_else(|_| m.to_string(), |m| m.as_str_name().trim_start_matches("METRIC_").to_lowercase())
}

fn severity_name(s: i32) -> String {
    AlertSeverity::try_from(s)
        .map_or_else(|_| s.to_string(), |s| s.as_str_name().trim_start_matches("ALERT_SEVERITY_").to_lowercase())
}

fn state_name(s: i32) -> String {
    AlertState::try_from(s)
        .map_or_else(|_| s.to_string(), |s| s.as_str_name().trim_start_matches("ALERT_STATE_").to_lowercase())
}

fn comparator_symbol(c: i32) -> &'static str {
    match Comparator::try_from(c) {
        Ok(Comparator::GreaterThan) => ">",
        Ok(Comparator::GreaterThanOrEqual) => ">=",
        Ok(Comparator::LessThan) => "<",
        Ok(Comparator::LessThanOrEqual) => "<=",
        Ok(Comparator::Equal) => "==",
        Ok(Comparator::NotEqual) => "!=",
        _ => "?",
    }
}

/// The alert as the generic webhook carries it: names for enums, RFC 3339 times.
pub fn alert_json(a: &Alert) -> Value {
    let time = |t: Option<&prost_types::Timestamp>| ms(t).map(rfc3339);
    json!({
        "id": a.id,
        "rule_id": a.rule_id,
        "rule_name": a.rule_name,
        "node_id": a.node_id,
        "labels": a.labels,
        "metric": metric_name(a.metric),
        "comparator": comparator_symbol(a.comparator),
        "threshold": a.threshold,
        "value": a.value,
        "severity": severity_name(a.severity),
        "state": state_name(a.state),
        "message": a.message,
        "pending_since": time(a.pending_since.as_ref()),
        "fired_at": time(a.fired_at.as_ref()),
        "acknowledged_at": time(a.acknowledged_at.as_ref()),
        "acknowledged_by": a.acknowledged_by,
        "resolved_at": time(a.resolved_at.as_ref()),
    })
}

/// A label name Alertmanager accepts: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// One alert in Alertmanager's `postableAlert` form. Its identity there is its label set: the
/// rule's name and id, node, metric, severity and the series' labels, the same while it is open,
/// so the resolve (an `endsAt` in the past) ends the alert the firing post opened.
pub fn alertmanager_alert(a: &Alert, now_ms: i64) -> Value {
    let mut labels: serde_json::Map<String, Value> =
        a.labels.iter().map(|(k, v)| (label_name(k), Value::String(v.clone()))).collect();
    for (k, v) in [
        ("alertname", a.rule_name.clone()),
        ("severity", severity_name(a.severity)),
        ("node", a.node_id.clone()),
        ("metric", metric_name(a.metric)),
        ("persys_rule_id", a.rule_id.clone()),
    ] {
        labels.insert(k.into(), Value::String(v));
    }
    let started = ms(a.fired_at.as_ref()).or(ms(a.pending_since.as_ref())).unwrap_or(now_ms);
    // A resolve ends it now at the latest (a sample time ahead of this clock would keep it open).
    let ends = ms(a.resolved_at.as_ref()).map_or(now_ms + ALERTMANAGER_HOLD_MS, |r| r.min(now_ms));
    json!({
        "labels": labels,
        "annotations": {
            "summary": a.message,
            "value": a.value.to_string(),
            "persys_alert_id": a.id,
        },
        "startsAt": rfc3339(started),
        "endsAt": rfc3339(ends),
    })
}

/// The Slack message for a transition.
pub fn slack_text(a: &Alert, transition: &str) -> String {
    let what = match transition {
        "resolved" => "RESOLVED".to_owned(),
        "firing" => "FIRING".to_owned(),
        t => format!("STILL FIRING ({t})"),
    };
    format!("[{what}] {} on {} ({})", a.message, a.node_id, severity_name(a.severity))
}

/// What became of one attempt.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The receiver took it (2xx).
    Delivered,
    /// Worth another try later.
    Retry(String),
    /// Another try would fail the same way.
    Permanent(String),
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Delivers over HTTP.
#[derive(Clone)]
pub struct Sender {
    http: client::Client,
    timeout: Duration,
}

impl Sender {
    /// A sender whose calls end after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, client::ClientError> {
        Ok(Self { http: client::client(None, "notification targets")?, timeout })
    }

    async fn post(&self, url: &str, body: Vec<u8>, extra: &[(&str, String)]) -> Outcome {
        let mut request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("persys-metrics-pipeline/", env!("CARGO_PKG_VERSION")));
        for (name, value) in extra {
            request = request.header(*name, value);
        }
        let request = match request.body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => return Outcome::Permanent(format!("bad request to {}: {e}", redact(url))),
        };
        match client::send(&self.http, request, self.timeout).await {
            Err(e) => Outcome::Retry(format!("{}: {e}", redact(url))),
            Ok(r) if r.status.is_success() => Outcome::Delivered,
            Ok(r) => {
                let text: String = String::from_utf8_lossy(&r.body).chars().take(200).collect();
                let why = format!("{} answered {}: {}", redact(url), r.status, text.trim());
                let retry = r.status.is_server_error()
                    || r.status == StatusCode::TOO_MANY_REQUESTS
                    || r.status == StatusCode::REQUEST_TIMEOUT;
                if retry { Outcome::Retry(why) } else { Outcome::Permanent(why) }
            }
        }
    }

    /// Delivers one notification of `alert` (as it was at `transition`) on `spec`.
    pub async fn deliver(&self, spec: &NotificationChannel, alert: &Alert, transition: &str, now_ms: i64) -> Outcome {
        let id = format!("{}/{transition}", alert.id);
        match NotificationChannelType::try_from(spec.r#type) {
            Ok(NotificationChannelType::Webhook) => {
                let body = serde_json::to_vec(&json!({"id": id, "transition": transition, "alert": alert_json(alert)}))
                    .unwrap_or_default();
                let mut headers = vec![("x-persys-notification-id", id)];
                if !spec.secret.is_empty() {
                    headers.push(("x-persys-signature", format!("sha256={}", hmac_hex(&spec.secret, &body))));
                }
                self.post(&spec.target, body, &headers).await
            }
            Ok(NotificationChannelType::Slack) => {
                let body = serde_json::to_vec(&json!({"text": slack_text(alert, transition)})).unwrap_or_default();
                self.post(&spec.target, body, &[]).await
            }
            Ok(NotificationChannelType::Alertmanager) => self.alertmanager(&spec.target, &[alert], now_ms).await,
            _ => Outcome::Permanent(format!("channel type {} is not delivered", spec.r#type)),
        }
    }

    /// Posts `alerts` to the Alertmanager at `base`.
    pub async fn alertmanager(&self, base: &str, alerts: &[&Alert], now_ms: i64) -> Outcome {
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        let body: Vec<Value> = alerts.iter().map(|a| alertmanager_alert(a, now_ms)).collect();
        self.post(&url, serde_json::to_vec(&body).unwrap_or_default(), &[]).await
    }
}

/// The next wait after `attempts` failed attempts.
pub fn backoff(first: Duration, attempts: i32) -> Duration {
    let doubled = first.saturating_mul(1u32 << attempts.clamp(1, 20).saturating_sub(1) as u32);
    doubled.min(MAX_BACKOFF)
}

/// Delivers what the outbox holds.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<Store>,
    sender: Sender,
    options: Options,
    wake: Arc<tokio::sync::Notify>,
    outcomes: crate::outcomes::Outcomes,
}

impl Notifier {
    /// A notifier on `store`'s outbox.
    pub fn new(store: Arc<Store>, options: Options) -> Result<Self, client::ClientError> {
        Ok(Self {
            store,
            sender: Sender::new(options.timeout)?,
            options,
            wake: Arc::default(),
            outcomes: Default::default(),
        })
    }

    /// Puts the delivery counters on `metrics` (`persys_notifications_total{outcome}`).
    pub fn register_metrics(&self, metrics: &persys_kit::metrics::Metrics) {
        crate::outcomes::register(metrics, "notifications", "Notification deliveries by outcome", &self.outcomes);
    }

    /// Says that something was queued: the dispatcher looks now instead of at its next due time.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the dispatcher and the refresh until `shutdown`.
    pub fn spawn(self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let stop = shutdown.wait();
            tokio::pin!(stop);
            let mut refresh = tokio::time::interval(self.options.refresh);
            refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let wait = match self.dispatch().await {
                    Ok(wait) => wait,
                    Err(error) => {
                        tracing::warn!(%error, "notification outbox unreadable; trying again in 5 s");
                        Duration::from_secs(5)
                    }
                };
                tokio::select! {
                    _ = &mut stop => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = refresh.tick() => {
                        if let Err(error) = self.refresh().await {
                            tracing::warn!(%error, "could not refresh open alerts");
                        }
                    }
                }
            }
        })
    }

    /// Delivers every due notification; returns how long until the next one is due (at most
    /// 5 s, so rows queued by another replica are not left waiting).
    pub async fn dispatch(&self) -> Result<Duration, StoreError> {
        loop {
            let claimed = self.claim().await?;
            let full = claimed.len() as i64 == CLAIM;
            let now = now_ms();
            let outcomes = futures::future::join_all(
                claimed.iter().map(|c| self.sender.deliver(&c.spec, &c.alert, &c.transition, now)),
            )
            .await;
            for (c, outcome) in claimed.iter().zip(outcomes) {
                self.record(c, outcome).await?;
            }
            if !full {
                break;
            }
        }
        let next = outbox::next_due(self.store.db()).await?;
        let wait = next.map_or(5_000, |due| (due - now_ms()).clamp(0, 5_000));
        Ok(Duration::from_millis(wait as u64))
    }

    async fn claim(&self) -> Result<Vec<Claimed>, StoreError> {
        let now = now_ms();
        // A claim holds a row past the longest delivery; a crash mid-delivery leaves it due then.
        let lease = now + 2 * self.options.timeout.as_millis() as i64 + 5_000;
        outbox::claim_due(self.store.db(), now, lease, CLAIM).await
    }

    async fn record(&self, c: &Claimed, outcome: Outcome) -> Result<(), StoreError> {
        let now = now_ms();
        let kind = NotificationChannelType::try_from(c.spec.r#type).map_or("unknown", |t| t.as_str_name());
        let settled = match outcome {
            Outcome::Delivered => {
                crate::outcomes::count(&self.outcomes, "delivered");
                tracing::info!(alert = %c.alert_id, transition = %c.transition, channel = kind, attempts = c.attempts, "notified");
                Settled::Delivered
            }
            Outcome::Retry(why) if now - c.created_ms < self.options.give_up.as_millis() as i64 => {
                let wait = backoff(self.options.backoff, c.attempts);
                crate::outcomes::count(&self.outcomes, "retried");
                tracing::warn!(alert = %c.alert_id, transition = %c.transition, channel = kind, attempts = c.attempts, error = %why, retry_in = ?wait, "notification failed; retrying");
                Settled::Retry { due_ms: now + wait.as_millis() as i64, error: why }
            }
            Outcome::Retry(why) | Outcome::Permanent(why) => {
                crate::outcomes::count(&self.outcomes, "failed");
                tracing::warn!(alert = %c.alert_id, transition = %c.transition, channel = kind, attempts = c.attempts, error = %why, "notification given up");
                Settled::Failed(why)
            }
        };
        outbox::settle(self.store.db(), c.id, now, settled).await?;
        Ok(())
    }

    /// Re-posts open alerts to their rules' Alertmanager channels, and queues a repeat for each
    /// firing, unacknowledged alert whose rule has a repeat interval that has come round again.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let open = [AlertState::Firing as i16, AlertState::Acknowledged as i16];
        let alerts = self.store.alerts(true, "", "", &open, 0, 0, 10_000).await?;
        if alerts.is_empty() {
            return Ok(());
        }
        let rules: HashMap<String, AlertRule> =
            self.store.rules().await?.into_iter().map(|r| (r.id.clone(), r)).collect();
        let now = now_ms();
        let silences = self.store.silences(false, now).await?;
        let mut by_alertmanager: HashMap<&str, Vec<&Alert>> = HashMap::new();
        let mut repeats = Vec::new();
        for alert in &alerts {
            let Some(rule) = rules.get(&alert.rule_id) else { continue };
            if crate::alerts::silence::silencing(&silences, alert, now).is_some() {
                continue;
            }
            for c in &rule.notification_channels {
                if is_type(c, NotificationChannelType::Alertmanager) {
                    by_alertmanager.entry(c.target.as_str()).or_default().push(alert);
                }
            }
            let every = rule.repeat_interval.as_ref().map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000);
            let fired = ms(alert.fired_at.as_ref());
            if let (true, Some(fired)) = (every > 0 && alert.state == AlertState::Firing as i32, fired) {
                let round = (now - fired) / every;
                if round >= 1 {
                    let items: Vec<Queued> = rule
                        .notification_channels
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| !is_type(c, NotificationChannelType::Alertmanager))
                        .map(|(i, c)| Queued {
                            transition: format!("repeat-{round}"),
                            channel: i as i32,
                            spec: c.clone(),
                        })
                        .collect();
                    repeats.push((alert, items));
                }
            }
        }
        for (base, alerts) in by_alertmanager {
            if let Outcome::Retry(why) | Outcome::Permanent(why) = self.sender.alertmanager(base, &alerts, now).await {
                tracing::warn!(error = %why, alerts = alerts.len(), "could not refresh alerts in Alertmanager");
            }
        }
        if !repeats.is_empty() {
            on_db!(self.store.db(), pool => {
                let mut conn = pool.acquire().await?;
                for (alert, items) in repeats {
                    enqueue((&mut *conn).into(), alert, &items, now).await?;
                }
            });
            self.wake();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_and_redacted_to_scheme_and_host() {
        assert!(check_target("https://hooks.slack.com/services/T0/B0/secret").is_ok());
        assert!(check_target("http://127.0.0.1:9093").is_ok());
        assert!(check_target("ftp://x/y").unwrap_err().contains("http://"));
        assert!(check_target("/relative").is_err());
        assert!(check_target("not a url").is_err());
        assert_eq!(redact("https://hooks.slack.com/services/T0/B0/secret"), "https://hooks.slack.com/…");
        assert_eq!(redact("http://user:pw@host:8080/x?token=1"), "http://host:8080/…");
    }

    #[test]
    fn backoff_doubles_from_the_first_delay_up_to_the_cap() {
        let first = Duration::from_millis(500);
        assert_eq!([1, 2, 3, 4].map(|n| backoff(first, n).as_millis()), [500, 1000, 2000, 4000]);
        assert_eq!(backoff(first, 40), MAX_BACKOFF);
    }

    #[test]
    fn channels_want_firing_and_resolves_only_when_asked_or_for_alertmanager() {
        let channel = |t: NotificationChannelType, resolve: bool| NotificationChannel {
            r#type: t as i32,
            target: "http://x".into(),
            notify_on_resolve: resolve,
            ..Default::default()
        };
        let rule = AlertRule {
            notification_channels: vec![
                channel(NotificationChannelType::Webhook, false),
                channel(NotificationChannelType::Slack, true),
                channel(NotificationChannelType::Alertmanager, false),
            ],
            ..Default::default()
        };
        let fired = Some(prost_types::Timestamp { seconds: 10, nanos: 0 });
        let firing = Alert { state: AlertState::Firing as i32, fired_at: fired, ..Default::default() };
        let wanted_of = |a: &Alert| wanted(&rule, a).into_iter().map(|q| (q.transition, q.channel)).collect::<Vec<_>>();
        assert_eq!(wanted_of(&firing), [("firing".into(), 0), ("firing".into(), 1), ("firing".into(), 2)]);
        let resolved = Alert { state: AlertState::Resolved as i32, ..firing.clone() };
        assert_eq!(wanted_of(&resolved), [("resolved".into(), 1), ("resolved".into(), 2)]);
        let never_fired = Alert { fired_at: None, ..resolved };
        assert!(wanted_of(&never_fired).is_empty(), "a pending alert that closes notifies nobody");
        let pending = Alert { state: AlertState::Pending as i32, ..Default::default() };
        assert!(wanted_of(&pending).is_empty());
    }

    #[test]
    fn alertmanager_labels_are_valid_names_and_the_rules_own_win() {
        let alert = Alert {
            id: "a-1".into(),
            rule_id: "rule-1".into(),
            rule_name: "disk full".into(),
            node_id: "web-1".into(),
            labels: [("mount-point".into(), "/".into()), ("alertname".into(), "spoof".into())].into(),
            metric: Metric::DiskUsagePercent as i32,
            severity: AlertSeverity::Critical as i32,
            fired_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            ..Default::default()
        };
        let v = alertmanager_alert(&alert, 1_700_000_060_000);
        assert_eq!(v["labels"]["alertname"], "disk full");
        assert_eq!(v["labels"]["mount_point"], "/");
        assert_eq!(v["labels"]["severity"], "critical");
        assert_eq!(v["labels"]["metric"], "disk_usage_percent");
        assert_eq!(v["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(v["endsAt"], "2023-11-14T22:19:20Z", "open: held five minutes past now");
        assert_eq!(label_name("9x"), "_9x");
    }

    #[test]
    fn webhook_signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
