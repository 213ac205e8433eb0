//! Host metrics: one [`HostMetrics`] sample of this machine from `/proc` and `statvfs`
//! (Linux), for the metrics pipeline.
//!
//! Counters (network, disk I/O) are sent as the kernel reports them, since boot; the pipeline
//! derives rates. CPU usage is the only value computed here, between two samples, which is why
//! the [`Collector`] keeps the previous CPU times. Container metrics are not collected yet.

pub mod parse;

use std::{path::Path, time::SystemTime};

use persys_proto::metrics::v1::{CpuMetrics, DiskMetrics, HostMetrics};

use self::parse::{FsUsage, Mount};
use crate::host::CpuTimes;

/// The text of the `/proc` files one sample is built from.
#[derive(Clone, Debug, Default)]
pub struct ProcFiles {
    /// `/proc/stat`.
    pub stat: String,
    /// `/proc/cpuinfo`.
    pub cpuinfo: String,
    /// `/proc/meminfo`.
    pub meminfo: String,
    /// `/proc/loadavg`.
    pub loadavg: String,
    /// `/proc/net/dev`.
    pub net_dev: String,
    /// `/proc/diskstats`.
    pub diskstats: String,
    /// `/proc/uptime`.
    pub uptime: String,
    /// `/proc/self/mounts`.
    pub mounts: String,
}

impl ProcFiles {
    /// Reads the files from `/proc`; an unreadable file reads as empty (its metrics are zero
    /// or missing rather than failing the whole sample).
    pub fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Self {
            stat: read("/proc/stat"),
            cpuinfo: read("/proc/cpuinfo"),
            meminfo: read("/proc/meminfo"),
            loadavg: read("/proc/loadavg"),
            net_dev: read("/proc/net/dev"),
            diskstats: read("/proc/diskstats"),
            uptime: read("/proc/uptime"),
            mounts: read("/proc/self/mounts"),
        }
    }
}

/// Samples the host, keeping the CPU times of the previous sample.
#[derive(Debug, Default)]
pub struct Collector {
    previous_cpu: Option<CpuTimes>,
    previous_cores: Vec<CpuTimes>,
}

impl Collector {
    /// Returns a collector whose first sample's CPU usage covers the time since this call.
    pub fn new() -> Self {
        let stat = parse::parse_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
        Self { previous_cpu: stat.as_ref().map(|s| s.total), previous_cores: stat.map(|s| s.cores).unwrap_or_default() }
    }

    /// Samples this machine now: reads `/proc` and calls `statvfs` on each local filesystem.
    /// Blocking (file reads and `statvfs`); call it off the async runtime.
    pub fn collect(&mut self, node_id: &str, now: SystemTime) -> HostMetrics {
        self.sample(node_id, now, &ProcFiles::read(), statvfs)
    }

    /// Builds a sample from `files`, with the usage of each filesystem from `usage` (a mount
    /// whose usage is unknown or empty is left out), and CPU usage since the previous sample.
    pub fn sample(
        &mut self,
        node_id: &str,
        now: SystemTime,
        files: &ProcFiles,
        usage: impl Fn(&Mount) -> Option<FsUsage>,
    ) -> HostMetrics {
        let stat = parse::parse_stat(&files.stat);
        let usage_percent = match (self.previous_cpu, &stat) {
            (Some(before), Some(after)) => parse::cpu_usage_percent(before, after.total),
            _ => 0.0,
        };
        // Per core, when the same cores were there the time before (one going offline or
        // coming back skips a sample).
        let core_usage_percent = match &stat {
            Some(after) if after.cores.len() == self.previous_cores.len() => self
                .previous_cores
                .iter()
                .zip(&after.cores)
                .map(|(before, after)| parse::cpu_usage_percent(*before, *after))
                .collect(),
            _ => Vec::new(),
        };
        if let Some(stat) = &stat {
            self.previous_cpu = Some(stat.total);
            self.previous_cores = stat.cores.clone();
        }
        let cores = stat
            .as_ref()
            .map(|s| s.cores.len())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let loadavg = parse::parse_loadavg(&files.loadavg);
        let io = parse::parse_diskstats(&files.diskstats);
        let disks = parse::parse_mounts(&files.mounts)
            .into_iter()
            .filter_map(|mount| {
                let fs = usage(&mount).filter(|u| u.total_bytes > 0)?;
                let device_io = io.get(&block_device_name(&mount.device)).copied().unwrap_or_default();
                Some(DiskMetrics {
                    usage_percent: fs.usage_percent(),
                    total_bytes: parse::to_i64(fs.total_bytes),
                    used_bytes: parse::to_i64(fs.used_bytes),
                    available_bytes: parse::to_i64(fs.available_bytes),
                    read_bytes: parse::to_i64(device_io.read_bytes),
                    write_bytes: parse::to_i64(device_io.write_bytes),
                    mount_point: mount.mount_point,
                    device: mount.device,
                    fs_type: mount.fs_type,
                })
            })
            .collect();
        HostMetrics {
            node_id: node_id.to_owned(),
            time: Some(now.into()),
            cpu: Some(CpuMetrics {
                usage_percent,
                cores: i32::try_from(cores).unwrap_or(i32::MAX),
                frequency_mhz: parse::parse_cpuinfo_mhz(&files.cpuinfo),
                core_usage_percent,
            }),
            memory: parse::parse_memory(&files.meminfo),
            disks,
            // The contract leaves loopback out: its traffic never leaves the machine.
            network: parse::parse_net_dev(&files.net_dev).into_iter().filter(|n| n.name != "lo").collect(),
            load: loadavg.as_ref().map(|l| l.load),
            uptime: parse::parse_uptime(&files.uptime).and_then(|u| prost_types::Duration::try_from(u).ok()),
            process_count: loadavg.map_or(0, |l| i32::try_from(l.processes).unwrap_or(i32::MAX)),
            containers: Vec::new(),
        }
    }
}

/// Returns the usage of the filesystem mounted at `mount.mount_point`, `None` if `statvfs`
/// fails (unmounted meanwhile, no permission).
pub fn statvfs(mount: &Mount) -> Option<FsUsage> {
    let s = rustix::fs::statvfs(mount.mount_point.as_str()).ok()?;
    Some(parse::fs_usage(s.f_blocks, s.f_bfree, s.f_bavail, s.f_frsize))
}

/// Returns the `/proc/diskstats` name of a mount's device: `/dev/mapper/vg-root` resolves
/// through its symlink to `dm-0`, `/dev/sda1` is `sda1`.
fn block_device_name(device: &str) -> String {
    let resolved = device
        .starts_with("/dev/")
        .then(|| std::fs::canonicalize(device).ok())
        .flatten()
        .unwrap_or_else(|| device.into());
    Path::new(&resolved).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn files(busy: u64, total: u64) -> ProcFiles {
        ProcFiles {
            // cpu0 does all the work, cpu1 idles.
            stat: format!(
                "cpu  {busy} 0 0 {} 0 0 0 0 0 0\ncpu0 {busy} 0 0 {} 0 0 0 0 0 0\ncpu1 0 0 0 {} 0 0 0 0 0 0\n",
                total - busy,
                total / 2 - busy,
                total / 2
            ),
            cpuinfo: "cpu MHz\t\t: 2000.000\n".into(),
            meminfo: "MemTotal: 1000 kB\nMemAvailable: 250 kB\n".into(),
            loadavg: "1.50 1.00 0.50 2/300 999\n".into(),
            net_dev: "lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\neth0: 10 2 0 0 0 0 0 0 20 3 0 0 0 0 0 0\n".into(),
            diskstats: "8 1 nosuchdisk1 1 0 4 0 1 0 8 0 0 0 0\n".into(),
            uptime: "90.25 10.00\n".into(),
            mounts: "/dev/nosuchdisk1 / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n/dev/gone /gone xfs rw 0 0\n".into(),
        }
    }

    #[test]
    fn a_sample_assembles_every_parser_and_cpu_usage_between_samples() {
        let mut collector = Collector::default();
        let usage = |m: &Mount| (m.mount_point == "/").then(|| parse::fs_usage(100, 40, 30, 1024));
        let first = collector.sample("n1", SystemTime::UNIX_EPOCH, &files(100, 1000), usage);
        assert_eq!(first.cpu.unwrap().usage_percent, 0.0, "no previous sample");
        let m = collector.sample("n1", SystemTime::UNIX_EPOCH, &files(400, 2000), usage);
        assert_eq!(m.node_id, "n1");
        assert_eq!(m.time, Some(prost_types::Timestamp { seconds: 0, nanos: 0 }));
        assert_eq!(
            m.cpu,
            Some(CpuMetrics {
                usage_percent: 30.0,
                cores: 2,
                frequency_mhz: 2000.0,
                core_usage_percent: vec![60.0, 0.0]
            })
        );
        assert_eq!(m.memory.unwrap().usage_percent, 75.0);
        assert_eq!(m.load.unwrap().load1, 1.5);
        assert_eq!(m.process_count, 300);
        assert_eq!(m.uptime.map(|d| Duration::try_from(d).unwrap()), Some(Duration::from_millis(90_250)));
        let names: Vec<_> = m.network.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["eth0"], "loopback is left out");
        // tmpfs is not a disk; /gone has no usage.
        assert_eq!(m.disks.len(), 1);
        let root = &m.disks[0];
        assert_eq!((root.mount_point.as_str(), root.device.as_str()), ("/", "/dev/nosuchdisk1"));
        assert_eq!((root.total_bytes, root.used_bytes, root.available_bytes), (102_400, 61_440, 30_720));
        assert_eq!((root.read_bytes, root.write_bytes), (2048, 4096));
    }

    #[test]
    fn empty_files_give_an_empty_sample_not_a_panic() {
        let m = Collector::default().sample("n", SystemTime::now(), &ProcFiles::default(), |_| None);
        assert!(m.cpu.unwrap().cores >= 1);
        assert_eq!(m.memory, None);
        assert!(m.disks.is_empty() && m.network.is_empty());
    }

    #[test]
    fn this_machine_gives_sane_values() {
        let mut collector = Collector::new();
        // Some work between the two samples, so the CPU counters move.
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let m = collector.collect("local", SystemTime::now());
        let cpu = m.cpu.unwrap();
        assert!(cpu.cores >= 1, "{cpu:?}");
        assert!((0.0..=100.0).contains(&cpu.usage_percent), "{cpu:?}");
        let memory = m.memory.unwrap();
        assert!(memory.total_bytes > 0 && memory.used_bytes <= memory.total_bytes, "{memory:?}");
        assert!(!m.disks.is_empty(), "no local filesystem found");
        assert!(m.disks.iter().all(|d| d.total_bytes > 0 && (0.0..=100.0).contains(&d.usage_percent)));
        assert!(m.process_count > 0);
        assert!(m.uptime.is_some_and(|u| u.seconds > 0 || u.nanos > 0));
        let net = parse::parse_net_dev(&std::fs::read_to_string("/proc/net/dev").unwrap());
        assert!(net.iter().any(|n| n.name == "lo"), "{net:?}");
        assert!(m.network.iter().all(|n| n.name != "lo"));
    }
}
