//! Notifications on the real pipeline and PostgreSQL: each transition reaches a webhook and a
//! Slack-compatible webhook once through failures, signed; what is queued survives a SIGKILL of
//! the pipeline; and alerts fire and resolve in a real Alertmanager through its v2 API. The
//! receivers are local HTTP servers; the invariants are checked over the outbox and what the
//! receivers got.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use common::{AgentStream, Db, Pipeline, batch, certs, connection, now_ms, sample};
use persys_client::testing::AsUser;
use persys_kit::identity::Role;
use persys_proto::metrics::v1::{
    AlertRule, Comparator, CreateAlertRuleRequest, GetAlertRuleRequest, Metric, NotificationChannel,
    NotificationChannelType, UpdateAlertRuleRequest, alert_service_client::AlertServiceClient,
    metrics_ingest_service_client::MetricsIngestServiceClient,
};
use sqlx::Row;

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: serde_json::Value,
    raw: Vec<u8>,
    answered: u16,
}

/// A receiver: answers each path with `failures` 500s first (or 503 while `down`), then 200.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    failures: usize,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn serve(self) -> SocketAddr {
        async fn take(
            State(r): State<Receiver>,
            Path(path): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let mut got = r.got.lock().unwrap();
            let before = got.iter().filter(|g| g.path == path).count();
            let status = if r.down.load(std::sync::atomic::Ordering::SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else if before < r.failures {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            let raw = body.to_vec();
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            got.push(Got { path, headers, body, raw, answered: status.as_u16() });
            status
        }
        let app = axum::Router::new().route("/{path}", post(take)).with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

fn channel(kind: NotificationChannelType, target: String, secret: &str, on_resolve: bool) -> NotificationChannel {
    NotificationChannel { r#type: kind as i32, target, secret: secret.into(), notify_on_resolve: on_resolve }
}

fn hot_rule(name: &str, channels: Vec<NotificationChannel>) -> AlertRule {
    AlertRule {
        name: name.into(),
        metric: Metric::CpuUsagePercent as i32,
        comparator: Comparator::GreaterThan as i32,
        threshold: 80.0,
        notification_channels: channels,
        enabled: true,
        ..Default::default()
    }
}

/// The outbox: (transition, channel, attempts, delivered, failed, last error), oldest first.
async fn outbox(pool: &sqlx::PgPool) -> Vec<(String, i32, i32, bool, bool, String)> {
    sqlx::query(
        "SELECT transition, channel, attempts, delivered_ms IS NOT NULL, failed_ms IS NOT NULL, last_error \
         FROM notifications ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

type Outbox = [(String, i32, i32, bool, bool, String)];

/// Waits (10 s at most) until `done` holds for the outbox.
async fn until(pool: &sqlx::PgPool, what: &str, done: impl Fn(&Outbox) -> bool) {
    until_within(pool, Duration::from_secs(10), what, done).await;
}

async fn until_within(pool: &sqlx::PgPool, within: Duration, what: &str, done: impl Fn(&Outbox) -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows = outbox(pool).await;
        if done(&rows) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: outbox is {rows:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn each_transition_reaches_a_webhook_and_slack_once_through_failures_and_is_signed() {
    let receiver = Receiver { failures: 2, ..Default::default() };
    let at = receiver.clone().serve().await;
    let Some(p) = Pipeline::start_with(|a| a.notify_backoff = Duration::from_millis(20)).await else { return };
    let mut admin = p.alerts_as("root", Role::Admin);
    let rule = hot_rule(
        "cpu hot",
        vec![
            channel(NotificationChannelType::Webhook, format!("http://{at}/hook"), "s3cret", true),
            channel(NotificationChannelType::Slack, format!("http://{at}/slack"), "", false),
        ],
    );
    let created = admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap().into_inner();
    let created = created.rule.unwrap();
    assert!(created.notification_channels.iter().all(|c| c.secret.is_empty()), "secrets are write-only");

    let t0 = now_ms() - 60_000;
    let mut agent = p.ingest_as("node-a");
    let mut stream = AgentStream::open(&mut agent).await.unwrap();
    stream.send(batch("node-a", 1, vec![sample("node-a", t0, 95.0)])).await.unwrap();
    let pool = p.running.store.postgres().expect("PostgreSQL");
    until(pool, "firing delivered on both channels", |rows| rows.len() == 2 && rows.iter().all(|r| r.3)).await;
    // Still firing: nothing more is queued.
    stream.send(batch("node-a", 2, vec![sample("node-a", t0 + 1000, 97.0)])).await.unwrap();
    stream.send(batch("node-a", 3, vec![sample("node-a", t0 + 2000, 20.0)])).await.unwrap();
    until(pool, "resolved delivered to the webhook only", |rows| rows.len() == 3 && rows.iter().all(|r| r.3)).await;

    let rows = outbox(pool).await;
    let summary: Vec<(&str, i32, i32)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
    assert_eq!(
        summary,
        [("firing", 0, 3), ("firing", 1, 3), ("resolved", 0, 1)],
        "two 500s then the delivery; the resolve went through at once (the receiver fails each path twice)"
    );
    assert!(rows.iter().all(|r| !r.4 && r.5.is_empty()), "none failed, no error left: {rows:?}");
    // The admin port counts the same: 4 retried attempts, 3 deliveries, none given up.
    let exposed = common::http_get(p.running.admin.unwrap(), "/metrics").await;
    for line in
        ["persys_notifications_total{outcome=\"retried\"} 4", "persys_notifications_total{outcome=\"delivered\"} 3"]
    {
        assert!(exposed.contains(line), "{line} missing from /metrics:\n{exposed}");
    }
    assert!(!exposed.contains("persys_notifications_total{outcome=\"failed\"}"));

    // What the receiver saw is exactly what the outbox says: 3 + 3 + 1 requests, one accepted
    // per notification.
    let got = receiver.got();
    assert_eq!(got.len(), 7, "{got:?}");
    let accepted: Vec<&Got> = got.iter().filter(|g| g.answered == 200).collect();
    assert_eq!(accepted.len(), 3);
    let hooks: Vec<&&Got> = accepted.iter().filter(|g| g.path == "hook").collect();
    let alert_id = hooks[0].body["alert"]["id"].as_str().unwrap().to_owned();
    let ids: Vec<&str> = hooks.iter().map(|g| g.headers["x-persys-notification-id"].to_str().unwrap()).collect();
    assert_eq!(ids, [format!("{alert_id}/firing"), format!("{alert_id}/resolved")]);
    // Every attempt of one notification carries the same id.
    let firing_ids: Vec<&str> = got
        .iter()
        .filter(|g| g.path == "hook" && g.body["transition"] == "firing")
        .map(|g| g.headers["x-persys-notification-id"].to_str().unwrap())
        .collect();
    assert_eq!(firing_ids, vec![format!("{alert_id}/firing"); 3]);
    let firing = hooks[0];
    assert_eq!(firing.body["alert"]["state"], "firing");
    assert_eq!(firing.body["alert"]["metric"], "cpu_usage_percent");
    assert_eq!(firing.body["alert"]["comparator"], ">");
    assert_eq!(firing.body["alert"]["node_id"], "node-a");
    assert_eq!(hooks[1].body["alert"]["state"], "resolved");
    for g in &hooks {
        let signature = g.headers["x-persys-signature"].to_str().unwrap();
        assert_eq!(signature, format!("sha256={}", hmac_hex("s3cret", &g.raw)), "signed with the rule's secret");
    }
    let slack: Vec<&&Got> = accepted.iter().filter(|g| g.path == "slack").collect();
    assert_eq!(slack.len(), 1, "Slack did not ask for resolves");
    let text = slack[0].body["text"].as_str().unwrap();
    assert!(text.starts_with("[FIRING] cpu hot: cpu usage percent is 95 (threshold 80) on node-a"), "{text}");
    assert!(slack[0].headers.get("x-persys-signature").is_none());

    // An update that sends the channels back without the secret keeps it.
    let mut again = created.clone();
    again.notification_channels[0].notify_on_resolve = false;
    admin
        .update_alert_rule(UpdateAlertRuleRequest {
            rule: Some(again),
            update_mask: Some(prost_types::FieldMask { paths: vec!["notification_channels".into()] }),
            expected_revision: created.revision,
        })
        .await
        .unwrap();
    let stored = p.running.store.rules().await.unwrap();
    assert_eq!(stored[0].notification_channels[0].secret, "s3cret");
    assert!(!stored[0].notification_channels[0].notify_on_resolve);
    let read = admin.get_alert_rule(GetAlertRuleRequest { id: created.id }).await.unwrap().into_inner();
    assert!(read.rule.unwrap().notification_channels[0].secret.is_empty());
    p.finish().await;
}

#[tokio::test]
async fn a_permanent_refusal_is_given_up_at_once_and_bad_channels_name_their_fields() {
    let Some(p) = Pipeline::start_with(|a| a.notify_backoff = Duration::from_millis(20)).await else { return };
    // A receiver that answers 404 to everything: nothing to retry.
    let app = axum::Router::new().fallback(|| async { StatusCode::NOT_FOUND });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut admin = p.alerts_as("root", Role::Admin);
    let rule =
        hot_rule("gone", vec![channel(NotificationChannelType::Webhook, format!("http://{at}/nowhere"), "", false)]);
    admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap();
    let mut agent = p.ingest_as("node-a");
    let mut stream = AgentStream::open(&mut agent).await.unwrap();
    stream.send(batch("node-a", 1, vec![sample("node-a", now_ms() - 1000, 99.0)])).await.unwrap();
    let pool = p.running.store.postgres().expect("PostgreSQL");
    until(pool, "given up", |rows| rows.len() == 1 && rows[0].4).await;
    let rows = outbox(pool).await;
    assert_eq!(rows[0].2, 1, "one attempt: a 404 is not retried");
    assert!(rows[0].5.contains("404") && rows[0].5.contains(&format!("http://{at}/…")), "{}", rows[0].5);
    assert!(!rows[0].5.contains("nowhere"), "the stored error names the host, not the path");

    let bad = hot_rule(
        "bad",
        vec![
            channel(NotificationChannelType::Webhook, "ftp://x/y".into(), "", false),
            channel(NotificationChannelType::Email, "ops@example.com".into(), "", false),
            NotificationChannel { r#type: 42, ..Default::default() },
        ],
    );
    let status = admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(bad) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let violations = tonic_types::StatusExt::get_details_bad_request(&status).unwrap().field_violations;
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "rule.notification_channels[0].target",
            "rule.notification_channels[1].type",
            "rule.notification_channels[2].type"
        ],
        "{violations:?}"
    );
    p.finish().await;
}

async fn start_binary(certs: &std::path::Path, db: &Db, port: u16) -> persys_e2e::process::Service {
    let mut args: Vec<String> = ["--listen", &format!("127.0.0.1:{port}"), "--database-url", &db.url]
        .into_iter()
        .chain(["--notify-backoff", "50ms", "--notify-timeout", "1s"])
        .map(String::from)
        .collect();
    args.extend(persys_kit::tls::CertsDir::new(certs).tls_flags("metrics"));
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_metrics-pipeline"));
    persys_e2e::process::Service::start("metrics-pipeline", binary, &args, &[], certs, Duration::from_secs(60))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_queued_notification_survives_a_killed_pipeline_and_is_delivered_once() {
    let Some(db) = Db::create().await else { return };
    let receiver = Receiver::default();
    receiver.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let at = receiver.clone().serve().await;
    let certs = certs();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pipeline = start_binary(certs.path(), &db, port).await;
    let gateway = connection(certs.path(), port, "gateway").channel();
    let mut admin = AlertServiceClient::with_interceptor(gateway, AsUser::named("root", Role::Admin));
    let rule =
        hot_rule("cpu hot", vec![channel(NotificationChannelType::Webhook, format!("http://{at}/hook"), "", true)]);
    admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap();
    let mut agent = MetricsIngestServiceClient::new(connection(certs.path(), port, "node-a").channel());
    let mut stream = AgentStream::open(&mut agent).await.unwrap();
    stream.send(batch("node-a", 1, vec![sample("node-a", now_ms() - 1000, 99.0)])).await.unwrap();

    let store = persys_metrics_pipeline::store::Store::connect(&db.url, 2, "metrics").await.unwrap();
    until(store.postgres().expect("PostgreSQL"), "failing while the receiver is down", |rows| {
        rows.len() == 1 && rows[0].2 >= 2
    })
    .await;
    pipeline.kill().await.unwrap();
    drop(stream);
    let before = outbox(store.postgres().expect("PostgreSQL")).await;
    assert!(!before[0].3 && before[0].5.contains("503"), "{before:?}");

    receiver.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let pipeline = start_binary(certs.path(), &db, port).await;
    // A delivery the kill cut short is claimed until its lease (twice the 1 s timeout, plus 5 s)
    // runs out, then made again.
    let within = Duration::from_secs(20);
    until_within(store.postgres().expect("PostgreSQL"), within, "delivered after the restart", |rows| {
        rows.len() == 1 && rows[0].3
    })
    .await;
    let got = receiver.got();
    let accepted: Vec<&Got> = got.iter().filter(|g| g.answered == 200).collect();
    assert_eq!(accepted.len(), 1, "delivered once: {got:?}");
    let attempts = outbox(store.postgres().expect("PostgreSQL")).await[0].2;
    assert!(got.len() as i32 <= attempts, "no request the outbox does not count: {} > {attempts}", got.len());
    assert!(pipeline.stop().await.unwrap());
    store.close().await;
    db.drop_now().await;
}

/// A real Alertmanager on a loopback port of its own, with one receiver that sends nowhere.
struct Alertmanager {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start() -> Option<Self> {
        let binary =
            persys_kit::testing::require_env("PERSYS_TEST_ALERTMANAGER", "Alertmanager (scripts/tools/build)")?;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start alertmanager");
        let mut am = Self { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = get(&am.url, "/-/ready").await
                && text.0 == 200
            {
                return Some(am);
            }
            if let Ok(Some(status)) = am.child.try_wait() {
                let log = std::fs::read_to_string(am._dir.path().join("log")).unwrap_or_default();
                panic!("alertmanager exited ({status}): {log}");
            }
            assert!(tokio::time::Instant::now() < deadline, "alertmanager not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The alerts Alertmanager holds active, by alertname.
    async fn active(&self) -> HashMap<String, serde_json::Value> {
        let (status, body) = get(&self.url, "/api/v2/alerts").await.unwrap();
        assert_eq!(status, 200, "{body}");
        let alerts: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        alerts
            .into_iter()
            .filter(|a| a["status"]["state"] == "active")
            .map(|a| (a["labels"]["alertname"].as_str().unwrap_or_default().to_owned(), a))
            .collect()
    }
}

async fn get(base: &str, path: &str) -> Result<(u16, String), String> {
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let text = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .map_err(|_| "timeout".to_owned())??;
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Alertmanager answers JSON with chunked encoding; take the chunks' data.
    let body =
        if text.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.into() };
    Ok((status, body))
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test]
async fn alerts_fire_and_resolve_in_a_real_alertmanager() {
    let Some(am) = Alertmanager::start().await else { return };
    let Some(p) = Pipeline::start().await else { return };
    let mut admin = p.alerts_as("root", Role::Admin);
    let mut rule =
        hot_rule("NodeCpuHot", vec![channel(NotificationChannelType::Alertmanager, am.url.clone(), "", false)]);
    rule.severity = persys_proto::metrics::v1::AlertSeverity::Critical as i32;
    admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap();
    let mut agent = p.ingest_as("node-a");
    let mut stream = AgentStream::open(&mut agent).await.unwrap();
    let t0 = now_ms() - 10_000;
    stream.send(batch("node-a", 1, vec![sample("node-a", t0, 93.5)])).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let alert = loop {
        if let Some(a) = am.active().await.remove("NodeCpuHot") {
            break a;
        }
        assert!(tokio::time::Instant::now() < deadline, "the alert never became active in Alertmanager");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(alert["labels"]["node"], "node-a");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["metric"], "cpu_usage_percent");
    assert_eq!(alert["annotations"]["summary"], "NodeCpuHot: cpu usage percent is 93.5 (threshold 80)");

    // The refresh re-posts it with its end moved on, so Alertmanager keeps it active for as long
    // as it fires (it ends alerts not re-sent by their endsAt, five minutes after a post).
    let ends = |a: &serde_json::Value| {
        time::OffsetDateTime::parse(a["endsAt"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let first_end = ends(&alert);
    let posted = now_ms();
    let pool = p.running.store.postgres().expect("PostgreSQL");
    until(pool, "a second later", |_| now_ms() - posted >= 1100).await;
    persys_metrics_pipeline::notify::Notifier::new(
        p.running.store.clone(),
        persys_metrics_pipeline::notify::Options::default(),
    )
    .unwrap()
    .refresh()
    .await
    .unwrap();
    let refreshed = am.active().await.remove("NodeCpuHot").expect("still active");
    assert!(ends(&refreshed) > first_end, "endsAt moved on: {} then {}", alert["endsAt"], refreshed["endsAt"]);
    assert_eq!(refreshed["startsAt"], alert["startsAt"], "the same alert, not a new one");

    // Back to normal: the resolve ends it there (it would otherwise stay active five minutes).
    stream.send(batch("node-a", 2, vec![sample("node-a", t0 + 1000, 10.0)])).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while am.active().await.contains_key("NodeCpuHot") {
        assert!(tokio::time::Instant::now() < deadline, "the resolved alert is still active in Alertmanager");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Alertmanager holds the resolve before the pipeline has recorded it as sent (the row is
    // settled after the response): wait for that, then count.
    let pool = p.running.store.postgres().expect("PostgreSQL");
    until(pool, "every transition recorded as sent", |rows| rows.iter().all(|r| r.3)).await;
    let rows = outbox(pool).await;
    let summary: Vec<(&str, bool)> = rows.iter().map(|r| (r.0.as_str(), r.3)).collect();
    assert_eq!(summary, [("firing", true), ("resolved", true)], "each transition posted once: {rows:?}");
    p.finish().await;
}

#[tokio::test]
async fn a_silence_mutes_the_alerts_it_matches_until_it_is_expired() {
    use persys_proto::metrics::v1::{
        AlertState, CreateSilenceRequest, ExpireSilenceRequest, ListAlertsRequest, ListSilencesRequest, Silence,
        SilenceMatcher,
    };
    let receiver = Receiver::default();
    let at = receiver.clone().serve().await;
    let Some(p) = Pipeline::start().await else { return };
    let mut admin = p.alerts_as("root", Role::Admin);
    let rule =
        hot_rule("cpu hot", vec![channel(NotificationChannelType::Webhook, format!("http://{at}/hook"), "", true)]);
    admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap();
    let in_an_hour = prost_types::Timestamp { seconds: now_ms() / 1000 + 3600, nanos: 0 };
    let silence = Silence {
        matchers: vec![SilenceMatcher { name: "node_id".into(), value: "node-a".into(), negate: false }],
        ends_at: Some(in_an_hour),
        comment: "maintenance of node-a".into(),
        ..Default::default()
    };
    let created = admin
        .create_silence(CreateSilenceRequest { silence: Some(silence.clone()) })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    assert_eq!((created.created_by.as_str(), created.starts_at.is_some()), ("root", true));
    let members =
        p.alerts_as("mallory", Role::Member).create_silence(CreateSilenceRequest { silence: Some(silence) }).await;
    assert_eq!(members.unwrap_err().code(), tonic::Code::PermissionDenied, "admins only");

    let t0 = now_ms() - 10_000;
    let (mut a, mut b) = (p.ingest_as("node-a"), p.ingest_as("node-b"));
    let (mut a, mut b) = (AgentStream::open(&mut a).await.unwrap(), AgentStream::open(&mut b).await.unwrap());
    a.send(batch("node-a", 1, vec![sample("node-a", t0, 99.0)])).await.unwrap();
    b.send(batch("node-b", 1, vec![sample("node-b", t0, 99.0)])).await.unwrap();
    let pool = p.running.store.postgres().expect("PostgreSQL");
    until(pool, "node-b notified", |rows| rows.len() == 1 && rows[0].3).await;
    let firing = |node: &str| {
        let node = node.to_owned();
        let mut admin = admin.clone();
        async move {
            let request = ListAlertsRequest { node_id: node, ..Default::default() };
            admin.list_alerts(request).await.unwrap().into_inner().alerts
        }
    };
    let on_a = firing("node-a").await;
    assert_eq!(on_a.len(), 1);
    assert_eq!((on_a[0].state, on_a[0].silenced_by.as_str()), (AlertState::Firing as i32, created.id.as_str()));
    assert!(firing("node-b").await[0].silenced_by.is_empty());
    let queued: Vec<String> = sqlx::query_scalar("SELECT alert_id FROM notifications").fetch_all(pool).await.unwrap();
    assert!(!queued.contains(&on_a[0].id), "the silenced alert queued nothing: {queued:?}");

    // Expired: it is listed as ended, and cannot be expired twice.
    let expired = admin.expire_silence(ExpireSilenceRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert!(expired.silence.unwrap().expired_at.is_some());
    let listed = |include_ended| {
        let mut admin = admin.clone();
        async move { admin.list_silences(ListSilencesRequest { include_ended }).await.unwrap().into_inner().silences }
    };
    assert!(listed(false).await.is_empty());
    assert_eq!(listed(true).await.len(), 1);
    let twice = admin.expire_silence(ExpireSilenceRequest { id: created.id.clone() }).await.unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition);

    // Its alert resolving tells nobody (nobody was told it fired); the next breach notifies.
    a.send(batch("node-a", 2, vec![sample("node-a", t0 + 1000, 10.0)])).await.unwrap();
    a.send(batch("node-a", 3, vec![sample("node-a", t0 + 2000, 99.0)])).await.unwrap();
    until(pool, "node-a's new alert notified", |rows| rows.len() == 2 && rows.iter().all(|r| r.3)).await;
    let alerts: Vec<String> =
        sqlx::query_scalar("SELECT alert_id FROM notifications ORDER BY id").fetch_all(pool).await.unwrap();
    assert!(!alerts.contains(&on_a[0].id), "no resolve for the silenced alert: {alerts:?}");
    assert_eq!(receiver.got().len(), 2);

    let bad = admin.create_silence(CreateSilenceRequest { silence: Some(Silence::default()) }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    p.finish().await;
}

#[tokio::test]
async fn a_firing_alert_is_notified_again_each_repeat_interval_until_acknowledged() {
    use persys_metrics_pipeline::notify::{Notifier, Options};
    use persys_proto::metrics::v1::{
        AcknowledgeAlertRequest, CreateSilenceRequest, ExpireSilenceRequest, ListAlertsRequest, Silence, SilenceMatcher,
    };
    let receiver = Receiver::default();
    let at = receiver.clone().serve().await;
    let Some(p) = Pipeline::start().await else { return };
    let mut admin = p.alerts_as("root", Role::Admin);
    let mut rule =
        hot_rule("cpu hot", vec![channel(NotificationChannelType::Webhook, format!("http://{at}/hook"), "", false)]);
    rule.repeat_interval = Some(prost_types::Duration { seconds: 1, nanos: 0 });
    admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap();
    let mut agent = p.ingest_as("node-a");
    let mut stream = AgentStream::open(&mut agent).await.unwrap();
    // Fired 1.5 s ago (the sample's time): one repeat interval has gone round.
    stream.send(batch("node-a", 1, vec![sample("node-a", now_ms() - 1500, 99.0)])).await.unwrap();
    let pool = p.running.store.postgres().expect("PostgreSQL");
    until(pool, "the firing delivered", |rows| rows.len() == 1 && rows[0].3).await;
    // The refresh (the pipeline's runs every minute), called here; twice queues the round once.
    let refresher = Notifier::new(p.running.store.clone(), Options::default()).unwrap();
    refresher.refresh().await.unwrap();
    refresher.refresh().await.unwrap();
    until(pool, "the repeat delivered", |rows| rows.len() == 2 && rows.iter().all(|r| r.3)).await;
    assert_eq!(outbox(pool).await[1].0, "repeat-1");
    let got = receiver.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].headers["x-persys-notification-id"].to_str().unwrap().rsplit('/').next(), Some("repeat-1"));
    let alert = admin.list_alerts(ListAlertsRequest::default()).await.unwrap().into_inner().alerts.remove(0);
    let fired_ms = alert.fired_at.as_ref().map_or(0, |t| t.seconds * 1000);

    // Silenced, it is not repeated while the silence holds.
    let silence = Silence {
        matchers: vec![SilenceMatcher { name: "rule_name".into(), value: "cpu hot".into(), negate: false }],
        ends_at: Some(prost_types::Timestamp { seconds: now_ms() / 1000 + 3600, nanos: 0 }),
        comment: "known: batch job".into(),
        ..Default::default()
    };
    let silence = admin
        .create_silence(CreateSilenceRequest { silence: Some(silence) })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    // Until a second round would be due (the condition is the clock itself).
    until(pool, "two intervals since it fired", |_| now_ms() - fired_ms >= 2500).await;
    refresher.refresh().await.unwrap();
    assert_eq!(outbox(pool).await.len(), 2, "no round for a silenced alert");
    admin.expire_silence(ExpireSilenceRequest { id: silence.id }).await.unwrap();

    // Acknowledged, it is not repeated again, however much time has passed.
    admin.acknowledge_alert(AcknowledgeAlertRequest { id: alert.id, comment: String::new() }).await.unwrap();
    until(pool, "three intervals since it fired", |_| now_ms() - fired_ms >= 3500).await;
    refresher.refresh().await.unwrap();
    assert_eq!(outbox(pool).await.len(), 2, "no round for an acknowledged alert");
    p.finish().await;
}
