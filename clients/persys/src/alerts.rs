//! `persys alerts` and `persys rules`: alert rules from YAML files, the alerts they raise,
//! acknowledging them, and a live feed (admins; through the gateway to the metrics pipeline).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use persys_proto::metrics::v1::{
    AcknowledgeAlertRequest, Alert, AlertRule, AlertSeverity, AlertState, Comparator, CreateAlertRuleRequest,
    DeleteAlertRuleRequest, ListAlertRulesRequest, ListAlertsRequest, WatchAlertsRequest,
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
}

/// `persys rules ...`
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Create an alert rule from a YAML file (admin). Example file:
    ///
    ///   name: disk almost full
    ///   metric: disk          # cpu, memory, disk, rx, load1, ... (persys metrics range --help)
    ///   labels: {mount: /}
    ///   comparator: ">="      # > >= < <= == !=
    ///   threshold: 90
    ///   for: 5m               # how long it must hold before firing (default 0s)
    ///   resolve_threshold: 85 # optional: resolves only below this
    ///   severity: critical    # info, warning (default), critical
    ///   nodes: [node-1]       # optional: only these nodes
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
}

fn enabled() -> bool {
    true
}

/// Reads a rule file into the API's rule; says what to fix otherwise.
pub fn parse_rule(text: &str) -> anyhow::Result<AlertRule> {
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
    Ok(AlertRule {
        name: f.name,
        description: f.description,
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
        assert!(
            err("name: x\nmetric: cpu\ncomparator: \">\"\nthreshold: 1\nfor: 99999999999999999d\n")
                .contains("too long")
        );
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
