//! `persys alerts` and `persys rules`: alert rules from YAML files, the alerts they raise,
//! acknowledging them, and a live feed (admins; through the gateway to the metrics pipeline).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use persys_proto::metrics::v1::{
    AcknowledgeAlertRequest, Alert, AlertRule, AlertSeverity, AlertState, Comparator, CreateAlertRuleRequest,
    CreateSilenceRequest, DeleteAlertRuleRequest, ExpireSilenceRequest, ListAlertRulesRequest, ListAlertsRequest,
    ListSilencesRequest, NotificationChannel, NotificationChannelType, Silence, SilenceMatcher, WatchAlertsRequest,
};
use serde::{Deserialize, Serialize};

use crate::{
    client::{Global, Session},
    metrics::MetricArg,
    output::{Format, Table, age, emit, emit_line, enum_name, now_secs, rfc3339},
};

/// `persys alerts ...`
#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// List open alerts (pending, firing, acknowledged), newest change first (admin).
    #[command(visible_alias = "ls")]
    List {
        /// Also resolved ones: the history.
        #[arg(long)]
        all: bool,
        /// Only this node's.
        #[arg(long)]
        node: Option<String>,
    },
    /// Acknowledge a firing alert: it stays open until it resolves (admin).
    Ack {
        /// Alert id.
        id: String,
        /// Why, or who is on it.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Print the open alerts, then every change as it happens, until Ctrl-C (admin).
    Watch {
        /// Only this node's.
        #[arg(long)]
        node: Option<String>,
    },
    /// Mute the notifications of matching alerts for a while; they still open, fire and
    /// resolve (admin). Example:
    ///
    ///   persys alerts silence -m node_id=web-1 -m mount=/data --for 2h --comment "disk swap"
    #[command(verbatim_doc_comment)]
    Silence {
        /// `NAME=VALUE` or `NAME!=VALUE`, all of which must hold; NAME is rule_id, rule_name,
        /// node_id, severity, metric, or a series label such as mount.
        #[arg(short = 'm', long = "match", required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// List the silences in force (admin).
    Silences {
        /// Also those that ended.
        #[arg(long)]
        all: bool,
    },
    /// End a silence now (admin).
    Unsilence {
        /// Silence id.
        id: String,
    },
}

/// Reads `NAME=VALUE` / `NAME!=VALUE`.
pub fn parse_matcher(text: &str) -> anyhow::Result<SilenceMatcher> {
    let (name, value, negate) = match (text.split_once("!="), text.split_once('=')) {
        (Some((n, v)), _) => (n, v, true),
        (None, Some((n, v))) => (n, v, false),
        _ => bail!("matcher `{text}`: write NAME=VALUE or NAME!=VALUE, e.g. node_id=web-1"),
    };
    let name = name.trim();
    if name.is_empty() {
        bail!("matcher `{text}`: the name before = is empty");
    }
    Ok(SilenceMatcher { name: name.into(), value: value.trim().into(), negate })
}

/// A silence for `-o json|yaml`.
#[derive(Serialize)]
struct SilenceView {
    id: String,
    matchers: Vec<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    expired_at: Option<String>,
    comment: String,
    created_by: String,
}

impl From<&Silence> for SilenceView {
    fn from(s: &Silence) -> Self {
        Self {
            id: s.id.clone(),
            matchers: s
                .matchers
                .iter()
                .map(|m| format!("{}{}{}", m.name, if m.negate { "!=" } else { "=" }, m.value))
                .collect(),
            starts_at: rfc3339(s.starts_at.as_ref()),
            ends_at: rfc3339(s.ends_at.as_ref()),
            expired_at: rfc3339(s.expired_at.as_ref()),
            comment: s.comment.clone(),
            created_by: s.created_by.clone(),
        }
    }
}

/// `persys rules ...`
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Create an alert rule from a YAML file (admin). Example file:
    ///
    ///   name: disk almost full
    ///   metric: disk          # cpu, memory, disk, rx, load1, container-memory-limit, ...
    ///                         # (persys metrics range --help)
    ///   labels: {mount: /}
    ///   comparator: ">="      # > >= < <= == !=
    ///   threshold: 90
    ///   for: 5m               # how long it must hold before firing (default 0s)
    ///   resolve_threshold: 85 # optional: resolves only below this
    ///   severity: critical    # info, warning (default), critical
    ///   nodes: [node-1]       # optional: only these nodes
    ///   notify:               # optional: where each transition is delivered
    ///     - webhook: https://ops.example.com/hooks/persys
    ///       secret_env: HOOK_SECRET  # signs the body (X-Persys-Signature), read from this variable
    ///       on_resolve: true
    ///     - slack: https://hooks.slack.com/services/...
    ///     - alertmanager: http://alertmanager:9093   # firing and resolve, always
    ///   repeat: 1h            # optional: notify again while firing and unacknowledged
    #[command(verbatim_doc_comment)]
    Create {
        /// The rule file (`-` for stdin).
        #[arg(short, long)]
        file: String,
    },
    /// List alert rules (admin).
    #[command(visible_alias = "ls")]
    List,
    /// Delete an alert rule; its open alerts resolve (admin).
    #[command(visible_alias = "rm")]
    Delete {
        /// Rule id.
        id: String,
    },
}

/// An alert rule as written in a file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    name: String,
    #[serde(default)]
    description: String,
    metric: String,
    comparator: String,
    threshold: f64,
    #[serde(default, rename = "for")]
    for_duration: Option<String>,
    #[serde(default)]
    resolve_threshold: Option<f64>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default = "enabled")]
    enabled: bool,
    #[serde(default)]
    notify: Vec<ChannelFile>,
    #[serde(default)]
    repeat: Option<String>,
}

/// One `notify:` entry: exactly one of `webhook`, `slack`, `alertmanager`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    slack: Option<String>,
    #[serde(default)]
    alertmanager: Option<String>,
    /// The name of an environment variable holding the webhook's signing secret (a secret is
    /// not written into rule files).
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    on_resolve: bool,
}

fn enabled() -> bool {
    true
}

fn channel_of(i: usize, c: ChannelFile, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<NotificationChannel> {
    let (kind, target) = match (c.webhook, c.slack, c.alertmanager) {
        (Some(t), None, None) => (NotificationChannelType::Webhook, t),
        (None, Some(t), None) => (NotificationChannelType::Slack, t),
        (None, None, Some(t)) => (NotificationChannelType::Alertmanager, t),
        _ => bail!("notify[{i}]: give exactly one of webhook, slack or alertmanager, with its URL"),
    };
    let secret = match c.secret_env {
        Some(_) if kind != NotificationChannelType::Webhook => bail!("notify[{i}]: secret_env signs webhooks only"),
        Some(var) => env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
            anyhow::anyhow!("notify[{i}].secret_env: the environment variable {var} is not set or empty")
        })?,
        None => String::new(),
    };
    Ok(NotificationChannel { r#type: kind as i32, target, secret, notify_on_resolve: c.on_resolve })
}

/// Reads a rule file into the API's rule; says what to fix otherwise.
pub fn parse_rule(text: &str) -> anyhow::Result<AlertRule> {
    parse_rule_with(text, &|var| std::env::var(var).ok())
}

/// [`parse_rule`] with the environment given.
pub fn parse_rule_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<AlertRule> {
    let f: RuleFile = persys_kit::yaml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let metric = MetricArg::from_str(&f.metric, true).map_err(|_| {
        let names: Vec<String> = MetricArg::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect();
        anyhow::anyhow!("metric `{}`: use one of {}", f.metric, names.join(", "))
    })?;
    let comparator = match f.comparator.trim() {
        ">" => Comparator::GreaterThan,
        ">=" => Comparator::GreaterThanOrEqual,
        "<" => Comparator::LessThan,
        "<=" => Comparator::LessThanOrEqual,
        "==" => Comparator::Equal,
        "!=" => Comparator::NotEqual,
        other => bail!("comparator `{other}`: use one of > >= < <= == != (quoted in YAML, e.g. comparator: \">=\")"),
    };
    if !f.threshold.is_finite() {
        bail!("threshold: must be a finite number");
    }
    let for_duration = match &f.for_duration {
        Some(d) => Some(
            persys_kit::config::parse_duration(d)
                .map_err(|e| anyhow::anyhow!("for: {e}"))?
                .try_into()
                .context("for: too long")?,
        ),
        None => None,
    };
    let severity = match f.severity.as_deref().map(str::trim) {
        None | Some("warning") => AlertSeverity::Warning,
        Some("info") => AlertSeverity::Info,
        Some("critical") => AlertSeverity::Critical,
        Some(other) => bail!("severity `{other}`: use info, warning or critical"),
    };
    let repeat_interval = match &f.repeat {
        Some(d) => Some(
            persys_kit::config::parse_duration(d)
                .map_err(|e| anyhow::anyhow!("repeat: {e}"))?
                .try_into()
                .context("repeat: too long")?,
        ),
        None => None,
    };
    let notification_channels =
        f.notify.into_iter().enumerate().map(|(i, c)| channel_of(i, c, env)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AlertRule {
        name: f.name,
        description: f.description,
        notification_channels,
        repeat_interval,
        node_ids: f.nodes,
        metric: metric.metric() as i32,
        match_labels: f.labels.into_iter().collect(),
        comparator: comparator as i32,
        threshold: f.threshold,
        for_duration,
        resolve_threshold: f.resolve_threshold,
        severity: severity as i32,
        enabled: f.enabled,
        ..Default::default()
    })
}

/// An alert for `-o json|yaml`.
#[derive(Serialize)]
struct AlertView {
    id: String,
    rule_id: String,
    rule_name: String,
    node_id: String,
    labels: BTreeMap<String, String>,
    state: String,
    severity: String,
    value: f64,
    threshold: f64,
    message: String,
    pending_since: Option<String>,
    fired_at: Option<String>,
    acknowledged_by: String,
    resolved_at: Option<String>,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        Self {
            id: a.id.clone(),
            rule_id: a.rule_id.clone(),
            rule_name: a.rule_name.clone(),
            node_id: a.node_id.clone(),
            labels: a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            state: state(a.state),
            severity: severity(a.severity),
            value: a.value,
            threshold: a.threshold,
            message: a.message.clone(),
            pending_since: rfc3339(a.pending_since.as_ref()),
            fired_at: rfc3339(a.fired_at.as_ref()),
            acknowledged_by: a.acknowledged_by.clone(),
            resolved_at: rfc3339(a.resolved_at.as_ref()),
        }
    }
}

/// A rule for `-o json|yaml`.
#[derive(Serialize)]
struct RuleView {
    id: String,
    name: String,
    metric: String,
    comparator: String,
    threshold: f64,
    for_seconds: i64,
    severity: String,
    nodes: Vec<String>,
    labels: BTreeMap<String, String>,
    enabled: bool,
    owner_id: String,
    /// `webhook https://host/…` and the like: the kind and where to (hosts only: a Slack
    /// webhook's path is its credential).
    notify: Vec<String>,
}

impl From<&AlertRule> for RuleView {
    fn from(r: &AlertRule) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            metric: persys_proto::metrics::v1::Metric::try_from(r.metric)
                .map_or_else(|_| r.metric.to_string(), |m| enum_name(m.as_str_name(), "METRIC_")),
            comparator: Comparator::try_from(r.comparator)
                .map_or_else(|_| r.comparator.to_string(), |c| enum_name(c.as_str_name(), "COMPARATOR_")),
            threshold: r.threshold,
            for_seconds: r.for_duration.as_ref().map_or(0, |d| d.seconds),
            severity: severity(r.severity),
            nodes: r.node_ids.clone(),
            labels: r.match_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            enabled: r.enabled,
            owner_id: r.owner_id.clone(),
            notify: r
                .notification_channels
                .iter()
                .map(|c| {
                    let kind = NotificationChannelType::try_from(c.r#type).map_or_else(
                        |_| c.r#type.to_string(),
                        |t| enum_name(t.as_str_name(), "NOTIFICATION_CHANNEL_TYPE_"),
                    );
                    let authority = c.target.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or(""));
                    let host = authority.map(|a| a.rsplit('@').next().unwrap_or(a)).filter(|h| !h.is_empty());
                    format!("{kind} {}", host.unwrap_or("?"))
                })
                .collect(),
        }
    }
}

fn state(s: i32) -> String {
    AlertState::try_from(s).map_or_else(|_| format!("Unknown({s})"), |v| enum_name(v.as_str_name(), "ALERT_STATE_"))
}

fn severity(s: i32) -> String {
    AlertSeverity::try_from(s)
        .map_or_else(|_| format!("Unknown({s})"), |v| enum_name(v.as_str_name(), "ALERT_SEVERITY_"))
}

fn alert_row(a: &Alert, now: i64) -> Vec<String> {
    let since = a.fired_at.as_ref().or(a.pending_since.as_ref());
    vec![
        a.id.clone(),
        state(a.state),
        severity(a.severity),
        a.rule_name.clone(),
        a.node_id.clone(),
        format!("{:.2}", a.value),
        age(since, now),
    ]
}

const ALERT_HEADERS: [&str; 7] = ["ID", "STATE", "SEVERITY", "RULE", "NODE", "VALUE", "SINCE"];

/// Runs an `alerts` subcommand.
pub async fn run_alerts(global: &Global, command: AlertsCommand) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    match command {
        AlertsCommand::List { all, node } => {
            let states = if all {
                vec![]
            } else {
                vec![AlertState::Pending as i32, AlertState::Firing as i32, AlertState::Acknowledged as i32]
            };
            let req = &ListAlertsRequest { states, node_id: node.unwrap_or_default(), ..Default::default() };
            let alerts = s.call(|c| async move { c.metrics_alerts().list_alerts(req.clone()).await }).await?.alerts;
            let view: Vec<AlertView> = alerts.iter().map(AlertView::from).collect();
            emit(global.output, &view, || {
                let now = now_secs();
                let mut t = Table::new(&ALERT_HEADERS);
                for a in &alerts {
                    t.row(alert_row(a, now));
                }
                t.to_string()
            })
        }
        AlertsCommand::Ack { id, comment } => {
            let req = &AcknowledgeAlertRequest { id, comment };
            let alert = s.call(|c| async move { c.metrics_alerts().acknowledge_alert(req.clone()).await }).await?.alert;
            let alert = alert.unwrap_or_default();
            emit(global.output, &AlertView::from(&alert), || format!("alert {} acknowledged\n", alert.id))
        }
        AlertsCommand::Watch { node } => {
            let req = &WatchAlertsRequest { node_id: node.unwrap_or_default(), ..Default::default() };
            let mut stream = s.call(|c| async move { c.metrics_alerts().watch_alerts(req.clone()).await }).await?;
            if global.output == Format::Table {
                println!("{}", ALERT_HEADERS.join("\t"));
            }
            while let Some(event) = stream.message().await? {
                let Some(alert) = event.alert else { continue };
                match global.output {
                    Format::Table => println!("{}", alert_row(&alert, now_secs()).join("\t")),
                    format => emit_line(format, &AlertView::from(&alert))?,
                }
            }
            Ok(())
        }
        AlertsCommand::Silence { matchers, duration, comment } => {
            let matchers = matchers.iter().map(|m| parse_matcher(m)).collect::<anyhow::Result<Vec<_>>>()?;
            let length = persys_kit::config::parse_duration(&duration).map_err(|e| anyhow::anyhow!("--for: {e}"))?;
            let ends = now_secs() + i64::try_from(length.as_secs()).context("--for: too long")?;
            let silence = Silence {
                matchers,
                ends_at: Some(prost_types::Timestamp { seconds: ends, nanos: 0 }),
                comment,
                ..Default::default()
            };
            let req = &CreateSilenceRequest { silence: Some(silence) };
            let created = s.call(|c| async move { c.metrics_alerts().create_silence(req.clone()).await }).await?;
            let silence = created.silence.unwrap_or_default();
            let view = SilenceView::from(&silence);
            emit(global.output, &view, || {
                format!("silence {} until {}\n", silence.id, view.ends_at.clone().unwrap_or_default())
            })
        }
        AlertsCommand::Silences { all } => {
            let req = &ListSilencesRequest { include_ended: all };
            let silences = s.call(|c| async move { c.metrics_alerts().list_silences(*req).await }).await?.silences;
            let view: Vec<SilenceView> = silences.iter().map(SilenceView::from).collect();
            emit(global.output, &view, || {
                let mut t = Table::new(&["ID", "MATCHERS", "ENDS", "BY", "COMMENT"]);
                for v in &view {
                    let ends = v.expired_at.clone().map(|e| format!("{e} (expired)")).or(v.ends_at.clone());
                    t.row(vec![
                        v.id.clone(),
                        v.matchers.join(","),
                        ends.unwrap_or_default(),
                        v.created_by.clone(),
                        v.comment.clone(),
                    ]);
                }
                t.to_string()
            })
        }
        AlertsCommand::Unsilence { id } => {
            let req = &ExpireSilenceRequest { id };
            let ended = s.call(|c| async move { c.metrics_alerts().expire_silence(req.clone()).await }).await?;
            let silence = ended.silence.unwrap_or_default();
            emit(global.output, &SilenceView::from(&silence), || format!("silence {} ended\n", silence.id))
        }
    }
}

/// Runs a `rules` subcommand.
pub async fn run_rules(global: &Global, command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Create { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the rule from stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let rule = parse_rule(&text).with_context(|| format!("{file}: not a valid alert rule"))?;
            let session = Session::open(global)?;
            let req = &CreateAlertRuleRequest { rule: Some(rule) };
            let created =
                session.call(|c| async move { c.metrics_alerts().create_alert_rule(req.clone()).await }).await?;
            let rule = created.rule.unwrap_or_default();
            emit(global.output, &RuleView::from(&rule), || format!("alert rule {} created: {}\n", rule.id, rule.name))
        }
        RulesCommand::List => {
            let session = Session::open(global)?;
            let req = &ListAlertRulesRequest::default();
            let rules =
                session.call(|c| async move { c.metrics_alerts().list_alert_rules(req.clone()).await }).await?.rules;
            let view: Vec<RuleView> = rules.iter().map(RuleView::from).collect();
            emit(global.output, &view, || {
                let mut t = Table::new(&["ID", "NAME", "CONDITION", "FOR", "SEVERITY", "NODES"]);
                for r in &view {
                    t.row(vec![
                        r.id.clone(),
                        r.name.clone(),
                        format!("{} {} {}", r.metric, r.comparator, r.threshold),
                        format!("{}s", r.for_seconds),
                        r.severity.clone(),
                        if r.nodes.is_empty() { "all".into() } else { r.nodes.join(",") },
                    ]);
                }
                t.to_string()
            })
        }
        RulesCommand::Delete { id } => {
            let session = Session::open(global)?;
            let req = &DeleteAlertRuleRequest { id };
            session.call(|c| async move { c.metrics_alerts().delete_alert_rule(req.clone()).await }).await?;
            eprintln!("alert rule {} deleted", req.id);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_file_becomes_a_rule_and_mistakes_say_what_to_fix() {
        let rule = parse_rule(
            "name: disk\nmetric: disk\nlabels: {mount: /}\ncomparator: \">=\"\nthreshold: 90\nfor: 5m\nseverity: critical\nnodes: [n1]\n",
        )
        .unwrap();
        assert_eq!(rule.comparator, Comparator::GreaterThanOrEqual as i32);
        assert_eq!(rule.for_duration.unwrap().seconds, 300);
        assert_eq!(rule.match_labels.get("mount").map(String::as_str), Some("/"));
        assert_eq!((rule.severity, rule.enabled), (AlertSeverity::Critical as i32, true));
        let err = |text: &str| format!("{:#}", parse_rule(text).unwrap_err());
        assert!(err("name: x\nmetric: cpu\ncomparator: \"=>\"\nthreshold: 1\n").contains("use one of > >= < <= == !="));
        assert!(err("name: x\nmetric: cpux\ncomparator: \">\"\nthreshold: 1\n").contains("container-memory"));
        assert!(err("name: x\nmetric: cpu\ncomparator: \">\"\nthreshold: 1\nfor: soon\n").contains("for:"));
        assert!(err("name: x\nmetric: cpu\ncomparator: \">\"\nthreshold: 1\ncolor: red\n").contains("color"));
        assert!(err("name: x\nmetric: cpu\ncomparator: \">\"\nthreshold: .nan\n").contains("threshold"));
        assert!(err("- not a map").len() > 5);

        let env = |var: &str| (var == "HOOK").then(|| "s3cret".to_owned());
        let with_env = |text: &str| parse_rule_with(text, &env);
        let base = "name: x\nmetric: cpu\ncomparator: \">\"\nthreshold: 1\n";
        let rule = with_env(&format!(
            "{base}repeat: 30m\nnotify:\n  - webhook: https://h/x\n    secret_env: HOOK\n    on_resolve: true\n  - alertmanager: http://am:9093\n"
        ))
        .unwrap();
        assert_eq!(rule.repeat_interval.unwrap().seconds, 1800);
        let c = &rule.notification_channels;
        assert_eq!(
            (c[0].r#type, c[0].target.as_str(), c[0].secret.as_str(), c[0].notify_on_resolve),
            (NotificationChannelType::Webhook as i32, "https://h/x", "s3cret", true)
        );
        assert_eq!(c[1].r#type, NotificationChannelType::Alertmanager as i32);
        let err_env = |text: &str| format!("{:#}", with_env(text).unwrap_err());
        assert!(err_env(&format!("{base}notify:\n  - webhook: a\n    slack: b\n")).contains("exactly one of"));
        assert!(err_env(&format!("{base}notify:\n  - webhook: a\n    secret_env: NOPE\n")).contains("NOPE is not set"));
        assert!(err_env(&format!("{base}notify:\n  - slack: a\n    secret_env: HOOK\n")).contains("webhooks only"));
        assert!(
            err("name: x\nmetric: cpu\ncomparator: \">\"\nthreshold: 1\nfor: 99999999999999999d\n")
                .contains("too long")
        );
    }

    #[test]
    fn matchers_are_name_equals_value_or_not() {
        let m = parse_matcher("node_id=web-1").unwrap();
        assert_eq!((m.name.as_str(), m.value.as_str(), m.negate), ("node_id", "web-1", false));
        let m = parse_matcher("severity!=info").unwrap();
        assert_eq!((m.name.as_str(), m.value.as_str(), m.negate), ("severity", "info", true));
        let m = parse_matcher("mount_point=/").unwrap();
        assert_eq!(m.value, "/");
        assert!(format!("{:#}", parse_matcher("web-1").unwrap_err()).contains("NAME=VALUE"));
        assert!(format!("{:#}", parse_matcher("=x").unwrap_err()).contains("empty"));
    }

    proptest::proptest! {
        /// Whatever the file holds, reading it answers a rule or an error; it never panics.
        #[test]
        fn rule_files_never_panic(text in "(name|metric|comparator|threshold|for|labels|nodes|severity|[:{}\\[\\]\"'\n -]|[a-z0-9.<>=!]){0,120}") {
            let _ = parse_rule(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_rule(&String::from_utf8_lossy(&bytes));
        }
    }
}
