//! `persys metrics`: each node's newest host sample, and one metric over time with a text
//! chart (admins; through the gateway to the metrics pipeline).

use std::{collections::BTreeMap, time::Duration};

use clap::{Subcommand, ValueEnum};
use persys_proto::{
    common::v1::{PageRequest, TimeRange},
    metrics::v1::{HostMetrics, LatestHostMetricsRequest, Metric, QueryRangeRequest, QueryRangeResponse, Rollup},
};
use serde::Serialize;

use crate::{
    client::{Global, Session},
    output::{Format, Table, age, emit, now_secs, rfc3339},
    quantity::format_bytes,
    run,
};

/// `persys metrics ...`
#[derive(Subcommand, Debug)]
pub enum MetricsCommand {
    /// Show the newest host sample of each node (admin).
    Latest {
        /// Only this node (repeatable).
        #[arg(long = "node")]
        nodes: Vec<String>,
    },
    /// Show one metric over time, one chart line per series (admin).
    Range {
        /// Which metric.
        #[arg(short, long, value_enum, default_value_t = MetricArg::Cpu)]
        metric: MetricArg,
        /// Only this node (repeatable).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// How far back, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = persys_kit::config::parse_duration)]
        since: Duration,
        /// Width of one point, e.g. 10s, 1m.
        #[arg(long, default_value = "1m", value_parser = persys_kit::config::parse_duration)]
        step: Duration,
        /// How the samples within a step combine.
        #[arg(long, value_enum, default_value_t = RollupArg::Avg)]
        rollup: RollupArg,
        /// Only series with this label, e.g. mount=/ or interface=eth0 (repeatable).
        #[arg(short = 'l', long = "label", value_parser = run::key_value)]
        labels: Vec<(String, String)>,
    },
}

/// Metrics by short name.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MetricArg {
    /// CPU in use, percent of all cores.
    Cpu,
    /// CPU in use per core, percent of that core (label core=0, 1, ...).
    CpuCore,
    /// Memory in use, percent.
    Memory,
    /// Memory in use, bytes.
    MemoryBytes,
    /// Disk space in use per mount, percent.
    Disk,
    /// Disk space in use per mount, bytes.
    DiskBytes,
    /// Bytes read per second per filesystem's device.
    DiskRead,
    /// Bytes written per second per filesystem's device.
    DiskWrite,
    /// Bytes received per second per interface.
    Rx,
    /// Bytes sent per second per interface.
    Tx,
    /// Load average over 1 minute.
    Load1,
    /// Load average over 5 minutes.
    Load5,
    /// Load average over 15 minutes.
    Load15,
    /// CPU per container, percent of one core.
    ContainerCpu,
    /// Memory per container, bytes.
    ContainerMemory,
    /// Memory per container, percent of its limit (containers with a limit only).
    ContainerMemoryLimit,
    /// Bytes received per second per container.
    ContainerRx,
    /// Bytes sent per second per container.
    ContainerTx,
    /// Times the Docker engine restarted each container (its restart policy).
    ContainerRestarts,
    /// Replicas a workload wants running that are not (alert rules only; needs the pipeline's
    /// --scheduler).
    WorkloadUnavailable,
    /// Restarts of a workload's instances over the last 10 minutes (alert rules only).
    WorkloadRestarts,
}

impl MetricArg {
    /// The API's metric.
    pub fn metric(self) -> Metric {
        match self {
            Self::Cpu => Metric::CpuUsagePercent,
            Self::CpuCore => Metric::CpuCoreUsagePercent,
            Self::DiskRead => Metric::DiskReadBytesPerSecond,
            Self::DiskWrite => Metric::DiskWriteBytesPerSecond,
            Self::ContainerRx => Metric::ContainerNetworkRxBytesPerSecond,
            Self::ContainerTx => Metric::ContainerNetworkTxBytesPerSecond,
            Self::ContainerRestarts => Metric::ContainerRestarts,
            Self::Memory => Metric::MemoryUsagePercent,
            Self::MemoryBytes => Metric::MemoryUsedBytes,
            Self::Disk => Metric::DiskUsagePercent,
            Self::DiskBytes => Metric::DiskUsedBytes,
            Self::Rx => Metric::NetworkRxBytesPerSecond,
            Self::Tx => Metric::NetworkTxBytesPerSecond,
            Self::Load1 => Metric::Load1,
            Self::Load5 => Metric::Load5,
            Self::Load15 => Metric::Load15,
            Self::ContainerCpu => Metric::ContainerCpuPercent,
            Self::ContainerMemory => Metric::ContainerMemoryBytes,
            Self::ContainerMemoryLimit => Metric::ContainerMemoryLimitPercent,
            Self::WorkloadUnavailable => Metric::WorkloadUnavailableReplicas,
            Self::WorkloadRestarts => Metric::WorkloadRestarts10m,
        }
    }
}

/// Rollups by short name.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RollupArg {
    /// Mean.
    Avg,
    /// Smallest.
    Min,
    /// Largest.
    Max,
    /// Total.
    Sum,
    /// Newest.
    Last,
}

impl RollupArg {
    fn rollup(self) -> Rollup {
        match self {
            Self::Avg => Rollup::Avg,
            Self::Min => Rollup::Min,
            Self::Max => Rollup::Max,
            Self::Sum => Rollup::Sum,
            Self::Last => Rollup::Last,
        }
    }
}

/// Runs a `metrics` subcommand.
pub async fn run(global: &Global, command: MetricsCommand) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    match command {
        MetricsCommand::Latest { nodes } => {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let req = &LatestHostMetricsRequest {
                    page: Some(PageRequest { page_size: 1000, page_token: token.clone() }),
                    node_ids: nodes.clone(),
                    include_containers: false,
                };
                let page = s.call(|c| async move { c.metrics().latest_host_metrics(req.clone()).await }).await?;
                all.extend(page.metrics);
                token = page.page.map(|p| p.next_page_token).unwrap_or_default();
                if token.is_empty() {
                    break;
                }
            }
            let view: Vec<Sample> = all.iter().map(Sample::from).collect();
            emit(global.output, &view, || latest_table(&all))
        }
        MetricsCommand::Range { metric, nodes, since, step, rollup, labels } => {
            let now = now_secs();
            let mut start = now - since.as_secs() as i64;
            if step.as_secs() % 3600 == 0 && step.subsec_nanos() == 0 {
                // Whole hours: the pipeline answers from its one-hour rollups (kept longest).
                start -= start.rem_euclid(3600);
            } else if step.as_secs() % 60 == 0 && step.subsec_nanos() == 0 {
                // Whole minutes: the pipeline answers from its one-minute rollups (kept longer).
                start -= start.rem_euclid(60);
            }
            let start = prost_types::Timestamp { seconds: start, nanos: 0 };
            let req = &QueryRangeRequest {
                node_ids: nodes,
                metrics: vec![metric.metric() as i32],
                range: Some(TimeRange { start: Some(start), end: None }),
                step: step.try_into().ok(),
                rollup: rollup.rollup() as i32,
                match_labels: labels.into_iter().collect(),
            };
            let answer = s.call(|c| async move { c.metrics().query_range(req.clone()).await }).await?;
            let view = SeriesView::all(&answer);
            if global.output == Format::Table && answer.series.is_empty() {
                eprintln!("no samples in the last {}; is an agent running with --metrics-pipeline?", humantime(since));
            }
            emit(global.output, &view, || chart(&view, metric.metric(), step))
        }
    }
}

fn humantime(d: Duration) -> String {
    crate::output::duration(d.as_secs() as i64)
}

/// One node's newest sample, for `-o json|yaml`.
#[derive(Serialize)]
struct Sample {
    node_id: String,
    time: Option<String>,
    cpu_percent: Option<f64>,
    cores: Option<i32>,
    memory_percent: Option<f64>,
    memory_used_bytes: Option<i64>,
    memory_total_bytes: Option<i64>,
    load: Option<[f64; 3]>,
    disks: BTreeMap<String, f64>,
    interfaces: Vec<String>,
}

impl From<&HostMetrics> for Sample {
    fn from(m: &HostMetrics) -> Self {
        Self {
            node_id: m.node_id.clone(),
            time: rfc3339(m.time.as_ref()),
            cpu_percent: m.cpu.as_ref().map(|c| c.usage_percent),
            cores: m.cpu.as_ref().map(|c| c.cores),
            memory_percent: m.memory.as_ref().map(|c| c.usage_percent),
            memory_used_bytes: m.memory.as_ref().map(|c| c.used_bytes),
            memory_total_bytes: m.memory.as_ref().map(|c| c.total_bytes),
            load: m.load.as_ref().map(|l| [l.load1, l.load5, l.load15]),
            disks: m.disks.iter().map(|d| (d.mount_point.clone(), d.usage_percent)).collect(),
            interfaces: m.network.iter().map(|n| n.name.clone()).collect(),
        }
    }
}

fn latest_table(all: &[HostMetrics]) -> String {
    let now = now_secs();
    let mut t = Table::new(&["NODE", "AGE", "CPU", "MEM", "MEM USED", "LOAD", "DISKS"]);
    for m in all {
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}%"));
        let disks: Vec<String> = m.disks.iter().map(|d| format!("{} {:.0}%", d.mount_point, d.usage_percent)).collect();
        t.row(vec![
            m.node_id.clone(),
            age(m.time.as_ref(), now),
            pct(m.cpu.as_ref().map(|c| c.usage_percent)),
            pct(m.memory.as_ref().map(|c| c.usage_percent)),
            m.memory.as_ref().map_or("-".into(), |c| format_bytes(c.used_bytes)),
            m.load.as_ref().map_or("-".into(), |l| format!("{:.2} {:.2} {:.2}", l.load1, l.load5, l.load15)),
            if disks.is_empty() { "-".into() } else { disks.join(", ") },
        ]);
    }
    t.to_string()
}

/// One series, for `-o json|yaml`.
#[derive(Serialize)]
struct SeriesView {
    node_id: String,
    labels: BTreeMap<String, String>,
    points: Vec<(Option<String>, f64)>,
}

impl SeriesView {
    fn all(answer: &QueryRangeResponse) -> Vec<Self> {
        answer
            .series
            .iter()
            .map(|s| Self {
                node_id: s.node_id.clone(),
                labels: s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                points: s.points.iter().map(|p| (rfc3339(p.time.as_ref()), p.value)).collect(),
            })
            .collect()
    }
}

/// Renders values as one line of block characters, at most `width` wide (neighbouring values
/// averaged), scaled from `min` to `max`.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let per = values.len().div_ceil(width);
    let cols: Vec<f64> = values.chunks(per).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
    let (min, max) = cols.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    cols.iter()
        .map(|v| {
            let i = if max > min { ((v - min) / (max - min) * 7.0).round() as usize } else { 0 };
            BARS[i.min(7)]
        })
        .collect()
}

fn chart(series: &[SeriesView], metric: Metric, step: Duration) -> String {
    let bytes = matches!(
        metric,
        Metric::MemoryUsedBytes
            | Metric::DiskUsedBytes
            | Metric::ContainerMemoryBytes
            | Metric::NetworkRxBytesPerSecond
            | Metric::NetworkTxBytesPerSecond
            | Metric::DiskReadBytesPerSecond
            | Metric::DiskWriteBytesPerSecond
            | Metric::ContainerNetworkRxBytesPerSecond
            | Metric::ContainerNetworkTxBytesPerSecond
    );
    let show = |v: f64| if bytes { format_bytes(v as i64) } else { format!("{v:.2}") };
    let mut out = String::new();
    for s in series {
        let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let last = values.last().copied().unwrap_or_default();
        out.push_str(&format!(
            "{} {}{}\n  {}  min {}  max {}  last {}  ({} points, step {})\n",
            s.node_id,
            crate::output::enum_name(metric.as_str_name(), "METRIC_"),
            if labels.is_empty() { String::new() } else { format!(" {{{}}}", labels.join(",")) },
            sparkline(&values, 60),
            show(min),
            show(max),
            show(last),
            values.len(),
            humantime(step),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn sparklines_scale_between_min_and_max_and_fit_the_width() {
        assert_eq!(sparkline(&[0.0, 50.0, 100.0], 60), "▁▅█");
        assert_eq!(sparkline(&[3.0, 3.0], 60), "▁▁", "a flat line sits at the bottom");
        assert_eq!(sparkline(&[], 60), "");
        let long: Vec<f64> = (0..600).map(f64::from).collect();
        let line = sparkline(&long, 60);
        assert_eq!(line.chars().count(), 60);
        assert!(line.starts_with('▁') && line.ends_with('█'), "{line}");
    }
}
