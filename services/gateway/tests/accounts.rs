//! The account flows over a real store: login, rate limits, refresh rotation and reuse
//! detection, logout, API keys, access-token checks, bootstrap, validation and the audit trail.
//! SQLite throughout; the login → refresh → reuse flow also runs on PostgreSQL.

mod common;

use common::{HOUR, policy};

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use persys_gateway::{
    accounts::{Accounts, AuthMethod, Policy, Principal, Session, new_id, now_ms},
    auth::{self, AUDIENCE, Claims, ISSUER, TokenKeys},
    ratelimit::Rate,
    store::{
        ApiKeyRow, AuditRow, NextRefresh, Page, RefreshRow, RefreshUse, SqlStore, Store, StoreError, UserPatch, UserRow,
    },
};
use persys_kit::{
    ApiError,
    identity::{Role, UserClaims},
};
use tempfile::TempDir;

const SECRET: [u8; 32] = [7; 32];
const PASSWORD: &str = "correct horse battery staple";
const PEER: &str = "192.0.2.10:40000";

fn accounts_over<S: Store>(store: S, policy: Policy) -> Accounts<S> {
    Accounts::new(Arc::new(store), TokenKeys::new(&SECRET), policy)
}

async fn sqlite_accounts(policy: Policy) -> (TempDir, Accounts<SqlStore>) {
    let (dir, store) = common::sqlite_store().await;
    (dir, accounts_over(store, policy))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[track_caller]
fn unauthenticated<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
    match result {
        Err(ApiError::Unauthenticated(message)) => message,
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

#[track_caller]
fn violated_fields<T: std::fmt::Debug>(result: Result<T, ApiError>) -> BTreeSet<String> {
    match result {
        Err(ApiError::InvalidArgument(violations)) => violations.into_iter().map(|v| v.field).collect(),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn fields(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

async fn audit_log<S: Store>(accounts: &Accounts<S>) -> Vec<AuditRow> {
    let Page { mut items, next_after } = accounts.store().list_audit(None, None, 1000).await.unwrap();
    assert_eq!(next_after, None);
    // The store lists newest first; these tests read the log in the order things happened.
    items.reverse();
    items
}

// --- login and access tokens ---------------------------------------------------------------

#[tokio::test]
async fn login_issues_a_jwt_that_authenticates_with_the_role() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    accounts.create_user("root", PASSWORD, Role::Admin).await.unwrap();

    let before = now_ms();
    let session = accounts.login("ada", PASSWORD, PEER).await.unwrap();
    assert_eq!(session.user, ada);
    assert!(session.refresh_token.starts_with("prt_"));
    assert_ne!(session.access_token, session.refresh_token);
    let access_ttl = policy().access_ttl.as_millis() as i64;
    let refresh_ttl = policy().refresh_ttl.as_millis() as i64;
    // Whole seconds, rounded up: never shorter than the policy, never a second longer.
    assert!((before + access_ttl..now_ms() + access_ttl + 1000).contains(&session.access_expires_at));
    assert_eq!(session.access_expires_at % 1000, 0);
    assert_eq!(jwt_exp(&session.access_token) * 1000, session.access_expires_at);
    assert!((before + refresh_ttl..=now_ms() + refresh_ttl).contains(&session.refresh_expires_at));

    let principal = accounts.authenticate(Some(&bearer(&session.access_token))).await.unwrap();
    assert_eq!(
        principal,
        Principal {
            user: UserClaims { id: ada.id.clone(), name: "ada".into(), role: Role::Member },
            method: AuthMethod::Jwt
        }
    );
    // The token names the role of the user who logged in, not of anyone else.
    let root = accounts.login("root", PASSWORD, PEER).await.unwrap();
    assert_eq!(accounts.authenticate(Some(&bearer(&root.access_token))).await.unwrap().user.role, Role::Admin);
    assert_eq!(accounts.authenticate(Some(&format!("bearer {}", session.access_token))).await.unwrap(), principal);

    // Without the Bearer scheme, or without a header, nothing authenticates.
    unauthenticated(accounts.authenticate(None).await);
    unauthenticated(accounts.authenticate(Some(&session.access_token)).await);
    unauthenticated(accounts.authenticate(Some(&format!("Basic {}", session.access_token))).await);
    unauthenticated(accounts.authenticate(Some("Bearer not-a-token")).await);
    // A refresh token is not an access token.
    unauthenticated(accounts.authenticate(Some(&bearer(&session.refresh_token))).await);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();

    let wrong_password = unauthenticated(accounts.login("ada", "correct horse battery stable", PEER).await);
    let unknown_user = unauthenticated(accounts.login("ghost", PASSWORD, PEER).await);
    assert_eq!(wrong_password, unknown_user);
    // Name matching is exact.
    assert_eq!(unauthenticated(accounts.login("Ada", PASSWORD, PEER).await), wrong_password);
    // Missing fields are a malformed request, named.
    assert_eq!(violated_fields(accounts.login("", "", PEER).await), fields(&["username", "password"]));
    accounts.login("ada", PASSWORD, PEER).await.expect("the right password still works");
}

#[tokio::test]
async fn logins_are_rate_limited_per_user() {
    let policy = Policy { login_per_user: Rate { burst: 3, period: HOUR }, ..policy() };
    let (_dir, accounts) = sqlite_accounts(policy).await;
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    accounts.create_user("bob", PASSWORD, Role::Member).await.unwrap();

    for _ in 0..3 {
        unauthenticated(accounts.login("ada", "guessed wrong password", PEER).await);
    }
    // The limit holds even for the right password: guessing cannot continue.
    match accounts.login("ada", PASSWORD, PEER).await {
        Err(ApiError::ResourceExhausted(message)) => assert!(message.contains("too many login attempts"), "{message}"),
        other => panic!("expected ResourceExhausted, got {other:?}"),
    }
    match accounts.login("ada", PASSWORD, "198.51.100.1:1").await {
        Err(ApiError::ResourceExhausted(_)) => {}
        other => panic!("the per-user limit must hold from another peer too, got {other:?}"),
    }
    // Other users are not locked out.
    accounts.login("bob", PASSWORD, PEER).await.unwrap();
    let limited = audit_log(&accounts).await.into_iter().filter(|e| e.detail == "rate limited").count();
    assert_eq!(limited, 2);
}

#[tokio::test]
async fn logins_are_rate_limited_per_peer() {
    let policy = Policy { login_per_peer: Rate { burst: 2, period: HOUR }, ..policy() };
    let (_dir, accounts) = sqlite_accounts(policy).await;
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();

    unauthenticated(accounts.login("spray1", PASSWORD, PEER).await);
    unauthenticated(accounts.login("spray2", PASSWORD, PEER).await);
    assert!(matches!(accounts.login("ada", PASSWORD, PEER).await, Err(ApiError::ResourceExhausted(_))));
    accounts.login("ada", PASSWORD, "198.51.100.1:1").await.expect("another peer is not limited");
}

#[tokio::test]
async fn foreign_expired_and_misaddressed_access_tokens_are_refused() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Admin).await.unwrap();
    let now = now_ms() / 1000;
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: ada.id.clone(),
        name: ada.username.clone(),
        role: "admin".into(),
        iat: now,
        exp: now + 600,
        jti: new_id(),
        ver: ada.token_version,
    };
    let ours = TokenKeys::new(&SECRET);
    // Control: these claims, signed with the gateway's key, are accepted.
    let principal = accounts.authenticate(Some(&bearer(&ours.sign(&claims)))).await.unwrap();
    assert_eq!(principal.user.id, ada.id);

    let foreign = TokenKeys::new(&[8; 32]).sign(&claims);
    let expired = ours.sign(&Claims { iat: now - 1200, exp: now - 1, ..claims.clone() });
    let other_audience = ours.sign(&Claims { aud: "another-app".into(), ..claims.clone() });
    let other_issuer = ours.sign(&Claims { iss: "someone-else".into(), ..claims.clone() });
    let unknown_role = ours.sign(&Claims { role: "superuser".into(), ..claims.clone() });
    for (what, token) in [
        ("foreign key", foreign),
        ("expired", expired),
        ("audience", other_audience),
        ("issuer", other_issuer),
        ("role", unknown_role),
    ] {
        match accounts.authenticate(Some(&bearer(&token))).await {
            Err(ApiError::Unauthenticated(_)) => {}
            other => panic!("{what}: expected Unauthenticated, got {other:?}"),
        }
    }
}

// --- refresh and logout --------------------------------------------------------------------

/// Login, two rotations, then reuse of the first token: the reuse is refused as such and every
/// token of that login dies with it, while another login of the same user lives on.
async fn login_refresh_reuse_flow<S: Store>(accounts: Accounts<S>) {
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let s0 = accounts.login("ada", PASSWORD, PEER).await.unwrap();
    let elsewhere = accounts.login("ada", PASSWORD, "198.51.100.1:1").await.unwrap();

    let s1 = accounts.refresh(&s0.refresh_token, PEER).await.unwrap();
    assert_ne!(s1.refresh_token, s0.refresh_token);
    assert_ne!(s1.access_token, s0.access_token);
    assert_eq!(s1.user.id, s0.user.id);
    let principal = accounts.authenticate(Some(&bearer(&s1.access_token))).await.unwrap();
    assert_eq!(principal.user.name, "ada");
    let s2 = accounts.refresh(&s1.refresh_token, PEER).await.unwrap();

    let reuse = unauthenticated(accounts.refresh(&s0.refresh_token, PEER).await);
    assert!(reuse.contains("revoked"), "{reuse}");
    // The newest token of that login is refused too, and not as a reuse: it was never used.
    let newest = unauthenticated(accounts.refresh(&s2.refresh_token, PEER).await);
    assert!(!newest.contains("already used"), "{newest}");

    // The other login is a separate family.
    accounts.refresh(&elsewhere.refresh_token, PEER).await.expect("another login survives");

    let reuse_events: Vec<AuditRow> =
        audit_log(&accounts).await.into_iter().filter(|e| e.action == "refresh.reuse").collect();
    assert_eq!(reuse_events.len(), 1, "{reuse_events:?}");
    assert_eq!(reuse_events[0].actor_id, s0.user.id);
    assert!(!reuse_events[0].success);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_login() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    login_refresh_reuse_flow(accounts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refresh_rotates_and_reuse_revokes_the_login() {
    common::on_postgres(|store| async move { login_refresh_reuse_flow(accounts_over(store, policy())).await }).await;
}

#[tokio::test]
async fn logout_revokes_every_token_of_the_login() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let s0 = accounts.login("ada", PASSWORD, PEER).await.unwrap();
    let s1 = accounts.refresh(&s0.refresh_token, PEER).await.unwrap();
    let other = accounts.login("ada", PASSWORD, PEER).await.unwrap();

    accounts.logout(&s1.refresh_token, PEER).await.unwrap();
    unauthenticated(accounts.refresh(&s1.refresh_token, PEER).await);
    // Idempotent, and silent about tokens it does not know.
    accounts.logout(&s1.refresh_token, PEER).await.unwrap();
    accounts.logout("prt_never-issued", PEER).await.unwrap();
    assert_eq!(violated_fields(accounts.logout("", PEER).await), fields(&["refresh_token"]));
    // Only that login ended.
    accounts.refresh(&other.refresh_token, PEER).await.expect("the other login survives logout");

    let logouts = audit_log(&accounts).await.into_iter().filter(|e| e.action == "logout").count();
    assert_eq!(logouts, 2, "one per logout of a known token");
}

#[tokio::test]
async fn expired_refresh_token_is_refused() {
    let policy = Policy { refresh_ttl: Duration::ZERO, ..policy() };
    let (_dir, accounts) = sqlite_accounts(policy).await;
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    // With a zero lifetime the token expires the moment it is issued.
    let session = accounts.login("ada", PASSWORD, PEER).await.unwrap();
    assert!(session.refresh_expires_at <= now_ms());
    let message = unauthenticated(accounts.refresh(&session.refresh_token, PEER).await);
    assert!(!message.contains("already used"), "{message}");
}

#[tokio::test]
async fn disabled_user_can_neither_log_in_nor_refresh() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let session = accounts.login("ada", PASSWORD, PEER).await.unwrap();
    let spare = accounts.login("ada", PASSWORD, PEER).await.unwrap();
    let bad_login = unauthenticated(accounts.login("ada", "not the password", PEER).await);

    let disable = UserPatch { disabled_at: Some(Some(now_ms())), ..UserPatch::default() };
    accounts.store().update_user(&ada.id, &disable).await.unwrap();
    // Same answer as a wrong password: a disabled account is not revealed.
    assert_eq!(unauthenticated(accounts.login("ada", PASSWORD, PEER).await), bad_login);
    unauthenticated(accounts.refresh(&session.refresh_token, PEER).await);

    let disabled_events =
        audit_log(&accounts).await.into_iter().filter(|e| e.action == "login" && e.detail == "user disabled").count();
    assert_eq!(disabled_events, 1);

    // Enabled again, the same password and an unused token work: the flag was the cause.
    let enable = UserPatch { disabled_at: Some(None), ..UserPatch::default() };
    accounts.store().update_user(&ada.id, &enable).await.unwrap();
    accounts.login("ada", PASSWORD, PEER).await.unwrap();
    accounts.refresh(&spare.refresh_token, PEER).await.unwrap();
}

// --- API keys ------------------------------------------------------------------------------

fn claims_of(user: &UserRow) -> UserClaims {
    UserClaims { id: user.id.clone(), name: user.username.clone(), role: user.role }
}

#[tokio::test]
async fn api_key_authenticates_and_records_its_use() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    let bob = accounts.create_user("bob", PASSWORD, Role::Viewer).await.unwrap();

    let (row, secret) = accounts.create_api_key(&claims_of(&bob), "  ci  ", None).await.unwrap();
    assert_eq!(row.name, "ci");
    assert_eq!(auth::api_key_prefix(&secret), Some(row.prefix.as_str()));
    assert_eq!(row.last_used_at, None);
    assert_eq!(row.secret_hash, auth::sha256_hex(&secret), "only a hash is stored");
    assert_eq!(accounts.store().api_key_by_id(&row.id).await.unwrap().as_ref(), Some(&row));

    let before = now_ms();
    let principal = accounts.authenticate(Some(&bearer(&secret))).await.unwrap();
    assert_eq!(principal, Principal { user: claims_of(&bob), method: AuthMethod::ApiKey });
    let used = accounts.store().api_key_by_id(&row.id).await.unwrap().unwrap().last_used_at.expect("last_used_at set");
    assert!((before..=now_ms()).contains(&used), "{used}");

    // Right prefix, wrong secret.
    let forged = format!("psk_{}_{}", row.prefix, "A".repeat(43));
    unauthenticated(accounts.authenticate(Some(&bearer(&forged))).await);

    // Validation of new keys.
    assert_eq!(violated_fields(accounts.create_api_key(&claims_of(&bob), " ", None).await), fields(&["name"]));
    let past = Some(now_ms() - 1000);
    assert_eq!(violated_fields(accounts.create_api_key(&claims_of(&bob), "old", past).await), fields(&["expires_at"]));
}

#[tokio::test]
async fn revoked_expired_and_disabled_owners_keys_are_refused() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    let bob = accounts.create_user("bob", PASSWORD, Role::Member).await.unwrap();
    let store = accounts.store();

    // Revoked.
    let (revoked, revoked_secret) = accounts.create_api_key(&claims_of(&bob), "revoked", None).await.unwrap();
    accounts.authenticate(Some(&bearer(&revoked_secret))).await.expect("works before revocation");
    store.revoke_api_key(&revoked.id, now_ms()).await.unwrap();
    unauthenticated(accounts.authenticate(Some(&bearer(&revoked_secret))).await);

    // Expired: written straight to the store, since the API refuses a past expiry.
    let minted = auth::new_api_key();
    let expired = ApiKeyRow {
        id: new_id(),
        user_id: bob.id.clone(),
        name: "expired".into(),
        prefix: minted.prefix.clone(),
        secret_hash: minted.hash.clone(),
        created_at: now_ms() - 2000,
        expires_at: Some(now_ms() - 1000),
        revoked_at: None,
        last_used_at: None,
    };
    store.insert_api_key(&expired).await.unwrap();
    unauthenticated(accounts.authenticate(Some(&bearer(&minted.secret))).await);
    assert_eq!(
        store.api_key_by_id(&expired.id).await.unwrap().unwrap().last_used_at,
        None,
        "a refused key is not touched"
    );

    // Control for the expiry: the same kind of row with a future expiry authenticates.
    let minted_live = auth::new_api_key();
    let live = ApiKeyRow {
        id: new_id(),
        prefix: minted_live.prefix.clone(),
        secret_hash: minted_live.hash.clone(),
        expires_at: Some(now_ms() + 60_000),
        ..expired.clone()
    };
    store.insert_api_key(&live).await.unwrap();
    accounts.authenticate(Some(&bearer(&minted_live.secret))).await.unwrap();

    // A disabled owner's keys stop working.
    store.update_user(&bob.id, &UserPatch { disabled_at: Some(Some(now_ms())), ..UserPatch::default() }).await.unwrap();
    unauthenticated(accounts.authenticate(Some(&bearer(&minted_live.secret))).await);
}

// --- users ---------------------------------------------------------------------------------

#[tokio::test]
async fn bootstrap_admin_only_creates_the_first_user() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    assert!(accounts.bootstrap_admin("root", PASSWORD).await.unwrap());
    let root = accounts.store().user_by_name("root").await.unwrap().expect("admin created");
    assert_eq!(root.role, Role::Admin);
    let session = accounts.login("root", PASSWORD, PEER).await.unwrap();
    assert_eq!(accounts.authenticate(Some(&bearer(&session.access_token))).await.unwrap().user.role, Role::Admin);

    assert!(!accounts.bootstrap_admin("root2", PASSWORD).await.unwrap());
    assert_eq!(accounts.store().user_by_name("root2").await.unwrap(), None);
    assert_eq!(accounts.store().count_users().await.unwrap(), 1);
    let created = audit_log(&accounts).await.into_iter().filter(|e| e.action == "user.create").count();
    assert_eq!(created, 1);

    // Any existing user, even not an admin, means no bootstrap.
    let (_dir2, other) = sqlite_accounts(policy()).await;
    other.create_user("ada", PASSWORD, Role::Viewer).await.unwrap();
    assert!(!other.bootstrap_admin("root", PASSWORD).await.unwrap());
    assert_eq!(other.store().user_by_name("root").await.unwrap(), None);
}

#[tokio::test]
async fn create_user_names_the_invalid_fields() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    let short = "elevenchars"; // one below the minimum
    assert_eq!(
        violated_fields(accounts.create_user("a", short, Role::Member).await),
        fields(&["username", "password"])
    );
    assert_eq!(violated_fields(accounts.create_user("ada", short, Role::Member).await), fields(&["password"]));
    for bad_name in ["a", "-ada", ".ada", "ada lovelace", "ada/1", "ädä", &"a".repeat(65)] {
        assert_eq!(
            violated_fields(accounts.create_user(bad_name, PASSWORD, Role::Member).await),
            fields(&["username"]),
            "{bad_name}"
        );
    }
    assert_eq!(
        violated_fields(accounts.create_user("ada", &"p".repeat(1025), Role::Member).await),
        fields(&["password"])
    );
    assert_eq!(accounts.store().count_users().await.unwrap(), 0, "nothing invalid was stored");

    // The boundaries are accepted.
    let ada = accounts.create_user("ad", "twelve chars", Role::Member).await.unwrap();
    accounts.create_user("ada.lovelace-1_x@example.org", PASSWORD, Role::Member).await.unwrap();
    accounts.create_user(&"a".repeat(64), PASSWORD, Role::Member).await.unwrap();
    assert!(ada.password_hash.starts_with("$argon2id$"), "passwords are stored hashed");
    assert!(matches!(accounts.create_user("ad", PASSWORD, Role::Member).await, Err(ApiError::AlreadyExists(_))));
    assert_eq!(accounts.store().count_users().await.unwrap(), 3);
}

#[tokio::test]
async fn audit_log_records_login_success_and_failure() {
    let (_dir, accounts) = sqlite_accounts(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    accounts.login("ada", PASSWORD, PEER).await.unwrap();
    let wrong = "correct horse battery stable";
    unauthenticated(accounts.login("ada", wrong, "198.51.100.1:1").await);
    unauthenticated(accounts.login("ghost", wrong, PEER).await);

    let logins: Vec<(String, String, bool, String, String)> = audit_log(&accounts)
        .await
        .into_iter()
        .filter(|e| e.action == "login")
        .map(|e| (e.actor_id, e.actor_name, e.success, e.peer, e.detail))
        .collect();
    assert_eq!(
        logins,
        vec![
            (ada.id.clone(), "ada".into(), true, PEER.into(), String::new()),
            (ada.id.clone(), "ada".into(), false, "198.51.100.1:1".into(), "wrong password".into()),
            (String::new(), "ghost".into(), false, PEER.into(), "unknown user".into()),
        ]
    );
    let adas = accounts.store().list_audit(Some(&ada.id), None, 100).await.unwrap().items;
    assert_eq!(adas.len(), 2);
    // Passwords never reach the log.
    for e in audit_log(&accounts).await {
        let text = format!("{e:?}");
        assert!(!text.contains(PASSWORD) && !text.contains(wrong), "{text}");
    }
}

// --- a known race ----------------------------------------------------------------------------

/// A store that lets a second presentation of the same refresh token land between the moment
/// `refresh` claims the token and the moment it stores the rotated one: what two concurrent
/// refreshes with one (stolen) token do when the scheduler interleaves them that way.
struct ReuseBetweenClaimAndRotation(SqlStore);

impl Store for ReuseBetweenClaimAndRotation {
    async fn create_user(&self, user: &UserRow) -> Result<(), StoreError> {
        self.0.create_user(user).await
    }
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        self.0.user_by_id(id).await
    }
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        self.0.user_by_name(name).await
    }
    async fn list_users(&self, after: Option<&str>, limit: u32) -> Result<Page<UserRow>, StoreError> {
        self.0.list_users(after, limit).await
    }
    async fn count_users(&self) -> Result<i64, StoreError> {
        self.0.count_users().await
    }
    async fn update_user(&self, id: &str, patch: &UserPatch) -> Result<UserRow, StoreError> {
        self.0.update_user(id, patch).await
    }
    async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        self.0.delete_user(id).await
    }
    async fn insert_refresh(&self, row: &RefreshRow) -> Result<(), StoreError> {
        self.0.insert_refresh(row).await
    }
    async fn rotate_refresh(&self, token_hash: &str, next: &NextRefresh, now: i64) -> Result<RefreshUse, StoreError> {
        let outcome = self.0.rotate_refresh(token_hash, next, now).await?;
        if matches!(outcome, RefreshUse::Fresh(_)) {
            // The concurrent request with the same token: detected as reuse.
            let other = self
                .0
                .rotate_refresh(
                    token_hash,
                    &NextRefresh { token_hash: "racer".into(), expires_at: next.expires_at },
                    now,
                )
                .await?;
            assert!(matches!(other, RefreshUse::Reused { .. }), "{other:?}");
        }
        Ok(outcome)
    }
    async fn revoke_family_of(&self, token_hash: &str, now: i64) -> Result<Option<String>, StoreError> {
        self.0.revoke_family_of(token_hash, now).await
    }
    async fn revoke_user_refresh(&self, user_id: &str, now: i64) -> Result<(), StoreError> {
        self.0.revoke_user_refresh(user_id, now).await
    }
    async fn insert_api_key(&self, row: &ApiKeyRow) -> Result<(), StoreError> {
        self.0.insert_api_key(row).await
    }
    async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        self.0.api_key_by_prefix(prefix).await
    }
    async fn list_api_keys(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<ApiKeyRow>, StoreError> {
        self.0.list_api_keys(user_id, after, limit).await
    }
    async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        self.0.api_key_by_id(id).await
    }
    async fn revoke_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.0.revoke_api_key(id, now).await
    }
    async fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.0.touch_api_key(id, now).await
    }
    async fn append_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        self.0.append_audit(row).await
    }
    async fn list_audit(
        &self,
        actor_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<AuditRow>, StoreError> {
        self.0.list_audit(actor_id, after, limit).await
    }
}

#[tokio::test]
async fn reuse_detected_during_a_rotation_also_kills_the_rotated_token() {
    let (_dir, store) = common::sqlite_store().await;
    let accounts = accounts_over(ReuseBetweenClaimAndRotation(store), policy());
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let stolen = accounts.login("ada", PASSWORD, PEER).await.unwrap();

    // One of the two holders of the token wins the rotation while the other's reuse is detected.
    let winner: Session = accounts.refresh(&stolen.refresh_token, PEER).await.unwrap();
    // Reuse was detected, so every session of that login must be dead, the winner's included;
    // otherwise whoever won (possibly the thief) keeps rotating forever.
    unauthenticated(accounts.refresh(&winner.refresh_token, PEER).await);
}

/// The `exp` claim of an access token, read without verifying it.
fn jwt_exp(token: &str) -> i64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice::<serde_json::Value>(&bytes).expect("JSON claims")["exp"].as_i64().expect("numeric exp")
}
