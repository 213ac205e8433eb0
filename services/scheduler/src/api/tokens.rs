//! Join tokens: created, listed and revoked by admins; only a hash of the secret is stored.

use std::time::Duration;

use persys_kit::{ApiError, error::Violations};
use persys_proto::scheduler::v1::{
    CreateJoinTokenRequest, CreateJoinTokenResponse, JoinToken, ListJoinTokensRequest, ListJoinTokensResponse,
    RevokeJoinTokenRequest,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{duration_or, nodes::page, require_admin};
use crate::{
    kv::{Cmp, Kv, Op},
    model::{StoredToken, now_ms},
    sched::Scheduler,
};

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    (ms != 0).then(|| prost_types::Timestamp { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 })
}

fn public(t: &StoredToken) -> JoinToken {
    JoinToken {
        id: t.id.clone(),
        description: t.description.clone(),
        created_at: ts(t.created_at),
        expires_at: ts(t.expires_at),
        max_uses: t.max_uses,
        use_count: t.use_count,
        node_labels: t.node_labels.clone().into_iter().collect(),
        created_by: t.created_by.clone(),
        revoked_at: ts(t.revoked_at),
    }
}

/// Returns `sha256:<hex>` of the CA certificate's DER, which joining machines can pin.
pub fn ca_hash(ca_pem: &str) -> String {
    let der = rustls_pemfile::certs(&mut ca_pem.as_bytes()).next().and_then(Result::ok);
    format!("sha256:{}", hex::encode(Sha256::digest(der.as_deref().unwrap_or(ca_pem.as_bytes()))))
}

/// Lifetime of a join token when the request sets none.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest lifetime a join token may have.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Returns the stored use limit (0 = unlimited) and lifetime of a token request. A token is
/// single use unless the request asks for more joins, or for unlimited ones explicitly: a
/// leaked token should let at most one machine in.
pub fn token_limits(r: &CreateJoinTokenRequest) -> Result<(i32, Duration), ApiError> {
    let mut v = Violations::new();
    v.check(r.max_uses < 0, "max_uses", "must be 0 (one join) or more");
    v.check(r.unlimited_uses && r.max_uses != 0, "max_uses", "must be 0 when unlimited_uses is set");
    let ttl = r.ttl.as_ref().map(|d| (d.seconds, d.nanos));
    v.check(ttl.is_some_and(|(s, n)| s < 0 || n < 0 || (s == 0 && n == 0)), "ttl", "must be positive, e.g. 1h");
    let ttl = duration_or(r.ttl.as_ref(), DEFAULT_TOKEN_TTL);
    v.check(ttl > MAX_TOKEN_TTL, "ttl", "must be at most 7 days");
    v.finish()?;
    let max_uses = match (r.unlimited_uses, r.max_uses) {
        (true, _) => 0,
        (false, 0) => 1,
        (false, n) => n,
    };
    Ok((max_uses, ttl))
}

impl<K: Kv> Scheduler<K> {
    /// Creates a join token.
    pub async fn create_token(
        &self,
        user: &persys_kit::UserClaims,
        r: CreateJoinTokenRequest,
    ) -> Result<CreateJoinTokenResponse, ApiError> {
        require_admin(user)?;
        let (max_uses, ttl) = token_limits(&r)?;
        let mut bytes = [0u8; 11];
        rand::rng().fill_bytes(&mut bytes);
        let (id, secret) = (hex::encode(&bytes[..3]), hex::encode(&bytes[3..]));
        let now = now_ms();
        let stored = StoredToken {
            id: id.clone(),
            secret_hash: hex::encode(Sha256::digest(secret.as_bytes())),
            description: r.description,
            created_at: now,
            expires_at: now + ttl.as_millis() as i64,
            max_uses,
            use_count: 0,
            node_labels: r.node_labels.into_iter().collect(),
            created_by: user.name.clone(),
            revoked_at: 0,
        };
        let key = self.keys().token(&id);
        let value = serde_json::to_vec(&stored).map_err(ApiError::internal)?;
        if !self.store.kv().txn(vec![Cmp::ModRevision(key.clone(), 0)], vec![Op::put(&key, value)]).await?.succeeded {
            return Err(ApiError::Unavailable("token id collision; retry".into()));
        }
        tracing::info!(token = %id, by = %user.name, "join token created");
        Ok(CreateJoinTokenResponse {
            join_token: Some(public(&stored)),
            token: format!("{id}.{secret}"),
            ca_cert_hash: ca_hash(self.ca.cert_pem()),
        })
    }

    /// Lists join tokens.
    pub async fn list_tokens(
        &self,
        user: &persys_kit::UserClaims,
        r: ListJoinTokensRequest,
    ) -> Result<ListJoinTokensResponse, ApiError> {
        require_admin(user)?;
        let (entries, _) = self.store.kv().range(&self.keys().tokens()).await?;
        let now = now_ms();
        let tokens: Vec<JoinToken> = entries
            .iter()
            .filter_map(|e| serde_json::from_slice::<StoredToken>(&e.value).ok())
            .filter(|t| {
                r.include_inactive
                    || (t.revoked_at == 0
                        && (t.expires_at == 0 || t.expires_at > now)
                        && (t.max_uses == 0 || t.use_count < t.max_uses))
            })
            .map(|t| public(&t))
            .collect();
        let (join_tokens, page) = page(tokens, r.page.as_ref(), |t| t.id.clone())?;
        Ok(ListJoinTokensResponse { join_tokens, page })
    }

    /// Revokes a join token.
    pub async fn revoke_token(&self, user: &persys_kit::UserClaims, r: RevokeJoinTokenRequest) -> Result<(), ApiError> {
        require_admin(user)?;
        let key = self.keys().token(&r.id);
        for _ in 0..16 {
            let entry =
                self.store.kv().get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("join token `{}`", r.id)))?;
            let mut t: StoredToken = serde_json::from_slice(&entry.value).map_err(ApiError::internal)?;
            if t.revoked_at != 0 {
                return Ok(());
            }
            t.revoked_at = now_ms();
            let value = serde_json::to_vec(&t).map_err(ApiError::internal)?;
            if self
                .store
                .kv()
                .txn(vec![Cmp::ModRevision(key.clone(), entry.mod_revision)], vec![Op::put(&key, value)])
                .await?
                .succeeded
            {
                tracing::info!(token = %r.id, by = %user.name, "join token revoked");
                return Ok(());
            }
        }
        Err(ApiError::Unavailable("token busy; retry".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(max_uses: i32, unlimited_uses: bool) -> CreateJoinTokenRequest {
        CreateJoinTokenRequest { max_uses, unlimited_uses, ..Default::default() }
    }

    #[test]
    fn tokens_are_single_use_and_short_lived_unless_asked() {
        assert_eq!(token_limits(&request(0, false)).unwrap(), (1, DEFAULT_TOKEN_TTL));
        assert_eq!(token_limits(&request(5, false)).unwrap().0, 5);
        assert_eq!(token_limits(&request(0, true)).unwrap().0, 0, "unlimited is stored as 0");
        assert!(DEFAULT_TOKEN_TTL <= Duration::from_secs(3600));
        for bad in [request(-1, false), request(3, true)] {
            let Err(ApiError::InvalidArgument(v)) = token_limits(&bad) else { panic!("{bad:?} accepted") };
            assert_eq!(v[0].field, "max_uses");
        }
        let week_and_a_day = prost_types::Duration { seconds: 8 * 24 * 3600, nanos: 0 };
        let long = CreateJoinTokenRequest { ttl: Some(week_and_a_day), ..Default::default() };
        assert!(matches!(token_limits(&long), Err(ApiError::InvalidArgument(v)) if v[0].field == "ttl"));
    }
}
