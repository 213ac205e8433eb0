//! `persys.gateway.v1.ApiKeyService`: every user manages their own keys; admins may revoke any.

use std::sync::Arc;

use persys_kit::{ApiError, identity::Role};
use persys_proto::gateway::v1::{self as pb, api_key_service_server::ApiKeyService};
use tonic::{Request, Response, Status};

use super::{key_to_pb, ms, page_args, page_response, peer, principal};
use crate::{
    accounts::{Accounts, now_ms},
    store::Store,
};

/// Serves API key management.
pub struct ApiKeysApi<S> {
    accounts: Arc<Accounts<S>>,
}

impl<S> ApiKeysApi<S> {
    /// Returns the service over `accounts`.
    pub fn new(accounts: Arc<Accounts<S>>) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl<S: Store> ApiKeyService for ApiKeysApi<S> {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let p = principal(&request)?;
        let peer = peer(request.extensions());
        let r = request.into_inner();
        let (row, secret) = self.accounts.create_api_key(&p.user, &r.name, r.expires_at.as_ref().map(ms)).await?;
        self.accounts.audit((&p.user.id, &p.user.name), "api_key.create", &row.id, true, &peer, &row.name).await;
        Ok(Response::new(pb::CreateApiKeyResponse { api_key: Some(key_to_pb(&row)), secret }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let p = principal(&request)?;
        let (size, after) = page_args(request.get_ref().page.as_ref());
        let page =
            self.accounts.store().list_api_keys(&p.user.id, after.as_deref(), size).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.items.iter().map(key_to_pb).collect(),
            page: page_response(page.next_after),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let p = principal(&request)?;
        let peer = peer(request.extensions());
        let id = request.into_inner().id;
        let key = self.accounts.store().api_key_by_id(&id).await.map_err(ApiError::from)?;
        // Someone else's key is reported as missing, so ids of other users' keys leak nothing.
        let key = key
            .filter(|k| k.user_id == p.user.id || p.user.role == Role::Admin)
            .ok_or_else(|| ApiError::NotFound(format!("api key `{id}`")))?;
        self.accounts.store().revoke_api_key(&key.id, now_ms()).await.map_err(ApiError::from)?;
        self.accounts.audit((&p.user.id, &p.user.name), "api_key.revoke", &key.id, true, &peer, "").await;
        Ok(Response::new(pb::RevokeApiKeyResponse {}))
    }
}
