//! Parsers of the Linux `/proc` files a host sample is built from.
//!
//! Each takes the file's text and returns `None` (or nothing) for what it cannot read: the
//! files' formats are stable, but a parser must never panic, so every field is looked up
//! with checks and every difference saturates.

use std::{collections::BTreeMap, time::Duration};

use persys_proto::metrics::v1::{LoadAverage, MemoryMetrics, NetworkInterfaceMetrics};

use crate::host::{CpuTimes, meminfo_bytes, parse_cpu_line};

/// The CPU times of `/proc/stat`: all CPUs together and each core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// The aggregate `cpu` line.
    pub total: CpuTimes,
    /// The `cpuN` lines, in file order.
    pub cores: Vec<CpuTimes>,
}

/// The fields of `/proc/loadavg`.
#[derive(Clone, Debug, PartialEq)]
pub struct Loadavg {
    /// Load averages over 1, 5 and 15 minutes.
    pub load: LoadAverage,
    /// Runnable scheduling entities now (the `running` of `running/total`).
    pub running: u32,
    /// Scheduling entities (processes and threads) that exist (the `total`).
    pub processes: u32,
}

/// Bytes a block device has read and written since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskIo {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

/// One mounted filesystem of `/proc/self/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Source, e.g. `/dev/nvme0n1p2` (or a dataset name such as `tank/home` on ZFS).
    pub device: String,
    /// Where it is mounted, with the kernel's octal escapes (`\040` for a space) decoded.
    pub mount_point: String,
    /// Filesystem type, e.g. `ext4`.
    pub fs_type: String,
}

/// The size and usage of a filesystem, in bytes, as `statvfs` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Size.
    pub total_bytes: u64,
    /// In use (size minus free blocks).
    pub used_bytes: u64,
    /// Free for unprivileged users (excludes the blocks reserved for root).
    pub available_bytes: u64,
}

/// Filesystem types that hold no disk data (kernel interfaces, memory, overlays of other
/// mounts, images that are always full) or live on another machine (their `statvfs` can hang
/// while the server is away).
const NOT_LOCAL_DISKS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "9p",
    "afs",
    "ceph",
    "cifs",
    "glusterfs",
    "lustre",
    "nfs",
    "nfs4",
    "smb3",
    "smbfs",
];

/// Parses the aggregate and per-core lines of `/proc/stat`; `None` without a `cpu` line.
pub fn parse_stat(stat: &str) -> Option<CpuStat> {
    let mut total = None;
    let mut cores = Vec::new();
    for (name, times) in stat.lines().filter_map(parse_cpu_line) {
        if name == "cpu" {
            total = total.or(Some(times));
        } else {
            cores.push(times);
        }
    }
    Some(CpuStat { total: total?, cores })
}

/// Returns the share of CPU time spent busy between two samples, percent (0-100); 0 when no
/// time passed or the counters went backwards.
pub fn cpu_usage_percent(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = after.busy.saturating_sub(before.busy);
    (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
}

/// Returns the mean of the `cpu MHz` lines of `/proc/cpuinfo`; 0 when there are none (some
/// architectures do not report it).
pub fn parse_cpuinfo_mhz(cpuinfo: &str) -> f64 {
    let mhz: Vec<f64> = cpuinfo
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "cpu MHz").then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .filter(|v| v.is_finite() && *v >= 0.0)
        .collect();
    if mhz.is_empty() { 0.0 } else { mhz.iter().sum::<f64>() / mhz.len() as f64 }
}

/// Parses memory and swap from `/proc/meminfo`; `None` without a positive `MemTotal`. Kernels
/// older than 3.14 have no `MemAvailable`: free plus buffers plus page cache stands in.
pub fn parse_memory(meminfo: &str) -> Option<MemoryMetrics> {
    let total = meminfo_bytes(meminfo, "MemTotal").filter(|t| *t > 0)?;
    let field = |key| meminfo_bytes(meminfo, key).unwrap_or(0);
    let available = meminfo_bytes(meminfo, "MemAvailable")
        .unwrap_or_else(|| field("MemFree").saturating_add(field("Buffers")).saturating_add(field("Cached")))
        .clamp(0, total);
    let used = total.saturating_sub(available);
    let swap_total = field("SwapTotal");
    Some(MemoryMetrics {
        total_bytes: total,
        used_bytes: used,
        available_bytes: available,
        usage_percent: used as f64 / total as f64 * 100.0,
        swap_total_bytes: swap_total,
        swap_used_bytes: swap_total.saturating_sub(field("SwapFree")).max(0),
    })
}

/// Parses `/proc/loadavg` (`0.20 0.18 0.12 1/80 11206`).
pub fn parse_loadavg(text: &str) -> Option<Loadavg> {
    let mut fields = text.split_whitespace();
    let mut load = || fields.next()?.parse::<f64>().ok().filter(|l| l.is_finite() && *l >= 0.0);
    let (load1, load5, load15) = (load()?, load()?, load()?);
    let (running, processes) = fields.next()?.split_once('/')?;
    Some(Loadavg {
        load: LoadAverage { load1, load5, load15 },
        running: running.parse().ok()?,
        processes: processes.parse().ok()?,
    })
}

/// Parses the counters of every interface in `/proc/net/dev`, loopback included, in file
/// order; lines that are not `NAME: 16 numbers` (the two headers) are skipped.
pub fn parse_net_dev(text: &str) -> Vec<NetworkInterfaceMetrics> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            let c: Vec<u64> = counters.split_whitespace().map_while(|f| f.parse().ok()).collect();
            if name.is_empty() || c.len() < 16 {
                return None;
            }
            // Receive: bytes packets errs drop fifo frame compressed multicast, then transmit:
            // bytes packets errs drop fifo colls carrier compressed.
            Some(NetworkInterfaceMetrics {
                name: name.to_owned(),
                rx_bytes: to_i64(c[0]),
                tx_bytes: to_i64(c[8]),
                rx_packets: to_i64(c[1]),
                tx_packets: to_i64(c[9]),
                rx_errors: to_i64(c[2]),
                tx_errors: to_i64(c[10]),
            })
        })
        .collect()
}

/// Parses `/proc/diskstats` into bytes read and written per device name (`sda`, `nvme0n1p2`,
/// `dm-0`). The kernel counts 512-byte sectors whatever the device's block size.
pub fn parse_diskstats(text: &str) -> BTreeMap<String, DiskIo> {
    text.lines()
        .filter_map(|line| {
            // major minor name reads merged sectors_read ms writes merged sectors_written ...
            let f: Vec<&str> = line.split_whitespace().collect();
            let numbered = |i: usize| f.get(i).is_some_and(|n| n.parse::<u32>().is_ok());
            if !numbered(0) || !numbered(1) {
                return None;
            }
            let sectors = |i: usize| f.get(i)?.parse::<u64>().ok();
            let io =
                DiskIo { read_bytes: sectors(5)?.saturating_mul(512), write_bytes: sectors(9)?.saturating_mul(512) };
            Some(((*f.get(2)?).to_owned(), io))
        })
        .collect()
}

/// Parses the time since boot from `/proc/uptime` (`350735.47 234388.90`).
pub fn parse_uptime(text: &str) -> Option<Duration> {
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// Parses `/proc/self/mounts` into local disk filesystems: pseudo, memory, overlay and network
/// filesystems are left out, and so is every mount of a device after its first (bind mounts
/// and btrfs subvolumes show the same filesystem again).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (device, mount_point, fs_type) = (f.next()?, f.next()?, f.next()?);
            if !mount_point.starts_with('/') || !is_local_disk(fs_type) || !seen.insert(device.to_owned()) {
                return None;
            }
            Some(Mount { device: unescape(device), mount_point: unescape(mount_point), fs_type: fs_type.to_owned() })
        })
        .collect()
}

/// Returns whether a filesystem type holds data on a local disk (see [`parse_mounts`]).
pub fn is_local_disk(fs_type: &str) -> bool {
    // FUSE filesystems are user-space (lxcfs, sshfs, rclone...) except `fuseblk`, which sits
    // on a block device (ntfs-3g, exfat).
    !NOT_LOCAL_DISKS.contains(&fs_type) && !fs_type.starts_with("fuse.") && fs_type != "fuse"
}

/// Returns the usage of a filesystem from `statvfs` block counts.
pub fn fs_usage(blocks: u64, free: u64, available: u64, fragment_size: u64) -> FsUsage {
    FsUsage {
        total_bytes: blocks.saturating_mul(fragment_size),
        used_bytes: blocks.saturating_sub(free).saturating_mul(fragment_size),
        available_bytes: available.saturating_mul(fragment_size),
    }
}

impl FsUsage {
    /// Returns `used / (used + available)` in percent, as `df` shows it: the blocks reserved
    /// for root count as unavailable rather than free.
    pub fn usage_percent(&self) -> f64 {
        let usable = self.used_bytes.saturating_add(self.available_bytes);
        if usable == 0 { 0.0 } else { self.used_bytes as f64 / usable as f64 * 100.0 }
    }
}

/// Converts a kernel counter to the contract's signed integer, saturating.
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Decodes the octal escapes the kernel writes for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes.get(i + 1..i + 4).filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(decoded) => {
                out.push(decoded);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "\
cpu  516969 0 80784 7998968 3865 0 6268 7157 0 0
cpu0 255384 0 39159 4004881 1148 0 3016 3489 0 0
cpu1 261584 0 41624 3994086 2716 0 3251 3668 0 0
intr 62870713 0 9 0 0
ctxt 118830471
btime 1718000000
processes 1262451
procs_running 1
procs_blocked 0
";

    #[test]
    fn stat_gives_total_and_per_core_times() {
        let stat = parse_stat(STAT).unwrap();
        // user+nice+system+idle+iowait+irq+softirq+steal; idle and iowait are not busy.
        assert_eq!(stat.total, CpuTimes { busy: 611178, total: 8614011 });
        assert_eq!(stat.cores.len(), 2);
        assert_eq!(stat.cores[0], CpuTimes { busy: 301048, total: 4307077 });
        let later = CpuTimes { busy: stat.total.busy + 250, total: stat.total.total + 1000 };
        assert_eq!(cpu_usage_percent(stat.total, later), 25.0);
        // Counters that went backwards (or did not move) give 0, never a wrapped value.
        assert_eq!(cpu_usage_percent(later, stat.total), 0.0);
        assert_eq!(cpu_usage_percent(later, later), 0.0);
    }

    #[test]
    fn cpuinfo_frequency_is_the_mean_of_the_cores() {
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2400.000\nprocessor\t: 1\ncpu MHz\t\t: 3000.000\n";
        assert_eq!(parse_cpuinfo_mhz(cpuinfo), 2700.0);
        assert_eq!(parse_cpuinfo_mhz("processor : 0\nBogoMIPS : 50.00\n"), 0.0);
    }

    #[test]
    fn meminfo_gives_used_available_and_swap() {
        let meminfo = "\
MemTotal:       16318724 kB
MemFree:         1203420 kB
MemAvailable:    8159362 kB
Buffers:          412008 kB
Cached:          6611404 kB
SwapCached:         1024 kB
SwapTotal:       2097148 kB
SwapFree:        1048574 kB
";
        let m = parse_memory(meminfo).unwrap();
        assert_eq!(m.total_bytes, 16318724 * 1024);
        assert_eq!(m.available_bytes, 8159362 * 1024);
        assert_eq!(m.used_bytes, (16318724 - 8159362) * 1024);
        assert!((m.usage_percent - 50.0).abs() < 0.01, "{}", m.usage_percent);
        assert_eq!(m.swap_total_bytes, 2097148 * 1024);
        assert_eq!(m.swap_used_bytes, 1048574 * 1024);
        // Without MemAvailable (old kernels): free + buffers + cache.
        let old = parse_memory("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n").unwrap();
        assert_eq!(old.available_bytes, 400 * 1024);
        assert_eq!(old.swap_used_bytes, 0);
    }

    #[test]
    fn loadavg_gives_loads_and_the_process_count() {
        let l = parse_loadavg("0.22 0.70 0.83 1/171 12728\n").unwrap();
        assert_eq!(l.load, LoadAverage { load1: 0.22, load5: 0.70, load15: 0.83 });
        assert_eq!((l.running, l.processes), (1, 171));
    }

    #[test]
    fn net_dev_gives_each_interfaces_counters() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 162787797  326708    0    0    0     0          0         0 162787797  326708    0    0    0     0       0          0
  eth0: 388159524   19675    3    0    0     0          0         0  1516853   15422    4    0    0     0       0          0
";
        let net = parse_net_dev(text);
        let names: Vec<_> = net.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0"]);
        let eth0 = &net[1];
        assert_eq!((eth0.rx_bytes, eth0.rx_packets, eth0.rx_errors), (388159524, 19675, 3));
        assert_eq!((eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors), (1516853, 15422, 4));
    }

    #[test]
    fn diskstats_count_512_byte_sectors() {
        let text = "\
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 491839 21385 23701162 589620 126263 211652 56189264 589301 0 104184 1215179 26112 98 10998728 13875 21374 22382
 259       1 nvme0n1p2 100 0 8 5 200 0 16 9 0 0 0
";
        let io = parse_diskstats(text);
        assert_eq!(io["vda"], DiskIo { read_bytes: 23701162 * 512, write_bytes: 56189264 * 512 });
        assert_eq!(io["nvme0n1p2"], DiskIo { read_bytes: 4096, write_bytes: 8192 });
        assert_eq!(io["loop0"], DiskIo::default());
    }

    #[test]
    fn uptime_is_the_first_field() {
        assert_eq!(parse_uptime("43171.50 79989.68\n"), Some(Duration::from_millis(43_171_500)));
    }

    #[test]
    fn mounts_keep_the_first_mount_of_each_local_disk() {
        let text = r"proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12335016k 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=3264556k,mode=755 0 0
/dev/nvme0n1p2 / ext4 rw,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime,fmask=0077 0 0
/dev/nvme0n1p2 /var/lib/docker ext4 rw,relatime 0 0
/dev/sdb1 /mnt/my\040disk xfs rw,relatime 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw,lowerdir=/x 0 0
/dev/loop3 /snap/core/1 squashfs ro,nodev 0 0
nas:/export /mnt/nas nfs4 rw,vers=4.2 0 0
lxcfs /var/lib/lxcfs fuse.lxcfs rw,nosuid 0 0
/dev/sdc1 /mnt/win fuseblk rw,user_id=0 0 0
tank/home /home zfs rw,xattr 0 0
";
        let mounts = parse_mounts(text);
        let points: Vec<_> = mounts.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/boot/efi", "/mnt/my disk", "/mnt/win", "/home"]);
        assert_eq!(
            mounts[0],
            Mount { device: "/dev/nvme0n1p2".into(), mount_point: "/".into(), fs_type: "ext4".into() }
        );
    }

    #[test]
    fn statvfs_counts_become_bytes_and_df_percent() {
        // 100 blocks of 4 KiB, 30 free of which 20 available to users (10 reserved for root).
        let u = fs_usage(100, 30, 20, 4096);
        assert_eq!(u, FsUsage { total_bytes: 409_600, used_bytes: 286_720, available_bytes: 81_920 });
        assert!((u.usage_percent() - 77.777).abs() < 0.01);
        assert_eq!(fs_usage(0, 0, 0, 4096).usage_percent(), 0.0);
        // Inconsistent counts saturate instead of wrapping.
        assert_eq!(fs_usage(10, 20, 5, u64::MAX).used_bytes, 0);
    }

    #[test]
    fn garbage_and_truncated_input_gives_nothing_and_never_panics() {
        let garbage = [
            "",
            "\n\n",
            "cpu",
            "cpu 1 2",
            "cpu  x y z w",
            "cpux 1 2 3 4",
            "MemTotal: lots kB",
            "MemTotal: -5 kB",
            "MemTotal: 9223372036854775807 kB",
            "0.1 0.2",
            "0.1 0.2 0.3 1",
            "NaN 0.2 0.3 1/2 3",
            "0.1 0.2 0.3 1/x 3",
            "lo: 1 2 3",
            ": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
            "   8 0 sda 1 2",
            "-1 0",
            "1e400 5",
            "/dev/sda1",
            "/dev/sda1 /mnt",
            "\\ \\0 ext4",
            "/dev/x /a\\04 ext4",
            "\u{1F600}: \u{1F600}\u{1F600}",
        ];
        for text in garbage {
            assert_eq!(parse_stat(text), None, "{text:?}");
            assert_eq!(parse_memory(text), None, "{text:?}");
            assert_eq!(parse_loadavg(text), None, "{text:?}");
            assert!(parse_net_dev(text).is_empty(), "{text:?}");
            assert!(parse_diskstats(text).is_empty(), "{text:?}");
            assert_eq!(parse_cpuinfo_mhz(text), 0.0, "{text:?}");
            let mounts = parse_mounts(text);
            assert!(mounts.iter().all(|m| m.fs_type == "ext4"), "{text:?}");
        }
        for text in ["", "up", "-1 0", "1e400 5", "NaN 1", "inf"] {
            assert_eq!(parse_uptime(text), None, "{text:?}");
        }
        // Half-broken files keep what is readable: a truncated escape stays as written, one
        // that is not UTF-8 is replaced.
        assert_eq!(parse_mounts(r"/dev/x /a\04 ext4 rw 0 0")[0].mount_point, r"/a\04");
        assert_eq!(parse_mounts(r"/dev/x /\377 ext4 rw 0 0")[0].mount_point, "/\u{FFFD}");
        let huge = format!("cpu  {m} {m} {m} {m} {m}\n", m = u64::MAX);
        assert_eq!(parse_stat(&huge).unwrap().total, CpuTimes { busy: 0, total: u64::MAX });
        let net = format!("eth0: {}", vec![u64::MAX.to_string(); 16].join(" "));
        assert_eq!(parse_net_dev(&net)[0].rx_bytes, i64::MAX);
        let disk = format!("8 0 sda 1 1 {m} 1 1 1 {m}", m = u64::MAX);
        assert_eq!(parse_diskstats(&disk)["sda"].read_bytes, u64::MAX);
    }
}
