//! The two databases the pipeline runs on: PostgreSQL (deployments, one schema of a shared
//! database, many replicas) and SQLite (the all-in-one stack: one file, one process).
//!
//! Every query is written once per backend where their SQL differs, and once for both where
//! it does not ([`on_db!`] expands the same statement against either pool); the logic around
//! the queries is shared.

use std::{str::FromStr, time::Duration};

use sqlx::{
    AssertSqlSafe, PgConnection, PgPool, SqliteConnection, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::store::StoreError;

/// A pool on one of the two backends.
#[derive(Clone, Debug)]
pub enum Db {
    /// PostgreSQL, the pipeline's tables in one schema.
    Postgres(PgPool),
    /// SQLite: one connection, so one writer at a time (readers wait behind it too; the
    /// stack's load is one agent every few seconds).
    Sqlite(SqlitePool),
}

/// A connection (usually inside a transaction) on one of the two backends.
pub enum Conn<'a> {
    /// PostgreSQL.
    Postgres(&'a mut PgConnection),
    /// SQLite.
    Sqlite(&'a mut SqliteConnection),
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$db`: one statement written once,
/// type-checked and executed against whichever backend it is.
#[macro_export]
#[doc(hidden)]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

/// [`on_db!`] for a [`Conn`].
#[macro_export]
#[doc(hidden)]
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::Conn::Postgres($c) => $body,
            $crate::db::Conn::Sqlite($c) => $body,
        }
    };
}

/// Whether `url` names a SQLite database (`sqlite://PATH?mode=rwc`, `sqlite::memory:`).
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

impl Db {
    /// Opens `url` and brings the pipeline's tables up to date. On PostgreSQL everything,
    /// migration history included, lives in `schema` (created if missing), so the pipeline can
    /// share a database with the gateway; on SQLite the file is the pipeline's own and
    /// `schema` is not used.
    pub async fn connect(url: &str, max_connections: u32, schema: &str) -> Result<Self, StoreError> {
        if is_sqlite(url) {
            return Self::connect_sqlite(url).await;
        }
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
        Ok(Self::Postgres(pool))
    }

    async fn connect_sqlite(url: &str) -> Result<Self, StoreError> {
        // WAL: a reader outside (a backup, the sqlite3 shell) never blocks the pipeline;
        // synchronous=FULL keeps a batch acknowledged after commit across a power cut.
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // One connection: writes are serialized in the process, never SQLITE_BUSY among
        // themselves; kept open for good (an in-memory database vanishes with it).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations_sqlite").run(&pool).await?;
        Ok(Self::Sqlite(pool))
    }

    /// Which backend, for logs and banners: `PostgreSQL` or `SQLite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }

    /// The PostgreSQL pool, on that backend.
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Self::Postgres(pool) => Some(pool),
            Self::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, on that backend.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Self::Sqlite(pool) => Some(pool),
            Self::Postgres(_) => None,
        }
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }
}

/// Whether `name` is a plain lowercase identifier (it goes into SQL unquoted).
pub fn valid_schema(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `items` as a JSON array, how SQLite queries take a list (`IN (SELECT value FROM
/// json_each($n))`) where PostgreSQL takes an array.
pub fn json_list<T: Into<serde_json::Value>>(items: impl IntoIterator<Item = T>) -> String {
    serde_json::Value::Array(items.into_iter().map(Into::into).collect()).to_string()
}

impl<'a> From<&'a mut PgConnection> for Conn<'a> {
    fn from(c: &'a mut PgConnection) -> Self {
        Self::Postgres(c)
    }
}

impl<'a> From<&'a mut SqliteConnection> for Conn<'a> {
    fn from(c: &'a mut SqliteConnection) -> Self {
        Self::Sqlite(c)
    }
}
