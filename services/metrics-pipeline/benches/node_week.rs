//! The dashboard's node page over 7 days of 5 s samples: what its QueryRange costs when the
//! pipeline reads the one-minute rollups (whole-minute step and start, as the page asks)
//! against the same answer computed from the raw samples, in the same run, plus the 1 h window
//! (15 s steps, raw). Prints figures; asserts only that both paths give the same points.
//! Needs `PERSYS_TEST_PG_ADMIN_URL` (`scripts/bench node_week` starts one).

use std::time::{Duration, Instant, SystemTime};

use persys_kit::testing::database_url;
use persys_metrics_pipeline::{
    samples::{Labels, Row},
    store::{Batch, RangeQuery, Store},
};
use persys_proto::metrics::v1::{Metric, Rollup};
use sqlx::{AssertSqlSafe, Connection, postgres::PgConnection};

const STEP_MS: i64 = 5_000;
const WEEK_MS: i64 = 7 * 86_400_000;
/// Samples per stored batch: one hour of 5 s samples.
const PER_BATCH: i64 = 720;

/// The node page's metrics: CPU, memory, disk of `/`, network in and out of `eth0`.
fn rows(from_ms: i64, n: i64) -> Vec<Row> {
    let mut rows = Vec::with_capacity(n as usize * 5);
    let disk: Labels = [("mount".to_string(), "/".to_string())].into();
    let nic: Labels = [("interface".to_string(), "eth0".to_string())].into();
    for i in 0..n {
        let time_ms = from_ms + i * STEP_MS;
        let wave = ((time_ms / 60_000) % 100) as f64;
        rows.push(Row { metric: Metric::CpuUsagePercent, labels: Labels::new(), time_ms, value: wave });
        rows.push(Row {
            metric: Metric::MemoryUsagePercent,
            labels: Labels::new(),
            time_ms,
            value: 40.0 + wave / 10.0,
        });
        rows.push(Row { metric: Metric::DiskUsagePercent, labels: disk.clone(), time_ms, value: 55.0 });
        rows.push(Row { metric: Metric::NetworkRxBytesPerSecond, labels: nic.clone(), time_ms, value: 1e5 + wave });
        rows.push(Row { metric: Metric::NetworkTxBytesPerSecond, labels: nic.clone(), time_ms, value: 2e4 + wave });
    }
    rows
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(admin_url) = std::env::var("PERSYS_TEST_PG_ADMIN_URL") else {
        anyhow::bail!("PERSYS_TEST_PG_ADMIN_URL is not set: run `scripts/bench node_week`");
    };
    let rounds: usize = std::env::var("PERSYS_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let name = format!("metrics_week_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await?;
    let store = Store::connect(&database_url(&admin_url, &name), 2, "metrics").await?;

    // A week of one node's samples, an hour a batch, through the pipeline's commit path (which
    // maintains the rollups).
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_millis() as i64;
    let end = now / 60_000 * 60_000;
    let start = end - WEEK_MS;
    let started = Instant::now();
    let mut seq = 0;
    let mut t = start;
    while t < end {
        let n = PER_BATCH.min((end - t) / STEP_MS);
        let rows = rows(t, n);
        seq += 1;
        let b = Batch {
            node_id: "node-week",
            batch_seq: seq,
            dropped: 0,
            samples: n as usize,
            rows: &rows,
            latest: None,
            now_ms: now,
        };
        store.commit(&b).await?;
        t += n * STEP_MS;
    }
    let samples = (end - start) / STEP_MS;
    println!(
        "node_week: {samples} samples of 5 series (one node, 7 days at 5 s) stored in {:.1} s; median of {rounds} queries each",
        started.elapsed().as_secs_f64()
    );

    let query = |start_ms: i64, step_ms: i64| RangeQuery {
        node_ids: vec!["node-week".into()],
        metrics: vec![
            Metric::CpuUsagePercent,
            Metric::MemoryUsagePercent,
            Metric::DiskUsagePercent,
            Metric::NetworkRxBytesPerSecond,
            Metric::NetworkTxBytesPerSecond,
        ],
        match_labels: Labels::new(),
        start_ms,
        end_ms: end,
        step_ms,
        rollup: Rollup::Avg,
    };
    // The page's 7 d window: 30 min steps from a whole step.
    let week = query(start, 1_800_000);
    let (mut rollup, mut raw) = (Vec::new(), Vec::new());
    let (mut from_rollups, mut from_raw) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        from_rollups = store.range_rollup(&week).await?;
        rollup.push(t.elapsed());
        let t = Instant::now();
        from_raw = store.range_raw(&week).await?;
        raw.push(t.elapsed());
    }
    let points = |s: &[persys_metrics_pipeline::store::SeriesPoints]| s.iter().map(|x| x.points.len()).sum::<usize>();
    assert_eq!(from_rollups.len(), 5, "one series per metric");
    assert_eq!(points(&from_rollups), points(&from_raw), "rollups and raw samples give the same points");
    for (a, b) in from_rollups.iter().zip(&from_raw) {
        for (p, q) in a.points.iter().zip(&b.points) {
            assert_eq!(p.0, q.0);
            assert!((p.1 - q.1).abs() <= 1e-6 * q.1.abs().max(1.0), "{p:?} vs {q:?}");
        }
    }
    // The page's 7 d window since the one-hour rollups: whole hours, from a whole hour; the
    // ended hours folded as the pipeline's job does, the one in progress read from the minutes.
    let folding = Instant::now();
    let mut folded = 0;
    loop {
        let n = store.roll_hours(now, 24).await?;
        folded += n;
        if n == 0 {
            break;
        }
    }
    let fold_ms = folding.elapsed().as_secs_f64() * 1e3;
    let week_hours = query(start.div_euclid(3_600_000) * 3_600_000, 3_600_000);
    let (mut hourly, mut minutes, mut raw_hours) = (Vec::new(), Vec::new(), Vec::new());
    let (mut from_hourly, mut from_minutes, mut from_raw_hours) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        from_hourly = store.range_hourly(&week_hours).await?;
        hourly.push(t.elapsed());
        let t = Instant::now();
        from_minutes = store.range_rollup(&week_hours).await?;
        minutes.push(t.elapsed());
        let t = Instant::now();
        from_raw_hours = store.range_raw(&week_hours).await?;
        raw_hours.push(t.elapsed());
    }
    for other in [&from_minutes, &from_raw_hours] {
        assert_eq!(points(&from_hourly), points(other), "hourly, minute and raw give the same points");
        for (a, b) in from_hourly.iter().zip(other.iter()) {
            for (p, q) in a.points.iter().zip(&b.points) {
                assert_eq!(p.0, q.0);
                assert!((p.1 - q.1).abs() <= 1e-6 * q.1.abs().max(1.0), "{p:?} vs {q:?}");
            }
        }
    }
    // The 1 h window: 15 s steps over raw samples.
    let hour = query(end - 3_600_000 + 1, 15_000);
    let mut recent = Vec::new();
    let mut from_hour = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        from_hour = store.range(&hour).await?;
        recent.push(t.elapsed());
    }
    println!("{:<46}{:>10}{:>12}", "", "points", "ms");
    println!(
        "{:<46}{:>10}{:>12.1}",
        "7 d at 30 min, from one-minute rollups (before)",
        points(&from_rollups),
        median(rollup).as_secs_f64() * 1e3
    );
    println!(
        "{:<46}{:>10}{:>12.1}",
        "7 d at 30 min, from raw samples (baseline)",
        points(&from_raw),
        median(raw).as_secs_f64() * 1e3
    );
    println!(
        "{:<46}{:>10}{:>12.1}",
        "7 d at 1 h, from one-hour rollups (page)",
        points(&from_hourly),
        median(hourly).as_secs_f64() * 1e3
    );
    println!(
        "{:<46}{:>10}{:>12.1}",
        "7 d at 1 h, from one-minute rollups",
        points(&from_minutes),
        median(minutes).as_secs_f64() * 1e3
    );
    println!(
        "{:<46}{:>10}{:>12.1}",
        "7 d at 1 h, from raw samples (baseline)",
        points(&from_raw_hours),
        median(raw_hours).as_secs_f64() * 1e3
    );
    println!("{:<46}{:>10}{:>12.1}", "folding the week's ended hours (once)", folded, fold_ms);
    println!(
        "{:<46}{:>10}{:>12.1}",
        "1 h at 15 s, from raw samples (page)",
        points(&from_hour),
        median(recent).as_secs_f64() * 1e3
    );
    println!("{:<46}{:>10}", "raw points the browser would get at 5 s (7 d)", samples * 5);
    store.close().await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    Ok(())
}
