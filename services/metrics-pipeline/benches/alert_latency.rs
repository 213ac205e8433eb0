//! Alert evaluation latency through the real pipeline: an agent stream (mTLS gRPC) sends one
//! breaching CPU sample, and the time until a `WatchAlerts` subscriber sees the alert FIRING is
//! taken (then the same for RESOLVED after a normal sample); first on an idle pipeline, then
//! while other agent streams ingest as fast as they can, whose rate is printed beside it. Prints
//! figures; asserts only that each alert fires and resolves. Needs `PERSYS_TEST_PG_ADMIN_URL`
//! (`scripts/bench alert_latency` starts one). Knobs: `PERSYS_BENCH_ROUNDS` (200),
//! `PERSYS_BENCH_WRITERS` (4).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Pipeline, batch, now_ms, sample};
use persys_kit::identity::Role;
use persys_proto::metrics::v1::{
    AlertRule, AlertState, Comparator, CreateAlertRuleRequest, IngestRequest, Metric, WatchAlertsRequest,
    WatchAlertsResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Host samples per background batch (10 minutes at 5 s).
const PER_BATCH: usize = 120;
/// Background batches each writer keeps in flight.
const IN_FLIGHT: usize = 4;

/// An ingest stream whose acknowledgements are read (and counted) by a task of its own.
struct Sender {
    tx: mpsc::Sender<IngestRequest>,
}

fn open(p: &Pipeline, node: &str, acked: Arc<AtomicU64>) -> impl std::future::Future<Output = Sender> {
    let mut client = p.ingest_as(node);
    async move {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let mut acks = client.ingest(ReceiverStream::new(rx)).await.expect("ingest opens").into_inner();
        tokio::spawn(async move {
            while let Ok(Some(ack)) = acks.message().await {
                assert_eq!(ack.rejected_samples, 0, "samples were refused: {ack:?}");
                acked.fetch_add(1, Ordering::Relaxed);
            }
        });
        Sender { tx }
    }
}

async fn until(watch: &mut Streaming<WatchAlertsResponse>, state: AlertState) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("the alert changes within 30 s")
            .expect("the watch stays open")
            .expect("the watch stays open");
        if event.alert.is_some_and(|a| a.state == state as i32) {
            return;
        }
    }
}

/// Time of the last probe sample.
static LAST: AtomicI64 = AtomicI64::new(0);

/// `rounds` times: a breaching sample, timed until FIRING is watched; a normal one, until
/// RESOLVED. Returns the two sets of latencies in milliseconds.
async fn probe(
    rounds: usize,
    sender: &Sender,
    watch: &mut Streaming<WatchAlertsResponse>,
    seq: &mut u64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut fire, mut resolve) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (cpu, state, into) in [(95.0, AlertState::Firing, &mut fire), (5.0, AlertState::Resolved, &mut resolve)] {
            *seq += 1;
            // Strictly later than the sample before, however quick the round.
            let at = now_ms().max(LAST.load(Ordering::Relaxed) + 1);
            LAST.store(at, Ordering::Relaxed);
            let started = Instant::now();
            sender.tx.send(batch("node-a", *seq, vec![sample("node-a", at, cpu)])).await.expect("stream open");
            until(watch, state).await;
            into.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    (fire, resolve)
}

fn quantiles(v: Vec<f64>) -> String {
    let (p50, p99, max) = common::p50_p99_max(v).expect("every round timed");
    format!("{p50:>8.1} {p99:>8.1} {max:>8.1}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var("PERSYS_TEST_PG_ADMIN_URL").is_err() {
        anyhow::bail!("PERSYS_TEST_PG_ADMIN_URL is not set: run `scripts/bench alert_latency`");
    }
    let knob = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let rounds = knob("PERSYS_BENCH_ROUNDS", 200);
    let writers = knob("PERSYS_BENCH_WRITERS", 4);
    let p = Pipeline::start().await.expect("PostgreSQL is configured");
    let mut admin = p.alerts_as("root", Role::Admin);
    let rule = AlertRule {
        name: "bench cpu".into(),
        metric: Metric::CpuUsagePercent as i32,
        comparator: Comparator::GreaterThan as i32,
        threshold: 80.0,
        for_duration: Some(prost_types::Duration::default()),
        node_ids: vec!["node-a".into()],
        enabled: true,
        ..Default::default()
    };
    admin.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await?;
    let mut watch = admin.watch_alerts(WatchAlertsRequest::default()).await?.into_inner();
    watch.message().await?; // the snapshot's BOOKMARK
    let probe_acks = Arc::new(AtomicU64::new(0));
    let prober = open(&p, "node-a", probe_acks).await;
    let mut seq = 0;

    // Warm up (connections, prepared statements), then the idle figures.
    probe(10, &prober, &mut watch, &mut seq).await;
    let (idle_fire, idle_resolve) = probe(rounds, &prober, &mut watch, &mut seq).await;

    // The same while `writers` streams of node-b ingest 120-sample batches back to back.
    let values_per_sample =
        persys_metrics_pipeline::samples::Rates::default().rows(&sample("node-b", 0, 10.0), 0).len();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let base = now_ms() - 6 * 3_600_000;
    let mut load = Vec::new();
    for w in 0..writers {
        let sender = open(&p, "node-b", acked.clone()).await;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let samples = (0..PER_BATCH as u64)
                    .map(|j| {
                        let at = base + ((i * PER_BATCH as u64 + j) * writers as u64 + w as u64) as i64;
                        sample("node-b", at, 10.0)
                    })
                    .collect();
                let seq = (w as u64) << 40 | i;
                if sender.tx.send(batch("node-b", seq, samples)).await.is_err() {
                    return;
                }
                i += 1;
            }
        }));
    }
    // Let the load reach its pace before timing.
    while acked.load(Ordering::Relaxed) < (writers * IN_FLIGHT * 4) as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (a0, t0) = (acked.load(Ordering::Relaxed), Instant::now());
    let (busy_fire, busy_resolve) = probe(rounds, &prober, &mut watch, &mut seq).await;
    let (a1, elapsed) = (acked.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    let rate = (a1 - a0) as f64 * PER_BATCH as f64 * values_per_sample as f64 / elapsed.as_secs_f64();

    println!(
        "alert latency: breaching sample sent on an agent stream → FIRING seen on WatchAlerts (and normal → RESOLVED), {rounds} rounds each"
    );
    println!("                                                     p50 ms   p99 ms   max ms");
    println!("idle pipeline, fire                               {}", quantiles(idle_fire));
    println!("idle pipeline, resolve                            {}", quantiles(idle_resolve));
    println!("under ingest load, fire                           {}", quantiles(busy_fire));
    println!("under ingest load, resolve                        {}", quantiles(busy_resolve));
    println!(
        "ingest load during the timed rounds: {rate:.0} samples/s ({writers} streams, {PER_BATCH} host samples × {values_per_sample} series a batch, {} batches in {:.1} s)",
        a1 - a0,
        elapsed.as_secs_f64()
    );
    p.finish().await;
    Ok(())
}
