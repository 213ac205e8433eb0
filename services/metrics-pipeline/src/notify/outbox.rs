//! The notification outbox in the pipeline's database: rows queued in the transaction that
//! stores an alert's change, claimed by the dispatcher with a lease (so a delivery cut short
//! by a crash is made again once it runs out), and settled as delivered, due again or given up.

use persys_proto::metrics::v1::{Alert, NotificationChannel};
use prost::Message;

use super::Queued;
use crate::{
    db::{Conn, Db},
    on_conn, on_db,
    store::StoreError,
};

/// Queues `items` for `alert` on `conn` (inside the caller's transaction); a transition already
/// queued for that alert and channel is left as it is.
pub async fn enqueue(conn: Conn<'_>, alert: &Alert, items: &[Queued], now_ms: i64) -> Result<(), StoreError> {
    let encoded = alert.encode_to_vec();
    on_conn!(conn, conn => {
        for q in items {
            sqlx::query(
                "INSERT INTO notifications (alert_id, transition, channel, channel_spec, alert, created_ms, due_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (alert_id, transition, channel) DO NOTHING",
            )
            .bind(&alert.id)
            .bind(&q.transition)
            .bind(q.channel)
            .bind(q.spec.encode_to_vec())
            .bind(&encoded)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        }
    });
    Ok(())
}

/// Whether a firing notification of `alert_id` was queued (on any channel).
pub async fn firing_queued(db: &Db, alert_id: &str) -> Result<bool, StoreError> {
    Ok(on_db!(db, pool => {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM notifications WHERE alert_id = $1 AND transition = 'firing')")
            .bind(alert_id)
            .fetch_one(pool)
            .await?
    }))
}

/// A notification taken from the outbox.
#[derive(Debug)]
pub struct Claimed {
    /// Its row.
    pub id: i64,
    /// The alert.
    pub alert_id: String,
    /// `firing`, `resolved` or `repeat-<n>`.
    pub transition: String,
    /// The channel it goes to.
    pub spec: NotificationChannel,
    /// The alert as it was at the transition.
    pub alert: Alert,
    /// Attempts, this one included.
    pub attempts: i32,
    /// When it was queued (ms).
    pub created_ms: i64,
}

/// A claimed outbox row: id, alert id, transition, channel, alert, attempts, created.
type OutboxRow = (i64, String, String, Vec<u8>, Vec<u8>, i32, i64);

/// Takes up to `limit` notifications due at `now_ms`, oldest due first, until `lease_ms`.
pub async fn claim_due(db: &Db, now_ms: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
    // Replicas on one PostgreSQL skip each other's rows; SQLite has one writer, no locks.
    let lock = match db {
        Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        Db::Sqlite(_) => "",
    };
    let sql = format!(
        "UPDATE notifications SET due_ms = $1, attempts = attempts + 1 WHERE id IN ( \
           SELECT id FROM notifications WHERE delivered_ms IS NULL AND failed_ms IS NULL AND due_ms <= $2 \
           ORDER BY due_ms, id LIMIT $3 {lock}) \
         RETURNING id, alert_id, transition, channel_spec, alert, attempts, created_ms"
    );
    let rows: Vec<OutboxRow> = on_db!(db, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(lease_ms).bind(now_ms).bind(limit).fetch_all(pool).await?
    });
    let mut claimed = rows
        .into_iter()
        .map(|(id, alert_id, transition, spec, alert, attempts, created_ms)| {
            let spec = NotificationChannel::decode(spec.as_slice())
                .map_err(|e| StoreError::Corrupt(format!("notification channel: {e}")))?;
            let alert =
                Alert::decode(alert.as_slice()).map_err(|e| StoreError::Corrupt(format!("notification alert: {e}")))?;
            Ok(Claimed { id, alert_id, transition, spec, alert, attempts, created_ms })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // RETURNING gives no order; deliver in the order they fell due.
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The receiver took it.
    Delivered,
    /// Failed; due again at `due_ms`.
    Retry {
        /// When it is due again (ms).
        due_ms: i64,
        /// Why it failed.
        error: String,
    },
    /// Given up, for this reason.
    Failed(String),
}

/// Records how the delivery of notification `id` ended at `now_ms`.
pub async fn settle(db: &Db, id: i64, now_ms: i64, settled: Settled) -> Result<(), StoreError> {
    let (sql, at, error) = match settled {
        Settled::Delivered => {
            ("UPDATE notifications SET delivered_ms = $2, last_error = $3 WHERE id = $1", now_ms, String::new())
        }
        Settled::Retry { due_ms, error } => {
            ("UPDATE notifications SET due_ms = $2, last_error = $3 WHERE id = $1", due_ms, error)
        }
        Settled::Failed(error) => {
            ("UPDATE notifications SET failed_ms = $2, last_error = $3 WHERE id = $1", now_ms, error)
        }
    };
    on_db!(db, pool => {
        sqlx::query(sql).bind(id).bind(at).bind(error).execute(pool).await?;
    });
    Ok(())
}

/// When the next undelivered notification is due (ms), if any.
pub async fn next_due(db: &Db) -> Result<Option<i64>, StoreError> {
    Ok(on_db!(db, pool => {
        sqlx::query_scalar("SELECT min(due_ms) FROM notifications WHERE delivered_ms IS NULL AND failed_ms IS NULL")
            .fetch_one(pool)
            .await?
    }))
}
