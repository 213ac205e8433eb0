//! `persys.gateway.v1.AuthService`.

use std::sync::Arc;

use persys_proto::gateway::v1::{self as pb, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::{peer, principal, ts, user_to_pb};
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

#[tonic::async_trait]
impl<S: Store> AuthService for AuthApi<S> {
    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let peer = peer(request.extensions());
        let r = request.into_inner();
        let session = self.accounts.login(&r.username, &r.password, &peer).await?;
        Ok(Response::new(login_response(session)))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Result<Response<pb::RefreshResponse>, Status> {
        let peer = peer(request.extensions());
        let s = self.accounts.refresh(&request.get_ref().refresh_token, &peer).await?;
        Ok(Response::new(pb::RefreshResponse {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            access_expires_at: Some(ts(s.access_expires_at)),
            refresh_expires_at: Some(ts(s.refresh_expires_at)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let peer = peer(request.extensions());
        self.accounts.logout(&request.get_ref().refresh_token, &peer).await?;
        Ok(Response::new(pb::LogoutResponse {}))
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
