//! `persys dora`: the four DORA keys, the deployments behind them, recording a deployment from
//! a CI job, and retrying a DevLake push (through the gateway to the metrics pipeline).

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use persys_proto::{
    common::v1::{PageRequest, TimeRange},
    metrics::v1::{
        Deployment, DeploymentEnvironment, DeploymentStatus, DevlakePushState, DoraPerformanceLevel,
        GetDeploymentRequest, GetDoraMetricsRequest, GetDoraMetricsResponse, ListDeploymentsRequest,
        RecordDeploymentRequest, RetryDevlakePushRequest,
    },
};
use serde::Serialize;

use crate::{
    client::{Global, Session},
    output::{Table, describe, duration, emit, enum_name, now_secs, rfc3339},
};

/// An environment on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EnvArg {
    /// Production.
    Production,
    /// Staging.
    Staging,
    /// Testing.
    Testing,
    /// Development.
    Development,
}

impl From<EnvArg> for DeploymentEnvironment {
    fn from(e: EnvArg) -> Self {
        match e {
            EnvArg::Production => Self::Production,
            EnvArg::Staging => Self::Staging,
            EnvArg::Testing => Self::Testing,
            EnvArg::Development => Self::Development,
        }
    }
}

/// A deployment result on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StatusArg {
    /// Synced and healthy.
    Success,
    /// Failed (degraded, or out of sync and missing).
    Failed,
}

impl From<StatusArg> for DeploymentStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Success => Self::Success,
            StatusArg::Failed => Self::Failed,
        }
    }
}

/// `persys dora ...`
#[derive(Subcommand, Debug)]
pub enum DoraCommand {
    /// The four keys over a window: deployment frequency, lead time for changes, change
    /// failure rate, time to restore, each with its DORA band.
    Metrics {
        /// How far back, e.g. 30d, 90d (at most 366d).
        #[arg(long, default_value = "90d")]
        window: String,
        /// Only this component.
        #[arg(long)]
        component: Option<String>,
        /// Environment.
        #[arg(long = "env", value_enum, default_value = "production")]
        environment: EnvArg,
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Deployments, newest first.
    #[command(visible_alias = "ls")]
    Deployments {
        /// Only this component.
        #[arg(long)]
        component: Option<String>,
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only this environment.
        #[arg(long = "env", value_enum)]
        environment: Option<EnvArg>,
        /// Only successes or failures.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Most deployments to show.
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// One deployment: its images, commits, lead time and DevLake delivery.
    Show {
        /// Deployment id, e.g. `ui:east:production:3f9a1c2...`.
        id: String,
    },
    /// Record a deployment, e.g. from a CI job that deploys without ArgoCD (admin). Example:
    ///
    ///   persys dora record --app shop --cluster prod-eu --revision "$GIT_SHA" \
    ///     --image "registry.example.com/shop:$GIT_SHA" --repo https://github.com/acme/shop
    #[command(verbatim_doc_comment)]
    Record {
        /// Application name.
        #[arg(long = "app")]
        application: String,
        /// Cluster it went to.
        #[arg(long)]
        cluster: String,
        /// Component; default: the application name without a `-<cluster>` suffix.
        #[arg(long)]
        component: Option<String>,
        /// The revision deployed (a commit SHA).
        #[arg(long)]
        revision: String,
        /// Repository the revision is a commit of.
        #[arg(long = "repo")]
        repo_url: Option<String>,
        /// Image deployed (repeatable); a tag that is a commit SHA links the image's commits.
        #[arg(long = "image")]
        images: Vec<String>,
        /// Environment.
        #[arg(long = "env", value_enum, default_value = "production")]
        environment: EnvArg,
        /// Whether it worked.
        #[arg(long, value_enum, default_value = "success")]
        status: StatusArg,
        /// When it finished (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Send a deployment whose DevLake push failed again (admin).
    Retry {
        /// Deployment id.
        id: String,
    },
}

fn level(l: i32) -> String {
    match DoraPerformanceLevel::try_from(l) {
        Ok(DoraPerformanceLevel::Unspecified) | Err(_) => "not enough data".into(),
        Ok(l) => enum_name(l.as_str_name(), "DORA_PERFORMANCE_LEVEL_"),
    }
}

fn env_name(e: i32) -> String {
    DeploymentEnvironment::try_from(e).map_or("-".into(), |e| enum_name(e.as_str_name(), "DEPLOYMENT_ENVIRONMENT_"))
}

fn status_name(s: i32) -> String {
    DeploymentStatus::try_from(s).map_or("-".into(), |s| enum_name(s.as_str_name(), "DEPLOYMENT_STATUS_"))
}

fn push_name(d: &Deployment) -> String {
    d.devlake
        .as_ref()
        .and_then(|p| DevlakePushState::try_from(p.state).ok())
        .map_or("-".into(), |s| enum_name(s.as_str_name(), "DEVLAKE_PUSH_STATE_"))
}

fn secs(d: Option<&prost_types::Duration>) -> Option<i64> {
    d.map(|d| d.seconds)
}

/// Frequency the way people say it: per day, or per week below one a day.
pub fn frequency(per_day: f64) -> String {
    if per_day >= 1.0 {
        format!("{per_day:.1}/day")
    } else if per_day * 7.0 >= 0.1 {
        format!("{:.1}/week", per_day * 7.0)
    } else {
        format!("{:.1}/month", per_day * 30.0)
    }
}

/// The four keys for `-o json|yaml`.
#[derive(Serialize)]
struct MetricsView {
    start: Option<String>,
    end: Option<String>,
    deployments_total: i64,
    deployments_failed: i64,
    deployment_frequency_per_day: f64,
    lead_time_median_seconds: Option<i64>,
    lead_time_p90_seconds: Option<i64>,
    change_failure_rate: f64,
    time_to_restore_median_seconds: Option<i64>,
    unrestored_failures: i64,
    levels: Levels,
    benchmark: String,
    weeks: Vec<WeekView>,
}

#[derive(Serialize)]
struct Levels {
    deployment_frequency: String,
    lead_time: String,
    change_failure_rate: String,
    time_to_restore: String,
}

#[derive(Serialize)]
struct WeekView {
    week_start: Option<String>,
    deployments: i64,
    failed: i64,
    lead_time_median_seconds: Option<i64>,
}

impl From<&GetDoraMetricsResponse> for MetricsView {
    fn from(m: &GetDoraMetricsResponse) -> Self {
        let range = m.range.unwrap_or_default();
        Self {
            start: rfc3339(range.start.as_ref()),
            end: rfc3339(range.end.as_ref()),
            deployments_total: m.deployments_total,
            deployments_failed: m.deployments_failed,
            deployment_frequency_per_day: m.deployment_frequency_per_day,
            lead_time_median_seconds: secs(m.lead_time_median.as_ref()),
            lead_time_p90_seconds: secs(m.lead_time_p90.as_ref()),
            change_failure_rate: m.change_failure_rate,
            time_to_restore_median_seconds: secs(m.time_to_restore_median.as_ref()),
            unrestored_failures: m.unrestored_failures,
            levels: Levels {
                deployment_frequency: level(m.deployment_frequency_level),
                lead_time: level(m.lead_time_level),
                change_failure_rate: level(m.change_failure_rate_level),
                time_to_restore: level(m.time_to_restore_level),
            },
            benchmark: m.benchmark.clone(),
            weeks: m
                .weeks
                .iter()
                .map(|w| WeekView {
                    week_start: rfc3339(w.week_start.as_ref()),
                    deployments: w.deployments_total,
                    failed: w.deployments_failed,
                    lead_time_median_seconds: secs(w.lead_time_median.as_ref()),
                })
                .collect(),
        }
    }
}

fn metrics_text(m: &GetDoraMetricsResponse) -> String {
    let v = MetricsView::from(m);
    let opt = |s: Option<i64>| s.map_or("-".into(), duration);
    let mut t = Table::new(&["KEY", "VALUE", "LEVEL"]);
    t.row(vec![
        "deployment frequency".into(),
        format!("{} ({} deployments)", frequency(m.deployment_frequency_per_day), m.deployments_total),
        v.levels.deployment_frequency.clone(),
    ]);
    t.row(vec![
        "lead time for changes".into(),
        format!("{} median, {} p90", opt(v.lead_time_median_seconds), opt(v.lead_time_p90_seconds)),
        v.levels.lead_time.clone(),
    ]);
    t.row(vec![
        "change failure rate".into(),
        format!("{:.1}% ({} failed)", m.change_failure_rate * 100.0, m.deployments_failed),
        v.levels.change_failure_rate.clone(),
    ]);
    t.row(vec![
        "time to restore".into(),
        format!("{} median, {} not restored", opt(v.time_to_restore_median_seconds), m.unrestored_failures),
        v.levels.time_to_restore.clone(),
    ]);
    let mut out = format!("{}-{} ({} bands)\n", v.start.unwrap_or_default(), v.end.unwrap_or_default(), v.benchmark);
    out.push_str(&t.to_string());
    out
}

/// A deployment for `-o json|yaml`.
#[derive(Serialize)]
struct DeploymentView {
    id: String,
    application: String,
    component: String,
    cluster: String,
    environment: String,
    revision: String,
    status: String,
    deployed_at: Option<String>,
    lead_time_seconds: Option<i64>,
    images: Vec<ImageView>,
    commits: Vec<CommitView>,
    commits_truncated: bool,
    warnings: Vec<String>,
    devlake: DevlakeView,
}

#[derive(Serialize)]
struct ImageView {
    image: String,
    commit_sha: String,
    skip_reason: String,
}

#[derive(Serialize)]
struct CommitView {
    repo_url: String,
    sha: String,
    message: String,
    authored_at: Option<String>,
}

#[derive(Serialize)]
struct DevlakeView {
    id: String,
    state: String,
    attempts: i32,
    last_error: String,
    sent_at: Option<String>,
}

impl From<&Deployment> for DeploymentView {
    fn from(d: &Deployment) -> Self {
        let push = d.devlake.clone().unwrap_or_default();
        Self {
            id: d.id.clone(),
            application: d.application.clone(),
            component: d.component.clone(),
            cluster: d.cluster.clone(),
            environment: env_name(d.environment),
            revision: d.revision.clone(),
            status: status_name(d.status),
            deployed_at: rfc3339(d.deployed_at.as_ref()),
            lead_time_seconds: secs(d.lead_time.as_ref()),
            images: d
                .images
                .iter()
                .map(|i| ImageView {
                    image: i.image.clone(),
                    commit_sha: i.commit_sha.clone(),
                    skip_reason: i.skip_reason.clone(),
                })
                .collect(),
            commits: d
                .commits
                .iter()
                .map(|c| CommitView {
                    repo_url: c.repo_url.clone(),
                    sha: c.sha.clone(),
                    message: c.message.clone(),
                    authored_at: rfc3339(c.authored_at.as_ref()),
                })
                .collect(),
            commits_truncated: d.commits_truncated,
            warnings: d.warnings.clone(),
            devlake: DevlakeView {
                id: d.devlake_id.clone(),
                state: push_name(d),
                attempts: push.attempts,
                last_error: push.last_error,
                sent_at: rfc3339(push.sent_at.as_ref()),
            },
        }
    }
}

const HEADERS: [&str; 8] = ["DEPLOYED", "COMPONENT", "CLUSTER", "ENV", "REVISION", "STATUS", "LEAD TIME", "DEVLAKE"];

fn row(d: &Deployment) -> Vec<String> {
    vec![
        rfc3339(d.deployed_at.as_ref()).unwrap_or_default(),
        d.component.clone(),
        d.cluster.clone(),
        env_name(d.environment),
        d.revision.chars().take(10).collect(),
        status_name(d.status),
        secs(d.lead_time.as_ref()).map_or("-".into(), duration),
        push_name(d),
    ]
}

fn show_text(d: &Deployment) -> String {
    let v = DeploymentView::from(d);
    let mut out = describe(&[
        ("id", v.id.clone()),
        ("application", v.application.clone()),
        ("cluster", v.cluster.clone()),
        ("environment", v.environment.clone()),
        ("revision", v.revision.clone()),
        ("status", v.status.clone()),
        ("deployed", v.deployed_at.clone().unwrap_or_default()),
        ("lead time", v.lead_time_seconds.map(duration).unwrap_or_default()),
        ("devlake", format!("{} ({} attempts) {}", v.devlake.state, v.devlake.attempts, v.devlake.last_error)),
    ]);
    for i in &v.images {
        let what = if i.skip_reason.is_empty() { format!("commit {}", i.commit_sha) } else { i.skip_reason.clone() };
        out.push_str(&format!("image {}: {what}\n", i.image));
    }
    for c in &v.commits {
        let first = c.message.lines().next().unwrap_or_default();
        out.push_str(&format!("commit {} {} {first}\n", &c.sha[..c.sha.len().min(10)], c.repo_url));
    }
    if v.commits_truncated {
        out.push_str("(more commits than were fetched)\n");
    }
    for w in &v.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

fn timestamp_of(text: &str) -> anyhow::Result<prost_types::Timestamp> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--at {text:?}: write an RFC 3339 time such as 2026-12-01T14:30:00Z"))?;
    Ok(prost_types::Timestamp { seconds: t.unix_timestamp(), nanos: 0 })
}

/// Runs `persys dora ...`.
pub async fn run(global: &Global, command: DoraCommand) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    match command {
        DoraCommand::Metrics { window, component, environment, cluster } => {
            let length = persys_kit::config::parse_duration(&window).map_err(|e| anyhow::anyhow!("--window: {e}"))?;
            let start = now_secs() - i64::try_from(length.as_secs()).context("--window: too long")?;
            let req = &GetDoraMetricsRequest {
                range: Some(TimeRange { start: Some(prost_types::Timestamp { seconds: start, nanos: 0 }), end: None }),
                component: component.unwrap_or_default(),
                environment: DeploymentEnvironment::from(environment) as i32,
                cluster: cluster.unwrap_or_default(),
            };
            let m = s.call(|c| async move { c.dora().get_dora_metrics(req.clone()).await }).await?;
            emit(global.output, &MetricsView::from(&m), || metrics_text(&m))
        }
        DoraCommand::Deployments { component, cluster, environment, status, limit } => {
            let req = &ListDeploymentsRequest {
                page: Some(PageRequest { page_size: limit, page_token: String::new() }),
                component: component.unwrap_or_default(),
                cluster: cluster.unwrap_or_default(),
                environment: environment.map_or(0, |e| DeploymentEnvironment::from(e) as i32),
                status: status.map_or(0, |s| DeploymentStatus::from(s) as i32),
                ..Default::default()
            };
            let list = s.call(|c| async move { c.dora().list_deployments(req.clone()).await }).await?.deployments;
            let view: Vec<DeploymentView> = list.iter().map(DeploymentView::from).collect();
            emit(global.output, &view, || {
                let mut t = Table::new(&HEADERS);
                for d in &list {
                    t.row(row(d));
                }
                t.to_string()
            })
        }
        DoraCommand::Show { id } => {
            let req = &GetDeploymentRequest { id };
            let d = s.call(|c| async move { c.dora().get_deployment(req.clone()).await }).await?.deployment;
            let d = d.unwrap_or_default();
            emit(global.output, &DeploymentView::from(&d), || show_text(&d))
        }
        DoraCommand::Record {
            application,
            cluster,
            component,
            revision,
            repo_url,
            images,
            environment,
            status,
            at,
        } => {
            let deployed_at = match at {
                Some(text) => timestamp_of(&text)?,
                None => prost_types::Timestamp { seconds: now_secs(), nanos: 0 },
            };
            let req = &RecordDeploymentRequest {
                application,
                cluster,
                component: component.unwrap_or_default(),
                revision,
                source_repo_url: repo_url.unwrap_or_default(),
                images,
                environment: DeploymentEnvironment::from(environment) as i32,
                status: DeploymentStatus::from(status) as i32,
                deployed_at: Some(deployed_at),
                ..Default::default()
            };
            let r = s.call(|c| async move { c.dora().record_deployment(req.clone()).await }).await?;
            let d = r.deployment.unwrap_or_default();
            let duplicate = r.duplicate;
            emit(global.output, &DeploymentView::from(&d), || {
                if duplicate {
                    format!("deployment {} was recorded already\n", d.id)
                } else {
                    format!(
                        "deployment {} recorded; commits resolve in the background (persys dora show {})\n",
                        d.id, d.id
                    )
                }
            })
        }
        DoraCommand::Retry { id } => {
            let req = &RetryDevlakePushRequest { id };
            let d = s.call(|c| async move { c.dora().retry_devlake_push(req.clone()).await }).await?.deployment;
            let d = d.unwrap_or_default();
            emit(global.output, &DeploymentView::from(&d), || format!("deployment {} queued for DevLake again\n", d.id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::frequency;

    #[test]
    fn frequencies_read_the_way_people_say_them() {
        assert_eq!(frequency(3.0), "3.0/day");
        assert_eq!(frequency(2.0 / 7.0), "2.0/week");
        assert_eq!(frequency(1.0 / 30.0), "0.2/week");
        assert_eq!(frequency(0.01), "0.3/month");
    }
}
