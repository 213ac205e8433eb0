//! From a `HostMetrics` sample to rows of (metric, labels, time, value): what the store keeps
//! and queries select on. Pure; the network rates need the previous counters of each
//! interface, which [`Rates`] remembers per node.

use std::collections::{BTreeMap, HashMap};

use persys_proto::metrics::v1::{HostMetrics, Metric};

/// Labels of one series, sorted by name (`mount`, `interface`, `workload_id`, ...).
pub type Labels = BTreeMap<String, String>;

/// One value of one series at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Which metric.
    pub metric: Metric,
    /// Which series of the metric on the node.
    pub labels: Labels,
    /// Unix time, milliseconds.
    pub time_ms: i64,
    /// The value.
    pub value: f64,
}

/// Returns a sample's time in Unix milliseconds, or `None` when it has none.
pub fn time_ms(sample: &HostMetrics) -> Option<i64> {
    let t = sample.time.as_ref()?;
    Some(t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos) / 1_000_000))
}

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Remembers the last counters of each node's interfaces, disks and containers, to turn
/// counters into bytes per second.
#[derive(Debug, Default)]
pub struct Rates {
    /// (node, "nic:<name>" | "disk:<mount>" | "ctr:<id>") → (time, first counter, second).
    last: HashMap<(String, String), (i64, i64, i64)>,
}

impl Rates {
    /// The two rates of a pair of counters since the last sample of `what` on `node`; `None`
    /// on the first sample, after a counter reset or a step back in time.
    fn per_second(&mut self, node: &str, what: String, at: i64, a: i64, b: i64) -> Option<(f64, f64)> {
        let (t0, a0, b0) = self.last.insert((node.to_owned(), what), (at, a, b))?;
        let seconds = (at - t0) as f64 / 1000.0;
        (seconds > 0.0 && a >= a0 && b >= b0).then(|| ((a - a0) as f64 / seconds, (b - b0) as f64 / seconds))
    }
}

impl Rates {
    /// Returns the rows of `sample` (time `at`, from [`time_ms`]); rates appear from a node's
    /// second sample on, and not across a counter reset or a step back in time.
    pub fn rows(&mut self, sample: &HostMetrics, at: i64) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut push = |metric: Metric, labels: Labels, value: f64| {
            if value.is_finite() {
                rows.push(Row { metric, labels, time_ms: at, value });
            }
        };
        if let Some(cpu) = &sample.cpu {
            push(Metric::CpuUsagePercent, Labels::new(), cpu.usage_percent);
            for (core, percent) in cpu.core_usage_percent.iter().enumerate() {
                push(Metric::CpuCoreUsagePercent, labels([("core", core.to_string().as_str())]), *percent);
            }
        }
        if let Some(memory) = &sample.memory {
            push(Metric::MemoryUsagePercent, Labels::new(), memory.usage_percent);
            push(Metric::MemoryUsedBytes, Labels::new(), memory.used_bytes as f64);
        }
        if let Some(load) = &sample.load {
            push(Metric::Load1, Labels::new(), load.load1);
            push(Metric::Load5, Labels::new(), load.load5);
            push(Metric::Load15, Labels::new(), load.load15);
        }
        for disk in &sample.disks {
            let l = labels([("mount", disk.mount_point.as_str()), ("device", disk.device.as_str())]);
            push(Metric::DiskUsagePercent, l.clone(), disk.usage_percent);
            push(Metric::DiskUsedBytes, l.clone(), disk.used_bytes as f64);
            let io = format!("disk:{}", disk.mount_point);
            if let Some((read, write)) = self.per_second(&sample.node_id, io, at, disk.read_bytes, disk.write_bytes) {
                push(Metric::DiskReadBytesPerSecond, l.clone(), read);
                push(Metric::DiskWriteBytesPerSecond, l, write);
            }
        }
        for nic in &sample.network {
            let what = format!("nic:{}", nic.name);
            if let Some((rx, tx)) = self.per_second(&sample.node_id, what, at, nic.rx_bytes, nic.tx_bytes) {
                let l = labels([("interface", nic.name.as_str())]);
                push(Metric::NetworkRxBytesPerSecond, l.clone(), rx);
                push(Metric::NetworkTxBytesPerSecond, l, tx);
            }
        }
        for c in &sample.containers {
            let l = labels([
                ("workload_id", c.workload_id.as_str()),
                ("instance_id", c.instance_id.as_str()),
                ("container", c.name.as_str()),
            ]);
            push(Metric::ContainerCpuPercent, l.clone(), c.cpu_percent);
            if c.memory_limit_bytes > 0 {
                let percent = c.memory_usage_bytes as f64 / c.memory_limit_bytes as f64 * 100.0;
                push(Metric::ContainerMemoryLimitPercent, l.clone(), percent);
            }
            push(Metric::ContainerMemoryBytes, l.clone(), c.memory_usage_bytes as f64);
            push(Metric::ContainerRestarts, l.clone(), c.restart_count as f64);
            let what = format!("ctr:{}", c.container_id);
            if let Some((rx, tx)) = self.per_second(&sample.node_id, what, at, c.network_rx_bytes, c.network_tx_bytes) {
                push(Metric::ContainerNetworkRxBytesPerSecond, l.clone(), rx);
                push(Metric::ContainerNetworkTxBytesPerSecond, l, tx);
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::metrics::v1::{
        ContainerMetrics, CpuMetrics, DiskMetrics, LoadAverage, MemoryMetrics, NetworkInterfaceMetrics,
    };

    use super::*;

    fn sample(seconds: i64, rx: i64, tx: i64) -> HostMetrics {
        HostMetrics {
            node_id: "n1".into(),
            time: Some(prost_types::Timestamp { seconds, nanos: 500_000_000 }),
            cpu: Some(CpuMetrics {
                usage_percent: 12.5,
                cores: 2,
                frequency_mhz: 0.0,
                core_usage_percent: vec![20.0, 5.0],
            }),
            memory: Some(MemoryMetrics { used_bytes: 1024, usage_percent: 50.0, ..Default::default() }),
            load: Some(LoadAverage { load1: 0.5, load5: 0.25, load15: f64::NAN }),
            disks: vec![DiskMetrics {
                mount_point: "/".into(),
                device: "sda1".into(),
                usage_percent: 40.0,
                used_bytes: 7,
                read_bytes: rx * 2,
                write_bytes: tx * 2,
                ..Default::default()
            }],
            network: vec![NetworkInterfaceMetrics {
                name: "eth0".into(),
                rx_bytes: rx,
                tx_bytes: tx,
                ..Default::default()
            }],
            containers: vec![ContainerMetrics {
                workload_id: "w1".into(),
                instance_id: "i1".into(),
                container_id: "c1".into(),
                name: "app".into(),
                cpu_percent: 150.0,
                memory_usage_bytes: 99,
                network_rx_bytes: rx / 10,
                network_tx_bytes: tx / 10,
                restart_count: 2,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn value(rows: &[Row], metric: Metric) -> Option<f64> {
        rows.iter().find(|r| r.metric == metric).map(|r| r.value)
    }

    #[test]
    fn every_metric_of_a_sample_becomes_a_row_with_its_labels() {
        let s = sample(100, 0, 0);
        assert_eq!(time_ms(&s), Some(100_500));
        let rows = Rates::default().rows(&s, 100_500);
        assert_eq!(value(&rows, Metric::CpuUsagePercent), Some(12.5));
        assert_eq!(value(&rows, Metric::MemoryUsedBytes), Some(1024.0));
        assert_eq!(value(&rows, Metric::Load5), Some(0.25));
        assert_eq!(value(&rows, Metric::Load15), None, "NaN is not stored");
        let disk = rows.iter().find(|r| r.metric == Metric::DiskUsagePercent).unwrap();
        assert_eq!(disk.labels, labels([("mount", "/"), ("device", "sda1")]));
        let c = rows.iter().find(|r| r.metric == Metric::ContainerCpuPercent).unwrap();
        assert_eq!((c.value, c.labels.get("workload_id").map(String::as_str)), (150.0, Some("w1")));
        assert!(rows.iter().all(|r| r.time_ms == 100_500));
        assert_eq!(value(&rows, Metric::NetworkRxBytesPerSecond), None, "no rate from one sample");
        assert_eq!(value(&rows, Metric::ContainerMemoryLimitPercent), None, "no limit, no percent of it");
        let cores: Vec<(Option<&str>, f64)> = rows
            .iter()
            .filter(|r| r.metric == Metric::CpuCoreUsagePercent)
            .map(|r| (r.labels.get("core").map(String::as_str), r.value))
            .collect();
        assert_eq!(cores, [(Some("0"), 20.0), (Some("1"), 5.0)]);
        let restarts = rows.iter().find(|r| r.metric == Metric::ContainerRestarts).unwrap();
        assert_eq!(restarts.value, 2.0);
        assert_eq!(restarts.labels, labels([("workload_id", "w1"), ("instance_id", "i1"), ("container", "app")]));
        let mut limited = sample(100, 0, 0);
        limited.containers[0].memory_limit_bytes = 396;
        let rows = Rates::default().rows(&limited, 100_500);
        assert_eq!(value(&rows, Metric::ContainerMemoryLimitPercent), Some(25.0));
    }

    #[test]
    fn network_counters_become_rates_and_resets_give_none() {
        let mut rates = Rates::default();
        rates.rows(&sample(100, 1000, 10), 100_000);
        let rows = rates.rows(&sample(105, 6000, 510), 105_000);
        assert_eq!(value(&rows, Metric::NetworkRxBytesPerSecond), Some(1000.0));
        assert_eq!(value(&rows, Metric::NetworkTxBytesPerSecond), Some(100.0));
        assert_eq!(value(&rows, Metric::DiskReadBytesPerSecond), Some(2000.0));
        assert_eq!(value(&rows, Metric::DiskWriteBytesPerSecond), Some(200.0));
        assert_eq!(value(&rows, Metric::ContainerNetworkRxBytesPerSecond), Some(100.0));
        assert_eq!(value(&rows, Metric::ContainerNetworkTxBytesPerSecond), Some(10.0));
        // Another node's counters are its own.
        let mut other = sample(105, 6000, 510);
        other.node_id = "n2".into();
        assert_eq!(value(&rates.rows(&other, 105_000), Metric::NetworkRxBytesPerSecond), None);
        let reset = rates.rows(&sample(110, 5, 5), 110_000);
        assert_eq!(value(&reset, Metric::NetworkRxBytesPerSecond), None);
        assert_eq!(value(&reset, Metric::DiskReadBytesPerSecond), None);
        assert_eq!(value(&reset, Metric::ContainerNetworkRxBytesPerSecond), None);
        let back = rates.rows(&sample(109, 10, 10), 109_000);
        assert_eq!(value(&back, Metric::NetworkRxBytesPerSecond), None, "time went back");
    }
}
