//! The pipeline on real PostgreSQL and mTLS: batches acknowledged after commit and stored once,
//! agents confined to their node, range queries answering what was sent, users checked, bad
//! requests naming their fields, and live watchers.

mod common;

use std::time::Duration;

use common::{AgentStream, Pipeline, batch, now_ms, sample, ts};
use persys_kit::identity::Role;
use persys_proto::{
    common::v1::{TimeRange, WatchEventType},
    metrics::v1::{LatestHostMetricsRequest, Metric, QueryRangeRequest, Rollup, WatchHostMetricsRequest},
};
use tonic::Code;
use tonic_types::StatusExt;

/// Rows one `common::sample` makes: CPU, memory percent and bytes, three loads.
const ROWS_PER_SAMPLE: i64 = 6;

fn range(start_ms: i64, end_ms: i64, step_ms: i64, metric: Metric, rollup: Rollup) -> QueryRangeRequest {
    QueryRangeRequest {
        node_ids: vec!["node-a".into()],
        metrics: vec![metric as i32],
        range: Some(TimeRange { start: Some(ts(start_ms)), end: Some(ts(end_ms)) }),
        step: Some(prost_types::Duration { seconds: step_ms / 1000, nanos: 0 }),
        rollup: rollup as i32,
        ..Default::default()
    }
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn batches_are_acknowledged_after_commit_stored_once_and_queried_back() {
    let Some(p) = Pipeline::start().await else { return };
    // Thirty samples 1 s apart in three batches, on a whole 10 s boundary.
    let t0 = (now_ms() - 120_000) / 10_000 * 10_000;
    let cpu = |i: i64| (i * 3 % 17) as f64;
    let mut agent = p.ingest_as("node-a");
    let mut stream = AgentStream::open(&mut agent).await.unwrap();
    for seq in 0..3i64 {
        let samples = (seq * 10..seq * 10 + 10).map(|i| sample("node-a", t0 + i * 1000, cpu(i))).collect();
        let ack = stream.send(batch("node-a", seq as u64 + 1, samples)).await.unwrap();
        assert_eq!((ack.batch_seq, ack.accepted_samples, ack.duplicate_samples), (seq as u64 + 1, 10, 0));
        // Acknowledged means committed: the rows are there when the answer arrives.
        assert_eq!(p.running.store.count_rows("node-a").await.unwrap(), (seq + 1) * 10 * ROWS_PER_SAMPLE);
    }
    drop(stream);

    // The agent lost the answer to batch 2 and re-sends it on a new stream: stored once.
    let mut again = AgentStream::open(&mut agent).await.unwrap();
    let samples = (10..20).map(|i| sample("node-a", t0 + i * 1000, cpu(i))).collect();
    let ack = again.send(batch("node-a", 2, samples)).await.unwrap();
    assert_eq!((ack.batch_seq, ack.accepted_samples, ack.duplicate_samples), (2, 0, 10));
    assert_eq!(p.running.store.batches("node-a").await.unwrap(), vec![1, 2, 3]);
    assert_eq!(p.running.store.count_rows("node-a").await.unwrap(), 30 * ROWS_PER_SAMPLE);

    // Range queries answer from what was sent: every raw value at a 1 s step, and
    // 10 s buckets that agree with averages and maxima computed here.
    let mut admin = p.query_as("root", Role::Admin);
    let raw = admin
        .query_range(range(t0, t0 + 30_000, 1000, Metric::CpuUsagePercent, Rollup::Last))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.series.len(), 1);
    let points: Vec<(i64, f64)> =
        raw.series[0].points.iter().map(|p| (p.time.as_ref().unwrap().seconds * 1000, p.value)).collect();
    assert_eq!(points, (0..30).map(|i| (t0 + i * 1000, cpu(i))).collect::<Vec<_>>());
    for (rollup, expect) in [
        (Rollup::Avg, (0..3).map(|b| (b * 10..b * 10 + 10).map(cpu).sum::<f64>() / 10.0).collect::<Vec<_>>()),
        (Rollup::Max, (0..3).map(|b| (b * 10..b * 10 + 10).map(cpu).fold(f64::MIN, f64::max)).collect()),
    ] {
        let r = admin
            .query_range(range(t0, t0 + 30_000, 10_000, Metric::CpuUsagePercent, rollup))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<f64> = r.series[0].points.iter().map(|p| p.value).collect();
        assert_eq!(got.len(), 3, "{rollup:?}");
        for (g, e) in got.iter().zip(&expect) {
            assert!((g - e).abs() < 1e-9, "{rollup:?}: got {got:?}, expected {expect:?}");
        }
    }

    // The newest sample of the node, whole.
    let latest = admin.latest_host_metrics(LatestHostMetricsRequest::default()).await.unwrap().into_inner();
    assert_eq!(latest.metrics.len(), 1);
    assert_eq!(latest.metrics[0].time, Some(ts(t0 + 29_000)));
    assert_eq!(latest.metrics[0].cpu.as_ref().unwrap().usage_percent, cpu(29));
    p.finish().await;
}

#[tokio::test]
async fn an_agent_sends_only_for_its_own_node_and_bad_samples_are_rejected_not_stored() {
    let Some(p) = Pipeline::start().await else { return };
    let now = now_ms();
    let mut a = p.ingest_as("node-a");
    AgentStream::open(&mut a).await.unwrap().send(batch("node-a", 1, vec![sample("node-a", now, 1.0)])).await.unwrap();

    // node-b's agent claiming node-a: refused, nothing stored for node-a.
    let mut b = p.ingest_as("node-b");
    let mut stream = AgentStream::open(&mut b).await.unwrap();
    let refused = stream.send(batch("node-a", 2, vec![sample("node-a", now, 99.0)])).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(p.running.store.batches("node-a").await.unwrap(), vec![1]);

    // A service certificate may not ingest at all.
    let mut scheduler = p.ingest_as("scheduler");
    let denied = match AgentStream::open(&mut scheduler).await {
        Err(status) => status,
        Ok(mut s) => s.send(batch("scheduler", 1, vec![])).await.unwrap_err(),
    };
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // Inside its own batch: a sample for another node, one far in the future and one with no
    // time are rejected with reasons; the good one is stored.
    let mut stream = AgentStream::open(&mut b).await.unwrap();
    let mut untimed = sample("node-b", now, 3.0);
    untimed.time = None;
    let samples =
        vec![sample("node-b", now, 2.0), sample("node-a", now, 5.0), sample("node-b", now + 3_600_000, 4.0), untimed];
    let ack = stream.send(batch("node-b", 1, samples)).await.unwrap();
    assert_eq!((ack.accepted_samples, ack.rejected_samples), (1, 3), "{ack:?}");
    assert!(ack.errors.iter().any(|e| e.contains("samples[1].node_id")), "{:?}", ack.errors);
    assert!(ack.errors.iter().any(|e| e.contains("samples[2].time")), "{:?}", ack.errors);
    assert_eq!(p.running.store.count_rows("node-b").await.unwrap(), ROWS_PER_SAMPLE);

    // Batch sequence 0 is invalid and says so.
    let zero = stream.send(batch("node-b", 0, vec![])).await.unwrap_err();
    assert_eq!((zero.code(), violated_fields(&zero)), (Code::InvalidArgument, vec!["batch_seq".to_string()]));
    p.finish().await;
}

#[tokio::test]
async fn queries_check_the_user_and_name_what_is_wrong() {
    let Some(p) = Pipeline::start().await else { return };
    let now = now_ms();
    let mut a = p.ingest_as("node-a");
    AgentStream::open(&mut a)
        .await
        .unwrap()
        .send(batch("node-a", 1, vec![sample("node-a", now - 1000, 1.0)]))
        .await
        .unwrap();

    let member =
        p.query_as("ada", Role::Member).latest_host_metrics(LatestHostMetricsRequest::default()).await.unwrap_err();
    assert_eq!(member.code(), Code::PermissionDenied, "{member:?}");
    assert!(member.message().contains("admins"), "{member:?}");

    let mut admin = p.query_as("root", Role::Admin);
    let mut unknown = range(now - 60_000, now, 1000, Metric::CpuUsagePercent, Rollup::Avg);
    unknown.node_ids = vec!["node-a".into(), "ghost".into()];
    let status = admin.query_range(unknown).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["node_ids[1]".to_string()]));
    assert!(status.message().contains("ghost") || format!("{:?}", status.get_details_bad_request()).contains("ghost"));

    let mut bad = range(now, now - 60_000, 0, Metric::Unspecified, Rollup::Avg);
    bad.metrics.push(1234);
    let status = admin.query_range(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["metrics[0]", "metrics[1]", "step", "range"]);
    p.finish().await;
}

#[tokio::test]
async fn watchers_see_the_snapshot_then_each_new_sample_of_their_nodes() {
    let Some(p) = Pipeline::start().await else { return };
    let now = now_ms();
    let mut a = p.ingest_as("node-a");
    let mut stream = AgentStream::open(&mut a).await.unwrap();
    stream.send(batch("node-a", 1, vec![sample("node-a", now - 2000, 10.0)])).await.unwrap();

    let mut admin = p.query_as("root", Role::Admin);
    let request = WatchHostMetricsRequest { node_ids: vec!["node-a".into()], ..Default::default() };
    let mut watch = admin.watch_host_metrics(request).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.r#type, WatchEventType::Added as i32);
    assert_eq!(first.metrics.unwrap().cpu.unwrap().usage_percent, 10.0);
    // The snapshot (the newest sample of each node) ends with a BOOKMARK at its revision.
    let bookmark = watch.message().await.unwrap().unwrap();
    assert_eq!(
        (bookmark.r#type, bookmark.metrics, bookmark.revision),
        (WatchEventType::Bookmark as i32, None, first.revision)
    );

    // node-b's samples are not this watcher's; node-a's next one is.
    let mut b = p.ingest_as("node-b");
    AgentStream::open(&mut b).await.unwrap().send(batch("node-b", 1, vec![sample("node-b", now, 77.0)])).await.unwrap();
    stream.send(batch("node-a", 2, vec![sample("node-a", now - 1000, 20.0)])).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.r#type, WatchEventType::Modified as i32);
    let m = next.metrics.unwrap();
    assert_eq!((m.node_id.as_str(), m.cpu.unwrap().usage_percent), ("node-a", 20.0));
    assert!(next.revision > first.revision);
    // Resuming is refused with OUT_OF_RANGE (the pipeline keeps no change log): start over.
    let resume = WatchHostMetricsRequest { since_revision: next.revision, ..Default::default() };
    assert_eq!(admin.watch_host_metrics(resume).await.unwrap_err().code(), tonic::Code::OutOfRange);
    p.finish().await;
}

#[tokio::test]
async fn the_pipeline_shares_a_database_with_another_sqlx_app_in_a_schema_of_its_own() {
    let Some(db) = common::Db::create().await else { return };
    // Another application (the gateway) already recorded its own migration 1 in public.
    let mut other = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, \
         execution_time BIGINT NOT NULL); \
         INSERT INTO _sqlx_migrations VALUES (1, 'the gateway', now(), true, '\\x00', 0)",
    )
    .execute(&mut other)
    .await
    .unwrap();

    let store = persys_metrics_pipeline::store::Store::connect(&db.url, 2, "metrics").await.expect("starts beside it");
    // Opening again finds its own history and changes nothing.
    let again = persys_metrics_pipeline::store::Store::connect(&db.url, 2, "metrics").await.expect("reopens");
    let theirs: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM public._sqlx_migrations").fetch_all(&mut other).await.unwrap();
    assert_eq!(theirs, vec![(1, "the gateway".to_string())]);
    let ours: i64 =
        sqlx::query_scalar("SELECT count(*) FROM metrics._sqlx_migrations").fetch_one(&mut other).await.unwrap();
    assert!(ours >= 1);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ('samples', 'latest_host')",
    )
    .fetch_one(&mut other)
    .await
    .unwrap();
    assert_eq!(tables, 0, "nothing of the pipeline's lands in public");
    assert!(persys_metrics_pipeline::store::Store::connect(&db.url, 1, "Bad-Name").await.is_err());
    store.close().await;
    again.close().await;
    drop(other);
    db.drop_now().await;
}

#[tokio::test]
async fn prometheus_scrapes_each_nodes_newest_sample_from_the_admin_port() {
    let Some(p) = Pipeline::start().await else { return };
    let admin = p.running.admin.expect("the admin port is on");
    let before = common::http_get(admin, "/metrics").await;
    assert!(before.starts_with("HTTP/1.1 200") && !before.contains("persys_host_"), "{before}");

    let now = now_ms();
    let mut a = p.ingest_as("node-a");
    let mut stream = AgentStream::open(&mut a).await.unwrap();
    stream
        .send(batch("node-a", 1, vec![sample("node-a", now - 2000, 42.0), sample("node-a", now - 1000, 43.5)]))
        .await
        .unwrap();
    // Acknowledged means scrapeable.
    let want = r#"persys_host_cpu_usage_percent{node="node-a"} 43.5"#;
    let text = common::http_get(admin, "/metrics").await;
    assert!(text.contains(want), "{text}");
    assert!(text.contains(r#"persys_host_load1{node="node-a"} 1.0"#), "{text}");
    assert!(text.contains("persys_grpc_requests_total"), "the RPC metrics are still there: {text}");
    p.finish().await;
}

#[tokio::test]
async fn partitions_past_the_retention_are_dropped_and_recent_ones_kept() {
    use persys_metrics_pipeline::{
        samples::Row,
        store::{Batch, DAY_MS, Store},
    };
    let Some(db) = common::Db::create().await else { return };
    let store = Store::connect(&db.url, 2, "metrics").await.unwrap();
    let now = now_ms();
    let today = now.div_euclid(DAY_MS);
    // One row on each of the last ten days.
    for (seq, age_days) in (0..10i64).enumerate() {
        let rows =
            [Row { metric: Metric::Load1, labels: Default::default(), time_ms: now - age_days * DAY_MS, value: 1.0 }];
        let batch = Batch {
            node_id: "node-a",
            batch_seq: seq as u64 + 1,
            dropped: 0,
            samples: 1,
            rows: &rows,
            latest: None,
            now_ms: now - age_days * DAY_MS,
        };
        store.commit(&batch).await.unwrap();
    }
    assert_eq!(store.count_rows("node-a").await.unwrap(), 10);

    // Seven days' retention: days wholly older than now - 7 d go; the day the cutoff falls in stays.
    let dropped = store.expire(now, 7 * DAY_MS).await.unwrap();
    assert_eq!(dropped, vec![today - 9, today - 8]);
    assert_eq!(store.count_rows("node-a").await.unwrap(), 8);
    assert_eq!(
        store.batches("node-a").await.unwrap(),
        (1..=8).collect::<Vec<i64>>(),
        "batch records older than the cutoff go too"
    );
    // Nothing more to drop the second time.
    assert!(store.expire(now, 7 * DAY_MS).await.unwrap().is_empty());
    store.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn one_minute_rollups_agree_with_the_raw_samples_on_a_generated_history() {
    use persys_metrics_pipeline::{
        samples::{Labels, Row},
        store::{Batch, Committed, RangeQuery, Store},
    };
    let Some(db) = common::Db::create().await else { return };
    let store = Store::connect(&db.url, 2, "metrics").await.unwrap();
    // 40 minutes of two series every 7 s, values from a small deterministic generator, in
    // batches of 20 samples each.
    let t0 = (now_ms() - 3_600_000) / 60_000 * 60_000;
    let mut seed = 42u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / 1e6
    };
    let labels = |mount: &str| -> Labels { [("mount".to_string(), mount.to_string())].into() };
    let rows: Vec<Row> = (0..(40 * 60 / 7))
        .flat_map(|i| {
            let t = t0 + i * 7000;
            [
                Row { metric: Metric::DiskUsagePercent, labels: labels("/"), time_ms: t, value: next() },
                Row { metric: Metric::DiskUsagePercent, labels: labels("/var"), time_ms: t, value: next() },
            ]
        })
        .collect();
    for (seq, chunk) in rows.chunks(40).enumerate() {
        let batch = Batch {
            node_id: "node-a",
            batch_seq: seq as u64 + 1,
            dropped: 0,
            samples: 20,
            rows: chunk,
            latest: None,
            now_ms: now_ms(),
        };
        assert_eq!(store.commit(&batch).await.unwrap(), Committed::Stored(chunk.len()));
    }
    // A re-sent batch changes nothing, rollups included.
    let again = Batch {
        node_id: "node-a",
        batch_seq: 3,
        dropped: 0,
        samples: 20,
        rows: &rows[80..120],
        latest: None,
        now_ms: now_ms(),
    };
    assert_eq!(store.commit(&again).await.unwrap(), Committed::Duplicate);

    for rollup in [Rollup::Avg, Rollup::Min, Rollup::Max, Rollup::Sum, Rollup::Last] {
        for step_minutes in [1, 5, 15] {
            let q = RangeQuery {
                node_ids: vec![],
                metrics: vec![Metric::DiskUsagePercent],
                match_labels: Default::default(),
                start_ms: t0,
                end_ms: t0 + 40 * 60_000,
                step_ms: step_minutes * 60_000,
                rollup,
            };
            let raw = store.range_raw(&q).await.unwrap();
            let rolled = store.range_rollup(&q).await.unwrap();
            assert_eq!(raw.len(), 2);
            assert_eq!(raw.len(), rolled.len());
            for (r, o) in raw.iter().zip(&rolled) {
                assert_eq!((&r.node_id, r.metric, &r.labels), (&o.node_id, o.metric, &o.labels));
                assert_eq!(r.points.len(), o.points.len(), "{rollup:?} step {step_minutes}m");
                for (a, b) in r.points.iter().zip(&o.points) {
                    assert_eq!(a.0, b.0);
                    assert!(
                        (a.1 - b.1).abs() <= 1e-9 * a.1.abs().max(1.0),
                        "{rollup:?} step {step_minutes}m: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }
    store.close().await;
    db.drop_now().await;
}

/// Asserts that `other` has the same series and points as `raw` (to rounding).
fn assert_same(
    raw: &[persys_metrics_pipeline::store::SeriesPoints],
    other: &[persys_metrics_pipeline::store::SeriesPoints],
    what: &str,
) {
    assert_eq!(raw.len(), other.len(), "{what}: series");
    for (r, o) in raw.iter().zip(other) {
        assert_eq!((&r.node_id, r.metric, &r.labels), (&o.node_id, o.metric, &o.labels), "{what}");
        assert_eq!(r.points.len(), o.points.len(), "{what}: points");
        for (a, b) in r.points.iter().zip(&o.points) {
            assert_eq!(a.0, b.0, "{what}: bucket");
            assert!((a.1 - b.1).abs() <= 1e-9 * a.1.abs().max(1.0), "{what}: {a:?} vs {b:?}");
        }
    }
}

#[tokio::test]
async fn hourly_rollups_agree_with_the_raw_samples_before_and_after_folding_and_after_late_data() {
    use persys_metrics_pipeline::{
        samples::{Labels, Row},
        store::{Batch, HOUR_MS, RangeQuery, Store},
    };
    let Some(db) = common::Db::create().await else { return };
    let store = Store::connect(&db.url, 2, "metrics").await.unwrap();
    // Three whole hours, ended at least an hour ago, of two series every 30 s.
    let t0 = (now_ms() - 5 * HOUR_MS) / HOUR_MS * HOUR_MS;
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / 1e6
    };
    let labels = |mount: &str| -> Labels { [("mount".to_string(), mount.to_string())].into() };
    let rows: Vec<Row> = (0..(3 * 3600 / 30))
        .flat_map(|i| {
            let t = t0 + i * 30_000;
            [
                Row { metric: Metric::DiskUsagePercent, labels: labels("/"), time_ms: t, value: next() },
                Row { metric: Metric::DiskUsagePercent, labels: labels("/var"), time_ms: t, value: next() },
            ]
        })
        .collect();
    let mut seq = 0;
    let mut commit = async |rows: &[Row]| {
        seq += 1;
        let batch =
            Batch { node_id: "node-a", batch_seq: seq, dropped: 0, samples: 1, rows, latest: None, now_ms: now_ms() };
        store.commit(&batch).await.unwrap();
    };
    for chunk in rows.chunks(60) {
        commit(chunk).await;
    }
    let query = |rollup, step_ms| RangeQuery {
        node_ids: vec![],
        metrics: vec![Metric::DiskUsagePercent],
        match_labels: Default::default(),
        start_ms: t0,
        end_ms: t0 + 3 * HOUR_MS,
        step_ms,
        rollup,
    };
    let check = async |when: &str| {
        for rollup in [Rollup::Avg, Rollup::Min, Rollup::Max, Rollup::Sum, Rollup::Last] {
            for hours in [1, 3] {
                let q = query(rollup, hours * HOUR_MS);
                let raw = store.range_raw(&q).await.unwrap();
                assert_eq!(raw.len(), 2);
                assert_same(&raw, &store.range_hourly(&q).await.unwrap(), &format!("{when}, {rollup:?}, {hours}h"));
                assert_same(&raw, &store.range(&q).await.unwrap(), &format!("{when}, range() picks hourly"));
            }
        }
    };
    check("nothing folded yet: from the minutes").await;
    assert_eq!(store.roll_hours(now_ms(), 24).await.unwrap(), 3, "the three ended hours");
    assert_eq!(store.roll_hours(now_ms(), 24).await.unwrap(), 0, "nothing left to fold");
    let hourly_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM samples_1h")
        .fetch_one(store.postgres().expect("PostgreSQL"))
        .await
        .unwrap();
    assert_eq!(hourly_rows, 6, "two series, three hours");
    check("folded").await;

    // A late batch in the second hour: answered exactly before it is folded again, and after.
    let late =
        [Row { metric: Metric::DiskUsagePercent, labels: labels("/"), time_ms: t0 + HOUR_MS + 15_000, value: 1e6 }];
    commit(&late).await;
    check("late data, not folded").await;
    assert_eq!(store.roll_hours(now_ms(), 24).await.unwrap(), 1, "only the hour that changed");
    check("late data folded").await;

    // The hour in progress is not folded.
    let this_hour = now_ms() / HOUR_MS * HOUR_MS;
    commit(&[Row { metric: Metric::DiskUsagePercent, labels: labels("/"), time_ms: this_hour, value: 5.0 }]).await;
    assert_eq!(store.roll_hours(now_ms(), 24).await.unwrap(), 0);
    store.close().await;
    db.drop_now().await;
}
