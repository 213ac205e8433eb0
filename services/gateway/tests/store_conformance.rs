//! Conformance of [`Store`] implementations: every case is written once, generically, and run
//! against SQLite (`sqlite::<case>`, a temporary file) and PostgreSQL (`postgres::<case>`, a
//! fresh database from `PERSYS_TEST_PG_ADMIN_URL`).

mod common;

use persys_gateway::{
    accounts::new_id,
    store::{ApiKeyRow, AuditRow, NextRefresh, RefreshRow, RefreshUse, Store, StoreError, UserPatch, UserRow},
};
use persys_kit::identity::Role;

/// A fixed "now", in unix ms; beyond `i32` so 64-bit columns are exercised.
/// A successor token with a unique hash, as a rotation stores it.
fn next() -> NextRefresh {
    NextRefresh { token_hash: format!("next-{}", uuid::Uuid::new_v4()), expires_at: NOW + 3_600_000 }
}

const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

fn user(name: &str) -> UserRow {
    UserRow {
        id: new_id(),
        username: name.to_owned(),
        password_hash: format!("$argon2id$v=19$fake-hash-of-{name}"),
        role: Role::Member,
        disabled_at: None,
        created_at: NOW,
        token_version: 0,
    }
}

fn refresh(user: &UserRow, family: &str, hash: &str, expires_at: i64) -> RefreshRow {
    RefreshRow {
        token_hash: hash.to_owned(),
        family_id: family.to_owned(),
        user_id: user.id.clone(),
        created_at: NOW - HOUR,
        expires_at,
    }
}

fn api_key(user: &UserRow, name: &str) -> ApiKeyRow {
    let id = new_id();
    ApiKeyRow {
        prefix: id.replace('-', "")[20..32].to_owned(),
        secret_hash: format!("hash-of-{id}"),
        id,
        user_id: user.id.clone(),
        name: name.to_owned(),
        created_at: NOW,
        expires_at: Some(NOW + 24 * HOUR),
        revoked_at: None,
        last_used_at: None,
    }
}

fn audit(actor: &UserRow, action: &str, success: bool, at: i64) -> AuditRow {
    AuditRow {
        id: new_id(),
        at,
        actor_id: actor.id.clone(),
        actor_name: actor.username.clone(),
        action: action.to_owned(),
        target: format!("target-of-{action}"),
        success,
        peer: "192.0.2.7:5000".to_owned(),
        detail: format!("{action} by {}", actor.username),
    }
}

async fn add_user<S: Store>(s: &S, name: &str) -> UserRow {
    let u = user(name);
    s.create_user(&u).await.expect("create user");
    u
}

async fn assert_invalid<S: Store>(s: &S, hash: &str, now: i64) {
    assert_eq!(s.rotate_refresh(hash, &next(), now).await.unwrap(), RefreshUse::Invalid, "token {hash}");
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| id(i).to_owned()).collect()
}

async fn users_roundtrip_and_pagination<S: Store>(s: &S) {
    assert_eq!(s.count_users().await.unwrap(), 0);
    let empty = s.list_users(None, 10).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_after.is_none());

    let mut created = Vec::new();
    for name in ["ada", "bob", "cy", "dee", "eve"] {
        let mut u = user(name);
        u.role = if name == "ada" { Role::Admin } else { Role::Viewer };
        u.disabled_at = (name == "eve").then_some(NOW + 5);
        s.create_user(&u).await.unwrap();
        created.push(u);
    }
    assert_eq!(s.count_users().await.unwrap(), 5);
    for u in &created {
        assert_eq!(s.user_by_id(&u.id).await.unwrap().as_ref(), Some(u));
        assert_eq!(s.user_by_name(&u.username).await.unwrap().as_ref(), Some(u));
    }
    assert_eq!(s.user_by_id(&new_id()).await.unwrap(), None);
    assert_eq!(s.user_by_name("nobody").await.unwrap(), None);

    // Pages of two, in creation order, continuing after the cursor; no cursor after the last.
    let all: Vec<String> = ids(&created, |u| &u.id);
    let p1 = s.list_users(None, 2).await.unwrap();
    assert_eq!(ids(&p1.items, |u| &u.id), all[0..2]);
    assert_eq!(p1.items[0], created[0], "listed rows carry every column");
    assert_eq!(p1.next_after.as_deref(), Some(all[1].as_str()));
    let p2 = s.list_users(p1.next_after.as_deref(), 2).await.unwrap();
    assert_eq!(ids(&p2.items, |u| &u.id), all[2..4]);
    assert_eq!(p2.next_after.as_deref(), Some(all[3].as_str()));
    let p3 = s.list_users(p2.next_after.as_deref(), 2).await.unwrap();
    assert_eq!(ids(&p3.items, |u| &u.id), all[4..5]);
    assert_eq!(p3.items[0], created[4]);
    assert_eq!(p3.next_after, None);

    // A limit that matches the rows exactly has no next page either.
    let exact = s.list_users(None, 5).await.unwrap();
    assert_eq!(ids(&exact.items, |u| &u.id), all);
    assert_eq!(exact.next_after, None);
    let past_end = s.list_users(Some(&all[4]), 5).await.unwrap();
    assert!(past_end.items.is_empty() && past_end.next_after.is_none());
}

async fn duplicate_username_conflicts<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    let mut imposter = user("ada");
    imposter.password_hash = "another hash".into();
    imposter.role = Role::Admin;
    let err = s.create_user(&imposter).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.count_users().await.unwrap(), 1);
    assert_eq!(s.user_by_name("ada").await.unwrap(), Some(ada));
    assert_eq!(s.user_by_id(&imposter.id).await.unwrap(), None);
    // Another name is still accepted afterwards.
    add_user(s, "ada2").await;
    assert_eq!(s.count_users().await.unwrap(), 2);
}

async fn update_user_applies_only_the_patched_fields<S: Store>(s: &S) {
    let original = add_user(s, "ada").await;
    let other = add_user(s, "bob").await;

    let promoted =
        s.update_user(&original.id, &UserPatch { role: Some(Role::Admin), ..UserPatch::default() }).await.unwrap();
    // Each change that must end the user's access tokens moves the version on.
    assert_eq!(promoted, UserRow { role: Role::Admin, token_version: 1, ..original.clone() });
    assert_eq!(s.user_by_id(&original.id).await.unwrap(), Some(promoted.clone()));

    let disabled = s
        .update_user(&original.id, &UserPatch { disabled_at: Some(Some(NOW + 1)), ..UserPatch::default() })
        .await
        .unwrap();
    assert_eq!(disabled, UserRow { disabled_at: Some(NOW + 1), token_version: 2, ..promoted.clone() });

    let rehashed = s
        .update_user(&original.id, &UserPatch { password_hash: Some("new hash".into()), ..UserPatch::default() })
        .await
        .unwrap();
    assert_eq!(rehashed, UserRow { password_hash: "new hash".into(), token_version: 3, ..disabled.clone() });

    let enabled =
        s.update_user(&original.id, &UserPatch { disabled_at: Some(None), ..UserPatch::default() }).await.unwrap();
    assert_eq!(enabled, UserRow { disabled_at: None, ..rehashed.clone() });

    let untouched = s.update_user(&original.id, &UserPatch::default()).await.unwrap();
    assert_eq!(untouched, enabled);
    assert_eq!(s.user_by_id(&original.id).await.unwrap(), Some(enabled));
    assert_eq!(s.user_by_id(&other.id).await.unwrap(), Some(other), "other users are unchanged");

    let err =
        s.update_user(&new_id(), &UserPatch { role: Some(Role::Admin), ..UserPatch::default() }).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn token_version_moves_only_when_access_must_end<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    let version = |u: &UserRow| u.token_version;
    let same_role = UserPatch { role: Some(Role::Member), ..Default::default() };
    assert_eq!(version(&s.update_user(&ada.id, &same_role).await.unwrap()), 0, "setting the role it has");
    let demote = UserPatch { role: Some(Role::Viewer), ..Default::default() };
    assert_eq!(version(&s.update_user(&ada.id, &demote).await.unwrap()), 1);
    let disable = UserPatch { disabled_at: Some(Some(NOW)), ..Default::default() };
    assert_eq!(version(&s.update_user(&ada.id, &disable).await.unwrap()), 2);
    assert_eq!(version(&s.update_user(&ada.id, &disable).await.unwrap()), 2, "already disabled");
    let enable = UserPatch { disabled_at: Some(None), ..Default::default() };
    assert_eq!(version(&s.update_user(&ada.id, &enable).await.unwrap()), 2, "enabling revives no old token");
    let password = UserPatch { password_hash: Some("another hash".into()), ..Default::default() };
    assert_eq!(version(&s.update_user(&ada.id, &password).await.unwrap()), 3);
    // The version is stored, not only returned, and survives a round trip through the column.
    assert_eq!(s.user_by_id(&ada.id).await.unwrap().map(|u| u.token_version), Some(3));
    assert_eq!(s.user_by_name("ada").await.unwrap().map(|u| u.token_version), Some(3));
    assert_eq!(s.list_users(None, 10).await.unwrap().items[0].token_version, 3);
}

async fn delete_user_removes_their_tokens_and_keys<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    let bob = add_user(s, "bob").await;
    s.insert_refresh(&refresh(&ada, "fa", "ada-token", NOW + HOUR)).await.unwrap();
    s.insert_refresh(&refresh(&bob, "fb", "bob-token", NOW + HOUR)).await.unwrap();
    let ada_key = api_key(&ada, "ci");
    let bob_key = api_key(&bob, "ci");
    s.insert_api_key(&ada_key).await.unwrap();
    s.insert_api_key(&bob_key).await.unwrap();

    s.delete_user(&ada.id).await.unwrap();
    assert_eq!(s.user_by_id(&ada.id).await.unwrap(), None);
    assert_eq!(s.user_by_name("ada").await.unwrap(), None);
    assert_eq!(s.count_users().await.unwrap(), 1);
    assert_eq!(s.api_key_by_prefix(&ada_key.prefix).await.unwrap(), None);
    assert_eq!(s.api_key_by_id(&ada_key.id).await.unwrap(), None);
    assert!(s.list_api_keys(&ada.id, None, 10).await.unwrap().items.is_empty());
    assert_invalid(s, "ada-token", NOW).await;

    let err = s.delete_user(&ada.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Bob keeps everything.
    assert_eq!(s.api_key_by_prefix(&bob_key.prefix).await.unwrap(), Some(bob_key));
    assert!(matches!(s.rotate_refresh("bob-token", &next(), NOW).await.unwrap(), RefreshUse::Fresh(_)));
    // The name is free again.
    add_user(s, "ada").await;
}

async fn refresh_use_detects_reuse_and_revokes_the_family<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    let first = refresh(&ada, "family-1", "t1", NOW + HOUR);
    s.insert_refresh(&first).await.unwrap();
    s.insert_refresh(&refresh(&ada, "family-2", "other-login", NOW + HOUR)).await.unwrap();

    assert_eq!(s.rotate_refresh("t1", &next(), NOW).await.unwrap(), RefreshUse::Fresh(first));
    // Rotation: the next token of the family.
    let second = refresh(&ada, "family-1", "t2", NOW + 2 * HOUR);
    s.insert_refresh(&second).await.unwrap();

    // The used token again: reuse, reported with its family and owner.
    assert_eq!(
        s.rotate_refresh("t1", &next(), NOW + 1).await.unwrap(),
        RefreshUse::Reused { family_id: "family-1".into(), user_id: ada.id.clone() }
    );
    // The newer token of the family was revoked with it, and stays refused.
    assert_invalid(s, "t2", NOW + 2).await;
    assert_invalid(s, "t2", NOW + 3).await;
    // Reuse of a used token keeps reporting reuse.
    assert!(matches!(s.rotate_refresh("t1", &next(), NOW + 4).await.unwrap(), RefreshUse::Reused { .. }));
    // Other families of the same user are untouched.
    assert!(matches!(s.rotate_refresh("other-login", &next(), NOW + 5).await.unwrap(), RefreshUse::Fresh(_)));
    assert_invalid(s, "never-issued", NOW).await;
}

async fn expired_refresh_tokens_are_invalid<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    s.insert_refresh(&refresh(&ada, "f1", "expired", NOW - 1)).await.unwrap();
    s.insert_refresh(&refresh(&ada, "f2", "expires-now", NOW)).await.unwrap();
    let live = refresh(&ada, "f3", "live", NOW + 1);
    s.insert_refresh(&live).await.unwrap();

    assert_invalid(s, "expired", NOW).await;
    assert_invalid(s, "expires-now", NOW).await;
    // An expired token never counted as used, so presenting it again is not reuse.
    assert_invalid(s, "expired", NOW).await;
    assert_eq!(s.rotate_refresh("live", &next(), NOW).await.unwrap(), RefreshUse::Fresh(live));
}

async fn revoke_family_of_revokes_only_that_family<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    s.insert_refresh(&refresh(&ada, "fam-a", "a1", NOW + HOUR)).await.unwrap();
    s.insert_refresh(&refresh(&ada, "fam-a", "a2", NOW + HOUR)).await.unwrap();
    s.insert_refresh(&refresh(&ada, "fam-b", "b1", NOW + HOUR)).await.unwrap();

    assert_eq!(s.revoke_family_of("a1", NOW).await.unwrap().as_deref(), Some("fam-a"));
    assert_invalid(s, "a1", NOW).await;
    assert_invalid(s, "a2", NOW).await;
    assert!(matches!(s.rotate_refresh("b1", &next(), NOW).await.unwrap(), RefreshUse::Fresh(_)));
    // Unknown tokens name no family; revoking twice is harmless.
    assert_eq!(s.revoke_family_of("unknown", NOW).await.unwrap(), None);
    assert_eq!(s.revoke_family_of("a2", NOW + 1).await.unwrap().as_deref(), Some("fam-a"));
}

async fn revoke_user_refresh_revokes_only_that_user<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    let bob = add_user(s, "bob").await;
    s.insert_refresh(&refresh(&ada, "ada-1", "ada-laptop", NOW + HOUR)).await.unwrap();
    s.insert_refresh(&refresh(&ada, "ada-2", "ada-phone", NOW + HOUR)).await.unwrap();
    s.insert_refresh(&refresh(&bob, "bob-1", "bob-laptop", NOW + HOUR)).await.unwrap();

    s.revoke_user_refresh(&ada.id, NOW).await.unwrap();
    assert_invalid(s, "ada-laptop", NOW).await;
    assert_invalid(s, "ada-phone", NOW).await;
    assert!(matches!(s.rotate_refresh("bob-laptop", &next(), NOW).await.unwrap(), RefreshUse::Fresh(_)));
}

async fn concurrent_use_of_one_refresh_token_has_one_winner<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    s.insert_refresh(&refresh(&ada, "raced", "contested", NOW + HOUR)).await.unwrap();

    let successors: Vec<NextRefresh> = (0..16).map(|_| next()).collect();
    let outcomes = futures::future::join_all(successors.iter().map(|n| s.rotate_refresh("contested", n, NOW))).await;
    let outcomes: Vec<RefreshUse> = outcomes.into_iter().map(|o| o.expect("use_refresh")).collect();
    let fresh = outcomes.iter().filter(|o| matches!(o, RefreshUse::Fresh(_))).count();
    let reused = outcomes.iter().filter(|o| matches!(o, RefreshUse::Reused { .. })).count();
    assert_eq!(fresh, 1, "exactly one caller may rotate: {outcomes:?}");
    assert_eq!(reused, 15, "every other caller presented a used token: {outcomes:?}");
}

async fn api_keys_roundtrip_list_revoke_and_touch<S: Store>(s: &S) {
    let ada = add_user(s, "ada").await;
    let bob = add_user(s, "bob").await;
    let mut keys = Vec::new();
    for name in ["ci", "laptop", "backup"] {
        let k = api_key(&ada, name);
        s.insert_api_key(&k).await.unwrap();
        keys.push(k);
    }
    let mut forever = api_key(&bob, "forever");
    forever.expires_at = None;
    s.insert_api_key(&forever).await.unwrap();

    assert_eq!(s.api_key_by_prefix(&keys[1].prefix).await.unwrap().as_ref(), Some(&keys[1]));
    assert_eq!(s.api_key_by_id(&keys[2].id).await.unwrap().as_ref(), Some(&keys[2]));
    assert_eq!(s.api_key_by_prefix(&forever.prefix).await.unwrap().as_ref(), Some(&forever));
    assert_eq!(s.api_key_by_prefix("000000000000").await.unwrap(), None);
    assert_eq!(s.api_key_by_id(&new_id()).await.unwrap(), None);

    let mut clash = api_key(&bob, "clash");
    clash.prefix = keys[0].prefix.clone();
    let err = s.insert_api_key(&clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Listing is per owner, in creation order, paged.
    let p1 = s.list_api_keys(&ada.id, None, 2).await.unwrap();
    assert_eq!(p1.items, keys[0..2]);
    assert_eq!(p1.next_after.as_deref(), Some(keys[1].id.as_str()));
    let p2 = s.list_api_keys(&ada.id, p1.next_after.as_deref(), 2).await.unwrap();
    assert_eq!(p2.items, keys[2..3]);
    assert_eq!(p2.next_after, None);
    let bobs = s.list_api_keys(&bob.id, None, 10).await.unwrap();
    assert_eq!(bobs.items, vec![forever.clone()]);
    assert_eq!(bobs.next_after, None);

    // Revocation keeps its first time.
    s.revoke_api_key(&keys[0].id, NOW + 10).await.unwrap();
    s.revoke_api_key(&keys[0].id, NOW + 20).await.unwrap();
    assert_eq!(s.api_key_by_id(&keys[0].id).await.unwrap().unwrap().revoked_at, Some(NOW + 10));
    assert_eq!(s.api_key_by_id(&keys[1].id).await.unwrap().unwrap().revoked_at, None);
    let err = s.revoke_api_key(&new_id(), NOW).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Touching records the latest use.
    s.touch_api_key(&keys[1].id, NOW + 30).await.unwrap();
    assert_eq!(s.api_key_by_prefix(&keys[1].prefix).await.unwrap().unwrap().last_used_at, Some(NOW + 30));
    s.touch_api_key(&keys[1].id, NOW + 40).await.unwrap();
    let touched = s.api_key_by_id(&keys[1].id).await.unwrap().unwrap();
    assert_eq!(touched, ApiKeyRow { last_used_at: Some(NOW + 40), ..keys[1].clone() });
    assert_eq!(s.api_key_by_id(&keys[2].id).await.unwrap().unwrap().last_used_at, None);
}

async fn audit_appends_and_lists_by_actor<S: Store>(s: &S) {
    let ada = user("ada");
    let bob = user("bob");
    let events = vec![
        audit(&ada, "login", true, NOW),
        audit(&bob, "login", false, NOW + 1),
        audit(&ada, "user.create", true, NOW + 2),
        audit(&ada, "logout", true, NOW + 3),
        audit(&bob, "login", true, NOW + 4),
    ];
    for e in &events {
        s.append_audit(e).await.unwrap();
    }

    // Everything, newest first (as ListAuditEvents promises), every column intact (including
    // `success = false`).
    let mut events = events;
    events.reverse();
    let all = s.list_audit(None, None, 10).await.unwrap();
    assert_eq!(all.items, events);
    assert_eq!(all.next_after, None);

    // Unfiltered pages of two.
    let p1 = s.list_audit(None, None, 2).await.unwrap();
    assert_eq!(p1.items, events[0..2]);
    let p2 = s.list_audit(None, p1.next_after.as_deref(), 2).await.unwrap();
    assert_eq!(p2.items, events[2..4]);
    let p3 = s.list_audit(None, p2.next_after.as_deref(), 2).await.unwrap();
    assert_eq!(p3.items, events[4..5]);
    assert_eq!(p3.next_after, None);

    // One actor, paged.
    let adas: Vec<AuditRow> = events.iter().filter(|e| e.actor_id == ada.id).cloned().collect();
    let a1 = s.list_audit(Some(&ada.id), None, 2).await.unwrap();
    assert_eq!(a1.items, adas[0..2]);
    assert_eq!(a1.next_after.as_deref(), Some(adas[1].id.as_str()));
    let a2 = s.list_audit(Some(&ada.id), a1.next_after.as_deref(), 2).await.unwrap();
    assert_eq!(a2.items, adas[2..3]);
    assert_eq!(a2.next_after, None);
    let bobs = s.list_audit(Some(&bob.id), None, 10).await.unwrap();
    assert_eq!(bobs.items, vec![events[0].clone(), events[3].clone()]);
    assert!(s.list_audit(Some("nobody"), None, 10).await.unwrap().items.is_empty());
}

/// Stamps out `sqlite::<case>` and `postgres::<case>` for every case.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::common::on_sqlite(|store| async move { super::$case(&store).await }).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::common::on_postgres(|store| async move { super::$case(&store).await }).await;
                }
            )*
        }
    };
}

conformance!(
    users_roundtrip_and_pagination,
    duplicate_username_conflicts,
    update_user_applies_only_the_patched_fields,
    token_version_moves_only_when_access_must_end,
    delete_user_removes_their_tokens_and_keys,
    refresh_use_detects_reuse_and_revokes_the_family,
    expired_refresh_tokens_are_invalid,
    revoke_family_of_revokes_only_that_family,
    revoke_user_refresh_revokes_only_that_user,
    concurrent_use_of_one_refresh_token_has_one_winner,
    api_keys_roundtrip_list_revoke_and_touch,
    audit_appends_and_lists_by_actor,
);
