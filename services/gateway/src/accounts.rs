//! The account flows: login, refresh with rotation and reuse detection, logout, API keys,
//! request authentication and the audit trail. Transport-free, so tests drive it directly.

use std::{sync::Arc, time::Duration};

use persys_kit::{
    ApiError, FieldViolation,
    identity::{Role, UserClaims},
};

use crate::{
    auth::{self, Claims, TokenKeys},
    ratelimit::{Limiter, Rate},
    store::{ApiKeyRow, AuditRow, NextRefresh, RefreshRow, RefreshUse, Store, StoreError, UserPatch, UserRow},
    user_states::{self, UserState, UserStates},
};

/// Minimum password length accepted for new passwords.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Returns the current time in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Returns a new time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::AlreadyExists(what),
            StoreError::NotFound(what) => ApiError::NotFound(what),
            other => ApiError::internal(other),
        }
    }
}

/// Token lifetimes and login limits.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// Login attempts per user name.
    pub login_per_user: Rate,
    /// Login attempts per peer address.
    pub login_per_peer: Rate,
    /// How long a user's token version and enabled flag are cached between store reads: the
    /// longest a change made through another gateway replica goes unseen here.
    pub user_cache_ttl: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            login_per_user: Rate { burst: 5, period: Duration::from_secs(60) },
            login_per_peer: Rate { burst: 20, period: Duration::from_secs(60) },
            user_cache_ttl: Duration::from_secs(2),
        }
    }
}

/// A pair of tokens issued by login or refresh.
#[derive(Clone, Debug)]
pub struct Session {
    /// The JWT.
    pub access_token: String,
    /// The opaque refresh token.
    pub refresh_token: String,
    /// Access expiry, unix ms.
    pub access_expires_at: i64,
    /// Refresh expiry, unix ms.
    pub refresh_expires_at: i64,
    /// Whom it is for.
    pub user: UserRow,
}

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer JWT from login.
    Jwt,
    /// An API key.
    ApiKey,
}

impl AuthMethod {
    /// Returns the name reported by `WhoAmI`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
        }
    }
}

/// An authenticated request's principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: UserClaims,
    /// How they proved it.
    pub method: AuthMethod,
}

const BAD_LOGIN: &str = "invalid username or password";
const BAD_TOKEN: &str = "invalid or expired credentials: log in again (persys login) or use a valid API key";
const REVOKED_TOKEN: &str =
    "this session has ended: the account was disabled, removed or changed since login; log in again (persys login)";

/// The account flows over a [`Store`].
pub struct Accounts<S> {
    store: Arc<S>,
    keys: TokenKeys,
    policy: Policy,
    per_user: Limiter,
    per_peer: Limiter,
    users: UserStates,
}

impl<S: Store> Accounts<S> {
    /// Returns the flows over `store`, signing tokens with `keys`.
    pub fn new(store: Arc<S>, keys: TokenKeys, policy: Policy) -> Self {
        Self {
            per_user: Limiter::new(policy.login_per_user),
            per_peer: Limiter::new(policy.login_per_peer),
            users: UserStates::new(policy.user_cache_ttl, user_states::CAPACITY),
            store,
            keys,
            policy,
        }
    }

    /// Returns the store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Appends an audit event; a failure to write it is logged, never hidden silently.
    pub async fn audit(
        &self,
        actor: (&str, &str),
        action: &str,
        target: &str,
        success: bool,
        peer: &str,
        detail: &str,
    ) {
        let row = AuditRow {
            id: new_id(),
            at: now_ms(),
            actor_id: actor.0.to_owned(),
            actor_name: actor.1.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            success,
            peer: peer.to_owned(),
            detail: detail.to_owned(),
        };
        if let Err(error) = self.store.append_audit(&row).await {
            tracing::error!(%error, action, "audit event not recorded");
        }
    }

    /// Creates a user after validating name and password.
    pub async fn create_user(&self, username: &str, password: &str, role: Role) -> Result<UserRow, ApiError> {
        let mut violations = Vec::new();
        if let Some(v) = validate_username(username) {
            violations.push(v);
        }
        if let Some(v) = validate_password(password) {
            violations.push(v);
        }
        if !violations.is_empty() {
            return Err(ApiError::InvalidArgument(violations));
        }
        let row = UserRow {
            id: new_id(),
            username: username.to_owned(),
            password_hash: hash(password).await?,
            role,
            disabled_at: None,
            created_at: now_ms(),
            token_version: 0,
        };
        self.store.create_user(&row).await?;
        Ok(row)
    }

    /// Creates the first admin when there are no users yet; returns whether it did.
    pub async fn bootstrap_admin(&self, username: &str, password: &str) -> Result<bool, ApiError> {
        if self.store.count_users().await? > 0 {
            return Ok(false);
        }
        match self.create_user(username, password, Role::Admin).await {
            Ok(user) => {
                self.audit(("", "bootstrap"), "user.create", &user.username, true, "local", "first admin").await;
                Ok(true)
            }
            // Another replica starting at the same moment created it first.
            Err(ApiError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks a password and issues a session. Unknown users and wrong passwords get the same
    /// answer in about the same time; attempts are rate limited per user and per peer.
    pub async fn login(&self, username: &str, password: &str, peer: &str) -> Result<Session, ApiError> {
        if username.is_empty() || password.is_empty() {
            let mut v = Vec::new();
            if username.is_empty() {
                v.push(FieldViolation::new("username", "required"));
            }
            if password.is_empty() {
                v.push(FieldViolation::new("password", "required"));
            }
            return Err(ApiError::InvalidArgument(v));
        }
        if username.len() > 256 || password.len() > 1024 {
            return Err(ApiError::Unauthenticated(BAD_LOGIN.into()));
        }
        for (limiter, key) in [(&self.per_peer, format!("peer:{peer}")), (&self.per_user, format!("user:{username}"))] {
            if let Err(wait) = limiter.check(&key) {
                self.audit(("", username), "login", username, false, peer, "rate limited").await;
                return Err(ApiError::ResourceExhausted(format!(
                    "too many login attempts; retry in {} s",
                    wait.as_secs().max(1)
                )));
            }
        }
        let user = self.store.user_by_name(username).await?;
        let hash_to_check = user.as_ref().map_or(auth::decoy_hash(), |u| u.password_hash.as_str()).to_owned();
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash_to_check))
            .await
            .map_err(ApiError::internal)?;
        let user = match user {
            Some(u) if ok && u.disabled_at.is_none() => u,
            Some(u) => {
                let why = if ok { "user disabled" } else { "wrong password" };
                self.audit((&u.id, &u.username), "login", &u.username, false, peer, why).await;
                return Err(ApiError::Unauthenticated(BAD_LOGIN.into()));
            }
            None => {
                self.audit(("", username), "login", username, false, peer, "unknown user").await;
                return Err(ApiError::Unauthenticated(BAD_LOGIN.into()));
            }
        };
        let session = self.issue(user).await?;
        self.audit((&session.user.id, &session.user.username), "login", &session.user.username, true, peer, "").await;
        Ok(session)
    }

    fn access_token(&self, user: &UserRow, now: i64) -> (String, i64) {
        // `exp` is in whole seconds and a token is refused once `exp <= now`: rounding up
        // keeps every token usable for at least the configured lifetime (rounding down
        // left a 1 s token as little as a few milliseconds), and the expiry handed to the
        // client is the token's own.
        let exp = (now + self.policy.access_ttl.as_millis() as i64 + 999) / 1000;
        let access_expires_at = exp * 1000;
        let claims = Claims {
            iss: auth::ISSUER.into(),
            aud: auth::AUDIENCE.into(),
            sub: user.id.clone(),
            name: user.username.clone(),
            role: user.role.as_str().into(),
            iat: now / 1000,
            exp,
            jti: new_id(),
            ver: user.token_version,
        };
        (self.keys.sign(&claims), access_expires_at)
    }

    async fn issue(&self, user: UserRow) -> Result<Session, ApiError> {
        let now = now_ms();
        let refresh_expires_at = now + self.policy.refresh_ttl.as_millis() as i64;
        let refresh_token = auth::new_refresh_token();
        self.store
            .insert_refresh(&RefreshRow {
                token_hash: auth::sha256_hex(&refresh_token),
                family_id: new_id(),
                user_id: user.id.clone(),
                created_at: now,
                expires_at: refresh_expires_at,
            })
            .await?;
        let (access_token, access_expires_at) = self.access_token(&user, now);
        Ok(Session { access_token, refresh_token, access_expires_at, refresh_expires_at, user })
    }

    /// Rotates a refresh token. Presenting one that was already used revokes its whole family,
    /// since either the user or a thief holds a stolen copy.
    pub async fn refresh(&self, refresh_token: &str, peer: &str) -> Result<Session, ApiError> {
        if refresh_token.is_empty() {
            return Err(ApiError::invalid("refresh_token", "required"));
        }
        let now = now_ms();
        let next_token = auth::new_refresh_token();
        let next = NextRefresh {
            token_hash: auth::sha256_hex(&next_token),
            expires_at: now + self.policy.refresh_ttl.as_millis() as i64,
        };
        match self.store.rotate_refresh(&auth::sha256_hex(refresh_token), &next, now).await? {
            RefreshUse::Fresh(row) => {
                let user = self
                    .store
                    .user_by_id(&row.user_id)
                    .await?
                    .ok_or_else(|| ApiError::Unauthenticated(BAD_TOKEN.into()))?;
                let (access_token, access_expires_at) = self.access_token(&user, now);
                Ok(Session {
                    access_token,
                    refresh_token: next_token,
                    access_expires_at,
                    refresh_expires_at: next.expires_at,
                    user,
                })
            }
            RefreshUse::Reused { family_id, user_id } => {
                tracing::warn!(%user_id, %family_id, "refresh token reused; family revoked");
                self.audit((&user_id, ""), "refresh.reuse", &family_id, false, peer, "token family revoked").await;
                Err(ApiError::Unauthenticated(
                    "refresh token already used: every session from that login was revoked; log in again".into(),
                ))
            }
            RefreshUse::Invalid => Err(ApiError::Unauthenticated(BAD_TOKEN.into())),
        }
    }

    /// Revokes the family of a refresh token. Unknown tokens succeed too, so logout is
    /// idempotent and reveals nothing.
    pub async fn logout(&self, refresh_token: &str, peer: &str) -> Result<(), ApiError> {
        if refresh_token.is_empty() {
            return Err(ApiError::invalid("refresh_token", "required"));
        }
        if let Some(family) = self.store.revoke_family_of(&auth::sha256_hex(refresh_token), now_ms()).await? {
            self.audit(("", ""), "logout", &family, true, peer, "").await;
        }
        Ok(())
    }

    /// Authenticates an `authorization` header value: `Bearer <jwt>` or `Bearer psk_…`.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let Some(header) = header else {
            return Err(ApiError::Unauthenticated(
                "missing credentials: send `authorization: Bearer <token>` (persys login) or an API key".into(),
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::Unauthenticated("authorization must be `Bearer <token>`".into()))?
            .trim();
        if let Some(prefix) = auth::api_key_prefix(token) {
            return self.authenticate_key(prefix, token).await;
        }
        let claims = self.keys.verify(token, now_ms() / 1000).map_err(|e| {
            tracing::debug!(error = %e, "access token refused");
            ApiError::Unauthenticated(BAD_TOKEN.into())
        })?;
        let user = claims.user().ok_or_else(|| ApiError::Unauthenticated(BAD_TOKEN.into()))?;
        // The signature proves what the user was at login; the version proves it still holds.
        match self.user_state(&claims.sub).await? {
            Some(state) if state.enabled && state.token_version == claims.ver => {
                Ok(Principal { user, method: AuthMethod::Jwt })
            }
            state => {
                tracing::info!(user_id = %claims.sub, token_version = claims.ver, ?state, "access token of a changed user refused");
                Err(ApiError::Unauthenticated(REVOKED_TOKEN.into()))
            }
        }
    }

    /// Returns a user's token version and enabled flag, from the cache when fresh.
    async fn user_state(&self, user_id: &str) -> Result<Option<UserState>, ApiError> {
        if let Some(state) = self.users.get(user_id) {
            return Ok(state);
        }
        let state = self
            .store
            .user_by_id(user_id)
            .await?
            .map(|u| UserState { token_version: u.token_version, enabled: u.disabled_at.is_none() });
        self.users.put(user_id, state);
        Ok(state)
    }

    /// Changes a user. Disabling them or changing their password also ends every session of
    /// theirs (refresh tokens); disabling them or changing their role or password ends their
    /// access tokens at once on this gateway, and on others within [`Policy::user_cache_ttl`].
    pub async fn update_user(&self, id: &str, patch: &UserPatch) -> Result<UserRow, ApiError> {
        let result = self.store.update_user(id, patch).await;
        self.users.forget(id);
        let user = result?;
        if user.disabled_at.is_some() || patch.password_hash.is_some() {
            self.store.revoke_user_refresh(&user.id, now_ms()).await?;
        }
        Ok(user)
    }

    /// Deletes a user with their sessions and API keys; their access tokens stop as with
    /// [`Accounts::update_user`].
    pub async fn delete_user(&self, id: &str) -> Result<(), ApiError> {
        let result = self.store.delete_user(id).await;
        self.users.forget(id);
        Ok(result?)
    }

    async fn authenticate_key(&self, prefix: &str, token: &str) -> Result<Principal, ApiError> {
        let refused = || ApiError::Unauthenticated(BAD_TOKEN.into());
        let key = self.store.api_key_by_prefix(prefix).await?.ok_or_else(refused)?;
        let now = now_ms();
        if !auth::digest_eq(&key.secret_hash, &auth::sha256_hex(token))
            || key.revoked_at.is_some()
            || key.expires_at.is_some_and(|e| e <= now)
        {
            return Err(refused());
        }
        let user =
            self.store.user_by_id(&key.user_id).await?.filter(|u| u.disabled_at.is_none()).ok_or_else(refused)?;
        // Last use to the minute: a write on every request would put the database on the hot
        // path of every call made with a key.
        if key.last_used_at.is_none_or(|t| now - t >= 60_000)
            && let Err(error) = self.store.touch_api_key(&key.id, now).await
        {
            tracing::warn!(%error, key = %key.id, "could not record api key use");
        }
        Ok(Principal {
            user: UserClaims { id: user.id, name: user.username, role: user.role },
            method: AuthMethod::ApiKey,
        })
    }

    /// Mints an API key for `owner`; returns the row and the secret to show once.
    pub async fn create_api_key(
        &self,
        owner: &UserClaims,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<(ApiKeyRow, String), ApiError> {
        let now = now_ms();
        let mut v = Vec::new();
        if name.trim().is_empty() || name.len() > 100 {
            v.push(FieldViolation::new("name", "required, at most 100 characters"));
        }
        if expires_at.is_some_and(|e| e <= now) {
            v.push(FieldViolation::new("expires_at", "must be in the future"));
        }
        if !v.is_empty() {
            return Err(ApiError::InvalidArgument(v));
        }
        let minted = auth::new_api_key();
        let row = ApiKeyRow {
            id: new_id(),
            user_id: owner.id.clone(),
            name: name.trim().to_owned(),
            prefix: minted.prefix,
            secret_hash: minted.hash,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        self.store.insert_api_key(&row).await?;
        Ok((row, minted.secret))
    }
}

async fn hash(password: &str) -> Result<String, ApiError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(std::io::Error::other(e.to_string())))
}

impl<S: Store> Accounts<S> {
    /// A user changes their own password: the current one is checked (rate limited as a
    /// login), the new one validated; every session of theirs ends (refresh tokens, access
    /// tokens by version) and a new one is issued for the caller.
    pub async fn change_password(
        &self,
        user_id: &str,
        current: &str,
        new: &str,
        peer: &str,
    ) -> Result<Session, ApiError> {
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Err(ApiError::Unauthenticated("this user no longer exists".into()));
        };
        let actor = (user.id.as_str(), user.username.as_str());
        if current.is_empty() {
            return Err(ApiError::InvalidArgument(vec![FieldViolation::new("current_password", "required")]));
        }
        for (limiter, key) in
            [(&self.per_peer, format!("peer:{peer}")), (&self.per_user, format!("user:{}", user.username))]
        {
            if let Err(wait) = limiter.check(&key) {
                self.audit(actor, "user.password_change", &user.username, false, peer, "rate limited").await;
                return Err(ApiError::ResourceExhausted(format!(
                    "too many password attempts; retry in {} s",
                    wait.as_secs().max(1)
                )));
            }
        }
        let (check, hash_to_check) = (current.to_owned(), user.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&check, &hash_to_check))
            .await
            .map_err(ApiError::internal)?;
        if !ok {
            self.audit(actor, "user.password_change", &user.username, false, peer, "wrong current password").await;
            return Err(ApiError::InvalidArgument(vec![FieldViolation::new(
                "current_password",
                "wrong password; nothing was changed",
            )]));
        }
        let mut violations: Vec<FieldViolation> =
            validate_password(new).map(|v| FieldViolation::new("new_password", v.description)).into_iter().collect();
        if new == current {
            violations.push(FieldViolation::new("new_password", "must differ from the current password"));
        }
        if !violations.is_empty() {
            return Err(ApiError::InvalidArgument(violations));
        }
        let patch = UserPatch { password_hash: Some(hash(new).await?), ..UserPatch::default() };
        let user = self.update_user(&user.id, &patch).await?;
        self.audit((&user.id, &user.username), "user.password_change", &user.username, true, peer, "").await;
        self.issue(user).await
    }
}

/// Hashes a new password for an update, after validating it.
pub async fn new_password_hash(password: &str) -> Result<String, ApiError> {
    if let Some(v) = validate_password(password) {
        return Err(ApiError::InvalidArgument(vec![v]));
    }
    hash(password).await
}

fn validate_username(u: &str) -> Option<FieldViolation> {
    let ok = (2..=64).contains(&u.len())
        && u.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        FieldViolation::new(
            "username",
            "2-64 characters: letters, digits, '-', '_', '.', '@', starting with a letter or digit",
        )
    })
}

fn validate_password(p: &str) -> Option<FieldViolation> {
    let chars = p.chars().count();
    if chars < MIN_PASSWORD_LEN {
        Some(FieldViolation::new("password", format!("must be at least {MIN_PASSWORD_LEN} characters")))
    } else if p.len() > 1024 {
        Some(FieldViolation::new("password", "must be at most 1024 bytes"))
    } else {
        None
    }
}
