//! Alert rules and alerts: rules are stored in PostgreSQL and evaluated in memory as samples
//! arrive ([`eval`]); each transition is stored, with the notifications it calls for queued in
//! the same transaction ([`crate::notify`]), before it is announced on `WatchAlerts`. Admins
//! only, like the host metrics they are about. Channel secrets are write-only.
//!
//! Silences mute the notifications of matching alerts for a time ([`silence`]).
//!
//! Not here yet (issue 12): rules on workload health, e-mail.

pub mod eval;
pub mod silence;

use std::{collections::HashMap, pin::Pin, sync::Arc};

use futures::Stream;
use persys_kit::{ApiError, error::Violations};
use persys_proto::{
    common::v1::{PageResponse, WatchEventType},
    metrics::v1::{
        AcknowledgeAlertRequest, AcknowledgeAlertResponse, Alert, AlertRule, AlertSeverity, AlertState, Comparator,
        CreateAlertRuleRequest, CreateAlertRuleResponse, CreateSilenceRequest, CreateSilenceResponse,
        DeleteAlertRuleRequest, DeleteAlertRuleResponse, ExpireSilenceRequest, ExpireSilenceResponse, GetAlertRequest,
        GetAlertResponse, GetAlertRuleRequest, GetAlertRuleResponse, ListAlertRulesRequest, ListAlertRulesResponse,
        ListAlertsRequest, ListAlertsResponse, ListSilencesRequest, ListSilencesResponse, Metric,
        NotificationChannelType, UpdateAlertRuleRequest, UpdateAlertRuleResponse, WatchAlertsRequest,
        WatchAlertsResponse, alert_service_server::AlertService,
    },
};
use tokio::sync::{Mutex, broadcast};
use tonic::{Request, Response, Status};

use crate::{
    query::check_admin,
    samples::{Labels, Row},
    store::Store,
};

use crate::clock::{now_ms, timestamp};

fn subject_of(a: &Alert) -> String {
    let labels: Labels = a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    eval::subject(&a.node_id, &labels)
}

/// Rules, their evaluation and the alerts they raise.
#[derive(Clone)]
pub struct Alerts {
    store: Arc<Store>,
    /// Serialises read-modify-write of rules (updates).
    writes: Arc<Mutex<()>>,
    eval: Arc<Mutex<eval::Evaluator>>,
    events: broadcast::Sender<Arc<Alert>>,
    notifier: crate::notify::Notifier,
}

impl Alerts {
    /// Loads the rules and the open alerts from `store`.
    pub async fn load(
        store: Arc<Store>,
        watch_buffer: usize,
        notifier: crate::notify::Notifier,
    ) -> Result<Self, crate::store::StoreError> {
        let mut evaluator = eval::Evaluator::new(format!("{:x}", now_ms()));
        evaluator.set_rules(store.rules().await?, now_ms());
        evaluator.restore(store.alerts(true, "", "", &[], 0, 0, i64::MAX).await?);
        let (events, _) = broadcast::channel(watch_buffer.max(1));
        Ok(Self { store, writes: Arc::default(), eval: Arc::new(Mutex::new(evaluator)), events, notifier })
    }

    /// Evaluates freshly committed rows of `node_id`; stores and announces what changed.
    pub async fn observe(&self, node_id: &str, rows: &[Row]) -> Result<(), ApiError> {
        let mut eval = self.eval.lock().await;
        let transitions = eval.observe(node_id, rows);
        if transitions.is_empty() {
            return Ok(());
        }
        let rules = rules_of(eval.rules(), &transitions);
        self.apply(transitions, &rules).await
    }

    /// Stores each transition with the notifications its rule (in `rules`, by id) wants, then
    /// announces it.
    async fn apply(
        &self,
        transitions: Vec<eval::Transition>,
        rules: &HashMap<String, AlertRule>,
    ) -> Result<(), ApiError> {
        let now = now_ms();
        let mut queued = false;
        // Read when a transition would notify (rare), so every replica sees the same silences.
        let mut silences: Option<Vec<persys_proto::metrics::v1::Silence>> = None;
        for mut t in transitions {
            if t.forgotten {
                self.store.delete_alert(&t.alert.id).await.map_err(ApiError::internal)?;
            } else {
                let open = t.alert.state != AlertState::Resolved as i32;
                let mut notify =
                    rules.get(&t.alert.rule_id).map(|r| crate::notify::wanted(r, &t.alert)).unwrap_or_default();
                t.alert.silenced_by.clear();
                // A resolve is news only to those told of the firing (not if it was silenced, or
                // the rule had no channels then).
                let resolved = t.alert.state == AlertState::Resolved as i32;
                if resolved
                    && !notify.is_empty()
                    && !crate::notify::firing_queued(self.store.db(), &t.alert.id).await.map_err(ApiError::internal)?
                {
                    notify.clear();
                }
                if !notify.is_empty() {
                    if silences.is_none() {
                        silences = Some(self.store.silences(false, now).await.map_err(ApiError::internal)?);
                    }
                    if let Some(s) = silence::silencing(silences.as_deref().unwrap_or_default(), &t.alert, now) {
                        t.alert.silenced_by = s.id.clone();
                        notify.clear();
                    }
                }
                queued |= !notify.is_empty();
                self.store
                    .put_alert(&t.alert, &subject_of(&t.alert), open, now, &notify)
                    .await
                    .map_err(ApiError::internal)?;
                tracing::info!(
                    alert = %t.alert.id, rule = %t.alert.rule_name, node = %t.alert.node_id,
                    state = ?AlertState::try_from(t.alert.state).unwrap_or_default(), value = t.alert.value, "alert"
                );
            }
            let _ = self.events.send(Arc::new(t.alert));
        }
        if queued {
            self.notifier.wake();
        }
        Ok(())
    }

    async fn reload_rules(&self) -> Result<(), ApiError> {
        let rules = self.store.rules().await.map_err(ApiError::internal)?;
        let mut eval = self.eval.lock().await;
        // Alerts of a deleted or disabled rule resolve through the rule as it was.
        let before: Vec<AlertRule> = eval.rules().to_vec();
        let transitions = eval.set_rules(rules, now_ms());
        let rules = rules_of(&before, &transitions);
        self.apply(transitions, &rules).await
    }
}

/// The rules of `transitions`, by id, from `rules`.
fn rules_of(rules: &[AlertRule], transitions: &[eval::Transition]) -> HashMap<String, AlertRule> {
    rules
        .iter()
        .filter(|r| transitions.iter().any(|t| t.alert.rule_id == r.id))
        .map(|r| (r.id.clone(), r.clone()))
        .collect()
}

/// A rule as callers read it: channel secrets are write-only.
pub fn redacted(mut rule: AlertRule) -> AlertRule {
    for c in &mut rule.notification_channels {
        c.secret.clear();
    }
    rule
}

/// Most notification channels on one rule.
pub const MAX_CHANNELS: usize = 10;

/// Checks a rule from a caller; field names are relative to `rule.`.
pub fn validate_rule(r: &AlertRule) -> Result<(), ApiError> {
    let mut v = Violations::new();
    v.check(r.name.trim().is_empty(), "rule.name", "required");
    match Metric::try_from(r.metric) {
        Ok(Metric::Unspecified) | Err(_) => {
            v.check(true, "rule.metric", format!("unknown metric {}", r.metric));
        }
        Ok(Metric::SecondsSinceLastSample) => {
            v.check(true, "rule.metric", "seconds_since_last_sample rules are not evaluated yet");
        }
        Ok(_) => {}
    }
    let comparator = Comparator::try_from(r.comparator).ok().filter(|c| *c != Comparator::Unspecified);
    v.check(
        comparator.is_none(),
        "rule.comparator",
        format!("unknown comparator {}: use GREATER_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN, LESS_THAN_OR_EQUAL, EQUAL or NOT_EQUAL", r.comparator),
    );
    v.check(!r.threshold.is_finite(), "rule.threshold", "must be a finite number");
    v.check(r.resolve_threshold.is_some_and(|t| !t.is_finite()), "rule.resolve_threshold", "must be a finite number");
    let negative = |d: &Option<prost_types::Duration>| d.as_ref().is_some_and(|d| d.seconds < 0 || d.nanos < 0);
    v.check(negative(&r.for_duration), "rule.for_duration", "must not be negative");
    v.check(negative(&r.repeat_interval), "rule.repeat_interval", "must not be negative");
    v.check(AlertSeverity::try_from(r.severity).is_err(), "rule.severity", format!("unknown severity {}", r.severity));
    v.check(
        r.notification_channels.len() > MAX_CHANNELS,
        "rule.notification_channels",
        format!("at most {MAX_CHANNELS} channels"),
    );
    for (i, c) in r.notification_channels.iter().enumerate() {
        match NotificationChannelType::try_from(c.r#type) {
            Ok(
                NotificationChannelType::Webhook
                | NotificationChannelType::Slack
                | NotificationChannelType::Alertmanager,
            ) => {
                if let Err(why) = crate::notify::check_target(&c.target) {
                    v.check(true, &format!("rule.notification_channels[{i}].target"), why);
                }
            }
            Ok(NotificationChannelType::Email) => {
                v.check(
                    true,
                    &format!("rule.notification_channels[{i}].type"),
                    "e-mail is not delivered yet; use WEBHOOK, SLACK or ALERTMANAGER",
                );
            }
            Ok(NotificationChannelType::Unspecified) | Err(_) => {
                v.check(
                    true,
                    &format!("rule.notification_channels[{i}].type"),
                    format!("unknown channel type {}: use WEBHOOK, SLACK or ALERTMANAGER", c.r#type),
                );
            }
        }
    }
    v.finish()
}

/// The fields a caller may change, by their names in an update mask.
pub const MUTABLE_FIELDS: [&str; 14] = [
    "name",
    "description",
    "node_ids",
    "node_selector",
    "metric",
    "match_labels",
    "comparator",
    "threshold",
    "for_duration",
    "resolve_threshold",
    "severity",
    "notification_channels",
    "repeat_interval",
    "enabled",
];

/// Returns `old` with the fields named in `paths` (every mutable field when empty) taken from
/// `new`, its revision bumped; names outside [`MUTABLE_FIELDS`] are field violations.
pub fn merge_rule(old: AlertRule, new: AlertRule, paths: &[String]) -> Result<AlertRule, ApiError> {
    let bad: Vec<persys_kit::FieldViolation> = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| !MUTABLE_FIELDS.contains(&p.as_str()))
        .map(|(i, p)| {
            persys_kit::FieldViolation::new(
                format!("update_mask.paths[{i}]"),
                format!("`{p}` cannot be changed; mutable fields: {}", MUTABLE_FIELDS.join(", ")),
            )
        })
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::InvalidArgument(bad));
    }
    let all = paths.is_empty();
    let take = |f: &str| all || paths.iter().any(|p| p == f);
    let mut m = old;
    if take("name") {
        m.name = new.name.clone();
    }
    if take("description") {
        m.description = new.description.clone();
    }
    if take("node_ids") {
        m.node_ids = new.node_ids.clone();
    }
    if take("node_selector") {
        m.node_selector = new.node_selector.clone();
    }
    if take("metric") {
        m.metric = new.metric;
    }
    if take("match_labels") {
        m.match_labels = new.match_labels.clone();
    }
    if take("comparator") {
        m.comparator = new.comparator;
    }
    if take("threshold") {
        m.threshold = new.threshold;
    }
    if take("for_duration") {
        m.for_duration = new.for_duration;
    }
    if take("resolve_threshold") {
        m.resolve_threshold = new.resolve_threshold;
    }
    if take("severity") {
        m.severity = new.severity;
    }
    if take("notification_channels") {
        // Secrets are write-only: a channel sent back without one keeps the secret it had (the
        // same type and target).
        let before = std::mem::take(&mut m.notification_channels);
        m.notification_channels = new
            .notification_channels
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if c.secret.is_empty()
                    && let Some(old) = before.iter().find(|o| o.r#type == c.r#type && o.target == c.target)
                {
                    c.secret = old.secret.clone();
                }
                c
            })
            .collect();
    }
    if take("repeat_interval") {
        m.repeat_interval = new.repeat_interval;
    }
    if take("enabled") {
        m.enabled = new.enabled;
    }
    let now = now_ms();
    m.updated_at = Some(prost_types::Timestamp { seconds: now / 1000, nanos: 0 });
    m.revision += 1;
    Ok(m)
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {id:?}"))
}

#[tonic::async_trait]
impl AlertService for Alerts {
    async fn create_alert_rule(
        &self,
        request: Request<CreateAlertRuleRequest>,
    ) -> Result<Response<CreateAlertRuleResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let owner =
            persys_kit::Caller::of(&request).and_then(|c| c.user.as_ref()).map(|u| u.id.clone()).unwrap_or_default();
        let mut rule = request
            .into_inner()
            .rule
            .ok_or_else(|| ApiError::InvalidArgument(vec![persys_kit::FieldViolation::new("rule", "required")]))?;
        validate_rule(&rule)?;
        let now = now_ms();
        rule.id = format!("rule-{now:x}-{:x}", rand_suffix());
        rule.owner_id = owner;
        rule.created_at = Some(prost_types::Timestamp { seconds: now / 1000, nanos: 0 });
        rule.updated_at = rule.created_at;
        rule.revision = 1;
        if rule.severity == AlertSeverity::Unspecified as i32 {
            rule.severity = AlertSeverity::Warning as i32;
        }
        self.store.put_rule(&rule, now).await.map_err(ApiError::internal)?;
        self.reload_rules().await?;
        Ok(Response::new(CreateAlertRuleResponse { rule: Some(redacted(rule)) }))
    }

    async fn get_alert_rule(
        &self,
        request: Request<GetAlertRuleRequest>,
    ) -> Result<Response<GetAlertRuleResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let id = request.into_inner().id;
        let rules = self.store.rules().await.map_err(ApiError::internal)?;
        let rule = rules.into_iter().find(|r| r.id == id).ok_or_else(|| not_found("alert rule", &id))?;
        Ok(Response::new(GetAlertRuleResponse { rule: Some(redacted(rule)) }))
    }

    async fn list_alert_rules(
        &self,
        request: Request<ListAlertRulesRequest>,
    ) -> Result<Response<ListAlertRulesResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let r = request.into_inner();
        let rules = self
            .store
            .rules()
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .filter(|x| r.node_id.is_empty() || x.node_ids.is_empty() || x.node_ids.contains(&r.node_id))
            .filter(|x| r.owner_id.is_empty() || x.owner_id == r.owner_id)
            .map(redacted)
            .collect();
        Ok(Response::new(ListAlertRulesResponse { rules, page: Some(PageResponse::default()) }))
    }

    async fn update_alert_rule(
        &self,
        request: Request<UpdateAlertRuleRequest>,
    ) -> Result<Response<UpdateAlertRuleResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let r = request.into_inner();
        let new = r
            .rule
            .ok_or_else(|| ApiError::InvalidArgument(vec![persys_kit::FieldViolation::new("rule", "required")]))?;
        let paths: Vec<String> = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let _writing = self.writes.lock().await;
        let rules = self.store.rules().await.map_err(ApiError::internal)?;
        let old = rules.into_iter().find(|x| x.id == new.id).ok_or_else(|| not_found("alert rule", &new.id))?;
        if r.expected_revision != 0 && r.expected_revision != old.revision {
            return Err(ApiError::Aborted(format!(
                "alert rule {:?} is at revision {}, not {}; read it again and retry",
                old.id, old.revision, r.expected_revision
            ))
            .into());
        }
        let merged = merge_rule(old, new, &paths)?;
        validate_rule(&merged)?;
        self.store.put_rule(&merged, now_ms()).await.map_err(ApiError::internal)?;
        self.reload_rules().await?;
        Ok(Response::new(UpdateAlertRuleResponse { rule: Some(redacted(merged)) }))
    }

    async fn delete_alert_rule(
        &self,
        request: Request<DeleteAlertRuleRequest>,
    ) -> Result<Response<DeleteAlertRuleResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let id = request.into_inner().id;
        if !self.store.delete_rule(&id).await.map_err(ApiError::internal)? {
            return Err(not_found("alert rule", &id).into());
        }
        self.reload_rules().await?;
        Ok(Response::new(DeleteAlertRuleResponse {}))
    }

    async fn list_alerts(&self, request: Request<ListAlertsRequest>) -> Result<Response<ListAlertsResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let r = request.into_inner();
        let page = r.page.unwrap_or_default();
        let size = if page.page_size <= 0 { 50 } else { i64::from(page.page_size.min(1000)) };
        let offset: i64 = if page.page_token.is_empty() {
            0
        } else {
            page.page_token.parse().map_err(|_| {
                ApiError::InvalidArgument(vec![persys_kit::FieldViolation::new(
                    "page.page_token",
                    "not a token from this list",
                )])
            })?
        };
        let states: Vec<i16> = r.states.iter().map(|s| *s as i16).collect();
        let mut alerts = self
            .store
            .alerts(false, &r.node_id, &r.rule_id, &states, r.min_severity as i16, offset, size + 1)
            .await
            .map_err(ApiError::internal)?;
        let more = alerts.len() as i64 > size;
        alerts.truncate(size as usize);
        let next_page_token = if more { (offset + size).to_string() } else { String::new() };
        Ok(Response::new(ListAlertsResponse {
            alerts,
            page: Some(PageResponse { next_page_token, total_size: None }),
            revision: 0,
        }))
    }

    async fn get_alert(&self, request: Request<GetAlertRequest>) -> Result<Response<GetAlertResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let id = request.into_inner().id;
        let alert = self.store.alert(&id).await.map_err(ApiError::internal)?.ok_or_else(|| not_found("alert", &id))?;
        Ok(Response::new(GetAlertResponse { alert: Some(alert) }))
    }

    type WatchAlertsStream = Pin<Box<dyn Stream<Item = Result<WatchAlertsResponse, Status>> + Send>>;

    async fn watch_alerts(
        &self,
        request: Request<WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let r = request.into_inner();
        crate::watch::check_since(r.since_revision)?;
        let events = self.events.subscribe();
        let open = self
            .store
            .alerts(true, &r.node_id, "", &[], r.min_severity as i16, 0, 10_000)
            .await
            .map_err(ApiError::internal)?;
        // Resolved alerts are MODIFIED like any other change (the contract): a view of alerts
        // keeps them, in their new state, until it lets them go.
        let stream = crate::watch::spawn::<WatchAlertsResponse, _>(open, events, "alert changes", move |alert| {
            let wanted = (r.node_id.is_empty() || alert.node_id == r.node_id) && alert.severity >= r.min_severity;
            wanted.then(|| (WatchEventType::Modified, (*alert).clone()))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<AcknowledgeAlertRequest>,
    ) -> Result<Response<AcknowledgeAlertResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let who =
            persys_kit::Caller::of(&request).and_then(|c| c.user.as_ref()).map(|u| u.name.clone()).unwrap_or_default();
        let r = request.into_inner();
        let mut eval = self.eval.lock().await;
        let Some(alert) = eval.open_alert_mut(&r.id) else { return Err(not_found("open alert", &r.id).into()) };
        // Acknowledging again changes nothing: the alert as it is (who acknowledged it first).
        if alert.state == AlertState::Acknowledged as i32 {
            return Ok(Response::new(AcknowledgeAlertResponse { alert: Some(alert.clone()) }));
        }
        if alert.state != AlertState::Firing as i32 {
            return Err(ApiError::FailedPrecondition(format!(
                "alert {:?} is {:?}; only a firing alert can be acknowledged",
                r.id,
                AlertState::try_from(alert.state).unwrap_or_default()
            ))
            .into());
        }
        let now = now_ms();
        alert.state = AlertState::Acknowledged as i32;
        alert.acknowledged_at = Some(prost_types::Timestamp { seconds: now / 1000, nanos: 0 });
        alert.acknowledged_by = who;
        alert.acknowledge_comment = r.comment;
        alert.revision += 1;
        let alert = alert.clone();
        drop(eval);
        self.store.put_alert(&alert, &subject_of(&alert), true, now, &[]).await.map_err(ApiError::internal)?;
        let _ = self.events.send(Arc::new(alert.clone()));
        Ok(Response::new(AcknowledgeAlertResponse { alert: Some(alert) }))
    }

    async fn create_silence(
        &self,
        request: Request<CreateSilenceRequest>,
    ) -> Result<Response<CreateSilenceResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let who =
            persys_kit::Caller::of(&request).and_then(|c| c.user.as_ref()).map(|u| u.name.clone()).unwrap_or_default();
        let mut s = request
            .into_inner()
            .silence
            .ok_or_else(|| ApiError::InvalidArgument(vec![persys_kit::FieldViolation::new("silence", "required")]))?;
        let now = now_ms();
        silence::validate(&s, now)?;
        s.id = format!("silence-{now:x}-{:x}", rand_suffix());
        s.created_by = who;
        s.created_at = Some(timestamp(now));
        s.starts_at = s.starts_at.or(Some(timestamp(now)));
        s.expired_at = None;
        let (starts, ends) = silence::window(&s);
        self.store.put_silence(&s, starts, ends, now).await.map_err(ApiError::internal)?;
        tracing::info!(silence = %s.id, by = %s.created_by, matchers = s.matchers.len(), "silence created");
        Ok(Response::new(CreateSilenceResponse { silence: Some(s) }))
    }

    async fn list_silences(
        &self,
        request: Request<ListSilencesRequest>,
    ) -> Result<Response<ListSilencesResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let r = request.into_inner();
        let silences = self.store.silences(r.include_ended, now_ms()).await.map_err(ApiError::internal)?;
        Ok(Response::new(ListSilencesResponse { silences }))
    }

    async fn expire_silence(
        &self,
        request: Request<ExpireSilenceRequest>,
    ) -> Result<Response<ExpireSilenceResponse>, Status> {
        check_admin(&request, "alerts, rules and silences")?;
        let id = request.into_inner().id;
        let _writing = self.writes.lock().await;
        let mut s =
            self.store.silence(&id).await.map_err(ApiError::internal)?.ok_or_else(|| not_found("silence", &id))?;
        let now = now_ms();
        if silence::window(&s).1 <= now {
            return Err(ApiError::FailedPrecondition(format!("silence {id:?} has already ended")).into());
        }
        s.expired_at = Some(timestamp(now));
        let (starts, ends) = silence::window(&s);
        let created = s.created_at.as_ref().map_or(now, crate::clock::millis);
        self.store.put_silence(&s, starts, ends, created).await.map_err(ApiError::internal)?;
        Ok(Response::new(ExpireSilenceResponse { silence: Some(s) }))
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms());
    h.finish() as u32
}

impl crate::watch::Event for WatchAlertsResponse {
    type Item = Alert;
    fn new(kind: WatchEventType, alert: Option<Alert>, revision: i64) -> Self {
        Self { r#type: kind as i32, alert, revision }
    }
}
