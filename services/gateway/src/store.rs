//! The gateway's state behind one trait: users, refresh-token families, API keys and the audit
//! log. [`SqlStore`] implements it on PostgreSQL (deployments) and SQLite (the all-in-one
//! stack) through sqlx's `Any` driver with one set of portable SQL; the same conformance tests
//! run against both.

use std::sync::Once;

use persys_kit::identity::Role;
use sqlx::{AnyPool, Row, any::AnyPoolOptions};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    /// Time-ordered UUID.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    /// The role.
    pub role: Role,
    /// When the user was disabled, in unix ms.
    pub disabled_at: Option<i64>,
    /// Creation time, unix ms.
    pub created_at: i64,
    /// Carried in every access token; a token of another version is refused. The store bumps
    /// it whenever the user is disabled or their role or password changes.
    pub token_version: i64,
}

/// Changes to a user; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    /// New role.
    pub role: Option<Role>,
    /// New password hash.
    pub password_hash: Option<String>,
    /// `Some(Some(t))` disables at `t`, `Some(None)` enables.
    pub disabled_at: Option<Option<i64>>,
}

impl UserPatch {
    /// Returns whether applying this patch to `user` ends their access tokens: disabling them,
    /// changing their role (a demoted admin must not keep an admin token) or their password.
    pub fn revokes_tokens(&self, user: &UserRow) -> bool {
        self.role.is_some_and(|r| r != user.role)
            || self.password_hash.is_some()
            || (matches!(self.disabled_at, Some(Some(_))) && user.disabled_at.is_none())
    }
}

/// A stored refresh token (only its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRow {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// All tokens rotated from one login share a family.
    pub family_id: String,
    /// The owner.
    pub user_id: String,
    /// Issue time, unix ms.
    pub created_at: i64,
    /// Expiry, unix ms.
    pub expires_at: i64,
}

/// The token that replaces a refresh token when it is rotated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextRefresh {
    /// SHA-256 of the new token, hex.
    pub token_hash: String,
    /// Its expiry, unix ms.
    pub expires_at: i64,
}

/// What presenting a refresh token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// The token was valid and is now used; its successor is stored in the same family.
    Fresh(RefreshRow),
    /// The token had been used before: its family is now revoked.
    Reused {
        /// The revoked family.
        family_id: String,
        /// Its owner.
        user_id: String,
    },
    /// Unknown, expired or revoked, or its user is disabled or gone.
    Invalid,
}

/// A stored API key (only the hash of its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// Time-ordered UUID.
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// Label chosen by the owner.
    pub name: String,
    /// Public prefix that identifies the key.
    pub prefix: String,
    /// SHA-256 of the whole key, hex.
    pub secret_hash: String,
    /// Creation, unix ms.
    pub created_at: i64,
    /// Expiry, unix ms.
    pub expires_at: Option<i64>,
    /// Revocation, unix ms.
    pub revoked_at: Option<i64>,
    /// Last successful use, unix ms.
    pub last_used_at: Option<i64>,
}

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// Time-ordered UUID.
    pub id: String,
    /// Unix ms.
    pub at: i64,
    /// Who acted (a user id, or empty for unknown users).
    pub actor_id: String,
    /// Their name, or the name they tried.
    pub actor_name: String,
    /// What, e.g. `login`, `user.create`.
    pub action: String,
    /// On what.
    pub target: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Peer address.
    pub peer: String,
    /// Free text; never secrets.
    pub detail: String,
}

/// A page of rows and the cursor of the next page.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The rows, in id (creation) order.
    pub items: Vec<T>,
    /// The id to continue after, when more rows exist.
    pub next_after: Option<String>,
}

/// The gateway's storage.
#[allow(async_fn_in_trait)]
pub trait Store: Send + Sync + 'static {
    /// Inserts a user; `Conflict` when the name is taken.
    fn create_user(&self, user: &UserRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Returns a user by id.
    fn user_by_id(&self, id: &str) -> impl Future<Output = Result<Option<UserRow>, StoreError>> + Send;
    /// Returns a user by name.
    fn user_by_name(&self, name: &str) -> impl Future<Output = Result<Option<UserRow>, StoreError>> + Send;
    /// Lists users after the cursor.
    fn list_users(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<UserRow>, StoreError>> + Send;
    /// Counts users.
    fn count_users(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Applies a patch and returns the result.
    fn update_user(&self, id: &str, patch: &UserPatch) -> impl Future<Output = Result<UserRow, StoreError>> + Send;
    /// Deletes a user with their tokens and keys.
    fn delete_user(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a new refresh token.
    fn insert_refresh(&self, row: &RefreshRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Rotates a refresh token in one transaction: marks it used and stores `next` in its
    /// family, so a reuse detected concurrently always revokes the successor too. Presenting a
    /// used token revokes its whole family.
    fn rotate_refresh(
        &self,
        token_hash: &str,
        next: &NextRefresh,
        now: i64,
    ) -> impl Future<Output = Result<RefreshUse, StoreError>> + Send;
    /// Revokes every token of a family; returns whether the token existed.
    fn revoke_family_of(
        &self,
        token_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Revokes every refresh token of a user.
    fn revoke_user_refresh(&self, user_id: &str, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores an API key.
    fn insert_api_key(&self, row: &ApiKeyRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Returns the key with this prefix.
    fn api_key_by_prefix(&self, prefix: &str) -> impl Future<Output = Result<Option<ApiKeyRow>, StoreError>> + Send;
    /// Lists a user's keys.
    fn list_api_keys(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<ApiKeyRow>, StoreError>> + Send;
    /// Returns a key by id.
    fn api_key_by_id(&self, id: &str) -> impl Future<Output = Result<Option<ApiKeyRow>, StoreError>> + Send;
    /// Revokes a key.
    fn revoke_api_key(&self, id: &str, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records a successful use.
    fn touch_api_key(&self, id: &str, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Appends an audit event.
    fn append_audit(&self, row: &AuditRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Lists audit events, newest first, optionally of one actor; `after` is the last id of the
    /// previous page (ids are time-ordered UUIDv7s).
    fn list_audit(
        &self,
        actor_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<AuditRow>, StoreError>> + Send;
}

/// The SQL implementation for PostgreSQL and SQLite.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
}

static DRIVERS: Once = Once::new();

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn role_of(s: &str) -> Role {
    // The column is written only from `Role::as_str`; an unknown value degrades to the least
    // privilege rather than failing every request of that user.
    Role::parse(s).unwrap_or(Role::Viewer)
}

fn user_from(row: &sqlx::any::AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: role_of(&row.try_get::<String, _>("role")?),
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
        token_version: row.try_get("token_version")?,
    })
}

fn key_from(row: &sqlx::any::AnyRow) -> Result<ApiKeyRow, sqlx::Error> {
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn audit_from(row: &sqlx::any::AnyRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor_id: row.try_get("actor_id")?,
        actor_name: row.try_get("actor_name")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        success: row.try_get::<i64, _>("success")? != 0,
        peer: row.try_get("peer")?,
        detail: row.try_get("detail")?,
    })
}

fn page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> String) -> Page<T> {
    let next_after = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(&id)
    } else {
        None
    };
    Page { items, next_after }
}

// Macros rather than consts so queries stay `&'static str` literals (sqlx refuses built strings).
macro_rules! user_cols {
    () => {
        "id, username, password_hash, role, disabled_at, created_at, token_version"
    };
}
macro_rules! key_cols {
    () => {
        "id, user_id, name, prefix, secret_hash, created_at, expires_at, revoked_at, last_used_at"
    };
}

impl SqlStore {
    /// Connects to `url` (`postgres://…` or `sqlite://PATH?mode=rwc` / `sqlite::memory:`) and runs
    /// the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let mut options = AnyPoolOptions::new().max_connections(max_connections);
        if url.starts_with("sqlite:") {
            // One writer at a time is SQLite's model; an in-memory database must also keep a
            // single connection alive or it vanishes.
            options = options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = options.connect(url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Returns the pool, for health checks.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

impl Store for SqlStore {
    async fn create_user(&self, u: &UserRow) -> Result<(), StoreError> {
        sqlx::query(concat!("INSERT INTO users (", user_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&u.id)
            .bind(&u.username)
            .bind(&u.password_hash)
            .bind(u.role.as_str())
            .bind(u.disabled_at)
            .bind(u.created_at)
            .bind(u.token_version)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) { StoreError::Conflict(format!("user `{}`", u.username)) } else { e.into() }
            })?;
        Ok(())
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from).transpose()?)
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE username = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from).transpose()?)
    }

    async fn list_users(&self, after: Option<&str>, limit: u32) -> Result<Page<UserRow>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id > $1 ORDER BY id LIMIT $2"))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(user_from).collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |u| u.id.clone()))
    }

    async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?.try_get("n")?)
    }

    async fn update_user(&self, id: &str, patch: &UserPatch) -> Result<UserRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let mut user =
            row.as_ref().map(user_from).transpose()?.ok_or_else(|| StoreError::NotFound(format!("user `{id}`")))?;
        // An increment rather than the value read, so two concurrent changes both count.
        let bump = i64::from(patch.revokes_tokens(&user));
        user.token_version += bump;
        if let Some(role) = patch.role {
            user.role = role;
        }
        if let Some(hash) = &patch.password_hash {
            user.password_hash = hash.clone();
        }
        if let Some(disabled) = patch.disabled_at {
            user.disabled_at = disabled;
        }
        sqlx::query(
            "UPDATE users SET role = $1, password_hash = $2, disabled_at = $3, token_version = token_version + $4 \
             WHERE id = $5",
        )
        .bind(user.role.as_str())
        .bind(&user.password_hash)
        .bind(user.disabled_at)
        .bind(bump)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Explicit deletes rather than relying on ON DELETE CASCADE, which SQLite enforces only
        // when foreign keys are switched on for the connection.
        sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM api_keys WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{id}`")));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_refresh(&self, r: &RefreshRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&r.token_hash)
            .bind(&r.family_id)
            .bind(&r.user_id)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn rotate_refresh(&self, token_hash: &str, next: &NextRefresh, now: i64) -> Result<RefreshUse, StoreError> {
        // The conditional UPDATE is the compare-and-set: of two concurrent rotations of one token
        // exactly one sees its row change. The successor is inserted before the row lock is
        // released, so a reuse that revokes the family afterwards revokes it as well.
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
             RETURNING token_hash, family_id, user_id, created_at, expires_at",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = claimed {
            let old = RefreshRow {
                token_hash: row.try_get("token_hash")?,
                family_id: row.try_get("family_id")?,
                user_id: row.try_get("user_id")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            };
            let user = sqlx::query("SELECT disabled_at FROM users WHERE id = $1")
                .bind(&old.user_id)
                .fetch_optional(&mut *tx)
                .await?;
            let enabled = match user {
                Some(u) => u.try_get::<Option<i64>, _>("disabled_at")?.is_none(),
                None => false,
            };
            if !enabled {
                tx.commit().await?;
                return Ok(RefreshUse::Invalid);
            }
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&next.token_hash)
            .bind(&old.family_id)
            .bind(&old.user_id)
            .bind(now)
            .bind(next.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(RefreshUse::Fresh(old));
        }
        tx.commit().await?;
        let existing = sqlx::query("SELECT family_id, user_id, used_at FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        match existing {
            Some(row) if row.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                let family_id: String = row.try_get("family_id")?;
                let user_id: String = row.try_get("user_id")?;
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(&family_id)
                    .execute(&self.pool)
                    .await?;
                Ok(RefreshUse::Reused { family_id, user_id })
            }
            _ => Ok(RefreshUse::Invalid),
        }
    }

    async fn revoke_family_of(&self, token_hash: &str, now: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let family_id: String = row.try_get("family_id")?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(&family_id)
            .execute(&self.pool)
            .await?;
        Ok(Some(family_id))
    }

    async fn revoke_user_refresh(&self, user_id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<(), StoreError> {
        sqlx::query(concat!("INSERT INTO api_keys (", key_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(&k.id)
            .bind(&k.user_id)
            .bind(&k.name)
            .bind(&k.prefix)
            .bind(&k.secret_hash)
            .bind(k.created_at)
            .bind(k.expires_at)
            .bind(k.revoked_at)
            .bind(k.last_used_at)
            .execute(&self.pool)
            .await
            .map_err(
                |e| if is_unique_violation(&e) { StoreError::Conflict("api key prefix".into()) } else { e.into() },
            )?;
        Ok(())
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", key_cols!(), " FROM api_keys WHERE prefix = $1"))
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(key_from).transpose()?)
    }

    async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", key_cols!(), " FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(key_from).transpose()?)
    }

    async fn list_api_keys(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<ApiKeyRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(user_id)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(key_from).collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |k| k.id.clone()))
    }

    async fn revoke_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("api key `{id}`")));
        }
        Ok(())
    }

    async fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn append_audit(&self, a: &AuditRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_events (id, at, actor_id, actor_name, action, target, success, peer, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.id)
        .bind(a.at)
        .bind(&a.actor_id)
        .bind(&a.actor_name)
        .bind(&a.action)
        .bind(&a.target)
        .bind(i64::from(a.success))
        .bind(&a.peer)
        .bind(&a.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        actor_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor_id, actor_name, action, target, success, peer, detail FROM audit_events \
             WHERE ($1 = '' OR id < $1) AND ($2 = '' OR actor_id = $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(after.unwrap_or(""))
        .bind(actor_id.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(audit_from).collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |a| a.id.clone()))
    }
}
