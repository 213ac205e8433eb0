//! A disabled, deleted or demoted user loses access at once (issue 10, item 11): calls go
//! through the gateway's public routes, auth layer included, as a client's would, and the
//! admin's changes are made with `UserService` calls.

mod common;

use common::policy;

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::BodyExt;
use persys_gateway::{
    accounts::{Accounts, Policy},
    auth::TokenKeys,
    grpc::public_routes,
    proxy::Proxy,
    store::SqlStore,
};
use persys_kit::identity::Role;
use persys_proto::{common::v1 as common_pb, gateway::v1 as pb, scheduler::v1 as sched};
use prost::Message;
use tempfile::TempDir;
use tonic::{Code, Status};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

/// The public side of one gateway replica over a store.
struct Gateway {
    router: axum::Router,
}

impl Gateway {
    fn over(store: SqlStore, policy: Policy) -> (Self, Arc<Accounts<SqlStore>>) {
        let accounts = Arc::new(Accounts::new(Arc::new(store), TokenKeys::new(&[7; 32]), policy));
        let proxy = Proxy::new(HashMap::new(), 4 << 20, None);
        let (routes, _health) = public_routes(accounts.clone(), proxy, 4 << 20).expect("routes");
        (Self { router: routes.into_axum_router() }, accounts)
    }

    /// Makes a unary gRPC call with `token` as the bearer.
    async fn call<Req: Message, Res: Message + Default>(
        &self,
        path: &str,
        token: Option<&str>,
        message: &Req,
    ) -> Result<Res, Status> {
        let encoded = message.encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        frame.extend_from_slice(&encoded);
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(path)
            .version(http::Version::HTTP_2)
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(axum::body::Body::from(frame)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await.expect("response body");
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = Status::from_header_map(&trailers).or_else(|| Status::from_header_map(&headers));
        match status {
            Some(status) if status.code() != Code::Ok => Err(status),
            _ => {
                let body: Bytes = collected.to_bytes();
                Ok(Res::decode(&body[5..]).expect("a response message"))
            }
        }
    }

    async fn login(&self, username: &str) -> pb::LoginResponse {
        let request = pb::LoginRequest { username: username.into(), password: PASSWORD.into() };
        self.call("/persys.gateway.v1.AuthService/Login", None, &request).await.expect("login")
    }

    async fn who_am_i(&self, token: &str) -> Result<pb::WhoAmIResponse, Status> {
        self.call("/persys.gateway.v1.AuthService/WhoAmI", Some(token), &pb::WhoAmIRequest {}).await
    }

    async fn refresh(&self, refresh_token: &str) -> Result<pb::RefreshResponse, Status> {
        let request = pb::RefreshRequest { refresh_token: refresh_token.into() };
        self.call("/persys.gateway.v1.AuthService/Refresh", None, &request).await
    }

    async fn list_users(&self, token: &str) -> Result<pb::ListUsersResponse, Status> {
        self.call("/persys.gateway.v1.UserService/ListUsers", Some(token), &pb::ListUsersRequest { page: None }).await
    }

    async fn update_user(&self, admin: &str, request: pb::UpdateUserRequest) -> pb::UpdateUserResponse {
        self.call("/persys.gateway.v1.UserService/UpdateUser", Some(admin), &request).await.expect("update user")
    }

    /// A forwarded call: with no upstream configured it fails `UNAVAILABLE` once authenticated.
    async fn list_nodes(&self, token: &str) -> Result<sched::ListNodesResponse, Status> {
        let request = sched::ListNodesRequest::default();
        self.call("/persys.scheduler.v1.SchedulerService/ListNodes", Some(token), &request).await
    }
}

async fn gateway(policy: Policy) -> (TempDir, Gateway, Arc<Accounts<SqlStore>>) {
    let (dir, store) = common::sqlite_store().await;
    let (gateway, accounts) = Gateway::over(store, policy);
    accounts.create_user("root", PASSWORD, Role::Admin).await.unwrap();
    (dir, gateway, accounts)
}

#[track_caller]
fn assert_session_ended<T: std::fmt::Debug>(result: Result<T, Status>) {
    match result {
        Err(status) if status.code() == Code::Unauthenticated => {
            assert!(status.message().contains("log in again"), "{}", status.message());
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[tokio::test]
async fn a_disabled_users_access_token_is_refused_at_once() {
    let (_dir, gw, accounts) = gateway(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let root = gw.login("root").await;
    let session = gw.login("ada").await;
    let (_, api_key) = accounts.create_api_key(&claims_of(&ada), "ci", None).await.unwrap();
    // Control, and the user's state is now cached: the token and the key work.
    assert_eq!(gw.who_am_i(&session.access_token).await.unwrap().user.unwrap().username, "ada");
    gw.who_am_i(&api_key).await.unwrap();
    assert_eq!(gw.list_nodes(&session.access_token).await.unwrap_err().code(), Code::Unavailable);

    let disable = pb::UpdateUserRequest { id: ada.id.clone(), disabled: Some(true), ..Default::default() };
    gw.update_user(&root.access_token, disable).await;

    let refused = gw.who_am_i(&session.access_token).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("disabled"), "the message says why: {}", refused.message());
    // Forwarded calls go through the same check.
    assert_session_ended(gw.list_nodes(&session.access_token).await);
    // The session cannot be renewed, and the API key stops too.
    assert_eq!(gw.refresh(&session.refresh_token).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(gw.who_am_i(&api_key).await.unwrap_err().code(), Code::Unauthenticated);
    // Enabling the user again does not bring the old token back.
    let enable = pb::UpdateUserRequest { id: ada.id.clone(), disabled: Some(false), ..Default::default() };
    gw.update_user(&root.access_token, enable).await;
    assert_session_ended(gw.who_am_i(&session.access_token).await);
    gw.who_am_i(&gw.login("ada").await.access_token).await.expect("a new login works");
}

#[tokio::test]
async fn a_deleted_users_access_token_is_refused_at_once() {
    let (_dir, gw, accounts) = gateway(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let root = gw.login("root").await;
    let session = gw.login("ada").await;
    gw.list_users(&root.access_token).await.expect("control: root is an admin");
    assert_eq!(gw.list_nodes(&session.access_token).await.unwrap_err().code(), Code::Unavailable);

    let delete = pb::DeleteUserRequest { id: ada.id.clone() };
    let _: pb::DeleteUserResponse =
        gw.call("/persys.gateway.v1.UserService/DeleteUser", Some(&root.access_token), &delete).await.unwrap();

    assert_session_ended(gw.list_nodes(&session.access_token).await);
    assert_session_ended(gw.who_am_i(&session.access_token).await);
    assert_eq!(gw.refresh(&session.refresh_token).await.unwrap_err().code(), Code::Unauthenticated);
    // A new user of the same name is someone else: the old token does not become theirs.
    accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    assert_session_ended(gw.who_am_i(&session.access_token).await);
}

#[tokio::test]
async fn a_demoted_admin_cannot_make_admin_calls_with_the_old_token() {
    let (_dir, gw, accounts) = gateway(policy()).await;
    let eve = accounts.create_user("eve", PASSWORD, Role::Admin).await.unwrap();
    let root = gw.login("root").await;
    let session = gw.login("eve").await;
    gw.list_users(&session.access_token).await.expect("control: eve is an admin");

    let demote =
        pb::UpdateUserRequest { id: eve.id.clone(), role: Some(common_pb::Role::Member as i32), ..Default::default() };
    gw.update_user(&root.access_token, demote).await;

    assert_session_ended(gw.list_users(&session.access_token).await);
    // Her session lives on, with the role she has now.
    let renewed = gw.refresh(&session.refresh_token).await.expect("refresh after a role change");
    assert_eq!(gw.list_users(&renewed.access_token).await.unwrap_err().code(), Code::PermissionDenied);
    let me = gw.who_am_i(&renewed.access_token).await.unwrap().user.unwrap();
    assert_eq!(me.role, common_pb::Role::Member as i32);
}

#[tokio::test]
async fn a_password_change_ends_every_session() {
    let (_dir, gw, accounts) = gateway(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let root = gw.login("root").await;
    let session = gw.login("ada").await;
    gw.who_am_i(&session.access_token).await.unwrap();

    let reset = pb::UpdateUserRequest {
        id: ada.id.clone(),
        password: Some("another long password".into()),
        ..Default::default()
    };
    gw.update_user(&root.access_token, reset).await;

    assert_session_ended(gw.who_am_i(&session.access_token).await);
    assert_eq!(gw.refresh(&session.refresh_token).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_change_made_through_another_replica_is_seen_when_the_cache_expires() {
    let (_dir, store) = common::sqlite_store().await;
    // Replica B caches nothing, standing for B after its cache's time to live has passed.
    let (a, accounts) = Gateway::over(store.clone(), policy());
    let (b, _) = Gateway::over(store, Policy { user_cache_ttl: Duration::ZERO, ..policy() });
    accounts.create_user("root", PASSWORD, Role::Admin).await.unwrap();
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let root = a.login("root").await;
    let session = a.login("ada").await;
    b.who_am_i(&session.access_token).await.expect("control: replica B accepts the token");

    let disable = pb::UpdateUserRequest { id: ada.id.clone(), disabled: Some(true), ..Default::default() };
    a.update_user(&root.access_token, disable).await;
    assert_session_ended(b.who_am_i(&session.access_token).await);
}

fn claims_of(user: &persys_gateway::store::UserRow) -> persys_kit::UserClaims {
    persys_kit::UserClaims { id: user.id.clone(), name: user.username.clone(), role: user.role }
}

/// Changing one's own password ends every session of the user (on every device) and returns
/// a new one; the old password stops working, the new one works. A wrong current password, a
/// short or unchanged new one, and an API key are refused with what to fix, changing nothing.
#[tokio::test]
async fn changing_ones_password_ends_every_earlier_session_and_starts_a_new_one() {
    let (_dir, gw, accounts) = gateway(policy()).await;
    let ada = accounts.create_user("ada", PASSWORD, Role::Member).await.unwrap();
    let laptop = gw.login("ada").await;
    let phone = gw.login("ada").await;
    let change = |token: String, current: &str, new: &str| {
        let request = pb::ChangePasswordRequest { current_password: current.into(), new_password: new.into() };
        let gw = &gw;
        async move {
            gw.call::<_, pb::ChangePasswordResponse>(
                "/persys.gateway.v1.AuthService/ChangePassword",
                Some(&token),
                &request,
            )
            .await
        }
    };
    let field_of = |s: Status| {
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        let details = tonic_types::StatusExt::get_details_bad_request(&s).expect("field violations");
        details.field_violations.into_iter().map(|v| v.field).collect::<Vec<_>>()
    };
    const NEW: &str = "a brand new passphrase";

    let wrong = change(laptop.access_token.clone(), "not my password", NEW).await.unwrap_err();
    assert_eq!(field_of(wrong), ["current_password"]);
    let short = change(laptop.access_token.clone(), PASSWORD, "short").await.unwrap_err();
    assert_eq!(field_of(short), ["new_password"]);
    let same = change(laptop.access_token.clone(), PASSWORD, PASSWORD).await.unwrap_err();
    assert_eq!(field_of(same), ["new_password"]);
    let (_, api_key) = accounts.create_api_key(&claims_of(&ada), "ci", None).await.unwrap();
    let by_key = change(api_key, PASSWORD, NEW).await.unwrap_err();
    assert_eq!(by_key.code(), Code::PermissionDenied, "{by_key:?}");
    // Nothing changed so far: both sessions still work.
    gw.who_am_i(&phone.access_token).await.unwrap();

    let fresh = change(laptop.access_token.clone(), PASSWORD, NEW).await.unwrap();
    assert_eq!(gw.who_am_i(&fresh.access_token).await.unwrap().user.unwrap().username, "ada");
    assert!(!fresh.refresh_token.is_empty());
    // Every earlier session ended: access tokens and refresh tokens, this device's too.
    assert_session_ended(gw.who_am_i(&phone.access_token).await);
    assert_session_ended(gw.who_am_i(&laptop.access_token).await);
    assert!(gw.refresh(&phone.refresh_token).await.is_err());
    gw.refresh(&fresh.refresh_token).await.expect("the new session refreshes");
    // The old password no longer logs in; the new one does.
    let old = pb::LoginRequest { username: "ada".into(), password: PASSWORD.into() };
    let refused =
        gw.call::<_, pb::LoginResponse>("/persys.gateway.v1.AuthService/Login", None, &old).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let new = pb::LoginRequest { username: "ada".into(), password: NEW.into() };
    gw.call::<_, pb::LoginResponse>("/persys.gateway.v1.AuthService/Login", None, &new).await.expect("new password");
}
