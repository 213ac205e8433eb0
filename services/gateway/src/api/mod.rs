//! The gateway's own gRPC services and the conversions between store rows and messages.

pub mod api_keys;
pub mod auth;
pub mod session_cookie;
pub mod users;

use persys_kit::{ApiError, identity::Role};
use persys_proto::{common::v1 as common, gateway::v1 as pb};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::{
    accounts::Principal,
    store::{ApiKeyRow, AuditRow, UserRow},
};

/// Default and maximum page sizes of list calls.
pub const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

/// Returns the page size and cursor of a page request.
pub fn page_args(page: Option<&common::PageRequest>) -> (u32, Option<String>) {
    let size = page.map_or(0, |p| p.page_size);
    let size = if size <= 0 { DEFAULT_PAGE } else { (size as u32).min(MAX_PAGE) };
    let token = page.map(|p| p.page_token.clone()).filter(|t| !t.is_empty());
    (size, token)
}

/// Returns a page response with the next cursor.
pub fn page_response(next: Option<String>) -> Option<common::PageResponse> {
    Some(common::PageResponse { next_page_token: next.unwrap_or_default(), total_size: None })
}

/// Converts unix ms to a protobuf timestamp.
pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// Converts a protobuf timestamp to unix ms.
pub fn ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// Converts a role to its protobuf enum.
pub fn role_to_pb(role: Role) -> common::Role {
    match role {
        Role::Admin => common::Role::Admin,
        Role::Member => common::Role::Member,
        Role::Viewer => common::Role::Viewer,
    }
}

/// Converts a protobuf role; `UNSPECIFIED` or unknown values are a field violation.
pub fn role_from_pb(value: i32, field: &str) -> Result<Role, ApiError> {
    match common::Role::try_from(value) {
        Ok(common::Role::Admin) => Ok(Role::Admin),
        Ok(common::Role::Member) => Ok(Role::Member),
        Ok(common::Role::Viewer) => Ok(Role::Viewer),
        _ => Err(ApiError::invalid(field, "must be ROLE_ADMIN, ROLE_MEMBER or ROLE_VIEWER")),
    }
}

/// Converts a user row.
pub fn user_to_pb(u: &UserRow) -> pb::User {
    pb::User {
        id: u.id.clone(),
        username: u.username.clone(),
        role: role_to_pb(u.role) as i32,
        disabled: u.disabled_at.is_some(),
        created_at: Some(ts(u.created_at)),
    }
}

/// Converts an API key row (never its hash).
pub fn key_to_pb(k: &ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.clone(),
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        created_at: Some(ts(k.created_at)),
        expires_at: k.expires_at.map(ts),
        revoked_at: k.revoked_at.map(ts),
        last_used_at: k.last_used_at.map(ts),
        owner_id: k.user_id.clone(),
    }
}

/// Converts an audit row.
pub fn audit_to_pb(a: &AuditRow) -> pb::AuditEvent {
    pb::AuditEvent {
        id: a.id.clone(),
        time: Some(ts(a.at)),
        actor_id: a.actor_id.clone(),
        actor_name: a.actor_name.clone(),
        action: a.action.clone(),
        target: a.target.clone(),
        success: a.success,
        peer: a.peer.clone(),
        detail: a.detail.clone(),
    }
}

/// Returns the peer address of a request, for rate limits and the audit log.
pub fn peer(extensions: &http::Extensions) -> String {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr()))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Returns the principal the auth layer attached, or `UNAUTHENTICATED`.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, ApiError> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::Unauthenticated("missing credentials".into()))
}

/// Requires the admin role.
pub fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.user.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "`{}` is a {}; this call needs an admin",
            p.user.name,
            p.user.role.as_str()
        )))
    }
}
