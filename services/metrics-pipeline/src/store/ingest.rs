//! A batch's rows into the raw samples, the one-minute rollups and the changed hours, inside
//! the transaction that records the batch.

use std::collections::{BTreeMap, BTreeSet};

use persys_proto::metrics::v1::Metric;
use sqlx::{QueryBuilder, Sqlite};

use super::{HOUR_MS, StoreError};
use crate::{db::Conn, samples::Row};

/// Rows per multi-row statement on SQLite: 5 parameters a row, under SQLite's default limit of
/// 32,766 parameters with room to spare (a minute row takes 10: half as many of those).
const ROWS_PER_STATEMENT: usize = 500;

/// One minute of one series, folded from a batch's rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Minute {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of the values.
    pub sum: f64,
    /// How many values.
    pub count: i64,
    /// The newest value.
    pub last: f64,
    /// Its time.
    pub last_ms: i64,
}

/// Folds `rows` into their minutes, keyed by (metric, labels as JSON, minute start), in key
/// order; what PostgreSQL computes in SQL for its upsert.
pub fn fold_minutes(rows: &[Row]) -> BTreeMap<(Metric, String, i64), Minute> {
    let mut out: BTreeMap<(Metric, String, i64), Minute> = BTreeMap::new();
    for r in rows {
        let key = (r.metric, labels_json(r), r.time_ms.div_euclid(60_000) * 60_000);
        out.entry(key)
            .and_modify(|m| {
                m.min = m.min.min(r.value);
                m.max = m.max.max(r.value);
                m.sum += r.value;
                m.count += 1;
                if r.time_ms >= m.last_ms {
                    m.last = r.value;
                    m.last_ms = r.time_ms;
                }
            })
            .or_insert(Minute {
                min: r.value,
                max: r.value,
                sum: r.value,
                count: 1,
                last: r.value,
                last_ms: r.time_ms,
            });
    }
    out
}

fn labels_json(r: &Row) -> String {
    serde_json::to_string(&r.labels).expect("string labels serialize")
}

/// Writes `rows` of `node_id` on `conn`: raw samples, their hours marked for the hourly job, and
/// the rows folded into their minutes.
pub(super) async fn insert_rows(conn: Conn<'_>, node_id: &str, rows: &[Row]) -> Result<(), StoreError> {
    match conn {
        Conn::Postgres(tx) => {
            let metric: Vec<i16> = rows.iter().map(|r| r.metric as i16).collect();
            let labels: Vec<String> = rows.iter().map(labels_json).collect();
            let time: Vec<i64> = rows.iter().map(|r| r.time_ms).collect();
            let value: Vec<f64> = rows.iter().map(|r| r.value).collect();
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
            .bind(node_id)
            .bind(&metric)
            .bind(&labels)
            .bind(&time)
            .bind(&value)
            .execute(&mut *tx)
            .await?;
        }
        // Multi-row statements (a statement costs a round trip to SQLite's worker thread); the
        // minutes are folded here rather than in SQL (SQLite has no array_agg).
        Conn::Sqlite(tx) => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut insert =
                    QueryBuilder::<Sqlite>::new("INSERT INTO samples (node_id, metric, labels, time_ms, value) ");
                insert.push_values(chunk, |mut b, r| {
                    b.push_bind(node_id)
                        .push_bind(r.metric as i16)
                        .push_bind(labels_json(r))
                        .push_bind(r.time_ms)
                        .push_bind(r.value);
                });
                insert.build().execute(&mut *tx).await?;
            }
            let hours: BTreeSet<i64> = rows.iter().map(|r| r.time_ms.div_euclid(HOUR_MS) * HOUR_MS).collect();
            let mut dirty = QueryBuilder::<Sqlite>::new("INSERT INTO rollup_dirty (hour_ms) ");
            dirty.push_values(hours, |mut b, hour| {
                b.push_bind(hour);
            });
            dirty.push(" ON CONFLICT DO NOTHING");
            dirty.build().execute(&mut *tx).await?;
            let minutes: Vec<_> = fold_minutes(rows).into_iter().collect();
            for chunk in minutes.chunks(ROWS_PER_STATEMENT / 2) {
                let mut upsert = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO samples_1m AS r (node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms) ",
                );
                upsert.push_values(chunk, |mut b, ((metric, labels, bucket), m)| {
                    b.push_bind(node_id)
                        .push_bind(*metric as i16)
                        .push_bind(labels.clone())
                        .push_bind(*bucket)
                        .push_bind(m.min)
                        .push_bind(m.max)
                        .push_bind(m.sum)
                        .push_bind(m.count)
                        .push_bind(m.last)
                        .push_bind(m.last_ms);
                });
                upsert.push(
                    " ON CONFLICT (node_id, metric, labels, bucket_ms) DO UPDATE SET \
                       min = min(r.min, excluded.min), max = max(r.max, excluded.max), \
                       sum = r.sum + excluded.sum, count = r.count + excluded.count, \
                       last = CASE WHEN excluded.last_ms >= r.last_ms THEN excluded.last ELSE r.last END, \
                       last_ms = max(r.last_ms, excluded.last_ms)",
                );
                upsert.build().execute(&mut *tx).await?;
            }
        }
    }
    Ok(())
}
