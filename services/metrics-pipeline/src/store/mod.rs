//! The pipeline's database, on PostgreSQL or SQLite ([`crate::db`]): batches (for
//! exactly-once ingest), raw samples (daily partitions on PostgreSQL, one table on SQLite),
//! the newest sample of each node, one-minute and one-hour rollups ([`range`]), rules, alerts
//! and silences ([`alerts`]).

mod alerts;
mod ingest;
mod range;

use std::{collections::HashSet, sync::Mutex};

use persys_proto::metrics::v1::{Metric, Rollup};
use sqlx::{AssertSqlSafe, PgPool};

pub use crate::db::valid_schema;
use crate::{
    db::{Db, json_list},
    on_db,
    samples::{Labels, Row},
};

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
    db: Db,
    /// Days whose partition exists (PostgreSQL).
    partitions: Mutex<HashSet<i64>>,
}

impl Store {
    /// Opens `url` (`postgres://…`, or `sqlite://PATH?mode=rwc`) and brings the tables up to
    /// date; on PostgreSQL they live in `schema` (created if missing), so the pipeline can
    /// share a database with the gateway.
    pub async fn connect(url: &str, max_connections: u32, schema: &str) -> Result<Self, StoreError> {
        Ok(Self::new(Db::connect(url, max_connections, schema).await?))
    }

    /// The store on an open database.
    pub fn new(db: Db) -> Self {
        Self { db, partitions: Mutex::new(HashSet::new()) }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The PostgreSQL pool, on that backend (tests and benchmarks look at tables directly).
    pub fn postgres(&self) -> Option<&PgPool> {
        self.db.postgres()
    }

    /// Closes the database.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Creates the daily partitions that `rows` fall in, if missing (PostgreSQL).
    async fn ensure_partitions(&self, pool: &PgPool, rows: &[Row]) -> Result<(), StoreError> {
        let days: HashSet<i64> = rows.iter().map(|r| r.time_ms.div_euclid(DAY_MS)).collect();
        let missing: Vec<i64> = {
            let known = self.partitions.lock().expect("partitions lock");
            days.into_iter().filter(|d| !known.contains(d)).collect()
        };
        for day in missing {
            let mut tx = pool.begin().await?;
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
        if let Db::Postgres(pool) = &self.db {
            self.ensure_partitions(pool, batch.rows).await?;
        }
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
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
                ingest::insert_rows((&mut *tx).into(), batch.node_id, batch.rows).await?;
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
        });
        Ok(Committed::Stored(batch.rows.len()))
    }

    /// Returns those of `node_ids` that have sent metrics.
    pub async fn known_nodes(&self, node_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let nodes: Vec<String> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT node_id FROM latest_host WHERE node_id = ANY($1)")
                    .bind(node_ids)
                    .fetch_all(pool)
                    .await?
            }
            Db::Sqlite(pool) => {
                sqlx::query_scalar("SELECT node_id FROM latest_host WHERE node_id IN (SELECT value FROM json_each($1))")
                    .bind(json_list(node_ids.iter().map(String::as_str)))
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(nodes.into_iter().collect())
    }

    /// Returns the newest sample of each node (encoded `HostMetrics`), by node id after
    /// `after`, at most `limit`; only `node_ids` when not empty.
    pub async fn latest(
        &self,
        node_ids: &[String],
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT node_id, payload FROM latest_host WHERE (cardinality($1::text[]) = 0 OR node_id = ANY($1)) \
                     AND node_id > $2 ORDER BY node_id LIMIT $3",
                )
                .bind(node_ids)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Db::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT node_id, payload FROM latest_host WHERE (json_array_length($1) = 0 \
                     OR node_id IN (SELECT value FROM json_each($1))) AND node_id > $2 ORDER BY node_id LIMIT $3",
                )
                .bind(json_list(node_ids.iter().map(String::as_str)))
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        })
    }

    /// Drops the raw samples of the days wholly older than `now_ms - retention_ms` (their
    /// partitions on PostgreSQL), and the batch records received before then (a batch that old
    /// would be refused anyway). Returns the days dropped.
    pub async fn expire(&self, now_ms: i64, retention_ms: i64) -> Result<Vec<i64>, StoreError> {
        let cutoff = now_ms - retention_ms;
        let mut dropped = match &self.db {
            Db::Postgres(pool) => self.drop_partitions(pool, cutoff).await?,
            Db::Sqlite(pool) => {
                // Whole days, as PostgreSQL drops them: a day ends up all there or all gone.
                let before = cutoff.div_euclid(DAY_MS) * DAY_MS;
                let mut tx = pool.begin().await?;
                let days: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT time_ms / $2 FROM samples WHERE time_ms < $1")
                    .bind(before)
                    .bind(DAY_MS)
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM samples WHERE time_ms < $1").bind(before).execute(&mut *tx).await?;
                tx.commit().await?;
                days
            }
        };
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM ingest_batches WHERE received_ms < $1").bind(cutoff).execute(pool).await?;
        });
        dropped.sort_unstable();
        Ok(dropped)
    }

    async fn drop_partitions(&self, pool: &PgPool, cutoff: i64) -> Result<Vec<i64>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE p.relname = 'samples' AND n.nspname = current_schema()",
        )
        .fetch_all(pool)
        .await?;
        let mut dropped = Vec::new();
        for name in &names {
            let Some(day) = name.strip_prefix("samples_d").and_then(|d| d.parse::<i64>().ok()) else { continue };
            if (day + 1) * DAY_MS <= cutoff {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS samples_d{day}"))).execute(pool).await?;
                self.partitions.lock().expect("partitions lock").remove(&day);
                dropped.push(day);
            }
        }
        Ok(dropped)
    }

    /// Counts the stored rows of one node (tests and invariants).
    pub async fn count_rows(&self, node_id: &str) -> Result<i64, StoreError> {
        Ok(on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT count(*) FROM samples WHERE node_id = $1").bind(node_id).fetch_one(pool).await?
        }))
    }

    /// Returns the batch numbers stored for one node, ascending (tests and invariants).
    pub async fn batches(&self, node_id: &str) -> Result<Vec<i64>, StoreError> {
        Ok(on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT batch_seq FROM ingest_batches WHERE node_id = $1 ORDER BY batch_seq")
                .bind(node_id)
                .fetch_all(pool)
                .await?
        }))
    }
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A series' key as a query row carries it: node, metric number, labels as JSON text.
fn series_of(node_id: String, metric: i16, labels: &str) -> Result<(String, Metric, Labels), StoreError> {
    let metric = Metric::try_from(i32::from(metric)).map_err(|_| StoreError::Corrupt(format!("metric {metric}")))?;
    let labels: Labels = serde_json::from_str(labels).map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?;
    Ok((node_id, metric, labels))
}
