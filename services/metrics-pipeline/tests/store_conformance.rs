//! Conformance of the samples store on both backends ([`common::backends`]): exactly-once
//! ingest, the newest sample per node, range queries from raw samples, one-minute and one-hour
//! rollups agreeing with each other and with hand-computed figures, and retention.

mod common;

use std::{collections::BTreeMap, sync::Arc};

use persys_metrics_pipeline::{
    samples::{Labels, Row},
    store::{Batch, Committed, DAY_MS, HOUR_MS, RangeQuery, SeriesPoints, Store},
};
use persys_proto::metrics::v1::{Metric, Rollup};

/// Monday 2026-11-02 00:00 UTC: a day boundary.
const T: i64 = 1_793_577_600_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn row(metric: Metric, labels: &Labels, time_ms: i64, value: f64) -> Row {
    Row { metric, labels: labels.clone(), time_ms, value }
}

fn batch<'a>(node_id: &'a str, batch_seq: u64, rows: &'a [Row], now_ms: i64) -> Batch<'a> {
    Batch { node_id, batch_seq, dropped: 0, samples: 1, rows, latest: None, now_ms }
}

/// A query of `metrics` over [start, end) in steps of `step`.
fn query(metrics: &[Metric], start_ms: i64, end_ms: i64, step_ms: i64, rollup: Rollup) -> RangeQuery {
    RangeQuery {
        node_ids: Vec::new(),
        metrics: metrics.to_vec(),
        match_labels: Labels::new(),
        start_ms,
        end_ms,
        step_ms,
        rollup,
    }
}

/// Asserts two answers hold the same series and points (values to 1e-9 relative).
fn assert_same(a: &[SeriesPoints], b: &[SeriesPoints], what: &str) {
    let key = |s: &SeriesPoints| (s.node_id.clone(), s.metric as i32, s.labels.clone());
    let a: BTreeMap<_, _> = a.iter().map(|s| (key(s), &s.points)).collect();
    let b: BTreeMap<_, _> = b.iter().map(|s| (key(s), &s.points)).collect();
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: series");
    for (k, pa) in &a {
        let pb = b[k];
        assert_eq!(pa.len(), pb.len(), "{what}: points of {k:?}");
        for (x, y) in pa.iter().zip(pb.iter()) {
            assert_eq!(x.0, y.0, "{what}: buckets of {k:?}");
            assert!((x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(1.0), "{what}: {k:?} at {}: {} vs {}", x.0, x.1, y.1);
        }
    }
}

async fn a_resent_batch_is_stored_once_and_the_newest_sample_wins(store: Arc<Store>) {
    let root = labels(&[("mount", "/")]);
    let rows = vec![
        row(Metric::CpuUsagePercent, &Labels::new(), T, 10.0),
        row(Metric::DiskUsagePercent, &root, T, 50.0),
        row(Metric::CpuUsagePercent, &Labels::new(), T + 5_000, 20.0),
    ];
    let mut b = batch("node-a", 1, &rows, T);
    b.latest = Some((T + 5_000, b"second".to_vec()));
    assert_eq!(store.commit(&b).await.unwrap(), Committed::Stored(3));
    // The agent did not hear the acknowledgement and sends the batch again.
    assert_eq!(store.commit(&b).await.unwrap(), Committed::Duplicate);
    assert_eq!(store.count_rows("node-a").await.unwrap(), 3);
    assert_eq!(store.batches("node-a").await.unwrap(), vec![1]);
    // Nothing of a duplicate is applied, not even its newest sample.
    let mut again = batch("node-a", 1, &rows[..1], T);
    again.latest = Some((T + 9_000, b"ignored".to_vec()));
    assert_eq!(store.commit(&again).await.unwrap(), Committed::Duplicate);
    // The rollups counted the rows once: the minute's sum is 30, not 60.
    let sum = store.range(&query(&[Metric::CpuUsagePercent], T, T + 60_000, 60_000, Rollup::Sum)).await.unwrap();
    assert_eq!(sum[0].points, vec![(T, 30.0)]);
    let raw = store.range_raw(&query(&[Metric::CpuUsagePercent], T, T + 60_000, 60_000, Rollup::Sum)).await.unwrap();
    assert_eq!(raw[0].points, vec![(T, 30.0)]);

    // The same sequence number of another node is another batch; an older newest sample does
    // not replace a newer one.
    let mut other = batch("node-b", 1, &rows[..1], T);
    other.latest = Some((T, b"node-b".to_vec()));
    assert_eq!(store.commit(&other).await.unwrap(), Committed::Stored(1));
    let mut older = batch("node-a", 2, &[], T);
    older.latest = Some((T, b"first".to_vec()));
    assert_eq!(store.commit(&older).await.unwrap(), Committed::Stored(0));
    let latest = store.latest(&[], "", 10).await.unwrap();
    assert_eq!(latest, vec![("node-a".into(), b"second".to_vec()), ("node-b".into(), b"node-b".to_vec())]);
    assert_eq!(store.latest(&[], "node-a", 10).await.unwrap().len(), 1, "pages after node-a");
    assert_eq!(store.latest(&["node-b".into()], "", 10).await.unwrap()[0].0, "node-b");
    assert_eq!(store.latest(&[], "", 1).await.unwrap().len(), 1);
    let known = store.known_nodes(&["node-b".into(), "node-z".into()]).await.unwrap();
    assert_eq!(known.into_iter().collect::<Vec<_>>(), vec!["node-b".to_owned()]);
    assert_eq!(store.batches("node-a").await.unwrap(), vec![1, 2]);
}

/// Three hours of two disks and the CPU of one node, a sample every 7 s, values that are not
/// monotonic.
fn history() -> Vec<Row> {
    let (root, data) = (labels(&[("mount", "/")]), labels(&[("mount", "/data")]));
    let mut rows = Vec::new();
    for i in 0..(3 * 3600 / 7) {
        let t = T + i * 7_000;
        rows.push(row(Metric::CpuUsagePercent, &Labels::new(), t, ((i * 37) % 100) as f64 + 0.5));
        rows.push(row(Metric::DiskUsagePercent, &root, t, ((i * 13) % 50) as f64));
        rows.push(row(Metric::DiskUsagePercent, &data, t, 100.0 - ((i * 7) % 90) as f64));
    }
    rows
}

async fn ingest(store: &Store, node: &str, rows: &[Row], per_batch: usize, first_seq: u64) -> u64 {
    let mut seq = first_seq;
    for chunk in rows.chunks(per_batch) {
        assert!(matches!(store.commit(&batch(node, seq, chunk, T)).await.unwrap(), Committed::Stored(_)));
        seq += 1;
    }
    seq
}

async fn rollups_agree_with_the_raw_samples_and_with_hand_computed_figures(store: Arc<Store>) {
    let rows = history();
    let (early, late) = rows.split_at(rows.len() - 120);
    let next = ingest(&store, "node-a", late, 40, 1).await;
    // The rest in one batch of thousands of rows (more than one statement's worth on SQLite).
    ingest(&store, "node-a", early, early.len(), next).await;
    let metrics = [Metric::CpuUsagePercent, Metric::DiskUsagePercent];
    let end = T + 3 * HOUR_MS;
    let rollups = [Rollup::Min, Rollup::Max, Rollup::Sum, Rollup::Avg, Rollup::Last];

    // By hand: the first minute of the CPU (samples at 0, 7, ..., 56 s).
    let first: Vec<f64> = (0..9).map(|i| ((i * 37) % 100) as f64 + 0.5).collect();
    let minute = |rollup| query(&[Metric::CpuUsagePercent], T, T + 60_000, 60_000, rollup);
    let value = |a: Vec<SeriesPoints>| a[0].points[0].1;
    assert_eq!(value(store.range_rollup(&minute(Rollup::Sum)).await.unwrap()), first.iter().sum::<f64>());
    assert_eq!(
        value(store.range_rollup(&minute(Rollup::Min)).await.unwrap()),
        first.iter().cloned().fold(f64::MAX, f64::min)
    );
    assert_eq!(
        value(store.range_rollup(&minute(Rollup::Max)).await.unwrap()),
        first.iter().cloned().fold(0.0, f64::max)
    );
    assert_eq!(value(store.range_rollup(&minute(Rollup::Last)).await.unwrap()), first[8]);
    assert_eq!(value(store.range_raw(&minute(Rollup::Last)).await.unwrap()), first[8]);
    assert!(
        (value(store.range_raw(&minute(Rollup::Avg)).await.unwrap()) - first.iter().sum::<f64>() / 9.0).abs() < 1e-9
    );

    for rollup in rollups {
        // Five-minute buckets from the one-minute rollups and from the raw samples.
        let q = query(&metrics, T, end, 5 * 60_000, rollup);
        let raw = store.range_raw(&q).await.unwrap();
        assert_eq!(raw.len(), 3, "three series");
        assert_eq!(raw[0].points.len(), 36);
        assert_same(&raw, &store.range_rollup(&q).await.unwrap(), &format!("minutes, {rollup:?}"));
        assert_same(&raw, &store.range(&q).await.unwrap(), &format!("range() by minutes, {rollup:?}"));
        // Hours, before any fold (every hour is changed, so read from the minutes).
        let h = query(&metrics, T, end, HOUR_MS, rollup);
        assert_same(
            &store.range_raw(&h).await.unwrap(),
            &store.range_hourly(&h).await.unwrap(),
            &format!("hours unfolded, {rollup:?}"),
        );
    }
    // Fold the three ended hours; an hour not ended yet is left alone.
    assert_eq!(store.roll_hours(T + 3 * HOUR_MS - 1, 24).await.unwrap(), 2);
    assert_eq!(store.roll_hours(end, 24).await.unwrap(), 1);
    assert_eq!(store.roll_hours(end, 24).await.unwrap(), 0);
    for rollup in rollups {
        let h = query(&metrics, T, end, HOUR_MS, rollup);
        assert_same(
            &store.range_raw(&h).await.unwrap(),
            &store.range_hourly(&h).await.unwrap(),
            &format!("hours folded, {rollup:?}"),
        );
        let two = query(&metrics, T, end, 2 * HOUR_MS, rollup);
        assert_same(
            &store.range_raw(&two).await.unwrap(),
            &store.range(&two).await.unwrap(),
            &format!("two hours, {rollup:?}"),
        );
    }
    // A late batch into the second hour: answers stay exact before and after the next fold.
    let cpu = Labels::new();
    let late = [
        row(Metric::CpuUsagePercent, &cpu, T + HOUR_MS + 1, 1000.0),
        row(Metric::CpuUsagePercent, &cpu, T + HOUR_MS + 2, -5.0),
    ];
    assert_eq!(store.commit(&batch("node-a", 9_999, &late, T)).await.unwrap(), Committed::Stored(2));
    for rollup in rollups {
        let h = query(&metrics, T, end, HOUR_MS, rollup);
        assert_same(
            &store.range_raw(&h).await.unwrap(),
            &store.range_hourly(&h).await.unwrap(),
            &format!("late, {rollup:?}"),
        );
    }
    assert_eq!(store.roll_hours(end, 24).await.unwrap(), 1, "only the hour the late batch changed");
    for rollup in rollups {
        let h = query(&metrics, T, end, HOUR_MS, rollup);
        let hourly = store.range_hourly(&h).await.unwrap();
        assert_same(&store.range_raw(&h).await.unwrap(), &hourly, &format!("late, refolded, {rollup:?}"));
        if rollup == Rollup::Max {
            let cpu = hourly.iter().find(|s| s.metric == Metric::CpuUsagePercent).unwrap();
            assert_eq!(cpu.points[1], (T + HOUR_MS, 1000.0));
        }
    }

    // Filters: labels, nodes, metrics.
    let mut q = query(&metrics, T, end, HOUR_MS, Rollup::Avg);
    q.match_labels = labels(&[("mount", "/data")]);
    for answer in [store.range_raw(&q).await.unwrap(), store.range_hourly(&q).await.unwrap()] {
        assert_eq!(answer.len(), 1);
        assert_eq!(answer[0].labels, labels(&[("mount", "/data")]));
    }
    q.match_labels = labels(&[("mount", "/data"), ("device", "sdb")]);
    assert!(store.range_rollup(&q).await.unwrap().is_empty(), "every label must match");
    let mut q = query(&metrics, T, end, HOUR_MS, Rollup::Avg);
    q.node_ids = vec!["node-b".into()];
    assert!(store.range(&q).await.unwrap().is_empty());
    q.node_ids = vec!["node-b".into(), "node-a".into()];
    assert_eq!(store.range(&q).await.unwrap().len(), 3);
    let q = query(&[Metric::MemoryUsagePercent], T, end, HOUR_MS, Rollup::Avg);
    assert!(store.range_raw(&q).await.unwrap().is_empty());
}

async fn retention_drops_whole_days_old_batch_records_and_old_rollups(store: Arc<Store>) {
    let cpu = Labels::new();
    let days = [T + 3_600_000, T + DAY_MS + 3_600_000, T + 2 * DAY_MS + 3_600_000];
    for (i, at) in days.iter().enumerate() {
        let rows =
            [row(Metric::CpuUsagePercent, &cpu, *at, 1.0), row(Metric::CpuUsagePercent, &cpu, *at + 60_000, 2.0)];
        store.commit(&batch("node-a", i as u64 + 1, &rows, at - 3_600_000)).await.unwrap();
    }
    store.roll_hours(T + 3 * DAY_MS, 24).await.unwrap();
    let now = T + 2 * DAY_MS + 12 * HOUR_MS;
    // The cutoff falls inside the second day: only the first is wholly older.
    let dropped = store.expire(now, DAY_MS + 6 * HOUR_MS).await.unwrap();
    assert_eq!(dropped, vec![T / DAY_MS]);
    assert_eq!(store.count_rows("node-a").await.unwrap(), 4);
    // Batch records received before the cutoff go (a batch that old would be refused anyway).
    assert_eq!(store.batches("node-a").await.unwrap(), vec![3]);
    assert!(store.expire(now, DAY_MS + 6 * HOUR_MS).await.unwrap().is_empty(), "nothing left to drop");
    let everything = query(&[Metric::CpuUsagePercent], T, T + 3 * DAY_MS, HOUR_MS, Rollup::Sum);
    let raw = store.range_raw(&everything).await.unwrap();
    assert_eq!(raw[0].points, vec![(days[1], 3.0), (days[2], 3.0)]);
    // The rollups outlive the raw samples, each until its own retention.
    let minutes = query(&[Metric::CpuUsagePercent], T, T + 3 * DAY_MS, 60_000, Rollup::Sum);
    assert_eq!(store.range_rollup(&minutes).await.unwrap()[0].points.len(), 6);
    store.expire_rollups(now, 2 * DAY_MS, 3 * DAY_MS).await.unwrap();
    let left = store.range_rollup(&minutes).await.unwrap();
    assert_eq!(
        left[0].points.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![days[1], days[1] + 60_000, days[2], days[2] + 60_000]
    );
    assert_eq!(store.range_hourly(&everything).await.unwrap()[0].points.len(), 3, "hours kept 3 days");
    store.expire_rollups(now, 2 * DAY_MS, DAY_MS).await.unwrap();
    assert_eq!(store.range_hourly(&everything).await.unwrap()[0].points, vec![(days[2], 3.0)]);
}

conformance!(
    a_resent_batch_is_stored_once_and_the_newest_sample_wins,
    rollups_agree_with_the_raw_samples_and_with_hand_computed_figures,
    retention_drops_whole_days_old_batch_records_and_old_rollups,
);
