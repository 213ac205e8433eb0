//! `persys.gateway.v1.UserService`: user management and the audit log, for admins.

use std::sync::Arc;

use persys_kit::ApiError;
use persys_proto::gateway::v1::{self as pb, user_service_server::UserService};
use tonic::{Request, Response, Status};

use super::{audit_to_pb, page_args, page_response, peer, principal, require_admin, role_from_pb, user_to_pb};
use crate::{
    accounts::{Accounts, new_password_hash, now_ms},
    store::{Store, UserPatch},
};

/// Serves user management.
pub struct UsersApi<S> {
    accounts: Arc<Accounts<S>>,
}

impl<S> UsersApi<S> {
    /// Returns the service over `accounts`.
    pub fn new(accounts: Arc<Accounts<S>>) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl<S: Store> UserService for UsersApi<S> {
    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let admin = principal(&request)?;
        require_admin(&admin)?;
        let peer = peer(request.extensions());
        let r = request.into_inner();
        let role = role_from_pb(r.role, "role")?;
        let result = self.accounts.create_user(&r.username, &r.password, role).await;
        self.accounts
            .audit((&admin.user.id, &admin.user.name), "user.create", &r.username, result.is_ok(), &peer, role.as_str())
            .await;
        Ok(Response::new(pb::CreateUserResponse { user: Some(user_to_pb(&result?)) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        require_admin(&principal(&request)?)?;
        let id = &request.get_ref().id;
        let user = self.accounts.store().user_by_id(id).await.map_err(ApiError::from)?;
        let user = user.ok_or_else(|| ApiError::NotFound(format!("user `{id}`")))?;
        Ok(Response::new(pb::GetUserResponse { user: Some(user_to_pb(&user)) }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        require_admin(&principal(&request)?)?;
        let (size, after) = page_args(request.get_ref().page.as_ref());
        let page = self.accounts.store().list_users(after.as_deref(), size).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.items.iter().map(user_to_pb).collect(),
            page: page_response(page.next_after),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let admin = principal(&request)?;
        require_admin(&admin)?;
        let peer = peer(request.extensions());
        let r = request.into_inner();
        let mut patch = UserPatch::default();
        if let Some(role) = r.role {
            patch.role = Some(role_from_pb(role, "role")?);
        }
        if let Some(password) = &r.password {
            patch.password_hash = Some(new_password_hash(password).await?);
        }
        if let Some(disabled) = r.disabled {
            if disabled && r.id == admin.user.id {
                return Err(ApiError::invalid("disabled", "you cannot disable yourself").into());
            }
            patch.disabled_at = Some(disabled.then(now_ms));
        }
        let result = self.accounts.update_user(&r.id, &patch).await;
        // What changed, in words (never the password itself).
        let mut changes = Vec::new();
        if let Some(role) = patch.role {
            changes.push(format!("role {}", role.as_str()));
        }
        if patch.password_hash.is_some() {
            changes.push("password changed".to_owned());
        }
        if let Some(disabled) = r.disabled {
            changes.push(if disabled { "disabled" } else { "enabled" }.to_owned());
        }
        let what = changes.join(", ");
        self.accounts
            .audit((&admin.user.id, &admin.user.name), "user.update", &r.id, result.is_ok(), &peer, &what)
            .await;
        Ok(Response::new(pb::UpdateUserResponse { user: Some(user_to_pb(&result?)) }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let admin = principal(&request)?;
        require_admin(&admin)?;
        let peer = peer(request.extensions());
        let id = request.into_inner().id;
        if id == admin.user.id {
            return Err(ApiError::invalid("id", "you cannot delete yourself").into());
        }
        let result = self.accounts.delete_user(&id).await;
        self.accounts.audit((&admin.user.id, &admin.user.name), "user.delete", &id, result.is_ok(), &peer, "").await;
        result?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        require_admin(&principal(&request)?)?;
        let r = request.get_ref();
        let (size, after) = page_args(r.page.as_ref());
        let actor = Some(r.actor_id.as_str()).filter(|a| !a.is_empty());
        let page = self.accounts.store().list_audit(actor, after.as_deref(), size).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.items.iter().map(audit_to_pb).collect(),
            page: page_response(page.next_after),
        }))
    }
}
