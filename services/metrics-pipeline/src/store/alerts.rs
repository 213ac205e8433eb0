//! Alert rules, alerts (with the notifications their changes queue) and silences, whole
//! (encoded), with the columns queries filter on.

use persys_proto::metrics::v1::{Alert, AlertRule, Silence};
use prost::Message;

use super::{Store, StoreError, decode};
use crate::{
    db::{Db, json_list},
    on_db,
};

impl Store {
    /// Stores a rule (insert or replace).
    pub async fn put_rule(&self, rule: &AlertRule, now_ms: i64) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO alert_rules (id, payload, created_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload",
            )
            .bind(&rule.id)
            .bind(rule.encode_to_vec())
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes a rule; returns whether it existed.
    pub async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        let n = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM alert_rules WHERE id = $1").bind(id).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Every rule, oldest first.
    pub async fn rules(&self) -> Result<Vec<AlertRule>, StoreError> {
        let rows: Vec<Vec<u8>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT payload FROM alert_rules ORDER BY created_ms, id").fetch_all(pool).await?
        });
        rows.iter().map(|b| decode(b)).collect()
    }

    /// Stores an alert as it is now (`open`: pending, firing or acknowledged) and, in the same
    /// transaction, queues the notifications its change calls for.
    pub async fn put_alert(
        &self,
        alert: &Alert,
        subject: &str,
        open: bool,
        now_ms: i64,
        notify: &[crate::notify::Queued],
    ) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
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
            crate::notify::enqueue((&mut *tx).into(), alert, notify, now_ms).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Stores a silence as it is now, in force from `starts_ms` until `ends_ms`.
    pub async fn put_silence(
        &self,
        silence: &Silence,
        starts_ms: i64,
        ends_ms: i64,
        created_ms: i64,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
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
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Silences that have not ended by `now_ms` (every one when `include_ended`), newest first.
    pub async fn silences(&self, include_ended: bool, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
        let rows: Vec<Vec<u8>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT payload FROM silences WHERE $1 OR ends_ms > $2 ORDER BY created_ms DESC, id")
                .bind(include_ended)
                .bind(now_ms)
                .fetch_all(pool)
                .await?
        });
        rows.iter().map(|b| decode(b)).collect()
    }

    /// Returns one silence.
    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, StoreError> {
        let row: Option<Vec<u8>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT payload FROM silences WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        row.map(|b| decode(&b)).transpose()
    }

    /// Returns one alert.
    pub async fn alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let row: Option<Vec<u8>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT payload FROM alerts WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        row.map(|b| decode(&b)).transpose()
    }

    /// Forgets an alert (a pending one whose condition stopped holding).
    pub async fn delete_alert(&self, id: &str) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM alerts WHERE id = $1").bind(id).execute(pool).await?;
        });
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
    ) -> Result<Vec<Alert>, StoreError> {
        let rows: Vec<Vec<u8>> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT payload FROM alerts WHERE (NOT $1 OR open) AND ($2 = '' OR node_id = $2) \
                     AND ($3 = '' OR rule_id = $3) AND (cardinality($4::int2[]) = 0 OR state = ANY($4)) \
                     AND severity >= $5 ORDER BY updated_ms DESC, id OFFSET $6 LIMIT $7",
                )
                .bind(open_only)
                .bind(node_id)
                .bind(rule_id)
                .bind(states)
                .bind(min_severity)
                .bind(offset)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Db::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT payload FROM alerts WHERE (NOT $1 OR open) AND ($2 = '' OR node_id = $2) \
                     AND ($3 = '' OR rule_id = $3) \
                     AND (json_array_length($4) = 0 OR state IN (SELECT value FROM json_each($4))) \
                     AND severity >= $5 ORDER BY updated_ms DESC, id LIMIT $7 OFFSET $6",
                )
                .bind(open_only)
                .bind(node_id)
                .bind(rule_id)
                .bind(json_list(states.iter().copied()))
                .bind(min_severity)
                .bind(offset)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        rows.iter().map(|b| decode(b)).collect()
    }
}
