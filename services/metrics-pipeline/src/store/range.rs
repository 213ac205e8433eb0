//! Range queries over the raw samples and the one-minute and one-hour rollups, the hourly fold
//! and the rollups' retention. The SQL differs by backend only where PostgreSQL's arrays,
//! `jsonb` containment and `array_agg` have no SQLite equivalent; the shape is the same.

use persys_proto::metrics::v1::Rollup;
use sqlx::AssertSqlSafe;

use super::{HOUR_MS, RangeQuery, SeriesPoints, Store, StoreError, series_of};
use crate::{
    db::{Db, json_list},
    on_db,
};

/// Which column a query buckets by.
#[derive(Clone, Copy)]
enum Source {
    /// Raw samples (`time_ms`, `value`).
    Raw,
    /// Rollup rows (`bucket_ms`, `min`, `max`, `sum`, `count`, `last`, `last_ms`).
    Rollups,
}

/// The WHERE clause of a range query over `time` ($1 nodes, $2 metrics, $3 labels to match, $4
/// start, $5 end).
fn filter(db: &Db, time: &str) -> String {
    match db {
        Db::Postgres(_) => format!(
            "(cardinality($1::text[]) = 0 OR node_id = ANY($1)) AND metric = ANY($2) \
             AND labels @> $3::jsonb AND {time} >= $4 AND {time} < $5"
        ),
        Db::Sqlite(_) => format!(
            "(json_array_length($1) = 0 OR node_id IN (SELECT value FROM json_each($1))) \
             AND metric IN (SELECT value FROM json_each($2)) \
             AND NOT EXISTS (SELECT 1 FROM json_each($3) m \
                             WHERE NOT EXISTS (SELECT 1 FROM json_each(labels) l WHERE l.key = m.key AND l.value = m.value)) \
             AND {time} >= $4 AND {time} < $5"
        ),
    }
}

/// The select list of a range query: series, bucket ($4 start, $6 step) and `value`.
fn select(db: &Db, source: Source, rollup: Rollup) -> String {
    let (time, labels) = match (source, db) {
        (Source::Raw, Db::Postgres(_)) => ("time_ms", "labels::text"),
        (Source::Raw, Db::Sqlite(_)) => ("time_ms", "labels"),
        (Source::Rollups, Db::Postgres(_)) => ("bucket_ms", "labels::text"),
        (Source::Rollups, Db::Sqlite(_)) => ("bucket_ms", "labels"),
    };
    let (value, newest) = match (source, rollup, db) {
        (Source::Raw, Rollup::Min, _) => ("min(value)", ""),
        (Source::Raw, Rollup::Max, _) => ("max(value)", ""),
        (Source::Raw, Rollup::Sum, _) => ("sum(value)", ""),
        (Source::Raw, Rollup::Last, Db::Postgres(_)) => ("(array_agg(value ORDER BY time_ms DESC))[1]", ""),
        // SQLite fills a bare column from the row holding the only max() of the query.
        (Source::Raw, Rollup::Last, Db::Sqlite(_)) => ("value", ", max(time_ms) AS newest"),
        (Source::Raw, Rollup::Avg | Rollup::Unspecified, _) => ("avg(value)", ""),
        (Source::Rollups, Rollup::Min, _) => ("min(min)", ""),
        (Source::Rollups, Rollup::Max, _) => ("max(max)", ""),
        (Source::Rollups, Rollup::Sum, _) => ("sum(sum)", ""),
        (Source::Rollups, Rollup::Last, Db::Postgres(_)) => ("(array_agg(last ORDER BY last_ms DESC))[1]", ""),
        (Source::Rollups, Rollup::Last, Db::Sqlite(_)) => ("last", ", max(last_ms) AS newest"),
        (Source::Rollups, Rollup::Avg | Rollup::Unspecified, _) => ("sum(sum) / sum(count)", ""),
    };
    format!("node_id, metric, {labels} AS labels, $4 + (({time} - $4) / $6) * $6 AS bucket, {value} AS value{newest}")
}

/// How the answer is grouped and ordered.
fn group(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => "GROUP BY node_id, metric, labels, bucket ORDER BY node_id, metric, labels::text, bucket",
        Db::Sqlite(_) => "GROUP BY node_id, metric, labels, bucket ORDER BY node_id, metric, labels, bucket",
    }
}

impl Store {
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
        let db = &self.db;
        let sql = format!(
            "SELECT {} FROM samples_1m WHERE {} {}",
            select(db, Source::Rollups, q.rollup),
            filter(db, "bucket_ms"),
            group(db)
        );
        self.range_with(sql, q, round_up(q.end_ms, 60_000)).await
    }

    /// Answers a range query from the one-hour rollups, and from the one-minute rollups for the
    /// hours not folded since they last changed; `step_ms` and `start_ms` must be whole hours
    /// (the end is rounded up to one).
    pub async fn range_hourly(&self, q: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError> {
        let db = &self.db;
        let filter = filter(db, "bucket_ms");
        let sql = format!(
            "WITH dirty AS (SELECT hour_ms FROM rollup_dirty WHERE hour_ms >= $4 AND hour_ms < $5), \
                  src AS (SELECT node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms FROM samples_1h \
                          WHERE {filter} AND bucket_ms NOT IN (SELECT hour_ms FROM dirty) \
                          UNION ALL \
                          SELECT node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms FROM samples_1m \
                          WHERE {filter} AND (bucket_ms / 3600000) * 3600000 IN (SELECT hour_ms FROM dirty)) \
             SELECT {} FROM src {}",
            select(db, Source::Rollups, q.rollup),
            group(db)
        );
        self.range_with(sql, q, round_up(q.end_ms, HOUR_MS)).await
    }

    /// Answers a range query from the raw samples.
    pub async fn range_raw(&self, q: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError> {
        let db = &self.db;
        let sql = format!(
            "SELECT {} FROM samples WHERE {} {}",
            select(db, Source::Raw, q.rollup),
            filter(db, "time_ms"),
            group(db)
        );
        self.range_with(sql, q, q.end_ms).await
    }

    async fn range_with(&self, sql: String, q: &RangeQuery, end_ms: i64) -> Result<Vec<SeriesPoints>, StoreError> {
        let metrics: Vec<i16> = q.metrics.iter().map(|m| *m as i16).collect();
        let matching = serde_json::to_string(&q.match_labels).expect("string labels serialize");
        let sql = AssertSqlSafe(sql);
        let rows: Vec<(String, i16, String, i64, f64)> = match &self.db {
            Db::Postgres(pool) => {
                let rows = sqlx::query(sql)
                    .bind(&q.node_ids)
                    .bind(&metrics)
                    .bind(matching)
                    .bind(q.start_ms)
                    .bind(end_ms)
                    .bind(q.step_ms)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(point_of).collect::<Result<_, _>>()?
            }
            Db::Sqlite(pool) => {
                let rows = sqlx::query(sql)
                    .bind(json_list(q.node_ids.iter().map(String::as_str)))
                    .bind(json_list(metrics))
                    .bind(matching)
                    .bind(q.start_ms)
                    .bind(end_ms)
                    .bind(q.step_ms)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(point_of).collect::<Result<_, _>>()?
            }
        };
        let mut out: Vec<SeriesPoints> = Vec::new();
        for (node_id, metric, labels, bucket, value) in rows {
            let (node_id, metric, labels) = series_of(node_id, metric, &labels)?;
            let point = (bucket, value);
            match out.last_mut() {
                Some(s) if s.node_id == node_id && s.metric == metric && s.labels == labels => s.points.push(point),
                _ => out.push(SeriesPoints { node_id, metric, labels, points: vec![point] }),
            }
        }
        Ok(out)
    }

    /// Folds up to `limit` changed hours that ended before `now_ms` from the one-minute rollups
    /// into the one-hour rollups, each in one transaction with taking it off the changed list
    /// (a batch landing meanwhile marks its hour again). Returns how many hours it folded.
    pub async fn roll_hours(&self, now_ms: i64, limit: i64) -> Result<usize, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
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
            // One writer: no other replica can take the same hours, so no row locks are needed.
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let hours: Vec<i64> = sqlx::query_scalar(
                    "DELETE FROM rollup_dirty WHERE hour_ms IN ( \
                       SELECT hour_ms FROM rollup_dirty WHERE hour_ms + 3600000 <= $1 ORDER BY hour_ms LIMIT $2) \
                     RETURNING hour_ms",
                )
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                for hour in &hours {
                    sqlx::query("DELETE FROM samples_1h WHERE bucket_ms = $1").bind(hour).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO samples_1h (node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms) \
                         SELECT node_id, metric, labels, $1, min(min), max(max), sum(sum), sum(count), \
                                (SELECT x.last FROM samples_1m x WHERE x.node_id = m.node_id AND x.metric = m.metric \
                                   AND x.labels = m.labels AND x.bucket_ms >= $1 AND x.bucket_ms < $1 + 3600000 \
                                 ORDER BY x.last_ms DESC LIMIT 1), \
                                max(last_ms) \
                         FROM samples_1m m WHERE bucket_ms >= $1 AND bucket_ms < $1 + 3600000 \
                         GROUP BY node_id, metric, labels",
                    )
                    .bind(hour)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(hours.len())
            }
        }
    }

    /// Deletes one-minute rollups older than `minute_ms` and one-hour rollups older than
    /// `hour_ms` before `now_ms`.
    pub async fn expire_rollups(&self, now_ms: i64, minute_ms: i64, hour_ms: i64) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM samples_1m WHERE bucket_ms < $1").bind(now_ms - minute_ms).execute(pool).await?;
            sqlx::query("DELETE FROM samples_1h WHERE bucket_ms < $1").bind(now_ms - hour_ms).execute(pool).await?;
        });
        Ok(())
    }
}

/// A range query's answer row: node, metric, labels, bucket, value.
fn point_of<R: sqlx::Row>(row: &R) -> Result<(String, i16, String, i64, f64), StoreError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok((
        row.try_get("node_id")?,
        row.try_get("metric")?,
        row.try_get("labels")?,
        row.try_get("bucket")?,
        row.try_get("value")?,
    ))
}

/// `ms` rounded up to a multiple of `unit`.
fn round_up(ms: i64, unit: i64) -> i64 {
    ms.div_euclid(unit) * unit + if ms.rem_euclid(unit) == 0 { 0 } else { unit }
}
