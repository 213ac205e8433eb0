//! Backends for the gateway's integration tests: a store on a temporary SQLite file, or on a
//! fresh PostgreSQL database created for one test and dropped after it.

// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::{future::Future, panic::resume_unwind};

use persys_gateway::store::SqlStore;
use persys_kit::testing::database_url;
use sqlx::{AssertSqlSafe, Connection, postgres::PgConnection};
use tempfile::TempDir;

/// The variable `scripts/test` exports: a PostgreSQL URL of a role that may `CREATE DATABASE`.
/// An hour.
pub const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Limits loose enough never to interfere, unless a test tightens them.
pub fn policy() -> persys_gateway::accounts::Policy {
    use persys_gateway::{accounts::Policy, ratelimit::Rate};
    Policy {
        login_per_user: Rate { burst: 1000, period: HOUR },
        login_per_peer: Rate { burst: 1000, period: HOUR },
        ..Policy::default()
    }
}

pub const PG_ADMIN_ENV: &str = "PERSYS_TEST_PG_ADMIN_URL";

/// Returns a store on a new SQLite file; the file lives as long as the returned directory.
pub async fn sqlite_store() -> (TempDir, SqlStore) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("gateway.db").display());
    let store = SqlStore::connect(&url, 4).await.expect("open the SQLite store");
    (dir, store)
}

/// Runs `case` against a store on a new SQLite file.
pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let (_dir, store) = sqlite_store().await;
    case(store.clone()).await;
    store.pool().close().await;
}

/// Runs `case` against a store on a database of its own, created on the server named by
/// `PERSYS_TEST_PG_ADMIN_URL` and dropped afterwards, also when `case` panics. Skips (or fails
/// under `CI=true`) when the variable is missing.
pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin_url) = persys_kit::testing::require_env(PG_ADMIN_ENV, "a PostgreSQL role that may CREATE DATABASE")
    else {
        return;
    };
    let name = format!("gw_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect with PERSYS_TEST_PG_ADMIN_URL");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create the test database");

    let outcome = match SqlStore::connect(&database_url(&admin_url, &name), 8).await {
        Ok(store) => {
            let pool = store.pool().clone();
            // On a task of its own so that a failing case still reaches the cleanup below.
            let outcome = tokio::spawn(case(store)).await;
            pool.close().await;
            outcome.map_err(|e| -> Panic {
                if e.is_panic() { e.into_panic() } else { Box::new(format!("test task failed: {e}")) }
            })
        }
        Err(error) => Err(Box::new(format!("open the PostgreSQL store on {name}: {error}")) as Panic),
    };

    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    if let Err(error) = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut admin).await {
        eprintln!("could not drop test database {name}: {error}");
    }
    let _ = admin.close().await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

type Panic = Box<dyn std::any::Any + Send>;
