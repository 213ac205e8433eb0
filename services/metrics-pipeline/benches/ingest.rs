//! Sustained ingest into PostgreSQL: the pipeline's commit path (batch row for exactly-once,
//! daily partition, multi-row insert, latest sample) against raw `COPY` of the same rows into
//! a plain table with the same columns and index, in the same run; and the same commit path on
//! SQLite (a file in a temporary directory, as `persys-stack` keeps it). Prints figures;
//! asserts nothing about time. Needs `PERSYS_TEST_PG_ADMIN_URL` (`scripts/bench ingest` starts
//! one).
//!
//! A "sample" here is one value of one series (one row), as in Prometheus' samples/s.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use persys_kit::testing::database_url;
use persys_metrics_pipeline::{
    samples::{Labels, Row},
    store::{Batch, Store},
};
use persys_proto::metrics::v1::Metric;
use sqlx::{AssertSqlSafe, Connection, postgres::PgConnection};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One agent batch: 120 host samples of 22 series each (CPU, memory ×2, loads ×3, two disks
/// ×2, two interfaces ×2, four containers ×2), as the agent sends after 10 minutes offline.
fn batch_rows(node: usize, seq: usize, t0: i64) -> Vec<Row> {
    let mut rows = Vec::with_capacity(120 * 22);
    for s in 0..120 {
        let time_ms = t0 + ((seq * 120 + s) as i64) * 5000;
        let mut push = |metric: Metric, labels: Labels, value: f64| rows.push(Row { metric, labels, time_ms, value });
        let none = Labels::new;
        push(Metric::CpuUsagePercent, none(), (s % 100) as f64);
        push(Metric::MemoryUsagePercent, none(), 40.0);
        push(Metric::MemoryUsedBytes, none(), 1e9);
        push(Metric::Load1, none(), 0.5);
        push(Metric::Load5, none(), 0.4);
        push(Metric::Load15, none(), 0.3);
        for mount in ["/", "/var"] {
            let l: Labels = [("mount".to_string(), mount.to_string())].into();
            push(Metric::DiskUsagePercent, l.clone(), 55.0);
            push(Metric::DiskUsedBytes, l, 5e10);
        }
        for nic in ["eth0", "eth1"] {
            let l: Labels = [("interface".to_string(), nic.to_string())].into();
            push(Metric::NetworkRxBytesPerSecond, l.clone(), 1e5);
            push(Metric::NetworkTxBytesPerSecond, l, 2e4);
        }
        for c in 0..4 {
            let l: Labels =
                [("workload_id".to_string(), format!("w{node}-{c}")), ("instance_id".to_string(), format!("i{c}"))]
                    .into();
            push(Metric::ContainerCpuPercent, l.clone(), 12.0);
            push(Metric::ContainerMemoryBytes, l, 2e8);
        }
    }
    rows
}

/// Commits `batches` batches over `writers` concurrent writers, each a node of its own for
/// `round`; returns how long it took.
async fn commit_all(
    store: &Arc<Store>,
    round: usize,
    batches: usize,
    writers: usize,
    t0: i64,
    now: i64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let node = format!("node-{round}-{w}");
            for seq in (w..batches).step_by(writers) {
                let rows = batch_rows(w, seq, t0);
                let b = Batch {
                    node_id: &node,
                    batch_seq: seq as u64 + 1,
                    dropped: 0,
                    samples: 120,
                    rows: &rows,
                    latest: Some((rows[rows.len() - 1].time_ms, vec![0u8; 600])),
                    now_ms: now,
                };
                store.commit(&b).await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(admin_url) = std::env::var("PERSYS_TEST_PG_ADMIN_URL") else {
        anyhow::bail!("PERSYS_TEST_PG_ADMIN_URL is not set: run `scripts/bench ingest`");
    };
    let batches = env_or("PERSYS_BENCH_BATCHES", 240);
    let writers = env_or("PERSYS_BENCH_WRITERS", 4);
    let rounds = env_or("PERSYS_BENCH_ROUNDS", 3);
    let name = format!("metrics_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\""))).execute(&mut admin).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await?;
    let url = database_url(&admin_url, &name);
    let store = Arc::new(Store::connect(&url, writers as u32 + 1, "metrics").await?);
    sqlx::raw_sql("CREATE TABLE bench_raw (LIKE samples INCLUDING INDEXES)")
        .execute(store.postgres().expect("PostgreSQL"))
        .await?;

    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_millis() as i64;
    let t0 = now - 3 * 86_400_000;
    let per_batch = batch_rows(0, 0, t0).len();
    println!(
        "ingest: {batches} batches × {per_batch} samples per round, {writers} writers, median of {rounds} rounds (PostgreSQL on the same 2 cores; SQLite in a temporary directory)"
    );
    let (mut pipeline, mut copy, mut sqlite) = (Vec::new(), Vec::new(), Vec::new());
    let sqlite_dir = tempfile::tempdir()?;
    let sqlite_url = format!("sqlite://{}?mode=rwc", sqlite_dir.path().join("metrics.db").display());
    let sqlite_store = Arc::new(Store::connect(&sqlite_url, 1, "metrics").await?);
    for round in 0..rounds {
        // The pipeline's path: one transaction per batch, batches spread over the writers as
        // agents' streams would be.
        pipeline.push(commit_all(&store, round, batches, writers, t0, now).await?);
        // The same on SQLite, where the writers' commits queue for its one connection.
        sqlite.push(commit_all(&sqlite_store, round, batches, writers, t0, now).await?);

        // Raw COPY of the same rows, same writers.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url).await.expect("connect");
                let node = format!("node-{round}-{w}");
                for seq in (w..batches).step_by(writers) {
                    let mut text = String::with_capacity(per_batch * 64);
                    for r in batch_rows(w, seq, t0) {
                        let labels = serde_json::to_string(&r.labels).expect("labels");
                        text.push_str(&format!("{node}\t{}\t{labels}\t{}\t{}\n", r.metric as i16, r.time_ms, r.value));
                    }
                    let mut copy = conn
                        .copy_in_raw("COPY metrics.bench_raw (node_id, metric, labels, time_ms, value) FROM STDIN")
                        .await
                        .expect("copy");
                    copy.send(text.into_bytes()).await.expect("send");
                    copy.finish().await.expect("finish");
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        copy.push(started.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let total = (batches * per_batch) as f64;
    let p = total / median(&mut pipeline).as_secs_f64();
    let c = total / median(&mut copy).as_secs_f64();
    println!("{:<34}{:>14}", "", "samples/s");
    println!("{:<34}{:>14.0}", "pipeline commit (exactly once)", p);
    println!("{:<34}{:>14.0}", "raw COPY, same rows", c);
    println!("{:<34}{:>13.0}%", "pipeline vs raw COPY", 100.0 * p / c);
    println!("{:<34}{:>14.0}", "pipeline commit on SQLite", total / median(&mut sqlite).as_secs_f64());
    sqlite_store.close().await;
    store.close().await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    Ok(())
}
