//! `persys.gateway.v1.AuthService`.

use std::sync::Arc;

use persys_proto::gateway::v1::{self as pb, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::{peer, principal, session_cookie, ts, user_to_pb};
use crate::{
    accounts::{Accounts, Session},
    store::Store,
};

/// Serves login, refresh, logout and whoami.
pub struct AuthApi<S> {
    accounts: Arc<Accounts<S>>,
}

impl<S> AuthApi<S> {
    /// Returns the service over `accounts`.
    pub fn new(accounts: Arc<Accounts<S>>) -> Self {
        Self { accounts }
    }
}

fn login_response(s: Session) -> pb::LoginResponse {
    pb::LoginResponse {
        access_token: s.access_token,
        refresh_token: s.refresh_token,
        access_expires_at: Some(ts(s.access_expires_at)),
        refresh_expires_at: Some(ts(s.refresh_expires_at)),
        user: Some(user_to_pb(&s.user)),
    }
}

/// Returns the refresh token a call presents: the one in its body, or else its session cookie
/// (and whether it came from the cookie).
fn presented(body: &str, metadata: &tonic::metadata::MetadataMap) -> (String, bool) {
    if !body.is_empty() {
        return (body.to_owned(), false);
    }
    match session_cookie::token(metadata) {
        Some(t) => (t, true),
        None => (String::new(), false),
    }
}

/// Returns the whole seconds from now until `expires_ms` (unix ms), at least 0.
fn seconds_until(expires_ms: i64) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    ((expires_ms - now) / 1000).max(0)
}

#[tonic::async_trait]
impl<S: Store> AuthService for AuthApi<S> {
    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let peer = peer(request.extensions());
        let cookie = session_cookie::wanted(request.metadata());
        let metadata = request.metadata().clone();
        let r = request.into_inner();
        let session = self.accounts.login(&r.username, &r.password, &peer).await?;
        if !cookie {
            return Ok(Response::new(login_response(session)));
        }
        // A browser session: the refresh token goes into the HttpOnly cookie only.
        let (token, max_age) = (session.refresh_token.clone(), seconds_until(session.refresh_expires_at));
        let mut response = Response::new(pb::LoginResponse { refresh_token: String::new(), ..login_response(session) });
        session_cookie::set(response.metadata_mut(), &metadata, Some(&token), max_age);
        Ok(response)
    }

    #[tracing::instrument(skip_all)]
    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Result<Response<pb::RefreshResponse>, Status> {
        let peer = peer(request.extensions());
        let (token, from_cookie) = presented(&request.get_ref().refresh_token, request.metadata());
        let s = match self.accounts.refresh(&token, &peer).await {
            Ok(s) => s,
            Err(e) if from_cookie => {
                // The cookie's session is over (expired, revoked, reused): forget it.
                let mut status = Status::from(e);
                session_cookie::set(status.metadata_mut(), request.metadata(), None, 0);
                return Err(status);
            }
            Err(e) => return Err(e.into()),
        };
        let max_age = seconds_until(s.refresh_expires_at);
        let mut response = Response::new(pb::RefreshResponse {
            access_token: s.access_token,
            refresh_token: if from_cookie { String::new() } else { s.refresh_token.clone() },
            access_expires_at: Some(ts(s.access_expires_at)),
            refresh_expires_at: Some(ts(s.refresh_expires_at)),
        });
        if from_cookie {
            session_cookie::set(response.metadata_mut(), request.metadata(), Some(&s.refresh_token), max_age);
        }
        Ok(response)
    }

    #[tracing::instrument(skip_all)]
    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let peer = peer(request.extensions());
        let (token, from_cookie) = presented(&request.get_ref().refresh_token, request.metadata());
        self.accounts.logout(&token, &peer).await?;
        let mut response = Response::new(pb::LogoutResponse {});
        if from_cookie {
            session_cookie::set(response.metadata_mut(), request.metadata(), None, 0);
        }
        Ok(response)
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let p = principal(&request)?;
        if p.method != crate::accounts::AuthMethod::Jwt {
            return Err(Status::permission_denied(
                "an API key cannot change its owner's password: log in (persys login) and change it from that session",
            ));
        }
        let peer = peer(request.extensions());
        let cookie = session_cookie::wanted(request.metadata());
        let metadata = request.metadata().clone();
        let r = request.into_inner();
        let s = self.accounts.change_password(&p.user.id, &r.current_password, &r.new_password, &peer).await?;
        let (token, max_age) = (s.refresh_token.clone(), seconds_until(s.refresh_expires_at));
        let mut response = Response::new(pb::ChangePasswordResponse {
            access_token: s.access_token,
            refresh_token: if cookie { String::new() } else { s.refresh_token },
            access_expires_at: Some(ts(s.access_expires_at)),
            refresh_expires_at: Some(ts(s.refresh_expires_at)),
        });
        if cookie {
            session_cookie::set(response.metadata_mut(), &metadata, Some(&token), max_age);
        }
        Ok(response)
    }

    #[tracing::instrument(skip_all)]
    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let p = principal(&request)?;
        let user = self
            .accounts
            .store()
            .user_by_id(&p.user.id)
            .await
            .map_err(persys_kit::ApiError::from)?
            .ok_or_else(|| Status::unauthenticated("this user no longer exists"))?;
        Ok(Response::new(pb::WhoAmIResponse { user: Some(user_to_pb(&user)), auth_method: p.method.as_str().into() }))
    }
}
