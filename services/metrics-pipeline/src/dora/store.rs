//! Deployments in the pipeline's database (PostgreSQL or SQLite): the record (encoded [`Deployment`]) with the columns the worker,
//! the lists and the four keys filter on.

use persys_proto::metrics::v1::{Deployment, DevlakePushState};
use prost::Message;

use crate::{
    clock::millis,
    db::{Db, json_list},
    on_db,
    store::{Store, StoreError},
};

/// One deployment the worker holds.
pub struct Claimed {
    /// The record.
    pub deployment: Deployment,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// DevLake connections that accepted it already.
    pub accepted: Vec<String>,
    /// Whether commits are resolved.
    pub resolved: bool,
}

/// Filters of a list.
#[derive(Default)]
pub struct Filter {
    /// ArgoCD application.
    pub application: String,
    /// Component.
    pub component: String,
    /// Cluster.
    pub cluster: String,
    /// DeploymentEnvironment number, 0 for any.
    pub environment: i32,
    /// DeploymentStatus number, 0 for any.
    pub status: i32,
    /// Deployed at or after (ms).
    pub from_ms: i64,
    /// Deployed before (ms).
    pub to_ms: i64,
    /// Only deployments this user may see (a member: their own rollouts and those without an
    /// owner); every one when `None`.
    pub visible_to: Option<String>,
}

fn decode(bytes: &[u8]) -> Result<Deployment, StoreError> {
    Deployment::decode(bytes).map_err(|e| StoreError::Corrupt(format!("deployment: {e}")))
}

/// Deployments in `store`.
#[derive(Clone)]
pub struct Deployments {
    db: Db,
}

/// Runs the update of `$d` after a worker's pass on `$conn`, with `$accepted` bound as the
/// backend takes a list.
macro_rules! finish_update {
    ($conn:expr, $d:expr, $state:expr, $due_ms:expr, $accepted:expr, $resolved:expr) => {
        sqlx::query(
            "UPDATE deployments SET push_state = $2, due_ms = $3, accepted = $4, payload = $5, \
               resolved = resolved OR $6, started_ms = COALESCE($7, started_ms) WHERE id = $1",
        )
        .bind(&$d.id)
        .bind($state as i16)
        .bind($due_ms)
        .bind($accepted)
        .bind($d.encode_to_vec())
        .bind($resolved)
        .bind($d.started_at.as_ref().map(millis))
        .execute($conn)
        .await?
    };
}

/// Marks DevLake id `$devlake_id` sent by deployment `$id` on `$conn`.
macro_rules! mark_sent {
    ($conn:expr, $devlake_id:expr, $id:expr) => {
        sqlx::query("UPDATE devlake_claims SET state = 'sent' WHERE devlake_id = $1 AND deployment_id = $2")
            .bind($devlake_id)
            .bind($id)
            .execute($conn)
            .await?
    };
}

impl Deployments {
    /// The deployments of `store`.
    pub fn new(store: &Store) -> Self {
        Self { db: store.db().clone() }
    }

    /// Stores `d` unless its id is taken; returns the stored one and whether it was new.
    pub async fn insert(&self, d: &Deployment, now_ms: i64) -> Result<(Deployment, bool), StoreError> {
        let inserted: Option<String> = on_db!(&self.db, pool => sqlx::query_scalar(
            "INSERT INTO deployments (id, devlake_id, application, component, cluster, environment, status, revision, \
               deployed_ms, recorded_ms, push_state, due_ms, payload, owner_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10, $12, $13) ON CONFLICT (id) DO NOTHING \
             RETURNING id",
        )
        .bind(&d.id)
        .bind(&d.devlake_id)
        .bind(&d.application)
        .bind(&d.component)
        .bind(&d.cluster)
        .bind(d.environment as i16)
        .bind(d.status as i16)
        .bind(&d.revision)
        .bind(d.deployed_at.as_ref().map_or(0, millis))
        .bind(now_ms)
        .bind(DevlakePushState::Pending as i16)
        .bind(d.encode_to_vec())
        .bind(&d.owner_id)
        .fetch_optional(pool)
        .await?);
        if inserted.is_some() {
            return Ok((d.clone(), true));
        }
        let stored =
            self.get(&d.id).await?.ok_or_else(|| StoreError::Corrupt(format!("deployment {} vanished", d.id)))?;
        Ok((stored, false))
    }

    /// One deployment.
    pub async fn get(&self, id: &str) -> Result<Option<Deployment>, StoreError> {
        let row: Option<Vec<u8>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT payload FROM deployments WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        row.map(|b| decode(&b)).transpose()
    }

    /// The newest deployment of the same component, environment and cluster deployed before
    /// `before_ms` whose status is `status`.
    pub async fn previous(
        &self,
        d: &Deployment,
        before_ms: i64,
        status: i32,
    ) -> Result<Option<Deployment>, StoreError> {
        let row: Option<Vec<u8>> = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT payload FROM deployments WHERE component = $1 AND environment = $2 AND cluster = $3 \
               AND deployed_ms < $4 AND status = $5 AND id <> $6 ORDER BY deployed_ms DESC LIMIT 1",
        )
        .bind(&d.component)
        .bind(d.environment as i16)
        .bind(&d.cluster)
        .bind(before_ms)
        .bind(status as i16)
        .bind(&d.id)
        .fetch_optional(pool)
        .await?);
        row.map(|b| decode(&b)).transpose()
    }

    /// Newest first, `offset` and `limit` paging.
    pub async fn list(&self, f: &Filter, offset: i64, limit: i64) -> Result<(Vec<Deployment>, i64), StoreError> {
        let to = if f.to_ms == 0 { i64::MAX } else { f.to_ms };
        let (owner, page) = match &self.db {
            Db::Postgres(_) => ("$10::text", "OFFSET $8 LIMIT $9"),
            Db::Sqlite(_) => ("$10", "LIMIT $9 OFFSET $8"),
        };
        let sql = format!(
            "SELECT payload, count(*) OVER () FROM deployments \
             WHERE ($1 = '' OR application = $1) AND ($2 = '' OR component = $2) AND ($3 = '' OR cluster = $3) \
               AND ($4 = 0 OR environment = $4) AND ($5 = 0 OR status = $5) AND deployed_ms >= $6 AND deployed_ms < $7 \
               AND ({owner} IS NULL OR owner_id = '' OR owner_id = $10) \
             ORDER BY deployed_ms DESC, id {page}"
        );
        let rows: Vec<(Vec<u8>, i64)> = on_db!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&f.application)
                .bind(&f.component)
                .bind(&f.cluster)
                .bind(f.environment as i16)
                .bind(f.status as i16)
                .bind(f.from_ms)
                .bind(to)
                .bind(offset)
                .bind(limit)
                .bind(&f.visible_to)
                .fetch_all(pool)
                .await?
        });
        let total = rows.first().map_or(0, |r| r.1);
        let list = rows.iter().map(|r| decode(&r.0)).collect::<Result<_, _>>()?;
        Ok((list, total))
    }

    /// Takes up to `limit` due PENDING deployments until `lease_ms`.
    pub async fn claim(&self, now_ms: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
        let sql = |lock: &str| {
            format!(
                "UPDATE deployments SET due_ms = $1, attempts = attempts + 1 WHERE id IN ( \
                   SELECT id FROM deployments WHERE push_state = $4 AND due_ms <= $2 \
                   ORDER BY due_ms, id LIMIT $3 {lock}) \
                 RETURNING payload, attempts, accepted, resolved"
            )
        };
        let pending = DevlakePushState::Pending as i16;
        let rows: Vec<(Vec<u8>, i32, Vec<String>, bool)> = match &self.db {
            // Replicas skip each other's rows.
            Db::Postgres(pool) => {
                sqlx::query_as(sqlx::AssertSqlSafe(sql("FOR UPDATE SKIP LOCKED")))
                    .bind(lease_ms)
                    .bind(now_ms)
                    .bind(limit)
                    .bind(pending)
                    .fetch_all(pool)
                    .await?
            }
            // One writer; `accepted` is a JSON array.
            Db::Sqlite(pool) => {
                let rows: Vec<(Vec<u8>, i32, String, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql("")))
                    .bind(lease_ms)
                    .bind(now_ms)
                    .bind(limit)
                    .bind(pending)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter()
                    .map(|(p, a, accepted, r)| {
                        let accepted = serde_json::from_str(&accepted)
                            .map_err(|e| StoreError::Corrupt(format!("accepted connections: {e}")))?;
                        Ok((p, a, accepted, r))
                    })
                    .collect::<Result<_, StoreError>>()?
            }
        };
        rows.into_iter()
            .map(|(payload, attempts, accepted, resolved)| {
                Ok(Claimed { deployment: decode(&payload)?, attempts, accepted, resolved })
            })
            .collect()
    }

    /// Stores `d` after a pass of the worker: its push state and warnings, the next look at
    /// `due_ms`, the connections that accepted it; with `resolved`, its commits (resolved in
    /// this pass); with `sent`, its DevLake id as sent. One transaction.
    pub async fn finish(
        &self,
        d: &Deployment,
        due_ms: i64,
        accepted: &[String],
        resolved: bool,
        sent: bool,
    ) -> Result<(), StoreError> {
        let state = d.devlake.as_ref().map_or(DevlakePushState::Pending as i32, |p| p.state);
        match &self.db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                finish_update!(&mut *tx, d, state, due_ms, accepted, resolved);
                if resolved && !d.commits.is_empty() {
                    let repos: Vec<&str> = d.commits.iter().map(|c| c.repo_url.as_str()).collect();
                    let shas: Vec<&str> = d.commits.iter().map(|c| c.sha.as_str()).collect();
                    let times: Vec<i64> = d.commits.iter().map(|c| c.authored_at.as_ref().map_or(0, millis)).collect();
                    sqlx::query(
                        "INSERT INTO deployment_commits (deployment_id, repo_url, sha, authored_ms) \
                         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[]) ON CONFLICT DO NOTHING",
                    )
                    .bind(&d.id)
                    .bind(&repos)
                    .bind(&shas)
                    .bind(&times)
                    .execute(&mut *tx)
                    .await?;
                }
                if sent {
                    mark_sent!(&mut *tx, &d.devlake_id, &d.id);
                }
                tx.commit().await?;
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                finish_update!(&mut *tx, d, state, due_ms, json_list(accepted.iter().map(String::as_str)), resolved);
                if resolved {
                    for c in &d.commits {
                        sqlx::query(
                            "INSERT INTO deployment_commits (deployment_id, repo_url, sha, authored_ms) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        )
                        .bind(&d.id)
                        .bind(&c.repo_url)
                        .bind(&c.sha)
                        .bind(c.authored_at.as_ref().map_or(0, millis))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                if sent {
                    mark_sent!(&mut *tx, &d.devlake_id, &d.id);
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Puts a FAILED push back to PENDING, due now, with fresh attempts; `None` if there is no
    /// such deployment, `Some(false)` if its push is not FAILED.
    pub async fn retry(&self, id: &str, now_ms: i64) -> Result<Option<(Deployment, bool)>, StoreError> {
        let Some(mut d) = self.get(id).await? else { return Ok(None) };
        let push = d.devlake.get_or_insert_default();
        if push.state != DevlakePushState::Failed as i32 {
            return Ok(Some((d, false)));
        }
        push.state = DevlakePushState::Pending as i32;
        push.attempts = 0;
        push.last_error.clear();
        let updated = on_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE deployments SET push_state = $2, due_ms = $3, attempts = 0, payload = $4 \
                 WHERE id = $1 AND push_state = $5",
            )
            .bind(id)
            .bind(DevlakePushState::Pending as i16)
            .bind(now_ms)
            .bind(d.encode_to_vec())
            .bind(DevlakePushState::Failed as i16)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(Some((d, updated == 1)))
    }

    /// Claims DevLake id `devlake_id` for deployment `id` in this database: `Ok(None)` when
    /// it is (now) this deployment's, else the other deployment and whether it is sent. A
    /// claim of a deployment whose push failed for good is taken over.
    pub async fn claim_devlake_id(&self, devlake_id: &str, id: &str) -> Result<Option<(String, bool)>, StoreError> {
        let row: Option<String> = on_db!(&self.db, pool => sqlx::query_scalar(
            "INSERT INTO devlake_claims AS c (devlake_id, deployment_id, state) VALUES ($1, $2, 'claimed') \
             ON CONFLICT (devlake_id) DO UPDATE SET deployment_id = EXCLUDED.deployment_id, state = 'claimed' \
               WHERE c.state <> 'sent' AND EXISTS (SELECT 1 FROM deployments d WHERE d.id = c.deployment_id AND d.push_state = $3) \
             RETURNING deployment_id",
        )
        .bind(devlake_id)
        .bind(id)
        .bind(DevlakePushState::Failed as i16)
        .fetch_optional(pool)
        .await?);
        if row.is_some() {
            return Ok(None);
        }
        let (owner, state): (String, String) = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT deployment_id, state FROM devlake_claims WHERE devlake_id = $1")
                .bind(devlake_id)
                .fetch_one(pool)
                .await?
        });
        Ok(if owner == id { None } else { Some((owner, state == "sent")) })
    }

    /// Marks DevLake id `devlake_id` sent by `id`.
    pub async fn devlake_id_sent(&self, devlake_id: &str, id: &str) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            mark_sent!(pool, devlake_id, id);
        });
        Ok(())
    }

    /// The revisions of the deployments recorded for `cluster`.
    pub async fn revisions_in(&self, cluster: &str) -> Result<Vec<String>, StoreError> {
        Ok(on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT revision FROM deployments WHERE cluster = $1").bind(cluster).fetch_all(pool).await?
        }))
    }

    /// The database, for the four keys.
    pub fn db(&self) -> &Db {
        &self.db
    }
}
