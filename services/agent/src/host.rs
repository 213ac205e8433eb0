//! What the agent knows about its machine: identity, capacity and current usage, read from
//! `/proc` and `/etc` (Linux).

use std::{sync::Mutex, time::Duration};

use persys_proto::{common::v1::ResourceQuantities, scheduler::v1::NodeInfo};

/// The machine's description and resources.
#[derive(Debug)]
pub struct Host {
    /// Hostname (or the configured node name).
    pub hostname: String,
    /// Machine and software details.
    pub info: NodeInfo,
    /// Total resources.
    pub capacity: ResourceQuantities,
    /// Capacity minus the system reserve.
    pub allocatable: ResourceQuantities,
    cpu: Mutex<Option<CpuTimes>>,
}

/// Busy and total jiffies from `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Jiffies not idle.
    pub busy: u64,
    /// All jiffies.
    pub total: u64,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Returns a value of `/proc/meminfo` in bytes; `None` when absent, negative or too large.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<i64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kib: i64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024).filter(|b| *b >= 0)
    })
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    stat.lines().filter_map(parse_cpu_line).find_map(|(name, times)| (name == "cpu").then_some(times))
}

/// Parses one `cpu` or `cpuN` line of `/proc/stat` into its name and times; `None` for any
/// other line or one with fewer than four numbers.
pub fn parse_cpu_line(line: &str) -> Option<(&str, CpuTimes)> {
    let mut fields = line.split_whitespace();
    let name =
        fields.next().filter(|n| n.strip_prefix("cpu").is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit())))?;
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice).
    let values: Vec<u64> = fields.map_while(|f| f.parse().ok()).take(8).collect();
    let idle = values.get(3)?.saturating_add(values.get(4).copied().unwrap_or(0));
    let total = values.iter().fold(0u64, |sum, v| sum.saturating_add(*v));
    Some((name, CpuTimes { busy: total.saturating_sub(idle), total }))
}

/// Returns the CPU in use between two samples, in millicores of a machine with `cpus` CPUs.
pub fn cpu_millis_used(before: CpuTimes, after: CpuTimes, cpus: i64) -> i64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0;
    }
    let busy = after.busy.saturating_sub(before.busy);
    (busy as f64 / total as f64 * cpus as f64 * 1000.0).round() as i64
}

/// Parses `PRETTY_NAME` from `/etc/os-release`.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim().trim_matches('"').to_owned())
}

impl Host {
    /// Reads the machine; `node_name` overrides the hostname, `reserved` is subtracted from
    /// capacity.
    pub fn detect(node_name: Option<&str>, reserved: &ResourceQuantities) -> Self {
        let hostname =
            node_name.map(str::to_owned).unwrap_or_else(|| read("/proc/sys/kernel/hostname").trim().to_owned());
        let cpus = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
        let memory = meminfo_bytes(&read("/proc/meminfo"), "MemTotal").unwrap_or(0);
        let capacity = ResourceQuantities { cpu_millis: cpus * 1000, memory_bytes: memory, disk_bytes: 0 };
        let allocatable = ResourceQuantities {
            cpu_millis: (capacity.cpu_millis - reserved.cpu_millis).max(0),
            memory_bytes: (capacity.memory_bytes - reserved.memory_bytes).max(0),
            disk_bytes: 0,
        };
        let info = NodeInfo {
            os: std::env::consts::OS.into(),
            arch: match std::env::consts::ARCH {
                "x86_64" => "amd64".into(),
                "aarch64" => "arm64".into(),
                other => other.into(),
            },
            kernel_version: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os_image: os_pretty_name(&read("/etc/os-release")).unwrap_or_default(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            container_runtime: String::new(),
            container_runtime_version: String::new(),
            machine_id: read("/etc/machine-id").trim().to_owned(),
        };
        let cpu = Mutex::new(parse_cpu_times(&read("/proc/stat")));
        Self { hostname, info, capacity, allocatable, cpu }
    }

    /// Returns the resources in use now: memory from `/proc/meminfo`, CPU averaged since the
    /// previous call.
    pub fn usage(&self) -> ResourceQuantities {
        let meminfo = read("/proc/meminfo");
        let total = meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0);
        let available = meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(total);
        let now = parse_cpu_times(&read("/proc/stat"));
        let mut last = self.cpu.lock().expect("cpu lock");
        let cpu_millis = match (*last, now) {
            (Some(before), Some(after)) => cpu_millis_used(before, after, self.capacity.cpu_millis / 1000),
            _ => 0,
        };
        *last = now;
        ResourceQuantities { cpu_millis, memory_bytes: (total - available).max(0), disk_bytes: 0 }
    }
}

/// Returns the wait before reconnect attempt `attempt` (1-based): 1 s doubling up to `max`,
/// scaled by `jitter` in `[0, 1)` into the upper half of that range, so many agents restarted
/// together do not reconnect in lockstep.
pub fn backoff(attempt: u32, max: Duration, jitter: f64) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_cpu_are_parsed_from_proc() {
        let meminfo = "MemTotal:       16318724 kB\nMemFree:  100 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(16318724 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(8000000 * 1024));
        let a = parse_cpu_times("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = parse_cpu_times("cpu  200 0 200 1400 0 0 0 0 0 0\n").unwrap();
        // 200 busy of 800 jiffies on 4 CPUs = 1 CPU.
        assert_eq!(cpu_millis_used(a, b, 4), 1000);
        assert_eq!(
            os_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n").as_deref(),
            Some("Debian GNU/Linux 12")
        );
    }

    #[test]
    fn backoff_doubles_from_one_second_to_the_cap_with_jitter() {
        let max = Duration::from_secs(30);
        let ms = |attempt, jitter| backoff(attempt, max, jitter).as_millis();
        assert_eq!(ms(1, 0.0), 500);
        assert!((999..=1000).contains(&ms(1, 0.999_999)));
        assert!((3999..=4000).contains(&ms(3, 0.999_999)));
        assert!((29_999..=30_000).contains(&ms(6, 0.999_999)));
        assert_eq!(ms(40, 0.0), 15_000);
    }
}
