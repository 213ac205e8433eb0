//! Each node's newest sample in the Prometheus text format, on the admin port's `/metrics`
//! beside the RPC metrics, so an existing Prometheus can scrape every Persys node through the
//! pipeline instead of running node_exporter on each. Names follow node_exporter's and
//! cAdvisor's where the data allows, under the `persys_` prefix of the registry:
//! `persys_host_*{node}` and `persys_container_*{node, workload_id, instance_id, container}`.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use persys_proto::metrics::v1::HostMetrics;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use crate::samples::time_ms;

/// The newest sample of each node, shared between ingest (writer, after each commit) and
/// scrapes (readers).
#[derive(Clone, Debug, Default)]
pub struct LatestHosts(Arc<RwLock<BTreeMap<String, HostMetrics>>>);

type Labels = Vec<(String, String)>;

impl LatestHosts {
    /// Keeps `sample` unless the node already has a newer one.
    pub fn update(&self, sample: &HostMetrics) {
        let mut all = self.0.write().expect("latest hosts lock");
        let newer = all.get(&sample.node_id).is_none_or(|old| time_ms(old) <= time_ms(sample));
        if newer {
            all.insert(sample.node_id.clone(), sample.clone());
        }
    }

    /// Returns the number of nodes known.
    pub fn len(&self) -> usize {
        self.0.read().expect("latest hosts lock").len()
    }

    /// Whether no node has sent a sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn node(m: &HostMetrics) -> Labels {
    vec![("node".into(), m.node_id.clone())]
}

fn with(mut labels: Labels, more: &[(&str, &str)]) -> Labels {
    labels.extend(more.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_string(), v.to_string())));
    labels
}

/// Writes one metric family: its descriptor, then one line per series.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in &series {
        let e = metric.encode_family(labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value.max(0.0)).encode(e)?,
            _ => ConstGauge::new(*value).encode(e)?,
        }
    }
    Ok(())
}

impl Collector for LatestHosts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.read().expect("latest hosts lock");
        let hosts: Vec<&HostMetrics> = all.values().collect();
        let each = |f: &dyn Fn(&HostMetrics) -> Option<f64>| -> Vec<(Labels, f64)> {
            hosts.iter().filter_map(|m| f(m).map(|v| (node(m), v))).collect()
        };
        let gauge = MetricType::Gauge;
        let e = &mut encoder;
        family(
            e,
            "host_last_sample_timestamp_seconds",
            "Time of the node's newest sample.",
            gauge,
            each(&|m| time_ms(m).map(|t| t as f64 / 1000.0)),
        )?;
        family(
            e,
            "host_cpu_usage_percent",
            "CPU in use over the last interval, percent of all cores.",
            gauge,
            each(&|m| m.cpu.as_ref().map(|c| c.usage_percent)),
        )?;
        family(e, "host_cpu_cores", "CPU cores.", gauge, each(&|m| m.cpu.as_ref().map(|c| f64::from(c.cores))))?;
        let cores: Vec<(Labels, f64)> = hosts
            .iter()
            .flat_map(|m| {
                let per_core = m.cpu.as_ref().map(|c| c.core_usage_percent.as_slice()).unwrap_or_default();
                per_core.iter().enumerate().map(move |(i, v)| (with(node(m), &[("core", i.to_string().as_str())]), *v))
            })
            .collect();
        family(
            e,
            "host_cpu_core_usage_percent",
            "One core's CPU in use over the last interval, percent.",
            gauge,
            cores,
        )?;
        family(
            e,
            "host_memory_total_bytes",
            "Memory installed.",
            gauge,
            each(&|m| m.memory.as_ref().map(|x| x.total_bytes as f64)),
        )?;
        family(
            e,
            "host_memory_used_bytes",
            "Memory in use.",
            gauge,
            each(&|m| m.memory.as_ref().map(|x| x.used_bytes as f64)),
        )?;
        family(
            e,
            "host_memory_available_bytes",
            "Memory available (MemAvailable).",
            gauge,
            each(&|m| m.memory.as_ref().map(|x| x.available_bytes as f64)),
        )?;
        family(
            e,
            "host_swap_used_bytes",
            "Swap in use.",
            gauge,
            each(&|m| m.memory.as_ref().map(|x| x.swap_used_bytes as f64)),
        )?;
        family(e, "host_load1", "Load average over 1 minute.", gauge, each(&|m| m.load.as_ref().map(|l| l.load1)))?;
        family(e, "host_load5", "Load average over 5 minutes.", gauge, each(&|m| m.load.as_ref().map(|l| l.load5)))?;
        family(e, "host_load15", "Load average over 15 minutes.", gauge, each(&|m| m.load.as_ref().map(|l| l.load15)))?;
        let disks = |f: &dyn Fn(&persys_proto::metrics::v1::DiskMetrics) -> f64| -> Vec<(Labels, f64)> {
            hosts
                .iter()
                .flat_map(|m| m.disks.iter().map(move |d| (m, d)))
                .map(|(m, d)| {
                    let l = [
                        ("mountpoint", d.mount_point.as_str()),
                        ("device", d.device.as_str()),
                        ("fstype", d.fs_type.as_str()),
                    ];
                    (with(node(m), &l), f(d))
                })
                .collect()
        };
        family(e, "host_filesystem_size_bytes", "Filesystem size.", gauge, disks(&|d| d.total_bytes as f64))?;
        family(e, "host_filesystem_used_bytes", "Filesystem space in use.", gauge, disks(&|d| d.used_bytes as f64))?;
        family(
            e,
            "host_filesystem_avail_bytes",
            "Filesystem space available to users.",
            gauge,
            disks(&|d| d.available_bytes as f64),
        )?;
        family(
            e,
            "host_disk_read_bytes",
            "Bytes read from the device.",
            MetricType::Counter,
            disks(&|d| d.read_bytes as f64),
        )?;
        family(
            e,
            "host_disk_written_bytes",
            "Bytes written to the device.",
            MetricType::Counter,
            disks(&|d| d.write_bytes as f64),
        )?;
        let nics = |f: &dyn Fn(&persys_proto::metrics::v1::NetworkInterfaceMetrics) -> f64| -> Vec<(Labels, f64)> {
            hosts
                .iter()
                .flat_map(|m| m.network.iter().map(move |n| (m, n)))
                .map(|(m, n)| (with(node(m), &[("device", n.name.as_str())]), f(n)))
                .collect()
        };
        family(
            e,
            "host_network_receive_bytes",
            "Bytes received by the interface.",
            MetricType::Counter,
            nics(&|n| n.rx_bytes as f64),
        )?;
        family(
            e,
            "host_network_transmit_bytes",
            "Bytes sent by the interface.",
            MetricType::Counter,
            nics(&|n| n.tx_bytes as f64),
        )?;
        let containers = |f: &dyn Fn(&persys_proto::metrics::v1::ContainerMetrics) -> f64| -> Vec<(Labels, f64)> {
            hosts
                .iter()
                .flat_map(|m| m.containers.iter().map(move |c| (m, c)))
                .map(|(m, c)| {
                    let l = [
                        ("workload_id", c.workload_id.as_str()),
                        ("instance_id", c.instance_id.as_str()),
                        ("container", c.name.as_str()),
                    ];
                    (with(node(m), &l), f(c))
                })
                .collect()
        };
        family(
            e,
            "container_cpu_usage_percent",
            "Container CPU over the last interval, percent of one core.",
            gauge,
            containers(&|c| c.cpu_percent),
        )?;
        family(
            e,
            "container_memory_usage_bytes",
            "Container memory in use.",
            gauge,
            containers(&|c| c.memory_usage_bytes as f64),
        )?;
        family(
            e,
            "container_spec_memory_limit_bytes",
            "Container memory limit (0: none).",
            gauge,
            containers(&|c| c.memory_limit_bytes as f64),
        )?;
        family(
            e,
            "container_network_receive_bytes",
            "Bytes the container received.",
            MetricType::Counter,
            containers(&|c| c.network_rx_bytes as f64),
        )?;
        family(
            e,
            "container_network_transmit_bytes",
            "Bytes the container sent.",
            MetricType::Counter,
            containers(&|c| c.network_tx_bytes as f64),
        )?;
        family(
            e,
            "container_restarts",
            "Times the Docker engine restarted the container.",
            MetricType::Counter,
            containers(&|c| c.restart_count as f64),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::metrics::v1::{CpuMetrics, DiskMetrics, NetworkInterfaceMetrics};
    use prometheus_client::registry::Registry;

    use super::*;

    fn sample(node: &str, seconds: i64, cpu: f64) -> HostMetrics {
        HostMetrics {
            node_id: node.into(),
            time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            cpu: Some(CpuMetrics {
                usage_percent: cpu,
                cores: 4,
                frequency_mhz: 0.0,
                core_usage_percent: vec![cpu, 0.0, 0.0, 0.0],
            }),
            disks: vec![DiskMetrics {
                mount_point: "/".into(),
                device: "sda1".into(),
                fs_type: "ext4".into(),
                used_bytes: 7,
                ..Default::default()
            }],
            network: vec![NetworkInterfaceMetrics { name: "eth0".into(), rx_bytes: 1000, ..Default::default() }],
            ..Default::default()
        }
    }

    fn scrape(latest: &LatestHosts) -> String {
        let mut registry = Registry::with_prefix("persys");
        registry.register_collector(Box::new(latest.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn the_newest_sample_of_each_node_is_exposed_with_its_labels() {
        let latest = LatestHosts::default();
        assert!(!scrape(&latest).contains("persys_host_"), "nothing before the first sample");
        latest.update(&sample("n1", 100, 12.5));
        latest.update(&sample("n1", 90, 99.0)); // older: ignored
        latest.update(&sample("n2", 100, 3.0));
        let text = scrape(&latest);
        assert!(text.contains("# TYPE persys_host_cpu_usage_percent gauge"), "{text}");
        assert!(text.contains(r#"persys_host_cpu_usage_percent{node="n1"} 12.5"#), "{text}");
        assert!(text.contains(r#"persys_host_cpu_usage_percent{node="n2"} 3.0"#), "{text}");
        assert!(text.contains(r#"persys_host_cpu_core_usage_percent{node="n1",core="0"} 12.5"#), "{text}");
        assert!(text.contains(r#"persys_host_cpu_core_usage_percent{node="n1",core="3"} 0.0"#), "{text}");
        assert!(text.contains(r#"persys_host_last_sample_timestamp_seconds{node="n1"} 100.0"#), "{text}");
        assert!(
            text.contains(
                r#"persys_host_filesystem_used_bytes{node="n1",mountpoint="/",device="sda1",fstype="ext4"} 7"#
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE persys_host_network_receive_bytes counter"), "{text}");
        assert!(text.contains(r#"persys_host_network_receive_bytes_total{node="n2",device="eth0"} 1000"#), "{text}");
        assert!(!text.contains("persys_container_"), "no container metrics without containers");
        assert_eq!(latest.len(), 2);
    }
}
