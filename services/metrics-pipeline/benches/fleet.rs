//! A fleet on one pipeline: `PERSYS_BENCH_AGENTS` (1000) simulated agents, each on its own mTLS
//! connection with its own node certificate, send one full host sample (CPU, memory, load, two
//! disks, two interfaces, three containers) every `PERSYS_BENCH_INTERVAL_MS` (5000), spread
//! evenly over the interval as real agents drift apart; `PERSYS_BENCH_WATCHED` (100) of them are
//! watched live with `WatchHostMetrics`, each by a subscriber on its own connection (as the
//! gateway's). For `PERSYS_BENCH_SECONDS` (30) it measures whether ingest keeps up (every batch
//! acknowledged, the time from send to acknowledgement) and how far the watchers lag (sample
//! time → event received). The baseline in the same run: one agent and one watcher alone on the
//! same pipeline first. Prints figures; asserts only that nothing was refused, dropped or lost.
//! Needs `PERSYS_TEST_PG_ADMIN_URL` (`scripts/bench fleet` starts one).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Pipeline, batch, certs_for, connection, now_ms, ts};
use persys_kit::identity::Role;
use persys_proto::metrics::v1::{
    ContainerMetrics, CpuMetrics, DiskMetrics, HostMetrics, IngestRequest, LoadAverage, MemoryMetrics,
    NetworkInterfaceMetrics, WatchHostMetricsRequest, metrics_ingest_service_client::MetricsIngestServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One agent's sample at `at_ms`, as the agent fills it on a small host running three
/// containers.
fn full_sample(node: &str, at_ms: i64, n: u64) -> HostMetrics {
    let wobble = (n % 17) as f64;
    HostMetrics {
        node_id: node.into(),
        time: Some(ts(at_ms)),
        cpu: Some(CpuMetrics {
            usage_percent: 20.0 + wobble,
            cores: 2,
            frequency_mhz: 2400.0,
            core_usage_percent: vec![30.0 + wobble, 10.0 + wobble],
        }),
        memory: Some(MemoryMetrics {
            total_bytes: 8 << 30,
            used_bytes: 3 << 30,
            available_bytes: 5 << 30,
            usage_percent: 37.5,
            swap_total_bytes: 1 << 30,
            swap_used_bytes: 0,
        }),
        disks: ["/", "/var/lib/docker"]
            .iter()
            .map(|m| DiskMetrics {
                mount_point: (*m).into(),
                device: "/dev/vda1".into(),
                fs_type: "ext4".into(),
                total_bytes: 100 << 30,
                used_bytes: 40 << 30,
                available_bytes: 60 << 30,
                usage_percent: 40.0,
                read_bytes: (n * 4096) as i64,
                write_bytes: (n * 8192) as i64,
            })
            .collect(),
        network: ["eth0", "docker0"]
            .iter()
            .map(|i| NetworkInterfaceMetrics {
                name: (*i).into(),
                rx_bytes: (n * 1500) as i64,
                tx_bytes: (n * 900) as i64,
                rx_packets: n as i64,
                tx_packets: n as i64,
                ..Default::default()
            })
            .collect(),
        load: Some(LoadAverage { load1: 0.4, load5: 0.3, load15: 0.2 }),
        uptime: Some(prost_types::Duration { seconds: 86_400 + n as i64 * 5, nanos: 0 }),
        process_count: 180,
        containers: (0..3)
            .map(|c| ContainerMetrics {
                container_id: format!("{node}-c{c}"),
                name: format!("app-{c}"),
                image: "registry.local/app:1".into(),
                state: "running".into(),
                cpu_percent: 1.5 + c as f64,
                memory_usage_bytes: 64 << 20,
                memory_limit_bytes: 256 << 20,
                ..Default::default()
            })
            .collect(),
    }
}

#[derive(Default)]
struct Stats {
    /// Send → acknowledgement, ms.
    acks: Mutex<Vec<f64>>,
    /// Sample time → watch event received, ms.
    lags: Mutex<Vec<f64>>,
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    events: AtomicU64,
    watch_ended: AtomicU64,
}

/// Starts agent `node`: first batch after `offset`, then one every `interval`, while `run`.
async fn agent(
    p: &Pipeline,
    node: String,
    offset: Duration,
    interval: Duration,
    stats: Arc<Stats>,
    measuring: Arc<AtomicBool>,
    run: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let mut client =
        MetricsIngestServiceClient::new(connection(p.certs.path(), p.running.addr.port(), &node).channel());
    let (tx, rx) = mpsc::channel::<IngestRequest>(4);
    let mut acks = client.ingest(ReceiverStream::new(rx)).await.expect("ingest opens").into_inner();
    let sent_at: Arc<Mutex<std::collections::VecDeque<(Instant, bool)>>> = Arc::default();
    {
        let (stats, sent_at) = (stats.clone(), sent_at.clone());
        tokio::spawn(async move {
            while let Ok(Some(ack)) = acks.message().await {
                let (at, timed) = sent_at.lock().unwrap().pop_front().expect("an acknowledgement for a batch sent");
                if ack.rejected_samples > 0 {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                }
                stats.acked.fetch_add(1, Ordering::Relaxed);
                if timed {
                    stats.acks.lock().unwrap().push(at.elapsed().as_secs_f64() * 1000.0);
                }
            }
        });
    }
    tokio::spawn(async move {
        tokio::time::sleep(offset).await;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        while run.load(Ordering::Relaxed) {
            ticks.tick().await;
            seq += 1;
            let request = batch(&node, seq, vec![full_sample(&node, now_ms(), seq)]);
            sent_at.lock().unwrap().push_back((Instant::now(), measuring.load(Ordering::Relaxed)));
            stats.sent.fetch_add(1, Ordering::Relaxed);
            if tx.send(request).await.is_err() {
                return;
            }
        }
    })
}

/// A live watcher of `node`, counting lag once `measuring`.
async fn watcher(p: &Pipeline, node: String, stats: Arc<Stats>, measuring: Arc<AtomicBool>) {
    let mut query = p.query_as("root", Role::Admin);
    let mut watch = query
        .watch_host_metrics(WatchHostMetricsRequest { node_ids: vec![node], ..Default::default() })
        .await
        .expect("the watch opens")
        .into_inner();
    tokio::spawn(async move {
        loop {
            match watch.message().await {
                Ok(Some(event)) => {
                    let Some(time) = event.metrics.and_then(|m| m.time) else { continue };
                    if measuring.load(Ordering::Relaxed) {
                        let at = time.seconds * 1000 + i64::from(time.nanos) / 1_000_000;
                        stats.lags.lock().unwrap().push((now_ms() - at) as f64);
                        stats.events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    stats.watch_ended.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
}

fn quantiles(v: &Mutex<Vec<f64>>) -> String {
    let v = v.lock().unwrap().clone();
    let n = v.len();
    match common::p50_p99_max(v) {
        Some((p50, p99, max)) => format!("{n:>8} {p50:>8.1} {p99:>8.1} {max:>8.1}"),
        None => format!("{:>8} {:>8} {:>8} {:>8}", 0, "-", "-", "-"),
    }
}

/// Runs `measuring` for `window` and returns (sent, acked, events) counted in it.
async fn measure(stats: &Stats, measuring: &AtomicBool, window: Duration) -> (u64, u64, u64) {
    let before = (stats.sent.load(Ordering::Relaxed), stats.acked.load(Ordering::Relaxed));
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(window).await;
    measuring.store(false, Ordering::Relaxed);
    (
        stats.sent.load(Ordering::Relaxed) - before.0,
        stats.acked.load(Ordering::Relaxed) - before.1,
        stats.events.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var("PERSYS_TEST_PG_ADMIN_URL").is_err() {
        anyhow::bail!("PERSYS_TEST_PG_ADMIN_URL is not set: run `scripts/bench fleet`");
    }
    let agents = knob("PERSYS_BENCH_AGENTS", 1000).max(2);
    let watched = knob("PERSYS_BENCH_WATCHED", 100).clamp(1, agents);
    let interval = Duration::from_millis(knob("PERSYS_BENCH_INTERVAL_MS", 5000));
    let window = Duration::from_secs(knob("PERSYS_BENCH_SECONDS", 30));
    let nodes: Vec<String> = (0..agents).map(|i| format!("sim-{i:04}")).collect();
    let t = Instant::now();
    let certs = certs_for(&nodes);
    let certs_took = t.elapsed();
    let p = Pipeline::start_for(certs, |_| {}).await.expect("PostgreSQL is configured");
    let run = Arc::new(AtomicBool::new(true));

    // Baseline: one agent and its watcher alone.
    let (alone, alone_measuring) = (Arc::new(Stats::default()), Arc::new(AtomicBool::new(false)));
    let first =
        agent(&p, nodes[0].clone(), Duration::ZERO, interval, alone.clone(), alone_measuring.clone(), run.clone())
            .await;
    while alone.acked.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher(&p, nodes[0].clone(), alone.clone(), alone_measuring.clone()).await;
    let baseline_window = (interval * 4).min(window);
    let (b_sent, b_acked, b_events) = measure(&alone, &alone_measuring, baseline_window).await;
    run.store(false, Ordering::Relaxed);
    let _ = first.await;

    // The fleet.
    run.store(true, Ordering::Relaxed);
    let (stats, measuring) = (Arc::new(Stats::default()), Arc::new(AtomicBool::new(false)));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let offset = interval.mul_f64(i as f64 / agents as f64);
        tasks.push(agent(&p, node.clone(), offset, interval, stats.clone(), measuring.clone(), run.clone()).await);
    }
    let connect_took = t.elapsed();
    // Every agent has sent once before the watchers subscribe (a node is known once it has).
    while stats.acked.load(Ordering::Relaxed) < agents - 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in nodes.iter().skip(1).take(watched as usize) {
        watcher(&p, node.clone(), stats.clone(), measuring.clone()).await;
    }
    tokio::time::sleep(interval).await; // one round with everyone connected before timing
    let (sent, acked, events) = measure(&stats, &measuring, window).await;
    run.store(false, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    // The last batches of the window are acknowledged shortly after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.acked.load(Ordering::Relaxed) < stats.sent.load(Ordering::Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let per_s = |n: u64, w: Duration| n as f64 / w.as_secs_f64();
    println!(
        "fleet: {} simulated agents on their own mTLS connections, one full host sample every {} ms; {} watched live",
        agents - 1,
        interval.as_millis(),
        watched
    );
    println!(
        "  set-up: {agents} node certificates in {:.1} s; {} ingest streams opened in {:.1} s",
        certs_took.as_secs_f64(),
        agents - 1,
        connect_took.as_secs_f64()
    );
    println!("                                          count   p50 ms   p99 ms   max ms");
    println!("  alone (1 agent, 1 watcher), ack       {}", quantiles(&alone.acks));
    println!("  alone, watcher lag                    {}", quantiles(&alone.lags));
    println!("  fleet, ack (send → acknowledged)      {}", quantiles(&stats.acks));
    println!("  fleet, watcher lag (sample → event)   {}", quantiles(&stats.lags));
    println!(
        "  fleet, {:.0} s window: {sent} batches sent ({:.0}/s, expected {:.0}/s), {acked} acknowledged; {events} watch events (expected about {:.0})",
        window.as_secs_f64(),
        per_s(sent, window),
        (agents - 1) as f64 / interval.as_secs_f64(),
        watched as f64 * window.as_secs_f64() / interval.as_secs_f64(),
    );
    println!(
        "  baseline window {:.0} s: {b_sent} sent, {b_acked} acknowledged, {b_events} watch events",
        baseline_window.as_secs_f64()
    );
    let refused = stats.refused.load(Ordering::Relaxed) + alone.refused.load(Ordering::Relaxed);
    let ended = stats.watch_ended.load(Ordering::Relaxed) + alone.watch_ended.load(Ordering::Relaxed);
    println!(
        "  refused batches: {refused}; watches ended early: {ended}; unacknowledged at the end: {}",
        stats.sent.load(Ordering::Relaxed) - stats.acked.load(Ordering::Relaxed)
    );
    anyhow::ensure!(refused == 0, "{refused} batches were refused");
    anyhow::ensure!(ended == 0, "{ended} watches ended (a slow watcher is dropped: lag grew too far)");
    anyhow::ensure!(
        stats.acked.load(Ordering::Relaxed) == stats.sent.load(Ordering::Relaxed),
        "ingest fell behind: batches left unacknowledged"
    );
    p.finish().await;
    Ok(())
}
