//! PostgreSQL: batches (for exactly-once ingest), raw samples in daily partitions, and the
//! newest sample of each node.

use std::{collections::HashSet, sync::Mutex};

use persys_proto::metrics::v1::{Metric, Rollup};
use sqlx::{
    AssertSqlSafe, PgPool, Row as _,
    postgres::{PgPoolOptions, PgRow},
};

use crate::samples::{Labels, Row};

/// One day in milliseconds: the width of a partition.
pub const DAY_MS: i64 = 86_400_000;

/// How long the one-minute rollups are kept by default.
pub const ROLLUP_RETENTION_MS: i64 = 90 * DAY_MS;
/// How long the one-hour rollups are kept by default.
pub const HOURLY_RETENTION_MS: i64 = 730 * DAY_MS;
/// One hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error or could not be reached.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// What became of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Stored now, with this many rows.
    Stored(usize),
    /// Already stored before: nothing written.
    Duplicate,
}

/// One batch to commit.
#[derive(Debug)]
pub struct Batch<'a> {
    /// The sending node.
    pub node_id: &'a str,
    /// Its sequence number on the node.
    pub batch_seq: u64,
    /// Samples the agent dropped so far.
    pub dropped: u64,
    /// Samples in the batch.
    pub samples: usize,
    /// The rows to store.
    pub rows: &'a [Row],
    /// The newest sample (time, encoded `HostMetrics`), if any.
    pub latest: Option<(i64, Vec<u8>)>,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
}

/// A series answered by a range query.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoints {
    /// Node.
    pub node_id: String,
    /// Metric.
    pub metric: Metric,
    /// Labels.
    pub labels: Labels,
    /// (bucket start in Unix ms, value), oldest first.
    pub points: Vec<(i64, f64)>,
}

/// What a range query asks.
#[derive(Clone, Debug)]
pub struct RangeQuery {
    /// Nodes; empty means all.
    pub node_ids: Vec<String>,
    /// Metrics (at least one).
    pub metrics: Vec<Metric>,
    /// Series must carry these labels.
    pub match_labels: Labels,
    /// Inclusive start, Unix ms.
    pub start_ms: i64,
    /// Exclusive end, Unix ms.
    pub end_ms: i64,
    /// Bucket width, ms (> 0).
    pub step_ms: i64,
    /// How a bucket's values combine.
    pub rollup: Rollup,
}

/// The pipeline's database.
#[derive(Debug)]
pub struct Store {
    pool: PgPool,
    /// Days whose partition exists.
    partitions: Mutex<HashSet<i64>>,
}

impl Store {
    /// Connects to `url` (PostgreSQL) and brings the tables in `schema` (created if missing)
    /// up to date. Everything the pipeline keeps, its migration history included, lives in
    /// that schema, so it can share a database with the gateway.
    pub async fn connect(url: &str, max_connections: u32, schema: &str) -> Result<Self, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::Corrupt(format!("schema name {schema:?}: use lowercase letters, digits and _")));
        }
        let search_path = format!("SET search_path TO {schema}");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(move |conn, _| {
                let sql = search_path.clone();
                Box::pin(async move {
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.create_schema(schema.to_owned());
        migrator.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
        migrator.run(&pool).await?;
        Ok(Self { pool, partitions: Mutex::new(HashSet::new()) })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the daily partitions that `rows` fall in, if missing.
    async fn ensure_partitions(&self, rows: &[Row]) -> Result<(), StoreError> {
        let days: HashSet<i64> = rows.iter().map(|r| r.time_ms.div_euclid(DAY_MS)).collect();
        let missing: Vec<i64> = {
            let known = self.partitions.lock().expect("partitions lock");
            days.into_iter().filter(|d| !known.contains(d)).collect()
        };
        for day in missing {
            let mut tx = self.pool.begin().await?;
            // Replicas may create the same partition at once; one at a time.
            sqlx::query("SELECT pg_advisory_xact_lock(7400)").execute(&mut *tx).await?;
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS samples_d{day} PARTITION OF samples FOR VALUES FROM ({}) TO ({})",
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
            tx.commit().await?;
            self.partitions.lock().expect("partitions lock").insert(day);
        }
        Ok(())
    }

    /// Stores a batch in one transaction, unless `(node_id, batch_seq)` is already stored.
    pub async fn commit(&self, batch: &Batch<'_>) -> Result<Committed, StoreError> {
        self.ensure_partitions(batch.rows).await?;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO ingest_batches (node_id, batch_seq, samples, dropped, received_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(batch.node_id)
        .bind(batch.batch_seq as i64)
        .bind(batch.samples as i32)
        .bind(batch.dropped as i64)
        .bind(batch.now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Committed::Duplicate);
        }
        if !batch.rows.is_empty() {
            let metric: Vec<i16> = batch.rows.iter().map(|r| r.metric as i16).collect();
            let labels: Vec<String> =
                batch.rows.iter().map(|r| serde_json::to_string(&r.labels).expect("string labels serialize")).collect();
            let time: Vec<i64> = batch.rows.iter().map(|r| r.time_ms).collect();
            let value: Vec<f64> = batch.rows.iter().map(|r| r.value).collect();
            // One statement over the arrays, sent once: the raw rows, their hours marked for the
            // hourly job, and the same rows folded into their minutes (grouped in key order, so
            // concurrent batches of one node lock rollup rows in the same order).
            sqlx::query(
                "WITH u AS (SELECT m, l::jsonb AS l, t, v \
                            FROM UNNEST($2::int2[], $3::text[], $4::int8[], $5::float8[]) AS x(m, l, t, v)), \
                      raw AS (INSERT INTO samples (node_id, metric, labels, time_ms, value) SELECT $1, m, l, t, v FROM u), \
                      dirty AS (INSERT INTO rollup_dirty (hour_ms) SELECT DISTINCT (t / 3600000) * 3600000 FROM u \
                                ORDER BY 1 ON CONFLICT DO NOTHING) \
                 INSERT INTO samples_1m AS r (node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms) \
                 SELECT $1, m, l, (t / 60000) * 60000, min(v), max(v), sum(v), count(*), \
                        (array_agg(v ORDER BY t DESC))[1], max(t) \
                 FROM u GROUP BY m, l, (t / 60000) * 60000 ORDER BY 1, 2, 3, 4 \
                 ON CONFLICT (node_id, metric, labels, bucket_ms) DO UPDATE SET \
                   min = least(r.min, EXCLUDED.min), max = greatest(r.max, EXCLUDED.max), \
                   sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count, \
                   last = CASE WHEN EXCLUDED.last_ms >= r.last_ms THEN EXCLUDED.last ELSE r.last END, \
                   last_ms = greatest(r.last_ms, EXCLUDED.last_ms)",
            )
            .bind(batch.node_id)
            .bind(&metric)
            .bind(&labels)
            .bind(&time)
            .bind(&value)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((time_ms, payload)) = &batch.latest {
            sqlx::query(
                "INSERT INTO latest_host (node_id, time_ms, payload) VALUES ($1, $2, $3) \
                 ON CONFLICT (node_id) DO UPDATE SET time_ms = EXCLUDED.time_ms, payload = EXCLUDED.payload \
                 WHERE latest_host.time_ms < EXCLUDED.time_ms",
            )
            .bind(batch.node_id)
            .bind(time_ms)
            .bind(payload)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Committed::Stored(batch.rows.len()))
    }

    /// Returns those of `node_ids` that have sent metrics.
    pub async fn known_nodes(&self, node_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT node_id FROM latest_host WHERE node_id = ANY($1)")
            .bind(node_ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Returns the newest sample of each node (encoded `HostMetrics`), by node id after
    /// `after`, at most `limit`; only `node_ids` when not empty.
    pub async fn latest(
        &self,
        node_ids: &[String],
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, payload FROM latest_host WHERE (cardinality($1::text[]) = 0 OR node_id = ANY($1)) \
             AND node_id > $2 ORDER BY node_id LIMIT $3",
        )
        .bind(node_ids)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Answers a range query, one point per non-empty bucket, from the coarsest store whose
    /// buckets divide the step and the start: the one-hour rollups, the one-minute rollups, or
    /// the raw samples (the same figures, fewer rows).
    pub async fn range(&self, q: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError> {
        if q.step_ms % HOUR_MS == 0 && q.start_ms % HOUR_MS == 0 {
            self.range_hourly(q).await
        } else if q.step_ms % 60_000 == 0 && q.start_ms % 60_000 == 0 {
            self.range_rollup(q).await
        } else {
            self.range_raw(q).await
        }
    }

    /// Answers a range query from the one-minute rollups; `step_ms` and `start_ms` must be whole
    /// minutes (the end is rounded up to one).
    pub async fn range_rollup(&self, q: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError> {
        let aggregate = rollup_aggregate(q.rollup);
        let sql = format!(
            "SELECT node_id, metric, labels::text AS labels, $4 + ((bucket_ms - $4) / $6) * $6 AS bucket, {aggregate} AS value \
             FROM samples_1m WHERE (cardinality($1::text[]) = 0 OR node_id = ANY($1)) AND metric = ANY($2) \
             AND labels @> $3::jsonb AND bucket_ms >= $4 AND bucket_ms < $5 \
             GROUP BY node_id, metric, labels, bucket ORDER BY node_id, metric, labels::text, bucket",
        );
        self.range_with(sql, q, round_up(q.end_ms, 60_000)).await
    }

    /// Answers a range query from the one-hour rollups, and from the one-minute rollups for the
    /// hours not folded since they last changed; `step_ms` and `start_ms` must be whole hours
    /// (the end is rounded up to one).
    pub async fn range_hourly(&self, q: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError> {
        let aggregate = rollup_aggregate(q.rollup);
        let filter = "(cardinality($1::text[]) = 0 OR node_id = ANY($1)) AND metric = ANY($2) \
                      AND labels @> $3::jsonb AND bucket_ms >= $4 AND bucket_ms < $5";
        let sql = format!(
            "WITH dirty AS (SELECT hour_ms FROM rollup_dirty WHERE hour_ms >= $4 AND hour_ms < $5), \
                  src AS (SELECT node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms FROM samples_1h \
                          WHERE {filter} AND bucket_ms NOT IN (SELECT hour_ms FROM dirty) \
                          UNION ALL \
                          SELECT node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms FROM samples_1m \
                          WHERE {filter} AND (bucket_ms / 3600000) * 3600000 IN (SELECT hour_ms FROM dirty)) \
             SELECT node_id, metric, labels::text AS labels, $4 + ((bucket_ms - $4) / $6) * $6 AS bucket, {aggregate} AS value \
             FROM src GROUP BY node_id, metric, labels, bucket ORDER BY node_id, metric, labels::text, bucket",
        );
        self.range_with(sql, q, round_up(q.end_ms, HOUR_MS)).await
    }

    /// Folds up to `limit` changed hours that ended before `now_ms` from the one-minute rollups
    /// into the one-hour rollups, each in one transaction with taking it off the changed list
    /// (a batch landing meanwhile marks its hour again). Returns how many hours it folded.
    pub async fn roll_hours(&self, now_ms: i64, limit: i64) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let hours: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM rollup_dirty WHERE hour_ms IN ( \
               SELECT hour_ms FROM rollup_dirty WHERE hour_ms + 3600000 <= $1 ORDER BY hour_ms LIMIT $2 \
               FOR UPDATE SKIP LOCKED) RETURNING hour_ms",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if hours.is_empty() {
            return Ok(0);
        }
        sqlx::query("DELETE FROM samples_1h WHERE bucket_ms = ANY($1)").bind(&hours).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO samples_1h (node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms) \
             SELECT node_id, metric, labels, h.ms, min(min), max(max), sum(sum), sum(count)::bigint, \
                    (array_agg(last ORDER BY last_ms DESC))[1], max(last_ms) \
             FROM samples_1m JOIN unnest($1::int8[]) AS h(ms) ON bucket_ms >= h.ms AND bucket_ms < h.ms + 3600000 \
             GROUP BY node_id, metric, labels, h.ms",
        )
        .bind(&hours)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(hours.len())
    }

    /// Deletes one-minute rollups older than `minute_ms` and one-hour rollups older than
    /// `hour_ms` before `now_ms`.
    pub async fn expire_rollups(&self, now_ms: i64, minute_ms: i64, hour_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM samples_1m WHERE bucket_ms < $1").bind(now_ms - minute_ms).execute(&self.pool).await?;
        sqlx::query("DELETE FROM samples_1h WHERE bucket_ms < $1").bind(now_ms - hour_ms).execute(&self.pool).await?;
        Ok(())
    }

    /// Answers a range query from the raw samples.
    pub async fn range_raw(&self, q: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError> {
        let aggregate = match q.rollup {
            Rollup::Min => "min(value)",
            Rollup::Max => "max(value)",
            Rollup::Sum => "sum(value)",
            Rollup::Last => "(array_agg(value ORDER BY time_ms DESC))[1]",
            Rollup::Avg | Rollup::Unspecified => "avg(value)",
        };
        let sql = format!(
            "SELECT node_id, metric, labels::text AS labels, $4 + ((time_ms - $4) / $6) * $6 AS bucket, {aggregate} AS value \
             FROM samples WHERE (cardinality($1::text[]) = 0 OR node_id = ANY($1)) AND metric = ANY($2) \
             AND labels @> $3::jsonb AND time_ms >= $4 AND time_ms < $5 \
             GROUP BY node_id, metric, labels, bucket ORDER BY node_id, metric, labels::text, bucket",
        );
        self.range_with(sql, q, q.end_ms).await
    }

    async fn range_with(&self, sql: String, q: &RangeQuery, end_ms: i64) -> Result<Vec<SeriesPoints>, StoreError> {
        let metrics: Vec<i16> = q.metrics.iter().map(|m| *m as i16).collect();
        let matching = serde_json::to_string(&q.match_labels).expect("string labels serialize");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&q.node_ids)
            .bind(&metrics)
            .bind(matching)
            .bind(q.start_ms)
            .bind(end_ms)
            .bind(q.step_ms)
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<SeriesPoints> = Vec::new();
        for row in &rows {
            let (node_id, metric, labels) = series_of(row)?;
            let point = (row.try_get::<i64, _>("bucket")?, row.try_get::<f64, _>("value")?);
            match out.last_mut() {
                Some(s) if s.node_id == node_id && s.metric == metric && s.labels == labels => s.points.push(point),
                _ => out.push(SeriesPoints { node_id, metric, labels, points: vec![point] }),
            }
        }
        Ok(out)
    }

    /// Drops the daily partitions wholly older than `now_ms - retention_ms`, and the batch
    /// records received before then (a batch that old would be refused anyway). Returns the
    /// days dropped.
    pub async fn expire(&self, now_ms: i64, retention_ms: i64) -> Result<Vec<i64>, StoreError> {
        let cutoff = now_ms - retention_ms;
        let rows = sqlx::query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE p.relname = 'samples' AND n.nspname = current_schema()",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut dropped = Vec::new();
        for row in &rows {
            let name: String = row.try_get(0)?;
            let Some(day) = name.strip_prefix("samples_d").and_then(|d| d.parse::<i64>().ok()) else { continue };
            if (day + 1) * DAY_MS <= cutoff {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS samples_d{day}")))
                    .execute(&self.pool)
                    .await?;
                self.partitions.lock().expect("partitions lock").remove(&day);
                dropped.push(day);
            }
        }
        sqlx::query("DELETE FROM ingest_batches WHERE received_ms < $1").bind(cutoff).execute(&self.pool).await?;
        dropped.sort_unstable();
        Ok(dropped)
    }

    /// Stores a rule (insert or replace).
    pub async fn put_rule(&self, rule: &persys_proto::metrics::v1::AlertRule, now_ms: i64) -> Result<(), StoreError> {
        use prost::Message;
        sqlx::query(
            "INSERT INTO alert_rules (id, payload, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload",
        )
        .bind(&rule.id)
        .bind(rule.encode_to_vec())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a rule; returns whether it existed.
    pub async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        let n =
            sqlx::query("DELETE FROM alert_rules WHERE id = $1").bind(id).execute(&self.pool).await?.rows_affected();
        Ok(n > 0)
    }

    /// Every rule, oldest first.
    pub async fn rules(&self) -> Result<Vec<persys_proto::metrics::v1::AlertRule>, StoreError> {
        let rows = sqlx::query("SELECT payload FROM alert_rules ORDER BY created_ms, id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| decode(r.get::<Vec<u8>, _>(0).as_slice())).collect()
    }

    /// Stores an alert as it is now (`open`: pending, firing or acknowledged) and, in the same
    /// transaction, queues the notifications its change calls for.
    pub async fn put_alert(
        &self,
        alert: &persys_proto::metrics::v1::Alert,
        subject: &str,
        open: bool,
        now_ms: i64,
        notify: &[crate::notify::Queued],
    ) -> Result<(), StoreError> {
        use prost::Message;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO alerts (id, rule_id, node_id, subject, state, severity, open, payload, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, \
             open = EXCLUDED.open, payload = EXCLUDED.payload, updated_ms = EXCLUDED.updated_ms",
        )
        .bind(&alert.id)
        .bind(&alert.rule_id)
        .bind(&alert.node_id)
        .bind(subject)
        .bind(alert.state as i16)
        .bind(alert.severity as i16)
        .bind(open)
        .bind(alert.encode_to_vec())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        crate::notify::enqueue(&mut tx, alert, notify, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a silence as it is now, in force from `starts_ms` until `ends_ms`.
    pub async fn put_silence(
        &self,
        silence: &persys_proto::metrics::v1::Silence,
        starts_ms: i64,
        ends_ms: i64,
        created_ms: i64,
    ) -> Result<(), StoreError> {
        use prost::Message;
        sqlx::query(
            "INSERT INTO silences (id, payload, starts_ms, ends_ms, created_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload, starts_ms = EXCLUDED.starts_ms, \
             ends_ms = EXCLUDED.ends_ms",
        )
        .bind(&silence.id)
        .bind(silence.encode_to_vec())
        .bind(starts_ms)
        .bind(ends_ms)
        .bind(created_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Silences that have not ended by `now_ms` (every one when `include_ended`), newest first.
    pub async fn silences(
        &self,
        include_ended: bool,
        now_ms: i64,
    ) -> Result<Vec<persys_proto::metrics::v1::Silence>, StoreError> {
        let rows = sqlx::query("SELECT payload FROM silences WHERE $1 OR ends_ms > $2 ORDER BY created_ms DESC, id")
            .bind(include_ended)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| decode(r.get::<Vec<u8>, _>(0).as_slice())).collect()
    }

    /// Returns one silence.
    pub async fn silence(&self, id: &str) -> Result<Option<persys_proto::metrics::v1::Silence>, StoreError> {
        let row = sqlx::query("SELECT payload FROM silences WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| decode(r.get::<Vec<u8>, _>(0).as_slice())).transpose()
    }

    /// Returns one alert.
    pub async fn alert(&self, id: &str) -> Result<Option<persys_proto::metrics::v1::Alert>, StoreError> {
        let row = sqlx::query("SELECT payload FROM alerts WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| decode(r.get::<Vec<u8>, _>(0).as_slice())).transpose()
    }

    /// Forgets an alert (a pending one whose condition stopped holding).
    pub async fn delete_alert(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM alerts WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Alerts, newest change first: only `open` ones when asked, only those of `node_id` /
    /// `rule_id` when not empty, with a state in `states` when not empty, severity at least
    /// `min_severity`; after `offset`, at most `limit`.
    #[allow(clippy::too_many_arguments)]
    pub async fn alerts(
        &self,
        open_only: bool,
        node_id: &str,
        rule_id: &str,
        states: &[i16],
        min_severity: i16,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<persys_proto::metrics::v1::Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT payload FROM alerts WHERE (NOT $1 OR open) AND ($2 = '' OR node_id = $2) AND ($3 = '' OR rule_id = $3) \
             AND (cardinality($4::int2[]) = 0 OR state = ANY($4)) AND severity >= $5 \
             ORDER BY updated_ms DESC, id OFFSET $6 LIMIT $7",
        )
        .bind(open_only)
        .bind(node_id)
        .bind(rule_id)
        .bind(states)
        .bind(min_severity)
        .bind(offset)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| decode(r.get::<Vec<u8>, _>(0).as_slice())).collect()
    }

    /// Counts the stored rows of one node (tests and invariants).
    pub async fn count_rows(&self, node_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT count(*) FROM samples WHERE node_id = $1")
            .bind(node_id)
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// Returns the batch numbers stored for one node, ascending (tests and invariants).
    pub async fn batches(&self, node_id: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT batch_seq FROM ingest_batches WHERE node_id = $1 ORDER BY batch_seq")
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// The SQL aggregate of `rollup` over rollup rows (min, max, sum, count, last, last_ms).
fn rollup_aggregate(rollup: Rollup) -> &'static str {
    match rollup {
        Rollup::Min => "min(min)",
        Rollup::Max => "max(max)",
        Rollup::Sum => "sum(sum)",
        Rollup::Last => "(array_agg(last ORDER BY last_ms DESC))[1]",
        Rollup::Avg | Rollup::Unspecified => "sum(sum) / sum(count)",
    }
}

/// `ms` rounded up to a multiple of `unit`.
fn round_up(ms: i64, unit: i64) -> i64 {
    ms.div_euclid(unit) * unit + if ms.rem_euclid(unit) == 0 { 0 } else { unit }
}

/// Whether `name` is a plain lowercase identifier (it goes into SQL unquoted).
pub fn valid_schema(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn series_of(row: &PgRow) -> Result<(String, Metric, Labels), StoreError> {
    let metric: i16 = row.try_get("metric")?;
    let metric = Metric::try_from(i32::from(metric)).map_err(|_| StoreError::Corrupt(format!("metric {metric}")))?;
    let labels: String = row.try_get("labels")?;
    let labels: Labels = serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?;
    Ok((row.try_get("node_id")?, metric, labels))
}
